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
    let mut hasher = blake3::Hasher::new();
    hasher.update(&previous.0);
    hasher.update(body);
    Hash32(*hasher.finalize().as_bytes())
}

// The compression flags and IV of the BLAKE3 specification (§2.1, §2.2); the crate keeps
// its own copies private.
const CHUNK_START: u8 = 1 << 0;
const CHUNK_END: u8 = 1 << 1;
const ROOT: u8 = 1 << 3;
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
