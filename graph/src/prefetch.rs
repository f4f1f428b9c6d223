//! Software prefetch: hints that load a cache line before the code reaches it. A hint never
//! faults, whatever the address, and changes no result; off x86-64 it is a no-op.

/// Hints the processor to load the cache line holding `at` into every cache level
/// (`prefetcht0`). Any address will do, in or out of an allocation.
#[inline(always)]
pub(crate) fn address<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults and reads nothing into the program.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Hints the processor to load the cache line holding `value`.
#[inline(always)]
pub(crate) fn line<T>(value: &T) {
    address(value);
}

/// Hints the processor to load the line `bytes` past the end of `items`' elements, where the
/// next pushes will write: a task writes 64 buckets at once, more interleaved streams than
/// the hardware prefetcher follows. Past the allocation the hint is simply wasted.
#[inline(always)]
pub(crate) fn ahead_of<T>(items: &[T], bytes: usize) {
    address(
        items
            .as_ptr()
            .wrapping_add(items.len())
            .cast::<u8>()
            .wrapping_add(bytes),
    );
}
