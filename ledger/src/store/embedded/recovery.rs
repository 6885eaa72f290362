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
use std::sync::mpsc;
use std::sync::Arc;

use super::checkpoint::Checkpoint;
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
///
/// Two threads: a checking thread reads each segment and checks its frames (checksums,
/// and every stored hash against its content, hashed side by side), one segment ahead of
/// this one, which decodes the envelopes in order, checks positions, commits, links and
/// stream versions, and builds the index. Hashing was about a quarter of opening a log.
///
/// With a `checkpoint` (see `checkpoint`), the events up to its position are checked frame
/// by frame as always, but not decoded into the maps: those are the checkpoint's, once the
/// log has proved, at that position, to be the one it was made from. If it does not, the
/// scan starts over without it.
pub fn scan(
    segments: &[(Position, PathBuf)],
    body_bytes_max: usize,
    checkpoint: Option<Checkpoint>,
) -> Result<Scanned, StoreError> {
    if let Some(checkpoint) = checkpoint.filter(|c| c.position > 0) {
        let position = checkpoint.position;
        match scan_once(segments, body_bytes_max, Some(checkpoint)) {
            Ok(scanned) => return Ok(scanned),
            Err(ScanError::Store(error)) => return Err(error),
            Err(ScanError::Stale(why)) => tracing::warn!(
                position,
                why,
                "the index checkpoint does not fit the log; rebuilding the index from the log"
            ),
        }
    }
    scan_once(segments, body_bytes_max, None).map_err(|error| match error {
        ScanError::Store(error) => error,
        ScanError::Stale(_) => unreachable!("without a checkpoint there is none to be stale"),
    })
}

/// What open found.
pub struct Scanned {
    pub index: Index,
    pub torn_tail: Option<TornTail>,
    /// The position of the index checkpoint the maps were taken from, if one was used.
    pub from_checkpoint: Option<Position>,
}

enum ScanError {
    Store(StoreError),
    /// The checkpoint does not fit the log, which is not damage: it may be a copy of
    /// another data directory's, or the log may have been restored from an older copy.
    Stale(&'static str),
}

impl From<StoreError> for ScanError {
    fn from(error: StoreError) -> ScanError {
        ScanError::Store(error)
    }
}

fn scan_once(
    segments: &[(Position, PathBuf)],
    body_bytes_max: usize,
    mut checkpoint: Option<Checkpoint>,
) -> Result<Scanned, ScanError> {
    let from_checkpoint = checkpoint.as_ref().map(|c| c.position);
    std::thread::scope(|scope| {
        // Rendezvous: the checking thread holds one segment's bytes while this thread
        // indexes another, so at most two are in memory.
        let (checked_tx, checked) = mpsc::sync_channel::<Result<CheckedSegment, StoreError>>(0);
        let (returned, returned_rx) = mpsc::channel::<Vec<u8>>();
        std::thread::Builder::new()
            .name("stemma-open-check".into())
            .spawn_scoped(scope, move || {
                check_segments(segments, body_bytes_max, &checked_tx, &returned_rx)
            })
            .map_err(|e| StoreError::io(Path::new("stemma-open-check thread"), e))?;
        let mut index = Index::empty();
        let mut torn_tail = None;
        for (i, (named_position, path)) in segments.iter().enumerate() {
            let segment = checked
                .recv()
                .expect("the checking thread sends every segment or an error")?;
            let is_last = i + 1 == segments.len();
            torn_tail = index_segment(
                &mut index,
                &mut checkpoint,
                &segment,
                *named_position,
                path,
                is_last,
                body_bytes_max,
            )?;
            // Nobody waits for it once the last segment is in.
            let _ = returned.send(segment.bytes);
        }
        if checkpoint.is_some() {
            return Err(ScanError::Stale("the log ends before its position"));
        }
        Ok(Scanned {
            index,
            torn_tail,
            from_checkpoint,
        })
    })
}

/// A segment read and checked ahead of the indexing: its bytes, and its frames from the
/// first on, up to the first that is not a whole frame with a matching checksum.
struct CheckedSegment {
    bytes: Vec<u8>,
    frames: Vec<CheckedFrame>,
}

struct CheckedFrame {
    commit: CommitRange,
    /// Where its body lies in the segment.
    body_at: usize,
    body_len: usize,
    /// The stored hash is the hash of the frame's content after its stored previous hash.
    hash_holds: bool,
}

/// A frame's stored previous hash and the content its hash covers after it.
type Link<'a> = (&'a [u8; 32], &'a [u8]);

/// Frames hashed at a time: enough to fill the SIMD lanes of every length group.
const FRAMES_PER_HASHING: usize = 256;

/// The checking thread: reads and checks each segment in order and hands it over; ends at
/// the first error, or when the indexing thread stops taking segments.
fn check_segments(
    segments: &[(Position, PathBuf)],
    body_bytes_max: usize,
    checked: &mpsc::SyncSender<Result<CheckedSegment, StoreError>>,
    returned: &mpsc::Receiver<Vec<u8>>,
) {
    let mut links = Links::default();
    for (_, path) in segments {
        // A buffer the indexing thread is done with: a fresh one per segment would fault
        // in (and have the kernel zero) a segment's worth of new pages each time.
        let mut bytes = returned.try_recv().unwrap_or_default();
        bytes.clear();
        let read = File::open(path).and_then(|mut file| file.read_to_end(&mut bytes));
        let segment = read
            .map(|_| CheckedSegment {
                frames: check_frames(&bytes, body_bytes_max, &mut links),
                bytes,
            })
            .map_err(|e| StoreError::io(path, e));
        let failed = segment.is_err();
        if checked.send(segment).is_err() || failed {
            return;
        }
    }
}

fn check_frames(bytes: &[u8], body_bytes_max: usize, links: &mut Links) -> Vec<CheckedFrame> {
    let mut frames: Vec<CheckedFrame> = Vec::new();
    let mut hashes = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES as usize;
    loop {
        let first = frames.len();
        while frames.len() - first < FRAMES_PER_HASHING && at <= bytes.len() {
            let Frame::Valid {
                commit,
                body,
                frame_bytes,
            } = codec::parse_frame(&bytes[at..], body_bytes_max)
            else {
                break;
            };
            frames.push(CheckedFrame {
                commit,
                body_at: at + frame_bytes - body.len(),
                body_len: body.len(),
                hash_holds: false,
            });
            at += frame_bytes;
        }
        let group = &mut frames[first..];
        // A body too short to hold both hashes keeps `hash_holds` false.
        let (linked, inputs): (Vec<usize>, Vec<Link>) = group
            .iter()
            .enumerate()
            .filter_map(|(i, frame)| {
                codec::stored_link(&bytes[frame.body_at..][..frame.body_len]).map(|l| (i, l))
            })
            .unzip();
        links.link_many(&inputs, &mut hashes);
        for (i, hash) in linked.into_iter().zip(&hashes) {
            let frame = &mut group[i];
            frame.hash_holds =
                *hash == codec::stored_hash(&bytes[frame.body_at..][..frame.body_len]);
        }
        if group.len() < FRAMES_PER_HASHING {
            return frames;
        }
    }
}

/// Checks one segment's header and records against `index`, and adds them to it. Returns
/// the torn tail cut from the last segment, if any.
fn index_segment(
    index: &mut Index,
    checkpoint: &mut Option<Checkpoint>,
    segment: &CheckedSegment,
    named_position: Position,
    path: &Path,
    is_last: bool,
    body_bytes_max: usize,
) -> Result<Option<TornTail>, ScanError> {
    let bytes = &segment.bytes[..];
    let file = OpenOptions::new()
        .read(true)
        .write(is_last)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    let corrupt = |offset: usize, position: Position, kind: CorruptionKind| {
        ScanError::Store(StoreError::Corrupt {
            segment: path.to_path_buf(),
            offset: offset as u64,
            position,
            kind,
        })
    };
    let expected_position = index.head.position + 1;
    let header =
        SegmentHeader::decode(bytes).map_err(|kind| corrupt(0, expected_position, kind))?;
    if header.first_position != expected_position || named_position != expected_position {
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
        path: path.to_path_buf(),
        file: Arc::new(file),
        first_position: header.first_position,
        offsets: Vec::new(),
        end_offset: SEGMENT_HEADER_BYTES,
    });
    let stop = scan_records(segment, index, checkpoint, body_bytes_max, path)?;
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
        return Ok(None);
    }
    // Before anything is cut: the tail is judged against a rebuilt index, not this one.
    if checkpoint.is_some() {
        return Err(ScanError::Stale("the log ends before its position"));
    }
    // The last segment: damage here is a torn tail unless a later commit follows it.
    if let Some(later) = later_commit_after(bytes, stop.offset + 1, next_position, body_bytes_max) {
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
            index.segments.last_mut().expect("a segment").end_offset = commit.start_offset as u64;
            commit.start_offset
        }
        None => stop.offset,
    };
    let file = &index.segments.last().expect("a segment").file;
    Ok(cut_tail(file, path, bytes, cut_at)?)
}

/// Scans the records of one segment into `index`, up to the first thing that is not a
/// valid record. Errors on damage that cannot be a torn write.
fn scan_records<'a>(
    segment: &'a CheckedSegment,
    index: &mut Index,
    checkpoint: &mut Option<Checkpoint>,
    body_bytes_max: usize,
    path: &Path,
) -> Result<Stop<'a>, ScanError> {
    let bytes = &segment.bytes[..];
    let mut at = SEGMENT_HEADER_BYTES as usize;
    let mut commit: Option<CommitScan> = None;
    let mut frames = segment.frames.iter();
    loop {
        let position = index.head.position + 1;
        let Some(frame) = frames.next() else {
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
        let (range, hash_holds) = (frame.commit, frame.hash_holds);
        let body = &bytes[frame.body_at..][..frame.body_len];
        debug_assert_eq!(
            at + codec::frame_bytes(body.len()),
            frame.body_at + body.len()
        );
        // A frame whose checksum matches was written whole: anything wrong inside it is
        // corruption, never a torn write.
        let corrupt = |kind: CorruptionKind| {
            ScanError::Store(StoreError::Corrupt {
                segment: path.to_path_buf(),
                offset: at as u64,
                position,
                kind,
            })
        };
        // Up to the checkpoint's position the maps come from the checkpoint: the envelope
        // is not decoded, its position and hashes are read where they lie.
        let in_checkpoint = checkpoint.as_ref().is_some_and(|c| position <= c.position);
        let event = match in_checkpoint {
            true => None,
            false => Some(EnvelopeRef::decode(body).map_err(corrupt)?),
        };
        let found = match &event {
            Some(event) => event.position,
            None => codec::stored_position(body).map_err(corrupt)?,
        };
        if found != position {
            return Err(corrupt(CorruptionKind::PositionGap {
                expected: position,
                found,
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
        // An envelope ends with its previous hash and its hash (`codec::stored_link`).
        if codec::stored_link(body).map(|(previous, _)| Hash32(*previous)) != Some(index.head.hash)
        {
            return Err(corrupt(CorruptionKind::BrokenLink));
        }
        // Checked ahead against the stored previous hash, which equals the head's here.
        if !hash_holds {
            return Err(corrupt(CorruptionKind::BadHash));
        }
        let Some(event) = event else {
            index.add_location(position, at as u64);
            index.head.hash = codec::stored_hash(body);
            at += codec::frame_bytes(body.len());
            index.segments.last_mut().expect("a segment").end_offset = at as u64;
            if checkpoint.as_ref().is_some_and(|c| c.position == position) {
                let checkpoint = checkpoint.take().expect("checked");
                if range.last_position != position {
                    return Err(ScanError::Stale("no commit ends at its position"));
                }
                if checkpoint.hash != index.head.hash {
                    return Err(ScanError::Stale(
                        "the log's event at its position has another hash",
                    ));
                }
                index.streams = checkpoint.streams;
                index.commands = checkpoint.commands;
                index.last_recorded_at = checkpoint.last_recorded_at;
            }
            continue;
        };
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

/// Nothing but zeroes: the preallocated, never-written end of a segment.
pub(super) fn all_zero(bytes: &[u8]) -> bool {
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
