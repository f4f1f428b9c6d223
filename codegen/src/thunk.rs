//! Thunk bodies: R2R -> interpreter, interpreter -> R2R, and the delay-load import thunks,
//! all from one argument-layout computation ([`ArgLayout`]).
//!
//! The interpreter's argument block (the transition block): the arguments `this`, generic
//! context, async continuation, then the explicit parameters, in that order, each in a slot
//! aligned to 8 bytes (16 for `v128` and for structs aligned beyond 8) and padded to a multiple
//! of 8; a by-reference struct is copied into its slot by value. Then the return slot (8 bytes,
//! 16 for `v128`) when the method returns a value. The block is a multiple of 16 bytes and
//! 16-byte aligned on the shadow stack. A struct return goes through the caller's return
//! buffer, whose address is the return pointer. The same layout serves both directions.

use wasm_encoder::Instruction;

use crate::abi::WasmValueType;
use crate::memory::{load, store};
use crate::object_writer::{Code, DefinedFunction, ObjectModule, Op, SymbolId};
use crate::signature::{WasmFuncType, WasmSignature};
pub use crossgraph_runtime_core::abi::layout::{
    ArgLayout, ArgRole, ArgSlot, LayoutError, RetSlot, SlotKind,
};

/// Symbol of the runtime's interpreter entry: `[entry_point i32, args i32, size i32, ret i32]
/// -> []` (entry point: the callee's portable entry point; args: the argument block; size:
/// its size in bytes; ret: return slot or return buffer address, 0 for none).
pub const INTERPRETER_ENTRY: &str = "crossgraph_interpreter_entry";
/// Symbol of the runtime's delay-load helper: `[cell i32] -> [i32]`: resolves the import
/// cell (or portable entry point) at that address, patches it, and returns the absolute
/// table index of the target's code.
pub const DELAY_LOAD_HELPER: &str = "crossgraph_delay_load";

/// Imports the runtime helpers thunks call (module `env`) unless already bound, and returns
/// their symbols `(interpreter entry, delay-load helper)`.
pub fn import_runtime_helpers(module: &mut ObjectModule) -> (SymbolId, SymbolId) {
    use WasmValueType::I32;
    let entry = module.import_env(
        INTERPRETER_ENTRY,
        WasmFuncType {
            params: vec![I32; 4],
            results: vec![],
        },
    );
    let delay_load = module.import_env(
        DELAY_LOAD_HELPER,
        WasmFuncType {
            params: vec![I32],
            results: vec![I32],
        },
    );
    (entry, delay_load)
}

/// A thunk: a function with a table slot (thunks are called through the table).
fn thunk_function(ty: WasmFuncType, locals: Vec<WasmValueType>, ops: Vec<Op>) -> DefinedFunction {
    DefinedFunction {
        ty,
        code: Code { locals, ops },
        table_slot: true,
        export: None,
    }
}

/// An import thunk body: forward every parameter, resolve the cell whose address `cell`
/// pushes through the delay-load helper, `call_indirect` the target.
fn import_thunk_function(ty: WasmFuncType, cell: Op, delay_load: SymbolId) -> DefinedFunction {
    let mut ops: Vec<Op> = (0..ty.params.len() as u32)
        .map(|i| Op::Ins(Instruction::LocalGet(i)))
        .collect();
    ops.extend([cell, Op::Call(delay_load), Op::CallIndirect(ty.clone())]);
    thunk_function(ty, vec![], ops)
}

/// Defines the symbol `name` as `function` unless it is already bound (thunks are interned
/// by name) and returns the symbol.
pub fn define_once(module: &mut ObjectModule, name: String, function: DefinedFunction) -> SymbolId {
    let symbol = module.symbol_owned(name);
    if !module.is_bound(symbol) {
        module.define(symbol, function);
    }
    symbol
}

/// Why a thunk cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThunkError {
    /// Interpreter thunks exist for managed signatures only (`UnmanagedCallersOnly` methods
    /// are entered natively, never through the interpreter).
    #[error("signature {signature:?} is unmanaged: it has no interpreter thunk")]
    Unmanaged {
        /// The signature string.
        signature: String,
    },
    /// The argument block would not fit in 32 bits.
    #[error(transparent)]
    TooLarge(#[from] LayoutError),
}

fn managed(sig: &WasmSignature) -> Result<(), ThunkError> {
    if sig.parts().managed {
        Ok(())
    } else {
        Err(ThunkError::Unmanaged {
            signature: sig.as_str().to_string(),
        })
    }
}

/// Symbol of the R2R -> interpreter thunk of `sig` (its lookup string, `I` + signature).
pub fn r2r_to_interpreter_symbol(sig: &WasmSignature) -> String {
    sig.thunk_key(crate::signature::ThunkDirection::R2RToInterpreter)
}

/// Symbol of the interpreter -> R2R thunk of `sig` (its lookup string, `M` + signature).
pub fn interpreter_to_r2r_symbol(sig: &WasmSignature) -> String {
    sig.thunk_key(crate::signature::ThunkDirection::InterpreterToR2R)
}

/// The R2R -> interpreter thunk: R2R code calls it with the callee's own wasm type; it
/// spills the arguments to a 16-byte aligned block below the incoming SP (copying
/// by-reference structs with `memory.copy`, zeroing their padding with `memory.fill`), moves
/// `__stack_pointer` below the block for the runtime, calls [`INTERPRETER_ENTRY`] with the
/// portable entry point, restores `__stack_pointer`, and returns the result.
///
/// Adds the thunk to `module` (once per signature) and returns its symbol, named by its
/// lookup string.
///
/// # Errors
/// [`ThunkError::Unmanaged`] for unmanaged signatures; [`ThunkError::TooLarge`].
pub fn r2r_to_interpreter(
    sig: &WasmSignature,
    module: &mut ObjectModule,
) -> Result<SymbolId, ThunkError> {
    managed(sig)?;
    let (interpreter_entry, _) = import_runtime_helpers(module);
    let layout = ArgLayout::of(sig)?;
    let ty = sig.func_type();
    let params = ty.params.len() as u32;
    let (sp, pe) = (0, params - 1);
    let (block, saved) = (params, params + 1);
    let mut ops = vec![
        Op::StackPointerGet,
        Op::Ins(Instruction::LocalSet(saved)),
        Op::Ins(Instruction::LocalGet(sp)),
        Op::Ins(Instruction::I32Const(layout.size as i32)),
        Op::Ins(Instruction::I32Sub),
        Op::Ins(Instruction::I32Const(-16)),
        Op::Ins(Instruction::I32And),
        Op::Ins(Instruction::LocalTee(block)),
        Op::StackPointerSet,
    ];
    for slot in &layout.args {
        match slot.kind {
            SlotKind::Value(v) => ops.extend([
                Op::Ins(Instruction::LocalGet(block)),
                Op::Ins(Instruction::LocalGet(slot.wasm_param)),
                Op::Ins(store(v, slot.offset)),
            ]),
            SlotKind::Struct { size } => {
                ops.extend(address(block, slot.offset));
                ops.extend([
                    Op::Ins(Instruction::LocalGet(slot.wasm_param)),
                    Op::Ins(Instruction::I32Const(size as i32)),
                    Op::Ins(Instruction::MemoryCopy {
                        src_mem: 0,
                        dst_mem: 0,
                    }),
                ]);
                if slot.size > size {
                    ops.extend(address(block, slot.offset + size));
                    ops.extend([
                        Op::Ins(Instruction::I32Const(0)),
                        Op::Ins(Instruction::I32Const((slot.size - size) as i32)),
                        Op::Ins(Instruction::MemoryFill(0)),
                    ]);
                }
            }
        }
    }
    ops.extend([
        Op::Ins(Instruction::LocalGet(pe)),
        Op::Ins(Instruction::LocalGet(block)),
        Op::Ins(Instruction::I32Const(layout.size as i32)),
    ]);
    match layout.ret {
        RetSlot::None => ops.push(Op::Ins(Instruction::I32Const(0))),
        RetSlot::Value { offset, .. } => ops.extend(address(block, offset)),
        RetSlot::Buffer { wasm_param, .. } => ops.push(Op::Ins(Instruction::LocalGet(wasm_param))),
    }
    ops.extend([
        Op::Call(interpreter_entry),
        Op::Ins(Instruction::LocalGet(saved)),
        Op::StackPointerSet,
    ]);
    if let RetSlot::Value { ty, offset } = layout.ret {
        ops.extend([
            Op::Ins(Instruction::LocalGet(block)),
            Op::Ins(load(ty, offset)),
        ]);
    }
    let function = DefinedFunction {
        ty,
        code: Code {
            locals: vec![WasmValueType::I32, WasmValueType::I32],
            ops,
        },
        table_slot: true,
        export: None,
    };
    Ok(define_once(
        module,
        r2r_to_interpreter_symbol(sig),
        function,
    ))
}

fn address(base: u32, offset: u32) -> [Op; 3] {
    [
        Op::Ins(Instruction::LocalGet(base)),
        Op::Ins(Instruction::I32Const(offset as i32)),
        Op::Ins(Instruction::I32Add),
    ]
}

/// The type of every interpreter -> R2R thunk: `[entry_point i32, code i32, args i32, ret
/// i32] -> []` (entry point: the callee's portable entry point, passed on as its PE argument;
/// code: absolute table index of the callee; args: an argument block laid out by
/// [`ArgLayout`]; ret: return slot or return buffer, 0 for none).
pub fn interpreter_to_r2r_type() -> WasmFuncType {
    WasmFuncType {
        params: vec![WasmValueType::I32; 4],
        results: vec![],
    }
}

/// The interpreter -> R2R thunk: loads the arguments from the interpreter's block at their
/// offsets (a struct argument is passed as the address of its copy in the block),
/// `call_indirect`s the target with the current `__stack_pointer` as SP, and stores the
/// result in the return slot.
///
/// Adds the thunk to `module` (once per signature) and returns its symbol.
///
/// # Errors
/// [`ThunkError::Unmanaged`] for unmanaged signatures; [`ThunkError::TooLarge`].
pub fn interpreter_to_r2r(
    sig: &WasmSignature,
    module: &mut ObjectModule,
) -> Result<SymbolId, ThunkError> {
    managed(sig)?;
    let layout = ArgLayout::of(sig)?;
    let (pe, code, args, ret) = (0, 1, 2, 3);
    let mut ops = Vec::new();
    if let RetSlot::Value { .. } = layout.ret {
        ops.push(Op::Ins(Instruction::LocalGet(ret)));
    }
    ops.push(Op::StackPointerGet);
    // Wasm parameters in order; the block slots and the return buffer fill them.
    let ty = sig.func_type();
    for wasm_param in 1..ty.params.len() as u32 - 1 {
        if let RetSlot::Buffer { wasm_param: b, .. } = layout.ret
            && b == wasm_param
        {
            ops.push(Op::Ins(Instruction::LocalGet(ret)));
            continue;
        }
        let slot = layout
            .args
            .iter()
            .find(|s| s.wasm_param == wasm_param)
            .copied();
        let Some(slot) = slot else { continue };
        match slot.kind {
            SlotKind::Value(v) => ops.extend([
                Op::Ins(Instruction::LocalGet(args)),
                Op::Ins(load(v, slot.offset)),
            ]),
            SlotKind::Struct { .. } => ops.extend(address(args, slot.offset)),
        }
    }
    ops.extend([
        Op::Ins(Instruction::LocalGet(pe)),
        Op::Ins(Instruction::LocalGet(code)),
        Op::CallIndirect(ty),
    ]);
    if let RetSlot::Value { ty, .. } = layout.ret {
        ops.push(Op::Ins(store(ty, 0)));
    }
    let function = DefinedFunction {
        ty: interpreter_to_r2r_type(),
        code: Code {
            locals: vec![],
            ops,
        },
        table_slot: true,
        export: None,
    };
    Ok(define_once(
        module,
        interpreter_to_r2r_symbol(sig),
        function,
    ))
}

/// The portable-entry-point import thunk of a managed signature (crossgen2
/// `WasmImportThunk`, keyed by signature): a delay-load cell first points here; the call
/// site passes the cell's address as the PE argument; the thunk asks
/// [`DELAY_LOAD_HELPER`] to resolve it and `call_indirect`s the target with the same
/// arguments.
///
/// Adds the thunk to `module` (once per signature) and returns its symbol.
///
/// # Errors
/// [`ThunkError::Unmanaged`]: unmanaged signatures have no PE argument; use
/// [`cell_import_thunk`].
pub fn portable_entry_point_import_thunk(
    sig: &WasmSignature,
    module: &mut ObjectModule,
) -> Result<SymbolId, ThunkError> {
    managed(sig)?;
    let (_, delay_load) = import_runtime_helpers(module);
    let ty = sig.func_type();
    let pe = ty.params.len() as u32 - 1;
    let function = import_thunk_function(ty, Op::Ins(Instruction::LocalGet(pe)), delay_load);
    let name = format!("ImportThunkPE_{}", sig.as_str());
    Ok(define_once(module, name, function))
}

/// The per-cell import thunk (any signature, managed or not): the cell's image offset is a
/// relocation in the body; the thunk resolves the cell through [`DELAY_LOAD_HELPER`] and
/// `call_indirect`s the target. Adds it to `module` (once per cell) and returns its symbol.
pub fn cell_import_thunk(
    sig: &WasmSignature,
    cell_rva: u32,
    module: &mut ObjectModule,
) -> SymbolId {
    let (_, delay_load) = import_runtime_helpers(module);
    let (name, function) = cell_import_thunk_function(sig, cell_rva, delay_load);
    define_once(module, name, function)
}

/// The symbol name and function of [`cell_import_thunk`], built without the module (so many
/// can be built in parallel): `delay_load` is [`DELAY_LOAD_HELPER`]'s symbol from
/// [`import_runtime_helpers`]. Define them in order with [`define_once`].
pub fn cell_import_thunk_function(
    sig: &WasmSignature,
    cell_rva: u32,
    delay_load: SymbolId,
) -> (String, DefinedFunction) {
    let function = import_thunk_function(sig.func_type(), Op::ImageAddress(cell_rva), delay_load);
    (format!("ImportThunk_{}_{cell_rva}", sig.as_str()), function)
}
