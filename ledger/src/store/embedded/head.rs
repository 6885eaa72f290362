//! `<data>/HEAD`: the last position the writer knows to be durable, for read-only readers.
//!
//! A reader that works beside a running writer (`snapshot`, used by `stemma audit` and
//! `export`) sees the segment files through the page cache: a commit the writer has
//! written but whose `fdatasync` has not returned looks whole there, and a crash could
//! still take it back. The writer therefore publishes its durable head here, and the
//! reader stops at it.
//!
//! Rule: the file is written (`pwrite`, never `fsync`'d) only with a position whose events
//! are already durable: after a commit's `fdatasync` returned, and on open after the
//! recovered log was synced. Positions only grow while a log exists (recovery cuts only
//! what was never durable), so whatever version of the file a reader sees — the newest, an
//! older one, or after a crash whichever one reached the disk — names events that are
//! durable: it is a lower bound of the durable head, never above it. Not syncing it costs
//! nothing per commit; the price is that after a crash it may lag the log, which only
//! makes a reader stop early until the writer opens the log again and rewrites it.
//!
//! Format, little-endian: `magic u32 | position u64 | crc32c u32` (of the first 12 bytes).
//! A torn or concurrent read fails the checksum and is retried; a file that never reads
//! back valid, or is missing (a log written before the file existed, or a copy without
//! it), names no head, and the reader falls back to the last whole commit.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::store::types::Position;

pub const HEAD_FILE_NAME: &str = "HEAD";
const HEAD_MAGIC: u32 = u32::from_le_bytes(*b"STMH");
const HEAD_BYTES: usize = 16;
/// Reads of a file that fails its checksum before giving up: a concurrent `pwrite` can be
/// seen half done, but not many times in a row.
const READ_ATTEMPTS_MAX: usize = 64;

pub fn path(data_directory: &Path) -> PathBuf {
    data_directory.join(HEAD_FILE_NAME)
}

fn encode(position: Position) -> [u8; HEAD_BYTES] {
    let mut bytes = [0u8; HEAD_BYTES];
    bytes[0..4].copy_from_slice(&HEAD_MAGIC.to_le_bytes());
    bytes[4..12].copy_from_slice(&position.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..12]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Option<Position> {
    if bytes.len() != HEAD_BYTES
        || bytes[0..4] != HEAD_MAGIC.to_le_bytes()
        || crc32c::crc32c(&bytes[..12]).to_le_bytes() != bytes[12..16]
    {
        return None;
    }
    Some(u64::from_le_bytes(bytes[4..12].try_into().unwrap()))
}

/// The writer's handle on `HEAD`.
pub struct HeadFile {
    path: PathBuf,
    file: File,
}

impl HeadFile {
    pub fn open(data_directory: &Path) -> std::io::Result<HeadFile> {
        let path = path(data_directory);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        Ok(HeadFile { path, file })
    }

    /// Publishes `position`, which must be durable already. Not synced (see the module).
    pub fn publish(&self, position: Position) -> std::io::Result<()> {
        self.file.write_all_at(&encode(position), 0)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The durable head `data_directory`'s writer last published, if it reads back valid.
pub fn read(data_directory: &Path) -> Option<Position> {
    let file = File::open(path(data_directory)).ok()?;
    let mut bytes = [0u8; HEAD_BYTES];
    for _ in 0..READ_ATTEMPTS_MAX {
        match file.read_at(&mut bytes, 0) {
            Ok(HEAD_BYTES) => {
                if let Some(position) = decode(&bytes) {
                    return Some(position);
                }
            }
            // Shorter: a file just created, not yet written.
            Ok(_) => return None,
            Err(_) => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let bytes = encode(123_456);
        assert_eq!(decode(&bytes), Some(123_456));
        for at in 0..HEAD_BYTES {
            let mut damaged = bytes;
            damaged[at] ^= 0x01;
            assert_eq!(decode(&damaged), None, "flip at {at}");
        }
        assert_eq!(decode(&bytes[..12]), None);
    }

    #[test]
    fn reads_what_was_published_and_nothing_when_absent() {
        let directory = tempfile::tempdir().unwrap();
        assert_eq!(read(directory.path()), None);
        let head = HeadFile::open(directory.path()).unwrap();
        assert_eq!(read(directory.path()), None);
        head.publish(7).unwrap();
        assert_eq!(read(directory.path()), Some(7));
        head.publish(1 << 40).unwrap();
        assert_eq!(read(directory.path()), Some(1 << 40));
    }
}
