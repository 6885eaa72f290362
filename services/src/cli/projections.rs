//! `stemma projections …`: operate on the read models of a data directory.
//!
//! `rebuild` opens the store (taking its writer lock, so not while `stemma serve` runs on
//! the same directory), loads the current snapshots — the version that serves — rebuilds the
//! chosen projections beside them from the first event with a progress bar, switches, and
//! writes the new snapshots atomically into `<data>/projections/`. A running service does
//! the same in process, without downtime, through the admin service.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::builder::PossibleValuesParser;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ledger::store::{EmbeddedOptions, EmbeddedStore, EventStore, StoreError};
use projections::snapshot::SnapshotError;
use projections::{Progress, ReadModels, RebuildError, PROJECTION_NAMES};
use serde::Serialize;
use thiserror::Error;

/// Where snapshots live inside a data directory.
pub const SNAPSHOT_DIRECTORY: &str = "projections";

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Rebuild projections from the whole log, then switch to them and write their
    /// snapshots. Shows events/s, position and ETA while it runs.
    Rebuild {
        /// The data directory.
        #[arg(long, default_value = "./stemma-data")]
        data: PathBuf,
        /// The projection to rebuild (repeat for several); all when omitted.
        #[arg(long, value_parser = PossibleValuesParser::new(PROJECTION_NAMES))]
        projection: Vec<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Error)]
pub enum ProjectionsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Rebuild(#[from] RebuildError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

#[derive(Serialize)]
struct Rebuilt {
    projections: Vec<&'static str>,
    position: u64,
    elapsed_ms: u128,
    events_per_second: f64,
    snapshots: Vec<String>,
}

pub async fn run(command: ProjectionsCommand) -> Result<(), ProjectionsError> {
    match command {
        ProjectionsCommand::Rebuild {
            data,
            projection,
            json,
        } => rebuild(&data, &projection, json).await,
    }
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} rebuilding {prefix} [{bar:40}] {pos}/{len} events, {msg}",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn show(bar: &ProgressBar, progress: &Progress) {
    bar.set_prefix(progress.projections.join(", "));
    bar.set_length(progress.head);
    bar.set_position(progress.position);
    let eta = progress
        .eta
        .map(|eta| format!("ETA {}s", eta.as_secs()))
        .unwrap_or_else(|| "ETA -".to_string());
    bar.set_message(format!("{:.0} events/s, {eta}", progress.events_per_second));
}

async fn rebuild(data: &Path, names: &[String], json: bool) -> Result<(), ProjectionsError> {
    let (store, _report) = EmbeddedStore::open(data, EmbeddedOptions::default()).await?;
    let store = Arc::new(store);
    let models = ReadModels::start(store.clone(), Some(data.join(SNAPSHOT_DIRECTORY))).await;
    let bar = progress_bar();
    let outcome = models
        .rebuild(store.clone() as Arc<dyn EventStore>, names, |progress| {
            show(&bar, progress)
        })
        .await;
    bar.finish_and_clear();
    let written = match outcome {
        Ok(report) => {
            let mut snapshots = Vec::new();
            for name in &report.projections {
                if let Some((path, _)) = models.write_snapshot(name).await? {
                    snapshots.push(path.display().to_string());
                }
            }
            Ok(Rebuilt {
                projections: report.projections,
                position: report.position,
                elapsed_ms: report.elapsed.as_millis(),
                events_per_second: report.events_per_second,
                snapshots,
            })
        }
        Err(error) => Err(error),
    };
    models.stop().await;
    store.close().await;
    let rebuilt = written?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rebuilt).expect("the result serializes")
        );
    } else {
        println!(
            "rebuilt {} up to position {} in {:.2} s ({:.0} events/s)",
            rebuilt.projections.join(", "),
            rebuilt.position,
            rebuilt.elapsed_ms as f64 / 1_000.0,
            rebuilt.events_per_second
        );
        for path in &rebuilt.snapshots {
            println!("snapshot {path}");
        }
    }
    Ok(())
}
