//! The domain: every event and rule of DOMAIN.md, decided purely against in-memory state.
//!
//! `decide(state, command, now)` gives events or a `Rejection`; `evolve(state, event)`
//! applies an event. Neither does I/O or reads a clock. The decider (`crate::decider`)
//! runs them in one task in front of the store.

pub mod commands;
pub mod decide;
pub mod events;
pub mod evolve;
pub mod expectations;
pub mod ids;
pub mod limits;
pub mod privacy;
pub mod rejection;
pub mod state;
pub mod upcast;

pub use commands::Command;
pub use decide::decide;
pub use events::DomainEvent;
pub use evolve::evolve;
pub use rejection::{Blocker, Rejection};
pub use state::State;
