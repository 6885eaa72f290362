//! The decider in front of the embedded store: refusals write nothing, retries return the
//! original result, the state survives a restart, old events are upcast on read, a second
//! writer is caught by expected versions, and erasure destroys the key.

mod common;

use std::sync::Arc;

use std::sync::atomic::Ordering;

use common::*;
use ledger::decider::{CommandError, CommandOutcome};
use ledger::domain::commands::*;
use ledger::domain::events::{DomainEvent, ProjectFinished};
use ledger::domain::ids::MemberId;
use ledger::domain::privacy::{self, FileKeyVault, PersonalData, PrivacyError};
use ledger::domain::{Command, Rejection};
use ledger::store::{Actor, AppendRequest, CommandId, EventStore, ServiceName, StoreError};
use stemma_testkit::forge::version_1_upload;
use stemma_testkit::{Harness, SyncFailures};

fn rejection(result: Result<CommandOutcome, CommandError>) -> Rejection {
    match result {
        Err(CommandError::Rejected(rejection)) => rejection,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

async fn with_fixture() -> Harness {
    let harness = Harness::new().await;
    for command in fixture() {
        harness.ok(command).await;
    }
    harness
}

async fn assert_refusals_write_nothing(harness: &Harness, refusals: Vec<Refusal>) {
    for refusal in refusals {
        harness.clock.set(refusal.at);
        let head = harness.head().await;
        let result = harness.execute(refusal.command).await;
        assert_eq!(rejection(result), refusal.expected, "{}", refusal.name);
        assert_eq!(
            harness.head().await,
            head,
            "{} wrote to the log",
            refusal.name
        );
    }
    harness.clock.set(t0());
}

#[tokio::test]
async fn refusals_write_nothing_before_and_after_a_restart() {
    let harness = with_fixture().await;
    let head = harness.head().await;
    assert_eq!(
        head,
        fixture().len() as u64,
        "one event per fixture command"
    );
    assert_refusals_write_nothing(&harness, refusals()).await;
    // The state rebuilt from the log refuses the same commands for the same reasons.
    let harness = harness.restart().await;
    assert_eq!(harness.head().await, head);
    assert_refusals_write_nothing(&harness, refusals()).await;
}

#[tokio::test]
async fn refusals_of_the_later_states_write_nothing() {
    let harness = with_fixture().await;
    for (at, command) in late_fixture() {
        harness.clock.set(at);
        harness.ok(command).await;
    }
    assert_refusals_write_nothing(&harness, late_refusals()).await;
}

#[tokio::test]
async fn a_retry_returns_the_original_result_and_a_reused_id_is_refused() {
    let harness = Harness::new().await;
    let first = harness.execute_as("c-1", register("alice")).await.unwrap();
    assert!(!first.replayed);
    let retry = harness.execute_as("c-1", register("alice")).await.unwrap();
    assert!(retry.replayed);
    assert_eq!(retry.append, first.append);
    let reused = harness.execute_as("c-1", register("bob")).await;
    assert!(
        matches!(reused, Err(CommandError::CommandIdReused { ref command_id }) if command_id.as_str() == "c-1"),
        "{reused:?}"
    );
    assert_eq!(harness.head().await, 1);

    // Concurrent retries of one command wait for the same append.
    let command = start_project("p1");
    let (a, b) = tokio::join!(
        harness.execute_as("c-2", command.clone()),
        harness.execute_as("c-2", command.clone())
    );
    assert_eq!(a.unwrap().append, b.unwrap().append);
    assert_eq!(harness.head().await, 2);

    // After a restart the log still knows the command id, its result, and (through the
    // fingerprint in the envelope) what the command was.
    let harness = harness.restart().await;
    let after = harness.execute_as("c-2", command).await.unwrap();
    assert!(after.replayed);
    assert_eq!(after.append.first_position, 2);
    let reused = harness.execute_as("c-2", start_project("p2")).await;
    assert!(
        matches!(reused, Err(CommandError::CommandIdReused { .. })),
        "{reused:?}"
    );
    let reused = harness.execute_as("c-1", register("carol")).await;
    assert!(
        matches!(reused, Err(CommandError::CommandIdReused { .. })),
        "{reused:?}"
    );
    assert_eq!(harness.head().await, 2);
}

fn finish_project(id: &str) -> Command {
    Command::FinishProject(FinishProject {
        project_id: ledger::domain::ids::ProjectId::new(id).unwrap(),
    })
}

#[tokio::test]
async fn a_stale_expected_version_refuses_the_command_and_writes_nothing() {
    let harness = Harness::new().await;
    let with_expected = |command_id: &str, command, expected| {
        let mut envelope = Harness::envelope(command_id, command);
        envelope.expected_version = Some(expected);
        envelope
    };
    // A new stream is at version 0.
    harness
        .handle
        .execute(with_expected("c-1", start_project("p1"), 0))
        .await
        .unwrap();
    let stale = harness
        .handle
        .execute(with_expected("c-2", finish_project("p1"), 0))
        .await;
    match stale {
        Err(CommandError::WrongExpectedVersion {
            stream_id,
            expected: 0,
            actual: 1,
        }) => assert_eq!(stream_id.as_str(), "project-p1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(harness.head().await, 1);
    harness
        .handle
        .execute(with_expected("c-3", finish_project("p1"), 1))
        .await
        .unwrap();
    assert_eq!(harness.head().await, 2);
}

#[tokio::test]
async fn concurrent_commands_are_all_decided_and_durable() {
    let harness = Arc::new(Harness::new().await);
    harness.ok(register("m")).await;
    harness.ok(start_project("p")).await;
    let uploads = (0..200).map(|i| {
        let harness = harness.clone();
        async move { harness.ok(upload(&format!("r{i}"), "p", "m")).await }
    });
    let outcomes = futures::future::join_all(uploads).await;
    let mut positions: Vec<u64> = outcomes.iter().map(|o| o.append.first_position).collect();
    positions.sort_unstable();
    assert_eq!(positions, (3..203).collect::<Vec<u64>>());
    // Same-id uploads racing: exactly one wins.
    let racing = (0..10).map(|i| {
        let harness = harness.clone();
        async move {
            harness
                .execute_as(&format!("race-{i}"), upload("same", "p", "m"))
                .await
        }
    });
    let results = futures::future::join_all(racing).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert_eq!(harness.head().await, 203);
}

#[tokio::test]
async fn a_second_writer_is_caught_by_expected_versions_and_the_state_is_rebuilt() {
    let harness = with_fixture().await;
    // Another writer finishes project p1 behind the decider's back.
    let foreign = DomainEvent::from(ProjectFinished {
        project_id: project("p1"),
    })
    .to_proposed();
    harness
        .store
        .append(AppendRequest {
            command_fingerprint: None,
            command_id: CommandId::new("elsewhere").unwrap(),
            correlation_id: None,
            causation_id: None,
            actor: Actor {
                service: ServiceName::new("other").unwrap(),
                on_behalf_of: None,
            },
            expectations: Vec::new(),
            events: vec![foreign],
        })
        .await
        .unwrap();
    let head = harness.head().await;
    // The decider still thinks p1 is open; the append expects p1's old version.
    let result = harness.execute(upload("late", "p1", "alice")).await;
    assert!(
        matches!(
            result,
            Err(CommandError::Store(StoreError::WrongExpectedVersion { ref stream_id, .. }))
                if stream_id.as_str() == "project-p1"
        ),
        "{result:?}"
    );
    assert_eq!(harness.head().await, head);
    // Rebuilt from the log, it now knows.
    assert_eq!(
        rejection(harness.execute(upload("late", "p1", "alice")).await),
        Rejection::ProjectFinished {
            project_id: project("p1")
        }
    );
    assert!(harness
        .handle
        .inspect(|state| state.record(&record("late")).is_none())
        .await
        .unwrap());
}

#[tokio::test]
async fn a_failed_commit_fails_the_commands_built_on_it_and_the_state_is_rebuilt() {
    let faults = Arc::new(SyncFailures::default());
    let harness = Harness::with_faults(faults.clone()).await;
    harness.ok(start_project("p1")).await;
    let head = harness.head().await;
    faults.0.store(true, Ordering::SeqCst);
    // The upload is decided on a state that already holds zed's registration.
    let (registered, uploaded) = tokio::join!(
        harness.execute_as("register-zed", register("zed")),
        harness.execute_as("upload-zed", upload("z1", "p1", "zed")),
    );
    assert!(
        matches!(registered, Err(CommandError::Store(_))),
        "{registered:?}"
    );
    assert!(uploaded.is_err(), "{uploaded:?}");
    assert_eq!(harness.head().await, head, "nothing was acknowledged");
    // The decider rebuilt its state from the durable log: zed is not there.
    assert!(harness
        .handle
        .inspect(|state| state.member(&member("zed")).is_none())
        .await
        .unwrap());
    // The store stays failed until it is reopened; the decider says so and writes nothing.
    faults.0.store(false, Ordering::SeqCst);
    assert!(matches!(
        harness.execute(register("yan")).await,
        Err(CommandError::Store(_))
    ));
    // Reopened, the callers retry with the same command ids and both land exactly once
    // (whether or not the failed commit's bytes survived the failed sync).
    let harness = harness.restart().await;
    harness
        .execute_as("register-zed", register("zed"))
        .await
        .unwrap();
    harness
        .execute_as("upload-zed", upload("z1", "p1", "zed"))
        .await
        .unwrap();
    assert_eq!(
        rejection(harness.execute(register("zed")).await),
        Rejection::AlreadyExists {
            field: "member_id",
            entity: ledger::domain::rejection::Entity::Member,
            id: "zed".into()
        }
    );
    assert!(harness
        .handle
        .inspect(|state| state.record(&record("z1")).is_some())
        .await
        .unwrap());
}

#[tokio::test]
async fn version_1_events_in_the_log_are_upcast_on_start() {
    let harness = Harness::new().await;
    harness.ok(register("alice")).await;
    harness.ok(start_project("p1")).await;
    // Written as the version-1 code wrote it: no licence terms version.
    harness
        .store
        .append(version_1_upload("old", "p1", "alice"))
        .await
        .unwrap();
    let harness = harness.restart().await;
    assert_eq!(
        rejection(harness.execute(upload("old", "p1", "alice")).await),
        Rejection::AlreadyExists {
            field: "record_id",
            entity: ledger::domain::rejection::Entity::Record,
            id: "old".into()
        }
    );
    harness.ok(remix("new", "p1", "alice", &["old"])).await;
    let events = harness
        .store
        .read_stream(&record("old").stream_id(), 1, 10)
        .await
        .unwrap();
    let DomainEvent::RecordUploaded(upcast) = DomainEvent::decode(
        events[0].event_type.as_str(),
        events[0].schema_version,
        &events[0].payload,
    )
    .unwrap() else {
        panic!("not a RecordUploaded")
    };
    assert_eq!(upcast.licence.terms_version, "original");
}

#[tokio::test]
async fn erasure_destroys_the_key_and_keeps_the_history() {
    let harness = with_fixture().await;
    let personal = PersonalData {
        legal_name: "Erin Example".into(),
        email: "erin@example.org".into(),
        payout_address: "IBAN XX00 1234".into(),
    };
    let erin = MemberId::new("erin").unwrap();
    let sealed = harness
        .handle
        .seal_personal_data(&erin, &personal)
        .await
        .unwrap();
    harness
        .ok(Command::RegisterMember(RegisterMember {
            member_id: erin.clone(),
            handle: "@erin".into(),
            personal_data: sealed,
        }))
        .await;
    let stored = harness
        .store
        .read_stream(&erin.stream_id(), 1, 10)
        .await
        .unwrap();
    assert!(
        !stored[0]
            .payload
            .windows(personal.email.len())
            .any(|w| w == personal.email.as_bytes()),
        "the e-mail address is not in the log in plain text"
    );
    let DomainEvent::MemberRegistered(registered) = DomainEvent::decode(
        stored[0].event_type.as_str(),
        stored[0].schema_version,
        &stored[0].payload,
    )
    .unwrap() else {
        panic!()
    };
    let vault = FileKeyVault::open(harness.directory.path().join("keys")).unwrap();
    assert_eq!(
        privacy::open(&vault, &erin, &registered.personal_data).unwrap(),
        personal
    );
    let head = harness.head().await;
    harness
        .ok(Command::ErasePersonalData(ErasePersonalData {
            member_id: erin.clone(),
        }))
        .await;
    assert!(matches!(
        privacy::open(&vault, &erin, &registered.personal_data),
        Err(PrivacyError::Erased(_))
    ));
    // History is intact: the registration is still there, with its hash.
    let after = harness
        .store
        .read_stream(&erin.stream_id(), 1, 10)
        .await
        .unwrap();
    assert_eq!(after[0], stored[0]);
    assert_eq!(after.len(), 2);
    assert_eq!(harness.head().await, head + 1);
    // A member whose data is erased stays a member: her pseudonymous id can still be paid.
    harness.ok(upload("erin-1", "p1", "erin")).await;
}
