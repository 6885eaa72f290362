//! The index checkpoint: the index's stream and command maps as they were at one position,
//! so that opening a long log does not rebuild them from every event.
//!
//! `<data>/INDEX` is written when the store is closed, and read on open. It is only ever a
//! shortcut: open still reads and checks every frame of the log (checksums, positions,
//! commits, hash links); it skips, for the events up to the checkpoint's position, only
//! decoding the envelopes and filling the maps, and takes the maps from the checkpoint
//! instead. The checkpoint is used only if all of this holds, else it is ignored (with a
//! warning) and the index is rebuilt from the log:
//! - its own blake3 matches its content (a torn or damaged file);
//! - its format is this one;
//! - the log reaches its position, a commit ends there, and the event there has the hash
//!   the checkpoint names. The hash chain then proves that the log up to that position is
//!   the one the checkpoint was made from: nothing in it can have changed (the log only
//!   grows), so the maps are what a rebuild would make of it.
//!
//! The log keeps growing after the checkpoint (a crash before the next close leaves an
//! older one): the events after it are indexed as in a rebuild, so an older checkpoint
//! stays good, only less useful.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::index::{CommandEntry, CommandKey, Index, StreamPositions};
use crate::sharded::ShardedMap;
use crate::store::types::{Hash32, Position, StreamId};
use crate::time::Timestamp;

const MAGIC: [u8; 8] = *b"STMINDEX";
/// Bump when the layout below changes: an older file is then ignored, not misread.
const FORMAT: u32 = 1;
const CHECKSUM_BYTES: usize = 32;

pub fn path(data_directory: &Path) -> PathBuf {
    data_directory.join("INDEX")
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
}

#[derive(Debug, bincode::Encode, bincode::Decode)]
struct Header {
    format: u32,
    position: Position,
    hash: [u8; 32],
    last_recorded_at: i64,
    streams: u64,
    commands: u64,
}

/// The maps of an index at `position`, read from a checkpoint whose checksum held.
pub struct Checkpoint {
    pub position: Position,
    pub hash: Hash32,
    pub last_recorded_at: Timestamp,
    pub streams: ShardedMap<StreamId, StreamPositions>,
    pub commands: ShardedMap<CommandKey, CommandEntry>,
}

/// A writer that hashes what goes through it.
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn encode(value: impl bincode::Encode, out: &mut impl Write) -> io::Result<()> {
    bincode::encode_into_std_write(value, out, config())
        .map(|_| ())
        .map_err(io::Error::other)
}

/// Writes the checkpoint of `index` (its head must end a commit: the index only ever holds
/// whole commits) to `<data>/INDEX`, atomically: a temporary file, `fsync`, rename, and
/// `fsync` of the directory.
pub fn write(data_directory: &Path, index: &Index) -> io::Result<()> {
    let temporary = data_directory.join("INDEX.tmp");
    let file = File::create(&temporary)?;
    let mut out = Hashing {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: blake3::Hasher::new(),
    };
    out.write_all(&MAGIC)?;
    let header = Header {
        format: FORMAT,
        position: index.head.position,
        hash: index.head.hash.0,
        last_recorded_at: index.last_recorded_at.0,
        streams: index.streams.len() as u64,
        commands: index.commands.len() as u64,
    };
    encode(&header, &mut out)?;
    for (stream_id, positions) in index.streams.iter() {
        encode(stream_id.as_str(), &mut out)?;
        // A slice: its length, then the positions, as `decode` reads them back.
        encode(positions.as_slice(), &mut out)?;
    }
    for (key, entry) in index.commands.iter() {
        encode((key.0, entry.first_position, entry.event_count), &mut out)?;
    }
    let checksum = out.hasher.finalize();
    let mut file = out.inner.into_inner().map_err(|e| e.into_error())?;
    file.write_all(checksum.as_bytes())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, path(data_directory))?;
    File::open(data_directory)?.sync_all()
}

/// Why a checkpoint file was not used.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error("cannot read it: {0}")]
    Io(#[from] io::Error),
    #[error("its checksum does not match its content (torn or damaged)")]
    Checksum,
    #[error("format {found}, this version reads {FORMAT}")]
    Format { found: u32 },
    #[error("it does not decode: {0}")]
    Undecodable(String),
}

/// Reads `<data>/INDEX`: `Ok(None)` when there is none.
pub fn read(data_directory: &Path) -> Result<Option<Checkpoint>, Unusable> {
    let bytes = match fs::read(path(data_directory)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let content_bytes = bytes
        .len()
        .checked_sub(CHECKSUM_BYTES)
        .ok_or(Unusable::Checksum)?;
    let (content, checksum) = bytes.split_at(content_bytes);
    if blake3::hash(content).as_bytes() != checksum {
        return Err(Unusable::Checksum);
    }
    let rest = content.strip_prefix(&MAGIC).ok_or(Unusable::Checksum)?;
    decode(rest).map(Some)
}

/// Decodes the content after the magic, whose checksum held.
fn decode(mut rest: &[u8]) -> Result<Checkpoint, Unusable> {
    fn next<'a, T: bincode::BorrowDecode<'a, ()>>(rest: &mut &'a [u8]) -> Result<T, Unusable> {
        let (value, read) = bincode::borrow_decode_from_slice(rest, config())
            .map_err(|e| Unusable::Undecodable(e.to_string()))?;
        *rest = &rest[read..];
        Ok(value)
    }
    let header: Header = next(&mut rest)?;
    if header.format != FORMAT {
        return Err(Unusable::Format {
            found: header.format,
        });
    }
    // The counts are only trusted as far as the file holds entries: an entry takes at
    // least two bytes (a length and a count), so a count past that is damage.
    let plausible = |count: u64| {
        usize::try_from(count)
            .ok()
            .filter(|count| *count <= rest.len() / 2)
            .ok_or_else(|| Unusable::Undecodable(format!("implausible count {count}")))
    };
    let mut streams = ShardedMap::default();
    streams.reserve(plausible(header.streams)?);
    for _ in 0..header.streams {
        let stream_id: &str = next(&mut rest)?;
        let count: u64 = next(&mut rest)?;
        let mut positions = StreamPositions::new();
        for _ in 0..count {
            positions.push(next(&mut rest)?);
        }
        streams.insert(StreamId::from_log(stream_id), positions);
    }
    let mut commands = ShardedMap::default();
    commands.reserve(plausible(header.commands)?);
    for _ in 0..header.commands {
        let (key, first_position, event_count): (u128, Position, u32) = next(&mut rest)?;
        commands.insert(
            CommandKey(key),
            CommandEntry {
                first_position,
                event_count,
            },
        );
    }
    if !rest.is_empty() {
        return Err(Unusable::Undecodable(format!(
            "{} bytes after the last entry",
            rest.len()
        )));
    }
    Ok(Checkpoint {
        position: header.position,
        hash: Hash32(header.hash),
        last_recorded_at: Timestamp(header.last_recorded_at),
        streams,
        commands,
    })
}
