//! The single writer: group commit.
//!
//! One thread owns the active segment. It takes every append that is queued (up to
//! `commit_appends_max` appends or `commit_bytes_max` bytes), decides each against the
//! durable index plus the appends before it in the same commit (expected versions,
//! idempotency), encodes and hash-chains the accepted ones into one buffer, writes it with
//! one `pwrite` and makes it durable with one `fdatasync`. Only then are the events added
//! to the index, the head advanced and the appenders answered. While it syncs, new appends
//! queue up and form the next commit, so concurrency turns into batch size on its own.
//!
//! If a write or sync fails, the writer stops and the store is failed: after a failed
//! `fdatasync` the page cache cannot be trusted (PostgreSQL's "fsyncgate"), so the only
//! safe way on is to reopen, which re-reads and re-checks the log from disk.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot, watch};

use super::index::{CommandEntry, CommandKey, Index, SegmentEntry};
use super::read;
use super::segment::{self, SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::store::codec;
use crate::store::error::StoreError;
use crate::store::types::{
    AppendRequest, AppendResult, EventId, Hash32, Position, RecordedEvent, StreamId, StreamVersion,
};
use crate::time::{Clock, Timestamp};

pub type AppendReply = oneshot::Sender<Result<AppendResult, StoreError>>;

pub enum WriterMessage {
    Append {
        request: AppendRequest,
        reply: AppendReply,
    },
    /// Finish everything queued before this message, then stop.
    Close { done: oneshot::Sender<()> },
}

/// What readers and the writer share.
pub struct Shared {
    pub index: RwLock<Index>,
    /// Why the writer stopped, once it has failed.
    pub failure: Mutex<Option<String>>,
    pub head: watch::Receiver<Position>,
    pub segments_directory: PathBuf,
    /// Held (locked) for as long as anything uses the store.
    pub _directory_lock: File,
}

pub struct WriterLimits {
    pub segment_size_bytes: u64,
    pub commit_appends_max: usize,
    pub commit_bytes_max: usize,
}

pub struct Writer {
    pub shared: Arc<Shared>,
    pub limits: WriterLimits,
    pub clock: Arc<dyn Clock>,
    pub receiver: mpsc::Receiver<WriterMessage>,
    pub head_sender: watch::Sender<Position>,
    /// Where the next commit goes in the active (last) segment.
    pub write_offset: u64,
    /// The active segment's size (segments keep the size they were created with).
    pub active_segment_bytes: u64,
    pub spare: Option<JoinHandle<std::io::Result<PathBuf>>>,
    pub faults: Option<Arc<dyn IoFaults>>,
}

/// The writer's disk operations, as seen by a fault injector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOperation {
    /// The `pwrite` of one commit.
    Write,
    /// The `fdatasync` after it.
    Sync,
}

/// Injects I/O failures into the writer, for tests of the failure paths: called before
/// each operation; an error fails that operation as if the disk had returned it.
pub trait IoFaults: Send + Sync + 'static {
    fn before(&self, operation: IoOperation) -> std::io::Result<()>;
}

/// An append accepted into the commit being built.
struct Accepted {
    request: AppendRequest,
    replies: Vec<AppendReply>,
    result: AppendResult,
    command_key: CommandKey,
    /// (position, offset in the commit buffer, stream) of each event.
    events: Vec<(Position, usize, StreamId)>,
}

/// The commit being built.
struct Commit {
    first_position: Position,
    next_position: Position,
    previous_hash: Hash32,
    recorded_at: Timestamp,
    buffer: Vec<u8>,
    /// (offset in `buffer`, body length, body crc32c) of each frame, whose header is
    /// written once the commit's last position is known.
    frames: Vec<(usize, usize, u32)>,
    accepted: Vec<Accepted>,
    stream_versions: HashMap<StreamId, StreamVersion>,
    commands: HashMap<CommandKey, usize>,
}

impl Writer {
    pub fn run(mut self) {
        let mut queued: VecDeque<WriterMessage> = VecDeque::new();
        loop {
            if queued.is_empty() {
                match self.receiver.blocking_recv() {
                    Some(message) => queued.push_back(message),
                    None => break,
                }
            }
            while queued.len() < self.limits.commit_appends_max {
                match self.receiver.try_recv() {
                    Ok(message) => queued.push_back(message),
                    Err(_) => break,
                }
            }
            let mut batch = Vec::new();
            let mut close = None;
            while let Some(message) = queued.pop_front() {
                match message {
                    WriterMessage::Append { request, reply } => batch.push((request, reply)),
                    WriterMessage::Close { done } => {
                        close = Some(done);
                        break;
                    }
                }
            }
            let carried = match self.commit(batch) {
                Ok(carried) => carried,
                Err(error) => {
                    self.fail(error, queued, close);
                    return;
                }
            };
            for (request, reply) in carried.into_iter().rev() {
                queued.push_front(WriterMessage::Append { request, reply });
            }
            if let Some(done) = close {
                if queued.is_empty() {
                    let _ = done.send(());
                    break;
                }
                queued.push_back(WriterMessage::Close { done });
            }
        }
        if let Some(spare) = self.spare.take() {
            let _ = spare.join();
        }
    }

    fn fail(
        mut self,
        error: StoreError,
        queued: VecDeque<WriterMessage>,
        close: Option<oneshot::Sender<()>>,
    ) {
        let why = self.record_failure(&error);
        self.receiver.close();
        let mut rest: Vec<WriterMessage> = queued.into_iter().collect();
        while let Ok(message) = self.receiver.try_recv() {
            rest.push(message);
        }
        for message in rest {
            match message {
                WriterMessage::Append { reply, .. } => {
                    let _ = reply.send(Err(StoreError::Unavailable(why.clone())));
                }
                WriterMessage::Close { done } => {
                    let _ = done.send(());
                }
            }
        }
        if let Some(done) = close {
            let _ = done.send(());
        }
    }

    /// Marks the store failed; returns the reason every later append is given.
    fn record_failure(&self, error: &StoreError) -> String {
        let mut failure = self.shared.failure.lock().expect("failure lock");
        if let Some(why) = &*failure {
            return why.clone();
        }
        let why = format!("the writer stopped after an I/O error: {error}");
        tracing::error!(%error, "event store writer failed; reopen the store to recover");
        *failure = Some(why.clone());
        why
    }

    /// Builds, writes and syncs one commit from `batch`. Returns the appends that did not
    /// fit and wait for the next commit. Appends refused on their own merits are answered
    /// here; an `Err` is an I/O failure of the commit as a whole.
    fn commit(
        &mut self,
        batch: Vec<(AppendRequest, AppendReply)>,
    ) -> Result<Vec<(AppendRequest, AppendReply)>, StoreError> {
        let (head, last_recorded_at) = {
            let index = self.shared.index.read().expect("index lock");
            (index.head, index.last_recorded_at)
        };
        let mut commit = Commit {
            first_position: head.position + 1,
            next_position: head.position + 1,
            previous_hash: head.hash,
            recorded_at: self.clock.now().max(last_recorded_at),
            buffer: Vec::new(),
            frames: Vec::new(),
            accepted: Vec::new(),
            stream_versions: HashMap::new(),
            commands: HashMap::new(),
        };
        let segment_capacity = self.limits.segment_size_bytes - SEGMENT_HEADER_BYTES;
        let mut carried = Vec::new();
        let mut batch = batch.into_iter();
        for (request, reply) in batch.by_ref() {
            if commit.buffer.len() >= self.limits.commit_bytes_max {
                carried.push((request, reply));
                break;
            }
            let before = commit.mark();
            let buffer_before = before.buffer_bytes;
            match self.decide(&mut commit, request, reply) {
                Decided::Answered => {}
                Decided::Encoded(accepted) => {
                    let accepted = *accepted;
                    let append_bytes = (commit.buffer.len() - buffer_before) as u64;
                    let fits_here =
                        self.write_offset + commit.buffer.len() as u64 <= self.active_segment_bytes;
                    if append_bytes > segment_capacity {
                        commit.undo(before);
                        for reply in accepted.replies {
                            let _ = reply.send(Err(StoreError::TooLarge {
                                field: "events",
                                size_bytes: append_bytes as usize,
                                limit_bytes: segment_capacity as usize,
                            }));
                        }
                    } else if fits_here || buffer_before == 0 {
                        commit.accept(accepted);
                    } else {
                        // A commit never spans segments: this append starts the next one.
                        commit.undo(before);
                        let reply = accepted.replies.into_iter().next().expect("one reply");
                        carried.push((accepted.request, reply));
                        break;
                    }
                }
            }
        }
        carried.extend(batch);
        if commit.buffer.is_empty() {
            return Ok(carried);
        }
        let mut written = Ok(());
        if self.write_offset + commit.buffer.len() as u64 > self.active_segment_bytes {
            written = self.roll(commit.first_position, head.hash);
        }
        commit.seal();
        written = written.and_then(|()| self.write_and_sync(&commit.buffer));
        if let Err(error) = written {
            // Record the failure before any appender can see its reply channel close.
            let why = self.record_failure(&error);
            for accepted in commit.accepted {
                for reply in accepted.replies {
                    let _ = reply.send(Err(StoreError::Unavailable(why.clone())));
                }
            }
            return Err(error);
        }
        self.publish(commit);
        self.prepare_spare_when_half_full();
        Ok(carried)
    }

    fn decide(&self, commit: &mut Commit, request: AppendRequest, reply: AppendReply) -> Decided {
        let command_key = CommandKey::of(&request.command_id);
        if let Some(&i) = commit.commands.get(&command_key) {
            let original = &mut commit.accepted[i];
            if same_content(&original.request, &request) {
                original.replies.push(reply);
            } else {
                let _ = reply.send(Err(StoreError::CommandIdReused {
                    command_id: request.command_id,
                    original_position: original.result.first_position,
                }));
            }
            return Decided::Answered;
        }
        let durable = self
            .shared
            .index
            .read()
            .expect("index lock")
            .commands
            .get(&command_key)
            .copied();
        if let Some(entry) = durable {
            let _ = reply.send(self.replay(entry, &request));
            return Decided::Answered;
        }
        let version_of = |commit: &Commit, stream_id: &StreamId| {
            commit
                .stream_versions
                .get(stream_id)
                .copied()
                .unwrap_or_else(|| {
                    self.shared
                        .index
                        .read()
                        .expect("index lock")
                        .stream_version(stream_id)
                })
        };
        for expectation in &request.expectations {
            let actual = version_of(commit, &expectation.stream_id);
            if !expectation.expected.is_met_by(actual) {
                let _ = reply.send(Err(StoreError::WrongExpectedVersion {
                    stream_id: expectation.stream_id.clone(),
                    expected: expectation.expected,
                    actual,
                }));
                return Decided::Answered;
            }
        }
        let mut versions: Vec<(StreamId, StreamVersion)> = Vec::new();
        let mut events = Vec::with_capacity(request.events.len());
        let first_position = commit.next_position;
        let mut previous_hash = commit.previous_hash;
        for (i, proposed) in request.events.iter().enumerate() {
            let stream_version = match versions.iter_mut().find(|(s, _)| *s == proposed.stream_id) {
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
            let position = first_position + i as u64;
            let mut event = RecordedEvent {
                position,
                stream_id: proposed.stream_id.clone(),
                stream_version,
                event_id: EventId::derive(&request.command_id, i as u32),
                event_type: proposed.event_type.clone(),
                schema_version: proposed.schema_version,
                recorded_at: commit.recorded_at,
                command_id: request.command_id.clone(),
                correlation_id: request.correlation_id.clone(),
                causation_id: request.causation_id.clone(),
                actor: request.actor.clone(),
                payload: proposed.payload.clone(),
                previous_hash,
                hash: Hash32::GENESIS,
            };
            let body = codec::encode_and_hash(&mut event);
            previous_hash = event.hash;
            let frame_at = commit.buffer.len();
            events.push((position, frame_at, proposed.stream_id.clone()));
            commit
                .frames
                .push((frame_at, body.len(), crc32c::crc32c(&body)));
            commit
                .buffer
                .resize(frame_at + codec::FRAME_HEADER_BYTES, 0);
            commit.buffer.extend_from_slice(&body);
        }
        let last_position = first_position + request.events.len() as u64 - 1;
        commit.next_position = last_position + 1;
        commit.previous_hash = previous_hash;
        Decided::Encoded(Box::new(Accepted {
            result: AppendResult {
                first_position,
                last_position,
                stream_versions: versions,
                recorded_at: commit.recorded_at,
            },
            request,
            replies: vec![reply],
            command_key,
            events,
        }))
    }

    /// The result of a command id that is already durable, if the retry is the same
    /// command.
    fn replay(
        &self,
        entry: CommandEntry,
        request: &AppendRequest,
    ) -> Result<AppendResult, StoreError> {
        let mut events = Vec::with_capacity(entry.event_count as usize);
        while events.len() < entry.event_count as usize {
            let from = entry.first_position + events.len() as u64;
            let left = entry.event_count as usize - events.len();
            let batch = read::read_all(&self.shared.index, from, left)?;
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
        Ok(result_of_recorded(&events))
    }

    fn roll(&mut self, first_position: Position, previous_hash: Hash32) -> Result<(), StoreError> {
        let directory = self.shared.segments_directory.clone();
        let spare = match self.spare.take() {
            Some(preparing) => preparing.join().expect("spare preparation does not panic"),
            None => segment::prepare_spare(&directory, self.limits.segment_size_bytes),
        }
        .map_err(|e| StoreError::io(&directory, e))?;
        let header = SegmentHeader {
            first_position,
            previous_hash,
        };
        let (path, file) = segment::install_spare(&directory, &spare, header)
            .map_err(|e| StoreError::io(&directory, e))?;
        tracing::debug!(segment = %path.display(), first_position, "rolled to a new segment");
        self.shared
            .index
            .write()
            .expect("index lock")
            .segments
            .push(SegmentEntry {
                path,
                file: Arc::new(file),
                first_position,
                offsets: Vec::new(),
                end_offset: SEGMENT_HEADER_BYTES,
            });
        self.write_offset = SEGMENT_HEADER_BYTES;
        self.active_segment_bytes = self.limits.segment_size_bytes;
        Ok(())
    }

    fn write_and_sync(&self, buffer: &[u8]) -> Result<(), StoreError> {
        let index = self.shared.index.read().expect("index lock");
        let segment = index.segments.last().expect("a segment is open");
        let (file, path) = (segment.file.clone(), segment.path.clone());
        drop(index);
        let faults = self.faults.as_deref();
        let check = |operation| faults.map_or(Ok(()), |faults| faults.before(operation));
        check(IoOperation::Write)
            .and_then(|()| file.write_all_at(buffer, self.write_offset))
            .and_then(|()| check(IoOperation::Sync))
            .and_then(|()| file.sync_data())
            .map_err(|e| StoreError::io(path, e))
    }

    /// The commit is durable: index it, advance the head, answer the appenders.
    fn publish(&mut self, commit: Commit) {
        let head = {
            let mut index = self.shared.index.write().expect("index lock");
            for accepted in &commit.accepted {
                for (position, offset, stream_id) in &accepted.events {
                    index.add_event(
                        *position,
                        self.write_offset + *offset as u64,
                        stream_id,
                        accepted.command_key,
                    );
                }
            }
            index.head.hash = commit.previous_hash;
            index.last_recorded_at = commit.recorded_at;
            self.write_offset += commit.buffer.len() as u64;
            index
                .segments
                .last_mut()
                .expect("a segment is open")
                .end_offset = self.write_offset;
            index.head.position
        };
        assert_eq!(head + 1, commit.next_position);
        self.head_sender.send_replace(head);
        for accepted in commit.accepted {
            for reply in accepted.replies {
                let _ = reply.send(Ok(accepted.result.clone()));
            }
        }
    }

    fn prepare_spare_when_half_full(&mut self) {
        if self.spare.is_none() && self.write_offset > self.active_segment_bytes / 2 {
            let directory = self.shared.segments_directory.clone();
            let size = self.limits.segment_size_bytes;
            self.spare = Some(
                std::thread::Builder::new()
                    .name("stemma-spare-segment".into())
                    .spawn(move || segment::prepare_spare(&directory, size))
                    .expect("spawning a thread"),
            );
        }
    }
}

/// The state of a commit before one append was encoded into it.
struct CommitMark {
    buffer_bytes: usize,
    frames: usize,
    next_position: Position,
    previous_hash: Hash32,
}

enum Decided {
    /// The append was answered (duplicate, refused) and adds nothing to the commit.
    Answered,
    /// The append was encoded into the commit buffer.
    Encoded(Box<Accepted>),
}

impl Commit {
    fn mark(&self) -> CommitMark {
        CommitMark {
            buffer_bytes: self.buffer.len(),
            frames: self.frames.len(),
            next_position: self.next_position,
            previous_hash: self.previous_hash,
        }
    }

    /// Takes the last encoded (not yet accepted) append back out of the buffer.
    fn undo(&mut self, mark: CommitMark) {
        self.buffer.truncate(mark.buffer_bytes);
        self.frames.truncate(mark.frames);
        self.next_position = mark.next_position;
        self.previous_hash = mark.previous_hash;
    }

    /// Writes every frame header now that the commit's range is known.
    fn seal(&mut self) {
        let range = codec::CommitRange {
            first_position: self.first_position,
            last_position: self.next_position - 1,
        };
        for &(at, body_len, body_crc) in &self.frames {
            codec::write_frame_header(&mut self.buffer[at..], body_len, body_crc, range);
        }
    }

    fn accept(&mut self, accepted: Accepted) {
        for (stream_id, version) in &accepted.result.stream_versions {
            self.stream_versions.insert(stream_id.clone(), *version);
        }
        self.commands
            .insert(accepted.command_key, self.accepted.len());
        self.accepted.push(accepted);
    }
}

/// Two appends are the same command when they write the same events with the same
/// metadata. Expectations are not compared: a retry may be sent after the first attempt
/// moved the stream on.
fn same_content(a: &AppendRequest, b: &AppendRequest) -> bool {
    a.events == b.events
        && a.correlation_id == b.correlation_id
        && a.causation_id == b.causation_id
        && a.actor == b.actor
}

/// The `AppendResult` that the append which wrote `events` returned.
pub fn result_of_recorded(events: &[RecordedEvent]) -> AppendResult {
    let mut stream_versions: Vec<(StreamId, StreamVersion)> = Vec::new();
    for event in events {
        match stream_versions
            .iter_mut()
            .find(|(s, _)| *s == event.stream_id)
        {
            Some((_, version)) => *version = event.stream_version,
            None => stream_versions.push((event.stream_id.clone(), event.stream_version)),
        }
    }
    AppendResult {
        first_position: events[0].position,
        last_position: events[events.len() - 1].position,
        stream_versions,
        recorded_at: events[0].recorded_at,
    }
}
