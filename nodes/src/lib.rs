//! crossgraph-nodes: the type-system view of the input, the `NodeFactory` and the node kinds
//! (compiled methods, import cells and sections, thunks, fixup signatures), and the
//! compilation that turns roots into marked nodes and hands them to the object writer.
//!
//! Built so far: [`typesystem`], reading real assemblies (methods, signatures, IL bodies).
//! The NodeFactory, the node kinds and the compilation arrive with the rest of the issue
//! "Compile real .NET assemblies".
#![deny(missing_docs)]

pub mod compilation;
pub mod typesystem;

pub use compilation::{CompileError, CompileOptions, CompileOutput, NodeKey, compile_assembly};
