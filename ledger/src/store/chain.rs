//! The hash chain: every event is linked to the one before it by blake3.
//!
//! `hash = blake3(previous_hash ‖ body)` where `body` is the bincode encoding of the
//! envelope and payload without the `hash` field. Editing, deleting, inserting or
//! reordering any event changes every hash after it; an auditor who wrote down one head
//! (position, hash) can prove the history up to it is unchanged.

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
