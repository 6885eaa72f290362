//! The store's vocabulary: identifiers, the event envelope, append requests and results.
//!
//! The store knows nothing of the domain: a payload is bytes plus an event type name and a
//! schema version. Every identifier is validated when it is constructed, so a value of one
//! of these types is always well-formed.

use std::fmt;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::error::InvalidInput;
use super::limits;
use crate::time::Timestamp;

/// A global position in the log: 1 for the first event, gap-free. Position 0 means "before
/// the first event" (the head of an empty log).
pub type Position = u64;

/// A version within one stream: 1 for the stream's first event, gap-free. Version 0 means
/// "the stream has no event yet".
pub type StreamVersion = u64;

fn check_identifier(
    field: &'static str,
    value: &str,
    length_max: usize,
    allowed: impl Fn(u8) -> bool,
    rule: &'static str,
) -> Result<(), InvalidInput> {
    if value.is_empty() {
        return Err(InvalidInput::new(field, "must not be empty"));
    }
    if value.len() > length_max {
        return Err(InvalidInput::new(
            field,
            format!("must be at most {length_max} bytes, got {}", value.len()),
        ));
    }
    if let Some(bad) = value.bytes().find(|b| !allowed(*b)) {
        return Err(InvalidInput::new(
            field,
            format!("{rule}; found {:?}", char::from(bad)),
        ));
    }
    Ok(())
}

fn is_opaque_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $length_max:expr, $allowed:expr, $rule:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(CompactString);

        impl $name {
            pub const LENGTH_BYTES_MAX: usize = $length_max;

            pub fn new(value: impl AsRef<str>) -> Result<$name, InvalidInput> {
                let value = value.as_ref();
                check_identifier($field, value, $length_max, $allowed, $rule)?;
                Ok($name(CompactString::new(value)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        // Hashes and compares as its text, so maps keyed by the id are looked up by `&str`.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        // The same bytes as a `String` field would give (length, then UTF-8): logs written
        // before the ids were inline read back unchanged.
        impl bincode::Encode for $name {
            fn encode<E: bincode::enc::Encoder>(
                &self,
                encoder: &mut E,
            ) -> Result<(), bincode::error::EncodeError> {
                bincode::Encode::encode(self.0.as_str(), encoder)
            }
        }

        impl<Context> bincode::Decode<Context> for $name {
            fn decode<D: bincode::de::Decoder<Context = Context>>(
                decoder: &mut D,
            ) -> Result<Self, bincode::error::DecodeError> {
                let value: String = bincode::Decode::decode(decoder)?;
                Ok($name(CompactString::from(value)))
            }
        }

        impl<'de, Context> bincode::BorrowDecode<'de, Context> for $name {
            fn borrow_decode<D: bincode::de::BorrowDecoder<'de, Context = Context>>(
                decoder: &mut D,
            ) -> Result<Self, bincode::error::DecodeError> {
                let value: &'de str = bincode::BorrowDecode::borrow_decode(decoder)?;
                Ok($name(CompactString::new(value)))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                $name::new(value).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// A stream: `<category>-<id>`, e.g. `record-01J9ZQ…` or `production-p7`.
    StreamId,
    "stream_id",
    limits::STREAM_ID_LENGTH_BYTES_MAX,
    |b: u8| is_opaque_id_byte(b) || b == b'.' || b == b':',
    "may contain only A-Z, a-z, 0-9, '_', '-', '.' and ':'"
);

impl StreamId {
    /// A stream id read back from the log: only checked ids are ever written, and the
    /// frame's checksum covers it, so reading it back does not check it again.
    pub(crate) fn from_log(value: &str) -> StreamId {
        StreamId(CompactString::new(value))
    }
}

string_id!(
    /// The caller's id for one command; the store's idempotency key.
    CommandId,
    "command_id",
    limits::OPAQUE_ID_LENGTH_BYTES_MAX,
    is_opaque_id_byte,
    "may contain only A-Z, a-z, 0-9, '_' and '-'"
);

string_id!(
    /// Ties together every command and event of one piece of work.
    CorrelationId,
    "correlation_id",
    limits::OPAQUE_ID_LENGTH_BYTES_MAX,
    is_opaque_id_byte,
    "may contain only A-Z, a-z, 0-9, '_' and '-'"
);

string_id!(
    /// What caused a command: usually the id of an event or of another command.
    CausationId,
    "causation_id",
    limits::OPAQUE_ID_LENGTH_BYTES_MAX,
    is_opaque_id_byte,
    "may contain only A-Z, a-z, 0-9, '_' and '-'"
);

string_id!(
    /// The name of an event type, e.g. `RecordUploaded`.
    EventType,
    "event_type",
    limits::EVENT_TYPE_LENGTH_BYTES_MAX,
    |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'.',
    "may contain only A-Z, a-z, 0-9, '_' and '.'"
);

string_id!(
    /// The internal service that sent a command (its authenticated name).
    ServiceName,
    "actor.service",
    limits::OPAQUE_ID_LENGTH_BYTES_MAX,
    |b: u8| is_opaque_id_byte(b) || b == b'.',
    "may contain only A-Z, a-z, 0-9, '_', '-' and '.'"
);

string_id!(
    /// A member on whose behalf a service acts.
    OnBehalfOf,
    "actor.on_behalf_of",
    limits::OPAQUE_ID_LENGTH_BYTES_MAX,
    is_opaque_id_byte,
    "may contain only A-Z, a-z, 0-9, '_' and '-'"
);

/// Who wrote an event: the authenticated service, and the member it acted for, if any.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, bincode::Encode, bincode::Decode,
)]
pub struct Actor {
    pub service: ServiceName,
    pub on_behalf_of: Option<OnBehalfOf>,
}

/// A blake3 digest: an event's link in the hash chain.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    bincode::Encode,
    bincode::Decode,
)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// The link before the first event of every log.
    pub const GENESIS: Hash32 = Hash32([0; 32]);

    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }

    pub fn from_hex(text: &str) -> Result<Hash32, InvalidInput> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return Err(InvalidInput::new("hash", "must be 64 hexadecimal digits"));
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let pair = std::str::from_utf8(pair)
                .map_err(|_| InvalidInput::new("hash", "must be 64 hexadecimal digits"))?;
            out[i] = u8::from_str_radix(pair, 16)
                .map_err(|_| InvalidInput::new("hash", "must be 64 hexadecimal digits"))?;
        }
        Ok(Hash32(out))
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({})", self.to_hex())
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A unique event id. The store derives it from the command id and the event's index in
/// the command, so a retried command names the same events and no randomness is needed.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    bincode::Encode,
    bincode::Decode,
)]
pub struct EventId(pub [u8; 16]);

impl EventId {
    pub fn derive(command_id: &CommandId, index_in_command: u32) -> EventId {
        // `blake3::derive_key("stemma event id v1", command_id ‖ index_in_command)`, cut to
        // 16 bytes. Deriving the key is most of the cost of hashing a short id: done once.
        const _: () = assert!(
            CommandId::LENGTH_BYTES_MAX + 4 <= blake3::CHUNK_LEN,
            "one chunk"
        );
        static KEY: std::sync::OnceLock<[u32; 8]> = std::sync::OnceLock::new();
        let key = KEY.get_or_init(|| super::chain::derive_key_words("stemma event id v1"));
        let hash = super::chain::hash_one_chunk(
            key,
            super::chain::DERIVE_KEY_MATERIAL,
            &[
                command_id.as_str().as_bytes(),
                &index_in_command.to_le_bytes(),
            ],
        );
        let mut id = [0u8; 16];
        id.copy_from_slice(&hash[..16]);
        EventId(id)
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.to_hex())
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// What a writer expects of a stream's version when its append is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No expectation.
    Any,
    /// The stream has no event yet.
    NoStream,
    /// The stream's last event has exactly this version (`Exact(0)` is the same as
    /// `NoStream`).
    Exact(StreamVersion),
}

impl ExpectedVersion {
    /// Whether a stream whose current version is `current` (0 = no stream) meets this.
    pub fn is_met_by(self, current: StreamVersion) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::Exact(version) => current == version,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(version) => write!(f, "version {version}"),
        }
    }
}

/// One expectation of an append: the stream may be written by the append or only read by
/// the decision behind it (so the decision stays valid).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamExpectation {
    pub stream_id: StreamId,
    pub expected: ExpectedVersion,
}

/// An event to append, before the store gives it a position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposedEvent {
    pub stream_id: StreamId,
    pub event_type: EventType,
    pub schema_version: u16,
    pub payload: Vec<u8>,
}

/// One command's worth of events, appended atomically (all or none) to one or more streams.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendRequest {
    /// Idempotency key: a retry with the same id and content returns the original result.
    pub command_id: CommandId,
    pub correlation_id: Option<CorrelationId>,
    pub causation_id: Option<CausationId>,
    pub actor: Actor,
    /// A digest of the command behind the append, kept in every event's envelope, so a
    /// reused command id is told from a retry however long after (the events of a retry
    /// decided again may differ; the command does not).
    pub command_fingerprint: Option<u128>,
    /// At most one per stream. Streams written without an expectation accept any version.
    pub expectations: Vec<StreamExpectation>,
    /// In order; at least one.
    pub events: Vec<ProposedEvent>,
}

/// Where an append landed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    pub first_position: Position,
    pub last_position: Position,
    /// Each written stream with its version after the append, in order of first write.
    pub stream_versions: Vec<(StreamId, StreamVersion)>,
    pub recorded_at: Timestamp,
}

impl AppendResult {
    /// The result of the append that wrote `events` (all of them, in order): what a retry
    /// of its command id answers.
    pub fn of_recorded(events: &[RecordedEvent]) -> AppendResult {
        assert!(!events.is_empty(), "an append writes at least one event");
        let mut stream_versions: Vec<(StreamId, StreamVersion)> = Vec::new();
        for event in events {
            match stream_versions
                .iter_mut()
                .find(|(s, _)| *s == event.stream_id)
            {
                Some((_, version)) => *version = event.stream_version,
                None => stream_versions.push((event.stream_id.clone(), event.stream_version)),
            }
        }
        AppendResult {
            first_position: events[0].position,
            last_position: events[events.len() - 1].position,
            stream_versions,
            recorded_at: events[0].recorded_at,
        }
    }
}

/// An event as recorded: the envelope and its payload.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct RecordedEvent {
    pub position: Position,
    pub stream_id: StreamId,
    pub stream_version: StreamVersion,
    pub event_id: EventId,
    pub event_type: EventType,
    pub schema_version: u16,
    pub recorded_at: Timestamp,
    pub command_id: CommandId,
    /// See `AppendRequest::command_fingerprint`.
    pub command_fingerprint: Option<u128>,
    pub correlation_id: Option<CorrelationId>,
    pub causation_id: Option<CausationId>,
    pub actor: Actor,
    pub payload: Vec<u8>,
    /// The hash of the event before this one in the log (`Hash32::GENESIS` for the first).
    pub previous_hash: Hash32,
    /// `blake3(previous_hash ‖ encoded envelope without this field)`, see `chain`.
    pub hash: Hash32,
}

/// The end of the log: its last position and that event's hash, the checkpoint an auditor
/// writes down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub position: Position,
    pub hash: Hash32,
}

impl Head {
    pub const EMPTY: Head = Head {
        position: 0,
        hash: Hash32::GENESIS,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inline or not, an id is encoded as the `String` it used to be, and decodes (owned or
    /// borrowed) from those bytes: logs written before read back unchanged.
    #[test]
    fn identifiers_encode_as_strings() {
        let config = bincode::config::standard();
        for text in [
            "s",
            "record-r1903770",
            "x".repeat(24).as_str(),
            "y".repeat(64).as_str(),
        ] {
            let id = StreamId::new(text).unwrap();
            let as_id = bincode::encode_to_vec(&id, config).unwrap();
            let as_string = bincode::encode_to_vec(text.to_owned(), config).unwrap();
            assert_eq!(as_id, as_string, "{text}");
            let (owned, _): (StreamId, usize) =
                bincode::decode_from_slice(&as_string, config).unwrap();
            let (borrowed, _): (StreamId, usize) =
                bincode::borrow_decode_from_slice(&as_string, config).unwrap();
            assert_eq!(owned.as_str(), text);
            assert_eq!(borrowed.as_str(), text);
        }
    }

    #[test]
    fn identifiers_name_the_field_and_the_rule() {
        let error = StreamId::new("record 1").unwrap_err();
        assert_eq!(error.field, "stream_id");
        assert!(error.rule.contains("may contain only"), "{error}");
        let error = CommandId::new("").unwrap_err();
        assert_eq!(error.field, "command_id");
        assert_eq!(error.rule, "must not be empty");
        let error = CommandId::new("x".repeat(65)).unwrap_err();
        assert!(error.rule.contains("at most 64 bytes"), "{error}");
        assert!(CommandId::new("01J9ZQ7W3-abc_DEF").is_ok());
    }

    #[test]
    fn expected_versions() {
        assert!(ExpectedVersion::Any.is_met_by(7));
        assert!(ExpectedVersion::NoStream.is_met_by(0));
        assert!(!ExpectedVersion::NoStream.is_met_by(1));
        assert!(ExpectedVersion::Exact(0).is_met_by(0));
        assert!(ExpectedVersion::Exact(3).is_met_by(3));
        assert!(!ExpectedVersion::Exact(3).is_met_by(4));
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let hash = Hash32(*blake3::hash(b"x").as_bytes());
        assert_eq!(Hash32::from_hex(&hash.to_hex()).unwrap(), hash);
        assert!(Hash32::from_hex("zz").is_err());
    }

    #[test]
    fn event_ids_are_derived_deterministically() {
        let command = CommandId::new("c1").unwrap();
        assert_eq!(EventId::derive(&command, 0), EventId::derive(&command, 0));
        assert_ne!(EventId::derive(&command, 0), EventId::derive(&command, 1));
        let other = CommandId::new("c2").unwrap();
        assert_ne!(EventId::derive(&command, 0), EventId::derive(&other, 0));
        // The ids in every log written so far: blake3's derive_key, as the crate computes it.
        let longest = CommandId::new("x".repeat(CommandId::LENGTH_BYTES_MAX)).unwrap();
        for (command, index) in [(&command, 0), (&other, 7), (&longest, u32::MAX)] {
            let mut hasher = blake3::Hasher::new_derive_key("stemma event id v1");
            hasher.update(command.as_str().as_bytes());
            hasher.update(&index.to_le_bytes());
            assert_eq!(
                EventId::derive(command, index).0,
                hasher.finalize().as_bytes()[..16]
            );
        }
    }
}
