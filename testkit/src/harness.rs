//! A decider over a fresh embedded store in a temporary directory, with a manual clock:
//! what the ledger's decider and audit tests and the projections' tests all run against.

use std::sync::Arc;

use ledger::decider::{CommandEnvelope, CommandError, CommandOutcome, Decider, DeciderHandle};
use ledger::domain::decide::finalization_blockers;
use ledger::domain::ids::DistributionId;
use ledger::domain::privacy::FileKeyVault;
use ledger::domain::Blocker;
use ledger::domain::Command;
use ledger::store::embedded::{IoFaults, IoOperation};
use ledger::store::{
    Actor, CommandId, EmbeddedOptions, EmbeddedStore, EventStore, OnBehalfOf, ServiceName,
};
use ledger::time::{ManualClock, Timestamp};

use crate::t0;

pub struct Harness {
    pub store: Arc<EmbeddedStore>,
    pub handle: DeciderHandle,
    pub task: tokio::task::JoinHandle<()>,
    pub clock: Arc<ManualClock>,
    pub directory: tempfile::TempDir,
    next_command: std::sync::atomic::AtomicU64,
}

fn options(clock: &Arc<ManualClock>, faults: Option<Arc<dyn IoFaults>>) -> EmbeddedOptions {
    EmbeddedOptions {
        // Larger than the largest append (32 MiB), which must fit one segment.
        segment_size_bytes: 40 * 1024 * 1024,
        clock: clock.clone(),
        faults,
        ..EmbeddedOptions::default()
    }
}

/// Fails every `fdatasync` while switched on.
#[derive(Default)]
pub struct SyncFailures(pub std::sync::atomic::AtomicBool);

impl IoFaults for SyncFailures {
    fn before(&self, operation: IoOperation) -> std::io::Result<()> {
        if operation == IoOperation::Sync && self.0.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fdatasync failure"));
        }
        Ok(())
    }
}

impl Harness {
    pub async fn new() -> Harness {
        let directory = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(t0()));
        Harness::open(directory, clock, 0, None).await
    }

    /// A harness whose store fails its `fdatasync`s while `faults` is switched on.
    pub async fn with_faults(faults: Arc<SyncFailures>) -> Harness {
        let directory = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(t0()));
        Harness::open(directory, clock, 0, Some(faults)).await
    }

    async fn open(
        directory: tempfile::TempDir,
        clock: Arc<ManualClock>,
        next_command: u64,
        faults: Option<Arc<dyn IoFaults>>,
    ) -> Harness {
        let (store, _) = EmbeddedStore::open(directory.path().join("log"), options(&clock, faults))
            .await
            .unwrap();
        let store = Arc::new(store);
        let vault = Arc::new(FileKeyVault::open(directory.path().join("keys")).unwrap());
        let (handle, task) = Decider::start(store.clone(), clock.clone(), vault)
            .await
            .unwrap();
        Harness {
            store,
            handle,
            task,
            clock,
            directory,
            next_command: next_command.into(),
        }
    }

    /// Stops the decider and closes the store, releasing the lock; keeps the directory.
    pub async fn close(self) -> tempfile::TempDir {
        self.stop().await.0
    }

    /// Stops the decider, closes the store and opens both again on the same directory.
    pub async fn restart(self) -> Harness {
        let (directory, clock, next_command) = self.stop().await;
        Harness::open(directory, clock, next_command, None).await
    }

    async fn stop(self) -> (tempfile::TempDir, Arc<ManualClock>, u64) {
        let Harness {
            store,
            handle,
            task,
            clock,
            directory,
            next_command,
        } = self;
        drop(handle);
        task.await.unwrap();
        store.close().await;
        drop(store);
        (directory, clock, next_command.into_inner())
    }

    pub fn envelope(command_id: &str, command: Command) -> CommandEnvelope {
        CommandEnvelope {
            expected_version: None,
            command_id: CommandId::new(command_id).unwrap(),
            correlation_id: None,
            causation_id: None,
            actor: Actor {
                service: ServiceName::new("gateway").unwrap(),
                on_behalf_of: Some(OnBehalfOf::new("alice").unwrap()),
            },
            command,
        }
    }

    pub async fn execute_as(
        &self,
        command_id: &str,
        command: Command,
    ) -> Result<CommandOutcome, CommandError> {
        self.handle
            .execute(Harness::envelope(command_id, command))
            .await
    }

    pub async fn execute(&self, command: Command) -> Result<CommandOutcome, CommandError> {
        let n = self
            .next_command
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.execute_as(&format!("cmd-{n}"), command).await
    }

    pub async fn ok(&self, command: Command) -> CommandOutcome {
        let description = format!("{command:?}");
        match self.execute(command).await {
            Ok(outcome) => outcome,
            Err(error) => panic!("{description}: {error}"),
        }
    }

    /// Where tests of read-model snapshots keep them: inside the harness's directory, so
    /// they go with it.
    pub fn snapshot_directory(&self) -> std::path::PathBuf {
        self.directory.path().join("snapshots")
    }

    /// What the domain says blocks finalizing `distribution_id` at `now` (nothing once
    /// finalized); `None` when there is no such distribution. What the read models' and the
    /// audit's blockers are checked against.
    pub async fn domain_blockers(
        &self,
        distribution_id: &DistributionId,
        now: Timestamp,
    ) -> Option<Vec<Blocker>> {
        let distribution_id = distribution_id.clone();
        self.handle
            .inspect(move |state| {
                state.distribution(&distribution_id).map(|d| {
                    if d.amounts.is_some() {
                        Vec::new()
                    } else {
                        finalization_blockers(state, d, now).0
                    }
                })
            })
            .await
            .unwrap()
    }

    pub async fn head(&self) -> u64 {
        self.store.head().await.unwrap().position
    }
}
