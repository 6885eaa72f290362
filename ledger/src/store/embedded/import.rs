//! Writing recorded events verbatim into a new data directory: the store side of
//! `stemma import` (restoring a backup, moving between backends).
//!
//! The writer (`writer.rs`) decides, numbers, stamps and hashes new appends; this path
//! does none of that. It takes envelopes that already have their positions, ids,
//! timestamps and hashes — checked by the caller — and lays them out in segments with
//! the same frame format, so `EmbeddedStore::open` reads them as if they had been
//! appended. It refuses a directory that already holds segments, and holds the
//! directory's `LOCK` while it writes, so `stemma serve` cannot start on a half-written
//! import.
//!
//! Commits: consecutive events with the same command id were one append (an append's
//! events are contiguous and share its command id), and are written as one commit, so
//! recovery keeps or cuts each append whole, as for the original log.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::head::{self, HeadFile};
use super::segment::{self, SegmentHeader, ZeroFill, SEGMENT_HEADER_BYTES};
use super::{SEGMENT_SIZE_BYTES_MAX, SEGMENT_SIZE_BYTES_MIN};
use crate::store::codec::{self, CommitRange};
use crate::store::types::{Hash32, Position, RecordedEvent};

#[derive(Debug, Error)]
pub enum ImportError {
    #[error("{0} already holds a log: import writes only into a new data directory")]
    NotEmpty(PathBuf),
    #[error("the data directory {0} is in use by another process")]
    Locked(PathBuf),
    #[error("segment_size_bytes must be between {SEGMENT_SIZE_BYTES_MIN} and {SEGMENT_SIZE_BYTES_MAX}, got {0}")]
    BadSegmentSize(u64),
    #[error("the append of command {command_id} at position {position} is {bytes} bytes, larger than a segment ({capacity_bytes} bytes)")]
    CommitTooLarge {
        command_id: String,
        position: Position,
        bytes: usize,
        capacity_bytes: u64,
    },
    #[error("event at position {position} is out of order or unlinked (expected position {expected}): the caller must check the chain first")]
    NotChained {
        position: Position,
        expected: Position,
    },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ImportError {
    pub fn into_io(self) -> std::io::Error {
        match self {
            ImportError::Io { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImportError + '_ {
    move |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Lays out verbatim events as segments of a new log.
pub struct LogWriter {
    segments_directory: PathBuf,
    segment_size_bytes: u64,
    _lock: File,
    /// The segment being filled and the offset of its next frame.
    active: Option<(PathBuf, File, u64)>,
    /// The events of the commit being gathered (one command's append).
    pending: Vec<RecordedEvent>,
    /// The last position and hash handed to `push`.
    last_position: Position,
    last_hash: Hash32,
}

impl LogWriter {
    pub fn create(
        data_directory: &Path,
        segment_size_bytes: u64,
    ) -> Result<LogWriter, ImportError> {
        if !(SEGMENT_SIZE_BYTES_MIN..=SEGMENT_SIZE_BYTES_MAX).contains(&segment_size_bytes) {
            return Err(ImportError::BadSegmentSize(segment_size_bytes));
        }
        fs::create_dir_all(data_directory).map_err(io(data_directory))?;
        let lock_path = data_directory.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(ImportError::Locked(data_directory.to_path_buf()))
            }
            Err(fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        let segments_directory = data_directory.join("segments");
        fs::create_dir_all(&segments_directory).map_err(io(&segments_directory))?;
        let existing = segment::list_segments(&segments_directory)
            .map_err(|error| io(&segments_directory)(std::io::Error::other(error.to_string())))?;
        if !existing.is_empty() {
            return Err(ImportError::NotEmpty(data_directory.to_path_buf()));
        }
        // Nothing is durable until `finish`: a reader must not take a `HEAD` left by an
        // earlier log here, nor read the commits written before the last sync.
        HeadFile::open(data_directory)
            .and_then(|head| head.publish(0))
            .map_err(io(&head::path(data_directory)))?;
        Ok(LogWriter {
            segments_directory,
            segment_size_bytes,
            _lock: lock,
            active: None,
            pending: Vec::new(),
            last_position: 0,
            last_hash: Hash32::GENESIS,
        })
    }

    /// Adds the next event. It must follow the one before (position and link); its hash
    /// is written as given, after an assertion that it is the hash of its content.
    pub fn push(&mut self, event: RecordedEvent) -> Result<(), ImportError> {
        if event.position != self.last_position + 1 || event.previous_hash != self.last_hash {
            return Err(ImportError::NotChained {
                position: event.position,
                expected: self.last_position + 1,
            });
        }
        if self
            .pending
            .first()
            .is_some_and(|first| first.command_id != event.command_id)
        {
            self.write_pending()?;
        }
        self.last_position = event.position;
        self.last_hash = event.hash;
        self.pending.push(event);
        Ok(())
    }

    /// Writes what is pending and makes everything durable.
    pub fn finish(mut self) -> Result<(), ImportError> {
        self.write_pending()?;
        if let Some((path, file, _)) = &self.active {
            file.sync_data().map_err(io(path))?;
        }
        segment::sync_directory(&self.segments_directory).map_err(io(&self.segments_directory))?;
        // Durable now: readers may read up to here (see `head`).
        let data_directory = self
            .segments_directory
            .parent()
            .expect("segments/ is inside the data directory");
        HeadFile::open(data_directory)
            .and_then(|head| head.publish(self.last_position))
            .map_err(io(&head::path(data_directory)))
    }

    fn write_pending(&mut self) -> Result<(), ImportError> {
        let Some(first) = self.pending.first() else {
            return Ok(());
        };
        let commit = CommitRange {
            first_position: first.position,
            last_position: self.pending.last().expect("not empty").position,
        };
        let mut buffer = Vec::new();
        for event in &self.pending {
            let mut body = codec::encode_unhashed(event);
            body.extend_from_slice(&event.hash.0);
            // Right before it is written: what goes to disk is what the caller checked.
            assert!(
                codec::body_hash_is_valid(&event.previous_hash, &body, &event.hash),
                "event {} was checked before it was pushed",
                event.position
            );
            codec::append_frame(&mut buffer, commit, &body);
        }
        let capacity_bytes = self.segment_size_bytes - SEGMENT_HEADER_BYTES;
        if buffer.len() as u64 > capacity_bytes {
            return Err(ImportError::CommitTooLarge {
                command_id: first.command_id.to_string(),
                position: first.position,
                bytes: buffer.len(),
                capacity_bytes,
            });
        }
        let fits = self
            .active
            .as_ref()
            .is_some_and(|(_, _, offset)| offset + buffer.len() as u64 <= self.segment_size_bytes);
        if !fits {
            self.roll(first.position, first.previous_hash)?;
        }
        let (path, file, offset) = self.active.as_mut().expect("a segment is open");
        file.write_all_at(&buffer, *offset).map_err(io(path))?;
        *offset += buffer.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Seals the active segment and starts the next at `first_position`.
    fn roll(&mut self, first_position: Position, previous_hash: Hash32) -> Result<(), ImportError> {
        if let Some((path, file, _)) = self.active.take() {
            file.sync_data().map_err(io(&path))?;
        }
        let directory = &self.segments_directory;
        let spare = segment::prepare_spare(directory, self.segment_size_bytes, ZeroFill::Cached)
            .map_err(io(directory))?;
        let header = SegmentHeader {
            first_position,
            previous_hash,
        };
        let (path, file) =
            segment::install_spare(directory, &spare, header).map_err(io(directory))?;
        self.active = Some((path, file, SEGMENT_HEADER_BYTES));
        Ok(())
    }
}
