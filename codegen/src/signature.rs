//! Lowering methods to canonical signatures. The signature strings themselves (grammar,
//! parser, wasm function types) live in `crossgraph_runtime_core::abi::signature`, shared
//! with the runtime, and are re-exported here.

pub use crossgraph_runtime_core::abi::signature::*;

use crate::abi::{AbiType, Lowered, LoweringError, PointerWidth};

/// Why a method cannot be lowered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LowerError {
    /// A type that cannot be lowered.
    #[error(transparent)]
    Lowering(#[from] LoweringError),
    /// The lowered signature is not valid.
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

/// A method as the ABI sees it, before lowering.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MethodAbi {
    /// Return type ([`AbiType::Void`] for none).
    pub ret: AbiType,
    /// Instance method (managed only).
    pub has_this: bool,
    /// Explicit parameters.
    pub params: Vec<AbiType>,
    /// Needs a hidden generic context argument.
    pub generic_context: bool,
    /// Runtime-async call: takes an async continuation.
    pub async_call: bool,
    /// `UnmanagedCallersOnly` (or an unmanaged calling convention): native signature.
    pub unmanaged: bool,
}

/// Lowers a method to its canonical signature (crossgen2 `WasmLowering.GetSignature`).
///
/// # Errors
/// [`LowerError::Lowering`] naming the parameter or return that cannot be lowered;
/// [`LowerError::Signature`] for an unmanaged instance method.
pub fn lower_signature(
    method: &MethodAbi,
    pointer: PointerWidth,
) -> Result<WasmSignature, LowerError> {
    let ret = match method.ret.lower(pointer, "return type")? {
        Lowered::Nothing => ReturnAbi::Void,
        Lowered::Value(v) => ReturnAbi::Value(v),
        Lowered::ByRef { size, .. } => ReturnAbi::Buffer { size },
    };
    let mut params = Vec::with_capacity(method.params.len());
    for (i, param) in method.params.iter().enumerate() {
        let item = format!("parameter {i}");
        if *param == AbiType::Void {
            return Err(LoweringError::VoidParameter { item }.into());
        }
        params.push(match param.lower(pointer, &item)? {
            Lowered::Nothing => ParamAbi::Empty,
            Lowered::Value(v) => ParamAbi::Value(v),
            Lowered::ByRef { size, align } if align > 8 => ParamAbi::ByRefOverAligned { size },
            Lowered::ByRef { size, .. } => ParamAbi::ByRef { size },
        });
    }
    Ok(WasmSignature::new(
        pointer,
        SignatureParts {
            ret,
            has_this: method.has_this,
            generic_context: method.generic_context,
            async_continuation: method.async_call,
            params,
            managed: !method.unmanaged,
        },
    )?)
}
