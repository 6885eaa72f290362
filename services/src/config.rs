//! The service's configuration file (TOML), and the one written on a first start.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::auth::{self, Authenticator, Caller, Role};

pub const CONFIG_FILE_NAME: &str = "stemma.toml";
/// The smallest `store.segment_size_bytes`: a segment must hold the largest single event
/// (a 1 MiB payload plus its envelope and frame, after the segment's header).
pub const SEGMENT_SIZE_BYTES_MIN: u64 = 2 * 1024 * 1024;
/// The largest `store.segment_size_bytes`: the embedded store's own bound.
pub const SEGMENT_SIZE_BYTES_MAX: u64 = ledger::store::embedded::SEGMENT_SIZE_BYTES_MAX;

// The largest record body and its frame header, after the segment's 64-byte header.
const _: () = assert!(
    SEGMENT_SIZE_BYTES_MIN
        >= (ledger::store::embedded::RECORD_BODY_BYTES_MAX
            + ledger::store::codec::FRAME_HEADER_BYTES
            + 64) as u64
);
pub const TOKENS_DIRECTORY_NAME: &str = "tokens";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the gRPC server listens.
    pub listen: SocketAddr,
    /// Where Prometheus scrapes `/metrics`; none when absent.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// TLS (rustls). Without it the server only binds to loopback.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub store: StoreConfig,
    /// Who may call, as blake3 hashes of their bearer tokens.
    pub callers: Vec<CallerConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain; relative paths are relative to the config file.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA certificate: when set, clients must present a certificate it signed (mTLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The largest request or response message.
    pub message_bytes_max: usize,
    /// Requests served at once on one connection.
    pub concurrent_requests_per_connection_max: usize,
    /// Every request's deadline (a client's shorter `grpc-timeout` wins).
    pub request_timeout_ms: u64,
    /// The longest a query waits for `min_position`.
    pub min_position_wait_ms_max: u64,
    /// Events a subscriber may fall behind the head before it is cut off.
    pub subscriber_lag_events_max: u64,
    /// HTTP/2 flow-control window of one call: bytes in flight to a client that is not
    /// reading (the connection's window is four times this).
    pub stream_window_bytes: u32,
    /// Audit passes (`Audit.Verify`, `Explain`, `Statement`) running at once; each reads
    /// the whole log (one segment in memory at a time, plus the replayed state), so a few
    /// at most. More are refused with `RESOURCE_EXHAUSTED`.
    pub concurrent_audit_passes_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            message_bytes_max: 16 * 1024 * 1024,
            concurrent_requests_per_connection_max: 256,
            request_timeout_ms: 30_000,
            min_position_wait_ms_max: 10_000,
            subscriber_lag_events_max: 100_000,
            stream_window_bytes: 1024 * 1024,
            concurrent_audit_passes_max: 2,
        }
    }
}

/// The embedded event store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The size of each new segment file, preallocated and zero-filled. Segments already
    /// written keep their size. An append larger than a segment is refused, so below the
    /// default the largest appends (up to 32 MiB) may be; small sizes are for tests, where
    /// every audit pass reads whole segments.
    pub segment_size_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            segment_size_bytes: ledger::store::EmbeddedOptions::default().segment_size_bytes,
        }
    }
}

impl Limits {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn min_position_wait_max(&self) -> Duration {
        Duration::from_millis(self.min_position_wait_ms_max)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerConfig {
    /// The calling service's name, recorded as the actor of every event it writes.
    pub service: String,
    pub role: Role,
    /// blake3 of the bearer token, 64 hex digits.
    pub token_blake3: String,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|error| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
        config.validate(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(tls) = &mut config.tls {
            tls.cert = base.join(&tls.cert);
            tls.key = base.join(&tls.key);
            tls.client_ca = tls.client_ca.as_ref().map(|ca| base.join(ca));
        }
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if self.callers.is_empty() {
            return Err(invalid("callers: at least one caller is needed".into()));
        }
        for (i, caller) in self.callers.iter().enumerate() {
            ledger::store::ServiceName::new(caller.service.clone())
                .map_err(|e| invalid(format!("callers[{i}].service: {}", e.rule)))?;
            decode_hash(&caller.token_blake3).ok_or_else(|| {
                invalid(format!(
                    "callers[{i}].token_blake3: must be 64 hexadecimal digits"
                ))
            })?;
        }
        let limits = &self.limits;
        for (field, value) in [
            ("limits.message_bytes_max", limits.message_bytes_max as u64),
            (
                "limits.concurrent_requests_per_connection_max",
                limits.concurrent_requests_per_connection_max as u64,
            ),
            ("limits.request_timeout_ms", limits.request_timeout_ms),
            (
                "limits.subscriber_lag_events_max",
                limits.subscriber_lag_events_max,
            ),
            (
                "limits.concurrent_audit_passes_max",
                limits.concurrent_audit_passes_max as u64,
            ),
        ] {
            if value == 0 {
                return Err(invalid(format!("{field}: must be at least 1")));
            }
        }
        let segment_size_bytes = self.store.segment_size_bytes;
        if !(SEGMENT_SIZE_BYTES_MIN..=SEGMENT_SIZE_BYTES_MAX).contains(&segment_size_bytes) {
            return Err(invalid(format!(
                "store.segment_size_bytes: must be between {SEGMENT_SIZE_BYTES_MIN} and \
                 {SEGMENT_SIZE_BYTES_MAX} (was {segment_size_bytes})"
            )));
        }
        Ok(())
    }

    pub fn authenticator(&self) -> Authenticator {
        Authenticator::new(self.callers.iter().map(|caller| {
            (
                decode_hash(&caller.token_blake3).expect("validated on load"),
                Caller {
                    service: caller.service.clone(),
                    role: caller.role,
                },
            )
        }))
    }
}

fn decode_hash(text: &str) -> Option<[u8; 32]> {
    ledger::store::Hash32::from_hex(text)
        .ok()
        .map(|hash| hash.0)
}

/// What a first start wrote.
#[derive(Debug)]
pub struct FirstStart {
    pub config_path: PathBuf,
    /// (role, path of its token file).
    pub token_files: Vec<(Role, PathBuf)>,
}

/// Writes a config into `data` with a freshly generated token for each role; the config
/// holds only the tokens' hashes, each token is in `tokens/<role>.token`. Every file is
/// created with mode 0600 and never overwritten.
pub fn write_first_start(data: &Path, listen: SocketAddr) -> Result<FirstStart, ConfigError> {
    let tokens_directory = data.join(TOKENS_DIRECTORY_NAME);
    fs::create_dir_all(&tokens_directory).map_err(|source| ConfigError::Write {
        path: tokens_directory.clone(),
        source,
    })?;
    let mut callers = Vec::new();
    let mut token_files = Vec::new();
    for role in Role::ALL {
        let token = auth::generate_token();
        let path = tokens_directory.join(format!("{}.token", role.name()));
        write_private(&path, format!("{token}\n").as_bytes())?;
        callers.push(CallerConfig {
            service: role.name().to_string(),
            role,
            token_blake3: blake3::hash(token.as_bytes()).to_hex().to_string(),
        });
        token_files.push((role, path));
    }
    let config = Config {
        listen,
        metrics_listen: Some(SocketAddr::new(listen.ip(), 9464)),
        tls: None,
        limits: Limits::default(),
        store: StoreConfig::default(),
        callers,
    };
    let config_path = data.join(CONFIG_FILE_NAME);
    let text = format!(
        "# Written by the first `stemma serve` on this data directory.\n\
         # Tokens are stored only as blake3 hashes; the tokens are in {TOKENS_DIRECTORY_NAME}/.\n\
         # Add [tls] with cert, key (and client_ca for mTLS) to listen beyond loopback.\n{}",
        toml::to_string_pretty(&config).expect("the config serializes")
    );
    write_private(&config_path, text.as_bytes())?;
    Ok(FirstStart {
        config_path,
        token_files,
    })
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), ConfigError> {
    let write_error = |source| ConfigError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(write_error)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(write_error)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_first_start_writes_a_private_config_that_loads_and_authenticates() {
        let data = tempfile::tempdir().unwrap();
        let first = write_first_start(data.path(), "127.0.0.1:50051".parse().unwrap()).unwrap();
        let mode = fs::metadata(&first.config_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let config = Config::load(&first.config_path).unwrap();
        assert_eq!(config.callers.len(), 5);
        let text = fs::read_to_string(&first.config_path).unwrap();
        for (role, path) in &first.token_files {
            assert_eq!(
                fs::metadata(path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            let token = fs::read_to_string(path).unwrap();
            assert!(
                !text.contains(token.trim()),
                "the config holds no plain token"
            );
            let mut request = tonic::Request::new(());
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {}", token.trim()).parse().unwrap(),
            );
            assert_eq!(
                config.authenticator().authenticate(&request).unwrap().role,
                *role
            );
        }
        assert!(
            write_first_start(data.path(), config.listen).is_err(),
            "never overwrites"
        );
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let data = tempfile::tempdir().unwrap();
        let path = data.path().join("stemma.toml");
        fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\n[[callers]]\nservice = \"g\"\nrole = \"gateway\"\ntoken_blake3 = \"xyz\"\n",
        )
        .unwrap();
        let error = Config::load(&path).unwrap_err().to_string();
        assert!(error.contains("callers[0].token_blake3"), "{error}");
        fs::write(&path, "listen = \"127.0.0.1:1\"\ncallers = []\nbogus = 1\n").unwrap();
        let error = Config::load(&path).unwrap_err().to_string();
        assert!(error.contains("bogus"), "{error}");
        fs::write(
            &path,
            format!(
                "listen = \"127.0.0.1:1\"\n[limits]\nconcurrent_audit_passes_max = 0\n[[callers]]\nservice = \"a\"\nrole = \"auditor\"\ntoken_blake3 = \"{}\"\n",
                "0".repeat(64)
            ),
        )
        .unwrap();
        let error = Config::load(&path).unwrap_err().to_string();
        assert!(
            error.contains("limits.concurrent_audit_passes_max: must be at least 1"),
            "{error}"
        );
    }

    #[test]
    fn the_segment_size_is_read_from_the_store_table_and_bounded() {
        let data = tempfile::tempdir().unwrap();
        let path = data.path().join("stemma.toml");
        let with_store = |table: &str| {
            format!(
                "listen = \"127.0.0.1:1\"\n{table}[[callers]]\nservice = \"a\"\nrole = \"auditor\"\ntoken_blake3 = \"{}\"\n",
                "0".repeat(64)
            )
        };
        fs::write(&path, with_store("")).unwrap();
        assert_eq!(
            Config::load(&path).unwrap().store.segment_size_bytes,
            128 * 1024 * 1024,
            "unchanged by default"
        );
        fs::write(&path, with_store("[store]\nsegment_size_bytes = 2097152\n")).unwrap();
        assert_eq!(
            Config::load(&path).unwrap().store.segment_size_bytes,
            2 * 1024 * 1024
        );
        for wrong in [0, SEGMENT_SIZE_BYTES_MIN - 1, SEGMENT_SIZE_BYTES_MAX + 1] {
            fs::write(
                &path,
                with_store(&format!("[store]\nsegment_size_bytes = {wrong}\n")),
            )
            .unwrap();
            let error = Config::load(&path).unwrap_err().to_string();
            assert!(
                error.contains("store.segment_size_bytes: must be between 2097152 and 4294967295"),
                "{error}"
            );
        }
        fs::write(&path, with_store("[store]\nsegment_bytes = 2097152\n")).unwrap();
        let error = Config::load(&path).unwrap_err().to_string();
        assert!(error.contains("segment_bytes"), "{error}");
    }
}
