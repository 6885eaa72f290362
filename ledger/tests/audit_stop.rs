//! `audit::verify_until_stopped`: a pass asked to stop (its gRPC caller went away) ends
//! with `AuditError::Stopped` before the end of the log; one never asked runs to the end
//! exactly like `verify`. The same for the explain and statement passes.

mod common;

use std::cell::Cell;

use common::*;
use ledger::audit::{self, explain, AuditError, VerifyOptions};
use ledger::store::EventStore;
use stemma_testkit::Harness;

#[tokio::test]
async fn a_pass_stops_when_asked_and_runs_to_the_end_when_not() {
    let harness = Harness::new().await;
    for command in fixture() {
        harness.ok(command).await;
    }
    let log = harness.directory.path().join("log");
    let head = harness.store.head().await.unwrap();
    let options = VerifyOptions {
        semantic: true,
        ..VerifyOptions::default()
    };

    let error = audit::verify_until_stopped(&log, options, &mut |_| {}, &|| true).unwrap_err();
    assert!(
        matches!(error, AuditError::Stopped { position: 0 }),
        "{error}"
    );

    // Asked before every segment and commit: stopping at the third ask leaves most of
    // the log unread.
    let asked = Cell::new(0u32);
    let stop = || {
        asked.set(asked.get() + 1);
        asked.get() >= 3
    };
    let error = audit::verify_until_stopped(&log, options, &mut |_| {}, &stop).unwrap_err();
    match error {
        AuditError::Stopped { position } => assert!(position < head.position, "{position}"),
        other => panic!("{other}"),
    }
    assert_eq!(asked.get(), 3);

    let mut last_progress = None;
    let report =
        audit::verify_until_stopped(&log, options, &mut |p| last_progress = Some(*p), &|| false)
            .unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(report.head_position, head.position);
    let last_progress = last_progress.unwrap();
    assert_eq!(
        (last_progress.position, last_progress.events),
        (head.position, head.position)
    );
}

/// Explain and statement passes (two and one reads of the log) stop the same way, so a
/// server whose caller went away frees the pass's thread and its slot.
#[tokio::test]
async fn explain_and_statement_passes_stop_when_asked() {
    let harness = Harness::new().await;
    for command in fixture() {
        harness.ok(command).await;
    }
    let log = harness.directory.path().join("log");
    let head = harness.store.head().await.unwrap();
    let carol = member("carol");
    let payout = ledger::domain::ids::PayoutId::for_line(&distribution("d1"), &carol);

    let error = explain::explain_payout_until_stopped(&log, &payout, &|| true).unwrap_err();
    assert!(
        matches!(error, AuditError::Stopped { position: 0 }),
        "{error}"
    );
    let error = explain::statement_until_stopped(&log, &carol, &|| true).unwrap_err();
    assert!(
        matches!(error, AuditError::Stopped { position: 0 }),
        "{error}"
    );

    // Stopped part-way: the position reached is short of the head.
    let asked = Cell::new(0u32);
    let stop = || {
        asked.set(asked.get() + 1);
        asked.get() >= 3
    };
    match explain::statement_until_stopped(&log, &carol, &stop).unwrap_err() {
        AuditError::Stopped { position } => {
            assert!(0 < position && position < head.position, "{position}")
        }
        other => panic!("{other}"),
    }

    // Never asked to stop: exactly the plain passes.
    assert_eq!(
        explain::explain_payout_until_stopped(&log, &payout, &|| false).unwrap(),
        explain::explain_payout(&log, &payout).unwrap()
    );
    assert_eq!(
        explain::statement_until_stopped(&log, &carol, &|| false).unwrap(),
        explain::statement(&log, &carol).unwrap()
    );
}
