//! Upcasters: old schema versions of stored events, turned into the next version on read,
//! step by step until the current one. Each works on payload bytes, so no old Rust type
//! survives outside the upcaster that needs it.

use serde::{Deserialize, Serialize};

use super::events::{
    decode_payload, encode_payload, EventDecodeError, Licence, MediaRef, RecordKind,
};
use super::ids::{MemberId, ProjectId, RecordId};

/// Turns one schema version of one event type into the next.
pub struct Upcaster {
    pub event_type: &'static str,
    pub from_version: u16,
    pub upcast: fn(&[u8]) -> Result<Vec<u8>, EventDecodeError>,
}

/// Every upcaster this code knows.
pub const UPCASTERS: &[Upcaster] = &[Upcaster {
    event_type: "RecordUploaded",
    from_version: 1,
    upcast: record_uploaded_v1_to_v2,
}];

/// Applies upcasters from `version` until `current`.
pub fn upcast_to_current(
    event_type: &str,
    version: u16,
    current: u16,
    payload: &[u8],
) -> Result<Vec<u8>, EventDecodeError> {
    let mut payload = payload.to_vec();
    let mut version = version;
    while version < current {
        let upcaster = UPCASTERS
            .iter()
            .find(|u| u.event_type == event_type && u.from_version == version)
            .ok_or_else(|| EventDecodeError::NoUpcaster {
                event_type: event_type.to_string(),
                version,
            })?;
        payload = (upcaster.upcast)(&payload)?;
        version += 1;
    }
    Ok(payload)
}

/// The licence terms records were granted under before the terms version was recorded
/// (schema version 1 of `RecordUploaded`).
pub const LICENCE_TERMS_VERSION_BEFORE_V2: &str = "original";

/// `RecordUploaded` v1: no licence terms version. Public so tests can write a v1 log.
#[derive(Serialize, Deserialize)]
pub struct RecordUploadedV1 {
    pub record_id: RecordId,
    pub project_id: ProjectId,
    pub contributor: MemberId,
    pub kind: RecordKind,
    pub title: String,
    pub media: MediaRef,
}

/// v2 added the licence: the fields of v1, then `licence`.
#[derive(Serialize)]
struct RecordUploadedV2 {
    record_id: RecordId,
    project_id: ProjectId,
    contributor: MemberId,
    kind: RecordKind,
    title: String,
    media: MediaRef,
    licence: Licence,
}

fn record_uploaded_v1_to_v2(payload: &[u8]) -> Result<Vec<u8>, EventDecodeError> {
    let v1: RecordUploadedV1 = decode_payload("RecordUploaded", payload)?;
    Ok(encode_payload(&RecordUploadedV2 {
        record_id: v1.record_id,
        project_id: v1.project_id,
        contributor: v1.contributor,
        kind: v1.kind,
        title: v1.title,
        media: v1.media,
        licence: Licence {
            terms_version: LICENCE_TERMS_VERSION_BEFORE_V2.to_string(),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::{DomainEvent, RecordUploaded};

    #[test]
    fn a_version_1_record_upload_reads_as_version_2() {
        // Written field by field as the version-1 code did: bincode's standard config, the
        // six fields of v1 in order and nothing after them.
        let v1 = RecordUploadedV1 {
            record_id: RecordId::new("r1").unwrap(),
            project_id: ProjectId::new("p1").unwrap(),
            contributor: MemberId::new("m1").unwrap(),
            kind: RecordKind::Audio,
            title: "A verse".to_string(),
            media: MediaRef {
                blake3: [7; 32],
                size_bytes: 1234,
            },
        };
        let bytes = bincode::serde::encode_to_vec(&v1, bincode::config::standard()).unwrap();
        let event = DomainEvent::decode("RecordUploaded", 1, &bytes).unwrap();
        assert_eq!(
            event,
            DomainEvent::RecordUploaded(RecordUploaded {
                record_id: RecordId::new("r1").unwrap(),
                project_id: ProjectId::new("p1").unwrap(),
                contributor: MemberId::new("m1").unwrap(),
                kind: RecordKind::Audio,
                title: "A verse".to_string(),
                media: MediaRef {
                    blake3: [7; 32],
                    size_bytes: 1234,
                },
                licence: Licence {
                    terms_version: "original".to_string()
                },
            })
        );
        // A version-2 payload is not mistaken for version 1, nor the reverse.
        assert!(matches!(
            DomainEvent::decode("RecordUploaded", 2, &bytes),
            Err(EventDecodeError::Payload { .. })
        ));
    }

    #[test]
    fn unknown_and_future_versions_are_refused() {
        assert_eq!(
            DomainEvent::decode("RecordUploaded", 3, &[]),
            Err(EventDecodeError::FutureVersion {
                event_type: "RecordUploaded".into(),
                version: 3,
                current: 2
            })
        );
        assert!(matches!(
            DomainEvent::decode("Nope", 1, &[]),
            Err(EventDecodeError::UnknownType(_))
        ));
        assert_eq!(
            upcast_to_current("ProjectStarted", 0, 1, &[]),
            Err(EventDecodeError::NoUpcaster {
                event_type: "ProjectStarted".into(),
                version: 0
            })
        );
    }
}
