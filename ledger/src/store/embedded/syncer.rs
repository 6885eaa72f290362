//! The syncer: writes, syncs and publishes the commits the builder hands it, one at a time.
//!
//! It owns the active segment (where the next commit goes, rolling to a new segment) and
//! is the index's only writer. A commit is indexed and answered only after its
//! `fdatasync` returned, so readers never see an event that a crash could take back.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{oneshot, watch};

use super::head::HeadFile;
use super::index::SegmentEntry;
use super::segment::{self, SegmentHeader, SEGMENT_HEADER_BYTES};
use super::writer::{Commit, IoFaults, IoOperation, Shared, Submitted};
use crate::store::error::StoreError;
use crate::store::types::{Hash32, Position};

/// What the syncer tells the builder about a commit: durable (and indexed), with its buffer
/// back for reuse, or failed, with the reason the store failed.
pub type Synced = Result<Vec<u8>, String>;

/// A commit for the syncer, and where to say how it went.
pub struct Handoff {
    pub commit: Commit,
    pub synced: oneshot::Sender<Synced>,
}

pub struct Syncer {
    shared: Arc<Shared>,
    segment_size_bytes: u64,
    head_sender: watch::Sender<Position>,
    head_file: HeadFile,
    /// Where the next commit goes in the active (last) segment.
    write_offset: u64,
    /// The active segment's size (segments keep the size they were created with).
    active_segment_bytes: u64,
    spare: Option<JoinHandle<std::io::Result<PathBuf>>>,
    faults: Option<Arc<dyn IoFaults>>,
}

impl Syncer {
    pub fn new(
        shared: Arc<Shared>,
        segment_size_bytes: u64,
        head_sender: watch::Sender<Position>,
        head_file: HeadFile,
        write_offset: u64,
        active_segment_bytes: u64,
        faults: Option<Arc<dyn IoFaults>>,
    ) -> Syncer {
        Syncer {
            shared,
            segment_size_bytes,
            head_sender,
            head_file,
            write_offset,
            active_segment_bytes,
            spare: None,
            faults,
        }
    }

    /// Runs until the builder hangs up, or until a commit fails (the store is then failed
    /// and the builder answers everything after it).
    pub fn run(mut self, commits: std::sync::mpsc::Receiver<Handoff>) {
        for Handoff { mut commit, synced } in commits {
            if commit.buffer.is_empty() {
                // Only answers: durable as soon as the commit before it was.
                let _ = synced.send(Ok(std::mem::take(&mut commit.buffer)));
                answer(commit);
                continue;
            }
            match self.write(&commit) {
                Ok(()) => {
                    let published = self.publish(&commit);
                    let buffer = std::mem::take(&mut commit.buffer);
                    // Answer first: the appenders' next appends then have a chance to join
                    // the next commit instead of waiting for the one after it. The commit is
                    // durable and indexed even if `HEAD` could not be written.
                    let requests = answer(commit);
                    if let Err(error) = published {
                        let why = self.shared.record_failure(&error);
                        let _ = synced.send(Err(why));
                        break;
                    }
                    let _ = synced.send(Ok(buffer));
                    // Freed once the builder has its go: not on the way to it.
                    drop(requests);
                    self.prepare_spare_when_half_full();
                }
                Err(error) => {
                    // Recorded before any appender can see its reply channel close.
                    let why = self.shared.record_failure(&error);
                    commit.fail(&why);
                    let _ = synced.send(Err(why));
                    break;
                }
            }
        }
        if let Some(spare) = self.spare.take() {
            let _ = spare.join();
        }
    }

    /// Writes and syncs a sealed commit, first rolling to a new segment if it does not fit
    /// in the rest of this one.
    fn write(&mut self, commit: &Commit) -> Result<(), StoreError> {
        if self.write_offset + commit.buffer.len() as u64 > self.active_segment_bytes {
            self.roll(commit.first_position, commit.first_previous_hash)?;
        }
        let index = self.shared.index.read().expect("index lock");
        let segment = index.segments.last().expect("a segment is open");
        let (file, path) = (segment.file.clone(), segment.path.clone());
        drop(index);
        let faults = self.faults.as_deref();
        let check = |operation| faults.map_or(Ok(()), |faults| faults.before(operation));
        check(IoOperation::Write)
            .and_then(|()| file.write_all_at(&commit.buffer, self.write_offset))
            .and_then(|()| check(IoOperation::Sync))
            .and_then(|()| file.sync_data())
            .map_err(|e| StoreError::io(path, e))
    }

    fn roll(&mut self, first_position: Position, previous_hash: Hash32) -> Result<(), StoreError> {
        let directory = self.shared.segments_directory.clone();
        let spare = match self.spare.take() {
            Some(preparing) => preparing.join().expect("spare preparation does not panic"),
            None => segment::prepare_spare(&directory, self.segment_size_bytes),
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
        self.active_segment_bytes = self.segment_size_bytes;
        Ok(())
    }

    /// The commit is durable: index it, advance the head and publish it in `HEAD`.
    fn publish(&mut self, commit: &Commit) -> Result<(), StoreError> {
        let head = {
            let mut index = self.shared.index.write().expect("index lock");
            for accepted in &commit.accepted {
                let positions = accepted.result.first_position..;
                for ((position, offset), event) in positions
                    .zip(&accepted.offsets)
                    .zip(&accepted.request.events)
                {
                    index.add_event(
                        position,
                        self.write_offset + *offset as u64,
                        &event.stream_id,
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
        // After the fdatasync returned, never before: HEAD may lag the log, never lead it.
        self.head_file
            .publish(head)
            .map_err(|e| StoreError::io(self.head_file.path(), e))
    }

    fn prepare_spare_when_half_full(&mut self) {
        if self.spare.is_none() && self.write_offset > self.active_segment_bytes / 2 {
            let directory = self.shared.segments_directory.clone();
            let size = self.segment_size_bytes;
            self.spare = Some(
                std::thread::Builder::new()
                    .name("stemma-spare-segment".into())
                    .spawn(move || segment::prepare_spare(&directory, size))
                    .expect("spawning a thread"),
            );
        }
    }
}

/// Sends every answer of a durable commit. Returns the requests, to be freed later.
// The boxes are what is handed back to be freed: unboxing would copy each request.
#[allow(clippy::vec_box)]
fn answer(commit: Commit) -> Vec<Box<Submitted>> {
    let mut requests = Vec::with_capacity(commit.accepted.len());
    for accepted in commit.accepted {
        requests.push(accepted.request);
        let mut replies = accepted.replies;
        // Retries of the same command share the result; the last one takes it.
        let last = replies.pop().expect("an accepted append has its reply");
        for reply in replies {
            let _ = reply.send(Ok(accepted.result.clone()));
        }
        let _ = last.send(Ok(accepted.result));
    }
    for (reply, outcome) in commit.answers {
        let _ = reply.send(outcome);
    }
    requests
}
