//! The read models a service runs: loaded from snapshots where usable, fed by one runner,
//! snapshotted and rebuilt on request.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ledger::store::EventStore;

use crate::allocation::Allocations;
use crate::catalog::Catalog;
use crate::credits::Credits;
use crate::family_tree::FamilyTree;
use crate::projection::Projection;
use crate::rebuild::{self, Progress, Rebuild, RebuildError, RebuildReport};
use crate::runner::{Checkpoint, Feed, Instance, Runner, Served};
use crate::snapshot::{self, Skipped, SnapshotError};
use crate::statement::Statements;

/// Every projection's name, as the command line and the admin service take it.
pub const PROJECTION_NAMES: [&str; 4] = [
    FamilyTree::NAME,
    Allocations::NAME,
    Credits::NAME,
    Statements::NAME,
];

/// How a projection started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    pub projection: &'static str,
    /// From a snapshot at this checkpoint, or from the first event (`None`).
    pub snapshot: Option<Checkpoint>,
}

pub struct ReadModels {
    pub family_tree: Arc<Served<FamilyTree>>,
    pub allocations: Arc<Served<Allocations>>,
    pub credits: Arc<Served<Credits>>,
    pub statements: Arc<Served<Statements>>,
    /// Each keeps some of the instances current; a runner whose instances were all
    /// switched out ends by itself.
    runners: Mutex<Vec<Runner>>,
    /// The ids of all four, resolved once per event; rebuilt instances share it (it numbers
    /// the log as a fresh one would), so it lives as long as the read models.
    catalog: Catalog,
    snapshot_directory: Option<PathBuf>,
    started: Vec<Started>,
}

async fn instance<P: Projection, S: EventStore + ?Sized>(
    directory: Option<&Path>,
    store: &Arc<S>,
    catalog: &Catalog,
) -> (Arc<Instance<P>>, Started) {
    let loaded = match directory {
        Some(directory) => snapshot::load::<P, S>(directory, store, catalog).await,
        None => Err(Skipped::Missing),
    };
    match loaded {
        Ok((model, checkpoint)) => {
            tracing::info!(
                projection = P::NAME,
                position = checkpoint.position,
                "loaded the snapshot; replaying the tail"
            );
            (
                Instance::new(model, checkpoint),
                Started {
                    projection: P::NAME,
                    snapshot: Some(checkpoint),
                },
            )
        }
        Err(skipped) => {
            if let Skipped::Unusable(reason) = skipped {
                tracing::warn!(projection = P::NAME, %reason, "snapshot ignored; rebuilding from the log");
            }
            (
                Instance::new(P::new(catalog.clone()), Checkpoint::default()),
                Started {
                    projection: P::NAME,
                    snapshot: None,
                },
            )
        }
    }
}

impl ReadModels {
    /// Loads the catalog and each projection from their snapshots in `snapshot_directory`
    /// where usable (else from the first event) and starts one runner feeding all of them.
    pub async fn start<S: EventStore + ?Sized>(
        store: Arc<S>,
        snapshot_directory: Option<PathBuf>,
    ) -> ReadModels {
        let directory = snapshot_directory.as_deref();
        let loaded = match directory {
            Some(directory) => snapshot::load_catalog(directory, &store).await,
            None => Err(Skipped::Missing),
        };
        let catalog = match loaded {
            Ok((catalog, checkpoint)) => {
                tracing::info!(position = checkpoint.position, "loaded the id catalog");
                catalog
            }
            Err(skipped) => {
                if let Skipped::Unusable(reason) = skipped {
                    tracing::warn!(%reason, "id catalog snapshot ignored; every projection is rebuilt from the log");
                }
                Catalog::new()
            }
        };
        let (family_tree, a) = instance::<FamilyTree, S>(directory, &store, &catalog).await;
        let (allocations, b) = instance::<Allocations, S>(directory, &store, &catalog).await;
        let (credits, c) = instance::<Credits, S>(directory, &store, &catalog).await;
        let (statements, d) = instance::<Statements, S>(directory, &store, &catalog).await;
        let feeds: Vec<Arc<dyn Feed>> = vec![
            Arc::clone(&family_tree) as Arc<dyn Feed>,
            Arc::clone(&allocations) as Arc<dyn Feed>,
            Arc::clone(&credits) as Arc<dyn Feed>,
            Arc::clone(&statements) as Arc<dyn Feed>,
        ];
        let runner = Runner::spawn(store, feeds, catalog.clone());
        ReadModels {
            family_tree: Served::new(family_tree),
            allocations: Served::new(allocations),
            credits: Served::new(credits),
            statements: Served::new(statements),
            runners: Mutex::new(vec![runner]),
            catalog,
            snapshot_directory,
            started: vec![a, b, c, d],
        }
    }

    /// How each projection started.
    pub fn started(&self) -> &[Started] {
        &self.started
    }

    /// The id catalog every instance, serving or being rebuilt, numbers its ids by.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn target(&self, name: &str) -> Result<&dyn Rebuild, RebuildError> {
        Ok(match name {
            FamilyTree::NAME => &self.family_tree,
            Allocations::NAME => &self.allocations,
            Credits::NAME => &self.credits,
            Statements::NAME => &self.statements,
            other => return Err(RebuildError::UnknownProjection(other.to_string())),
        })
    }

    /// Rebuilds the named projections (all when `names` is empty) beside the serving ones
    /// and switches to them once caught up; see `rebuild::rebuild`.
    pub async fn rebuild<S: EventStore + ?Sized>(
        &self,
        store: Arc<S>,
        names: &[String],
        on_progress: impl FnMut(&Progress) + Send,
    ) -> Result<RebuildReport, RebuildError> {
        let mut targets = Vec::new();
        let all: Vec<String> = PROJECTION_NAMES.iter().map(|n| n.to_string()).collect();
        for name in if names.is_empty() { &all } else { names } {
            let target = self.target(name)?;
            if !targets
                .iter()
                .any(|t: &&dyn Rebuild| t.name() == target.name())
            {
                targets.push(target);
            }
        }
        let (report, runner) =
            rebuild::rebuild(store, &targets, &self.catalog, on_progress).await?;
        let mut runners = self.runners.lock().expect("never poisoned");
        runners.retain(|runner| !runner.is_finished());
        runners.push(runner);
        Ok(report)
    }

    /// Writes a snapshot of every serving instance into the snapshot directory, then the
    /// catalog's (last: it must be at or past every model's position).
    pub async fn write_snapshots(&self) -> Result<Vec<(PathBuf, Checkpoint)>, SnapshotError> {
        let Some(directory) = &self.snapshot_directory else {
            return Ok(Vec::new());
        };
        Ok(vec![
            snapshot::save(directory, &self.family_tree.instance()).await?,
            snapshot::save(directory, &self.allocations.instance()).await?,
            snapshot::save(directory, &self.credits.instance()).await?,
            snapshot::save(directory, &self.statements.instance()).await?,
            snapshot::save_catalog(directory, &self.catalog).await?,
        ])
    }

    /// Writes the snapshot of one projection, then the catalog's (which must be at or past
    /// it).
    pub async fn write_snapshot(
        &self,
        name: &str,
    ) -> Result<Option<(PathBuf, Checkpoint)>, SnapshotError> {
        let Some(directory) = &self.snapshot_directory else {
            return Ok(None);
        };
        let saved = match name {
            FamilyTree::NAME => snapshot::save(directory, &self.family_tree.instance()).await?,
            Allocations::NAME => snapshot::save(directory, &self.allocations.instance()).await?,
            Credits::NAME => snapshot::save(directory, &self.credits.instance()).await?,
            Statements::NAME => snapshot::save(directory, &self.statements.instance()).await?,
            _ => return Ok(None),
        };
        snapshot::save_catalog(directory, &self.catalog).await?;
        Ok(Some(saved))
    }

    /// Stops every runner; the instances keep what they applied.
    pub async fn stop(&self) {
        let runners: Vec<Runner> =
            std::mem::take(&mut *self.runners.lock().expect("never poisoned"));
        for runner in runners {
            runner.stop().await;
        }
    }
}
