//! A read-only view of a data directory, for auditors and exports.
//!
//! Never takes `LOCK`, never cuts, zeroes or writes anything: it works on a directory while
//! `stemma serve` writes to it, or on a damaged copy that `EmbeddedStore::open` refuses.
//!
//! **What it reads.** The segments listed when the view is taken, each read whole, in log
//! order, frame by frame (see `codec`). Frames are handed out grouped by the group commit
//! they were written in (`commit_first..=commit_last` in every frame header). The end of the
//! log is the end of the last *complete* commit: a commit the writer is still writing looks
//! exactly like a torn tail (some of its frames present, then zeroes or a partial frame),
//! and is left out, as recovery would cut it. A complete commit seen in the page cache may
//! not have been `fdatasync`'d yet, so the reader also stops at the durable head the writer
//! publishes in `HEAD` (see `head`), read before the segments: a commit ending after it is
//! left out as the tail. Without a valid `HEAD` (a log from before it existed, a copy
//! without it) the end is the last complete commit.
//!
//! **Damage.** Unlike recovery, the reader does not stop at damage: it reports it as a
//! `Damage` item and resynchronises on the next frame whose checksum holds, so a verifier
//! can report every finding. Damage in the last segment followed by no frame of a later
//! commit is the torn tail (or the commit in progress), reported once as `Tail`.

use std::path::{Path, PathBuf};

use super::head;
use super::recovery::all_zero;
use super::segment::{self, SegmentHeader, SEGMENT_HEADER_BYTES};
use super::RECORD_BODY_BYTES_MAX;
use crate::store::codec::{self, CommitRange, Frame, FRAME_MAGIC};
use crate::store::error::{CorruptionKind, StoreError};
use crate::store::types::Position;

/// The segment files of a data directory, as they were when the view was taken.
#[derive(Clone, Debug)]
pub struct LogSnapshot {
    pub data_directory: PathBuf,
    /// (first position named by the file, path), in log order.
    pub segments: Vec<(Position, PathBuf)>,
    /// The durable head the writer had published when the view was taken; the scan stops
    /// there. `None` when `HEAD` is missing or unreadable.
    pub durable_head: Option<Position>,
}

impl LogSnapshot {
    /// Lists the segments of `data_directory` (the directory `stemma serve --data` names,
    /// holding `segments/`). Fails if there is no `segments/` directory.
    pub fn open(data_directory: impl AsRef<Path>) -> Result<LogSnapshot, StoreError> {
        let data_directory = data_directory.as_ref().to_path_buf();
        let segments_directory = data_directory.join("segments");
        if !segments_directory.is_dir() {
            return Err(StoreError::io(
                &segments_directory,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no segments directory: not a Stemma data directory",
                ),
            ));
        }
        // Before the segments: every position up to it is durable, so in the files listed
        // after, whatever the writer does meanwhile.
        let durable_head = head::read(&data_directory);
        let segments = segment::list_segments(&segments_directory)?;
        Ok(LogSnapshot {
            data_directory,
            segments,
            durable_head,
        })
    }

    /// Total bytes of the listed segment files, for progress reporting.
    pub fn total_bytes(&self) -> u64 {
        self.segments
            .iter()
            .filter_map(|(_, path)| std::fs::metadata(path).ok())
            .map(|metadata| metadata.len())
            .sum()
    }

    /// Reads every segment in order and hands each item to `visit`. Stops early when
    /// `visit` returns `false`.
    pub fn scan(
        &self,
        mut visit: impl FnMut(ScanItem<'_>) -> bool,
    ) -> Result<ScanSummary, StoreError> {
        let mut summary = ScanSummary::default();
        // One buffer for every segment: a fresh one each time cost a page fault per 4 KiB.
        let mut bytes = Vec::new();
        for (index, (named_position, path)) in self.segments.iter().enumerate() {
            let is_last = index + 1 == self.segments.len();
            bytes.clear();
            std::fs::File::open(path)
                .and_then(|mut file| std::io::Read::read_to_end(&mut file, &mut bytes))
                .map_err(|e| StoreError::io(path, e))?;
            summary.bytes_read += bytes.len() as u64;
            let header = SegmentHeader::decode(&bytes).map(|header| SegmentInfo {
                first_position: header.first_position,
                previous_hash: header.previous_hash,
            });
            if !visit(ScanItem::Segment {
                path,
                named_position: *named_position,
                header,
                size_bytes: bytes.len() as u64,
            }) {
                return Ok(summary);
            }
            let limit = self.durable_head.unwrap_or(Position::MAX);
            if !scan_segment(path, &bytes, is_last, limit, &mut visit, &mut summary) {
                return Ok(summary);
            }
        }
        Ok(summary)
    }
}

/// What a segment header says, or why it could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub first_position: Position,
    pub previous_hash: crate::store::types::Hash32,
}

/// One frame whose checksum holds.
#[derive(Clone, Copy, Debug)]
pub struct FrameRef<'a> {
    pub offset: u64,
    pub commit: CommitRange,
    /// The bincode envelope, ending with the event's 32-byte hash.
    pub body: &'a [u8],
}

/// What the reader finds, in log order.
#[derive(Debug)]
pub enum ScanItem<'a> {
    /// A new segment begins.
    Segment {
        path: &'a Path,
        named_position: Position,
        header: Result<SegmentInfo, CorruptionKind>,
        size_bytes: u64,
    },
    /// The frames of one group commit, in order. `complete` is false when the commit has
    /// fewer frames than its range names and later data follows (damage, not a tail).
    Commit {
        path: &'a Path,
        commit: CommitRange,
        frames: &'a [FrameRef<'a>],
        complete: bool,
    },
    /// Bytes that are not a valid frame, followed by later data (so not a torn tail).
    /// `resumed_at` is where reading went on, if anywhere in this segment.
    Damage {
        path: &'a Path,
        offset: u64,
        kind: CorruptionKind,
        resumed_at: Option<u64>,
    },
    /// The end of the log: a torn tail, a commit still being written, or commits after the
    /// durable head, left out.
    Tail {
        path: &'a Path,
        offset: u64,
        /// Bytes from `offset` to the last non-zero byte.
        bytes_ignored: u64,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanSummary {
    pub bytes_read: u64,
}

/// Frames of the commit being gathered.
struct Gathering<'a> {
    commit: CommitRange,
    frames: Vec<FrameRef<'a>>,
}

impl Gathering<'_> {
    fn is_complete(&self) -> bool {
        let expected = self
            .commit
            .last_position
            .checked_sub(self.commit.first_position)
            .and_then(|n| n.checked_add(1));
        expected == Some(self.frames.len() as u64)
    }
}

/// Scans one segment's frames. Returns `false` if `visit` asked to stop.
fn scan_segment<'a>(
    path: &'a Path,
    bytes: &'a [u8],
    is_last: bool,
    limit: Position,
    visit: &mut impl FnMut(ScanItem<'_>) -> bool,
    _summary: &mut ScanSummary,
) -> bool {
    let out = Out { path, bytes, limit };
    // One frames buffer for the whole segment, handed out as a slice and reused: a `Vec`
    // per commit made the allocator's consolidation a tenth of `verify`'s profile.
    let mut spare: Vec<FrameRef<'a>> = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES as usize;
    let mut gathering: Option<Gathering<'a>> = None;
    // The last position of the last commit handed out whole: a frame of a commit starting
    // after it is "later" (proves the damage before it had been durable).
    let mut last_complete: Position = 0;
    loop {
        let parsed = if at <= bytes.len() {
            codec::parse_frame(&bytes[at..], RECORD_BODY_BYTES_MAX)
        } else {
            Frame::Empty
        };
        match parsed {
            Frame::Valid {
                commit,
                body,
                frame_bytes,
            } => {
                let frame = FrameRef {
                    offset: at as u64,
                    commit,
                    body,
                };
                match &mut gathering {
                    Some(current) if current.commit == commit && !current.is_complete() => {
                        current.frames.push(frame);
                    }
                    _ => {
                        if let Some(previous) = gathering.take() {
                            // A new commit starts while the previous one lacks frames: the
                            // previous one was durable (a later commit follows), so it is
                            // handed out as incomplete, for the verifier to report.
                            let complete = previous.is_complete();
                            last_complete = last_complete.max(previous.commit.last_position);
                            if !out.hand(visit, previous, complete, &mut spare) {
                                return false;
                            }
                        }
                        let mut frames = std::mem::take(&mut spare);
                        frames.push(frame);
                        gathering = Some(Gathering { commit, frames });
                    }
                }
                if gathering.as_ref().is_some_and(Gathering::is_complete) {
                    let done = gathering.take().expect("just checked");
                    last_complete = last_complete.max(done.commit.last_position);
                    if !out.hand(visit, done, true, &mut spare) {
                        return false;
                    }
                }
                at += frame_bytes;
            }
            Frame::Empty | Frame::Invalid(_) => {
                let rest = bytes.get(at..).unwrap_or(&[]);
                if all_zero(rest) {
                    // The clean end of the segment's data.
                    return finish_segment(path, at, rest, is_last, gathering, visit);
                }
                let kind = match parsed {
                    Frame::Invalid(kind) => kind,
                    _ => CorruptionKind::BadFrame("zeroes followed by data".into()),
                };
                // Damage. In the last segment it is the tail unless a frame of a later
                // commit follows; elsewhere any valid frame after it is where to resume.
                let pending_last = gathering
                    .as_ref()
                    .map_or(last_complete, |g| g.commit.last_position.max(last_complete));
                let resume = next_valid_frame(bytes, at + 1, |commit| {
                    !is_last || commit.first_position > pending_last
                });
                match resume {
                    None if is_last => {
                        return finish_segment(path, at, rest, true, gathering, visit);
                    }
                    None => {
                        if let Some(previous) = gathering.take() {
                            let complete = previous.is_complete();
                            if !out.hand(visit, previous, complete, &mut spare) {
                                return false;
                            }
                        }
                        return visit(ScanItem::Damage {
                            path,
                            offset: at as u64,
                            kind,
                            resumed_at: None,
                        });
                    }
                    Some(resume_at) => {
                        if let Some(previous) = gathering.take() {
                            let complete = previous.is_complete();
                            last_complete = last_complete.max(previous.commit.last_position);
                            if !out.hand(visit, previous, complete, &mut spare) {
                                return false;
                            }
                        }
                        if !visit(ScanItem::Damage {
                            path,
                            offset: at as u64,
                            kind,
                            resumed_at: Some(resume_at as u64),
                        }) {
                            return false;
                        }
                        at = resume_at;
                    }
                }
            }
        }
    }
}

/// Where gathered commits go from one segment.
struct Out<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    /// The durable head: a commit ending after it ends the scan.
    limit: Position,
}

impl<'a> Out<'a> {
    /// Hands a gathered commit to `visit`, keeping its buffer for the next one; or, if it
    /// ends after the durable head, hands out the rest of the segment as the tail and
    /// stops (`false`).
    fn hand(
        &self,
        visit: &mut impl FnMut(ScanItem<'_>) -> bool,
        gathering: Gathering<'a>,
        complete: bool,
        spare: &mut Vec<FrameRef<'a>>,
    ) -> bool {
        if gathering.commit.last_position > self.limit {
            let offset = gathering.frames[0].offset;
            let rest = &self.bytes[offset as usize..];
            let bytes_ignored = non_zero_len(rest) as u64;
            visit(ScanItem::Tail {
                path: self.path,
                offset,
                bytes_ignored,
            });
            return false;
        }
        let keep_going = visit(ScanItem::Commit {
            path: self.path,
            commit: gathering.commit,
            frames: &gathering.frames,
            complete,
        });
        let mut frames = gathering.frames;
        frames.clear();
        *spare = frames;
        keep_going
    }
}

/// The end of a segment's data at `at`: hand out the last commit if whole; an incomplete
/// last commit is the tail in the last segment and damage in a sealed one.
fn finish_segment<'a>(
    path: &'a Path,
    at: usize,
    rest: &[u8],
    is_last: bool,
    gathering: Option<Gathering<'a>>,
    visit: &mut impl FnMut(ScanItem<'_>) -> bool,
) -> bool {
    let tail_bytes = non_zero_len(rest) as u64;
    match gathering {
        Some(incomplete) if is_last => {
            let offset = incomplete.frames[0].offset;
            let end = at as u64 + tail_bytes;
            visit(ScanItem::Tail {
                path,
                offset,
                bytes_ignored: end - offset,
            })
        }
        Some(incomplete) => {
            let commit = incomplete.commit;
            visit(ScanItem::Commit {
                path,
                commit,
                frames: &incomplete.frames,
                complete: false,
            }) && visit(ScanItem::Damage {
                path,
                offset: at as u64,
                kind: CorruptionKind::BadFrame(format!(
                    "commit {}..={} ends early in a sealed segment",
                    commit.first_position, commit.last_position
                )),
                resumed_at: None,
            })
        }
        None if tail_bytes > 0 => visit(ScanItem::Tail {
            path,
            offset: at as u64,
            bytes_ignored: tail_bytes,
        }),
        None => true,
    }
}

/// The offset of the first frame at or after `from` whose checksum holds and whose commit
/// `accept`s.
fn next_valid_frame(
    bytes: &[u8],
    from: usize,
    accept: impl Fn(CommitRange) -> bool,
) -> Option<usize> {
    let magic = FRAME_MAGIC.to_le_bytes();
    let mut at = from;
    while at + magic.len() <= bytes.len() {
        let found = bytes[at..].windows(4).position(|w| w == magic)?;
        let candidate = at + found;
        if let Frame::Valid { commit, .. } =
            codec::parse_frame(&bytes[candidate..], RECORD_BODY_BYTES_MAX)
        {
            if accept(commit) {
                return Some(candidate);
            }
        }
        at = candidate + 1;
    }
    None
}

/// The length of `bytes` without its trailing zeroes. A segment is preallocated, so its
/// tail can be a hundred MiB of zeroes: compared 64 bytes at a time from the end, not byte
/// by byte.
fn non_zero_len(bytes: &[u8]) -> usize {
    let mut end = bytes.len();
    let mut chunks = bytes.rchunks_exact(64);
    for chunk in chunks.by_ref() {
        if chunk.iter().fold(0u8, |acc, b| acc | b) != 0 {
            break;
        }
        end -= 64;
    }
    bytes[..end]
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |i| i + 1)
}
