//! The writer: group commit, pipelined over two threads.
//!
//! The builder (`builder.rs`) takes appends as they arrive, decides each (idempotency,
//! expected versions) against the durable index, the commit in flight and the commit it is
//! building, and encodes and hash-chains the accepted ones into that commit's buffer. It
//! hands the commit to the syncer (`syncer.rs`) as soon as the syncer is idle (after
//! letting the appenders of a commit the syncer just answered come back, bounded), so every
//! append that arrives while the disk is busy joins the next commit (concurrency turns into
//! batch size) and encoding overlaps the previous `fdatasync`. The syncer writes the commit
//! with one `pwrite` and makes it durable with one `fdatasync`. If the builder has a next
//! commit of its own waiting (at least half as many appends), the syncer hands the durable
//! one back and the builder hands over the next first, then indexes the durable one,
//! advances the head and answers its appenders while the next one syncs; else the syncer
//! does that itself. When no append arrived during the last sync and the next commit is
//! small, the builder writes, syncs and publishes it itself (`Builder::sync_here`): a lone
//! appender then waits on one thread hop less.
//!
//! What recovery relies on (see `recovery.rs`) holds because one commit is in flight at
//! most: the builder hands commit k+1 over (or writes it itself) only once commit k came
//! back, after its `fdatasync` returned, so k+1 is written only after that. A commit never
//! spans segments: the builder closes it where the segment ends, the syncer rolls.
//!
//! Every answer, refusals included, goes out with the commit it was decided in, once that
//! commit is durable: a refusal may rest on the commit in flight, which could still fail.
//!
//! If a write or sync fails, the store is failed: after a failed `fdatasync` the page cache
//! cannot be trusted (PostgreSQL's "fsyncgate"), so the only safe way on is to reopen,
//! which re-reads and re-checks the log from disk. That commit and every append after it
//! get `Unavailable`.

use std::fs::File;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use super::answer::Answerer;
use super::builder::Builder;
use super::head::HeadFile;
use super::index::{CommandKey, FastMap, Index};
use super::syncer::{Disk, Publisher, Syncer};
use crate::store::codec;
use crate::store::error::StoreError;
use crate::store::types::{
    AppendRequest, AppendResult, EventId, Hash32, Position, StreamId, StreamVersion,
};
use crate::time::{Clock, Timestamp};

pub type AppendReply = oneshot::Sender<Result<AppendResult, StoreError>>;

pub enum WriterMessage {
    Append {
        request: Box<Submitted>,
        reply: AppendReply,
    },
    /// Finish everything queued before this message, then stop.
    Close { done: oneshot::Sender<()> },
}

/// An append as `submit` hands it to the writer, with what can be derived from it alone
/// already derived, on the appender's task: the single builder thread is the pipeline's
/// narrow part, and blake3 is most of its work.
pub struct Submitted {
    pub request: AppendRequest,
    pub command_key: CommandKey,
    /// `EventId::derive(command_id, 0)`: most appends have one event, and that one
    /// needs no list of its own.
    first_event_id: EventId,
    /// `EventId::derive(command_id, i)` of each event after the first.
    more_event_ids: Vec<EventId>,
}

impl Submitted {
    pub fn new(request: AppendRequest) -> Submitted {
        let more_event_ids = (1..request.events.len() as u32)
            .map(|i| EventId::derive(&request.command_id, i))
            .collect();
        Submitted {
            command_key: CommandKey::of(&request.command_id),
            first_event_id: EventId::derive(&request.command_id, 0),
            more_event_ids,
            request,
        }
    }

    /// The id of the request's `i`th event.
    pub fn event_id(&self, i: usize) -> EventId {
        match i {
            0 => self.first_event_id,
            _ => self.more_event_ids[i - 1],
        }
    }
}

impl std::ops::Deref for Submitted {
    type Target = AppendRequest;

    fn deref(&self) -> &AppendRequest {
        &self.request
    }
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

impl Shared {
    /// Marks the store failed; returns the reason every later append is given.
    pub fn record_failure(&self, error: &StoreError) -> String {
        let mut failure = self.failure.lock().expect("failure lock");
        if let Some(why) = &*failure {
            return why.clone();
        }
        let why = format!("the writer stopped after an I/O error: {error}");
        tracing::error!(%error, "event store writer failed; reopen the store to recover");
        *failure = Some(why.clone());
        why
    }
}

#[derive(Clone, Copy)]
pub struct WriterLimits {
    pub segment_size_bytes: u64,
    pub commit_appends_max: usize,
    pub commit_bytes_max: usize,
    /// `EmbeddedOptions::sync_on_builder_when_quiet`.
    pub sync_on_builder_when_quiet: bool,
}

pub struct Writer {
    pub shared: Arc<Shared>,
    pub limits: WriterLimits,
    pub clock: Arc<dyn Clock>,
    pub receiver: mpsc::UnboundedReceiver<WriterMessage>,
    /// Room in the append queue, given back as the builder takes appends.
    pub queue_room: Arc<Semaphore>,
    pub head_sender: watch::Sender<Position>,
    pub head_file: HeadFile,
    /// Where the next commit goes in the active (last) segment.
    pub write_offset: u64,
    /// The active segment's size (segments keep the size they were created with).
    pub active_segment_bytes: u64,
    pub faults: Option<Arc<dyn IoFaults>>,
    /// Sends the answers of durable commits.
    pub answerer: Answerer,
}

impl Writer {
    /// Runs the builder on this thread and the syncer on a thread of its own, until the
    /// store is closed (or dropped) or has failed.
    pub fn run(self) {
        // One commit in flight at most: the builder only sends when the syncer is idle.
        let (handoff, commits) = std::sync::mpsc::sync_channel(1);
        let publisher = Arc::new(Publisher {
            shared: self.shared.clone(),
            head_sender: self.head_sender,
            head_file: self.head_file,
            waiting_appends: AtomicUsize::new(0),
            answerer: self.answerer,
        });
        let disk = Arc::new(Mutex::new(Disk::new(
            self.shared.clone(),
            self.limits.segment_size_bytes,
            self.write_offset,
            self.active_segment_bytes,
            self.faults,
        )));
        let syncer = Syncer::new(self.shared.clone(), publisher.clone(), disk.clone());
        let syncer = std::thread::Builder::new()
            .name("stemma-syncer".into())
            .spawn(move || syncer.run(commits))
            .expect("spawning a thread");
        let builder = Builder::new(
            self.limits,
            self.clock,
            self.receiver,
            self.queue_room,
            handoff,
            publisher.clone(),
            disk.clone(),
        );
        // The builder waits on two things at once (new appends, the syncer's outcome), so it
        // is a future; it never blocks on anything but those.
        let close = futures::executor::block_on(builder.run());
        let _ = syncer.join();
        disk.lock().expect("disk lock").finish();
        // After the last answers: `close` returns once every append before it is answered.
        if let Some(done) = close {
            publisher.answerer.closed(done);
        }
    }
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

/// An append accepted into a commit.
pub struct Accepted {
    /// Kept boxed as it came: moving it out would copy it and free the box here.
    pub request: Box<Submitted>,
    pub reply: AppendReply,
    /// Retries of the same command decided into the same commit: answered alike.
    pub retries: Vec<AppendReply>,
    pub result: AppendResult,
    pub command_key: CommandKey,
    /// Its events' frames in `Commit::frames` (at `result.first_position` on, in the
    /// order of `request.events`).
    pub frames: Range<usize>,
}

/// One group commit: built by the builder, then written, synced and published by the
/// syncer.
pub struct Commit {
    pub first_position: Position,
    pub next_position: Position,
    /// The hash before the commit's first event (a new segment's header names it).
    pub first_previous_hash: Hash32,
    /// The hash of the commit's last event so far.
    pub previous_hash: Hash32,
    pub recorded_at: Timestamp,
    pub buffer: Vec<u8>,
    /// (offset in `buffer`, body length, body crc32c) of each frame, whose header is
    /// written once the commit's last position is known.
    pub frames: Vec<(usize, usize, u32)>,
    pub accepted: Vec<Accepted>,
    /// Appends answered without writing (refused, or replayed from the durable index);
    /// sent once the commit is durable.
    pub answers: Vec<(AppendReply, Result<AppendResult, StoreError>)>,
    /// Appends decided into this commit, answered or accepted.
    pub appends: usize,
    pub stream_versions: FastMap<StreamId, StreamVersion>,
    pub commands: FastMap<CommandKey, usize>,
}

/// What deciding looks up in a commit: each stream's last version and each command's
/// append. Kept from commit to commit (cleared) so they do not grow anew each time.
#[derive(Default)]
pub struct DecidingMaps {
    pub stream_versions: FastMap<StreamId, StreamVersion>,
    pub commands: FastMap<CommandKey, usize>,
}

impl DecidingMaps {
    pub fn cleared(mut self) -> DecidingMaps {
        self.stream_versions.clear();
        self.commands.clear();
        self
    }
}

/// The state of a commit before one append was encoded into it.
pub struct CommitMark {
    pub buffer_bytes: usize,
    frames: usize,
    next_position: Position,
    previous_hash: Hash32,
}

impl Commit {
    /// `buffer` and `maps` are empty, kept from an earlier commit for their capacity;
    /// `appends_expected` sizes the per-append lists (the last commit's count is a good
    /// guess, and growing them append by append copies them over and over).
    pub fn new(
        first_position: Position,
        previous_hash: Hash32,
        recorded_at: Timestamp,
        buffer: Vec<u8>,
        maps: DecidingMaps,
        appends_expected: usize,
    ) -> Commit {
        Commit {
            first_position,
            next_position: first_position,
            first_previous_hash: previous_hash,
            previous_hash,
            recorded_at,
            buffer,
            frames: Vec::with_capacity(appends_expected),
            accepted: Vec::with_capacity(appends_expected),
            answers: Vec::new(),
            appends: 0,
            stream_versions: maps.stream_versions,
            commands: maps.commands,
        }
    }

    pub fn mark(&self) -> CommitMark {
        CommitMark {
            buffer_bytes: self.buffer.len(),
            frames: self.frames.len(),
            next_position: self.next_position,
            previous_hash: self.previous_hash,
        }
    }

    /// Takes the last encoded (not yet accepted) append back out of the buffer.
    pub fn undo(&mut self, mark: CommitMark) {
        self.buffer.truncate(mark.buffer_bytes);
        self.frames.truncate(mark.frames);
        self.next_position = mark.next_position;
        self.previous_hash = mark.previous_hash;
    }

    /// The last position the commit writes, if it writes any: `HEAD` once it is durable.
    pub fn last_written(&self) -> Option<Position> {
        (!self.buffer.is_empty()).then(|| self.next_position - 1)
    }

    /// Writes every frame header now that the commit's range is known.
    pub fn seal(&mut self) {
        let range = codec::CommitRange {
            first_position: self.first_position,
            last_position: self.next_position - 1,
        };
        for &(at, body_len, body_crc) in &self.frames {
            codec::write_frame_header(&mut self.buffer[at..], body_len, body_crc, range);
        }
    }

    pub fn accept(&mut self, accepted: Accepted) {
        for (stream_id, version) in &accepted.result.stream_versions {
            self.stream_versions.insert(stream_id.clone(), *version);
        }
        self.commands
            .insert(accepted.command_key, self.accepted.len());
        self.accepted.push(accepted);
        self.appends += 1;
    }

    pub fn answer(&mut self, reply: AppendReply, outcome: Result<AppendResult, StoreError>) {
        self.answers.push((reply, outcome));
        self.appends += 1;
    }

    /// Answers every appender of this commit with `Unavailable`.
    pub fn fail(self, why: &str) {
        let replies = self
            .accepted
            .into_iter()
            .flat_map(|a| std::iter::once(a.reply).chain(a.retries));
        for reply in replies.chain(self.answers.into_iter().map(|(reply, _)| reply)) {
            let _ = reply.send(Err(StoreError::Unavailable(why.to_string())));
        }
    }
}
