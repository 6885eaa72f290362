//! Reads of durable events: plan under the index lock, then read the files without it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use super::index::Index;
use crate::store::batch::RecordBatch;
use crate::store::codec::{self, Frame};
use crate::store::error::{CorruptionKind, StoreError};
use crate::store::limits;
use crate::store::types::{Position, RecordedEvent, StreamId, StreamVersion};

/// Bytes of records one read call gathers before it returns (it always returns at least
/// one event when there is one): the batch bound of `read_all_batch`. Larger reads were
/// slower per event (page faults on a fresh buffer outweigh the saved calls).
pub const READ_BYTES_MAX: u64 = limits::READ_BATCH_BYTES_MAX as u64;

/// A contiguous run of records in one segment.
struct Extent {
    path: PathBuf,
    file: Arc<File>,
    first_position: Position,
    start: u64,
    end: u64,
}

/// The extents holding up to `max_count` events from `from_position` on, at most about
/// `READ_BYTES_MAX` bytes of them, and how many events they hold.
fn plan_read_all(
    index: &RwLock<Index>,
    from_position: Position,
    max_count: usize,
) -> (Vec<Extent>, usize) {
    let max_count = max_count.min(limits::READ_EVENTS_MAX);
    let mut extents = Vec::new();
    let mut count = 0usize;
    let index = index.read().expect("index lock");
    let mut position = from_position.max(1);
    let last = index
        .head
        .position
        .min(position.saturating_add(max_count as u64).saturating_sub(1));
    let mut bytes = 0u64;
    while position <= last && bytes < READ_BYTES_MAX {
        let segment = index
            .segment_of(position)
            .expect("durable positions are indexed");
        let segment_last = segment.last_position().expect("segment has events");
        let (start, _) = segment.record_range(position);
        let mut end_position = position;
        let mut end = segment.record_range(position).1;
        while end_position < last.min(segment_last) && end - start < READ_BYTES_MAX - bytes {
            end_position += 1;
            end = segment.record_range(end_position).1;
        }
        extents.push(Extent {
            path: segment.path.clone(),
            file: segment.file.clone(),
            first_position: position,
            start,
            end,
        });
        bytes += end - start;
        count += (end_position - position + 1) as usize;
        position = end_position + 1;
    }
    (extents, count)
}

pub fn read_all(
    index: &RwLock<Index>,
    from_position: Position,
    max_count: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let (extents, count) = plan_read_all(index, from_position, max_count);
    let mut events = Vec::with_capacity(count);
    for extent in extents {
        read_extent(&extent, &mut events)?;
    }
    Ok(events)
}

/// `read_all` into `batch`: the extents are read straight into the batch's buffer and each
/// frame is checked there (checksum, envelope, position) as `decode_extent` checks it, then
/// left in place. On an error the batch is left empty.
pub fn read_all_batch(
    index: &RwLock<Index>,
    from_position: Position,
    max_count: usize,
    batch: &mut RecordBatch,
) -> Result<(), StoreError> {
    batch.clear();
    let (extents, _) = plan_read_all(index, from_position, max_count);
    let result = extents
        .iter()
        .try_for_each(|extent| read_extent_into_batch(extent, batch));
    if result.is_err() {
        batch.clear();
    }
    result
}

fn read_extent_into_batch(extent: &Extent, batch: &mut RecordBatch) -> Result<(), StoreError> {
    let length = (extent.end - extent.start) as usize;
    let (region_start, region) = batch.extend_bytes(length);
    extent
        .file
        .read_exact_at(region, extent.start)
        .map_err(|error| StoreError::io(&extent.path, error))?;
    let region_end = region_start + length;
    let mut at = region_start;
    let mut position = extent.first_position;
    while at < region_end {
        let corrupt = |kind: CorruptionKind| StoreError::Corrupt {
            segment: extent.path.clone(),
            offset: extent.start + (at - region_start) as u64,
            position,
            kind,
        };
        let (body, frame_bytes) = match codec::parse_frame(
            &batch.bytes()[at..region_end],
            limits::EVENT_PAYLOAD_BYTES_MAX + 4096,
        ) {
            Frame::Valid {
                body, frame_bytes, ..
            } => {
                let body_start = at + (frame_bytes - body.len());
                (body_start..body_start + body.len(), frame_bytes)
            }
            Frame::Empty => {
                return Err(corrupt(CorruptionKind::BadFrame(
                    "zeroes where a durable record should be".into(),
                )))
            }
            Frame::Invalid(kind) => return Err(corrupt(kind)),
        };
        batch.push_body(body, position).map_err(corrupt)?;
        at += frame_bytes;
        position += 1;
    }
    Ok(())
}

pub fn read_stream(
    index: &RwLock<Index>,
    stream_id: &StreamId,
    from_version: StreamVersion,
    max_count: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let max_count = max_count.min(limits::READ_EVENTS_MAX);
    let mut extents = Vec::new();
    {
        let index = index.read().expect("index lock");
        let Some(positions) = index.streams.get(stream_id) else {
            return Ok(Vec::new());
        };
        let skip = from_version.max(1) as usize - 1;
        let mut bytes = 0u64;
        for position in positions.iter().skip(skip).take(max_count) {
            if bytes >= READ_BYTES_MAX {
                break;
            }
            let segment = index
                .segment_of(*position)
                .expect("durable positions are indexed");
            let (start, end) = segment.record_range(*position);
            bytes += end - start;
            extents.push(Extent {
                path: segment.path.clone(),
                file: segment.file.clone(),
                first_position: *position,
                start,
                end,
            });
        }
    }
    let mut events = Vec::with_capacity(extents.len());
    for extent in extents {
        read_extent(&extent, &mut events)?;
    }
    Ok(events)
}

thread_local! {
    /// The read buffer of this (blocking-pool) thread, kept between reads: a fresh one of
    /// `READ_BYTES_MAX` page-faults on every read.
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Reads the records of `extent`, checking each frame's checksum and position.
fn read_extent(extent: &Extent, events: &mut Vec<RecordedEvent>) -> Result<(), StoreError> {
    READ_BUFFER.with_borrow_mut(|buffer| {
        let length = (extent.end - extent.start) as usize;
        // Only growth zero-fills; what is there is overwritten by the read.
        if buffer.len() < length {
            buffer.resize(length, 0);
        }
        decode_extent(extent, &mut buffer[..length], events)
    })
}

fn decode_extent(
    extent: &Extent,
    buffer: &mut [u8],
    events: &mut Vec<RecordedEvent>,
) -> Result<(), StoreError> {
    extent
        .file
        .read_exact_at(buffer, extent.start)
        .map_err(|error| StoreError::io(&extent.path, error))?;
    let mut at = 0usize;
    let mut position = extent.first_position;
    while at < buffer.len() {
        let corrupt = |kind: CorruptionKind| StoreError::Corrupt {
            segment: extent.path.clone(),
            offset: extent.start + at as u64,
            position,
            kind,
        };
        match codec::parse_frame(&buffer[at..], limits::EVENT_PAYLOAD_BYTES_MAX + 4096) {
            Frame::Valid {
                body, frame_bytes, ..
            } => {
                let event = codec::decode_event(body).map_err(corrupt)?;
                if event.position != position {
                    return Err(corrupt(CorruptionKind::PositionGap {
                        expected: position,
                        found: event.position,
                    }));
                }
                events.push(event);
                at += frame_bytes;
                position += 1;
            }
            Frame::Empty => {
                return Err(corrupt(CorruptionKind::BadFrame(
                    "zeroes where a durable record should be".into(),
                )))
            }
            Frame::Invalid(kind) => return Err(corrupt(kind)),
        }
    }
    Ok(())
}
