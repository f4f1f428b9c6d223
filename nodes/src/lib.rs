//! crossgraph-nodes: the type-system view of the input, the `NodeFactory` and the node kinds
//! (compiled methods, import cells and sections, thunks, fixup signatures), and the
//! compilation that turns roots into marked nodes and hands them to the object writer.
//!
//! Built so far: [`typesystem`] (reading real assemblies: methods, signatures, IL bodies) and
//! [`compilation`] (the first node kinds, compiling methods in the analyzer's compute
//! routine, emitting the module and its image). Fields, objects, UnmanagedCallersOnly and
//! runtime-async come with the rest of the issue "Compile real .NET assemblies".
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
