//! The domain's identifiers. Callers choose them (ULIDs are a good choice): 1–64 bytes of
//! `[A-Za-z0-9_-]`, checked when constructed and again when decoded.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::store::{InvalidInput, StreamId};

/// Bytes in any domain id.
pub const ID_LENGTH_BYTES_MAX: usize = 64;

pub(crate) fn check_id(field: &str, value: &str) -> Result<(), InvalidInput> {
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
    if let Some(bad) = value
        .bytes()
        .find(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-'))
    {
        return Err(InvalidInput::new(
            field,
            format!(
                "may contain only A-Z, a-z, 0-9, '_' and '-'; found {:?}",
                char::from(bad)
            ),
        ));
    }
    Ok(())
}

macro_rules! domain_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $category:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The stream category: events about this entity go to `<category>-<id>`.
            pub const CATEGORY: &'static str = $category;

            pub fn new(value: impl Into<String>) -> Result<$name, InvalidInput> {
                let value = value.into();
                check_id($field, &value)?;
                Ok($name(value))
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
                let value = String::deserialize(deserializer)?;
                $name::new(value).map_err(serde::de::Error::custom)
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
        PayoutId(format!("po-{hex}"))
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
}
