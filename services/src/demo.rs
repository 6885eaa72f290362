//! `stemma demo`: a gRPC client that plays the seeds' story end to end against a running
//! `stemma serve` — a TV episode made by 426 contributors, paid to the cent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::try_join_all;
use proto::v1 as pb;
use rust_decimal::Decimal;
use serde_json::Value;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::auth::Role;

pub const CONTRIBUTORS: usize = 426;
/// RPCs in flight at once while uploading and including.
const CONCURRENT_CALLS_MAX: usize = 32;

/// What the demo did, for the summary and for tests.
#[derive(Debug, Default)]
pub struct DemoSummary {
    pub contributors: usize,
    pub remixes: usize,
    pub citations: usize,
    pub revenue: Decimal,
    pub expenses: Decimal,
    pub lead_fee: Decimal,
    pub pool: Decimal,
    pub lines: usize,
    pub line_amounts_total: Decimal,
    pub payouts_issued: usize,
    pub payouts_total: Decimal,
    pub payouts_settled: usize,
    pub lead_fee_paid: Decimal,
    pub early_finalization_blockers: Vec<String>,
    pub failed_then_retried: String,
    pub head_position: u64,
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    pub fn new(token: &str) -> Result<Bearer, String> {
        format!("Bearer {token}")
            .parse()
            .map(Bearer)
            .map_err(|_| "the token is not valid header text".to_string())
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

/// The demo's tokens, by role, read from `<role>.token` files.
pub fn read_tokens(files: &[PathBuf]) -> Result<HashMap<Role, String>, String> {
    let mut tokens = HashMap::new();
    for file in files {
        let role = file
            .file_stem()
            .and_then(|stem| stem.to_str())
            .and_then(|stem| stem.parse::<Role>().ok())
            .ok_or_else(|| format!("{}: name token files <role>.token (gateway, community, finance, auditor, operator)", file.display()))?;
        let token = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        tokens.insert(role, token.trim().to_string());
    }
    Ok(tokens)
}

/// Every `<role>.token` in a directory (a data directory's `tokens/`).
pub fn token_files_in(directory: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(directory)
        .map_err(|e| format!("cannot read {}: {e}", directory.display()))?;
    Ok(entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "token"))
        .collect())
}

struct Clients {
    members: pb::members_client::MembersClient<Authed>,
    projects_community: pb::projects_client::ProjectsClient<Authed>,
    projects_finance: pb::projects_client::ProjectsClient<Authed>,
    records: pb::records_client::RecordsClient<Authed>,
    member_comments: pb::comments_client::CommentsClient<Authed>,
    staff_comments: pb::comments_client::CommentsClient<Authed>,
    productions: pb::productions_client::ProductionsClient<Authed>,
    allocations: pb::allocations_client::AllocationsClient<Authed>,
    payouts: pb::payouts_client::PayoutsClient<Authed>,
    events: pb::events_client::EventsClient<Authed>,
}

fn bearer(tokens: &HashMap<Role, String>, role: Role) -> Result<Bearer, String> {
    let token = tokens
        .get(&role)
        .ok_or_else(|| format!("no token for the {role} role (give {role}.token)"))?;
    Bearer::new(token).map_err(|error| format!("{role}: {error}"))
}

/// A run's ids, unique per run so the demo can be played again on the same server.
struct Ids(String);

impl Ids {
    fn id(&self, name: &str) -> String {
        format!("{}-{name}", self.0)
    }
    fn member(&self, i: usize) -> String {
        self.id(&format!("m{i:03}"))
    }
    fn record(&self, i: usize) -> String {
        self.id(&format!("r{i:03}"))
    }
}

fn meta(ids: &Ids, command: &str) -> Option<pb::CommandMeta> {
    Some(pb::CommandMeta {
        command_id: ids.id(command),
        correlation_id: ids.id("demo"),
        ..pb::CommandMeta::default()
    })
}

fn usd(amount: &str) -> Option<pb::Money> {
    Some(pb::Money {
        amount: amount.to_string(),
        currency: "USD".to_string(),
    })
}

/// The sources of remix `i`: one or two earlier records, chosen so that uploads in one
/// batch never depend on each other.
fn sources_of(i: usize) -> Vec<usize> {
    let batch_start = i - i % CONCURRENT_CALLS_MAX;
    let first = (i * 7) % batch_start;
    if i.is_multiple_of(3) {
        vec![first, (i * 13 + 1) % batch_start]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    } else {
        vec![first]
    }
}

const ORIGINALS: usize = 96;

pub async fn run(
    server: &str,
    tokens: &HashMap<Role, String>,
    window_seconds: u64,
    say: &mut dyn FnMut(String),
) -> Result<DemoSummary, String> {
    let channel = Endpoint::from_shared(server.to_string())
        .map_err(|e| format!("bad server address {server}: {e}"))?
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {server}: {e}"))?;
    let with = |role| -> Result<Authed, String> {
        Ok(InterceptedService::new(
            channel.clone(),
            bearer(tokens, role)?,
        ))
    };
    let mut c = Clients {
        members: pb::members_client::MembersClient::new(with(Role::Gateway)?),
        projects_community: pb::projects_client::ProjectsClient::new(with(Role::Community)?),
        projects_finance: pb::projects_client::ProjectsClient::new(with(Role::Finance)?),
        records: pb::records_client::RecordsClient::new(with(Role::Gateway)?),
        member_comments: pb::comments_client::CommentsClient::new(with(Role::Gateway)?),
        staff_comments: pb::comments_client::CommentsClient::new(with(Role::Community)?),
        productions: pb::productions_client::ProductionsClient::new(with(Role::Finance)?),
        allocations: pb::allocations_client::AllocationsClient::new(with(Role::Community)?),
        payouts: pb::payouts_client::PayoutsClient::new(with(Role::Finance)?),
        events: pb::events_client::EventsClient::new(with(Role::Auditor)?),
    };
    let run_id = format!(
        "{:x}",
        ledger::time::Clock::now(&ledger::time::SystemClock).unix_micros()
    );
    let ids = Ids(format!("demo{run_id}"));
    let mut summary = DemoSummary {
        contributors: CONTRIBUTORS,
        ..DemoSummary::default()
    };
    let rpc = |what: String| {
        move |status: Status| format!("{what}: {} {}", status.code(), status.message())
    };

    say(format!(
        "Registering {CONTRIBUTORS} contributors, a lead and a community staff member…"
    ));
    let mut people: Vec<String> = (0..CONTRIBUTORS).map(|i| ids.member(i)).collect();
    people.push(ids.id("lead"));
    people.push(ids.id("staff"));
    for chunk in people.chunks(CONCURRENT_CALLS_MAX) {
        try_join_all(chunk.iter().map(|member| {
            let mut members = c.members.clone();
            let request = pb::RegisterMemberRequest {
                meta: meta(&ids, &format!("register-{member}")),
                member_id: member.clone(),
                handle: format!("@{member}"),
                legal_name: format!("Artist {member}"),
                email: format!("{member}@example.org"),
                payout_address: format!("acct-{member}"),
            };
            async move {
                members
                    .register_member(request)
                    .await
                    .map_err(rpc(format!("RegisterMember {member}")))
            }
        }))
        .await?;
    }

    let project = ids.id("episode-1");
    c.projects_community
        .start_project(pb::StartProjectRequest {
            meta: meta(&ids, "start"),
            project_id: project.clone(),
            title: "Episode 1: Stemma".into(),
        })
        .await
        .map_err(rpc("StartProject".into()))?;

    say("Uploading records: 96 originals, then remixes of earlier pieces…".into());
    for chunk_start in (0..CONTRIBUTORS).step_by(CONCURRENT_CALLS_MAX) {
        let chunk = chunk_start..(chunk_start + CONCURRENT_CALLS_MAX).min(CONTRIBUTORS);
        try_join_all(chunk.map(|i| {
            let mut records = c.records.clone();
            let record = pb::UploadRecordRequest {
                meta: meta(&ids, &format!("upload-{i}")),
                record_id: ids.record(i),
                project_id: project.clone(),
                contributor_member_id: ids.member(i),
                kind: [
                    pb::RecordKind::Text,
                    pb::RecordKind::Image,
                    pb::RecordKind::Audio,
                    pb::RecordKind::Video,
                ][i % 4] as i32,
                title: format!("Piece {i}"),
                media_blake3: blake3::hash(format!("media {i}").as_bytes())
                    .to_hex()
                    .to_string(),
                media_size_bytes: 1_000 + i as u64,
                licence_terms_version: "2024-01".into(),
            };
            let sources: Vec<String> = if i < ORIGINALS {
                Vec::new()
            } else {
                sources_of(i).into_iter().map(|s| ids.record(s)).collect()
            };
            async move {
                if sources.is_empty() {
                    records
                        .upload_record(record)
                        .await
                        .map_err(rpc(format!("UploadRecord {i}")))
                        .map(|_| 0)
                } else {
                    records
                        .upload_remix(pb::UploadRemixRequest {
                            record: Some(record),
                            source_record_ids: sources,
                        })
                        .await
                        .map_err(rpc(format!("UploadRemix {i}")))
                        .map(|_| 1)
                }
            }
        }))
        .await
        .map(|kinds| summary.remixes += kinds.iter().sum::<usize>())?;
    }
    // "You forgot to source me": citations added later.
    for (record, source) in [(300usize, 5usize), (301, 6), (250, 17)] {
        c.records
            .cite_source(pb::CiteSourceRequest {
                meta: meta(&ids, &format!("cite-{record}-{source}")),
                record_id: ids.record(record),
                source_record_id: ids.record(source),
            })
            .await
            .map_err(rpc("CiteSource".into()))?;
        summary.citations += 1;
    }

    say(format!("Opening the production (USD, artists' share 0.5, a {window_seconds}-second feedback window) and including every record…"));
    let production = ids.id("tv-episode-1");
    c.productions
        .open_production(pb::OpenProductionRequest {
            meta: meta(&ids, "open"),
            production_id: production.clone(),
            project_id: project.clone(),
            title: "Episode 1 (TV)".into(),
            currency: "USD".into(),
            artist_share: "0.5".into(),
            feedback_window_seconds: Some(window_seconds),
        })
        .await
        .map_err(rpc("OpenProduction".into()))?;
    for chunk_start in (0..CONTRIBUTORS).step_by(CONCURRENT_CALLS_MAX) {
        let chunk = chunk_start..(chunk_start + CONCURRENT_CALLS_MAX).min(CONTRIBUTORS);
        try_join_all(chunk.map(|i| {
            let mut productions = c.productions.clone();
            let request = pb::IncludeRecordRequest {
                meta: meta(&ids, &format!("include-{i}")),
                production_id: production.clone(),
                record_id: ids.record(i),
            };
            async move {
                productions
                    .include_record(request)
                    .await
                    .map_err(rpc(format!("IncludeRecord {i}")))
            }
        }))
        .await?;
    }

    let lead = ids.id("lead");
    summary.lead_fee = Decimal::new(1_500, 0);
    c.projects_finance
        .agree_lead_fee(pb::AgreeLeadFeeRequest {
            meta: meta(&ids, "lead-fee"),
            project_id: project.clone(),
            lead_member_id: lead.clone(),
            fee: usd("1500.00"),
        })
        .await
        .map_err(rpc("AgreeLeadFee".into()))?;
    c.projects_community
        .assign_lead(pb::AssignLeadRequest {
            meta: meta(&ids, "assign-lead"),
            project_id: project.clone(),
            lead_member_id: lead.clone(),
        })
        .await
        .map_err(rpc("AssignLead".into()))?;
    summary.revenue = Decimal::new(50_000, 0);
    c.productions
        .record_revenue(pb::RecordMoneyRequest {
            meta: meta(&ids, "revenue"),
            production_id: production.clone(),
            amount: usd("50000.00"),
            description: "Licence fee, episode 1".into(),
        })
        .await
        .map_err(rpc("RecordRevenue".into()))?;
    c.productions
        .record_expense(pb::RecordMoneyRequest {
            meta: meta(&ids, "expense"),
            production_id: production.clone(),
            amount: usd("6500.00"),
            description: "Editing and mastering".into(),
        })
        .await
        .map_err(rpc("RecordExpense".into()))?;
    summary.expenses = Decimal::new(6_500, 0) + summary.lead_fee;

    say(format!("Proposing the allocation: {CONTRIBUTORS} lines…"));
    let distribution = ids.id("d1");
    let lines: Vec<pb::AllocationLine> = (0..CONTRIBUTORS)
        .map(|i| pb::AllocationLine {
            member_id: ids.member(i),
            weight: if i < ORIGINALS {
                "2".into()
            } else {
                format!("1.{}", i % 10)
            },
            rationale: if i < ORIGINALS {
                "original piece used in the episode".into()
            } else {
                "remix used in the episode".into()
            },
            record_ids: vec![ids.record(i)],
        })
        .collect();
    summary.lines = lines.len();
    c.allocations
        .propose_allocation(pb::ProposeAllocationRequest {
            meta: meta(&ids, "propose"),
            distribution_id: distribution.clone(),
            production_id: production.clone(),
            lines: lines.clone(),
        })
        .await
        .map_err(rpc("ProposeAllocation".into()))?;

    let line_comment = ids.id("k1");
    let distribution_comment = ids.id("k2");
    c.member_comments
        .post_comment(pb::PostCommentRequest {
            meta: meta(&ids, "comment-1"),
            comment_id: line_comment.clone(),
            author_member_id: ids.member(7),
            on: Some(pb::post_comment_request::On::Line(pb::LineRef {
                distribution_id: distribution.clone(),
                member_id: ids.member(7),
            })),
            body:
                "My verse is in the opening and the closing credits: could my weight reflect that?"
                    .into(),
        })
        .await
        .map_err(rpc("PostComment (member)".into()))?;
    c.member_comments
        .post_comment(pb::PostCommentRequest {
            meta: meta(&ids, "comment-2"),
            comment_id: distribution_comment.clone(),
            author_member_id: ids.member(42),
            on: Some(pb::post_comment_request::On::DistributionId(
                distribution.clone(),
            )),
            body: "Thank you all, this was a joy to work on.".into(),
        })
        .await
        .map_err(rpc("PostComment (member)".into()))?;

    say("Trying to finalize before the window closes and before staff answered…".into());
    match c
        .allocations
        .finalize_allocation(pb::FinalizeAllocationRequest {
            meta: meta(&ids, "finalize-early"),
            distribution_id: distribution.clone(),
        })
        .await
    {
        Ok(_) => return Err("an early finalization was accepted".into()),
        Err(status) if status.code() == Code::FailedPrecondition => {
            summary.early_finalization_blockers = blockers(&status);
            for blocker in &summary.early_finalization_blockers {
                say(format!("  refused: {blocker}"));
            }
        }
        Err(status) => return Err(rpc("FinalizeAllocation (early)".into())(status)),
    }

    say(
        "Staff answer every comment; an amendment raises the weight the first comment asked about…"
            .into(),
    );
    c.staff_comments
        .post_comment(pb::PostCommentRequest {
            meta: meta(&ids, "reply-1"),
            comment_id: ids.id("k3"),
            author_member_id: ids.id("staff"),
            on: Some(pb::post_comment_request::On::ReplyToCommentId(
                line_comment.clone(),
            )),
            body: "You are right — amended.".into(),
        })
        .await
        .map_err(rpc("PostComment (staff)".into()))?;
    c.staff_comments
        .post_comment(pb::PostCommentRequest {
            meta: meta(&ids, "reply-2"),
            comment_id: ids.id("k4"),
            author_member_id: ids.id("staff"),
            on: Some(pb::post_comment_request::On::ReplyToCommentId(
                distribution_comment.clone(),
            )),
            body: "Thank you!".into(),
        })
        .await
        .map_err(rpc("PostComment (staff)".into()))?;
    let mut amended = lines[7].clone();
    amended.weight = "3".into();
    amended.rationale = "original piece used twice (opening and closing)".into();
    c.allocations
        .amend_allocation(pb::AmendAllocationRequest {
            meta: meta(&ids, "amend"),
            distribution_id: distribution.clone(),
            reason: "Answers the comment on the opening and closing credits".into(),
            answers_comment_ids: vec![line_comment.clone()],
            remove_member_ids: vec![],
            lines: vec![amended],
        })
        .await
        .map_err(rpc("AmendAllocation".into()))?;

    say(format!(
        "Waiting for the {window_seconds}-second feedback window to close, then finalizing…"
    ));
    let mut attempt = 0;
    loop {
        attempt += 1;
        match c
            .allocations
            .finalize_allocation(pb::FinalizeAllocationRequest {
                meta: meta(&ids, &format!("finalize-{attempt}")),
                distribution_id: distribution.clone(),
            })
            .await
        {
            Ok(_) => break,
            Err(status) if status.code() == Code::FailedPrecondition && attempt < 60 => {
                // The window closes on the server's clock; look again shortly.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(status) => return Err(rpc("FinalizeAllocation".into())(status)),
        }
    }

    say("Issuing payouts: one per line, and the lead's fee…".into());
    c.payouts
        .issue_payouts(pb::IssuePayoutsRequest {
            meta: meta(&ids, "issue"),
            r#for: Some(pb::issue_payouts_request::For::DistributionId(
                distribution.clone(),
            )),
        })
        .await
        .map_err(rpc("IssuePayouts".into()))?;
    c.payouts
        .issue_payouts(pb::IssuePayoutsRequest {
            meta: meta(&ids, "issue-lead"),
            r#for: Some(pb::issue_payouts_request::For::LeadFee(pb::LeadFeeRef {
                project_id: project.clone(),
                lead_member_id: lead.clone(),
            })),
        })
        .await
        .map_err(rpc("IssuePayouts (lead fee)".into()))?;

    let distribution_events =
        read_stream(&mut c.events, &format!("distribution-{distribution}")).await?;
    let mut payouts: Vec<(String, Decimal)> = Vec::new();
    for event in &distribution_events {
        let Ok(json) = serde_json::from_str::<Value>(&event.payload_json) else {
            continue;
        };
        if let Some(finalized) = json.get("AllocationFinalized") {
            summary.pool = decimal(&finalized["pool"]["amount"]);
            summary.line_amounts_total = finalized["amounts"]
                .as_array()
                .map(|a| a.iter().map(|m| decimal(&m["amount"])).sum())
                .unwrap_or_default();
        }
        if let Some(issued) = json.get("PayoutIssued") {
            payouts.push((
                issued["payout_id"].as_str().unwrap_or_default().to_string(),
                decimal(&issued["amount"]["amount"]),
            ));
        }
    }
    summary.payouts_issued = payouts.len();
    summary.payouts_total = payouts.iter().map(|(_, amount)| *amount).sum();
    for event in read_stream(&mut c.events, &format!("project-{project}")).await? {
        if let Ok(json) = serde_json::from_str::<Value>(&event.payload_json) {
            if let Some(issued) = json.get("PayoutIssued") {
                summary.lead_fee_paid = decimal(&issued["amount"]["amount"]);
                payouts.push((
                    issued["payout_id"].as_str().unwrap_or_default().to_string(),
                    summary.lead_fee_paid,
                ));
            }
        }
    }

    say(format!(
        "Settling {} payouts; one bank transfer bounces and is retried…",
        payouts.len()
    ));
    let bounced = payouts[100].0.clone();
    c.payouts
        .fail_payout(pb::FailPayoutRequest {
            meta: meta(&ids, "fail"),
            payout_id: bounced.clone(),
            reason: "bank rejected the account number".into(),
        })
        .await
        .map_err(rpc("FailPayout".into()))?;
    c.payouts
        .retry_payout(pb::RetryPayoutRequest {
            meta: meta(&ids, "retry"),
            payout_id: bounced.clone(),
        })
        .await
        .map_err(rpc("RetryPayout".into()))?;
    summary.failed_then_retried = bounced;
    for chunk in payouts.chunks(CONCURRENT_CALLS_MAX) {
        try_join_all(chunk.iter().map(|(payout_id, _)| {
            let mut client = c.payouts.clone();
            let request = pb::SettlePayoutRequest {
                meta: meta(&ids, &format!("settle-{payout_id}")),
                payout_id: payout_id.clone(),
                reference: format!("transfer-{payout_id}"),
            };
            async move {
                client
                    .settle_payout(request)
                    .await
                    .map_err(rpc("SettlePayout".into()))
            }
        }))
        .await
        .map(|settled| {
            summary.payouts_settled += settled.len();
            if let Some(last) = settled.last() {
                summary.head_position = summary.head_position.max(last.get_ref().position);
            }
        })?;
    }
    Ok(summary)
}

fn decimal(value: &Value) -> Decimal {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_default()
}

fn blockers(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt;
    let details = status.get_error_details();
    match details.precondition_failure() {
        Some(failure) => failure
            .violations
            .iter()
            .map(|v| v.description.clone())
            .collect(),
        None => vec![status.message().to_string()],
    }
}

async fn read_stream(
    events: &mut pb::events_client::EventsClient<Authed>,
    stream_id: &str,
) -> Result<Vec<pb::RecordedEvent>, String> {
    let mut all = Vec::new();
    loop {
        let response = events
            .read_stream(pb::ReadStreamRequest {
                stream_id: stream_id.to_string(),
                from_version: all.len() as u64 + 1,
                max_count: 1_000,
            })
            .await
            .map_err(|status| {
                format!(
                    "ReadStream {stream_id}: {} {}",
                    status.code(),
                    status.message()
                )
            })?
            .into_inner();
        let done = response.events.is_empty()
            || all.len() as u64 + response.events.len() as u64 >= response.stream_version;
        all.extend(response.events);
        if done {
            return Ok(all);
        }
    }
}

pub fn print_summary(summary: &DemoSummary) {
    println!();
    println!("Episode 1 — who was paid, and why");
    println!("  contributors          {}", summary.contributors);
    println!(
        "  remixes / citations   {} / {}",
        summary.remixes, summary.citations
    );
    println!("  revenue               ${}", summary.revenue);
    println!(
        "  expenses              ${} (incl. the lead's fee ${})",
        summary.expenses, summary.lead_fee
    );
    println!(
        "  artists' pool         ${} (50% of ${} profit)",
        summary.pool,
        summary.revenue - summary.expenses
    );
    println!(
        "  lines                 {} summing to ${}",
        summary.lines, summary.line_amounts_total
    );
    println!(
        "  payouts issued        {} summing to ${}",
        summary.payouts_issued, summary.payouts_total
    );
    println!("  lead fee paid         ${}", summary.lead_fee_paid);
    println!(
        "  payouts settled       {} (payout {} failed once and was retried)",
        summary.payouts_settled, summary.failed_then_retried
    );
    println!("  refused early because:");
    for blocker in &summary.early_finalization_blockers {
        println!("    - {blocker}");
    }
    let balanced =
        summary.pool == summary.line_amounts_total && summary.pool == summary.payouts_total;
    println!(
        "  to the cent           {}",
        if balanced {
            "yes: pool = Σ lines = Σ payouts"
        } else {
            "NO"
        }
    );
}
