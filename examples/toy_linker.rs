//! The analyzer as a library: a linker for a toy language, with its own node kinds.
//!
//! A toy program is a list of functions, each calling others, plus types whose methods are
//! kept only if the type is ever constructed (a conditional dependency, like a vtable slot).
//! The linker roots the exported functions, asks the analyzer what is reachable, prints the
//! kept items in order and why one of them is kept, and writes the graph as DOT.
//!
//! Run: `cargo run --example toy_linker`; its tests run with `cargo test --workspace`.

use std::collections::BTreeMap;

use crossgraph::graph::{
    Analyzer, AnalyzerOptions, Dependencies, FirstMark, NodeId, NodeSource, write_dot,
};

const PROGRAM: &str = "
export fn main: helper new:Circle
fn helper: log
fn log
fn unused: helper
type Circle: Circle.draw
type Square: Square.draw
fn Circle.draw: log
fn Square.draw: log
";

/// The toy language's node kinds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Item {
    Function(String),
    Constructed(String),
}

#[derive(Default)]
struct Program {
    exports: Vec<String>,
    calls: BTreeMap<String, Vec<String>>,
    constructs: BTreeMap<String, Vec<String>>,
    methods: BTreeMap<String, Vec<String>>,
}

fn parse(text: &str) -> Program {
    let mut program = Program::default();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (head, body) = line.split_once(':').unwrap_or((line, ""));
        let words: Vec<&str> = head.split_whitespace().collect();
        let targets = body.split_whitespace().map(str::to_string);
        match words.as_slice() {
            ["export", "fn", name] | ["fn", name] => {
                if words[0] == "export" {
                    program.exports.push(name.to_string());
                }
                let (news, calls): (Vec<String>, Vec<String>) =
                    targets.partition(|t| t.starts_with("new:"));
                program.calls.insert(name.to_string(), calls);
                program.constructs.insert(
                    name.to_string(),
                    news.iter().map(|n| n["new:".len()..].to_string()).collect(),
                );
            }
            ["type", name] => {
                program.methods.insert(name.to_string(), targets.collect());
            }
            _ => panic!("cannot parse {line:?}"),
        }
    }
    program
}

impl NodeSource for Program {
    type Key = Item;

    fn static_dependencies(&self, _: NodeId, item: &Item, deps: &mut Dependencies<Item>) {
        match item {
            Item::Function(name) => {
                for callee in self.calls.get(name).into_iter().flatten() {
                    deps.add(Item::Function(callee.clone()), "call");
                }
                for ty in self.constructs.get(name).into_iter().flatten() {
                    deps.add(Item::Constructed(ty.clone()), "new");
                }
            }
            Item::Constructed(_) => {}
        }
        // A type's methods are kept once the type is constructed, whoever references them.
        if let Item::Function(name) = item
            && name == "main"
        {
            for (ty, methods) in &self.methods {
                for method in methods {
                    deps.add_conditional(
                        Item::Function(method.clone()),
                        Item::Constructed(ty.clone()),
                        "virtual method of a constructed type",
                    );
                }
            }
        }
    }

    fn name(&self, item: &Item) -> String {
        match item {
            Item::Function(n) => format!("fn {n}"),
            Item::Constructed(t) => format!("new {t}"),
        }
    }
}

/// Links `text`: the kept items in order, the reasons `why` names, and the DOT graph.
fn link(text: &str, why: &str, threads: usize) -> (Vec<String>, Vec<&'static str>, String) {
    let program = parse(text);
    let mut analyzer: Analyzer<'_, Program, FirstMark> =
        Analyzer::new(&program, AnalyzerOptions::default().with_threads(threads));
    for export in &program.exports {
        analyzer
            .add_root(Item::Function(export.clone()), "exported")
            .expect("roots before marking");
    }
    analyzer
        .compute_marked_nodes()
        .expect("the toy graph links");
    let kept = analyzer
        .marked_nodes()
        .expect("completed")
        .iter()
        .map(|&n| analyzer.name(n).expect("own node"))
        .collect();
    let node = analyzer
        .id_of(&Item::Function(why.to_string()))
        .expect("interned");
    let reasons = analyzer
        .why(node)
        .expect("kept")
        .iter()
        .map(|e| e.reason)
        .collect();
    let mut dot = Vec::new();
    write_dot(&analyzer, &mut dot).expect("writes to memory");
    (kept, reasons, String::from_utf8(dot).expect("utf-8"))
}

fn main() {
    let (kept, reasons, dot) = link(PROGRAM, "Circle.draw", 2);
    println!("kept:");
    for item in &kept {
        println!("  {item}");
    }
    println!("why fn Circle.draw: {}", reasons.join(" -> "));
    println!("\n{dot}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_reachable_items_and_methods_of_constructed_types_only() {
        let (kept, reasons, dot) = link(PROGRAM, "Circle.draw", 2);
        assert_eq!(
            kept,
            [
                "fn Circle.draw",
                "fn helper",
                "fn log",
                "fn main",
                "new Circle"
            ]
        );
        assert_eq!(
            reasons,
            ["exported", "virtual method of a constructed type"]
        );
        assert!(dot.contains("color=blue"), "{dot}");
        // Same answer on one thread.
        assert_eq!(link(PROGRAM, "Circle.draw", 1).0, kept);
    }
}
