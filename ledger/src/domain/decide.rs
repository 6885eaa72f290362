//! `decide`: a command against the current state gives events, or the rule it breaks.
//! Pure: no clock (time is `now`), no I/O, no randomness. Each command's checks cover every
//! event it produces (e.g. duplicate lines within one proposal), and the decider applies
//! the events to its state before deciding the next command, so later decisions see them.

use std::collections::{BTreeSet, HashSet};

use super::commands::*;
use super::events::*;
use super::ids::*;
use super::limits;
use super::rejection::{Blocker, Entity, Rejection};
use super::state::{Distribution, PayoutStatus, Production, State};
use crate::dag::{EdgeError, NodeId};
use crate::money::{self, ArtistShare, Money};
use crate::time::Timestamp;

pub fn decide(
    state: &State,
    command: &Command,
    now: Timestamp,
) -> Result<Vec<DomainEvent>, Rejection> {
    match command {
        Command::RegisterMember(c) => register_member(state, c),
        Command::ErasePersonalData(c) => erase_personal_data(state, c),
        Command::StartProject(c) => start_project(state, c),
        Command::AgreeLeadFee(c) => agree_lead_fee(state, c),
        Command::AssignLead(c) => assign_lead(state, c),
        Command::FinishProject(c) => finish_project(state, c),
        Command::UploadRecord(c) => upload_record(state, c, &[]),
        Command::UploadRemix(c) => {
            // A remix names at least one source (rule 1).
            if c.sources.is_empty() {
                return Err(Rejection::Empty { field: "sources" });
            }
            upload_record(state, &c.record, &c.sources)
        }
        Command::CiteSource(c) => cite_source(state, c),
        Command::WithdrawRecord(c) => withdraw_record(state, c),
        Command::PostComment(c) => post_comment(state, c, now),
        Command::OpenProduction(c) => open_production(state, c),
        Command::IncludeRecord(c) => include_record(state, c),
        Command::RecordRevenue(c) => {
            let amount = money_entry(state, &c.production_id, c.amount, &c.description, true)?;
            Ok(vec![RevenueRecorded {
                production_id: c.production_id.clone(),
                amount,
                description: c.description.clone(),
            }
            .into()])
        }
        Command::RecordExpense(c) => {
            let amount = money_entry(state, &c.production_id, c.amount, &c.description, false)?;
            Ok(vec![ExpenseRecorded {
                production_id: c.production_id.clone(),
                amount,
                description: c.description.clone(),
            }
            .into()])
        }
        Command::ProposeAllocation(c) => propose_allocation(state, c, now),
        Command::AmendAllocation(c) => amend_allocation(state, c, now),
        Command::FinalizeAllocation(c) => finalize_allocation(state, c, now),
        Command::IssuePayouts(c) => issue_payouts(state, c),
        Command::SettlePayout(c) => {
            let payout = payout_in(state, &c.payout_id, PayoutStatus::Pending)?;
            text("reference", &c.reference, limits::REASON_LENGTH_BYTES_MAX)?;
            Ok(vec![PayoutSettled {
                payout_id: c.payout_id.clone(),
                attempt: payout.attempt,
                reference: c.reference.clone(),
            }
            .into()])
        }
        Command::FailPayout(c) => {
            let payout = payout_in(state, &c.payout_id, PayoutStatus::Pending)?;
            text("reason", &c.reason, limits::REASON_LENGTH_BYTES_MAX)?;
            Ok(vec![PayoutFailed {
                payout_id: c.payout_id.clone(),
                attempt: payout.attempt,
                reason: c.reason.clone(),
            }
            .into()])
        }
        Command::RetryPayout(c) => {
            let payout = payout_in(state, &c.payout_id, PayoutStatus::Failed)?;
            Ok(vec![PayoutRetried {
                payout_id: c.payout_id.clone(),
                attempt: payout.attempt + 1,
            }
            .into()])
        }
    }
}

// ---- input checks ----

fn length(field: &'static str, value: &str, max_bytes: usize) -> Result<(), Rejection> {
    if value.len() > max_bytes {
        return Err(Rejection::TooLong {
            field,
            length_bytes: value.len(),
            max_bytes,
        });
    }
    Ok(())
}

/// Required text: not empty (nor only whitespace), and bounded.
fn text(field: &'static str, value: &str, max_bytes: usize) -> Result<(), Rejection> {
    if value.trim().is_empty() {
        return Err(Rejection::Empty { field });
    }
    length(field, value, max_bytes)
}

fn count(field: &'static str, count: usize, max: usize) -> Result<(), Rejection> {
    if count > max {
        return Err(Rejection::TooMany { field, count, max });
    }
    Ok(())
}

fn no_duplicates<'a, T: std::fmt::Display + Eq + std::hash::Hash + 'a>(
    field: &'static str,
    items: impl IntoIterator<Item = &'a T>,
) -> Result<(), Rejection> {
    let mut seen = HashSet::new();
    for item in items {
        if !seen.insert(item) {
            return Err(Rejection::Duplicate {
                field,
                id: item.to_string(),
            });
        }
    }
    Ok(())
}

// ---- lookups ----

fn not_found(field: &'static str, entity: Entity, id: &impl ToString) -> Rejection {
    Rejection::NotFound {
        field,
        entity,
        id: id.to_string(),
    }
}

fn already_exists(field: &'static str, entity: Entity, id: &impl ToString) -> Rejection {
    Rejection::AlreadyExists {
        field,
        entity,
        id: id.to_string(),
    }
}

fn member(state: &State, field: &'static str, id: &MemberId) -> Result<(), Rejection> {
    state
        .member(id)
        .map(|_| ())
        .ok_or_else(|| not_found(field, Entity::Member, id))
}

fn open_project<'a>(
    state: &'a State,
    id: &ProjectId,
) -> Result<&'a super::state::Project, Rejection> {
    let project = state
        .project(id)
        .ok_or_else(|| not_found("project_id", Entity::Project, id))?;
    if project.finished {
        return Err(Rejection::ProjectFinished {
            project_id: id.clone(),
        });
    }
    Ok(project)
}

/// An existing, non-withdrawn record (rules 1 and 3).
pub fn live_record(state: &State, field: &'static str, id: &RecordId) -> Result<NodeId, Rejection> {
    let node = state
        .record_node(id)
        .ok_or_else(|| not_found(field, Entity::Record, id))?;
    if state.record_at(node).withdrawn {
        return Err(Rejection::RecordWithdrawn {
            field,
            record_id: id.clone(),
        });
    }
    Ok(node)
}

fn production<'a>(state: &'a State, id: &ProductionId) -> Result<&'a Production, Rejection> {
    state
        .production(id)
        .ok_or_else(|| not_found("production_id", Entity::Production, id))
}

fn distribution<'a>(state: &'a State, id: &DistributionId) -> Result<&'a Distribution, Rejection> {
    state
        .distribution(id)
        .ok_or_else(|| not_found("distribution_id", Entity::Distribution, id))
}

/// A positive amount in the production's currency that keeps its totals within bounds
/// (rule 9).
pub fn production_amount(
    production: &Production,
    field: &'static str,
    amount: Money,
    revenue: bool,
) -> Result<Money, Rejection> {
    if amount.currency() != production.currency {
        return Err(Rejection::CurrencyMismatch {
            field,
            expected: production.currency,
            got: amount.currency(),
        });
    }
    if !amount.is_positive() {
        return Err(Rejection::NotPositive { field, amount });
    }
    let total = if revenue {
        production.revenue_total
    } else {
        production.expense_total
    };
    total
        .checked_add(amount)
        .map_err(|error| Rejection::Money { field, error })?;
    Ok(amount)
}

/// A revenue or expense entry: a positive amount in the production's currency, with a
/// bounded description.
fn money_entry(
    state: &State,
    production_id: &ProductionId,
    amount: Money,
    description: &str,
    revenue: bool,
) -> Result<Money, Rejection> {
    let amount = production_amount(production(state, production_id)?, "amount", amount, revenue)?;
    length("description", description, limits::REASON_LENGTH_BYTES_MAX)?;
    Ok(amount)
}

// ---- members and projects ----

fn register_member(state: &State, c: &RegisterMember) -> Result<Vec<DomainEvent>, Rejection> {
    if state.member(&c.member_id).is_some() {
        return Err(already_exists("member_id", Entity::Member, &c.member_id));
    }
    text("handle", &c.handle, limits::HANDLE_LENGTH_BYTES_MAX)?;
    if c.personal_data.ciphertext.len() > limits::SEALED_PERSONAL_DATA_BYTES_MAX {
        return Err(Rejection::TooLong {
            field: "personal_data",
            length_bytes: c.personal_data.ciphertext.len(),
            max_bytes: limits::SEALED_PERSONAL_DATA_BYTES_MAX,
        });
    }
    Ok(vec![MemberRegistered {
        member_id: c.member_id.clone(),
        handle: c.handle.clone(),
        personal_data: c.personal_data.clone(),
    }
    .into()])
}

fn erase_personal_data(
    state: &State,
    c: &ErasePersonalData,
) -> Result<Vec<DomainEvent>, Rejection> {
    let member = state
        .member(&c.member_id)
        .ok_or_else(|| not_found("member_id", Entity::Member, &c.member_id))?;
    if member.erased {
        return Err(Rejection::AlreadyErased {
            member_id: c.member_id.clone(),
        });
    }
    Ok(vec![MemberPersonalDataErased {
        member_id: c.member_id.clone(),
    }
    .into()])
}

fn start_project(state: &State, c: &StartProject) -> Result<Vec<DomainEvent>, Rejection> {
    if state.project(&c.project_id).is_some() {
        return Err(already_exists("project_id", Entity::Project, &c.project_id));
    }
    text("title", &c.title, limits::TITLE_LENGTH_BYTES_MAX)?;
    Ok(vec![ProjectStarted {
        project_id: c.project_id.clone(),
        title: c.title.clone(),
    }
    .into()])
}

/// Rule 2, agreeing a fee: an open project with a production, a known lead without a fee
/// yet, and a fee that is a valid expense of the production (rule 9). Gives the
/// production the fee is an expense of.
pub fn check_lead_fee<'a>(
    state: &'a State,
    project_id: &ProjectId,
    lead: &MemberId,
    fee: Money,
) -> Result<&'a ProductionId, Rejection> {
    let project = open_project(state, project_id)?;
    member(state, "lead", lead)?;
    let production_id =
        project
            .production
            .as_ref()
            .ok_or_else(|| Rejection::ProjectHasNoProduction {
                project_id: project_id.clone(),
            })?;
    if project.lead_fees.contains_key(lead) {
        return Err(Rejection::LeadFeeAlreadyAgreed {
            project_id: project_id.clone(),
            lead: lead.clone(),
        });
    }
    // The fee is an expense of the production (rule 2).
    production_amount(production(state, production_id)?, "fee", fee, false)?;
    Ok(production_id)
}

fn agree_lead_fee(state: &State, c: &AgreeLeadFee) -> Result<Vec<DomainEvent>, Rejection> {
    let production_id = check_lead_fee(state, &c.project_id, &c.lead, c.fee)?;
    Ok(vec![LeadFeeAgreed {
        project_id: c.project_id.clone(),
        production_id: production_id.clone(),
        lead: c.lead.clone(),
        fee: c.fee,
    }
    .into()])
}

/// Rule 2, assigning a lead: an open project, a known member not assigned yet, whose fee
/// was agreed first if the project has a production.
pub fn check_lead_assignment(
    state: &State,
    project_id: &ProjectId,
    lead: &MemberId,
) -> Result<(), Rejection> {
    let project = open_project(state, project_id)?;
    member(state, "lead", lead)?;
    if project.leads.contains(lead) {
        return Err(Rejection::LeadAlreadyAssigned {
            project_id: project_id.clone(),
            lead: lead.clone(),
        });
    }
    if project.production.is_some() && !project.lead_fees.contains_key(lead) {
        return Err(Rejection::LeadFeeNotAgreed {
            project_id: project_id.clone(),
            lead: lead.clone(),
        });
    }
    Ok(())
}

fn assign_lead(state: &State, c: &AssignLead) -> Result<Vec<DomainEvent>, Rejection> {
    check_lead_assignment(state, &c.project_id, &c.lead)?;
    Ok(vec![LeadAssigned {
        project_id: c.project_id.clone(),
        lead: c.lead.clone(),
    }
    .into()])
}

fn finish_project(state: &State, c: &FinishProject) -> Result<Vec<DomainEvent>, Rejection> {
    open_project(state, &c.project_id)?;
    Ok(vec![ProjectFinished {
        project_id: c.project_id.clone(),
    }
    .into()])
}

// ---- records ----

fn upload_record(
    state: &State,
    c: &UploadRecord,
    sources: &[RecordId],
) -> Result<Vec<DomainEvent>, Rejection> {
    if state.record(&c.record_id).is_some() {
        return Err(already_exists("record_id", Entity::Record, &c.record_id));
    }
    open_project(state, &c.project_id)?;
    member(state, "contributor", &c.contributor)?;
    text("title", &c.title, limits::TITLE_LENGTH_BYTES_MAX)?;
    text(
        "licence_terms_version",
        &c.licence_terms_version,
        limits::TERMS_VERSION_LENGTH_BYTES_MAX,
    )?;
    let licence = Licence {
        terms_version: c.licence_terms_version.clone(),
    };
    if sources.is_empty() {
        return Ok(vec![RecordUploaded {
            record_id: c.record_id.clone(),
            project_id: c.project_id.clone(),
            contributor: c.contributor.clone(),
            kind: c.kind,
            title: c.title.clone(),
            media: c.media.clone(),
            licence,
        }
        .into()]);
    }
    check_remix_sources(state, &c.record_id, sources)?;
    Ok(vec![RemixUploaded {
        record_id: c.record_id.clone(),
        project_id: c.project_id.clone(),
        contributor: c.contributor.clone(),
        kind: c.kind,
        title: c.title.clone(),
        media: c.media.clone(),
        licence,
        sources: sources.to_vec(),
    }
    .into()])
}

/// Rule 1 for a remix's sources, checked against the state before the remix exists: at
/// least one, bounded, each named once, each an existing, non-withdrawn record other than
/// the remix. A new record comes last in the tree's order, so its sources cannot close a
/// cycle; naming itself is the one way a remix could.
pub fn check_remix_sources(
    state: &State,
    record_id: &RecordId,
    sources: &[RecordId],
) -> Result<(), Rejection> {
    if sources.is_empty() {
        return Err(Rejection::Empty { field: "sources" });
    }
    count("sources", sources.len(), limits::SOURCES_PER_REMIX_MAX)?;
    no_duplicates("sources", sources)?;
    for source in sources {
        if source == record_id {
            return Err(Rejection::SelfCitation {
                record_id: record_id.clone(),
            });
        }
        live_record(state, "sources", source)?;
    }
    Ok(())
}

/// Rule 1 for a later citation: an existing record, an existing non-withdrawn source
/// other than it, not cited already, and no cycle.
pub fn check_citation(
    state: &State,
    record_id: &RecordId,
    source_id: &RecordId,
) -> Result<(), Rejection> {
    let record = state
        .record_node(record_id)
        .ok_or_else(|| not_found("record_id", Entity::Record, record_id))?;
    if record_id == source_id {
        return Err(Rejection::SelfCitation {
            record_id: record_id.clone(),
        });
    }
    let source = live_record(state, "source_id", source_id)?;
    if state.tree().has_edge(source, record) {
        return Err(Rejection::AlreadyCited {
            record_id: record_id.clone(),
            source_id: source_id.clone(),
        });
    }
    match state.tree().check_edge(source, record) {
        Ok(()) => Ok(()),
        Err(EdgeError::Cycle { .. }) => Err(Rejection::Cycle {
            record_id: record_id.clone(),
            source_id: source_id.clone(),
        }),
        Err(EdgeError::SelfLoop(_) | EdgeError::UnknownNode(_)) => {
            unreachable!("both records exist and differ")
        }
    }
}

fn cite_source(state: &State, c: &CiteSource) -> Result<Vec<DomainEvent>, Rejection> {
    check_citation(state, &c.record_id, &c.source_id)?;
    Ok(vec![SourceCited {
        record_id: c.record_id.clone(),
        source_id: c.source_id.clone(),
    }
    .into()])
}

fn withdraw_record(state: &State, c: &WithdrawRecord) -> Result<Vec<DomainEvent>, Rejection> {
    live_record(state, "record_id", &c.record_id)?;
    text("reason", &c.reason, limits::REASON_LENGTH_BYTES_MAX)?;
    Ok(vec![RecordWithdrawn {
        record_id: c.record_id.clone(),
        reason: c.reason.clone(),
    }
    .into()])
}

// ---- conversation ----

fn post_comment(
    state: &State,
    c: &PostComment,
    now: Timestamp,
) -> Result<Vec<DomainEvent>, Rejection> {
    if state.comment(&c.comment_id).is_some() {
        return Err(already_exists("comment_id", Entity::Comment, &c.comment_id));
    }
    member(state, "author", &c.author)?;
    text("body", &c.body, limits::COMMENT_LENGTH_BYTES_MAX)?;
    let (target, reply_to) = match &c.on {
        CommentOn::Record(id) => {
            state
                .record(id)
                .ok_or_else(|| not_found("on", Entity::Record, id))?;
            (CommentTarget::Record(id.clone()), None)
        }
        CommentOn::Distribution(id) => {
            distribution(state, id)?;
            (CommentTarget::Distribution(id.clone()), None)
        }
        CommentOn::Line {
            distribution_id,
            member,
        } => {
            let distribution = distribution(state, distribution_id)?;
            if !distribution.line_index.contains_key(member) {
                return Err(not_found("on", Entity::Line, member));
            }
            (
                CommentTarget::Line {
                    distribution_id: distribution_id.clone(),
                    member: member.clone(),
                },
                None,
            )
        }
        CommentOn::Reply(parent) => {
            let parent_comment = state
                .comment(parent)
                .ok_or_else(|| not_found("on", Entity::Comment, parent))?;
            (parent_comment.target.clone(), Some(parent.clone()))
        }
    };
    check_comment_window(state, &target, c.staff, now)?;
    Ok(vec![CommentPosted {
        comment_id: c.comment_id.clone(),
        author: c.author.clone(),
        staff: c.staff,
        target,
        reply_to,
        body: c.body.clone(),
    }
    .into()])
}

/// Rule 6 for a comment: members comment on a distribution only during its window. Staff
/// may still reply afterwards: a comment made in the window's last minute must be
/// answerable, or the distribution could never be finalized (rule 7).
pub fn check_comment_window(
    state: &State,
    target: &CommentTarget,
    staff: bool,
    now: Timestamp,
) -> Result<(), Rejection> {
    if let Some(distribution_id) = target.distribution() {
        let closes_at = distribution(state, distribution_id)?.window_closes_at;
        if !staff && now >= closes_at {
            return Err(Rejection::WindowClosed {
                field: "on",
                distribution_id: distribution_id.clone(),
                closed_at: closes_at,
            });
        }
    }
    Ok(())
}

// ---- productions ----

fn open_production(state: &State, c: &OpenProduction) -> Result<Vec<DomainEvent>, Rejection> {
    if state.production(&c.production_id).is_some() {
        return Err(already_exists(
            "production_id",
            Entity::Production,
            &c.production_id,
        ));
    }
    let project = open_project(state, &c.project_id)?;
    if let Some(existing) = &project.production {
        return Err(Rejection::ProjectHasProduction {
            project_id: c.project_id.clone(),
            production_id: existing.clone(),
        });
    }
    text("title", &c.title, limits::TITLE_LENGTH_BYTES_MAX)?;
    let feedback_window_micros = c
        .feedback_window_micros
        .unwrap_or(limits::FEEDBACK_WINDOW_MICROS_DEFAULT);
    if feedback_window_micros <= 0 || feedback_window_micros > limits::FEEDBACK_WINDOW_MICROS_MAX {
        return Err(Rejection::OutOfRange {
            field: "feedback_window_micros",
            value: feedback_window_micros.to_string(),
            rule: "must be positive and at most one year",
        });
    }
    Ok(vec![ProductionOpened {
        production_id: c.production_id.clone(),
        project_id: c.project_id.clone(),
        title: c.title.clone(),
        currency: c.currency,
        artist_share: c.artist_share.unwrap_or_else(ArtistShare::half),
        feedback_window_micros,
    }
    .into()])
}

/// Rule 3: an existing production, and an existing, non-withdrawn record not included yet.
pub fn check_inclusion(
    state: &State,
    production_id: &ProductionId,
    record_id: &RecordId,
) -> Result<(), Rejection> {
    let production = production(state, production_id)?;
    let node = live_record(state, "record_id", record_id)?;
    if production.included_set.contains(&node) {
        return Err(Rejection::AlreadyIncluded {
            production_id: production_id.clone(),
            record_id: record_id.clone(),
        });
    }
    Ok(())
}

fn include_record(state: &State, c: &IncludeRecord) -> Result<Vec<DomainEvent>, Rejection> {
    check_inclusion(state, &c.production_id, &c.record_id)?;
    Ok(vec![RecordIncluded {
        production_id: c.production_id.clone(),
        record_id: c.record_id.clone(),
    }
    .into()])
}

// ---- allocation ----

/// Rule 5 for each line: a known member, once; a bounded rationale; records contributed by
/// that member and included in the production or ancestors of an included record.
fn check_lines(state: &State, production: &Production, lines: &[Line]) -> Result<(), Rejection> {
    check_lines_payable(state, &state.payable_records(production), lines)
}

/// `check_lines` with the production's payable records (`State::payable_records`) given,
/// so that a caller checking many lines computes them once.
pub fn check_lines_payable(
    state: &State,
    payable: &HashSet<NodeId>,
    lines: &[Line],
) -> Result<(), Rejection> {
    count("lines", lines.len(), limits::LINES_PER_PROPOSAL_MAX)?;
    no_duplicates("lines[].member", lines.iter().map(|line| &line.member))?;
    for (index, line) in lines.iter().enumerate() {
        member(state, "lines[].member", &line.member)?;
        text(
            "lines[].rationale",
            &line.rationale,
            limits::RATIONALE_LENGTH_BYTES_MAX,
        )?;
        if line.records.is_empty() {
            return Err(Rejection::Empty {
                field: "lines[].records",
            });
        }
        count(
            "lines[].records",
            line.records.len(),
            limits::RECORDS_PER_LINE_MAX,
        )?;
        no_duplicates("lines[].records", &line.records)?;
        for record_id in &line.records {
            let node = state
                .record_node(record_id)
                .ok_or_else(|| not_found("lines[].records", Entity::Record, record_id))?;
            if state.record_at(node).contributor != line.member {
                return Err(Rejection::RecordNotByMember {
                    index,
                    member: line.member.clone(),
                    record_id: record_id.clone(),
                });
            }
            if !payable.contains(&node) {
                return Err(Rejection::RecordNotInProduction {
                    index,
                    record_id: record_id.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Lines past the first chunk, as continuation events of the same append, so that no
/// event outgrows the store's payload bound.
fn continuations(distribution_id: &DistributionId, rest: &[Line]) -> Vec<DomainEvent> {
    rest.chunks(limits::LINES_PER_EVENT_MAX)
        .map(|chunk| {
            AllocationLinesContinued {
                distribution_id: distribution_id.clone(),
                lines: chunk.to_vec(),
            }
            .into()
        })
        .collect()
}

fn first_chunk(lines: &[Line]) -> (&[Line], &[Line]) {
    lines.split_at(lines.len().min(limits::LINES_PER_EVENT_MAX))
}

fn propose_allocation(
    state: &State,
    c: &ProposeAllocation,
    now: Timestamp,
) -> Result<Vec<DomainEvent>, Rejection> {
    if state.distribution(&c.distribution_id).is_some() {
        return Err(already_exists(
            "distribution_id",
            Entity::Distribution,
            &c.distribution_id,
        ));
    }
    let production = production(state, &c.production_id)?;
    if let Some(open) = &production.open_distribution {
        return Err(Rejection::DistributionOpen {
            production_id: c.production_id.clone(),
            distribution_id: open.clone(),
        });
    }
    if c.lines.is_empty() {
        return Err(Rejection::Empty { field: "lines" });
    }
    check_lines(state, production, &c.lines)?;
    // The cut-off is now: everything recorded so far counts (rule 4).
    let pool = money::pool(
        production.revenue_total,
        production.expense_total,
        production.artist_share,
        production.pools_total,
    )?;
    let (first, rest) = first_chunk(&c.lines);
    let mut events: Vec<DomainEvent> = vec![AllocationProposed {
        distribution_id: c.distribution_id.clone(),
        production_id: c.production_id.clone(),
        revenue_total: production.revenue_total,
        expense_total: production.expense_total,
        earlier_pools: production.pools_total,
        pool,
        published_at: now,
        window_closes_at: window_closes_at(production, now),
        line_count: c.lines.len() as u32,
        lines: first.to_vec(),
    }
    .into()];
    events.extend(continuations(&c.distribution_id, rest));
    Ok(events)
}

/// Rule 6: a proposal published at `published_at` is open for the production's window. A
/// window that is not positive (never written by `open_production`) closes at once.
pub fn window_closes_at(production: &Production, published_at: Timestamp) -> Timestamp {
    let window = u64::try_from(production.feedback_window_micros).unwrap_or(0);
    published_at.saturating_add(std::time::Duration::from_micros(window))
}

/// A distribution that may still change (rule 6): not finalized, its window open at `now`.
pub fn open_distribution<'a>(
    state: &'a State,
    id: &DistributionId,
    now: Timestamp,
) -> Result<&'a Distribution, Rejection> {
    let distribution = distribution(state, id)?;
    if distribution.amounts.is_some() {
        return Err(Rejection::AlreadyFinalized {
            distribution_id: id.clone(),
        });
    }
    if now >= distribution.window_closes_at {
        return Err(Rejection::WindowClosed {
            field: "distribution_id",
            distribution_id: id.clone(),
            closed_at: distribution.window_closes_at,
        });
    }
    Ok(distribution)
}

/// Rule 6 for an amendment: during the window of a distribution not yet finalized, saying
/// why, and answering only comments on that distribution.
pub fn check_amendment<'a>(
    state: &'a State,
    distribution_id: &DistributionId,
    reason: &str,
    answers: &[CommentId],
    now: Timestamp,
) -> Result<&'a Distribution, Rejection> {
    let distribution = open_distribution(state, distribution_id, now)?;
    text("reason", reason, limits::REASON_LENGTH_BYTES_MAX)?;
    count(
        "answers",
        answers.len(),
        limits::ANSWERED_COMMENTS_PER_AMENDMENT_MAX,
    )?;
    no_duplicates("answers", answers)?;
    for comment_id in answers {
        let on_this = state
            .comment(comment_id)
            .and_then(|comment| comment.target.distribution())
            == Some(distribution_id);
        if !on_this {
            return Err(Rejection::CommentNotOnDistribution {
                field: "answers",
                comment_id: comment_id.clone(),
                distribution_id: distribution_id.clone(),
            });
        }
    }
    Ok(distribution)
}

fn amend_allocation(
    state: &State,
    c: &AmendAllocation,
    now: Timestamp,
) -> Result<Vec<DomainEvent>, Rejection> {
    let distribution = check_amendment(state, &c.distribution_id, &c.reason, &c.answers, now)?;
    if c.remove.is_empty() && c.lines.is_empty() {
        return Err(Rejection::Empty { field: "lines" });
    }
    count("remove", c.remove.len(), limits::LINES_PER_PROPOSAL_MAX)?;
    no_duplicates(
        "remove",
        c.remove
            .iter()
            .chain(c.lines.iter().map(|line| &line.member)),
    )?;
    for member in &c.remove {
        if !distribution.line_index.contains_key(member) {
            return Err(not_found("remove", Entity::Line, member));
        }
    }
    let production = production(state, &distribution.production_id)?;
    check_lines(state, production, &c.lines)?;
    let added = c
        .lines
        .iter()
        .filter(|line| !distribution.line_index.contains_key(&line.member))
        .count();
    let line_count = distribution.lines.len() - c.remove.len() + added;
    if line_count == 0 || line_count > limits::LINES_PER_PROPOSAL_MAX {
        return Err(Rejection::LineCountOutOfRange {
            count: line_count,
            max: limits::LINES_PER_PROPOSAL_MAX,
        });
    }
    let (first, rest) = first_chunk(&c.lines);
    let mut events: Vec<DomainEvent> = vec![AllocationAmended {
        distribution_id: c.distribution_id.clone(),
        reason: c.reason.clone(),
        answers: c.answers.clone(),
        removed: c.remove.clone(),
        line_count: c.lines.len() as u32,
        lines: first.to_vec(),
    }
    .into()];
    events.extend(continuations(&c.distribution_id, rest));
    Ok(events)
}

/// Every reason the distribution cannot be finalized now (rule 7), and the amounts.
pub fn finalization_blockers(
    state: &State,
    distribution: &Distribution,
    now: Timestamp,
) -> (Vec<Blocker>, Vec<Money>) {
    let contributors: BTreeSet<&MemberId> = state
        .production(&distribution.production_id)
        .map(|production| {
            production
                .included
                .iter()
                .map(|node| &state.record_at(*node).contributor)
                .collect()
        })
        .unwrap_or_default();
    blockers_to_finalizing(&FinalizationInputs {
        now,
        window_closes_at: distribution.window_closes_at,
        unanswered: &distribution.unanswered,
        pool: distribution.pool,
        lines: &distribution.lines,
        contributors,
        has_line: &|member| distribution.line_index.contains_key(member),
    })
}

/// What rule 7 looks at, as plain values, so that the decider, the audit replay and the
/// allocation read model (each with its own state) list the same blockers from one
/// definition.
pub struct FinalizationInputs<'a> {
    pub now: Timestamp,
    pub window_closes_at: Timestamp,
    pub unanswered: &'a BTreeSet<CommentId>,
    pub pool: Money,
    pub lines: &'a [Line],
    /// The contributors of the production's included records, each once, in order.
    pub contributors: BTreeSet<&'a MemberId>,
    /// Whether `lines` has a line for the member (each side keeps its own index).
    pub has_line: &'a dyn Fn(&MemberId) -> bool,
}

/// Every reason finalization is refused (rule 7), and the line amounts it would fix.
pub fn blockers_to_finalizing(inputs: &FinalizationInputs) -> (Vec<Blocker>, Vec<Money>) {
    let mut blockers = Vec::new();
    if inputs.now < inputs.window_closes_at {
        blockers.push(Blocker::WindowOpen {
            closes_at: inputs.window_closes_at,
        });
    }
    if !inputs.unanswered.is_empty() {
        blockers.push(Blocker::UnansweredComments {
            comment_ids: inputs.unanswered.iter().cloned().collect(),
        });
    }
    let weights: Vec<_> = inputs.lines.iter().map(|line| line.weight).collect();
    let amounts = money::split_pool(inputs.pool, &weights);
    let without_line: Vec<MemberId> = inputs
        .contributors
        .iter()
        .filter(|member| !(inputs.has_line)(member))
        .map(|member| (*member).clone())
        .collect();
    if !without_line.is_empty() {
        blockers.push(Blocker::ContributorsWithoutLine {
            members: without_line,
        });
    }
    // One payout per line (rule 8): a line that would pay nothing is reweighted or removed
    // first, whether or not its member contributed an included record.
    let zero: Vec<MemberId> = inputs
        .lines
        .iter()
        .zip(&amounts)
        .filter(|(_, amount)| !amount.is_positive())
        .map(|(line, _)| line.member.clone())
        .collect();
    if !zero.is_empty() {
        blockers.push(Blocker::LinesWithZeroAmount { members: zero });
    }
    let sum = money::sum(inputs.pool.currency(), &amounts)
        .expect("amounts share the pool's currency and sum to at most the pool");
    if sum != inputs.pool {
        blockers.push(Blocker::AmountsDoNotSumToPool {
            sum,
            pool: inputs.pool,
        });
    }
    (blockers, amounts)
}

fn finalize_allocation(
    state: &State,
    c: &FinalizeAllocation,
    now: Timestamp,
) -> Result<Vec<DomainEvent>, Rejection> {
    let distribution = distribution(state, &c.distribution_id)?;
    if distribution.amounts.is_some() {
        return Err(Rejection::AlreadyFinalized {
            distribution_id: c.distribution_id.clone(),
        });
    }
    let (blockers, amounts) = finalization_blockers(state, distribution, now);
    if !blockers.is_empty() {
        return Err(Rejection::FinalizationBlocked {
            distribution_id: c.distribution_id.clone(),
            blockers,
        });
    }
    Ok(vec![AllocationFinalized {
        distribution_id: c.distribution_id.clone(),
        pool: distribution.pool,
        amounts,
    }
    .into()])
}

// ---- payouts ----

fn issue_payouts(state: &State, c: &IssuePayouts) -> Result<Vec<DomainEvent>, Rejection> {
    match c {
        IssuePayouts::Distribution(distribution_id) => {
            let distribution = distribution(state, distribution_id)?;
            let amounts = distribution
                .amounts
                .as_ref()
                .ok_or_else(|| Rejection::NotFinalized {
                    distribution_id: distribution_id.clone(),
                })?;
            if distribution.payouts_issued {
                return Err(Rejection::PayoutAlreadyIssued {
                    field: "distribution_id",
                    payout_id: PayoutId::for_line(distribution_id, &distribution.lines[0].member),
                });
            }
            Ok(distribution
                .lines
                .iter()
                .zip(amounts)
                .map(|(line, amount)| {
                    PayoutIssued {
                        payout_id: PayoutId::for_line(distribution_id, &line.member),
                        member: line.member.clone(),
                        amount: *amount,
                        payout_for: PayoutFor::Line {
                            distribution_id: distribution_id.clone(),
                        },
                    }
                    .into()
                })
                .collect())
        }
        IssuePayouts::LeadFee { project_id, lead } => {
            let project = state
                .project(project_id)
                .ok_or_else(|| not_found("project_id", Entity::Project, project_id))?;
            let fee = project
                .lead_fees
                .get(lead)
                .ok_or_else(|| Rejection::LeadFeeNotAgreed {
                    project_id: project_id.clone(),
                    lead: lead.clone(),
                })?;
            let payout_id = PayoutId::for_lead_fee(project_id, lead);
            if state.payout(&payout_id).is_some() {
                return Err(Rejection::PayoutAlreadyIssued {
                    field: "lead",
                    payout_id,
                });
            }
            Ok(vec![PayoutIssued {
                payout_id,
                member: lead.clone(),
                amount: *fee,
                payout_for: PayoutFor::LeadFee {
                    project_id: project_id.clone(),
                },
            }
            .into()])
        }
    }
}

fn payout_in<'a>(
    state: &'a State,
    id: &PayoutId,
    required: PayoutStatus,
) -> Result<&'a super::state::Payout, Rejection> {
    let payout = state
        .payout(id)
        .ok_or_else(|| not_found("payout_id", Entity::Payout, id))?;
    if payout.status != required {
        return Err(Rejection::PayoutState {
            payout_id: id.clone(),
            status: payout.status.name(),
            required: required.name(),
        });
    }
    Ok(payout)
}
