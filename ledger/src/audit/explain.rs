//! Why a payout exists and why it is this amount (`stemma audit explain --payout`), and
//! every payout of a member (`stemma audit statement --member`), from the log alone.
//!
//! Read-only and lock-free like `verify`. Two passes over the log: the first finds the
//! payout's `PayoutIssued` (what it pays: a distribution's line or a lead fee), the second
//! gathers every event behind it. Each pass replays the state through `Replay`, which
//! guards `evolve` against events it cannot apply, so a damaged log gives a partial
//! explanation, never a crash; run `verify` to know whether to trust it.

use std::path::Path;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use super::findings::FindingSink;
use super::replay::Replay;
use super::AuditError;
use crate::domain::events::*;
use crate::domain::ids::{CommentId, DistributionId, MemberId, PayoutId, ProductionId, RecordId};
use crate::domain::DomainEvent;
use crate::money::{self, Money};
use crate::store::codec;
use crate::store::embedded::snapshot::{LogSnapshot, ScanItem};
use crate::store::RecordedEvent;

/// Ancestor levels and nodes walked from a line's records when listing those credited.
pub const ANCESTOR_DEPTH_MAX: u32 = 64;
pub const ANCESTOR_NODES_MAX: usize = 10_000;

/// Where an event is in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventRef {
    pub position: u64,
    pub hash: String,
    pub event_type: String,
    pub recorded_at: String,
    /// `recorded_at` as microseconds since the Unix epoch (authoritative).
    pub recorded_at_micros: i64,
}

impl EventRef {
    fn of(event: &RecordedEvent) -> EventRef {
        EventRef {
            position: event.position,
            hash: event.hash.to_hex(),
            event_type: event.event_type.to_string(),
            recorded_at: event.recorded_at.to_string(),
            recorded_at_micros: event.recorded_at.unix_micros(),
        }
    }
}

/// Revenue, an expense or a lead fee counted in a pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MoneyFact {
    pub event: EventRef,
    /// `revenue`, `expense` or `lead_fee`.
    pub kind: &'static str,
    pub amount: String,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub event: EventRef,
    pub attempt: u32,
    /// `retried`, `settled` or `failed`.
    pub outcome: &'static str,
    /// The payment reference or the failure's reason.
    pub detail: String,
}

/// The line a payout pays, and how its amount was computed (rule 5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LineExplanation {
    pub member: String,
    pub weight: String,
    pub rationale: String,
    pub records: Vec<String>,
    /// 1-based, in the final proposal.
    pub line_number: usize,
    pub line_count: usize,
    pub weight_total: String,
    /// pool × weight / Σ weights, before rounding.
    pub exact_amount: String,
    /// Rounded down to the minor unit.
    pub rounded_down: String,
    /// Whether one minor unit of the leftover went to this line (largest remainders).
    pub leftover_unit: bool,
    pub amount: String,
}

/// A change to the line during the window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Amendment {
    pub event: EventRef,
    pub reason: String,
    pub answers: Vec<String>,
    /// `added`, `replaced` or `removed`.
    pub change: &'static str,
    pub weight: Option<String>,
    pub records: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CommentFact {
    pub event: EventRef,
    pub comment_id: String,
    pub author: String,
    pub staff: bool,
    pub reply_to: Option<String>,
    pub body: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ancestor {
    pub record_id: String,
    pub contributor: String,
    /// 1 for a direct source of one of the line's records.
    pub depth: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DistributionExplanation {
    pub distribution_id: String,
    pub production_id: String,
    pub proposed: EventRef,
    pub finalized: Option<EventRef>,
    pub revenue_total: String,
    pub expense_total: String,
    pub artist_share: String,
    pub entitlement: String,
    pub earlier_pools: String,
    pub pool: String,
    /// The revenue, expenses and lead fees recorded before the cut-off, in log order.
    pub money: Vec<MoneyFact>,
    pub line: Option<LineExplanation>,
    pub amendments: Vec<Amendment>,
    /// Every comment on the line, replies (staff ones marked) included, in log order.
    pub comments: Vec<CommentFact>,
    /// Ancestors of the line's records in the family tree: credited (rule 10).
    pub credited_ancestors: Vec<Ancestor>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeadFeeExplanation {
    pub project_id: String,
    pub fee: String,
    pub agreed: Option<EventRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PayoutExplanation {
    pub payout_id: String,
    pub member: String,
    pub amount: String,
    /// `pending`, `failed` or `settled`.
    pub state: String,
    pub issued: EventRef,
    pub attempts: Vec<Attempt>,
    pub distribution: Option<DistributionExplanation>,
    pub lead_fee: Option<LeadFeeExplanation>,
}

/// Every event of the log in order, decoded where it decodes, with the replayed state
/// before it. Checks `stop` before each commit: `AuditError::Stopped` once it says so.
fn each_event(
    data_directory: &Path,
    stop: &dyn Fn() -> bool,
    mut visit: impl FnMut(&RecordedEvent, Option<&DomainEvent>, &Replay),
) -> Result<Replay, AuditError> {
    let snapshot = LogSnapshot::open(data_directory)?;
    let mut replay = Replay::new();
    let mut ignored = FindingSink::default();
    let mut position = 0;
    let mut stopped = false;
    snapshot.scan(|item| {
        if stop() {
            stopped = true;
            return false;
        }
        if let ScanItem::Commit { frames, .. } = item {
            for frame in frames {
                let Ok(recorded) = codec::decode_event(frame.body) else {
                    continue;
                };
                position = recorded.position;
                let event = DomainEvent::decode(
                    recorded.event_type.as_str(),
                    recorded.schema_version,
                    &recorded.payload,
                )
                .ok();
                visit(&recorded, event.as_ref(), &replay);
                if let Some(event) = &event {
                    replay.apply(&recorded, event, &mut ignored);
                }
                // Findings are `verify`'s business; keep none here.
                ignored.kept.clear();
            }
        }
        true
    })?;
    if stopped {
        return Err(AuditError::Stopped { position });
    }
    Ok(replay)
}

/// Explains one payout. `Ok(None)` if the log holds no such payout.
pub fn explain_payout(
    data_directory: &Path,
    payout_id: &PayoutId,
) -> Result<Option<PayoutExplanation>, AuditError> {
    explain_payout_until_stopped(data_directory, payout_id, &|| false)
}

/// `explain_payout`, stopping with `AuditError::Stopped` once `stop` says so (checked
/// before each commit of both passes): a server's caller may go away.
pub fn explain_payout_until_stopped(
    data_directory: &Path,
    payout_id: &PayoutId,
    stop: &dyn Fn() -> bool,
) -> Result<Option<PayoutExplanation>, AuditError> {
    // Pass 1: what the payout pays.
    let mut issued: Option<(RecordedEvent, PayoutIssued)> = None;
    let first_pass = each_event(data_directory, stop, |recorded, event, _| {
        if let Some(DomainEvent::PayoutIssued(e)) = event {
            if &e.payout_id == payout_id && issued.is_none() {
                issued = Some((recorded.clone(), e.clone()));
            }
        }
    })?;
    let Some((issued_event, payout)) = issued else {
        return Ok(None);
    };
    let member = payout.member.clone();
    let distribution_id = match &payout.payout_for {
        PayoutFor::Line { distribution_id } => Some(distribution_id.clone()),
        PayoutFor::LeadFee { .. } => None,
    };

    let production_id: Option<ProductionId> = match &payout.payout_for {
        PayoutFor::Line { distribution_id } => first_pass
            .state
            .distribution(distribution_id)
            .map(|d| d.production_id.clone()),
        PayoutFor::LeadFee { project_id } => first_pass
            .state
            .project(project_id)
            .and_then(|p| p.production.clone()),
    };
    drop(first_pass);

    // Pass 2: everything behind it.
    let mut gathered = Gathered::default();
    let replay = each_event(data_directory, stop, |recorded, event, replay| {
        let Some(event) = event else { return };
        gathered.visit(
            recorded,
            event,
            replay,
            payout_id,
            &member,
            distribution_id.as_ref(),
            production_id.as_ref(),
            &payout.payout_for,
        );
    })?;
    let state = &replay.state;
    let payout_state = state
        .payout(payout_id)
        .map_or("unknown", |p| p.status.name())
        .to_string();
    let distribution = match (&distribution_id, gathered.proposed.take()) {
        (Some(distribution_id), Some((proposed_event, proposed))) => {
            let line = state.distribution(distribution_id).and_then(|d| {
                let index = *d.line_index.get(&member)?;
                let amounts = d.amounts.as_ref()?;
                Some(line_explanation(&d.lines, index, d.pool, amounts[index]))
            });
            let credited_ancestors = state
                .distribution(distribution_id)
                .and_then(|d| {
                    d.line_index
                        .get(&member)
                        .map(|i| d.lines[*i].records.clone())
                })
                .map(|records| ancestors(state, &records))
                .unwrap_or_default();
            let artist_share = state
                .production(&proposed.production_id)
                .map(|p| p.artist_share);
            let entitlement = proposed
                .revenue_total
                .checked_sub(proposed.expense_total)
                .ok()
                .zip(artist_share)
                .map(|(profit, share)| money::entitlement(profit, share).to_string())
                .unwrap_or_default();
            Some(DistributionExplanation {
                distribution_id: distribution_id.to_string(),
                production_id: proposed.production_id.to_string(),
                proposed: EventRef::of(&proposed_event),
                finalized: gathered.finalized.take(),
                revenue_total: proposed.revenue_total.to_string(),
                expense_total: proposed.expense_total.to_string(),
                artist_share: artist_share.map(|s| s.to_string()).unwrap_or_default(),
                entitlement,
                earlier_pools: proposed.earlier_pools.to_string(),
                pool: proposed.pool.to_string(),
                money: std::mem::take(&mut gathered.money_before_cut_off),
                line,
                amendments: std::mem::take(&mut gathered.amendments),
                comments: std::mem::take(&mut gathered.comments),
                credited_ancestors,
            })
        }
        _ => None,
    };
    let lead_fee = match &payout.payout_for {
        PayoutFor::LeadFee { project_id } => Some(LeadFeeExplanation {
            project_id: project_id.to_string(),
            fee: state
                .project(project_id)
                .and_then(|p| p.lead_fees.get(&member))
                .map(ToString::to_string)
                .unwrap_or_default(),
            agreed: gathered.fee_agreed.take(),
        }),
        PayoutFor::Line { .. } => None,
    };
    Ok(Some(PayoutExplanation {
        payout_id: payout_id.to_string(),
        member: member.to_string(),
        amount: payout.amount.to_string(),
        state: payout_state,
        issued: EventRef::of(&issued_event),
        attempts: gathered.attempts,
        distribution,
        lead_fee,
    }))
}

#[derive(Default)]
struct Gathered {
    /// Money of the production, until the distribution's proposal (its cut-off).
    money_before_cut_off: Vec<MoneyFact>,
    proposed: Option<(RecordedEvent, AllocationProposed)>,
    finalized: Option<EventRef>,
    amendments: Vec<Amendment>,
    comments: Vec<CommentFact>,
    attempts: Vec<Attempt>,
    fee_agreed: Option<EventRef>,
    /// The amendment being continued: its last position, reason and answers.
    continuing: Option<(u64, String, Vec<CommentId>)>,
}

#[derive(Clone, Copy)]
struct AmendmentContext<'a> {
    recorded: &'a RecordedEvent,
    reason: &'a str,
    answers: &'a [CommentId],
    member: &'a MemberId,
    replay: &'a Replay,
    distribution_id: &'a DistributionId,
}

impl Gathered {
    #[allow(clippy::too_many_arguments)]
    fn visit(
        &mut self,
        recorded: &RecordedEvent,
        event: &DomainEvent,
        replay: &Replay,
        payout_id: &PayoutId,
        member: &MemberId,
        distribution_id: Option<&DistributionId>,
        production_id: Option<&ProductionId>,
        payout_for: &PayoutFor,
    ) {
        let ours = |id: &DistributionId| distribution_id == Some(id);
        let before_cut_off = |production: &ProductionId| {
            self.proposed.is_none() && production_id == Some(production)
        };
        let money = |kind, amount: &Money, description: &str| MoneyFact {
            event: EventRef::of(recorded),
            kind,
            amount: amount.to_string(),
            description: description.to_string(),
        };
        match event {
            DomainEvent::RevenueRecorded(e) if before_cut_off(&e.production_id) => {
                self.money_before_cut_off
                    .push(money("revenue", &e.amount, &e.description));
            }
            DomainEvent::ExpenseRecorded(e) if before_cut_off(&e.production_id) => {
                self.money_before_cut_off
                    .push(money("expense", &e.amount, &e.description));
            }
            DomainEvent::LeadFeeAgreed(e) => {
                if before_cut_off(&e.production_id) {
                    self.money_before_cut_off.push(money(
                        "lead_fee",
                        &e.fee,
                        &format!("lead fee of {}", e.lead),
                    ));
                }
                if let PayoutFor::LeadFee { project_id } = payout_for {
                    if &e.project_id == project_id && &e.lead == member {
                        self.fee_agreed = Some(EventRef::of(recorded));
                    }
                }
            }
            DomainEvent::AllocationProposed(e) if ours(&e.distribution_id) => {
                self.proposed = Some((recorded.clone(), e.clone()));
                self.continuing = None;
            }
            DomainEvent::AllocationAmended(e) if ours(&e.distribution_id) => {
                let context = AmendmentContext {
                    recorded,
                    reason: &e.reason,
                    answers: &e.answers,
                    member,
                    replay,
                    distribution_id: &e.distribution_id,
                };
                self.amendment(&context, &e.removed, &e.lines);
                self.continuing = Some((recorded.position, e.reason.clone(), e.answers.clone()));
            }
            DomainEvent::AllocationLinesContinued(e) if ours(&e.distribution_id) => {
                // Continuations follow their proposal or amendment in the same append.
                if let Some((last, reason, answers)) = self.continuing.take() {
                    if last + 1 == recorded.position {
                        let context = AmendmentContext {
                            recorded,
                            reason: &reason,
                            answers: &answers,
                            member,
                            replay,
                            distribution_id: &e.distribution_id,
                        };
                        self.amendment(&context, &[], &e.lines);
                        self.continuing = Some((recorded.position, reason, answers));
                    }
                }
            }
            DomainEvent::AllocationFinalized(e) if ours(&e.distribution_id) => {
                self.finalized = Some(EventRef::of(recorded));
            }
            DomainEvent::CommentPosted(e) => {
                if let CommentTarget::Line {
                    distribution_id: d,
                    member: m,
                } = &e.target
                {
                    if ours(d) && m == member {
                        self.comments.push(CommentFact {
                            event: EventRef::of(recorded),
                            comment_id: e.comment_id.to_string(),
                            author: e.author.to_string(),
                            staff: e.staff,
                            reply_to: e.reply_to.as_ref().map(ToString::to_string),
                            body: e.body.clone(),
                        });
                    }
                }
            }
            DomainEvent::PayoutRetried(e) if &e.payout_id == payout_id => {
                self.attempts
                    .push(attempt(recorded, e.attempt, "retried", String::new()));
            }
            DomainEvent::PayoutSettled(e) if &e.payout_id == payout_id => {
                self.attempts
                    .push(attempt(recorded, e.attempt, "settled", e.reference.clone()));
            }
            DomainEvent::PayoutFailed(e) if &e.payout_id == payout_id => {
                self.attempts
                    .push(attempt(recorded, e.attempt, "failed", e.reason.clone()));
            }
            _ => {}
        }
    }

    fn amendment(&mut self, context: &AmendmentContext<'_>, removed: &[MemberId], lines: &[Line]) {
        let AmendmentContext {
            recorded,
            reason,
            answers,
            member,
            replay,
            distribution_id,
        } = *context;
        let had_line = replay
            .state
            .distribution(distribution_id)
            .is_some_and(|d| d.line_index.contains_key(member));
        let base = |change, weight: Option<String>, records: Vec<String>| Amendment {
            event: EventRef::of(recorded),
            reason: reason.to_string(),
            answers: answers.iter().map(ToString::to_string).collect(),
            change,
            weight,
            records,
        };
        if removed.contains(member) {
            self.amendments.push(base("removed", None, Vec::new()));
        }
        if let Some(line) = lines.iter().find(|line| &line.member == member) {
            let change = if had_line && !removed.contains(member) {
                "replaced"
            } else {
                "added"
            };
            self.amendments.push(base(
                change,
                Some(line.weight.to_string()),
                line.records.iter().map(ToString::to_string).collect(),
            ));
        }
    }
}

fn attempt(
    recorded: &RecordedEvent,
    attempt: u32,
    outcome: &'static str,
    detail: String,
) -> Attempt {
    Attempt {
        event: EventRef::of(recorded),
        attempt,
        outcome,
        detail,
    }
}

/// How line `index`'s amount follows from the pool and the weights (rule 5).
fn line_explanation(lines: &[Line], index: usize, pool: Money, amount: Money) -> LineExplanation {
    let line = &lines[index];
    let weight_total: Decimal = lines.iter().map(|l| l.weight.value()).sum();
    let minor_units = pool.currency().minor_units();
    let exact = pool.amount() * line.weight.value() / weight_total;
    let rounded_down = exact.round_dp_with_strategy(minor_units, RoundingStrategy::ToZero);
    let mut rounded_down_display = rounded_down;
    rounded_down_display.rescale(minor_units);
    LineExplanation {
        member: line.member.to_string(),
        weight: line.weight.to_string(),
        rationale: line.rationale.clone(),
        records: line.records.iter().map(ToString::to_string).collect(),
        line_number: index + 1,
        line_count: lines.len(),
        weight_total: weight_total.normalize().to_string(),
        exact_amount: exact.normalize().to_string(),
        rounded_down: format!("{rounded_down_display} {}", pool.currency()),
        leftover_unit: amount.amount() > rounded_down,
        amount: amount.to_string(),
    }
}

fn ancestors(state: &crate::domain::State, records: &[RecordId]) -> Vec<Ancestor> {
    let mut seen = std::collections::BTreeMap::new();
    for record in records {
        let Some(node) = state.record_node(record) else {
            continue;
        };
        let walk = state
            .tree()
            .ancestors(node, ANCESTOR_DEPTH_MAX, ANCESTOR_NODES_MAX);
        for (ancestor, depth) in walk.nodes {
            let entry = seen.entry(ancestor).or_insert(depth);
            *entry = (*entry).min(depth);
        }
    }
    let mut out: Vec<Ancestor> = seen
        .into_iter()
        .map(|(node, depth)| {
            let record = state.record_at(node);
            Ancestor {
                record_id: record.id.to_string(),
                contributor: record.contributor.to_string(),
                depth,
            }
        })
        .collect();
    out.sort_by(|a, b| a.depth.cmp(&b.depth).then(a.record_id.cmp(&b.record_id)));
    out
}

/// One payout in a member's statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatementLine {
    pub payout_id: String,
    pub amount: String,
    pub state: String,
    /// `distribution <id>` or `lead fee on <project>`.
    pub paying: String,
    pub issued: EventRef,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Statement {
    pub member: String,
    pub payouts: Vec<StatementLine>,
    /// Per currency: (issued total, settled total).
    pub totals: Vec<StatementTotal>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatementTotal {
    pub currency: String,
    pub issued: String,
    pub settled: String,
}

/// Every payout issued to `member`, with its state, and totals per currency.
pub fn statement(data_directory: &Path, member: &MemberId) -> Result<Statement, AuditError> {
    statement_until_stopped(data_directory, member, &|| false)
}

/// `statement`, stopping with `AuditError::Stopped` once `stop` says so.
pub fn statement_until_stopped(
    data_directory: &Path,
    member: &MemberId,
    stop: &dyn Fn() -> bool,
) -> Result<Statement, AuditError> {
    let mut issued: Vec<(RecordedEvent, PayoutIssued)> = Vec::new();
    let replay = each_event(data_directory, stop, |recorded, event, _| {
        if let Some(DomainEvent::PayoutIssued(e)) = event {
            if &e.member == member {
                issued.push((recorded.clone(), e.clone()));
            }
        }
    })?;
    let mut totals: std::collections::BTreeMap<String, (Money, Money)> = Default::default();
    let mut payouts = Vec::new();
    for (recorded, payout) in issued {
        let status = replay.state.payout(&payout.payout_id).map(|p| p.status);
        let currency = payout.amount.currency();
        let entry = totals
            .entry(currency.to_string())
            .or_insert((Money::zero(currency), Money::zero(currency)));
        entry.0 = entry.0.checked_add(payout.amount).unwrap_or(entry.0);
        if status == Some(crate::domain::state::PayoutStatus::Settled) {
            entry.1 = entry.1.checked_add(payout.amount).unwrap_or(entry.1);
        }
        payouts.push(StatementLine {
            payout_id: payout.payout_id.to_string(),
            amount: payout.amount.to_string(),
            state: status.map_or("unknown", |s| s.name()).to_string(),
            paying: match &payout.payout_for {
                PayoutFor::Line { distribution_id } => format!("distribution {distribution_id}"),
                PayoutFor::LeadFee { project_id } => format!("lead fee on {project_id}"),
            },
            issued: EventRef::of(&recorded),
        });
    }
    Ok(Statement {
        member: member.to_string(),
        payouts,
        totals: totals
            .into_iter()
            .map(|(currency, (issued, settled))| StatementTotal {
                currency,
                issued: issued.to_string(),
                settled: settled.to_string(),
            })
            .collect(),
    })
}
