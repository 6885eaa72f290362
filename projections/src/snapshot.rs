//! Snapshots: a read model's stored form with its name, schema version and checkpoint, so
//! start-up replays only the tail of the log.
//!
//! File `<dir>/<name>.snapshot`:
//!
//! ```text
//! "STEMSNAP" | u32 LE header length | header (bincode) | blake3(header) | content
//! ```
//!
//! The header names the projection, its schema version, the checkpoint (position and that
//! event's hash, so a snapshot is only loaded on top of the log it came from), and the
//! content's length and blake3. Written atomically: a temporary file, fsync, rename over
//! the old snapshot, fsync of the directory. A reader sees the old snapshot or the new one,
//! never a mix; a crash leaves at most a stray `.tmp`, overwritten next time.
//!
//! A snapshot that is missing, of another schema version, damaged, or of another log is
//! not an error for the caller: it is logged and the model is rebuilt from the log.
//!
//! The id catalog (`crate::catalog`) has a snapshot of its own, `catalog.snapshot`, in the
//! same format. Models hold its numbers, so a model's snapshot is used only with a catalog
//! at or past the model's position; without a usable catalog every model is rebuilt.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ledger::store::{EventStore, Hash32};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::catalog::{self, Catalog};
use crate::projection::Projection;
use crate::runner::{Checkpoint, Instance};

const MAGIC: &[u8; 8] = b"STEMSNAP";
/// A header is a name, a few integers and two digests.
const HEADER_BYTES_MAX: usize = 4_096;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub name: String,
    pub schema_version: u32,
    pub position: u64,
    pub position_hash: [u8; 32],
    pub content_bytes: u64,
    pub content_blake3: [u8; 32],
}

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn snapshot_path(directory: &Path, name: &str) -> PathBuf {
    directory.join(format!("{name}.snapshot"))
}

/// Writes a snapshot atomically (tmp, fsync, rename, fsync the directory).
pub fn write(
    directory: &Path,
    header: &SnapshotHeader,
    content: &[u8],
) -> Result<PathBuf, SnapshotError> {
    assert_eq!(header.content_bytes, content.len() as u64);
    assert_eq!(header.content_blake3, *blake3::hash(content).as_bytes());
    fs::create_dir_all(directory).map_err(io_error(directory))?;
    let path = snapshot_path(directory, &header.name);
    let temporary = directory.join(format!("{}.snapshot.tmp", header.name));
    let header_bytes = bincode::serde::encode_to_vec(header, bincode::config::standard())
        .expect("a header encodes");
    assert!(header_bytes.len() <= HEADER_BYTES_MAX);
    {
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&temporary)
            .map_err(io_error(&temporary))?;
        let mut prefix = Vec::with_capacity(8 + 4 + header_bytes.len() + 32);
        prefix.extend_from_slice(MAGIC);
        prefix.extend_from_slice(&(header_bytes.len() as u32).to_le_bytes());
        prefix.extend_from_slice(&header_bytes);
        prefix.extend_from_slice(blake3::hash(&header_bytes).as_bytes());
        file.write_all(&prefix).map_err(io_error(&temporary))?;
        file.write_all(content).map_err(io_error(&temporary))?;
        file.sync_all().map_err(io_error(&temporary))?;
    }
    fs::rename(&temporary, &path).map_err(io_error(&path))?;
    File::open(directory)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(directory))?;
    Ok(path)
}

/// Reads and checks a snapshot file: `Ok(None)` if there is none.
pub fn read(path: &Path) -> Result<Option<(SnapshotHeader, Vec<u8>)>, SnapshotError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(path)(error)),
    };
    let invalid = |reason: &str| SnapshotError::Invalid {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(invalid("not a snapshot (bad magic)"));
    }
    let header_len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    if header_len > HEADER_BYTES_MAX || bytes.len() < 12 + header_len + 32 {
        return Err(invalid("header cut short"));
    }
    let header_bytes = &bytes[12..12 + header_len];
    let header_digest = &bytes[12 + header_len..12 + header_len + 32];
    if blake3::hash(header_bytes).as_bytes() != header_digest {
        return Err(invalid("header checksum mismatch"));
    }
    let (header, _): (SnapshotHeader, usize) =
        bincode::serde::decode_from_slice(header_bytes, bincode::config::standard())
            .map_err(|error| invalid(&format!("header does not decode: {error}")))?;
    let content = bytes[12 + header_len + 32..].to_vec();
    if content.len() as u64 != header.content_bytes {
        return Err(invalid("content length differs from the header"));
    }
    if blake3::hash(&content).as_bytes() != &header.content_blake3 {
        return Err(invalid("content checksum mismatch"));
    }
    Ok(Some((header, content)))
}

/// Writes `content` as the snapshot of `name` at `checkpoint`, off the runtime's threads.
async fn save_content(
    directory: &Path,
    name: &str,
    schema_version: u32,
    checkpoint: Checkpoint,
    content: Vec<u8>,
) -> Result<PathBuf, SnapshotError> {
    let header = SnapshotHeader {
        name: name.to_string(),
        schema_version,
        position: checkpoint.position,
        position_hash: checkpoint.hash.0,
        content_bytes: content.len() as u64,
        content_blake3: *blake3::hash(&content).as_bytes(),
    };
    let directory = directory.to_path_buf();
    tokio::task::spawn_blocking(move || write(&directory, &header, &content))
        .await
        .expect("writing a snapshot does not panic")
}

/// Encodes the serving state of `instance` and writes it to `directory`. Write the
/// catalog's (`save_catalog`) after the models': a model loads only with a catalog at or
/// past its position.
pub async fn save<P: Projection>(
    directory: &Path,
    instance: &Instance<P>,
) -> Result<(PathBuf, Checkpoint), SnapshotError> {
    // Encoding holds the read lock (the runner waits, queries do not); writing does not.
    let (content, checkpoint) = instance.read(|model, checkpoint| (model.encode(), checkpoint));
    let path = save_content(directory, P::NAME, P::SCHEMA_VERSION, checkpoint, content).await?;
    Ok((path, checkpoint))
}

/// Writes the catalog's snapshot, at the last event it resolved.
pub async fn save_catalog(
    directory: &Path,
    catalog: &Catalog,
) -> Result<(PathBuf, Checkpoint), SnapshotError> {
    let (content, position, hash) = catalog.encode();
    let checkpoint = Checkpoint { position, hash };
    let path = save_content(
        directory,
        catalog::NAME,
        catalog::SCHEMA_VERSION,
        checkpoint,
        content,
    )
    .await?;
    Ok((path, checkpoint))
}

/// Why a snapshot was not used.
#[derive(Debug)]
pub enum Skipped {
    Missing,
    Unusable(String),
}

/// Reads the snapshot of `name` from `directory` if it is usable on top of `store`'s log:
/// right name and schema version, intact, and taken at a position whose event in this log
/// has the recorded hash.
async fn load_content<S: EventStore + ?Sized>(
    directory: &Path,
    name: &str,
    schema_version: u32,
    store: &Arc<S>,
) -> Result<(Vec<u8>, Checkpoint), Skipped> {
    let path = snapshot_path(directory, name);
    let read_path = path.clone();
    let (header, content) = match tokio::task::spawn_blocking(move || read(&read_path))
        .await
        .expect("reading a snapshot does not panic")
    {
        Ok(Some(found)) => found,
        Ok(None) => return Err(Skipped::Missing),
        Err(error) => return Err(Skipped::Unusable(error.to_string())),
    };
    let unusable = |reason: String| Skipped::Unusable(format!("{}: {reason}", path.display()));
    if header.name != name {
        return Err(unusable(format!("it is a snapshot of {}", header.name)));
    }
    if header.schema_version != schema_version {
        return Err(unusable(format!(
            "schema version {} is not this code's {schema_version}",
            header.schema_version,
        )));
    }
    let checkpoint = Checkpoint {
        position: header.position,
        hash: Hash32(header.position_hash),
    };
    if checkpoint.position > 0 {
        let events = store
            .read_all(checkpoint.position, 1)
            .await
            .map_err(|error| unusable(format!("cannot read the log: {error}")))?;
        match events.first() {
            Some(event) if event.position == checkpoint.position => {
                if event.hash != checkpoint.hash {
                    return Err(unusable(format!(
                        "taken from another log: the event at position {} has another hash",
                        checkpoint.position
                    )));
                }
            }
            _ => {
                return Err(unusable(format!(
                    "taken at position {}, beyond this log's head",
                    checkpoint.position
                )))
            }
        }
    }
    Ok((content, checkpoint))
}

/// Loads `P`'s snapshot from `directory` onto `catalog` if it is usable on top of `store`'s
/// log (see `load_content`) and `catalog` has resolved the log at least as far (else the
/// model may hold numbers the catalog does not have).
pub async fn load<P: Projection, S: EventStore + ?Sized>(
    directory: &Path,
    store: &Arc<S>,
    catalog: &Catalog,
) -> Result<(P, Checkpoint), Skipped> {
    let (content, checkpoint) = load_content(directory, P::NAME, P::SCHEMA_VERSION, store).await?;
    let unusable = |reason: String| {
        Skipped::Unusable(format!(
            "{}: {reason}",
            snapshot_path(directory, P::NAME).display()
        ))
    };
    let (resolved, _) = catalog.resolved();
    if checkpoint.position > resolved {
        return Err(unusable(format!(
            "taken at position {}, past the catalog's {resolved}",
            checkpoint.position
        )));
    }
    let model = P::decode(&content, catalog.clone()).map_err(unusable)?;
    Ok((model, checkpoint))
}

/// Loads the catalog's snapshot from `directory` if it is usable on top of `store`'s log.
pub async fn load_catalog<S: EventStore + ?Sized>(
    directory: &Path,
    store: &Arc<S>,
) -> Result<(Catalog, Checkpoint), Skipped> {
    let (content, checkpoint) =
        load_content(directory, catalog::NAME, catalog::SCHEMA_VERSION, store).await?;
    let unusable = |reason: String| {
        Skipped::Unusable(format!(
            "{}: {reason}",
            snapshot_path(directory, catalog::NAME).display()
        ))
    };
    let catalog = Catalog::decode(&content).map_err(unusable)?;
    if catalog.resolved() != (checkpoint.position, checkpoint.hash) {
        return Err(unusable(
            "its content and its header name different positions".to_string(),
        ));
    }
    Ok((catalog, checkpoint))
}
