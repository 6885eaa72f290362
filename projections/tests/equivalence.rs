//! For random command sequences run through the real decider on a real store, the read
//! models kept current incrementally, the ones rebuilt from scratch, and the ones restored
//! from a snapshot taken midway plus the tail, all store the same thing; and the
//! allocation blockers agree with the domain's at the end.

mod support;

use std::time::Duration;

use ledger::decider::CommandError;
use ledger::domain::commands::CommentOn;
use ledger::domain::decide::finalization_blockers;
use ledger::domain::events::Line;
use ledger::domain::ids::{DistributionId, MemberId, PayoutId, RecordId};
use ledger::domain::Command;
use projections::serving::ReadModels;
use proptest::prelude::*;
use support::*;

const MEMBERS: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    Upload(usize),
    Remix(usize, Vec<usize>),
    Cite(usize, usize),
    Withdraw(usize),
    Include(usize),
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
    /// Staff replies to every member comment still waiting for one.
    AnswerAll,
}

/// Every case ends with a distribution taken through its whole life, so each case
/// exercises finalization, payouts, failures and retries whatever came before.
fn tail() -> Vec<Op> {
    vec![
        Op::Upload(0),
        Op::Upload(1),
        Op::Remix(2, vec![0, 1]),
        Op::Include(0),
        Op::Include(1),
        Op::Revenue(900_000),
        Op::Comment(3, None),
        Op::AnswerAll,
        Op::Advance(2),
        Op::Finalize,
        Op::Issue,
        Op::Propose(vec![(0, 1), (1, 2), (2, 3), (3, 1)]),
        Op::Comment(1, Some(1)),
        Op::Reply(0, false),
        Op::Amend(vec![3], vec![(1, 4)]),
        Op::AnswerAll,
        Op::Advance(2),
        Op::Finalize,
        Op::Issue,
        Op::Fail(1),
        Op::Retry(1),
        Op::Settle(0),
        Op::Settle(1),
        Op::Settle(2),
    ]
}

fn op() -> impl Strategy<Value = Op> {
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
    ]
}

fn member_name(index: usize) -> String {
    format!("m{index}")
}

/// What the test remembers to turn indices into ids.
#[derive(Default)]
struct Ids {
    records: Vec<String>,
    comments: Vec<String>,
    distributions: Vec<String>,
}

impl Ids {
    fn record(&self, index: usize) -> Option<&str> {
        (!self.records.is_empty()).then(|| self.records[index % self.records.len()].as_str())
    }

    fn distribution(&self) -> Option<DistributionId> {
        self.distributions.last().map(|d| distribution(d))
    }
}

/// Lines for `members` that the decider would accept: each pays for the member's records
/// that are included in the production or ancestors of included ones.
async fn payable_lines(world: &World, members: &[(usize, u8)]) -> Vec<Line> {
    let payable: Vec<(MemberId, RecordId)> = world
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

async fn command(world: &World, ids: &mut Ids, op: &Op) -> Option<Command> {
    let payout = |ids: &Ids, m: usize| -> Option<PayoutId> {
        Some(PayoutId::for_line(
            &ids.distribution()?,
            &member(&member_name(m)),
        ))
    };
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
        Op::Revenue(cents) => revenue(
            "pr1",
            ledger::money::Money::from_minor_units(i64::from(*cents), ledger::money::Currency::USD),
        ),
        Op::Expense(cents) => expense(
            "pr1",
            ledger::money::Money::from_minor_units(i64::from(*cents), ledger::money::Currency::USD),
        ),
        Op::Propose(members) => {
            let id = format!("d{}", ids.distributions.len());
            let lines = payable_lines(world, members).await;
            propose(&id, "pr1", lines)
        }
        Op::Comment(author, line) => {
            let distribution_id = ids.distribution()?;
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
            let lines = payable_lines(world, lines).await;
            let remove: Vec<String> = remove.iter().map(|m| member_name(*m)).collect();
            let remove: Vec<&str> = remove.iter().map(String::as_str).collect();
            let answers: Vec<&str> = ids
                .comments
                .iter()
                .rev()
                .take(1)
                .map(String::as_str)
                .collect();
            amend(distribution_id.as_str(), &answers, &remove, lines)
        }
        Op::Advance(_) | Op::AnswerAll => return None,
        Op::Finalize => finalize(ids.distribution()?.as_str()),
        Op::Issue => issue_payouts(ids.distribution()?.as_str()),
        Op::Settle(m) => settle(&payout(ids, *m)?),
        Op::Fail(m) => fail(&payout(ids, *m)?),
        Op::Retry(m) => retry(&payout(ids, *m)?),
    })
}

async fn answer_all(world: &World, ids: &mut Ids) {
    let Some(distribution_id) = ids.distribution() else {
        return;
    };
    let unanswered: Vec<String> = world
        .handle
        .inspect(move |state| {
            state
                .distribution(&distribution_id)
                .map(|d| d.unanswered.iter().map(|c| c.to_string()).collect())
                .unwrap_or_default()
        })
        .await
        .unwrap();
    for parent in unanswered {
        let id = format!("k{}", ids.comments.len());
        ids.comments.push(id.clone());
        world
            .ok(post(&id, "staff", true, CommentOn::Reply(comment(&parent))))
            .await;
    }
}

async fn run_case(ops: Vec<Op>, snapshot_at: usize) -> Result<(), TestCaseError> {
    let world = World::new().await;
    for name in (0..MEMBERS).map(member_name).chain(["staff".to_string()]) {
        world.ok(register(&name)).await;
    }
    world.ok(start_project("p1")).await;
    world
        .ok(open_production(
            "pr1",
            "p1",
            Some(Duration::from_secs(3_600)),
        ))
        .await;
    let directory = world.snapshot_directory();
    let incremental = ReadModels::start(world.store.clone(), Some(directory.clone())).await;
    let mut ids = Ids::default();
    let mut snapshot_position = None;
    for (index, op) in ops.iter().enumerate() {
        if index == snapshot_at.min(ops.len() - 1) {
            let head = world.head().await;
            caught_up(&incremental, head).await;
            incremental.write_snapshots().await.unwrap();
            snapshot_position = Some(head);
        }
        if let Op::Advance(hours) = op {
            world
                .clock
                .advance(Duration::from_secs(3_600) * u32::from(*hours));
        }
        if let Op::AnswerAll = op {
            answer_all(&world, &mut ids).await;
        }
        if let Some(command) = command(&world, &mut ids, op).await {
            match world.execute(command).await {
                Ok(_) => {
                    if let Op::Propose(_) = op {
                        ids.distributions
                            .push(format!("d{}", ids.distributions.len()));
                    }
                }
                Err(CommandError::Rejected(_)) => {}
                Err(other) => panic!("{op:?}: {other}"),
            }
        }
    }
    let head = world.head().await;
    caught_up(&incremental, head).await;
    let scratch = ReadModels::start(world.store.clone(), None).await;
    caught_up(&scratch, head).await;
    let restored = ReadModels::start(world.store.clone(), Some(directory)).await;
    for started in restored.started() {
        prop_assert_eq!(
            started.snapshot.map(|c| c.position),
            snapshot_position,
            "{:?}",
            started
        );
    }
    caught_up(&restored, head).await;
    let incremental_encoded = encoded(&incremental);
    prop_assert!(
        incremental_encoded == encoded(&scratch),
        "incremental ≠ from scratch"
    );
    prop_assert!(
        incremental_encoded == encoded(&restored),
        "incremental ≠ snapshot + tail"
    );

    // The allocation model's blockers are the domain's, for every distribution, now.
    let now = ledger::time::Clock::now(world.clock.as_ref());
    for id in ids.distributions.iter().map(|d| distribution(d)) {
        let ours = incremental
            .allocations
            .query_now(|m| m.distribution(&id, now).map(|v| v.blockers))
            .value;
        let theirs = world
            .handle
            .inspect({
                let id = id.clone();
                move |state| {
                    state.distribution(&id).map(|d| {
                        if d.amounts.is_some() {
                            Vec::new()
                        } else {
                            finalization_blockers(state, d, now).0
                        }
                    })
                }
            })
            .await
            .unwrap();
        prop_assert_eq!(ours, theirs, "blockers of {}", id);
    }
    // Credits name the members the domain's `State::credits` names.
    let ours = incremental
        .credits
        .query_now(|m| {
            m.production(&production("pr1")).map(|c| {
                let names = |credits: &[projections::credits::Credit]| -> Vec<String> {
                    credits.iter().map(|c| c.member.to_string()).collect()
                };
                (names(&c.included), names(&c.influencing))
            })
        })
        .value;
    let theirs = world
        .handle
        .inspect(|state| {
            state.production(&production("pr1")).map(|p| {
                let credits = state.credits(p);
                let names = |set: &std::collections::BTreeSet<MemberId>| -> Vec<String> {
                    set.iter().map(|m| m.to_string()).collect()
                };
                (names(&credits.paid), names(&credits.influence))
            })
        })
        .await
        .unwrap();
    prop_assert_eq!(ours, theirs);
    incremental.stop().await;
    scratch.stop().await;
    restored.stop().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_rebuilt_equals_snapshot_plus_tail(
        ops in prop::collection::vec(op(), 0..40),
        snapshot_at in 0usize..64,
    ) {
        let ops: Vec<Op> = ops.into_iter().chain(tail()).collect();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run_case(ops, snapshot_at))?;
    }
}
