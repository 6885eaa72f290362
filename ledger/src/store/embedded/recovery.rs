//! Opening a log: scan every segment, check everything, rebuild the index, cut a torn tail.
//!
//! What the writer guarantees, and recovery relies on:
//! - A group commit is one contiguous write followed by `fdatasync`; the next commit is not
//!   written before that `fdatasync` returns. So only the last commit in the log can be
//!   torn (some of its pages on disk, others not, in any order), and it was never
//!   acknowledged.
//! - Every frame names the first position of its commit. Damage followed by a valid frame
//!   of a *later* commit proves the damaged commit had been durable: that is corruption,
//!   and open refuses. Damage followed only by zeroes or by frames of the same commit is a
//!   torn tail: it is cut (zeroed and fsync'd) and reported.
//! - A commit never spans two segments, and segments appear complete (see `segment`), so
//!   only the last segment can hold a torn tail.
//!
//! Everything before the tail is checked: frame checksums, decoding, gap-free positions,
//! gap-free stream versions, every hash link, and each segment header against the chain.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::index::{CommandKey, Index, SegmentEntry};
use super::segment::{SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::store::codec::{self, Frame, FRAME_MAGIC};
use crate::store::error::{CorruptionKind, StoreError};
use crate::store::types::Position;

/// A torn tail that was cut on open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub segment: PathBuf,
    pub offset: u64,
    /// Bytes from `offset` to the last non-zero byte that were zeroed.
    pub bytes_discarded: u64,
}

/// Scans `segments` (in log order) into a fresh index. `segments` may be empty.
pub fn scan(
    segments: &[(Position, PathBuf)],
    body_bytes_max: usize,
) -> Result<(Index, Option<TornTail>), StoreError> {
    let mut index = Index::empty();
    let mut torn_tail = None;
    for (i, (named_position, path)) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let file = OpenOptions::new()
            .read(true)
            .write(is_last)
            .open(path)
            .map_err(|e| StoreError::io(path, e))?;
        let bytes = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
        let corrupt = |offset: u64, position: Position, kind: CorruptionKind| StoreError::Corrupt {
            segment: path.clone(),
            offset,
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
        let stop = scan_records(&bytes, &mut index, body_bytes_max, path)?;
        if let Some((offset, kind)) = stop {
            let position = index.head.position + 1;
            if !is_last {
                return Err(corrupt(offset as u64, position, kind));
            }
            if let Some(later) = later_commit_after(&bytes, offset + 1, position, body_bytes_max) {
                tracing::error!(segment = %path.display(), offset, later, "damage before a later commit");
                return Err(corrupt(offset as u64, position, kind));
            }
            let file = &index.segments.last().unwrap().file;
            torn_tail = cut_tail(file, path, &bytes, offset)?;
        } else if is_last {
            // Zeroes where the next record would start. A later commit's frame beyond them
            // means records were zeroed: refuse rather than lose them silently.
            let offset = index.segments.last().unwrap().end_offset as usize;
            let position = index.head.position + 1;
            if let Some(later) = later_commit_after(&bytes, offset, position, body_bytes_max) {
                tracing::error!(segment = %path.display(), offset, later, "zeroed records before a later commit");
                return Err(corrupt(
                    offset as u64,
                    position,
                    CorruptionKind::DamageBeforeLaterCommit,
                ));
            }
            let file = &index.segments.last().unwrap().file;
            torn_tail = cut_tail(file, path, &bytes, offset)?;
        }
    }
    Ok((index, torn_tail))
}

/// Scans the records of one segment into `index`. Returns where and why it stopped when it
/// stopped at something other than zeroes; errors on damage that cannot be a torn write.
fn scan_records(
    bytes: &[u8],
    index: &mut Index,
    body_bytes_max: usize,
    path: &Path,
) -> Result<Option<(usize, CorruptionKind)>, StoreError> {
    let mut at = SEGMENT_HEADER_BYTES as usize;
    loop {
        let position = index.head.position + 1;
        let body = match codec::parse_frame(&bytes[at..], body_bytes_max) {
            Frame::Empty => return Ok(None),
            Frame::Invalid(kind) => return Ok(Some((at, kind))),
            Frame::Valid { body, .. } => body,
        };
        // A frame whose checksum matches was written whole: anything wrong inside it is
        // corruption, never a torn write.
        let corrupt = |kind: CorruptionKind| StoreError::Corrupt {
            segment: path.to_path_buf(),
            offset: at as u64,
            position,
            kind,
        };
        let event = codec::decode_event(body).map_err(corrupt)?;
        if event.position != position {
            return Err(corrupt(CorruptionKind::PositionGap {
                expected: position,
                found: event.position,
            }));
        }
        if event.previous_hash != index.head.hash {
            return Err(corrupt(CorruptionKind::BrokenLink));
        }
        if !codec::body_hash_is_valid(&index.head.hash, body, &event.hash) {
            return Err(corrupt(CorruptionKind::BadHash));
        }
        let expected_version = index.stream_version(&event.stream_id) + 1;
        if event.stream_version != expected_version {
            return Err(corrupt(CorruptionKind::VersionGap {
                stream_id: event.stream_id.clone(),
                expected: expected_version,
                found: event.stream_version,
            }));
        }
        index.add_event(
            position,
            at as u64,
            &event.stream_id,
            CommandKey::of(&event.command_id),
        );
        index.head.hash = event.hash;
        index.last_recorded_at = index.last_recorded_at.max(event.recorded_at);
        at += codec::frame_bytes(body.len());
        index.segments.last_mut().unwrap().end_offset = at as u64;
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
        if let Frame::Valid {
            commit_first_position,
            ..
        } = codec::parse_frame(&bytes[candidate..], body_bytes_max)
        {
            if commit_first_position > next_position {
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
    let torn = TornTail {
        segment: path.to_path_buf(),
        offset: offset as u64,
        bytes_discarded: length as u64,
    };
    tracing::warn!(
        segment = %path.display(),
        offset,
        bytes_discarded = length,
        "cut a torn tail left by a crash during a write; it held no acknowledged event"
    );
    Ok(Some(torn))
}
