//! The guest's allocator: a bump arena in front of dlmalloc.
//!
//! The host makes a fresh instance for every event and drops it afterwards (the sandbox's
//! rule), so nothing a plugin allocates has to be given back before its instance ends. A
//! bump allocator over a static arena serves a typical event without ever growing linear
//! memory — and growing it was the largest cost of an invocation on the host: wasmtime makes
//! the new pages accessible with an `mprotect` (a TLB flush on every core), and inaccessible
//! again when the next instance starts in that slot at its initial size. The arena sits in
//! zero-initialised memory, so it adds nothing to the component's data, and the host resets
//! only the pages an instance touched. What the arena cannot hold (a very large event) comes
//! from the fallback allocator, which grows memory as before.

use core::{
    alloc::{GlobalAlloc, Layout},
    cell::UnsafeCell,
    ptr,
};

#[repr(C, align(16))]
struct Bytes<const N: usize>([u8; N]);

pub struct Arena<A, const N: usize> {
    bytes: UnsafeCell<Bytes<N>>,
    /// Offset of the first free byte.
    next: UnsafeCell<usize>,
    fallback: A,
}

// SAFETY: a WebAssembly instance runs on one thread; the arena is never shared across
// threads there. (Natively — the rule tests — arenas are local values, never `static`.)
#[cfg(target_arch = "wasm32")]
unsafe impl<A: Sync, const N: usize> Sync for Arena<A, N> {}

impl<A, const N: usize> Arena<A, N> {
    pub const fn new(fallback: A) -> Self {
        Arena { bytes: UnsafeCell::new(Bytes([0; N])), next: UnsafeCell::new(0), fallback }
    }

    fn base(&self) -> usize {
        self.bytes.get() as usize
    }

    /// The offset of `p` in the arena, if the arena handed it out.
    fn offset(&self, p: *mut u8) -> Option<usize> {
        (p as usize).checked_sub(self.base()).filter(|&o| o < N)
    }

    /// Takes `layout` from the arena, or None when it does not fit.
    unsafe fn bump(&self, layout: Layout) -> Option<*mut u8> {
        let next = unsafe { &mut *self.next.get() };
        let start = (self.base() + *next).next_multiple_of(layout.align()) - self.base();
        let end = start.checked_add(layout.size()).filter(|&end| end <= N)?;
        *next = end;
        Some(unsafe { self.bytes.get().cast::<u8>().add(start) })
    }
}

unsafe impl<A: GlobalAlloc, const N: usize> GlobalAlloc for Arena<A, N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match unsafe { self.bump(layout) } {
            Some(p) => p,
            None => unsafe { self.fallback.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        match self.offset(p) {
            None => unsafe { self.fallback.dealloc(p, layout) },
            Some(offset) => {
                // The latest allocation gives its bytes back (a buffer freed right after use);
                // any other waits for the instance to end.
                let next = unsafe { &mut *self.next.get() };
                if offset + layout.size() == *next {
                    *next = offset;
                }
            }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(offset) = self.offset(p) else {
            return unsafe { self.fallback.realloc(p, layout, new_size) };
        };
        let next = unsafe { &mut *self.next.get() };
        // The latest allocation (a growing Vec or String, usually) grows or shrinks in place.
        if offset + layout.size() == *next && offset + new_size <= N {
            *next = offset + new_size;
            return p;
        }
        if new_size <= layout.size() {
            return p;
        }
        let moved = unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, layout.align())) };
        if !moved.is_null() {
            unsafe { ptr::copy_nonoverlapping(p, moved, layout.size()) };
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn serves_from_the_arena_aligned_and_falls_back_when_full() {
        let arena = Arena::<_, 256>::new(System);
        unsafe {
            let a = arena.alloc(layout(3, 1));
            let b = arena.alloc(layout(8, 8));
            assert!(arena.offset(a).is_some() && arena.offset(b).is_some());
            assert_eq!(b as usize % 8, 0, "aligned");
            assert!(b as usize >= a as usize + 3, "no overlap");
            // 256 bytes cannot fit after those: the fallback serves it, and frees it.
            let big = arena.alloc(layout(256, 8));
            assert!(!big.is_null() && arena.offset(big).is_none());
            big.write_bytes(7, 256);
            arena.dealloc(big, layout(256, 8));
        }
    }

    #[test]
    fn the_latest_allocation_grows_in_place_and_others_move_with_their_bytes() {
        let arena = Arena::<_, 256>::new(System);
        unsafe {
            let a = arena.alloc(layout(16, 1));
            a.write_bytes(1, 16);
            let grown = arena.realloc(a, layout(16, 1), 64);
            assert_eq!(grown, a, "the top allocation grows in place");
            let b = arena.alloc(layout(8, 1));
            let moved = arena.realloc(grown, layout(64, 1), 100);
            assert_ne!(moved, grown, "not the top any more: it moves");
            assert!(moved as usize >= b as usize + 8);
            assert!((0..16).all(|i| *moved.add(i) == 1), "its bytes came along");
            // Past what the arena holds, it moves to the fallback, bytes included.
            let out = arena.realloc(moved, layout(100, 1), 1000);
            assert!(arena.offset(out).is_none() && (0..16).all(|i| *out.add(i) == 1));
            arena.dealloc(out, layout(1000, 1));
        }
    }

    #[test]
    fn freeing_the_latest_allocation_gives_its_bytes_back() {
        let arena = Arena::<_, 64>::new(System);
        unsafe {
            let a = arena.alloc(layout(48, 1));
            arena.dealloc(a, layout(48, 1));
            let b = arena.alloc(layout(48, 1));
            assert_eq!(a, b, "reused");
            let c = arena.alloc(layout(8, 1));
            arena.dealloc(b, layout(48, 1)); // not the latest: stays taken
            let d = arena.alloc(layout(16, 1));
            assert!(arena.offset(c).is_some() && arena.offset(d).is_none(), "48 + 8 + 16 > 64");
            arena.dealloc(d, layout(16, 1));
        }
    }
}
