//! Stemma's edge: the `stemma` command line, the gRPC servers, auth and config. Only this
//! crate knows about transport and presentation; it translates to and from `ledger`
//! types and nothing more.

pub mod allocator;
pub mod auth;
pub mod cli;
pub mod config;
pub mod demo;
pub mod grpc;
pub mod metrics;
pub mod server;
pub mod tls;
