//! Graph expansion: crossgraph's analyzer against its peers on one synthetic graph.
//!
//! The graph: 1,000,000 node keys, out-degree 3..=9 (mean 6), 10% of edges into a hot 1%
//! subset, 1,000 roots. Dependencies are computed lazily from the key and interned through a
//! key -> id map, the way a node factory works. Peers, measured in the same run:
//!
//! - petgraph `Dfs` over the same graph prebuilt as `petgraph::Graph` and `petgraph::csr::Csr`
//!   (prebuilding is not timed: the peers get the graph for free);
//! - a sequential worklist interning through one `FxHashMap`, then sorting the marked keys
//!   (the shape of crossgen2's `DependencyAnalyzer`), its map and key list sized for the graph
//!   up front;
//! - crossgraph with 1 and 2 threads, under each mark strategy (marking, interning, sorting
//!   and building the log are all timed), given the graph's size as its capacity hint
//!   (`AnalyzerOptions::with_capacity`).
//!
//! After criterion's own report it prints a table of medians, nodes/s, ratios and bytes per
//! marked node (peak RSS growth during one run, via `/proc/self/clear_refs`), then the
//! issue's target ratios again as medians over interleaved rounds (every run once per round,
//! right after an untimed run of itself, as criterion warms up; each ratio taken within a
//! round): criterion measures the runs one after another, so a slow spell of this shared
//! machine lands on some runs and not on others, while a round spans a few seconds. The
//! host's steal time while each part ran is printed too.
//!
//! Run: `cargo bench --bench graph_expansion`.

mod common;

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use crossgraph_graph::{
    Analyzer, AnalyzerOptions, Dependencies, FirstMark, FullGraph, MarkStrategy, NoLog, NodeId,
    NodeSource,
};
use petgraph::csr::Csr;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::Dfs;
use rustc_hash::FxHashMap;

const NODES: u64 = 1_000_000;
const HOT: u64 = NODES / 100;
const ROOTS: u64 = 1_000;
const GROUP: &str = "graph_expansion";

/// SplitMix64's finalizer: a fixed pseudo-random function of the key.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The dependencies of `key`, computed on demand.
#[inline]
fn for_each_dependency(key: u64, mut f: impl FnMut(u64, &'static str)) {
    let h = mix(key);
    let degree = 3 + h % 7;
    for j in 0..degree {
        let d = mix(h ^ (j + 1).wrapping_mul(0xd6e8_feb8_6659_fd93));
        if d.is_multiple_of(10) {
            f((d >> 8) % HOT, "hot");
        } else {
            f((d >> 8) % NODES, "call");
        }
    }
}

fn roots() -> impl Iterator<Item = u64> {
    (0..ROOTS).map(|i| mix(i ^ 0x5eed) % NODES)
}

struct Synthetic;

impl NodeSource for Synthetic {
    type Key = u64;
    #[inline]
    fn static_dependencies(&self, _: NodeId, &key: &u64, deps: &mut Dependencies<u64>) {
        for_each_dependency(key, |target, reason| deps.add(target, reason));
    }
    /// The final order is the keys' (the default `compare`): the key is its own prefix.
    #[inline]
    fn order_prefix(&self, &key: &u64) -> u64 {
        key
    }
}

fn crossgraph<M: MarkStrategy>(threads: usize) -> usize {
    let mut analyzer: Analyzer<'_, Synthetic, M> = Analyzer::new(
        &Synthetic,
        AnalyzerOptions::default()
            .with_threads(threads)
            .with_capacity(NODES as usize),
    );
    for root in roots() {
        analyzer
            .add_root(root, "root")
            .expect("adding roots before marking");
    }
    analyzer
        .compute_marked_nodes()
        .expect("synthetic graph analyzes");
    if std::env::var_os("GRAPH_EXPANSION_STATS").is_some() {
        eprintln!("{:?}", analyzer.stats());
    }
    let marked = analyzer.marked_nodes().expect("completed").len();
    black_box(analyzer.log().expect("completed"));
    marked
}

/// crossgen2's shape: one map, one stack, then sort the marked list. Sized for the graph up
/// front, as crossgraph is through its capacity hint.
fn worklist() -> usize {
    let mut ids: FxHashMap<u64, u32> =
        FxHashMap::with_capacity_and_hasher(NODES as usize, Default::default());
    let mut keys: Vec<u64> = Vec::with_capacity(NODES as usize);
    let mut stack: Vec<u32> = Vec::new();
    let mut intern = |key: u64, keys: &mut Vec<u64>, stack: &mut Vec<u32>| {
        ids.entry(key).or_insert_with(|| {
            keys.push(key);
            stack.push(keys.len() as u32 - 1);
            keys.len() as u32 - 1
        });
    };
    for root in roots() {
        intern(root, &mut keys, &mut stack);
    }
    while let Some(id) = stack.pop() {
        for_each_dependency(keys[id as usize], |t, _| intern(t, &mut keys, &mut stack));
    }
    keys.sort_unstable();
    keys.len()
}

fn edges() -> Vec<(u32, u32)> {
    let mut edges = Vec::with_capacity(NODES as usize * 6);
    for key in 0..NODES {
        for_each_dependency(key, |t, _| edges.push((key as u32, t as u32)));
    }
    edges.sort_unstable();
    // Csr rejects parallel edges; they do not change reachability.
    edges.dedup();
    edges
}

fn dfs_graph(g: &DiGraph<(), ()>) -> usize {
    let mut dfs = Dfs::empty(g);
    let mut count = 0;
    for root in roots() {
        dfs.move_to(NodeIndex::new(root as usize));
        while dfs.next(g).is_some() {
            count += 1;
        }
    }
    count
}

fn dfs_csr(g: &Csr<(), ()>) -> usize {
    let mut dfs = Dfs::empty(g);
    let mut count = 0;
    for root in roots() {
        dfs.move_to(root as u32);
        while dfs.next(g).is_some() {
            count += 1;
        }
    }
    count
}

type Run = (&'static str, Box<dyn Fn() -> usize>);

static EDGES: OnceLock<Vec<(u32, u32)>> = OnceLock::new();
static GRAPH: OnceLock<DiGraph<(), ()>> = OnceLock::new();
static CSR: OnceLock<Csr<(), ()>> = OnceLock::new();

/// The prebuilt graphs of the petgraph peers, built on first use (not timed by criterion:
/// its warm-up absorbs the first call).
fn graph() -> &'static DiGraph<(), ()> {
    GRAPH.get_or_init(|| DiGraph::from_edges(EDGES.get_or_init(edges)))
}

fn csr() -> &'static Csr<(), ()> {
    CSR.get_or_init(|| Csr::from_sorted_edges(EDGES.get_or_init(edges)).expect("edges are sorted"))
}

fn runs() -> Vec<Run> {
    vec![
        ("petgraph Dfs over Graph", Box::new(|| dfs_graph(graph()))),
        ("petgraph Dfs over Csr", Box::new(|| dfs_csr(csr()))),
        ("worklist + FxHashMap", Box::new(worklist)),
        (
            "crossgraph NoLog 1 thread",
            Box::new(|| crossgraph::<NoLog>(1)),
        ),
        (
            "crossgraph NoLog 2 threads",
            Box::new(|| crossgraph::<NoLog>(2)),
        ),
        (
            "crossgraph FirstMark 1 thread",
            Box::new(|| crossgraph::<FirstMark>(1)),
        ),
        (
            "crossgraph FirstMark 2 threads",
            Box::new(|| crossgraph::<FirstMark>(2)),
        ),
        (
            "crossgraph FullGraph 1 thread",
            Box::new(|| crossgraph::<FullGraph>(1)),
        ),
        (
            "crossgraph FullGraph 2 threads",
            Box::new(|| crossgraph::<FullGraph>(2)),
        ),
    ]
}

/// User + system CPU time of the process, from /proc/self/stat (clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|t| t.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Peak RSS growth (bytes) of one run of `name`, measured in a fresh process (this bench
/// binary, re-run with `GRAPH_EXPANSION_RSS=name`) so that memory freed by earlier runs and
/// kept by the allocator cannot hide it. `None` where the peak cannot be read.
fn peak_growth(name: &str) -> Option<u64> {
    let output = std::process::Command::new(std::env::current_exe().ok()?)
        .env("GRAPH_EXPANSION_RSS", name)
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

/// The child side of [`peak_growth`]: the petgraph peers build their graph first (it is
/// their input, not their work), then the peak is reset and one run measured.
fn measure_peak_growth(name: &str, f: &dyn Fn() -> usize) -> Option<u64> {
    if name.starts_with("petgraph") {
        black_box(f());
        std::fs::write("/proc/self/clear_refs", "5").ok()?;
    }
    let before = proc_status_kib("VmRSS:")?;
    black_box(f());
    let peak = proc_status_kib("VmHWM:")?;
    Some(peak.saturating_sub(before) * 1024)
}

/// Makes glibc's malloc keep the memory this process frees. By default it hands memory back
/// to the OS (trims the heap past 128 KiB of free top, unmaps chunks above its sliding mmap
/// threshold) depending on where allocation sizes fall against those thresholds, so one
/// configuration re-faults its pages in every timed run and another does not: measured
/// (`perf stat -e page-faults`), a 2-thread FirstMark run took ~14,600 page faults, a NoLog
/// run ~1,600. Kept memory puts every run on a warm heap, the steady state criterion's warm-up
/// is for; the `crossgraph` binary and the compile bench keep theirs too (on mimalloc). Peak
/// RSS is measured in a fresh child, before this is called.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: sets two of glibc malloc's global parameters, before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        // The largest threshold glibc accepts (DEFAULT_MMAP_THRESHOLD_MAX on 64 bits).
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
    }
}

fn median_ns(id: &str) -> Option<f64> {
    common::median_ns(GROUP, id)
}

fn main() {
    let runs = runs();

    if let Ok(name) = std::env::var("GRAPH_EXPANSION_RSS") {
        let (_, f) = runs
            .iter()
            .find(|(n, _)| *n == name)
            .expect("no run of that name");
        if let Some(bytes) = measure_peak_growth(&name, f.as_ref()) {
            println!("{bytes}");
        }
        return;
    }
    keep_freed_memory();

    // Profiling aid: `GRAPH_EXPANSION_ONLY='crossgraph NoLog 1 thread' perf record ...` runs
    // one configuration 20 times and nothing else.
    if let Ok(only) = std::env::var("GRAPH_EXPANSION_ONLY") {
        let (_, f) = runs
            .iter()
            .find(|(n, _)| *n == only)
            .expect("no run of that name");
        black_box(f());
        let cpu_before = cpu_seconds();
        let mut times: Vec<f64> = (0..20)
            .map(|_| {
                let start = std::time::Instant::now();
                black_box(f());
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let cpu_ms = (cpu_seconds() - cpu_before) * 1e3 / 20.0;
        times.sort_by(f64::total_cmp);
        println!(
            "{only}: median {:.1} ms wall (min {:.1}), {cpu_ms:.1} ms CPU per run (20 runs)",
            times[10], times[0]
        );
        return;
    }

    // Every run must agree on the number of reachable nodes.
    let counts: Vec<usize> = runs.iter().map(|(_, f)| f()).collect();
    assert!(
        counts.windows(2).all(|w| w[0] == w[1]),
        "runs disagree: {counts:?}"
    );
    let marked = counts[0];

    let start_ticks = common::cpu_ticks();
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group(GROUP);
        for (name, f) in &runs {
            group.bench_function(BenchmarkId::from_parameter(name), |b| b.iter(f));
        }
        group.finish();
    }
    criterion.final_summary();
    let criterion_ticks = common::cpu_ticks();

    let medians: Vec<Option<f64>> = runs.iter().map(|(name, _)| median_ns(name)).collect();
    let find = |name: &str| {
        runs.iter()
            .position(|(n, _)| *n == name)
            .and_then(|i| medians[i])
    };
    let (csr_ns, graph_ns, worklist_ns) = (
        find("petgraph Dfs over Csr"),
        find("petgraph Dfs over Graph"),
        find("worklist + FxHashMap"),
    );
    let ratio =
        |peer: Option<f64>, ns: f64| peer.map_or("-".to_string(), |p| format!("{:.2}x", p / ns));

    println!();
    println!(
        "graph_expansion: {marked} nodes marked from {ROOTS} roots ({NODES} keys, mean out-degree 6, 10% of edges into the hot 1%)"
    );
    println!();
    println!(
        "| run | median | nodes/s | vs Csr Dfs | vs Graph Dfs | vs worklist | vs 1 thread | bytes/node (peak RSS growth) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, (name, _)) in runs.iter().enumerate() {
        let Some(ns) = medians[i] else {
            println!("| {name} | (no criterion estimate) | | | | | | |");
            continue;
        };
        let one_thread = name
            .strip_suffix("2 threads")
            .and_then(|prefix| find(&format!("{prefix}1 thread")))
            .map_or("-".to_string(), |one| format!("{:.2}x", one / ns));
        let bytes = peak_growth(name).map_or("n/a".to_string(), |b| {
            format!("{:.1}", b as f64 / marked as f64)
        });
        println!(
            "| {name} | {:.1} ms | {:.2} M | {} | {} | {} | {one_thread} | {bytes} |",
            ns / 1e6,
            marked as f64 / ns * 1e3,
            ratio(csr_ns, ns),
            ratio(graph_ns, ns),
            ratio(worklist_ns, ns),
        );
    }
    println!();
    println!(
        "Ratios > 1 mean the run is faster than the peer. Dfs peers traverse a prebuilt graph (building it is not timed; their bytes/node count only the visited set)."
    );

    let table_ticks = common::cpu_ticks();
    let rounds = interleaved_rounds(&runs);
    let round_ticks = common::cpu_ticks();
    println!();
    println!(
        "Targets, median (min-max) of {ROUNDS} interleaved rounds, each ratio within one round:"
    );
    println!();
    println!("| ratio | target | median | range |");
    println!("|---|---:|---:|---:|");
    let target_rows: [(&str, &str, &str, &str); 8] = [
        (
            "NoLog 2 threads vs Csr Dfs (throughput)",
            "petgraph Dfs over Csr",
            "crossgraph NoLog 2 threads",
            ">= 3x",
        ),
        (
            "NoLog 2 threads vs 1 thread",
            "crossgraph NoLog 1 thread",
            "crossgraph NoLog 2 threads",
            ">= 1.7x",
        ),
        (
            "FirstMark 2 threads vs 1 thread",
            "crossgraph FirstMark 1 thread",
            "crossgraph FirstMark 2 threads",
            "-",
        ),
        (
            "FullGraph 2 threads vs 1 thread",
            "crossgraph FullGraph 1 thread",
            "crossgraph FullGraph 2 threads",
            "-",
        ),
        (
            "FirstMark / NoLog time, 2 threads",
            "crossgraph FirstMark 2 threads",
            "crossgraph NoLog 2 threads",
            "<= 1.3x",
        ),
        (
            "FirstMark / NoLog time, 1 thread",
            "crossgraph FirstMark 1 thread",
            "crossgraph NoLog 1 thread",
            "<= 1.3x",
        ),
        (
            "FullGraph / NoLog time, 2 threads",
            "crossgraph FullGraph 2 threads",
            "crossgraph NoLog 2 threads",
            "<= 2.5x",
        ),
        (
            "FullGraph / NoLog time, 1 thread",
            "crossgraph FullGraph 1 thread",
            "crossgraph NoLog 1 thread",
            "<= 2.5x",
        ),
    ];
    for (label, numerator, denominator, target) in target_rows {
        let index = |name: &str| runs.iter().position(|(n, _)| *n == name);
        let (Some(a), Some(b)) = (index(numerator), index(denominator)) else {
            continue;
        };
        let mut ratios: Vec<f64> = rounds.iter().map(|round| round[a] / round[b]).collect();
        ratios.sort_by(f64::total_cmp);
        println!(
            "| {label} | {target} | {:.2}x | {:.2}-{:.2}x |",
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
    let percent = |before, after| {
        common::steal_share(before, after)
            .map_or("n/a".to_string(), |s| format!("{:.1}%", s * 100.0))
    };
    println!();
    println!(
        "host steal time while measuring: criterion {}, rounds {}",
        percent(start_ticks, criterion_ticks),
        percent(table_ticks, round_ticks)
    );
}

/// Rounds of interleaved runs for the target ratios.
const ROUNDS: usize = 15;

/// Wall time (s) of every run, once per round, for [`ROUNDS`] rounds. Each timed run follows
/// an untimed one of the same configuration: the previous configuration's allocations (and
/// their pages) were freed, which would otherwise land on the first run after it.
fn interleaved_rounds(runs: &[Run]) -> Vec<Vec<f64>> {
    (0..ROUNDS)
        .map(|_| {
            runs.iter()
                .map(|(_, f)| {
                    black_box(f());
                    let started = std::time::Instant::now();
                    black_box(f());
                    started.elapsed().as_secs_f64()
                })
                .collect()
        })
        .collect()
}
