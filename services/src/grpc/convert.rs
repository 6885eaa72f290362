//! Protobuf requests to domain commands. Every field is checked here or by the domain
//! type it becomes; an error names the field as the caller sent it (`lines[3].weight`).

use ledger::domain::commands::*;
use ledger::domain::events::{Line, MediaRef, RecordKind};
use ledger::domain::ids::*;
use ledger::money::{ArtistShare, Currency, Money, Weight};
use ledger::store::{
    CausationId, CommandId, CorrelationId, InvalidInput, OnBehalfOf, StreamVersion,
};
use proto::v1 as pb;

/// What every command request carries besides the command.
#[derive(Clone, Debug)]
pub struct Meta {
    pub command_id: CommandId,
    pub expected_version: Option<StreamVersion>,
    pub correlation_id: Option<CorrelationId>,
    pub causation_id: Option<CausationId>,
    pub on_behalf_of: Option<OnBehalfOf>,
}

fn rename(field: impl Into<String>) -> impl FnOnce(InvalidInput) -> InvalidInput {
    let field = field.into();
    move |error| InvalidInput::new(field, error.rule)
}

fn optional<T>(
    field: &str,
    value: String,
    parse: impl FnOnce(String) -> Result<T, InvalidInput>,
) -> Result<Option<T>, InvalidInput> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse(value).map(Some).map_err(rename(field))
    }
}

pub fn meta(meta: Option<pb::CommandMeta>) -> Result<Meta, InvalidInput> {
    let meta =
        meta.ok_or_else(|| InvalidInput::new("meta", "is required (it carries command_id)"))?;
    Ok(Meta {
        command_id: CommandId::new(meta.command_id).map_err(rename("meta.command_id"))?,
        expected_version: meta.expected_version,
        correlation_id: optional(
            "meta.correlation_id",
            meta.correlation_id,
            CorrelationId::new,
        )?,
        causation_id: optional("meta.causation_id", meta.causation_id, CausationId::new)?,
        on_behalf_of: optional("meta.on_behalf_of", meta.on_behalf_of, OnBehalfOf::new)?,
    })
}

macro_rules! id_parser {
    ($function:ident, $type:ty) => {
        pub fn $function(field: &str, value: String) -> Result<$type, InvalidInput> {
            <$type>::new(value).map_err(rename(field))
        }
    };
}

id_parser!(member_id, MemberId);
id_parser!(project_id, ProjectId);
id_parser!(record_id, RecordId);
id_parser!(production_id, ProductionId);
id_parser!(distribution_id, DistributionId);
id_parser!(comment_id, CommentId);
id_parser!(payout_id, PayoutId);

fn ids<T>(
    field: &str,
    values: Vec<String>,
    parse: fn(&str, String) -> Result<T, InvalidInput>,
) -> Result<Vec<T>, InvalidInput> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| parse(&format!("{field}[{i}]"), value))
        .collect()
}

pub fn currency(field: &str, code: &str) -> Result<Currency, InvalidInput> {
    Currency::new(code).map_err(|error| InvalidInput::new(field, error.to_string()))
}

pub fn money(field: &str, money: Option<pb::Money>) -> Result<Money, InvalidInput> {
    let money = money.ok_or_else(|| InvalidInput::new(field, "is required"))?;
    let currency = currency(&format!("{field}.currency"), &money.currency)?;
    Money::parse(&money.amount, currency)
        .map_err(|error| InvalidInput::new(format!("{field}.amount"), error.to_string()))
}

fn record_kind(kind: i32) -> Result<RecordKind, InvalidInput> {
    match pb::RecordKind::try_from(kind) {
        Ok(pb::RecordKind::Text) => Ok(RecordKind::Text),
        Ok(pb::RecordKind::Image) => Ok(RecordKind::Image),
        Ok(pb::RecordKind::Audio) => Ok(RecordKind::Audio),
        Ok(pb::RecordKind::Video) => Ok(RecordKind::Video),
        Ok(pb::RecordKind::Other) => Ok(RecordKind::Other),
        Ok(pb::RecordKind::Unspecified) | Err(_) => Err(InvalidInput::new(
            "kind",
            "must be one of TEXT, IMAGE, AUDIO, VIDEO, OTHER",
        )),
    }
}

fn media(hash: &str, size_bytes: u64) -> Result<MediaRef, InvalidInput> {
    let hash = ledger::store::Hash32::from_hex(hash).map_err(rename("media_blake3"))?;
    Ok(MediaRef {
        blake3: hash.0,
        size_bytes,
    })
}

fn lines(field: &str, lines: Vec<pb::AllocationLine>) -> Result<Vec<Line>, InvalidInput> {
    lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            let at = |name: &str| format!("{field}[{i}].{name}");
            Ok(Line {
                member: member_id(&at("member_id"), line.member_id)?,
                weight: Weight::parse(&line.weight)
                    .map_err(|error| InvalidInput::new(at("weight"), error.to_string()))?,
                rationale: line.rationale,
                records: ids(&at("record_ids"), line.record_ids, record_id)?,
            })
        })
        .collect()
}

/// A registration before its personal data is sealed (sealing needs the member's key).
pub struct Registration {
    pub member_id: MemberId,
    pub handle: String,
    pub personal_data: ledger::domain::privacy::PersonalData,
}

pub fn register_member(
    request: pb::RegisterMemberRequest,
) -> Result<(Meta, Registration), InvalidInput> {
    Ok((
        meta(request.meta)?,
        Registration {
            member_id: member_id("member_id", request.member_id)?,
            handle: request.handle,
            personal_data: ledger::domain::privacy::PersonalData {
                legal_name: request.legal_name,
                email: request.email,
                payout_address: request.payout_address,
            },
        },
    ))
}

pub fn erase_personal_data(
    request: pb::ErasePersonalDataRequest,
) -> Result<(Meta, Command), InvalidInput> {
    Ok((
        meta(request.meta)?,
        Command::ErasePersonalData(ErasePersonalData {
            member_id: member_id("member_id", request.member_id)?,
        }),
    ))
}

pub fn start_project(request: pb::StartProjectRequest) -> Result<(Meta, Command), InvalidInput> {
    Ok((
        meta(request.meta)?,
        Command::StartProject(StartProject {
            project_id: project_id("project_id", request.project_id)?,
            title: request.title,
        }),
    ))
}

pub fn agree_lead_fee(request: pb::AgreeLeadFeeRequest) -> Result<(Meta, Command), InvalidInput> {
    Ok((
        meta(request.meta)?,
        Command::AgreeLeadFee(AgreeLeadFee {
            project_id: project_id("project_id", request.project_id)?,
            lead: member_id("lead_member_id", request.lead_member_id)?,
            fee: money("fee", request.fee)?,
        }),
    ))
}

pub fn assign_lead(request: pb::AssignLeadRequest) -> Result<(Meta, Command), InvalidInput> {
    Ok((
        meta(request.meta)?,
        Command::AssignLead(AssignLead {
            project_id: project_id("project_id", request.project_id)?,
            lead: member_id("lead_member_id", request.lead_member_id)?,
        }),
    ))
}

pub fn finish_project(request: pb::FinishProjectRequest) -> Result<(Meta, Command), InvalidInput> {
    Ok((
        meta(request.meta)?,
        Command::FinishProject(FinishProject {
            project_id: project_id("project_id", request.project_id)?,
        }),
    ))
}

fn upload(request: pb::UploadRecordRequest) -> Result<(Meta, UploadRecord), InvalidInput> {
    Ok((
        meta(request.meta)?,
        UploadRecord {
            record_id: record_id("record_id", request.record_id)?,
            project_id: project_id("project_id", request.project_id)?,
            contributor: member_id("contributor_member_id", request.contributor_member_id)?,
            kind: record_kind(request.kind)?,
            title: request.title,
            media: media(&request.media_blake3, request.media_size_bytes)?,
            licence_terms_version: request.licence_terms_version,
        },
    ))
}

pub fn upload_record(request: pb::UploadRecordRequest) -> Result<(Meta, Command), InvalidInput> {
    let (meta, record) = upload(request)?;
    Ok((meta, Command::UploadRecord(record)))
}

pub fn upload_remix(request: pb::UploadRemixRequest) -> Result<(Meta, Command), InvalidInput> {
    let record = request
        .record
        .ok_or_else(|| InvalidInput::new("record", "is required"))?;
    let (meta, record) =
        upload(record).map_err(|e| InvalidInput::new(format!("record.{}", e.field), e.rule))?;
    Ok((
        meta,
        Command::UploadRemix(UploadRemix {
            record,
            sources: ids("source_record_ids", request.source_record_ids, record_id)?,
        }),
    ))
}

pub fn cite_source(request: pb::CiteSourceRequest) -> Result<(Meta, Command), InvalidInput> {
    Ok((
        meta(request.meta)?,
        Command::CiteSource(CiteSource {
            record_id: record_id("record_id", request.record_id)?,
            source_id: record_id("source_record_id", request.source_record_id)?,
        }),
    ))
}

pub fn withdraw_record(
    request: pb::WithdrawRecordRequest,
) -> Result<(Meta, Command), InvalidInput> {
    Ok((
        meta(request.meta)?,
        Command::WithdrawRecord(WithdrawRecord {
            record_id: record_id("record_id", request.record_id)?,
            reason: request.reason,
        }),
    ))
}

/// `staff` comes from the caller's role, never from the request.
pub fn post_comment(
    request: pb::PostCommentRequest,
    staff: bool,
) -> Result<(Meta, Command), InvalidInput> {
    use pb::post_comment_request::On;
    let on = match request.on.ok_or_else(|| {
        InvalidInput::new(
            "on",
            "one of record_id, distribution_id, line, reply_to_comment_id is required",
        )
    })? {
        On::RecordId(id) => CommentOn::Record(record_id("record_id", id)?),
        On::DistributionId(id) => CommentOn::Distribution(distribution_id("distribution_id", id)?),
        On::Line(line) => CommentOn::Line {
            distribution_id: distribution_id("line.distribution_id", line.distribution_id)?,
            member: member_id("line.member_id", line.member_id)?,
        },
        On::ReplyToCommentId(id) => CommentOn::Reply(comment_id("reply_to_comment_id", id)?),
    };
    Ok((
        meta(request.meta)?,
        Command::PostComment(PostComment {
            comment_id: comment_id("comment_id", request.comment_id)?,
            author: member_id("author_member_id", request.author_member_id)?,
            staff,
            on,
            body: request.body,
        }),
    ))
}

pub fn open_production(
    request: pb::OpenProductionRequest,
) -> Result<(Meta, Command), InvalidInput> {
    let artist_share = if request.artist_share.is_empty() {
        None
    } else {
        Some(
            ArtistShare::parse(&request.artist_share)
                .map_err(|error| InvalidInput::new("artist_share", error.to_string()))?,
        )
    };
    let feedback_window_micros = request
        .feedback_window_seconds
        .map(|seconds| {
            i64::try_from(seconds)
                .ok()
                .and_then(|s| s.checked_mul(1_000_000))
                .ok_or_else(|| InvalidInput::new("feedback_window_seconds", "is too large"))
        })
        .transpose()?;
    Ok((
        meta(request.meta)?,
        Command::OpenProduction(OpenProduction {
            production_id: production_id("production_id", request.production_id)?,
            project_id: project_id("project_id", request.project_id)?,
            title: request.title,
            currency: currency("currency", &request.currency)?,
            artist_share,
            feedback_window_micros,
        }),
    ))
}

pub fn include_record(request: pb::IncludeRecordRequest) -> Result<(Meta, Command), InvalidInput> {
    Ok((
        meta(request.meta)?,
        Command::IncludeRecord(IncludeRecord {
            production_id: production_id("production_id", request.production_id)?,
            record_id: record_id("record_id", request.record_id)?,
        }),
    ))
}

pub fn record_revenue(request: pb::RecordMoneyRequest) -> Result<(Meta, Command), InvalidInput> {
    Ok((
        meta(request.meta)?,
        Command::RecordRevenue(RecordRevenue {
            production_id: production_id("production_id", request.production_id)?,
            amount: money("amount", request.amount)?,
            description: request.description,
        }),
    ))
}

pub fn record_expense(request: pb::RecordMoneyRequest) -> Result<(Meta, Command), InvalidInput> {
    Ok((
        meta(request.meta)?,
        Command::RecordExpense(RecordExpense {
            production_id: production_id("production_id", request.production_id)?,
            amount: money("amount", request.amount)?,
            description: request.description,
        }),
    ))
}

pub fn propose_allocation(
    request: pb::ProposeAllocationRequest,
) -> Result<(Meta, Command), InvalidInput> {
    Ok((
        meta(request.meta)?,
        Command::ProposeAllocation(ProposeAllocation {
            distribution_id: distribution_id("distribution_id", request.distribution_id)?,
            production_id: production_id("production_id", request.production_id)?,
            lines: lines("lines", request.lines)?,
        }),
    ))
}

pub fn amend_allocation(
    request: pb::AmendAllocationRequest,
) -> Result<(Meta, Command), InvalidInput> {
    Ok((
        meta(request.meta)?,
        Command::AmendAllocation(AmendAllocation {
            distribution_id: distribution_id("distribution_id", request.distribution_id)?,
            reason: request.reason,
            answers: ids(
                "answers_comment_ids",
                request.answers_comment_ids,
                comment_id,
            )?,
            remove: ids("remove_member_ids", request.remove_member_ids, member_id)?,
            lines: lines("lines", request.lines)?,
        }),
    ))
}

pub fn finalize_allocation(
    request: pb::FinalizeAllocationRequest,
) -> Result<(Meta, Command), InvalidInput> {
    Ok((
        meta(request.meta)?,
        Command::FinalizeAllocation(FinalizeAllocation {
            distribution_id: distribution_id("distribution_id", request.distribution_id)?,
        }),
    ))
}

pub fn issue_payouts(request: pb::IssuePayoutsRequest) -> Result<(Meta, Command), InvalidInput> {
    use pb::issue_payouts_request::For;
    let command = match request
        .r#for
        .ok_or_else(|| InvalidInput::new("for", "one of distribution_id, lead_fee is required"))?
    {
        For::DistributionId(id) => {
            IssuePayouts::Distribution(distribution_id("distribution_id", id)?)
        }
        For::LeadFee(lead_fee) => IssuePayouts::LeadFee {
            project_id: project_id("lead_fee.project_id", lead_fee.project_id)?,
            lead: member_id("lead_fee.lead_member_id", lead_fee.lead_member_id)?,
        },
    };
    Ok((meta(request.meta)?, Command::IssuePayouts(command)))
}

pub fn settle_payout(request: pb::SettlePayoutRequest) -> Result<(Meta, Command), InvalidInput> {
    Ok((
        meta(request.meta)?,
        Command::SettlePayout(SettlePayout {
            payout_id: payout_id("payout_id", request.payout_id)?,
            reference: request.reference,
        }),
    ))
}

pub fn fail_payout(request: pb::FailPayoutRequest) -> Result<(Meta, Command), InvalidInput> {
    Ok((
        meta(request.meta)?,
        Command::FailPayout(FailPayout {
            payout_id: payout_id("payout_id", request.payout_id)?,
            reason: request.reason,
        }),
    ))
}

pub fn retry_payout(request: pb::RetryPayoutRequest) -> Result<(Meta, Command), InvalidInput> {
    Ok((
        meta(request.meta)?,
        Command::RetryPayout(RetryPayout {
            payout_id: payout_id("payout_id", request.payout_id)?,
        }),
    ))
}
