//! A counting global allocator: every allocation and reallocation is counted per thread
//! (so a test's count is not disturbed by other threads) and live bytes process-wide
//! (memory per connected peer is the growth of live bytes, which is exact where an RSS
//! slope is not).
//!
//! A `GlobalAlloc` needs `unsafe impl`; the workspace forbids unsafe code, so this crate
//! does not inherit the workspace lints (see its Cargo.toml) and allows it in this module
//! alone. The impl only forwards to `System` and bumps counters.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, Ordering};

/// Counts, then forwards to the system allocator. Install it with
/// `#[global_allocator] static A: sansrtc_bench::alloc::Counting = sansrtc_bench::alloc::Counting;`.
pub struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

thread_local! {
    // Const-initialized and without a destructor, so touching it never allocates.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count(bytes: i64) {
    // `try_with`: a thread that is being torn down may still free memory.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    LIVE.fetch_add(bytes, Ordering::Relaxed);
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counters are plain atomics and a const thread-local.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        // SAFETY: the caller's layout goes to `System` unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` with this layout (we only forward).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as i64 - layout.size() as i64);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations (including reallocations) made by the calling thread so far.
pub fn allocations() -> u64 {
    ALLOCATIONS.try_with(Cell::get).unwrap_or(0)
}

/// Bytes currently allocated by the whole process (through this allocator).
pub fn live_bytes() -> i64 {
    LIVE.load(Ordering::Relaxed)
}
