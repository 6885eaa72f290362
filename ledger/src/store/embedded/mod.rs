//! The embedded store: an append-only, fsync'd, hash-chained log in a local directory.
//!
//! ```text
//! <data>/LOCK                       held (flock) by the one process that writes
//! <data>/HEAD                       the durable head, for read-only readers (`head`)
//! <data>/segments/<first>.seg       segment files, named by their first position
//! <data>/segments/spare.tmp         the next segment, being zero-filled ahead of need
//! ```
//!
//! See `segment` (files), `writer` (pipelined group commit: `builder`, `syncer`),
//! `recovery` (open, torn tails) and `read` (reads). ARCHITECTURE.md walks through the
//! crash cases.

mod answer;
mod builder;
mod checkpoint;
pub mod head;
pub mod import;
mod index;
mod read;
mod recovery;
mod segment;
pub mod snapshot;
mod syncer;
mod writer;

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

pub use recovery::TornTail;
use segment::{SegmentHeader, ZeroFill, SEGMENT_HEADER_BYTES};
pub use writer::{IoFaults, IoOperation};
use writer::{Shared, Submitted, Writer, WriterLimits, WriterMessage};

use super::batch::RecordBatch;
use super::error::{InvalidInput, StoreError};
use super::types::{
    AppendRequest, AppendResult, Head, Position, RecordedEvent, StreamId, StreamVersion,
};
use super::validate::{validate_append, ENVELOPE_BYTES_MAX};
use super::{limits, EventStore, PendingAppend};
use crate::time::{Clock, SystemClock};

/// The largest record body a frame may claim: a payload at its limit plus its envelope.
pub const RECORD_BODY_BYTES_MAX: usize = limits::EVENT_PAYLOAD_BYTES_MAX + ENVELOPE_BYTES_MAX;

/// The smallest segment: room for a header and a few records (tests use small segments to
/// exercise rolling; production wants large ones).
pub const SEGMENT_SIZE_BYTES_MIN: u64 = 4 * 1024;
/// Offsets within a segment are u32.
pub const SEGMENT_SIZE_BYTES_MAX: u64 = u32::MAX as u64;

#[derive(Clone)]
pub struct EmbeddedOptions {
    /// Each segment file's size. An append larger than a segment is refused.
    pub segment_size_bytes: u64,
    /// Appends waiting for the writer; `submit` waits (back-pressure) when it is full.
    pub append_queue_depth_max: usize,
    /// Appends in one group commit.
    pub commit_appends_max: usize,
    /// Bytes in one group commit (one append may exceed it on its own).
    pub commit_bytes_max: usize,
    /// When no append arrived while the last commit was written and synced (appenders
    /// wait for their answers before sending more), the builder writes and syncs the next
    /// commit on its own thread rather than handing it to the syncer's: one thread
    /// wake-up less on every append's way. Appends that arrive meanwhile wait in the
    /// queue until that sync returns, and the next commit goes to the syncer again.
    /// `false`: always hand over, so the builder keeps taking appends during every sync.
    pub sync_on_builder_when_quiet: bool,
    /// Stamps `recorded_at`.
    pub clock: Arc<dyn Clock>,
    /// Failure injection for tests; `None` in production.
    pub faults: Option<Arc<dyn IoFaults>>,
}

impl Default for EmbeddedOptions {
    fn default() -> EmbeddedOptions {
        EmbeddedOptions {
            segment_size_bytes: 128 * 1024 * 1024,
            append_queue_depth_max: 4_096,
            commit_appends_max: 4_096,
            commit_bytes_max: 8 * 1024 * 1024,
            sync_on_builder_when_quiet: true,
            clock: Arc::new(SystemClock),
            faults: None,
        }
    }
}

impl EmbeddedOptions {
    fn validate(&self) -> Result<(), InvalidInput> {
        if !(SEGMENT_SIZE_BYTES_MIN..=SEGMENT_SIZE_BYTES_MAX).contains(&self.segment_size_bytes) {
            return Err(InvalidInput::new(
                "segment_size_bytes",
                format!("must be between {SEGMENT_SIZE_BYTES_MIN} and {SEGMENT_SIZE_BYTES_MAX}"),
            ));
        }
        for (field, value) in [
            ("append_queue_depth_max", self.append_queue_depth_max),
            ("commit_appends_max", self.commit_appends_max),
            ("commit_bytes_max", self.commit_bytes_max),
        ] {
            if value == 0 {
                return Err(InvalidInput::new(field, "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// What open found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReport {
    pub head: Head,
    pub segments: usize,
    pub streams: usize,
    /// A torn tail that was cut, if the last run crashed mid-write.
    pub torn_tail: Option<TornTail>,
    /// The position of the index checkpoint whose maps open took, instead of building
    /// them from the events up to there; `None` when the whole index was built from the log.
    pub index_from_checkpoint: Option<Position>,
}

pub struct EmbeddedStore {
    shared: Arc<Shared>,
    sender: mpsc::UnboundedSender<WriterMessage>,
    /// Room in the append queue (`append_queue_depth_max`): see `builder::QueueRoom`.
    queue_room: Arc<Semaphore>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    directory: PathBuf,
    /// The position of the index checkpoint open used: `close` rewrites it only if the
    /// head has moved since.
    index_checkpoint: Option<Position>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `directory`, checking the whole log. Fails with
    /// `Locked` if another process has it open, `Corrupt` if it is damaged anywhere but in
    /// a torn tail.
    pub async fn open(
        directory: impl AsRef<Path>,
        options: EmbeddedOptions,
    ) -> Result<(EmbeddedStore, OpenReport), StoreError> {
        let directory = directory.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || EmbeddedStore::open_blocking(directory, options))
            .await
            .map_err(|e| StoreError::Unavailable(format!("open panicked: {e}")))?
    }

    fn open_blocking(
        directory: PathBuf,
        options: EmbeddedOptions,
    ) -> Result<(EmbeddedStore, OpenReport), StoreError> {
        options.validate()?;
        fs::create_dir_all(&directory).map_err(|e| StoreError::io(&directory, e))?;
        let lock_path = directory.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StoreError::Locked(directory)),
            Err(fs::TryLockError::Error(e)) => return Err(StoreError::io(&lock_path, e)),
        }
        let segments_directory = directory.join("segments");
        fs::create_dir_all(&segments_directory)
            .map_err(|e| StoreError::io(&segments_directory, e))?;
        segment::remove_spare(&segments_directory)?;
        let segments = segment::list_segments(&segments_directory)?;
        let checkpoint = match checkpoint::read(&directory) {
            Ok(checkpoint) => checkpoint,
            Err(why) => {
                tracing::warn!(file = %checkpoint::path(&directory).display(), %why, "ignoring the index checkpoint; rebuilding the index from the log");
                None
            }
        };
        let recovery::Scanned {
            mut index,
            torn_tail,
            from_checkpoint,
        } = recovery::scan(&segments, RECORD_BODY_BYTES_MAX, checkpoint)?;
        if index.segments.is_empty() {
            let spare = segment::prepare_spare(
                &segments_directory,
                options.segment_size_bytes,
                ZeroFill::Direct,
            )
            .map_err(|e| StoreError::io(&segments_directory, e))?;
            let header = SegmentHeader {
                first_position: 1,
                previous_hash: index.head.hash,
            };
            let (path, file) = segment::install_spare(&segments_directory, &spare, header)
                .map_err(|e| StoreError::io(&segments_directory, e))?;
            index.segments.push(index::SegmentEntry {
                path,
                file: Arc::new(file),
                first_position: 1,
                offsets: Vec::new(),
                end_offset: SEGMENT_HEADER_BYTES,
            });
        }
        let last_segment = index.segments.last().expect("a segment");
        let write_offset = last_segment.end_offset;
        // The active segment keeps the size it was created with, even if the option changed.
        let active_segment_bytes = last_segment
            .file
            .metadata()
            .map_err(|e| StoreError::io(&last_segment.path, e))?
            .len();
        // What recovery kept may be a commit the last run wrote but never synced (the
        // process died, the machine did not): sync it before publishing it as durable.
        last_segment
            .file
            .sync_data()
            .map_err(|e| StoreError::io(&last_segment.path, e))?;
        let head_file = head::HeadFile::open(&directory)
            .and_then(|file| file.publish(index.head.position).map(|()| file))
            .map_err(|e| StoreError::io(head::path(&directory), e))?;
        let report = OpenReport {
            head: index.head,
            segments: index.segments.len(),
            streams: index.streams.len(),
            torn_tail,
            index_from_checkpoint: from_checkpoint,
        };
        let (head_sender, head_receiver) = watch::channel(index.head.position);
        let shared = Arc::new(Shared {
            index: RwLock::new(index),
            failure: Mutex::new(None),
            head: head_receiver,
            segments_directory,
            _directory_lock: lock,
        });
        let (sender, receiver) = mpsc::unbounded_channel();
        let queue_room = Arc::new(Semaphore::new(options.append_queue_depth_max));
        let writer = Writer {
            shared: shared.clone(),
            limits: WriterLimits {
                segment_size_bytes: options.segment_size_bytes,
                commit_appends_max: options.commit_appends_max,
                commit_bytes_max: options.commit_bytes_max,
                sync_on_builder_when_quiet: options.sync_on_builder_when_quiet,
            },
            clock: options.clock.clone(),
            receiver,
            queue_room: queue_room.clone(),
            head_sender,
            head_file,
            write_offset,
            active_segment_bytes,
            faults: options.faults.clone(),
            // On the runtime `open` runs on (this is its blocking pool).
            answerer: answer::Answerer::start(),
        };
        let handle = std::thread::Builder::new()
            .name("stemma-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::io(&directory, e))?;
        tracing::info!(
            directory = %directory.display(),
            head = report.head.position,
            segments = report.segments,
            "opened the embedded store"
        );
        Ok((
            EmbeddedStore {
                shared,
                sender,
                queue_room,
                writer: Mutex::new(Some(handle)),
                directory,
                index_checkpoint: report.index_from_checkpoint,
            },
            report,
        ))
    }

    /// Finishes every queued append, stops the writer, writes the index checkpoint (so the
    /// next open need not rebuild the index from every event) and releases the directory
    /// lock once the last reader is gone. Appends after `close` fail with `Closed`.
    pub async fn close(&self) {
        let (done, finished) = oneshot::channel();
        if self.sender.send(WriterMessage::Close { done }).is_ok() {
            let _ = finished.await;
        }
        let handle = self.writer.lock().expect("writer handle lock").take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
            let shared = self.shared.clone();
            let directory = self.directory.clone();
            let unchanged = self.index_checkpoint;
            let _ = tokio::task::spawn_blocking(move || {
                write_index_checkpoint(&shared, &directory, unchanged)
            })
            .await;
        }
    }

    /// Checks an append and queues it for the writer; its answer comes on the receiver.
    async fn queue(&self, request: AppendRequest) -> Result<oneshot::Receiver<Answer>, StoreError> {
        validate_append(&request)?;
        self.check_not_failed()?;
        let stopped = |_| self.check_not_failed().err().unwrap_or(StoreError::Closed);
        // Given back by the builder once it has taken the append.
        self.queue_room.acquire().await.map_err(stopped)?.forget();
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(WriterMessage::Append {
                request: Box::new(Submitted::new(request)),
                reply,
            })
            .map_err(|_| self.check_not_failed().err().unwrap_or(StoreError::Closed))?;
        Ok(answer)
    }

    fn check_not_failed(&self) -> Result<(), StoreError> {
        match &*self.shared.failure.lock().expect("failure lock") {
            Some(why) => Err(StoreError::Unavailable(why.clone())),
            None => Ok(()),
        }
    }
}

/// Writes the index checkpoint once the writer has stopped, unless the store failed (it is
/// reopened and checked from the log then) or the checkpoint open used is still current.
/// A checkpoint is only a shortcut: failing to write one is reported, not an error.
fn write_index_checkpoint(shared: &Shared, directory: &Path, unchanged: Option<Position>) {
    if shared.failure.lock().expect("failure lock").is_some() {
        return;
    }
    let index = shared.index.read().expect("index lock");
    if unchanged == Some(index.head.position) || index.head.position == 0 {
        return;
    }
    let started = std::time::Instant::now();
    match checkpoint::write(directory, &index) {
        Ok(()) => tracing::info!(
            position = index.head.position,
            streams = index.streams.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "wrote the index checkpoint"
        ),
        Err(error) => {
            tracing::warn!(%error, "could not write the index checkpoint; the next open rebuilds the index from the log")
        }
    }
}

type Answer = Result<AppendResult, StoreError>;

/// An append's outcome from its answer; a reply dropped unanswered means the writer
/// stopped: failed, or closed.
fn outcome(shared: &Shared, answer: Result<Answer, oneshot::error::RecvError>) -> Answer {
    match answer {
        Ok(outcome) => outcome,
        Err(_) => Err(match &*shared.failure.lock().expect("failure lock") {
            Some(why) => StoreError::Unavailable(why.clone()),
            None => StoreError::Closed,
        }),
    }
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn submit(&self, request: AppendRequest) -> Result<PendingAppend, StoreError> {
        let answer = self.queue(request).await?;
        let shared = self.shared.clone();
        Ok(PendingAppend::new(
            async move { outcome(&shared, answer.await) },
        ))
    }

    /// `submit` and wait, without boxing the wait as a `PendingAppend`: one allocation
    /// less on every append.
    async fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError> {
        let answer = self.queue(request).await?;
        outcome(&self.shared, answer.await)
    }

    async fn read_stream(
        &self,
        stream_id: &StreamId,
        from_version: StreamVersion,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let shared = self.shared.clone();
        let stream_id = stream_id.clone();
        tokio::task::spawn_blocking(move || {
            read::read_stream(&shared.index, &stream_id, from_version, max_count)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("read panicked: {e}")))?
    }

    async fn read_all(
        &self,
        from_position: Position,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || read::read_all(&shared.index, from_position, max_count))
            .await
            .map_err(|e| StoreError::Unavailable(format!("read panicked: {e}")))?
    }

    async fn read_all_batch(
        &self,
        from_position: Position,
        max_count: usize,
        batch: &mut RecordBatch,
    ) -> Result<(), StoreError> {
        let shared = self.shared.clone();
        // The batch's buffers go to the blocking thread and come back, so they are reused.
        let mut owned = std::mem::take(batch);
        let (owned, result) = tokio::task::spawn_blocking(move || {
            let result = read::read_all_batch(&shared.index, from_position, max_count, &mut owned);
            (owned, result)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("read panicked: {e}")))?;
        *batch = owned;
        result
    }

    async fn stream_version(&self, stream_id: &StreamId) -> Result<StreamVersion, StoreError> {
        Ok(self
            .shared
            .index
            .read()
            .expect("index lock")
            .stream_version(stream_id))
    }

    async fn head(&self) -> Result<Head, StoreError> {
        Ok(self.shared.index.read().expect("index lock").head)
    }

    fn watch_head(&self) -> watch::Receiver<Position> {
        self.shared.head.clone()
    }
}
