//! Data shared by the domain tests: a small world (`fixture`) and every command it must
//! refuse (`refusals`), used both by the pure tests (decide/evolve) and by the decider tests
//! (through the store, checking the log does not grow). The builders, the store-backed
//! harness and the TV episode are in `stemma-testkit`, re-exported here.
#![allow(dead_code)]

use std::time::Duration;

pub use stemma_testkit::*;

use ledger::domain::commands::*;
use ledger::domain::events::Line;
use ledger::domain::ids::*;
use ledger::domain::rejection::{Blocker, Entity, Rejection};
use ledger::domain::{decide, evolve, Command, DomainEvent, State};
use ledger::money::{Currency, Money, MoneyError, PoolError};
use ledger::time::Timestamp;

/// The small world every refusal is tried against. At `t0`:
/// - members alice, bob, carol, dave, lead, staff;
/// - project p1 with records a (alice), b (bob, remix of a), c (carol, remix of b),
///   d (dave), w (alice, withdrawn);
/// - production pr1 of p1 (USD), including c and d; the lead's fee of 1,000 agreed and the
///   lead assigned; revenue 50,000, expenses 2,000;
/// - distribution d1 proposed: carol 3, bob 2, alice 1 (dave has no line); bob commented
///   on his line (k1, unanswered);
/// - project p2 (no production), project p3 (finished), project p4 with production pr2
///   (no revenue) including a.
pub fn fixture() -> Vec<Command> {
    let mut commands: Vec<Command> = ["alice", "bob", "carol", "dave", "lead", "staff"]
        .iter()
        .map(|m| register(m))
        .collect();
    commands.extend([
        start_project("p1"),
        start_project("p2"),
        start_project("p3"),
        start_project("p4"),
        Command::FinishProject(FinishProject {
            project_id: project("p3"),
        }),
        upload("a", "p1", "alice"),
        remix("b", "p1", "bob", &["a"]),
        remix("c", "p1", "carol", &["b"]),
        upload("d", "p1", "dave"),
        upload("w", "p1", "alice"),
        Command::WithdrawRecord(WithdrawRecord {
            record_id: record("w"),
            reason: "uploaded by mistake".into(),
        }),
        open_production("pr1", "p1"),
        open_production("pr2", "p4"),
        include("pr1", "c"),
        include("pr1", "d"),
        include("pr2", "a"),
        Command::AgreeLeadFee(AgreeLeadFee {
            project_id: project("p1"),
            lead: member("lead"),
            fee: usd("1000"),
        }),
        Command::AssignLead(AssignLead {
            project_id: project("p1"),
            lead: member("lead"),
        }),
        revenue("pr1", usd("50000")),
        expense("pr1", usd("2000")),
        propose(
            "d1",
            "pr1",
            vec![
                line("carol", "3", &["c"]),
                line("bob", "2", &["b"]),
                line("alice", "1", &["a"]),
            ],
        ),
        post("k1", "bob", false, on_line("d1", "bob")),
    ]);
    commands
}

/// A command the fixture must refuse, when, and with what.
pub struct Refusal {
    pub name: &'static str,
    pub command: Command,
    pub at: Timestamp,
    pub expected: Rejection,
}

fn not_found(field: &'static str, entity: Entity, id: &str) -> Rejection {
    Rejection::NotFound {
        field,
        entity,
        id: id.into(),
    }
}

fn exists(field: &'static str, entity: Entity, id: &str) -> Rejection {
    Rejection::AlreadyExists {
        field,
        entity,
        id: id.into(),
    }
}

/// Every refusal the fixture allows to be checked, one or more per rule and limit.
pub fn refusals() -> Vec<Refusal> {
    let soon = t0().saturating_add(Duration::from_secs(3_600));
    let after_window = t0().saturating_add(15 * DAY);
    let window_closes = t0().saturating_add(14 * DAY);
    let refusal = |name, command, expected| Refusal {
        name,
        command,
        at: soon,
        expected,
    };
    let mut long_handle = register("zed");
    if let Command::RegisterMember(c) = &mut long_handle {
        c.handle = "h".repeat(65);
    }
    let mut empty_handle = register("zed");
    if let Command::RegisterMember(c) = &mut empty_handle {
        c.handle = " ".into();
    }
    let mut no_terms = upload_record("new", "p1", "alice");
    no_terms.licence_terms_version = String::new();
    let many_sources: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
    let many_sources: Vec<&str> = many_sources.iter().map(String::as_str).collect();
    let mut long_rationale = line("alice", "1", &["a"]);
    long_rationale.rationale = "r".repeat(1_001);
    let many_records = Line {
        records: (0..17).map(|i| record(&format!("x{i}"))).collect(),
        ..line("alice", "1", &["a"])
    };
    let too_many_lines: Vec<Line> = (0..10_001).map(|_| line("alice", "1", &["a"])).collect();
    let mut long_comment = post("k9", "bob", false, CommentOn::Record(record("a")));
    if let Command::PostComment(c) = &mut long_comment {
        c.body = "b".repeat(4_001);
    }
    let mut zero_window = open_production("pr9", "p2");
    if let Command::OpenProduction(c) = &mut zero_window {
        c.feedback_window_micros = Some(0);
    }
    vec![
        refusal(
            "member id taken",
            register("alice"),
            exists("member_id", Entity::Member, "alice"),
        ),
        refusal(
            "empty handle",
            empty_handle,
            Rejection::Empty { field: "handle" },
        ),
        refusal(
            "handle too long",
            long_handle,
            Rejection::TooLong {
                field: "handle",
                length_bytes: 65,
                max_bytes: 64,
            },
        ),
        refusal(
            "erase unknown member",
            Command::ErasePersonalData(ErasePersonalData {
                member_id: member("nobody"),
            }),
            not_found("member_id", Entity::Member, "nobody"),
        ),
        refusal(
            "project id taken",
            start_project("p1"),
            exists("project_id", Entity::Project, "p1"),
        ),
        refusal(
            "title too long",
            Command::StartProject(StartProject {
                project_id: project("p9"),
                title: "t".repeat(201),
            }),
            Rejection::TooLong {
                field: "title",
                length_bytes: 201,
                max_bytes: 200,
            },
        ),
        refusal(
            "lead fee without production",
            Command::AgreeLeadFee(AgreeLeadFee {
                project_id: project("p2"),
                lead: member("lead"),
                fee: usd("10"),
            }),
            Rejection::ProjectHasNoProduction {
                project_id: project("p2"),
            },
        ),
        refusal(
            "lead fee agreed twice",
            Command::AgreeLeadFee(AgreeLeadFee {
                project_id: project("p1"),
                lead: member("lead"),
                fee: usd("10"),
            }),
            Rejection::LeadFeeAlreadyAgreed {
                project_id: project("p1"),
                lead: member("lead"),
            },
        ),
        refusal(
            "lead fee in another currency",
            Command::AgreeLeadFee(AgreeLeadFee {
                project_id: project("p1"),
                lead: member("bob"),
                fee: Money::parse("10", Currency::EUR).unwrap(),
            }),
            Rejection::CurrencyMismatch {
                field: "fee",
                expected: Currency::USD,
                got: Currency::EUR,
            },
        ),
        refusal(
            "lead assigned before the fee",
            Command::AssignLead(AssignLead {
                project_id: project("p1"),
                lead: member("bob"),
            }),
            Rejection::LeadFeeNotAgreed {
                project_id: project("p1"),
                lead: member("bob"),
            },
        ),
        refusal(
            "lead assigned twice",
            Command::AssignLead(AssignLead {
                project_id: project("p1"),
                lead: member("lead"),
            }),
            Rejection::LeadAlreadyAssigned {
                project_id: project("p1"),
                lead: member("lead"),
            },
        ),
        refusal(
            "finish unknown project",
            Command::FinishProject(FinishProject {
                project_id: project("p9"),
            }),
            not_found("project_id", Entity::Project, "p9"),
        ),
        refusal(
            "finish a finished project",
            Command::FinishProject(FinishProject {
                project_id: project("p3"),
            }),
            Rejection::ProjectFinished {
                project_id: project("p3"),
            },
        ),
        refusal(
            "upload to a finished project",
            upload("new", "p3", "alice"),
            Rejection::ProjectFinished {
                project_id: project("p3"),
            },
        ),
        refusal(
            "record id taken",
            upload("a", "p1", "alice"),
            exists("record_id", Entity::Record, "a"),
        ),
        refusal(
            "upload by unknown member",
            upload("new", "p1", "nobody"),
            not_found("contributor", Entity::Member, "nobody"),
        ),
        refusal(
            "upload without licence terms",
            Command::UploadRecord(no_terms),
            Rejection::Empty {
                field: "licence_terms_version",
            },
        ),
        refusal(
            "remix without sources",
            remix("new", "p1", "bob", &[]),
            Rejection::Empty { field: "sources" },
        ),
        refusal(
            "remix with too many sources",
            remix("new", "p1", "bob", &many_sources),
            Rejection::TooMany {
                field: "sources",
                count: 65,
                max: 64,
            },
        ),
        refusal(
            "remix naming a source twice",
            remix("new", "p1", "bob", &["a", "a"]),
            Rejection::Duplicate {
                field: "sources",
                id: "a".into(),
            },
        ),
        refusal(
            "remix citing itself",
            remix("new", "p1", "bob", &["a", "new"]),
            Rejection::SelfCitation {
                record_id: record("new"),
            },
        ),
        refusal(
            "remix of a withdrawn record",
            remix("new", "p1", "bob", &["w"]),
            Rejection::RecordWithdrawn {
                field: "sources",
                record_id: record("w"),
            },
        ),
        refusal(
            "remix of an unknown record",
            remix("new", "p1", "bob", &["nope"]),
            not_found("sources", Entity::Record, "nope"),
        ),
        refusal(
            "citation closing a cycle",
            cite("a", "c"),
            Rejection::Cycle {
                record_id: record("a"),
                source_id: record("c"),
            },
        ),
        refusal(
            "record citing itself",
            cite("a", "a"),
            Rejection::SelfCitation {
                record_id: record("a"),
            },
        ),
        refusal(
            "citation made twice",
            cite("b", "a"),
            Rejection::AlreadyCited {
                record_id: record("b"),
                source_id: record("a"),
            },
        ),
        refusal(
            "citation of a withdrawn record",
            cite("d", "w"),
            Rejection::RecordWithdrawn {
                field: "source_id",
                record_id: record("w"),
            },
        ),
        refusal(
            "citation by an unknown record",
            cite("nope", "a"),
            not_found("record_id", Entity::Record, "nope"),
        ),
        refusal(
            "withdraw twice",
            Command::WithdrawRecord(WithdrawRecord {
                record_id: record("w"),
                reason: "again".into(),
            }),
            Rejection::RecordWithdrawn {
                field: "record_id",
                record_id: record("w"),
            },
        ),
        refusal(
            "comment id taken",
            post("k1", "bob", false, CommentOn::Record(record("a"))),
            exists("comment_id", Entity::Comment, "k1"),
        ),
        refusal(
            "comment too long",
            long_comment,
            Rejection::TooLong {
                field: "body",
                length_bytes: 4_001,
                max_bytes: 4_000,
            },
        ),
        refusal(
            "comment on a line that does not exist",
            post("k9", "dave", false, on_line("d1", "dave")),
            not_found("on", Entity::Line, "dave"),
        ),
        refusal(
            "reply to an unknown comment",
            post("k9", "staff", true, CommentOn::Reply(comment("nope"))),
            not_found("on", Entity::Comment, "nope"),
        ),
        Refusal {
            name: "member comment after the window",
            command: post(
                "k9",
                "alice",
                false,
                CommentOn::Distribution(distribution("d1")),
            ),
            at: after_window,
            expected: Rejection::WindowClosed {
                field: "on",
                distribution_id: distribution("d1"),
                closed_at: window_closes,
            },
        },
        refusal(
            "second production of a project",
            open_production("pr9", "p1"),
            Rejection::ProjectHasProduction {
                project_id: project("p1"),
                production_id: production("pr1"),
            },
        ),
        refusal(
            "production with an empty window",
            zero_window,
            Rejection::OutOfRange {
                field: "feedback_window_micros",
                value: "0".into(),
                rule: "must be positive and at most one year",
            },
        ),
        refusal(
            "record included twice",
            include("pr1", "c"),
            Rejection::AlreadyIncluded {
                production_id: production("pr1"),
                record_id: record("c"),
            },
        ),
        refusal(
            "withdrawn record included",
            include("pr1", "w"),
            Rejection::RecordWithdrawn {
                field: "record_id",
                record_id: record("w"),
            },
        ),
        refusal(
            "revenue in another currency",
            revenue("pr1", Money::parse("5", Currency::JPY).unwrap()),
            Rejection::CurrencyMismatch {
                field: "amount",
                expected: Currency::USD,
                got: Currency::JPY,
            },
        ),
        refusal(
            "zero revenue",
            revenue("pr1", usd("0")),
            Rejection::NotPositive {
                field: "amount",
                amount: usd("0"),
            },
        ),
        refusal(
            "negative expense",
            expense("pr1", usd("-3")),
            Rejection::NotPositive {
                field: "amount",
                amount: usd("-3"),
            },
        ),
        refusal(
            "revenue beyond the ledger's bound",
            revenue("pr1", usd("1000000000000000")),
            Rejection::Money {
                field: "amount",
                error: MoneyError::TooLarge("1000000000050000.00".parse().unwrap()),
            },
        ),
        refusal(
            "revenue of an unknown production",
            revenue("pr9", usd("1")),
            not_found("production_id", Entity::Production, "pr9"),
        ),
        refusal(
            "second open distribution",
            propose("d2", "pr1", vec![line("carol", "1", &["c"])]),
            Rejection::DistributionOpen {
                production_id: production("pr1"),
                distribution_id: distribution("d1"),
            },
        ),
        refusal(
            "distribution id taken",
            propose("d1", "pr2", vec![line("alice", "1", &["a"])]),
            exists("distribution_id", Entity::Distribution, "d1"),
        ),
        refusal(
            "empty proposal",
            propose("d2", "pr2", vec![]),
            Rejection::Empty { field: "lines" },
        ),
        refusal(
            "nothing to distribute",
            propose("d2", "pr2", vec![line("alice", "1", &["a"])]),
            Rejection::Pool(PoolError::NothingToDistribute {
                entitlement: usd("0"),
                earlier_pools: usd("0"),
            }),
        ),
        refusal(
            "two lines for one member",
            propose(
                "d2",
                "pr2",
                vec![line("alice", "1", &["a"]), line("alice", "2", &["a"])],
            ),
            Rejection::Duplicate {
                field: "lines[].member",
                id: "alice".into(),
            },
        ),
        refusal(
            "line paying for another member's record",
            propose("d2", "pr2", vec![line("bob", "1", &["a"])]),
            Rejection::RecordNotByMember {
                index: 0,
                member: member("bob"),
                record_id: record("a"),
            },
        ),
        refusal(
            "line paying for a record outside the production",
            propose(
                "d2",
                "pr2",
                vec![line("alice", "1", &["a"]), line("bob", "1", &["b"])],
            ),
            Rejection::RecordNotInProduction {
                index: 1,
                record_id: record("b"),
            },
        ),
        refusal(
            "rationale too long",
            propose("d2", "pr2", vec![long_rationale]),
            Rejection::TooLong {
                field: "lines[].rationale",
                length_bytes: 1_001,
                max_bytes: 1_000,
            },
        ),
        refusal(
            "too many records on a line",
            propose("d2", "pr2", vec![many_records]),
            Rejection::TooMany {
                field: "lines[].records",
                count: 17,
                max: 16,
            },
        ),
        refusal(
            "too many lines",
            propose("d2", "pr2", too_many_lines),
            Rejection::TooMany {
                field: "lines",
                count: 10_001,
                max: 10_000,
            },
        ),
        Refusal {
            name: "amendment after the window",
            command: amend("d1", &[], &[], vec![line("alice", "2", &["a"])]),
            at: after_window,
            expected: Rejection::WindowClosed {
                field: "distribution_id",
                distribution_id: distribution("d1"),
                closed_at: window_closes,
            },
        },
        refusal(
            "amendment answering a comment elsewhere",
            amend("d1", &["nope"], &[], vec![line("alice", "2", &["a"])]),
            Rejection::CommentNotOnDistribution {
                field: "answers",
                comment_id: comment("nope"),
                distribution_id: distribution("d1"),
            },
        ),
        refusal(
            "amendment removing a missing line",
            amend("d1", &[], &["dave"], vec![]),
            not_found("remove", Entity::Line, "dave"),
        ),
        refusal(
            "amendment removing every line",
            amend("d1", &[], &["alice", "bob", "carol"], vec![]),
            Rejection::LineCountOutOfRange {
                count: 0,
                max: 10_000,
            },
        ),
        refusal(
            "amendment changing nothing",
            amend("d1", &[], &[], vec![]),
            Rejection::Empty { field: "lines" },
        ),
        refusal(
            "early finalization lists every blocker",
            finalize("d1"),
            Rejection::FinalizationBlocked {
                distribution_id: distribution("d1"),
                blockers: vec![
                    Blocker::WindowOpen {
                        closes_at: window_closes,
                    },
                    Blocker::UnansweredComments {
                        comment_ids: vec![comment("k1")],
                    },
                    Blocker::ContributorsWithoutLine {
                        members: vec![member("dave")],
                    },
                ],
            },
        ),
        Refusal {
            name: "finalization after the window with a comment unanswered",
            command: finalize("d1"),
            at: after_window,
            expected: Rejection::FinalizationBlocked {
                distribution_id: distribution("d1"),
                blockers: vec![
                    Blocker::UnansweredComments {
                        comment_ids: vec![comment("k1")],
                    },
                    Blocker::ContributorsWithoutLine {
                        members: vec![member("dave")],
                    },
                ],
            },
        },
        refusal(
            "payouts of an unfinalized distribution",
            Command::IssuePayouts(IssuePayouts::Distribution(distribution("d1"))),
            Rejection::NotFinalized {
                distribution_id: distribution("d1"),
            },
        ),
        refusal(
            "payout of a fee never agreed",
            Command::IssuePayouts(IssuePayouts::LeadFee {
                project_id: project("p1"),
                lead: member("bob"),
            }),
            Rejection::LeadFeeNotAgreed {
                project_id: project("p1"),
                lead: member("bob"),
            },
        ),
        refusal(
            "settle an unknown payout",
            Command::SettlePayout(SettlePayout {
                payout_id: PayoutId::new("po-x").unwrap(),
                reference: "r".into(),
            }),
            not_found("payout_id", Entity::Payout, "po-x"),
        ),
    ]
}

/// Decides and applies commands one after another, like the decider without a store.
pub struct World {
    pub state: State,
    pub now: Timestamp,
}

impl World {
    pub fn new() -> World {
        World {
            state: State::new(),
            now: t0(),
        }
    }

    pub fn with_fixture() -> World {
        let mut world = World::new();
        for command in fixture() {
            world.ok(command);
        }
        world
    }

    pub fn run(&mut self, command: &Command) -> Result<Vec<DomainEvent>, Rejection> {
        let events = decide(&self.state, command, self.now)?;
        for event in &events {
            evolve(&mut self.state, event);
        }
        Ok(events)
    }

    pub fn ok(&mut self, command: Command) -> Vec<DomainEvent> {
        match self.run(&command) {
            Ok(events) => events,
            Err(rejection) => panic!("{command:?} refused: {rejection}"),
        }
    }

    pub fn refused(&mut self, command: Command) -> Rejection {
        match self.run(&command) {
            Ok(events) => panic!("{command:?} accepted: {events:?}"),
            Err(rejection) => rejection,
        }
    }
}

/// After `fixture`: staff answers k1, dave gets a line, the window passes, d1 is finalized,
/// its payouts and the lead's fee issued, carol's payout settled and bob's data erased.
pub fn late_fixture() -> Vec<(Timestamp, Command)> {
    let soon = t0().saturating_add(Duration::from_secs(3_600));
    let after_window = t0().saturating_add(15 * DAY);
    vec![
        (
            soon,
            post("k2", "staff", true, CommentOn::Reply(comment("k1"))),
        ),
        (
            soon,
            amend("d1", &["k1"], &[], vec![line("dave", "1", &["d"])]),
        ),
        (after_window, finalize("d1")),
        (
            after_window,
            Command::IssuePayouts(IssuePayouts::Distribution(distribution("d1"))),
        ),
        (
            after_window,
            Command::IssuePayouts(IssuePayouts::LeadFee {
                project_id: project("p1"),
                lead: member("lead"),
            }),
        ),
        (
            after_window,
            Command::SettlePayout(SettlePayout {
                payout_id: PayoutId::for_line(&distribution("d1"), &member("carol")),
                reference: "tx-1".into(),
            }),
        ),
        (
            after_window,
            Command::ErasePersonalData(ErasePersonalData {
                member_id: member("bob"),
            }),
        ),
    ]
}

/// Refusals only the states after `late_fixture` allow.
pub fn late_refusals() -> Vec<Refusal> {
    let after_window = t0().saturating_add(15 * DAY);
    let carol = PayoutId::for_line(&distribution("d1"), &member("carol"));
    let refusal = |name, command, expected| Refusal {
        name,
        command,
        at: after_window,
        expected,
    };
    vec![
        refusal(
            "finalized twice",
            finalize("d1"),
            Rejection::AlreadyFinalized {
                distribution_id: distribution("d1"),
            },
        ),
        refusal(
            "amendment after finalization",
            amend("d1", &[], &[], vec![line("alice", "5", &["a"])]),
            Rejection::AlreadyFinalized {
                distribution_id: distribution("d1"),
            },
        ),
        refusal(
            "payouts issued twice",
            Command::IssuePayouts(IssuePayouts::Distribution(distribution("d1"))),
            Rejection::PayoutAlreadyIssued {
                field: "distribution_id",
                payout_id: carol.clone(),
            },
        ),
        refusal(
            "lead fee paid twice",
            Command::IssuePayouts(IssuePayouts::LeadFee {
                project_id: project("p1"),
                lead: member("lead"),
            }),
            Rejection::PayoutAlreadyIssued {
                field: "lead",
                payout_id: PayoutId::for_lead_fee(&project("p1"), &member("lead")),
            },
        ),
        refusal(
            "settled twice",
            Command::SettlePayout(SettlePayout {
                payout_id: carol.clone(),
                reference: "tx-2".into(),
            }),
            Rejection::PayoutState {
                payout_id: carol.clone(),
                status: "settled",
                required: "pending",
            },
        ),
        refusal(
            "settled payout retried",
            Command::RetryPayout(RetryPayout {
                payout_id: carol.clone(),
            }),
            Rejection::PayoutState {
                payout_id: carol.clone(),
                status: "settled",
                required: "failed",
            },
        ),
        refusal(
            "pending payout retried",
            Command::RetryPayout(RetryPayout {
                payout_id: PayoutId::for_line(&distribution("d1"), &member("dave")),
            }),
            Rejection::PayoutState {
                payout_id: PayoutId::for_line(&distribution("d1"), &member("dave")),
                status: "pending",
                required: "failed",
            },
        ),
        refusal(
            "erased twice",
            Command::ErasePersonalData(ErasePersonalData {
                member_id: member("bob"),
            }),
            Rejection::AlreadyErased {
                member_id: member("bob"),
            },
        ),
    ]
}
