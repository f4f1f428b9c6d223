//! Typed memory accesses and constants shared by the thunks, the resumption stubs and the
//! IL compiler.

use wasm_encoder::{Instruction, MemArg};

use crate::abi::WasmValueType;

/// The zero of `ty`: `[] -> [ty]`.
pub(crate) fn zero(ty: WasmValueType) -> Instruction<'static> {
    match ty {
        WasmValueType::I32 => Instruction::I32Const(0),
        WasmValueType::I64 => Instruction::I64Const(0),
        WasmValueType::F32 => Instruction::F32Const(0.0.into()),
        WasmValueType::F64 => Instruction::F64Const(0.0.into()),
        WasmValueType::V128 => Instruction::V128Const(0),
    }
}

fn mem(offset: u32, align: u32) -> MemArg {
    MemArg {
        offset: u64::from(offset),
        align,
        memory_index: 0,
    }
}

/// A store of `ty` at constant `offset`: `[addr, value] -> []`.
pub(crate) fn store(ty: WasmValueType, offset: u32) -> Instruction<'static> {
    match ty {
        WasmValueType::I32 => Instruction::I32Store(mem(offset, 2)),
        WasmValueType::I64 => Instruction::I64Store(mem(offset, 3)),
        WasmValueType::F32 => Instruction::F32Store(mem(offset, 2)),
        WasmValueType::F64 => Instruction::F64Store(mem(offset, 3)),
        WasmValueType::V128 => Instruction::V128Store(mem(offset, 4)),
    }
}

/// A load of `ty` at constant `offset`: `[addr] -> [ty]`.
pub(crate) fn load(ty: WasmValueType, offset: u32) -> Instruction<'static> {
    match ty {
        WasmValueType::I32 => Instruction::I32Load(mem(offset, 2)),
        WasmValueType::I64 => Instruction::I64Load(mem(offset, 3)),
        WasmValueType::F32 => Instruction::F32Load(mem(offset, 2)),
        WasmValueType::F64 => Instruction::F64Load(mem(offset, 3)),
        WasmValueType::V128 => Instruction::V128Load(mem(offset, 4)),
    }
}
