//! crossgraph-graph: a crossgen2-style dependency analyzer that marks everything reachable
//! from a set of roots, expanded in parallel, with the same result for any thread count.
//!
//! A [`NodeSource`] names nodes by key and answers, per node, its static dependencies,
//! conditional dependencies (`A -> B once C is marked`), dynamic dependencies, and whether its
//! dependencies still have to be computed (deferred to a batch compute routine, per phase).
//! The [`Analyzer`] interns keys to [`NodeId`]s, marks to a monotone fixed point, runs
//! [`NodeSource::on_marked`] exactly once per node, and returns the marked nodes in the
//! source's total order ([`NodeSource::compare`]; a source that also gives a 64-bit
//! [`order_prefix`](NodeSource::order_prefix) of it gets a radix sort first). The mark
//! strategy ([`NoLog`], [`FirstMark`], [`FullGraph`]) is a type parameter; logs answer "why is
//! this here?" ([`Analyzer::why`]) and export to DGML ([`write_dgml`]) and Graphviz
//! ([`write_dot`]).
//!
//! It knows nothing of .NET or wasm.
//!
//! ```
//! use crossgraph_graph::{Analyzer, AnalyzerOptions, Dependencies, FirstMark, NodeId, NodeSource};
//!
//! /// Numbers: n depends on 2n and 3n while below 20; 5 depends on 7 once 10 is marked.
//! struct Numbers;
//!
//! impl NodeSource for Numbers {
//!     type Key = u32;
//!     fn static_dependencies(&self, _: NodeId, &n: &u32, deps: &mut Dependencies<u32>) {
//!         if 2 * n < 20 { deps.add(2 * n, "double"); }
//!         if 3 * n < 20 { deps.add(3 * n, "triple"); }
//!         if n == 5 { deps.add_conditional(7, 10, "seven once ten"); }
//!     }
//! }
//!
//! let mut analyzer = Analyzer::<_, FirstMark>::new(&Numbers, AnalyzerOptions::default().with_threads(2));
//! analyzer.add_root(1, "entry point")?;
//! analyzer.add_root(5, "exported")?;
//! analyzer.compute_marked_nodes()?;
//! let marked: Vec<u32> = analyzer
//!     .marked_nodes()?
//!     .iter()
//!     .map(|&id| *analyzer.key(id).unwrap())
//!     .collect();
//! assert_eq!(marked, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15, 16, 18]);
//!
//! // Why is 16 here? entry point -> 1 -> 2 -> 4 -> 8 -> 16.
//! let why = analyzer.why(analyzer.id_of(&16).unwrap())?;
//! let reasons: Vec<&str> = why.iter().map(|e| e.reason).collect();
//! assert_eq!(reasons, ["entry point", "double", "double", "double", "double"]);
//! # Ok::<(), crossgraph_graph::AnalysisError>(())
//! ```
#![deny(missing_docs)]

mod analyzer;
mod dgml;
mod dot;
mod error;
mod export;
mod id;
pub mod mark_log;
mod order;
mod partition;
mod pool;
mod prefetch;
mod reason;
mod shuffle;
mod source;

pub use analyzer::{AnalysisStats, Analyzer, AnalyzerOptions, DETERMINISM_SEED_VAR};
pub use dgml::write_dgml;
pub use dot::write_dot;
pub use error::AnalysisError;
pub use id::NodeId;
pub use mark_log::{
    FIRST_MARK_MAX_REASONS, FirstMark, FirstMarkLog, FullGraph, FullGraphLog, LogEdge, LoggedEdge,
    MarkLog, MarkStrategy, NoLog,
};
pub use pool::shared_pool;
pub use source::{ConditionalDependency, Dependencies, MarkedNode, NodeSource, Reason};
