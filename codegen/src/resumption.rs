//! Runtime-async support code: the runtime's async helpers as module imports, and async
//! resumption stubs (crossgen2's `AsyncResumptionStub`). The continuation layout and the
//! protocol are defined once, in [`crossgraph_runtime_core::abi::continuation`].

use wasm_encoder::Instruction;

use crate::abi::WasmValueType;
use crate::memory::{store, zero};
use crate::object_writer::{Code, DefinedFunction, ObjectModule, Op, SymbolId};
use crate::signature::{ParamAbi, ReturnAbi, WasmFuncType, WasmSignature};
pub use crossgraph_runtime_core::abi::continuation::{
    ALLOC_HELPER, DATA, NEXT, RESULT, RESUME, RESUMPTION_STUB_SIGNATURE, STATE, SUSPEND_HELPER,
    TAKE_HELPER, data_layout,
};

/// The symbols of the runtime's async helpers (module `env`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsyncHelpers {
    /// [`ALLOC_HELPER`]: `[size i32] -> [i32]`.
    pub alloc: SymbolId,
    /// [`SUSPEND_HELPER`]: `[continuation i32] -> []`.
    pub suspend: SymbolId,
    /// [`TAKE_HELPER`]: `[] -> [i32]`.
    pub take: SymbolId,
}

impl AsyncHelpers {
    /// Interns the helper symbols of `module` (binding nothing yet: see
    /// [`AsyncHelpers::import`]).
    pub fn intern(module: &mut ObjectModule) -> AsyncHelpers {
        AsyncHelpers {
            alloc: module.symbol(ALLOC_HELPER),
            suspend: module.symbol(SUSPEND_HELPER),
            take: module.symbol(TAKE_HELPER),
        }
    }

    /// Imports the helpers into `module` unless already bound.
    pub fn import(self, module: &mut ObjectModule) {
        use WasmValueType::I32;
        let helpers = [
            (ALLOC_HELPER, vec![I32], vec![I32]),
            (SUSPEND_HELPER, vec![I32], vec![]),
            (TAKE_HELPER, vec![], vec![I32]),
        ];
        for (name, params, results) in helpers {
            module.import_env(name, WasmFuncType { params, results });
        }
    }
}

/// The wasm type of every resumption stub ([`RESUMPTION_STUB_SIGNATURE`]):
/// `[SP i32, continuation i32, result i32, PE i32] -> [i32]`.
pub fn resumption_stub_type() -> WasmFuncType {
    WasmFuncType {
        params: vec![WasmValueType::I32; 4],
        results: vec![WasmValueType::I32],
    }
}

/// Why a resumption stub cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no resumption stub for {signature:?}: {reason}")]
pub struct ResumptionStubError {
    /// The variant's signature string.
    pub signature: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// The resumption stub of the async variant `variant` (signature `variant_sig`, method token
/// `token`, passed as its `PE`): calls the variant's compiled body directly with the
/// continuation (every other argument zero: the variant restores its state from the
/// continuation), then returns the continuation the variant suspended with again
/// (taken with [`TAKE_HELPER`]), or stores the variant's result at `result` and returns 0.
/// Type: [`resumption_stub_type`]. The stub gets a table slot (continuations name it).
///
/// # Errors
/// [`ResumptionStubError`] when `variant_sig` is not a managed async variant with value
/// parameters (struct parameters, return buffers and generic contexts are not compiled).
pub fn resumption_stub(
    variant: SymbolId,
    variant_sig: &WasmSignature,
    token: u32,
    take: SymbolId,
) -> Result<DefinedFunction, ResumptionStubError> {
    let parts = variant_sig.parts();
    let refuse = |reason| ResumptionStubError {
        signature: variant_sig.as_str().to_string(),
        reason,
    };
    if !parts.managed || !parts.async_continuation {
        return Err(refuse("not a managed async variant"));
    }
    if parts.generic_context {
        return Err(refuse("generic context"));
    }
    let (sp, continuation, result) = (0, 1, 2);
    let (new, value) = (4, 5);
    let pointer = variant_sig.pointer().value_type();
    let mut ops = vec![Op::Ins(Instruction::LocalGet(sp))];
    if parts.has_this {
        ops.push(Op::Ins(zero(pointer)));
    }
    ops.push(Op::Ins(Instruction::LocalGet(continuation)));
    for p in &parts.params {
        match p {
            ParamAbi::Value(v) => ops.push(Op::Ins(zero(*v))),
            _ => return Err(refuse("struct parameter")),
        }
    }
    ops.extend([
        Op::Ins(Instruction::I32Const(token as i32)),
        Op::Call(variant),
    ]);
    let mut locals = vec![WasmValueType::I32];
    let ret = match parts.ret {
        ReturnAbi::Void => None,
        ReturnAbi::Value(v) => Some(v),
        _ => return Err(refuse("struct return")),
    };
    if let Some(v) = ret {
        locals.push(v);
        ops.push(Op::Ins(Instruction::LocalSet(value)));
    }
    ops.extend([
        Op::Call(take),
        Op::Ins(Instruction::LocalTee(new)),
        Op::Ins(Instruction::If(wasm_encoder::BlockType::Empty)),
        Op::Ins(Instruction::LocalGet(new)),
        Op::Ins(Instruction::Return),
        Op::Ins(Instruction::End),
    ]);
    if let Some(v) = ret {
        ops.extend([
            Op::Ins(Instruction::LocalGet(result)),
            Op::Ins(Instruction::LocalGet(value)),
            Op::Ins(store(v, 0)),
        ]);
    }
    ops.push(Op::Ins(Instruction::I32Const(0)));
    Ok(DefinedFunction {
        ty: resumption_stub_type(),
        code: Code { locals, ops },
        table_slot: true,
        export: None,
    })
}
