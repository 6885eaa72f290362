//! The settings of the global allocator (mimalloc) of the `stemma` binary. The benches
//! apply them too, so their numbers are the binary's.
//!
//! mimalloc returns freed memory to the system ("purges") 10 ms after it is freed, by
//! default with `MADV_DONTNEED`: the next allocation that reuses it takes a page fault
//! and the kernel zeroes the page again. A replay (the audit's, a projection rebuild)
//! grows its hash maps by doubling them, so it frees and reallocates hundreds of MiB as
//! it goes; on this project's 2-core VM, zeroing re-faulted pages was about a third of
//! the CPU of the thread that bounds a semantic audit (perf, 10M events). With
//! `purge_decommits` off, mimalloc purges with `MADV_FREE` instead: the kernel still
//! takes the pages back when memory runs short, but until then reusing them costs
//! nothing. The one visible difference is that RSS counts such pages until the kernel
//! takes them.

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

/// `mi_option_purge_decommits` in mimalloc.h's `mi_option_e` (the same index in mimalloc
/// v2 and v3); `libmimalloc-sys` exports no constant for it. The test below checks the
/// index against the option's documented default.
const MI_OPTION_PURGE_DECOMMITS: mi_option_t = 5;

/// Applies the settings; call it first thing in `main`, before other threads start.
pub fn configure() {
    // SAFETY: `mi_option_set` stores an option's value; mimalloc reads it when it purges.
    unsafe { mi_option_set(MI_OPTION_PURGE_DECOMMITS, 0) };
}

/// Whether freed memory is given back with `MADV_DONTNEED` (`true`, mimalloc's default)
/// or `MADV_FREE`.
pub fn purge_decommits() -> bool {
    // SAFETY: `mi_option_get` reads an option's value.
    unsafe { mi_option_get(MI_OPTION_PURGE_DECOMMITS) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configure_turns_decommitting_purges_off() {
        // mimalloc's documented default is 1; another option at this index would have
        // another default (2 for `arena_eager_commit`, 0 for `allow_large_os_pages`).
        if std::env::var_os("MIMALLOC_PURGE_DECOMMITS").is_none() {
            assert!(purge_decommits(), "index 5 is not purge_decommits");
        }
        configure();
        assert!(!purge_decommits());
    }
}
