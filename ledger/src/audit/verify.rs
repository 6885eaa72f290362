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

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use serde::Serialize;

use super::findings::{Check, Finding, FindingSink};
use super::replay::{EventAt, Replay};
use super::stream_versions::{StreamKey, StreamKeys, StreamVersions};
use crate::domain::DomainEvent;
use crate::store::chain::Links;
use crate::store::codec::{self, EnvelopeRef};
use crate::store::embedded::snapshot::{LogSnapshot, ScanItem};
use crate::store::{Hash32, Head, Position, StoreError};

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
    /// Keyed by each stream's `StreamKey`, worked out ahead by the workers.
    streams: StreamVersions,
    events: u64,
}

impl<'a> EnvelopeRef<'a> {
    fn at(&self) -> EventAt<'a> {
        EventAt {
            position: self.position,
            stream_id: self.stream_id,
            event_type: self.event_type,
            recorded_at: crate::time::Timestamp(self.recorded_at),
        }
    }
}

/// Frames gathered before they are decoded and hashed together.
pub const BATCH_FRAMES_MAX: usize = 16_384;
/// Worker threads for decoding and hashing: the machine's cores, at most this many.
pub const WORKERS_MAX: usize = 8;
/// Below this many frames a batch is prepared on the calling thread: spawning would cost
/// more than it saves.
const BATCH_FRAMES_PARALLEL_MIN: usize = 256;
/// Frames a thread claims at a time: large enough that claiming costs nothing and the
/// batched hashing fills its SIMD lanes (frames are grouped by length), small enough that
/// the threads finish a batch together.
const CHUNK_FRAMES: usize = 256;

/// How far ahead of the frame it checks the checking thread prefetches a stream's slot:
/// far enough for the line to arrive while it checks and replays the frames in between.
const STREAM_PREFETCH_FRAMES_AHEAD: usize = 8;

/// How far ahead the checking thread warms the replay's state (`Replay::warm`).
const STATE_WARM_FRAMES_AHEAD: usize = 4;

/// A frame copied out of its segment, waiting in a batch.
struct PendingFrame {
    segment: usize,
    offset: u64,
    commit: crate::store::codec::CommitRange,
    /// The first frame of its commit: where the pass asks whether to stop.
    starts_commit: bool,
    /// Where the body lies in the batch's arena. One arena per batch, reused, instead of
    /// a `Vec` per frame: allocations dominated the profile.
    body: std::ops::Range<usize>,
}

/// Frames copied out of their segments by the scanning thread, checked as one round by
/// the checking thread; the buffers go back to the scanning thread for reuse.
#[derive(Default)]
struct Batch {
    frames: Vec<PendingFrame>,
    arena: Vec<u8>,
    /// The batch's domain events once replayed, dropped by the scanning thread when it
    /// reuses the batch: freeing them was a few percent of the checking thread's time,
    /// and the checking thread bounds a semantic pass.
    spent: Vec<DomainEvent>,
}

impl Batch {
    /// Empties the batch for reuse; call it on the scanning thread (see `spent`).
    fn clear(&mut self) {
        self.frames.clear();
        self.arena.clear();
        self.spent.clear();
    }
}

/// What the scanning thread hands the checking thread, in log order.
enum Scanned {
    Frames(Batch),
    Segment {
        segment: usize,
        named_position: Position,
        header: Result<crate::store::embedded::snapshot::SegmentInfo, crate::store::CorruptionKind>,
    },
    /// A commit with fewer frames than its range names (its frames follow).
    Incomplete {
        segment: usize,
        commit: crate::store::codec::CommitRange,
        frames: usize,
        offset: u64,
    },
    Damage {
        segment: usize,
        offset: u64,
        kind: crate::store::CorruptionKind,
        resumed_at: Option<u64>,
    },
    Tail {
        segment: usize,
        offset: u64,
        bytes_ignored: u64,
    },
}

/// Batches between the scanning and the checking thread: one being checked, this many
/// read ahead.
const BATCHES_AHEAD: usize = 2;

/// What is computed for one frame out of order: everything that does not depend on the
/// frames before it.
struct Prepared<'a> {
    event: Result<EnvelopeRef<'a>, crate::store::CorruptionKind>,
    /// `blake3(previous_hash field ‖ content) == hash field`.
    hash_valid: bool,
    /// The key of the event's stream (of a decoded envelope).
    stream: StreamKey,
    domain: Option<Result<DomainEvent, crate::domain::events::EventDecodeError>>,
}

/// Prepares the frames of one chunk: decodes each envelope (and payload, for the
/// replay), and checks every stored hash against its content in one batch, an event per
/// SIMD lane (`chain::Links`), which is ~3× cheaper than hashing them one by one.
fn prepare<'a>(
    bodies: impl Iterator<Item = &'a [u8]>,
    semantic: bool,
    stream_keys: &StreamKeys,
) -> Vec<Prepared<'a>> {
    thread_local! {
        static LINKS: std::cell::RefCell<(Links, Vec<Hash32>)> =
            std::cell::RefCell::new((Links::default(), Vec::new()));
    }
    let decoded: Vec<(&[u8], Result<EnvelopeRef<'a>, _>)> = bodies
        .map(|body| (body, EnvelopeRef::decode(body)))
        .collect();
    let inputs: Vec<(&[u8; 32], &[u8])> = decoded
        .iter()
        .filter_map(|(body, event)| {
            let event = event.as_ref().ok()?;
            Some((&event.previous_hash, &body[..body.len() - 32]))
        })
        .collect();
    // Whether each decoded envelope's stored hash is the hash of its content, in order.
    let valid: Vec<bool> = LINKS.with_borrow_mut(|(links, hashes)| {
        links.link_many(&inputs, hashes);
        hashes
            .iter()
            .zip(decoded.iter().filter_map(|(_, event)| event.as_ref().ok()))
            .map(|(hash, event)| hash.0 == event.hash)
            .collect()
    });
    let mut valid = valid.into_iter();
    decoded
        .into_iter()
        .map(|(_, event)| {
            let hash_valid = event.is_ok() && valid.next().unwrap_or(false);
            let stream = event
                .as_ref()
                .map_or(StreamKey::NONE, |event| stream_keys.of(event.stream_id));
            let domain = match (&event, semantic) {
                (Ok(event), true) => Some(DomainEvent::decode(
                    event.event_type,
                    event.schema_version,
                    event.payload,
                )),
                _ => None,
            };
            Prepared {
                event,
                hash_valid,
                stream,
                domain,
            }
        })
        .collect()
}

/// The chunks of one batch, handed out in order to whichever thread asks first. A slot
/// per chunk, not per frame: setting a `OnceLock` per frame was a tenth of the profile.
struct Chunks<'s, 'a> {
    arena: &'a [u8],
    batch: &'a [PendingFrame],
    slots: &'s [OnceLock<Vec<Prepared<'a>>>],
    next: AtomicUsize,
    semantic: bool,
    stream_keys: &'s StreamKeys,
}

impl Chunks<'_, '_> {
    /// Prepares the next unclaimed chunk; `false` when none is left.
    fn prepare_next(&self) -> bool {
        let chunk = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(slot) = self.slots.get(chunk) else {
            return false;
        };
        let start = chunk * CHUNK_FRAMES;
        let end = (start + CHUNK_FRAMES).min(self.batch.len());
        let bodies = self.batch[start..end]
            .iter()
            .map(|frame| &self.arena[frame.body.clone()]);
        let prepared = prepare(bodies, self.semantic, self.stream_keys);
        if slot.set(prepared).is_err() {
            unreachable!("each chunk is claimed once");
        }
        true
    }

    /// Leaves the chunks not yet claimed unprepared.
    fn abandon(&self) {
        self.next.store(self.slots.len(), Ordering::Relaxed);
    }
}

/// One verification pass.
struct Pass<'p> {
    options: VerifyOptions,
    segments: Vec<std::path::PathBuf>,
    sink: FindingSink,
    chain: Chain,
    /// How the workers name streams for `chain.streams`.
    stream_keys: StreamKeys,
    replay: Option<Replay>,
    workers: usize,
    checkpoint_reached: bool,
    stop: &'p dyn Fn() -> bool,
    /// `stop` said so: nothing after the last commit checked is read.
    stopped: bool,
    reported: Progress,
    segment_bases: Vec<u64>,
    progress: &'p mut dyn FnMut(&Progress),
}

impl Pass<'_> {
    /// Verifies the frames batched so far, in order. Returns `false` once the checkpoint
    /// is reached (nothing after it is read).
    ///
    /// The checks in log order run on this thread while the other workers hash and decode
    /// ahead of it; when the frame it needs is not ready, this thread prepares the next
    /// unclaimed chunk itself, so both cores stay busy whichever side is slower.
    fn check(&mut self, batch: &mut Batch) -> bool {
        if !batch.frames.is_empty() {
            self.check_batch(batch);
        }
        !self.is_done()
    }

    /// The checkpoint is reached or the pass was asked to stop: nothing more is read.
    fn is_done(&self) -> bool {
        self.checkpoint_reached || self.stopped
    }

    /// Asks `stop` (before each segment, commit, damage and tail, as the pass goes).
    fn asked_to_stop(&mut self) -> bool {
        self.stopped = self.stopped || (self.stop)();
        self.stopped
    }

    fn check_batch(&mut self, batch: &mut Batch) {
        let Batch {
            frames,
            arena,
            spent,
        } = batch;
        let helpers = if frames.len() < BATCH_FRAMES_PARALLEL_MIN {
            0
        } else {
            self.workers.saturating_sub(1)
        };
        let Pass {
            options,
            segments,
            sink,
            chain,
            stream_keys,
            replay,
            checkpoint_reached,
            stop,
            stopped,
            reported,
            segment_bases,
            progress,
            ..
        } = self;
        let slots: Vec<OnceLock<Vec<Prepared<'_>>>> = std::iter::repeat_with(OnceLock::new)
            .take(frames.len().div_ceil(CHUNK_FRAMES))
            .collect();
        let chunks = Chunks {
            arena,
            batch: frames,
            slots: &slots,
            next: AtomicUsize::new(0),
            semantic: options.semantic,
            stream_keys,
        };
        std::thread::scope(|scope| {
            let chunks = &chunks;
            for _ in 0..helpers {
                scope.spawn(move || while chunks.prepare_next() {});
            }
            let frames = chunks.batch.chunks(CHUNK_FRAMES).zip(chunks.slots);
            'batch: for (frames, slot) in frames {
                let chunk = loop {
                    if let Some(prepared) = slot.get() {
                        break prepared;
                    }
                    if !chunks.prepare_next() {
                        // Another thread is preparing this chunk.
                        std::thread::yield_now();
                    }
                };
                for (index, (frame, prepared)) in frames.iter().zip(chunk).enumerate() {
                    if let Some(ahead) = chunk.get(index + STREAM_PREFETCH_FRAMES_AHEAD) {
                        chain.streams.prefetch(ahead.stream);
                    }
                    if let (Some(replay), Some(Some(Ok(ahead)))) = (
                        replay.as_ref(),
                        chunk
                            .get(index + STATE_WARM_FRAMES_AHEAD)
                            .map(|p| &p.domain),
                    ) {
                        replay.warm(ahead);
                    }
                    if frame.starts_commit && !*stopped {
                        *stopped = stop();
                    }
                    if *checkpoint_reached || *stopped {
                        chunks.abandon();
                        break 'batch;
                    }
                    let body = &chunks.arena[frame.body.clone()];
                    let path = &segments[frame.segment];
                    let Some(event) = check_frame(chain, path, frame, body, prepared, sink) else {
                        continue;
                    };
                    if let (Some(replay), Some(domain)) = (replay.as_mut(), &prepared.domain) {
                        match domain {
                            Ok(domain_event) => replay.apply_at(&event.at(), domain_event, sink),
                            Err(error) => sink.push(
                                Finding::new(
                                    event.position,
                                    Check::Decode,
                                    format!(
                                        "a {} payload of schema version {}",
                                        event.event_type, event.schema_version
                                    ),
                                    error.to_string(),
                                )
                                .in_event(event.stream_id, event.event_type),
                            ),
                        }
                    }
                    if chain.events.is_multiple_of(PROGRESS_INTERVAL_EVENTS) {
                        reported.position = chain.head.position;
                        reported.events = chain.events;
                        reported.findings = sink.total();
                        reported.bytes_read = segment_bases[frame.segment] + frame.offset;
                        progress(reported);
                    }
                    if let Some(checkpoint) = options.checkpoint {
                        if event.position >= checkpoint.position {
                            check_checkpoint(event, checkpoint, sink);
                            *checkpoint_reached = true;
                        }
                    }
                }
            }
        });
        let domain_events = slots
            .into_iter()
            .filter_map(OnceLock::into_inner)
            .flatten()
            .filter_map(|prepared| prepared.domain?.ok());
        spent.extend(domain_events);
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
            streams: StreamVersions::default(),
            events: 0,
        },
        stream_keys: StreamKeys::default(),
        replay: options.semantic.then(Replay::new),
        workers,
        checkpoint_reached: false,
        stop,
        stopped: false,
        reported: Progress {
            bytes_total: base,
            ..Progress::default()
        },
        segment_bases,
        progress,
    };
    let mut tail = None;
    // Reading and framing run on a thread of their own, a batch or two ahead of the
    // checks: on two cores the checking thread (which also prepares chunks when the
    // helpers are behind) was waiting for the scan between batches.
    let (scanned_sender, scanned) = std::sync::mpsc::sync_channel::<Scanned>(BATCHES_AHEAD);
    let (spare_sender, spare) = std::sync::mpsc::channel::<Batch>();
    let scan_result = std::thread::scope(|scope| {
        let snapshot = &snapshot;
        // The sender moves to the scanner: when it is done, the loop below ends.
        let scanner = scope.spawn(move || scan_into_batches(snapshot, &scanned_sender, &spare));
        for item in &scanned {
            let go_on = match item {
                Scanned::Frames(mut batch) => {
                    let go_on = pass.check(&mut batch);
                    // The scanner clears it (drops its events) when it reuses it, and may
                    // be gone already; then the batch is simply freed.
                    let _ = spare_sender.send(batch);
                    go_on
                }
                Scanned::Segment {
                    segment,
                    named_position,
                    header,
                } => {
                    if pass.asked_to_stop() {
                        break;
                    }
                    let path = &pass.segments[segment];
                    check_segment_header(&pass.chain, path, named_position, header, &mut pass.sink);
                    true
                }
                Scanned::Incomplete {
                    segment,
                    commit,
                    frames,
                    offset,
                } => {
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
                            format!("{frames} frames"),
                        )
                        .at_bytes(&pass.segments[segment], offset),
                    );
                    true
                }
                Scanned::Damage {
                    segment,
                    offset,
                    kind,
                    resumed_at,
                } => {
                    if pass.asked_to_stop() {
                        break;
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
                        .at_bytes(&pass.segments[segment], offset),
                    );
                    true
                }
                Scanned::Tail {
                    segment,
                    offset,
                    bytes_ignored,
                } => {
                    if pass.asked_to_stop() {
                        break;
                    }
                    tail = Some(TailIgnored {
                        segment: pass.segments[segment].display().to_string(),
                        offset,
                        bytes: bytes_ignored,
                    });
                    true
                }
            };
            if !go_on {
                break;
            }
        }
        // Hang up first: a scanner blocked on a full queue then ends at once.
        drop(scanned);
        scanner.join().expect("the scanning thread does not panic")
    });
    scan_result?;
    if pass.stopped {
        return Err(super::AuditError::Stopped {
            position: pass.chain.head.position,
        });
    }
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

/// Scans the log into `Scanned` items for the checking thread: frames copied into batches
/// of at most `BATCH_FRAMES_MAX` (cut before anything else, so the order holds), the rest
/// as it comes. Ends early, without an error, once the checking thread hangs up.
fn scan_into_batches(
    snapshot: &LogSnapshot,
    scanned: &std::sync::mpsc::SyncSender<Scanned>,
    spare: &std::sync::mpsc::Receiver<Batch>,
) -> Result<(), StoreError> {
    let fresh = || {
        spare.try_recv().map_or_else(
            |_| Batch::default(),
            |mut batch| {
                batch.clear();
                batch
            },
        )
    };
    let mut batch = fresh();
    let mut segment = 0usize;
    let mut segments_seen = 0usize;
    let hand = |batch: &mut Batch, item: Option<Scanned>| -> bool {
        if !batch.frames.is_empty() {
            let full = std::mem::replace(batch, fresh());
            if scanned.send(Scanned::Frames(full)).is_err() {
                return false;
            }
        }
        item.is_none_or(|item| scanned.send(item).is_ok())
    };
    let mut open = true;
    snapshot.scan(|item| {
        open = match item {
            ScanItem::Segment {
                named_position,
                header,
                ..
            } => {
                segment = segments_seen;
                segments_seen += 1;
                hand(
                    &mut batch,
                    Some(Scanned::Segment {
                        segment,
                        named_position,
                        header,
                    }),
                )
            }
            ScanItem::Commit {
                commit,
                frames,
                complete,
                ..
            } => {
                let mut open = true;
                if !complete {
                    open = hand(
                        &mut batch,
                        Some(Scanned::Incomplete {
                            segment,
                            commit,
                            frames: frames.len(),
                            offset: frames[0].offset,
                        }),
                    );
                }
                for (index, frame) in frames.iter().enumerate() {
                    let start = batch.arena.len();
                    batch.arena.extend_from_slice(frame.body);
                    batch.frames.push(PendingFrame {
                        segment,
                        offset: frame.offset,
                        commit: frame.commit,
                        starts_commit: index == 0,
                        body: start..batch.arena.len(),
                    });
                }
                if open && batch.frames.len() >= BATCH_FRAMES_MAX {
                    open = hand(&mut batch, None);
                }
                open
            }
            ScanItem::Damage {
                offset,
                kind,
                resumed_at,
                ..
            } => hand(
                &mut batch,
                Some(Scanned::Damage {
                    segment,
                    offset,
                    kind,
                    resumed_at,
                }),
            ),
            ScanItem::Tail {
                offset,
                bytes_ignored,
                ..
            } => hand(
                &mut batch,
                Some(Scanned::Tail {
                    segment,
                    offset,
                    bytes_ignored,
                }),
            ),
        };
        open
    })?;
    if open {
        hand(&mut batch, None);
    }
    Ok(())
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

/// The chain checks of one frame, in log order. Returns the envelope if it decodes.
fn check_frame<'e>(
    chain: &mut Chain,
    path: &Path,
    frame: &PendingFrame,
    body: &[u8],
    prepared: &'e Prepared<'e>,
    sink: &mut FindingSink,
) -> Option<&'e EnvelopeRef<'e>> {
    let event = match &prepared.event {
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
            .in_event(event.stream_id, event.event_type)
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
    let previous_hash = Hash32(event.previous_hash);
    if previous_hash != chain.previous_hash {
        sink.push(in_event(Finding::new(
            position,
            Check::HashLink,
            format!("previous hash {}", chain.previous_hash),
            format!("previous hash {}", previous_hash),
        )));
    }
    let hash = Hash32(event.hash);
    if !prepared.hash_valid {
        let recomputed = codec::decode_event(body)
            .map(|owned| crate::store::chain::expected_hash(&owned).to_string())
            .unwrap_or_else(|error| error.to_string());
        sink.push(in_event(Finding::new(
            position,
            Check::Hash,
            format!("hash {} (of the stored content)", recomputed),
            format!("hash {}", hash),
        )));
    }
    chain.previous_hash = hash;
    let version = chain.streams.entry(prepared.stream);
    if event.stream_version != *version + 1 {
        sink.push(in_event(Finding::new(
            position,
            Check::StreamVersion,
            format!("version {}", *version + 1),
            format!("version {}", event.stream_version),
        )));
    }
    *version = (*version).max(event.stream_version);
    chain.head = Head { position, hash };
    chain.events += 1;
    Some(event)
}

fn check_checkpoint(event: &EnvelopeRef<'_>, checkpoint: Checkpoint, sink: &mut FindingSink) {
    let hash = Hash32(event.hash);
    if event.position != checkpoint.position {
        sink.push(
            Finding::new(
                event.position,
                Check::Checkpoint,
                format!("an event at position {}", checkpoint.position),
                format!("position {} follows", event.position),
            )
            .in_event(event.stream_id, event.event_type),
        );
    } else if hash != checkpoint.hash {
        sink.push(
            Finding::new(
                event.position,
                Check::Checkpoint,
                format!("hash {}", checkpoint.hash),
                format!("hash {}", hash),
            )
            .in_event(event.stream_id, event.event_type),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        Actor, CausationId, CommandId, CorrelationId, EventId, EventType, OnBehalfOf,
        RecordedEvent, ServiceName, StreamId,
    };
    use crate::time::Timestamp;

    fn event(with_options: bool) -> RecordedEvent {
        let command_id = CommandId::new("command-1").unwrap();
        let mut event = RecordedEvent {
            position: 300,
            stream_id: StreamId::new("record-r1").unwrap(),
            stream_version: 70_000,
            event_id: EventId::derive(&command_id, 3),
            event_type: EventType::new("RecordUploaded").unwrap(),
            schema_version: 2,
            recorded_at: Timestamp(-5),
            command_id,
            command_fingerprint: with_options.then_some(u128::MAX - 1),
            correlation_id: with_options.then(|| CorrelationId::new("corr").unwrap()),
            causation_id: with_options.then(|| CausationId::new("cause").unwrap()),
            actor: Actor {
                service: ServiceName::new("gateway").unwrap(),
                on_behalf_of: with_options.then(|| OnBehalfOf::new("member-1").unwrap()),
            },
            payload: vec![0xab; 300],
            previous_hash: Hash32([9; 32]),
            hash: Hash32::GENESIS,
        };
        codec::encode_and_hash(&mut event);
        event
    }

    #[test]
    fn the_borrowed_envelope_reads_what_the_owned_decoder_reads() {
        for with_options in [false, true] {
            let mut owned = event(with_options);
            let body = codec::encode_and_hash(&mut owned);
            let envelope = EnvelopeRef::decode(&body).unwrap();
            assert_eq!(envelope.position, owned.position);
            assert_eq!(envelope.stream_id, owned.stream_id.as_str());
            assert_eq!(envelope.stream_version, owned.stream_version);
            assert_eq!(envelope.event_type, owned.event_type.as_str());
            assert_eq!(envelope.schema_version, owned.schema_version);
            assert_eq!(envelope.recorded_at, owned.recorded_at.0);
            assert_eq!(envelope.payload, owned.payload.as_slice());
            assert_eq!(Hash32(envelope.previous_hash), owned.previous_hash);
            assert_eq!(Hash32(envelope.hash), owned.hash);
            let prepared = prepare(
                std::iter::once(body.as_slice()),
                false,
                &StreamKeys::default(),
            );
            assert!(prepared[0].hash_valid);
        }
    }

    #[test]
    fn an_envelope_that_does_not_decode_is_worded_by_the_owned_decoder() {
        let mut owned = event(true);
        let body = codec::encode_and_hash(&mut owned);
        for damaged in [
            &body[..body.len() - 1],
            &[body.as_slice(), &[0]].concat()[..],
        ] {
            let owned_error = codec::decode_event(damaged).unwrap_err();
            let borrowed_error = EnvelopeRef::decode(damaged).err().unwrap();
            assert_eq!(borrowed_error.to_string(), owned_error.to_string());
        }
        let mut bad_utf8 = body.clone();
        let at = bad_utf8.windows(9).position(|w| w == b"record-r1").unwrap();
        bad_utf8[at] = 0xff;
        assert_eq!(
            EnvelopeRef::decode(&bad_utf8).err().unwrap().to_string(),
            codec::decode_event(&bad_utf8).unwrap_err().to_string()
        );
    }
}
