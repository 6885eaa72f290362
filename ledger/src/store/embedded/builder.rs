//! The builder: decides and encodes appends into the next commit as they arrive, and hands
//! it to the syncer as soon as the syncer is idle (or the commit is full).
//!
//! It decides against three layers, newest first: the commit it is building, the commit in
//! flight (written but maybe not durable yet: its stream versions and command ids) and the
//! durable index. A retry of a command id that is in the commit in flight is deferred and
//! decided again once that commit is durable, when the durable index answers it: it is
//! never written twice.
//!
//! When a commit comes back from the syncer durable and a next one is waiting, the builder
//! first hands that over (the syncer's `pwrite` then follows the `fdatasync` by one
//! hand-off), then indexes the durable commit, advances the head and answers its appenders
//! while the next one syncs. It decides nothing in between: a commit it decides against is
//! in flight or in the index, never in neither. With nothing waiting, or only a few
//! appends (`syncer::hand_over_first`), the syncer publishes the commit itself
//! (`syncer::Publisher`). When nothing arrived during that sync, the builder writes the
//! next (small) commit itself (`sync_here`), as a lone appender wants.
//!
//! Gathering: after the syncer published a commit itself, its appenders come back with
//! their next appends within microseconds, one after the other. Handing the idle syncer
//! whatever has arrived at that instant would give the first of them a commit of their own
//! and the rest the one after it, and once split they stay split. So the builder waits
//! until as many appends as that commit answered (plus those that were waiting) have
//! arrived, but no longer than that commit's sync took: a late appender would wait about
//! as long in the commit after it.

use std::ops::Range;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::index::CommandEntry;
use super::read;
use super::segment::SEGMENT_HEADER_BYTES;
use super::syncer::{self, Disk, Handoff, Published, Publisher, Synced, Written};
use super::writer::{
    Accepted, AppendReply, Commit, DecidingMaps, Shared, Submitted, WriterLimits, WriterMessage,
};
use crate::store::codec;
use crate::store::error::StoreError;
use crate::store::types::{AppendRequest, AppendResult, Hash32, Position, StreamId, StreamVersion};
use crate::time::{Clock, Timestamp};

/// Where the log will end once the commit in flight is durable: the next commit starts
/// here.
struct Tip {
    next_position: Position,
    hash: Hash32,
    recorded_at: Timestamp,
    /// Where the next commit goes in its segment, and that segment's size.
    offset: u64,
    segment_bytes: u64,
}

/// The longest the builder waits for the appenders of a published commit to come back,
/// however long its sync took (a stalled disk must not stall the next commit too).
const GATHER_WAIT_MAX: Duration = Duration::from_millis(2);

/// The most appends in a commit the builder writes itself (`sync_here`). What that saves
/// is a fixed cost per commit: the syncer's wake-up and the builder's, tens of µs between
/// one `fdatasync`'s return and the next `pwrite` for a lone appender. What it costs grows
/// with the commit: the builder answers all its appenders before it decides the first of
/// them back, where the syncer would answer while the builder decides. With 16 appenders
/// writing here still took less CPU per event; with hundreds the overlap wins.
const SYNC_HERE_APPENDS_MAX: usize = 32;

/// What the next commit waits for while the syncer is idle (see the module doc).
struct Gather {
    expected: usize,
    deadline: Instant,
}

/// The commit handed to the syncer and not yet durable: what deciding must see of it.
struct InFlight {
    synced: oneshot::Receiver<Synced>,
    maps: DecidingMaps,
}

pub struct Builder {
    shared: Arc<Shared>,
    limits: WriterLimits,
    clock: Arc<dyn Clock>,
    receiver: mpsc::UnboundedReceiver<WriterMessage>,
    queue_room: QueueRoom,
    syncer: SyncSender<Handoff>,
    tip: Tip,
    building: Option<Commit>,
    in_flight: Option<InFlight>,
    /// An append that did not fit in the rest of the segment: it starts the next commit.
    carried: Option<(Box<Submitted>, AppendReply)>,
    /// Retries of a command id in the commit in flight, decided again once it is durable.
    deferred: Vec<(Box<Submitted>, AppendReply)>,
    /// No more messages are taken (closed, or every sender is gone).
    closing: bool,
    close: Option<oneshot::Sender<()>>,
    /// The buffer of the last durable commit, kept for its capacity.
    reusable_buffer: Vec<u8>,
    /// The maps of the last durable commit, cleared, kept for their capacity.
    reusable_maps: DecidingMaps,
    /// Appends in the last commit handed to the syncer.
    last_commit_appends: usize,
    /// Set when a commit was published by the syncer or written here; taken when the
    /// next one is handed over or written.
    gather: Option<Gather>,
    publisher: Arc<Publisher>,
    disk: Arc<Mutex<Disk>>,
    /// No append arrived while the last commit was written and synced: the next one is
    /// written here (`sync_here`).
    quiet: bool,
    /// The stream version of each event of the append being decided (kept for its
    /// capacity).
    event_versions: Vec<StreamVersion>,
}

impl Builder {
    pub fn new(
        limits: WriterLimits,
        clock: Arc<dyn Clock>,
        receiver: mpsc::UnboundedReceiver<WriterMessage>,
        queue_room: Arc<Semaphore>,
        syncer: SyncSender<Handoff>,
        publisher: Arc<Publisher>,
        disk: Arc<Mutex<Disk>>,
    ) -> Builder {
        let (write_offset, active_segment_bytes) = disk.lock().expect("disk lock").end();
        let shared = publisher.shared.clone();
        let tip = {
            let index = shared.index.read().expect("index lock");
            Tip {
                next_position: index.head.position + 1,
                hash: index.head.hash,
                recorded_at: index.last_recorded_at,
                offset: write_offset,
                segment_bytes: active_segment_bytes,
            }
        };
        Builder {
            shared,
            limits,
            clock,
            receiver,
            queue_room: QueueRoom {
                semaphore: queue_room,
                taken: 0,
            },
            syncer,
            tip,
            building: None,
            in_flight: None,
            carried: None,
            deferred: Vec::new(),
            closing: false,
            close: None,
            reusable_buffer: Vec::new(),
            reusable_maps: DecidingMaps::default(),
            last_commit_appends: 0,
            gather: None,
            publisher,
            disk,
            // Until a commit shows that the appenders wait for their answers.
            quiet: false,
            event_versions: Vec::new(),
        }
    }

    /// Runs until closed (every append before the close durable and answered) or failed.
    /// Returns the close request to confirm once the syncer has stopped too.
    pub async fn run(mut self) -> Option<oneshot::Sender<()>> {
        loop {
            if self.in_flight.is_none() {
                // The syncer is idle: everything queued meanwhile joins this commit.
                while self.accepting() {
                    match self.receiver.try_recv() {
                        Ok(message) => self.take(Some(message)),
                        Err(_) => break,
                    }
                }
                if self.building.as_ref().is_some_and(|c| c.appends > 0) {
                    self.gather();
                    if self.sync_here_fits() {
                        if let Err(why) = self.sync_here() {
                            self.fail(&why);
                            return self.close.take();
                        }
                        continue;
                    }
                    self.hand();
                } else if self.closing {
                    return self.close.take();
                }
            }
            let accepting = self.accepting();
            self.queue_room.give_back();
            tokio::select! {
                biased;
                synced = until_synced(&mut self.in_flight) => match synced {
                    Synced::Written(written) => {
                        if let Err(why) = self.durable(*written) {
                            self.fail(&why);
                            return self.close.take();
                        }
                    }
                    Synced::Indexed(published) => self.indexed(published),
                    Synced::Failed(why) => {
                        self.fail(&why);
                        return self.close.take();
                    }
                },
                message = self.receiver.recv(), if accepting => {
                    self.take(message);
                    // Take what else is queued without going back through `select!`.
                    while self.accepting() {
                        match self.receiver.try_recv() {
                            Ok(message) => self.take(Some(message)),
                            Err(_) => break,
                        }
                    }
                    self.mark_waiting();
                }
            }
        }
    }

    /// Whether another append may join the commit being built.
    fn accepting(&self) -> bool {
        let full = self.carried.is_some()
            || self.building.as_ref().is_some_and(|commit| {
                commit.appends >= self.limits.commit_appends_max
                    || commit.buffer.len() >= self.limits.commit_bytes_max
            });
        !self.closing && !full
    }

    fn take(&mut self, message: Option<WriterMessage>) {
        match message {
            Some(WriterMessage::Append { request, reply }) => {
                self.queue_room.taken += 1;
                self.decide(request, reply);
            }
            Some(WriterMessage::Close { done }) => {
                self.close = Some(done);
                self.closing = true;
            }
            None => self.closing = true,
        }
    }

    fn building_appends(&self) -> usize {
        self.building.as_ref().map_or(0, |c| c.appends)
    }

    /// Tells the syncer how many appends wait for it (with enough of them it leaves the
    /// bookkeeping of the one it syncs to the builder, which hands the waiting ones over
    /// first).
    fn mark_waiting(&self) {
        self.publisher
            .waiting_appends
            .store(self.building_appends(), Ordering::Release);
    }

    /// With the syncer idle after it published a commit, waits (bounded) for that
    /// commit's appenders to come back, so that they join this commit rather than the one
    /// after it. Nothing is in flight, so new appends are all there is to wait for: it
    /// blocks on them with a deadline (`park_timeout` is precise to microseconds).
    fn gather(&mut self) {
        let Some(Gather { expected, deadline }) = self.gather.take() else {
            return;
        };
        // A lone appender is back already: nothing to wait for, nothing to set up.
        if !self.accepting() || self.building_appends() >= expected {
            return;
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut context = Context::from_waker(&waker);
        while self.accepting() && self.building_appends() < expected {
            match self.receiver.poll_recv(&mut context) {
                Poll::Ready(message) => self.take(message),
                Poll::Pending => {
                    self.queue_room.give_back();
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    std::thread::park_timeout(deadline - now);
                }
            }
        }
    }

    /// Whether the commit being built is one for the builder to write itself.
    fn sync_here_fits(&self) -> bool {
        self.quiet
            && self.limits.sync_on_builder_when_quiet
            && self.building_appends() <= SYNC_HERE_APPENDS_MAX
    }

    /// Seals the commit being built and hands it to the (idle) syncer.
    fn hand(&mut self) {
        let mut commit = self.seal();
        let (synced, outcome) = oneshot::channel();
        self.in_flight = Some(InFlight {
            synced: outcome,
            maps: DecidingMaps {
                stream_versions: std::mem::take(&mut commit.stream_versions),
                commands: std::mem::take(&mut commit.commands),
            },
        });
        self.syncer
            .send(Handoff { commit, synced })
            .expect("the syncer runs until it fails or the builder hangs up");
    }

    /// Writes, syncs and publishes the commit being built on this thread, with nothing in
    /// flight: what the syncer does, without waking it and being woken by it (a lone
    /// appender waits on both). Nothing is decided meanwhile: appends that arrive wait
    /// in the queue, and are decided against the index once this commit is in it. If any
    /// did arrive, the appenders do not wait for their answers, and the next commit goes
    /// to the syncer again, so that deciding and encoding it overlaps this sync.
    ///
    /// The order is the syncer's: the commit before this one is indexed (it came back
    /// before this one was sealed), this one is indexed and answered only after its
    /// `fdatasync` returned, and `HEAD` names it before the next commit is written. An
    /// error is the store's failure.
    fn sync_here(&mut self) -> Result<(), String> {
        debug_assert!(self.in_flight.is_none(), "one commit at a time");
        // Appends may queue during the sync.
        self.queue_room.give_back();
        let commit = self.seal();
        let syncer::WrittenAt {
            mut commit,
            offset,
            mut new_segment,
            sync_time,
        } = self.disk.lock().expect("disk lock").write_or_fail(commit)?;
        let arrived = self.receiver.len();
        let indexed = self
            .publisher
            .index_if_next(&commit, offset, &mut new_segment);
        assert!(indexed, "commits are indexed in order");
        // `HEAD` before the answers, as the syncer does (see `Syncer::run`).
        let head_file = self.publisher.write_head_file(commit.last_written());
        let appends = commit.appends;
        let maps = DecidingMaps {
            stream_versions: std::mem::take(&mut commit.stream_versions),
            commands: std::mem::take(&mut commit.commands),
        };
        let buffer = syncer::answer(commit, &self.publisher.answerer);
        self.reusable_maps = maps.cleared();
        if let Err(error) = head_file {
            return Err(self.shared.record_failure(&error));
        }
        self.indexed(Published {
            buffer,
            expected: appends + arrived,
            arrived,
            sync_time,
        });
        self.disk
            .lock()
            .expect("disk lock")
            .prepare_spare_when_half_full();
        Ok(())
    }

    /// Takes the commit being built, sealed, and moves the tip past it.
    fn seal(&mut self) -> Commit {
        self.gather = None;
        self.publisher.waiting_appends.store(0, Ordering::Release);
        let mut commit = self.building.take().expect("a commit is being built");
        commit.seal();
        self.last_commit_appends = commit.appends.min(self.limits.commit_appends_max);
        let bytes = commit.buffer.len() as u64;
        if bytes > 0 {
            // The same rule the syncer rolls by, so the next commit is cut where it must be.
            if self.tip.offset + bytes > self.tip.segment_bytes {
                self.tip.offset = SEGMENT_HEADER_BYTES;
                self.tip.segment_bytes = self.limits.segment_size_bytes;
            }
            self.tip.offset += bytes;
            self.tip.next_position = commit.next_position;
            self.tip.hash = commit.previous_hash;
            self.tip.recorded_at = commit.recorded_at;
        }
        commit
    }

    /// The commit in flight is durable and was indexed and answered by the syncer.
    fn indexed(&mut self, published: Published) {
        if let Some(in_flight) = self.in_flight.take() {
            self.reusable_maps = in_flight.maps.cleared();
        }
        self.reusable_buffer = published.buffer;
        self.quiet = published.arrived == 0;
        self.gather = Some(Gather {
            expected: published.expected.min(self.limits.commit_appends_max),
            deadline: Instant::now() + published.sync_time.min(GATHER_WAIT_MAX),
        });
        self.decide_postponed();
    }

    /// Decides again what waited for the commit in flight to be indexed.
    fn decide_postponed(&mut self) {
        for (request, reply) in std::mem::take(&mut self.deferred) {
            self.decide(request, reply);
        }
        if let Some((request, reply)) = self.carried.take() {
            self.decide(request, reply);
        }
        self.mark_waiting();
    }

    /// The commit in flight is durable, left to the builder to publish. Hands the next
    /// commit to the syncer first, then indexes and answers this one. An error is the
    /// store's failure, after this commit was indexed and answered (it is durable).
    fn durable(&mut self, written: Written) -> Result<(), String> {
        let Written {
            commit,
            offset,
            mut new_segment,
        } = written;
        // Everything queued meanwhile joins the next commit; deciding it still sees the
        // durable one as in flight.
        while self.accepting() {
            match self.receiver.try_recv() {
                Ok(message) => self.take(Some(message)),
                Err(_) => break,
            }
        }
        // HEAD before the next commit goes: if it cannot be written the store fails, and
        // nothing may be written after a commit whose appenders are told it failed.
        self.quiet = false;
        let head_file = self.publisher.write_head_file(commit.last_written());
        let in_flight = self.in_flight.take().expect("a commit was in flight");
        if head_file.is_ok() && self.building.as_ref().is_some_and(|c| c.appends > 0) {
            self.hand();
        }
        // From here until it is indexed the durable commit is in neither layer deciding
        // looks at: nothing is decided before then. The commit before it is indexed: it
        // came back before this one was handed over.
        let indexed = self
            .publisher
            .index_if_next(&commit, offset, &mut new_segment);
        assert!(indexed, "commits are indexed in order");
        self.reusable_buffer = syncer::answer(commit, &self.publisher.answerer);
        self.reusable_maps = in_flight.maps.cleared();
        if let Err(error) = head_file {
            return Err(self.shared.record_failure(&error));
        }
        self.decide_postponed();
        Ok(())
    }

    /// The commit in flight failed (and with it the store): everything after it fails too.
    fn fail(&mut self, why: &str) {
        self.in_flight = None;
        self.receiver.close();
        let unavailable = || Err(StoreError::Unavailable(why.to_string()));
        if let Some(commit) = self.building.take() {
            commit.fail(why);
        }
        let mut replies: Vec<AppendReply> = self.deferred.drain(..).map(|(_, r)| r).collect();
        replies.extend(self.carried.take().map(|(_, reply)| reply));
        while let Ok(message) = self.receiver.try_recv() {
            match message {
                WriterMessage::Append { reply, .. } => replies.push(reply),
                WriterMessage::Close { done } => {
                    let _ = done.send(());
                }
            }
        }
        for reply in replies {
            let _ = reply.send(unavailable());
        }
    }

    fn new_commit(&mut self) -> Commit {
        let mut buffer = std::mem::take(&mut self.reusable_buffer);
        buffer.clear();
        Commit::new(
            self.tip.next_position,
            self.tip.hash,
            self.clock.now().max(self.tip.recorded_at),
            buffer,
            std::mem::take(&mut self.reusable_maps),
            self.last_commit_appends,
        )
    }

    /// Decides one append into the commit being built: answered, accepted (encoded),
    /// deferred, or carried to the next commit when it does not fit in this segment.
    fn decide(&mut self, request: Box<Submitted>, reply: AppendReply) {
        if self.building.is_none() {
            self.building = Some(self.new_commit());
        }
        let commit = self.building.as_mut().expect("a commit is being built");
        let command_key = request.command_key;
        if let Some(&i) = commit.commands.get(&command_key) {
            let original = &mut commit.accepted[i];
            if same_content(&original.request, &request) {
                original.retries.push(reply);
                commit.appends += 1;
            } else {
                let refused = Err(StoreError::CommandIdReused {
                    command_id: request.command_id.clone(),
                    original_position: original.result.first_position,
                });
                commit.answer(reply, refused);
            }
            return;
        }
        let in_flight = self.in_flight.as_ref();
        if in_flight.is_some_and(|f| f.maps.commands.contains_key(&command_key)) {
            self.deferred.push((request, reply));
            return;
        }
        let index = self.shared.index.read().expect("index lock");
        if let Some(&entry) = index.commands.get(&command_key) {
            drop(index);
            let outcome = replay(&self.shared, entry, &request);
            commit.answer(reply, outcome);
            return;
        }
        let version_of = |commit: &Commit, stream_id: &StreamId| {
            commit
                .stream_versions
                .get(stream_id)
                .or_else(|| in_flight.and_then(|f| f.maps.stream_versions.get(stream_id)))
                .copied()
                .unwrap_or_else(|| index.stream_version(stream_id))
        };
        for expectation in &request.expectations {
            let actual = version_of(commit, &expectation.stream_id);
            if !expectation.expected.is_met_by(actual) {
                let refused = Err(StoreError::WrongExpectedVersion {
                    stream_id: expectation.stream_id.clone(),
                    expected: expectation.expected,
                    actual,
                });
                commit.answer(reply, refused);
                return;
            }
        }
        // Each event's stream version, and each stream's last one.
        let mut versions: Vec<(StreamId, StreamVersion)> = Vec::new();
        let event_versions = &mut self.event_versions;
        event_versions.clear();
        for proposed in &request.events {
            let version = match versions.iter_mut().find(|(s, _)| *s == proposed.stream_id) {
                Some((_, version)) => {
                    *version += 1;
                    *version
                }
                None => {
                    let version = version_of(commit, &proposed.stream_id) + 1;
                    versions.push((proposed.stream_id.clone(), version));
                    version
                }
            };
            event_versions.push(version);
        }
        drop(index);
        let before = commit.mark();
        let buffer_before = before.buffer_bytes;
        let first_position = commit.next_position;
        let frames = encode(commit, &request, event_versions);
        let append_bytes = (commit.buffer.len() - buffer_before) as u64;
        let segment_capacity = self.limits.segment_size_bytes - SEGMENT_HEADER_BYTES;
        let fits_here = self.tip.offset + commit.buffer.len() as u64 <= self.tip.segment_bytes;
        if append_bytes > segment_capacity {
            commit.undo(before);
            let refused = Err(StoreError::TooLarge {
                field: "events",
                size_bytes: append_bytes as usize,
                limit_bytes: segment_capacity as usize,
            });
            commit.answer(reply, refused);
        } else if fits_here || buffer_before == 0 {
            commit.accept(Accepted {
                result: AppendResult {
                    first_position,
                    last_position: first_position + frames.len() as u64 - 1,
                    stream_versions: versions,
                    recorded_at: commit.recorded_at,
                },
                request,
                reply,
                retries: Vec::new(),
                command_key,
                frames,
            });
        } else {
            // A commit never spans segments: this append starts the next one.
            commit.undo(before);
            self.carried = Some((request, reply));
        }
    }
}

/// Room in the append queue. A bounded channel gives a slot back as each message is
/// received, and each give-back takes the semaphore's waiter lock, which the appenders'
/// tasks contend for: with hundreds of appenders that was a tenth of the builder's time.
/// So the queue is unbounded and bounded by this semaphore instead: `submit` takes a
/// permit before queuing, and the builder gives back what it took in one call whenever it
/// is about to wait (for appends, for a sync), so the bound holds as before. It is closed
/// when the builder stops, however it stops: no `submit` waits for room that will never
/// come.
struct QueueRoom {
    semaphore: Arc<Semaphore>,
    /// Appends taken from the queue since the last give-back.
    taken: usize,
}

impl QueueRoom {
    fn give_back(&mut self) {
        if self.taken > 0 {
            self.semaphore.add_permits(self.taken);
            self.taken = 0;
        }
    }
}

impl Drop for QueueRoom {
    fn drop(&mut self) {
        self.semaphore.close();
    }
}

/// Wakes the builder's thread parked in `Builder::gather`.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Waits for the commit in flight to be durable; never resolves when there is none.
async fn until_synced(in_flight: &mut Option<InFlight>) -> Synced {
    match in_flight {
        Some(in_flight) => (&mut in_flight.synced)
            .await
            .unwrap_or_else(|_| Synced::Failed("the event store's syncer stopped".to_string())),
        None => std::future::pending().await,
    }
}

/// Encodes and hash-chains `request`'s events, at `stream_versions`, at the end of
/// `commit`. Returns their frames in `commit.frames`.
fn encode(
    commit: &mut Commit,
    request: &Submitted,
    stream_versions: &[StreamVersion],
) -> Range<usize> {
    let first_frame = commit.frames.len();
    let first_position = commit.next_position;
    let mut previous_hash = commit.previous_hash;
    for (i, proposed) in request.events.iter().enumerate() {
        let stream_version = stream_versions[i];
        let position = first_position + i as u64;
        let frame_at = commit.buffer.len();
        commit
            .buffer
            .resize(frame_at + codec::FRAME_HEADER_BYTES, 0);
        let body_at = commit.buffer.len();
        previous_hash = codec::encode_record_into(
            &codec::RecordRef {
                position,
                stream_id: &proposed.stream_id,
                stream_version,
                event_id: request.event_id(i),
                event_type: &proposed.event_type,
                schema_version: proposed.schema_version,
                recorded_at: commit.recorded_at,
                command_id: &request.command_id,
                command_fingerprint: request.command_fingerprint,
                correlation_id: request.correlation_id.as_ref(),
                causation_id: request.causation_id.as_ref(),
                actor: &request.actor,
                payload: &proposed.payload,
                previous_hash,
                hash: Hash32::GENESIS,
            },
            &mut commit.buffer,
        );
        let body = &commit.buffer[body_at..];
        commit
            .frames
            .push((frame_at, body.len(), crc32c::crc32c(body)));
    }
    commit.next_position = first_position + request.events.len() as u64;
    commit.previous_hash = previous_hash;
    first_frame..commit.frames.len()
}

/// The result of a command id that is already durable, if the retry is the same command.
fn replay(
    shared: &Shared,
    entry: CommandEntry,
    request: &AppendRequest,
) -> Result<AppendResult, StoreError> {
    let mut events = Vec::with_capacity(entry.event_count as usize);
    while events.len() < entry.event_count as usize {
        let from = entry.first_position + events.len() as u64;
        let left = entry.event_count as usize - events.len();
        let batch = read::read_all(&shared.index, from, left)?;
        assert!(!batch.is_empty(), "a durable command's events are readable");
        events.extend(batch);
    }
    let reused = || StoreError::CommandIdReused {
        command_id: request.command_id.clone(),
        original_position: entry.first_position,
    };
    if events.len() != request.events.len() {
        return Err(reused());
    }
    let same = events
        .iter()
        .zip(&request.events)
        .all(|(recorded, proposed)| {
            recorded.command_id == request.command_id
                && recorded.stream_id == proposed.stream_id
                && recorded.event_type == proposed.event_type
                && recorded.schema_version == proposed.schema_version
                && recorded.payload == proposed.payload
                && recorded.correlation_id == request.correlation_id
                && recorded.causation_id == request.causation_id
                && recorded.actor == request.actor
        });
    if !same {
        return Err(reused());
    }
    Ok(AppendResult::of_recorded(&events))
}

/// Two appends are the same command when they write the same events with the same
/// metadata. Expectations are not compared: a retry may be sent after the first attempt
/// moved the stream on.
fn same_content(a: &AppendRequest, b: &AppendRequest) -> bool {
    a.events == b.events
        && a.command_fingerprint == b.command_fingerprint
        && a.correlation_id == b.correlation_id
        && a.causation_id == b.causation_id
        && a.actor == b.actor
}
