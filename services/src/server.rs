//! `stemma serve`: the store, the decider and the gRPC server, started and stopped in
//! order. Shutdown is injected (`run(…, shutdown)`), so tests stop it without signals.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ledger::decider::Decider;
use ledger::domain::privacy::FileKeyVault;
use ledger::store::{EmbeddedOptions, EmbeddedStore};
use ledger::time::{Clock, SystemClock};
use proto::v1 as pb;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

use crate::config::{self, Config, ConfigError};
use crate::grpc::audit::AuditRpcs;
use crate::grpc::commands::CommandRpcs;
use crate::grpc::events::{AdminRpcs, EventRpcs};
use crate::grpc::queries::QueryRpcs;
use crate::tls::{self, TlsError};

#[derive(Debug, Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot open the event store: {0}")]
    Store(#[from] ledger::store::StoreError),
    #[error("cannot start the decider: {0}")]
    Decider(#[from] ledger::decider::StartError),
    #[error("cannot open the key vault: {0}")]
    Vault(#[from] ledger::domain::privacy::PrivacyError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("metrics endpoint: {0}")]
    Metrics(String),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

#[derive(Clone)]
pub struct ServeOptions {
    pub data: PathBuf,
    /// Overrides the config's `listen`.
    pub listen: Option<SocketAddr>,
    /// The config file; `<data>/stemma.toml` when absent (written on a first start).
    pub config: Option<PathBuf>,
    /// Serve Prometheus metrics (off in tests that run several servers in one process).
    pub metrics: bool,
    /// Overrides the config's `metrics_listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// Where "now" comes from: the system clock, or a test's.
    pub clock: Arc<dyn Clock>,
}

impl ServeOptions {
    pub fn new(data: impl Into<PathBuf>) -> ServeOptions {
        ServeOptions {
            data: data.into(),
            listen: None,
            config: None,
            metrics: true,
            metrics_listen: None,
            clock: Arc::new(SystemClock),
        }
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// The config to use: the given file, `<data>/stemma.toml`, or a new one written there.
pub fn load_or_create_config(options: &ServeOptions) -> Result<Config, ConfigError> {
    if let Some(path) = &options.config {
        return Config::load(path);
    }
    let path = options.data.join(config::CONFIG_FILE_NAME);
    if !path.exists() {
        let listen = options
            .listen
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid default address"));
        let first = config::write_first_start(&options.data, listen)?;
        println!(
            "First start: wrote {} with a new token for each role:",
            first.config_path.display()
        );
        for (role, path) in &first.token_files {
            println!("  {:<10} {}", role.name(), path.display());
        }
    }
    Config::load(&path)
}

/// A server bound to its address, ready to run.
pub struct BoundServer {
    pub address: SocketAddr,
    listener: TcpListener,
    config: Config,
    data: PathBuf,
    metrics: bool,
    clock: Arc<dyn Clock>,
}

pub async fn bind(options: &ServeOptions) -> Result<BoundServer, ServeError> {
    std::fs::create_dir_all(&options.data).map_err(|source| ConfigError::Write {
        path: options.data.clone(),
        source,
    })?;
    let mut config = load_or_create_config(options)?;
    if let Some(listen) = options.listen {
        config.listen = listen;
    }
    if let Some(metrics_listen) = options.metrics_listen {
        config.metrics_listen = Some(metrics_listen);
    }
    // Refuse plaintext beyond loopback before binding anything.
    tls::server_tls(config.listen, config.tls.as_ref())?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            address: config.listen,
            source,
        })?;
    let address = listener.local_addr().map_err(|source| ServeError::Listen {
        address: config.listen,
        source,
    })?;
    Ok(BoundServer {
        address,
        listener,
        config,
        data: options.data.clone(),
        metrics: options.metrics,
        clock: options.clock.clone(),
    })
}

impl BoundServer {
    /// Serves until `shutdown` resolves; then stops accepting, finishes in-flight calls,
    /// lets the decider finish its appends and closes the store.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServeError> {
        let BoundServer {
            address,
            listener,
            config,
            data,
            metrics,
            clock,
        } = self;
        if metrics {
            if let Some(metrics_listen) = config.metrics_listen {
                crate::metrics::install(metrics_listen).map_err(ServeError::Metrics)?;
                tracing::info!(%metrics_listen, "serving Prometheus metrics on /metrics");
            }
        }
        let store_options = EmbeddedOptions {
            segment_size_bytes: config.store.segment_size_bytes,
            clock: clock.clone(),
            ..EmbeddedOptions::default()
        };
        let (store, report) = EmbeddedStore::open(&data, store_options).await?;
        if let Some(tail) = &report.torn_tail {
            tracing::warn!(segment = %tail.segment.display(), offset = tail.offset, "recovered from a crash: cut a torn tail");
        }
        let store = Arc::new(store);
        let vault = Arc::new(open_vault(&data)?);
        let (decider, decider_task) = Decider::start(store.clone(), clock.clone(), vault).await?;
        let read_models = Arc::new(
            projections::ReadModels::start(store.clone(), Some(data.join("projections"))).await,
        );
        for started in read_models.started() {
            tracing::info!(projection = started.projection, from_snapshot = ?started.snapshot.map(|c| c.position), "projection started");
        }

        let limits = config.limits.clone();
        let authenticator = config.authenticator();
        let rpcs = CommandRpcs::new(decider);
        let (shutting_down_sender, shutting_down) = tokio::sync::watch::channel(false);
        let events = EventRpcs::new(
            store.clone(),
            limits.subscriber_lag_events_max,
            shutting_down.clone(),
        );
        let audit = AuditRpcs::new(
            data.clone(),
            store.clone(),
            limits.concurrent_audit_passes_max,
            shutting_down,
        );
        let admin = events.admin();
        let queries = QueryRpcs::new(
            read_models.clone(),
            store.clone(),
            clock,
            limits.min_position_wait_max(),
        );

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        // Every service is served by this one process, so each is as healthy as the whole.
        health_reporter
            .set_serving::<pb::members_server::MembersServer<CommandRpcs>>()
            .await;
        health_reporter
            .set_serving::<pb::projects_server::ProjectsServer<CommandRpcs>>()
            .await;
        health_reporter
            .set_serving::<pb::records_server::RecordsServer<CommandRpcs>>()
            .await;
        health_reporter
            .set_serving::<pb::comments_server::CommentsServer<CommandRpcs>>()
            .await;
        health_reporter
            .set_serving::<pb::productions_server::ProductionsServer<CommandRpcs>>()
            .await;
        health_reporter
            .set_serving::<pb::allocations_server::AllocationsServer<CommandRpcs>>()
            .await;
        health_reporter
            .set_serving::<pb::payouts_server::PayoutsServer<CommandRpcs>>()
            .await;
        health_reporter
            .set_serving::<pb::events_server::EventsServer<EventRpcs>>()
            .await;
        health_reporter
            .set_serving::<pb::admin_server::AdminServer<AdminRpcs>>()
            .await;
        health_reporter
            .set_serving::<pb::queries_server::QueriesServer<QueryRpcs>>()
            .await;
        health_reporter
            .set_serving::<pb::projections_server::ProjectionsServer<QueryRpcs>>()
            .await;
        health_reporter
            .set_serving::<pb::audit_server::AuditServer<AuditRpcs>>()
            .await;
        // The whole server: "" is what a plain health check asks about.
        health_reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|error| ServeError::Metrics(format!("reflection: {error}")))?;

        let message_bytes_max = limits.message_bytes_max;
        macro_rules! guarded {
            ($implementation:expr, $($server:tt)+) => {{
                let service = pb::$($server)+::new($implementation.clone())
                    .max_decoding_message_size(message_bytes_max)
                    .max_encoding_message_size(message_bytes_max);
                tonic::service::interceptor::InterceptedService::new(service, authenticator.interceptor())
            }};
        }

        let mut builder = Server::builder()
            .initial_stream_window_size(Some(limits.stream_window_bytes))
            .initial_connection_window_size(Some(limits.stream_window_bytes.saturating_mul(4)))
            .timeout(limits.request_timeout())
            .concurrency_limit_per_connection(limits.concurrent_requests_per_connection_max);
        if let Some(tls) = tls::server_tls(address, config.tls.as_ref())? {
            builder = builder.tls_config(tls)?;
        }
        tracing::info!(%address, head = report.head.position, "stemma is serving");
        let served = builder
            .add_service(health_service)
            .add_service(reflection)
            .add_service(guarded!(rpcs, members_server::MembersServer))
            .add_service(guarded!(rpcs, projects_server::ProjectsServer))
            .add_service(guarded!(rpcs, records_server::RecordsServer))
            .add_service(guarded!(rpcs, comments_server::CommentsServer))
            .add_service(guarded!(rpcs, productions_server::ProductionsServer))
            .add_service(guarded!(rpcs, allocations_server::AllocationsServer))
            .add_service(guarded!(rpcs, payouts_server::PayoutsServer))
            .add_service(guarded!(events, events_server::EventsServer))
            .add_service(guarded!(admin, admin_server::AdminServer))
            .add_service(guarded!(queries, queries_server::QueriesServer))
            .add_service(guarded!(queries, projections_server::ProjectionsServer))
            .add_service(guarded!(audit, audit_server::AuditServer))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                shutdown.await;
                // End the open subscriptions, or the graceful shutdown waits for them forever.
                let _ = shutting_down_sender.send(true);
            })
            .await;
        // The router (and its handles) is gone; dropping the last handle lets the decider
        // finish what is in flight and stop.
        drop((rpcs, events, admin, queries, audit));
        tracing::info!("stopped accepting calls; finishing the decider's appends");
        let _ = decider_task.await;
        read_models.stop().await;
        match read_models.write_snapshots().await {
            Ok(written) => tracing::info!(snapshots = written.len(), "wrote projection snapshots"),
            Err(error) => {
                tracing::warn!(%error, "could not write projection snapshots; the next start replays the log")
            }
        }
        store.close().await;
        tracing::info!("the store is closed");
        served.map_err(ServeError::Transport)
    }
}

fn open_vault(data: &Path) -> Result<FileKeyVault, ledger::domain::privacy::PrivacyError> {
    FileKeyVault::open(data.join("keys"))
}
