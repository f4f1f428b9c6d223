//! crossgraph: a crossgen2-style ahead-of-time compiler framework targeting WebAssembly
//! ReadyToRun images. This facade re-exports the workspace crates.
//!
//! ```
//! use crossgraph::graph::{Analyzer, AnalyzerOptions, Dependencies, NodeId, NodeSource};
//!
//! struct Chain;
//! impl NodeSource for Chain {
//!     type Key = u8;
//!     fn static_dependencies(&self, _: NodeId, &k: &u8, deps: &mut Dependencies<u8>) {
//!         if k < 3 { deps.add(k + 1, "next"); }
//!     }
//! }
//! let mut analyzer: Analyzer<'_, Chain> = Analyzer::new(&Chain, AnalyzerOptions::default());
//! analyzer.add_root(0, "start")?;
//! analyzer.compute_marked_nodes()?;
//! assert_eq!(analyzer.marked_nodes()?.len(), 4);
//! # Ok::<(), crossgraph::graph::AnalysisError>(())
//! ```
#![deny(missing_docs)]

pub mod allocator;

pub use crossgraph_codegen as codegen;
pub use crossgraph_graph as graph;
pub use crossgraph_nodes as nodes;
pub use crossgraph_runtime_core as runtime_core;
