//! Why a command was refused: the field and the rule. Nothing is written on a rejection.

use thiserror::Error;

use super::ids::*;
use crate::money::{Currency, Money, MoneyError, PoolError};
use crate::time::Timestamp;

/// What kind of thing an id names, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entity {
    Member,
    Project,
    Record,
    Production,
    Distribution,
    Comment,
    Payout,
    Line,
    LeadFee,
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Rejection {
    #[error("{field}: must be at most {max_bytes} bytes, got {length_bytes}")]
    TooLong {
        field: &'static str,
        length_bytes: usize,
        max_bytes: usize,
    },
    #[error("{field}: at most {max} allowed, got {count}")]
    TooMany {
        field: &'static str,
        count: usize,
        max: usize,
    },
    #[error("{field}: must not be empty")]
    Empty { field: &'static str },
    #[error("{field}: {value} is out of range: {rule}")]
    OutOfRange {
        field: &'static str,
        value: String,
        rule: &'static str,
    },
    #[error("{field}: {entity} {id} already exists")]
    AlreadyExists {
        field: &'static str,
        entity: Entity,
        id: String,
    },
    #[error("{field}: {entity} {id} does not exist")]
    NotFound {
        field: &'static str,
        entity: Entity,
        id: String,
    },
    #[error("{field}: record {record_id} is withdrawn (rules 1 and 3: only non-withdrawn records are cited or included)")]
    RecordWithdrawn {
        field: &'static str,
        record_id: RecordId,
    },
    #[error("{field}: {id} is listed twice")]
    Duplicate { field: &'static str, id: String },
    #[error("source_id: a record may not cite itself ({record_id}) (rule 1)")]
    SelfCitation { record_id: RecordId },
    #[error(
        "source_id: {record_id} citing {source_id} would close a cycle in the family tree (rule 1)"
    )]
    Cycle {
        record_id: RecordId,
        source_id: RecordId,
    },
    #[error("source_id: {record_id} already cites {source_id}")]
    AlreadyCited {
        record_id: RecordId,
        source_id: RecordId,
    },
    #[error("project_id: project {project_id} is finished")]
    ProjectFinished { project_id: ProjectId },
    #[error("project_id: project {project_id} already has production {production_id}")]
    ProjectHasProduction {
        project_id: ProjectId,
        production_id: ProductionId,
    },
    #[error("project_id: project {project_id} has no production, so a lead fee has nothing to be an expense of (rule 2)")]
    ProjectHasNoProduction { project_id: ProjectId },
    #[error("lead: no fee is agreed with {lead} on project {project_id}, which has a production (rule 2: the fee comes first)")]
    LeadFeeNotAgreed {
        project_id: ProjectId,
        lead: MemberId,
    },
    #[error("lead: a fee with {lead} on project {project_id} is already agreed")]
    LeadFeeAlreadyAgreed {
        project_id: ProjectId,
        lead: MemberId,
    },
    #[error("lead: {lead} is already a lead of project {project_id}")]
    LeadAlreadyAssigned {
        project_id: ProjectId,
        lead: MemberId,
    },
    #[error("member_id: the personal data of {member_id} is already erased")]
    AlreadyErased { member_id: MemberId },
    #[error("{field}: amount is in {got}, the production is in {expected} (rule 9)")]
    CurrencyMismatch {
        field: &'static str,
        expected: Currency,
        got: Currency,
    },
    #[error("{field}: must be positive, got {amount} (rule 9)")]
    NotPositive { field: &'static str, amount: Money },
    #[error("{field}: {error}")]
    Money {
        field: &'static str,
        error: MoneyError,
    },
    #[error("record_id: {record_id} is already included in production {production_id}")]
    AlreadyIncluded {
        production_id: ProductionId,
        record_id: RecordId,
    },
    #[error("production_id: distribution {distribution_id} of production {production_id} is still open (one open distribution at a time)")]
    DistributionOpen {
        production_id: ProductionId,
        distribution_id: DistributionId,
    },
    #[error("production_id: {0} (rule 4)")]
    Pool(PoolError),
    #[error("lines[{index}].records: {record_id} was not contributed by {member} (rule 5)")]
    RecordNotByMember {
        index: usize,
        member: MemberId,
        record_id: RecordId,
    },
    #[error("lines[{index}].records: {record_id} is neither included in the production nor an ancestor of an included record (rule 5)")]
    RecordNotInProduction { index: usize, record_id: RecordId },
    #[error("{field}: the feedback window of {distribution_id} closed at {closed_at} (rule 6)")]
    WindowClosed {
        field: &'static str,
        distribution_id: DistributionId,
        closed_at: Timestamp,
    },
    #[error("{field}: {comment_id} is not a comment on distribution {distribution_id}")]
    CommentNotOnDistribution {
        field: &'static str,
        comment_id: CommentId,
        distribution_id: DistributionId,
    },
    #[error("lines: after the amendment the proposal would have {count} lines; it needs between 1 and {max}")]
    LineCountOutOfRange { count: usize, max: usize },
    #[error("distribution_id: {distribution_id} is already finalized")]
    AlreadyFinalized { distribution_id: DistributionId },
    #[error("distribution_id: {distribution_id} is not finalized yet (rule 8)")]
    NotFinalized { distribution_id: DistributionId },
    #[error("distribution_id: finalization of {distribution_id} refused (rule 7): {}", blockers.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    FinalizationBlocked {
        distribution_id: DistributionId,
        blockers: Vec<Blocker>,
    },
    #[error("{field}: payout {payout_id} was already issued (rule 8)")]
    PayoutAlreadyIssued {
        field: &'static str,
        payout_id: PayoutId,
    },
    #[error("payout_id: payout {payout_id} is {status}; it must be {required} (rule 8)")]
    PayoutState {
        payout_id: PayoutId,
        status: &'static str,
        required: &'static str,
    },
}

impl From<PoolError> for Rejection {
    fn from(error: PoolError) -> Rejection {
        Rejection::Pool(error)
    }
}

/// One reason a distribution cannot be finalized yet.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Blocker {
    #[error("the feedback window is open until {closes_at}")]
    WindowOpen { closes_at: Timestamp },
    #[error("member comments {} have no staff reply", join(.comment_ids))]
    UnansweredComments { comment_ids: Vec<CommentId> },
    #[error("contributors {} of included records have no line", join(.members))]
    ContributorsWithoutLine { members: Vec<MemberId> },
    #[error("lines of {} would be paid nothing", join(.members))]
    LinesWithZeroAmount { members: Vec<MemberId> },
    #[error("the amounts sum to {sum}, not the pool {pool}")]
    AmountsDoNotSumToPool { sum: Money, pool: Money },
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
