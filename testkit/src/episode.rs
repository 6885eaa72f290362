//! The seeds' TV episode of `ledger/tests/scenario.rs` (426 contributors, $50,000 of
//! revenue, a lead fee, comments with staff replies, an amendment, a failed and retried
//! payout), as a builder of real data directories for the audit tests. `scenario.rs` and
//! `projections/tests/allocation.rs` check each step; this only plays them.

use futures::future::join_all;
use ledger::decider::CommandOutcome;
use ledger::domain::commands::*;
use ledger::domain::events::Line;
use ledger::domain::ids::PayoutId;
use ledger::domain::Command;
use ledger::time::Timestamp;

use crate::harness::Harness;
use crate::*;

pub const CONTRIBUTORS: usize = 426;
pub const INFLUENCERS: usize = 4;
pub const WEIGHTS: [&str; 4] = ["1", "1.5", "2", "3"];

pub fn contributor(i: usize) -> String {
    format!("c{i:03}")
}

pub fn contributor_line(i: usize) -> Line {
    Line {
        rationale: format!("{}'s piece is in the episode", contributor(i)),
        ..line(&contributor(i), WEIGHTS[i % 4], &[&format!("rec-{i}")])
    }
}

/// Sends `commands` concurrently (the decider batches them) and panics on the first refusal.
pub async fn all_ok(harness: &Harness, commands: Vec<Command>) {
    for result in join_all(commands.into_iter().map(|c| harness.execute(c))).await {
        if let Err(error) = result {
            panic!("{error}");
        }
    }
}

pub fn day(n: u32) -> Timestamp {
    t0().saturating_add(DAY * n)
}

/// The members (contributors, influencers, the lead and staff), the project and its
/// production.
pub async fn cast(harness: &Harness) {
    let mut members: Vec<Command> = (0..CONTRIBUTORS)
        .map(|i| register(&contributor(i)))
        .collect();
    members.extend((0..INFLUENCERS).map(|i| register(&format!("inf{i}"))));
    members.extend([register("lead-jo"), register("staff-sam")]);
    all_ok(harness, members).await;
    harness.ok(start_project("ep1")).await;
    harness.ok(open_production("ep1-tv", "ep1")).await;
}

/// The lead's fee agreed, then the lead assigned (rule 2).
pub async fn lead(harness: &Harness) {
    harness
        .ok(agree_lead_fee("ep1", "lead-jo", usd("2000")))
        .await;
    harness
        .ok(Command::AssignLead(AssignLead {
            project_id: project("ep1"),
            lead: member("lead-jo"),
        }))
        .await;
}

/// The influencers' originals, then the contributors' pieces (some remix an influencer's
/// piece or the piece before theirs); every piece but the last is in the cut.
pub async fn records(harness: &Harness) {
    all_ok(
        harness,
        (0..INFLUENCERS)
            .map(|i| upload(&format!("inf-rec-{i}"), "ep1", &format!("inf{i}")))
            .collect(),
    )
    .await;
    let is_remix_of_previous = |i: usize| i % 10 == 5;
    all_ok(
        harness,
        (0..CONTRIBUTORS)
            .filter(|i| !is_remix_of_previous(*i))
            .map(|i| {
                let id = format!("rec-{i}");
                if i < INFLUENCERS {
                    remix(&id, "ep1", &contributor(i), &[&format!("inf-rec-{i}")])
                } else {
                    upload(&id, "ep1", &contributor(i))
                }
            })
            .collect(),
    )
    .await;
    all_ok(
        harness,
        (0..CONTRIBUTORS)
            .filter(|i| is_remix_of_previous(*i))
            .map(|i| {
                remix(
                    &format!("rec-{i}"),
                    "ep1",
                    &contributor(i),
                    &[&format!("rec-{}", i - 1)],
                )
            })
            .collect(),
    )
    .await;
    all_ok(
        harness,
        (0..CONTRIBUTORS - 1)
            .map(|i| include("ep1-tv", &format!("rec-{i}")))
            .collect(),
    )
    .await;
}

/// $50,000 in, $4,000 of expenses besides the $2,000 lead fee.
pub async fn money(harness: &Harness) {
    harness.ok(revenue("ep1-tv", usd("30000"))).await;
    harness.ok(revenue("ep1-tv", usd("20000"))).await;
    harness.ok(expense("ep1-tv", usd("3000"))).await;
    harness.ok(expense("ep1-tv", usd("1000"))).await;
}

/// The proposal's lines: one per contributor but the last, and one for an influencer (paid
/// for influence: inf-rec-0 is an ancestor of an included record).
pub fn proposal() -> Vec<Line> {
    let mut lines: Vec<Line> = (0..CONTRIBUTORS - 1).map(contributor_line).collect();
    lines.push(Line {
        rationale: "the original verse the opening is built on".into(),
        ..line("inf0", "0.5", &["inf-rec-0"])
    });
    lines
}

/// Day 1: a comment on c007's line, one on the whole distribution, staff answers the second.
pub async fn first_comments(harness: &Harness) {
    harness.clock.set(day(1));
    harness
        .ok(post(
            "k-c007",
            &contributor(7),
            false,
            on_line("ep1-d1", &contributor(7)),
        ))
        .await;
    harness
        .ok(post(
            "k-c012",
            &contributor(12),
            false,
            CommentOn::Distribution(distribution("ep1-d1")),
        ))
        .await;
    harness
        .ok(post(
            "k-staff-1",
            "staff-sam",
            true,
            CommentOn::Reply(comment("k-c012")),
        ))
        .await;
}

/// The amendment's lines: c007's weight raised, and the last piece's contributor added.
pub fn amendment() -> Vec<Line> {
    vec![
        line(&contributor(7), "4", &["rec-7"]),
        contributor_line(CONTRIBUTORS - 1),
    ]
}

/// Day 2: staff answers c007, the proposal is amended to answer it, c007 thanks them (a
/// member comment again) and staff closes the thread. Returns the amendment's outcome.
pub async fn answer_and_amend(harness: &Harness) -> CommandOutcome {
    harness.clock.set(day(2));
    harness
        .ok(post(
            "k-staff-2",
            "staff-sam",
            true,
            CommentOn::Reply(comment("k-c007")),
        ))
        .await;
    let amended = harness
        .ok(amend("ep1-d1", &["k-c007"], &[], amendment()))
        .await;
    harness
        .ok(post(
            "k-c007-2",
            &contributor(7),
            false,
            CommentOn::Reply(comment("k-staff-2")),
        ))
        .await;
    harness
        .ok(post(
            "k-staff-3",
            "staff-sam",
            true,
            CommentOn::Reply(comment("k-c007-2")),
        ))
        .await;
    amended
}

/// c100's payout, the one whose first attempt fails.
pub fn failing_payout() -> PayoutId {
    PayoutId::for_line(&distribution("ep1-d1"), &member(&contributor(100)))
}

/// c100's bank refuses the first attempt; finance retries.
pub async fn fail_and_retry(harness: &Harness) {
    harness.ok(fail(&failing_payout())).await;
    harness.ok(retry(&failing_payout())).await;
}

/// Plays the episode from a fresh harness to settled payouts.
pub async fn tv_episode(harness: &Harness) {
    cast(harness).await;
    lead(harness).await;
    records(harness).await;
    money(harness).await;
    harness.ok(propose("ep1-d1", "ep1-tv", proposal())).await;
    harness
        .ok(include("ep1-tv", &format!("rec-{}", CONTRIBUTORS - 1)))
        .await;
    first_comments(harness).await;
    answer_and_amend(harness).await;
    harness.clock.set(
        t0().saturating_add(DAY * 14)
            .saturating_add(std::time::Duration::from_secs(1)),
    );
    harness.ok(finalize("ep1-d1")).await;
    harness
        .ok(Command::IssuePayouts(IssuePayouts::Distribution(
            distribution("ep1-d1"),
        )))
        .await;
    harness
        .ok(Command::IssuePayouts(IssuePayouts::LeadFee {
            project_id: project("ep1"),
            lead: member("lead-jo"),
        }))
        .await;
    fail_and_retry(harness).await;
    let mut payout_ids: Vec<PayoutId> = (0..CONTRIBUTORS)
        .map(|i| PayoutId::for_line(&distribution("ep1-d1"), &member(&contributor(i))))
        .collect();
    payout_ids.push(PayoutId::for_line(&distribution("ep1-d1"), &member("inf0")));
    payout_ids.push(PayoutId::for_lead_fee(&project("ep1"), &member("lead-jo")));
    all_ok(harness, payout_ids.iter().map(settle).collect()).await;
}
