//! The id catalog from the models' side (the family tree, statements, credits and
//! allocations): a query by an id no event created answers
//! nothing, and so does one by an id the catalog has numbered (it resolves ahead of the
//! models) but the model has not applied yet.

use ledger::domain::events::*;
use ledger::domain::ids::{DistributionId, MemberId, ProductionId, ProjectId, RecordId};
use ledger::money::{ArtistShare, Currency, Money, Weight};
use ledger::store::Hash32;
use ledger::time::Timestamp;
use projections::allocation::Allocations;
use projections::credits::Credits;
use projections::family_tree::FamilyTree;
use projections::statement::Statements;
use projections::{AppliedEvent, Catalog, Projection, WalkLimits};

fn record(id: &str) -> RecordId {
    RecordId::new(id).unwrap()
}

fn member(id: &str) -> MemberId {
    MemberId::new(id).unwrap()
}

fn upload(id: &str, contributor: &str) -> DomainEvent {
    RecordUploaded {
        record_id: record(id),
        project_id: ProjectId::new("p").unwrap(),
        contributor: member(contributor),
        kind: RecordKind::Audio,
        title: "t".into(),
        media: MediaRef {
            blake3: [0; 32],
            size_bytes: 1,
        },
        licence: Licence {
            terms_version: "1".into(),
        },
    }
    .into()
}

fn register(id: &str) -> DomainEvent {
    MemberRegistered {
        member_id: member(id),
        handle: format!("@{id}"),
        personal_data: SealedPersonalData {
            nonce: [0; 12],
            ciphertext: vec![1; 16],
        },
    }
    .into()
}

fn open(id: &str) -> DomainEvent {
    ProductionOpened {
        production_id: ProductionId::new(id).unwrap(),
        project_id: ProjectId::new("p").unwrap(),
        title: "episode".into(),
        currency: Currency::USD,
        artist_share: ArtistShare::half(),
        feedback_window_micros: 1,
    }
    .into()
}

/// A proposal of one line: enough to create the distribution.
fn propose(distribution: &str, production: &str) -> DomainEvent {
    let zero = Money::zero(Currency::USD);
    AllocationProposed {
        distribution_id: DistributionId::new(distribution).unwrap(),
        production_id: ProductionId::new(production).unwrap(),
        revenue_total: Money::parse("20.00", Currency::USD).unwrap(),
        expense_total: zero,
        earlier_pools: zero,
        pool: Money::parse("10.00", Currency::USD).unwrap(),
        published_at: Timestamp(0),
        window_closes_at: Timestamp(1),
        line_count: 1,
        lines: vec![Line {
            member: member("m2"),
            weight: Weight::parse("1").unwrap(),
            rationale: "the loop".into(),
            records: vec![record("r2")],
        }],
    }
    .into()
}

/// The log, resolved by `catalog` all at once, as a runner does ahead of its models.
fn resolved(catalog: &Catalog, events: Vec<DomainEvent>) -> Vec<AppliedEvent> {
    let mut applied: Vec<AppliedEvent> = events
        .into_iter()
        .enumerate()
        .map(|(index, event)| {
            AppliedEvent::new(index as u64 + 1, Timestamp(0), Hash32::GENESIS, event)
        })
        .collect();
    catalog.resolve(&mut applied);
    applied
}

#[test]
fn ids_the_catalog_knows_but_a_model_has_not_applied_answer_nothing() {
    let catalog = Catalog::new();
    let log = resolved(
        &catalog,
        vec![
            register("m1"),
            upload("r1", "m1"),
            open("pr1"),
            register("m2"),
            upload("r2", "m2"),
            open("pr2"),
            propose("d2", "pr2"),
        ],
    );
    let mut tree = FamilyTree::new(catalog.clone());
    let mut allocations = Allocations::new(catalog.clone());
    let mut statements = Statements::new(catalog.clone());
    let mut credits = Credits::new(catalog.clone());
    // The models are at position 3; the catalog has numbered the whole log.
    for event in &log[..3] {
        tree.apply(event);
        statements.apply(event);
        credits.apply(event);
        allocations.apply(event);
    }
    let limits = WalkLimits::new(10, 10);
    assert!(catalog.read().record_number("r2").is_some());
    assert_eq!(tree.node("r2"), None);
    assert_eq!(tree.sources(&record("r2")), None);
    assert_eq!(tree.ancestors(&record("r2"), limits), None);
    assert_eq!(tree.is_withdrawn(&record("r2")), None);
    assert_eq!(statements.member(&member("m2")), None);
    let pr2 = ProductionId::new("pr2").unwrap();
    assert_eq!(credits.production(&pr2), None);
    let d2 = DistributionId::new("d2").unwrap();
    assert!(catalog.read().distribution_number("d2").is_some());
    assert!(allocations.distribution(&d2, Timestamp(0)).is_none());
    // Known to both: answered.
    assert_eq!(tree.node("r1"), Some(0));
    assert_eq!(
        statements.member(&member("m1")).map(|s| s.records.len()),
        Some(1)
    );
    assert!(credits
        .production(&ProductionId::new("pr1").unwrap())
        .is_some());
    // Never created by any event: unknown to the catalog and to every model.
    assert_eq!(catalog.read().record_number("nope"), None);
    assert_eq!(tree.sources(&record("nope")), None);
    assert_eq!(statements.member(&member("nobody")), None);

    // The rest of the log: now they answer, with the catalog's numbers.
    for event in &log[3..] {
        tree.apply(event);
        statements.apply(event);
        credits.apply(event);
        allocations.apply(event);
    }
    assert_eq!(tree.node("r2"), Some(1));
    assert_eq!(
        statements.member(&member("m2")).map(|s| s.records.len()),
        Some(1)
    );
    assert!(credits.production(&pr2).is_some());
    assert!(allocations.distribution(&d2, Timestamp(0)).is_some());
}
