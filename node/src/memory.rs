//! Giving memory the process has freed back to the operating system, and
//! keeping transparent huge pages out of the node's heap: the allocator
//! settings the `synod` binary makes before its heap grows.
//!
//! The `synod` binary allocates with mimalloc, which keeps freed pages
//! resident and purges them (by default a second later) only when later
//! allocation work in the same arenas gets round to it. After a large
//! free (the log dropped up to a snapshot, a state machine replaced by a
//! peer's snapshot, recovery's buffers) a node that then goes idle makes
//! no such work, and its RSS would stay at the peak. [`release_freed`]
//! forces the purge, at those few moments only: it visits the calling
//! thread's pages, a millisecond or so for a million znodes.

// Links mimalloc (and its C library) into every binary of this crate,
// tests too, whether or not it is their global allocator.
extern crate mimalloc as _;

/// The calls into mimalloc's C API that its Rust crate does not wrap.
#[allow(unsafe_code, reason = "foreign function calls without pointers")]
mod ffi {
    use std::ffi::{c_int, c_long};

    /// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (its
    /// `mimalloc.h`, the version the `mimalloc` crate builds by default);
    /// a test checks it still names the purge delay.
    pub(super) const PURGE_DELAY_OPTION: c_int = 15;

    unsafe extern "C" {
        /// Collects the calling thread's heap and, with `force`, purges
        /// every arena's free memory now instead of after its delay.
        fn mi_collect(force: bool);
        fn mi_option_get(option: c_int) -> c_long;
        fn mi_option_set(option: c_int, value: c_long);
    }

    pub(super) fn collect() {
        // SAFETY: `mi_collect` takes no pointers and may be called from
        // any thread at any time; where mimalloc is not the global
        // allocator it has next to nothing to collect.
        unsafe { mi_collect(true) }
    }

    pub(super) fn option(option: c_int) -> c_long {
        // SAFETY: reads one entry of mimalloc's option table; an index out
        // of its range is answered with 0, not read past the table.
        unsafe { mi_option_get(option) }
    }

    pub(super) fn set_option(option: c_int, value: c_long) {
        // SAFETY: writes one entry of mimalloc's option table, which
        // mimalloc reads atomically; out-of-range indexes are ignored.
        unsafe { mi_option_set(option, value) }
    }
}

/// Returns the memory freed so far to the operating system (see the module
/// documentation); cheap enough after each snapshot, not per request.
pub fn release_freed() {
    ffi::collect();
}

/// The variable with which an operator sets mimalloc's purge delay
/// (milliseconds; `-1` never purges) instead of the node's choice of 0.
pub const PURGE_DELAY_VARIABLE: &str = "MIMALLOC_PURGE_DELAY";

/// Makes mimalloc return freed pages to the operating system as soon as
/// it purges them, instead of a second later, unless
/// [`PURGE_DELAY_VARIABLE`] is set; whether the node's choice was taken.
///
/// A node's heap grows and shrinks in steps: the log tail and its buffers
/// between snapshots, a snapshot's encoding, recovery's records. With the
/// default delay those pages stay resident until allocation work in the
/// same arena gets round to purging them, which a steady load never quite
/// does, so RSS sat 5-10 MiB above the live heap at a million znodes.
/// Purging at once measured 254 MiB steady and 237 MiB after a restart
/// against 257-262 and 240-248, with no throughput or p99 cost in
/// alternating runs (docs/benchmarks.md). Called first thing in `main`.
pub fn purge_freed_pages_promptly() -> bool {
    if std::env::var_os(PURGE_DELAY_VARIABLE).is_some()
        || std::env::var_os("MIMALLOC_RESET_DELAY").is_some()
    {
        return false;
    }
    ffi::set_option(ffi::PURGE_DELAY_OPTION, 0);
    true
}

/// The allocator's purge delay in effect, in milliseconds (`-1`: never).
pub fn purge_delay_ms() -> std::ffi::c_long {
    ffi::option(ffi::PURGE_DELAY_OPTION)
}

/// The variable with which an operator hands the choice of transparent
/// huge pages back to mimalloc (which asks for them by default).
pub const ALLOW_THP_VARIABLE: &str = "MIMALLOC_ALLOW_THP";

/// Turns transparent huge pages off for the whole process, unless
/// [`ALLOW_THP_VARIABLE`] is set; whether they are now off.
///
/// mimalloc asks the kernel for huge pages on its arenas (`MADV_HUGEPAGE`),
/// so a fault anywhere in an arena's 2 MiB region makes the whole region
/// resident and zeroes it. A node's heap is a large tree that grows a
/// little at a time and buffers freed and purged between snapshots: with
/// huge pages, a node holding 1M znodes kept 25-60 MB more resident, spent
/// about 9% of its CPU zeroing pages under a create load, and its p99 was
/// 15-25% higher (docs/benchmarks.md). Called first thing in `main`; the
/// flag is the process's (every thread, and children).
pub fn avoid_transparent_huge_pages() -> std::io::Result<bool> {
    if std::env::var_os(ALLOW_THP_VARIABLE).is_some() {
        return Ok(false);
    }
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_that_is_set() {
        // nextest runs each test in a process of its own, so the option
        // still holds mimalloc's default (1000 ms) or the variable's value:
        // a wrong index would read some other option's default.
        let expected = match std::env::var(PURGE_DELAY_VARIABLE) {
            Ok(value) => value.parse().expect("a number in the variable"),
            Err(_) => 1000,
        };
        if std::env::var_os("MIMALLOC_RESET_DELAY").is_none() {
            assert_eq!(ffi::option(ffi::PURGE_DELAY_OPTION), expected);
        }
        if purge_freed_pages_promptly() {
            assert_eq!(purge_delay_ms(), 0);
        }
    }

    #[test]
    fn huge_pages_end_up_off_for_the_process() {
        // Only when the operator did not hand the choice to mimalloc.
        if std::env::var_os(ALLOW_THP_VARIABLE).is_some() {
            return;
        }
        assert!(avoid_transparent_huge_pages().expect("prctl"));
        assert!(rustix::thread::transparent_huge_pages_are_disabled().expect("prctl"));
    }
}
