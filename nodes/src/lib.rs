//! crossgraph-nodes: the type-system view of the input, the `NodeFactory` and the node kinds
//! (compiled methods, import cells and sections, thunks, fixup signatures), and the
//! compilation that turns roots into marked nodes and hands them to the object writer.
//!
//! Not built yet: this crate only fixes its place in the workspace (it will depend on
//! `crossgraph-graph`, `crossgraph-codegen` and `crossgraph-runtime-core`). The node kinds
//! arrive with the issue "Compile real .NET assemblies".
#![deny(missing_docs)]
