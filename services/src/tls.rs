//! TLS for the gRPC server (rustls via tonic), optional client certificates (mTLS), and
//! the rule that plaintext is only for loopback.

use std::net::SocketAddr;

use thiserror::Error;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::TlsConfig;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("refusing to serve plaintext on {0}: plaintext is only allowed on loopback; configure [tls] with cert and key")]
    PlaintextBeyondLoopback(SocketAddr),
}

/// The server's TLS settings, or `None` for plaintext on loopback (with a warning).
pub fn server_tls(
    listen: SocketAddr,
    tls: Option<&TlsConfig>,
) -> Result<Option<ServerTlsConfig>, TlsError> {
    let Some(tls) = tls else {
        if !listen.ip().is_loopback() {
            return Err(TlsError::PlaintextBeyondLoopback(listen));
        }
        tracing::warn!(%listen, "serving plaintext gRPC on loopback; configure [tls] for anything else");
        return Ok(None);
    };
    let read = |what: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.display().to_string(),
            source,
        })
    };
    let identity = Identity::from_pem(read("certificate", &tls.cert)?, read("key", &tls.key)?);
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(client_ca) = &tls.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read("client CA", client_ca)?));
    }
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_only_on_loopback() {
        assert!(server_tls("127.0.0.1:50051".parse().unwrap(), None)
            .unwrap()
            .is_none());
        assert!(server_tls("[::1]:50051".parse().unwrap(), None)
            .unwrap()
            .is_none());
        let error = server_tls("0.0.0.0:50051".parse().unwrap(), None).unwrap_err();
        assert!(matches!(error, TlsError::PlaintextBeyondLoopback(_)));
    }

    #[test]
    fn missing_files_are_named() {
        let tls = TlsConfig {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
            client_ca: None,
        };
        let error = server_tls("0.0.0.0:1".parse().unwrap(), Some(&tls)).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/cert.pem"),
            "{error}"
        );
    }
}
