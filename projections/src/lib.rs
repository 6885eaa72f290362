//! Stemma's read side: the read models the services query, and the machinery that keeps
//! them current, snapshots them and rebuilds them without downtime.
//!
//! | module | one job |
//! |---|---|
//! | `projection` | the `Projection` trait, the decoded event a model applies, walk limits |
//! | `interner` | compact id storage: strings once in an arena, dense `u32` ids |
//! | `catalog` | the ids of every model, numbered once per event by the runner, shared |
//! | `walk` | bounded BFS over the domain's `Dag` without per-walk hashing |
//! | `family_tree` | sources, remixes, ancestors/descendants with depth, roots, family size |
//! | `allocation` | per distribution: status, pool, lines, versions, comments, blockers, payouts |
//! | `credits` | per production: included and influencing contributors, with their records |
//! | `sources` | every record's direct sources, compact, for credits' ancestor walks |
//! | `statement` | per member: payouts, records, remixes of and citations to their work |
//! | `runner` | feeds instances from the store, checkpoints, waits for `min_position` |
//! | `snapshot` | atomic, checksummed snapshot files; load only onto the log they came from |
//! | `rebuild` | blue/green rebuild with progress reports |
//! | `serving` | the four models together: start from snapshots, snapshot, rebuild |
//!
//! `projections` depends on `ledger` for the domain's events, ids, money and `Dag`; it
//! never writes to the store.

pub mod allocation;
pub mod catalog;
pub mod credits;
pub mod family_tree;
pub mod interner;
pub mod projection;
pub mod rebuild;
pub mod runner;
pub mod serving;
pub mod snapshot;
mod sources;
pub mod statement;
pub mod walk;

pub use catalog::{Catalog, EventIds};
pub use projection::{AppliedEvent, Fact, IdsOnly, Projection, WalkLimits};
pub use rebuild::{Progress, RebuildError, RebuildReport};
pub use runner::{Answer, Checkpoint, Instance, QueryError, Runner, Served};
pub use serving::{ReadModels, PROJECTION_NAMES};
