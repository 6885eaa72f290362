//! The gRPC service end to end: a real server on a real socket, the generated clients.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use ledger::store::{EmbeddedOptions, EmbeddedStore, EventStore};
use proto::v1 as pb;
use services::auth::Role;
use tonic::Code;
use tonic_types::StatusExt;

fn field_violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| v.field.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// A project p1 with members alice and bob, a record of alice's, and production pr1.
async fn fixture(server: &Server) {
    let mut members = pb::members_client::MembersClient::new(server.authed(Role::Gateway).await);
    for member in ["alice", "bob", "staff"] {
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
    let mut productions =
        pb::productions_client::ProductionsClient::new(server.authed(Role::Finance).await);
    productions
        .open_production(pb::OpenProductionRequest {
            meta: meta(),
            production_id: "pr1".into(),
            project_id: "p1".into(),
            title: "Production".into(),
            currency: "USD".into(),
            artist_share: String::new(),
            feedback_window_seconds: Some(60),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_error_has_its_code_and_names_the_field_or_rule() {
    let server = Server::start().await;
    fixture(&server).await;
    let mut members = pb::members_client::MembersClient::new(server.authed(Role::Gateway).await);
    let mut records = pb::records_client::RecordsClient::new(server.authed(Role::Gateway).await);
    let mut allocations =
        pb::allocations_client::AllocationsClient::new(server.authed(Role::Community).await);
    let mut productions =
        pb::productions_client::ProductionsClient::new(server.authed(Role::Finance).await);
    let mut projects =
        pb::projects_client::ProjectsClient::new(server.authed(Role::Community).await);

    // INVALID_ARGUMENT, with the field as the caller named it.
    let mut bad = register("not an id!");
    let status = members.register_member(bad.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(field_violations(&status), vec!["member_id"]);
    bad.member_id = "carol".into();
    bad.meta = None;
    let status = members.register_member(bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(field_violations(&status), vec!["meta"]);
    let mut too_long = upload("long", "p1", "alice");
    too_long.title = "x".repeat(10_000);
    let status = records.upload_record(too_long).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(field_violations(&status), vec!["title"]);
    let status = productions
        .record_revenue(pb::RecordMoneyRequest {
            meta: meta(),
            production_id: "pr1".into(),
            amount: Some(pb::Money {
                amount: "-5.00".into(),
                currency: "USD".into(),
            }),
            description: "refund".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // NOT_FOUND.
    let status = records
        .cite_source(pb::CiteSourceRequest {
            meta: meta(),
            record_id: "a".into(),
            source_record_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("nope"));

    // ALREADY_EXISTS: an id taken, and a command id reused for another command.
    let status = members
        .register_member(register("alice"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    let mut first = register("dora");
    first.meta = meta_with("shared-id");
    let original = members
        .register_member(first.clone())
        .await
        .unwrap()
        .into_inner();
    let retried = members.register_member(first).await.unwrap().into_inner();
    assert_eq!(
        (retried.position, retried.replayed),
        (original.position, true)
    );
    let mut other = register("erin");
    other.meta = meta_with("shared-id");
    assert_eq!(
        members.register_member(other).await.unwrap_err().code(),
        Code::AlreadyExists
    );

    // ABORTED: a stale expected version.
    let mut finish = pb::FinishProjectRequest {
        meta: meta(),
        project_id: "p1".into(),
    };
    finish.meta.as_mut().unwrap().expected_version = Some(0);
    let status = projects.finish_project(finish).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "{status:?}");

    // FAILED_PRECONDITION, with every reason.
    productions
        .record_revenue(pb::RecordMoneyRequest {
            meta: meta(),
            production_id: "pr1".into(),
            amount: Some(pb::Money {
                amount: "100.00".into(),
                currency: "USD".into(),
            }),
            description: "sale".into(),
        })
        .await
        .unwrap();
    productions
        .include_record(pb::IncludeRecordRequest {
            meta: meta(),
            production_id: "pr1".into(),
            record_id: "a".into(),
        })
        .await
        .unwrap();
    allocations
        .propose_allocation(pb::ProposeAllocationRequest {
            meta: meta(),
            distribution_id: "d1".into(),
            production_id: "pr1".into(),
            lines: vec![pb::AllocationLine {
                member_id: "alice".into(),
                weight: "1".into(),
                rationale: "the piece".into(),
                record_ids: vec!["a".into()],
            }],
        })
        .await
        .unwrap();
    let mut comments = pb::comments_client::CommentsClient::new(server.authed(Role::Gateway).await);
    comments
        .post_comment(pb::PostCommentRequest {
            meta: meta(),
            comment_id: "k1".into(),
            author_member_id: "bob".into(),
            on: Some(pb::post_comment_request::On::DistributionId("d1".into())),
            body: "why not me?".into(),
        })
        .await
        .unwrap();
    let status = allocations
        .finalize_allocation(pb::FinalizeAllocationRequest {
            meta: meta(),
            distribution_id: "d1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let reasons: Vec<String> = status
        .get_error_details()
        .precondition_failure()
        .unwrap()
        .violations
        .iter()
        .map(|v| v.subject.clone())
        .collect();
    assert_eq!(reasons, vec!["window", "comments"]);

    // The staff reply comes from the community role; then, after the window, it finalizes.
    let mut staff = pb::comments_client::CommentsClient::new(server.authed(Role::Community).await);
    staff
        .post_comment(pb::PostCommentRequest {
            meta: meta(),
            comment_id: "k2".into(),
            author_member_id: "staff".into(),
            on: Some(pb::post_comment_request::On::ReplyToCommentId("k1".into())),
            body: "bob: your piece was not in the cut".into(),
        })
        .await
        .unwrap();
    server.clock.advance(Duration::from_secs(61));
    allocations
        .finalize_allocation(pb::FinalizeAllocationRequest {
            meta: meta(),
            distribution_id: "d1".into(),
        })
        .await
        .unwrap();
    let _ = server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_authenticated_and_each_role_is_held_to_its_rpcs() {
    let server = Server::start().await;
    let mut anonymous = pb::members_client::MembersClient::new(server.channel().await);
    let status = anonymous
        .register_member(register("alice"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let mut forged =
        pb::members_client::MembersClient::new(server.authed_with("not-a-token").await);
    assert_eq!(
        forged
            .register_member(register("alice"))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    for role in [
        Role::Community,
        Role::Finance,
        Role::Auditor,
        Role::Operator,
    ] {
        let mut members = pb::members_client::MembersClient::new(server.authed(role).await);
        let status = members
            .register_member(register("alice"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{role}");
    }
    for role in [
        Role::Gateway,
        Role::Community,
        Role::Auditor,
        Role::Operator,
    ] {
        let mut productions =
            pb::productions_client::ProductionsClient::new(server.authed(role).await);
        let status = productions
            .include_record(pb::IncludeRecordRequest {
                meta: meta(),
                production_id: "pr".into(),
                record_id: "r".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{role}");
    }
    for role in [Role::Gateway, Role::Finance, Role::Auditor, Role::Operator] {
        let mut allocations =
            pb::allocations_client::AllocationsClient::new(server.authed(role).await);
        let status = allocations
            .finalize_allocation(pb::FinalizeAllocationRequest {
                meta: meta(),
                distribution_id: "d".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{role}");
    }
    for role in [Role::Gateway, Role::Community, Role::Finance] {
        let mut events = pb::events_client::EventsClient::new(server.authed(role).await);
        let status = events
            .subscribe(pb::SubscribeRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{role}");
        let mut admin = pb::admin_client::AdminClient::new(server.authed(role).await);
        assert_eq!(
            admin
                .store_status(pb::StoreStatusRequest {})
                .await
                .unwrap_err()
                .code(),
            Code::PermissionDenied
        );
    }
    // The actor of every event is the authenticated service.
    let mut members = pb::members_client::MembersClient::new(server.authed(Role::Gateway).await);
    let mut request = register("alice");
    request.meta.as_mut().unwrap().on_behalf_of = "alice".into();
    members.register_member(request).await.unwrap();
    let mut events = pb::events_client::EventsClient::new(server.authed(Role::Auditor).await);
    let stream = events
        .read_stream(pb::ReadStreamRequest {
            stream_id: "member-alice".into(),
            from_version: 1,
            max_count: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.events[0].actor_service, "gateway");
    assert_eq!(stream.events[0].actor_on_behalf_of, "alice");
    assert!(stream.events[0].payload_json.contains("MemberRegistered"));
    assert!(
        !stream.events[0].payload_json.contains("A Person"),
        "personal data is sealed"
    );
    let mut admin = pb::admin_client::AdminClient::new(server.authed(Role::Operator).await);
    let status = admin
        .store_status(pb::StoreStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.head_position, 1);
    let _ = server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_every_event_once_across_catch_up_and_live() {
    let server = Server::start().await;
    let mut members = pb::members_client::MembersClient::new(server.authed(Role::Gateway).await);
    for i in 0..40 {
        members
            .register_member(register(&format!("before{i}")))
            .await
            .unwrap();
    }
    let mut events = pb::events_client::EventsClient::new(server.authed(Role::Auditor).await);
    let mut stream = events
        .subscribe(pb::SubscribeRequest {
            from_position: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let writer = tokio::spawn(async move {
        for i in 0..60 {
            members
                .register_member(register(&format!("during{i}")))
                .await
                .unwrap();
        }
    });
    let mut positions = Vec::new();
    while positions.len() < 100 {
        let event = stream
            .message()
            .await
            .unwrap()
            .expect("the stream stays open");
        positions.push(event.position);
    }
    writer.await.unwrap();
    assert_eq!(positions, (1..=100).collect::<Vec<u64>>());
    // Filters: only member events of one type, from the middle.
    let mut filtered = events
        .subscribe(pb::SubscribeRequest {
            from_position: 90,
            stream_categories: vec!["member".into()],
            event_types: vec!["MemberRegistered".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let first = filtered.message().await.unwrap().unwrap();
    assert_eq!(first.position, 90);
    let _ = server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_loses_no_acknowledged_command() {
    let server = Server::start().await;
    let mut writers = Vec::new();
    let (acknowledged_sender, mut acknowledged) = tokio::sync::mpsc::unbounded_channel();
    for writer in 0..8 {
        let mut members =
            pb::members_client::MembersClient::new(server.authed(Role::Gateway).await);
        let acknowledged = acknowledged_sender.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let mut request = register(&format!("w{writer}-{i}"));
                request.meta = meta_with(&format!("w{writer}-{i}"));
                match members.register_member(request).await {
                    Ok(result) => acknowledged
                        .send((format!("w{writer}-{i}"), result.into_inner().position))
                        .unwrap(),
                    Err(_) => return, // the server stopped
                }
            }
        }));
    }
    drop(acknowledged_sender);
    // Stop once plenty is acknowledged, with commands still in flight.
    let mut acks = Vec::new();
    while acks.len() < 200 {
        acks.push(acknowledged.recv().await.unwrap());
    }
    let data = server.stop().await;
    for writer in writers {
        writer.await.unwrap();
    }
    while let Some(ack) = acknowledged.recv().await {
        acks.push(ack);
    }
    // The store made its segment the size the config's `[store]` table names.
    let segments = std::fs::read_dir(data.path().join("segments")).unwrap();
    let sizes: Vec<u64> = segments
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .collect();
    assert!(!sizes.is_empty());
    assert!(
        sizes
            .iter()
            .all(|&size| size == stemma_testkit::forge::TEST_SEGMENT_SIZE_BYTES),
        "{sizes:?}"
    );
    let (store, _) = EmbeddedStore::open(data.path(), EmbeddedOptions::default())
        .await
        .unwrap();
    let mut seen = HashSet::new();
    for (command_id, position) in &acks {
        let event = store.read_all(*position, 1).await.unwrap().pop().unwrap();
        assert_eq!(event.command_id.as_str(), command_id);
        assert!(seen.insert(*position));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer_without_the_proto_files() {
    let server = Server::start().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        answer.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    for service in [
        "stemma.v1.Members",
        "stemma.v1.Projects",
        "stemma.v1.Records",
        "stemma.v1.Comments",
        "stemma.v1.Productions",
        "stemma.v1.Allocations",
        "stemma.v1.Payouts",
        "stemma.v1.Events",
        "stemma.v1.Admin",
        "stemma.v1.Queries",
        "stemma.v1.Projections",
        "stemma.v1.Audit",
    ] {
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .unwrap_or_else(|status| panic!("{service}: {status}"))
            .into_inner();
        assert_eq!(
            answer.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }
    let names = server.reflected_services().await;
    for expected in [
        "stemma.v1.Members",
        "stemma.v1.Payouts",
        "stemma.v1.Events",
        "stemma.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }
    let _ = server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_read_their_own_writes_and_answer_from_the_projections() {
    let server = Server::start().await;
    fixture(&server).await;
    let mut records = pb::records_client::RecordsClient::new(server.authed(Role::Gateway).await);
    let mut remix = pb::UploadRemixRequest {
        record: Some(upload("b", "p1", "bob")),
        source_record_ids: vec!["a".into()],
    };
    records.upload_remix(remix.clone()).await.unwrap();
    remix.record = Some(upload("c", "p1", "alice"));
    remix.source_record_ids = vec!["b".into()];
    let written = records.upload_remix(remix).await.unwrap().into_inner();

    let mut queries = pb::queries_client::QueriesClient::new(server.authed(Role::Auditor).await);
    let tree = queries
        .get_family_tree(pb::FamilyTreeRequest {
            record_id: "c".into(),
            min_position: written.position,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(tree.position >= written.position);
    let ancestors: Vec<(String, u32)> = tree
        .ancestors
        .iter()
        .map(|r| (r.record_id.clone(), r.depth))
        .collect();
    assert_eq!(ancestors, vec![("b".to_string(), 1), ("a".to_string(), 2)]);
    assert_eq!(tree.roots, vec!["a"]);
    assert_eq!(tree.family_size, 3);
    assert_eq!(tree.sources[0].kind, pb::LinkKind::Remix as i32);
    let limited = queries
        .get_family_tree(pb::FamilyTreeRequest {
            record_id: "c".into(),
            direction: pb::Direction::Ancestors as i32,
            depth_max: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(limited.ancestors.len(), 1);
    assert!(limited.truncated);
    let status = queries
        .get_family_tree(pb::FamilyTreeRequest {
            record_id: "zzz".into(),
            min_position: written.position,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // A position nobody wrote yet: the bounded wait ends in DEADLINE_EXCEEDED.
    let status = queries
        .get_family_tree(pb::FamilyTreeRequest {
            record_id: "c".into(),
            min_position: written.position + 1_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");

    // Allocation state, credits and a statement.
    let mut productions =
        pb::productions_client::ProductionsClient::new(server.authed(Role::Finance).await);
    for record in ["a", "c"] {
        productions
            .include_record(pb::IncludeRecordRequest {
                meta: meta(),
                production_id: "pr1".into(),
                record_id: record.into(),
            })
            .await
            .unwrap();
    }
    productions
        .record_revenue(pb::RecordMoneyRequest {
            meta: meta(),
            production_id: "pr1".into(),
            amount: Some(pb::Money {
                amount: "1000.00".into(),
                currency: "USD".into(),
            }),
            description: "sale".into(),
        })
        .await
        .unwrap();
    let mut allocations =
        pb::allocations_client::AllocationsClient::new(server.authed(Role::Community).await);
    let proposed = allocations
        .propose_allocation(pb::ProposeAllocationRequest {
            meta: meta(),
            distribution_id: "d1".into(),
            production_id: "pr1".into(),
            lines: vec![pb::AllocationLine {
                member_id: "alice".into(),
                weight: "2".into(),
                rationale: "a and c".into(),
                record_ids: vec!["a".into(), "c".into()],
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let state = queries
        .get_allocation(pb::AllocationRequest {
            distribution_id: "d1".into(),
            min_position: proposed.position,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.status, "proposed");
    assert_eq!(
        state.pool.as_ref().unwrap().pool.as_ref().unwrap().amount,
        "500.00"
    );
    assert_eq!(state.lines.len(), 1);
    assert_eq!(state.lines[0].amount.as_ref().unwrap().amount, "500.00");
    assert_eq!(state.versions.len(), 1);
    assert_eq!(state.blockers.len(), 1, "{:?}", state.blockers);
    assert!(state.blockers[0].contains("window"));
    let credits = queries
        .get_credits(pb::CreditsRequest {
            production_id: "pr1".into(),
            min_position: proposed.position,
        })
        .await
        .unwrap()
        .into_inner();
    let included: Vec<&str> = credits
        .included
        .iter()
        .map(|c| c.member_id.as_str())
        .collect();
    assert_eq!(included, vec!["alice"]);
    let influencing: Vec<&str> = credits
        .influencing
        .iter()
        .map(|c| c.member_id.as_str())
        .collect();
    assert_eq!(
        influencing,
        vec!["bob"],
        "bob's b is an ancestor of the included c"
    );
    let statement = queries
        .get_statement(pb::StatementRequest {
            member_id: "alice".into(),
            min_position: proposed.position,
        })
        .await
        .unwrap()
        .into_inner();
    let records: Vec<&str> = statement
        .records
        .iter()
        .map(|r| r.record_id.as_str())
        .collect();
    assert_eq!(records, vec!["a", "c"]);
    assert_eq!(statement.remixes.len(), 1, "bob's b remixes alice's a");

    // Operators see each projection's checkpoint and can rebuild while queries go on.
    let mut admin =
        pb::projections_client::ProjectionsClient::new(server.authed(Role::Operator).await);
    let status = admin
        .status(pb::ProjectionStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.projections.len(), 4);
    assert!(status
        .projections
        .iter()
        .all(|p| p.schema_version >= 1 && p.checkpoint_position <= status.head_position));
    let mut progress = admin
        .rebuild(pb::RebuildRequest {
            projections: vec!["family_tree".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(message) = progress.message().await.unwrap() {
        last = Some(message);
    }
    let last = last.expect("progress was streamed");
    assert!(last.switched);
    assert_eq!(last.projections, vec!["family_tree"]);
    let status = admin
        .status(pb::ProjectionStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let family = status
        .projections
        .iter()
        .find(|p| p.name == "family_tree")
        .unwrap();
    assert_eq!(family.generation, 1);
    let after = queries
        .get_family_tree(pb::FamilyTreeRequest {
            record_id: "c".into(),
            min_position: written.position,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.ancestors, tree.ancestors);
    let unknown = admin
        .rebuild(pb::RebuildRequest {
            projections: vec!["nope".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    let _ = server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_withdrawal_and_finishing_a_project_over_grpc() {
    let server = Server::start().await;
    fixture(&server).await;
    let mut members = pb::members_client::MembersClient::new(server.authed(Role::Gateway).await);
    members
        .erase_personal_data(pb::ErasePersonalDataRequest {
            meta: meta(),
            member_id: "bob".into(),
        })
        .await
        .unwrap();
    let mut records = pb::records_client::RecordsClient::new(server.authed(Role::Gateway).await);
    let withdrawn = records
        .withdraw_record(pb::WithdrawRecordRequest {
            meta: meta(),
            record_id: "a".into(),
            reason: "uploaded by mistake".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(withdrawn.stream_id, "record-a");
    assert_eq!(withdrawn.stream_version, 2);
    let mut projects =
        pb::projects_client::ProjectsClient::new(server.authed(Role::Community).await);
    let mut finish = pb::FinishProjectRequest {
        meta: meta(),
        project_id: "p1".into(),
    };
    finish.meta.as_mut().unwrap().expected_version = Some(1);
    let finished = projects.finish_project(finish).await.unwrap().into_inner();
    assert_eq!(
        (finished.stream_id.as_str(), finished.stream_version),
        ("project-p1", 2)
    );
    let mut events = pb::events_client::EventsClient::new(server.authed(Role::Auditor).await);
    let bob = events
        .read_stream(pb::ReadStreamRequest {
            stream_id: "member-bob".into(),
            from_version: 1,
            max_count: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        bob.events.last().unwrap().event_type,
        "MemberPersonalDataErased"
    );
    // A withdrawn record can no longer be cited.
    let status = records
        .cite_source(pb::CiteSourceRequest {
            meta: meta(),
            record_id: "a".into(),
            source_record_id: "a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let _ = server.stop().await;
}
