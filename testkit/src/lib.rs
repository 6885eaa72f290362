//! Test support shared by the workspace's tests, so each fixture is written once: builders
//! for ids, money and commands ([`builders`], re-exported here), a decider over a real
//! embedded store with a manual clock ([`Harness`]), the seeds' TV episode ([`episode`]),
//! forgeries appended past the domain ([`forge`]) and random valid command sequences
//! ([`sequence`]).
//!
//! `ledger`'s own integration tests use it too: Cargo builds one `ledger` library for them
//! and for this crate, so the types are the same.

pub mod builders;
pub mod episode;
pub mod forge;
pub mod harness;
pub mod sequence;

pub use builders::*;
pub use harness::{Harness, SyncFailures};
