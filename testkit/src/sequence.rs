//! Random valid command sequences: a proptest strategy of steps ([`op`]) over one project
//! `p1` with production `pr1` and members `m0`..`m3` and `staff`, and [`play`], which turns
//! each step into a command against what exists at that moment and sends it. Used by the
//! audit's "histories the domain wrote verify clean" and the projections' equivalence
//! properties; each adds its own fixed tail of steps.

use std::time::Duration;

use ledger::decider::{CommandError, CommandOutcome};
use ledger::domain::commands::*;
use ledger::domain::events::Line;
use ledger::domain::ids::{MemberId, PayoutId, RecordId};
use ledger::domain::Command;
use ledger::money::{Currency, Money};
use proptest::prelude::*;

use crate::*;

/// Members `m0`..`m3`; the steps name them by index.
pub const MEMBERS: usize = 4;

/// A step of a random history, with indices resolved against what exists when it runs.
#[derive(Clone, Debug)]
pub enum Op {
    Upload(usize),
    Remix(usize, Vec<usize>),
    Cite(usize, usize),
    Withdraw(usize),
    Include(usize),
    /// Includes the record uploaded `n` records ago (0: the last).
    IncludeRecent(usize),
    Revenue(u32),
    Expense(u32),
    Propose(Vec<(usize, u8)>),
    Comment(usize, Option<usize>),
    Reply(usize, bool),
    Amend(Vec<usize>, Vec<(usize, u8)>),
    Advance(u8),
    Finalize,
    Issue,
    Settle(usize),
    Fail(usize),
    Retry(usize),
    AnswerAll,
    PayLeadFee,
}

/// One random step. `PayLeadFee` pays m3's fee: refused unless the test agreed one.
pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..MEMBERS).prop_map(Op::Upload),
        3 => (0..MEMBERS, prop::collection::vec(0usize..50, 1..3)).prop_map(|(m, s)| Op::Remix(m, s)),
        1 => (0usize..50, 0usize..50).prop_map(|(a, b)| Op::Cite(a, b)),
        1 => (0usize..50).prop_map(Op::Withdraw),
        3 => (0usize..50).prop_map(Op::Include),
        2 => (1u32..1_000_000).prop_map(Op::Revenue),
        1 => (1u32..300_000).prop_map(Op::Expense),
        2 => prop::collection::vec((0..MEMBERS, 1u8..5), 1..5).prop_map(Op::Propose),
        2 => (0..MEMBERS, prop::option::of(0..MEMBERS)).prop_map(|(a, l)| Op::Comment(a, l)),
        2 => (0usize..20, any::<bool>()).prop_map(|(c, s)| Op::Reply(c, s)),
        1 => (prop::collection::vec(0..MEMBERS, 0..2), prop::collection::vec((0..MEMBERS, 1u8..5), 0..3)).prop_map(|(r, l)| Op::Amend(r, l)),
        1 => (1u8..3).prop_map(Op::Advance),
        1 => Just(Op::Finalize),
        1 => Just(Op::Issue),
        2 => (0..MEMBERS).prop_map(Op::Settle),
        1 => (0..MEMBERS).prop_map(Op::Fail),
        1 => (0..MEMBERS).prop_map(Op::Retry),
        1 => Just(Op::AnswerAll),
        1 => Just(Op::PayLeadFee),
    ]
}

pub fn member_name(index: usize) -> String {
    format!("m{index}")
}

/// What a sequence remembers to turn indices into ids.
#[derive(Default)]
pub struct Ids {
    pub records: Vec<String>,
    pub comments: Vec<String>,
    pub distributions: Vec<String>,
}

impl Ids {
    pub fn record(&self, index: usize) -> Option<&str> {
        (!self.records.is_empty()).then(|| self.records[index % self.records.len()].as_str())
    }

    pub fn distribution(&self) -> Option<String> {
        self.distributions.last().cloned()
    }
}

/// Lines the decider accepts: each pays for the member's records it may pay for.
pub async fn payable_lines(harness: &Harness, members: &[(usize, u8)]) -> Vec<Line> {
    let payable: Vec<(MemberId, RecordId)> = harness
        .handle
        .inspect(|state| {
            let production = state.production(&production("pr1")).unwrap();
            let mut payable: Vec<(MemberId, RecordId)> = state
                .payable_records(production)
                .into_iter()
                .map(|node| {
                    let record = state.record_at(node);
                    (record.contributor.clone(), record.id.clone())
                })
                .collect();
            payable.sort();
            payable
        })
        .await
        .unwrap();
    let mut lines: Vec<Line> = Vec::new();
    for (index, weight_value) in members {
        let member = member(&member_name(*index));
        if lines.iter().any(|line| line.member == member) {
            continue;
        }
        let records: Vec<RecordId> = payable
            .iter()
            .filter(|(m, _)| *m == member)
            .map(|(_, r)| r.clone())
            .take(16)
            .collect();
        if !records.is_empty() {
            lines.push(Line {
                member,
                weight: weight(&weight_value.to_string()),
                rationale: "their part".into(),
                records,
            });
        }
    }
    lines
}

pub async fn answer_all(harness: &Harness, ids: &mut Ids) {
    let Some(distribution_id) = ids.distribution() else {
        return;
    };
    let unanswered: Vec<String> = harness
        .handle
        .inspect(move |state| {
            state
                .distribution(&distribution(&distribution_id))
                .map(|d| d.unanswered.iter().map(|c| c.to_string()).collect())
                .unwrap_or_default()
        })
        .await
        .unwrap();
    for parent in unanswered {
        let id = format!("k{}", ids.comments.len());
        ids.comments.push(id.clone());
        harness
            .ok(post(&id, "staff", true, CommentOn::Reply(comment(&parent))))
            .await;
    }
}

/// The command of `op`, or `None` when it names nothing that exists yet.
pub async fn command(harness: &Harness, ids: &mut Ids, op: &Op) -> Option<Command> {
    let payout = |ids: &Ids, m: usize| -> Option<PayoutId> {
        Some(PayoutId::for_line(
            &distribution(&ids.distribution()?),
            &member(&member_name(m)),
        ))
    };
    let cents = |c: u32| Money::from_minor_units(i64::from(c), Currency::USD);
    Some(match op {
        Op::Upload(m) => {
            let id = format!("rec{}", ids.records.len());
            ids.records.push(id.clone());
            upload(&id, "p1", &member_name(*m))
        }
        Op::Remix(m, sources) => {
            let sources: Vec<String> = sources
                .iter()
                .filter_map(|s| ids.record(*s).map(str::to_string))
                .collect();
            let id = format!("rec{}", ids.records.len());
            ids.records.push(id.clone());
            let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
            remix(&id, "p1", &member_name(*m), &sources)
        }
        Op::Cite(a, b) => cite(ids.record(*a)?, ids.record(*b)?),
        Op::Withdraw(r) => withdraw(ids.record(*r)?),
        Op::Include(r) => include("pr1", ids.record(*r)?),
        Op::IncludeRecent(n) => include(
            "pr1",
            ids.records.get(ids.records.len().checked_sub(n + 1)?)?,
        ),
        Op::Revenue(c) => revenue("pr1", cents(*c)),
        Op::Expense(c) => expense("pr1", cents(*c)),
        Op::Propose(members) => {
            let id = format!("d{}", ids.distributions.len());
            ids.distributions.push(id.clone());
            propose(&id, "pr1", payable_lines(harness, members).await)
        }
        Op::Comment(author, line) => {
            let distribution_id = distribution(&ids.distribution()?);
            let id = format!("k{}", ids.comments.len());
            ids.comments.push(id.clone());
            let on = match line {
                Some(m) => CommentOn::Line {
                    distribution_id,
                    member: member(&member_name(*m)),
                },
                None => CommentOn::Distribution(distribution_id),
            };
            post(&id, &member_name(*author), false, on)
        }
        Op::Reply(parent, staff) => {
            if ids.comments.is_empty() {
                return None;
            }
            let parent = ids.comments[parent % ids.comments.len()].clone();
            let id = format!("k{}", ids.comments.len());
            ids.comments.push(id.clone());
            let author = if *staff {
                "staff".to_string()
            } else {
                member_name(0)
            };
            post(&id, &author, *staff, CommentOn::Reply(comment(&parent)))
        }
        Op::Amend(remove, lines) => {
            let distribution_id = ids.distribution()?;
            let lines = payable_lines(harness, lines).await;
            let remove: Vec<String> = remove.iter().map(|m| member_name(*m)).collect();
            let remove: Vec<&str> = remove.iter().map(String::as_str).collect();
            let answers: Vec<&str> = ids
                .comments
                .iter()
                .rev()
                .take(1)
                .map(String::as_str)
                .collect();
            amend(&distribution_id, &answers, &remove, lines)
        }
        Op::Advance(_) | Op::AnswerAll => return None,
        Op::PayLeadFee => Command::IssuePayouts(IssuePayouts::LeadFee {
            project_id: project("p1"),
            lead: member(&member_name(3)),
        }),
        Op::Finalize => finalize(&ids.distribution()?),
        Op::Issue => issue_payouts(&ids.distribution()?),
        Op::Settle(m) => settle(&payout(ids, *m)?),
        Op::Fail(m) => fail(&payout(ids, *m)?),
        Op::Retry(m) => retry(&payout(ids, *m)?),
    })
}

/// Registers the members and staff, starts `p1` and opens `pr1` with a one-hour window.
pub async fn start(harness: &Harness) {
    for name in (0..MEMBERS).map(member_name).chain(["staff".to_string()]) {
        harness.ok(register(&name)).await;
    }
    harness.ok(start_project("p1")).await;
    harness
        .ok(open_production_with_window(
            "pr1",
            "p1",
            Duration::from_secs(3_600),
        ))
        .await;
}

/// Plays one step: advances the clock, answers every waiting comment, or sends the step's
/// command. `None` when no command was sent; after a refusal, `ids` forgets the ids the
/// refused command would have created.
pub async fn play(
    harness: &Harness,
    ids: &mut Ids,
    op: &Op,
) -> Option<Result<CommandOutcome, CommandError>> {
    match op {
        Op::Advance(hours) => {
            harness
                .clock
                .advance(Duration::from_secs(3_600 * u64::from(*hours)));
            return None;
        }
        Op::AnswerAll => {
            answer_all(harness, ids).await;
            return None;
        }
        _ => {}
    }
    let known = (
        ids.records.len(),
        ids.comments.len(),
        ids.distributions.len(),
    );
    let command = command(harness, ids, op).await?;
    let result = harness.execute(command).await;
    if result.is_err() {
        ids.records.truncate(known.0);
        ids.comments.truncate(known.1);
        ids.distributions.truncate(known.2);
    }
    Some(result)
}
