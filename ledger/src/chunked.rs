//! A growable array kept in fixed-size chunks, so that growing it never moves what it holds.
//!
//! Why: a `Vec` grows by doubling, and each doubling copies every element into new memory
//! that the kernel must first fault in and zero. For the decider's records (64 bytes each,
//! millions of them) one push then took about half a second on the 10M-event log
//! (`replay_stalls`), and the decider decides one command at a time. Here a push allocates
//! at most one new chunk; only the small list of chunks doubles.

use std::ops::{Index, IndexMut};

/// Elements per chunk: 64 Ki (4 MiB of 64-byte records), so the chunk list stays small
/// (a few hundred entries at 10M elements) and one chunk's allocation is cheap.
const CHUNK_BITS: u32 = 16;
const CHUNK: usize = 1 << CHUNK_BITS;

#[derive(Clone, Debug)]
pub struct ChunkedVec<T> {
    /// Every chunk but the last is full; none holds more than `CHUNK`, and each is
    /// allocated with room for exactly that, so it never reallocates.
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for ChunkedVec<T> {
    fn default() -> Self {
        ChunkedVec {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> ChunkedVec<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, value: T) {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let last = self.chunks.last_mut().expect("a chunk with room");
        debug_assert!(last.len() < CHUNK, "a full chunk is never pushed to");
        last.push(value);
        self.len += 1;
    }

    pub fn get(&self, index: usize) -> Option<&T> {
        self.chunks
            .get(index >> CHUNK_BITS)
            .and_then(|chunk| chunk.get(index & (CHUNK - 1)))
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.chunks
            .get_mut(index >> CHUNK_BITS)
            .and_then(|chunk| chunk.get_mut(index & (CHUNK - 1)))
    }

    /// Every element, in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    /// Every element, in order, to change in place.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.chunks.iter_mut().flatten()
    }
}

impl<T> Index<usize> for ChunkedVec<T> {
    type Output = T;

    fn index(&self, index: usize) -> &T {
        let len = self.len;
        self.get(index)
            .unwrap_or_else(|| panic!("index {index} out of bounds (len {len})"))
    }
}

impl<T> IndexMut<usize> for ChunkedVec<T> {
    fn index_mut(&mut self, index: usize) -> &mut T {
        let len = self.len;
        self.get_mut(index)
            .unwrap_or_else(|| panic!("index {index} out of bounds (len {len})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Each case pushes up to three chunks' worth.
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Pushes, reads and writes answer as a `Vec`'s, across chunk boundaries.
        #[test]
        fn behaves_as_a_vec(
            count in 0..(3 * CHUNK + 10),
            writes in proptest::collection::vec((any::<usize>(), any::<u32>()), 0..50),
        ) {
            let mut chunked = ChunkedVec::default();
            let mut model = Vec::new();
            for i in 0..count as u32 {
                chunked.push(i);
                model.push(i);
            }
            for (value, doubled) in chunked.iter_mut().zip(model.iter_mut()) {
                *value *= 2;
                *doubled *= 2;
            }
            for (at, value) in writes {
                if model.is_empty() {
                    break;
                }
                let at = at % model.len();
                chunked[at] = value;
                model[at] = value;
            }
            prop_assert_eq!(chunked.len(), model.len());
            prop_assert_eq!(chunked.is_empty(), model.is_empty());
            prop_assert!(chunked.get(model.len()).is_none());
            prop_assert!(chunked.iter().eq(model.iter()));
            for (i, value) in model.iter().enumerate() {
                prop_assert_eq!(chunked[i], *value);
            }
        }
    }

    #[test]
    fn chunks_never_reallocate() {
        let mut chunked = ChunkedVec::default();
        chunked.push(0u8);
        let first = chunked.chunks[0].as_ptr();
        for i in 1..(2 * CHUNK) {
            chunked.push(i as u8);
        }
        assert_eq!(chunked.chunks[0].as_ptr(), first, "the first chunk moved");
        assert_eq!(chunked.chunks.len(), 2);
        assert!(chunked.chunks.iter().all(|chunk| chunk.capacity() == CHUNK));
    }
}
