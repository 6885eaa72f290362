//! The semantic replay: the domain's `evolve`, and beside it every rule of DOMAIN.md
//! (1–10) checked again on the recorded facts, with every number the rules determine
//! recomputed and compared with what was recorded.
//!
//! Events are facts that `decide` checked before they were written, so `evolve` trusts
//! them and panics on impossible ones (a sum in two currencies, a citation closing a
//! cycle). An auditor cannot trust them: each event is checked here before it is applied,
//! with the domain's own rule functions (`domain::decide::check_*`,
//! `finalization_blockers`, the family tree's cycle check) over the replayed state, so the
//! audit and the write side cannot drift apart. An event that cannot be applied is a
//! finding and is skipped, and the checks and `evolve` run under `catch_unwind` as a last
//! line of defence, so a forged event is reported, never a crash.
//!
//! Each event costs a few hash lookups; what walks more of the state (the records a line
//! may pay for, the blockers of a finalization, the credits) runs once per proposal,
//! amendment or finalization, never per event, and the payable records are cached until
//! an inclusion or citation changes them.
//!
//! Time: the store stamps `recorded_at` when it writes, a little after `decide` read its
//! clock. A finalization recorded before the window closed is always a finding (the
//! stamp can only be later than the decision); an amendment or member comment is one
//! only when recorded more than `RECORDING_DELAY_MICROS_MAX` after the window closed, so
//! that a comment accepted in the window's last moment is never reported.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::findings::{Check, Finding, FindingSink};
use crate::dag::NodeId;
use crate::domain::decide::{
    check_amendment, check_citation, check_comment_window, check_inclusion, check_lead_assignment,
    check_lead_fee, check_lines_payable, check_remix_sources, finalization_blockers, live_record,
    production_amount, window_closes_at,
};
use crate::domain::events::*;
use crate::domain::ids::{DistributionId, MemberId, PayoutId, ProductionId};
use crate::domain::limits;
use crate::domain::state::PayoutStatus;
use crate::domain::{evolve, DomainEvent, Rejection, State};
use crate::money::{self, Money};
use crate::store::{Position, RecordedEvent};
use crate::time::Timestamp;

/// Line mismatches listed one by one in a finding before the rest are only counted.
const LINE_MISMATCHES_LISTED_MAX: usize = 5;

/// How much later than the decision the store may stamp an event: the writer's queue and
/// its fsync, with a wide margin. Windows are checked against `recorded_at` minus this.
pub const RECORDING_DELAY_MICROS_MAX: i64 = 60 * 1_000_000;

/// The line payouts issued for one distribution.
#[derive(Default)]
struct IssuedLines {
    members: BTreeSet<MemberId>,
    total: Option<Money>,
    last_position: Position,
}

/// A proposal or amendment whose lines may continue in `AllocationLinesContinued` events
/// right after it (same append).
struct OpenLines {
    distribution_id: DistributionId,
    position: Position,
    stream_id: String,
    event_type: &'static str,
    announced: u32,
    remaining: u32,
    /// Members an amendment names (removed or given a line): each at most once. `None`
    /// for a proposal, whose lines are all in the distribution already.
    amended: Option<HashSet<MemberId>>,
    /// Whether the opener was applied; continuations of a skipped one are skipped too.
    applied: bool,
}

/// The records a line of a production may pay for, as of `generation`.
struct Payable {
    production_id: ProductionId,
    generation: u64,
    records: HashSet<NodeId>,
}

/// The envelope fields the checks read.
#[derive(Clone, Copy, Debug)]
pub struct EventAt<'a> {
    pub position: Position,
    pub stream_id: &'a str,
    pub event_type: &'a str,
    pub recorded_at: Timestamp,
}

impl<'a> EventAt<'a> {
    pub fn of(recorded: &'a RecordedEvent) -> EventAt<'a> {
        EventAt {
            position: recorded.position,
            stream_id: recorded.stream_id.as_str(),
            event_type: recorded.event_type.as_str(),
            recorded_at: recorded.recorded_at,
        }
    }
}

/// The replay's state: the domain's own, plus what the audit checks need.
pub struct Replay {
    pub state: State,
    /// Every payout issued, with the position of its `PayoutIssued`.
    issued: HashMap<PayoutId, Position>,
    lines_paid: HashMap<DistributionId, IssuedLines>,
    open_lines: Option<OpenLines>,
    /// Bumped by every inclusion and citation, the only events that change which records
    /// a line may pay for.
    tree_generation: u64,
    payable: Option<Payable>,
    pub events_applied: u64,
}

impl Default for Replay {
    fn default() -> Self {
        Replay::new()
    }
}

type Report<'r> = &'r mut dyn FnMut(Check, String, String);

/// The rule a refusal of the domain's checks falls under, money refusals being rule 9
/// whichever command they come from.
fn rule_of(rejection: &Rejection, otherwise: Check) -> Check {
    match rejection {
        Rejection::CurrencyMismatch { .. } | Rejection::NotPositive { .. } => Check::Money,
        Rejection::Money { .. } => Check::Money,
        _ => otherwise,
    }
}

/// `recorded_at` moved back by the recording delay: the latest moment the decision can
/// have been taken, for checks that must not report a decision taken in time.
fn decided_by(recorded: &EventAt<'_>) -> Timestamp {
    Timestamp(
        recorded
            .recorded_at
            .0
            .saturating_sub(RECORDING_DELAY_MICROS_MAX),
    )
}

impl Replay {
    pub fn new() -> Replay {
        Replay {
            state: State::new(),
            issued: HashMap::new(),
            lines_paid: HashMap::new(),
            open_lines: None,
            tree_generation: 0,
            payable: None,
            events_applied: 0,
        }
    }

    /// Looks up, and discards, the entities `event` will be checked against, so that their
    /// cache lines are on their way while the events before it are checked and applied:
    /// the checking thread calls it a few frames ahead. A replay of millions of entities
    /// misses the cache on nearly every lookup; this way the misses overlap other work
    /// instead of stalling it one by one.
    pub fn warm(&self, event: &DomainEvent) {
        use std::hint::black_box;
        let state = &self.state;
        match event {
            DomainEvent::MemberRegistered(e) => {
                black_box(state.member(&e.member_id));
            }
            DomainEvent::RecordUploaded(e) => {
                black_box(state.member(&e.contributor));
                black_box(state.record_node(&e.record_id));
            }
            DomainEvent::RemixUploaded(e) => {
                black_box(state.member(&e.contributor));
                black_box(state.record_node(&e.record_id));
                for source in &e.sources {
                    black_box(state.record_node(source));
                }
            }
            DomainEvent::SourceCited(e) => {
                black_box(state.record_node(&e.record_id));
                black_box(state.record_node(&e.source_id));
            }
            DomainEvent::RecordIncluded(e) => {
                black_box(state.record_node(&e.record_id));
            }
            DomainEvent::CommentPosted(e) => {
                black_box(state.member(&e.author));
                black_box(state.comment(&e.comment_id));
                if let CommentTarget::Record(record) = &e.target {
                    black_box(state.record_node(record));
                }
            }
            _ => {}
        }
    }

    /// Checks `event` against the state before it, then applies it.
    pub fn apply(&mut self, recorded: &RecordedEvent, event: &DomainEvent, sink: &mut FindingSink) {
        self.apply_at(&EventAt::of(recorded), event, sink);
    }

    /// `apply` with the envelope fields the checks read, borrowed: `verify` reads them
    /// from the segment's bytes without building a `RecordedEvent`.
    pub fn apply_at(
        &mut self,
        recorded: &EventAt<'_>,
        event: &DomainEvent,
        sink: &mut FindingSink,
    ) {
        let continues_lines = matches!(
            (event, &self.open_lines),
            (DomainEvent::AllocationLinesContinued(e), Some(open))
                if open.distribution_id == e.distribution_id
        );
        if !continues_lines {
            self.close_lines(sink);
        }
        let at = |check: Check, expected: String, found: String| {
            Finding::new(recorded.position, check, expected, found)
                .in_event(recorded.stream_id, recorded.event_type)
        };
        let checked = catch_unwind(AssertUnwindSafe(|| {
            self.check(recorded, event, &mut |check, expected, found| {
                sink.push(at(check, expected, found))
            })
        }));
        let applicable = match checked {
            Ok(applicable) => applicable,
            Err(_) => {
                sink.push(at(
                    Check::Apply,
                    "an event the checks can judge".into(),
                    "checking it failed (see the panic message above)".into(),
                ));
                false
            }
        };
        if !applicable {
            return;
        }
        let state = &mut self.state;
        if catch_unwind(AssertUnwindSafe(|| evolve(state, event))).is_err() {
            sink.push(at(
                Check::Apply,
                "an event that applies to the state before it".into(),
                "applying it failed (see the panic message above)".into(),
            ));
        }
        if matches!(
            event,
            DomainEvent::RecordIncluded(_) | DomainEvent::SourceCited(_)
        ) {
            self.tree_generation += 1;
        }
        if self
            .open_lines
            .as_ref()
            .is_some_and(|open| open.remaining == 0)
        {
            self.close_lines(sink);
        }
        self.events_applied += 1;
    }

    /// Ends the proposal or amendment whose lines were being read: all its announced
    /// lines must have come, and the distribution must be left with 1 to
    /// `LINES_PER_PROPOSAL_MAX` lines.
    fn close_lines(&mut self, sink: &mut FindingSink) {
        let Some(open) = self.open_lines.take() else {
            return;
        };
        let finding = |expected: String, found: String| {
            Finding::new(open.position, Check::Lines, expected, found)
                .in_event(&open.stream_id, open.event_type)
        };
        if open.remaining > 0 {
            sink.push(finding(
                format!("{} lines, as announced by line_count", open.announced),
                format!("{} lines", open.announced - open.remaining),
            ));
        }
        if !open.applied {
            return;
        }
        if let Some(distribution) = self.state.distribution(&open.distribution_id) {
            let lines = distribution.lines.len();
            if lines == 0 || lines > limits::LINES_PER_PROPOSAL_MAX {
                sink.push(finding(
                    format!(
                        "between 1 and {} lines in {}",
                        limits::LINES_PER_PROPOSAL_MAX,
                        open.distribution_id
                    ),
                    format!("{lines} lines"),
                ));
            }
        }
    }

    /// The records a line of `production_id` may pay for, computed once per production
    /// until an inclusion or citation changes them.
    fn payable(&mut self, production_id: &ProductionId) -> Option<&HashSet<NodeId>> {
        let fresh = self.payable.as_ref().is_some_and(|payable| {
            payable.generation == self.tree_generation && payable.production_id == *production_id
        });
        if !fresh {
            let production = self.state.production(production_id)?;
            self.payable = Some(Payable {
                production_id: production_id.clone(),
                generation: self.tree_generation,
                records: self.state.payable_records(production),
            });
        }
        self.payable.as_ref().map(|payable| &payable.records)
    }

    /// Rule 5 for `lines` of `production_id`, with the domain's line check.
    fn check_lines(&mut self, production_id: &ProductionId, lines: &[Line], report: Report) {
        if lines.is_empty() {
            return;
        }
        if self.payable(production_id).is_none() {
            return;
        }
        let payable = &self.payable.as_ref().expect("computed above").records;
        if let Err(rejection) = check_lines_payable(&self.state, payable, lines) {
            report(
                rule_of(&rejection, Check::Lines),
                "lines of known members with a rationale, each once, paying for their own \
                 records in the production"
                    .into(),
                rejection.to_string(),
            );
        }
    }

    /// The checks of one event. Returns whether it can be applied.
    fn check(&mut self, recorded: &EventAt<'_>, event: &DomainEvent, report: Report) -> bool {
        let state = &self.state;
        match event {
            DomainEvent::MemberRegistered(e) => {
                if state.member(&e.member_id).is_some() {
                    report(
                        Check::Apply,
                        format!("a new member id {}", e.member_id),
                        "the member is already registered".into(),
                    );
                    return false;
                }
                true
            }
            DomainEvent::MemberPersonalDataErased(e) => {
                match state.member(&e.member_id) {
                    None => report(
                        Check::Apply,
                        format!("a registered member {}", e.member_id),
                        "no such member".into(),
                    ),
                    Some(member) if member.erased => report(
                        Check::Apply,
                        format!("the personal data of {} erased once", e.member_id),
                        "erased again".into(),
                    ),
                    Some(_) => {}
                }
                true
            }
            DomainEvent::ProjectStarted(e) => {
                if state.project(&e.project_id).is_some() {
                    report(
                        Check::Apply,
                        format!("a new project id {}", e.project_id),
                        "the project already exists".into(),
                    );
                    return false;
                }
                true
            }
            DomainEvent::ProjectFinished(e) => {
                match state.project(&e.project_id) {
                    None => report(
                        Check::Apply,
                        format!("an existing project {}", e.project_id),
                        "no such project".into(),
                    ),
                    Some(project) if project.finished => report(
                        Check::Apply,
                        format!("project {} finished once", e.project_id),
                        "finished again".into(),
                    ),
                    Some(_) => {}
                }
                true
            }
            DomainEvent::LeadFeeAgreed(e) => self.check_lead_fee(e, report),
            DomainEvent::LeadAssigned(e) => {
                if let Err(rejection) = check_lead_assignment(state, &e.project_id, &e.lead) {
                    report(
                        Check::Lead,
                        format!("{} assigned after their fee was agreed, once", e.lead),
                        rejection.to_string(),
                    );
                }
                true
            }
            DomainEvent::RecordUploaded(e) => {
                self.check_record(&e.record_id, &e.project_id, &e.contributor, None, report)
            }
            DomainEvent::RemixUploaded(e) => self.check_record(
                &e.record_id,
                &e.project_id,
                &e.contributor,
                Some(&e.sources),
                report,
            ),
            DomainEvent::SourceCited(e) => {
                if let Err(rejection) = check_citation(state, &e.record_id, &e.source_id) {
                    report(
                        rule_of(&rejection, Check::FamilyTree),
                        format!(
                            "a first citation by {} of an existing, non-withdrawn record that \
                             keeps the family tree acyclic",
                            e.record_id
                        ),
                        rejection.to_string(),
                    );
                }
                // Applied unless the edge cannot exist in a DAG; a withdrawn source or a
                // repeated citation leaves a tree that later rules can still be checked on.
                match (
                    state.record_node(&e.record_id),
                    state.record_node(&e.source_id),
                ) {
                    (Some(record), Some(source)) => state.tree().check_edge(source, record).is_ok(),
                    _ => false,
                }
            }
            DomainEvent::RecordWithdrawn(e) => {
                if let Err(rejection) = live_record(state, "record_id", &e.record_id) {
                    report(
                        Check::Apply,
                        format!("an existing, non-withdrawn record {}", e.record_id),
                        rejection.to_string(),
                    );
                }
                true
            }
            DomainEvent::CommentPosted(e) => self.check_comment(recorded, e, report),
            DomainEvent::ProductionOpened(e) => {
                if state.production(&e.production_id).is_some() {
                    report(
                        Check::Apply,
                        format!("a new production id {}", e.production_id),
                        "the production already exists".into(),
                    );
                    return false;
                }
                match state.project(&e.project_id) {
                    None => report(
                        Check::Apply,
                        format!("an existing project {}", e.project_id),
                        "no such project".into(),
                    ),
                    Some(project) if project.finished || project.production.is_some() => report(
                        Check::Apply,
                        format!("an open project {} without a production", e.project_id),
                        match &project.production {
                            Some(existing) => format!("it has production {existing}"),
                            None => "it is finished".into(),
                        },
                    ),
                    Some(_) => {}
                }
                if e.feedback_window_micros <= 0
                    || e.feedback_window_micros > limits::FEEDBACK_WINDOW_MICROS_MAX
                {
                    report(
                        Check::Window,
                        format!(
                            "a feedback window of 1 to {} microseconds",
                            limits::FEEDBACK_WINDOW_MICROS_MAX
                        ),
                        format!("{} microseconds", e.feedback_window_micros),
                    );
                }
                true
            }
            DomainEvent::RecordIncluded(e) => {
                if let Err(rejection) = check_inclusion(state, &e.production_id, &e.record_id) {
                    report(
                        Check::Inclusion,
                        format!(
                            "an existing, non-withdrawn record included in {} once",
                            e.production_id
                        ),
                        rejection.to_string(),
                    );
                }
                true
            }
            DomainEvent::RevenueRecorded(e) => {
                money_entry(state, &e.production_id, e.amount, true, report)
            }
            DomainEvent::ExpenseRecorded(e) => {
                money_entry(state, &e.production_id, e.amount, false, report)
            }
            DomainEvent::AllocationProposed(e) => self.check_proposal(recorded, e, report),
            DomainEvent::AllocationLinesContinued(e) => self.check_continuation(e, report),
            DomainEvent::AllocationAmended(e) => self.check_amendment(recorded, e, report),
            DomainEvent::AllocationFinalized(e) => self.check_finalization(recorded, e, report),
            DomainEvent::PayoutIssued(e) => self.check_payout(recorded, e, report),
            DomainEvent::PayoutRetried(e) => {
                let Some(payout) = state.payout(&e.payout_id) else {
                    report(
                        Check::PayoutState,
                        format!("an issued payout {}", e.payout_id),
                        "no such payout".into(),
                    );
                    return false;
                };
                if payout.status != PayoutStatus::Failed || e.attempt != payout.attempt + 1 {
                    report(
                        Check::PayoutState,
                        format!("a retry of a failed payout, attempt {}", payout.attempt + 1),
                        format!(
                            "payout {} {} at attempt {}, retried as attempt {}",
                            e.payout_id,
                            payout.status.name(),
                            payout.attempt,
                            e.attempt
                        ),
                    );
                }
                true
            }
            DomainEvent::PayoutSettled(e) => {
                self.check_attempt(&e.payout_id, e.attempt, "settled", report)
            }
            DomainEvent::PayoutFailed(e) => {
                self.check_attempt(&e.payout_id, e.attempt, "failed", report)
            }
        }
    }

    /// Rules 1 and 10 for a new record: a new id, an open project, a contributor who is a
    /// member (the credits name them), and for a remix its sources.
    fn check_record(
        &self,
        record_id: &crate::domain::ids::RecordId,
        project_id: &crate::domain::ids::ProjectId,
        contributor: &MemberId,
        sources: Option<&[crate::domain::ids::RecordId]>,
        report: Report,
    ) -> bool {
        let state = &self.state;
        if state.record_node(record_id).is_some() {
            report(
                Check::Apply,
                format!("a new record id {record_id}"),
                "the record already exists".into(),
            );
            return false;
        }
        match state.project(project_id) {
            None => report(
                Check::Apply,
                format!("an existing project {project_id}"),
                "no such project".into(),
            ),
            Some(project) if project.finished => report(
                Check::Apply,
                format!("an open project {project_id}"),
                "the project is finished".into(),
            ),
            Some(_) => {}
        }
        if state.member(contributor).is_none() {
            report(
                Check::Credits,
                format!("a record contributed by a member (record {record_id})"),
                format!("{contributor} is not a registered member"),
            );
        }
        let Some(sources) = sources else {
            return true;
        };
        if let Err(rejection) = check_remix_sources(state, record_id, sources) {
            report(
                Check::FamilyTree,
                format!(
                    "a remix {record_id} of 1 to {} existing, non-withdrawn records other \
                     than itself, each named once",
                    limits::SOURCES_PER_REMIX_MAX
                ),
                rejection.to_string(),
            );
        }
        // A remix naming itself would be a loop in the tree: it cannot be applied.
        !sources.contains(record_id)
    }

    /// Rules 2 and 9 for a lead fee.
    fn check_lead_fee(&self, e: &LeadFeeAgreed, report: Report) -> bool {
        let state = &self.state;
        // The production the event names gets the expense: it must be able to take it.
        if !money_entry(state, &e.production_id, e.fee, false, report) {
            return false;
        }
        match check_lead_fee(state, &e.project_id, &e.lead, e.fee) {
            Ok(production_id) if *production_id != e.production_id => report(
                Check::Lead,
                format!("the fee an expense of {production_id}, the project's production"),
                format!("an expense of {}", e.production_id),
            ),
            Ok(_) => {}
            // Money refusals were reported for the production the event names.
            Err(rejection) if rule_of(&rejection, Check::Lead) == Check::Money => {}
            Err(rejection) => report(
                Check::Lead,
                format!(
                    "a fee agreed once with {} on {}, which has a production",
                    e.lead, e.project_id
                ),
                rejection.to_string(),
            ),
        }
        true
    }

    /// Rule 6 for a comment, and its target and author.
    fn check_comment(&self, recorded: &EventAt<'_>, e: &CommentPosted, report: Report) -> bool {
        let state = &self.state;
        if state.comment(&e.comment_id).is_some() {
            report(
                Check::Apply,
                format!("a new comment id {}", e.comment_id),
                "the comment already exists".into(),
            );
            return false;
        }
        if state.member(&e.author).is_none() {
            report(
                Check::Apply,
                format!("a comment by a member (comment {})", e.comment_id),
                format!("{} is not a registered member", e.author),
            );
        }
        if let Some(parent) = &e.reply_to {
            // A reply takes its parent's target, which need not exist any more (a line
            // removed by an amendment can still be answered).
            let parent_target = state.comment(parent).map(|comment| &comment.target);
            if parent_target != Some(&e.target) {
                report(
                    Check::Apply,
                    format!("a reply to an existing comment {parent} on the same target"),
                    match parent_target {
                        None => "no such comment".into(),
                        Some(target) => format!("the parent is on {target:?}"),
                    },
                );
            }
        } else {
            let target_exists = match &e.target {
                CommentTarget::Record(id) => state.record_node(id).is_some(),
                CommentTarget::Distribution(id) => state.distribution(id).is_some(),
                CommentTarget::Line {
                    distribution_id,
                    member,
                } => state
                    .distribution(distribution_id)
                    .is_some_and(|d| d.line_index.contains_key(member)),
            };
            if !target_exists {
                report(
                    Check::Apply,
                    "a comment on an existing record, distribution or line".into(),
                    format!("comment {} on {:?}", e.comment_id, e.target),
                );
            }
        }
        // An unknown distribution was reported above; only the window is rule 6.
        if let Err(rejection @ Rejection::WindowClosed { .. }) =
            check_comment_window(state, &e.target, e.staff, decided_by(recorded))
        {
            report(
                Check::Window,
                "member comments on a distribution only during its window".into(),
                format!("{rejection}; recorded at {}", recorded.recorded_at),
            );
        }
        true
    }

    /// Rules 4, 5 and 6 for a proposal.
    fn check_proposal(
        &mut self,
        recorded: &EventAt<'_>,
        e: &AllocationProposed,
        report: Report,
    ) -> bool {
        let state = &self.state;
        if state.distribution(&e.distribution_id).is_some() {
            report(
                Check::Apply,
                format!("a new distribution id {}", e.distribution_id),
                "the distribution already exists".into(),
            );
            return false;
        }
        let Some(production) = state.production(&e.production_id) else {
            report(
                Check::Apply,
                "a proposal for an existing production".into(),
                format!("production {} does not exist", e.production_id),
            );
            return false;
        };
        if e.pool.currency() != production.currency {
            report(
                Check::Money,
                format!("a pool in {}", production.currency),
                format!("pool {}", e.pool),
            );
            return false;
        }
        if let Some(open) = &production.open_distribution {
            report(
                Check::Pool,
                format!(
                    "one open distribution of {} at a time (its cut-off follows the last)",
                    e.production_id
                ),
                format!("{open} is still open"),
            );
        }
        for (field, recorded, recomputed) in [
            ("revenue_total", e.revenue_total, production.revenue_total),
            ("expense_total", e.expense_total, production.expense_total),
            ("earlier_pools", e.earlier_pools, production.pools_total),
        ] {
            if recorded != recomputed {
                report(
                    Check::Pool,
                    format!("{field} {recomputed} (from the recorded events)"),
                    format!("{field} {recorded}"),
                );
            }
        }
        match money::pool(
            production.revenue_total,
            production.expense_total,
            production.artist_share,
            production.pools_total,
        ) {
            Ok(pool) if pool == e.pool => {}
            Ok(pool) => report(
                Check::Pool,
                format!("pool {pool}"),
                format!("pool {}", e.pool),
            ),
            Err(error) => report(
                Check::Pool,
                format!("no distribution: {error}"),
                format!("pool {}", e.pool),
            ),
        }
        let closes_at = window_closes_at(production, e.published_at);
        if e.window_closes_at != closes_at {
            report(
                Check::Window,
                format!(
                    "the window closing at {closes_at}: the production's {} microseconds \
                     from publication at {}",
                    production.feedback_window_micros, e.published_at
                ),
                format!("closes at {}", e.window_closes_at),
            );
        }
        let drift = recorded
            .recorded_at
            .0
            .saturating_sub(e.published_at.0)
            .saturating_abs();
        if drift > RECORDING_DELAY_MICROS_MAX {
            report(
                Check::Window,
                format!(
                    "published when recorded ({}), within {} microseconds",
                    recorded.recorded_at, RECORDING_DELAY_MICROS_MAX
                ),
                format!("published at {}", e.published_at),
            );
        }
        let announced = e.line_count as usize;
        if announced == 0 || announced > limits::LINES_PER_PROPOSAL_MAX || e.lines.len() > announced
        {
            report(
                Check::Lines,
                format!(
                    "1 to {} lines, at least those in this event ({})",
                    limits::LINES_PER_PROPOSAL_MAX,
                    e.lines.len()
                ),
                format!("line_count {}", e.line_count),
            );
        }
        let production_id = e.production_id.clone();
        self.check_lines(&production_id, &e.lines, report);
        self.open_lines = Some(OpenLines {
            distribution_id: e.distribution_id.clone(),
            position: recorded.position,
            stream_id: recorded.stream_id.to_string(),
            event_type: "AllocationProposed",
            announced: e.line_count,
            remaining: e.line_count.saturating_sub(e.lines.len() as u32),
            amended: None,
            applied: true,
        });
        true
    }

    /// Rule 5 for lines continuing the proposal or amendment before them.
    fn check_continuation(&mut self, e: &AllocationLinesContinued, report: Report) -> bool {
        let Some(distribution) = self.state.distribution(&e.distribution_id) else {
            report(
                Check::Apply,
                format!("lines of an existing distribution {}", e.distribution_id),
                "no such distribution".into(),
            );
            return false;
        };
        let production_id = distribution.production_id.clone();
        let Some(open) = self.open_lines.as_mut() else {
            report(
                Check::Lines,
                format!(
                    "lines continuing a proposal or amendment of {} in the same append",
                    e.distribution_id
                ),
                "no proposal or amendment before them".into(),
            );
            return false;
        };
        let count = e.lines.len() as u32;
        if count > open.remaining {
            report(
                Check::Lines,
                format!(
                    "at most {} more lines, as announced by line_count {}",
                    open.remaining, open.announced
                ),
                format!("{count} lines"),
            );
        }
        open.remaining = open.remaining.saturating_sub(count);
        let applied = open.applied;
        let mut repeated: Option<&MemberId> = None;
        for line in &e.lines {
            let seen = match open.amended.as_mut() {
                Some(named) => !named.insert(line.member.clone()),
                None => distribution.line_index.contains_key(&line.member),
            };
            if seen && repeated.is_none() {
                repeated = Some(&line.member);
            }
        }
        if let Some(member) = repeated {
            report(
                Check::Lines,
                "one line per member".into(),
                format!("a second line of {member}"),
            );
        }
        if applied {
            self.check_lines(&production_id, &e.lines, report);
        }
        applied
    }

    /// Rules 5 and 6 for an amendment.
    fn check_amendment(
        &mut self,
        recorded: &EventAt<'_>,
        e: &AllocationAmended,
        report: Report,
    ) -> bool {
        let state = &self.state;
        let Some(distribution) = state.distribution(&e.distribution_id) else {
            report(
                Check::Apply,
                format!(
                    "an amendment of an existing distribution {}",
                    e.distribution_id
                ),
                "no such distribution".into(),
            );
            return false;
        };
        let finalized = distribution.amounts.is_some();
        if let Err(rejection) = check_amendment(
            state,
            &e.distribution_id,
            &e.reason,
            &e.answers,
            decided_by(recorded),
        ) {
            report(
                Check::Window,
                "an amendment during the window, before finalization, saying why and \
                 answering comments on its distribution"
                    .into(),
                format!("{rejection}; recorded at {}", recorded.recorded_at),
            );
        }
        let mut named: HashSet<MemberId> = HashSet::with_capacity(e.removed.len());
        for member in &e.removed {
            if !distribution.line_index.contains_key(member) {
                report(
                    Check::Lines,
                    format!("a line of {member} to remove"),
                    "no such line".into(),
                );
            }
            named.insert(member.clone());
        }
        let mut repeated = e.removed.len() != named.len();
        for line in &e.lines {
            repeated |= !named.insert(line.member.clone());
        }
        if repeated {
            report(
                Check::Lines,
                "each member removed or given a line at most once".into(),
                "a member named twice".into(),
            );
        }
        if e.lines.len() > e.line_count as usize
            || e.line_count as usize > limits::LINES_PER_PROPOSAL_MAX
            || (e.line_count == 0 && e.removed.is_empty())
        {
            report(
                Check::Lines,
                format!(
                    "an amendment removing or changing lines, at least the {} in this event",
                    e.lines.len()
                ),
                format!("line_count {}, {} removed", e.line_count, e.removed.len()),
            );
        }
        let production_id = distribution.production_id.clone();
        // A finalized distribution's lines are what its payouts are checked against.
        let applied = !finalized;
        if applied {
            self.check_lines(&production_id, &e.lines, report);
        }
        self.open_lines = Some(OpenLines {
            distribution_id: e.distribution_id.clone(),
            position: recorded.position,
            stream_id: recorded.stream_id.to_string(),
            event_type: "AllocationAmended",
            announced: e.line_count,
            remaining: e.line_count.saturating_sub(e.lines.len() as u32),
            amended: Some(named),
            applied,
        });
        applied
    }

    fn check_attempt(
        &self,
        payout_id: &PayoutId,
        attempt: u32,
        outcome: &str,
        report: Report,
    ) -> bool {
        let Some(payout) = self.state.payout(payout_id) else {
            report(
                Check::PayoutState,
                format!("an issued payout {payout_id}"),
                "no such payout".into(),
            );
            return false;
        };
        if payout.status == PayoutStatus::Settled && outcome == "settled" {
            report(
                Check::PayoutTwice,
                format!("payout {payout_id} paid once"),
                format!("settled again (attempt {attempt}) after it was settled"),
            );
        } else if payout.status != PayoutStatus::Pending || attempt != payout.attempt {
            report(
                Check::PayoutState,
                format!(
                    "a pending payout {payout_id} {outcome} at its attempt {}",
                    payout.attempt
                ),
                format!(
                    "{} at attempt {}, {outcome} at attempt {attempt}",
                    payout.status.name(),
                    payout.attempt
                ),
            );
        }
        true
    }

    /// Rules 5, 7 and 10 for a finalization, with the domain's own blockers.
    fn check_finalization(
        &self,
        recorded: &EventAt<'_>,
        e: &AllocationFinalized,
        report: Report,
    ) -> bool {
        let state = &self.state;
        let Some(distribution) = state.distribution(&e.distribution_id) else {
            report(
                Check::Apply,
                "a finalization of an existing distribution".into(),
                format!("distribution {} does not exist", e.distribution_id),
            );
            return false;
        };
        if distribution.amounts.is_some() {
            // The first finalization's amounts stay what payouts are checked against.
            report(
                Check::Finalization,
                format!("distribution {} finalized once", e.distribution_id),
                "finalized again".into(),
            );
            return false;
        }
        if e.pool != distribution.pool {
            report(
                Check::Finalization,
                format!("pool {} (as proposed)", distribution.pool),
                format!("pool {}", e.pool),
            );
        }
        if !distribution.pool.is_positive() {
            report(
                Check::LineAmounts,
                "a positive pool to split".into(),
                format!("pool {}", distribution.pool),
            );
            return false;
        }
        if distribution.lines.is_empty() {
            report(
                Check::Finalization,
                "at least one line to pay".into(),
                "no lines".into(),
            );
            return false;
        }
        let (blockers, expected) = finalization_blockers(state, distribution, recorded.recorded_at);
        for blocker in &blockers {
            report(
                Check::Finalization,
                "a finalization the rule allows".into(),
                format!("{blocker}; recorded at {}", recorded.recorded_at),
            );
        }
        if let Some(production) = state.production(&distribution.production_id) {
            let credits = state.credits(production);
            if let Some(line) = distribution.lines.iter().find(|line| {
                !credits.paid.contains(&line.member) && !credits.influence.contains(&line.member)
            }) {
                report(
                    Check::Credits,
                    format!(
                        "lines only for members credited on {}",
                        distribution.production_id
                    ),
                    format!("a line for {}, who is not credited", line.member),
                );
            }
        }
        if expected.len() != e.amounts.len() {
            report(
                Check::LineAmounts,
                format!("{} amounts, one per line", expected.len()),
                format!("{} amounts", e.amounts.len()),
            );
        }
        let mismatches: Vec<String> = distribution
            .lines
            .iter()
            .zip(expected.iter().zip(&e.amounts))
            .filter(|(_, (expected, found))| expected != found)
            .map(|(line, (expected, found))| {
                format!("{}: expected {expected}, found {found}", line.member)
            })
            .collect();
        if !mismatches.is_empty() {
            let listed = mismatches.len().min(LINE_MISMATCHES_LISTED_MAX);
            report(
                Check::LineAmounts,
                "the line rule's amounts".into(),
                format!(
                    "{} lines differ: {}{}",
                    mismatches.len(),
                    mismatches[..listed].join("; "),
                    if mismatches.len() > listed {
                        "; …"
                    } else {
                        ""
                    }
                ),
            );
        }
        if let Some(zero) = e.amounts.iter().position(|amount| !amount.is_positive()) {
            report(
                Check::Finalization,
                "every line's amount positive".into(),
                format!("{} for line {}", e.amounts[zero], zero + 1),
            );
        }
        match money::sum(distribution.pool.currency(), &e.amounts) {
            Ok(sum) if sum == distribution.pool => {}
            Ok(sum) => report(
                Check::Finalization,
                format!("amounts summing to the pool {}", distribution.pool),
                format!("sum {sum}"),
            ),
            Err(error) => {
                report(
                    Check::Money,
                    format!("amounts in {}", distribution.pool.currency()),
                    error.to_string(),
                );
                return false;
            }
        }
        true
    }

    fn check_payout(&mut self, recorded: &EventAt<'_>, e: &PayoutIssued, report: Report) -> bool {
        // A second issue is not applied: it would reset the payout to a first attempt.
        let first = self.issued.get(&e.payout_id).copied();
        if let Some(first) = first {
            report(
                Check::PayoutTwice,
                format!("payout {} issued once", e.payout_id),
                format!("issued again; first issued at position {first}"),
            );
        }
        self.issued
            .entry(e.payout_id.clone())
            .or_insert(recorded.position);
        let state = &self.state;
        match &e.payout_for {
            PayoutFor::Line { distribution_id } => {
                let expected_id = PayoutId::for_line(distribution_id, &e.member);
                if e.payout_id != expected_id {
                    report(
                        Check::Payout,
                        format!("payout id {expected_id} (derived from the distribution and the member)"),
                        format!("payout id {}", e.payout_id),
                    );
                }
                let Some(distribution) = state.distribution(distribution_id) else {
                    report(
                        Check::Payout,
                        format!("a finalized distribution {distribution_id}"),
                        "no such distribution".into(),
                    );
                    return first.is_none();
                };
                let Some(amounts) = &distribution.amounts else {
                    report(
                        Check::Payout,
                        format!("distribution {distribution_id} finalized before its payouts"),
                        "not finalized".into(),
                    );
                    return first.is_none();
                };
                match distribution.line_index.get(&e.member) {
                    None => report(
                        Check::Payout,
                        format!("a line of {} in {distribution_id}", e.member),
                        "no such line".into(),
                    ),
                    Some(index) => {
                        let expected = amounts[*index];
                        if e.amount != expected {
                            report(
                                Check::Payout,
                                format!(
                                    "amount {expected} (line {} of {distribution_id}, finalized)",
                                    index + 1
                                ),
                                format!("amount {} to {}", e.amount, e.member),
                            );
                        }
                    }
                }
                let issued = self.lines_paid.entry(distribution_id.clone()).or_default();
                issued.members.insert(e.member.clone());
                issued.last_position = recorded.position;
                issued.total = match issued.total {
                    None => Some(e.amount),
                    Some(total) => total.checked_add(e.amount).ok(),
                };
            }
            PayoutFor::LeadFee { project_id } => {
                let expected_id = PayoutId::for_lead_fee(project_id, &e.member);
                if e.payout_id != expected_id {
                    report(
                        Check::Payout,
                        format!("payout id {expected_id} (derived from the project and the lead)"),
                        format!("payout id {}", e.payout_id),
                    );
                }
                let fee = state
                    .project(project_id)
                    .and_then(|project| project.lead_fees.get(&e.member));
                match fee {
                    None => report(
                        Check::Payout,
                        format!("a fee agreed for {} on {project_id}", e.member),
                        "no fee agreed".into(),
                    ),
                    Some(fee) if *fee != e.amount => report(
                        Check::Payout,
                        format!("amount {fee} (the agreed fee)"),
                        format!("amount {}", e.amount),
                    ),
                    Some(_) => {}
                }
            }
        }
        first.is_none()
    }

    /// The checks that need the whole log: every distribution whose payouts were issued
    /// has one per line, summing to its pool.
    pub fn finish(&mut self, sink: &mut FindingSink) {
        self.close_lines(sink);
        let mut distributions: Vec<_> = self.lines_paid.iter().collect();
        distributions.sort_by_key(|(_, issued)| issued.last_position);
        for (distribution_id, issued) in distributions {
            let Some(distribution) = self.state.distribution(distribution_id) else {
                continue;
            };
            let stream = distribution_id.stream_id();
            let finding = |expected: String, found: String| {
                Finding::new(issued.last_position, Check::PayoutsSum, expected, found)
                    .in_event(stream.as_str(), "PayoutIssued")
            };
            let missing: Vec<String> = distribution
                .lines
                .iter()
                .filter(|line| !issued.members.contains(&line.member))
                .map(|line| line.member.to_string())
                .collect();
            if !missing.is_empty() {
                sink.push(finding(
                    format!("one payout for each of {} lines", distribution.lines.len()),
                    format!("no payout for {}", missing.join(", ")),
                ));
            }
            if issued.total != Some(distribution.pool) {
                sink.push(finding(
                    format!("payouts summing to the pool {}", distribution.pool),
                    match issued.total {
                        Some(total) => format!("sum {total}"),
                        None => "amounts that do not add up in one currency".into(),
                    },
                ));
            }
        }
    }
}

/// Rule 9 for revenue, expenses and fees, with the domain's check: an existing
/// production, its currency, a positive amount, a total within bounds. Returns whether
/// the amount can be added to the production's totals.
fn money_entry(
    state: &State,
    production_id: &ProductionId,
    amount: Money,
    revenue: bool,
    report: Report,
) -> bool {
    let Some(production) = state.production(production_id) else {
        report(
            Check::Apply,
            "an amount of an existing production".into(),
            format!("production {production_id} does not exist"),
        );
        return false;
    };
    match production_amount(production, "amount", amount, revenue) {
        Ok(_) => true,
        Err(rejection) => {
            report(
                Check::Money,
                format!(
                    "a positive amount in {} within the ledger's bound",
                    production.currency
                ),
                rejection.to_string(),
            );
            false
        }
    }
}
