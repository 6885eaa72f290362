//! Events appended past the domain, as an intruder with write access to the store would:
//! the audit tests' forgeries, which the semantic replay must find.

use std::path::{Path, PathBuf};

use ledger::domain::events::*;
use ledger::domain::ids::*;
use ledger::domain::{decide, Command, DomainEvent};
use ledger::money::{ArtistShare, Currency, Money, Weight};
use ledger::store::{
    Actor, AppendRequest, AppendResult, CommandId, EmbeddedOptions, EmbeddedStore, EventStore,
    EventType, ExpectedVersion, ProposedEvent, ServiceName, StreamExpectation,
};
use ledger::time::{Clock, Timestamp};

use crate::Harness;

/// The segment size of the logs tests write and serve: every audit pass reads whole
/// segments, zeroes included, so the default 128 MiB costs a debug build seconds a pass.
/// Still larger than the largest single event.
pub const TEST_SEGMENT_SIZE_BYTES: u64 = 2 * 1024 * 1024;

/// The append request of a forgery: no decider, no expectations, the actor "intruder".
pub fn intruder_append(command_id: &str, events: Vec<ProposedEvent>) -> AppendRequest {
    AppendRequest {
        command_id: CommandId::new(command_id).unwrap(),
        correlation_id: None,
        causation_id: None,
        actor: Actor {
            service: ServiceName::new("intruder").unwrap(),
            on_behalf_of: None,
        },
        command_fingerprint: None,
        expectations: vec![],
        events,
    }
}

/// A new log at `data` holding `events`, one intruder append each (command ids
/// `direct-0`, `direct-1`, …), closed so that another process may open it.
pub async fn write_log_past_the_domain(data: &Path, events: &[DomainEvent]) {
    let options = EmbeddedOptions {
        segment_size_bytes: TEST_SEGMENT_SIZE_BYTES,
        ..EmbeddedOptions::default()
    };
    let (store, _) = EmbeddedStore::open(data, options).await.unwrap();
    for (i, event) in events.iter().enumerate() {
        store
            .append(intruder_append(
                &format!("direct-{i}"),
                vec![event.to_proposed()],
            ))
            .await
            .unwrap();
    }
    store.close().await;
}

/// A new log at `data` holding `events`, `per_append` to an intruder append (command ids
/// `direct-0`, … per append): for logs of thousands of events, one fsync per append.
pub async fn write_log_past_the_domain_in_appends(
    data: &Path,
    events: &[DomainEvent],
    per_append: usize,
) {
    let options = EmbeddedOptions {
        segment_size_bytes: TEST_SEGMENT_SIZE_BYTES,
        ..EmbeddedOptions::default()
    };
    let (store, _) = EmbeddedStore::open(data, options).await.unwrap();
    for (i, chunk) in events.chunks(per_append.max(1)).enumerate() {
        store
            .append(intruder_append(&format!("direct-{i}"), proposed(chunk)))
            .await
            .unwrap();
    }
    store.close().await;
}

/// An append of `RecordUploaded` for `record_id` as schema version 1 wrote it (no licence
/// terms version), by the gateway, to a stream that must not exist yet: a log written by
/// older code, which the upcaster must read.
pub fn version_1_upload(record_id: &str, project_id: &str, contributor: &str) -> AppendRequest {
    let record_id = RecordId::new(record_id).unwrap();
    let payload = bincode::serde::encode_to_vec(
        ledger::domain::upcast::RecordUploadedV1 {
            record_id: record_id.clone(),
            project_id: ProjectId::new(project_id).unwrap(),
            contributor: MemberId::new(contributor).unwrap(),
            kind: RecordKind::Text,
            title: "An old verse".into(),
            media: MediaRef {
                blake3: [1; 32],
                size_bytes: 10,
            },
        },
        bincode::config::standard(),
    )
    .unwrap();
    AppendRequest {
        command_fingerprint: None,
        command_id: CommandId::new(format!("v1-upload-{record_id}")).unwrap(),
        correlation_id: None,
        causation_id: None,
        actor: Actor {
            service: ServiceName::new("gateway").unwrap(),
            on_behalf_of: None,
        },
        expectations: vec![StreamExpectation {
            stream_id: record_id.stream_id(),
            expected: ExpectedVersion::NoStream,
        }],
        events: vec![ProposedEvent {
            stream_id: record_id.stream_id(),
            event_type: EventType::new("RecordUploaded").unwrap(),
            schema_version: 1,
            payload,
        }],
    }
}

/// `events` in the form the store takes them.
pub fn proposed(events: &[DomainEvent]) -> Vec<ProposedEvent> {
    events.iter().map(DomainEvent::to_proposed).collect()
}

/// The harness's event log directory, what `audit::verify` reads.
pub fn log(harness: &Harness) -> PathBuf {
    harness.directory.path().join("log")
}

/// What the domain would write for `command` now, not written: the base of a forgery.
pub async fn decided(harness: &Harness, command: Command) -> Vec<DomainEvent> {
    let now = harness.clock.now();
    let description = format!("{command:?}");
    harness
        .handle
        .inspect(move |state| decide(state, &command, now))
        .await
        .unwrap()
        .unwrap_or_else(|rejection| panic!("{description}: {rejection}"))
}

/// Appends `events` directly through the store: no rule is checked.
pub async fn forge(harness: &Harness, events: Vec<DomainEvent>) -> AppendResult {
    forge_stored(harness, proposed(&events)).await
}

/// Appends already-encoded `events` directly through the store.
pub async fn forge_stored(harness: &Harness, events: Vec<ProposedEvent>) -> AppendResult {
    let command_id = format!("forged-{}", harness.head().await);
    harness
        .store
        .append(intruder_append(&command_id, events))
        .await
        .unwrap()
}

/// A consistent history of one distribution (member ann, record r, production pr, $100 of
/// revenue, a pool of 50.00 on one line) whose payout pays `paid`, to be appended past the
/// domain; the allocation published at `published_at`. Returns the events and the payout.
pub fn one_line_payout_history(
    paid: &str,
    published_at: Timestamp,
) -> (Vec<DomainEvent>, PayoutId) {
    let usd = |amount: &str| Money::parse(amount, Currency::USD).unwrap();
    let project = ProjectId::new("p").unwrap();
    let production = ProductionId::new("pr").unwrap();
    let distribution = DistributionId::new("d").unwrap();
    let ann = MemberId::new("ann").unwrap();
    let record = RecordId::new("r").unwrap();
    let payout_id = PayoutId::for_line(&distribution, &ann);
    let history: Vec<DomainEvent> = vec![
        MemberRegistered {
            member_id: ann.clone(),
            handle: "@ann".into(),
            personal_data: SealedPersonalData {
                nonce: [0; 12],
                ciphertext: vec![1],
            },
        }
        .into(),
        ProjectStarted {
            project_id: project.clone(),
            title: "P".into(),
        }
        .into(),
        ProductionOpened {
            production_id: production.clone(),
            project_id: project.clone(),
            title: "Pr".into(),
            currency: Currency::USD,
            artist_share: ArtistShare::half(),
            feedback_window_micros: 1,
        }
        .into(),
        RecordUploaded {
            record_id: record.clone(),
            project_id: project.clone(),
            contributor: ann.clone(),
            kind: RecordKind::Text,
            title: "A verse".into(),
            media: MediaRef {
                blake3: [1; 32],
                size_bytes: 1,
            },
            licence: Licence {
                terms_version: "1".into(),
            },
        }
        .into(),
        RecordIncluded {
            production_id: production.clone(),
            record_id: record.clone(),
        }
        .into(),
        RevenueRecorded {
            production_id: production.clone(),
            amount: usd("100"),
            description: "sale".into(),
        }
        .into(),
        AllocationProposed {
            distribution_id: distribution.clone(),
            production_id: production.clone(),
            revenue_total: usd("100"),
            expense_total: usd("0"),
            earlier_pools: usd("0"),
            pool: usd("50"),
            published_at,
            window_closes_at: Timestamp(published_at.0 + 1),
            line_count: 1,
            lines: vec![Line {
                member: ann.clone(),
                weight: Weight::parse("1").unwrap(),
                rationale: "the verse".into(),
                records: vec![record.clone()],
            }],
        }
        .into(),
        AllocationFinalized {
            distribution_id: distribution.clone(),
            pool: usd("50"),
            amounts: vec![usd("50")],
        }
        .into(),
        PayoutIssued {
            payout_id: payout_id.clone(),
            member: ann.clone(),
            amount: usd(paid),
            payout_for: PayoutFor::Line {
                distribution_id: distribution.clone(),
            },
        }
        .into(),
    ];
    (history, payout_id)
}
