//! A hash map split into many maps by a hash of the key, so that none of them grows large.
//!
//! Why: the maps of a ledger's in-memory state only grow (an event store forgets neither a
//! stream nor a command id; the decider keeps every command's result and every member,
//! record and comment), and a hash map grows by doubling: one insert moves every entry
//! into a table twice the size, whose memory the kernel must first fault in and zero. The
//! store's index is updated under its lock on the publish path, and the decider decides
//! one command at a time, so that one insert stalls every append (and, for the index,
//! every read) for as long. Measured here (`foldhash` map of 16-byte keys, 10M inserts): the worst
//! single insert took 1.09 s (8M entries moving to 16M buckets); split 256 ways, 2.8 ms,
//! and the 10M inserts took 0.58× the time (each doubling's table fits the caches better).
//! The total work of growing is the same; only the largest pause shrinks, by the number of
//! shards.

use std::borrow::Borrow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// How many maps. A power of two; empty ones cost a few dozen bytes each.
pub const SHARDS: usize = 256;

/// Keyed hashing (a random seed per map: stream ids are chosen by clients, and a chosen
/// key must not be able to make probing slow), much cheaper per lookup than SipHash.
type Hasher = foldhash::fast::RandomState;

#[derive(Debug, Clone)]
pub struct ShardedMap<K, V> {
    /// Picks the shard: its own seed, so where a key lands says nothing of where it probes.
    router: Hasher,
    shards: Box<[HashMap<K, V, Hasher>]>,
    len: usize,
}

impl<K: Hash + Eq, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        ShardedMap {
            router: Hasher::default(),
            shards: (0..SHARDS).map(|_| HashMap::default()).collect(),
            len: 0,
        }
    }
}

impl<K: Hash + Eq, V> ShardedMap<K, V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room for `additional` more entries, spread evenly (keys are hashed, so they are).
    pub fn reserve(&mut self, additional: usize) {
        let each = additional.div_ceil(SHARDS);
        for shard in self.shards.iter_mut() {
            shard.reserve(each);
        }
    }

    fn shard_of<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        // The top bits: foldhash mixes them best.
        (self.router.hash_one(key) >> (u64::BITS - SHARDS.trailing_zeros())) as usize
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shards[self.shard_of(key)].get(key)
    }

    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shard = self.shard_of(key);
        self.shards[shard].get_mut(key)
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let shard = self.shard_of(&key);
        let previous = self.shards[shard].insert(key, value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shard = self.shard_of(key);
        let removed = self.shards[shard].remove(key);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// The value for `key`, inserted by `insert` if there is none, and updated by `update`
    /// if there was one.
    pub fn upsert(&mut self, key: K, update: impl FnOnce(&mut V), insert: impl FnOnce() -> V) {
        let shard = self.shard_of(&key);
        match self.shards[shard].entry(key) {
            Entry::Occupied(mut occupied) => update(occupied.get_mut()),
            Entry::Vacant(vacant) => {
                vacant.insert(insert());
                self.len += 1;
            }
        }
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|shard| shard.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u32),
        Remove(u16),
        Upsert(u16, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<u16>(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k % 2048, v)),
            any::<u16>().prop_map(|k| Op::Remove(k % 2048)),
            (any::<u16>(), any::<u32>()).prop_map(|(k, v)| Op::Upsert(k % 2048, v)),
        ]
    }

    proptest! {
        /// Every operation answers as one `HashMap` would, and the count stays true.
        #[test]
        fn behaves_as_one_map(ops in proptest::collection::vec(op(), 0..3_000)) {
            let mut sharded = ShardedMap::<String, u32>::default();
            let mut model = std::collections::HashMap::<String, u32>::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        prop_assert_eq!(sharded.insert(k.to_string(), v), model.insert(k.to_string(), v));
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(sharded.remove(k.to_string().as_str()), model.remove(k.to_string().as_str()));
                    }
                    Op::Upsert(k, v) => {
                        sharded.upsert(k.to_string(), |old| *old = old.wrapping_add(v), || v);
                        model.entry(k.to_string()).and_modify(|old| *old = old.wrapping_add(v)).or_insert(v);
                    }
                }
                prop_assert_eq!(sharded.len(), model.len());
                prop_assert_eq!(sharded.is_empty(), model.is_empty());
            }
            for (k, v) in &model {
                prop_assert_eq!(sharded.get(k.as_str()), Some(v));
            }
            let mut all: Vec<_> = sharded.iter().map(|(k, v)| (k.clone(), *v)).collect();
            let mut expected: Vec<_> = model.into_iter().collect();
            all.sort();
            expected.sort();
            prop_assert_eq!(all, expected);
        }
    }

    #[test]
    fn keys_spread_over_the_shards() {
        let mut map = ShardedMap::<u64, ()>::default();
        for key in 0..(SHARDS as u64 * 64) {
            map.insert(key, ());
        }
        let largest = map.shards.iter().map(HashMap::len).max().unwrap();
        let smallest = map.shards.iter().map(HashMap::len).min().unwrap();
        // 64 per shard on average; a shard with none or with several times that would mean
        // the router ignores the bits it uses.
        assert!(smallest >= 24 && largest <= 128, "{smallest}..{largest}");
    }
}
