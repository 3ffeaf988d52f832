//! A global allocator that makes allocation bombs in malformed requests harmless.
//!
//! The wire codec (`kafka-protocol`) reserves `Vec::with_capacity(n)` for an array before it
//! decodes a single element, with `n` taken from the request: a 16-byte Metadata request
//! claiming 2^31 topics asked for 154 GB, the allocation failed, and the process aborted.
//! Bounds checks inside the codec are out of our hands, so this allocator serves very large
//! requests with `mmap(MAP_NORESERVE)`: address space is reserved but no memory is
//! committed until touched. The decode then fails at the first missing element, the vector
//! is dropped and the range unmapped, having cost nothing. Genuine large buffers work the
//! same way, paying for the pages they use.
//!
//! Everything below `HUGE_BYTES` goes to the system allocator untouched.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are reserved lazily. Far above any buffer the broker
/// needs (frames are capped at `socket.request.max.bytes`, 100 MiB by default).
const HUGE_BYTES: usize = 1 << 30;
/// mmap returns page-aligned memory; larger alignments go to the system allocator.
const PAGE_BYTES: usize = 4096;

pub struct BombProofAllocator;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_BYTES && layout.align() <= PAGE_BYTES
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        ptr as *mut u8
    }
}

// SAFETY: every pointer handed out is valid for its layout (system allocator, or a fresh
// page-aligned anonymous mapping of at least `layout.size()` bytes, zero-filled by the
// kernel), and each is released by the same mechanism that produced it, chosen by the same
// `is_huge` test on the same layout.
unsafe impl GlobalAlloc for BombProofAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            unsafe {
                libc::munmap(ptr as *mut libc::c_void, layout.size());
            }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new_ptr = unsafe { self.alloc(new_layout) };
        if !new_ptr.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new_ptr
    }
}

#[global_allocator]
static ALLOCATOR: BombProofAllocator = BombProofAllocator;

#[cfg(test)]
mod tests {
    #[test]
    fn a_huge_reservation_costs_nothing_until_touched() {
        // 64 GiB: more than this machine has; would abort with the plain system allocator.
        let mut v: Vec<u64> = Vec::with_capacity(8 << 30);
        v.push(7);
        v.extend([1, 2, 3]);
        assert_eq!(v.iter().sum::<u64>(), 13);
        let grown: Vec<u8> = vec![0; 1 << 20];
        assert_eq!(grown.len(), 1 << 20);
    }
}
