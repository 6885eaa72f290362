//! The auditor's tools, as library functions with plain result structs, so the command
//! line (`stemma audit …`, `stemma export`, `stemma import`) and the gRPC auditor service
//! call the same code.
//!
//! - `verify`: one read-only pass over a data directory: framing and checksums, gap-free
//!   positions and stream versions, every blake3 link, every event decodes, an optional
//!   checkpoint, then (optionally) a semantic replay recomputing every pool, line amount,
//!   finalization and payout with the rules of DOMAIN.md (`replay`).
//! - `export` / `import`: the JSON-lines form of the log (schema in `export`).
//!
//! Nothing here takes the writer lock: every reader goes through
//! `store::embedded::snapshot`, which never writes.

pub mod explain;
pub mod export;
pub mod findings;
pub mod replay;
mod stream_versions;
pub mod verify;

pub use findings::{Check, Finding};
pub use verify::{verify, verify_until_stopped, Checkpoint, Progress, VerifyOptions, VerifyReport};

use thiserror::Error;

use crate::store::StoreError;

/// Why an audit could not run at all (as opposed to findings, which are its result).
#[derive(Debug, Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("line {line}: {reason}")]
    BadExportLine { line: u64, reason: String },
    #[error("the export's chain is broken at position {position}: {reason}")]
    BrokenChain { position: u64, reason: String },
    #[error("{path} is not empty: import writes only into a new data directory")]
    NotEmpty { path: std::path::PathBuf },
    #[error("stopped at position {position} before the end")]
    Stopped { position: crate::store::Position },
    #[error("I/O error on {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Lower-case hexadecimal.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0xf) as usize] as char);
    }
    out
}

/// The bytes of lower- or upper-case hexadecimal `text`.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}
