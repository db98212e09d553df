//! Giving memory the process has freed back to the operating system, and
//! keeping transparent huge pages out of the node's heap.
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

/// The one call into mimalloc's C API that its Rust crate does not wrap.
#[allow(unsafe_code, reason = "a foreign function call, see `release_freed`")]
mod ffi {
    unsafe extern "C" {
        /// Collects the calling thread's heap and, with `force`, purges
        /// every arena's free memory now instead of after its delay.
        pub(super) fn mi_collect(force: bool);
    }

    pub(super) fn collect() {
        // SAFETY: `mi_collect` takes no pointers and may be called from
        // any thread at any time; where mimalloc is not the global
        // allocator it has next to nothing to collect.
        unsafe { mi_collect(true) }
    }
}

/// Returns the memory freed so far to the operating system (see the module
/// documentation); cheap enough after each snapshot, not per request.
pub fn release_freed() {
    ffi::collect();
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
    fn huge_pages_end_up_off_for_the_process() {
        // Only when the operator did not hand the choice to mimalloc.
        if std::env::var_os(ALLOW_THP_VARIABLE).is_some() {
            return;
        }
        assert!(avoid_transparent_huge_pages().expect("prctl"));
        assert!(rustix::thread::transparent_huge_pages_are_disabled().expect("prctl"));
    }
}
