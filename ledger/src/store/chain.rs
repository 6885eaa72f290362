//! The hash chain: every event is linked to the one before it by blake3.
//!
//! `hash = blake3(previous_hash ‖ body)` where `body` is the bincode encoding of the
//! envelope and payload without the `hash` field. Editing, deleting, inserting or
//! reordering any event changes every hash after it; an auditor who wrote down one head
//! (position, hash) can prove the history up to it is unchanged.
//!
//! Writing must hash one event after another (each input holds the hash before it), but
//! checking need not: the stored hashes are all known, so `link_many` hashes many events
//! at once, one per SIMD lane (see `Links`).

use blake3::platform::Platform;
use blake3::{BLOCK_LEN, CHUNK_LEN};

use super::codec;
use super::types::{Hash32, RecordedEvent};

/// The hash that `event` must carry given its envelope and `previous_hash` field.
pub fn expected_hash(event: &RecordedEvent) -> Hash32 {
    let body = codec::encode_unhashed(event);
    link(&event.previous_hash, &body)
}

/// `blake3(previous ‖ body)`.
pub fn link(previous: &Hash32, body: &[u8]) -> Hash32 {
    if previous.0.len() + body.len() <= CHUNK_LEN {
        return Hash32(hash_one_chunk(&IV, 0, &[&previous.0, body]));
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(&previous.0);
    hasher.update(body);
    Hash32(*hasher.finalize().as_bytes())
}

/// The BLAKE3 root hash of `parts`, concatenated, which must fit in one chunk (a chunk
/// is the whole tree then): `key` is the IV for `blake3::hash`, a derived key's words for
/// `derive_key` (with its `mode` flag), bit for bit what the crate computes.
///
/// Why not the crate's `Hasher`: for inputs this short (an event body, an id), the
/// writer's hot path, it compresses one block at a time with its SIMD single-block
/// routines, and on this project's machine (AMD EPYC, AVX-512) those took ~130 ns a block
/// where the portable routine takes ~80 (a 300-byte event's link: ~800 ns against ~500).
/// SIMD pays off across inputs (`Links::link_many`), not within one.
pub(crate) fn hash_one_chunk(key: &[u32; 8], mode: u8, parts: &[&[u8]]) -> [u8; 32] {
    let total: usize = parts.iter().map(|part| part.len()).sum();
    assert!(total <= CHUNK_LEN, "one chunk at most");
    let platform = Platform::portable();
    let mut words = *key;
    let mut block = [0u8; BLOCK_LEN];
    let mut filled = 0;
    let mut flags = mode | CHUNK_START;
    let mut left = total;
    for part in parts {
        let mut part = *part;
        while !part.is_empty() {
            // A full block is compressed only once more input follows it: the last block
            // (full or not) carries the end flags.
            if filled == BLOCK_LEN {
                platform.compress_in_place(&mut words, &block, BLOCK_LEN as u8, 0, flags);
                flags = mode;
                block = [0u8; BLOCK_LEN];
                filled = 0;
            }
            let n = part.len().min(BLOCK_LEN - filled);
            block[filled..filled + n].copy_from_slice(&part[..n]);
            filled += n;
            left -= n;
            part = &part[n..];
        }
    }
    debug_assert_eq!(left, 0);
    platform.compress_in_place(
        &mut words,
        &block,
        filled as u8,
        0,
        flags | CHUNK_END | ROOT,
    );
    let mut hash = [0u8; 32];
    for (bytes, word) in hash.chunks_exact_mut(4).zip(words) {
        bytes.copy_from_slice(&word.to_le_bytes());
    }
    hash
}

/// `blake3::hash(input)` for an input of one chunk at most.
pub(crate) fn hash_of_one_chunk(input: &[u8]) -> [u8; 32] {
    hash_one_chunk(&IV, 0, &[input])
}

/// `blake3::derive_key(context, …)`'s first step: the key words of `context`.
pub(crate) fn derive_key_words(context: &str) -> [u32; 8] {
    let hash = hash_one_chunk(&IV, DERIVE_KEY_CONTEXT, &[context.as_bytes()]);
    let mut words = [0u32; 8];
    for (word, bytes) in words.iter_mut().zip(hash.chunks_exact(4)) {
        *word = u32::from_le_bytes(bytes.try_into().expect("4 bytes"));
    }
    words
}

// The compression flags and IV of the BLAKE3 specification (§2.1, §2.2); the crate keeps
// its own copies private.
const CHUNK_START: u8 = 1 << 0;
const CHUNK_END: u8 = 1 << 1;
const ROOT: u8 = 1 << 3;
const DERIVE_KEY_CONTEXT: u8 = 1 << 5;
pub(crate) const DERIVE_KEY_MATERIAL: u8 = 1 << 6;
const IV: [u32; 8] = [
    0x6A09_E667,
    0xBB67_AE85,
    0x3C6E_F372,
    0xA54F_F53A,
    0x510E_527F,
    0x9B05_688C,
    0x1F83_D9AB,
    0x5BE0_CD19,
];

/// Inputs (previous hash plus body) up to one chunk take the batched path: one chunk is
/// the whole tree, so its hash is the chunk's last compression with the root flag.
/// Longer inputs (rare: bodies over ~1 KB) are hashed one by one.
const BATCHED_INPUT_BYTES_MAX: usize = CHUNK_LEN;
/// Whole blocks before an input's last block, for inputs of at most one chunk.
const LEADING_BLOCKS_MAX: usize = BATCHED_INPUT_BYTES_MAX / BLOCK_LEN - 1;

/// Reusable state for `link_many`: the detected SIMD platform and scratch space, so
/// hashing a batch allocates only a small list of references per length group once warm.
///
/// blake3 hashes one short input with one compression after another (a 300-byte event is
/// five), which uses a single SIMD lane. `hash_many` compresses up to 16 inputs side by
/// side (AVX-512), so this groups the inputs by their count of whole leading blocks,
/// compresses each group's leading blocks together, and finishes every input with one
/// compression of its last (padded) block under the root flag: bit for bit `blake3::hash`.
///
/// `hash_many` is in blake3's `platform` module, which the crate documents as unstable:
/// the workspace pins blake3's exact version, and `link_many` is checked against `link`
/// (a proptest over lengths across every block boundary), so an upgrade that changed it
/// fails the tests, never a verification.
pub struct Links {
    platform: Platform,
    /// One `CHUNK_LEN` slot per input: `previous ‖ body`, contiguous, as `hash_many`
    /// needs it.
    scratch: Vec<u8>,
    /// Input indices grouped by leading whole blocks.
    groups: [Vec<usize>; LEADING_BLOCKS_MAX + 1],
    chaining: Vec<u8>,
}

impl Default for Links {
    fn default() -> Links {
        Links {
            platform: Platform::detect(),
            scratch: Vec::new(),
            groups: Default::default(),
            chaining: Vec::new(),
        }
    }
}

impl Links {
    /// `out[i] = link(inputs[i].0, inputs[i].1)` for every input.
    pub fn link_many(&mut self, inputs: &[(&[u8; 32], &[u8])], out: &mut Vec<Hash32>) {
        out.clear();
        out.resize(inputs.len(), Hash32::GENESIS);
        for group in &mut self.groups {
            group.clear();
        }
        self.scratch.resize(inputs.len() * CHUNK_LEN, 0);
        for (index, (previous, body)) in inputs.iter().enumerate() {
            let length = previous.len() + body.len();
            if length > BATCHED_INPUT_BYTES_MAX {
                out[index] = link(&Hash32(**previous), body);
                continue;
            }
            let slot = &mut self.scratch[index * CHUNK_LEN..][..length];
            slot[..32].copy_from_slice(*previous);
            slot[32..].copy_from_slice(body);
            self.groups[(length - 1) / BLOCK_LEN].push(index);
        }
        for leading in 0..=LEADING_BLOCKS_MAX {
            if self.groups[leading].is_empty() {
                continue;
            }
            self.compress_leading(leading, inputs, out);
        }
    }

    /// Compresses the group with `leading` whole blocks before the last one.
    fn compress_leading(
        &mut self,
        leading: usize,
        inputs: &[(&[u8; 32], &[u8])],
        out: &mut [Hash32],
    ) {
        let group = std::mem::take(&mut self.groups[leading]);
        self.chaining.clear();
        self.chaining.resize(group.len() * 32, 0);
        if leading > 0 {
            macro_rules! hash_leading {
                ($($blocks:literal)*) => {
                    match leading {
                        $($blocks => self.hash_many::<{ $blocks * BLOCK_LEN }>(&group),)*
                        _ => unreachable!("at most {LEADING_BLOCKS_MAX} leading blocks"),
                    }
                };
            }
            hash_leading!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
        }
        for (lane, &index) in group.iter().enumerate() {
            let length = inputs[index].0.len() + inputs[index].1.len();
            let start = leading * BLOCK_LEN;
            let mut block = [0u8; BLOCK_LEN];
            block[..length - start]
                .copy_from_slice(&self.scratch[index * CHUNK_LEN + start..][..length - start]);
            let mut words = IV;
            let mut flags = CHUNK_END | ROOT;
            if leading == 0 {
                flags |= CHUNK_START;
            } else {
                for (word, bytes) in words
                    .iter_mut()
                    .zip(self.chaining[lane * 32..][..32].chunks_exact(4))
                {
                    *word = u32::from_le_bytes(bytes.try_into().expect("4 bytes"));
                }
            }
            self.platform
                .compress_in_place(&mut words, &block, (length - start) as u8, 0, flags);
            let mut hash = [0u8; 32];
            for (bytes, word) in hash.chunks_exact_mut(4).zip(words) {
                bytes.copy_from_slice(&word.to_le_bytes());
            }
            out[index] = Hash32(hash);
        }
        self.groups[leading] = group;
    }

    /// The chaining values after the `N / BLOCK_LEN` leading blocks of each input of
    /// `group`, into `self.chaining`.
    fn hash_many<const N: usize>(&mut self, group: &[usize]) {
        let leading: Vec<&[u8; N]> = group
            .iter()
            .map(|&index| {
                self.scratch[index * CHUNK_LEN..][..N]
                    .try_into()
                    .expect("N bytes")
            })
            .collect();
        self.platform.hash_many(
            &leading,
            &IV,
            0,
            blake3::IncrementCounter::No,
            0,
            CHUNK_START,
            0,
            &mut self.chaining,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Every length from empty bodies across every block boundary to past one chunk,
        /// in batches of mixed lengths: `link_many` is `link`, bit for bit.
        #[test]
        fn link_many_is_link(
            inputs in proptest::collection::vec(
                (any::<[u8; 32]>(), proptest::collection::vec(any::<u8>(), 0..1_200)),
                0..40,
            )
        ) {
            let pairs: Vec<(&[u8; 32], &[u8])> =
                inputs.iter().map(|(p, body)| (p, body.as_slice())).collect();
            let mut links = Links::default();
            let mut out = Vec::new();
            links.link_many(&pairs, &mut out);
            let expected: Vec<Hash32> = pairs.iter().map(|(p, b)| link(&Hash32(**p), b)).collect();
            prop_assert_eq!(&out, &expected);
            // Reused: nothing of the last batch leaks into the next.
            links.link_many(&pairs[..pairs.len() / 2], &mut out);
            prop_assert_eq!(&out[..], &expected[..pairs.len() / 2]);
        }
    }

    /// The one-chunk path is the crate's hash, bit for bit: every length up to a chunk,
    /// split into parts at every block boundary and off it, plain and key-derived; `link`
    /// past a chunk too.
    #[test]
    fn one_chunk_is_blake3() {
        let context = "stemma test context";
        let derived = derive_key_words(context);
        for n in 0..=CHUNK_LEN {
            let input: Vec<u8> = (0..n).map(|i| (i * 31 + n) as u8).collect();
            for split in [0, 1, 31, 32, 63, 64, 65, 128, n / 2, n] {
                let split = split.min(n);
                let parts = [&input[..split], &input[split..]];
                assert_eq!(
                    hash_one_chunk(&IV, 0, &parts),
                    *blake3::hash(&input).as_bytes(),
                    "{n} bytes split at {split}"
                );
                assert_eq!(hash_of_one_chunk(&input), *blake3::hash(&input).as_bytes());
                let mut keyed = blake3::Hasher::new_derive_key(context);
                keyed.update(&input);
                assert_eq!(
                    hash_one_chunk(&derived, DERIVE_KEY_MATERIAL, &parts),
                    *keyed.finalize().as_bytes(),
                    "{n} bytes derived, split at {split}"
                );
            }
        }
        let previous = Hash32([0x3C; 32]);
        for n in [0, 1, 31, 32, 33, 991, 992, 993, 2_000] {
            let body: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
            let mut hasher = blake3::Hasher::new();
            hasher.update(&previous.0);
            hasher.update(&body);
            assert_eq!(
                link(&previous, &body).0,
                *hasher.finalize().as_bytes(),
                "{n}"
            );
        }
    }

    #[test]
    fn every_length_up_to_two_chunks() {
        let previous = [0xA5; 32];
        let bodies: Vec<Vec<u8>> = (0..2 * CHUNK_LEN)
            .map(|n| (0..n).map(|i| (i * 7 + n) as u8).collect())
            .collect();
        let pairs: Vec<(&[u8; 32], &[u8])> =
            bodies.iter().map(|b| (&previous, b.as_slice())).collect();
        let mut out = Vec::new();
        Links::default().link_many(&pairs, &mut out);
        for (n, ((p, b), hash)) in pairs.iter().zip(&out).enumerate() {
            assert_eq!(*hash, link(&Hash32(**p), b), "body of {n} bytes");
        }
    }
}
