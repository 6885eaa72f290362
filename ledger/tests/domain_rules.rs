//! The rules of DOMAIN.md, decided purely: given the fixture's events, when a command,
//! then these events or this rejection.

mod common;

use std::collections::HashMap;

use common::*;
use ledger::domain::commands::*;
use ledger::domain::events::*;
use ledger::domain::ids::*;
use ledger::domain::rejection::{Blocker, Rejection};
use ledger::domain::state::PayoutStatus;
use ledger::domain::{Command, DomainEvent};
use ledger::money::{self, Money};
use ledger::store::{validate_append, Actor, AppendRequest, CommandId, ServiceName};
use proptest::prelude::*;

/// Each refusal against its own copy of `world`'s state, so none can change what the next
/// one sees.
fn assert_refused(world: &World, refusals: Vec<Refusal>) {
    for refusal in refusals {
        let mut attempt = World {
            state: world.state.clone(),
            now: refusal.at,
        };
        let rejection = attempt.refused(refusal.command);
        assert_eq!(rejection, refusal.expected, "{}", refusal.name);
    }
}

#[test]
fn every_refusal_names_its_field_and_rule() {
    assert_refused(&World::with_fixture(), refusals());
}

#[test]
fn every_refusal_of_the_later_states_names_its_field_and_rule() {
    let mut world = World::with_fixture();
    for (at, command) in late_fixture() {
        world.now = at;
        world.ok(command);
    }
    assert_refused(&world, late_refusals());
}

#[test]
fn the_blockers_read_as_one_message() {
    let mut world = World::with_fixture();
    let message = world.refused(finalize("d1")).to_string();
    assert!(
        message.contains("window is open until 2026-01-15T00:00:00.000000Z"),
        "{message}"
    );
    assert!(
        message.contains("member comments k1 have no staff reply"),
        "{message}"
    );
    assert!(
        message.contains("contributors dave of included records have no line"),
        "{message}"
    );
}

/// The fixture's distribution carried through: staff reply, amendment, finalization,
/// payouts, and every refusal that only the later states allow.
#[test]
fn a_distribution_from_proposal_to_settled_payouts() {
    let mut world = World::with_fixture();
    world.ok(post("k2", "staff", true, CommentOn::Reply(comment("k1"))));
    let amended = world.ok(amend(
        "d1",
        &["k1"],
        &[],
        vec![line("dave", "1", &["d"]), line("bob", "2.5", &["b"])],
    ));
    assert!(
        matches!(&amended[0], DomainEvent::AllocationAmended(a) if a.answers == vec![comment("k1")])
    );
    let lines = &world.state.distribution(&distribution("d1")).unwrap().lines;
    let members: Vec<&str> = lines.iter().map(|l| l.member.as_str()).collect();
    assert_eq!(
        members,
        ["carol", "bob", "alice", "dave"],
        "a replaced line keeps its place"
    );
    assert_eq!(lines[1].weight, weight("2.5"));

    // A member may comment until the window closes; staff may still answer after it.
    world.now = t0().saturating_add(14 * DAY);
    assert!(matches!(
        world.refused(post(
            "k3",
            "alice",
            false,
            CommentOn::Distribution(distribution("d1"))
        )),
        Rejection::WindowClosed { .. }
    ));
    world.ok(post(
        "k4",
        "staff",
        true,
        CommentOn::Distribution(distribution("d1")),
    ));
    let finalized = world.ok(finalize("d1"));
    let DomainEvent::AllocationFinalized(finalized) = &finalized[0] else {
        panic!()
    };
    // Pool: (50,000 − 2,000 expenses − 1,000 lead fee) × 0.5 = 23,500.
    assert_eq!(finalized.pool, usd("23500"));
    assert_eq!(
        money::sum(finalized.pool.currency(), &finalized.amounts).unwrap(),
        usd("23500")
    );
    // Weights 3, 2.5, 1, 1 (7.5): 9400, 7833.33⅓, 3133.33⅓, 3133.33⅓; three lines tie on
    // the remainder, so the one leftover cent goes to the earliest of them (bob).
    assert_eq!(
        finalized.amounts,
        vec![usd("9400"), usd("7833.34"), usd("3133.33"), usd("3133.33")]
    );
    assert_eq!(
        world.refused(finalize("d1")),
        Rejection::AlreadyFinalized {
            distribution_id: distribution("d1")
        }
    );
    assert_eq!(
        world.refused(amend("d1", &[], &[], vec![line("alice", "9", &["a"])])),
        Rejection::AlreadyFinalized {
            distribution_id: distribution("d1")
        }
    );

    let issued = world.ok(Command::IssuePayouts(IssuePayouts::Distribution(
        distribution("d1"),
    )));
    assert_eq!(issued.len(), 4);
    let payouts: Vec<(PayoutId, Money)> = issued
        .iter()
        .map(|event| match event {
            DomainEvent::PayoutIssued(p) => (p.payout_id.clone(), p.amount),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        payouts[0].0,
        PayoutId::for_line(&distribution("d1"), &member("carol"))
    );
    let total = money::sum(
        payouts[0].1.currency(),
        &payouts.iter().map(|p| p.1).collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(total, usd("23500"), "Σ payouts = pool (rule 8)");
    assert_eq!(
        world.refused(Command::IssuePayouts(IssuePayouts::Distribution(
            distribution("d1")
        ))),
        Rejection::PayoutAlreadyIssued {
            field: "distribution_id",
            payout_id: payouts[0].0.clone()
        }
    );

    // Settle, fail, retry.
    let carol = payouts[0].0.clone();
    let settle = |reference: &str| {
        Command::SettlePayout(SettlePayout {
            payout_id: carol.clone(),
            reference: reference.into(),
        })
    };
    let fail = Command::FailPayout(FailPayout {
        payout_id: carol.clone(),
        reason: "bank refused".into(),
    });
    let retry = Command::RetryPayout(RetryPayout {
        payout_id: carol.clone(),
    });
    assert_eq!(
        world.refused(retry.clone()),
        Rejection::PayoutState {
            payout_id: carol.clone(),
            status: "pending",
            required: "failed"
        }
    );
    world.ok(fail.clone());
    assert_eq!(
        world.refused(settle("x")),
        Rejection::PayoutState {
            payout_id: carol.clone(),
            status: "failed",
            required: "pending"
        }
    );
    assert_eq!(
        world.ok(retry.clone()),
        vec![DomainEvent::PayoutRetried(PayoutRetried {
            payout_id: carol.clone(),
            attempt: 2
        })]
    );
    assert_eq!(
        world.ok(settle("tx-1")),
        vec![DomainEvent::PayoutSettled(PayoutSettled {
            payout_id: carol.clone(),
            attempt: 2,
            reference: "tx-1".into()
        })]
    );
    assert_eq!(
        world.state.payout(&carol).unwrap().status,
        PayoutStatus::Settled
    );

    // The lead's fee: one payout, once.
    let lead_fee = Command::IssuePayouts(IssuePayouts::LeadFee {
        project_id: project("p1"),
        lead: member("lead"),
    });
    let issued = world.ok(lead_fee.clone());
    assert!(matches!(&issued[0], DomainEvent::PayoutIssued(p) if p.amount == usd("1000")));
    assert_eq!(
        world.refused(lead_fee),
        Rejection::PayoutAlreadyIssued {
            field: "lead",
            payout_id: PayoutId::for_lead_fee(&project("p1"), &member("lead"))
        }
    );

    // The next distribution gets only what was earned since.
    world.ok(revenue("pr1", usd("1000")));
    let proposed = world.ok(propose(
        "d2",
        "pr1",
        vec![line("carol", "1", &["c"]), line("dave", "1", &["d"])],
    ));
    let DomainEvent::AllocationProposed(proposed) = &proposed[0] else {
        panic!()
    };
    assert_eq!(proposed.earlier_pools, usd("23500"));
    assert_eq!(proposed.pool, usd("500"));
}

#[test]
fn settled_and_retried_payouts_refuse_what_their_state_forbids() {
    let mut world = World::with_fixture();
    let lead_fee = Command::IssuePayouts(IssuePayouts::LeadFee {
        project_id: project("p1"),
        lead: member("lead"),
    });
    world.ok(lead_fee);
    let payout_id = PayoutId::for_lead_fee(&project("p1"), &member("lead"));
    world.ok(Command::SettlePayout(SettlePayout {
        payout_id: payout_id.clone(),
        reference: "tx".into(),
    }));
    for (command, required) in [
        (
            Command::SettlePayout(SettlePayout {
                payout_id: payout_id.clone(),
                reference: "tx".into(),
            }),
            "pending",
        ),
        (
            Command::FailPayout(FailPayout {
                payout_id: payout_id.clone(),
                reason: "no".into(),
            }),
            "pending",
        ),
        (
            Command::RetryPayout(RetryPayout {
                payout_id: payout_id.clone(),
            }),
            "failed",
        ),
    ] {
        assert_eq!(
            world.refused(command),
            Rejection::PayoutState {
                payout_id: payout_id.clone(),
                status: "settled",
                required
            }
        );
    }
}

#[test]
fn a_line_that_would_pay_nothing_blocks_finalization() {
    let mut world = World::with_fixture();
    world.ok(post("k2", "staff", true, CommentOn::Reply(comment("k1"))));
    // 0.000001 of a weight of ~6: far below a cent, and the leftover cent goes elsewhere.
    world.ok(amend(
        "d1",
        &[],
        &[],
        vec![line("dave", "0.000001", &["d"]), line("bob", "2.4", &["b"])],
    ));
    world.now = t0().saturating_add(15 * DAY);
    assert_eq!(
        world.refused(finalize("d1")),
        Rejection::FinalizationBlocked {
            distribution_id: distribution("d1"),
            blockers: vec![Blocker::LinesWithZeroAmount {
                members: vec![member("dave")]
            }],
        }
    );
}

#[test]
fn credits_name_the_included_contributors_and_their_influences() {
    let mut world = World::with_fixture();
    let credits = world
        .state
        .credits(world.state.production(&production("pr1")).unwrap());
    let names = |set: &std::collections::BTreeSet<MemberId>| {
        set.iter().map(|m| m.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(names(&credits.paid), ["carol", "dave"]);
    assert_eq!(names(&credits.influence), ["alice", "bob"]);
    // "You forgot to source me": a late citation credits the lead's piece as an influence
    // on dave's included record; alice, already credited, is listed once.
    world.ok(upload("e", "p1", "lead"));
    world.ok(cite("d", "e"));
    world.ok(cite("d", "a"));
    let credits = world
        .state
        .credits(world.state.production(&production("pr1")).unwrap());
    assert_eq!(names(&credits.paid), ["carol", "dave"]);
    assert_eq!(names(&credits.influence), ["alice", "bob", "lead"]);
}

#[test]
fn erasure_is_recorded_once() {
    let mut world = World::with_fixture();
    let erase = Command::ErasePersonalData(ErasePersonalData {
        member_id: member("bob"),
    });
    world.ok(erase.clone());
    assert_eq!(
        world.refused(erase),
        Rejection::AlreadyErased {
            member_id: member("bob")
        }
    );
    // Bob's lines and payouts stay valid under his pseudonymous id.
    assert!(world
        .state
        .distribution(&distribution("d1"))
        .unwrap()
        .line_index
        .contains_key(&member("bob")));
}

#[test]
fn every_event_round_trips_through_its_stored_encoding() {
    let mut world = World::new();
    let mut events = Vec::new();
    for command in fixture() {
        events.extend(world.ok(command));
    }
    world.ok(post("k2", "staff", true, CommentOn::Reply(comment("k1"))));
    events.extend(world.ok(amend("d1", &["k1"], &[], vec![line("dave", "1", &["d"])])));
    world.now = t0().saturating_add(15 * DAY);
    events.extend(world.ok(finalize("d1")));
    events.extend(world.ok(Command::IssuePayouts(IssuePayouts::Distribution(
        distribution("d1"),
    ))));
    let carol = PayoutId::for_line(&distribution("d1"), &member("carol"));
    events.extend(world.ok(Command::FailPayout(FailPayout {
        payout_id: carol.clone(),
        reason: "closed account".into(),
    })));
    events.extend(world.ok(Command::RetryPayout(RetryPayout {
        payout_id: carol.clone(),
    })));
    events.extend(world.ok(Command::SettlePayout(SettlePayout {
        payout_id: carol,
        reference: "tx".into(),
    })));
    events.extend(world.ok(cite("d", "a")));
    events.extend(world.ok(Command::FinishProject(FinishProject {
        project_id: project("p2"),
    })));
    events.extend(world.ok(Command::ErasePersonalData(ErasePersonalData {
        member_id: member("bob"),
    })));
    let mut types = std::collections::BTreeSet::new();
    for event in &events {
        let stored = event.to_proposed();
        assert_eq!(stored.stream_id, event.stream().stream_id());
        let back = DomainEvent::decode(
            stored.event_type.as_str(),
            stored.schema_version,
            &stored.payload,
        )
        .unwrap();
        assert_eq!(&back, event);
        types.insert(event.event_type());
    }
    // Every event type but the continuation of long proposals (tested below) occurs.
    assert_eq!(types.len(), 22, "{types:?}");
}

#[test]
fn stream_ids_follow_the_scheme() {
    let cases: Vec<(DomainEvent, &str)> = vec![
        (
            MemberPersonalDataErased {
                member_id: member("m1"),
            }
            .into(),
            "member-m1",
        ),
        (
            ProjectFinished {
                project_id: project("p1"),
            }
            .into(),
            "project-p1",
        ),
        (
            SourceCited {
                record_id: record("r1"),
                source_id: record("r0"),
            }
            .into(),
            "record-r1",
        ),
        (
            RecordIncluded {
                production_id: production("pr1"),
                record_id: record("r1"),
            }
            .into(),
            "production-pr1",
        ),
        (
            CommentPosted {
                comment_id: comment("k1"),
                author: member("m1"),
                staff: false,
                target: CommentTarget::Line {
                    distribution_id: distribution("d1"),
                    member: member("m1"),
                },
                reply_to: None,
                body: "x".into(),
            }
            .into(),
            "distribution-d1",
        ),
        (
            PayoutIssued {
                payout_id: PayoutId::new("po-1").unwrap(),
                member: member("m1"),
                amount: usd("1"),
                payout_for: PayoutFor::LeadFee {
                    project_id: project("p1"),
                },
            }
            .into(),
            "project-p1",
        ),
        (
            PayoutSettled {
                payout_id: PayoutId::new("po-1").unwrap(),
                attempt: 1,
                reference: "r".into(),
            }
            .into(),
            "payout-po-1",
        ),
    ];
    for (event, stream) in cases {
        assert_eq!(event.stream().stream_id().as_str(), stream);
    }
}

/// 10,000 lines and 10,000 payouts: each one append within the store's bounds.
#[test]
fn ten_thousand_lines_fit_the_store_limits() {
    let mut world = World::new();
    let member_count = 10_000;
    world.ok(start_project("p"));
    world.ok(open_production("pr", "p"));
    for i in 0..member_count {
        let id = format!("m{i}");
        world.ok(register(&id));
        world.ok(upload(&format!("r{i}"), "p", &id));
        world.ok(include("pr", &format!("r{i}")));
    }
    world.ok(revenue("pr", usd("50000")));
    let rationale = "x".repeat(1_000);
    let lines: Vec<Line> = (0..member_count)
        .map(|i| Line {
            rationale: rationale.clone(),
            ..line(&format!("m{i}"), "1.5", &[&format!("r{i}")])
        })
        .collect();
    let events = world.ok(propose("d", "pr", lines));
    assert_append_fits(&events);
    assert!(events.len() > 1, "split over several events");
    assert!(matches!(
        &events[1],
        DomainEvent::AllocationLinesContinued(_)
    ));
    assert_eq!(
        world
            .state
            .distribution(&distribution("d"))
            .unwrap()
            .lines
            .len(),
        member_count
    );

    world.now = t0().saturating_add(15 * DAY);
    assert_append_fits(&world.ok(finalize("d")));
    let payouts = world.ok(Command::IssuePayouts(IssuePayouts::Distribution(
        distribution("d"),
    )));
    assert_eq!(payouts.len(), member_count);
    assert_append_fits(&payouts);
    // 25,000.00 over 10,000 equal lines: 2.50 each.
    assert!(payouts
        .iter()
        .all(|p| matches!(p, DomainEvent::PayoutIssued(p) if p.amount == usd("2.50"))));
}

fn assert_append_fits(events: &[DomainEvent]) {
    let request = AppendRequest {
        command_id: CommandId::new("c").unwrap(),
        correlation_id: None,
        causation_id: None,
        actor: Actor {
            service: ServiceName::new("finance").unwrap(),
            on_behalf_of: None,
        },
        expectations: Vec::new(),
        events: events.iter().map(DomainEvent::to_proposed).collect(),
    };
    if let Err(error) = validate_append(&request) {
        panic!("{} events refused by the store: {error}", events.len());
    }
}

/// A citation attempt: (citing record, cited record) by index into the records so far.
fn citations() -> impl Strategy<Value = (usize, Vec<(usize, usize)>)> {
    (2usize..30).prop_flat_map(|count| {
        (
            Just(count),
            prop::collection::vec((0..count, 0..count), 0..120),
        )
    })
}

fn reaches(edges: &HashMap<usize, Vec<usize>>, from: usize, to: usize) -> bool {
    let mut stack = vec![from];
    let mut seen = std::collections::HashSet::new();
    while let Some(node) = stack.pop() {
        if node == to {
            return true;
        }
        if seen.insert(node) {
            stack.extend(edges.get(&node).into_iter().flatten().copied());
        }
    }
    false
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever citations are attempted, the decider accepts exactly those that keep the
    /// family tree acyclic (checked by brute force), and the tree never has a cycle.
    #[test]
    fn citations_never_close_a_cycle((count, attempts) in citations()) {
        let mut world = World::new();
        world.ok(register("m"));
        world.ok(start_project("p"));
        for i in 0..count {
            world.ok(upload(&format!("r{i}"), "p", "m"));
        }
        // source → citing record, as in the tree.
        let mut edges: HashMap<usize, Vec<usize>> = HashMap::new();
        for (citing, source) in attempts {
            let result = world.run(&cite(&format!("r{citing}"), &format!("r{source}")));
            let already = edges.get(&source).is_some_and(|e| e.contains(&citing));
            let closes_cycle = citing == source || reaches(&edges, citing, source);
            match result {
                Ok(_) => {
                    prop_assert!(!closes_cycle && !already);
                    edges.entry(source).or_default().push(citing);
                }
                Err(Rejection::Cycle { .. }) => prop_assert!(closes_cycle && citing != source),
                Err(Rejection::SelfCitation { .. }) => prop_assert_eq!(citing, source),
                Err(Rejection::AlreadyCited { .. }) => prop_assert!(already),
                Err(other) => prop_assert!(false, "unexpected {}", other),
            }
            prop_assert!(world.state.tree().order_is_topological());
        }
    }

    /// Whatever revenue, expenses and distributions come in whatever order, each
    /// distribution brings the production's pools up to the entitlement at its cut-off
    /// and no further, and the pools never exceed an entitlement the production reached.
    #[test]
    fn pools_never_exceed_the_entitlement(steps in prop::collection::vec((0u8..3, 1i64..=2_000_000), 1..25)) {
        let mut world = World::new();
        world.ok(register("m"));
        world.ok(start_project("p"));
        world.ok(upload("r", "p", "m"));
        world.ok(open_production("pr", "p"));
        world.ok(include("pr", "r"));
        let (mut revenue_total, mut expense_total) = (usd("0"), usd("0"));
        let mut entitlement_max = usd("0");
        for (index, (kind, cents)) in steps.into_iter().enumerate() {
            let amount = Money::from_minor_units(cents, ledger::money::Currency::USD);
            match kind {
                0 => {
                    world.ok(revenue("pr", amount));
                    revenue_total = revenue_total.checked_add(amount).unwrap();
                }
                1 => {
                    world.ok(expense("pr", amount));
                    expense_total = expense_total.checked_add(amount).unwrap();
                }
                _ => {
                    let id = format!("d{index}");
                    match world.run(&propose(&id, "pr", vec![line("m", "1", &["r"])])) {
                        Ok(_) => {
                            world.now = world.now.saturating_add(15 * DAY);
                            world.ok(finalize(&id));
                            let entitled = money::entitlement(
                                revenue_total.checked_sub(expense_total).unwrap(),
                                ledger::money::ArtistShare::half(),
                            );
                            let pools = world.state.production(&production("pr")).unwrap().pools_total;
                            prop_assert_eq!(pools, entitled);
                        }
                        Err(Rejection::Pool(_)) => {}
                        Err(other) => prop_assert!(false, "unexpected {}", other),
                    }
                }
            }
            let entitled = money::entitlement(
                revenue_total.checked_sub(expense_total).unwrap(),
                ledger::money::ArtistShare::half(),
            );
            if entitled.amount() > entitlement_max.amount() {
                entitlement_max = entitled;
            }
            let pools = world.state.production(&production("pr")).unwrap().pools_total;
            prop_assert!(pools.amount() <= entitlement_max.amount());
        }
    }

    /// Whatever finance does with a distribution's payouts, no payout settles twice, each
    /// attempt ends once, and what settles never exceeds the pool.
    #[test]
    fn payouts_are_never_paid_twice(actions in prop::collection::vec((0u8..5, 0usize..4), 0..60)) {
        let mut world = World::with_fixture();
        world.ok(post("k2", "staff", true, CommentOn::Reply(comment("k1"))));
        world.ok(amend("d1", &["k1"], &[], vec![line("dave", "1", &["d"])]));
        world.now = t0().saturating_add(15 * DAY);
        world.ok(finalize("d1"));
        let members = ["carol", "bob", "alice", "dave"];
        let mut settled: HashMap<usize, u32> = HashMap::new();
        let mut issued = 0;
        for (action, index) in actions {
            let payout_id = PayoutId::for_line(&distribution("d1"), &member(members[index]));
            let command = match action {
                0 => Command::IssuePayouts(IssuePayouts::Distribution(distribution("d1"))),
                1 => Command::SettlePayout(SettlePayout { payout_id, reference: "tx".into() }),
                2 => Command::FailPayout(FailPayout { payout_id, reason: "bounced".into() }),
                _ => Command::RetryPayout(RetryPayout { payout_id }),
            };
            if let Ok(events) = world.run(&command) {
                for event in events {
                    match event {
                        DomainEvent::PayoutIssued(_) => issued += 1,
                        DomainEvent::PayoutSettled(_) => *settled.entry(index).or_default() += 1,
                        _ => {}
                    }
                }
            }
        }
        prop_assert!(issued == 0 || issued == 4, "one payout per line, once");
        prop_assert!(settled.values().all(|count| *count == 1));
        let paid: Vec<Money> = settled
            .keys()
            .map(|index| world.state.payout(&PayoutId::for_line(&distribution("d1"), &member(members[*index]))).unwrap().amount)
            .collect();
        let paid = money::sum(usd("0").currency(), &paid).unwrap();
        prop_assert!(paid.amount() <= usd("23500").amount());
    }
}
