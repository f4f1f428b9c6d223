//! Snapshots of the DGML and DOT exports of one small hand-made graph (review changes with
//! `cargo insta review`).
//!
//! The graph: two roots (`main`, `exported`), static calls, one conditional edge
//! (`List<int>.Grow()` is needed by `List<int>.Add(int)` once `List<int>` is constructed) and
//! one unreachable node. `Helper.Log(string)` is reached from both roots, so the first-mark log
//! keeps one edge into it and the full graph both.

mod common;

use crossgraph_graph::{
    Analyzer, AnalyzerOptions, FirstMark, FullGraph, MarkStrategy, write_dgml, write_dot,
};

use common::{GraphSpec, TestSource, analyze, marked_numbers};

fn spec() -> GraphSpec {
    GraphSpec::new(7)
        .name(0, "Program.Main()")
        .name(1, "List<int>.Add(int)")
        .name(2, "List<int>")
        .name(3, "Helper.Log(string)")
        .name(4, "Program.Exported()")
        .name(5, "List<int>.Grow()")
        .name(6, "Program.Unused()")
        .root_because(0, "main")
        .root_because(4, "exported")
        .edge_because(0, 1, "call")
        .edge_because(0, 2, "constructed")
        .edge_because(1, 3, "call")
        .edge_because(4, 3, "call")
        .cond_because(1, 5, 2, "virtual slot")
        .edge_because(6, 3, "call")
}

fn exports<M: MarkStrategy>(src: &TestSource) -> (String, String) {
    let a: Analyzer<'_, TestSource, M> =
        analyze(src, AnalyzerOptions::default().with_threads(2)).unwrap();
    assert_eq!(marked_numbers(&a), [0, 1, 2, 3, 4, 5]);
    let mut dgml = Vec::new();
    write_dgml(&a, &mut dgml).unwrap();
    let mut dot = Vec::new();
    write_dot(&a, &mut dot).unwrap();
    (
        String::from_utf8(dgml).unwrap(),
        String::from_utf8(dot).unwrap(),
    )
}

#[test]
fn first_mark_exports() {
    let (dgml, dot) = exports::<FirstMark>(&TestSource::new(spec()));
    insta::assert_snapshot!("dgml_first_mark", dgml);
    insta::assert_snapshot!("dot_first_mark", dot);
}

#[test]
fn full_graph_exports() {
    let (dgml, dot) = exports::<FullGraph>(&TestSource::new(spec()));
    insta::assert_snapshot!("dgml_full_graph", dgml);
    insta::assert_snapshot!("dot_full_graph", dot);
}
