//! Semantics of the analyzer, every test under every mark strategy (crossgen2's framework tests
//! run each case under NoLog, FirstMark and FullGraph the same way).

mod common;

use std::collections::BTreeSet;

use crossgraph_graph::{
    AnalysisError, Analyzer, AnalyzerOptions, FirstMark, FullGraph, MarkLog, MarkStrategy, NoLog,
    NodeSource, write_dgml, write_dot,
};

use common::{
    GraphSpec, KeyEdge, TestSource, analyze, fired_edges, id, key_edge, marked_numbers,
    reference_marked,
};

/// What the strategy logs, so one generic test can state each strategy's expectations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LogKind {
    None,
    First,
    Full,
}

trait Logged: MarkStrategy {
    const KIND: LogKind;
}

impl Logged for NoLog {
    const KIND: LogKind = LogKind::None;
}

impl Logged for FirstMark {
    const KIND: LogKind = LogKind::First;
}

impl Logged for FullGraph {
    const KIND: LogKind = LogKind::Full;
}

/// Instantiates each generic test once per mark strategy.
macro_rules! strategy_tests {
    ($($test:ident),* $(,)?) => {
        mod no_log {
            $(#[test] fn $test() { super::$test::<crossgraph_graph::NoLog>(); })*
        }
        mod first_mark {
            $(#[test] fn $test() { super::$test::<crossgraph_graph::FirstMark>(); })*
        }
        mod full_graph {
            $(#[test] fn $test() { super::$test::<crossgraph_graph::FullGraph>(); })*
        }
    };
}

strategy_tests!(
    no_roots_marks_nothing,
    chain,
    diamond,
    cycles_and_self_loops,
    duplicate_roots_and_edges,
    unreachable_nodes_are_not_interned,
    conditional_condition_marked_before,
    conditional_condition_marked_after,
    conditional_condition_marked_in_same_step_by_other_node,
    conditional_condition_marked_in_same_step_by_same_node,
    conditional_condition_is_root,
    conditional_condition_never_marked,
    conditional_many_waiting_on_one_condition,
    conditional_on_target_already_marked,
    dynamic_sees_each_interesting_node_once,
    dynamic_rule_on_unmarked_interesting_node_does_nothing,
    dynamic_results_are_expanded_and_may_be_deferred,
    dynamic_conditional_results,
    dynamic_node_that_is_deferred,
    no_deferral_changes_phase_once,
    deferred_in_phase_zero_after_phase_work_drains,
    deferred_chain_in_one_phase_takes_several_batches,
    deferred_whose_dependencies_are_already_marked,
    deferred_root,
    deferred_in_later_phases,
    deferred_only_in_phase_three,
    final_order_is_compare_order,
    why_returns_root_first_chain,
    why_first_mark_is_marking_order_full_graph_is_shortest,
    why_unmarked_node_is_not_logged,
    first_mark_ties_break_by_condition_order,
    add_root_after_compute_fails,
    bulk_roots_mark_and_log_like_single_roots,
    compute_twice_does_nothing_more,
    uncomputed_node_fails_then_failed,
    uncomputed_node_in_later_phase_reports_phase,
    queries_before_compute_are_not_completed,
    key_of_foreign_id_is_unknown,
    exports_number_nodes_in_final_order,
    wide_fan_out,
);

fn opts() -> AnalyzerOptions {
    AnalyzerOptions::default().with_threads(2)
}

fn set(nodes: &[u32]) -> BTreeSet<u32> {
    nodes.iter().copied().collect()
}

/// Runs the spec's roots to completion.
fn run<M: Logged>(src: &TestSource) -> Analyzer<'_, TestSource, M> {
    analyze::<u32, M>(src, opts()).expect("analysis succeeds")
}

/// The marked set is `expected` (in the source's order, and equal to the reference fixpoint),
/// the source's callbacks ran as they must, and the log is consistent with the graph.
fn expect_marked<M: Logged>(src: &TestSource, a: &Analyzer<'_, TestSource, M>, expected: &[u32]) {
    let expected = set(expected);
    assert_eq!(marked_numbers(a), src.spec.sorted(expected.iter().copied()));
    assert_eq!(
        reference_marked(&src.spec),
        expected,
        "test expectation vs reference"
    );
    for n in 0..src.spec.len() {
        match a.id_of(&n) {
            Some(node) => {
                assert_eq!(a.is_marked(node), expected.contains(&n), "is_marked({n})");
                assert_eq!(*a.key(node).unwrap(), n);
                assert_eq!(a.name(node).unwrap(), src.name(&n));
            }
            None => assert!(!expected.contains(&n), "marked node {n} has no id"),
        }
    }
    src.check_invariants(&expected);
    check_log(src, a, &expected);
    check_why(src, a, &expected);
}

/// The log holds exactly what the strategy promises.
fn check_log<M: Logged>(src: &TestSource, a: &Analyzer<'_, TestSource, M>, marked: &BTreeSet<u32>) {
    let mut logged = Vec::new();
    a.log()
        .unwrap()
        .for_each_edge(&mut |e| logged.push(key_edge(a, &e)));
    logged.sort();
    let (roots, fired) = fired_edges(&src.spec, marked);
    let fired_set: BTreeSet<&KeyEdge> = fired.iter().collect();
    match M::KIND {
        LogKind::None => assert!(logged.is_empty()),
        LogKind::First => {
            // One edge per marked node, each one that really fired.
            let targets: BTreeSet<u32> = logged.iter().map(|e| e.target).collect();
            assert_eq!(&targets, marked);
            assert_eq!(logged.len(), marked.len());
            for e in &logged {
                assert!(
                    roots.contains(e) || fired_set.contains(e),
                    "first-mark edge {e:?} never fired"
                );
            }
        }
        LogKind::Full => {
            // Every edge that fired, as often as it fired; root edges once per (node, reason).
            let (root_edges, edges): (Vec<KeyEdge>, Vec<KeyEdge>) =
                logged.into_iter().partition(|e| e.source.is_none());
            assert_eq!(root_edges.into_iter().collect::<BTreeSet<_>>(), roots);
            assert_eq!(edges, fired);
        }
    }
}

/// `why` answers every marked node with a root-first chain of edges that fired (or
/// `NotLogged` without a log).
fn check_why<M: Logged>(src: &TestSource, a: &Analyzer<'_, TestSource, M>, marked: &BTreeSet<u32>) {
    let (roots, fired) = fired_edges(&src.spec, marked);
    let fired: BTreeSet<KeyEdge> = fired.into_iter().collect();
    for &n in marked {
        let node = id(a, n);
        match a.why(node) {
            Ok(path) => {
                assert_ne!(M::KIND, LogKind::None);
                let path: Vec<KeyEdge> = path.iter().map(|e| key_edge(a, e)).collect();
                check_chain(&path, n);
                for e in &path {
                    assert!(roots.contains(e) || fired.contains(e), "why edge {e:?}");
                }
            }
            Err(AnalysisError::NotLogged { node: got, name }) => {
                assert_eq!(M::KIND, LogKind::None, "why({n}) not logged");
                assert_eq!(got, node);
                assert_eq!(name, src.name(&n));
            }
            Err(e) => panic!("why({n}): {e}"),
        }
    }
}

/// `path` starts with a root edge, each edge starts where the previous one ended, and it ends
/// at `n`.
fn check_chain(path: &[KeyEdge], n: u32) {
    assert!(!path.is_empty());
    assert_eq!(path[0].source, None, "why path starts at a root: {path:?}");
    for w in path.windows(2) {
        assert_eq!(
            Some(w[0].target),
            w[1].source,
            "why path is a chain: {path:?}"
        );
    }
    assert_eq!(path.last().unwrap().target, n);
}

fn why_keys<M: Logged>(a: &Analyzer<'_, TestSource, M>, n: u32) -> Vec<KeyEdge> {
    a.why(id(a, n))
        .unwrap()
        .iter()
        .map(|e| key_edge(a, e))
        .collect()
}

fn root_edge(target: u32, reason: &'static str) -> KeyEdge {
    KeyEdge {
        source: None,
        condition: None,
        target,
        reason,
    }
}

fn edge(source: u32, target: u32, reason: &'static str) -> KeyEdge {
    KeyEdge {
        source: Some(source),
        condition: None,
        target,
        reason,
    }
}

// ---- static dependencies ----

fn no_roots_marks_nothing<M: Logged>() {
    let src = TestSource::new(GraphSpec::new(2).edge(0, 1));
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[]);
    assert_eq!(src.phases(), [1]);
    let mut dot = Vec::new();
    write_dot(&a, &mut dot).unwrap();
    assert_eq!(
        String::from_utf8(dot).unwrap(),
        "digraph dependencies {\n  node [shape=box];\n}\n"
    );
}

fn chain<M: Logged>() {
    let src = TestSource::new(GraphSpec::new(5).root(0).chain(&[0, 1, 2, 3]).edge(4, 0));
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2, 3]);
    assert_eq!(a.stats().marked, 4);
}

fn diamond<M: Logged>() {
    let spec = GraphSpec::new(4)
        .root(0)
        .edge(0, 1)
        .edge(0, 2)
        .edge(1, 3)
        .edge(2, 3);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2, 3]);
}

fn cycles_and_self_loops<M: Logged>() {
    let spec = GraphSpec::new(6)
        .root(0)
        .chain(&[0, 1, 2, 0])
        .edge(2, 3)
        .edge(3, 3)
        .chain(&[3, 4, 3]);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2, 3, 4]);
}

fn duplicate_roots_and_edges<M: Logged>() {
    let spec = GraphSpec::new(3)
        .root(0)
        .root(0)
        .root_because(0, "exported")
        .root(1)
        .edge(0, 2)
        .edge(0, 2)
        .edge_because(1, 2, "other")
        .edge(1, 0);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2]);
}

fn unreachable_nodes_are_not_interned<M: Logged>() {
    let src = TestSource::new(GraphSpec::new(4).root(0).edge(0, 1).edge(2, 3));
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1]);
    assert!(a.id_of(&2).is_none());
    assert!(a.id_of(&3).is_none());
    assert_eq!(a.stats().interned, 2);
}

// ---- conditional dependencies ----

fn conditional_condition_marked_before<M: Logged>() {
    // 1 (the condition) is marked at level 1; the conditional edge arrives from 3 at level 3.
    let spec = GraphSpec::new(5)
        .root(0)
        .edge(0, 1)
        .chain(&[0, 2, 3])
        .cond(3, 4, 1);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2, 3, 4]);
}

fn conditional_condition_marked_after<M: Logged>() {
    // The conditional edge waits at level 2; its condition 5 is marked at level 4.
    let spec = GraphSpec::new(7)
        .root(0)
        .edge(0, 1)
        .cond(1, 6, 5)
        .chain(&[0, 2, 3, 4, 5]);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2, 3, 4, 5, 6]);
}

fn conditional_condition_marked_in_same_step_by_other_node<M: Logged>() {
    // Level 2 expands 1 (conditional edge: 4 once 3) and 2 (static edge to 3) together.
    let spec = GraphSpec::new(5)
        .root(0)
        .edge(0, 1)
        .edge(0, 2)
        .cond(1, 4, 3)
        .edge(2, 3);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2, 3, 4]);
}

fn conditional_condition_marked_in_same_step_by_same_node<M: Logged>() {
    // 1 lists the conditional edge before the edge that marks its condition, and 2 lists them
    // the other way round.
    let spec = GraphSpec::new(7)
        .root(0)
        .edge(0, 1)
        .edge(0, 2)
        .cond(1, 4, 3)
        .edge(1, 3)
        .edge(2, 5)
        .cond(2, 6, 5);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2, 3, 4, 5, 6]);
}

fn conditional_condition_is_root<M: Logged>() {
    let spec = GraphSpec::new(4)
        .root(0)
        .root(3)
        .edge(0, 1)
        .cond(1, 2, 3)
        .cond(3, 3, 3);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2, 3]);
}

fn conditional_condition_never_marked<M: Logged>() {
    let spec = GraphSpec::new(5)
        .root(0)
        .edge(0, 1)
        .cond(1, 2, 3)
        .edge(2, 4)
        .edge(3, 4);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1]);
    // The condition is interned (it keys the conditional store) but not marked; the target
    // is neither.
    let condition = id(&a, 3);
    assert!(!a.is_marked(condition));
    assert!(a.id_of(&2).is_none());
    assert!(a.id_of(&4).is_none());
    assert_eq!(src.on_marked_count(2), 0);
    assert_eq!(src.on_marked_count(3), 0);
}

fn conditional_many_waiting_on_one_condition<M: Logged>() {
    // Nodes 1..=8 each wait for 9 with their own target 11..=18; 9 is reached late.
    let mut spec = GraphSpec::new(20).root(0).chain(&[0, 19, 10, 9]);
    for i in 1..=8 {
        spec = spec.edge(0, i).cond(i, 10 + i, 9);
    }
    // Two sources wait on the same (target, condition) pair.
    spec = spec.cond(2, 11, 9);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    let expected: Vec<u32> = (0..20).collect();
    expect_marked(&src, &a, &expected);
}

fn conditional_on_target_already_marked<M: Logged>() {
    let spec = GraphSpec::new(4)
        .root(0)
        .edge(0, 1)
        .edge(0, 2)
        .cond(1, 2, 3)
        .cond(1, 2, 0);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2]);
}

// ---- dynamic dependencies ----

fn dynamic_sees_each_interesting_node_once<M: Logged>() {
    // 2 is the dynamic node, reached at level 3. Interesting: 1 (marked before 2), 3 (marked
    // after 2, by 2's static edges), 4 (marked by 2's own dynamic result) and 14 (marked by a
    // rule applied to 4). 11 is a second dynamic node, marked only after several searches,
    // which must still see every interesting node once.
    let spec = GraphSpec::new(16)
        .root(0)
        .edge(0, 1)
        .chain(&[0, 5, 6, 2])
        .chain(&[2, 7, 8, 3])
        .rule(2, 1, 4)
        .rule(2, 4, 9)
        .rule(2, 3, 10)
        .rule(2, 14, 15)
        .rule(2, 4, 14)
        .edge(9, 11)
        .rule(11, 1, 12)
        .rule(11, 14, 13)
        .interesting(3);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(
        &src,
        &a,
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    );
    let seen = src.seen();
    for d in [2, 11] {
        for i in [1, 3, 4, 14] {
            assert_eq!(seen.get(&(d, i)), Some(&1), "dynamic {d} saw {i}");
        }
    }
    assert_eq!(seen.len(), 8);
}

fn dynamic_rule_on_unmarked_interesting_node_does_nothing<M: Logged>() {
    let spec = GraphSpec::new(6)
        .root(0)
        .edge(0, 1)
        .dynamic(1)
        .rule(1, 2, 3)
        .edge(4, 2)
        .rule(5, 0, 3)
        .interesting(0);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1]);
    assert_eq!(src.seen().into_iter().collect::<Vec<_>>(), [((1, 0), 1)]);
}

fn dynamic_results_are_expanded_and_may_be_deferred<M: Logged>() {
    let spec = GraphSpec::new(7)
        .root(0)
        .edge(0, 1)
        .edge(0, 2)
        .rule(1, 2, 3)
        .chain(&[3, 4, 5])
        .defer(4, 1)
        .edge(4, 6);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(src.compute_phase(4), Some(1));
}

fn dynamic_conditional_results<M: Logged>() {
    // 1 sees 2: depends on 3 once 4 is marked (it is, later) and on 5 once 6 is (never).
    let spec = GraphSpec::new(8)
        .root(0)
        .edge(0, 1)
        .edge(0, 2)
        .rule_if(1, 2, 3, 4)
        .rule_if(1, 2, 5, 6)
        .chain(&[2, 7, 4]);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2, 3, 4, 7]);
}

fn dynamic_node_that_is_deferred<M: Logged>() {
    // 1 searches only once computed (phase 1); it still sees 2 and 3, marked in phase 0.
    let spec = GraphSpec::new(6)
        .root(0)
        .edge(0, 1)
        .defer(1, 1)
        .edge(0, 2)
        .edge(2, 3)
        .rule(1, 2, 4)
        .rule(1, 3, 5)
        .interesting(1);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2, 3, 4, 5]);
    assert_eq!(src.compute_phase(1), Some(1));
}

// ---- deferred dependencies and phases ----

fn no_deferral_changes_phase_once<M: Logged>() {
    let src = TestSource::new(GraphSpec::new(3).root(0).chain(&[0, 1, 2]));
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2]);
    assert_eq!(src.phases(), [1]);
    assert_eq!(a.stats().phase, 1);
    assert_eq!(a.stats().compute_batches, 0);
}

fn deferred_in_phase_zero_after_phase_work_drains<M: Logged>() {
    // 1 is deferred; everything reachable without it (0, 1, 4, 5, 6) is marked before it is
    // computed.
    let spec = GraphSpec::new(7)
        .root(0)
        .chain(&[0, 1, 2, 3])
        .defer(1, 0)
        .chain(&[0, 4, 5, 6]);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(src.phases(), [1]);
    assert_eq!(src.compute_calls(1), 1);
    assert_eq!(src.compute_phase(1), Some(0));
    assert_eq!(src.marked_at_compute(1), 5);
    assert_eq!(a.stats().compute_batches, 1);
}

fn deferred_chain_in_one_phase_takes_several_batches<M: Logged>() {
    let spec = GraphSpec::new(5)
        .root(0)
        .chain(&[0, 1, 2, 3, 4])
        .defer(1, 0)
        .defer(2, 0)
        .defer(3, 0);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2, 3, 4]);
    assert_eq!(src.phases(), [1]);
    assert_eq!(a.stats().compute_batches, 3);
    for n in 1..=3 {
        assert_eq!(src.compute_phase(n), Some(0));
    }
}

fn deferred_whose_dependencies_are_already_marked<M: Logged>() {
    let spec = GraphSpec::new(3)
        .root(0)
        .edge(0, 1)
        .edge(1, 0)
        .edge(0, 2)
        .edge(2, 1)
        .defer(1, 0)
        .defer(2, 1);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2]);
    assert_eq!(src.phases(), [1, 2]);
}

fn deferred_root<M: Logged>() {
    let src = TestSource::new(GraphSpec::new(2).root(0).edge(0, 1).defer(0, 0));
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1]);
    assert_eq!(src.phases(), [1]);
}

fn deferred_in_later_phases<M: Logged>() {
    // 1 waits for phase 2; 3 is computed in phase 0; 5 in phase 1, and 6 (deferred to phase
    // 0, but discovered by 5 in phase 1) in phase 1 too, in a second batch.
    let spec = GraphSpec::new(8)
        .root(0)
        .chain(&[0, 1, 2])
        .defer(1, 2)
        .chain(&[0, 3, 4])
        .defer(3, 0)
        .chain(&[0, 5, 6, 7])
        .defer(5, 1)
        .defer(6, 0);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(src.phases(), [1, 2, 3]);
    assert_eq!(src.compute_phase(3), Some(0));
    assert_eq!(src.compute_phase(5), Some(1));
    assert_eq!(src.compute_phase(6), Some(1));
    assert_eq!(src.compute_phase(1), Some(2));
    // Phase 2 starts only when everything else is marked.
    assert_eq!(src.marked_at_compute(1), 7);
    assert_eq!(a.stats().compute_batches, 4);
    assert_eq!(a.stats().phase, 3);
}

fn deferred_only_in_phase_three<M: Logged>() {
    let src = TestSource::new(GraphSpec::new(3).root(0).chain(&[0, 1, 2]).defer(1, 3));
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2]);
    assert_eq!(src.phases(), [1, 2, 3, 4]);
    assert_eq!(src.compute_phase(1), Some(3));
}

// ---- final order ----

fn final_order_is_compare_order<M: Logged>() {
    // Ranks: odd nodes first (descending), then even nodes (ascending); 9 is unreachable.
    let mut spec = GraphSpec::new(10)
        .root(4)
        .chain(&[4, 8, 1, 0, 7, 3, 2, 6, 5]);
    for n in 0..10 {
        let rank = if n % 2 == 1 {
            -(n as i64)
        } else {
            100 + n as i64
        };
        spec = spec.rank(n, rank);
    }
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    assert_eq!(marked_numbers(&a), [7, 5, 3, 1, 0, 2, 4, 6, 8]);
    expect_marked(&src, &a, &[0, 1, 2, 3, 4, 5, 6, 7, 8]);
}

// ---- why ----

fn why_returns_root_first_chain<M: Logged>() {
    let spec = GraphSpec::new(5)
        .root_because(0, "main")
        .edge_because(0, 1, "a")
        .edge_because(1, 2, "b")
        .edge_because(2, 3, "c")
        .edge_because(0, 3, "shortcut")
        .cond_because(1, 4, 2, "once 2");
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2, 3, 4]);
    match M::KIND {
        LogKind::None => {
            let node = id(&a, 3);
            assert!(
                matches!(a.why(node), Err(AnalysisError::NotLogged { node: n, .. }) if n == node)
            );
        }
        LogKind::First | LogKind::Full => {
            assert_eq!(why_keys(&a, 0), [root_edge(0, "main")]);
            assert_eq!(
                why_keys(&a, 3),
                [root_edge(0, "main"), edge(0, 3, "shortcut")]
            );
            let conditional = KeyEdge {
                source: Some(1),
                condition: Some(2),
                target: 4,
                reason: "once 2",
            };
            assert_eq!(
                why_keys(&a, 4),
                [root_edge(0, "main"), edge(0, 1, "a"), conditional]
            );
        }
    }
}

fn why_first_mark_is_marking_order_full_graph_is_shortest<M: Logged>() {
    // 9 is first marked at the end of a long chain in phase 0; the deferred node 1 reaches it
    // in one edge, but only in phase 1.
    let spec = GraphSpec::new(10)
        .root(0)
        .edge(0, 1)
        .defer(1, 1)
        .edge(1, 9)
        .chain(&[0, 2, 3, 4, 5, 6, 7, 8, 9]);
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let long: Vec<KeyEdge> = std::iter::once(root_edge(0, "root"))
        .chain(
            [0, 2, 3, 4, 5, 6, 7, 8, 9]
                .windows(2)
                .map(|w| edge(w[0], w[1], "static")),
        )
        .collect();
    let short = vec![
        root_edge(0, "root"),
        edge(0, 1, "static"),
        edge(1, 9, "static"),
    ];
    match M::KIND {
        LogKind::None => assert!(a.why(id(&a, 9)).is_err()),
        LogKind::First => assert_eq!(why_keys(&a, 9), long),
        LogKind::Full => assert_eq!(why_keys(&a, 9), short),
    }
}

fn why_unmarked_node_is_not_logged<M: Logged>() {
    let src = TestSource::new(GraphSpec::new(3).root(0).cond(0, 1, 2));
    let a = run::<M>(&src);
    expect_marked(&src, &a, &[0]);
    let condition = id(&a, 2);
    match a.why(condition) {
        Err(AnalysisError::NotLogged { node, name }) => {
            assert_eq!(node, condition);
            assert_eq!(name, "N2");
        }
        other => panic!("why(unmarked) = {other:?}"),
    }
}

fn first_mark_ties_break_by_condition_order<M: Logged>() {
    // 1 depends on 4 once 2 and once 3, with the same reason; both conditions are marked at
    // the same level, so both edges reach 4 in the same step. The first-mark log keeps the one
    // whose condition comes first in the source's order (3, ranked before 2), whatever the
    // thread count or shuffle.
    let spec = GraphSpec::new(5)
        .root(0)
        .edge(0, 1)
        .edge(0, 2)
        .edge(0, 3)
        .cond_because(1, 4, 2, "slot")
        .cond_because(1, 4, 3, "slot")
        .rank(3, -1);
    for seed in 0..8 {
        let src = TestSource::new(spec.clone());
        let options = AnalyzerOptions::default()
            .with_threads(1 + seed as usize % 3)
            .with_shuffle_seed(seed);
        let a = analyze::<u32, M>(&src, options).unwrap();
        expect_marked(&src, &a, &[0, 1, 2, 3, 4]);
        if M::KIND == LogKind::First {
            let expected = KeyEdge {
                source: Some(1),
                condition: Some(3),
                target: 4,
                reason: "slot",
            };
            assert_eq!(why_keys(&a, 4).last(), Some(&expected), "seed {seed}");
        }
    }
}

// ---- errors ----

fn add_root_after_compute_fails<M: Logged>() {
    let src = TestSource::new(GraphSpec::new(3).root(0).edge(0, 1));
    let mut a = run::<M>(&src);
    match a.add_root(2, "late") {
        Err(AnalysisError::RootAfterCompletion { name, reason }) => {
            assert_eq!(name, "N2");
            assert_eq!(reason, "late");
        }
        other => panic!("add_root after completion = {other:?}"),
    }
    // Nothing changed.
    a.compute_marked_nodes().unwrap();
    expect_marked(&src, &a, &[0, 1]);
    assert!(a.id_of(&2).is_none());
}

fn bulk_roots_mark_and_log_like_single_roots<M: Logged>() {
    let src = TestSource::new(
        GraphSpec::new(6)
            .edge(0, 1)
            .edge(1, 2)
            .edge(3, 4)
            .edge(4, 2),
    );
    let mut single = Analyzer::<_, M>::new(&src, opts());
    single.add_root(0, "entry").unwrap();
    single.add_root(3, "entry").unwrap();
    single.compute_marked_nodes().unwrap();
    let mut bulk = Analyzer::<_, M>::new(&src, opts());
    bulk.add_roots([0, 3, 0], "entry").unwrap();
    bulk.compute_marked_nodes().unwrap();
    assert_eq!(marked_numbers(&bulk), marked_numbers(&single));
    assert_eq!(marked_numbers(&bulk), src.spec.sorted([0, 1, 2, 3, 4]));
    if M::KIND != LogKind::None {
        for n in [0, 1, 2, 3, 4] {
            assert_eq!(why_keys(&bulk, n), why_keys(&single, n), "why {n}");
        }
        assert_eq!(why_keys(&bulk, 3), vec![root_edge(3, "entry")]);
    }
    match bulk.add_roots([5], "late") {
        Err(AnalysisError::RootAfterCompletion { name, reason }) => {
            assert_eq!((name.as_str(), reason), ("N5", "late"));
        }
        other => panic!("add_roots after completion = {other:?}"),
    }
    assert!(bulk.add_roots([], "late").is_ok());
}

fn compute_twice_does_nothing_more<M: Logged>() {
    let spec = GraphSpec::new(4)
        .root(0)
        .edge(0, 1)
        .defer(1, 1)
        .edge(1, 2)
        .rule(0, 2, 3);
    let src = TestSource::new(spec);
    let mut a = run::<M>(&src);
    let before = marked_numbers(&a);
    a.compute_marked_nodes().unwrap();
    assert_eq!(marked_numbers(&a), before);
    expect_marked(&src, &a, &[0, 1, 2, 3]);
}

fn uncomputed_node_fails_then_failed<M: Logged>() {
    let spec = GraphSpec::new(4)
        .root(0)
        .chain(&[0, 1, 2])
        .defer(1, 0)
        .broken_compute(1)
        .edge(0, 3);
    let src = TestSource::new(spec);
    let mut a = Analyzer::<_, M>::new(&src, opts());
    a.add_root(0, "root").unwrap();
    match a.compute_marked_nodes() {
        Err(AnalysisError::Uncomputed { node, name, phase }) => {
            assert_eq!(node, id(&a, 1));
            assert_eq!(name, "N1");
            assert_eq!(phase, 0);
        }
        other => panic!("compute with a broken compute routine = {other:?}"),
    }
    assert_eq!(src.compute_calls(1), 1);
    assert_eq!(src.static_calls(1), 0);
    assert!(matches!(
        a.compute_marked_nodes(),
        Err(AnalysisError::Failed)
    ));
    assert!(matches!(
        a.compute_marked_nodes(),
        Err(AnalysisError::Failed)
    ));
    assert_eq!(src.compute_calls(1), 1);
    assert!(matches!(a.marked_nodes(), Err(AnalysisError::NotCompleted)));
    assert!(matches!(a.log(), Err(AnalysisError::NotCompleted)));
}

fn uncomputed_node_in_later_phase_reports_phase<M: Logged>() {
    let spec = GraphSpec::new(4)
        .root(0)
        .edge(0, 1)
        .defer(1, 0)
        .edge(0, 2)
        .defer(2, 2)
        .broken_compute(2)
        .edge(2, 3);
    let src = TestSource::new(spec);
    match analyze::<u32, M>(&src, opts()) {
        Err(AnalysisError::Uncomputed { name, phase, .. }) => {
            assert_eq!(name, "N2");
            assert_eq!(phase, 2);
        }
        other => panic!("analysis = {:?}", other.map(|_| ())),
    }
    assert_eq!(src.phases(), [1, 2]);
    assert_eq!(src.on_marked_count(3), 0);
}

fn queries_before_compute_are_not_completed<M: Logged>() {
    let src = TestSource::new(GraphSpec::new(2).root(0).edge(0, 1));
    let mut a = Analyzer::<_, M>::new(&src, opts());
    let root = a.add_root(0, "root").unwrap();
    assert_eq!(a.id_of(&0), Some(root));
    assert_eq!(*a.key(root).unwrap(), 0);
    assert!(!a.is_marked(root));
    assert!(matches!(a.marked_nodes(), Err(AnalysisError::NotCompleted)));
    assert!(matches!(a.log(), Err(AnalysisError::NotCompleted)));
    assert!(matches!(a.why(root), Err(AnalysisError::NotCompleted)));
    let mut out = Vec::new();
    assert!(matches!(
        write_dgml(&a, &mut out),
        Err(AnalysisError::NotCompleted)
    ));
    assert!(matches!(
        write_dot(&a, &mut out),
        Err(AnalysisError::NotCompleted)
    ));
    assert!(out.is_empty());
    // Marking still works afterwards.
    a.compute_marked_nodes().unwrap();
    expect_marked(&src, &a, &[0, 1]);
}

fn key_of_foreign_id_is_unknown<M: Logged>() {
    let small = TestSource::new(GraphSpec::new(1).root(0));
    let a = run::<M>(&small);
    let mut spec = GraphSpec::new(1000).root(0);
    for n in 1..1000 {
        spec = spec.edge(0, n);
    }
    let big = TestSource::new(spec);
    let b = run::<M>(&big);
    let foreign = *b
        .marked_nodes()
        .unwrap()
        .iter()
        .max_by_key(|id| id.index())
        .unwrap();
    assert!(foreign.index() > id(&a, 0).index());
    assert!(matches!(a.key(foreign), Err(AnalysisError::UnknownNode { node }) if node == foreign));
    assert!(matches!(a.name(foreign), Err(AnalysisError::UnknownNode { node }) if node == foreign));
    assert!(matches!(a.why(foreign), Err(AnalysisError::UnknownNode { node }) if node == foreign));
    assert!(!a.is_marked(foreign));
}

// ---- exports ----

fn exports_number_nodes_in_final_order<M: Logged>() {
    let spec = GraphSpec::new(4)
        .root(2)
        .edge(2, 0)
        .edge(0, 3)
        .rank(3, -1)
        .name(3, "<first> & \"quoted\"");
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    let mut dgml = Vec::new();
    write_dgml(&a, &mut dgml).unwrap();
    let dgml = String::from_utf8(dgml).unwrap();
    assert!(dgml.contains(r#"<Node Id="0" Label="&lt;first&gt; &amp; &quot;quoted&quot;" />"#));
    assert!(dgml.contains(r#"<Node Id="1" Label="N0" />"#));
    assert!(dgml.contains(r#"<Node Id="2" Label="N2" />"#));
    let mut dot = Vec::new();
    write_dot(&a, &mut dot).unwrap();
    let dot = String::from_utf8(dot).unwrap();
    assert!(dot.contains(r#"n0 [label="<first> & \"quoted\""];"#));
    let links = dgml.matches("<Link ").count();
    let arrows = dot.matches(" -> ").count();
    assert_eq!(links, arrows);
    match M::KIND {
        // Nodes only.
        LogKind::None => {
            assert_eq!(links, 0);
            assert!(!dgml.contains(r#"Label="root""#));
        }
        // root -> 2, 2 -> 0, 0 -> 3.
        LogKind::First | LogKind::Full => {
            assert_eq!(links, 3);
            assert!(dgml.contains(r#"<Node Id="3" Label="root" />"#));
            assert!(dgml.contains(r#"<Link Source="3" Target="2" Reason="" />"#));
            assert!(dot.contains("r0 -> n2;"));
            assert!(dot.contains(r#"n1 -> n0 [label="static"];"#));
        }
    }
}

// ---- size ----

fn wide_fan_out<M: Logged>() {
    // 70 000 nodes in one frontier: many work-stealing chunks (and more than one sub-step if
    // sub-steps are smaller than that). Each fans into 1 000 shared nodes (70 edges into each,
    // from all over the frontier) and waits conditionally on them.
    const WIDE: u32 = 70_000;
    const SHARED: u32 = 1_000;
    let total = 1 + WIDE + SHARED + 100;
    let mut spec = GraphSpec::new(total).root(0);
    for i in 1..=WIDE {
        let shared = 1 + WIDE + (i % SHARED);
        spec = spec
            .edge(0, i)
            .edge(i, shared)
            .cond(i, 1 + WIDE + SHARED + (i % 100), shared);
    }
    let src = TestSource::new(spec);
    let a = run::<M>(&src);
    let all: Vec<u32> = (0..total).collect();
    assert_eq!(marked_numbers(&a), all);
    src.check_invariants(&all.iter().copied().collect());
    check_log(&src, &a, &all.iter().copied().collect());
}

// ---- reason ids ----

/// Node 0 depends on node `i + 1` for `reasons[i]`.
struct ManyReasons {
    reasons: Vec<&'static str>,
}

impl ManyReasons {
    fn new(distinct: usize) -> Self {
        let reasons = (0..distinct)
            .map(|i| &*Box::leak(format!("reason {i}").into_boxed_str()))
            .collect();
        ManyReasons { reasons }
    }
}

impl NodeSource for ManyReasons {
    type Key = u64;
    fn static_dependencies(
        &self,
        _: crossgraph_graph::NodeId,
        &key: &u64,
        deps: &mut crossgraph_graph::Dependencies<u64>,
    ) {
        if key == 0 {
            for (i, &reason) in self.reasons.iter().enumerate() {
                deps.add(i as u64 + 1, reason);
            }
        }
    }
}

#[test]
fn first_mark_reasons_are_counted_by_text() {
    // About twice the limit in reason strings, but each text twice (the root's reason is
    // one more text): within the limit.
    let half = crossgraph_graph::FIRST_MARK_MAX_REASONS - 1;
    let mut src = ManyReasons::new(half);
    let copies: Vec<&'static str> = src
        .reasons
        .iter()
        .map(|r| &*Box::leak(r.to_string().into_boxed_str()))
        .collect();
    src.reasons.extend(copies);
    let mut a = Analyzer::<_, FirstMark>::new(&src, opts());
    a.add_root(0, "root").expect("before marking");
    a.compute_marked_nodes().expect("analyzes");
    for key in [1, half as u64, half as u64 + 1, 2 * half as u64] {
        let why = a.why(a.id_of(&key).expect("marked")).expect("logged");
        assert_eq!(why.len(), 2);
        assert_eq!(
            why[1].reason,
            format!("reason {}", (key - 1) as usize % half)
        );
    }
}

#[test]
#[should_panic(expected = "distinct reason texts")]
fn first_mark_refuses_more_reason_texts_than_it_can_carry() {
    let src = ManyReasons::new(crossgraph_graph::FIRST_MARK_MAX_REASONS);
    let mut a = Analyzer::<_, FirstMark>::new(&src, opts());
    a.add_root(0, "root").expect("before marking");
    let _ = a.compute_marked_nodes();
}
