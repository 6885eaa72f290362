//! `evolve`: applies one event to the state. No rules here — the event is a fact; `decide`
//! checked the rules before it was written.

use super::events::*;
use super::state::*;
use crate::money::Money;

/// Sums that `decide` keeps within `Money::MAGNITUDE_MAJOR_UNITS_MAX`.
fn add(total: Money, amount: Money) -> Money {
    total
        .checked_add(amount)
        .expect("decide keeps every production total within bounds and in one currency")
}

pub fn evolve(state: &mut State, event: &DomainEvent) {
    match event {
        DomainEvent::MemberRegistered(e) => {
            state.members.insert(
                e.member_id.clone(),
                Member {
                    version: 0,
                    erased: false,
                },
            );
        }
        DomainEvent::MemberPersonalDataErased(e) => {
            if let Some(member) = state.members.get_mut(&e.member_id) {
                member.erased = true;
            }
        }
        DomainEvent::ProjectStarted(e) => {
            state.projects.insert(
                e.project_id.clone(),
                Project {
                    version: 0,
                    production: None,
                    lead_fees: Default::default(),
                    leads: Default::default(),
                    finished: false,
                },
            );
        }
        DomainEvent::LeadFeeAgreed(e) => {
            if let Some(project) = state.projects.get_mut(&e.project_id) {
                project.lead_fees.insert(e.lead.clone(), e.fee);
            }
            if let Some(production) = state.productions.get_mut(&e.production_id) {
                production.expense_total = add(production.expense_total, e.fee);
            }
        }
        DomainEvent::LeadAssigned(e) => {
            if let Some(project) = state.projects.get_mut(&e.project_id) {
                project.leads.insert(e.lead.clone());
            }
        }
        DomainEvent::ProjectFinished(e) => {
            if let Some(project) = state.projects.get_mut(&e.project_id) {
                project.finished = true;
            }
        }
        DomainEvent::RecordUploaded(e) => {
            add_record(state, &e.record_id, &e.contributor, &[]);
        }
        DomainEvent::RemixUploaded(e) => {
            add_record(state, &e.record_id, &e.contributor, &e.sources);
        }
        DomainEvent::SourceCited(e) => {
            if let (Some(record), Some(source)) = (
                state.record_node(&e.record_id),
                state.record_node(&e.source_id),
            ) {
                state
                    .tree
                    .add_edge(source, record)
                    .expect("decide refuses citations that close a cycle");
            }
        }
        DomainEvent::RecordWithdrawn(e) => {
            if let Some(node) = state.record_node(&e.record_id) {
                state.records[node as usize].withdrawn = true;
            }
        }
        DomainEvent::CommentPosted(e) => {
            state.comments.insert(
                e.comment_id.clone(),
                Comment {
                    target: e.target.clone(),
                    staff: e.staff,
                },
            );
            if let Some(distribution) = e
                .target
                .distribution()
                .and_then(|id| state.distributions.get_mut(id))
            {
                if !e.staff {
                    distribution.unanswered.insert(e.comment_id.clone());
                } else if let Some(parent) = &e.reply_to {
                    distribution.unanswered.remove(parent);
                }
            }
        }
        DomainEvent::ProductionOpened(e) => {
            state.productions.insert(
                e.production_id.clone(),
                Production {
                    version: 0,
                    project_id: e.project_id.clone(),
                    currency: e.currency,
                    artist_share: e.artist_share,
                    feedback_window_micros: e.feedback_window_micros,
                    included: Vec::new(),
                    included_set: Default::default(),
                    revenue_total: Money::zero(e.currency),
                    expense_total: Money::zero(e.currency),
                    pools_total: Money::zero(e.currency),
                    open_distribution: None,
                },
            );
            if let Some(project) = state.projects.get_mut(&e.project_id) {
                project.production = Some(e.production_id.clone());
            }
        }
        DomainEvent::RecordIncluded(e) => {
            let node = state.record_node(&e.record_id);
            if let (Some(production), Some(node)) =
                (state.productions.get_mut(&e.production_id), node)
            {
                if production.included_set.insert(node) {
                    production.included.push(node);
                }
            }
        }
        DomainEvent::RevenueRecorded(e) => {
            if let Some(production) = state.productions.get_mut(&e.production_id) {
                production.revenue_total = add(production.revenue_total, e.amount);
            }
        }
        DomainEvent::ExpenseRecorded(e) => {
            if let Some(production) = state.productions.get_mut(&e.production_id) {
                production.expense_total = add(production.expense_total, e.amount);
            }
        }
        DomainEvent::AllocationProposed(e) => {
            if let Some(production) = state.productions.get_mut(&e.production_id) {
                production.pools_total = add(production.pools_total, e.pool);
                production.open_distribution = Some(e.distribution_id.clone());
            }
            let mut distribution = Distribution {
                version: 0,
                production_id: e.production_id.clone(),
                pool: e.pool,
                window_closes_at: e.window_closes_at,
                lines: Vec::with_capacity(e.line_count as usize),
                line_index: Default::default(),
                unanswered: Default::default(),
                amounts: None,
                payouts_issued: false,
            };
            upsert_lines(&mut distribution, &e.lines);
            state
                .distributions
                .insert(e.distribution_id.clone(), distribution);
        }
        DomainEvent::AllocationLinesContinued(e) => {
            if let Some(distribution) = state.distributions.get_mut(&e.distribution_id) {
                upsert_lines(distribution, &e.lines);
            }
        }
        DomainEvent::AllocationAmended(e) => {
            if let Some(distribution) = state.distributions.get_mut(&e.distribution_id) {
                if !e.removed.is_empty() {
                    distribution
                        .lines
                        .retain(|line| !e.removed.contains(&line.member));
                    distribution.line_index = distribution
                        .lines
                        .iter()
                        .enumerate()
                        .map(|(index, line)| (line.member.clone(), index))
                        .collect();
                }
                upsert_lines(distribution, &e.lines);
            }
        }
        DomainEvent::AllocationFinalized(e) => {
            if let Some(distribution) = state.distributions.get_mut(&e.distribution_id) {
                distribution.amounts = Some(e.amounts.clone());
                if let Some(production) = state.productions.get_mut(&distribution.production_id) {
                    production.open_distribution = None;
                }
            }
        }
        DomainEvent::PayoutIssued(e) => {
            state.payouts.insert(
                e.payout_id.clone(),
                Payout {
                    version: 0,
                    member: e.member.clone(),
                    amount: e.amount,
                    status: PayoutStatus::Pending,
                    attempt: 1,
                },
            );
            if let PayoutFor::Line { distribution_id } = &e.payout_for {
                if let Some(distribution) = state.distributions.get_mut(distribution_id) {
                    distribution.payouts_issued = true;
                }
            }
        }
        DomainEvent::PayoutRetried(e) => {
            set_payout(state, &e.payout_id, PayoutStatus::Pending, Some(e.attempt))
        }
        DomainEvent::PayoutSettled(e) => {
            set_payout(state, &e.payout_id, PayoutStatus::Settled, None)
        }
        DomainEvent::PayoutFailed(e) => set_payout(state, &e.payout_id, PayoutStatus::Failed, None),
    }
    bump_version(state, &event.stream());
}

fn add_record(
    state: &mut State,
    id: &super::ids::RecordId,
    contributor: &super::ids::MemberId,
    sources: &[super::ids::RecordId],
) {
    let node = state.tree.add_node();
    state.records.push(Record {
        id: id.clone(),
        version: 0,
        contributor: contributor.clone(),
        withdrawn: false,
    });
    state.record_nodes.insert(id.clone(), node);
    for source in sources {
        if let Some(source) = state.record_node(source) {
            // A new node is last in the order: these edges cannot close a cycle.
            state
                .tree
                .add_edge(source, node)
                .expect("edges into a new record agree with the order");
        }
    }
}

fn upsert_lines(distribution: &mut Distribution, lines: &[Line]) {
    for line in lines {
        match distribution.line_index.get(&line.member) {
            Some(index) => distribution.lines[*index] = line.clone(),
            None => {
                distribution
                    .line_index
                    .insert(line.member.clone(), distribution.lines.len());
                distribution.lines.push(line.clone());
            }
        }
    }
}

fn set_payout(
    state: &mut State,
    id: &super::ids::PayoutId,
    status: PayoutStatus,
    attempt: Option<u32>,
) {
    if let Some(payout) = state.payouts.get_mut(id) {
        payout.status = status;
        if let Some(attempt) = attempt {
            payout.attempt = attempt;
        }
    }
}

fn bump_version(state: &mut State, stream: &StreamRef) {
    let version = match stream {
        StreamRef::Member(id) => state.members.get_mut(id).map(|m| &mut m.version),
        StreamRef::Project(id) => state.projects.get_mut(id).map(|p| &mut p.version),
        StreamRef::Record(id) => match state.record_nodes.get(id) {
            Some(node) => Some(&mut state.records[*node as usize].version),
            None => None,
        },
        StreamRef::Production(id) => state.productions.get_mut(id).map(|p| &mut p.version),
        StreamRef::Distribution(id) => state.distributions.get_mut(id).map(|d| &mut d.version),
        StreamRef::Payout(id) => state.payouts.get_mut(id).map(|p| &mut p.version),
    };
    if let Some(version) = version {
        *version += 1;
    }
}
