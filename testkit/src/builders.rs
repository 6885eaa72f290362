//! Builders for ids, money and the commands the tests send; every field not named by a
//! builder's arguments has one fixed value, so tests only spell out what they check.

use std::time::Duration;

use ledger::domain::commands::*;
use ledger::domain::events::{Line, MediaRef, RecordKind, SealedPersonalData};
use ledger::domain::ids::*;
use ledger::domain::Command;
use ledger::money::{Currency, Money, Weight};
use ledger::time::Timestamp;

pub const DAY: Duration = Duration::from_secs(86_400);

/// 2026-01-01T00:00:00Z: when the fixtures happen and where the harness clock starts.
pub fn t0() -> Timestamp {
    Timestamp::from_unix_seconds(1_767_225_600)
}

pub fn member(id: &str) -> MemberId {
    MemberId::new(id).unwrap()
}
pub fn project(id: &str) -> ProjectId {
    ProjectId::new(id).unwrap()
}
pub fn record(id: &str) -> RecordId {
    RecordId::new(id).unwrap()
}
pub fn production(id: &str) -> ProductionId {
    ProductionId::new(id).unwrap()
}
pub fn distribution(id: &str) -> DistributionId {
    DistributionId::new(id).unwrap()
}
pub fn comment(id: &str) -> CommentId {
    CommentId::new(id).unwrap()
}
pub fn usd(amount: &str) -> Money {
    Money::parse(amount, Currency::USD).unwrap()
}
pub fn weight(value: &str) -> Weight {
    Weight::parse(value).unwrap()
}

/// Sealed bytes stand-in for the pure tests (the decider tests seal for real).
pub fn sealed() -> SealedPersonalData {
    SealedPersonalData {
        nonce: [0; 12],
        ciphertext: vec![1, 2, 3],
    }
}

pub fn register(id: &str) -> Command {
    Command::RegisterMember(RegisterMember {
        member_id: member(id),
        handle: format!("@{id}"),
        personal_data: sealed(),
    })
}

pub fn start_project(id: &str) -> Command {
    Command::StartProject(StartProject {
        project_id: project(id),
        title: format!("Project {id}"),
    })
}

pub fn upload_record(id: &str, project_id: &str, contributor: &str) -> UploadRecord {
    UploadRecord {
        record_id: record(id),
        project_id: project(project_id),
        contributor: member(contributor),
        kind: RecordKind::Audio,
        title: format!("Record {id}"),
        media: MediaRef {
            blake3: *blake3::hash(id.as_bytes()).as_bytes(),
            size_bytes: 1_000,
        },
        licence_terms_version: "2026-01".into(),
    }
}

pub fn upload(id: &str, project_id: &str, contributor: &str) -> Command {
    Command::UploadRecord(upload_record(id, project_id, contributor))
}

pub fn remix(id: &str, project_id: &str, contributor: &str, sources: &[&str]) -> Command {
    Command::UploadRemix(UploadRemix {
        record: upload_record(id, project_id, contributor),
        sources: sources.iter().map(|s| record(s)).collect(),
    })
}

pub fn cite(record_id: &str, source_id: &str) -> Command {
    Command::CiteSource(CiteSource {
        record_id: record(record_id),
        source_id: record(source_id),
    })
}

pub fn open_production(id: &str, project_id: &str) -> Command {
    Command::OpenProduction(OpenProduction {
        production_id: production(id),
        project_id: project(project_id),
        title: format!("Production {id}"),
        currency: Currency::USD,
        artist_share: None,
        feedback_window_micros: None,
    })
}

/// A production whose feedback window is `window` rather than the default.
pub fn open_production_with_window(id: &str, project_id: &str, window: Duration) -> Command {
    let mut command = open_production(id, project_id);
    if let Command::OpenProduction(c) = &mut command {
        c.feedback_window_micros = Some(window.as_micros() as i64);
    }
    command
}

pub fn include(production_id: &str, record_id: &str) -> Command {
    Command::IncludeRecord(IncludeRecord {
        production_id: production(production_id),
        record_id: record(record_id),
    })
}

pub fn revenue(production_id: &str, amount: Money) -> Command {
    Command::RecordRevenue(RecordRevenue {
        production_id: production(production_id),
        amount,
        description: "broadcast licence".into(),
    })
}

pub fn expense(production_id: &str, amount: Money) -> Command {
    Command::RecordExpense(RecordExpense {
        production_id: production(production_id),
        amount,
        description: "mastering".into(),
    })
}

pub fn line(member_id: &str, weight_value: &str, records: &[&str]) -> Line {
    Line {
        member: member(member_id),
        weight: weight(weight_value),
        rationale: format!("{member_id}'s part"),
        records: records.iter().map(|r| record(r)).collect(),
    }
}

pub fn propose(distribution_id: &str, production_id: &str, lines: Vec<Line>) -> Command {
    Command::ProposeAllocation(ProposeAllocation {
        distribution_id: distribution(distribution_id),
        production_id: production(production_id),
        lines,
    })
}

pub fn post(id: &str, author: &str, staff: bool, on: CommentOn) -> Command {
    Command::PostComment(PostComment {
        comment_id: comment(id),
        author: member(author),
        staff,
        on,
        body: format!("comment {id}"),
    })
}

pub fn on_line(distribution_id: &str, member_id: &str) -> CommentOn {
    CommentOn::Line {
        distribution_id: distribution(distribution_id),
        member: member(member_id),
    }
}

pub fn finalize(distribution_id: &str) -> Command {
    Command::FinalizeAllocation(FinalizeAllocation {
        distribution_id: distribution(distribution_id),
    })
}

pub fn amend(
    distribution_id: &str,
    answers: &[&str],
    remove: &[&str],
    lines: Vec<Line>,
) -> Command {
    Command::AmendAllocation(AmendAllocation {
        distribution_id: distribution(distribution_id),
        reason: "answering the comments".into(),
        answers: answers.iter().map(|c| comment(c)).collect(),
        remove: remove.iter().map(|m| member(m)).collect(),
        lines,
    })
}

pub fn withdraw(record_id: &str) -> Command {
    Command::WithdrawRecord(WithdrawRecord {
        record_id: record(record_id),
        reason: "asked by the contributor".into(),
    })
}

pub fn agree_lead_fee(project_id: &str, lead: &str, fee: Money) -> Command {
    Command::AgreeLeadFee(AgreeLeadFee {
        project_id: project(project_id),
        lead: member(lead),
        fee,
    })
}

pub fn issue_payouts(distribution_id: &str) -> Command {
    Command::IssuePayouts(IssuePayouts::Distribution(distribution(distribution_id)))
}

pub fn settle(payout_id: &PayoutId) -> Command {
    Command::SettlePayout(SettlePayout {
        payout_id: payout_id.clone(),
        reference: format!("tx-{payout_id}"),
    })
}

pub fn fail(payout_id: &PayoutId) -> Command {
    Command::FailPayout(FailPayout {
        payout_id: payout_id.clone(),
        reason: "account closed".into(),
    })
}

pub fn retry(payout_id: &PayoutId) -> Command {
    Command::RetryPayout(RetryPayout {
        payout_id: payout_id.clone(),
    })
}
