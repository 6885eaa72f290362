//! Opening a log: scan every segment, check everything, rebuild the index, cut a torn tail.
//!
//! What the writer guarantees, and recovery relies on:
//! - A group commit is one contiguous write followed by `fdatasync`; the next commit is not
//!   written before that `fdatasync` returns. So only the last commit in the log can be
//!   torn (some of its pages on disk, others not, in any order), and it was never
//!   acknowledged.
//! - Every frame names its commit's first and last position. Damage followed by a valid
//!   frame of a *later* commit proves the damaged commit had been durable: that is
//!   corruption, and open refuses. Damage followed only by zeroes or by frames of the same
//!   commit is a torn tail.
//! - A torn tail is cut from the start of its commit (zeroed and fsync'd) and reported.
//!   Cutting whole commits means an append is never recovered in part.
//! - A commit never spans two segments, and segments appear complete (see `segment`), so
//!   only the last segment can hold a torn tail.
//!
//! Everything before the tail is checked: frame checksums, decoding, gap-free positions,
//! gap-free stream versions, every hash link, and each segment header against the chain.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::index::{CommandKey, Index, SegmentEntry};
use super::segment::{SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::store::chain::Links;
use crate::store::codec::{self, CommitRange, EnvelopeRef, Frame, FRAME_MAGIC};
use crate::store::error::{CorruptionKind, StoreError};
use crate::store::types::{Hash32, Head, Position, StreamId};
use crate::time::Timestamp;

/// A torn tail that was cut on open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub segment: PathBuf,
    pub offset: u64,
    /// Bytes from `offset` to the last non-zero byte that were zeroed.
    pub bytes_discarded: u64,
}

/// The commit being scanned, with what it takes to take it back out of the index.
struct CommitScan<'a> {
    range: CommitRange,
    start_offset: usize,
    head_before: Head,
    recorded_at_before: Timestamp,
    /// The stream of each of its events so far, in the segment's bytes.
    streams: Vec<&'a str>,
    commands: Vec<CommandKey>,
}

/// Where the scan of one segment stopped.
struct Stop<'a> {
    /// Where the records end.
    offset: usize,
    /// Why, when it was not clean zeroes.
    damage: Option<CorruptionKind>,
    /// The last commit seen, if its last record was not reached.
    incomplete: Option<CommitScan<'a>>,
}

/// Scans `segments` (in log order) into a fresh index. `segments` may be empty.
pub fn scan(
    segments: &[(Position, PathBuf)],
    body_bytes_max: usize,
) -> Result<(Index, Option<TornTail>), StoreError> {
    let mut index = Index::empty();
    let mut torn_tail = None;
    // One buffer for every segment: a fresh one per segment would fault in (and have the
    // kernel zero) a segment's worth of new pages each time.
    let mut buffer = Vec::new();
    for (i, (named_position, path)) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let mut file = OpenOptions::new()
            .read(true)
            .write(is_last)
            .open(path)
            .map_err(|e| StoreError::io(path, e))?;
        buffer.clear();
        file.read_to_end(&mut buffer)
            .map_err(|e| StoreError::io(path, e))?;
        let bytes = &buffer[..];
        let corrupt =
            |offset: usize, position: Position, kind: CorruptionKind| StoreError::Corrupt {
                segment: path.clone(),
                offset: offset as u64,
                position,
                kind,
            };
        let expected_position = index.head.position + 1;
        let header =
            SegmentHeader::decode(&bytes).map_err(|kind| corrupt(0, expected_position, kind))?;
        if header.first_position != expected_position || *named_position != expected_position {
            return Err(corrupt(
                0,
                expected_position,
                CorruptionKind::PositionGap {
                    expected: expected_position,
                    found: header.first_position,
                },
            ));
        }
        if header.previous_hash != index.head.hash {
            return Err(corrupt(0, expected_position, CorruptionKind::BrokenLink));
        }
        index.segments.push(SegmentEntry {
            path: path.clone(),
            file: Arc::new(file),
            first_position: header.first_position,
            offsets: Vec::new(),
            end_offset: SEGMENT_HEADER_BYTES,
        });
        let stop = scan_records(bytes, &mut index, body_bytes_max, path)?;
        let next_position = index.head.position + 1;
        if !is_last {
            if let Some(kind) = stop.damage {
                return Err(corrupt(stop.offset, next_position, kind));
            }
            if stop.incomplete.is_some() {
                return Err(corrupt(
                    stop.offset,
                    next_position,
                    CorruptionKind::BadFrame("a commit ends early in a sealed segment".into()),
                ));
            }
            continue;
        }
        // The last segment: damage here is a torn tail unless a later commit follows it.
        if let Some(later) =
            later_commit_after(bytes, stop.offset + 1, next_position, body_bytes_max)
        {
            tracing::error!(segment = %path.display(), offset = stop.offset, later, "damage before a later commit");
            let kind = stop
                .damage
                .unwrap_or(CorruptionKind::DamageBeforeLaterCommit);
            return Err(corrupt(stop.offset, next_position, kind));
        }
        let cut_at = match stop.incomplete {
            Some(commit) => {
                index.truncate(
                    commit.head_before,
                    commit.recorded_at_before,
                    &commit.streams,
                    &commit.commands,
                );
                index.segments.last_mut().expect("a segment").end_offset =
                    commit.start_offset as u64;
                commit.start_offset
            }
            None => stop.offset,
        };
        let file = &index.segments.last().expect("a segment").file;
        torn_tail = cut_tail(file, path, bytes, cut_at)?;
    }
    Ok((index, torn_tail))
}

/// Frames whose checksums hold, read ahead of the checks in order, with whether each
/// stored hash is the hash of its content (given its stored previous hash): hashed
/// together, one frame per SIMD lane (`chain::Links`), which is several times cheaper than
/// one by one and was the largest part of opening a log.
#[derive(Default)]
struct LinkChecks<'a> {
    /// (commit, body, hash holds), in reverse so `next` pops the earliest.
    ahead: Vec<(CommitRange, &'a [u8], bool)>,
    links: Links,
    hashes: Vec<Hash32>,
}

/// Frames read ahead at a time: enough to fill the SIMD lanes of every length group.
const FRAMES_AHEAD: usize = 256;

impl<'a> LinkChecks<'a> {
    fn is_empty(&self) -> bool {
        self.ahead.is_empty()
    }

    /// Reads up to `FRAMES_AHEAD` valid frames from `at`, stopping before anything else.
    fn check_ahead(&mut self, bytes: &'a [u8], mut at: usize, body_bytes_max: usize) {
        while self.ahead.len() < FRAMES_AHEAD && at <= bytes.len() {
            let Frame::Valid {
                commit,
                body,
                frame_bytes,
            } = codec::parse_frame(&bytes[at..], body_bytes_max)
            else {
                break;
            };
            self.ahead.push((commit, body, false));
            at += frame_bytes;
        }
        let inputs: Vec<(&[u8; 32], &[u8])> = self
            .ahead
            .iter()
            .filter_map(|(_, body, _)| codec::stored_link(body))
            .collect();
        self.links.link_many(&inputs, &mut self.hashes);
        let mut hashes = self.hashes.iter();
        for (_, body, holds) in &mut self.ahead {
            if codec::stored_link(body).is_some() {
                let hash = hashes.next().expect("one hash per input");
                *holds = *hash == codec::stored_hash(body);
            }
        }
        self.ahead.reverse();
    }

    fn next(&mut self) -> Option<(CommitRange, &'a [u8], bool)> {
        self.ahead.pop()
    }
}

/// Scans the records of one segment into `index`, up to the first thing that is not a
/// valid record. Errors on damage that cannot be a torn write.
fn scan_records<'a>(
    bytes: &'a [u8],
    index: &mut Index,
    body_bytes_max: usize,
    path: &Path,
) -> Result<Stop<'a>, StoreError> {
    let mut at = SEGMENT_HEADER_BYTES as usize;
    let mut commit: Option<CommitScan> = None;
    let mut links = LinkChecks::default();
    loop {
        let position = index.head.position + 1;
        if links.is_empty() {
            links.check_ahead(bytes, at, body_bytes_max);
        }
        let Some((range, body, hash_holds)) = links.next() else {
            let damage = match codec::parse_frame(&bytes[at..], body_bytes_max) {
                Frame::Invalid(kind) => Some(kind),
                Frame::Empty | Frame::Valid { .. } => None,
            };
            let incomplete = commit.filter(|c| c.range.last_position > index.head.position);
            return Ok(Stop {
                offset: at,
                damage,
                incomplete,
            });
        };
        // A frame whose checksum matches was written whole: anything wrong inside it is
        // corruption, never a torn write.
        let corrupt = |kind: CorruptionKind| StoreError::Corrupt {
            segment: path.to_path_buf(),
            offset: at as u64,
            position,
            kind,
        };
        let event = EnvelopeRef::decode(body).map_err(corrupt)?;
        if event.position != position {
            return Err(corrupt(CorruptionKind::PositionGap {
                expected: position,
                found: event.position,
            }));
        }
        if !(range.first_position..=range.last_position).contains(&position) {
            return Err(corrupt(CorruptionKind::BadFrame(format!(
                "position {position} outside its commit {}..={}",
                range.first_position, range.last_position
            ))));
        }
        if range.first_position == position {
            commit = Some(CommitScan {
                range,
                start_offset: at,
                head_before: index.head,
                recorded_at_before: index.last_recorded_at,
                streams: Vec::new(),
                commands: Vec::new(),
            });
        }
        let Some(current) = commit.as_mut().filter(|c| c.range == range) else {
            return Err(corrupt(CorruptionKind::BadFrame(
                "record does not belong to the commit around it".into(),
            )));
        };
        if Hash32(event.previous_hash) != index.head.hash {
            return Err(corrupt(CorruptionKind::BrokenLink));
        }
        // Checked ahead against the stored previous hash, which equals the head's here.
        if !hash_holds {
            return Err(corrupt(CorruptionKind::BadHash));
        }
        let expected_version = index.stream_version(event.stream_id) + 1;
        if event.stream_version != expected_version {
            return Err(corrupt(CorruptionKind::VersionGap {
                stream_id: StreamId::from_log(event.stream_id),
                expected: expected_version,
                found: event.stream_version,
            }));
        }
        let command_key = CommandKey::of(event.command_id);
        index.add_event(position, at as u64, event.stream_id, command_key);
        index.head.hash = Hash32(event.hash);
        index.last_recorded_at = index.last_recorded_at.max(Timestamp(event.recorded_at));
        current.streams.push(event.stream_id);
        current.commands.push(command_key);
        at += codec::frame_bytes(body.len());
        index.segments.last_mut().expect("a segment").end_offset = at as u64;
    }
}

/// The offset of a valid frame at or after `from` that belongs to a commit after
/// `next_position` (the first position not recovered), if any.
fn later_commit_after(
    bytes: &[u8],
    from: usize,
    next_position: Position,
    body_bytes_max: usize,
) -> Option<usize> {
    if bytes.get(from..).is_none_or(all_zero) {
        return None;
    }
    let magic = FRAME_MAGIC.to_le_bytes();
    let mut at = from;
    while at + magic.len() <= bytes.len() {
        let found = bytes[at..].windows(4).position(|w| w == magic)?;
        let candidate = at + found;
        if let Frame::Valid { commit, .. } = codec::parse_frame(&bytes[candidate..], body_bytes_max)
        {
            if commit.first_position > next_position {
                return Some(candidate);
            }
        }
        at = candidate + 1;
    }
    None
}

fn all_zero(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(64);
    let zero_chunks = chunks
        .by_ref()
        .all(|chunk| chunk.iter().fold(0u8, |acc, b| acc | b) == 0);
    zero_chunks && chunks.remainder().iter().all(|b| *b == 0)
}

/// Zeroes `[offset, last non-zero byte]` of the last segment and fsyncs, so that later
/// appends never sit next to stale bytes of a torn commit.
fn cut_tail(
    file: &File,
    path: &Path,
    bytes: &[u8],
    offset: usize,
) -> Result<Option<TornTail>, StoreError> {
    if all_zero(&bytes[offset..]) {
        return Ok(None);
    }
    let Some(last_non_zero) = bytes[offset..].iter().rposition(|b| *b != 0) else {
        return Ok(None);
    };
    let length = last_non_zero + 1;
    file.write_all_at(&vec![0u8; length], offset as u64)
        .and_then(|()| file.sync_data())
        .map_err(|e| StoreError::io(path, e))?;
    tracing::warn!(
        segment = %path.display(),
        offset,
        bytes_discarded = length,
        "cut a torn tail left by a crash during a write; it held no acknowledged event"
    );
    Ok(Some(TornTail {
        segment: path.to_path_buf(),
        offset: offset as u64,
        bytes_discarded: length as u64,
    }))
}
