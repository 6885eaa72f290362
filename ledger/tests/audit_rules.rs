//! The semantic replay of `audit::verify` against each rule of DOMAIN.md: a real data
//! directory written through the decider, then events appended directly through the
//! store (bypassing the domain) that break one rule. Verify names exactly that rule, at
//! the forged event's position, stream and type, and goes on past it; histories the
//! domain wrote (the fixture, the 426-contributor episode, random command sequences)
//! give no finding at all.

mod common;

use std::path::Path;

use common::*;
use ledger::audit::{self, Check, Finding, VerifyOptions, VerifyReport};
use ledger::domain::commands::*;
use ledger::domain::decide::finalization_blockers;
use ledger::domain::events::*;
use ledger::domain::ids::{MemberId, PayoutId};
use ledger::domain::{Command, DomainEvent};
use ledger::money::{Currency, Money};
use ledger::store::Position;
use ledger::time::{Clock, Timestamp};
use proptest::prelude::*;
use stemma_testkit::forge::{decided, forge, forge_stored, log};
use stemma_testkit::sequence::{self, member_name, op, Ids, Op};
use stemma_testkit::Harness;

fn after_window() -> Timestamp {
    t0().saturating_add(15 * DAY)
}

/// The fixture written through the decider; with `late`, the late fixture too (d1
/// finalized and paid, the clock after its window).
async fn through_the_domain(late: bool) -> Harness {
    let harness = Harness::new().await;
    for command in fixture() {
        harness.ok(command).await;
    }
    if late {
        for (at, command) in late_fixture() {
            harness.clock.set(at);
            harness.ok(command).await;
        }
    }
    harness
}

fn verify(log: &Path) -> VerifyReport {
    audit::verify(
        log,
        VerifyOptions {
            semantic: true,
            checkpoint: None,
            workers: 0,
        },
        &mut |_| {},
    )
    .unwrap()
}

fn summary(findings: &[Finding]) -> Vec<(Position, Check)> {
    findings.iter().map(|f| (f.position, f.check)).collect()
}

/// Verify finds exactly `expected`, each in the stream and event type of the event at its
/// position, saying what was expected and what was found; the chain alone finds nothing.
fn assert_exactly(log: &Path, expected: &[(Position, Check, &str, &str)]) -> VerifyReport {
    let report = verify(log);
    let wanted: Vec<(Position, Check)> = expected.iter().map(|e| (e.0, e.1)).collect();
    assert_eq!(summary(&report.findings), wanted, "{:#?}", report.findings);
    for (finding, (_, check, stream, event_type)) in report.findings.iter().zip(expected) {
        assert_eq!(finding.stream_id.as_deref(), Some(*stream), "{finding}");
        assert_eq!(
            finding.event_type.as_deref(),
            Some(*event_type),
            "{finding}"
        );
        assert!(!finding.expected.is_empty() && !finding.found.is_empty());
        assert_eq!(finding.rule, check.rule());
    }
    let chain_only = audit::verify(log, VerifyOptions::default(), &mut |_| {}).unwrap();
    assert!(
        chain_only.is_clean(),
        "the forgeries are well chained: {:#?}",
        chain_only.findings
    );
    report
}

/// The `index`th finding says `text` in what it found.
fn assert_found(report: &VerifyReport, index: usize, text: &str) {
    let finding = &report.findings[index];
    assert!(finding.found.contains(text), "{finding}");
}

fn remix_event(events: Vec<DomainEvent>, sources: &[&str]) -> DomainEvent {
    match events.into_iter().next() {
        Some(DomainEvent::RemixUploaded(mut e)) => {
            e.sources = sources.iter().map(|s| record(s)).collect();
            e.into()
        }
        other => panic!("expected a remix, got {other:?}"),
    }
}

#[tokio::test]
async fn rule_1_family_tree() {
    let harness = through_the_domain(true).await;
    let no_sources = remix_event(
        decided(&harness, remix("x1", "p1", "alice", &["a"])).await,
        &[],
    );
    let withdrawn_source = remix_event(
        decided(&harness, remix("x2", "p1", "alice", &["a"])).await,
        &["w"],
    );
    let itself = remix_event(
        decided(&harness, remix("x3", "p1", "alice", &["a"])).await,
        &["a", "x3"],
    );
    let appended = forge(
        &harness,
        vec![
            // c is a remix of b, a remix of a: a citing c closes a cycle.
            SourceCited {
                record_id: record("a"),
                source_id: record("c"),
            }
            .into(),
            no_sources,
            withdrawn_source,
            itself,
            SourceCited {
                record_id: record("d"),
                source_id: record("d"),
            }
            .into(),
            SourceCited {
                record_id: record("d"),
                source_id: record("w"),
            }
            .into(),
        ],
    )
    .await;
    let p = appended.first_position;
    let report = assert_exactly(
        &log(&harness),
        &[
            (p, Check::FamilyTree, "record-a", "SourceCited"),
            (p + 1, Check::FamilyTree, "record-x1", "RemixUploaded"),
            (p + 2, Check::FamilyTree, "record-x2", "RemixUploaded"),
            (p + 3, Check::FamilyTree, "record-x3", "RemixUploaded"),
            (p + 4, Check::FamilyTree, "record-d", "SourceCited"),
            (p + 5, Check::FamilyTree, "record-d", "SourceCited"),
        ],
    );
    assert_found(&report, 0, "cycle");
    assert_found(&report, 1, "sources");
    assert_found(&report, 2, "withdrawn");
    assert_found(&report, 3, "itself");
    assert_found(&report, 5, "withdrawn");
}

#[tokio::test]
async fn rule_2_leads() {
    let harness = through_the_domain(true).await;
    let appended = forge(
        &harness,
        vec![
            // pr1 is p1's production: bob's fee must come first.
            LeadAssigned {
                project_id: project("p1"),
                lead: member("bob"),
            }
            .into(),
            LeadFeeAgreed {
                project_id: project("p1"),
                production_id: production("pr1"),
                lead: member("lead"),
                fee: usd("500"),
            }
            .into(),
            // The fee is an expense of the project's own production, not another's.
            LeadFeeAgreed {
                project_id: project("p1"),
                production_id: production("pr2"),
                lead: member("carol"),
                fee: usd("10"),
            }
            .into(),
        ],
    )
    .await;
    let p = appended.first_position;
    let report = assert_exactly(
        &log(&harness),
        &[
            (p, Check::Lead, "project-p1", "LeadAssigned"),
            (p + 1, Check::Lead, "project-p1", "LeadFeeAgreed"),
            (p + 2, Check::Lead, "project-p1", "LeadFeeAgreed"),
        ],
    );
    assert_found(&report, 0, "bob");
    assert!(
        report.findings[2].expected.contains("pr1"),
        "{}",
        report.findings[2]
    );
}

#[tokio::test]
async fn rule_3_inclusion() {
    let harness = through_the_domain(true).await;
    let appended = forge(
        &harness,
        vec![
            RecordIncluded {
                production_id: production("pr1"),
                record_id: record("w"),
            }
            .into(),
            RecordIncluded {
                production_id: production("pr1"),
                record_id: record("nowhere"),
            }
            .into(),
            RecordIncluded {
                production_id: production("pr1"),
                record_id: record("c"),
            }
            .into(),
        ],
    )
    .await;
    let p = appended.first_position;
    let report = assert_exactly(
        &log(&harness),
        &[
            (p, Check::Inclusion, "production-pr1", "RecordIncluded"),
            (p + 1, Check::Inclusion, "production-pr1", "RecordIncluded"),
            (p + 2, Check::Inclusion, "production-pr1", "RecordIncluded"),
        ],
    );
    assert_found(&report, 0, "withdrawn");
    assert_found(&report, 1, "does not exist");
    assert_found(&report, 2, "already included");
}

/// The late fixture plus 1,000 of revenue on pr1: a second distribution of 500 may be
/// proposed, and this is what the domain would write for it.
async fn second_proposal(harness: &Harness) -> AllocationProposed {
    harness.ok(revenue("pr1", usd("1000"))).await;
    let events = decided(
        harness,
        propose(
            "d2",
            "pr1",
            vec![line("carol", "1", &["c"]), line("bob", "1", &["b"])],
        ),
    )
    .await;
    match events.into_iter().next() {
        Some(DomainEvent::AllocationProposed(e)) => {
            assert_eq!(e.pool, usd("500"));
            e
        }
        other => panic!("expected a proposal, got {other:?}"),
    }
}

#[tokio::test]
async fn rule_4_pool() {
    let harness = through_the_domain(true).await;
    let mut proposal = second_proposal(&harness).await;
    proposal.pool = usd("600");
    let appended = forge(&harness, vec![proposal.into()]).await;
    let report = assert_exactly(
        &log(&harness),
        &[(
            appended.first_position,
            Check::Pool,
            "distribution-d2",
            "AllocationProposed",
        )],
    );
    assert_eq!(report.findings[0].expected, "pool 500.00 USD");
    assert_eq!(report.findings[0].found, "pool 600.00 USD");
}

#[tokio::test]
async fn rule_5_lines() {
    let harness = through_the_domain(true).await;
    let valid = second_proposal(&harness).await;
    let mut not_his = valid.clone();
    not_his.distribution_id = distribution("d2");
    not_his.lines[1].records = vec![record("c")];
    // The same proposal announces three lines, then continues with one of carol's again.
    let mut announced = not_his.clone();
    announced.line_count = 3;
    let appended = forge(
        &harness,
        vec![
            announced.into(),
            AllocationLinesContinued {
                distribution_id: distribution("d2"),
                lines: vec![line("carol", "2", &["c"])],
            }
            .into(),
        ],
    )
    .await;
    let p = appended.first_position;
    let report = assert_exactly(
        &log(&harness),
        &[
            (p, Check::Lines, "distribution-d2", "AllocationProposed"),
            (
                p + 1,
                Check::Lines,
                "distribution-d2",
                "AllocationLinesContinued",
            ),
        ],
    );
    assert_found(&report, 0, "not contributed by bob");
    assert_found(&report, 1, "carol");
}

#[tokio::test]
async fn rule_5_lines_without_rationale_or_member() {
    let harness = through_the_domain(true).await;
    let mut proposal = second_proposal(&harness).await;
    proposal.lines[0].rationale = "  ".into();
    let appended = forge(&harness, vec![proposal.clone().into()]).await;
    // An amendment giving a line to someone who is not a member, and announcing a second
    // line that never comes.
    let amendment = AllocationAmended {
        distribution_id: distribution("d2"),
        reason: "adding a stranger".into(),
        answers: vec![],
        removed: vec![],
        line_count: 2,
        lines: vec![Line {
            member: MemberId::new("stranger").unwrap(),
            ..line("carol", "1", &["c"])
        }],
    };
    let amended = forge(&harness, vec![amendment.into()]).await;
    let report = assert_exactly(
        &log(&harness),
        &[
            (
                appended.first_position,
                Check::Lines,
                "distribution-d2",
                "AllocationProposed",
            ),
            (
                amended.first_position,
                Check::Lines,
                "distribution-d2",
                "AllocationAmended",
            ),
            (
                amended.first_position,
                Check::Lines,
                "distribution-d2",
                "AllocationAmended",
            ),
        ],
    );
    assert_eq!(
        report.findings[2].expected,
        "2 lines, as announced by line_count"
    );
    assert_eq!(report.findings[2].found, "1 lines");
    assert_found(&report, 0, "rationale");
    assert_found(&report, 1, "stranger");
}

#[tokio::test]
async fn rule_5_a_weight_that_is_not_positive_does_not_decode() {
    let harness = through_the_domain(true).await;
    let mut proposal = second_proposal(&harness).await;
    proposal.lines[1].weight = weight("7");
    let mut stored = DomainEvent::from(proposal).to_proposed();
    // Weights are stored as decimal strings: "7" becomes "0" (and "-" cannot fit).
    let at = stored
        .payload
        .windows(2)
        .position(|w| w == [1, b'7'])
        .expect("the weight's one-byte string");
    stored.payload[at + 1] = b'0';
    let appended = forge_stored(&harness, vec![stored]).await;
    let report = assert_exactly(
        &log(&harness),
        &[(
            appended.first_position,
            Check::Decode,
            "distribution-d2",
            "AllocationProposed",
        )],
    );
    assert_found(&report, 0, "weight");
}

/// The fixture up to a finalizable d1: k1 answered, dave given a line, the window passed.
async fn finalizable() -> Harness {
    let harness = through_the_domain(false).await;
    for (at, command) in late_fixture().into_iter().take(2) {
        harness.clock.set(at);
        harness.ok(command).await;
    }
    harness.clock.set(after_window());
    harness
}

#[tokio::test]
async fn rule_5_line_amounts() {
    let harness = finalizable().await;
    let events = decided(&harness, finalize("d1")).await;
    let Some(DomainEvent::AllocationFinalized(mut finalized)) = events.into_iter().next() else {
        panic!("expected a finalization");
    };
    // A cent moved from one line to another: the sum still is the pool.
    finalized.amounts[0] = finalized.amounts[0].checked_add(usd("0.01")).unwrap();
    finalized.amounts[1] = finalized.amounts[1].checked_sub(usd("0.01")).unwrap();
    let appended = forge(&harness, vec![finalized.into()]).await;
    let report = assert_exactly(
        &log(&harness),
        &[(
            appended.first_position,
            Check::LineAmounts,
            "distribution-d1",
            "AllocationFinalized",
        )],
    );
    assert_found(&report, 0, "2 lines differ");
}

#[tokio::test]
async fn rule_6_window() {
    let harness = through_the_domain(true).await;
    let mut short_window = second_proposal(&harness).await;
    short_window.window_closes_at = short_window.published_at.saturating_add(DAY);
    let mut published_earlier = short_window.clone();
    published_earlier.distribution_id = distribution("d3");
    published_earlier.published_at = t0();
    published_earlier.window_closes_at = t0().saturating_add(14 * DAY);
    let forged = forge(
        &harness,
        vec![
            short_window.into(),
            // d1's window closed a day ago: bob may no longer comment.
            CommentPosted {
                comment_id: comment("k-late"),
                author: member("bob"),
                staff: false,
                target: CommentTarget::Line {
                    distribution_id: distribution("d1"),
                    member: member("bob"),
                },
                reply_to: None,
                body: "too late".into(),
            }
            .into(),
            AllocationAmended {
                distribution_id: distribution("d1"),
                reason: "after the window".into(),
                answers: vec![],
                removed: vec![],
                line_count: 1,
                lines: vec![line("alice", "5", &["a"])],
            }
            .into(),
            // d2's window is open, but an amendment says why.
            AllocationAmended {
                distribution_id: distribution("d2"),
                reason: " ".into(),
                answers: vec![],
                removed: vec![],
                line_count: 1,
                lines: vec![line("alice", "5", &["a"])],
            }
            .into(),
        ],
    )
    .await;
    let p = forged.first_position;
    // A staff reply after the window is allowed (the last comments must be answerable).
    harness.clock.set(after_window().saturating_add(DAY));
    let staff = forge(
        &harness,
        vec![CommentPosted {
            comment_id: comment("k-staff-late"),
            author: member("staff"),
            staff: true,
            target: CommentTarget::Line {
                distribution_id: distribution("d1"),
                member: member("bob"),
            },
            reply_to: Some(comment("k-late")),
            body: "noted".into(),
        }
        .into()],
    )
    .await;
    assert_eq!(staff.first_position, p + 4);
    let report = assert_exactly(
        &log(&harness),
        &[
            (p, Check::Window, "distribution-d2", "AllocationProposed"),
            (p + 1, Check::Window, "distribution-d1", "CommentPosted"),
            (p + 2, Check::Window, "distribution-d1", "AllocationAmended"),
            (p + 3, Check::Window, "distribution-d2", "AllocationAmended"),
        ],
    );
    assert_found(&report, 0, "closes at");
    assert_found(&report, 2, "finalized");
    assert_found(&report, 3, "reason");

    // A proposal published (by its own account) two weeks before it was recorded, so
    // its window would already be over.
    let published = forge(&harness, vec![published_earlier.into()]).await;
    let report = verify(&log(&harness));
    let last = report.findings.last().unwrap();
    assert_eq!(
        (last.position, last.check),
        (published.first_position, Check::Window),
        "{:#?}",
        report.findings
    );
    assert!(last.found.contains("published at"), "{last}");
}

#[tokio::test]
async fn rule_7_finalization() {
    // d1 as the fixture leaves it: its window open, bob's comment unanswered, dave
    // without a line.
    let harness = through_the_domain(false).await;
    let d1 = distribution("d1");
    let now = harness.clock.now();
    let (pool, amounts) = harness
        .handle
        .inspect(move |state| {
            let distribution = state.distribution(&d1).unwrap();
            let (blockers, amounts) = finalization_blockers(state, distribution, now);
            assert_eq!(blockers.len(), 3);
            (distribution.pool, amounts)
        })
        .await
        .unwrap();
    let appended = forge(
        &harness,
        vec![AllocationFinalized {
            distribution_id: distribution("d1"),
            pool,
            amounts,
        }
        .into()],
    )
    .await;
    let p = appended.first_position;
    let report = assert_exactly(
        &log(&harness),
        &[
            (
                p,
                Check::Finalization,
                "distribution-d1",
                "AllocationFinalized",
            ),
            (
                p,
                Check::Finalization,
                "distribution-d1",
                "AllocationFinalized",
            ),
            (
                p,
                Check::Finalization,
                "distribution-d1",
                "AllocationFinalized",
            ),
        ],
    );
    assert_found(&report, 0, "window is open");
    assert_found(&report, 1, "k1");
    assert_found(&report, 2, "dave");
}

#[tokio::test]
async fn rule_8_payouts() {
    let harness = through_the_domain(true).await;
    let carol = PayoutId::for_line(&distribution("d1"), &member("carol"));
    let dave = PayoutId::for_line(&distribution("d1"), &member("dave"));
    let lead = PayoutId::for_lead_fee(&project("p1"), &member("lead"));
    let appended = forge(
        &harness,
        vec![
            PayoutSettled {
                payout_id: carol.clone(),
                attempt: 1,
                reference: "tx-again".into(),
            }
            .into(),
            // Dave's payout is pending: nothing to retry.
            PayoutRetried {
                payout_id: dave.clone(),
                attempt: 2,
            }
            .into(),
            PayoutIssued {
                payout_id: lead.clone(),
                member: member("lead"),
                amount: usd("1000"),
                payout_for: PayoutFor::LeadFee {
                    project_id: project("p1"),
                },
            }
            .into(),
        ],
    )
    .await;
    let p = appended.first_position;
    let (carol_stream, dave_stream) = (carol.stream_id(), dave.stream_id());
    assert_exactly(
        &log(&harness),
        &[
            (
                p,
                Check::PayoutTwice,
                carol_stream.as_str(),
                "PayoutSettled",
            ),
            (
                p + 1,
                Check::PayoutState,
                dave_stream.as_str(),
                "PayoutRetried",
            ),
            (p + 2, Check::PayoutTwice, "project-p1", "PayoutIssued"),
        ],
    );
}

#[tokio::test]
async fn rule_9_money() {
    let harness = through_the_domain(true).await;
    let appended = forge(
        &harness,
        vec![
            RevenueRecorded {
                production_id: production("pr1"),
                amount: Money::parse("10", Currency::EUR).unwrap(),
                description: "a sale in euros".into(),
            }
            .into(),
            ExpenseRecorded {
                production_id: production("pr1"),
                amount: usd("-5"),
                description: "a negative expense".into(),
            }
            .into(),
            RevenueRecorded {
                production_id: production("pr1"),
                amount: usd("0"),
                description: "nothing".into(),
            }
            .into(),
            LeadFeeAgreed {
                project_id: project("p1"),
                production_id: production("pr1"),
                lead: member("bob"),
                fee: Money::parse("10", Currency::EUR).unwrap(),
            }
            .into(),
        ],
    )
    .await;
    let p = appended.first_position;
    let report = assert_exactly(
        &log(&harness),
        &[
            (p, Check::Money, "production-pr1", "RevenueRecorded"),
            (p + 1, Check::Money, "production-pr1", "ExpenseRecorded"),
            (p + 2, Check::Money, "production-pr1", "RevenueRecorded"),
            (p + 3, Check::Money, "project-p1", "LeadFeeAgreed"),
        ],
    );
    assert_found(&report, 0, "EUR");
    assert_found(&report, 1, "positive");
}

#[tokio::test]
async fn rule_10_credits() {
    let harness = through_the_domain(true).await;
    let Some(DomainEvent::RecordUploaded(mut uploaded)) =
        decided(&harness, upload("g", "p1", "alice"))
            .await
            .into_iter()
            .next()
    else {
        panic!("expected an upload");
    };
    uploaded.contributor = MemberId::new("ghost").unwrap();
    let appended = forge(&harness, vec![uploaded.into()]).await;
    let report = assert_exactly(
        &log(&harness),
        &[(
            appended.first_position,
            Check::Credits,
            "record-g",
            "RecordUploaded",
        )],
    );
    assert_found(&report, 0, "ghost");
}

#[tokio::test]
async fn forgeries_of_different_rules_are_all_reported_in_one_pass() {
    let harness = through_the_domain(true).await;
    let first = forge(
        &harness,
        vec![
            SourceCited {
                record_id: record("a"),
                source_id: record("c"),
            }
            .into(),
            RecordIncluded {
                production_id: production("pr1"),
                record_id: record("w"),
            }
            .into(),
            RevenueRecorded {
                production_id: production("pr1"),
                amount: usd("-1"),
                description: "refund as revenue".into(),
            }
            .into(),
            PayoutSettled {
                payout_id: PayoutId::for_line(&distribution("d1"), &member("carol")),
                attempt: 1,
                reference: "tx-again".into(),
            }
            .into(),
        ],
    )
    .await;
    let p = first.first_position;
    let report = verify(&log(&harness));
    assert_eq!(
        summary(&report.findings),
        vec![
            (p, Check::FamilyTree),
            (p + 1, Check::Inclusion),
            (p + 2, Check::Money),
            (p + 3, Check::PayoutTwice)
        ],
        "{:#?}",
        report.findings
    );
}

#[tokio::test]
async fn unusual_histories_the_domain_allows_verify_clean() {
    let harness = through_the_domain(false).await;
    // Bob's line is removed; his comment on it is answered afterwards (a reply takes its
    // parent's target, which no longer exists), after the window closed (staff may).
    harness
        .ok(amend(
            "d1",
            &["k1"],
            &["bob"],
            vec![line("dave", "1", &["d"])],
        ))
        .await;
    harness.clock.set(after_window());
    harness
        .ok(post("k2", "staff", true, CommentOn::Reply(comment("k1"))))
        .await;
    harness.ok(finalize("d1")).await;
    harness
        .ok(Command::IssuePayouts(IssuePayouts::Distribution(
            distribution("d1"),
        )))
        .await;
    // A citation against the tree's order (d was uploaded after a), then a record that
    // cites nothing included, withdrawn after a remix was built on it.
    harness.ok(cite("a", "d")).await;
    harness.ok(upload("e", "p1", "carol")).await;
    harness.ok(remix("f", "p1", "dave", &["e", "c"])).await;
    harness
        .ok(Command::WithdrawRecord(WithdrawRecord {
            record_id: record("e"),
            reason: "rights unclear".into(),
        }))
        .await;
    harness.ok(include("pr1", "f")).await;
    let report = verify(&log(&harness));
    assert!(report.is_clean(), "{:#?}", report.findings);
}

#[tokio::test]
async fn the_426_contributor_episode_verifies_clean() {
    let harness = Harness::new().await;
    episode::tv_episode(&harness).await;
    let report = verify(&log(&harness));
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(report.events, harness.head().await);
}

// ---- random histories written through the domain ----

/// Every case ends with a distribution taken through its whole life.
fn tail() -> Vec<Op> {
    vec![
        Op::Upload(0),
        Op::Upload(1),
        Op::Upload(3),
        Op::Remix(2, vec![0, 1]),
        Op::IncludeRecent(3),
        Op::IncludeRecent(2),
        Op::IncludeRecent(1),
        Op::Revenue(900_000),
        Op::AnswerAll,
        Op::Advance(2),
        Op::Finalize,
        Op::Issue,
        Op::Propose(vec![(0, 1), (1, 2), (2, 3), (3, 1)]),
        Op::Comment(1, Some(1)),
        Op::Amend(vec![3], vec![(1, 4)]),
        Op::AnswerAll,
        Op::Advance(2),
        Op::Finalize,
        Op::Issue,
        Op::Fail(1),
        Op::Retry(1),
        Op::Settle(0),
        Op::Settle(1),
        Op::PayLeadFee,
    ]
}

/// Plays `ops` through the decider (refused commands write nothing) and verifies the log.
async fn random_history_verifies_clean(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let harness = Harness::new().await;
    sequence::start(&harness).await;
    harness
        .ok(agree_lead_fee("p1", &member_name(3), usd("10")))
        .await;
    harness
        .ok(Command::AssignLead(AssignLead {
            project_id: project("p1"),
            lead: member(&member_name(3)),
        }))
        .await;
    let mut ids = Ids::default();
    let mut accepted = 0usize;
    for op in &ops {
        if let Some(Ok(_)) = sequence::play(&harness, &mut ids, op).await {
            accepted += 1;
        }
    }
    prop_assert!(accepted > 0);
    let report = verify(&log(&harness));
    prop_assert!(report.is_clean(), "{:#?}", report.findings);
    prop_assert_eq!(report.events, harness.head().await);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever valid commands the domain accepted, in whatever order, the replay finds
    /// nothing: no rule check reports a history the domain itself wrote.
    #[test]
    fn histories_written_through_the_domain_verify_clean(
        ops in prop::collection::vec(op(), 0..40).prop_map(|mut ops| { ops.extend(tail()); ops })
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(random_history_verifies_clean(ops))?;
    }
}
