//! Parallel == sequential: on random graphs, every thread count and shuffle seed gives the same
//! marked set, final order, first-mark edges, `why` chains and DGML / DOT bytes, and the marked
//! set equals a plain sequential fixpoint (the correctness oracle).

mod common;

use std::collections::BTreeSet;

use crossgraph_graph::{
    Analyzer, AnalyzerOptions, FirstMark, FullGraph, MarkLog, MarkStrategy, NoLog, Reason,
    write_dgml, write_dot,
};
use proptest::prelude::*;
use proptest::sample::select;

use common::{
    Colliding, CondSpec, DynamicRule, GraphSpec, KeyEdge, NodeSpec, Prefix, TestKey, TestSource,
    analyze, fired_edges, id, key_edge, marked_numbers, reference_marked,
};

/// The runs every graph is analyzed under; the first is the sequential baseline.
fn configurations() -> Vec<AnalyzerOptions> {
    let base = AnalyzerOptions::default();
    vec![
        base.clone().with_threads(1),
        base.clone().with_threads(2),
        base.clone().with_threads(4),
        // rayon's global pool.
        base.clone(),
        base.clone().with_threads(2).with_shuffle_seed(1),
        base.clone()
            .with_threads(2)
            .with_shuffle_seed(0xC0FF_EE00_D15E_A5E5),
        base.clone().with_threads(2).with_shuffle_seed(u64::MAX),
        // Capacity hints, too small and generous: room, not results.
        base.clone().with_threads(2).with_capacity(64),
        base.clone()
            .with_threads(4)
            .with_shuffle_seed(3)
            .with_capacity(50_000),
    ]
}

/// Fewer runs, for the second key type: sequential, parallel shuffled, wider shuffled.
fn few_configurations() -> Vec<AnalyzerOptions> {
    let base = AnalyzerOptions::default();
    vec![
        base.clone().with_threads(1),
        base.clone().with_threads(2).with_shuffle_seed(7),
        base.clone().with_threads(4).with_shuffle_seed(42),
    ]
}

/// Everything observable about one analysis, with ids replaced by node numbers.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    order: Vec<u32>,
    dgml: String,
    dot: String,
    /// Strategy-specific log view: first-mark edge per node, or every edge into each node.
    log: Vec<Vec<KeyEdge>>,
    /// `why` chains of a sample of the marked nodes.
    why: Vec<Vec<KeyEdge>>,
    phases: Vec<u32>,
}

/// The log of each strategy, node by node in final order.
trait LogView: MarkStrategy {
    fn log_view<K: TestKey>(a: &Analyzer<'_, TestSource<K>, Self>) -> Vec<Vec<KeyEdge>>;
}

impl LogView for NoLog {
    fn log_view<K: TestKey>(_: &Analyzer<'_, TestSource<K>, Self>) -> Vec<Vec<KeyEdge>> {
        Vec::new()
    }
}

impl LogView for FirstMark {
    fn log_view<K: TestKey>(a: &Analyzer<'_, TestSource<K>, Self>) -> Vec<Vec<KeyEdge>> {
        let log = a.log().unwrap();
        a.marked_nodes()
            .unwrap()
            .iter()
            .map(|&n| {
                let first = log
                    .first_edge(n)
                    .expect("every marked node has a first edge");
                assert_eq!(first.target, n);
                vec![key_edge(a, &first)]
            })
            .collect()
    }
}

impl LogView for FullGraph {
    fn log_view<K: TestKey>(a: &Analyzer<'_, TestSource<K>, Self>) -> Vec<Vec<KeyEdge>> {
        let log = a.log().unwrap();
        a.marked_nodes()
            .unwrap()
            .iter()
            .map(|&n| log.edges_into(n).iter().map(|e| key_edge(a, e)).collect())
            .collect()
    }
}

/// Analyzes `spec` once, checks the source's invariants and the marked set against the
/// reference, and returns what can be observed. `why` is asked of every `why_stride`-th node.
/// With `verify_log`, also checks that every logged edge fires in the reference (the other
/// runs are compared with a verified one).
fn outcome<K: TestKey, M: LogView>(
    spec: &GraphSpec,
    reference: &BTreeSet<u32>,
    options: AnalyzerOptions,
    why_stride: usize,
    verify_log: bool,
) -> Outcome {
    let src = TestSource::<K>::new(spec.clone());
    let a = analyze::<K, M>(&src, options).expect("analysis succeeds");
    let order = marked_numbers(&a);
    let marked: BTreeSet<u32> = order.iter().copied().collect();
    assert_eq!(
        &marked, reference,
        "marked set differs from the reference fixpoint"
    );
    assert_eq!(order, spec.sorted(marked.iter().copied()), "final order");
    src.check_invariants(&marked);

    let mut dgml = Vec::new();
    write_dgml(&a, &mut dgml).unwrap();
    let mut dot = Vec::new();
    write_dot(&a, &mut dot).unwrap();

    let log = M::log_view(&a);
    if verify_log && !log.is_empty() {
        // Every logged edge is one that fires in the reference.
        let (roots, fired) = fired_edges(spec, &marked);
        let fired: BTreeSet<KeyEdge> = fired.into_iter().collect();
        for e in log.iter().flatten() {
            assert!(roots.contains(e) || fired.contains(e), "logged edge {e:?}");
        }
    }
    let why = order
        .iter()
        .step_by(why_stride)
        .filter_map(|&n| {
            let path = a.why(id(&a, n)).ok()?;
            let path: Vec<KeyEdge> = path.iter().map(|e| key_edge(&a, e)).collect();
            assert_eq!(path[0].source, None);
            assert!(path.windows(2).all(|w| Some(w[0].target) == w[1].source));
            assert_eq!(path.last().unwrap().target, n);
            Some(path)
        })
        .collect();
    let mut logged = 0usize;
    a.log().unwrap().for_each_edge(&mut |_| logged += 1);
    assert_eq!(logged == 0, log.is_empty(), "only NoLog logs nothing");

    Outcome {
        order,
        dgml: String::from_utf8(dgml).unwrap(),
        dot: String::from_utf8(dot).unwrap(),
        log,
        why,
        phases: src.phases(),
    }
}

/// All configurations agree with the baseline; returns the baseline.
fn same_everywhere<K: TestKey, M: LogView>(
    spec: &GraphSpec,
    reference: &BTreeSet<u32>,
    configs: &[AnalyzerOptions],
    why_stride: usize,
) -> Outcome {
    let mut configs = configs.iter().cloned();
    let first = configs.next().unwrap();
    let baseline = outcome::<K, M>(spec, reference, first.clone(), why_stride, true);
    for options in configs {
        let other = outcome::<K, M>(spec, reference, options.clone(), why_stride, false);
        // Compare piecewise so a failure names what differs.
        assert_eq!(
            other.order, baseline.order,
            "order: {options:?} vs {first:?}"
        );
        assert_eq!(other.log, baseline.log, "log: {options:?} vs {first:?}");
        assert_eq!(other.why, baseline.why, "why: {options:?} vs {first:?}");
        assert_eq!(other.dgml, baseline.dgml, "DGML: {options:?} vs {first:?}");
        assert_eq!(other.dot, baseline.dot, "DOT: {options:?} vs {first:?}");
        assert_eq!(
            other.phases, baseline.phases,
            "phases: {options:?} vs {first:?}"
        );
    }
    baseline
}

/// Runs the whole check for one key type.
fn check_spec<K: TestKey>(spec: &GraphSpec, configs: &[AnalyzerOptions], why_stride: usize) {
    let reference = reference_marked(spec);
    let none = same_everywhere::<K, NoLog>(spec, &reference, configs, why_stride);
    let first = same_everywhere::<K, FirstMark>(spec, &reference, configs, why_stride);
    let full = same_everywhere::<K, FullGraph>(spec, &reference, configs, why_stride);
    assert_eq!(none.order, first.order);
    assert_eq!(none.order, full.order);
    assert!(none.why.is_empty());
    // A full graph finds the shortest chain; the first-mark chain is never shorter.
    assert_eq!(first.why.len(), full.why.len());
    for (f, g) in first.why.iter().zip(&full.why) {
        assert!(
            g.len() <= f.len(),
            "full-graph why {g:?} longer than first-mark {f:?}"
        );
    }
}

// ---- random graphs for proptest ----

const REASONS: [Reason; 3] = ["call", "field", "vtable"];
const ROOT_REASONS: [Reason; 2] = ["main", "exported"];

fn node_spec(n: u32) -> impl Strategy<Value = NodeSpec> {
    (
        prop::collection::vec((0..n, select(&REASONS[..])), 0..4),
        prop::collection::vec((0..n, 0..n, select(&REASONS[..])), 0..2),
        prop::bool::weighted(0.06),
        prop::bool::weighted(0.15),
        prop::option::weighted(0.2, 0..4u32),
        -3i64..3,
    )
        .prop_map(
            |(statics, conditionals, dynamic, interesting, deferred, rank)| NodeSpec {
                statics,
                conditionals: conditionals
                    .into_iter()
                    .map(|(target, condition, reason)| CondSpec {
                        target,
                        condition,
                        reason,
                    })
                    .collect(),
                dynamic,
                interesting,
                deferred,
                broken_compute: false,
                name: None,
                // A coarse rank: the final order is not the key order.
                rank: Some(rank),
            },
        )
}

fn graph_spec() -> impl Strategy<Value = GraphSpec> {
    (1u32..=200).prop_flat_map(|n| {
        let rule = (
            0..n,
            0..n,
            0..n,
            prop::option::weighted(0.3, 0..n),
            select(&REASONS[..]),
        )
            .prop_map(
                |(dynamic, interesting, target, condition, reason)| DynamicRule {
                    dynamic,
                    interesting,
                    target,
                    condition,
                    reason,
                },
            );
        (
            prop::collection::vec(node_spec(n), n as usize),
            prop::collection::vec(rule, 0..16),
            prop::collection::vec((0..n, select(&ROOT_REASONS[..])), 1..5),
        )
            .prop_map(|(mut nodes, rules, roots)| {
                for r in &rules {
                    nodes[r.dynamic as usize].dynamic = true;
                    nodes[r.interesting as usize].interesting = true;
                }
                GraphSpec {
                    nodes,
                    rules,
                    roots,
                    prefix: Prefix::None,
                }
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn parallel_and_shuffled_runs_match_sequential(spec in graph_spec()) {
        check_spec::<u32>(&spec, &configurations(), 1);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Keys whose hashes collide in fours: interning collisions and first-mark ties that only
    /// the keys can break.
    #[test]
    fn colliding_key_hashes_change_nothing(spec in graph_spec()) {
        check_spec::<Colliding>(&spec, &few_configurations(), 1);
    }
}

// ---- a large graph: many work-stealing chunks per step ----

/// SplitMix64, for a reproducible large graph without proptest's shrinking cost.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent
    }
}

fn large_spec(seed: u64, n: u32) -> GraphSpec {
    let mut rng = Rng(seed);
    let mut spec = GraphSpec::new(n);
    for s in 0..n {
        for _ in 0..rng.below(4) {
            let reason = REASONS[rng.below(3) as usize];
            spec = spec.edge_because(s, rng.below(n), reason);
        }
        if rng.chance(20) {
            let (t, c) = (rng.below(n), rng.below(n));
            spec = spec.cond(s, t, c);
        }
        if rng.chance(10) {
            spec = spec.defer(s, rng.below(4));
        }
        if rng.chance(5) {
            spec = spec.interesting(s);
        }
        spec = spec.rank(s, i64::from(rng.below(16)));
    }
    for _ in 0..200 {
        // Few dynamic nodes, many rules each.
        let d = rng.below(20) * (n / 20);
        let (i, t) = (rng.below(n), rng.below(n));
        spec = spec.rule(d, i, t);
    }
    for _ in 0..8 {
        spec = spec.root_because(rng.below(n), ROOT_REASONS[rng.below(2) as usize]);
    }
    spec
}

#[test]
fn large_graph_matches_sequential() {
    let spec = large_spec(1, 10_000);
    let reference = reference_marked(&spec);
    assert!(
        reference.len() > 5_000,
        "the graph should mostly be reachable"
    );
    check_spec::<u32>(&spec, &configurations(), 499);
}

#[test]
fn large_graph_with_colliding_hashes_matches_sequential() {
    check_spec::<Colliding>(&large_spec(2, 10_000), &few_configurations(), 499);
}

/// Enough marked nodes for the radix sort of the final order (it takes over from 16,384),
/// under each answer of `order_prefix`: the order must be `compare`'s whatever the prefixes.
#[test]
fn large_graph_sorted_by_prefixes_matches_sequential() {
    let spec = large_spec(3, 40_000);
    let reference = reference_marked(&spec);
    assert!(reference.len() > 20_000, "{} marked", reference.len());
    for prefix in [Prefix::Exact, Prefix::Rank, Prefix::None] {
        let spec = spec.clone().with_prefix(prefix);
        let order =
            same_everywhere::<u32, NoLog>(&spec, &reference, &few_configurations(), 4_999).order;
        assert_eq!(order, spec.sorted(reference.iter().copied()), "{prefix:?}");
    }
}
