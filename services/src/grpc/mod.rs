//! The gRPC services. `convert` turns requests into domain commands, `status` turns every
//! error into a `Status` (the only place that does), the rest wires them to the ledger.

pub mod audit;
pub mod commands;
pub mod convert;
pub mod events;
pub mod queries;
pub mod status;
