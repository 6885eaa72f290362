//! Rebuild without downtime (blue/green): new instances are built from the first event
//! beside the serving ones, by a runner of their own; once they have caught up to the
//! store's head they are switched in (one `Arc` swap each) and their runner keeps them
//! current. Until the switch the old instances answer every query.
//!
//! Progress is a plain struct handed to a callback, so the command line can draw it with
//! indicatif and the admin gRPC service can stream it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger::store::{EventStore, Position};
use thiserror::Error;

use crate::catalog::Catalog;
use crate::projection::Projection;
use crate::runner::{Checkpoint, Feed, Instance, Runner, Served};

#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// The projections being rebuilt.
    pub projections: Vec<&'static str>,
    /// The lowest position the new instances have applied.
    pub position: Position,
    /// The store's head when this was measured.
    pub head: Position,
    pub elapsed: Duration,
    /// Since the rebuild started.
    pub events_per_second: f64,
    /// At the rate so far; `None` before the first event.
    pub eta: Option<Duration>,
    /// The new instances have been switched in.
    pub switched: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RebuildReport {
    pub projections: Vec<&'static str>,
    /// Where the new instances were when they were switched in.
    pub position: Position,
    pub elapsed: Duration,
    pub events_per_second: f64,
}

#[derive(Debug, Error)]
pub enum RebuildError {
    #[error("unknown projection {0:?}; known: family_tree, allocations, credits, statements")]
    UnknownProjection(String),
    #[error("rebuilding {projection} stopped at position {position}: {reason}; the old instance still serves")]
    Stopped {
        projection: &'static str,
        position: Position,
        reason: String,
    },
}

/// A projection that can be rebuilt: makes a fresh instance, and later switches to it.
pub trait Rebuild: Send + Sync {
    fn name(&self) -> &'static str;
    /// A fresh instance numbering its ids by `catalog`.
    fn prepare(&self, catalog: &Catalog) -> Box<dyn PreparedSwitch>;
}

/// A fresh instance waiting to be switched in.
pub trait PreparedSwitch: Send {
    fn feed(&self) -> Arc<dyn Feed>;
    fn switch(self: Box<Self>);
}

struct Prepared<P> {
    served: Arc<Served<P>>,
    instance: Arc<Instance<P>>,
}

impl<P: Projection> PreparedSwitch for Prepared<P> {
    fn feed(&self) -> Arc<dyn Feed> {
        Arc::clone(&self.instance) as Arc<dyn Feed>
    }

    fn switch(self: Box<Self>) {
        let old = self.served.switch(self.instance);
        tracing::info!(
            projection = P::NAME,
            old_position = old.checkpoint().position,
            "switched to the rebuilt instance"
        );
    }
}

impl<P: Projection> Rebuild for Arc<Served<P>> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn prepare(&self, catalog: &Catalog) -> Box<dyn PreparedSwitch> {
        Box::new(Prepared {
            served: Arc::clone(self),
            instance: Instance::new(P::new(catalog.clone()), Checkpoint::default()),
        })
    }
}

/// Rebuilds `targets` from the first event, calling `on_progress` after every step of the
/// catch-up, and switches each to its new instance once all have reached the head. The
/// returned runner keeps the new instances current; the caller owns it from then on.
///
/// The new instances share `catalog` with the serving ones: it numbers every event's ids
/// as a fresh catalog would (see `crate::catalog`), so the rebuild only looks up ids it
/// already has, and the catalog's memory is not taken twice.
pub async fn rebuild<S: EventStore + ?Sized>(
    store: Arc<S>,
    targets: &[&dyn Rebuild],
    catalog: &Catalog,
    mut on_progress: impl FnMut(&Progress) + Send,
) -> Result<(RebuildReport, Runner), RebuildError> {
    let projections: Vec<&'static str> = targets.iter().map(|t| t.name()).collect();
    let prepared: Vec<Box<dyn PreparedSwitch>> =
        targets.iter().map(|t| t.prepare(catalog)).collect();
    let feeds: Vec<Arc<dyn Feed>> = prepared.iter().map(|p| p.feed()).collect();
    let mut watches: Vec<_> = feeds.iter().map(|feed| feed.subscribe()).collect();
    let mut head = store.watch_head();
    let started = Instant::now();
    let runner = Runner::spawn(Arc::clone(&store), feeds.clone(), catalog.clone());
    let progress = |position: Position, head: Position, switched: bool| {
        let elapsed = started.elapsed();
        let events_per_second = position as f64 / elapsed.as_secs_f64().max(1e-9);
        let eta = (events_per_second > 0.0).then(|| {
            Duration::from_secs_f64(head.saturating_sub(position) as f64 / events_per_second)
        });
        Progress {
            projections: projections.clone(),
            position,
            head,
            elapsed,
            events_per_second,
            eta,
            switched,
        }
    };
    let mut head_open = true;
    let position = loop {
        let target = *head.borrow_and_update();
        let (laggard, position) = watches
            .iter_mut()
            .enumerate()
            .map(|(index, watch)| (index, watch.borrow_and_update().checkpoint.position))
            .min_by_key(|(_, position)| *position)
            .unwrap_or((0, target));
        // Read the watches without holding a guard across the await below (the rebuild
        // future must be Send to run in a gRPC handler's task).
        let stopped = watches.iter().enumerate().find_map(|(index, watch)| {
            let fed = watch.borrow();
            let reason = fed.stopped.as_ref()?.to_string();
            Some((index, fed.checkpoint.position, reason))
        });
        if let Some((index, position, reason)) = stopped {
            runner.stop().await;
            return Err(RebuildError::Stopped {
                projection: projections[index],
                position,
                reason,
            });
        }
        on_progress(&progress(position, target, false));
        if position >= target {
            break position;
        }
        if watches.is_empty() {
            break target;
        }
        tokio::select! {
            _ = watches[laggard].changed() => {}
            changed = head.changed(), if head_open => head_open = changed.is_ok(),
        }
    };
    for prepared in prepared {
        prepared.switch();
    }
    let done = progress(position, position, true);
    on_progress(&done);
    let report = RebuildReport {
        projections: done.projections,
        position,
        elapsed: done.elapsed,
        events_per_second: done.events_per_second,
    };
    Ok((report, runner))
}
