//! The last version seen of every stream, for `verify`'s stream-version check.
//!
//! That check runs on the thread that checks the log in order, which bounds a semantic
//! pass, once per event, in a table of millions of streams: in a `HashMap` each lookup was
//! two to three cache misses (control bytes, key, value), most of the check's time. Here
//! a stream is named by its `StreamKey` (worked out ahead by the workers), a slot holds
//! key and version side by side, and the caller prefetches the slot of an event a few
//! frames before it checks it, so the lookup usually finds its line in the cache.

use std::hash::{BuildHasher, RandomState};

/// A stream's identity: its id under two SipHash-1-3 functions with random keys drawn for
/// the pass (std's `RandomState`), 128 bits. Two ids sharing a key would share a version
/// count: for the ~10^7 streams of a large log the chance is ~10^-25, and SipHash is a
/// keyed pseudo-random function, so a log cannot be crafted to make it happen without
/// the pass's keys. (A blake3 per stream id cost several times as much, one compression
/// per event.) Never 0 (the empty slot's mark).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct StreamKey([u64; 2]);

impl StreamKey {
    /// The key of an event whose envelope did not decode: it is never looked up.
    pub(super) const NONE: StreamKey = StreamKey([1, 0]);
}

/// Names streams by `StreamKey`s, the same way for the whole pass.
#[derive(Default)]
pub(super) struct StreamKeys {
    low: RandomState,
    high: RandomState,
}

impl StreamKeys {
    pub(super) fn of(&self, stream_id: &str) -> StreamKey {
        let low = self.low.hash_one(stream_id);
        let high = self.high.hash_one(stream_id);
        // One bit fewer to tell keys apart, so that no key is the empty mark.
        StreamKey([low | 1, high])
    }
}

#[derive(Clone, Copy)]
struct Slot {
    /// `[0, 0]`: empty. Two words, not a `u128`, so that a slot is 24 bytes, not 32.
    key: [u64; 2],
    version: u64,
}

const EMPTY: Slot = Slot {
    key: [0, 0],
    version: 0,
};
const SLOTS_INITIAL: usize = 1 << 12;
const _: () = assert!(std::mem::size_of::<Slot>() == 24);

/// Open addressing with linear probing, at most half full. Streams are never removed.
pub(super) struct StreamVersions {
    /// A power of two long.
    slots: Vec<Slot>,
    len: usize,
}

impl Default for StreamVersions {
    fn default() -> Self {
        StreamVersions {
            slots: vec![EMPTY; SLOTS_INITIAL],
            len: 0,
        }
    }
}

impl StreamVersions {
    /// Keys are uniformly distributed: their low bits pick the home slot.
    fn home(&self, key: StreamKey) -> usize {
        (key.0[0] as usize) & (self.slots.len() - 1)
    }

    /// Asks the CPU to bring `key`'s home slot into the cache.
    #[inline]
    pub(super) fn prefetch(&self, key: StreamKey) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let slot = self.slots.as_ptr().wrapping_add(self.home(key));
            // SAFETY: a prefetch is only a hint: it reads nothing into the program, never
            // faults, and SSE (which has it) is part of every x86_64 CPU.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(slot.cast()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = key;
    }

    /// The last version seen of `key`'s stream, 0 for a stream not seen yet (which it then
    /// is).
    pub(super) fn entry(&mut self, key: StreamKey) -> &mut u64 {
        assert_ne!(key.0, EMPTY.key, "a stream key is never the empty mark");
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut index = self.home(key);
        loop {
            let slot = self.slots[index];
            if slot.key == key.0 {
                break;
            }
            if slot.key == EMPTY.key {
                self.slots[index].key = key.0;
                self.len += 1;
                break;
            }
            index = (index + 1) & mask;
        }
        &mut self.slots[index].version
    }

    fn grow(&mut self) {
        let doubled = vec![EMPTY; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        let mask = self.slots.len() - 1;
        for slot in old.into_iter().filter(|slot| slot.key != EMPTY.key) {
            let mut index = (slot.key[0] as usize) & mask;
            while self.slots[index].key != EMPTY.key {
                index = (index + 1) & mask;
            }
            self.slots[index] = slot;
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Behaves as a map from stream id to version, across growth, whatever the ids.
        #[test]
        fn matches_a_hash_map(
            updates in prop::collection::vec(("[a-z]{1,3}-[0-9]{1,4}", 1u64..1_000), 0..6_000)
        ) {
            let keys = StreamKeys::default();
            let mut versions = StreamVersions::default();
            let mut model: HashMap<String, u64> = HashMap::new();
            for (stream, version) in &updates {
                let key = keys.of(stream);
                versions.prefetch(key);
                let seen = versions.entry(key);
                let expected = model.entry(stream.clone()).or_insert(0);
                prop_assert_eq!(*seen, *expected);
                *seen = (*version).max(*seen);
                *expected = (*version).max(*expected);
            }
            prop_assert_eq!(versions.len(), model.len());
            for (stream, version) in &model {
                prop_assert_eq!(*versions.entry(keys.of(stream)), *version);
            }
        }
    }

    #[test]
    fn distinct_ids_get_distinct_keys() {
        let keys = StreamKeys::default();
        assert_ne!(keys.of("record-a"), keys.of("record-b"));
        assert_eq!(keys.of("record-a"), keys.of("record-a"));
        let [low, high] = keys.of("record-a").0;
        assert_ne!(low & !1, high & !1, "two independent hashes");
    }
}
