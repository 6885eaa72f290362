//! The syncer: writes and syncs the commits the builder hands it, one at a time, and hands
//! each back once its `fdatasync` returned.
//!
//! It owns the active segment (where the next commit goes, rolling to a new segment). The
//! builder indexes and answers a commit only once the syncer handed it back, so readers
//! never see an event that a crash could take back.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::index::SegmentEntry;
use super::segment::{self, SegmentHeader, SEGMENT_HEADER_BYTES};
use super::writer::{Commit, IoFaults, IoOperation, Shared};
use crate::store::error::StoreError;
use crate::store::types::{Hash32, Position};

/// A commit whose `fdatasync` returned, back to the builder to be indexed and answered.
pub struct Written {
    pub commit: Commit,
    /// Where in its segment the commit starts.
    pub offset: u64,
    /// The segment the syncer rolled to for this commit: the builder adds it to the index
    /// just before the commit's events, after the commit before it is indexed.
    pub new_segment: Option<SegmentEntry>,
}

/// What the syncer tells the builder about a commit: durable, or failed (the commit's
/// appenders are answered already) with the reason the store failed.
pub type Synced = Result<Written, String>;

/// A commit for the syncer, and where to say how it went.
pub struct Handoff {
    pub commit: Commit,
    pub synced: oneshot::Sender<Synced>,
}

pub struct Syncer {
    shared: Arc<Shared>,
    segment_size_bytes: u64,
    /// The active (last) segment: the index learns of a new one only when its first
    /// commit is indexed.
    active: (Arc<File>, PathBuf),
    /// Where the next commit goes in the active segment.
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
        write_offset: u64,
        active_segment_bytes: u64,
        faults: Option<Arc<dyn IoFaults>>,
    ) -> Syncer {
        let active = {
            let index = shared.index.read().expect("index lock");
            let segment = index.segments.last().expect("a segment is open");
            (segment.file.clone(), segment.path.clone())
        };
        Syncer {
            shared,
            segment_size_bytes,
            active,
            write_offset,
            active_segment_bytes,
            spare: None,
            faults,
        }
    }

    /// Runs until the builder hangs up, or until a commit fails (the store is then failed
    /// and the builder answers everything after it).
    ///
    /// It only writes and syncs: the builder indexes and answers a commit once it is back,
    /// after handing over the next one, so the next `pwrite` follows the last `fdatasync`
    /// by a hand-off, not by the bookkeeping of a whole commit.
    pub fn run(mut self, commits: std::sync::mpsc::Receiver<Handoff>) {
        for Handoff { commit, synced } in commits {
            if commit.buffer.is_empty() {
                // Only answers: durable as soon as the commit before it was.
                let offset = self.write_offset;
                let written = Written {
                    commit,
                    offset,
                    new_segment: None,
                };
                let _ = synced.send(Ok(written));
                continue;
            }
            match self.write(&commit) {
                Ok((offset, new_segment)) => {
                    let written = Written {
                        commit,
                        offset,
                        new_segment,
                    };
                    let _ = synced.send(Ok(written));
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
    /// in the rest of this one. Returns where it starts, and the new segment if it rolled.
    fn write(&mut self, commit: &Commit) -> Result<(u64, Option<SegmentEntry>), StoreError> {
        let mut new_segment = None;
        if self.write_offset + commit.buffer.len() as u64 > self.active_segment_bytes {
            new_segment = Some(self.roll(commit.first_position, commit.first_previous_hash)?);
        }
        let (file, path) = &self.active;
        let offset = self.write_offset;
        let faults = self.faults.as_deref();
        let check = |operation| faults.map_or(Ok(()), |faults| faults.before(operation));
        check(IoOperation::Write)
            .and_then(|()| file.write_all_at(&commit.buffer, offset))
            .and_then(|()| check(IoOperation::Sync))
            .and_then(|()| file.sync_data())
            .map_err(|e| StoreError::io(path, e))?;
        self.write_offset += commit.buffer.len() as u64;
        Ok((offset, new_segment))
    }

    fn roll(
        &mut self,
        first_position: Position,
        previous_hash: Hash32,
    ) -> Result<SegmentEntry, StoreError> {
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
        let file = Arc::new(file);
        self.active = (file.clone(), path.clone());
        self.write_offset = SEGMENT_HEADER_BYTES;
        self.active_segment_bytes = self.segment_size_bytes;
        Ok(SegmentEntry {
            path,
            file,
            first_position,
            offsets: Vec::new(),
            end_offset: SEGMENT_HEADER_BYTES,
        })
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
