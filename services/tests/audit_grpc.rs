//! The `Audit` service end to end: a real server on a real socket, the auditor's token,
//! the answers compared with `ledger::audit` run on the same data directory (and with
//! `stemma audit head`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use ledger::audit::explain::{self, EventRef, PayoutExplanation};
use ledger::domain::events::{DomainEvent, SourceCited};
use ledger::domain::ids::*;
use ledger::time::{Clock, SystemClock, Timestamp};
use proto::v1 as pb;
use services::auth::Role;
use stemma_testkit::forge::{
    one_line_payout_history, write_log_past_the_domain, write_log_past_the_domain_in_appends,
};
use tonic::Code;

type AuditClient = pb::audit_client::AuditClient<Authed>;

async fn auditor(server: &Server) -> AuditClient {
    pb::audit_client::AuditClient::new(server.authed(Role::Auditor).await)
}

/// Every message of a Verify call, the summary last.
async fn verify_all(
    client: &mut AuditClient,
    request: pb::VerifyRequest,
) -> (
    Vec<pb::VerifyProgress>,
    Vec<pb::VerifyFinding>,
    pb::VerifySummary,
) {
    let mut stream = client.verify(request).await.unwrap().into_inner();
    read_to_summary(&mut stream).await
}

async fn read_to_summary(
    stream: &mut tonic::Streaming<pb::VerifyMessage>,
) -> (
    Vec<pb::VerifyProgress>,
    Vec<pb::VerifyFinding>,
    pb::VerifySummary,
) {
    use pb::verify_message::Kind;
    let mut progress = Vec::new();
    let mut findings = Vec::new();
    loop {
        let message = stream
            .message()
            .await
            .unwrap()
            .expect("the stream ends with a summary");
        match message.kind.expect("every message has a kind") {
            Kind::Progress(p) => {
                assert!(findings.is_empty(), "progress comes before the findings");
                progress.push(p);
            }
            Kind::Finding(f) => findings.push(f),
            Kind::Summary(summary) => {
                assert!(
                    stream.message().await.unwrap().is_none(),
                    "the summary is the last message"
                );
                return (progress, findings, summary);
            }
        }
    }
}

/// Members, a project, records and a production, through the domain.
async fn small_history(server: &Server) {
    let mut members = pb::members_client::MembersClient::new(server.authed(Role::Gateway).await);
    for member in ["alice", "bob"] {
        members.register_member(register(member)).await.unwrap();
    }
    let mut projects =
        pb::projects_client::ProjectsClient::new(server.authed(Role::Community).await);
    projects
        .start_project(pb::StartProjectRequest {
            meta: meta(),
            project_id: "p1".into(),
            title: "Project".into(),
        })
        .await
        .unwrap();
    let mut records = pb::records_client::RecordsClient::new(server.authed(Role::Gateway).await);
    records
        .upload_record(upload("a", "p1", "alice"))
        .await
        .unwrap();
    records
        .upload_remix(pb::UploadRemixRequest {
            record: Some(upload("b", "p1", "bob")),
            source_record_ids: vec!["a".into()],
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_matches_the_store_and_a_clean_log_verifies_clean_with_progress() {
    let server = Server::start().await;
    small_history(&server).await;
    let mut audit = auditor(&server).await;

    let head = audit.head(pb::HeadRequest {}).await.unwrap().into_inner();
    let n = head.position;
    assert!(n >= 5, "five commands, at least one event each: {head:?}");
    let on_disk = ledger::audit::verify::head(server.data.path()).unwrap();
    assert_eq!(
        (head.position, head.hash.as_str()),
        (on_disk.position, on_disk.hash.to_hex().as_str())
    );
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_stemma"))
        .args(["audit", "head", "--data"])
        .arg(server.data.path())
        .output()
        .unwrap();
    assert!(cli.status.success(), "{cli:?}");
    assert_eq!(
        String::from_utf8(cli.stdout).unwrap(),
        format!("{} {}\n", head.position, head.hash)
    );

    let (progress, findings, summary) = verify_all(
        &mut audit,
        pb::VerifyRequest {
            semantic: true,
            ..Default::default()
        },
    )
    .await;
    assert!(findings.is_empty(), "{findings:#?}");
    let last = progress.last().expect("at least the final progress");
    assert_eq!(
        (last.position, last.target_position, last.events),
        (n, n, n)
    );
    assert_eq!(last.bytes_read, last.bytes_total);
    assert!(summary.clean, "{summary:?}");
    assert!(summary.semantic);
    assert_eq!(
        (summary.head_position, summary.head_hash.as_str()),
        (n, head.hash.as_str())
    );
    assert_eq!((summary.events, summary.findings), (n, 0));
    assert_eq!(
        summary.checkpoint_position, n,
        "bounded by the durable head"
    );
    assert!(summary.checkpoint_verified);

    // A checkpoint written down earlier: the right hash proves the history up to it.
    let (_, findings, summary) = verify_all(
        &mut audit,
        pb::VerifyRequest {
            until_position: Some(head.position),
            expect_head_hash: Some(head.hash.clone()),
            semantic: false,
        },
    )
    .await;
    assert!(findings.is_empty() && summary.clean && summary.checkpoint_verified);

    // A wrong hash: the finding names the position, the summary says not verified.
    let (_, findings, summary) = verify_all(
        &mut audit,
        pb::VerifyRequest {
            until_position: Some(3),
            expect_head_hash: Some("0".repeat(64)),
            semantic: false,
        },
    )
    .await;
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(
        (findings[0].position, findings[0].check.as_str()),
        (3, "checkpoint")
    );
    assert_eq!(findings[0].expected, format!("hash {}", "0".repeat(64)));
    assert!(!findings[0].stream_id.is_empty(), "{findings:#?}");
    assert!(!summary.clean && !summary.checkpoint_verified);
    assert_eq!(
        (
            summary.checkpoint_position,
            summary.head_position,
            summary.findings
        ),
        (3, 3, 1),
        "nothing after the checkpoint is read"
    );

    // A checkpoint beyond the log.
    let (_, findings, summary) = verify_all(
        &mut audit,
        pb::VerifyRequest {
            until_position: Some(99),
            expect_head_hash: Some(head.hash.clone()),
            semantic: false,
        },
    )
    .await;
    assert_eq!(findings[0].check, "checkpoint");
    assert!(
        findings[0].found.contains(&format!("ends at position {n}")),
        "{findings:#?}"
    );
    assert!(!summary.checkpoint_verified);

    // Malformed checkpoints are refused before any work, naming the field.
    let status = audit
        .verify(pb::VerifyRequest {
            until_position: Some(3),
            expect_head_hash: Some("not hex".into()),
            semantic: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("expect_head_hash"), "{status:?}");
    let _ = server.stop().await;
}

/// A consistent history of one distribution with one line, appended directly to a store
/// (past the domain), whose payout pays `paid` instead of the finalized 50.00.
async fn log_with_a_payout_of(data: &Path, paid: &str) -> PayoutId {
    // As the domain would: published when recorded, so only the payout is wrong.
    let (history, payout_id) = one_line_payout_history(paid, SystemClock.now());
    write_log_past_the_domain(data, &history).await;
    payout_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_appended_past_the_domain_with_a_wrong_amount_is_a_finding_naming_it() {
    let data = tempfile::tempdir().unwrap();
    let payout_id = log_with_a_payout_of(data.path(), "50.01").await;
    let server = Server::start_in(data, |config| config).await;
    let mut audit = auditor(&server).await;

    let (_, findings, summary) = verify_all(
        &mut audit,
        pb::VerifyRequest {
            semantic: true,
            ..Default::default()
        },
    )
    .await;
    let named: Vec<(u64, &str)> = findings
        .iter()
        .map(|f| (f.position, f.check.as_str()))
        .collect();
    assert_eq!(
        named,
        vec![(9, "payout"), (9, "payouts_sum")],
        "{findings:#?}"
    );
    let finding = &findings[0];
    assert_eq!(finding.event_type, "PayoutIssued");
    assert!(finding.rule.starts_with("rule 8"), "{finding:?}");
    assert!(finding.expected.contains("50.00"), "{finding:?}");
    assert!(finding.found.contains("50.01"), "{finding:?}");
    assert!(!summary.clean);
    assert_eq!((summary.findings, summary.events), (2, 9));
    assert!(!summary.checkpoint_verified);

    // The chain is intact: only the rules can tell.
    let (_, findings, summary) = verify_all(&mut audit, pb::VerifyRequest::default()).await;
    assert!(findings.is_empty() && summary.clean, "{findings:#?}");
    assert!(!summary.semantic);

    // Explain shows the payout as recorded; Statement lists it.
    let explained = audit
        .explain(pb::ExplainRequest {
            payout_id: payout_id.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(explained.amount.unwrap().amount, "50.01");
    let line = explained.distribution.unwrap().line.unwrap();
    assert_eq!(line.amount.unwrap().amount, "50.00");
    let statement = audit
        .statement(pb::AuditStatementRequest {
            member_id: "ann".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statement.payouts.len(), 1);
    assert_eq!(statement.payouts[0].payout_id, payout_id.to_string());
    let _ = server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_auditor_may_audit_and_reflection_lists_the_service() {
    let server = Server::start().await;
    let services = server.reflected_services().await;
    assert!(
        services.contains("stemma.v1.Audit"),
        "reflection lists the Audit service: {services:?}"
    );

    for role in [Role::Gateway, Role::Operator, Role::Finance] {
        let mut audit = pb::audit_client::AuditClient::new(server.authed(role).await);
        let denied = [
            audit.head(pb::HeadRequest {}).await.unwrap_err(),
            audit
                .verify(pb::VerifyRequest::default())
                .await
                .map(|_| ())
                .unwrap_err(),
            audit
                .explain(pb::ExplainRequest {
                    payout_id: "po-x".into(),
                })
                .await
                .unwrap_err(),
            audit
                .statement(pb::AuditStatementRequest {
                    member_id: "ann".into(),
                })
                .await
                .unwrap_err(),
        ];
        for status in denied {
            assert_eq!(status.code(), Code::PermissionDenied, "{role}: {status:?}");
            assert!(status.message().contains("allowed: auditor"), "{status:?}");
        }
    }
    let mut audit = auditor(&server).await;
    let status = audit
        .explain(pb::ExplainRequest {
            payout_id: "po-nothing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = audit
        .explain(pb::ExplainRequest {
            payout_id: "not an id!".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let _ = server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_passes_beyond_the_limit_are_refused_while_one_is_open() {
    // A log with more findings than HTTP/2 flow control lets the server send unread (the
    // client's windows of 64 KiB, plus the server's send buffer of 400 KiB and the call's
    // 64 queued messages): an open Verify whose client reads nothing cannot send its
    // summary, so it holds its pass until the client reads, however fast the pass itself
    // is. No timing involved.
    let data = tempfile::tempdir().unwrap();
    let citations: Vec<DomainEvent> = (0..FLOW_CONTROLLED_FINDINGS)
        .map(|i| {
            SourceCited {
                record_id: RecordId::new(format!("nowhere-{i}")).unwrap(),
                source_id: RecordId::new("nothing").unwrap(),
            }
            .into()
        })
        .collect();
    write_log_past_the_domain_in_appends(data.path(), &citations, 1_000).await;
    let server = Server::start_in(data, |config| {
        let edited = config.replace(
            "concurrent_audit_passes_max = 2",
            "concurrent_audit_passes_max = 1",
        );
        assert_ne!(edited, config, "the config names the limit");
        edited
    })
    .await;
    // The held call has a connection of its own: its unread findings fill that
    // connection's window too, and a response on the same connection (`Head`'s) would then
    // wait for it forever (it did, about one run in ten).
    let mut holder = pb::audit_client::AuditClient::new(
        server.authed_with_window(Role::Auditor, WINDOW_BYTES).await,
    );
    let mut audit = pb::audit_client::AuditClient::new(server.authed(Role::Auditor).await);
    let semantic = pb::VerifyRequest {
        semantic: true,
        ..Default::default()
    };

    // The response headers are in: the call is open and holds the one pass, unread.
    let mut open = holder.verify(semantic.clone()).await.unwrap().into_inner();
    let refused = audit
        .verify(pb::VerifyRequest::default())
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("concurrent_audit_passes_max"),
        "{refused:?}"
    );
    let refused = audit
        .explain(pb::ExplainRequest {
            payout_id: "po-x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    // Head reads no log: it is never refused.
    audit.head(pb::HeadRequest {}).await.unwrap();

    // Once the open call's summary is out, its pass is free again.
    let (_, findings, summary) = read_to_summary(&mut open).await;
    assert_eq!(findings.len(), FLOW_CONTROLLED_FINDINGS, "one per citation");
    assert!(!summary.clean);
    // The premise: what the open call had to send is well past what could wait unread.
    let sent: usize = findings.iter().map(prost::Message::encoded_len).sum();
    let buffered_max = 2 * WINDOW_BYTES as usize + SEND_BUFFER_BYTES + 64 * 1_024;
    assert!(sent > 2 * buffered_max, "{sent} bytes of findings");
    let (_, findings, _) = verify_all(&mut audit, semantic).await;
    assert_eq!(findings.len(), FLOW_CONTROLLED_FINDINGS);
    let status = audit
        .explain(pb::ExplainRequest {
            payout_id: "po-x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let _ = server.stop().await;
}

/// Findings (of ~100 bytes each on the wire) well past what HTTP/2 buffers unread.
const FLOW_CONTROLLED_FINDINGS: usize = 9_000;
/// The limit test's client windows: the HTTP/2 default (hyper's client would grant 2 MiB).
const WINDOW_BYTES: u32 = 65_535;
/// hyper's default send buffer per HTTP/2 stream on the server.
const SEND_BUFFER_BYTES: usize = 400 * 1_024;

fn text_of(money: &Option<pb::Money>) -> String {
    match money {
        Some(money) => format!("{} {}", money.amount, money.currency),
        None => String::new(),
    }
}

fn assert_same_event(grpc: &Option<pb::AuditEventRef>, library: &EventRef) {
    let grpc = grpc.as_ref().expect("an event reference");
    assert_eq!(grpc.position, library.position);
    assert_eq!(grpc.hash, library.hash);
    assert_eq!(grpc.event_type, library.event_type);
    assert_eq!(
        Timestamp::from_unix_micros(grpc.recorded_at_micros).to_string(),
        library.recorded_at
    );
}

/// Every field of the gRPC explanation against the library's.
fn assert_same_explanation(grpc: &pb::PayoutExplanation, library: &PayoutExplanation) {
    assert_eq!(grpc.payout_id, library.payout_id);
    assert_eq!(grpc.member_id, library.member);
    assert_eq!(text_of(&grpc.amount), library.amount);
    assert_eq!(grpc.state, library.state);
    assert_same_event(&grpc.issued, &library.issued);
    assert_eq!(grpc.attempts.len(), library.attempts.len());
    for (g, l) in grpc.attempts.iter().zip(&library.attempts) {
        assert_same_event(&g.event, &l.event);
        assert_eq!(
            (g.attempt, g.outcome.as_str(), g.detail.as_str()),
            (l.attempt, l.outcome, l.detail.as_str())
        );
    }
    assert_eq!(grpc.lead_fee.is_some(), library.lead_fee.is_some());
    if let (Some(g), Some(l)) = (&grpc.lead_fee, &library.lead_fee) {
        assert_eq!(g.project_id, l.project_id);
        assert_eq!(text_of(&g.fee), l.fee);
        if let Some(agreed) = &l.agreed {
            assert_same_event(&g.agreed, agreed);
        }
    }
    assert_eq!(grpc.distribution.is_some(), library.distribution.is_some());
    let (Some(g), Some(l)) = (&grpc.distribution, &library.distribution) else {
        return;
    };
    assert_eq!(g.distribution_id, l.distribution_id);
    assert_eq!(g.production_id, l.production_id);
    assert_same_event(&g.proposed, &l.proposed);
    assert_eq!(g.finalized.is_some(), l.finalized.is_some());
    if let Some(finalized) = &l.finalized {
        assert_same_event(&g.finalized, finalized);
    }
    assert_eq!(text_of(&g.revenue_total), l.revenue_total);
    assert_eq!(text_of(&g.expense_total), l.expense_total);
    assert_eq!(g.artist_share, l.artist_share);
    assert_eq!(text_of(&g.entitlement), l.entitlement);
    assert_eq!(text_of(&g.earlier_pools), l.earlier_pools);
    assert_eq!(text_of(&g.pool), l.pool);
    assert_eq!(g.money.len(), l.money.len());
    for (gm, lm) in g.money.iter().zip(&l.money) {
        assert_same_event(&gm.event, &lm.event);
        assert_eq!(gm.kind, lm.kind);
        assert_eq!(text_of(&gm.amount), lm.amount);
        assert_eq!(gm.description, lm.description);
    }
    assert_eq!(g.line.is_some(), l.line.is_some());
    if let (Some(gl), Some(ll)) = (&g.line, &l.line) {
        assert_eq!(gl.member_id, ll.member);
        assert_eq!(gl.weight, ll.weight);
        assert_eq!(gl.rationale, ll.rationale);
        assert_eq!(gl.record_ids, ll.records);
        assert_eq!(gl.line_number as usize, ll.line_number);
        assert_eq!(gl.line_count as usize, ll.line_count);
        assert_eq!(gl.weight_total, ll.weight_total);
        assert_eq!(gl.exact_amount, ll.exact_amount);
        assert_eq!(text_of(&gl.rounded_down), ll.rounded_down);
        assert_eq!(gl.leftover_unit, ll.leftover_unit);
        assert_eq!(text_of(&gl.amount), ll.amount);
    }
    assert_eq!(g.amendments.len(), l.amendments.len());
    for (ga, la) in g.amendments.iter().zip(&l.amendments) {
        assert_same_event(&ga.event, &la.event);
        assert_eq!(ga.reason, la.reason);
        assert_eq!(ga.answers_comment_ids, la.answers);
        assert_eq!(ga.change, la.change);
        assert_eq!(ga.weight, la.weight);
        assert_eq!(ga.record_ids, la.records);
    }
    assert_eq!(g.comments.len(), l.comments.len());
    for (gc, lc) in g.comments.iter().zip(&l.comments) {
        assert_same_event(&gc.event, &lc.event);
        assert_eq!(gc.comment_id, lc.comment_id);
        assert_eq!(gc.author_member_id, lc.author);
        assert_eq!(gc.staff, lc.staff);
        assert_eq!(
            gc.reply_to_comment_id,
            lc.reply_to.clone().unwrap_or_default()
        );
        assert_eq!(gc.body, lc.body);
    }
    let ancestors: Vec<(String, String, u32)> = g
        .credited_ancestors
        .iter()
        .map(|a| {
            (
                a.record_id.clone(),
                a.contributor_member_id.clone(),
                a.depth,
            )
        })
        .collect();
    let expected: Vec<(String, String, u32)> = l
        .credited_ancestors
        .iter()
        .map(|a| (a.record_id.clone(), a.contributor.clone(), a.depth))
        .collect();
    assert_eq!(ancestors, expected);
}

/// Plays `stemma demo` (the 426-contributor episode) against the server. The server's
/// clock is a test's: it is moved past the feedback window as soon as the amendment (the
/// last thing the window must be open for) is in the log.
async fn play_the_episode(server: &Server) -> services::demo::DemoSummary {
    const WINDOW_SECONDS: u64 = 60;
    let mut events = pb::events_client::EventsClient::new(server.authed(Role::Auditor).await);
    let mut amended = events
        .subscribe(pb::SubscribeRequest {
            from_position: 1,
            stream_categories: vec![],
            event_types: vec!["AllocationAmended".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let clock = server.clock.clone();
    let window_closer = tokio::spawn(async move {
        amended.message().await.unwrap().expect("an amendment");
        clock.advance(Duration::from_secs(WINDOW_SECONDS + 1));
    });
    let summary = services::demo::run(
        &format!("http://{}", server.address),
        &server.tokens,
        WINDOW_SECONDS,
        &mut |_| {},
    )
    .await
    .unwrap();
    window_closer.await.unwrap();
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_and_statement_of_the_tv_episode_match_the_library_field_by_field() {
    let server = Server::start().await;
    let summary = play_the_episode(&server).await;
    let data = server.data.path();
    let mut audit = auditor(&server).await;

    // Each explanation is two passes over the log (slow in a debug build), so the library
    // is asked only about the richest payout and the statement; the others are checked
    // against what the episode did.
    // The bounced payout names the run's ids: its member is m100, its distribution d1.
    let bounced = audit
        .explain(pb::ExplainRequest {
            payout_id: summary.failed_then_retried.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let outcomes: Vec<(u32, &str)> = bounced
        .attempts
        .iter()
        .map(|a| (a.attempt, a.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        vec![(1, "failed"), (2, "retried"), (2, "settled")]
    );
    assert_eq!(bounced.state, "settled");
    let run = bounced.member_id.strip_suffix("m100").unwrap();
    let d1 = DistributionId::new(
        bounced
            .distribution
            .as_ref()
            .unwrap()
            .distribution_id
            .clone(),
    )
    .unwrap();

    // m007: the line a member commented on, staff answered, and an amendment raised.
    let m007 = MemberId::new(format!("{run}m007")).unwrap();
    let payout_id = PayoutId::for_line(&d1, &m007);
    let library = explain::explain_payout(data, &payout_id).unwrap().unwrap();
    let grpc = audit
        .explain(pb::ExplainRequest {
            payout_id: payout_id.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_same_explanation(&grpc, &library);
    assert_eq!(grpc.member_id, m007.as_str());
    assert_eq!(grpc.state, "settled");
    let d = grpc.distribution.as_ref().unwrap();
    let pool = d.pool.as_ref().unwrap();
    assert_eq!(
        (pool.amount.as_str(), pool.currency.as_str()),
        ("21000.00", "USD")
    );
    assert_eq!(pool.amount, format!("{:.2}", summary.pool));
    let kinds: Vec<&str> = d.money.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(kinds, vec!["lead_fee", "revenue", "expense"]);
    let line = d.line.as_ref().unwrap();
    assert_eq!((line.line_number, line.line_count), (8, 426));
    assert_eq!(line.weight, "3");
    assert_eq!(
        line.rationale,
        "original piece used twice (opening and closing)"
    );
    assert_eq!(d.amendments.len(), 1);
    assert_eq!(d.amendments[0].change, "replaced");
    assert_eq!(
        d.comments.len(),
        2,
        "the member's comment and the staff reply"
    );
    assert!(!d.comments[0].staff && d.comments[1].staff);
    assert_eq!(d.comments[1].reply_to_comment_id, d.comments[0].comment_id);

    // The lead's fee.
    let lead = MemberId::new(format!("{run}lead")).unwrap();
    let project = ProjectId::new(format!("{run}episode-1")).unwrap();
    let fee = PayoutId::for_lead_fee(&project, &lead);
    let grpc = audit
        .explain(pb::ExplainRequest {
            payout_id: fee.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc.member_id, lead.as_str());
    assert!(grpc.distribution.is_none());
    let lead_fee = grpc.lead_fee.unwrap();
    assert_eq!(lead_fee.project_id, project.as_str());
    assert_eq!(text_of(&lead_fee.fee), "1500.00 USD");
    assert_eq!(lead_fee.agreed.unwrap().event_type, "LeadFeeAgreed");
    assert_eq!(text_of(&grpc.amount), "1500.00 USD");

    let library = explain::statement(data, &m007).unwrap();
    let grpc = audit
        .statement(pb::AuditStatementRequest {
            member_id: m007.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc.member_id, library.member);
    assert_eq!(grpc.payouts.len(), 1);
    for (g, l) in grpc.payouts.iter().zip(&library.payouts) {
        assert_eq!(g.payout_id, l.payout_id);
        assert_eq!(text_of(&g.amount), l.amount);
        assert_eq!(
            (g.state.as_str(), g.paying.as_str()),
            (l.state.as_str(), l.paying.as_str())
        );
        assert_same_event(&g.issued, &l.issued);
    }
    let totals: Vec<(String, String, String)> = grpc
        .totals
        .iter()
        .map(|t| (t.currency.clone(), text_of(&t.issued), text_of(&t.settled)))
        .collect();
    let expected: Vec<(String, String, String)> = library
        .totals
        .iter()
        .map(|t| (t.currency.clone(), t.issued.clone(), t.settled.clone()))
        .collect();
    assert_eq!(totals, expected);

    // And the whole episode verifies clean, chain and rules, up to the durable head.
    let head = audit.head(pb::HeadRequest {}).await.unwrap().into_inner();
    let (_, findings, verified) = verify_all(
        &mut audit,
        pb::VerifyRequest {
            semantic: true,
            ..Default::default()
        },
    )
    .await;
    assert!(findings.is_empty(), "{findings:#?}");
    assert!(verified.clean && verified.checkpoint_verified);
    assert_eq!(verified.head_position, head.position);
    assert_eq!(verified.head_hash, head.hash);
    let _ = server.stop().await;
}
