//! For random command sequences run through the real decider on a real store, the read
//! models kept current incrementally, the ones rebuilt from scratch, the ones restored
//! from a snapshot taken midway plus the tail, and ones rebuilt from the first event
//! behind an id catalog restored at the head, all store the same thing; and the
//! allocation blockers agree with the domain's at the end.

mod support;

use ledger::decider::CommandError;
use ledger::domain::ids::MemberId;
use projections::serving::ReadModels;
use proptest::prelude::*;
use stemma_testkit::sequence::{self, op, Ids, Op};
use support::*;

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

async fn run_case(ops: Vec<Op>, snapshot_at: usize) -> Result<(), TestCaseError> {
    let world = Harness::new().await;
    sequence::start(&world).await;
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
        match sequence::play(&world, &mut ids, op).await {
            None | Some(Ok(_)) | Some(Err(CommandError::Rejected(_))) => {}
            Some(Err(other)) => panic!("{op:?}: {other}"),
        }
    }
    let head = world.head().await;
    caught_up(&incremental, head).await;
    let scratch = ReadModels::start(world.store.clone(), None).await;
    caught_up(&scratch, head).await;
    let restored = ReadModels::start(world.store.clone(), Some(directory.clone())).await;
    for started in restored.started() {
        prop_assert_eq!(
            started.snapshot.map(|c| c.position),
            snapshot_position,
            "{:?}",
            started
        );
    }
    caught_up(&restored, head).await;
    // The catalog alone at the head: every model replays the whole log through a catalog
    // that already numbered all of it (as a rebuild beside serving instances does).
    incremental.write_snapshots().await.unwrap();
    for name in projections::PROJECTION_NAMES {
        std::fs::remove_file(projections::snapshot::snapshot_path(&directory, name)).unwrap();
    }
    let behind = ReadModels::start(world.store.clone(), Some(directory.clone())).await;
    prop_assert!(behind.started().iter().all(|s| s.snapshot.is_none()));
    caught_up(&behind, head).await;
    let incremental_encoded = encoded(&incremental);
    prop_assert!(
        incremental_encoded == encoded(&behind),
        "incremental ≠ from scratch behind a catalog at the head"
    );
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
        let theirs = world.domain_blockers(&id, now).await;
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
    behind.stop().await;
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
