//! The projection runner: one task reads the store's subscription, decodes each event once
//! and numbers its ids in the shared catalog (`crate::catalog`), applies it to every
//! instance it feeds, then publishes each instance's checkpoint (the last applied
//! position) on a `watch` channel. Queries wait on that channel for the
//! position they need (read-your-writes), bounded by a deadline — no polling, no sleeps.
//!
//! An `Instance` is one copy of a read model with its checkpoint. A `Served` projection is
//! the instance that currently answers queries, swappable: a rebuild builds a new instance
//! beside it and switches under a lock held only for the swap of one `Arc`.
//!
//! Locks: the model sits in a std `RwLock` (no `.await` happens while it is held); the
//! runner holds the write lock for at most `APPLY_CHUNK_EVENTS_MAX` events at a time, so a
//! query never waits long behind a catch-up.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ledger::store::{EventStore, Hash32, Position, RecordBatch, StoreError};
use thiserror::Error;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::catalog::Catalog;
use crate::projection::{AppliedEvent, Projection};

/// Events applied under one hold of an instance's write lock.
pub const APPLY_CHUNK_EVENTS_MAX: usize = 1_024;
/// Batches at least this long are applied to several instances in parallel.
pub const PARALLEL_APPLY_EVENTS_MIN: usize = 256;
/// The longest any query waits for a position, whatever the caller asks.
pub const QUERY_WAIT_MAX: Duration = Duration::from_secs(60);

/// The last event an instance applied: its position and its link in the hash chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: Position,
    pub hash: Hash32,
}

/// What an instance publishes after every chunk it applies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fed {
    pub checkpoint: Checkpoint,
    /// Set once the instance's runner stopped for good (store closed, undecodable event).
    pub stopped: Option<Arc<str>>,
}

/// One copy of a read model and the position it reflects.
pub struct Instance<P> {
    name: &'static str,
    state: RwLock<(P, Checkpoint)>,
    fed: watch::Sender<Fed>,
    /// No longer served: its runner wakes and drops it, freeing its memory at once.
    retired: watch::Sender<bool>,
}

impl<P: Projection> Instance<P> {
    pub fn new(model: P, checkpoint: Checkpoint) -> Arc<Instance<P>> {
        Arc::new(Instance {
            name: P::NAME,
            state: RwLock::new((model, checkpoint)),
            fed: watch::Sender::new(Fed {
                checkpoint,
                stopped: None,
            }),
            retired: watch::Sender::new(false),
        })
    }

    pub fn checkpoint(&self) -> Checkpoint {
        self.read(|_, checkpoint| checkpoint)
    }

    /// Runs `f` on the model as it is now, with the checkpoint it reflects.
    pub fn read<T>(&self, f: impl FnOnce(&P, Checkpoint) -> T) -> T {
        let guard = self
            .state
            .read()
            .expect("a read model's lock is never poisoned");
        f(&guard.0, guard.1)
    }

    pub fn subscribe(&self) -> watch::Receiver<Fed> {
        self.fed.subscribe()
    }
}

/// What the runner needs of an instance, whatever its model.
pub trait Feed: Send + Sync {
    fn name(&self) -> &'static str;
    fn position(&self) -> Position;
    /// Applies the events after the checkpoint, then publishes the new checkpoint.
    fn apply_chunk(&self, events: &[AppliedEvent]);
    fn stop(&self, reason: &str);
    fn is_retired(&self) -> bool;
    fn watch_retired(&self) -> watch::Receiver<bool>;
    fn subscribe(&self) -> watch::Receiver<Fed>;
}

impl<P: Projection> Feed for Instance<P> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn position(&self) -> Position {
        self.checkpoint().position
    }

    fn apply_chunk(&self, events: &[AppliedEvent]) {
        let checkpoint = {
            let mut guard = self
                .state
                .write()
                .expect("a read model's lock is never poisoned");
            let (model, checkpoint) = &mut *guard;
            for event in events {
                if event.position <= checkpoint.position {
                    continue;
                }
                assert_eq!(
                    event.position,
                    checkpoint.position + 1,
                    "{}: events arrive in order without gaps",
                    self.name
                );
                model.apply(event);
                *checkpoint = Checkpoint {
                    position: event.position,
                    hash: event.hash,
                };
            }
            *checkpoint
        };
        self.fed.send_if_modified(|fed| {
            let changed = fed.checkpoint != checkpoint;
            fed.checkpoint = checkpoint;
            changed
        });
    }

    fn stop(&self, reason: &str) {
        let reason: Arc<str> = Arc::from(reason);
        self.fed.send_modify(|fed| fed.stopped = Some(reason));
    }

    fn is_retired(&self) -> bool {
        *self.retired.borrow()
    }

    fn watch_retired(&self) -> watch::Receiver<bool> {
        self.retired.subscribe()
    }

    fn subscribe(&self) -> watch::Receiver<Fed> {
        self.fed.subscribe()
    }
}

/// A query's result and the position it reflects (at least the one asked for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer<T> {
    pub value: T,
    pub position: Position,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum QueryError {
    #[error("{projection} has applied up to position {reached}; position {min_position} was not reached within {waited:?}")]
    Timeout {
        projection: &'static str,
        min_position: Position,
        reached: Position,
        waited: Duration,
    },
    #[error("{projection} stopped at position {reached} before reaching {min_position}: {reason}")]
    Stopped {
        projection: &'static str,
        min_position: Position,
        reached: Position,
        reason: String,
    },
}

/// The instance of a projection that answers queries, switchable by a rebuild.
pub struct Served<P> {
    /// A std lock held only to clone or swap the `Arc`.
    current: RwLock<Arc<Instance<P>>>,
    /// Bumped at every switch, so waiters move to the new instance.
    generation: watch::Sender<u64>,
}

impl<P: Projection> Served<P> {
    pub fn new(instance: Arc<Instance<P>>) -> Arc<Served<P>> {
        Arc::new(Served {
            current: RwLock::new(instance),
            generation: watch::Sender::new(0),
        })
    }

    pub fn name(&self) -> &'static str {
        P::NAME
    }

    /// The instance serving now.
    pub fn instance(&self) -> Arc<Instance<P>> {
        Arc::clone(&self.current.read().expect("never poisoned"))
    }

    /// How many times the serving instance was switched.
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    pub fn checkpoint(&self) -> Checkpoint {
        self.instance().checkpoint()
    }

    /// Answers from the serving instance as it is, without waiting.
    pub fn query_now<T>(&self, f: impl FnOnce(&P) -> T) -> Answer<T> {
        self.instance().read(|model, checkpoint| Answer {
            value: f(model),
            position: checkpoint.position,
        })
    }

    /// Waits (at most `wait_max`, capped by `QUERY_WAIT_MAX`) until the serving instance
    /// has applied `min_position`, then answers from it. A caller that wrote at position p
    /// and asks with `min_position = p` reads its own write.
    pub async fn query<T>(
        &self,
        min_position: Position,
        wait_max: Duration,
        f: impl FnOnce(&P) -> T,
    ) -> Result<Answer<T>, QueryError> {
        let waited = wait_max.min(QUERY_WAIT_MAX);
        let deadline = Instant::now() + waited;
        let mut generation = self.generation.subscribe();
        loop {
            generation.borrow_and_update();
            let instance = self.instance();
            let mut fed = instance.subscribe();
            let outcome = tokio::time::timeout_at(deadline, async {
                tokio::select! {
                    reached = fed.wait_for(|fed| {
                        fed.checkpoint.position >= min_position || fed.stopped.is_some()
                    }) => Some(reached.map(|fed| fed.clone())),
                    // Switched while waiting: wait on the new instance instead.
                    _ = generation.changed() => None,
                }
            })
            .await;
            let reached = instance.checkpoint().position;
            match outcome {
                Err(_elapsed) => {
                    return Err(QueryError::Timeout {
                        projection: P::NAME,
                        min_position,
                        reached,
                        waited,
                    })
                }
                Ok(None) => continue,
                Ok(Some(fed)) => {
                    let stopped = fed.ok().and_then(|fed| fed.stopped).filter(|_| {
                        // A stopped instance still answers what it reached.
                        reached < min_position
                    });
                    if let Some(reason) = stopped {
                        return Err(QueryError::Stopped {
                            projection: P::NAME,
                            min_position,
                            reached,
                            reason: reason.to_string(),
                        });
                    }
                    return Ok(instance.read(|model, checkpoint| Answer {
                        value: f(model),
                        position: checkpoint.position,
                    }));
                }
            }
        }
    }

    /// Makes `instance` the one that serves; the old one is retired (its runner drops it)
    /// and returned. Queries already holding the old instance finish on it.
    pub fn switch(&self, instance: Arc<Instance<P>>) -> Arc<Instance<P>> {
        let old = {
            let mut current = self.current.write().expect("never poisoned");
            std::mem::replace(&mut *current, instance)
        };
        old.retired.send_replace(true);
        self.generation.send_modify(|generation| *generation += 1);
        old
    }
}

/// A running feed task; stops when told, when every instance it feeds is retired, or when
/// the store closes.
pub struct Runner {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("finished", &self.task.is_finished())
            .finish()
    }
}

impl Runner {
    /// Starts feeding `feeds` from the event after the lowest of their checkpoints, each
    /// event's ids resolved by `catalog` (the one the instances' models were made with).
    pub fn spawn<S: EventStore + ?Sized>(
        store: Arc<S>,
        feeds: Vec<Arc<dyn Feed>>,
        catalog: Catalog,
    ) -> Runner {
        let (shutdown, stop) = watch::channel(false);
        let task = tokio::spawn(run(store, feeds, catalog, stop));
        Runner { shutdown, task }
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the task after the chunk it is applying; its instances keep what they have.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// A large batch for an apply thread, and whom to tell when it is applied.
struct ApplyJob {
    events: Arc<Vec<AppliedEvent>>,
    done: oneshot::Sender<()>,
}

/// An instance the runner feeds, with its apply thread when the runner feeds several.
///
/// Large batches go to one long-lived thread per instance rather than to threads started per
/// chunk (three thread starts per 1,024 events, each with a fresh allocator heap, and a
/// model's memory freed on threads other than the one that allocated it). A model is thus
/// always applied on the same thread, and the runner's task awaits the batch instead of
/// blocking a runtime thread, so the reader decodes the next batch meanwhile. Measured on
/// a 1M-event rebuild: see ARCHITECTURE.md (the read side, known limits).
struct Applier {
    feed: Arc<dyn Feed>,
    /// One job at most is queued: the runner waits for every job of a batch before the
    /// next. Dropping the sender ends the thread, which drops its handle on the instance.
    jobs: Option<std::sync::mpsc::SyncSender<ApplyJob>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Applier {
    /// Ends the thread and waits for it, so a retired instance is freed when its applier
    /// is dropped, not whenever the thread next runs. Between chunks the thread is idle
    /// (the runner awaited its job), so this waits for nothing but its exit.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            // A panic there was already reported by the job it failed.
            let _ = thread.join();
        }
    }
}

impl Applier {
    fn inline(feed: Arc<dyn Feed>) -> Applier {
        Applier {
            feed,
            jobs: None,
            thread: None,
        }
    }

    fn threaded(feed: Arc<dyn Feed>) -> std::io::Result<Applier> {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<ApplyJob>(1);
        let worker_feed = Arc::clone(&feed);
        let thread = std::thread::Builder::new()
            .name(format!("apply-{}", feed.name()))
            .spawn(move || {
                for ApplyJob { events, done } in queue {
                    for chunk in events.chunks(APPLY_CHUNK_EVENTS_MAX) {
                        worker_feed.apply_chunk(chunk);
                    }
                    // Before `done`: the runner then holds the batch's last reference.
                    drop(events);
                    let _ = done.send(());
                }
            })?;
        Ok(Applier {
            feed,
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }
}

/// Applies a decoded batch to every instance: a large one to several instances at once on
/// their apply threads (the models are independent), so a catch-up uses every core; a
/// small one (live, a few events) here, where a hand-off would cost more than it saves.
///
/// An apply thread gets the whole batch as one job and applies it chunk by chunk, each
/// under its own hold of the write lock (`Feed::apply_chunk`), so queries still wait one
/// chunk at most, while the runner hands off and waits once per batch: a hand-off per
/// chunk woke every thread four times as often, and in a virtual machine the context
/// switches cost more than the smaller chunks saved.
async fn apply_to_all(appliers: &[Applier], events: &Arc<Vec<AppliedEvent>>) {
    let live: Vec<&Applier> = appliers
        .iter()
        .filter(|applier| !applier.feed.is_retired())
        .collect();
    if live.len() < 2 || events.len() < PARALLEL_APPLY_EVENTS_MIN {
        for chunk in events.chunks(APPLY_CHUNK_EVENTS_MAX) {
            for applier in &live {
                applier.feed.apply_chunk(chunk);
            }
            // Let queries and other tasks in between chunks of a long catch-up.
            tokio::task::yield_now().await;
        }
        return;
    }
    let mut applied = Vec::with_capacity(live.len());
    for applier in live {
        match &applier.jobs {
            Some(jobs) => {
                let (done, finished) = oneshot::channel();
                jobs.send(ApplyJob {
                    events: Arc::clone(events),
                    done,
                })
                .expect("an apply thread runs while its runner holds its sender");
                applied.push(finished);
            }
            None => {
                for chunk in events.chunks(APPLY_CHUNK_EVENTS_MAX) {
                    applier.feed.apply_chunk(chunk);
                }
            }
        }
    }
    for finished in applied {
        // As with a panic on a scoped thread: a model that panicked ends the runner.
        finished.await.expect("an apply thread panicked");
    }
}

/// Decoded batches waiting to be applied: reading and decoding the next batch overlaps
/// applying this one, and a slow model holds back at most this many batches.
const DECODED_BATCHES_QUEUED_MAX: usize = 2;
/// Record batches in circulation: one being read, one queued, one being decoded, so the
/// store's read of the next batch overlaps the decoding of this one.
const READ_BATCHES_MAX: usize = 3;

/// A batch read and decoded, or why reading stopped (after the events before the failure).
type Decoded = (Vec<AppliedEvent>, Option<String>);

/// Reads the log from `from` on (`subscribe_batches`: the events in the log, then new ones
/// as they become durable, no gap) into a few reused batches that it hands to the decode
/// thread: the store reads the next batch while this one is decoded. Ends with an `Err`
/// (why) when the store fails or closes.
async fn read_batches<S: EventStore + ?Sized>(
    store: Arc<S>,
    from: Position,
    read: tokio::sync::mpsc::Sender<Result<RecordBatch, String>>,
    mut returned: tokio::sync::mpsc::Receiver<RecordBatch>,
) {
    let mut subscription = ledger::store::subscribe_batches(store, from);
    let mut made = 0usize;
    loop {
        let mut batch = match returned.try_recv() {
            Ok(batch) => batch,
            Err(_) if made < READ_BATCHES_MAX => {
                made += 1;
                RecordBatch::new()
            }
            Err(_) => match returned.recv().await {
                Some(batch) => batch,
                // The decode thread ended: nobody reads what this would send.
                None => return,
            },
        };
        if let Err(error) = subscription.next_into(&mut batch).await {
            if !matches!(error, StoreError::Closed) {
                tracing::error!(%error, "projection runner: reading the log failed");
            }
            let _ = read
                .send(Err(format!("the store subscription failed: {error}")))
                .await;
            return;
        }
        if read.send(Ok(batch)).await.is_err() {
            return;
        }
    }
}

/// The decode thread: decodes each event of each batch once, in place (no owned envelope
/// in between; the ids of most events borrowed, not copied), and numbers its ids in the
/// catalog, ahead of the applier.
///
/// A thread of its own rather than a task: everything a batch's events allocate (the
/// `Vec` of events, sources, fully decoded events) is allocated here, and the runner hands
/// each applied `Vec` back (`recycled`), so it is emptied here too. Freed on another thread,
/// each block went through the allocator's cross-thread free path (~12% of a rebuild's CPU
/// before); a task would move between runtime threads.
struct Decoder {
    catalog: Catalog,
    read: tokio::sync::mpsc::Receiver<Result<RecordBatch, String>>,
    returned: tokio::sync::mpsc::Sender<RecordBatch>,
    decoded: tokio::sync::mpsc::Sender<Decoded>,
    recycled: std::sync::mpsc::Receiver<Vec<AppliedEvent>>,
}

impl Decoder {
    /// Appends `batch`'s events to `events`; stops at the first that does not decode,
    /// saying why.
    fn decode(&self, batch: &RecordBatch, events: &mut Vec<AppliedEvent>) -> Option<String> {
        let mut views = batch.iter();
        while events.len() < batch.len() {
            // One write lock of the catalog per chunk: queries naming ids wait one chunk
            // at most.
            let chunk = views.by_ref().take(APPLY_CHUNK_EVENTS_MAX);
            if let Err((position, error)) = self.catalog.decode_views(chunk, events) {
                let reason = format!("event at position {position} does not decode: {error}");
                tracing::error!(%reason, "projection runner stopped");
                return Some(reason);
            }
        }
        None
    }

    fn run(mut self) {
        while let Some(batch) = self.read.blocking_recv() {
            let batch = match batch {
                Ok(batch) => batch,
                Err(reason) => {
                    let _ = self.decoded.blocking_send((Vec::new(), Some(reason)));
                    return;
                }
            };
            let mut events = self.recycled.try_recv().unwrap_or_default();
            events.clear();
            events.reserve(batch.len());
            let failure = self.decode(&batch, &mut events);
            // The pool holds every batch in circulation: there is room for this one.
            let _ = self.returned.try_send(batch);
            let stopping = failure.is_some();
            if self.decoded.blocking_send((events, failure)).is_err() || stopping {
                return;
            }
        }
    }
}

/// An apply thread per instance when there are several, else none.
fn appliers(feeds: Vec<Arc<dyn Feed>>) -> Result<Vec<Applier>, String> {
    if feeds.len() < 2 {
        return Ok(feeds.into_iter().map(Applier::inline).collect());
    }
    feeds
        .into_iter()
        .map(|feed| {
            Applier::threaded(feed)
                .map_err(|error| format!("could not start an apply thread: {error}"))
        })
        .collect()
}

async fn run<S: EventStore + ?Sized>(
    store: Arc<S>,
    feeds: Vec<Arc<dyn Feed>>,
    catalog: Catalog,
    mut stop: watch::Receiver<bool>,
) {
    let from = feeds.iter().map(|feed| feed.position()).min().unwrap_or(0) + 1;
    let mut appliers = match appliers(feeds.clone()) {
        Ok(appliers) => appliers,
        Err(reason) => {
            tracing::error!(%reason, "projection runner stopped");
            for feed in &feeds {
                feed.stop(&reason);
            }
            return;
        }
    };
    let (read_sender, read) = tokio::sync::mpsc::channel(1);
    let (returned, returned_receiver) = tokio::sync::mpsc::channel(READ_BATCHES_MAX);
    let (sender, mut decoded) = tokio::sync::mpsc::channel(DECODED_BATCHES_QUEUED_MAX);
    let (recycle, recycled) = std::sync::mpsc::channel();
    let decoder = Decoder {
        catalog,
        read,
        returned,
        decoded: sender,
        recycled,
    };
    // Ends when the reader ends (its channel closes) or this task drops `decoded`.
    if let Err(error) = std::thread::Builder::new()
        .name("projections-decode".to_string())
        .spawn(move || decoder.run())
    {
        let reason = format!("could not start the decode thread: {error}");
        tracing::error!(%reason, "projection runner stopped");
        for feed in &feeds {
            feed.stop(&reason);
        }
        return;
    }
    drop(feeds);
    let reader = tokio::spawn(read_batches(store, from, read_sender, returned_receiver));
    let stopped = loop {
        // Dropping a retired instance's applier ends its thread and frees the model.
        appliers.retain(|applier| !applier.feed.is_retired());
        if appliers.is_empty() {
            break None;
        }
        let mut retirements: Vec<watch::Receiver<bool>> = appliers
            .iter()
            .map(|applier| applier.feed.watch_retired())
            .collect();
        let any_retired = futures::future::select_all(retirements.iter_mut().map(|retired| {
            Box::pin(async move {
                let _ = retired.wait_for(|retired| *retired).await;
            })
        }));
        let batch = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break Some("the projection runner was stopped".to_string()),
            // A switched-out instance is dropped now, not at the next event.
            _ = any_retired => continue,
            batch = decoded.recv() => batch,
        };
        let Some((events, failure)) = batch else {
            break Some("the projection runner's reader ended".to_string());
        };
        let events = Arc::new(events);
        apply_to_all(&appliers, &events).await;
        // Every apply thread let go of the batch before reporting its job done: hand it
        // back to be emptied, and reused, on the thread that allocated it.
        if let Ok(events) = Arc::try_unwrap(events) {
            let _ = recycle.send(events);
        }
        // A read model never skips a fact: what came before a failure is applied, then
        // every instance stops with the reason.
        if failure.is_some() {
            break failure;
        }
    };
    reader.abort();
    // The decode thread ends at its next hand-off.
    drop(decoded);
    if let Some(reason) = stopped {
        for applier in &appliers {
            applier.feed.stop(&reason);
        }
    }
}
