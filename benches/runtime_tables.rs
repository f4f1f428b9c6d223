//! `lookup_thunk` on a 10,000-entry string thunk table, with 1 and 2 reader threads while a
//! writer merges new thunks (one key every 20 ms), against an `RwLock<FxHashMap>` baseline
//! under the same writer, measured in the same run.
//!
//! Each criterion iteration is one lookup per reader thread, so the reported time is the
//! wall time per lookup of each thread; the table after criterion's report gives lookups/s
//! per thread and in total, and the ratios.
//!
//! Run: `cargo bench --bench runtime_tables`.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use criterion::Criterion;
use crossgraph_runtime_core::format::{
    FixupRef, FixupSignature, Image, ImportCell, ImportSection, ImportSectionFlags,
    ImportSectionType, MethodEntryPoint, MethodRef, MethodSigFlags, StringThunk,
};
use crossgraph_runtime_core::{CodeRef, Loader, StringThunkTable, ThunkRuntime};
use rustc_hash::FxHashMap;

const ENTRIES: usize = 10_000;
const GROUP: &str = "runtime_tables";
/// The writer merges one new thunk this often: 50 merges a second, far more than module
/// loads in a real process. Each merge copies the table (copy-on-write), so a much faster
/// writer takes CPU from the readers on a 2-core machine.
const WRITER_INTERVAL_MS: u64 = 20;

fn key(i: usize) -> String {
    // Thunk keys look like `I` / `M` + a signature string.
    let sigs = [
        "iiip", "vp", "lTlp", "S16Tip", "vS24dp", "VVp", "viaip", "dddp",
    ];
    format!(
        "{}{}{}",
        if i.is_multiple_of(2) { 'I' } else { 'M' },
        sigs[i % sigs.len()],
        i
    )
}

trait Table: Sync + Send + 'static {
    fn lookup(&self, key: &str) -> Option<CodeRef>;
    fn insert(&self, key: &str, code: CodeRef);
}

impl Table for StringThunkTable {
    fn lookup(&self, key: &str) -> Option<CodeRef> {
        self.lookup_thunk(key)
    }
    fn insert(&self, key: &str, code: CodeRef) {
        self.merge([(key, code)]);
    }
}

/// The baseline: one map behind a reader-writer lock.
#[derive(Default)]
struct Locked(RwLock<FxHashMap<Box<str>, CodeRef>>);

impl Table for Locked {
    fn lookup(&self, key: &str) -> Option<CodeRef> {
        self.0.read().expect("poisoned").get(key).copied()
    }
    fn insert(&self, key: &str, code: CodeRef) {
        self.0
            .write()
            .expect("poisoned")
            .entry(key.into())
            .or_insert(code);
    }
}

/// A writer merging one new key every [`WRITER_INTERVAL_MS`] until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<usize>>,
}

impl Writer {
    fn start<T: Table>(table: Arc<T>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let mut n = 0;
            while !flag.load(Ordering::Relaxed) {
                table.insert(&format!("Mwriter{n}p"), CodeRef(n as u32));
                n += 1;
                thread::sleep(Duration::from_millis(WRITER_INTERVAL_MS));
            }
            n
        });
        Writer {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Wall time of `iters` lookups on each of `threads` reader threads.
fn run<T: Table>(table: &Arc<T>, keys: &Arc<Vec<String>>, threads: usize, iters: u64) -> Duration {
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (table, keys, start) = (table.clone(), keys.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let mut i = t * 7919;
                let mut hits = 0u64;
                for _ in 0..iters {
                    i = (i + 104_729) % keys.len();
                    hits += u64::from(table.lookup(&keys[i]).is_some());
                }
                black_box(hits)
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    for h in handles {
        assert_eq!(h.join().expect("reader"), iters, "every lookup hits");
    }
    began.elapsed()
}

/// An image of about 10 MB: 20,000 string thunks in an eager cell, 100,000 lazy
/// MethodEntry cells and 100,000 methods with two fixups each.
fn big_image() -> Vec<u8> {
    let thunks = (0..20_000)
        .map(|i| StringThunk {
            key: format!("M{}_{i:06}", "iiiiiiiiiiiiiiiip"),
            code: i,
        })
        .collect::<Vec<_>>(); // zero-padded: already sorted by key
    let method = |token| MethodRef {
        flags: MethodSigFlags::NONE,
        token,
    };
    let image = Image {
        import_sections: vec![
            ImportSection {
                flags: ImportSectionFlags::EAGER,
                kind: ImportSectionType::UNKNOWN,
                entry_size: 4,
                cells: vec![ImportCell {
                    initial: 0,
                    signature: FixupSignature::InjectStringThunks(thunks),
                }],
            },
            ImportSection {
                flags: ImportSectionFlags::NONE,
                kind: ImportSectionType::UNKNOWN,
                entry_size: 4,
                cells: (0..100_000)
                    .map(|i| ImportCell {
                        initial: i,
                        signature: FixupSignature::MethodEntry(method(0x0600_0000 + i)),
                    })
                    .collect(),
            },
        ],
        method_entry_points: (0..100_000u32)
            .map(|i| MethodEntryPoint {
                method: method(0x0600_0000 + i),
                code: i,
                fixups: vec![
                    FixupRef {
                        section: 1,
                        cell: i,
                    },
                    FixupRef {
                        section: 1,
                        cell: (i * 7) % 100_000,
                    },
                ],
            })
            .collect(),
        ..Image::default()
    };
    image.encode().expect("bench image encodes")
}

fn median_ns(id: &str) -> Option<f64> {
    common::median_ns(GROUP, id)
}

fn main() {
    let keys: Arc<Vec<String>> = Arc::new((0..ENTRIES).map(key).collect());
    let crossgraph = Arc::new(StringThunkTable::default());
    crossgraph.merge(
        keys.iter()
            .enumerate()
            .map(|(i, k)| (k.as_str(), CodeRef(i as u32))),
    );
    let locked = Arc::new(Locked::default());
    for (i, k) in keys.iter().enumerate() {
        locked.insert(k, CodeRef(i as u32));
    }

    let mut criterion = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group(GROUP);
        for threads in [1, 2] {
            let _writer = Writer::start(crossgraph.clone());
            group.bench_function(format!("crossgraph lookup_thunk {threads} readers"), |b| {
                b.iter_custom(|iters| run(&crossgraph, &keys, threads, iters))
            });
            drop(_writer);
            let _writer = Writer::start(locked.clone());
            group.bench_function(format!("RwLock FxHashMap {threads} readers"), |b| {
                b.iter_custom(|iters| run(&locked, &keys, threads, iters))
            });
        }
        group.finish();
    }
    let image = big_image();
    {
        let mut group = criterion.benchmark_group(GROUP);
        group.bench_function("load_image", |b| {
            b.iter(|| {
                let loader = Loader::new(ThunkRuntime::default());
                black_box(loader.load_image(&image, 0).expect("loads"))
            })
        });
        group.finish();
    }
    criterion.final_summary();

    let ns = |name: &str| median_ns(name);
    let rows = [
        ("crossgraph lookup_thunk 1 readers", 1.0),
        ("crossgraph lookup_thunk 2 readers", 2.0),
        ("RwLock FxHashMap 1 readers", 1.0),
        ("RwLock FxHashMap 2 readers", 2.0),
    ];
    println!();
    println!(
        "runtime_tables: {ENTRIES}-entry table, a writer merging one key every {WRITER_INTERVAL_MS} ms"
    );
    println!();
    println!("| run | ns per lookup per thread | M lookups/s per thread | M lookups/s total |");
    println!("|---|---:|---:|---:|");
    for (name, threads) in rows {
        if let Some(t) = ns(name) {
            println!(
                "| {name} | {t:.1} | {:.1} | {:.1} |",
                1e3 / t,
                threads * 1e3 / t
            );
        }
    }
    if let Some(t) = ns("load_image") {
        println!(
            "| load_image ({:.1} MB image, eager fixups) | {:.1} ms | {:.0} MB/s | |",
            image.len() as f64 / 1e6,
            t / 1e6,
            image.len() as f64 / 1e6 / (t / 1e9)
        );
    }
    if let (Some(c1), Some(c2), Some(l2)) = (
        ns("crossgraph lookup_thunk 1 readers"),
        ns("crossgraph lookup_thunk 2 readers"),
        ns("RwLock FxHashMap 2 readers"),
    ) {
        println!();
        println!(
            "Scaling 1 -> 2 readers: {:.2}x total throughput; 2 readers vs RwLock: {:.2}x.",
            2.0 * c1 / c2,
            l2 / c2
        );
    }
}
