//! Export and import: export → import → export gives the same bytes for random histories
//! (several segments, domain and non-domain payloads, optional envelope fields); the
//! imported directory opens as a store with the same events; a file whose chain is broken
//! is refused with the position named.

mod common;

use std::path::Path;

use common::*;
use ledger::audit::export::{export_jsonl, import_jsonl};
use ledger::audit::{self, AuditError, VerifyOptions};
use ledger::domain::events::{CommentPosted, CommentTarget, DomainEvent, MemberRegistered};
use ledger::store::{
    Actor, AppendRequest, CommandId, CorrelationId, EmbeddedOptions, EmbeddedStore, EventStore,
    EventType, OnBehalfOf, ProposedEvent, ServiceName, StreamId,
};
use proptest::prelude::*;

/// Small segments, so a history of a few dozen appends spans several.
const SEGMENT_SIZE_BYTES: u64 = 8 * 1024;

#[derive(Clone, Debug)]
enum Kind {
    Member(u8),
    Comment(u8, String),
    /// Not a domain event: exported with a null `payload`.
    Opaque(u8, Vec<u8>),
}

#[derive(Clone, Debug)]
struct Append {
    events: Vec<Kind>,
    fingerprint: Option<u128>,
    correlation: bool,
    on_behalf_of: bool,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (0u8..6).prop_map(Kind::Member),
        (0u8..4, "[a-z €ü\"\\\\]{0,40}").prop_map(|(s, b)| Kind::Comment(s, b)),
        (0u8..3, proptest::collection::vec(any::<u8>(), 0..200))
            .prop_map(|(s, b)| Kind::Opaque(s, b)),
    ]
}

fn append() -> impl Strategy<Value = Append> {
    (
        proptest::collection::vec(kind(), 1..4),
        proptest::option::of(any::<u128>()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(events, fingerprint, correlation, on_behalf_of)| Append {
            events,
            fingerprint,
            correlation,
            on_behalf_of,
        })
}

fn proposed(kind: &Kind, n: usize) -> ProposedEvent {
    match kind {
        Kind::Member(m) => DomainEvent::from(MemberRegistered {
            member_id: member(&format!("m{m}-{n}")),
            handle: format!("@m{m}"),
            personal_data: sealed(),
        })
        .to_proposed(),
        Kind::Comment(d, body) => DomainEvent::from(CommentPosted {
            comment_id: comment(&format!("k{n}")),
            author: member("alice"),
            staff: n.is_multiple_of(2),
            target: CommentTarget::Distribution(distribution(&format!("d{d}"))),
            reply_to: None,
            body: body.clone(),
        })
        .to_proposed(),
        Kind::Opaque(s, bytes) => ProposedEvent {
            stream_id: StreamId::new(format!("opaque-{s}")).unwrap(),
            event_type: EventType::new("Opaque.Thing").unwrap(),
            schema_version: 3,
            payload: bytes.clone(),
        },
    }
}

async fn write_history(directory: &Path, appends: &[Append]) {
    let options = EmbeddedOptions {
        segment_size_bytes: SEGMENT_SIZE_BYTES,
        ..EmbeddedOptions::default()
    };
    let (store, _) = EmbeddedStore::open(directory, options).await.unwrap();
    for (i, append) in appends.iter().enumerate() {
        let request = AppendRequest {
            command_id: CommandId::new(format!("c{i}")).unwrap(),
            correlation_id: append
                .correlation
                .then(|| CorrelationId::new(format!("corr{i}")).unwrap()),
            causation_id: None,
            actor: Actor {
                service: ServiceName::new("gateway").unwrap(),
                on_behalf_of: append
                    .on_behalf_of
                    .then(|| OnBehalfOf::new("alice").unwrap()),
            },
            command_fingerprint: append.fingerprint,
            expectations: vec![],
            events: append
                .events
                .iter()
                .enumerate()
                .map(|(j, kind)| proposed(kind, i * 10 + j))
                .collect(),
        };
        store.append(request).await.unwrap();
    }
    store.close().await;
}

fn export(directory: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    export_jsonl(directory, &mut out).unwrap();
    out
}

fn import(bytes: &[u8], directory: &Path) -> Result<audit::export::Summary, AuditError> {
    import_jsonl(&mut &bytes[..], directory, SEGMENT_SIZE_BYTES)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn export_import_export_is_byte_identical(appends in proptest::collection::vec(append(), 1..40)) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let directory = tempfile::tempdir().unwrap();
        let original = directory.path().join("original");
        let copy = directory.path().join("copy");
        runtime.block_on(write_history(&original, &appends));
        let first = export(&original);
        let summary = import(&first, &copy).unwrap();
        let second = export(&copy);
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(summary.events, first.iter().filter(|b| **b == b'\n').count() as u64);
        // The copy is a store like the original: it opens, with the same events.
        runtime.block_on(async {
            let (a, _) = EmbeddedStore::open(&original, EmbeddedOptions::default()).await.unwrap();
            let (b, report) = EmbeddedStore::open(&copy, EmbeddedOptions::default()).await.unwrap();
            assert_eq!(report.head, a.head().await.unwrap());
            assert_eq!(a.read_all(1, 100_000).await.unwrap(), b.read_all(1, 100_000).await.unwrap());
            a.close().await;
            b.close().await;
        });
        let report = audit::verify(&copy, VerifyOptions::default(), &mut |_| {}).unwrap();
        prop_assert!(report.is_clean());
    }
}

fn sample_export() -> (tempfile::TempDir, Vec<String>) {
    let directory = tempfile::tempdir().unwrap();
    let appends: Vec<Append> = (0..6)
        .map(|i| Append {
            events: vec![Kind::Member(i), Kind::Comment(1, format!("body {i}"))],
            fingerprint: Some(i as u128),
            correlation: false,
            on_behalf_of: true,
        })
        .collect();
    let original = directory.path().join("original");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(write_history(&original, &appends));
    let text = String::from_utf8(export(&original)).unwrap();
    let lines = text.lines().map(str::to_string).collect();
    (directory, lines)
}

fn refused(lines: &[String], directory: &Path) -> AuditError {
    let text = lines.join("\n") + "\n";
    import(text.as_bytes(), directory).unwrap_err()
}

#[test]
fn an_export_with_a_broken_chain_is_refused_naming_the_position() {
    let (directory, lines) = sample_export();
    assert_eq!(lines.len(), 12);

    let mut deleted = lines.clone();
    deleted.remove(4);
    match refused(&deleted, &directory.path().join("a")) {
        AuditError::BrokenChain { position, reason } => {
            assert_eq!(position, 6, "{reason}");
            assert!(reason.contains("expected position 5"), "{reason}");
        }
        other => panic!("{other}"),
    }

    // A changed payload, consistent in both its forms: only the hash can tell.
    let mut changed = lines.clone();
    changed[7] = changed[7]
        .replace("body 3", "body 9")
        .replace(&audit::to_hex(b"body 3"), &audit::to_hex(b"body 9"));
    assert_ne!(changed[7], lines[7]);
    match refused(&changed, &directory.path().join("b")) {
        AuditError::BrokenChain { position, reason } => {
            assert_eq!(position, 8, "{reason}");
            assert!(
                reason.contains("not the hash of the event's content"),
                "{reason}"
            );
        }
        other => panic!("{other}"),
    }

    // A decoded payload that no longer matches the raw bytes.
    let mut inconsistent = lines.clone();
    inconsistent[7] = inconsistent[7].replace("body 3", "body 9");
    match refused(&inconsistent, &directory.path().join("c")) {
        AuditError::BadExportLine { line, reason } => {
            assert_eq!(line, 8);
            assert!(reason.contains("payload"), "{reason}");
        }
        other => panic!("{other}"),
    }

    // Import writes only into a new directory.
    let full = lines.join("\n") + "\n";
    let target = directory.path().join("d");
    import(full.as_bytes(), &target).unwrap();
    assert!(matches!(
        import(full.as_bytes(), &target),
        Err(AuditError::NotEmpty { .. })
    ));
}
