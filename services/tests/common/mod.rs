//! A real server on a real socket, and authenticated clients.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use ledger::time::{ManualClock, Timestamp};
use proto::v1 as pb;
use services::auth::Role;
use services::demo::{read_tokens, token_files_in, Bearer};
use services::server::{bind, ServeError, ServeOptions};
use tokio::sync::oneshot;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

pub type Authed = InterceptedService<Channel, Bearer>;

pub struct Server {
    pub address: std::net::SocketAddr,
    pub data: tempfile::TempDir,
    pub tokens: HashMap<Role, String>,
    pub clock: Arc<ManualClock>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServeError>>>,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), |config| config).await
    }

    /// A server on `data` (which may already hold a log), its first-start config passed
    /// through `edit_config` (the TOML text) before the server reads it.
    pub async fn start_in(
        data: tempfile::TempDir,
        edit_config: impl FnOnce(String) -> String,
    ) -> Server {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(
            1_790_000_000,
        )));
        let options = ServeOptions {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            metrics: false,
            clock: clock.clone(),
            ..ServeOptions::new(data.path())
        };
        // A short bound on read-your-writes waits, so the timeout path is quick to test.
        let first =
            services::config::write_first_start(data.path(), "127.0.0.1:0".parse().unwrap())
                .unwrap();
        let text = std::fs::read_to_string(&first.config_path).unwrap();
        let text = text.replace(
            "min_position_wait_ms_max = 10000",
            "min_position_wait_ms_max = 300",
        );
        assert!(text.contains("min_position_wait_ms_max = 300"));
        // Small segments: each audit pass reads whole segments, zeroes included.
        let text = text.replace(
            "segment_size_bytes = 134217728",
            &format!(
                "segment_size_bytes = {}",
                stemma_testkit::forge::TEST_SEGMENT_SIZE_BYTES
            ),
        );
        assert!(!text.contains("segment_size_bytes = 134217728"));
        std::fs::write(&first.config_path, edit_config(text)).unwrap();
        let bound = bind(&options).await.unwrap();
        let address = bound.address;
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(bound.run(async {
            let _ = stop.await;
        }));
        let tokens = read_tokens(&token_files_in(&data.path().join("tokens")).unwrap()).unwrap();
        Server {
            address,
            data,
            tokens,
            clock,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.address))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn authed(&self, role: Role) -> Authed {
        self.authed_with(&self.tokens[&role]).await
    }

    /// `authed` over a connection whose HTTP/2 receive windows (per stream and per
    /// connection) are `window_bytes`: a response larger than the windows and the server's
    /// send buffers cannot be sent whole until this client reads it.
    pub async fn authed_with_window(&self, role: Role, window_bytes: u32) -> Authed {
        let channel = Endpoint::from_shared(format!("http://{}", self.address))
            .unwrap()
            .initial_stream_window_size(window_bytes)
            .initial_connection_window_size(window_bytes)
            .connect()
            .await
            .unwrap();
        InterceptedService::new(channel, Bearer::new(&self.tokens[&role]).unwrap())
    }

    pub async fn authed_with(&self, token: &str) -> Authed {
        let bearer = Bearer::new(token).unwrap();
        InterceptedService::new(self.channel().await, bearer)
    }

    /// The services the server lists over gRPC reflection.
    pub async fn reflected_services(&self) -> std::collections::HashSet<String> {
        use tonic_reflection::pb::v1::{
            server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            ServerReflectionRequest,
        };
        let mut reflection = ServerReflectionClient::new(self.channel().await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = reflection
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            responses.message().await.unwrap().unwrap().message_response
        else {
            panic!("no service list");
        };
        list.service.into_iter().map(|s| s.name).collect()
    }

    /// Stops the server gracefully and waits until the store is closed.
    pub async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.shutdown.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
        self.data
    }
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn meta() -> Option<pb::CommandMeta> {
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Some(pb::CommandMeta {
        command_id: format!("cmd-{n}"),
        ..pb::CommandMeta::default()
    })
}

pub fn meta_with(command_id: &str) -> Option<pb::CommandMeta> {
    Some(pb::CommandMeta {
        command_id: command_id.into(),
        ..pb::CommandMeta::default()
    })
}

pub fn register(member_id: &str) -> pb::RegisterMemberRequest {
    pb::RegisterMemberRequest {
        meta: meta(),
        member_id: member_id.into(),
        handle: format!("@{member_id}"),
        legal_name: "A Person".into(),
        email: "a@example.org".into(),
        payout_address: "acct".into(),
    }
}

pub fn upload(record_id: &str, project_id: &str, member_id: &str) -> pb::UploadRecordRequest {
    pb::UploadRecordRequest {
        meta: meta(),
        record_id: record_id.into(),
        project_id: project_id.into(),
        contributor_member_id: member_id.into(),
        kind: pb::RecordKind::Audio as i32,
        title: format!("record {record_id}"),
        media_blake3: blake3::hash(record_id.as_bytes()).to_hex().to_string(),
        media_size_bytes: 42,
        licence_terms_version: "2024-01".into(),
    }
}
