//! The compilation: roots go into the dependency analyzer; its compute routine compiles
//! deferred methods in parallel; the marked nodes become one wasm module with its image
//! (crossgen2's `Compilation` -> `NodeFactory` -> `ObjectWriter`).
//!
//! Node kinds ([`NodeKey`]):
//! - **compiled method** (crossgen2 `MethodWithGCInfo`): its dependencies are known only once
//!   compiled: its callees, the import cells of calls that leave the image, and the
//!   interpreter -> R2R thunk of its signature (not for `UnmanagedCallersOnly` methods). A
//!   method the baseline compiler refuses depends on its [`NodeKey::NotCompiled`] marker
//!   instead and stays interpreted, with the reason recorded;
//! - **MethodEntry import cells** (delay-load, fixup kind 0x13) for callees without R2R code
//!   here: another assembly's methods, methods the runtime provides, runtime-async methods'
//!   Task-returning entries, and (through a conditional dependency on the callee's
//!   `NotCompiled` marker, crossgen2's conditional edges) same-assembly methods that failed
//!   to compile. Each cell depends on its **import thunk** (the cell's first target) and, for
//!   managed callees, on the **R2R -> interpreter thunk** of the callee's signature;
//! - **portable entry points** of managed `ldftn` targets (a `PortableEntryPoint` import
//!   section of `[code, handle]` pairs whose code word is a delay-load cell with its own
//!   import thunk), depending on the target (compiled if it can be) and on the
//!   R2R -> interpreter thunk of its signature for targets that may have no R2R code;
//! - **helper-reached cells** (crossgen2's `DelayLoadHelperImport`s): string literals
//!   (`StringHandle` 0x1B), classes `newobj` allocates (`NewObject` 0x1C), array element
//!   types (`NewArray` 0x1D), `isinst`/`castclass` types (0x1E/0x1F), static fields
//!   (`FieldAddress` 0x20) and virtual methods `callvirt` dispatches (`VirtualEntry` 0x16, in
//!   a `StubDispatch` section: each cell depends on the R2R -> interpreter thunk of the
//!   method's signature, the code of an override without R2R code);
//! - **string-discoverable stubs** (R2R -> interpreter `I...`, interpreter -> R2R `M...`):
//!   marking one pulls in the single **InjectStringThunks** eager import (kind 0x39).
//!
//! Runtime-async methods (impl flag 0x2000) are compiled as their async variant (signature
//! flag `AsyncVariant` 0x100, an async continuation parameter, the task's result type),
//! listed in the instance entry-point table. A variant that awaits (`call X` + `call
//! AsyncHelpers.Await`) calls X's async variant (directly, or through an
//! [`NodeKey::AsyncVariantEntryImport`] cell), suspends when X does, and depends on its
//! **resumption stub** ([`NodeKey::ResumptionStub`]), which the runtime finds through the
//! `ResumptionStubEntryPoint` fixup (0x38) in the variant's fixup list; protocol and layout:
//! `crossgraph_runtime_core::abi::continuation`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};

use crossgraph_codegen::abi::{AbiType, Lowered};
use crossgraph_codegen::il::{
    CallTarget, CompiledBody, Constrained, FieldAccess, FunctionPointer, HandleKind, JitInterface,
    NewObject, NotCompiled, SiteKind, Suspension, ValueAccess, call_through_cell, compile,
    field_address_through_cell, function_pointer_through_cell, new_array_through_cell,
    new_object_through_cell, portable_entry_point_address, runtime_handle_through_cell,
    string_through_cell, type_check_through_cell, virtual_entry_through_cell,
};
use crossgraph_codegen::resumption::{AsyncHelpers, resumption_stub};
use crossgraph_codegen::thunk::{
    cell_import_thunk_function, define_once, import_runtime_helpers, interpreter_to_r2r,
    r2r_to_interpreter,
};
use crossgraph_codegen::{
    DataReloc, DefinedFunction, MethodAbi, ObjectModule, PointerWidth, SequenceId, SymbolId,
    ThunkDirection, WasmFuncType, WasmSignature, WasmValueType, lower_signature,
};
use crossgraph_graph::{
    AnalysisError, AnalysisStats, Analyzer, AnalyzerOptions, Dependencies, FirstMark, FullGraph,
    MarkStrategy, NoLog, NodeId, NodeSource, Reason, write_dgml, write_dot,
};
use crossgraph_runtime_core::abi::{
    ARRAY_STORE_HELPER, FIELD_ADDRESS_HELPER, IS_INSTANCE_HELPER, NEW_ARRAY_HELPER,
    NEW_OBJECT_HELPER, RUNTIME_HANDLE_HELPER, STRING_LITERAL_HELPER, THROW_HELPER,
    VIRTUAL_ENTRY_HELPER,
};
use crossgraph_runtime_core::format::{
    CodeRefSite, FixupRef, FixupSignature, Image, ImportCell, ImportSection, ImportSectionFlags,
    ImportSectionType, MethodEntryPoint, MethodRef, MethodSigFlags, StringThunk,
};
use crossgraph_runtime_core::loader::UNMANAGED_CALLERS_ONLY;
use rustc_hash::FxHashMap;

use crate::type_system::{ConstrainedTarget, Instantiation, MethodDefId, TypeSystem};
use crate::typesystem::{AssemblyView, MethodDef, TypeSystemError};

/// A node of the compilation graph, by its semantic key. Tokens are the input assembly's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeKey {
    /// A method to compile, by `MethodDef` token (crossgen2 `MethodWithGCInfo`).
    Method(u32),
    /// Marker: the method with this `MethodDef` token stays interpreted (emits nothing).
    NotCompiled(u32),
    /// The delay-load MethodEntry import cell (fixup 0x13) of a callee, by `MethodDef` or
    /// `MemberRef` token.
    MethodEntryImport(u32),
    /// The delay-load MethodEntry import cell of a runtime-async callee's async variant
    /// (flag `AsyncVariant` 0x100), called at a suspension point; emitted with its own import
    /// thunk.
    AsyncVariantEntryImport(u32),
    /// The import thunk a MethodEntry cell first points at (crossgen2 `WasmImportThunk`).
    ImportThunk(u32),
    /// The async resumption stub of the runtime-async method with this `MethodDef` token
    /// (crossgen2 `AsyncResumptionStub`), emitted with a `ResumptionStubEntryPoint` fixup
    /// (0x38) in its variant's fixup list.
    ResumptionStub(u32),
    /// The portable entry point of a managed method (what `ldftn` pushes): a delay-load cell
    /// plus the method's handle, in a `PortableEntryPoint` import section; emitted with its
    /// own import thunk.
    PortableEntryPoint(u32),
    /// The R2R -> interpreter thunk with this lookup string (`I` + signature).
    R2RToInterpreterThunk(String),
    /// The interpreter -> R2R thunk with this lookup string (`M` + signature).
    InterpreterToR2RThunk(String),
    /// The `InjectStringThunks` eager import (fixup kind 0x39).
    InjectStringThunks,
    /// The lazy `StringHandle` import cell (fixup kind 0x1B) of a string literal, by
    /// user-string token (crossgen2 `StringImport`): what `ldstr` loads.
    StringImport(u32),
    /// The lazy `NewObject` import cell (fixup kind 0x1C) of a class `newobj` allocates, by
    /// `TypeDef` or `TypeRef` token (crossgen2's `DelayLoadHelperImport` of a
    /// `NewObjectFixupSignature`).
    NewObjectImport(u32),
    /// The lazy `FieldAddress` import cell (fixup kind 0x20) of a static field `ldsfld`,
    /// `stsfld` or `ldsflda` reaches, by `Field` or `MemberRef` token (crossgen2's
    /// `DelayLoadHelperImport` of a `FieldFixupSignature`).
    FieldAddressImport(u32),
    /// The `NewArray` import cell (fixup kind 0x1D) of an element type `newarr` allocates
    /// arrays of, by `TypeDef`, `TypeRef` or `TypeSpec` token (crossgen2's
    /// `DelayLoadHelperImport` of a `NewArrayFixupSignature`).
    NewArrayImport(u32),
    /// The `IsInstanceOf` (`cast: false`, fixup kind 0x1E) or `ChkCast` (`cast: true`, 0x1F)
    /// import cell of a type `isinst` or `castclass` tests against, by `TypeDef`, `TypeRef` or
    /// `TypeSpec` token (crossgen2's `DelayLoadHelperImport` of a type-handle signature).
    TypeCheckImport {
        /// `castclass` (true) or `isinst` (false).
        cast: bool,
        /// The type's token.
        token: u32,
    },
    /// The `VirtualEntry` import cell (fixup kind 0x16) of a virtual method `callvirt` calls,
    /// by `MethodDef` or `MemberRef` token (crossgen2's `DelayLoadHelperImport` of a
    /// `VirtualEntry` signature in its dispatch imports): the runtime's helper finds the
    /// receiver's override through it.
    VirtualEntryImport(u32),
    /// The lazy `TypeHandle` import cell (fixup kind 0x10) of a type `ldtoken` loads, by
    /// `TypeDef`, `TypeRef` or `TypeSpec` token (crossgen2's `DelayLoadHelperImport` of a
    /// type-handle signature).
    TypeHandleImport(u32),
    /// The lazy `FieldHandle` import cell (fixup kind 0x12) of a field `ldtoken` loads (an
    /// array initializer's data, say), by `Field` or `MemberRef` token.
    FieldHandleImport(u32),
}

/// A kind of import cell compiled code reaches through one of the runtime's helpers: `ldstr`'s
/// strings, `newobj`'s classes, `newarr`'s element types, the types of `isinst` and
/// `castclass`, static fields. Each kind's cells form one lazy import section; every use of a
/// cell is the same op sequence (the cell's address, then the helper).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HelperCell {
    Literal,
    Class,
    Array,
    IsInstance,
    Cast,
    Field,
    Virtual,
    TypeHandle,
    FieldHandle,
}

impl HelperCell {
    /// Every kind, in the order their sections and helpers are written.
    const ALL: [HelperCell; 9] = [
        HelperCell::Literal,
        HelperCell::Class,
        HelperCell::Array,
        HelperCell::IsInstance,
        HelperCell::Cast,
        HelperCell::Field,
        HelperCell::Virtual,
        HelperCell::TypeHandle,
        HelperCell::FieldHandle,
    ];

    /// The kind and token of a node that is such a cell.
    fn of(key: &NodeKey) -> Option<(HelperCell, u32)> {
        Some(match *key {
            NodeKey::StringImport(token) => (HelperCell::Literal, token),
            NodeKey::NewObjectImport(token) => (HelperCell::Class, token),
            NodeKey::NewArrayImport(token) => (HelperCell::Array, token),
            NodeKey::TypeCheckImport { cast: false, token } => (HelperCell::IsInstance, token),
            NodeKey::TypeCheckImport { cast: true, token } => (HelperCell::Cast, token),
            NodeKey::FieldAddressImport(token) => (HelperCell::Field, token),
            NodeKey::VirtualEntryImport(token) => (HelperCell::Virtual, token),
            NodeKey::TypeHandleImport(token) => (HelperCell::TypeHandle, token),
            NodeKey::FieldHandleImport(token) => (HelperCell::FieldHandle, token),
            _ => return None,
        })
    }

    /// The kind of the compiled bodies' sites that use cells of this kind.
    fn site_kind(self) -> SiteKind {
        match self {
            HelperCell::Literal => SiteKind::String,
            HelperCell::Class => SiteKind::NewObject,
            HelperCell::Array => SiteKind::NewArray,
            HelperCell::IsInstance => SiteKind::IsInstance,
            HelperCell::Cast => SiteKind::Cast,
            HelperCell::Field => SiteKind::StaticField,
            HelperCell::Virtual => SiteKind::Virtual,
            HelperCell::TypeHandle => SiteKind::TypeHandle,
            HelperCell::FieldHandle => SiteKind::FieldHandle,
        }
    }

    /// The kind whose cells a site of `kind` uses (the inverse of
    /// [`HelperCell::site_kind`]); `None` for calls and function pointers.
    fn of_site(kind: SiteKind) -> Option<HelperCell> {
        HelperCell::ALL.into_iter().find(|h| h.site_kind() == kind)
    }

    /// The node of this kind's cell of `token` (the inverse of [`HelperCell::of`]), and why a
    /// body that uses it depends on it.
    fn node(self, token: u32) -> (NodeKey, Reason) {
        match self {
            HelperCell::Literal => (NodeKey::StringImport(token), "ldstr"),
            HelperCell::Class => (NodeKey::NewObjectImport(token), "newobj"),
            HelperCell::Array => (NodeKey::NewArrayImport(token), "newarr"),
            HelperCell::IsInstance => (NodeKey::TypeCheckImport { cast: false, token }, "isinst"),
            HelperCell::Cast => (NodeKey::TypeCheckImport { cast: true, token }, "castclass"),
            HelperCell::Field => (NodeKey::FieldAddressImport(token), "static field access"),
            HelperCell::Virtual => (NodeKey::VirtualEntryImport(token), "virtual call"),
            HelperCell::TypeHandle => (NodeKey::TypeHandleImport(token), "ldtoken"),
            HelperCell::FieldHandle => (NodeKey::FieldHandleImport(token), "ldtoken"),
        }
    }

    /// The cell's fixup signature.
    fn signature(self, token: u32) -> FixupSignature {
        match self {
            HelperCell::Literal => FixupSignature::StringHandle(token),
            HelperCell::Class => FixupSignature::NewObject(token),
            HelperCell::Array => FixupSignature::NewArray(token),
            HelperCell::IsInstance => FixupSignature::IsInstanceOf(token),
            HelperCell::Cast => FixupSignature::ChkCast(token),
            HelperCell::Field => FixupSignature::FieldAddress(token),
            HelperCell::Virtual => FixupSignature::VirtualEntry(MethodRef {
                flags: MethodSigFlags::NONE,
                token,
            }),
            HelperCell::TypeHandle => FixupSignature::TypeHandle(token),
            HelperCell::FieldHandle => FixupSignature::FieldHandle(token),
        }
    }

    /// The type of the section holding these cells.
    fn section_type(self) -> ImportSectionType {
        match self {
            HelperCell::Literal => ImportSectionType::STRING_HANDLE,
            // crossgen2's dispatch imports.
            HelperCell::Virtual => ImportSectionType::STUB_DISPATCH,
            _ => ImportSectionType::UNKNOWN,
        }
    }

    /// The runtime helper's import name and its parameter count (`[cell] -> [i32]` or, with
    /// a value below the cell, `[value, cell] -> [i32]`; all `i32`).
    fn helper(self) -> (&'static str, usize) {
        match self {
            HelperCell::Literal => (STRING_LITERAL_HELPER, 1),
            HelperCell::Class => (NEW_OBJECT_HELPER, 1),
            HelperCell::Array => (NEW_ARRAY_HELPER, 2),
            HelperCell::IsInstance | HelperCell::Cast => (IS_INSTANCE_HELPER, 2),
            HelperCell::Field => (FIELD_ADDRESS_HELPER, 1),
            HelperCell::Virtual => (VIRTUAL_ENTRY_HELPER, 2),
            HelperCell::TypeHandle | HelperCell::FieldHandle => (RUNTIME_HANDLE_HELPER, 1),
        }
    }

    /// What a use of the cell at image offset `cell_rva` becomes.
    fn sequence(self, cell_rva: u32, helper: SymbolId) -> Vec<crossgraph_codegen::Op> {
        match self {
            HelperCell::Literal => string_through_cell(cell_rva, helper),
            HelperCell::Class => new_object_through_cell(cell_rva, helper),
            HelperCell::Array => new_array_through_cell(cell_rva, helper),
            HelperCell::IsInstance | HelperCell::Cast => type_check_through_cell(cell_rva, helper),
            HelperCell::Field => field_address_through_cell(cell_rva, helper),
            HelperCell::Virtual => virtual_entry_through_cell(cell_rva, helper),
            HelperCell::TypeHandle | HelperCell::FieldHandle => {
                runtime_handle_through_cell(cell_rva, helper)
            }
        }
    }

    /// The `--map` row's kind and name of the cell.
    fn map_entry(self, factory: &Factory<'_, '_, '_>, token: u32) -> (&'static str, String) {
        let view = factory.ts.view(0);
        match self {
            HelperCell::Literal => ("StringImport", string_import_name(view, token)),
            HelperCell::Class => ("DelayLoadHelperImport", new_object_name(view, token)),
            HelperCell::Array => ("DelayLoadHelperImport", new_array_name(view, token)),
            HelperCell::IsInstance => {
                ("DelayLoadHelperImport", type_check_name(view, false, token))
            }
            HelperCell::Cast => ("DelayLoadHelperImport", type_check_name(view, true, token)),
            HelperCell::Field => ("DelayLoadHelperImport", field_address_name(view, token)),
            HelperCell::Virtual => (
                "DelayLoadHelperImport",
                factory.name(&NodeKey::VirtualEntryImport(token)),
            ),
            HelperCell::TypeHandle => (
                "DelayLoadHelperImport",
                format!("TypeHandle {}", type_token_name(view, token)),
            ),
            HelperCell::FieldHandle => ("DelayLoadHelperImport", field_handle_name(view, token)),
        }
    }
}

impl NodeKey {
    /// The node kind, as `--map` and `--stats` name it.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeKey::Method(_) => "MethodWithGCInfo",
            NodeKey::NotCompiled(_) => "NotCompiled",
            NodeKey::MethodEntryImport(_) => "DelayLoadMethodImport",
            NodeKey::AsyncVariantEntryImport(_) => "DelayLoadMethodImport",
            NodeKey::ImportThunk(_) => "WasmImportThunk",
            NodeKey::ResumptionStub(_) => "ResumptionStub",
            NodeKey::PortableEntryPoint(_) => "PortableEntryPoint",
            NodeKey::R2RToInterpreterThunk(_) => "R2RToInterpreterThunk",
            NodeKey::InterpreterToR2RThunk(_) => "InterpreterToR2RThunk",
            NodeKey::InjectStringThunks => "InjectStringThunksImport",
            NodeKey::StringImport(_) => "StringImport",
            NodeKey::NewObjectImport(_)
            | NodeKey::FieldAddressImport(_)
            | NodeKey::NewArrayImport(_)
            | NodeKey::TypeCheckImport { .. }
            | NodeKey::VirtualEntryImport(_)
            | NodeKey::TypeHandleImport(_)
            | NodeKey::FieldHandleImport(_) => "DelayLoadHelperImport",
        }
    }

    /// A 64-bit prefix of the derived `Ord` (the analyzer's final order, see
    /// `NodeSource::order_prefix`): the variant's declaration rank in the top 8 bits, then the
    /// token (`TypeCheckImport`: `cast` above it), or a thunk's first 6 lookup-string bytes
    /// zero-padded (so a string sorts no later than any string it starts).
    pub fn order_prefix(&self) -> u64 {
        let (rank, payload): (u64, u64) = match self {
            NodeKey::Method(t) => (0, u64::from(*t)),
            NodeKey::NotCompiled(t) => (1, u64::from(*t)),
            NodeKey::MethodEntryImport(t) => (2, u64::from(*t)),
            NodeKey::AsyncVariantEntryImport(t) => (3, u64::from(*t)),
            NodeKey::ImportThunk(t) => (4, u64::from(*t)),
            NodeKey::ResumptionStub(t) => (5, u64::from(*t)),
            NodeKey::PortableEntryPoint(t) => (6, u64::from(*t)),
            NodeKey::R2RToInterpreterThunk(s) => (7, string_prefix(s)),
            NodeKey::InterpreterToR2RThunk(s) => (8, string_prefix(s)),
            NodeKey::InjectStringThunks => (9, 0),
            NodeKey::StringImport(t) => (10, u64::from(*t)),
            NodeKey::NewObjectImport(t) => (11, u64::from(*t)),
            NodeKey::FieldAddressImport(t) => (12, u64::from(*t)),
            NodeKey::NewArrayImport(t) => (13, u64::from(*t)),
            NodeKey::TypeCheckImport { cast, token } => {
                (14, u64::from(*cast) << 32 | u64::from(*token))
            }
            NodeKey::VirtualEntryImport(t) => (15, u64::from(*t)),
            NodeKey::TypeHandleImport(t) => (16, u64::from(*t)),
            NodeKey::FieldHandleImport(t) => (17, u64::from(*t)),
        };
        rank << 56 | payload
    }
}

/// The first 6 bytes of `s`, big-endian, zero-padded: monotone in `s`'s byte order.
fn string_prefix(s: &str) -> u64 {
    let mut bytes = [0u8; 8];
    let head = &s.as_bytes()[..s.len().min(6)];
    bytes[2..2 + head.len()].copy_from_slice(head);
    u64::from_be_bytes(bytes)
}

/// Which methods are roots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Roots {
    /// Every method with an IL body (crossgen2's default for an input assembly).
    #[default]
    AllMethods,
    /// Public methods of public types (the assembly's callable surface).
    PublicSurface,
    /// Methods by `Namespace.Type::Method` name (every overload).
    Named(Vec<String>),
}

/// Which mark log the analysis keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GraphLog {
    /// None (fastest).
    #[default]
    None,
    /// The first edge that marked each node: enough for `why`.
    FirstMark,
    /// Every edge.
    Full,
}

/// Options of a compilation.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// Worker threads (`None`: rayon's global pool).
    pub threads: Option<usize>,
    /// Roots.
    pub roots: Roots,
    /// Shuffle the mark order with this seed (determinism stress mode; the output must not
    /// change).
    pub shuffle_seed: Option<u64>,
    /// Mark log to keep; with a log, [`CompileOutput::dgml`] and [`CompileOutput::dot`] are
    /// filled.
    pub log: GraphLog,
    /// Node names to explain (`why`); needs a log.
    pub why: Vec<String>,
    /// Fill [`CompileOutput::map`] (crossgen2's `--map`): one entry per emitted node. Off by
    /// default, as in crossgen2: naming some 60,000 nodes of mscorlib is a visible part of
    /// emission.
    pub map: bool,
}

/// A method that stays interpreted, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotCompiledMethod {
    /// Its token.
    pub token: u32,
    /// `Namespace.Type::Method`.
    pub name: String,
    /// Why it was not compiled.
    pub reason: String,
}

/// One emitted node, for `--map`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapEntry {
    /// Node kind ([`NodeKey::kind`]).
    pub kind: &'static str,
    /// Node name.
    pub name: String,
    /// Where it lives: `code` (a function) or `image` (bytes of the image).
    pub section: &'static str,
    /// Offset in bytes: of the function body in the code section's payload, or the RVA in
    /// the image.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// A chain of reasons that pulled a node in, root first: `(node name, reason)`.
pub type WhyChain = Vec<(String, String)>;

/// The result of compiling one assembly.
#[derive(Clone, Debug)]
pub struct CompileOutput {
    /// The wasm module with its image.
    pub module: Vec<u8>,
    /// Compiled methods `(token, name)`, in token order.
    pub compiled: Vec<(u32, String)>,
    /// Methods left to the interpreter, in token order.
    pub not_compiled: Vec<NotCompiledMethod>,
    /// Nodes the analyzer marked.
    pub marked_nodes: usize,
    /// Marked nodes by kind.
    pub nodes_by_kind: BTreeMap<&'static str, usize>,
    /// Analysis statistics (per-phase times).
    pub analysis: AnalysisStats,
    /// Wall time of emission (layout, image, object writer, validation): the sum of the
    /// `emit:` entries of [`CompileOutput::phases`].
    pub emit_time: std::time::Duration,
    /// Wall time of each phase, in the order they ran: `read methods`, `lower signatures`,
    /// `intern symbols`, `analysis` (broken down in [`CompileOutput::analysis`]), `log
    /// exports`, `drop analyzer`, then emission's `emit: layout` (outcomes, import sections,
    /// the image), `emit: call sites` (bodies rewritten for the image), `emit: thunks`,
    /// `emit: encode module`, `emit: validate module`, `emit: map` (the map when
    /// [`CompileOptions::map`] asks for it; freeing the emitted bodies). Together they are the
    /// compile's wall time less reading the assembly and building the type system, which the
    /// caller does. Per phase, a 1-thread and a 2-thread compile show what scales
    /// (`cargo bench --bench compile` prints both).
    pub phases: Vec<(&'static str, std::time::Duration)>,
    /// Emitted nodes with offsets and sizes, in output order; empty unless
    /// [`CompileOptions::map`] asked for them.
    pub map: Vec<MapEntry>,
    /// The mark log as DGML, when a log was kept.
    pub dgml: Option<String>,
    /// The mark log as Graphviz DOT, when a log was kept.
    pub dot: Option<String>,
    /// For each name in [`CompileOptions::why`]: the chain, or why there is none.
    pub why: Vec<(String, Result<WhyChain, String>)>,
    /// Problems that did not stop the compilation (missing references, ...), one per line.
    pub diagnostics: Vec<String>,
}

/// Why a compilation failed (a method the compiler cannot handle is not a failure).
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Reading the input failed.
    #[error(transparent)]
    TypeSystem(#[from] TypeSystemError),
    /// The dependency analysis failed.
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    /// Writing the module failed.
    #[error(transparent)]
    Write(#[from] crossgraph_codegen::WriteError),
    /// Encoding the image failed.
    #[error(transparent)]
    Format(#[from] crossgraph_runtime_core::format::FormatError),
    /// Building a thunk failed.
    #[error(transparent)]
    Thunk(#[from] crossgraph_codegen::thunk::ThunkError),
    /// Building a resumption stub failed.
    #[error(transparent)]
    ResumptionStub(#[from] crossgraph_codegen::resumption::ResumptionStubError),
    /// A named root matches no method of the input.
    #[error("{path}: no method named {name:?} (roots are written Namespace.Type::Method)")]
    UnknownRoot {
        /// The input file.
        path: std::path::PathBuf,
        /// The name given.
        name: String,
    },
}

/// Method impl flag of runtime-async methods (`MethodImplAttributes.Async`, 0x2000).
pub const RUNTIME_ASYNC: u16 = 0x2000;

/// The well-known suspension point of runtime-async code.
const AWAIT: &str = "System.Runtime.CompilerServices.AsyncHelpers::Await";

struct Plan {
    name: String,
    /// The signature its code has (the async variant's for runtime-async methods).
    signature: Result<WasmSignature, String>,
    uco: bool,
    is_async: bool,
}

/// The cell of `token`'s row in `cells` (one per row of table `table`, named `what`).
fn row_cell<'c>(
    cells: &'c [OnceLock<External>],
    token: u32,
    table: u32,
    what: &str,
) -> Result<&'c OnceLock<External>, String> {
    cells
        .get((token & 0x00ff_ffff) as usize)
        .filter(|_| token >> 24 == table)
        .ok_or_else(|| format!("0x{token:08x} is not a {what} of the input"))
}

/// A `MemberRef` callee of the input ([`Factory::external_entry`]).
struct External {
    /// The method it names.
    target: Result<MethodDefId, String>,
    /// Its lowered signature.
    signature: Result<WasmSignature, String>,
}

/// A dense map keyed by `MethodDef` token (indexed by row id): 27k lookups per compile stay
/// array reads. Other tokens are never present.
struct ByMethodDef<T>(Vec<Option<T>>);

impl<T> ByMethodDef<T> {
    fn new() -> Self {
        ByMethodDef(Vec::new())
    }

    fn index(token: u32) -> Option<usize> {
        (token >> 24 == 0x06).then_some((token & 0x00ff_ffff) as usize)
    }

    fn insert(&mut self, token: u32, value: T) {
        let i = Self::index(token).expect("a MethodDef token");
        if self.0.len() <= i {
            self.0.resize_with(i + 1, || None);
        }
        self.0[i] = Some(value);
    }

    fn get(&self, token: &u32) -> Option<&T> {
        Self::index(*token).and_then(|i| self.0.get(i)?.as_ref())
    }

    fn contains_key(&self, token: &u32) -> bool {
        self.get(token).is_some()
    }
}

impl<T> std::ops::Index<&u32> for ByMethodDef<T> {
    type Output = T;

    fn index(&self, token: &u32) -> &T {
        self.get(token)
            .unwrap_or_else(|| panic!("no entry for method 0x{token:08x}"))
    }
}

/// The node source: the type system plus compile results (crossgen2's `NodeFactory`).
struct Factory<'t, 'v, 'a> {
    ts: &'t TypeSystem<'v, 'a>,
    plans: ByMethodDef<Plan>,
    symbols: ByMethodDef<SymbolId>,
    /// Resumption-stub symbols of runtime-async methods.
    stubs: ByMethodDef<SymbolId>,
    /// The runtime's async helpers (imported when a resumption stub is emitted).
    async_helpers: AsyncHelpers,
    /// The runtime's throw helper (imported if a compiled body throws).
    throw_helper: SymbolId,
    /// The runtime's array-store check (imported if a compiled body stores references into
    /// arrays).
    array_store_helper: SymbolId,
    /// `MemberRef` callees, by row: resolved and lowered once, lock-free reads.
    externals: Vec<OnceLock<External>>,
    /// `MethodSpec` callees (generic method instantiations), by row, likewise.
    method_specs: Vec<OnceLock<External>>,
    /// Compile results by `MethodDef` row (set once by the compute routine).
    results: Vec<OnceLock<Result<CompiledBody, NotCompiled>>>,
    diagnostics: Mutex<BTreeSet<String>>,
}

const POINTER: PointerWidth = PointerWidth::Wasm32;

fn lower(abi: &MethodAbi) -> Result<WasmSignature, String> {
    lower_signature(abi, POINTER).map_err(|e| e.to_string())
}

impl Factory<'_, '_, '_> {
    /// The signature of a method's code, from metadata.
    fn plan_signature(&self, method: &MethodDef) -> Result<WasmSignature, String> {
        let sig = self
            .ts
            .method_sig(0, method.token)
            .map_err(|e| e.to_string())?;
        let uco = method.unmanaged_callers_only.is_some();
        let mut abi = self.ts.method_abi(0, &sig, uco).map_err(|e| short(&e))?;
        if method.impl_flags & RUNTIME_ASYNC != 0 {
            let result = self
                .ts
                .task_result(0, &sig.return_type.type_)
                .ok_or("runtime-async method whose return type is not Task or ValueTask")?;
            abi.ret = match result {
                None => AbiType::Void,
                Some(t) => self.ts.abi_type(0, t).map_err(|e| short(&e))?,
            };
            abi.async_call = true;
        }
        lower(&abi)
    }

    fn signature_of(&self, token: u32) -> Option<WasmSignature> {
        if token >> 24 == 0x06 {
            let plan = self.plans.get(&token)?;
            if plan.is_async {
                // Callers reach the Task-returning entry, which the runtime provides.
                return self.task_entry_signature(token).ok();
            }
            return plan.signature.clone().ok();
        }
        let cells = match token >> 24 {
            0x0a => &self.externals,
            0x2b => &self.method_specs,
            _ => return None,
        };
        cells
            .get((token & 0x00ff_ffff) as usize)?
            .get()?
            .signature
            .clone()
            .ok()
    }

    /// The compile result of a method of the input, once computed.
    fn result(&self, token: u32) -> Option<&Result<CompiledBody, NotCompiled>> {
        self.results
            .get((token & 0x00ff_ffff) as usize)
            .filter(|_| token >> 24 == 0x06)?
            .get()
    }

    /// The managed signature of a runtime-async method's Task-returning entry.
    fn task_entry_signature(&self, token: u32) -> Result<WasmSignature, String> {
        let sig = self.ts.method_sig(0, token).map_err(|e| e.to_string())?;
        let abi = self.ts.method_abi(0, &sig, false).map_err(|e| short(&e))?;
        lower(&abi)
    }

    fn external(&self, token: u32) -> Result<WasmSignature, String> {
        match token >> 24 {
            0x2b => self.method_spec_entry(token)?.signature.clone(),
            _ => self.external_entry(token)?.signature.clone(),
        }
    }

    /// The `MethodSpec` `token` (a generic method instantiated over concrete types): the
    /// method it instantiates, and its signature lowered over the type arguments (once per
    /// row). Calls go through the `MethodSpec`'s cell; the runtime resolves the instantiation.
    fn method_spec_entry(&self, token: u32) -> Result<&External, String> {
        let cell = row_cell(&self.method_specs, token, 0x2b, "MethodSpec")?;
        Ok(cell.get_or_init(|| {
            let spec = self.ts.method_spec(0, token).map_err(|e| short(&e));
            let target = spec.clone().and_then(|(method, _)| match method >> 24 {
                0x06 => Ok(MethodDefId {
                    assembly: 0,
                    token: method,
                }),
                _ => self.ts.resolve_method(0, method).map_err(|e| short(&e)),
            });
            let signature = spec.and_then(|(method, method_args)| {
                target.clone()?;
                let type_args = self
                    .ts
                    .member_ref_type_args(0, method)
                    .map_err(|e| short(&e))?;
                let sig = self.ts.method_sig(0, method).map_err(|e| short(&e))?;
                let abi = self
                    .ts
                    .method_abi_in(
                        0,
                        &sig,
                        false,
                        Instantiation {
                            types: &type_args,
                            methods: &method_args,
                        },
                    )
                    .map_err(|e| short(&e))?;
                lower(&abi)
            });
            External { target, signature }
        }))
    }

    /// The `MemberRef` `token`, resolved to the method it names and lowered (once per row).
    fn external_entry(&self, token: u32) -> Result<&External, String> {
        let cell = row_cell(&self.externals, token, 0x0a, "MemberRef")?;
        // A race resolves twice; both agree, the first is kept.
        Ok(cell.get_or_init(|| {
            let target = self.ts.resolve_method(0, token).map_err(|e| {
                if let TypeSystemError::MissingReference { .. } = e {
                    self.diagnostics
                        .lock()
                        .expect("diagnostics poisoned")
                        .insert(e.to_string());
                }
                short(&e)
            });
            let signature = target.clone().and_then(|target| {
                // A method of a generic instantiation (`List<int>::Add`), lowered over its
                // type arguments; the runtime resolves the instantiation from the cell's
                // `MemberRef`.
                let type_args = self
                    .ts
                    .member_ref_type_args(0, token)
                    .map_err(|e| short(&e))?;
                if target.assembly == 0 && type_args.is_empty() {
                    return Err("member reference into the input itself".to_string());
                }
                let sig = self.ts.method_sig(0, token).map_err(|e| short(&e))?;
                let abi = self
                    .ts
                    .method_abi_in(
                        0,
                        &sig,
                        false,
                        Instantiation {
                            types: &type_args,
                            methods: &[],
                        },
                    )
                    .map_err(|e| short(&e))?;
                lower(&abi)
            });
            External { target, signature }
        }))
    }

    fn compile_method(&self, token: u32) -> Result<CompiledBody, NotCompiled> {
        let refuse = |reason: String| NotCompiled { reason };
        let plan = self
            .plans
            .get(&token)
            .ok_or_else(|| refuse("unknown method".into()))?;
        let signature = plan.signature.clone().map_err(refuse)?;
        let view = self.ts.view(0);
        let body = view
            .method_body(token)
            .map_err(|e| refuse(e.to_string()))?
            .ok_or_else(|| refuse("no IL body".into()))?;
        if !body.exception_clauses.is_empty() {
            return Err(refuse("exception handling".into()));
        }
        let local_types = self
            .ts
            .locals_abi(0, token)
            .map_err(|e| refuse(short(&e)))?;
        // A struct local lives in the frame (`Jit::local_struct`); its wasm local, a
        // placeholder, is never read.
        let locals = local_types
            .iter()
            .enumerate()
            .map(|(i, ty)| match ty.lower(POINTER, "local") {
                Ok(Lowered::Value(v)) => Ok(v),
                Ok(Lowered::ByRef { size, align }) if size > 0 && align <= 8 => {
                    Ok(POINTER.value_type())
                }
                _ => Err(refuse(format!(
                    "local {i} is an empty or over-aligned struct"
                ))),
            })
            .collect::<Result<Vec<WasmValueType>, _>>()?;
        let mut compiled = compile(
            &signature,
            &locals,
            &body.instructions,
            &mut Jit {
                factory: self,
                token,
                locals: &local_types,
            },
        )?;
        // Encoded here, in the parallel batch: emission then copies bytes.
        compiled.encode_runs();
        Ok(compiled)
    }

    /// Whether `callvirt token` calls exactly that method (`true`): it is not virtual, or it
    /// is `final` (`MethodAttributes` 0x0040 Virtual, 0x0020 Final; ECMA-335 II.23.1.10), so
    /// no override can be reached; `false` when the receiver's type picks the override.
    ///
    /// # Errors
    /// The reason the callee cannot be told (unresolved, a generic method instantiation).
    fn exact_callee(&self, token: u32) -> Result<bool, String> {
        const VIRTUAL: u16 = 0x0040;
        const FINAL: u16 = 0x0020;
        let method = match token >> 24 {
            0x06 => MethodDefId { assembly: 0, token },
            0x0a => self.external_entry(token)?.target.clone()?,
            0x2b => self.method_spec_entry(token)?.target.clone()?,
            _ => return Err("not a method token".into()),
        };
        let flags = self
            .ts
            .view(method.assembly)
            .metadata()
            .tables()
            .method_def(method.token & 0x00ff_ffff)
            .map_err(|e| e.to_string())?
            .flags;
        Ok(flags & VIRTUAL == 0 || flags & FINAL != 0)
    }

    /// What `newobj ctor` constructs: the class it allocates, as a token of the input
    /// assembly (`TypeDef`, or `TypeRef` for another assembly's class), once the type system
    /// agrees it is a plain class ([`TypeSystem::plain_class`]); or a value type, constructed
    /// in place (in a frame slot when it is one primitive or reference, else in a struct
    /// temporary). Otherwise the reason.
    fn new_object_type(&self, ctor: u32) -> Result<Constructed, String> {
        use cildec::{Rid, TableId, Token};
        let tables = self.ts.view(0).metadata().tables();
        let owner = match ctor >> 24 {
            0x06 => {
                let class = tables
                    .type_of_method(Rid::new(ctor & 0x00ff_ffff))
                    .map_err(|e| e.to_string())?
                    .ok_or("a constructor outside any type")?;
                Token::new(TableId::TypeDef, class.get())
            }
            0x0a => {
                let row = tables
                    .member_ref(ctor & 0x00ff_ffff)
                    .map_err(|e| e.to_string())?;
                match row.class.table() {
                    Some(TableId::TypeDef | TableId::TypeRef) => row.class,
                    // A generic instantiation: a class allocated through the cell of its
                    // `TypeSpec` (the runtime resolves the instantiation), a value type laid
                    // out over its type arguments.
                    Some(TableId::TypeSpec) => {
                        let view = self.ts.view(0);
                        let spec = tables
                            .type_spec(row.class.rid())
                            .map_err(|e| e.to_string())?;
                        let blob = view
                            .metadata()
                            .blobs()
                            .get(spec.signature)
                            .map_err(|e| e.to_string())?;
                        let sig = cildec::TypeSpecSig::parse(blob).map_err(|e| e.to_string())?;
                        let cildec::Type::GenericInst {
                            def, is_value_type, ..
                        } = sig.type_
                        else {
                            return Err(
                                "newobj of a TypeSpec that is no generic instantiation".into()
                            );
                        };
                        if is_value_type {
                            let abi = self.ts.abi_type(0, &sig.type_).map_err(|e| short(&e))?;
                            return Ok(match access_of(&abi) {
                                Some(access) if abi.size(POINTER) <= 8 => {
                                    Constructed::Value(access)
                                }
                                _ => Constructed::Struct(abi.size(POINTER)),
                            });
                        }
                        let class = self.ts.resolve_type(0, def).map_err(|e| short(&e))?;
                        self.ts.plain_class(class)?;
                        return Ok(Constructed::Class(row.class.value()));
                    }
                    _ => return Err("newobj through a module reference".into()),
                }
            }
            _ => return Err("newobj through a method instantiation".into()),
        };
        let class = self.ts.resolve_type(0, owner).map_err(|e| short(&e))?;
        if self.ts.layout(class).map_err(|e| short(&e))?.is_value_type {
            let abi = self.ts.abi_of_def(class).map_err(|e| short(&e))?;
            return Ok(match access_of(&abi) {
                Some(access) if abi.size(POINTER) <= 8 => Constructed::Value(access),
                _ => Constructed::Struct(abi.size(POINTER)),
            });
        }
        self.ts.plain_class(class)?;
        Ok(Constructed::Class(owner.value()))
    }

    /// Whether a same-assembly callee is called directly (it may still fail to compile;
    /// then the call goes through its cell).
    fn direct(&self, token: u32) -> bool {
        token >> 24 == 0x06 && self.symbols.contains_key(&token) && {
            let plan = &self.plans[&token];
            !plan.uco && !plan.is_async
        }
    }
}

/// What a `newobj` constructs ([`Factory::new_object_type`]).
enum Constructed {
    /// A class, by token: allocated through its `NewObject` cell.
    Class(u32),
    /// A value type of one primitive or reference, by its `ldind` suffix: constructed in a
    /// frame slot.
    Value(&'static str),
    /// Any other value type, by its size in bytes: constructed in a frame temporary.
    Struct(u32),
}

/// A type-system error without the file prefix (reasons are per method, the file is known).
fn short(e: &TypeSystemError) -> String {
    match e {
        TypeSystemError::Unresolved { message, .. } => message.clone(),
        TypeSystemError::MissingReference { assembly, item, .. } => {
            format!("{item} is in assembly {assembly}, which is not given (-r)")
        }
        other => other.to_string(),
    }
}

struct Jit<'f, 't, 'v, 'a> {
    factory: &'f Factory<'t, 'v, 'a>,
    /// The method being compiled.
    token: u32,
    /// Its IL locals' types.
    locals: &'f [AbiType],
}

impl JitInterface for Jit<'_, '_, '_, '_> {
    fn call_target(&mut self, token: u32) -> CallTarget {
        let f = self.factory;
        match token >> 24 {
            0x06 => {
                let Some(plan) = f.plans.get(&token) else {
                    return CallTarget::Unsupported("unknown method".into());
                };
                if plan.uco {
                    return CallTarget::Unsupported(
                        "UnmanagedCallersOnly methods cannot be called from managed code".into(),
                    );
                }
                if f.direct(token) {
                    return match &plan.signature {
                        Ok(signature) => CallTarget::Direct {
                            symbol: f.symbols[&token],
                            signature: signature.clone(),
                        },
                        Err(reason) => CallTarget::Unsupported(reason.clone()),
                    };
                }
                match f.signature_of(token) {
                    Some(signature) => CallTarget::Import { signature },
                    None => CallTarget::Unsupported(match &plan.signature {
                        Err(reason) => reason.clone(),
                        Ok(_) => "callee signature cannot be lowered".into(),
                    }),
                }
            }
            0x0a | 0x2b => match f.external(token) {
                Ok(signature) => CallTarget::Import { signature },
                Err(reason) => CallTarget::Unsupported(reason),
            },
            _ => CallTarget::Unsupported("not a method token".into()),
        }
    }

    fn throw_helper(&mut self) -> Result<SymbolId, String> {
        Ok(self.factory.throw_helper)
    }

    fn array_store_helper(&mut self) -> Result<SymbolId, String> {
        Ok(self.factory.array_store_helper)
    }

    fn new_object(&mut self, ctor: u32) -> NewObject {
        match self.factory.new_object_type(ctor) {
            Ok(Constructed::Class(type_token)) => NewObject::Class {
                type_token,
                ctor: self.call_target(ctor),
            },
            Ok(Constructed::Value(access)) => NewObject::Value {
                access,
                ctor: self.call_target(ctor),
            },
            Ok(Constructed::Struct(size)) => NewObject::Struct {
                size,
                ctor: self.call_target(ctor),
            },
            Err(reason) => NewObject::Unsupported(reason),
        }
    }

    fn constrained_call(&mut self, constraint: u32, method: u32) -> Result<Constrained, String> {
        let ts = self.factory.ts;
        let table = match constraint >> 24 {
            0x01 => cildec::TableId::TypeRef,
            0x02 => cildec::TableId::TypeDef,
            _ => return Err("a generic or constructed constraint".into()),
        };
        let token = cildec::Token::new(table, constraint & 0x00ff_ffff);
        match ts
            .constrained_target(0, token, method)
            .map_err(|e| short(&e))?
        {
            ConstrainedTarget::Reference => Ok(Constrained::Dereference),
            ConstrainedTarget::Implemented(m) if m.assembly == 0 => {
                Ok(Constrained::Direct { method: m.token })
            }
            ConstrainedTarget::Implemented(_) => {
                Err("implemented by a value type of another assembly".into())
            }
            ConstrainedTarget::Boxed => Ok(Constrained::Box),
        }
    }

    fn callvirt_target(&mut self, token: u32) -> CallTarget {
        let f = self.factory;
        match f.exact_callee(token) {
            Ok(true) => self.call_target(token),
            Ok(false) if f.plans.get(&token).is_some_and(|p| p.is_async) => {
                CallTarget::Unsupported("virtual call of a runtime-async method".into())
            }
            Ok(false) => match f.signature_of(token) {
                Some(signature) => CallTarget::Virtual { signature },
                None => CallTarget::Unsupported(match token >> 24 {
                    0x0a => f
                        .external(token)
                        .err()
                        .unwrap_or_else(|| "callee signature cannot be lowered".into()),
                    _ => match f.plans.get(&token).map(|p| &p.signature) {
                        Some(Err(reason)) => reason.clone(),
                        _ => "callee signature cannot be lowered".into(),
                    },
                }),
            },
            Err(reason) => CallTarget::Unsupported(reason),
        }
    }

    fn function_pointer(&mut self, token: u32) -> FunctionPointer {
        let f = self.factory;
        match (f.plans.get(&token), f.symbols.get(&token)) {
            (Some(plan), Some(&symbol)) if plan.uco => match &plan.signature {
                Ok(signature) => FunctionPointer::Unmanaged {
                    symbol,
                    signature: signature.clone(),
                },
                Err(reason) => FunctionPointer::Unsupported(reason.clone()),
            },
            (Some(plan), _) => match &plan.signature {
                // The entry's code is the callee's signature (a runtime-async method's
                // Task-returning entry for async ones).
                Ok(_) if f.signature_of(token).is_some() => FunctionPointer::Managed,
                Ok(_) => FunctionPointer::Unsupported("signature cannot be lowered".into()),
                Err(reason) => FunctionPointer::Unsupported(reason.clone()),
            },
            _ if token >> 24 == 0x0a => match f.external(token) {
                Ok(_) => FunctionPointer::Managed,
                Err(reason) => FunctionPointer::Unsupported(reason),
            },
            _ => FunctionPointer::Unsupported("generic method instantiation".into()),
        }
    }

    fn is_await(&mut self, token: u32) -> bool {
        self.factory.ts.method_name(0, token).as_deref() == Some(AWAIT)
    }

    fn async_call_target(&mut self, token: u32) -> CallTarget {
        let f = self.factory;
        let Some(plan) = f.plans.get(&token) else {
            return CallTarget::Unsupported(
                "await of a method outside the input (its async variant is unknown here)".into(),
            );
        };
        if !plan.is_async {
            return CallTarget::Unsupported(
                "await of a method that is not runtime-async (awaiting a Task needs the \
                 runtime's task machinery)"
                    .into(),
            );
        }
        match (&plan.signature, f.symbols.get(&token)) {
            (Ok(signature), Some(&symbol)) => CallTarget::Direct {
                symbol,
                signature: signature.clone(),
            },
            (Ok(signature), None) => CallTarget::Import {
                signature: signature.clone(),
            },
            (Err(reason), _) => CallTarget::Unsupported(reason.clone()),
        }
    }

    fn suspension(&mut self) -> Result<Suspension, String> {
        let f = self.factory;
        let stub = f
            .stubs
            .get(&self.token)
            .ok_or("only runtime-async methods with a lowered signature can suspend")?;
        Ok(Suspension {
            resumption_stub: *stub,
            helpers: f.async_helpers,
        })
    }

    fn indirect_call_signature(&mut self, token: u32) -> Result<WasmSignature, String> {
        let view = self.factory.ts.view(0);
        if token >> 24 != 0x11 {
            return Err("not a StandAloneSig".into());
        }
        let row = view
            .metadata()
            .tables()
            .stand_alone_sig(token & 0x00ff_ffff)
            .map_err(|e| e.to_string())?;
        let blob = view
            .metadata()
            .blobs()
            .get(row.signature)
            .map_err(|e| e.to_string())?;
        let sig = cildec::MethodSig::parse(blob).map_err(|e| e.to_string())?;
        let abi = self
            .factory
            .ts
            .method_abi(0, &sig, false)
            .map_err(|e| short(&e))?;
        lower(&abi)
    }

    fn instance_field(&mut self, token: u32) -> Result<FieldAccess, String> {
        let field = self
            .factory
            .ts
            .resolve_field(0, token)
            .map_err(|e| short(&e))?;
        if field.is_static {
            return Err("static field (statics are not laid out yet)".into());
        }
        Ok(FieldAccess {
            offset: field.offset,
            access: access_of(&field.ty),
            size: field.ty.size(POINTER),
        })
    }

    fn type_check(&mut self, token: u32) -> Result<(), String> {
        // The embedder resolves the type from the token; it must be one.
        match token >> 24 {
            0x01 | 0x02 | 0x1b => Ok(()),
            _ => Err("not a type token".into()),
        }
    }

    fn runtime_handle(&mut self, token: u32) -> Result<HandleKind, String> {
        // The embedder resolves the type or field from the token.
        match token >> 24 {
            0x01 | 0x02 | 0x1b => Ok(HandleKind::Type),
            0x04 | 0x0a => {
                self.factory
                    .ts
                    .resolve_field(0, token)
                    .map_err(|e| short(&e))?;
                Ok(HandleKind::Field)
            }
            _ => Err("ldtoken of a method".into()),
        }
    }

    fn new_array(&mut self, token: u32) -> Result<(), String> {
        // The embedder resolves the element type from the token; it must be one.
        match token >> 24 {
            0x01 | 0x02 | 0x1b => Ok(()),
            _ => Err("not a type token".into()),
        }
    }

    fn static_field(&mut self, token: u32) -> Result<FieldAccess, String> {
        let field = self
            .factory
            .ts
            .resolve_field(0, token)
            .map_err(|e| short(&e))?;
        if !field.is_static {
            return Err("instance field".into());
        }
        if field.is_thread_static {
            // One address per thread: a shared cell cannot hold it.
            return Err("thread-static field".into());
        }
        Ok(FieldAccess {
            offset: 0,
            access: access_of(&field.ty),
            size: field.ty.size(POINTER),
        })
    }

    fn local_access(&mut self, index: u32) -> Option<&'static str> {
        access_of(self.locals.get(index as usize)?)
    }

    fn local_struct(&mut self, index: u32) -> Option<u32> {
        match self.locals.get(index as usize)?.lower(POINTER, "local") {
            Ok(Lowered::ByRef { size, .. }) => Some(size),
            _ => None,
        }
    }

    fn arg_access(&mut self, index: u32) -> Option<&'static str> {
        let ts = self.factory.ts;
        let sig = ts.method_sig(0, self.token).ok()?;
        // `this` is a reference or, in a value type's method, a managed pointer: an address.
        let index = match (sig.has_this, index) {
            (true, 0) => return Some("i"),
            (true, n) => n - 1,
            (false, n) => n,
        };
        let param = sig.params.get(index as usize)?;
        if param.by_ref {
            return Some("i");
        }
        access_of(&ts.abi_type(0, &param.type_).ok()?)
    }

    fn value_type(&mut self, token: u32) -> Result<ValueAccess, String> {
        use cildec::TableId;
        let ts = self.factory.ts;
        let rid = token & 0x00ff_ffff;
        let ty = match TableId::from_u8((token >> 24) as u8) {
            Some(table @ (TableId::TypeDef | TableId::TypeRef)) => {
                let id = ts
                    .resolve_type(0, cildec::Token::new(table, rid))
                    .map_err(|e| short(&e))?;
                ts.abi_of_def(id).map_err(|e| short(&e))?
            }
            // A signature: compilers write `int32` and friends this way.
            Some(TableId::TypeSpec) => {
                let view = ts.view(0);
                let spec = view
                    .metadata()
                    .tables()
                    .type_spec(rid)
                    .map_err(|e| e.to_string())?;
                let blob = view
                    .metadata()
                    .blobs()
                    .get(spec.signature)
                    .map_err(|e| e.to_string())?;
                let sig = cildec::TypeSpecSig::parse(blob).map_err(|e| e.to_string())?;
                ts.abi_type(0, &sig.type_).map_err(|e| short(&e))?
            }
            _ => return Err("not a type token".into()),
        };
        Ok(ValueAccess {
            size: ty.size(POINTER),
            access: access_of(&ty),
            reference: matches!(
                ty,
                AbiType::Pointer(crossgraph_codegen::abi::PointerKind::ObjectRef)
            ),
        })
    }
}

/// The `ldind`/`stind` suffix that loads a value of ABI type `ty` (`None` for structs that
/// are not one field).
fn access_of(ty: &AbiType) -> Option<&'static str> {
    use crossgraph_codegen::abi::{PointerKind, Primitive};
    match ty {
        AbiType::Primitive(p) => Some(match p {
            Primitive::Bool | Primitive::U8 => "u1",
            Primitive::I8 => "i1",
            Primitive::Char | Primitive::U16 => "u2",
            Primitive::I16 => "i2",
            Primitive::I32 | Primitive::U32 => "i4",
            Primitive::I64 | Primitive::U64 => "i8",
            Primitive::F32 => "r4",
            Primitive::F64 => "r8",
        }),
        AbiType::Pointer(PointerKind::ObjectRef) => Some("ref"),
        AbiType::Pointer(_) => Some("i"),
        // A struct whose one field fills it is that field, in memory as in the ABI
        // (`AbiType::lower` unwraps it the same way).
        AbiType::Struct(s) => match s.fields.as_slice() {
            [only] if only.size(POINTER) == s.size => access_of(only),
            _ => None,
        },
        _ => None,
    }
}

impl NodeSource for Factory<'_, '_, '_> {
    type Key = NodeKey;

    fn static_dependencies(&self, _: NodeId, key: &NodeKey, deps: &mut Dependencies<NodeKey>) {
        match key {
            NodeKey::Method(token) => match self.result(*token) {
                Some(Ok(body)) => {
                    let calls = body.sites_of(SiteKind::Call);
                    for (_, callee) in calls.chain(body.sites_of(SiteKind::Address)) {
                        if callee >> 24 == 0x06 && self.symbols.contains_key(&callee) {
                            if self.direct(callee) || self.plans[&callee].uco {
                                deps.add(NodeKey::Method(callee), "call or ldftn");
                                deps.add_conditional(
                                    NodeKey::MethodEntryImport(callee),
                                    NodeKey::NotCompiled(callee),
                                    "callee left to the interpreter",
                                );
                            } else {
                                deps.add(NodeKey::Method(callee), "callee");
                                deps.add(
                                    NodeKey::MethodEntryImport(callee),
                                    "call through an import cell",
                                );
                            }
                        } else {
                            deps.add(
                                NodeKey::MethodEntryImport(callee),
                                "call through an import cell",
                            );
                        }
                    }
                    for (_, callee) in body.sites_of(SiteKind::AsyncCall) {
                        if self.symbols.contains_key(&callee) {
                            deps.add(NodeKey::Method(callee), "awaited callee");
                            deps.add_conditional(
                                NodeKey::AsyncVariantEntryImport(callee),
                                NodeKey::NotCompiled(callee),
                                "awaited callee left to the interpreter",
                            );
                        } else {
                            deps.add(
                                NodeKey::AsyncVariantEntryImport(callee),
                                "await through an import cell",
                            );
                        }
                    }
                    if body.resumption_stub.is_some() {
                        deps.add(NodeKey::ResumptionStub(*token), "the variant can suspend");
                    }
                    for kind in HelperCell::ALL {
                        for (_, token) in body.sites_of(kind.site_kind()) {
                            let (key, reason) = kind.node(token);
                            deps.add(key, reason);
                        }
                    }
                    for (_, target) in body.sites_of(SiteKind::EntryPoint) {
                        if target >> 24 == 0x06 && self.symbols.contains_key(&target) {
                            deps.add(NodeKey::Method(target), "ldftn target");
                        }
                        deps.add(NodeKey::PortableEntryPoint(target), "ldftn");
                    }
                    let plan = &self.plans[token];
                    if !plan.uco
                        && let Ok(signature) = &plan.signature
                    {
                        deps.add(
                            NodeKey::InterpreterToR2RThunk(
                                signature.thunk_key(ThunkDirection::InterpreterToR2R),
                            ),
                            "interpreter -> R2R thunk of the signature",
                        );
                    }
                }
                Some(Err(_)) => deps.add(NodeKey::NotCompiled(*token), "left to the interpreter"),
                None => {}
            },
            NodeKey::MethodEntryImport(token) => {
                deps.add(NodeKey::ImportThunk(*token), "the cell's first target");
                if let Some(signature) = self.signature_of(*token)
                    && signature.parts().managed
                {
                    deps.add(
                        NodeKey::R2RToInterpreterThunk(
                            signature.thunk_key(ThunkDirection::R2RToInterpreter),
                        ),
                        "the callee may have no R2R code",
                    );
                }
            }
            NodeKey::AsyncVariantEntryImport(token) => {
                if let Some(Ok(signature)) = self.plans.get(token).map(|p| &p.signature) {
                    deps.add(
                        NodeKey::R2RToInterpreterThunk(
                            signature.thunk_key(ThunkDirection::R2RToInterpreter),
                        ),
                        "the awaited callee may have no R2R code",
                    );
                }
            }
            NodeKey::PortableEntryPoint(token) => {
                if let Some(signature) = self.signature_of(*token) {
                    let thunk = NodeKey::R2RToInterpreterThunk(
                        signature.thunk_key(ThunkDirection::R2RToInterpreter),
                    );
                    if self.direct(*token) {
                        deps.add_conditional(
                            thunk,
                            NodeKey::NotCompiled(*token),
                            "ldftn target left to the interpreter",
                        );
                    } else {
                        deps.add(thunk, "the ldftn target may have no R2R code");
                    }
                }
            }
            NodeKey::VirtualEntryImport(token) => {
                if let Some(signature) = self.signature_of(*token) {
                    deps.add(
                        NodeKey::R2RToInterpreterThunk(
                            signature.thunk_key(ThunkDirection::R2RToInterpreter),
                        ),
                        "an override may have no R2R code",
                    );
                }
            }
            NodeKey::R2RToInterpreterThunk(_) | NodeKey::InterpreterToR2RThunk(_) => {
                deps.add(NodeKey::InjectStringThunks, "string-discoverable stub");
            }
            NodeKey::NotCompiled(_)
            | NodeKey::ImportThunk(_)
            | NodeKey::ResumptionStub(_)
            | NodeKey::InjectStringThunks
            | NodeKey::StringImport(_)
            | NodeKey::NewObjectImport(_)
            | NodeKey::FieldAddressImport(_)
            | NodeKey::NewArrayImport(_)
            | NodeKey::TypeCheckImport { .. }
            | NodeKey::TypeHandleImport(_)
            | NodeKey::FieldHandleImport(_) => {}
        }
    }

    fn static_dependencies_computed(&self, _: NodeId, key: &NodeKey) -> bool {
        match key {
            NodeKey::Method(token) => self.result(*token).is_some(),
            _ => true,
        }
    }

    fn compute_dependencies(&self, _: NodeId, key: &NodeKey) {
        if let NodeKey::Method(token) = key {
            let result = self.compile_method(*token);
            if let Some(cell) = self.results.get((*token & 0x00ff_ffff) as usize) {
                let _ = cell.set(result);
            }
        }
    }

    /// The key's prefix of the derived `Ord` (see [`NodeKey::order_prefix`]).
    fn order_prefix(&self, key: &NodeKey) -> u64 {
        key.order_prefix()
    }

    fn name(&self, key: &NodeKey) -> String {
        let method = |token: &u32| {
            self.plans
                .get(token)
                .map(|p| p.name.clone())
                .or_else(|| self.ts.method_name(0, *token))
                .unwrap_or_else(|| format!("method 0x{token:08x}"))
        };
        match key {
            NodeKey::Method(token) => method(token),
            NodeKey::NotCompiled(token) => format!("NotCompiled {}", method(token)),
            NodeKey::MethodEntryImport(token) => format!("MethodEntry {}", method(token)),
            NodeKey::AsyncVariantEntryImport(token) => {
                format!("MethodEntry [ASYNC] {}", method(token))
            }
            NodeKey::ImportThunk(token) => format!("ImportThunk {}", method(token)),
            NodeKey::ResumptionStub(token) => format!("ResumptionStub {}", method(token)),
            NodeKey::PortableEntryPoint(token) => {
                format!("PortableEntryPoint {}", method(token))
            }
            NodeKey::R2RToInterpreterThunk(k) | NodeKey::InterpreterToR2RThunk(k) => {
                format!("thunk {k}")
            }
            NodeKey::InjectStringThunks => "InjectStringThunks".into(),
            NodeKey::StringImport(token) => string_import_name(self.ts.view(0), *token),
            NodeKey::NewObjectImport(token) => new_object_name(self.ts.view(0), *token),
            NodeKey::FieldAddressImport(token) => field_address_name(self.ts.view(0), *token),
            NodeKey::NewArrayImport(token) => new_array_name(self.ts.view(0), *token),
            NodeKey::TypeCheckImport { cast, token } => {
                type_check_name(self.ts.view(0), *cast, *token)
            }
            NodeKey::VirtualEntryImport(token) => format!("VirtualEntry {}", method(token)),
            NodeKey::TypeHandleImport(token) => {
                format!("TypeHandle {}", type_token_name(self.ts.view(0), *token))
            }
            NodeKey::FieldHandleImport(token) => field_handle_name(self.ts.view(0), *token),
        }
    }
}

/// `StringImport "text"` (the literal's first 40 characters, lossily decoded) or, for a token
/// the `#US` heap does not have, `StringImport 0x70xxxxxx`.
fn string_import_name(view: &AssemblyView<'_>, token: u32) -> String {
    match view.user_string(token) {
        Some(units) => {
            let text: String = char::decode_utf16(units)
                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                .take(40)
                .collect();
            format!("StringImport {text:?}")
        }
        None => format!("StringImport 0x{token:08x}"),
    }
}

/// `NewObject Namespace.Type` of a `TypeDef` or `TypeRef` token of `view` (the token when it
/// has no name).
fn new_object_name(view: &AssemblyView<'_>, token: u32) -> String {
    format!("NewObject {}", type_token_name(view, token))
}

/// `NewArray Namespace.Type` of the element type token of a `newarr` (the token when it has
/// no name: a `TypeSpec`).
fn new_array_name(view: &AssemblyView<'_>, token: u32) -> String {
    format!("NewArray {}", type_token_name(view, token))
}

/// `IsInstanceOf Namespace.Type` or `ChkCast Namespace.Type` of an `isinst` or `castclass`
/// operand (the token when it has no name: a `TypeSpec`).
fn type_check_name(view: &AssemblyView<'_>, cast: bool, token: u32) -> String {
    let kind = if cast { "ChkCast" } else { "IsInstanceOf" };
    format!("{kind} {}", type_token_name(view, token))
}

/// The name of a `TypeDef` or `TypeRef` token of `view`, else the token (`0x...`).
fn type_token_name(view: &AssemblyView<'_>, token: u32) -> String {
    use cildec::Rid;
    let names = cildec::Names::new(view.metadata());
    let rid = token & 0x00ff_ffff;
    let name = match token >> 24 {
        0x02 => names.type_def(Rid::new(rid)).ok(),
        0x01 => names.type_ref(Rid::new(rid)).ok(),
        _ => None,
    };
    name.unwrap_or_else(|| format!("0x{token:08x}"))
}

/// `FieldAddress Namespace.Type::field` of a `Field` or `MemberRef` token of `view` (the
/// token when it has no name).
fn field_address_name(view: &AssemblyView<'_>, token: u32) -> String {
    use cildec::{Rid, TableId};
    let names = cildec::Names::new(view.metadata());
    let tables = view.metadata().tables();
    let rid = token & 0x00ff_ffff;
    let name = match token >> 24 {
        0x04 => tables.field(rid).ok().and_then(|field| {
            let owner = tables.type_of_field(Rid::new(rid)).ok()??;
            let owner = names.type_def(owner).ok()?;
            Some(format!("{owner}::{}", view.string(field.name)))
        }),
        0x0a => tables.member_ref(rid).ok().and_then(|member| {
            let class = member.class;
            let owner = match class.table()? {
                TableId::TypeDef => names.type_def(Rid::new(class.rid())).ok()?,
                TableId::TypeRef => names.type_ref(Rid::new(class.rid())).ok()?,
                _ => return None,
            };
            Some(format!("{owner}::{}", view.string(member.name)))
        }),
        _ => None,
    };
    match name {
        Some(name) => format!("FieldAddress {name}"),
        None => format!("FieldAddress 0x{token:08x}"),
    }
}

/// `FieldHandle Namespace.Type::field` of a `Field` or `MemberRef` token of `view` (the token
/// when it has no name).
fn field_handle_name(view: &AssemblyView<'_>, token: u32) -> String {
    let address = field_address_name(view, token);
    format!(
        "FieldHandle {}",
        address.strip_prefix("FieldAddress ").unwrap_or(&address)
    )
}

/// Compiles the methods of an assembly view into a module (no references: calls into other
/// assemblies stay interpreted, with the missing reference recorded).
///
/// # Errors
/// As [`compile`].
pub fn compile_assembly(
    view: &AssemblyView<'_>,
    options: &CompileOptions,
) -> Result<CompileOutput, CompileError> {
    let ts = TypeSystem::new(vec![view])?;
    compile_input(&ts, options)
}

/// Compiles assembly 0 of `ts` (the others are references) into a module.
///
/// # Errors
/// [`CompileError`] for unreadable input, an unknown named root, or a failure of the analyzer
/// or the writer. A method the compiler cannot handle is not an error: it is listed in
/// [`CompileOutput::not_compiled`].
pub fn compile_input(
    ts: &TypeSystem<'_, '_>,
    options: &CompileOptions,
) -> Result<CompileOutput, CompileError> {
    let compile = || match options.log {
        GraphLog::None => run::<NoLog>(ts, options),
        GraphLog::FirstMark => run::<FirstMark>(ts, options),
        GraphLog::Full => run::<FullGraph>(ts, options),
    };
    // Every parallel phase (reading methods, lowering signatures, the analyzer, emission)
    // runs on a pool of the requested size, kept for the process (`shared_pool`): a second
    // compile reuses its workers.
    match options
        .threads
        .and_then(|n| crossgraph_graph::shared_pool(n).ok())
    {
        Some(pool) => pool.install(compile),
        None => compile(),
    }
}

/// Laps of a compile's phases ([`CompileOutput::phases`]).
struct PhaseClock {
    last: std::time::Instant,
    phases: Vec<(&'static str, std::time::Duration)>,
}

impl PhaseClock {
    fn start() -> PhaseClock {
        PhaseClock {
            last: std::time::Instant::now(),
            phases: Vec::new(),
        }
    }

    /// Ends phase `name`: the time since the previous lap (or the start).
    fn lap(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.phases.push((name, now - self.last));
        self.last = now;
    }
}

fn run<M: MarkStrategy>(
    ts: &TypeSystem<'_, '_>,
    options: &CompileOptions,
) -> Result<CompileOutput, CompileError> {
    let mut clock = PhaseClock::start();
    let view = ts.view(0);
    let methods = view.methods()?;
    clock.lap("read methods");
    let mut object = ObjectModule::new();
    let mut factory = Factory {
        ts,
        plans: ByMethodDef::new(),
        symbols: ByMethodDef::new(),
        stubs: ByMethodDef::new(),
        async_helpers: AsyncHelpers::intern(&mut object),
        throw_helper: object.symbol(THROW_HELPER),
        array_store_helper: object.symbol(ARRAY_STORE_HELPER),
        externals: {
            let rows = view
                .metadata()
                .tables()
                .row_count(cildec::TableId::MemberRef);
            (0..=rows).map(|_| OnceLock::new()).collect()
        },
        method_specs: {
            let rows = view
                .metadata()
                .tables()
                .row_count(cildec::TableId::MethodSpec);
            (0..=rows).map(|_| OnceLock::new()).collect()
        },
        results: (0..=methods.len()).map(|_| OnceLock::new()).collect(),
        diagnostics: Mutex::new(BTreeSet::new()),
    };
    // Lowering every signature resolves types across assemblies: in parallel, with the
    // symbol names; only interning the symbols stays serial.
    let planned: Vec<(Plan, Option<String>)> = {
        use rayon::prelude::*;
        methods
            .par_iter()
            .map(|m| {
                let signature = factory.plan_signature(m);
                let symbol = (signature.is_ok() && m.has_body())
                    .then(|| format!("{}@{:08x}", m.name, m.token));
                let plan = Plan {
                    name: m.name.clone(),
                    signature,
                    uco: m.unmanaged_callers_only.is_some(),
                    is_async: m.impl_flags & RUNTIME_ASYNC != 0,
                };
                (plan, symbol)
            })
            .collect()
    };
    clock.lap("lower signatures");
    // Method symbols are unique by construction (`@token`): not interned by name.
    for (m, (plan, symbol)) in methods.iter().zip(planned) {
        if let Some(name) = symbol {
            if plan.is_async {
                let stub = object.fresh_symbol(format!("{name}$ResumptionStub"));
                factory.stubs.insert(m.token, stub);
            }
            factory.symbols.insert(m.token, object.fresh_symbol(name));
        }
        factory.plans.insert(m.token, plan);
    }
    clock.lap("intern symbols");
    let roots: Vec<&MethodDef> = match &options.roots {
        Roots::AllMethods => methods.iter().filter(|m| m.has_body()).collect(),
        Roots::PublicSurface => methods
            .iter()
            .filter(|m| m.has_body() && m.public_surface)
            .collect(),
        Roots::Named(names) => {
            let mut out = Vec::new();
            for name in names {
                let found: Vec<&MethodDef> = methods
                    .iter()
                    .filter(|m| m.has_body() && &m.name == name)
                    .collect();
                if found.is_empty() {
                    return Err(CompileError::UnknownRoot {
                        path: view.path().to_path_buf(),
                        name: name.clone(),
                    });
                }
                out.extend(found);
            }
            out
        }
    };
    let mut analyzer: Analyzer<'_, Factory<'_, '_, '_>, M> = Analyzer::new(
        &factory,
        AnalyzerOptions {
            threads: options.threads,
            shuffle_seed: options.shuffle_seed,
            capacity: None,
        },
    );
    let root_reason = match options.roots {
        Roots::AllMethods => "method with an IL body",
        Roots::PublicSurface => "public surface",
        Roots::Named(_) => "named root",
    };
    analyzer.add_roots(
        roots.into_iter().map(|m| NodeKey::Method(m.token)),
        root_reason,
    )?;
    analyzer.compute_marked_nodes()?;
    let marked: Vec<NodeKey> = analyzer
        .marked_nodes()?
        .iter()
        .map(|&id| analyzer.key(id).cloned())
        .collect::<Result<_, _>>()?;
    let analysis = analyzer.stats();
    clock.lap("analysis");

    // The log's answers, before the analyzer goes.
    let (mut dgml, mut dot, mut why) = (None, None, Vec::new());
    if options.log != GraphLog::None {
        let mut buf = Vec::new();
        write_dgml(&analyzer, &mut buf)?;
        dgml = Some(String::from_utf8_lossy(&buf).into_owned());
        buf.clear();
        write_dot(&analyzer, &mut buf)?;
        dot = Some(String::from_utf8_lossy(&buf).into_owned());
    }
    for name in &options.why {
        why.push((name.clone(), explain(&analyzer, &marked, name)));
    }
    clock.lap("log exports");
    drop(analyzer);
    clock.lap("drop analyzer");

    let emit_start = clock.phases.len();
    let results = std::mem::take(&mut factory.results);
    let mut output = emit(
        &factory,
        results,
        &methods,
        &marked,
        object,
        options.map,
        &mut clock,
    )?;
    output.analysis = analysis;
    output.emit_time = clock.phases[emit_start..].iter().map(|&(_, t)| t).sum();
    output.phases = clock.phases;
    output.dgml = dgml;
    output.dot = dot;
    output.why = why;
    output.diagnostics = std::mem::take(factory.diagnostics.get_mut().expect("poisoned"))
        .into_iter()
        .collect();
    // Freeing the factory's caches and the methods took a millisecond or two of serial time.
    rayon::join(|| drop(factory), || drop(methods));
    Ok(output)
}

/// The chain of reasons to the node named `name` (a method name or a node name).
fn explain<M: MarkStrategy>(
    analyzer: &Analyzer<'_, Factory<'_, '_, '_>, M>,
    marked: &[NodeKey],
    name: &str,
) -> Result<WhyChain, String> {
    let key = marked
        .iter()
        .find(|k| analyzer_name(analyzer, k) == name)
        .ok_or_else(|| format!("no marked node is named {name:?}"))?;
    let id = analyzer
        .id_of(key)
        .ok_or_else(|| format!("{name:?} was not interned"))?;
    let chain = analyzer.why(id).map_err(|e| e.to_string())?;
    Ok(chain
        .iter()
        .map(|edge| {
            let node = analyzer.name(edge.target).unwrap_or_default();
            let reason = match (edge.source, edge.condition) {
                (None, _) => format!("root: {}", edge.reason),
                (Some(_), Some(c)) => format!(
                    "{} (once {} is marked)",
                    edge.reason,
                    analyzer.name(c).unwrap_or_default()
                ),
                (Some(_), None) => edge.reason.to_string(),
            };
            (node, reason)
        })
        .collect())
}

fn analyzer_name<M: MarkStrategy>(
    analyzer: &Analyzer<'_, Factory<'_, '_, '_>, M>,
    key: &NodeKey,
) -> String {
    analyzer
        .id_of(key)
        .and_then(|id| analyzer.name(id).ok())
        .unwrap_or_default()
}

/// The import thunks of `count` cells, defined in cell order (`cell(c)`: the callee's
/// signature and the cell's image offset); built in parallel, as each copies a signature.
fn cell_import_thunks(
    object: &mut ObjectModule,
    count: usize,
    cell: impl Fn(usize) -> (WasmSignature, u32) + Sync,
) -> Vec<SymbolId> {
    use rayon::prelude::*;
    if count == 0 {
        return Vec::new();
    }
    let (_, delay_load) = import_runtime_helpers(object);
    let built: Vec<(String, DefinedFunction)> = (0..count)
        .into_par_iter()
        .map(|c| {
            let (signature, rva) = cell(c);
            cell_import_thunk_function(&signature, rva, delay_load)
        })
        .collect();
    built
        .into_iter()
        .map(|(name, function)| define_once(object, name, function))
        .collect()
}

/// Lays the marked nodes out: the image (import sections, entry points, string thunks) and
/// the functions, then writes the module.
fn emit(
    factory: &Factory<'_, '_, '_>,
    mut results: Vec<OnceLock<Result<CompiledBody, NotCompiled>>>,
    methods: &[MethodDef],
    marked: &[NodeKey],
    mut object: ObjectModule,
    want_map: bool,
    clock: &mut PhaseClock,
) -> Result<CompileOutput, CompileError> {
    // Counted by variant (a hash of the discriminant), named afterwards: 45,000 string-keyed
    // map updates were a visible part of emission.
    let mut counts: FxHashMap<std::mem::Discriminant<NodeKey>, (&'static str, usize)> =
        FxHashMap::default();
    let mut cells: Vec<u32> = Vec::new();
    let mut async_cells: Vec<u32> = Vec::new();
    let mut stubs: Vec<u32> = Vec::new();
    let mut entry_points: Vec<u32> = Vec::new();
    let mut thunk_keys: Vec<String> = Vec::new();
    // Cells of each HelperCell kind, by token.
    let mut helper_tokens: [Vec<u32>; HelperCell::ALL.len()] = Default::default();
    let mut inject = false;
    for key in marked {
        counts
            .entry(std::mem::discriminant(key))
            .or_insert((key.kind(), 0))
            .1 += 1;
        match key {
            NodeKey::MethodEntryImport(token) => cells.push(*token),
            NodeKey::AsyncVariantEntryImport(token) => async_cells.push(*token),
            NodeKey::ResumptionStub(token) => stubs.push(*token),
            NodeKey::PortableEntryPoint(token) => entry_points.push(*token),
            NodeKey::R2RToInterpreterThunk(k) | NodeKey::InterpreterToR2RThunk(k) => {
                thunk_keys.push(k.clone());
            }
            NodeKey::InjectStringThunks => inject = true,
            key => {
                if let Some((kind, token)) = HelperCell::of(key) {
                    helper_tokens[kind as usize].push(token);
                }
            }
        }
    }
    let mut nodes_by_kind: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (kind, n) in counts.into_values() {
        *nodes_by_kind.entry(kind).or_default() += n;
    }
    // Deterministic, independent of the mark order: by token, by lookup string (ordinal).
    cells.sort_unstable();
    async_cells.sort_unstable();
    stubs.sort_unstable();
    entry_points.sort_unstable();
    helper_tokens.iter_mut().for_each(|t| t.sort_unstable());
    thunk_keys.sort();
    // Each sorted list's position by token: a cell's index in its section.
    let index_of = |tokens: &[u32]| -> FxHashMap<u32, usize> {
        tokens.iter().enumerate().map(|(c, &t)| (t, c)).collect()
    };
    let cell_index = index_of(&cells);
    let entry_point_index = index_of(&entry_points);
    let async_cell_index = index_of(&async_cells);
    let stub_index = index_of(&stubs);
    let helper_index: Vec<FxHashMap<u32, usize>> =
        helper_tokens.iter().map(|t| index_of(t)).collect();
    let variant_signature = |token: u32| -> WasmSignature {
        factory.plans[&token]
            .signature
            .clone()
            .expect("async cells and stubs exist only for lowered variants")
    };
    let async_variant = |token| MethodRef {
        flags: MethodSigFlags::ASYNC_VARIANT,
        token,
    };
    let signature_of = |token: u32| -> WasmSignature {
        factory
            .signature_of(token)
            .expect("cells exist only for lowered callees")
    };

    let mut import_sections = Vec::new();
    if inject {
        import_sections.push(ImportSection {
            flags: ImportSectionFlags::EAGER,
            kind: ImportSectionType::UNKNOWN,
            entry_size: 4,
            cells: vec![ImportCell {
                initial: 0,
                signature: FixupSignature::InjectStringThunks(
                    thunk_keys
                        .iter()
                        .map(|key| StringThunk {
                            key: key.clone(),
                            code: 0,
                        })
                        .collect(),
                ),
            }],
        });
    }
    // Writes a section of these fixups (initial cell values 0; delay-load cells get their
    // import thunk through a relocation) unless there are none; its index, `None` if not
    // written.
    let mut push_section = |flags, kind, entry_size, fixups: Vec<FixupSignature>| {
        (!fixups.is_empty()).then(|| {
            import_sections.push(ImportSection {
                flags,
                kind,
                entry_size,
                cells: fixups
                    .into_iter()
                    .map(|signature| ImportCell {
                        initial: 0,
                        signature,
                    })
                    .collect(),
            });
            import_sections.len() - 1
        })
    };
    let method_entry = |flags, token| FixupSignature::MethodEntry(MethodRef { flags, token });
    let cell_section = push_section(
        ImportSectionFlags::PCODE,
        ImportSectionType::STUB_DISPATCH,
        4,
        cells
            .iter()
            .map(|&token| {
                // A cell of a UCO method (ldftn) wants its unmanaged entry.
                let uco = factory.plans.get(&token).is_some_and(|p| p.uco);
                let flags = if uco {
                    UNMANAGED_CALLERS_ONLY
                } else {
                    MethodSigFlags::NONE
                };
                method_entry(flags, token)
            })
            .collect(),
    );
    let async_cell_section = push_section(
        ImportSectionFlags::PCODE,
        ImportSectionType::STUB_DISPATCH,
        4,
        async_cells
            .iter()
            .map(|&token| method_entry(MethodSigFlags::ASYNC_VARIANT, token))
            .collect(),
    );
    // Resumption stubs: one lazy cell each, in its variant's fixup list.
    let stub_section = push_section(
        ImportSectionFlags::NONE,
        ImportSectionType::UNKNOWN,
        4,
        stubs
            .iter()
            .map(|&token| FixupSignature::ResumptionStubEntryPoint {
                method: async_variant(token),
                stub: 0,
            })
            .collect(),
    );
    let entry_point_section = push_section(
        ImportSectionFlags::PCODE,
        ImportSectionType::PORTABLE_ENTRY_POINT,
        2 * POINTER.size() as u8,
        entry_points
            .iter()
            .map(|&token| method_entry(MethodSigFlags::NONE, token))
            .collect(),
    );
    // The cells compiled code reaches through the runtime's helpers: one lazy section per
    // kind (string cells hold 0 until the code's first `ldstr` resolves them, field cells
    // likewise; the others only name a type for their helper).
    let helper_sections: Vec<Option<usize>> = HelperCell::ALL
        .iter()
        .map(|&kind| {
            push_section(
                ImportSectionFlags::NONE,
                kind.section_type(),
                POINTER.size() as u8,
                helper_tokens[kind as usize]
                    .iter()
                    .map(|&token| kind.signature(token))
                    .collect(),
            )
        })
        .collect();

    // Each method's outcome, in parallel (24,000 names are copied here), then distributed in
    // method order. `methods` is in row order: method i has row id i + 1, its result's index.
    enum Outcome<'m> {
        Compiled {
            method: &'m MethodDef,
            name: String,
            // Boxed: 27,000 outcomes, most of them not compiled.
            body: Box<CompiledBody>,
            entry: MethodEntryPoint,
            is_async: bool,
        },
        NotCompiled(NotCompiledMethod),
        Skipped,
    }
    let outcomes: Vec<Outcome<'_>> = {
        use rayon::prelude::*;
        debug_assert!(
            methods
                .iter()
                .enumerate()
                .all(|(i, m)| (m.token & 0x00ff_ffff) as usize == i + 1)
        );
        results.truncate(methods.len() + 1);
        methods
            .par_iter()
            .zip(results.par_drain(..).skip(1))
            .map(|(m, result)| {
                let plan = &factory.plans[&m.token];
                match result.into_inner() {
                    Some(Ok(body)) => Outcome::Compiled {
                        method: m,
                        name: m.name.clone(),
                        body: Box::new(body),
                        is_async: plan.is_async,
                        entry: MethodEntryPoint {
                            method: MethodRef {
                                flags: if plan.uco {
                                    UNMANAGED_CALLERS_ONLY
                                } else if plan.is_async {
                                    MethodSigFlags::ASYNC_VARIANT
                                } else {
                                    MethodSigFlags::NONE
                                },
                                token: m.token,
                            },
                            code: 0,
                            fixups: match (stub_section, stub_index.get(&m.token)) {
                                (Some(section), Some(&cell)) => vec![FixupRef {
                                    section: section as u32,
                                    cell: cell as u32,
                                }],
                                _ => vec![],
                            },
                        },
                    },
                    Some(Err(e)) => Outcome::NotCompiled(NotCompiledMethod {
                        token: m.token,
                        name: m.name.clone(),
                        reason: e.reason,
                    }),
                    None if m.has_body() => Outcome::NotCompiled(NotCompiledMethod {
                        token: m.token,
                        name: m.name.clone(),
                        reason: "not reached from the roots".into(),
                    }),
                    None => Outcome::Skipped,
                }
            })
            .collect()
    };
    // Sized up front: growing the bodies' vector moved 3 MB of bodies several times.
    let compiled_count = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Compiled { .. }))
        .count();
    let mut compiled = Vec::with_capacity(compiled_count);
    let mut not_compiled = Vec::with_capacity(outcomes.len() - compiled_count);
    let mut entries = Vec::with_capacity(compiled_count);
    let mut instance_entries = Vec::new();
    let mut bodies = Vec::with_capacity(compiled_count);
    for outcome in outcomes {
        match outcome {
            Outcome::Compiled {
                method,
                name,
                body,
                entry,
                is_async,
            } => {
                if is_async {
                    instance_entries.push(entry);
                } else {
                    entries.push(entry);
                }
                compiled.push((method.token, name));
                bodies.push((method, *body));
            }
            Outcome::NotCompiled(m) => not_compiled.push(m),
            Outcome::Skipped => {}
        }
    }
    let image = Image {
        minor_version: crossgraph_runtime_core::format::MINOR_VERSION,
        compiler: Some(format!("crossgraph {}", env!("CARGO_PKG_VERSION"))),
        import_sections,
        method_entry_points: entries,
        instance_entry_points: instance_entries,
    };
    let section_sizes: Vec<usize> = image
        .import_sections
        .iter()
        .map(|section| section.cells.len())
        .collect();
    let (bytes, sites) = image.encode_with_code_offsets()?;
    // Each cell's RVA, by section and cell index (cells are numbered densely): one pass over
    // the sites.
    let mut cell_rvas: Vec<Vec<u32>> = section_sizes.iter().map(|&n| vec![0; n]).collect();
    for &(site, offset) in &sites {
        if let CodeRefSite::CellInitial { section, cell } = site {
            cell_rvas[section][cell] = offset;
        }
    }
    let initial_rva = |section: Option<usize>| -> &[u32] {
        section.map_or(&[], |section| cell_rvas[section].as_slice())
    };
    clock.lap("emit: layout");
    let cell_rva = initial_rva(cell_section);
    let entry_point_rva = initial_rva(entry_point_section);
    let async_cell_rva = initial_rva(async_cell_section);
    let helper_rva: Vec<&[u32]> = helper_sections
        .iter()
        .map(|&section| initial_rva(section))
        .collect();
    // The runtime's helpers of those cells, imported when used (`isinst` and `castclass`
    // share one).
    let helpers: Vec<Option<SymbolId>> = HelperCell::ALL
        .iter()
        .map(|&kind| {
            (!helper_tokens[kind as usize].is_empty()).then(|| {
                let (name, params) = kind.helper();
                object.import_env(
                    name,
                    WasmFuncType {
                        params: vec![WasmValueType::I32; params],
                        results: vec![WasmValueType::I32],
                    },
                )
            })
        })
        .collect();
    if bodies.iter().any(|(_, body)| body.checks_array_stores) {
        object.import_env(
            ARRAY_STORE_HELPER,
            WasmFuncType {
                params: vec![WasmValueType::I32; 2],
                results: vec![WasmValueType::I32],
            },
        );
    }
    if bodies.iter().any(|(_, body)| body.throws) {
        object.import_env(
            THROW_HELPER,
            WasmFuncType {
                params: vec![WasmValueType::I32],
                results: vec![],
            },
        );
    }
    // Whether a MethodDef row has R2R code here, by row id (one lookup per call site).
    let mut compiled_rows = vec![false; methods.len() + 1];
    for &(token, _) in &compiled {
        compiled_rows[(token & 0x00ff_ffff) as usize] = true;
    }
    let is_compiled = |token: u32| {
        token >> 24 == 0x06
            && compiled_rows
                .get((token & 0x00ff_ffff) as usize)
                .is_some_and(|&c| c)
    };
    // What each site becomes, as one shared op sequence per cell (built once per cell, not
    // once per call site, and encoded in parallel): a body then swaps its placeholder op for
    // the sequence, in place (no body is rebuilt).
    use rayon::prelude::*;
    let cell_call_seqs: Vec<SequenceId> = object.sequences(
        cells
            .par_iter()
            .enumerate()
            .map(|(c, &token)| call_through_cell(cell_rva[c], &signature_of(token)))
            .collect(),
    );
    let address_seqs: Vec<SequenceId> = object.sequences(
        (0..cells.len())
            .into_par_iter()
            .map(|c| function_pointer_through_cell(cell_rva[c]))
            .collect(),
    );
    let async_seqs: Vec<SequenceId> = object.sequences(
        async_cells
            .par_iter()
            .enumerate()
            .map(|(c, &token)| call_through_cell(async_cell_rva[c], &variant_signature(token)))
            .collect(),
    );
    let entry_seqs: Vec<SequenceId> = object.sequences(
        (0..entry_points.len())
            .into_par_iter()
            .map(|c| portable_entry_point_address(entry_point_rva[c]))
            .collect(),
    );
    let helper_seqs: Vec<Vec<SequenceId>> = HelperCell::ALL
        .iter()
        .map(|&kind| {
            let i = kind as usize;
            let rvas = helper_rva[i];
            let Some(helper) = helpers[i] else {
                return Vec::new(); // no cells of this kind
            };
            object.sequences(
                (0..helper_tokens[i].len())
                    .into_par_iter()
                    .map(|c| kind.sequence(rvas[c], helper))
                    .collect(),
            )
        })
        .collect();

    // Functions: compiled methods (calls to callees without R2R code here rerouted through
    // their cells), then the thunks, then the cells' import thunks.
    /// What an op of a compiled body becomes once the image is laid out.
    #[derive(Clone, Copy)]
    enum Site {
        /// A call whose callee may have no R2R code here.
        Call,
        /// `ldftn` of an `UnmanagedCallersOnly` method.
        Address,
        /// `ldftn` of a managed method: its portable entry point.
        EntryPoint,
        /// A call of an async variant at a suspension point.
        AsyncCall,
        /// A use of a cell of one of the runtime's helpers.
        Helper(HelperCell),
    }
    // Rewriting the bodies is independent per method: in parallel, in method order.
    let functions: Vec<(SymbolId, DefinedFunction, bool)> = {
        use rayon::prelude::*;
        bodies
            .into_par_iter()
            .map(|(m, mut body)| {
                let plan = &factory.plans[&m.token];
                for i in 0..body.sites.len() {
                    let (index, target, kind) = body.sites[i];
                    let site = match kind {
                        SiteKind::Call => Site::Call,
                        SiteKind::Address => Site::Address,
                        SiteKind::EntryPoint => Site::EntryPoint,
                        SiteKind::AsyncCall => Site::AsyncCall,
                        other => Site::Helper(
                            HelperCell::of_site(other).expect("every other site uses a cell"),
                        ),
                    };
                    let local = is_compiled(target);
                    let sequence = match site {
                        Site::Call if local && factory.direct(target) => continue,
                        Site::Address | Site::AsyncCall if local => continue,
                        Site::AsyncCall => async_seqs[async_cell_index[&target]],
                        Site::Call => cell_call_seqs[cell_index[&target]],
                        Site::Address => address_seqs[cell_index[&target]],
                        Site::EntryPoint => entry_seqs[entry_point_index[&target]],
                        Site::Helper(kind) => {
                            let i = kind as usize;
                            helper_seqs[i][helper_index[i][&target]]
                        }
                    };
                    body.code.ops[index] = crossgraph_codegen::Op::Sequence(sequence);
                }
                // Like a ReadyToRun image, the module exports no methods but the native entry
                // points asked for: the runtime finds code through the entry-point tables
                // (and a method by name through the name section).
                let export = match &m.unmanaged_callers_only {
                    Some(uco) => uco.entry_point.clone(),
                    None => None,
                };
                let function = DefinedFunction {
                    ty: plan
                        .signature
                        .as_ref()
                        .expect("compiled methods are lowered")
                        .func_type(),
                    code: body.code,
                    table_slot: true,
                    export,
                };
                (factory.symbols[&m.token], function, plan.is_async)
            })
            .collect()
    };
    let mut method_symbols = Vec::new();
    let mut instance_symbols = Vec::new();
    for (symbol, function, is_async) in functions {
        object.define(symbol, function);
        if is_async {
            instance_symbols.push(symbol);
        } else {
            method_symbols.push(symbol);
        }
    }
    clock.lap("emit: call sites");
    let mut thunk_symbols = Vec::new();
    for key in &thunk_keys {
        let signature =
            WasmSignature::parse(&key[1..], POINTER).expect("thunk keys come from signatures");
        thunk_symbols.push(match key.as_bytes()[0] {
            b'M' => interpreter_to_r2r(&signature, &mut object)?,
            _ => r2r_to_interpreter(&signature, &mut object)?,
        });
    }
    let cell_thunks = cell_import_thunks(&mut object, cells.len(), |c| {
        (signature_of(cells[c]), cell_rva[c])
    });
    let async_cell_thunks = cell_import_thunks(&mut object, async_cells.len(), |c| {
        (variant_signature(async_cells[c]), async_cell_rva[c])
    });
    if !stubs.is_empty() {
        factory.async_helpers.import(&mut object);
    }
    let mut stub_symbols = Vec::new();
    for &token in &stubs {
        let symbol = factory.stubs[&token];
        let function = resumption_stub(
            factory.symbols[&token],
            &variant_signature(token),
            token,
            factory.async_helpers.take,
        )?;
        object.define(symbol, function);
        stub_symbols.push(symbol);
    }
    let entry_point_thunks = cell_import_thunks(&mut object, entry_points.len(), |c| {
        (signature_of(entry_points[c]), entry_point_rva[c])
    });
    let image_relocs = sites
        .into_iter()
        .filter_map(|(site, offset)| {
            let symbol = match site {
                CodeRefSite::StringThunk { thunk, .. } => thunk_symbols[thunk],
                CodeRefSite::MethodEntry(i) => method_symbols[i],
                CodeRefSite::InstanceEntry(i) => instance_symbols[i],
                CodeRefSite::CellInitial { section, cell } if Some(section) == cell_section => {
                    cell_thunks[cell]
                }
                CodeRefSite::CellInitial { section, cell }
                    if Some(section) == entry_point_section =>
                {
                    entry_point_thunks[cell]
                }
                CodeRefSite::CellInitial { section, cell }
                    if Some(section) == async_cell_section =>
                {
                    async_cell_thunks[cell]
                }
                CodeRefSite::ResumptionStub { cell, .. } => stub_symbols[cell],
                // A VirtualEntry cell holds the R2R -> interpreter thunk of its signature.
                CodeRefSite::CellInitial { section, cell }
                    if Some(section) == helper_sections[HelperCell::Virtual as usize] =>
                {
                    let token = helper_tokens[HelperCell::Virtual as usize][cell];
                    let key = signature_of(token).thunk_key(ThunkDirection::R2RToInterpreter);
                    thunk_symbols[thunk_keys
                        .binary_search(&key)
                        .expect("a VirtualEntry cell depends on its thunk")]
                }
                _ => return None,
            };
            Some(DataReloc { offset, symbol })
        })
        .collect();
    object.image = bytes;
    object.image_relocs = image_relocs;
    clock.lap("emit: thunks");
    let emitted = object.emit()?;
    clock.phases.extend([
        ("emit: encode module", emitted.encode_time),
        ("emit: validate module", emitted.validate_time),
    ]);
    clock.last = std::time::Instant::now();

    // The bodies, emitted, are freed in parallel; when the map is asked for, while its
    // function entries are built (their names copied in parallel, in table order).
    let functions = object.take_functions();
    let map = if !want_map {
        use rayon::prelude::*;
        functions.into_par_iter().with_min_len(256).for_each(drop);
        Vec::new()
    } else {
        // The map: functions in table order with their body offsets, then image items.
        let mut kinds: FxHashMap<SymbolId, &'static str> = FxHashMap::default();
        for (key, &symbol) in thunk_keys.iter().zip(&thunk_symbols) {
            kinds.insert(
                symbol,
                if key.starts_with('M') {
                    "InterpreterToR2RThunk"
                } else {
                    "R2RToInterpreterThunk"
                },
            );
        }
        for &symbol in &stub_symbols {
            kinds.insert(symbol, "ResumptionStub");
        }
        for &symbol in cell_thunks
            .iter()
            .chain(&entry_point_thunks)
            .chain(&async_cell_thunks)
        {
            kinds.insert(symbol, "WasmImportThunk");
        }
        for &symbol in method_symbols.iter().chain(&instance_symbols) {
            kinds.insert(symbol, "MethodWithGCInfo");
        }
        let (mut entries, ()): (Vec<MapEntry>, ()) = {
            use rayon::prelude::*;
            rayon::join(
                || {
                    emitted
                        .function_bodies()
                        .par_iter()
                        .map(|&(symbol, offset, size)| MapEntry {
                            kind: kinds.get(&symbol).copied().unwrap_or("Function"),
                            name: object.name(symbol).to_owned(),
                            section: "code",
                            offset,
                            size,
                        })
                        .collect()
                },
                || functions.into_par_iter().with_min_len(256).for_each(drop),
            )
        };
        let method_name = |token: u32| {
            factory
                .plans
                .get(&token)
                .map(|p| p.name.clone())
                .or_else(|| factory.ts.method_name(0, token))
                .unwrap_or_default()
        };
        // Image entries: cells, then async cells, then portable entry points (names formatted in
        // parallel, in order).
        let image_entries = [
            (
                &cells,
                cell_rva,
                "DelayLoadMethodImport",
                "MethodEntry ",
                POINTER.size(),
            ),
            (
                &async_cells,
                async_cell_rva,
                "DelayLoadMethodImport",
                "MethodEntry [ASYNC] ",
                POINTER.size(),
            ),
            (
                &entry_points,
                entry_point_rva,
                "PortableEntryPoint",
                "PortableEntryPoint ",
                2 * POINTER.size(),
            ),
        ];
        for (tokens, rvas, kind, prefix, size) in image_entries {
            use rayon::prelude::*;
            entries.par_extend(tokens.par_iter().enumerate().map(|(c, &token)| MapEntry {
                kind,
                name: format!("{prefix}{}", method_name(token)),
                section: "image",
                offset: rvas[c],
                size,
            }));
        }
        {
            use rayon::prelude::*;
            for kind in HelperCell::ALL {
                let i = kind as usize;
                let rva = helper_rva[i];
                entries.par_extend(helper_tokens[i].par_iter().enumerate().map(|(c, &token)| {
                    let (kind, name) = kind.map_entry(factory, token);
                    MapEntry {
                        kind,
                        name,
                        section: "image",
                        offset: rva[c],
                        size: POINTER.size(),
                    }
                }));
            }
        }
        entries
    };
    clock.lap("emit: map");
    Ok(CompileOutput {
        module: emitted.bytes,
        compiled,
        not_compiled,
        marked_nodes: marked.len(),
        nodes_by_kind,
        analysis: AnalysisStats::default(),
        emit_time: std::time::Duration::ZERO,
        phases: Vec::new(),
        map,
        dgml: None,
        dot: None,
        why: Vec::new(),
        diagnostics: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Keys of the variant of declaration rank `rank`; tokens and lookup strings bunched so
    /// that equal prefixes and shared string heads are common.
    fn node_key_of(rank: u8) -> impl Strategy<Value = NodeKey> {
        let token = prop_oneof![0u32..4, Just(u32::MAX), any::<u32>()];
        let char = prop_oneof![Just('\0'), Just('I'), Just('M'), Just('i'), Just('\u{ff}')];
        let text = proptest::collection::vec(char, 0..9)
            .prop_map(|chars| chars.into_iter().collect::<String>());
        (token, any::<bool>(), text).prop_map(move |(t, cast, s)| match rank {
            0 => NodeKey::Method(t),
            1 => NodeKey::NotCompiled(t),
            2 => NodeKey::MethodEntryImport(t),
            3 => NodeKey::AsyncVariantEntryImport(t),
            4 => NodeKey::ImportThunk(t),
            5 => NodeKey::ResumptionStub(t),
            6 => NodeKey::PortableEntryPoint(t),
            7 => NodeKey::R2RToInterpreterThunk(s),
            8 => NodeKey::InterpreterToR2RThunk(s),
            9 => NodeKey::InjectStringThunks,
            10 => NodeKey::StringImport(t),
            11 => NodeKey::NewObjectImport(t),
            12 => NodeKey::FieldAddressImport(t),
            13 => NodeKey::NewArrayImport(t),
            14 => NodeKey::TypeCheckImport { cast, token: t },
            15 => NodeKey::VirtualEntryImport(t),
            16 => NodeKey::TypeHandleImport(t),
            _ => NodeKey::FieldHandleImport(t),
        })
    }

    /// The prefix never contradicts the derived order the analyzer sorts by.
    fn check(a: &NodeKey, b: &NodeKey) -> Result<(), TestCaseError> {
        let (pa, pb) = (a.order_prefix(), b.order_prefix());
        if pa < pb {
            prop_assert!(a < b, "{a:?} ({pa:#x}) sorts after {b:?} ({pb:#x})");
        }
        if a == b {
            prop_assert_eq!(pa, pb);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn order_prefix_agrees_with_ord_across_variants(
            (a, b) in (0u8..18, 0u8..18).prop_flat_map(|(x, y)| (node_key_of(x), node_key_of(y)))
        ) {
            check(&a, &b)?;
        }

        #[test]
        fn order_prefix_agrees_with_ord_within_a_variant(
            (a, b) in (0u8..18).prop_flat_map(|r| (node_key_of(r), node_key_of(r)))
        ) {
            check(&a, &b)?;
        }
    }

    #[test]
    fn order_prefix_ranks_variants_in_declaration_order() {
        let keys = [
            NodeKey::Method(u32::MAX),
            NodeKey::NotCompiled(0),
            NodeKey::MethodEntryImport(0),
            NodeKey::AsyncVariantEntryImport(0),
            NodeKey::ImportThunk(0),
            NodeKey::ResumptionStub(0),
            NodeKey::PortableEntryPoint(0),
            NodeKey::R2RToInterpreterThunk("\u{ff}\u{ff}\u{ff}".into()),
            NodeKey::InterpreterToR2RThunk(String::new()),
            NodeKey::InjectStringThunks,
            NodeKey::StringImport(0),
            NodeKey::NewObjectImport(0),
            NodeKey::FieldAddressImport(0),
            NodeKey::NewArrayImport(0),
            NodeKey::TypeCheckImport {
                cast: true,
                token: u32::MAX,
            },
            NodeKey::VirtualEntryImport(0),
            NodeKey::TypeHandleImport(0),
            NodeKey::FieldHandleImport(0),
        ];
        for pair in keys.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(
                pair[0].order_prefix() < pair[1].order_prefix(),
                "{:?} vs {:?}",
                pair[0],
                pair[1]
            );
        }
        // Strings: a head shared for 6 bytes leaves the order to compare; an earlier byte
        // decides.
        let thunk = |s: &str| NodeKey::InterpreterToR2RThunk(s.into()).order_prefix();
        assert_eq!(thunk("MI(i4)v"), thunk("MI(i4)i"));
        assert!(thunk("MI(i4)") < thunk("MI(i8)"));
        // Zero padding ties a string with the same string plus NULs; compare orders them.
        assert_eq!(thunk("M"), thunk("M\0"));
    }
}
