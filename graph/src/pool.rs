//! Worker pools shared across analyses.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rayon::{ThreadPool, ThreadPoolBuildError, ThreadPoolBuilder};

/// The process's rayon pool of `threads` workers, built on first use and kept for the rest of
/// the process, as rayon keeps its global pool. An analyzer asked for `threads` runs on it
/// (unless it already runs on a pool of that size), and so can a compiler's other parallel
/// phases: repeated analyses (a compiler given several inputs, a benchmark) reuse the workers
/// and the memory their allocator kept, rather than starting threads and faulting fresh memory
/// into them each time.
///
/// # Errors
/// The first build of a pool of this size failed (the OS refused the threads); a later call
/// tries again.
pub fn shared_pool(threads: usize) -> Result<Arc<ThreadPool>, ThreadPoolBuildError> {
    static POOLS: Mutex<BTreeMap<usize, Arc<ThreadPool>>> = Mutex::new(BTreeMap::new());
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pool) = pools.get(&threads) {
        return Ok(pool.clone());
    }
    let pool = Arc::new(ThreadPoolBuilder::new().num_threads(threads).build()?);
    pools.insert(threads, pool.clone());
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pool_per_size_kept_across_calls() {
        let a = shared_pool(3).unwrap();
        let b = shared_pool(3).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.current_num_threads(), 3);
        let c = shared_pool(1).unwrap();
        assert_eq!(c.current_num_threads(), 1);
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
