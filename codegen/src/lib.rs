//! crossgraph-codegen: wasm ABI lowering and the canonical signature strings (shared by the
//! compiler, the runtime and the thunk tables), thunk bodies for both interpreter directions
//! and delay-load imports, and the object writer that turns functions with symbolic
//! relocations plus the image into one validated wasm module. The IL -> wasm method compiler
//! comes with the issue "Compile real .NET assemblies".
//!
//! ```
//! use crossgraph_codegen::{AbiType, MethodAbi, PointerWidth, Primitive, WasmSignature, lower_signature};
//!
//! // static int Add(int, int), managed: [SP, i32, i32, PE] -> [i32]
//! let add = MethodAbi {
//!     ret: AbiType::Primitive(Primitive::I32),
//!     has_this: false,
//!     params: vec![AbiType::Primitive(Primitive::I32); 2],
//!     generic_context: false,
//!     async_call: false,
//!     unmanaged: false,
//! };
//! let sig = lower_signature(&add, PointerWidth::Wasm32)?;
//! assert_eq!(sig.as_str(), "iiip");
//! assert_eq!(sig.func_type().to_string(), "[i32 i32 i32 i32] -> [i32]");
//! assert_eq!(WasmSignature::parse("iiip", PointerWidth::Wasm32)?, sig);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod abi;
pub mod il;
mod memory;
pub mod object_writer;
pub mod resumption;
pub mod signature;
pub mod thunk;

pub use abi::{
    AbiType, Lowered, LoweringError, PointerKind, PointerWidth, Primitive, StructLayout,
    WasmValueType,
};
pub use object_writer::{
    Code, DataReloc, DefinedFunction, EmittedModule, ImportedFunction, ObjectModule, Op,
    SequenceId, SymbolId, WriteError,
};
pub use signature::{
    LowerError, MethodAbi, ParamAbi, ParseErrorKind, ReturnAbi, SignatureError,
    SignatureParseError, SignatureParts, ThunkDirection, WasmFuncType, WasmSignature,
    lower_signature,
};
