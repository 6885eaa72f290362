//! The seeds' TV episode (mirroring `ledger/tests/scenario.rs`): 426 contributors, through
//! the real decider and store, with the allocation state checked field by field at each
//! step, its blockers checked against the domain's own `finalization_blockers`, and the
//! credits and statements it leads to.

mod support;

use std::time::Duration;

use ledger::domain::events::PayoutFor;
use ledger::domain::ids::{DistributionId, PayoutId};
use ledger::domain::{Blocker, Command};
use ledger::money::{self, ArtistShare, Currency, Money};
use ledger::time::Timestamp;
use projections::allocation::{
    AllocationStatus, AllocationView, Attempt, CommentView, EntryKind, VersionChange,
};
use projections::serving::ReadModels;
use projections::statement::PayoutState;
use rust_decimal::Decimal;
use stemma_testkit::episode::{
    all_ok, amendment, answer_and_amend, cast, contributor, contributor_line, day, failing_payout,
    first_comments, lead, money, proposal, records, CONTRIBUTORS, INFLUENCERS,
};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

/// The allocation at the store's head, and the domain's blockers for the same moment.
async fn view(
    world: &Harness,
    models: &ReadModels,
    now: Timestamp,
) -> (AllocationView, Vec<Blocker>) {
    let head = world.head().await;
    let view = models
        .allocations
        .query(head, WAIT, |m| m.distribution(&distribution("ep1-d1"), now))
        .await
        .unwrap()
        .value
        .unwrap();
    let domain = world
        .domain_blockers(&distribution("ep1-d1"), now)
        .await
        .unwrap();
    (view, domain)
}

fn comment_ids(comments: &[CommentView]) -> Vec<&str> {
    comments.iter().map(|c| c.comment_id.as_str()).collect()
}

fn usd_sum(amounts: &[Money]) -> Money {
    money::sum(Currency::USD, amounts).unwrap()
}

#[tokio::test]
async fn the_426_contributor_episode_field_by_field() {
    let world = Harness::new().await;
    let models = ReadModels::start(world.store.clone(), None).await;
    let d1: DistributionId = distribution("ep1-d1");

    cast(&world).await;
    lead(&world).await;
    records(&world).await;
    money(&world).await;

    let lines = proposal();
    let proposed_at = world.ok(propose("ep1-d1", "ep1-tv", lines.clone())).await;
    world
        .ok(include("ep1-tv", &format!("rec-{}", CONTRIBUTORS - 1)))
        .await;
    first_comments(&world).await;

    // ---- Proposed, during the window ----
    let (v, domain_blockers) = view(&world, &models, day(1)).await;
    let pool = usd("22000");
    assert_eq!(v.distribution_id, d1);
    assert_eq!(v.production_id, production("ep1-tv"));
    assert_eq!(v.status, AllocationStatus::Proposed);
    assert_eq!(v.pool.revenue_total, usd("50000"));
    assert_eq!(v.pool.expense_total, usd("6000"));
    assert_eq!(v.pool.artist_share, ArtistShare::half());
    assert_eq!(v.pool.earlier_pools, usd("0"));
    assert_eq!(v.pool.pool, pool);
    let amounts = |entries: &[projections::allocation::MoneyEntry]| -> Vec<(EntryKind, Money)> {
        entries.iter().map(|e| (e.kind.clone(), e.amount)).collect()
    };
    assert_eq!(
        amounts(&v.pool.revenues),
        vec![
            (EntryKind::Revenue, usd("30000")),
            (EntryKind::Revenue, usd("20000"))
        ]
    );
    assert_eq!(
        amounts(&v.pool.expenses),
        vec![
            (
                EntryKind::LeadFee {
                    lead: member("lead-jo")
                },
                usd("2000")
            ),
            (EntryKind::Expense, usd("3000")),
            (EntryKind::Expense, usd("1000")),
        ]
    );
    assert!(v.pool.earlier_distributions.is_empty());
    assert_eq!(v.published_at, t0());
    assert_eq!(v.window_closes_at, day(14));
    assert_eq!(v.lines.len(), CONTRIBUTORS);
    let weights: Vec<_> = lines.iter().map(|l| l.weight).collect();
    let expected_amounts = money::split_pool(pool, &weights);
    for ((got, wanted), amount) in v.lines.iter().zip(&lines).zip(&expected_amounts) {
        assert_eq!(got.member, wanted.member);
        assert_eq!(got.weight, wanted.weight);
        assert_eq!(got.rationale, wanted.rationale);
        assert_eq!(got.records, wanted.records);
        assert_eq!(got.amount, *amount);
    }
    let c007 = v
        .lines
        .iter()
        .find(|l| l.member == member(&contributor(7)))
        .unwrap();
    assert_eq!(comment_ids(&c007.comments), vec!["k-c007"]);
    assert!(!c007.comments[0].answered && c007.comments[0].staff_replies.is_empty());
    assert_eq!(c007.comments[0].line, Some(member(&contributor(7))));
    assert_eq!(c007.comments[0].recorded_at, day(1));
    assert!(v
        .lines
        .iter()
        .filter(|l| l.member != member(&contributor(7)))
        .all(|l| l.comments.is_empty()));
    assert_eq!(comment_ids(&v.other_comments), vec!["k-c012", "k-staff-1"]);
    assert!(v.other_comments[0].answered);
    assert_eq!(
        v.other_comments[0].staff_replies,
        vec![comment("k-staff-1")]
    );
    assert!(v.other_comments[1].staff && v.other_comments[1].answered);
    assert_eq!(v.other_comments[1].reply_to, Some(comment("k-c012")));
    assert_eq!(v.versions.len(), 1);
    assert_eq!(v.versions[0].number, 1);
    assert_eq!(v.versions[0].position, proposed_at.append.first_position);
    assert_eq!(
        v.versions[0].change,
        VersionChange::Proposed {
            lines: lines.clone()
        },
        "the proposal's continuation events are part of its one version"
    );
    let expected_blockers = vec![
        Blocker::WindowOpen { closes_at: day(14) },
        Blocker::UnansweredComments {
            comment_ids: vec![comment("k-c007")],
        },
        Blocker::ContributorsWithoutLine {
            members: vec![member(&contributor(CONTRIBUTORS - 1))],
        },
    ];
    assert_eq!(v.blockers, expected_blockers);
    assert_eq!(v.blockers, domain_blockers);
    assert_eq!(v.finalized_at, None);
    assert!(v.payouts.is_empty());
    let weight_total: Decimal = lines.iter().map(|l| l.weight.value()).sum();
    assert_eq!(v.totals.pool, pool);
    assert_eq!(v.totals.line_count, CONTRIBUTORS);
    assert_eq!(v.totals.weight_total, weight_total);
    assert_eq!(v.totals.lines_total, pool);
    assert_eq!(v.totals.comment_count, 3);
    assert_eq!(v.totals.unanswered_count, 1);
    for total in [
        v.totals.issued_total,
        v.totals.settled_total,
        v.totals.pending_total,
        v.totals.failed_total,
    ] {
        assert_eq!(total, usd("0"));
    }

    // ---- Answered and amended ----
    let amended_at = answer_and_amend(&world).await;
    let amendment = amendment();
    let (v, domain_blockers) = view(&world, &models, day(2)).await;
    assert_eq!(v.blockers, vec![Blocker::WindowOpen { closes_at: day(14) }]);
    assert_eq!(v.blockers, domain_blockers);
    assert_eq!(v.versions.len(), 2);
    assert_eq!(v.versions[1].number, 2);
    assert_eq!(v.versions[1].position, amended_at.append.first_position);
    assert_eq!(v.versions[1].recorded_at, day(2));
    assert_eq!(
        v.versions[1].change,
        VersionChange::Amended {
            reason: "answering the comments".into(),
            answers: vec![comment("k-c007")],
            removed: vec![],
            lines: amendment.clone(),
        }
    );
    assert_eq!(v.lines.len(), CONTRIBUTORS + 1);
    let c007 = v
        .lines
        .iter()
        .find(|l| l.member == member(&contributor(7)))
        .unwrap();
    assert_eq!(c007.weight, weight("4"));
    assert_eq!(
        comment_ids(&c007.comments),
        vec!["k-c007", "k-staff-2", "k-c007-2", "k-staff-3"]
    );
    assert!(c007.comments.iter().all(|c| c.answered));
    assert_eq!(c007.comments[0].staff_replies, vec![comment("k-staff-2")]);
    assert_eq!(c007.comments[2].staff_replies, vec![comment("k-staff-3")]);
    assert_eq!(
        v.lines.last().unwrap().member,
        member(&contributor(CONTRIBUTORS - 1))
    );
    assert_eq!(v.totals.lines_total, pool);
    assert_eq!(v.totals.unanswered_count, 0);
    assert_eq!(v.totals.comment_count, 6);

    // ---- After the window: nothing blocks; then finalized ----
    let after_window = day(14).saturating_add(Duration::from_secs(1));
    world.clock.set(after_window);
    let (v, domain_blockers) = view(&world, &models, after_window).await;
    assert!(v.blockers.is_empty());
    assert_eq!(domain_blockers, v.blockers);
    let projected_amounts: Vec<Money> = v.lines.iter().map(|l| l.amount).collect();
    world.ok(finalize("ep1-d1")).await;
    let (v, _) = view(&world, &models, after_window).await;
    assert_eq!(v.status, AllocationStatus::Finalized);
    assert_eq!(v.finalized_at, Some(after_window));
    let final_amounts: Vec<Money> = v.lines.iter().map(|l| l.amount).collect();
    assert_eq!(
        final_amounts, projected_amounts,
        "what the model showed is what was final"
    );
    assert_eq!(usd_sum(&final_amounts), pool);
    assert!(v.blockers.is_empty());

    // ---- Payouts ----
    world.ok(issue_payouts("ep1-d1")).await;
    world
        .ok(Command::IssuePayouts(
            ledger::domain::commands::IssuePayouts::LeadFee {
                project_id: project("ep1"),
                lead: member("lead-jo"),
            },
        ))
        .await;
    let (v, _) = view(&world, &models, after_window).await;
    assert_eq!(
        v.payouts.len(),
        CONTRIBUTORS + 1,
        "one per line; the lead fee is not a line"
    );
    for (payout, line) in v.payouts.iter().zip(&v.lines) {
        assert_eq!(payout.payout_id, PayoutId::for_line(&d1, &line.member));
        assert_eq!(payout.member, line.member);
        assert_eq!(payout.amount, line.amount);
        assert_eq!(payout.state, PayoutState::Pending);
    }
    assert_eq!(v.totals.issued_total, pool);
    assert_eq!(v.totals.pending_total, pool);

    let failing = failing_payout();
    let failed_at = world.ok(fail(&failing)).await;
    let (v, _) = view(&world, &models, after_window).await;
    let failed = v.payouts.iter().find(|p| p.payout_id == failing).unwrap();
    let failed_amount = failed.amount;
    assert_eq!(
        failed.state,
        PayoutState::Failed {
            reason: "account closed".into()
        }
    );
    assert_eq!(v.totals.failed_total, failed_amount);
    assert_eq!(
        v.totals.pending_total,
        pool.checked_sub(failed_amount).unwrap()
    );
    let retried_at = world.ok(retry(&failing)).await;
    let mut payout_ids: Vec<PayoutId> = v.payouts.iter().map(|p| p.payout_id.clone()).collect();
    payout_ids.push(PayoutId::for_lead_fee(&project("ep1"), &member("lead-jo")));
    all_ok(&world, payout_ids.iter().map(settle).collect()).await;
    let (v, _) = view(&world, &models, after_window).await;
    assert_eq!(v.status, AllocationStatus::Paid);
    assert_eq!(v.totals.settled_total, pool);
    assert_eq!(v.totals.pending_total, usd("0"));
    assert_eq!(v.totals.failed_total, usd("0"));
    let settled = v.payouts.iter().find(|p| p.payout_id == failing).unwrap();
    assert_eq!(
        settled.attempts,
        vec![
            Attempt {
                attempt: 1,
                position: settled.attempts[0].position,
                outcome: PayoutState::Failed {
                    reason: "account closed".into()
                },
            },
            Attempt {
                attempt: 2,
                position: retried_at.append.first_position,
                outcome: PayoutState::Settled {
                    reference: format!("tx-{failing}")
                },
            },
        ]
    );
    assert!(settled.attempts[0].position < failed_at.append.first_position);

    // ---- Credits: every contributor paid; the influencers credited for their originals ----
    let head = world.head().await;
    let credits = models
        .credits
        .query(head, WAIT, |m| m.production(&production("ep1-tv")))
        .await
        .unwrap()
        .value
        .unwrap();
    assert_eq!(credits.included.len(), CONTRIBUTORS);
    for (i, credit) in credits.included.iter().enumerate() {
        assert_eq!(credit.member, member(&contributor(i)));
        assert_eq!(credit.records, vec![record(&format!("rec-{i}"))]);
    }
    let influencing: Vec<(String, Vec<String>)> = credits
        .influencing
        .iter()
        .map(|c| {
            (
                c.member.to_string(),
                c.records.iter().map(|r| r.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(
        influencing,
        (0..INFLUENCERS)
            .map(|i| (format!("inf{i}"), vec![format!("inf-rec-{i}")]))
            .collect::<Vec<_>>()
    );

    // ---- Statements ----
    let statement = |id: &str| {
        models
            .statements
            .query_now(|m| m.member(&member(id)))
            .value
            .unwrap()
    };
    let c100 = statement(&contributor(100));
    assert_eq!(c100.payouts.len(), 1);
    assert_eq!(c100.payouts[0].payout_id, failing);
    assert_eq!(c100.payouts[0].amount, failed_amount);
    assert_eq!(
        c100.payouts[0].paid_for,
        PayoutFor::Line {
            distribution_id: d1.clone()
        }
    );
    assert_eq!(c100.payouts[0].line, Some(contributor_line(100)));
    assert_eq!(c100.payouts[0].attempt, 2);
    assert_eq!(
        c100.payouts[0].state,
        PayoutState::Settled {
            reference: format!("tx-{failing}")
        }
    );
    assert_eq!(c100.records.len(), 1);
    assert_eq!(c100.records[0].record, record("rec-100"));
    let c004 = statement(&contributor(4));
    assert_eq!(c004.remixes.len(), 1);
    assert_eq!(c004.remixes[0].source, record("rec-4"));
    assert_eq!(c004.remixes[0].record, record("rec-5"));
    assert_eq!(c004.remixes[0].contributor, member(&contributor(5)));
    assert!(c004.citations.is_empty());
    let lead = statement("lead-jo");
    assert_eq!(lead.payouts.len(), 1);
    assert_eq!(lead.payouts[0].amount, usd("2000"));
    assert_eq!(lead.payouts[0].line, None);
    assert_eq!(
        lead.payouts[0].payout_id,
        PayoutId::for_lead_fee(&project("ep1"), &member("lead-jo"))
    );
    assert_eq!(
        lead.payouts[0].paid_for,
        PayoutFor::LeadFee {
            project_id: project("ep1")
        }
    );
    let inf0 = statement("inf0");
    assert_eq!(inf0.remixes[0].record, record("rec-0"));
    assert_eq!(
        inf0.payouts[0].line.as_ref().unwrap().records,
        vec![record("inf-rec-0")]
    );
    let paid: Vec<Money> = (0..CONTRIBUTORS)
        .map(|i| statement(&contributor(i)).payouts[0].amount)
        .chain([statement("inf0").payouts[0].amount])
        .collect();
    assert_eq!(usd_sum(&paid), pool, "the statements add up to the pool");
}
