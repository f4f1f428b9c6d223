//! Portable entry points, pending thunk resolution per loader allocator, and resumption-stub
//! registration (CoreCLR's wasm `PortableEntryPoint` and its pending list).
//!
//! An entry point holds the method's R2R code (if any), its interpreter bytecode (if any) and
//! an interpreter thunk slot that is set at most once, by compare-and-swap, and never
//! replaced. When an entry point is initialised before any loaded module provides its thunk,
//! it goes on its loader allocator's pending list (once); every merge of new string thunks
//! resolves pending entry points. The two sides are ordered so none is lost: an entry point
//! is added to the pending list *before* it looks the table up a second time, and a merge
//! publishes the table *before* it scans the pending lists.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwapOption;

use crate::string_thunks::{CodeRef, MergeOutcome, StringThunkTable};

const NONE: u32 = u32::MAX;

/// A method's portable entry point.
#[derive(Debug)]
pub struct PortableEntryPoint {
    /// The key of the thunk the interpreter needs to call this method's R2R code
    /// (`M` + signature string).
    thunk_key: Box<str>,
    /// R2R code (absolute table index), or `NONE`.
    r2r_code: u32,
    /// Interpreter bytecode handle, or `NONE`.
    bytecode: u32,
    /// Interpreter -> R2R thunk, set at most once.
    interpreter_thunk: AtomicU32,
    /// On a pending list already.
    pending: AtomicBool,
    /// The async resumption stub record, registered once.
    resumption_stub: ArcSwapOption<ResumptionStub>,
}

/// A registered async resumption stub (found through a `ResumptionStubEntryPoint` fixup).
#[derive(Debug, PartialEq, Eq)]
pub struct ResumptionStub {
    /// The stub's code.
    pub code: CodeRef,
}

impl PortableEntryPoint {
    /// An entry point for a method whose interpreter -> R2R thunk has key `thunk_key`, with
    /// R2R code and/or interpreter bytecode.
    pub fn new(thunk_key: &str, r2r_code: Option<CodeRef>, bytecode: Option<u32>) -> Self {
        PortableEntryPoint {
            thunk_key: thunk_key.into(),
            r2r_code: r2r_code.map_or(NONE, |c| c.0),
            bytecode: bytecode.unwrap_or(NONE),
            interpreter_thunk: AtomicU32::new(NONE),
            pending: AtomicBool::new(false),
            resumption_stub: ArcSwapOption::empty(),
        }
    }

    /// The thunk key.
    pub fn thunk_key(&self) -> &str {
        &self.thunk_key
    }

    /// The R2R code, if the method has any.
    pub fn r2r_code(&self) -> Option<CodeRef> {
        (self.r2r_code != NONE).then_some(CodeRef(self.r2r_code))
    }

    /// The interpreter bytecode handle, if any.
    pub fn bytecode(&self) -> Option<u32> {
        (self.bytecode != NONE).then_some(self.bytecode)
    }

    /// The interpreter -> R2R thunk, once set.
    pub fn interpreter_thunk(&self) -> Option<CodeRef> {
        let t = self.interpreter_thunk.load(Ordering::Acquire);
        (t != NONE).then_some(CodeRef(t))
    }

    /// Sets the thunk unless one is set; returns the thunk in place afterwards (never
    /// replaced).
    pub fn set_interpreter_thunk(&self, thunk: CodeRef) -> CodeRef {
        match self.interpreter_thunk.compare_exchange(
            NONE,
            thunk.0,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => thunk,
            Err(existing) => CodeRef(existing),
        }
    }

    /// Registers the resumption stub once, even when threads race: the first record wins,
    /// a loser's record is dropped (released) and the winner's returned.
    pub fn register_resumption_stub(&self, code: CodeRef) -> Arc<ResumptionStub> {
        let mine = Arc::new(ResumptionStub { code });
        let previous = self
            .resumption_stub
            .compare_and_swap(&None::<Arc<ResumptionStub>>, Some(Arc::clone(&mine)));
        match &*previous {
            None => mine,
            Some(winner) => Arc::clone(winner),
        }
    }

    /// The registered resumption stub.
    pub fn resumption_stub(&self) -> Option<Arc<ResumptionStub>> {
        self.resumption_stub.load_full()
    }
}

/// Entry points waiting for a thunk.
type PendingList = Mutex<Vec<Arc<PortableEntryPoint>>>;

/// A loader allocator: owns the pending list of its entry points. A collectible allocator
/// unregisters its list when dropped.
#[derive(Debug)]
pub struct LoaderAllocator {
    pending: Arc<PendingList>,
    registry: Weak<Registry>,
    collectible: bool,
}

impl LoaderAllocator {
    /// Entry points on this allocator's pending list.
    pub fn pending_count(&self) -> usize {
        self.pending.lock().expect("pending list poisoned").len()
    }

    /// Whether the allocator is collectible.
    pub fn is_collectible(&self) -> bool {
        self.collectible
    }
}

impl Drop for LoaderAllocator {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.unregister(&self.pending);
        }
    }
}

#[derive(Debug, Default)]
struct Registry {
    lists: Mutex<Vec<Arc<PendingList>>>,
}

impl Registry {
    fn unregister(&self, list: &Arc<PendingList>) {
        self.lists
            .lock()
            .expect("registry poisoned")
            .retain(|l| !Arc::ptr_eq(l, list));
    }
}

/// The runtime's thunk state: the string thunk table plus the registry of pending lists.
#[derive(Debug, Default)]
pub struct ThunkRuntime {
    table: StringThunkTable,
    registry: Arc<Registry>,
}

impl ThunkRuntime {
    /// A runtime with these startup thunks.
    pub fn new(startup: impl IntoIterator<Item = (String, CodeRef)>) -> Self {
        ThunkRuntime {
            table: StringThunkTable::new(startup),
            registry: Arc::default(),
        }
    }

    /// The string thunk table.
    pub fn table(&self) -> &StringThunkTable {
        &self.table
    }

    /// A new loader allocator, registered with the runtime.
    pub fn loader_allocator(&self, collectible: bool) -> LoaderAllocator {
        let pending = Arc::new(PendingList::default());
        self.registry
            .lists
            .lock()
            .expect("registry poisoned")
            .push(Arc::clone(&pending));
        LoaderAllocator {
            pending,
            registry: Arc::downgrade(&self.registry),
            collectible,
        }
    }

    /// Number of registered pending lists.
    pub fn registered_allocators(&self) -> usize {
        self.registry.lists.lock().expect("registry poisoned").len()
    }

    /// Initialises an entry point: sets its interpreter thunk if a module provides it, else
    /// puts it on `allocator`'s pending list (once). Returns the thunk if set.
    pub fn init_entry_point(
        &self,
        entry: &Arc<PortableEntryPoint>,
        allocator: &LoaderAllocator,
    ) -> Option<CodeRef> {
        // Interpreted-only methods have nothing to bridge.
        entry.r2r_code()?;
        if let Some(thunk) = self.table.lookup_thunk(entry.thunk_key()) {
            return Some(entry.set_interpreter_thunk(thunk));
        }
        if !entry.pending.swap(true, Ordering::AcqRel) {
            allocator
                .pending
                .lock()
                .expect("pending list poisoned")
                .push(Arc::clone(entry));
        }
        // A merge may have published the thunk between the lookup and the push (and scanned
        // the list before the push): resolve here, and take the entry off the list again.
        let thunk = self.table.lookup_thunk(entry.thunk_key())?;
        let thunk = entry.set_interpreter_thunk(thunk);
        allocator
            .pending
            .lock()
            .expect("pending list poisoned")
            .retain(|e| !Arc::ptr_eq(e, entry));
        Some(thunk)
    }

    /// Merges a module's string thunks, then resolves every pending entry point whose thunk
    /// is now available.
    pub fn merge_thunks<'a>(
        &self,
        thunks: impl IntoIterator<Item = (&'a str, CodeRef)>,
    ) -> MergeOutcome {
        let outcome = self.table.merge(thunks);
        let lists: Vec<Arc<PendingList>> = self
            .registry
            .lists
            .lock()
            .expect("registry poisoned")
            .clone();
        for list in lists {
            let mut list = list.lock().expect("pending list poisoned");
            list.retain(|entry| match self.table.lookup_thunk(entry.thunk_key()) {
                Some(thunk) => {
                    entry.set_interpreter_thunk(thunk);
                    false
                }
                None => true,
            });
        }
        outcome
    }
}
