//! Stemma's edge: the `stemma` command line (and, with the gRPC issue, the servers, auth
//! and config). Only this crate knows about transport and presentation; it translates to
//! and from `ledger` types and nothing more.

pub mod cli;
