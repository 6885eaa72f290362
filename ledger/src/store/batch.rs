//! A batch of events read from the log into one owned buffer and viewed in place.
//!
//! `read_all` hands out a `RecordedEvent` per event, each with its own strings and payload
//! (about eight heap blocks). A `RecordBatch` keeps the record bodies as they were read,
//! back to back in one buffer that is reused from read to read, plus a fixed-size entry
//! per event; `EventView` borrows from both. A reader that only looks at some fields of
//! each event (a projection runner) allocates nothing per event.
//!
//! The envelope is decoded with the store's own borrowed decoder (`codec::EnvelopeRef`)
//! when the batch is filled, so every body in a batch has decoded whole and every string
//! in it is valid UTF-8 before a reader sees it: the same checks `read_all` makes.

use std::ops::Range;

use super::codec::{self, EnvelopeRef};
use super::error::CorruptionKind;
use super::types::{EventId, Hash32, Position, RecordedEvent, StreamVersion};
use crate::time::Timestamp;

/// Where one field lies in the batch's buffer. Offsets are `u32`: a batch holds at most
/// `limits::READ_BATCH_BYTES_MAX` plus one record, far below 4 GiB.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// One event of a batch: its fixed-size fields copied, its variable-size ones located.
#[derive(Clone, Debug)]
struct Entry {
    position: Position,
    stream_version: StreamVersion,
    recorded_at: i64,
    command_fingerprint: Option<u128>,
    event_id: [u8; 16],
    schema_version: u16,
    previous_hash: [u8; 32],
    hash: [u8; 32],
    body: Span,
    stream_id: Span,
    event_type: Span,
    command_id: Span,
    correlation_id: Option<Span>,
    causation_id: Option<Span>,
    actor_service: Span,
    actor_on_behalf_of: Option<Span>,
    payload: Span,
}

/// Consecutive events of the log, read into one buffer. Fill it with
/// `EventStore::read_all_batch`; reuse it for the next read (its buffers keep their size).
#[derive(Default)]
pub struct RecordBatch {
    /// `bytes[..used]` holds this batch's records. The part past `used` is left from
    /// earlier batches: growing zero-fills, reusing does not.
    bytes: Vec<u8>,
    used: usize,
    entries: Vec<Entry>,
}

impl std::fmt::Debug for RecordBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordBatch")
            .field("events", &self.entries.len())
            .field("first_position", &self.first_position())
            .field("bytes", &self.used)
            .finish()
    }
}

impl RecordBatch {
    pub fn new() -> RecordBatch {
        RecordBatch::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of records held (what the batch's byte bound counts).
    pub fn size_bytes(&self) -> usize {
        self.used
    }

    pub fn first_position(&self) -> Option<Position> {
        self.entries.first().map(|entry| entry.position)
    }

    pub fn last_position(&self) -> Option<Position> {
        self.entries.last().map(|entry| entry.position)
    }

    pub fn get(&self, index: usize) -> Option<EventView<'_>> {
        self.entries.get(index).map(|entry| EventView {
            bytes: &self.bytes,
            entry,
        })
    }

    /// The events in log order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = EventView<'_>> + '_ {
        self.entries.iter().map(|entry| EventView {
            bytes: &self.bytes,
            entry,
        })
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.used = 0;
        self.entries.clear();
    }

    /// For backends: `length` more bytes at the end of the batch, to read records into,
    /// and their offset in the batch. Only bytes never used before are zero-filled.
    pub fn extend_bytes(&mut self, length: usize) -> (usize, &mut [u8]) {
        let start = self.used;
        let end = start + length;
        u32::try_from(end).expect("a batch is bounded far below 4 GiB");
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.used = end;
        (start, &mut self.bytes[start..end])
    }

    /// For backends: the batch's bytes, to find the records in what `extend_bytes` gave.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.used]
    }

    /// For backends: takes the record body at `body` (a range of `bytes()`) as the next
    /// event. Fails, adding nothing, if it does not decode as an envelope or its position
    /// is not `expected_position`.
    pub fn push_body(
        &mut self,
        body: Range<usize>,
        expected_position: Position,
    ) -> Result<(), CorruptionKind> {
        let bytes = &self.bytes[..self.used];
        let envelope = EnvelopeRef::decode(&bytes[body.clone()])?;
        if envelope.position != expected_position {
            return Err(CorruptionKind::PositionGap {
                expected: expected_position,
                found: envelope.position,
            });
        }
        let span = |part: &[u8]| span_within(bytes, part);
        let entry = Entry {
            position: envelope.position,
            stream_version: envelope.stream_version,
            recorded_at: envelope.recorded_at,
            command_fingerprint: envelope.command_fingerprint,
            event_id: envelope.event_id,
            schema_version: envelope.schema_version,
            previous_hash: envelope.previous_hash,
            hash: envelope.hash,
            body: Span {
                start: body.start as u32,
                end: body.end as u32,
            },
            stream_id: span(envelope.stream_id.as_bytes()),
            event_type: span(envelope.event_type.as_bytes()),
            command_id: span(envelope.command_id.as_bytes()),
            correlation_id: envelope.correlation_id.map(|s| span(s.as_bytes())),
            causation_id: envelope.causation_id.map(|s| span(s.as_bytes())),
            actor_service: span(envelope.actor_service.as_bytes()),
            actor_on_behalf_of: envelope.actor_on_behalf_of.map(|s| span(s.as_bytes())),
            payload: span(envelope.payload),
        };
        self.entries.push(entry);
        Ok(())
    }

    /// For backends without a byte form of their own: appends `event`, encoded as the
    /// embedded store stores it.
    pub fn push_recorded(&mut self, event: &RecordedEvent) {
        self.bytes.truncate(self.used);
        codec::encode_body_into(event, &mut self.bytes);
        let range = self.used..self.bytes.len();
        self.used = range.end;
        u32::try_from(self.used).expect("a batch is bounded far below 4 GiB");
        self.push_body(range, event.position)
            .expect("an envelope just encoded decodes");
    }
}

/// The span of `part`, a subslice of `bytes` (a field the borrowed decoder found in it).
fn span_within(bytes: &[u8], part: &[u8]) -> Span {
    let start = (part.as_ptr() as usize)
        .checked_sub(bytes.as_ptr() as usize)
        .expect("a decoded field lies in the buffer it was decoded from");
    let end = start + part.len();
    assert!(end <= bytes.len(), "a decoded field lies in its buffer");
    Span {
        start: start as u32,
        end: end as u32,
    }
}

/// One event of a `RecordBatch`, borrowed: the fields of `RecordedEvent`.
#[derive(Clone, Copy)]
pub struct EventView<'a> {
    bytes: &'a [u8],
    entry: &'a Entry,
}

impl std::fmt::Debug for EventView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventView")
            .field("position", &self.position())
            .field("stream_id", &self.stream_id())
            .field("event_type", &self.event_type())
            .finish_non_exhaustive()
    }
}

impl<'a> EventView<'a> {
    fn text(&self, span: Span) -> &'a str {
        // Checked when the batch was filled; the buffer has not changed since (it is
        // borrowed). Checking a short string again costs a few nanoseconds and no `unsafe`.
        std::str::from_utf8(&self.bytes[span.range()]).expect("checked when the batch was filled")
    }

    pub fn position(&self) -> Position {
        self.entry.position
    }

    pub fn stream_id(&self) -> &'a str {
        self.text(self.entry.stream_id)
    }

    pub fn stream_version(&self) -> StreamVersion {
        self.entry.stream_version
    }

    pub fn event_id(&self) -> EventId {
        EventId(self.entry.event_id)
    }

    pub fn event_type(&self) -> &'a str {
        self.text(self.entry.event_type)
    }

    pub fn schema_version(&self) -> u16 {
        self.entry.schema_version
    }

    pub fn recorded_at(&self) -> Timestamp {
        Timestamp(self.entry.recorded_at)
    }

    pub fn command_id(&self) -> &'a str {
        self.text(self.entry.command_id)
    }

    pub fn command_fingerprint(&self) -> Option<u128> {
        self.entry.command_fingerprint
    }

    pub fn correlation_id(&self) -> Option<&'a str> {
        self.entry.correlation_id.map(|span| self.text(span))
    }

    pub fn causation_id(&self) -> Option<&'a str> {
        self.entry.causation_id.map(|span| self.text(span))
    }

    pub fn actor_service(&self) -> &'a str {
        self.text(self.entry.actor_service)
    }

    pub fn actor_on_behalf_of(&self) -> Option<&'a str> {
        self.entry.actor_on_behalf_of.map(|span| self.text(span))
    }

    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[self.entry.payload.range()]
    }

    pub fn previous_hash(&self) -> Hash32 {
        Hash32(self.entry.previous_hash)
    }

    pub fn hash(&self) -> Hash32 {
        Hash32(self.entry.hash)
    }

    /// The record body as stored: the bincode envelope, ending in the hash.
    pub fn body(&self) -> &'a [u8] {
        &self.bytes[self.entry.body.range()]
    }

    /// The event, owned (what `read_all` returns for it).
    pub fn to_recorded(&self) -> RecordedEvent {
        codec::decode_event(self.body()).expect("the body decoded when the batch was filled")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::types::{Actor, CausationId, CommandId, EventType, ServiceName, StreamId};

    fn event(position: Position, payload: &[u8]) -> RecordedEvent {
        let mut event = RecordedEvent {
            position,
            stream_id: StreamId::new(format!("s-{position}")).unwrap(),
            stream_version: position * 2,
            event_id: EventId([position as u8; 16]),
            event_type: EventType::new("Thing").unwrap(),
            schema_version: 3,
            recorded_at: Timestamp(-5),
            command_id: CommandId::new("c").unwrap(),
            command_fingerprint: Some(u128::MAX),
            correlation_id: None,
            causation_id: Some(CausationId::new("cause").unwrap()),
            actor: Actor {
                service: ServiceName::new("svc").unwrap(),
                on_behalf_of: None,
            },
            payload: payload.to_vec(),
            previous_hash: Hash32([7; 32]),
            hash: Hash32::GENESIS,
        };
        codec::encode_and_hash(&mut event);
        event
    }

    #[test]
    fn recorded_events_round_trip_through_a_reused_batch() {
        let mut batch = RecordBatch::new();
        for round in 0..3u64 {
            batch.clear();
            let events: Vec<RecordedEvent> = (1..=4)
                .map(|i| {
                    event(
                        round * 10 + i,
                        &vec![i as u8; (i * 7 * (3 - round)) as usize],
                    )
                })
                .collect();
            for recorded in &events {
                batch.push_recorded(recorded);
            }
            assert_eq!(batch.len(), 4);
            let viewed: Vec<RecordedEvent> = batch.iter().map(|view| view.to_recorded()).collect();
            assert_eq!(viewed, events);
            let view = batch.get(1).unwrap();
            assert_eq!(view.payload(), &events[1].payload[..]);
            assert_eq!(view.stream_id(), events[1].stream_id.as_str());
            assert_eq!(view.hash(), events[1].hash);
            assert_eq!(view.causation_id(), Some("cause"));
            assert_eq!(view.correlation_id(), None);
        }
    }

    #[test]
    fn a_body_that_does_not_decode_or_is_out_of_place_adds_nothing() {
        let mut batch = RecordBatch::new();
        let recorded = event(5, b"abc");
        let mut body = Vec::new();
        codec::encode_body_into(&recorded, &mut body);
        let (start, space) = batch.extend_bytes(body.len());
        space.copy_from_slice(&body);
        let range = start..start + body.len();
        assert_eq!(
            batch.push_body(range.clone(), 6),
            Err(CorruptionKind::PositionGap {
                expected: 6,
                found: 5
            })
        );
        assert!(matches!(
            batch.push_body(range.start..range.end - 1, 5),
            Err(CorruptionKind::Undecodable(_))
        ));
        assert!(batch.is_empty());
        batch.push_body(range, 5).unwrap();
        assert_eq!(batch.get(0).unwrap().to_recorded(), recorded);
    }
}
