//! The string thunk table, pending resolution and resumption stubs under concurrency (stress
//! tests with fixed iteration counts).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use crossgraph_runtime_core::{CodeRef, PortableEntryPoint, StringThunkTable, ThunkRuntime};

const WRITERS: usize = 4;
const READERS: usize = 3;
const KEYS: usize = 2_000;

/// Writer `w` provides keys `w*KEYS/2 .. w*KEYS/2 + KEYS` (each overlaps the next writer's
/// by half) in batches, with code `w * 1_000_000 + key`.
fn batches(w: usize) -> Vec<Vec<(String, CodeRef)>> {
    let keys: Vec<(String, CodeRef)> = (w * KEYS / 2..w * KEYS / 2 + KEYS)
        .map(|k| (format!("Mkey{k}p"), CodeRef((w * 1_000_000 + k) as u32)))
        .collect();
    keys.chunks(97).map(<[_]>::to_vec).collect()
}

#[test]
fn merges_lose_nothing_first_wins_and_readers_see_stable_values() {
    let table = Arc::new(StringThunkTable::new([(
        "Mstartupp".to_string(),
        CodeRef(7),
    )]));
    let start = Arc::new(Barrier::new(WRITERS + READERS));
    let done = Arc::new(AtomicBool::new(false));
    let all_keys: Vec<String> = (0..WRITERS * KEYS / 2 + KEYS / 2)
        .map(|k| format!("Mkey{k}p"))
        .collect();
    let all_keys = Arc::new(all_keys);

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (table, start) = (table.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let mut added = Vec::new();
                for batch in batches(w) {
                    let outcome = table.merge(batch.iter().map(|(k, c)| (k.as_str(), *c)));
                    assert_eq!(outcome.added.len() + outcome.kept, batch.len());
                    added.extend(outcome.added);
                }
                added
            })
        })
        .collect();
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (table, start, done, keys) =
                (table.clone(), start.clone(), done.clone(), all_keys.clone());
            thread::spawn(move || {
                start.wait();
                // Once a key is visible, its value never changes (first wins, no torn reads).
                let mut seen: HashMap<usize, CodeRef> = HashMap::new();
                let mut rounds = 0;
                while !done.load(Ordering::Acquire) || rounds < 3 {
                    for (i, key) in keys.iter().enumerate().skip(r).step_by(READERS) {
                        if let Some(code) = table.lookup_thunk(key) {
                            let first = *seen.entry(i).or_insert(code);
                            assert_eq!(first, code, "{key} changed");
                            // The value comes from a writer that provides the key.
                            let writer = code.0 as usize / 1_000_000;
                            assert_eq!(code.0 as usize % 1_000_000, i);
                            assert!(i >= writer * KEYS / 2 && i < writer * KEYS / 2 + KEYS);
                        }
                    }
                    assert_eq!(table.lookup_thunk("Mstartupp"), Some(CodeRef(7)));
                    rounds += 1;
                }
                seen
            })
        })
        .collect();

    let added: Vec<Vec<String>> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    done.store(true, Ordering::Release);
    let seen: Vec<HashMap<usize, CodeRef>> =
        readers.into_iter().map(|h| h.join().unwrap()).collect();

    // No lost entries: every key of every writer is present, added by exactly one writer,
    // and its value is that writer's.
    assert_eq!(table.injected_len(), all_keys.len());
    let mut winner: HashMap<&str, usize> = HashMap::new();
    for (w, keys) in added.iter().enumerate() {
        for key in keys {
            assert!(winner.insert(key, w).is_none(), "{key} added twice");
        }
    }
    assert_eq!(winner.len(), all_keys.len());
    for (i, key) in all_keys.iter().enumerate() {
        let code = table.lookup_thunk(key).unwrap();
        assert_eq!(code.0 as usize / 1_000_000, winner[key.as_str()]);
        for s in &seen {
            if let Some(&c) = s.get(&i) {
                assert_eq!(c, code, "a reader saw a value that did not stay");
            }
        }
    }
}

#[test]
fn startup_thunks_shadow_injected_ones() {
    let table = StringThunkTable::new([("Iip".to_string(), CodeRef(1))]);
    let outcome = table.merge([("Iip", CodeRef(2)), ("Mip", CodeRef(3))]);
    assert_eq!(outcome.added, vec!["Mip".to_string()]);
    assert_eq!(outcome.kept, 1);
    assert_eq!(table.lookup_thunk("Iip"), Some(CodeRef(1)));
    assert_eq!(table.lookup_thunk("Mip"), Some(CodeRef(3)));
    // A second module providing the same key does not replace it.
    table.merge([("Mip", CodeRef(4))]);
    assert_eq!(table.lookup_thunk("Mip"), Some(CodeRef(3)));
}

#[test]
fn pending_resolution_loses_no_entry_point() {
    const ENTRIES: usize = 3_000;
    for round in 0..4 {
        let runtime = Arc::new(ThunkRuntime::default());
        let allocator = Arc::new(runtime.loader_allocator(false));
        let entries: Arc<Vec<Arc<PortableEntryPoint>>> = Arc::new(
            (0..ENTRIES)
                .map(|i| {
                    Arc::new(PortableEntryPoint::new(
                        &format!("Msig{}p", i % 50),
                        Some(CodeRef(i as u32)),
                        None,
                    ))
                })
                .collect(),
        );
        let start = Arc::new(Barrier::new(3));
        let initialisers: Vec<_> = (0..2)
            .map(|t| {
                let (runtime, allocator, entries, start) = (
                    runtime.clone(),
                    allocator.clone(),
                    entries.clone(),
                    start.clone(),
                );
                thread::spawn(move || {
                    start.wait();
                    // Both threads initialise every entry point (in different orders): an
                    // entry point must not be queued twice.
                    let order: Vec<usize> = if t == 0 {
                        (0..ENTRIES).collect()
                    } else {
                        (0..ENTRIES).rev().collect()
                    };
                    for i in order {
                        runtime.init_entry_point(&entries[i], &allocator);
                    }
                })
            })
            .collect();
        let merger = {
            let (runtime, start) = (runtime.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for s in (0..50).rev() {
                    let key = format!("Msig{s}p");
                    runtime.merge_thunks([(key.as_str(), CodeRef(10_000 + s))]);
                }
            })
        };
        for h in initialisers {
            h.join().unwrap();
        }
        merger.join().unwrap();
        for (i, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.interpreter_thunk(),
                Some(CodeRef(10_000 + (i % 50) as u32)),
                "round {round}: entry {i} lost"
            );
        }
        assert_eq!(allocator.pending_count(), 0);
    }
}

#[test]
fn a_thunk_once_set_is_never_replaced_and_pending_is_unique() {
    let runtime = ThunkRuntime::default();
    let allocator = runtime.loader_allocator(true);
    let entry = Arc::new(PortableEntryPoint::new("Mvp", Some(CodeRef(1)), None));
    assert_eq!(runtime.init_entry_point(&entry, &allocator), None);
    assert_eq!(runtime.init_entry_point(&entry, &allocator), None);
    assert_eq!(allocator.pending_count(), 1, "added twice");
    assert_eq!(entry.set_interpreter_thunk(CodeRef(5)), CodeRef(5));
    runtime.merge_thunks([("Mvp", CodeRef(6))]);
    assert_eq!(entry.interpreter_thunk(), Some(CodeRef(5)));
    assert_eq!(allocator.pending_count(), 0);
    // Interpreted-only methods need no thunk and never wait.
    let interpreted = Arc::new(PortableEntryPoint::new("Mvp", None, Some(3)));
    assert_eq!(runtime.init_entry_point(&interpreted, &allocator), None);
    assert_eq!(allocator.pending_count(), 0);
}

#[test]
fn a_destroyed_collectible_allocator_unregisters_its_pending_list() {
    let runtime = ThunkRuntime::default();
    let keep = runtime.loader_allocator(false);
    {
        let collectible = runtime.loader_allocator(true);
        let entry = Arc::new(PortableEntryPoint::new("Mlp", Some(CodeRef(1)), None));
        runtime.init_entry_point(&entry, &collectible);
        assert_eq!(runtime.registered_allocators(), 2);
    }
    assert_eq!(runtime.registered_allocators(), 1);
    runtime.merge_thunks([("Mlp", CodeRef(2))]);
    assert_eq!(keep.pending_count(), 0);
}

#[test]
fn resumption_stub_registers_once_when_threads_race() {
    const THREADS: usize = 8;
    for _ in 0..200 {
        let entry = Arc::new(PortableEntryPoint::new("Mvp", Some(CodeRef(1)), None));
        let start = Arc::new(Barrier::new(THREADS));
        let winners: Vec<_> = (0..THREADS)
            .map(|t| {
                let (entry, start) = (entry.clone(), start.clone());
                thread::spawn(move || {
                    start.wait();
                    entry.register_resumption_stub(CodeRef(100 + t as u32))
                })
            })
            .collect();
        let records: Vec<_> = winners.into_iter().map(|h| h.join().unwrap()).collect();
        let stored = entry.resumption_stub().unwrap();
        // Everyone got the one record; the losers' records were released: only the
        // stored record (plus the handles we hold) keeps it alive.
        assert!(records.iter().all(|r| Arc::ptr_eq(r, &stored)));
        assert_eq!(Arc::strong_count(&stored), THREADS + 2);
    }
}
