//! The semantic replay: the domain's `evolve`, and beside it every number the rules of
//! DOMAIN.md determine, recomputed from the recorded facts and compared with what was
//! recorded.
//!
//! Events are facts that `decide` checked before they were written, so `evolve` trusts
//! them and panics on impossible ones (a sum in two currencies, a citation closing a
//! cycle). An auditor cannot trust them: each event is checked here before it is applied,
//! an event that cannot be applied is a finding and is skipped, and `evolve` runs under
//! `catch_unwind` as a last line of defence, so a forged event is reported, never a crash.

use std::collections::{BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::findings::{Check, Finding, FindingSink};
use crate::domain::events::*;
use crate::domain::ids::{DistributionId, MemberId, PayoutId};
use crate::domain::state::PayoutStatus;
use crate::domain::{evolve, DomainEvent, State};
use crate::money::{self, Money};
use crate::store::{Position, RecordedEvent};

/// Line mismatches listed one by one in a finding before the rest are only counted.
const LINE_MISMATCHES_LISTED_MAX: usize = 5;

/// The line payouts issued for one distribution.
#[derive(Default)]
struct IssuedLines {
    members: BTreeSet<MemberId>,
    total: Option<Money>,
    last_position: Position,
}

/// The replay's state: the domain's own, plus what the audit checks need.
pub struct Replay {
    pub state: State,
    /// Every payout issued, with the position of its `PayoutIssued`.
    issued: HashMap<PayoutId, Position>,
    lines_paid: HashMap<DistributionId, IssuedLines>,
    pub events_applied: u64,
}

impl Default for Replay {
    fn default() -> Self {
        Replay::new()
    }
}

impl Replay {
    pub fn new() -> Replay {
        Replay {
            state: State::new(),
            issued: HashMap::new(),
            lines_paid: HashMap::new(),
            events_applied: 0,
        }
    }

    /// Checks `event` against the state before it, then applies it.
    pub fn apply(&mut self, recorded: &RecordedEvent, event: &DomainEvent, sink: &mut FindingSink) {
        let at = |check: Check, expected: String, found: String| {
            Finding::new(recorded.position, check, expected, found)
                .in_event(recorded.stream_id.as_str(), recorded.event_type.as_str())
        };
        let applicable = self.check(recorded, event, &mut |check, expected, found| {
            sink.push(at(check, expected, found))
        });
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
        self.events_applied += 1;
    }

    /// The checks of one event. Returns whether it can be applied.
    fn check(
        &mut self,
        recorded: &RecordedEvent,
        event: &DomainEvent,
        report: &mut dyn FnMut(Check, String, String),
    ) -> bool {
        let state = &self.state;
        match event {
            DomainEvent::LeadFeeAgreed(e) => {
                production_amount(state, &e.production_id, e.fee, "fee", report)
            }
            DomainEvent::RevenueRecorded(e) => {
                production_amount(state, &e.production_id, e.amount, "revenue", report)
            }
            DomainEvent::ExpenseRecorded(e) => {
                production_amount(state, &e.production_id, e.amount, "expense", report)
            }
            DomainEvent::SourceCited(e) => {
                let (Some(record), Some(source)) = (
                    state.record_node(&e.record_id),
                    state.record_node(&e.source_id),
                ) else {
                    report(
                        Check::Apply,
                        "a citation between two existing records".into(),
                        format!("{} cites {}", e.record_id, e.source_id),
                    );
                    return false;
                };
                if let Err(error) = state.tree().check_edge(source, record) {
                    report(
                        Check::Apply,
                        "a citation that keeps the family tree acyclic".into(),
                        format!("{} cites {}: {error:?}", e.record_id, e.source_id),
                    );
                    return false;
                }
                true
            }
            DomainEvent::AllocationProposed(e) => self.check_proposal(e, report),
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
            _ => true,
        }
    }

    fn check_attempt(
        &self,
        payout_id: &PayoutId,
        attempt: u32,
        outcome: &str,
        report: &mut dyn FnMut(Check, String, String),
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

    fn check_proposal(
        &self,
        e: &AllocationProposed,
        report: &mut dyn FnMut(Check, String, String),
    ) -> bool {
        let Some(production) = self.state.production(&e.production_id) else {
            report(
                Check::Apply,
                "a proposal for an existing production".into(),
                format!("production {} does not exist", e.production_id),
            );
            return false;
        };
        if e.pool.currency() != production.currency {
            report(
                Check::Pool,
                format!("a pool in {}", production.currency),
                format!("pool {}", e.pool),
            );
            return false;
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
        true
    }

    fn check_finalization(
        &self,
        recorded: &RecordedEvent,
        e: &AllocationFinalized,
        report: &mut dyn FnMut(Check, String, String),
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
            report(
                Check::Finalization,
                format!("distribution {} finalized once", e.distribution_id),
                "finalized again".into(),
            );
        }
        if e.pool != distribution.pool {
            report(
                Check::Finalization,
                format!("pool {} (as proposed)", distribution.pool),
                format!("pool {}", e.pool),
            );
        }
        if recorded.recorded_at < distribution.window_closes_at {
            report(
                Check::Finalization,
                format!(
                    "finalized after the window closed at {}",
                    distribution.window_closes_at
                ),
                format!("recorded at {}", recorded.recorded_at),
            );
        }
        if !distribution.unanswered.is_empty() {
            let unanswered: Vec<String> = distribution
                .unanswered
                .iter()
                .map(ToString::to_string)
                .collect();
            report(
                Check::Finalization,
                "every member comment answered by staff".into(),
                format!("unanswered: {}", unanswered.join(", ")),
            );
        }
        if let Some(production) = state.production(&distribution.production_id) {
            let without_line: BTreeSet<&MemberId> = production
                .included
                .iter()
                .map(|node| &state.record_at(*node).contributor)
                .filter(|member| !distribution.line_index.contains_key(*member))
                .collect();
            if !without_line.is_empty() {
                let names: Vec<String> = without_line.iter().map(ToString::to_string).collect();
                report(
                    Check::Finalization,
                    "a line for every contributor of an included record".into(),
                    format!("no line for {}", names.join(", ")),
                );
            }
        }
        if !distribution.pool.is_positive() {
            report(
                Check::LineAmounts,
                "a positive pool to split".into(),
                format!("pool {}", distribution.pool),
            );
            return false;
        }
        let weights: Vec<_> = distribution.lines.iter().map(|line| line.weight).collect();
        let expected = money::split_pool(distribution.pool, &weights);
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
                    Check::Finalization,
                    format!("amounts in {}", distribution.pool.currency()),
                    error.to_string(),
                );
                return false;
            }
        }
        true
    }

    fn check_payout(
        &mut self,
        recorded: &RecordedEvent,
        e: &PayoutIssued,
        report: &mut dyn FnMut(Check, String, String),
    ) -> bool {
        if let Some(first) = self.issued.get(&e.payout_id) {
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
                    return true;
                };
                let Some(amounts) = &distribution.amounts else {
                    report(
                        Check::Payout,
                        format!("distribution {distribution_id} finalized before its payouts"),
                        "not finalized".into(),
                    );
                    return true;
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
        true
    }

    /// The checks that need the whole log: every distribution whose payouts were issued
    /// has one per line, summing to its pool.
    pub fn finish(&mut self, sink: &mut FindingSink) {
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

/// Revenue, expenses and fees: an existing production, its currency, a positive amount,
/// a total within bounds.
fn production_amount(
    state: &State,
    production_id: &crate::domain::ids::ProductionId,
    amount: Money,
    what: &str,
    report: &mut dyn FnMut(Check, String, String),
) -> bool {
    let Some(production) = state.production(production_id) else {
        report(
            Check::Apply,
            format!("{what} of an existing production"),
            format!("production {production_id} does not exist"),
        );
        return false;
    };
    if amount.currency() != production.currency || !amount.is_positive() {
        report(
            Check::Apply,
            format!("a positive {what} in {}", production.currency),
            format!("{what} {amount}"),
        );
        return false;
    }
    let total = if what == "revenue" {
        production.revenue_total
    } else {
        production.expense_total
    };
    if total.checked_add(amount).is_err() {
        report(
            Check::Apply,
            format!("a {what} total within the ledger's bound"),
            format!("{total} + {amount}"),
        );
        return false;
    }
    true
}
