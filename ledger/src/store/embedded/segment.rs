//! Segment files: preallocated, zero-filled, append-only.
//!
//! A segment is named after the position of its first event (`00000000000000000001.seg`)
//! and starts with a 64-byte header naming that position and the hash before it, so each
//! segment can be checked on its own and the chain crosses segment boundaries.
//!
//! Segments are created complete: a spare file is zero-filled to its full size and fsync'd
//! (overwriting a preallocated, zero-filled file needs no metadata journalling on
//! `fdatasync`, see shared/FINDINGS.md), then its header is written and it is renamed into
//! place and the directory fsync'd. A segment in the directory therefore always has its
//! full size and a complete header; a crash mid-way leaves at most `spare.tmp`, which open
//! deletes.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::store::error::{CorruptionKind, StoreError};
use crate::store::types::{Hash32, Position};

pub const SEGMENT_HEADER_BYTES: u64 = 64;
const SEGMENT_MAGIC: &[u8; 8] = b"STEMSEG\x01";
const SEGMENT_FORMAT_VERSION: u32 = 1;
const SPARE_NAME: &str = "spare.tmp";
/// The page size the writer pads its writes to (see `Disk::write`), and the alignment of
/// `O_DIRECT` writes.
pub const PAGE_BYTES: u64 = 4096;
const ZERO_CHUNK_BYTES: usize = 256 * 1024;

/// What spares are written from: aligned for `O_DIRECT`.
#[repr(C, align(4096))]
struct AlignedZeroes([u8; ZERO_CHUNK_BYTES]);

static ZEROES: AlignedZeroes = AlignedZeroes([0; ZERO_CHUNK_BYTES]);

/// A segment's header: where it starts in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub first_position: Position,
    pub previous_hash: Hash32,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES as usize] {
        let mut out = [0u8; SEGMENT_HEADER_BYTES as usize];
        out[0..8].copy_from_slice(SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
        out[16..24].copy_from_slice(&self.first_position.to_le_bytes());
        out[24..56].copy_from_slice(&self.previous_hash.0);
        let crc = crc32c::crc32c(&out[0..56]);
        out[56..60].copy_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, CorruptionKind> {
        let bad = |why: &str| CorruptionKind::BadSegmentHeader(why.to_string());
        if bytes.len() < SEGMENT_HEADER_BYTES as usize {
            return Err(bad("the file is shorter than a header"));
        }
        if &bytes[0..8] != SEGMENT_MAGIC {
            return Err(bad("bad magic"));
        }
        let crc = u32::from_le_bytes(bytes[56..60].try_into().unwrap());
        if crc32c::crc32c(&bytes[0..56]) != crc {
            return Err(bad("bad checksum"));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
        if version != SEGMENT_FORMAT_VERSION {
            return Err(bad(&format!("unknown format version {version}")));
        }
        let mut previous_hash = [0u8; 32];
        previous_hash.copy_from_slice(&bytes[24..56]);
        Ok(SegmentHeader {
            first_position: u64::from_le_bytes(bytes[16..24].try_into().unwrap()),
            previous_hash: Hash32(previous_hash),
        })
    }
}

pub fn segment_file_name(first_position: Position) -> String {
    format!("{first_position:020}.seg")
}

/// The segment files of a directory, in log order, with the first position their names
/// claim (checked against their headers when scanned).
pub fn list_segments(directory: &Path) -> Result<Vec<(Position, PathBuf)>, StoreError> {
    let mut segments = Vec::new();
    let entries = fs::read_dir(directory).map_err(|e| StoreError::io(directory, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(directory, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".seg") else {
            continue;
        };
        let Ok(first_position) = stem.parse::<Position>() else {
            continue;
        };
        segments.push((first_position, entry.path()));
    }
    segments.sort();
    Ok(segments)
}

pub fn remove_spare(directory: &Path) -> Result<(), StoreError> {
    let spare = directory.join(SPARE_NAME);
    match fs::remove_file(&spare) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(StoreError::io(spare, error)),
    }
}

/// How a spare's zeroes are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZeroFill {
    /// Past the page cache (`O_DIRECT`) where the file system allows it: nobody reads the
    /// zeroes, and copying a segment's worth of them into the page cache (allocating and
    /// reclaiming its pages) took up to a fifth of the store's CPU with 256 appenders (see
    /// ARCHITECTURE.md). For a writer that pads its writes to whole pages (the store's,
    /// `Disk::write`), so that no page it writes is read from disk first.
    Direct,
    /// Through the page cache, which then holds the segment's pages: for a writer that
    /// writes pages in parts (import), which would otherwise read each from disk first.
    Cached,
}

/// Writes `spare.tmp`: `size_bytes` of zeroes, fsync'd. Run ahead of need, off the
/// writer's path.
pub fn prepare_spare(
    directory: &Path,
    size_bytes: u64,
    fill: ZeroFill,
) -> std::io::Result<PathBuf> {
    let path = directory.join(SPARE_NAME);
    if fill == ZeroFill::Direct && size_bytes.is_multiple_of(PAGE_BYTES) {
        match write_zeroes(&path, size_bytes, true) {
            Ok(()) => return Ok(path),
            // No `O_DIRECT` here (tmpfs, some network file systems): through the cache.
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {}
            Err(error) => return Err(error),
        }
    }
    write_zeroes(&path, size_bytes, false)?;
    Ok(path)
}

fn write_zeroes(path: &Path, size_bytes: u64, direct: bool) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if direct {
        options.custom_flags(libc::O_DIRECT);
    }
    let mut file = options.open(path)?;
    let mut written = 0u64;
    while written < size_bytes {
        let chunk = (size_bytes - written).min(ZERO_CHUNK_BYTES as u64) as usize;
        file.write_all(&ZEROES.0[..chunk])?;
        written += chunk as u64;
    }
    file.sync_all()
}

/// Turns a prepared spare into the segment starting at `header.first_position`.
pub fn install_spare(
    directory: &Path,
    spare: &Path,
    header: SegmentHeader,
) -> std::io::Result<(PathBuf, File)> {
    let file = OpenOptions::new().read(true).write(true).open(spare)?;
    // The whole first page, so that it is not read from disk first (spares are written
    // past the page cache); segments are at least a page long.
    let mut first_page = [0u8; PAGE_BYTES as usize];
    first_page[..SEGMENT_HEADER_BYTES as usize].copy_from_slice(&header.encode());
    file.write_all_at(&first_page, 0)?;
    file.sync_data()?;
    let path = directory.join(segment_file_name(header.first_position));
    fs::rename(spare, &path)?;
    sync_directory(directory)?;
    Ok((path, file))
}

pub fn sync_directory(directory: &Path) -> std::io::Result<()> {
    File::open(directory)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_detect_damage() {
        let header = SegmentHeader {
            first_position: 42,
            previous_hash: Hash32([7; 32]),
        };
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes).unwrap(), header);
        for at in 0..60 {
            let mut damaged = bytes;
            damaged[at] ^= 1;
            assert!(SegmentHeader::decode(&damaged).is_err(), "flip at {at}");
        }
    }

    #[test]
    fn spares_of_whole_pages_are_zeroes_and_take_a_header() {
        let directory = tempfile::tempdir().unwrap();
        let spare = prepare_spare(directory.path(), 3 * PAGE_BYTES, ZeroFill::Direct).unwrap();
        let bytes = fs::read(&spare).unwrap();
        assert_eq!(bytes.len() as u64, 3 * PAGE_BYTES);
        assert!(bytes.iter().all(|b| *b == 0));
        let header = SegmentHeader {
            first_position: 9,
            previous_hash: Hash32([3; 32]),
        };
        let (path, _file) = install_spare(directory.path(), &spare, header).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, 3 * PAGE_BYTES);
        assert_eq!(SegmentHeader::decode(&bytes).unwrap(), header);
        assert!(bytes[SEGMENT_HEADER_BYTES as usize..]
            .iter()
            .all(|b| *b == 0));
    }

    #[test]
    fn spares_become_segments() {
        let directory = tempfile::tempdir().unwrap();
        let spare = prepare_spare(directory.path(), 4096 + 17, ZeroFill::Direct).unwrap();
        let header = SegmentHeader {
            first_position: 1,
            previous_hash: Hash32::GENESIS,
        };
        let (path, _file) = install_spare(directory.path(), &spare, header).unwrap();
        assert!(!spare.exists());
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 4096 + 17);
        assert_eq!(SegmentHeader::decode(&bytes).unwrap(), header);
        assert!(bytes[SEGMENT_HEADER_BYTES as usize..]
            .iter()
            .all(|b| *b == 0));
        assert_eq!(
            list_segments(directory.path()).unwrap(),
            vec![(1, path.clone())]
        );
    }
}
