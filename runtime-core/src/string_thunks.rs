//! The process-wide string -> thunk table (ReadyToRun `InjectStringThunks`, fixup kind 0x39).
//!
//! Readers never take a lock: [`StringThunkTable::lookup_thunk`] loads the current table
//! snapshot through an [`ArcSwap`] (lock-free) and probes it. A writer copies the current
//! table, adds only the keys not yet present (the first module to provide a key wins),
//! publishes the copy with compare-and-swap and retries on conflict ([`ArcSwap::rcu`]). A
//! snapshot is immutable and reference-counted, so readers in flight keep the old table alive
//! and can never see a half-updated one. Thunks built into the runtime at startup take
//! precedence over injected ones: they seed the first snapshot, and first-wins keeps them, so
//! a lookup probes one map (keys are `Arc<str>`, so a writer's copy shares them).

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;

/// A thunk's code: an absolute index in the process-wide funcref table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CodeRef(pub u32);

/// One immutable table snapshot.
type Snapshot = FxHashMap<Arc<str>, CodeRef>;

/// What a merge did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Keys this merge added (it was the first to provide them).
    pub added: Vec<String>,
    /// Keys already present (from startup or an earlier module), left unchanged.
    pub kept: usize,
    /// Compare-and-swap attempts that lost to another writer and were retried.
    pub retries: usize,
}

/// The string -> thunk table.
#[derive(Debug)]
pub struct StringThunkTable {
    startup: usize,
    table: ArcSwap<Snapshot>,
}

impl Default for StringThunkTable {
    fn default() -> Self {
        StringThunkTable::new(std::iter::empty())
    }
}

impl StringThunkTable {
    /// A table with the runtime's startup thunks.
    pub fn new(startup: impl IntoIterator<Item = (String, CodeRef)>) -> Self {
        let mut first = Snapshot::default();
        for (key, code) in startup {
            first.entry(key.into()).or_insert(code);
        }
        StringThunkTable {
            startup: first.len(),
            table: ArcSwap::from_pointee(first),
        }
    }

    /// The thunk for `key` (`I...` or `M...`): startup thunks first, then injected ones.
    /// Lock-free.
    pub fn lookup_thunk(&self, key: &str) -> Option<CodeRef> {
        self.table.load().get(key).copied()
    }

    /// Merges a module's thunks: keys not present yet are added; present ones keep their
    /// first provider. Publishes one new snapshot (retrying if another writer won the race).
    pub fn merge<'a>(&self, thunks: impl IntoIterator<Item = (&'a str, CodeRef)>) -> MergeOutcome {
        let thunks: Vec<(&str, CodeRef)> = thunks.into_iter().collect();
        let mut attempts = 0usize;
        let mut added = Vec::new();
        let mut kept = 0;
        self.table.rcu(|current| {
            attempts += 1;
            added.clear();
            kept = 0;
            let missing: Vec<&(&str, CodeRef)> = thunks
                .iter()
                .filter(|(k, _)| !current.contains_key(*k))
                .collect();
            if missing.is_empty() {
                kept = thunks.len();
                return Arc::clone(current);
            }
            let mut next = Snapshot::clone(current);
            next.reserve(missing.len());
            for &&(key, code) in &missing {
                if next.insert(key.into(), code).is_none() {
                    added.push(key.to_string());
                }
            }
            kept = thunks.len() - added.len();
            Arc::new(next)
        });
        MergeOutcome {
            added,
            kept,
            retries: attempts.saturating_sub(1),
        }
    }

    /// Number of injected thunks (startup thunks not counted).
    pub fn injected_len(&self) -> usize {
        self.table.load().len() - self.startup
    }
}
