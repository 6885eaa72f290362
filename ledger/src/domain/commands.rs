//! One command per user intent. A command is what a caller asks for; `decide` turns it into
//! events or a `Rejection`. Types carry what they can (ids, money, weights are valid by
//! construction); lengths and counts are checked by `decide` against `limits`.

use serde::{Deserialize, Serialize};

use super::events::{Line, MediaRef, RecordKind, SealedPersonalData};
use super::ids::*;
use crate::money::{ArtistShare, Currency, Money};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterMember {
    pub member_id: MemberId,
    pub handle: String,
    /// Sealed before deciding (see `privacy::seal`), so `decide` never sees plain text.
    pub personal_data: SealedPersonalData,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasePersonalData {
    pub member_id: MemberId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartProject {
    pub project_id: ProjectId,
    pub title: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgreeLeadFee {
    pub project_id: ProjectId,
    pub lead: MemberId,
    pub fee: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignLead {
    pub project_id: ProjectId,
    pub lead: MemberId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishProject {
    pub project_id: ProjectId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub record_id: RecordId,
    pub project_id: ProjectId,
    pub contributor: MemberId,
    pub kind: RecordKind,
    pub title: String,
    pub media: MediaRef,
    pub licence_terms_version: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRemix {
    pub record: UploadRecord,
    pub sources: Vec<RecordId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiteSource {
    pub record_id: RecordId,
    pub source_id: RecordId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawRecord {
    pub record_id: RecordId,
    pub reason: String,
}

/// Where a new comment goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommentOn {
    Record(RecordId),
    Distribution(DistributionId),
    Line {
        distribution_id: DistributionId,
        member: MemberId,
    },
    /// A reply: about whatever the comment it answers is about.
    Reply(CommentId),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostComment {
    pub comment_id: CommentId,
    pub author: MemberId,
    /// Set by the service for the community team's replies (it checks the caller's role).
    pub staff: bool,
    pub on: CommentOn,
    pub body: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenProduction {
    pub production_id: ProductionId,
    pub project_id: ProjectId,
    pub title: String,
    pub currency: Currency,
    /// 0.5 when `None`.
    pub artist_share: Option<ArtistShare>,
    /// 14 days when `None`.
    pub feedback_window_micros: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncludeRecord {
    pub production_id: ProductionId,
    pub record_id: RecordId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRevenue {
    pub production_id: ProductionId,
    pub amount: Money,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordExpense {
    pub production_id: ProductionId,
    pub amount: Money,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposeAllocation {
    pub distribution_id: DistributionId,
    pub production_id: ProductionId,
    pub lines: Vec<Line>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmendAllocation {
    pub distribution_id: DistributionId,
    pub reason: String,
    /// Comments on this distribution the amendment answers.
    pub answers: Vec<CommentId>,
    /// Members whose lines are removed.
    pub remove: Vec<MemberId>,
    /// Lines added, or replacing the line of the same member.
    pub lines: Vec<Line>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalizeAllocation {
    pub distribution_id: DistributionId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IssuePayouts {
    /// One payout per line of a finalized distribution.
    Distribution(DistributionId),
    /// The one payout of a lead's agreed fee.
    LeadFee {
        project_id: ProjectId,
        lead: MemberId,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlePayout {
    pub payout_id: PayoutId,
    pub reference: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailPayout {
    pub payout_id: PayoutId,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPayout {
    pub payout_id: PayoutId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    RegisterMember(RegisterMember),
    ErasePersonalData(ErasePersonalData),
    StartProject(StartProject),
    AgreeLeadFee(AgreeLeadFee),
    AssignLead(AssignLead),
    FinishProject(FinishProject),
    UploadRecord(UploadRecord),
    UploadRemix(UploadRemix),
    CiteSource(CiteSource),
    WithdrawRecord(WithdrawRecord),
    PostComment(PostComment),
    OpenProduction(OpenProduction),
    IncludeRecord(IncludeRecord),
    RecordRevenue(RecordRevenue),
    RecordExpense(RecordExpense),
    ProposeAllocation(ProposeAllocation),
    AmendAllocation(AmendAllocation),
    FinalizeAllocation(FinalizeAllocation),
    IssuePayouts(IssuePayouts),
    SettlePayout(SettlePayout),
    FailPayout(FailPayout),
    RetryPayout(RetryPayout),
}

impl Command {
    /// A digest of what the command asks for, to tell a retry (same digest) from a reused
    /// command id (different digest). Sealed personal data is left out: sealing a retry
    /// again gives a new nonce, and a digest of the plain text would outlive erasure.
    pub fn fingerprint(&self) -> u128 {
        let mut hasher = blake3::Hasher::new_derive_key("stemma command fingerprint v1");
        let bytes = match self {
            Command::RegisterMember(register) => super::events::encode_payload(&(
                "RegisterMember",
                &register.member_id,
                &register.handle,
            )),
            other => super::events::encode_payload(other),
        };
        hasher.update(&bytes);
        let mut digest = [0u8; 16];
        digest.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        u128::from_le_bytes(digest)
    }
}
