//! The syncer: writes and syncs the commits the builder hands it, one at a time, and
//! publishes each (index, head, `HEAD`, answers) once its `fdatasync` returned, or hands it
//! back for the builder to publish when the builder has a next commit of its own waiting
//! (`hand_over_first`).
//!
//! It writes through the `Disk` (the active segment, where the next commit goes, rolling
//! to a new segment), which the builder uses too when it writes a commit itself
//! (`Builder::sync_here`); one commit is written at a time either way. A commit is indexed
//! and answered only after its `fdatasync` returned, so readers never see an event that a
//! crash could take back.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::answer::{Answerer, Answers};
use super::head::HeadFile;
use super::index::SegmentEntry;
use super::segment::{self, SegmentHeader, ZeroFill, SEGMENT_HEADER_BYTES};
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

/// What the syncer tells the builder about a commit.
pub enum Synced {
    /// Durable, for the builder to index and answer (after handing over the next commit).
    Written(Box<Written>),
    /// Durable, indexed and answered by the syncer.
    Indexed(Published),
    /// Failed, and with it the store (its appenders are answered already): why.
    Failed(String),
}

/// A commit the syncer published itself, as the builder learns of it.
pub struct Published {
    /// Its buffer, for reuse.
    pub buffer: Vec<u8>,
    /// The appends it answered plus those the builder had waiting when it was published:
    /// how many appends the next commit can expect once the answered appenders are back.
    pub expected: usize,
    /// Of those, the appends that arrived while it was written and synced: none means
    /// the appenders wait for their answers before sending more, and the builder then
    /// writes the next commit itself (`Builder::sync_here`).
    pub arrived: usize,
    /// How long its `pwrite` + `fdatasync` took: waiting longer than that for the
    /// answered appenders to come back costs more than letting the late ones take the
    /// commit after.
    pub sync_time: Duration,
}

/// What makes a durable commit visible: the index, the head `watch` and `HEAD`. Whoever
/// gets to a commit uses it: the builder when it has a next commit of its own waiting (it
/// hands that over first), else the syncer, which saves the hop to the builder's thread (what a
/// lone appender waits on). Commits are indexed in order either way: the syncer indexes a
/// commit only if the one before it is indexed already.
pub struct Publisher {
    pub shared: Arc<Shared>,
    pub head_sender: watch::Sender<Position>,
    pub head_file: HeadFile,
    /// Appends the builder has waiting for the syncer to be free (decided into the next
    /// commit).
    pub waiting_appends: AtomicUsize,
    pub answerer: Answerer,
}

impl Publisher {
    /// Writes a durable commit's last position (`last`) to `HEAD`.
    pub fn write_head_file(&self, last: Option<Position>) -> Result<(), StoreError> {
        let Some(position) = last else {
            return Ok(());
        };
        self.head_file
            .publish(position)
            .map_err(|e| StoreError::io(self.head_file.path(), e))
    }

    /// Indexes a durable commit written at `offset` (with the segment it rolled to, if
    /// any) and advances the head, if the commit before it is indexed; returns whether it
    /// did.
    pub fn index_if_next(
        &self,
        commit: &Commit,
        offset: u64,
        new_segment: &mut Option<SegmentEntry>,
    ) -> bool {
        let head = {
            let mut index = self.shared.index.write().expect("index lock");
            if index.head.position + 1 != commit.first_position {
                return false;
            }
            if commit.buffer.is_empty() {
                return true;
            }
            if let Some(segment) = new_segment.take() {
                index.segments.push(segment);
            }
            for accepted in &commit.accepted {
                let positions = accepted.result.first_position..;
                let frames = &commit.frames[accepted.frames.clone()];
                for ((position, &(at, _, _)), event) in
                    positions.zip(frames).zip(&accepted.request.events)
                {
                    index.add_event(
                        position,
                        offset + at as u64,
                        &event.stream_id,
                        accepted.command_key,
                    );
                }
            }
            index.head.hash = commit.previous_hash;
            index.last_recorded_at = commit.recorded_at;
            index
                .segments
                .last_mut()
                .expect("a segment is open")
                .end_offset = offset + commit.buffer.len() as u64;
            index.head.position
        };
        assert_eq!(head + 1, commit.next_position);
        // Two threads publish: the head only ever moves forward.
        self.head_sender.send_if_modified(|published| {
            let newer = head > *published;
            if newer {
                *published = head;
            }
            newer
        });
        true
    }
}

/// Whether a durable commit goes back to the builder so that it hands over the `waiting`
/// appends first (their `pwrite` then follows this `fdatasync` at once, and answering
/// this commit's `appends` overlaps their sync), rather than being published here.
///
/// Only when the waiting appends are a group of their own, at least half as many as the
/// durable commit's. Fewer are the first of this commit's appenders back from their
/// previous answer, and handing them over alone would split the appenders for good: the
/// rest come back during that sync and take the commit after it, so every round costs
/// two `fdatasync`s. Published here instead, the builder keeps those few and lets the
/// answered appenders rejoin them (`Builder::gather`), bounded by one sync's time.
pub fn hand_over_first(waiting: usize, appends: usize) -> bool {
    waiting > 0 && waiting * 2 >= appends
}

/// Hands every answer of a durable commit to the `Answerer` (which frees its requests
/// once they are sent). Returns its buffer, for reuse.
pub fn answer(mut commit: Commit, answerer: &Answerer) -> Vec<u8> {
    let buffer = std::mem::take(&mut commit.buffer);
    answerer.answer(Answers {
        accepted: commit.accepted,
        answers: commit.answers,
    });
    buffer
}

/// A commit for the syncer, and where to say how it went.
pub struct Handoff {
    pub commit: Commit,
    pub synced: oneshot::Sender<Synced>,
}

/// The active segment and where the next commit goes in it: used by whichever thread
/// writes the commit (the syncer, or the builder when it writes one itself), one commit
/// at a time, so the lock is never contended.
pub struct Disk {
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

/// A commit `Disk::write_or_fail` wrote and synced.
pub struct WrittenAt {
    pub commit: Commit,
    /// Where it starts in its segment.
    pub offset: u64,
    /// The segment it rolled to, if it did.
    pub new_segment: Option<SegmentEntry>,
    pub sync_time: Duration,
}

impl Disk {
    pub fn new(
        shared: Arc<Shared>,
        segment_size_bytes: u64,
        write_offset: u64,
        active_segment_bytes: u64,
        faults: Option<Arc<dyn IoFaults>>,
    ) -> Disk {
        let active = {
            let index = shared.index.read().expect("index lock");
            let segment = index.segments.last().expect("a segment is open");
            (segment.file.clone(), segment.path.clone())
        };
        Disk {
            shared,
            segment_size_bytes,
            active,
            write_offset,
            active_segment_bytes,
            spare: None,
            faults,
        }
    }

    /// Where the next commit goes in the active segment, and that segment's size.
    pub fn end(&self) -> (u64, u64) {
        (self.write_offset, self.active_segment_bytes)
    }

    /// `write`, timed (the returned duration is the sync time that bounds the builder's
    /// gathering). On an error the store is failed, recorded before any appender can see
    /// its reply channel close, and the commit's appends are answered with the reason.
    pub fn write_or_fail(&mut self, mut commit: Commit) -> Result<WrittenAt, String> {
        let started = Instant::now();
        match self.write(&mut commit) {
            Ok((offset, new_segment)) => Ok(WrittenAt {
                commit,
                offset,
                new_segment,
                sync_time: started.elapsed(),
            }),
            Err(error) => {
                let why = self.shared.record_failure(&error);
                commit.fail(&why);
                Err(why)
            }
        }
    }

    /// Writes and syncs a sealed commit, first rolling to a new segment if it does not fit
    /// in the rest of this one. Returns where it starts, and the new segment if it rolled.
    /// A commit of answers only writes nothing: it is durable once the one before it is.
    ///
    /// The write runs on to the end of its last page with zeroes (what the segment holds
    /// there already): a page the write covers only in part must be read from disk first
    /// unless it is cached, and spares are zero-filled past the page cache. The page it
    /// starts in was the last one written before it, so it is cached.
    pub fn write(
        &mut self,
        commit: &mut Commit,
    ) -> Result<(u64, Option<SegmentEntry>), StoreError> {
        if commit.buffer.is_empty() {
            return Ok((self.write_offset, None));
        }
        let mut new_segment = None;
        if self.write_offset + commit.buffer.len() as u64 > self.active_segment_bytes {
            new_segment = Some(self.roll(commit.first_position, commit.first_previous_hash)?);
        }
        let (file, path) = &self.active;
        let offset = self.write_offset;
        let bytes = commit.buffer.len();
        let end = offset + bytes as u64;
        let padded_end = end
            .next_multiple_of(segment::PAGE_BYTES)
            .min(self.active_segment_bytes);
        commit.buffer.resize(bytes + (padded_end - end) as usize, 0);
        let faults = self.faults.as_deref();
        let check = |operation| faults.map_or(Ok(()), |faults| faults.before(operation));
        let written = check(IoOperation::Write)
            .and_then(|()| file.write_all_at(&commit.buffer, offset))
            .and_then(|()| check(IoOperation::Sync))
            .and_then(|()| file.sync_data());
        commit.buffer.truncate(bytes);
        written.map_err(|e| StoreError::io(path, e))?;
        self.write_offset = end;
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
            None => segment::prepare_spare(&directory, self.segment_size_bytes, ZeroFill::Direct),
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

    /// Starts zero-filling the next segment once the active one is half full, off the
    /// path of any commit.
    pub fn prepare_spare_when_half_full(&mut self) {
        if self.spare.is_none() && self.write_offset > self.active_segment_bytes / 2 {
            let directory = self.shared.segments_directory.clone();
            let size = self.segment_size_bytes;
            self.spare = Some(
                std::thread::Builder::new()
                    .name("stemma-spare-segment".into())
                    .spawn(move || segment::prepare_spare(&directory, size, ZeroFill::Direct))
                    .expect("spawning a thread"),
            );
        }
    }

    /// Waits for a spare segment being prepared (the writer is stopping).
    pub fn finish(&mut self) {
        if let Some(spare) = self.spare.take() {
            let _ = spare.join();
        }
    }
}

pub struct Syncer {
    shared: Arc<Shared>,
    publisher: Arc<Publisher>,
    disk: Arc<Mutex<Disk>>,
}

impl Syncer {
    pub fn new(shared: Arc<Shared>, publisher: Arc<Publisher>, disk: Arc<Mutex<Disk>>) -> Syncer {
        Syncer {
            shared,
            publisher,
            disk,
        }
    }

    /// Runs until the builder hangs up, or until a commit fails (the store is then failed
    /// and the builder answers everything after it).
    ///
    /// With a next commit of its own waiting, it only writes and syncs: the builder
    /// hands that over first, then indexes and answers this one, so the next `pwrite`
    /// follows this `fdatasync` by one hand-off, not by the bookkeeping of a commit.
    pub fn run(self, commits: std::sync::mpsc::Receiver<Handoff>) {
        for Handoff { commit, synced } in commits {
            let written = self.disk.lock().expect("disk lock").write_or_fail(commit);
            let WrittenAt {
                commit,
                offset,
                mut new_segment,
                sync_time,
            } = match written {
                Ok(written) => written,
                Err(why) => {
                    let _ = synced.send(Synced::Failed(why));
                    break;
                }
            };
            let publisher = &self.publisher;
            let waiting = publisher.waiting_appends.load(Ordering::Acquire);
            let publish_here = !hand_over_first(waiting, commit.appends)
                && publisher.index_if_next(&commit, offset, &mut new_segment);
            if !publish_here {
                let written = Written {
                    commit,
                    offset,
                    new_segment,
                };
                let _ = synced.send(Synced::Written(Box::new(written)));
                self.prepare_spare_when_half_full();
                continue;
            }
            // After the fdatasync returned, never before: HEAD may lag the log, never lead
            // it. Before the answers: a reader started once an append is answered (`stemma
            // audit` beside the service) sees it.
            let head_file = publisher.write_head_file(commit.last_written());
            let commit_appends = commit.appends;
            // Answer first: the appenders' next appends then have a chance to join the next
            // commit instead of waiting for the one after it. The commit is durable and
            // indexed even if `HEAD` could not be written.
            let buffer = answer(commit, &publisher.answerer);
            if let Err(error) = head_file {
                let _ = synced.send(Synced::Failed(self.shared.record_failure(&error)));
                break;
            }
            let _ = synced.send(Synced::Indexed(Published {
                buffer,
                expected: commit_appends + waiting,
                arrived: waiting,
                sync_time,
            }));
            self.prepare_spare_when_half_full();
        }
    }

    fn prepare_spare_when_half_full(&self) {
        self.disk
            .lock()
            .expect("disk lock")
            .prepare_spare_when_half_full();
    }
}
