//! The in-memory index of durable events: where each position lives on disk, each
//! stream's positions, and each command id's events.
//!
//! Only the writer mutates it, and only with events that are already durable, so a reader
//! never sees an event that a crash could take back.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use smallvec::{smallvec, SmallVec};

use crate::sharded::ShardedMap;

use crate::store::types::{Head, Position, StreamId, StreamVersion};
use crate::time::Timestamp;

/// One segment's part of the index.
#[derive(Debug)]
pub struct SegmentEntry {
    pub path: PathBuf,
    pub file: Arc<File>,
    pub first_position: Position,
    /// The offset of each record: `offsets[i]` holds `first_position + i`.
    pub offsets: Vec<u32>,
    /// The end of the last durable record.
    pub end_offset: u64,
}

impl SegmentEntry {
    pub fn last_position(&self) -> Option<Position> {
        (!self.offsets.is_empty()).then(|| self.first_position + self.offsets.len() as u64 - 1)
    }

    /// `[start, end)` of the record at `position`, which must be in this segment.
    pub fn record_range(&self, position: Position) -> (u64, u64) {
        let i = (position - self.first_position) as usize;
        let start = u64::from(self.offsets[i]);
        let end = self
            .offsets
            .get(i + 1)
            .map_or(self.end_offset, |next| u64::from(*next));
        (start, end)
    }
}

/// The writer's per-commit maps (small, cleared and reused every commit): keyed hashing (a
/// random seed per map, so stream ids a client picks cannot be chosen to collide), much
/// cheaper per lookup than the standard SipHash.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A stream's positions, in version order. Most streams hold one or two events (a record's
/// upload and its withdrawal, a member's registration), which stay inline: no heap block
/// per stream, and the same 24 bytes as a `Vec`.
pub type StreamPositions = SmallVec<[Position; 2]>;

/// A command id's 128-bit digest: the idempotency map's key (a fraction of the id's size).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CommandKey(pub(super) u128);

impl CommandKey {
    pub fn of(command_id: &(impl AsRef<str> + ?Sized)) -> CommandKey {
        // `blake3::hash` of the id, by the one-chunk path (`chain::hash_one_chunk`).
        let digest = crate::store::chain::hash_of_one_chunk(command_id.as_ref().as_bytes());
        CommandKey(u128::from_le_bytes(digest[..16].try_into().unwrap()))
    }
}

/// Where a command's events are: `event_count` events from `first_position` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandEntry {
    pub first_position: Position,
    pub event_count: u32,
}

#[derive(Debug)]
pub struct Index {
    pub head: Head,
    pub last_recorded_at: Timestamp,
    pub segments: Vec<SegmentEntry>,
    /// Sharded: the index only grows, and its maps are updated under its lock on the
    /// publish path (see `sharded`).
    pub streams: ShardedMap<StreamId, StreamPositions>,
    pub commands: ShardedMap<CommandKey, CommandEntry>,
}

impl Index {
    pub fn empty() -> Index {
        Index {
            head: Head::EMPTY,
            last_recorded_at: Timestamp::EPOCH,
            segments: Vec::new(),
            streams: ShardedMap::default(),
            commands: ShardedMap::default(),
        }
    }

    pub fn stream_version(&self, stream_id: &(impl AsRef<str> + ?Sized)) -> StreamVersion {
        self.streams
            .get(stream_id.as_ref())
            .map_or(0, |p| p.len() as u64)
    }

    /// The segment holding `position`, if it is durable.
    pub fn segment_of(&self, position: Position) -> Option<&SegmentEntry> {
        if position == 0 || position > self.head.position {
            return None;
        }
        let at = self
            .segments
            .partition_point(|segment| segment.first_position <= position);
        let segment = &self.segments[at.checked_sub(1)?];
        (segment.last_position()? >= position).then_some(segment)
    }

    /// Records a durable event in the index. Events arrive in position order.
    pub fn add_event(
        &mut self,
        position: Position,
        offset: u64,
        stream_id: &(impl AsRef<str> + ?Sized),
        command_key: CommandKey,
    ) {
        let stream_id = stream_id.as_ref();
        self.add_location(position, offset);
        match self.streams.get_mut(stream_id) {
            Some(positions) => positions.push(position),
            None => {
                self.streams
                    .insert(StreamId::from_log(stream_id), smallvec![position]);
            }
        }
        self.commands.upsert(
            command_key,
            |entry| {
                if entry.first_position + u64::from(entry.event_count) == position {
                    entry.event_count += 1;
                }
            },
            || CommandEntry {
                first_position: position,
                event_count: 1,
            },
        );
    }
}

impl Index {
    /// Records where a durable event is, and advances the head to it; nothing else. Alone,
    /// for an event up to the position of the index checkpoint, whose maps hold the rest
    /// (see `checkpoint`).
    pub fn add_location(&mut self, position: Position, offset: u64) {
        assert_eq!(
            position,
            self.head.position + 1,
            "index positions are gap-free"
        );
        let segment = self.segments.last_mut().expect("a segment is open");
        assert_eq!(
            segment.first_position + segment.offsets.len() as u64,
            position,
            "segment offsets are gap-free"
        );
        segment
            .offsets
            .push(u32::try_from(offset).expect("segments are smaller than 4 GiB"));
        self.head.position = position;
    }

    /// Takes the events after `head` back out (an incomplete commit found on open).
    /// `streams` and `commands` name what those events touched.
    pub fn truncate(
        &mut self,
        head: Head,
        last_recorded_at: Timestamp,
        streams: &[&str],
        commands: &[CommandKey],
    ) {
        let segment = self.segments.last_mut().expect("a segment is open");
        assert!(
            head.position + 1 >= segment.first_position,
            "truncation stays in the last segment"
        );
        segment
            .offsets
            .truncate((head.position + 1 - segment.first_position) as usize);
        for stream_id in streams {
            if let Some(positions) = self.streams.get_mut(*stream_id) {
                while positions.last().is_some_and(|p| *p > head.position) {
                    positions.pop();
                }
                if positions.is_empty() {
                    self.streams.remove(*stream_id);
                }
            }
        }
        for key in commands {
            if self
                .commands
                .get(key)
                .is_some_and(|entry| entry.first_position > head.position)
            {
                self.commands.remove(key);
            }
        }
        self.head = head;
        self.last_recorded_at = last_recorded_at;
    }
}

// The inline positions cost nothing over a `Vec` (smallvec's `union` layout).
const _: () =
    assert!(std::mem::size_of::<StreamPositions>() == std::mem::size_of::<Vec<Position>>());
