//! Allocation state per distribution: status, the pool and what it was computed from, the
//! current lines with weights and exact amounts, every version and amendment, the comments
//! per line with their staff-reply status, the window, the blockers to finalization, the
//! payouts and their states, and totals.
//!
//! The blockers come from the domain's own rule (`ledger::domain::decide::
//! blockers_to_finalizing`), fed with this model's data, so the read model and the decider
//! cannot disagree on what stops a finalization.

use std::collections::BTreeSet;

use ledger::domain::decide::{blockers_to_finalizing, FinalizationInputs};
use ledger::domain::events::{CommentTarget, DomainEvent, Line, PayoutFor};
use ledger::domain::ids::{CommentId, DistributionId, MemberId, PayoutId, ProductionId};
use ledger::domain::Blocker;
use ledger::money::{self, ArtistShare, Currency, Money};
use ledger::store::Position;
use ledger::time::Timestamp;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, Names};
use crate::projection::{decode_serde, encode_serde, AppliedEvent, IdsOnly, Projection};
use crate::statement::PayoutState;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AllocationStatus {
    /// Open for feedback and amendments; not final yet.
    Proposed,
    Finalized,
    /// Finalized, payouts issued, and every one of them settled.
    Paid,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    Revenue,
    Expense,
    LeadFee { lead: MemberId },
}

/// A revenue or expense of a production, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyEntry {
    pub position: Position,
    pub recorded_at: Timestamp,
    pub kind: EntryKind,
    pub amount: Money,
    pub description: String,
}

/// How a distribution's pool was computed (rule 4), with the entries behind it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolComputation {
    pub revenue_total: Money,
    pub expense_total: Money,
    pub artist_share: ArtistShare,
    pub earlier_pools: Money,
    pub pool: Money,
    /// Revenue recorded before the cut-off.
    pub revenues: Vec<MoneyEntry>,
    /// Expenses (lead fees among them) recorded before the cut-off.
    pub expenses: Vec<MoneyEntry>,
    /// The production's earlier distributions and their pools.
    pub earlier_distributions: Vec<(DistributionId, Money)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionChange {
    Proposed {
        lines: Vec<Line>,
    },
    Amended {
        reason: String,
        answers: Vec<CommentId>,
        removed: Vec<MemberId>,
        /// Lines added or replaced.
        lines: Vec<Line>,
    },
}

/// One version of the proposal: the first, then one per amendment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// 1 for the proposal.
    pub number: u32,
    pub position: Position,
    pub recorded_at: Timestamp,
    pub change: VersionChange,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct CommentEntry {
    comment_id: CommentId,
    author: MemberId,
    staff: bool,
    line: Option<MemberId>,
    reply_to: Option<CommentId>,
    body: String,
    position: Position,
    recorded_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommentView {
    pub comment_id: CommentId,
    pub author: MemberId,
    pub staff: bool,
    /// The line it is about (replies inherit their parent's), or `None` for the whole
    /// distribution.
    pub line: Option<MemberId>,
    pub reply_to: Option<CommentId>,
    pub body: String,
    pub position: Position,
    pub recorded_at: Timestamp,
    /// Staff comments replying to this one.
    pub staff_replies: Vec<CommentId>,
    /// For a member comment: it has a staff reply (rule 7). Staff comments need none.
    pub answered: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineView {
    pub member: MemberId,
    pub weight: ledger::money::Weight,
    pub rationale: String,
    pub records: Vec<ledger::domain::ids::RecordId>,
    /// The final amount once finalized; before, what the line rule gives for the current
    /// weights.
    pub amount: Money,
    pub comments: Vec<CommentView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    pub position: Position,
    /// `Pending` until the attempt settles or fails.
    pub outcome: PayoutState,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutView {
    pub payout_id: PayoutId,
    pub member: MemberId,
    pub amount: Money,
    /// The current attempt's outcome.
    pub state: PayoutState,
    pub attempts: Vec<Attempt>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Totals {
    pub pool: Money,
    pub line_count: usize,
    pub weight_total: Decimal,
    /// Σ line amounts: equals the pool whenever the lines can be finalized.
    pub lines_total: Money,
    pub comment_count: usize,
    pub unanswered_count: usize,
    pub issued_total: Money,
    pub settled_total: Money,
    pub pending_total: Money,
    pub failed_total: Money,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocationView {
    pub distribution_id: DistributionId,
    pub production_id: ProductionId,
    pub status: AllocationStatus,
    pub pool: PoolComputation,
    pub published_at: Timestamp,
    pub window_closes_at: Timestamp,
    pub lines: Vec<LineView>,
    /// Comments on the distribution as a whole, and on lines since removed.
    pub other_comments: Vec<CommentView>,
    pub versions: Vec<Version>,
    /// Why it cannot be finalized at the `now` asked about (empty once finalized).
    pub blockers: Vec<Blocker>,
    pub finalized_at: Option<Timestamp>,
    pub payouts: Vec<PayoutView>,
    pub totals: Totals,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ProductionFacts {
    currency: Currency,
    artist_share: ArtistShare,
    entries: Vec<MoneyEntry>,
    /// Included records (nodes of `Allocations::records`), in order of inclusion.
    included: Vec<u32>,
    included_set: BTreeSet<u32>,
    distributions: Vec<(DistributionId, Money)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct DistributionState {
    production_id: ProductionId,
    /// `production_id`'s number.
    production: u32,
    pool: PoolComputation,
    published_at: Timestamp,
    window_closes_at: Timestamp,
    lines: Vec<Line>,
    versions: Vec<Version>,
    comments: Vec<CommentEntry>,
    /// Member comments without a staff reply, as the domain keeps them.
    unanswered: BTreeSet<CommentId>,
    final_amounts: Option<Vec<Money>>,
    finalized_at: Option<Timestamp>,
    payouts: Vec<PayoutEntry>,
}

/// A `PayoutView` as kept: its id and member as the catalog's numbers, its state as its
/// last attempt's outcome (a payout is issued with one attempt, and every change of state
/// is its last attempt's). Most of a log's distributions' memory is their payouts.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PayoutEntry {
    payout: u32,
    member: u32,
    amount: Money,
    attempts: Vec<Attempt>,
}

impl PayoutEntry {
    fn state(&self) -> &PayoutState {
        &self
            .attempts
            .last()
            .expect("a payout is issued with its first attempt")
            .outcome
    }

    fn view(&self, names: &Names) -> PayoutView {
        PayoutView {
            payout_id: names.payout_id(self.payout),
            member: names.member_id(self.member),
            amount: self.amount,
            state: self.state().clone(),
            attempts: self.attempts.clone(),
        }
    }
}

/// Records, members, productions, distributions and payouts are the catalog's numbers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Allocations {
    /// Not stored: the model is decoded onto the catalog it is handed.
    #[serde(skip)]
    catalog: Catalog,
    /// Indexed by record: its contributor.
    contributors: Vec<u32>,
    /// Indexed by production (every production opened is numbered in turn).
    productions: Vec<ProductionFacts>,
    /// Indexed by distribution: `None` for one proposed for an unknown production.
    distributions: Vec<Option<DistributionState>>,
    /// Indexed by payout: a line payout's distribution and index there (`None` for a lead
    /// fee's).
    payouts: Vec<Option<(u32, u32)>>,
}

fn upsert_lines(current: &mut Vec<Line>, lines: &[Line]) {
    for line in lines {
        match current.iter_mut().find(|l| l.member == line.member) {
            Some(existing) => *existing = line.clone(),
            None => current.push(line.clone()),
        }
    }
}

impl DistributionState {
    fn amounts(&self) -> Vec<Money> {
        match &self.final_amounts {
            Some(amounts) => amounts.clone(),
            None => {
                let weights: Vec<_> = self.lines.iter().map(|line| line.weight).collect();
                money::split_pool(self.pool.pool, &weights)
            }
        }
    }

    fn status(&self) -> AllocationStatus {
        match &self.final_amounts {
            None => AllocationStatus::Proposed,
            Some(_) => {
                let all_settled = !self.payouts.is_empty()
                    && self
                        .payouts
                        .iter()
                        .all(|p| matches!(p.state(), PayoutState::Settled { .. }));
                if all_settled {
                    AllocationStatus::Paid
                } else {
                    AllocationStatus::Finalized
                }
            }
        }
    }
}

impl Allocations {
    /// Every distribution, by id.
    pub fn distribution_ids(&self) -> Vec<DistributionId> {
        let names = self.catalog.read();
        let mut ids: Vec<DistributionId> = self
            .distributions
            .iter()
            .enumerate()
            .filter(|(_, state)| state.is_some())
            .map(|(number, _)| {
                DistributionId::new(names.distribution(number as u32))
                    .expect("only valid ids are numbered")
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    fn state(&self, distribution: Option<u32>) -> Option<&DistributionState> {
        self.distributions.get(distribution? as usize)?.as_ref()
    }

    fn state_mut(&mut self, distribution: Option<u32>) -> Option<&mut DistributionState> {
        self.distributions.get_mut(distribution? as usize)?.as_mut()
    }

    fn known_record(&self, record: Option<u32>) -> Option<u32> {
        record.filter(|record| (*record as usize) < self.contributors.len())
    }

    fn production_mut(&mut self, production: Option<u32>) -> Option<&mut ProductionFacts> {
        self.productions.get_mut(production? as usize)
    }

    /// The distribution as of the model's checkpoint, with the blockers to finalizing it
    /// at `now`.
    pub fn distribution(
        &self,
        distribution_id: &DistributionId,
        now: Timestamp,
    ) -> Option<AllocationView> {
        let names = self.catalog.read();
        let state = self.state(names.distribution_number(distribution_id.as_str()))?;
        let currency = state.pool.pool.currency();
        let amounts = state.amounts();
        let comment_views = self.comment_views(state);
        let mut lines = Vec::with_capacity(state.lines.len());
        for (line, amount) in state.lines.iter().zip(&amounts) {
            lines.push(LineView {
                member: line.member.clone(),
                weight: line.weight,
                rationale: line.rationale.clone(),
                records: line.records.clone(),
                amount: *amount,
                comments: comment_views
                    .iter()
                    .filter(|c| c.line.as_ref() == Some(&line.member))
                    .cloned()
                    .collect(),
            });
        }
        let other_comments = comment_views
            .iter()
            .filter(|c| {
                c.line
                    .as_ref()
                    .is_none_or(|member| !state.lines.iter().any(|l| &l.member == member))
            })
            .cloned()
            .collect();
        let blockers = if state.final_amounts.is_none() {
            self.blockers(&names, state, now)
        } else {
            Vec::new()
        };
        let sum_where = |keep: fn(&PayoutState) -> bool| {
            let amounts: Vec<Money> = state
                .payouts
                .iter()
                .filter(|p| keep(p.state()))
                .map(|p| p.amount)
                .collect();
            money::sum(currency, &amounts).expect("payouts share the pool's currency")
        };
        let totals = Totals {
            pool: state.pool.pool,
            line_count: state.lines.len(),
            weight_total: state.lines.iter().map(|l| l.weight.value()).sum(),
            lines_total: money::sum(currency, &amounts).expect("amounts share the currency"),
            comment_count: state.comments.len(),
            unanswered_count: state.unanswered.len(),
            issued_total: sum_where(|_| true),
            settled_total: sum_where(|s| matches!(s, PayoutState::Settled { .. })),
            pending_total: sum_where(|s| matches!(s, PayoutState::Pending)),
            failed_total: sum_where(|s| matches!(s, PayoutState::Failed { .. })),
        };
        Some(AllocationView {
            distribution_id: distribution_id.clone(),
            production_id: state.production_id.clone(),
            status: state.status(),
            pool: state.pool.clone(),
            published_at: state.published_at,
            window_closes_at: state.window_closes_at,
            lines,
            other_comments,
            versions: state.versions.clone(),
            blockers,
            finalized_at: state.finalized_at,
            payouts: state.payouts.iter().map(|p| p.view(&names)).collect(),
            totals,
        })
    }

    fn comment_views(&self, state: &DistributionState) -> Vec<CommentView> {
        state
            .comments
            .iter()
            .map(|comment| CommentView {
                comment_id: comment.comment_id.clone(),
                author: comment.author.clone(),
                staff: comment.staff,
                line: comment.line.clone(),
                reply_to: comment.reply_to.clone(),
                body: comment.body.clone(),
                position: comment.position,
                recorded_at: comment.recorded_at,
                staff_replies: state
                    .comments
                    .iter()
                    .filter(|reply| {
                        reply.staff && reply.reply_to.as_ref() == Some(&comment.comment_id)
                    })
                    .map(|reply| reply.comment_id.clone())
                    .collect(),
                answered: comment.staff || !state.unanswered.contains(&comment.comment_id),
            })
            .collect()
    }

    /// The domain's rule 7 (`blockers_to_finalizing`) over this model's data.
    fn blockers(&self, names: &Names, state: &DistributionState, now: Timestamp) -> Vec<Blocker> {
        let contributors: BTreeSet<MemberId> = self
            .productions
            .get(state.production as usize)
            .map(|production| {
                production
                    .included
                    .iter()
                    .map(|record| names.member_id(self.contributors[*record as usize]))
                    .collect()
            })
            .unwrap_or_default();
        let (blockers, _) = blockers_to_finalizing(&FinalizationInputs {
            now,
            window_closes_at: state.window_closes_at,
            unanswered: &state.unanswered,
            pool: state.pool.pool,
            lines: &state.lines,
            contributors: contributors.iter().collect(),
            has_line: &|member| state.lines.iter().any(|line| &line.member == member),
        });
        blockers
    }

    fn add_record(&mut self, record: u32, contributor: u32) {
        if record as usize == self.contributors.len() {
            self.contributors.push(contributor);
        }
    }

    fn entry(&mut self, production: Option<u32>, entry: MoneyEntry) {
        if let Some(production) = self.production_mut(production) {
            production.entries.push(entry);
        }
    }

    fn payout_mut(&mut self, payout: Option<u32>) -> Option<&mut PayoutEntry> {
        let (distribution, index) = (*self.payouts.get(payout? as usize)?)?;
        self.state_mut(Some(distribution))
            .map(|state| &mut state.payouts[index as usize])
    }

    fn propose(&mut self, applied: &AppliedEvent, e: &ledger::domain::events::AllocationProposed) {
        let (Some(distribution), Some(production)) =
            (applied.ids.distribution, applied.ids.production)
        else {
            return;
        };
        let Some(facts) = self.productions.get_mut(production as usize) else {
            return;
        };
        let before = |kind: fn(&EntryKind) -> bool| -> Vec<MoneyEntry> {
            facts
                .entries
                .iter()
                .filter(|entry| kind(&entry.kind))
                .cloned()
                .collect()
        };
        let pool = PoolComputation {
            revenue_total: e.revenue_total,
            expense_total: e.expense_total,
            artist_share: facts.artist_share,
            earlier_pools: e.earlier_pools,
            pool: e.pool,
            revenues: before(|kind| matches!(kind, EntryKind::Revenue)),
            expenses: before(|kind| !matches!(kind, EntryKind::Revenue)),
            earlier_distributions: facts.distributions.clone(),
        };
        facts
            .distributions
            .push((e.distribution_id.clone(), e.pool));
        let index = distribution as usize;
        if self.distributions.len() <= index {
            self.distributions.resize(index + 1, None);
        }
        self.distributions[index] = Some(DistributionState {
            production_id: e.production_id.clone(),
            production,
            pool,
            published_at: e.published_at,
            window_closes_at: e.window_closes_at,
            lines: e.lines.clone(),
            versions: vec![Version {
                number: 1,
                position: applied.position,
                recorded_at: applied.recorded_at,
                change: VersionChange::Proposed {
                    lines: e.lines.clone(),
                },
            }],
            comments: Vec::new(),
            unanswered: BTreeSet::new(),
            final_amounts: None,
            finalized_at: None,
            payouts: Vec::new(),
        });
    }

    fn comment(&mut self, applied: &AppliedEvent, e: &ledger::domain::events::CommentPosted) {
        let line = match &e.target {
            CommentTarget::Record(_) => return,
            CommentTarget::Distribution(_) => None,
            CommentTarget::Line { member, .. } => Some(member.clone()),
        };
        let Some(state) = self.state_mut(applied.ids.distribution) else {
            return;
        };
        // As the domain's `evolve` keeps it: a member comment waits for a staff reply.
        if !e.staff {
            state.unanswered.insert(e.comment_id.clone());
        } else if let Some(parent) = &e.reply_to {
            state.unanswered.remove(parent);
        }
        state.comments.push(CommentEntry {
            comment_id: e.comment_id.clone(),
            author: e.author.clone(),
            staff: e.staff,
            line,
            reply_to: e.reply_to.clone(),
            body: e.body.clone(),
            position: applied.position,
            recorded_at: applied.recorded_at,
        });
    }
}

fn last_version_lines(state: &mut DistributionState) -> Option<&mut Vec<Line>> {
    match &mut state.versions.last_mut()?.change {
        VersionChange::Proposed { lines } | VersionChange::Amended { lines, .. } => Some(lines),
    }
}

impl Projection for Allocations {
    const NAME: &'static str = "allocations";
    /// 2: ids are the catalog's numbers. 3: a payout keeps its id and member as numbers,
    /// its state only as its last attempt's outcome.
    const SCHEMA_VERSION: u32 = 3;

    fn new(catalog: Catalog) -> Allocations {
        Allocations {
            catalog,
            contributors: Vec::new(),
            productions: Vec::new(),
            distributions: Vec::new(),
            payouts: Vec::new(),
        }
    }

    fn apply(&mut self, applied: &AppliedEvent) {
        let ids = &applied.ids;
        let entry = |kind: EntryKind, amount: Money, description: &str| MoneyEntry {
            position: applied.position,
            recorded_at: applied.recorded_at,
            kind,
            amount,
            description: description.to_string(),
        };
        match applied.ids_only() {
            Some(IdsOnly::Upload) => {
                if let (Some(record), Some(contributor)) = (ids.record, ids.member) {
                    self.add_record(record, contributor);
                }
                return;
            }
            Some(IdsOnly::Inclusion) => {
                let record = self.known_record(ids.record);
                if let (Some(production), Some(record)) =
                    (self.production_mut(ids.production), record)
                {
                    if production.included_set.insert(record) {
                        production.included.push(record);
                    }
                }
                return;
            }
            Some(IdsOnly::Citation | IdsOnly::Registration | IdsOnly::RecordComment) => return,
            None => {}
        }
        let Some(event) = applied.event() else {
            return;
        };
        match event {
            // Numbered in turn: the next number is a production opened for the first time;
            // an earlier one keeps its facts.
            DomainEvent::ProductionOpened(e)
                if ids.production == Some(self.productions.len() as u32) =>
            {
                self.productions.push(ProductionFacts {
                    currency: e.currency,
                    artist_share: e.artist_share,
                    entries: Vec::new(),
                    included: Vec::new(),
                    included_set: BTreeSet::new(),
                    distributions: Vec::new(),
                });
            }
            DomainEvent::RevenueRecorded(e) => self.entry(
                ids.production,
                entry(EntryKind::Revenue, e.amount, &e.description),
            ),
            DomainEvent::ExpenseRecorded(e) => self.entry(
                ids.production,
                entry(EntryKind::Expense, e.amount, &e.description),
            ),
            DomainEvent::LeadFeeAgreed(e) => self.entry(
                ids.production,
                entry(
                    EntryKind::LeadFee {
                        lead: e.lead.clone(),
                    },
                    e.fee,
                    "lead fee",
                ),
            ),
            DomainEvent::AllocationProposed(e) => self.propose(applied, e),
            DomainEvent::AllocationLinesContinued(e) => {
                if let Some(state) = self.state_mut(ids.distribution) {
                    upsert_lines(&mut state.lines, &e.lines);
                    if let Some(lines) = last_version_lines(state) {
                        lines.extend(e.lines.iter().cloned());
                    }
                }
            }
            DomainEvent::AllocationAmended(e) => {
                if let Some(state) = self.state_mut(ids.distribution) {
                    state.lines.retain(|line| !e.removed.contains(&line.member));
                    upsert_lines(&mut state.lines, &e.lines);
                    let number = state.versions.len() as u32 + 1;
                    state.versions.push(Version {
                        number,
                        position: applied.position,
                        recorded_at: applied.recorded_at,
                        change: VersionChange::Amended {
                            reason: e.reason.clone(),
                            answers: e.answers.clone(),
                            removed: e.removed.clone(),
                            lines: e.lines.clone(),
                        },
                    });
                }
            }
            DomainEvent::AllocationFinalized(e) => {
                if let Some(state) = self.state_mut(ids.distribution) {
                    state.final_amounts = Some(e.amounts.clone());
                    state.finalized_at = Some(applied.recorded_at);
                }
            }
            DomainEvent::CommentPosted(e) => self.comment(applied, e),
            DomainEvent::PayoutIssued(e) => {
                let PayoutFor::Line { .. } = &e.payout_for else {
                    return;
                };
                let Some(payout) = ids.payout else {
                    return;
                };
                let slot = payout as usize;
                if self.payouts.get(slot).is_some_and(Option::is_some) {
                    return;
                }
                let (Some(distribution), Some(member)) = (ids.distribution, ids.member) else {
                    return;
                };
                let Some(state) = self.state_mut(Some(distribution)) else {
                    return;
                };
                let index = state.payouts.len() as u32;
                state.payouts.push(PayoutEntry {
                    payout,
                    member,
                    amount: e.amount,
                    attempts: vec![Attempt {
                        attempt: 1,
                        position: applied.position,
                        outcome: PayoutState::Pending,
                    }],
                });
                if self.payouts.len() <= slot {
                    self.payouts.resize(slot + 1, None);
                }
                self.payouts[slot] = Some((distribution, index));
            }
            DomainEvent::PayoutRetried(e) => {
                if let Some(payout) = self.payout_mut(ids.payout) {
                    payout.attempts.push(Attempt {
                        attempt: e.attempt,
                        position: applied.position,
                        outcome: PayoutState::Pending,
                    });
                }
            }
            DomainEvent::PayoutSettled(e) => {
                if let Some(payout) = self.payout_mut(ids.payout) {
                    let outcome = PayoutState::Settled {
                        reference: e.reference.clone(),
                    };
                    if let Some(attempt) = payout.attempts.last_mut() {
                        attempt.outcome = outcome;
                    }
                }
            }
            DomainEvent::PayoutFailed(e) => {
                if let Some(payout) = self.payout_mut(ids.payout) {
                    let outcome = PayoutState::Failed {
                        reason: e.reason.clone(),
                    };
                    if let Some(attempt) = payout.attempts.last_mut() {
                        attempt.outcome = outcome;
                    }
                }
            }
            _ => {}
        }
    }

    fn encode(&self) -> Vec<u8> {
        encode_serde(self)
    }

    fn decode(bytes: &[u8], catalog: Catalog) -> Result<Allocations, String> {
        let mut allocations: Allocations = decode_serde(bytes)?;
        let records = allocations.contributors.len();
        let ok = {
            let names = catalog.read();
            records <= names.record_count()
                && allocations.productions.len() <= names.production_count()
                && allocations.distributions.len() <= names.distribution_count()
                && allocations.payouts.len() <= names.payout_count()
                && allocations
                    .contributors
                    .iter()
                    .all(|m| (*m as usize) < names.member_count())
        } && allocations
            .productions
            .iter()
            .all(|p| p.included.iter().all(|r| (*r as usize) < records))
            && allocations
                .distributions
                .iter()
                .flatten()
                .all(|state| (state.production as usize) < allocations.productions.len())
            && allocations.payouts.iter().flatten().all(|(d, index)| {
                allocations
                    .distributions
                    .get(*d as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|state| (*index as usize) < state.payouts.len())
            })
            && {
                let names = catalog.read();
                allocations
                    .distributions
                    .iter()
                    .flatten()
                    .flat_map(|state| &state.payouts)
                    .all(|p| {
                        (p.payout as usize) < names.payout_count()
                            && (p.member as usize) < names.member_count()
                            && !p.attempts.is_empty()
                    })
            };
        if !ok {
            return Err("allocations: numbers beyond the records or the catalog".into());
        }
        allocations.catalog = catalog;
        Ok(allocations)
    }
}
