//! Stemma's write side: the event store and its backends, the hash chain, and (above the
//! store) the domain's events, rules and money.
//!
//! `ledger` never depends on transport: no tonic, no protobuf.

pub mod audit;
pub mod chunked;
pub mod dag;
pub mod decider;
pub mod domain;
pub mod money;
pub mod sharded;
pub mod store;
pub mod time;
