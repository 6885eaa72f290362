//! The JSON-lines form of the log: `stemma export` writes it, `stemma import` reads it.
//!
//! # Schema (version 1, stable)
//!
//! One JSON object per line, one line per event, in log order, keys in this order:
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `position` | integer | global position, gap-free from 1 |
//! | `stream_id` | string | e.g. `production-pr1` |
//! | `stream_version` | integer | gap-free from 1 within the stream |
//! | `event_id` | string | 32 lower-case hex digits |
//! | `event_type` | string | e.g. `PayoutIssued` |
//! | `schema_version` | integer | the payload's schema version as stored |
//! | `recorded_at` | string | RFC 3339, UTC, microseconds |
//! | `recorded_at_micros` | integer | the same instant, microseconds since the Unix epoch (authoritative) |
//! | `command_id` | string | |
//! | `command_fingerprint` | string or null | a u128 in decimal (a string: JSON numbers lose precision past 2^53) |
//! | `correlation_id`, `causation_id` | string or null | |
//! | `actor` | object | `{"service": string, "on_behalf_of": string or null}` |
//! | `payload` | object or null | the domain event, upcast to its current schema, as JSON; money as `{"amount": "<decimal string>", "currency": "USD"}`, weights and shares as decimal strings, timestamps as microseconds; null when the payload is not a domain event this code knows |
//! | `payload_hex` | string | the stored payload bytes, lower-case hex (authoritative: the hash covers these bytes) |
//! | `previous_hash`, `hash` | string | 64 lower-case hex digits; `hash = blake3(previous_hash ‖ envelope)` |
//!
//! Import rebuilds each envelope from these fields, re-checks positions, stream versions
//! and every hash, checks that `payload` is what `payload_hex` decodes to, and writes the
//! exact same envelopes, so export → import → export gives the same bytes.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{from_hex, to_hex, AuditError};
use crate::domain::DomainEvent;
use crate::store::embedded::import::LogWriter;
use crate::store::embedded::snapshot::{LogSnapshot, ScanItem};
use crate::store::{
    chain, codec, Actor, CausationId, CommandId, CorrelationId, EventId, EventType, Hash32, Head,
    OnBehalfOf, Position, RecordedEvent, ServiceName, StreamId, StreamVersion,
};
use crate::time::Timestamp;

/// One exported line.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportedEvent {
    pub position: Position,
    pub stream_id: String,
    pub stream_version: StreamVersion,
    pub event_id: String,
    pub event_type: String,
    pub schema_version: u16,
    pub recorded_at: String,
    pub recorded_at_micros: i64,
    pub command_id: String,
    pub command_fingerprint: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub actor: ExportedActor,
    pub payload: Option<serde_json::Value>,
    pub payload_hex: String,
    pub previous_hash: String,
    pub hash: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExportedActor {
    pub service: String,
    pub on_behalf_of: Option<String>,
}

/// The decoded payload as JSON, or `None` if it is not a domain event this code knows.
pub fn payload_json(event: &RecordedEvent) -> Option<serde_json::Value> {
    let domain_event = DomainEvent::decode(
        event.event_type.as_str(),
        event.schema_version,
        &event.payload,
    )
    .ok()?;
    Some(domain_event_json(&domain_event))
}

macro_rules! each_variant {
    ($event:expr, $($variant:ident),* $(,)?) => {
        match $event {
            $(DomainEvent::$variant(inner) => serde_json::to_value(inner),)*
        }
    };
}

/// A domain event as JSON (its fields; the type is in the envelope).
pub fn domain_event_json(event: &DomainEvent) -> serde_json::Value {
    each_variant!(
        event,
        MemberRegistered,
        MemberPersonalDataErased,
        ProjectStarted,
        LeadFeeAgreed,
        LeadAssigned,
        ProjectFinished,
        RecordUploaded,
        RemixUploaded,
        SourceCited,
        RecordWithdrawn,
        CommentPosted,
        ProductionOpened,
        RecordIncluded,
        RevenueRecorded,
        ExpenseRecorded,
        AllocationProposed,
        AllocationLinesContinued,
        AllocationAmended,
        AllocationFinalized,
        PayoutIssued,
        PayoutRetried,
        PayoutSettled,
        PayoutFailed,
    )
    .expect("domain events serialize to JSON")
}

impl ExportedEvent {
    pub fn from_recorded(event: &RecordedEvent) -> ExportedEvent {
        ExportedEvent {
            position: event.position,
            stream_id: event.stream_id.to_string(),
            stream_version: event.stream_version,
            event_id: event.event_id.to_hex(),
            event_type: event.event_type.to_string(),
            schema_version: event.schema_version,
            recorded_at: event.recorded_at.to_string(),
            recorded_at_micros: event.recorded_at.unix_micros(),
            command_id: event.command_id.to_string(),
            command_fingerprint: event.command_fingerprint.map(|f| f.to_string()),
            correlation_id: event.correlation_id.as_ref().map(ToString::to_string),
            causation_id: event.causation_id.as_ref().map(ToString::to_string),
            actor: ExportedActor {
                service: event.actor.service.to_string(),
                on_behalf_of: event.actor.on_behalf_of.as_ref().map(ToString::to_string),
            },
            payload: payload_json(event),
            payload_hex: to_hex(&event.payload),
            previous_hash: event.previous_hash.to_hex(),
            hash: event.hash.to_hex(),
        }
    }

    /// The envelope this line describes. Checks the form of every field, not the chain.
    pub fn to_recorded(&self) -> Result<RecordedEvent, String> {
        let field = |name: &str, error: &dyn std::fmt::Display| format!("{name}: {error}");
        let hash =
            |name: &str, text: &str| Hash32::from_hex(text).map_err(|error| field(name, &error));
        let event_id = from_hex(&self.event_id)
            .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok())
            .ok_or_else(|| field("event_id", &"must be 32 hexadecimal digits"))?;
        let payload = from_hex(&self.payload_hex)
            .ok_or_else(|| field("payload_hex", &"must be hexadecimal digits"))?;
        let command_fingerprint = self
            .command_fingerprint
            .as_deref()
            .map(str::parse::<u128>)
            .transpose()
            .map_err(|error| field("command_fingerprint", &error))?;
        let event = RecordedEvent {
            position: self.position,
            stream_id: StreamId::new(&self.stream_id).map_err(|e| e.to_string())?,
            stream_version: self.stream_version,
            event_id: EventId(event_id),
            event_type: EventType::new(&self.event_type).map_err(|e| e.to_string())?,
            schema_version: self.schema_version,
            recorded_at: Timestamp::from_unix_micros(self.recorded_at_micros),
            command_id: CommandId::new(&self.command_id).map_err(|e| e.to_string())?,
            command_fingerprint,
            correlation_id: self
                .correlation_id
                .as_deref()
                .map(CorrelationId::new)
                .transpose()
                .map_err(|e| e.to_string())?,
            causation_id: self
                .causation_id
                .as_deref()
                .map(CausationId::new)
                .transpose()
                .map_err(|e| e.to_string())?,
            actor: Actor {
                service: ServiceName::new(&self.actor.service).map_err(|e| e.to_string())?,
                on_behalf_of: self
                    .actor
                    .on_behalf_of
                    .as_deref()
                    .map(OnBehalfOf::new)
                    .transpose()
                    .map_err(|e| e.to_string())?,
            },
            payload,
            previous_hash: hash("previous_hash", &self.previous_hash)?,
            hash: hash("hash", &self.hash)?,
        };
        if self.recorded_at != event.recorded_at.to_string() {
            return Err(format!(
                "recorded_at: {:?} is not recorded_at_micros {}",
                self.recorded_at, self.recorded_at_micros
            ));
        }
        if self.payload != payload_json(&event) {
            return Err("payload: not what payload_hex decodes to".into());
        }
        Ok(event)
    }
}

/// What an export or import wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub events: u64,
    pub head_position: Position,
    pub head_hash: Hash32,
}

/// Writes every event of `data_directory` (up to its last complete commit; read-only, no
/// lock) to `out` as JSON lines. Refuses a damaged log, naming where: `audit verify`
/// reports all of it.
pub fn export_jsonl(data_directory: &Path, out: &mut dyn Write) -> Result<Summary, AuditError> {
    let snapshot = LogSnapshot::open(data_directory)?;
    let mut summary = Summary {
        events: 0,
        head_position: 0,
        head_hash: Hash32::GENESIS,
    };
    let mut failure: Option<AuditError> = None;
    let mut line = Vec::with_capacity(4096);
    snapshot.scan(|item| {
        let result = match item {
            ScanItem::Segment { .. } | ScanItem::Tail { .. } => Ok(()),
            ScanItem::Damage {
                path, offset, kind, ..
            } => Err(AuditError::BrokenChain {
                position: summary.head_position + 1,
                reason: format!("{kind} at {} offset {offset}", path.display()),
            }),
            ScanItem::Commit {
                complete: false,
                commit,
                ..
            } => Err(AuditError::BrokenChain {
                position: commit.first_position,
                reason: "an incomplete commit before later data".into(),
            }),
            ScanItem::Commit { frames, .. } => frames.iter().try_for_each(|frame| {
                let event =
                    codec::decode_event(frame.body).map_err(|kind| AuditError::BrokenChain {
                        position: summary.head_position + 1,
                        reason: kind.to_string(),
                    })?;
                line.clear();
                serde_json::to_writer(&mut line, &ExportedEvent::from_recorded(&event))
                    .expect("an export line serializes");
                line.push(b'\n');
                out.write_all(&line).map_err(|source| AuditError::Io {
                    what: "the export output".into(),
                    source,
                })?;
                summary.events += 1;
                summary.head_position = event.position;
                summary.head_hash = event.hash;
                Ok(())
            }),
        };
        match result {
            Ok(()) => true,
            Err(error) => {
                failure = Some(error);
                false
            }
        }
    })?;
    if let Some(error) = failure {
        return Err(error);
    }
    out.flush().map_err(|source| AuditError::Io {
        what: "the export output".into(),
        source,
    })?;
    Ok(summary)
}

/// Reads JSON lines from `input` into a new log in `new_data_directory`, checking every
/// position, stream version and hash first; refuses (naming the position) a file whose
/// chain is broken. Nothing is left behind on refusal but an unusable directory is
/// possible after a write error; import into a fresh directory and retry.
pub fn import_jsonl(
    input: &mut dyn BufRead,
    new_data_directory: &Path,
    segment_size_bytes: u64,
) -> Result<Summary, AuditError> {
    let mut writer =
        LogWriter::create(new_data_directory, segment_size_bytes).map_err(|error| match error {
            crate::store::embedded::import::ImportError::NotEmpty(path) => {
                AuditError::NotEmpty { path }
            }
            other => AuditError::Io {
                what: new_data_directory.display().to_string(),
                source: other.into_io(),
            },
        })?;
    let mut head = Head::EMPTY;
    let mut streams: HashMap<StreamId, StreamVersion> = HashMap::new();
    let mut line_number = 0u64;
    let mut text = String::new();
    loop {
        text.clear();
        let read = input
            .read_line(&mut text)
            .map_err(|source| AuditError::Io {
                what: "the import input".into(),
                source,
            })?;
        if read == 0 {
            break;
        }
        line_number += 1;
        if text.trim().is_empty() {
            continue;
        }
        let bad_line = |reason: String| AuditError::BadExportLine {
            line: line_number,
            reason,
        };
        let exported: ExportedEvent =
            serde_json::from_str(&text).map_err(|error| bad_line(error.to_string()))?;
        let event = exported.to_recorded().map_err(bad_line)?;
        let broken = |reason: String| AuditError::BrokenChain {
            position: event.position,
            reason,
        };
        if event.position != head.position + 1 {
            return Err(broken(format!(
                "expected position {}, found {}",
                head.position + 1,
                event.position
            )));
        }
        if event.previous_hash != head.hash {
            return Err(broken(format!(
                "previous_hash {} is not the hash before it, {}",
                event.previous_hash, head.hash
            )));
        }
        let recomputed = chain::expected_hash(&event);
        if recomputed != event.hash {
            return Err(broken(format!(
                "hash {} is not the hash of the event's content, {recomputed}",
                event.hash
            )));
        }
        let version = streams.entry(event.stream_id.clone()).or_insert(0);
        if event.stream_version != *version + 1 {
            return Err(broken(format!(
                "stream {} expected version {}, found {}",
                event.stream_id,
                *version + 1,
                event.stream_version
            )));
        }
        *version = event.stream_version;
        head = Head {
            position: event.position,
            hash: event.hash,
        };
        writer.push(event).map_err(|error| AuditError::Io {
            what: new_data_directory.display().to_string(),
            source: error.into_io(),
        })?;
    }
    writer.finish().map_err(|error| AuditError::Io {
        what: new_data_directory.display().to_string(),
        source: error.into_io(),
    })?;
    Ok(Summary {
        events: head.position,
        head_position: head.position,
        head_hash: head.hash,
    })
}
