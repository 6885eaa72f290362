//! The seeds' TV episode, end to end through the decider and the embedded store: 426
//! contributing artists, $50,000 of revenue, a lead fee and other expenses, a proposal,
//! comments and staff replies, an amendment answering a comment, a refused early
//! finalization, finalization after the window, payouts (one failing and retried), and
//! every total matching to the cent — then an auditor's replay of the log.

mod common;

use std::collections::HashMap;

use common::*;
use ledger::decider::CommandError;
use ledger::domain::commands::*;
use ledger::domain::events::{DomainEvent, Line, PayoutFor};
use ledger::domain::ids::{MemberId, PayoutId};
use ledger::domain::rejection::{Blocker, Rejection};
use ledger::domain::state::PayoutStatus;
use ledger::domain::{evolve, Command, State};
use ledger::money::{self, Currency, Money};
use ledger::store::EventStore;
use rust_decimal::Decimal;
use stemma_testkit::episode::{
    all_ok, answer_and_amend, cast, contributor, fail_and_retry, failing_payout, first_comments,
    money, proposal, records, CONTRIBUTORS, WEIGHTS,
};
use stemma_testkit::Harness;

#[tokio::test]
async fn a_tv_episode_with_426_contributors_is_paid_to_the_cent() {
    let harness = Harness::new().await;

    // Members, the project and its production.
    cast(&harness).await;

    // The lead's fee is agreed before the lead is assigned (rule 2).
    let assign = Command::AssignLead(AssignLead {
        project_id: project("ep1"),
        lead: member("lead-jo"),
    });
    assert_eq!(
        rejection(harness.execute(assign.clone()).await),
        Rejection::LeadFeeNotAgreed {
            project_id: project("ep1"),
            lead: member("lead-jo")
        }
    );
    harness
        .ok(Command::AgreeLeadFee(AgreeLeadFee {
            project_id: project("ep1"),
            lead: member("lead-jo"),
            fee: usd("2000"),
        }))
        .await;
    harness.ok(assign).await;

    // Records: the influencers' originals, then the contributors' pieces; some remix an
    // influencer's piece or the piece before theirs.
    records(&harness).await;

    // Money: $50,000 in, $4,000 of expenses besides the $2,000 lead fee.
    money(&harness).await;

    // The proposal: a line per contributor so far, and one for an influencer (paid for
    // influence: inf-rec-0 is an ancestor of an included record).
    harness.ok(propose("ep1-d1", "ep1-tv", proposal())).await;
    let pool = harness
        .handle
        .inspect(|s| s.distribution(&distribution("ep1-d1")).unwrap().pool)
        .await
        .unwrap();
    // (50,000 − 3,000 − 1,000 − 2,000) × 0.5.
    assert_eq!(pool, usd("22000"));

    // The last piece makes the cut after the proposal.
    harness
        .ok(include("ep1-tv", &format!("rec-{}", CONTRIBUTORS - 1)))
        .await;

    // Feedback: a comment on a line, a comment on the whole distribution; staff answers
    // the second.
    first_comments(&harness).await;

    // Finalizing now is refused with every reason at once.
    let last = member(&contributor(CONTRIBUTORS - 1));
    assert_eq!(
        rejection(harness.execute(finalize("ep1-d1")).await),
        Rejection::FinalizationBlocked {
            distribution_id: distribution("ep1-d1"),
            blockers: vec![
                Blocker::WindowOpen {
                    closes_at: t0().saturating_add(DAY * 14)
                },
                Blocker::UnansweredComments {
                    comment_ids: vec![comment("k-c007")]
                },
                Blocker::ContributorsWithoutLine {
                    members: vec![last.clone()]
                },
            ],
        }
    );

    // Staff answers, the proposal is amended to answer the comment and add the last piece;
    // c007 thanks them (a member comment again), and staff closes the thread.
    answer_and_amend(&harness).await;

    // After the window, finalization goes through.
    harness.clock.set(
        t0().saturating_add(DAY * 14)
            .saturating_add(std::time::Duration::from_secs(1)),
    );
    assert!(matches!(
        rejection(
            harness
                .execute(post(
                    "k-late",
                    &contributor(3),
                    false,
                    on_line("ep1-d1", &contributor(3))
                ))
                .await
        ),
        Rejection::WindowClosed { .. }
    ));
    harness.ok(finalize("ep1-d1")).await;

    // The final lines and amounts, checked against the rule from first principles.
    let (final_lines, amounts) = harness
        .handle
        .inspect(|s| {
            let d = s.distribution(&distribution("ep1-d1")).unwrap();
            (d.lines.clone(), d.amounts.clone().unwrap())
        })
        .await
        .unwrap();
    assert_eq!(final_lines.len(), CONTRIBUTORS + 1);
    assert_eq!(money::sum(Currency::USD, &amounts).unwrap(), usd("22000"));
    let weight_total: Decimal = final_lines.iter().map(|l| l.weight.value()).sum();
    let cent = Decimal::new(1, 2);
    for (line, amount) in final_lines.iter().zip(&amounts) {
        let exact = pool.amount() * line.weight.value() / weight_total;
        assert!(
            (amount.amount() - exact).abs() < cent,
            "{}: {amount} vs {exact}",
            line.member
        );
        assert!(amount.is_positive());
    }

    // Payouts: one per line, and the lead fee's own.
    harness
        .ok(Command::IssuePayouts(IssuePayouts::Distribution(
            distribution("ep1-d1"),
        )))
        .await;
    assert!(matches!(
        rejection(
            harness
                .execute(Command::IssuePayouts(IssuePayouts::Distribution(
                    distribution("ep1-d1")
                )))
                .await
        ),
        Rejection::PayoutAlreadyIssued { .. }
    ));
    harness
        .ok(Command::IssuePayouts(IssuePayouts::LeadFee {
            project_id: project("ep1"),
            lead: member("lead-jo"),
        }))
        .await;
    let mut payout_ids: Vec<PayoutId> = final_lines
        .iter()
        .map(|l| PayoutId::for_line(&distribution("ep1-d1"), &l.member))
        .collect();
    payout_ids.push(PayoutId::for_lead_fee(&project("ep1"), &member("lead-jo")));

    // c100's bank refuses the first attempt; finance retries and it settles.
    let failing = failing_payout();
    fail_and_retry(&harness).await;
    all_ok(&harness, payout_ids.iter().map(settle).collect()).await;
    assert!(matches!(
        rejection(
            harness
                .execute(Command::SettlePayout(SettlePayout {
                    payout_id: failing.clone(),
                    reference: "again".into()
                }))
                .await
        ),
        Rejection::PayoutState {
            status: "settled",
            ..
        }
    ));
    let (settled, attempts) = harness
        .handle
        .inspect(move |s| {
            let settled: Vec<Money> = payout_ids
                .iter()
                .map(|id| s.payout(id).unwrap())
                .filter(|p| p.status == PayoutStatus::Settled)
                .map(|p| p.amount)
                .collect();
            (settled, s.payout(&failing).unwrap().attempt)
        })
        .await
        .unwrap();
    assert_eq!(settled.len(), CONTRIBUTORS + 2);
    assert_eq!(attempts, 2);
    assert_eq!(
        money::sum(Currency::USD, &settled).unwrap(),
        usd("24000"),
        "22,000 to artists, 2,000 to the lead"
    );

    audit(&harness).await;
}

/// The largest production the limits allow: 10,000 lines with long rationales, proposed
/// in one append split over many events, finalized, paid in one append of 10,000 events,
/// and rebuilt from the log after a restart.
#[tokio::test]
async fn ten_thousand_lines_go_through_the_store_and_back() {
    const LINES: usize = 10_000;
    let harness = Harness::new().await;
    harness.ok(start_project("big")).await;
    harness.ok(open_production("big-tv", "big")).await;
    let member_id = |i: usize| format!("m{i:05}");
    all_ok(
        &harness,
        (0..LINES).map(|i| register(&member_id(i))).collect(),
    )
    .await;
    all_ok(
        &harness,
        (0..LINES)
            .map(|i| upload(&format!("r{i}"), "big", &member_id(i)))
            .collect(),
    )
    .await;
    all_ok(
        &harness,
        (0..LINES)
            .map(|i| include("big-tv", &format!("r{i}")))
            .collect(),
    )
    .await;
    harness.ok(revenue("big-tv", usd("1000000"))).await;
    let lines: Vec<Line> = (0..LINES)
        .map(|i| Line {
            rationale: "r".repeat(1_000),
            ..line(&member_id(i), WEIGHTS[i % 4], &[&format!("r{i}")])
        })
        .collect();
    let proposed = harness
        .execute_as("big-propose", propose("big-d1", "big-tv", lines.clone()))
        .await
        .unwrap();
    assert!(
        proposed.append.last_position - proposed.append.first_position + 1 > 20,
        "one append, many events"
    );
    harness.clock.set(t0().saturating_add(DAY * 15));
    harness.ok(finalize("big-d1")).await;
    let paid = harness
        .ok(Command::IssuePayouts(IssuePayouts::Distribution(
            distribution("big-d1"),
        )))
        .await;
    assert_eq!(
        paid.append.last_position - paid.append.first_position + 1,
        LINES as u64
    );

    let (line_count, before) = big_distribution(&harness).await;
    assert_eq!(line_count, LINES);
    assert_eq!(money::sum(Currency::USD, &before).unwrap(), usd("500000"));
    let harness = harness.restart().await;
    let (line_count, after) = big_distribution(&harness).await;
    assert_eq!(line_count, LINES);
    assert_eq!(after, before);
    // A retry of the proposal (megabytes, more than one read returns) after the restart
    // gets the original result, read back from the log whole.
    let retried = harness
        .execute_as("big-propose", propose("big-d1", "big-tv", lines))
        .await
        .unwrap();
    assert!(retried.replayed);
    assert_eq!(retried.append, proposed.append);
}

async fn big_distribution(harness: &Harness) -> (usize, Vec<Money>) {
    harness
        .handle
        .inspect(|s| {
            let d = s.distribution(&distribution("big-d1")).unwrap();
            (d.lines.len(), d.amounts.clone().unwrap())
        })
        .await
        .unwrap()
}

/// An auditor's replay: decode every event from the first, recompute the pool and the
/// amounts with the rules, and compare them with what was recorded.
async fn audit(harness: &Harness) {
    let events = harness.store.read_all(1, 100_000).await.unwrap();
    let mut state = State::new();
    let mut revenue = usd("0");
    let mut expenses = usd("0");
    let mut paid: HashMap<MemberId, Money> = HashMap::new();
    let mut issued: HashMap<PayoutId, (MemberId, Money)> = HashMap::new();
    for recorded in &events {
        let event = DomainEvent::decode(
            recorded.event_type.as_str(),
            recorded.schema_version,
            &recorded.payload,
        )
        .unwrap();
        match &event {
            DomainEvent::RevenueRecorded(e) => revenue = revenue.checked_add(e.amount).unwrap(),
            DomainEvent::ExpenseRecorded(e) => expenses = expenses.checked_add(e.amount).unwrap(),
            DomainEvent::LeadFeeAgreed(e) => expenses = expenses.checked_add(e.fee).unwrap(),
            DomainEvent::AllocationProposed(e) => {
                let pool = money::pool(
                    revenue,
                    expenses,
                    ledger::money::ArtistShare::half(),
                    e.earlier_pools,
                )
                .unwrap();
                assert_eq!(
                    pool, e.pool,
                    "the recorded pool follows from the recorded money"
                );
            }
            DomainEvent::AllocationFinalized(e) => {
                let lines = &state.distribution(&e.distribution_id).unwrap().lines;
                let weights: Vec<_> = lines.iter().map(|l| l.weight).collect();
                assert_eq!(
                    money::split_pool(e.pool, &weights),
                    e.amounts,
                    "the recorded amounts follow from the lines"
                );
            }
            DomainEvent::PayoutIssued(e) => {
                assert!(
                    issued
                        .insert(e.payout_id.clone(), (e.member.clone(), e.amount))
                        .is_none(),
                    "issued twice"
                );
                if let PayoutFor::Line { .. } = e.payout_for {
                    assert!(e.amount.is_positive());
                }
            }
            DomainEvent::PayoutSettled(e) => {
                let (member, amount) = issued[&e.payout_id].clone();
                let total = paid.entry(member).or_insert_with(|| usd("0"));
                *total = total.checked_add(amount).unwrap();
            }
            _ => {}
        }
        evolve(&mut state, &event);
    }
    let total = money::sum(Currency::USD, &paid.values().copied().collect::<Vec<_>>()).unwrap();
    assert_eq!(total, usd("24000"));
    assert_eq!(
        paid.len(),
        CONTRIBUTORS + 2,
        "every contributor, the influencer with a line, and the lead"
    );
}

fn rejection(result: Result<ledger::decider::CommandOutcome, CommandError>) -> Rejection {
    match result {
        Err(CommandError::Rejected(rejection)) => rejection,
        other => panic!("expected a rejection, got {other:?}"),
    }
}
