//! The allocator settings of the `crossgraph` binary and the compile bench, which run on
//! mimalloc (the compile allocates many small objects on every worker thread).
//!
//! By default mimalloc (v3) hands freed memory back to the OS a second after it is freed (it
//! "purges" it with `madvise`), and a later allocation faults the pages in again, zeroed by
//! the kernel; on transparent huge pages each such fault zeroes 2 MiB and may first compact
//! memory. A process that compiles more than once (several inputs on one command line, a
//! compiler linking the crates, the compile bench) frees a compile's memory and asks for it
//! again in the next, so the binary keeps what it frees: it reaches its peak footprint
//! anyway. Measured on repeated mscorlib compiles: the kernel's share of the CPU time fell
//! from ~8% to ~1.3%. A single compile, shorter than the purge delay, is unaffected.

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_t` (`mimalloc.h`; the
/// `libmimalloc-sys` constants stop before it). Its default is 1000 (ms, `options.c`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Makes mimalloc keep the memory this process frees instead of returning it to the OS
/// (purge delay -1). Call it first thing in `main`; it affects only this process, and only
/// when mimalloc is the global allocator.
pub fn keep_freed_memory() {
    // SAFETY: sets one of mimalloc's global options, an atomic store; any thread may call it
    // at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads a global option.
        let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        // mimalloc v3's default purge delay: if this fails, the enum moved.
        assert_eq!(get(), 1000);
        keep_freed_memory();
        assert_eq!(get(), -1);
    }
}
