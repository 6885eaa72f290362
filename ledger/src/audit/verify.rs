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
}

/// How far a pass has come.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Progress {
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
    streams: HashMap<StreamId, StreamVersion>,
    events: u64,
}

/// Verifies the log of `data_directory` without taking its lock. `progress` is called
/// every `PROGRESS_INTERVAL_EVENTS` events and once at the end.
pub fn verify(
    data_directory: &Path,
    options: VerifyOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<VerifyReport, super::AuditError> {
    let snapshot = LogSnapshot::open(data_directory)?;
    let mut sink = FindingSink::default();
    let mut chain = Chain {
        expected_position: 1,
        previous_hash: Hash32::GENESIS,
        head: Head::EMPTY,
        streams: HashMap::new(),
        events: 0,
    };
    let mut replay = options.semantic.then(Replay::new);
    let mut tail = None;
    let mut reported = Progress {
        bytes_total: snapshot.total_bytes(),
        ..Progress::default()
    };
    let mut bytes_before_segment = 0u64;
    let mut segment_base = 0u64;
    let mut checkpoint_reached = false;
    snapshot.scan(|item| {
        match item {
            ScanItem::Segment {
                path,
                named_position,
                header,
                size_bytes,
            } => {
                segment_base = bytes_before_segment;
                bytes_before_segment += size_bytes;
                check_segment_header(&chain, path, named_position, header, &mut sink);
            }
            ScanItem::Commit {
                path,
                commit,
                frames,
                complete,
            } => {
                if !complete {
                    sink.push(
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
                    let frame_offset = frame.offset;
                    let event = check_frame(&mut chain, path, frame, &mut sink);
                    let Some(event) = event else { continue };
                    if let Some(replay) = replay.as_mut() {
                        match DomainEvent::decode(
                            event.event_type.as_str(),
                            event.schema_version,
                            &event.payload,
                        ) {
                            Ok(domain_event) => replay.apply(&event, &domain_event, &mut sink),
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
                                .in_event(event.stream_id.as_str(), event.event_type.as_str()),
                            ),
                        }
                    }
                    if chain.events.is_multiple_of(PROGRESS_INTERVAL_EVENTS) {
                        reported.events = chain.events;
                        reported.findings = sink.total();
                        reported.bytes_read = segment_base + frame_offset;
                        progress(&reported);
                    }
                    if let Some(checkpoint) = options.checkpoint {
                        if event.position >= checkpoint.position {
                            check_checkpoint(&event, checkpoint, &mut sink);
                            checkpoint_reached = true;
                            return false;
                        }
                    }
                }
            }
            ScanItem::Damage {
                path,
                offset,
                kind,
                resumed_at,
            } => {
                let found = match resumed_at {
                    Some(resumed_at) => format!(
                        "{kind}; {} bytes skipped to the next valid frame",
                        resumed_at - offset
                    ),
                    None => format!("{kind}; nothing valid after it in this segment"),
                };
                sink.push(
                    Finding::new(
                        chain.expected_position,
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
                tail = Some(TailIgnored {
                    segment: path.display().to_string(),
                    offset,
                    bytes: bytes_ignored,
                });
            }
        }
        true
    })?;
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

/// The chain checks of one frame. Returns the event if its envelope decodes.
fn check_frame(
    chain: &mut Chain,
    path: &Path,
    frame: crate::store::embedded::snapshot::FrameRef<'_>,
    sink: &mut FindingSink,
) -> Option<RecordedEvent> {
    let event = match codec::decode_event(frame.body) {
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
            chain.previous_hash = codec::stored_hash(frame.body);
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
    if !codec::body_hash_is_valid(&event.previous_hash, frame.body, &event.hash) {
        let recomputed = crate::store::chain::expected_hash(&event);
        sink.push(in_event(Finding::new(
            position,
            Check::Hash,
            format!("hash {} (of the stored content)", recomputed),
            format!("hash {}", event.hash),
        )));
    }
    chain.previous_hash = event.hash;
    let version = chain.streams.entry(event.stream_id.clone()).or_insert(0);
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
    Some(event)
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
