//! crossgraph-nodes: the type-system view of the input, the `NodeFactory` and the node kinds
//! (compiled methods, import cells and sections, thunks, fixup signatures), and the
//! compilation that turns roots into marked nodes and hands them to the object writer.
//!
//! [`typesystem`] reads real assemblies (methods, signatures, IL bodies, custom attributes,
//! through `cildec`); [`type_system`] resolves types and members across the assemblies of a
//! compilation, lays types out by the CLI rules (generic value types over their type
//! arguments) and gives their ABI types; [`compilation`] is the node factory: its node kinds
//! (compiled methods, import cells and sections, thunks, resumption stubs, entry-point
//! tables), the JIT interface the baseline IL compiler asks, the compute routine that compiles
//! methods in parallel, and emission of the module and its image. What does not compile
//! (generic code, exception handling, ...) is listed with its reason and left to the
//! interpreter.
//!
//! ```no_run
//! use crossgraph_nodes::typesystem::Assembly;
//! use crossgraph_nodes::{CompileOptions, compile_assembly};
//!
//! let assembly = Assembly::load("/usr/lib/mono/4.5/mscorlib.dll")?;
//! let output = compile_assembly(&assembly.view()?, &CompileOptions::default())?;
//! println!("{} compiled, {} interpreted", output.compiled.len(), output.not_compiled.len());
//! std::fs::write("mscorlib.wasm", &output.module)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod compilation;
pub mod custom_attribute;
pub mod type_system;
pub mod typesystem;

pub use compilation::{
    CompileError, CompileOptions, CompileOutput, GraphLog, MapEntry, NodeKey, NotCompiledMethod,
    Roots, compile_assembly, compile_input,
};
