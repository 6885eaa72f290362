//! On-disk encoding: records (bincode) inside frames (length, commit, checksum).
//!
//! Frame, little-endian:
//!
//! ```text
//! magic u32 | body_len u32 | commit_first u64 | commit_last u64 | crc32c u32 | body
//! ```
//!
//! The checksum covers the body, `body_len` and both commit positions. The body is the
//! bincode encoding of a `RecordedEvent`; its last 32 bytes are the event's hash, and the
//! bytes before them are what the hash covers (see `chain`).
//!
//! `commit_first`/`commit_last` name the group commit the record was written in. Recovery
//! uses them to tell a torn tail (damage inside the last commit, which was never
//! acknowledged) from damage followed by a later commit (which proves the damaged one had
//! been durable), and to cut an incomplete last commit whole, so no append is ever
//! recovered in part.

use super::error::CorruptionKind;
use super::types::{
    Actor, CausationId, CommandId, CorrelationId, EventId, EventType, Hash32, Position,
    RecordedEvent, StreamId, StreamVersion,
};
use crate::time::Timestamp;

pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"STMR");
pub const FRAME_HEADER_BYTES: usize = 28;

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
}

/// Encodes `event` (its `hash` field is ignored) and returns the body with the hash set.
/// The caller's `event.hash` is updated too.
pub fn encode_and_hash(event: &mut RecordedEvent) -> Vec<u8> {
    let mut body = bincode::encode_to_vec(&*event, config()).expect("encoding into a Vec");
    let hash_at = body.len() - 32;
    let hash = super::chain::link(&event.previous_hash, &body[..hash_at]);
    body[hash_at..].copy_from_slice(&hash.0);
    event.hash = hash;
    body
}

/// A `RecordedEvent` by reference: the same fields in the same order, so it encodes to
/// the same bytes, without cloning the strings and payload of the request it comes from.
#[derive(bincode::Encode)]
pub struct RecordRef<'a> {
    pub position: Position,
    pub stream_id: &'a StreamId,
    pub stream_version: StreamVersion,
    pub event_id: EventId,
    pub event_type: &'a EventType,
    pub schema_version: u16,
    pub recorded_at: Timestamp,
    pub command_id: &'a CommandId,
    pub command_fingerprint: Option<u128>,
    pub correlation_id: Option<&'a CorrelationId>,
    pub causation_id: Option<&'a CausationId>,
    pub actor: &'a Actor,
    pub payload: &'a [u8],
    pub previous_hash: Hash32,
    /// Ignored: written once the rest is hashed.
    pub hash: Hash32,
}

/// Appends the record's body to `out` with its hash set, and returns the hash.
pub fn encode_record_into(record: &RecordRef<'_>, out: &mut Vec<u8>) -> Hash32 {
    let start = out.len();
    bincode::encode_into_std_write(record, out, config()).expect("encoding into a Vec");
    let hash_at = out.len() - 32;
    let hash = super::chain::link(&record.previous_hash, &out[start..hash_at]);
    out[hash_at..].copy_from_slice(&hash.0);
    hash
}

/// Appends the body of `event` as stored, its hash as it is (not computed again).
pub fn encode_body_into(event: &RecordedEvent, out: &mut Vec<u8>) {
    bincode::encode_into_std_write(event, out, config()).expect("encoding into a Vec");
}

/// The bytes the event's hash covers.
pub fn encode_unhashed(event: &RecordedEvent) -> Vec<u8> {
    let mut body = bincode::encode_to_vec(event, config()).expect("encoding into a Vec");
    body.truncate(body.len() - 32);
    body
}

pub fn decode_event(body: &[u8]) -> Result<RecordedEvent, CorruptionKind> {
    // Borrowing: the envelope's ids are made from the body's bytes in place (inline when
    // short), not from a `String` decoded first.
    let (event, read): (RecordedEvent, usize) =
        bincode::borrow_decode_from_slice(body, config())
            .map_err(|error| CorruptionKind::Undecodable(error.to_string()))?;
    if read != body.len() {
        return Err(CorruptionKind::Undecodable(format!(
            "{} trailing bytes after the record",
            body.len() - read
        )));
    }
    Ok(event)
}

/// Whether the hash stored in `body` is the hash of its content, given the hash before it.
pub fn body_hash_is_valid(previous: &Hash32, body: &[u8], stored: &Hash32) -> bool {
    let hash_at = body.len() - 32;
    super::chain::link(previous, &body[..hash_at]) == *stored
}

/// The checksum of a frame from its body's own crc32c and the header fields, so a writer
/// can checksum each body once while encoding and fill in the commit range at the end.
fn checksum(body_crc: u32, body_len: u32, commit: CommitRange) -> u32 {
    let crc = crc32c::crc32c_append(body_crc, &body_len.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &commit.first_position.to_le_bytes());
    crc32c::crc32c_append(crc, &commit.last_position.to_le_bytes())
}

/// The positions of the group commit a record was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitRange {
    pub first_position: Position,
    pub last_position: Position,
}

/// Writes a frame header for a body of `body_len` bytes whose crc32c is `body_crc` into
/// the first `FRAME_HEADER_BYTES` of `header`.
pub fn write_frame_header(header: &mut [u8], body_len: usize, body_crc: u32, commit: CommitRange) {
    let body_len = u32::try_from(body_len).expect("record bodies are bounded far below 4 GiB");
    header[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    header[4..8].copy_from_slice(&body_len.to_le_bytes());
    header[8..16].copy_from_slice(&commit.first_position.to_le_bytes());
    header[16..24].copy_from_slice(&commit.last_position.to_le_bytes());
    header[24..28].copy_from_slice(&checksum(body_crc, body_len, commit).to_le_bytes());
}

pub fn append_frame(out: &mut Vec<u8>, commit: CommitRange, body: &[u8]) {
    let at = out.len();
    out.resize(at + FRAME_HEADER_BYTES, 0);
    write_frame_header(&mut out[at..], body.len(), crc32c::crc32c(body), commit);
    out.extend_from_slice(body);
}

pub fn frame_bytes(body_len: usize) -> usize {
    FRAME_HEADER_BYTES + body_len
}

/// What lies at one offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete frame whose checksum matches.
    Valid {
        commit: CommitRange,
        body: &'a [u8],
        frame_bytes: usize,
    },
    /// Zeroes: the preallocated, never-written end of the segment.
    Empty,
    /// Anything else: a torn write or damage.
    Invalid(CorruptionKind),
}

pub fn parse_frame(bytes: &[u8], body_bytes_max: usize) -> Frame<'_> {
    if bytes.len() < FRAME_HEADER_BYTES {
        return if bytes.iter().all(|b| *b == 0) {
            Frame::Empty
        } else {
            Frame::Invalid(CorruptionKind::BadFrame("truncated frame header".into()))
        };
    }
    let field = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let magic = field(0);
    if magic == 0 && bytes[..FRAME_HEADER_BYTES].iter().all(|b| *b == 0) {
        return Frame::Empty;
    }
    if magic != FRAME_MAGIC {
        return Frame::Invalid(CorruptionKind::BadFrame(format!("bad magic {magic:#010x}")));
    }
    let body_len = field(4);
    let commit = CommitRange {
        first_position: u64::from_le_bytes(bytes[8..16].try_into().unwrap()),
        last_position: u64::from_le_bytes(bytes[16..24].try_into().unwrap()),
    };
    let stored_crc = field(24);
    let body_len_usize = body_len as usize;
    if body_len_usize > body_bytes_max || body_len_usize < 32 {
        return Frame::Invalid(CorruptionKind::BadFrame(format!(
            "implausible body length {body_len}"
        )));
    }
    let Some(body) = bytes.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + body_len_usize) else {
        return Frame::Invalid(CorruptionKind::BadFrame(
            "frame runs past the end of the segment".into(),
        ));
    };
    if checksum(crc32c::crc32c(body), body_len, commit) != stored_crc {
        return Frame::Invalid(CorruptionKind::BadChecksum);
    }
    Frame::Valid {
        commit,
        body,
        frame_bytes: FRAME_HEADER_BYTES + body_len_usize,
    }
}

/// The stored hash: the body's last 32 bytes.
pub fn stored_hash(body: &[u8]) -> Hash32 {
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&body[body.len() - 32..]);
    Hash32(hash)
}

/// The position an envelope names: its first field, read without decoding the rest.
pub fn stored_position(body: &[u8]) -> Result<Position, CorruptionKind> {
    bincode::decode_from_slice::<Position, _>(body, config())
        .map(|(position, _)| position)
        .map_err(|e| CorruptionKind::Undecodable(e.to_string()))
}

/// The stored previous hash and the content it is linked with: an envelope ends with its
/// previous hash and its hash, 32 bytes each (bincode writes arrays without a length), so
/// both are found without decoding. `None` for a body too short to be an envelope.
pub fn stored_link(body: &[u8]) -> Option<(&[u8; 32], &[u8])> {
    let hash_at = body.len().checked_sub(32)?;
    let previous_at = hash_at.checked_sub(32)?;
    let previous = body[previous_at..hash_at].try_into().expect("32 bytes");
    Some((previous, &body[..hash_at]))
}

/// An envelope read in place from a frame's body: the fields of `RecordedEvent` in its
/// bincode order (each identifier a newtype over a string, so the same bytes), borrowed,
/// so checking an event allocates nothing. `decode_event` stays the reference: it gives
/// the message of an envelope that does not decode.
#[derive(bincode::BorrowDecode)]
pub struct EnvelopeRef<'a> {
    pub position: Position,
    pub stream_id: &'a str,
    pub stream_version: StreamVersion,
    pub event_id: [u8; 16],
    pub event_type: &'a str,
    pub schema_version: u16,
    pub recorded_at: i64,
    pub command_id: &'a str,
    pub command_fingerprint: Option<u128>,
    pub correlation_id: Option<&'a str>,
    pub causation_id: Option<&'a str>,
    pub actor_service: &'a str,
    pub actor_on_behalf_of: Option<&'a str>,
    pub payload: &'a [u8],
    pub previous_hash: [u8; 32],
    pub hash: [u8; 32],
}

impl<'a> EnvelopeRef<'a> {
    pub fn decode(body: &'a [u8]) -> Result<EnvelopeRef<'a>, CorruptionKind> {
        match bincode::borrow_decode_from_slice::<EnvelopeRef<'a>, _>(
            body,
            bincode::config::standard(),
        ) {
            Ok((envelope, read)) if read == body.len() => Ok(envelope),
            // The rare path: the owned decoder words the finding.
            _ => Err(decode_event(body).err().unwrap_or_else(|| {
                CorruptionKind::Undecodable("the envelope does not decode in place".into())
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::types::*;
    use crate::time::Timestamp;

    pub(crate) fn sample_event() -> RecordedEvent {
        RecordedEvent {
            position: 7,
            stream_id: StreamId::new("record-r1").unwrap(),
            stream_version: 2,
            event_id: EventId::derive(&CommandId::new("c").unwrap(), 0),
            event_type: EventType::new("RecordUploaded").unwrap(),
            schema_version: 1,
            recorded_at: Timestamp(42),
            command_id: CommandId::new("c").unwrap(),
            command_fingerprint: Some(3),
            correlation_id: None,
            causation_id: Some(CausationId::new("cause").unwrap()),
            actor: Actor {
                service: ServiceName::new("gateway").unwrap(),
                on_behalf_of: None,
            },
            payload: vec![1, 2, 3],
            previous_hash: Hash32([9; 32]),
            hash: Hash32::GENESIS,
        }
    }

    #[test]
    fn the_hash_is_the_last_32_bytes_and_covers_the_rest() {
        let mut event = sample_event();
        let body = encode_and_hash(&mut event);
        assert_eq!(stored_hash(&body), event.hash);
        assert_eq!(crate::store::chain::expected_hash(&event), event.hash);
        let (previous, content) = stored_link(&body).unwrap();
        assert_eq!(*previous, event.previous_hash.0);
        assert_eq!(
            crate::store::chain::link(&event.previous_hash, content),
            event.hash
        );
        assert_eq!(stored_link(&body[..63]), None);
        assert!(body_hash_is_valid(&event.previous_hash, &body, &event.hash));
        assert_eq!(decode_event(&body).unwrap(), event);
        let mut changed = event.clone();
        changed.payload[0] = 9;
        assert_ne!(crate::store::chain::expected_hash(&changed), event.hash);
    }

    #[test]
    fn a_record_by_reference_encodes_like_the_record() {
        let mut event = sample_event();
        let owned = encode_and_hash(&mut event);
        let reference = RecordRef {
            position: event.position,
            stream_id: &event.stream_id,
            stream_version: event.stream_version,
            event_id: event.event_id,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            recorded_at: event.recorded_at,
            command_id: &event.command_id,
            command_fingerprint: event.command_fingerprint,
            correlation_id: event.correlation_id.as_ref(),
            causation_id: event.causation_id.as_ref(),
            actor: &event.actor,
            payload: &event.payload,
            previous_hash: event.previous_hash,
            hash: Hash32::GENESIS,
        };
        let mut out = vec![7u8; 3];
        let hash = encode_record_into(&reference, &mut out);
        assert_eq!(&out[3..], &owned[..]);
        assert_eq!(hash, event.hash);
    }

    #[test]
    fn frames_round_trip_and_detect_damage() {
        let mut event = sample_event();
        let body = encode_and_hash(&mut event);
        let mut out = Vec::new();
        let commit = CommitRange {
            first_position: 5,
            last_position: 9,
        };
        append_frame(&mut out, commit, &body);
        match parse_frame(&out, 1 << 20) {
            Frame::Valid {
                commit: parsed_commit,
                body: parsed,
                frame_bytes,
            } => {
                assert_eq!(parsed_commit, commit);
                assert_eq!(parsed, &body[..]);
                assert_eq!(frame_bytes, out.len());
            }
            other => panic!("{other:?}"),
        }
        for at in 0..out.len() {
            let mut damaged = out.clone();
            damaged[at] ^= 0x40;
            assert!(
                matches!(parse_frame(&damaged, 1 << 20), Frame::Invalid(_)),
                "flip at {at} not detected"
            );
        }
        for cut in 0..out.len() {
            let mut torn = out[..cut].to_vec();
            torn.resize(out.len(), 0);
            assert!(!matches!(parse_frame(&torn, 1 << 20), Frame::Valid { .. }));
        }
        assert_eq!(parse_frame(&[0u8; 64], 1 << 20), Frame::Empty);
    }
}
