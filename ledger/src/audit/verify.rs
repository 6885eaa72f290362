//! `verify`: one read-only pass over a data directory that checks everything it can and
//! reports every finding.
//!
//! After a finding the pass resynchronises instead of stopping, so one tampered event
//! gives findings at that event, not at every event after it:
//! - the chain continues from the *stored* hash of each event, so a changed payload (whose
//!   hash no longer matches its content) is one `hash` finding, and the next event still
//!   links;
//! - the expected position becomes `max(expected, found + 1)`, and each stream's version
//!   `max(version, found)`, so a deleted, swapped or inserted event is reported where it
//!   is and the positions after it line up again;
//! - damaged bytes are skipped up to the next frame whose checksum holds (see `snapshot`).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::path::Path;

use serde::Serialize;

use super::findings::{Check, Finding, FindingSink};
use super::replay::Replay;
use crate::domain::DomainEvent;
use crate::store::codec;
use crate::store::embedded::snapshot::{LogSnapshot, ScanItem};
use crate::store::{Hash32, Head, Position, RecordedEvent, StreamId, StreamVersion};

/// Events between two progress reports.
pub const PROGRESS_INTERVAL_EVENTS: u64 = 65_536;

/// A head an auditor wrote down earlier (`stemma audit head`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    pub position: Position,
    pub hash: Hash32,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct VerifyOptions {
    /// Replay the domain's rules too (pools, amounts, finalizations, payouts).
    pub semantic: bool,
    /// Verify up to this checkpoint only, and check its hash.
    pub checkpoint: Option<Checkpoint>,
    /// Threads that decode and hash; 0 for the machine's cores (at most `WORKERS_MAX`).
    pub workers: usize,
}

/// How far a pass has come.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Progress {
    /// The position of the last event checked.
    pub position: Position,
    pub bytes_read: u64,
    pub bytes_total: u64,
    pub events: u64,
    pub findings: u64,
}

/// The tail left out of the pass: a torn write, or a commit still being written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TailIgnored {
    pub segment: String,
    pub offset: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// The last event read, with its stored hash.
    pub head_position: Position,
    pub head_hash: String,
    pub events: u64,
    pub segments: usize,
    pub semantic: bool,
    pub checkpoint: Option<Checkpoint>,
    /// Whether the history up to the checkpoint is proven unchanged.
    pub checkpoint_verified: Option<bool>,
    pub tail_ignored: Option<TailIgnored>,
    pub findings: Vec<Finding>,
    /// Findings beyond `FINDINGS_KEPT_MAX`, counted only.
    pub findings_dropped: u64,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty() && self.findings_dropped == 0
    }

    pub fn head(&self) -> Head {
        Head {
            position: self.head_position,
            hash: Hash32::from_hex(&self.head_hash).unwrap_or(Hash32::GENESIS),
        }
    }
}

/// The chain checks' running state.
struct Chain {
    expected_position: Position,
    /// The stored hash of the last event read.
    previous_hash: Hash32,
    head: Head,
    streams: HashMap<StreamId, StreamVersion, BuildHasherDefault<FxHasher>>,
    events: u64,
}

/// The multiply-rotate hash of rustc (FxHash): stream ids are not chosen by an attacker
/// who could force collisions here (a colliding log only slows the audit down), and
/// SipHash was a tenth of the chain check's profile.
#[derive(Default)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in chunks.by_ref() {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
        }
        for byte in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*byte)).wrapping_mul(SEED);
        }
    }
}

/// Frames gathered before they are decoded and hashed together on worker threads.
pub const BATCH_FRAMES_MAX: usize = 4_096;
/// Worker threads for decoding and hashing: the machine's cores, at most this many.
pub const WORKERS_MAX: usize = 8;
/// Below this many frames a batch is prepared on the calling thread: spawning would cost
/// more than it saves.
const BATCH_FRAMES_PARALLEL_MIN: usize = 256;

/// A frame copied out of its segment, waiting in a batch.
struct PendingFrame {
    segment: usize,
    offset: u64,
    commit: crate::store::codec::CommitRange,
    /// Where the body lies in the batch's arena. One arena per batch, reused, instead of
    /// a `Vec` per frame: allocations dominated the profile.
    body: std::ops::Range<usize>,
}

/// What the workers compute for one frame: everything that does not depend on the
/// frames before it.
struct Prepared {
    event: Result<RecordedEvent, crate::store::CorruptionKind>,
    /// `blake3(previous_hash field ‖ content) == hash field`.
    hash_valid: bool,
    domain: Option<Result<DomainEvent, crate::domain::events::EventDecodeError>>,
}

fn prepare(arena: &[u8], frame: &PendingFrame, semantic: bool) -> Prepared {
    let body = &arena[frame.body.clone()];
    let event = codec::decode_event(body);
    let hash_valid = match &event {
        Ok(event) => codec::body_hash_is_valid(&event.previous_hash, body, &event.hash),
        Err(_) => false,
    };
    let domain = match (&event, semantic) {
        (Ok(event), true) => Some(DomainEvent::decode(
            event.event_type.as_str(),
            event.schema_version,
            &event.payload,
        )),
        _ => None,
    };
    Prepared {
        event,
        hash_valid,
        domain,
    }
}

/// Decodes and hashes `batch` on up to `workers` threads into `out` (reused), in order.
fn prepare_batch(
    arena: &[u8],
    batch: &[PendingFrame],
    semantic: bool,
    workers: usize,
    out: &mut Vec<Option<Prepared>>,
) {
    out.clear();
    out.resize_with(batch.len(), || None);
    if workers <= 1 || batch.len() < BATCH_FRAMES_PARALLEL_MIN {
        for (slot, frame) in out.iter_mut().zip(batch) {
            *slot = Some(prepare(arena, frame, semantic));
        }
        return;
    }
    let chunk = batch.len().div_ceil(workers);
    std::thread::scope(|scope| {
        for (slots, frames) in out.chunks_mut(chunk).zip(batch.chunks(chunk)) {
            scope.spawn(move || {
                for (slot, frame) in slots.iter_mut().zip(frames) {
                    *slot = Some(prepare(arena, frame, semantic));
                }
            });
        }
    });
}

/// One verification pass.
struct Pass<'p> {
    options: VerifyOptions,
    segments: Vec<std::path::PathBuf>,
    sink: FindingSink,
    chain: Chain,
    replay: Option<Replay>,
    batch: Vec<PendingFrame>,
    arena: Vec<u8>,
    prepared: Vec<Option<Prepared>>,
    workers: usize,
    checkpoint_reached: bool,
    reported: Progress,
    segment_bases: Vec<u64>,
    progress: &'p mut dyn FnMut(&Progress),
}

impl Pass<'_> {
    /// Verifies the frames batched so far, in order. Returns `false` once the checkpoint
    /// is reached (nothing after it is read).
    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return !self.checkpoint_reached;
        }
        let batch = std::mem::take(&mut self.batch);
        let mut prepared = std::mem::take(&mut self.prepared);
        prepare_batch(
            &self.arena,
            &batch,
            self.options.semantic,
            self.workers,
            &mut prepared,
        );
        for (frame, prepared) in batch.iter().zip(prepared.iter_mut()) {
            if self.checkpoint_reached {
                break;
            }
            let prepared = prepared.take().expect("every frame is prepared");
            let body = &self.arena[frame.body.clone()];
            let path = &self.segments[frame.segment];
            let Some((event, domain)) =
                check_frame(&mut self.chain, path, frame, body, prepared, &mut self.sink)
            else {
                continue;
            };
            if let (Some(replay), Some(domain)) = (self.replay.as_mut(), domain) {
                match domain {
                    Ok(domain_event) => replay.apply(&event, &domain_event, &mut self.sink),
                    Err(error) => self.sink.push(
                        Finding::new(
                            event.position,
                            Check::Decode,
                            format!(
                                "a {} payload of schema version {}",
                                event.event_type, event.schema_version
                            ),
                            error.to_string(),
                        )
                        .in_event(event.stream_id.as_str(), event.event_type.as_str()),
                    ),
                }
            }
            if self.chain.events.is_multiple_of(PROGRESS_INTERVAL_EVENTS) {
                self.reported.position = self.chain.head.position;
                self.reported.events = self.chain.events;
                self.reported.findings = self.sink.total();
                self.reported.bytes_read = self.segment_bases[frame.segment] + frame.offset;
                (self.progress)(&self.reported);
            }
            if let Some(checkpoint) = self.options.checkpoint {
                if event.position >= checkpoint.position {
                    check_checkpoint(&event, checkpoint, &mut self.sink);
                    self.checkpoint_reached = true;
                }
            }
        }
        // Keep the allocations for the next batch.
        self.batch = batch;
        self.batch.clear();
        self.arena.clear();
        prepared.clear();
        self.prepared = prepared;
        !self.checkpoint_reached
    }
}

/// Verifies the log of `data_directory` without taking its lock. `progress` is called
/// every `PROGRESS_INTERVAL_EVENTS` events and once at the end.
///
/// Frames are gathered in batches of `BATCH_FRAMES_MAX`; each batch is decoded and hashed
/// on worker threads (nothing there depends on the frames before), then checked in log
/// order on this thread (positions, links, versions, the replay).
pub fn verify(
    data_directory: &Path,
    options: VerifyOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<VerifyReport, super::AuditError> {
    verify_until_stopped(data_directory, options, progress, &|| false)
}

/// `verify`, abandoned with `AuditError::Stopped` as soon as `stop` says so. `stop` is
/// asked before each commit and segment is read, so it must be cheap (an atomic load):
/// the gRPC service stops a pass whose caller went away.
pub fn verify_until_stopped(
    data_directory: &Path,
    options: VerifyOptions,
    progress: &mut dyn FnMut(&Progress),
    stop: &dyn Fn() -> bool,
) -> Result<VerifyReport, super::AuditError> {
    let snapshot = LogSnapshot::open(data_directory)?;
    let workers = match options.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(WORKERS_MAX);
    let mut segment_bases = Vec::with_capacity(snapshot.segments.len());
    let mut base = 0u64;
    for (_, path) in &snapshot.segments {
        segment_bases.push(base);
        base += std::fs::metadata(path).map_or(0, |m| m.len());
    }
    let mut pass = Pass {
        options,
        segments: snapshot.segments.iter().map(|(_, p)| p.clone()).collect(),
        sink: FindingSink::default(),
        chain: Chain {
            expected_position: 1,
            previous_hash: Hash32::GENESIS,
            head: Head::EMPTY,
            streams: HashMap::default(),
            events: 0,
        },
        replay: options.semantic.then(Replay::new),
        batch: Vec::with_capacity(BATCH_FRAMES_MAX),
        arena: Vec::new(),
        prepared: Vec::with_capacity(BATCH_FRAMES_MAX),
        workers,
        checkpoint_reached: false,
        reported: Progress {
            bytes_total: base,
            ..Progress::default()
        },
        segment_bases,
        progress,
    };
    let mut tail = None;
    let mut segment = 0usize;
    let mut segments_seen = 0usize;
    let mut stopped = false;
    snapshot.scan(|item| {
        if stop() {
            stopped = true;
            return false;
        }
        match item {
            ScanItem::Segment {
                path,
                named_position,
                header,
                ..
            } => {
                if !pass.flush() {
                    return false;
                }
                segment = segments_seen;
                segments_seen += 1;
                check_segment_header(&pass.chain, path, named_position, header, &mut pass.sink);
            }
            ScanItem::Commit {
                path,
                commit,
                frames,
                complete,
            } => {
                if !complete {
                    if !pass.flush() {
                        return false;
                    }
                    pass.sink.push(
                        Finding::new(
                            commit.first_position,
                            Check::IncompleteCommit,
                            format!(
                                "{} frames for commit {}..={}",
                                commit.last_position.saturating_sub(commit.first_position) + 1,
                                commit.first_position,
                                commit.last_position
                            ),
                            format!("{} frames", frames.len()),
                        )
                        .at_bytes(path, frames[0].offset),
                    );
                }
                for frame in frames {
                    let start = pass.arena.len();
                    pass.arena.extend_from_slice(frame.body);
                    pass.batch.push(PendingFrame {
                        segment,
                        offset: frame.offset,
                        commit: frame.commit,
                        body: start..pass.arena.len(),
                    });
                }
                if pass.batch.len() >= BATCH_FRAMES_MAX {
                    return pass.flush();
                }
            }
            ScanItem::Damage {
                path,
                offset,
                kind,
                resumed_at,
            } => {
                if !pass.flush() {
                    return false;
                }
                let found = match resumed_at {
                    Some(resumed_at) => format!(
                        "{kind}; {} bytes skipped to the next valid frame",
                        resumed_at - offset
                    ),
                    None => format!("{kind}; nothing valid after it in this segment"),
                };
                pass.sink.push(
                    Finding::new(
                        pass.chain.expected_position,
                        Check::Frame,
                        "a valid frame",
                        found,
                    )
                    .at_bytes(path, offset),
                );
            }
            ScanItem::Tail {
                path,
                offset,
                bytes_ignored,
            } => {
                if !pass.flush() {
                    return false;
                }
                tail = Some(TailIgnored {
                    segment: path.display().to_string(),
                    offset,
                    bytes: bytes_ignored,
                });
            }
        }
        true
    })?;
    if stopped {
        return Err(super::AuditError::Stopped {
            position: pass.chain.head.position,
        });
    }
    pass.flush();
    let Pass {
        mut sink,
        chain,
        mut replay,
        checkpoint_reached,
        mut reported,
        progress,
        ..
    } = pass;
    if let Some(checkpoint) = options.checkpoint {
        if !checkpoint_reached {
            sink.push(Finding::new(
                chain.expected_position,
                Check::Checkpoint,
                format!(
                    "history up to position {} ending in hash {}",
                    checkpoint.position, checkpoint.hash
                ),
                format!("the log ends at position {}", chain.head.position),
            ));
        }
    }
    if let Some(replay) = replay.as_mut() {
        replay.finish(&mut sink);
    }
    reported.position = chain.head.position;
    reported.events = chain.events;
    reported.findings = sink.total();
    reported.bytes_read = reported.bytes_total;
    progress(&reported);
    let checkpoint_verified = options.checkpoint.map(|checkpoint| {
        checkpoint_reached
            && !sink
                .kept
                .iter()
                .any(|finding| finding.position <= checkpoint.position)
            && sink.dropped == 0
    });
    Ok(VerifyReport {
        head_position: chain.head.position,
        head_hash: chain.head.hash.to_hex(),
        events: chain.events,
        segments: snapshot.segments.len(),
        semantic: options.semantic,
        checkpoint: options.checkpoint,
        checkpoint_verified,
        tail_ignored: tail,
        findings: sink.kept,
        findings_dropped: sink.dropped,
    })
}

fn check_segment_header(
    chain: &Chain,
    path: &Path,
    named_position: Position,
    header: Result<crate::store::embedded::snapshot::SegmentInfo, crate::store::CorruptionKind>,
    sink: &mut FindingSink,
) {
    let expected = chain.expected_position;
    match header {
        Err(kind) => sink.push(
            Finding::new(
                expected,
                Check::SegmentHeader,
                "a valid segment header",
                kind.to_string(),
            )
            .at_bytes(path, 0),
        ),
        Ok(header) => {
            if header.first_position != expected || named_position != expected {
                sink.push(
                    Finding::new(
                        expected,
                        Check::SegmentHeader,
                        format!("a segment starting at position {expected}"),
                        format!(
                            "header says {}, file name says {named_position}",
                            header.first_position
                        ),
                    )
                    .at_bytes(path, 0),
                );
            }
            if header.previous_hash != chain.previous_hash {
                sink.push(
                    Finding::new(
                        expected,
                        Check::SegmentHeader,
                        format!("previous hash {}", chain.previous_hash),
                        format!("previous hash {}", header.previous_hash),
                    )
                    .at_bytes(path, 0),
                );
            }
        }
    }
}

type DecodedDomainEvent = Option<Result<DomainEvent, crate::domain::events::EventDecodeError>>;

/// The chain checks of one frame, in log order. Returns the event (and its domain event,
/// when the replay runs) if its envelope decodes.
fn check_frame(
    chain: &mut Chain,
    path: &Path,
    frame: &PendingFrame,
    body: &[u8],
    prepared: Prepared,
    sink: &mut FindingSink,
) -> Option<(RecordedEvent, DecodedDomainEvent)> {
    let event = match prepared.event {
        Ok(event) => event,
        Err(kind) => {
            sink.push(
                Finding::new(
                    chain.expected_position,
                    Check::Envelope,
                    "a decodable envelope",
                    kind.to_string(),
                )
                .at_bytes(path, frame.offset),
            );
            // Resynchronise: this frame takes one position, and the chain goes on from
            // the hash it stores.
            chain.expected_position += 1;
            chain.previous_hash = codec::stored_hash(body);
            return None;
        }
    };
    let position = event.position;
    let in_event = |finding: Finding| {
        finding
            .in_event(event.stream_id.as_str(), event.event_type.as_str())
            .at_bytes(path, frame.offset)
    };
    if position != chain.expected_position {
        sink.push(in_event(Finding::new(
            position,
            Check::Position,
            format!("position {}", chain.expected_position),
            format!("position {position}"),
        )));
    }
    chain.expected_position = chain.expected_position.max(position.saturating_add(1));
    if !(frame.commit.first_position..=frame.commit.last_position).contains(&position) {
        sink.push(in_event(Finding::new(
            position,
            Check::CommitRange,
            format!(
                "a position in {}..={}",
                frame.commit.first_position, frame.commit.last_position
            ),
            format!("position {position}"),
        )));
    }
    if event.previous_hash != chain.previous_hash {
        sink.push(in_event(Finding::new(
            position,
            Check::HashLink,
            format!("previous hash {}", chain.previous_hash),
            format!("previous hash {}", event.previous_hash),
        )));
    }
    if !prepared.hash_valid {
        let recomputed = crate::store::chain::expected_hash(&event);
        sink.push(in_event(Finding::new(
            position,
            Check::Hash,
            format!("hash {} (of the stored content)", recomputed),
            format!("hash {}", event.hash),
        )));
    }
    chain.previous_hash = event.hash;
    // Look up before inserting: cloning the stream id for every event costs an allocation.
    if !chain.streams.contains_key(&event.stream_id) {
        chain.streams.insert(event.stream_id.clone(), 0);
    }
    let version = chain
        .streams
        .get_mut(&event.stream_id)
        .expect("inserted above");
    if event.stream_version != *version + 1 {
        sink.push(in_event(Finding::new(
            position,
            Check::StreamVersion,
            format!("version {}", *version + 1),
            format!("version {}", event.stream_version),
        )));
    }
    *version = (*version).max(event.stream_version);
    chain.head = Head {
        position,
        hash: event.hash,
    };
    chain.events += 1;
    Some((event, prepared.domain))
}

fn check_checkpoint(event: &RecordedEvent, checkpoint: Checkpoint, sink: &mut FindingSink) {
    if event.position != checkpoint.position {
        sink.push(
            Finding::new(
                event.position,
                Check::Checkpoint,
                format!("an event at position {}", checkpoint.position),
                format!("position {} follows", event.position),
            )
            .in_event(event.stream_id.as_str(), event.event_type.as_str()),
        );
    } else if event.hash != checkpoint.hash {
        sink.push(
            Finding::new(
                event.position,
                Check::Checkpoint,
                format!("hash {}", checkpoint.hash),
                format!("hash {}", event.hash),
            )
            .in_event(event.stream_id.as_str(), event.event_type.as_str()),
        );
    }
}

/// The head of the log (the last event of the last complete commit), read without the
/// lock and without checking anything but the frames on the way.
pub fn head(data_directory: &Path) -> Result<Head, super::AuditError> {
    let snapshot = LogSnapshot::open(data_directory)?;
    let mut head = Head::EMPTY;
    snapshot.scan(|item| {
        if let ScanItem::Commit { frames, .. } = item {
            if let Some(last) = frames.last() {
                if let Ok(event) = codec::decode_event(last.body) {
                    head = Head {
                        position: event.position,
                        hash: event.hash,
                    };
                }
            }
        }
        true
    })?;
    Ok(head)
}
