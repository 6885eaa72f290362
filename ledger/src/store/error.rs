//! The store's typed errors.

use std::path::PathBuf;

use thiserror::Error;

use super::types::{CommandId, ExpectedVersion, Position, StreamId, StreamVersion};

/// An input that breaks a rule: which field, and which rule.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{field}: {rule}")]
pub struct InvalidInput {
    pub field: String,
    pub rule: String,
}

impl InvalidInput {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> InvalidInput {
        InvalidInput {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

/// What is wrong with a damaged log.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CorruptionKind {
    #[error("bad frame checksum")]
    BadChecksum,
    #[error("bad frame: {0}")]
    BadFrame(String),
    #[error("record does not decode: {0}")]
    Undecodable(String),
    #[error("expected position {expected}, found {found}")]
    PositionGap { expected: Position, found: Position },
    #[error("stream {stream_id} expected version {expected}, found {found}")]
    VersionGap {
        stream_id: StreamId,
        expected: StreamVersion,
        found: StreamVersion,
    },
    #[error("broken hash link: previous hash does not match the event before")]
    BrokenLink,
    #[error("hash does not match the event's content")]
    BadHash,
    #[error("bad segment header: {0}")]
    BadSegmentHeader(String),
    #[error("a later commit follows damaged data, so the damage is not a torn tail")]
    DamageBeforeLaterCommit,
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("invalid append: {0}")]
    Invalid(#[from] InvalidInput),

    #[error("{field} is {size_bytes} bytes, over the limit of {limit_bytes} bytes")]
    TooLarge {
        field: &'static str,
        size_bytes: usize,
        limit_bytes: usize,
    },

    #[error("wrong expected version for stream {stream_id}: expected {expected}, the stream is at version {actual}")]
    WrongExpectedVersion {
        stream_id: StreamId,
        expected: ExpectedVersion,
        /// 0 when the stream has no event.
        actual: StreamVersion,
    },

    #[error("command id {command_id} was already used for a different command (first appended at position {original_position})")]
    CommandIdReused {
        command_id: CommandId,
        original_position: Position,
    },

    #[error("the data directory {0} is in use by another process")]
    Locked(PathBuf),

    #[error(
        "the log is corrupt in segment {segment}, offset {offset}, at position {position}: {kind}"
    )]
    Corrupt {
        segment: PathBuf,
        offset: u64,
        position: Position,
        kind: CorruptionKind,
    },

    #[error("the store is unavailable: {0}")]
    Unavailable(String),

    #[error("the store is closed")]
    Closed,

    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}
