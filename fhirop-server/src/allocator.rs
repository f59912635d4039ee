//! The binaries' global allocator: mimalloc, asked the way C asks it.
//!
//! glibc's malloc pays for every block freed on a thread other than the one that allocated it,
//! and a request's data crosses an HTTP worker, a Bot worker, the AuditEvent writer and
//! SQLite's thread; mimalloc does not. (Callgrind, instructions per request: `$everything`
//! over 500 resources 25% fewer, a search page 12%, a Bot call 4%.)
//!
//! The `mimalloc` crate passes every Rust allocation to `mi_malloc_aligned`, which tests the
//! alignment on each call and takes a slower path for blocks over 1 KiB. Every mimalloc block
//! is aligned to at least a word, so an alignment up to a word needs no test: those go to
//! `mi_malloc`, `mi_zalloc` and `mi_realloc`, the rest to the aligned functions. A W1 request
//! makes 27 allocations; this takes about 700 of its 32,000 instructions off.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every mimalloc block has whatever its size: a machine word.
const WORD: usize = size_of::<usize>();

/// mimalloc as the global allocator:
/// `#[global_allocator] static ALLOCATOR: fhirop_server::allocator::Allocator = Allocator;`
#[derive(Debug, Clone, Copy, Default)]
pub struct Allocator;

// SAFETY: mimalloc's functions return blocks of at least the size asked for, aligned to a word
// (the plain functions) or to the alignment given (the aligned ones), or null; `dealloc` and
// `realloc` get only pointers these returned, which `mi_free` and `mi_realloc*` accept
// whichever function made them.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, pointer: *mut u8, _layout: Layout) {
        // SAFETY: see the impl.
        unsafe { mi::mi_free(pointer.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl; a block moved by `mi_realloc` keeps a word's alignment.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_realloc(pointer.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(pointer.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_have_the_alignment_asked_for_and_keep_their_contents() {
        let allocator = Allocator;
        for (size, align) in [(1, 1), (7, 8), (24, 8), (24, 16), (3000, 8), (100, 64), (5000, 4096)] {
            let layout = Layout::from_size_align(size, align).unwrap();
            unsafe {
                let block = allocator.alloc(layout);
                assert!(!block.is_null());
                assert_eq!(block as usize % align, 0, "{size} bytes aligned to {align}");
                block.write_bytes(0xa5, size);
                let grown = allocator.realloc(block, layout, size * 3);
                assert_eq!(grown as usize % align, 0, "{size} bytes grown, aligned to {align}");
                assert!(std::slice::from_raw_parts(grown, size).iter().all(|&byte| byte == 0xa5));
                allocator.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());
                let zeroed = allocator.alloc_zeroed(layout);
                assert_eq!(zeroed as usize % align, 0);
                assert!(std::slice::from_raw_parts(zeroed, size).iter().all(|&byte| byte == 0));
                allocator.dealloc(zeroed, layout);
            }
        }
    }
}
