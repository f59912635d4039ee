//! The memory a Bot worker's QuickJS runtime lives in, and its snapshot.
//!
//! Every allocation QuickJS makes goes through [`RegionAllocator`] into one reserved region of
//! address space, and the allocator keeps its own state (the bump offset and the free lists)
//! at the region's start. Once the template context is built (intrinsics, host bridge,
//! prelude), [`Region::snapshot`] copies the used part of the region aside; so does
//! [`Region::capture`] once a Bot's module has been read into it (`sandbox.rs`). Before every
//! execution [`Region::restore_image`] copies the image it needs back. The execution finds the
//! runtime bit for bit as it was before the first one: nothing a Bot did survives it, and
//! nothing it allocated has to be freed or collected.
//!
//! That is why a fresh context costs a copy of a few hundred kilobytes instead of building
//! the ECMAScript built-ins again (about 48 µs) and collecting the old context's cycles.
//!
//! What the restore relies on, and how the sandbox keeps it true:
//! - No pointer outside the region refers to memory the execution allocated once it ends:
//!   every rquickjs handle of an execution is dropped inside `Context::with`, before the restore.
//! - Every image was captured from this region, and what points into an image (a module the
//!   sandbox keeps) is used only while the region holds that image.
//! - Nothing in the template owns memory outside the region whose release a Bot could
//!   trigger: the host functions are plain C functions with no Rust data (`bridge.rs`).
//! - One thread uses the region, and the runtime is dropped before the region is unmapped.

#![allow(unsafe_code)]

use std::ptr::{self, NonNull};

/// The bytes in front of every block: its size class.
const BLOCK_HEADER: usize = size_of::<usize>();
/// Blocks up to 8 KiB come in steps of 64 bytes, so the 4 KiB chunks QuickJS carves its
/// small objects from fit with little waste; larger ones in four steps per doubling.
const LINEAR_STEP: usize = 64;
const LINEAR_CLASSES: usize = 128;
const LINEAR_LIMIT: usize = LINEAR_STEP * LINEAR_CLASSES;
const LINEAR_LIMIT_LOG2: u32 = LINEAR_LIMIT.trailing_zeros();
/// Geometric classes up to 2^47 bytes, beyond any region this reserves.
const CLASSES: usize = LINEAR_CLASSES + 4 * (47 - LINEAR_LIMIT_LOG2 as usize);
/// Pages an execution used beyond the template are returned to the system when they exceed
/// this, so one large execution does not keep its memory resident for the worker's lifetime.
const RELEASE_BEYOND: usize = 4 * 1024 * 1024;

/// The size class of a block of `total` bytes (header included), or `None` past the largest.
fn class_of(total: usize) -> Option<usize> {
    if total <= LINEAR_LIMIT {
        return Some(total.max(1).div_ceil(LINEAR_STEP) - 1);
    }
    // 2^power < total <= 2^(power + 1), split in four steps of 2^(power - 2).
    let power = usize::BITS - 1 - (total - 1).leading_zeros();
    let step = 1usize << (power - 2);
    let quarter = (total - (1usize << power)).div_ceil(step);
    let class = LINEAR_CLASSES + 4 * (power - LINEAR_LIMIT_LOG2) as usize + quarter - 1;
    (class < CLASSES).then_some(class)
}

/// The bytes a block of `class` occupies, header included.
fn class_size(class: usize) -> usize {
    if class < LINEAR_CLASSES {
        return (class + 1) * LINEAR_STEP;
    }
    let geometric = class - LINEAR_CLASSES;
    let power = LINEAR_LIMIT_LOG2 as usize + geometric / 4;
    (1usize << power) + (geometric % 4 + 1) * (1usize << (power - 2))
}

/// The allocator's state, at offset 0 of the region. Offsets, not pointers: 0 means none.
#[repr(C)]
struct State {
    /// The first byte no block has used yet.
    top: usize,
    /// The region's size.
    end: usize,
    /// The first free block of each class; each free block holds the next one's offset.
    free: [usize; CLASSES],
}

/// An anonymous mapping reserved for one runtime, with its template image.
pub(crate) struct Region {
    base: NonNull<u8>,
    size: usize,
    /// The used part of the region when the template was complete.
    template: Image,
}

/// A copy of the used part of a [`Region`], which [`Region::restore_image`] puts back.
#[derive(Default)]
pub(crate) struct Image(Vec<u8>);

impl Image {
    /// Its size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("size", &self.size)
            .field("template", &self.template.len())
            .field("used", &self.used())
            .finish()
    }
}

impl Region {
    /// Reserves `size` bytes of address space. Pages take memory only once touched.
    pub(crate) fn reserve(size: usize) -> std::io::Result<Region> {
        let size = size.max(size_of::<State>() + LINEAR_LIMIT);
        // SAFETY: a fresh private anonymous mapping, not aliasing anything; the result is checked.
        let mapped = unsafe {
            libc::mmap(
                ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if mapped == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = NonNull::new(mapped.cast::<u8>()).ok_or_else(std::io::Error::last_os_error)?;
        let region = Region {
            base,
            size,
            template: Image::default(),
        };
        // SAFETY: the mapping is at least size_of::<State>() bytes, page-aligned and zeroed;
        // zero is a valid State (empty free lists), and this is its only reference.
        unsafe {
            let state = &mut *region.state();
            state.top = size_of::<State>().next_multiple_of(LINEAR_STEP);
            state.end = size;
        }
        Ok(region)
    }

    fn state(&self) -> *mut State {
        self.base.as_ptr().cast::<State>()
    }

    /// The allocator to hand to QuickJS. It must not outlive this region.
    pub(crate) fn allocator(&self) -> RegionAllocator {
        RegionAllocator { base: self.base }
    }

    /// Bytes of the region blocks have used so far.
    pub(crate) fn used(&self) -> usize {
        // SAFETY: the state is initialized in `reserve` and only read here.
        unsafe { (*self.state()).top }
    }

    /// Bytes the template image holds (0 before [`Region::snapshot`]).
    pub(crate) fn template_size(&self) -> usize {
        self.template.len()
    }

    /// Takes the current contents as the template every [`Region::restore`] returns to.
    pub(crate) fn snapshot(&mut self) {
        self.template = self.capture();
    }

    /// A copy of the current contents.
    pub(crate) fn capture(&self) -> Image {
        let used = self.used();
        // SAFETY: [base, base + used) lies within the mapping and is initialized: the state,
        // then blocks (never-written bytes of a fresh mapping read as zero).
        Image(unsafe { std::slice::from_raw_parts(self.base.as_ptr(), used) }.to_vec())
    }

    /// Puts the template back (see [`Region::restore_image`]).
    pub(crate) fn restore(&mut self) {
        let template = std::mem::take(&mut self.template);
        self.restore_image(&template);
        self.template = template;
    }

    /// Puts `image` back, and gives the system back what a large execution used beyond it.
    ///
    /// The caller guarantees that `image` was captured from this region, and that no pointer
    /// into memory allocated after it is still in use: this is between executions, with
    /// their every handle dropped.
    pub(crate) fn restore_image(&mut self, image: &Image) {
        if image.0.is_empty() {
            return;
        }
        let used = self.used();
        // SAFETY: the image was copied from the start of this same region, so it fits; the
        // two do not overlap (the image is on the Rust heap).
        unsafe { ptr::copy_nonoverlapping(image.0.as_ptr(), self.base.as_ptr(), image.0.len()) };
        let keep = image.0.len().next_multiple_of(page_size());
        if used > keep + RELEASE_BEYOND {
            let length = used.next_multiple_of(page_size()).min(self.size) - keep;
            // SAFETY: [base + keep, base + keep + length) is page-aligned, inside the mapping,
            // and past the image: nothing live refers to it after the copy above. Private
            // anonymous pages read back as zero.
            unsafe { libc::madvise(self.base.as_ptr().add(keep).cast(), length, libc::MADV_DONTNEED) };
        }
    }

    /// Whether an execution that started from `image` went past it by more than the region
    /// keeps resident between executions.
    pub(crate) fn grew_past(&self, image: &Image) -> bool {
        self.used() > image.0.len().next_multiple_of(page_size()) + RELEASE_BEYOND
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `reserve` with this size; the runtime that used it
        // is gone (the engine drops it first).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.size) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(1)
}

/// QuickJS's `malloc` family over a [`Region`]: size-class free lists over a bump offset.
/// Blocks are 8-byte aligned (QuickJS's own small-object arena aligns to 8).
#[derive(Debug)]
pub(crate) struct RegionAllocator {
    base: NonNull<u8>,
}

impl RegionAllocator {
    fn state(&mut self) -> &mut State {
        // SAFETY: the region outlives the allocator and one thread uses both.
        unsafe { &mut *self.base.as_ptr().cast::<State>() }
    }

    fn allocate(&mut self, size: usize) -> *mut u8 {
        let Some(class) = size.checked_add(BLOCK_HEADER).and_then(class_of) else {
            return ptr::null_mut();
        };
        let base = self.base.as_ptr();
        let state = self.state();
        let offset = match state.free[class] {
            0 => {
                let offset = state.top;
                match offset.checked_add(class_size(class)) {
                    Some(top) if top <= state.end => state.top = top,
                    _ => return ptr::null_mut(),
                }
                offset
            }
            free => {
                // SAFETY: a free block of this class lies at `free`; the first word after its
                // header holds the next free block's offset.
                state.free[class] = unsafe { base.add(free + BLOCK_HEADER).cast::<usize>().read() };
                free
            }
        };
        // SAFETY: [offset, offset + class_size(class)) is inside the region and owned by
        // nobody now; the header records the class for `usable_size` and `dealloc`.
        unsafe {
            let block = base.add(offset);
            block.cast::<usize>().write(class);
            block.add(BLOCK_HEADER)
        }
    }

    /// # Safety
    /// `pointer` was returned by this allocator and not freed since.
    unsafe fn class(pointer: *mut u8) -> usize {
        // SAFETY: per the contract, the header sits right before the pointer.
        unsafe { pointer.sub(BLOCK_HEADER).cast::<usize>().read() }
    }
}

// SAFETY: blocks are at least `size` bytes, 8-byte aligned (the region is page-aligned, every
// class size is a multiple of 64 and the header is 8 bytes), within the region and disjoint;
// `usable_size` reports exactly the block's bytes after the header.
unsafe impl rquickjs::allocator::Allocator for RegionAllocator {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        self.allocate(size)
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        let Some(bytes) = count.checked_mul(size) else {
            return ptr::null_mut();
        };
        let pointer = self.allocate(bytes);
        if !pointer.is_null() {
            // SAFETY: the block just allocated holds at least `bytes` bytes. Its memory may
            // hold an earlier execution's data, so zero it.
            unsafe { ptr::write_bytes(pointer, 0, bytes) };
        }
        pointer
    }

    unsafe fn dealloc(&mut self, pointer: *mut u8) {
        // SAFETY: per the trait's contract the pointer is a live block of this allocator.
        let class = unsafe { Self::class(pointer) };
        let offset = pointer as usize - BLOCK_HEADER - self.base.as_ptr() as usize;
        let next = self.state().free[class];
        // SAFETY: the block is the caller's to give back; its data area holds the next offset.
        unsafe { pointer.cast::<usize>().write(next) };
        self.state().free[class] = offset;
    }

    unsafe fn realloc(&mut self, pointer: *mut u8, new_size: usize) -> *mut u8 {
        if pointer.is_null() {
            return self.allocate(new_size);
        }
        // SAFETY: per the trait's contract the pointer is a live block of this allocator.
        let usable = unsafe { Self::usable_size(pointer) };
        if new_size <= usable {
            return pointer;
        }
        let moved = self.allocate(new_size);
        if !moved.is_null() {
            // SAFETY: both blocks are live and distinct; the old one holds `usable` bytes and
            // the new one more. On failure the old block stays valid, as C's realloc leaves it.
            unsafe {
                ptr::copy_nonoverlapping(pointer, moved, usable);
                self.dealloc(pointer);
            }
        }
        moved
    }

    unsafe fn usable_size(pointer: *mut u8) -> usize {
        // SAFETY: per the trait's contract the pointer is a live block of this allocator.
        class_size(unsafe { Self::class(pointer) }) - BLOCK_HEADER
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rquickjs::allocator::Allocator;

    #[test]
    fn classes_are_the_smallest_that_fit() {
        let mut previous = 0;
        for class in 0..CLASSES {
            let size = class_size(class);
            assert!(size > previous, "class {class} is not larger than the one before");
            assert_eq!(size % LINEAR_STEP, 0, "class {class}");
            assert_eq!(class_of(size), Some(class));
            assert_eq!(class_of(previous + 1), Some(class), "{} bytes", previous + 1);
            previous = size;
        }
        assert_eq!(class_of(previous + 1), None);
        // QuickJS's 4 KiB chunks, with the header, waste under 2%.
        assert_eq!(class_size(class_of(4096 + BLOCK_HEADER).unwrap()), 4160);
        // Past the linear classes, at most a quarter is wasted.
        for total in [LINEAR_LIMIT + 1, 100_000, 1 << 20, (1 << 20) + 1, 3 << 25] {
            let size = class_size(class_of(total).unwrap());
            assert!(size >= total && size - total <= total / 4, "{total} → {size}");
        }
    }

    #[test]
    fn blocks_are_reused_by_class_and_grow_in_place_within_it() {
        let region = Region::reserve(1 << 20).unwrap();
        let mut allocator = region.allocator();
        let first = allocator.alloc(100);
        let second = allocator.alloc(100);
        assert!(!first.is_null() && !second.is_null() && first != second);
        assert_eq!(first as usize % 8, 0);
        unsafe {
            assert_eq!(RegionAllocator::usable_size(first), 128 - BLOCK_HEADER);
            first.write_bytes(0xab, 100);
            allocator.dealloc(first);
        }
        assert_eq!(allocator.alloc(120), first, "a freed block serves its class again");
        let grown = unsafe { allocator.realloc(first, 120) };
        assert_eq!(grown, first, "within the class, realloc keeps the block");
        unsafe { first.write_bytes(0xcd, 120) };
        let moved = unsafe { allocator.realloc(first, 1000) };
        assert_ne!(moved, first);
        assert_eq!(unsafe { moved.read() }, 0xcd, "realloc copies the contents");
        let zeroed = allocator.calloc(10, 12);
        assert_eq!(zeroed, first, "the block realloc gave back is reused");
        assert!(
            unsafe { std::slice::from_raw_parts(zeroed, 120) }
                .iter()
                .all(|&byte| byte == 0)
        );
    }

    #[test]
    fn a_full_region_answers_null_and_keeps_working() {
        let region = Region::reserve(1 << 20).unwrap();
        let mut allocator = region.allocator();
        assert!(allocator.alloc(2 << 20).is_null());
        assert!(allocator.alloc(usize::MAX).is_null());
        assert!(allocator.calloc(usize::MAX, 2).is_null());
        let small = allocator.alloc(16);
        assert!(!small.is_null());
        unsafe { small.write(42) };
        assert!(unsafe { allocator.realloc(small, 4 << 20) }.is_null());
        assert_eq!(
            unsafe { small.read() },
            42,
            "a failed realloc leaves the block as it was"
        );
    }

    #[test]
    fn restore_returns_to_the_snapshot() {
        let mut region = Region::reserve(64 << 20).unwrap();
        let mut allocator = region.allocator();
        let kept = allocator.alloc(200);
        unsafe { kept.write_bytes(7, 200) };
        let freed = allocator.alloc(3000);
        unsafe { allocator.dealloc(freed) };
        region.snapshot();
        let template_used = region.used();
        assert_eq!(region.template_size(), template_used);

        unsafe { kept.write_bytes(9, 200) };
        assert_eq!(allocator.alloc(3000), freed);
        let large = allocator.alloc(16 << 20);
        unsafe { large.write_bytes(1, 16 << 20) };
        assert!(region.used() > template_used + (16 << 20));
        region.restore();

        assert_eq!(region.used(), template_used);
        assert_eq!(unsafe { std::slice::from_raw_parts(kept, 200) }, &[7; 200][..]);
        assert_eq!(allocator.alloc(3000), freed, "the free lists are the template's again");
        let again = allocator.alloc(16 << 20);
        assert_eq!(again, large, "the bump offset is the template's again");
        // The block's first bytes share the template's last page, which is kept.
        assert_eq!(
            unsafe { again.add(2 * page_size()).read() },
            0,
            "released pages come back zeroed"
        );
    }
}
