//! Compact string interning: every id string is kept once, in one byte arena, and named by a
//! dense `u32` in order of first sight. A read model then stores integers, not strings.
//!
//! Memory per id: its bytes, a 4-byte end offset and two 4-byte slots of the open-addressing
//! index (load factor ≤ 1/2) — about 36 bytes for a 26-byte ULID, against ~90 for a
//! `HashMap<String, u32>` entry. The index uses a fixed hash, so it is rebuilt identically
//! from the arena when a snapshot is loaded; only the arena is stored.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Interned strings, at most `u32::MAX - 1` of them.
#[derive(Clone, Debug, Default)]
pub struct Interner {
    /// Every string, concatenated in order of first sight.
    arena: String,
    /// `ends[i]`: the arena offset just past string `i`.
    ends: Vec<u32>,
    /// Open addressing, linear probing: `EMPTY` or `tag << 32 | index`, where the tag is
    /// the upper half of the string's hash and picks its home slot. Keeping it beside the
    /// index lets a probe pass a different string without reading the arena (two cache
    /// misses), and lets `grow` re-place every string without hashing it again. Length a
    /// power of two.
    slots: Vec<u64>,
}

const EMPTY: u64 = u64::MAX;
/// The largest index: `u32::MAX` with a hash tag of all ones would read as `EMPTY`.
const INDEX_MAX: u32 = u32::MAX - 1;
/// The arena is addressed by u32 offsets.
const ARENA_BYTES_MAX: usize = u32::MAX as usize;

/// FxHash-style: a multiply-rotate over 8-byte words. Ids are chosen by internal services,
/// not by the public, so a keyed hash is not needed here.
fn hash(text: &str) -> u64 {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let mut state: u64 = text.len() as u64;
    let mut chunks = text.as_bytes().chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        state = (state.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
    let mut tail = [0u8; 8];
    let rest = chunks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    state = (state.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(SEED);
    // MurmurHash3's finalizer: a multiplication only carries low bits upwards, and the slot
    // index takes the low bits, so every input bit must reach them.
    state ^= state >> 33;
    state = state.wrapping_mul(0xff51_afd7_ed55_8ccd);
    state ^= state >> 33;
    state = state.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    state ^ (state >> 33)
}

const TAG_MASK: u64 = 0xffff_ffff_0000_0000;

/// The home slot of a tag in a table of `slots` (a power of two): Fibonacci hashing takes
/// the top bits of the product, so every bit of the tag counts.
fn home(tag: u64, slots: usize) -> usize {
    let bits = slots.trailing_zeros();
    if bits == 0 {
        return 0;
    }
    ((tag >> 32).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
}

/// Asks the CPU to bring the cache line at `address` in: a hint, which reads nothing into
/// the program and never faults, whatever the address.
#[inline]
fn prefetch(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is only a hint: it reads nothing into the program and never
        // faults, and SSE, which has it, is part of every x86_64 CPU.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(address.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// Where a probe for a string ended: at its index, or at the empty slot it would take.
enum Probe {
    Found(u32),
    Vacant(usize),
}

impl Interner {
    pub fn new() -> Interner {
        Interner::default()
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Where the string named `index` starts in the arena.
    fn start(&self, index: usize) -> usize {
        match index {
            0 => 0,
            _ => self.ends[index - 1] as usize,
        }
    }

    /// The string named `index`.
    pub fn resolve(&self, index: u32) -> &str {
        let index = index as usize;
        &self.arena[self.start(index)..self.ends[index] as usize]
    }

    /// Probes for `text` (whose hash is `hash`); the slots must not be empty.
    fn probe(&self, text: &str, hash: u64) -> Probe {
        self.probe_by(hash, |index| self.resolve(index) == text)
    }

    /// Walks the slots from `hash`'s home to the first whose tag matches and whose string
    /// `is_it` accepts, or to the first empty one; the slots must not be empty.
    #[inline]
    fn probe_by(&self, hash: u64, mut is_it: impl FnMut(u32) -> bool) -> Probe {
        let mask = self.slots.len() - 1;
        let tag = hash & TAG_MASK;
        let mut slot = home(tag, self.slots.len());
        loop {
            let found = self.slots[slot];
            if found == EMPTY {
                return Probe::Vacant(slot);
            }
            if found & TAG_MASK == tag && is_it(found as u32) {
                return Probe::Found(found as u32);
            }
            slot = (slot + 1) & mask;
        }
    }

    pub fn get(&self, text: &str) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        match self.probe(text, hash(text)) {
            Probe::Found(index) => Some(index),
            Probe::Vacant(_) => None,
        }
    }

    /// The hash `prefetch_*` take: computed once for the three stages.
    pub fn hash(text: &str) -> u64 {
        hash(text)
    }

    /// A lookup in a table of millions of strings costs up to three dependent cache misses:
    /// the slot, the end offsets of the string it names, the string's bytes (compared with
    /// the one looked up). A caller that knows its lookups a little ahead asks for each in
    /// three stages, some work apart, each reading only what the previous one brought in:
    /// `prefetch_slot`, then `prefetch_ends`, then `prefetch_bytes`. Only hints: they change
    /// nothing, and a table that changed in between is merely not helped.
    #[inline]
    pub fn prefetch_slot(&self, hash: u64) {
        if self.slots.is_empty() {
            return;
        }
        let slot = home(hash & TAG_MASK, self.slots.len());
        prefetch(self.slots.as_ptr().wrapping_add(slot).cast());
    }

    /// The second stage: the end offsets of the string in the first slot with `hash`'s tag.
    #[inline]
    pub fn prefetch_ends(&self, hash: u64) {
        if let Some(index) = self.candidate(hash) {
            prefetch(
                self.ends
                    .as_ptr()
                    .wrapping_add(index.saturating_sub(1))
                    .cast(),
            );
        }
    }

    /// The third stage: the bytes of the string in the first slot with `hash`'s tag.
    #[inline]
    pub fn prefetch_bytes(&self, hash: u64) {
        if let Some(index) = self.candidate(hash) {
            prefetch(self.arena.as_ptr().wrapping_add(self.start(index)));
        }
    }

    /// The index in the first slot from `hash`'s home that carries its tag, if any before
    /// an empty slot: the string a lookup would compare first.
    fn candidate(&self, hash: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        match self.probe_by(hash, |_| true) {
            Probe::Found(index) => Some(index as usize),
            Probe::Vacant(_) => None,
        }
    }

    /// The index of `text`, adding it if it is new.
    pub fn intern(&mut self, text: &str) -> u32 {
        match self.insert(text) {
            Ok(index) | Err(index) => index,
        }
    }

    /// Adds `text`: `Ok(index)` if it is new, `Err(index)` of the string already there.
    /// One probe either way, where `get` then `intern` would take two.
    pub fn insert(&mut self, text: &str) -> Result<u32, u32> {
        if self.slots.is_empty() {
            self.grow();
        }
        let hash = hash(text);
        let slot = match self.probe(text, hash) {
            Probe::Found(index) => return Err(index),
            Probe::Vacant(slot) => slot,
        };
        let index = u32::try_from(self.ends.len())
            .ok()
            .filter(|index| *index <= INDEX_MAX)
            .expect("fewer than 2^32 - 1 interned strings");
        assert!(
            self.arena.len() + text.len() <= ARENA_BYTES_MAX,
            "the interner's arena is addressed by u32 offsets"
        );
        self.arena.push_str(text);
        self.ends.push(self.arena.len() as u32);
        self.slots[slot] = (hash & TAG_MASK) | u64::from(index);
        if self.ends.len() * 2 > self.slots.len() {
            self.grow();
        }
        Ok(index)
    }

    /// Doubles the index (or sizes it for the arena after a load) and places every string.
    fn grow(&mut self) {
        let capacity = (self.ends.len() * 2 + 1).next_power_of_two().max(16);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; capacity]);
        let entries: Vec<u64> = if old.is_empty() {
            // Loaded from a snapshot: only the arena is stored, so hash every string once.
            (0..self.ends.len() as u32)
                .map(|index| (hash(self.resolve(index)) & TAG_MASK) | u64::from(index))
                .collect()
        } else {
            old.into_iter().filter(|entry| *entry != EMPTY).collect()
        };
        let mask = capacity - 1;
        for entry in entries {
            let mut slot = home(entry, capacity);
            while self.slots[slot] != EMPTY {
                slot = (slot + 1) & mask;
            }
            self.slots[slot] = entry;
        }
    }

    /// Every string, in index order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.ends.len() as u32).map(move |index| self.resolve(index))
    }
}

impl PartialEq for Interner {
    fn eq(&self, other: &Interner) -> bool {
        self.arena == other.arena && self.ends == other.ends
    }
}

impl Eq for Interner {}

/// The stored form: the arena and the end offsets; the index is rebuilt on load.
#[derive(Serialize, Deserialize)]
struct StoredInterner {
    arena: String,
    ends: Vec<u32>,
}

impl Serialize for Interner {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StoredInterner {
            arena: self.arena.clone(),
            ends: self.ends.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Interner {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stored = StoredInterner::deserialize(deserializer)?;
        let mut previous = 0usize;
        for end in &stored.ends {
            let end = *end as usize;
            if end < previous || end > stored.arena.len() || !stored.arena.is_char_boundary(end) {
                return Err(serde::de::Error::custom("interner offsets out of order"));
            }
            previous = end;
        }
        if previous != stored.arena.len() {
            return Err(serde::de::Error::custom(
                "interner arena has trailing bytes",
            ));
        }
        let mut interner = Interner {
            arena: stored.arena,
            ends: stored.ends,
            slots: Vec::new(),
        };
        interner.grow();
        Ok(interner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_once_resolves_and_survives_a_round_trip() {
        let mut interner = Interner::new();
        let names: Vec<String> = (0..1_000).map(|i| format!("rec-{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            assert_eq!(interner.intern(name), i as u32);
        }
        assert_eq!(interner.intern("rec-7"), 7);
        assert_eq!(interner.insert("rec-7"), Err(7));
        assert_eq!(interner.insert("rec-1000"), Ok(1_000));
        assert_eq!(interner.insert("rec-1000"), Err(1_000));
        assert_eq!(interner.get("rec-1000"), Some(1_000));
        assert_eq!(interner.len(), 1_001);
        assert_eq!(interner.get("nope"), None);
        assert_eq!(interner.resolve(999), "rec-999");
        let bytes = bincode::serde::encode_to_vec(&interner, bincode::config::standard()).unwrap();
        let (back, _): (Interner, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(back, interner);
        for (i, name) in names.iter().enumerate() {
            assert_eq!(back.get(name), Some(i as u32));
        }
    }
}
