//! The domain's identifiers. Callers choose them (ULIDs are a good choice): 1–64 bytes of
//! `[A-Za-z0-9_-]`, checked when constructed and again when decoded.

use std::fmt;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::store::{InvalidInput, StreamId};

/// Bytes in any domain id.
pub const ID_LENGTH_BYTES_MAX: usize = 64;

/// The bytes an id may not hold, as a table (1 = refused): checking every id of every
/// decoded event is a measurable part of a replay, and OR-ing a lookup per byte, without
/// an early exit, is several times cheaper than a chain of range tests.
const REFUSED_ID_BYTE: [u8; 256] = {
    let mut table = [1u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            table[byte] = 0;
        }
        byte += 1;
    }
    table
};

pub(crate) fn check_id(field: &str, value: &str) -> Result<(), InvalidInput> {
    check_id_bytes(field, value.as_bytes())
}

/// `check_id` on bytes: an id that passes is ASCII, so also valid UTF-8.
fn check_id_bytes(field: &str, value: &[u8]) -> Result<(), InvalidInput> {
    if value.is_empty() {
        return Err(InvalidInput::new(field, "must not be empty"));
    }
    if value.len() > ID_LENGTH_BYTES_MAX {
        return Err(InvalidInput::new(
            field,
            format!(
                "must be at most {ID_LENGTH_BYTES_MAX} bytes, got {}",
                value.len()
            ),
        ));
    }
    let mut refused = 0u8;
    for byte in value {
        refused |= REFUSED_ID_BYTE[*byte as usize];
    }
    if refused == 0 {
        return Ok(());
    }
    let bad = value
        .iter()
        .find(|b| REFUSED_ID_BYTE[**b as usize] != 0)
        .expect("a byte failed the table");
    Err(InvalidInput::new(
        field,
        if bad.is_ascii() {
            format!(
                "may contain only A-Z, a-z, 0-9, '_' and '-'; found {:?}",
                char::from(*bad)
            )
        } else {
            "may contain only A-Z, a-z, 0-9, '_' and '-'; found a non-ASCII byte".to_string()
        },
    ))
}

/// Decodes an id. In bincode (the stored form) an id is read as bytes and checked against
/// the id rule first, which admits ASCII only, so the UTF-8 conversion after it cannot
/// fail (it stays, a few nanoseconds for at most 64 bytes, rather than an `unsafe`); in
/// JSON (human-readable) it is read as a string.
struct IdVisitor(&'static str);

impl serde::de::Visitor<'_> for IdVisitor {
    type Value = CompactString;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a {} (1–{ID_LENGTH_BYTES_MAX} bytes of [A-Za-z0-9_-])",
            self.0
        )
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<CompactString, E> {
        check_id(self.0, value).map_err(E::custom)?;
        Ok(CompactString::from(value))
    }

    fn visit_bytes<E: serde::de::Error>(self, value: &[u8]) -> Result<CompactString, E> {
        check_id_bytes(self.0, value).map_err(E::custom)?;
        CompactString::from_utf8(value).map_err(E::custom)
    }
}

/// An id borrowed from the payload it is decoded from, checked as an owned one is: for
/// readers that only look ids up (`DomainEvent::decode_borrowed`). Decoded by bincode's
/// own `BorrowDecode` (the stored form: a length, then the bytes, as serde writes a
/// string), not through serde.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BorrowedId<'a>(pub(crate) &'a str);

impl<'a, 'de: 'a, Context> bincode::BorrowDecode<'de, Context> for BorrowedId<'a> {
    fn borrow_decode<D: bincode::de::BorrowDecoder<'de, Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let bytes: &'a [u8] = bincode::BorrowDecode::borrow_decode(decoder)?;
        // The caller words the error with the owned decoder: only whether it failed counts.
        check_id_bytes("id", bytes)
            .map_err(|error| bincode::error::DecodeError::OtherString(error.to_string()))?;
        std::str::from_utf8(bytes)
            .map(BorrowedId)
            .map_err(|inner| bincode::error::DecodeError::Utf8 { inner })
    }
}

pub(crate) fn deserialize_id<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
    field: &'static str,
) -> Result<CompactString, D::Error> {
    if deserializer.is_human_readable() {
        deserializer.deserialize_string(IdVisitor(field))
    } else {
        deserializer.deserialize_bytes(IdVisitor(field))
    }
}

macro_rules! domain_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $category:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(CompactString);

        impl $name {
            /// The stream category: events about this entity go to `<category>-<id>`.
            pub const CATEGORY: &'static str = $category;

            pub fn new(value: impl AsRef<str>) -> Result<$name, InvalidInput> {
                let value = value.as_ref();
                check_id($field, value)?;
                Ok($name(CompactString::from(value)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn stream_id(&self) -> StreamId {
                StreamId::new(format!("{}-{}", $category, self.0))
                    .expect("a category and a valid id make a valid stream id")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserialize_id(deserializer, $field).map($name)
            }
        }
    };
}

domain_id!(
    /// A member of the community.
    MemberId,
    "member_id",
    "member"
);
domain_id!(ProjectId, "project_id", "project");
domain_id!(
    /// A record: an original piece or a remix.
    RecordId,
    "record_id",
    "record"
);
domain_id!(ProductionId, "production_id", "production");
domain_id!(
    /// A distribution of a production's pool; created by its first proposal.
    DistributionId,
    "distribution_id",
    "distribution"
);
domain_id!(
    /// Comments live in the stream of what they are about; the id is only for replies.
    CommentId,
    "comment_id",
    "comment"
);
domain_id!(
    /// Derived by the ledger (see `PayoutId::for_line`), never chosen by a caller.
    PayoutId,
    "payout_id",
    "payout"
);

impl PayoutId {
    /// The one payout of a distribution's line (one line per member). Derived, so issuing
    /// the payouts again names the same ids and is refused instead of minting new ones.
    pub fn for_line(distribution: &DistributionId, member: &MemberId) -> PayoutId {
        PayoutId::derive(&["line", distribution.as_str(), member.as_str()])
    }

    /// The one payout of a lead's fee on a project.
    pub fn for_lead_fee(project: &ProjectId, lead: &MemberId) -> PayoutId {
        PayoutId::derive(&["lead-fee", project.as_str(), lead.as_str()])
    }

    fn derive(parts: &[&str]) -> PayoutId {
        let mut hasher = blake3::Hasher::new_derive_key("stemma payout id v1");
        for part in parts {
            // Length-prefixed so ("a", "bc") and ("ab", "c") differ.
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        let digest = hasher.finalize();
        let hex: String = digest.as_bytes()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        PayoutId(format!("po-{hex}").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_the_field_and_the_rule() {
        assert_eq!(MemberId::new("").unwrap_err().rule, "must not be empty");
        let error = RecordId::new("a b").unwrap_err();
        assert_eq!(error.field, "record_id");
        assert!(error.rule.contains("may contain only"));
        assert!(ProjectId::new("x".repeat(65)).is_err());
        assert!(ProjectId::new("x".repeat(64)).is_ok());
        assert_eq!(
            RecordId::new("01J9").unwrap().stream_id().as_str(),
            "record-01J9"
        );
    }

    #[test]
    fn payout_ids_are_derived_and_distinct() {
        let d = DistributionId::new("d1").unwrap();
        let m = MemberId::new("m1").unwrap();
        assert_eq!(PayoutId::for_line(&d, &m), PayoutId::for_line(&d, &m));
        assert_ne!(
            PayoutId::for_line(&d, &m),
            PayoutId::for_line(&d, &MemberId::new("m2").unwrap())
        );
        let p = ProjectId::new("d1").unwrap();
        assert_ne!(PayoutId::for_line(&d, &m), PayoutId::for_lead_fee(&p, &m));
        assert!(PayoutId::new(PayoutId::for_line(&d, &m).as_str()).is_ok());
    }

    #[test]
    fn the_byte_table_is_the_id_rule() {
        for byte in 0..=255u8 {
            let expected = byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-';
            assert_eq!(
                check_id_bytes("id", &[byte]).is_ok(),
                expected,
                "byte {byte}"
            );
        }
        let error = check_id_bytes("member_id", "ab\u{e9}".as_bytes()).unwrap_err();
        assert!(error.rule.contains("non-ASCII"), "{}", error.rule);
    }

    /// Stored (bincode) ids are read as bytes and checked once; JSON reads them as strings.
    /// Both refuse what `new` refuses, naming the field.
    #[test]
    fn decoding_checks_ids_in_bincode_and_json() {
        let config = bincode::config::standard();
        let good = bincode::serde::encode_to_vec("r-01J9_x", config).unwrap();
        let (id, _): (RecordId, usize) = bincode::serde::decode_from_slice(&good, config).unwrap();
        assert_eq!(id.as_str(), "r-01J9_x");
        for bad in ["", "a b", "caf\u{e9}"] {
            let bytes = bincode::serde::encode_to_vec(bad, config).unwrap();
            let error = bincode::serde::decode_from_slice::<RecordId, _>(&bytes, config)
                .unwrap_err()
                .to_string();
            assert!(error.contains("record_id"), "{bad:?}: {error}");
        }
        let long = bincode::serde::encode_to_vec("x".repeat(65), config).unwrap();
        assert!(bincode::serde::decode_from_slice::<RecordId, _>(&long, config).is_err());
        let json: MemberId = serde_json::from_str("\"m-1\"").unwrap();
        assert_eq!(json.as_str(), "m-1");
        let error = serde_json::from_str::<MemberId>("\"m 1\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("member_id"), "{error}");
    }
}
