//! Giving memory the process has freed back to the operating system.
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
