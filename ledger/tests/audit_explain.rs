//! `audit::explain` on the seeds' TV episode (426 contributors), written through the decider
//! and the embedded store: a payout explained field by field, from the log alone; the
//! episode's whole log verifies clean, chain and rules; a member's statement.

mod common;

use common::*;
use ledger::audit::explain::{explain_payout, statement, Ancestor};
use ledger::audit::{self, VerifyOptions};
use ledger::domain::ids::PayoutId;
use ledger::money::{self, Currency};
use ledger::store::{EventStore, RecordedEvent};
use rust_decimal::Decimal;
use stemma_testkit::episode::{self, contributor, CONTRIBUTORS};
use stemma_testkit::Harness;

fn event_at(events: &[RecordedEvent], position: u64) -> &RecordedEvent {
    &events[position as usize - 1]
}

#[tokio::test]
async fn a_payout_of_the_tv_episode_is_explained_field_by_field() {
    let harness = Harness::new().await;
    episode::tv_episode(&harness).await;
    let log = harness.directory.path().join("log");
    let events = harness.store.read_all(1, 100_000).await.unwrap();
    let d1 = distribution("ep1-d1");
    let c007 = member(&contributor(7));
    let payout_id = PayoutId::for_line(&d1, &c007);
    let (lines, amounts) = harness
        .handle
        .inspect({
            let d1 = d1.clone();
            move |s| {
                let d = s.distribution(&d1).unwrap();
                (d.lines.clone(), d.amounts.clone().unwrap())
            }
        })
        .await
        .unwrap();

    let e = explain_payout(&log, &payout_id).unwrap().unwrap();
    assert_eq!(e.payout_id, payout_id.to_string());
    assert_eq!(e.member, "c007");
    let index = lines.iter().position(|l| l.member == c007).unwrap();
    assert_eq!(index, 7, "c007's line keeps its place when amended");
    assert_eq!(e.amount, amounts[index].to_string());
    assert_eq!(e.state, "settled");
    assert_eq!(e.issued.event_type, "PayoutIssued");
    let issued = event_at(&events, e.issued.position);
    assert_eq!(e.issued.hash, issued.hash.to_hex());
    assert_eq!(e.attempts.len(), 1);
    assert_eq!(e.attempts[0].outcome, "settled");
    assert_eq!(e.attempts[0].attempt, 1);
    assert_eq!(e.attempts[0].detail, format!("tx-{payout_id}"));
    assert!(e.lead_fee.is_none());

    let d = e.distribution.as_ref().unwrap();
    assert_eq!(d.distribution_id, "ep1-d1");
    assert_eq!(d.production_id, "ep1-tv");
    assert_eq!(d.proposed.event_type, "AllocationProposed");
    assert_eq!(
        d.proposed.hash,
        event_at(&events, d.proposed.position).hash.to_hex()
    );
    let finalized = d.finalized.as_ref().unwrap();
    assert_eq!(finalized.event_type, "AllocationFinalized");
    assert!(finalized.position > d.proposed.position);
    assert_eq!(d.revenue_total, "50000.00 USD");
    assert_eq!(
        d.expense_total, "6000.00 USD",
        "3,000 + 1,000 + the 2,000 lead fee"
    );
    assert_eq!(d.artist_share, "0.5");
    assert_eq!(d.entitlement, "22000.00 USD");
    assert_eq!(d.earlier_pools, "0.00 USD");
    assert_eq!(d.pool, "22000.00 USD");
    let money: Vec<(&str, &str)> = d
        .money
        .iter()
        .map(|m| (m.kind, m.amount.as_str()))
        .collect();
    assert_eq!(
        money,
        vec![
            ("lead_fee", "2000.00 USD"),
            ("revenue", "30000.00 USD"),
            ("revenue", "20000.00 USD"),
            ("expense", "3000.00 USD"),
            ("expense", "1000.00 USD"),
        ]
    );
    for fact in &d.money {
        let recorded = event_at(&events, fact.event.position);
        assert_eq!(fact.event.hash, recorded.hash.to_hex());
        assert!(
            fact.event.position < d.proposed.position,
            "before the cut-off"
        );
    }

    let line = d.line.as_ref().unwrap();
    assert_eq!(line.member, "c007");
    assert_eq!(line.weight, "4");
    assert_eq!(line.records, vec!["rec-7"]);
    assert_eq!(
        line.rationale, "c007's part",
        "the amended line's rationale"
    );
    assert_eq!(line.line_number, 8);
    assert_eq!(line.line_count, CONTRIBUTORS + 1);
    // 106 × (1 + 1.5 + 2 + 3) + 1 + 1.5, c007's 3 amended to 4, and inf0's 0.5.
    assert_eq!(line.weight_total, "799");
    let exact = Decimal::from(22_000) * Decimal::from(4) / Decimal::from(799);
    assert_eq!(line.exact_amount, exact.normalize().to_string());
    assert_eq!(line.rounded_down, "110.13 USD");
    let weights: Vec<_> = lines.iter().map(|l| l.weight).collect();
    let split = money::split_pool(
        money::Money::parse("22000", Currency::USD).unwrap(),
        &weights,
    );
    assert_eq!(line.amount, split[index].to_string());
    assert_eq!(
        line.leftover_unit,
        split[index].amount() > Decimal::new(11_013, 2)
    );

    assert_eq!(d.amendments.len(), 1, "{:#?}", d.amendments);
    let amendment = &d.amendments[0];
    assert_eq!(amendment.change, "replaced");
    assert_eq!(amendment.weight.as_deref(), Some("4"));
    assert_eq!(amendment.reason, "answering the comments");
    assert_eq!(amendment.answers, vec!["k-c007"]);
    assert_eq!(amendment.event.event_type, "AllocationAmended");

    let comments: Vec<(&str, &str, bool, Option<&str>)> = d
        .comments
        .iter()
        .map(|c| {
            (
                c.comment_id.as_str(),
                c.author.as_str(),
                c.staff,
                c.reply_to.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        comments,
        vec![
            ("k-c007", "c007", false, None),
            ("k-staff-2", "staff-sam", true, Some("k-c007")),
            ("k-c007-2", "c007", false, Some("k-staff-2")),
            ("k-staff-3", "staff-sam", true, Some("k-c007-2")),
        ]
    );
    assert_eq!(d.comments[0].body, "comment k-c007");
    assert!(d.credited_ancestors.is_empty(), "rec-7 is an original");

    // A remix: its source is credited.
    let c005 = PayoutId::for_line(&d1, &member(&contributor(5)));
    let e = explain_payout(&log, &c005).unwrap().unwrap();
    let d = e.distribution.unwrap();
    assert_eq!(
        d.credited_ancestors,
        vec![Ancestor {
            record_id: "rec-4".into(),
            contributor: "c004".into(),
            depth: 1
        }]
    );
    assert!(d.amendments.is_empty() && d.comments.is_empty());

    // The failed and retried one.
    let c100 = PayoutId::for_line(&d1, &member(&contributor(100)));
    let e = explain_payout(&log, &c100).unwrap().unwrap();
    let attempts: Vec<(u32, &str, &str)> = e
        .attempts
        .iter()
        .map(|a| (a.attempt, a.outcome, a.detail.as_str()))
        .collect();
    let settled_reference = format!("tx-{c100}");
    assert_eq!(
        attempts,
        vec![
            (1, "failed", "account closed"),
            (2, "retried", ""),
            (2, "settled", settled_reference.as_str()),
        ]
    );

    // The lead's fee.
    let fee = PayoutId::for_lead_fee(&project("ep1"), &member("lead-jo"));
    let e = explain_payout(&log, &fee).unwrap().unwrap();
    let lead_fee = e.lead_fee.unwrap();
    assert_eq!(lead_fee.fee, "2000.00 USD");
    assert_eq!(
        event_at(&events, lead_fee.agreed.unwrap().position)
            .event_type
            .as_str(),
        "LeadFeeAgreed"
    );
    assert!(e.distribution.is_none());
    assert!(explain_payout(&log, &PayoutId::new("po-none").unwrap())
        .unwrap()
        .is_none());

    // The statement of the lead and of c100.
    let s = statement(&log, &member(&contributor(100))).unwrap();
    assert_eq!(s.payouts.len(), 1);
    assert_eq!(s.payouts[0].state, "settled");
    assert_eq!(s.totals[0].settled, s.payouts[0].amount);

    // And the whole episode verifies clean, chain and rules.
    let report = audit::verify(
        &log,
        VerifyOptions {
            semantic: true,
            checkpoint: None,
            workers: 0,
        },
        &mut |_| {},
    )
    .unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(report.events, events.len() as u64);
}
