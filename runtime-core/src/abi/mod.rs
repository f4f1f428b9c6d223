//! The wasm calling convention shared by the compiler, the runtime and the thunk tables: value
//! types, pointer width, the canonical signature strings ([`signature`]) and the interpreter's
//! argument block layout ([`layout`]). Defined here, in the crate both sides depend on, so
//! there is one definition (crossgen2 keeps four drifting copies).

use std::fmt;

pub mod continuation;
pub mod layout;
pub mod signature;

/// Import name (module `env`) of the runtime's string-literal helper, `[cell i32] -> [i32]`:
/// compiled code calls it with the address of a lazy `StringHandle` cell (ReadyToRun fixup
/// 0x1B) that still holds 0; it resolves the cell through the embedder, stores the string's
/// reference in it and returns it.
pub const STRING_LITERAL_HELPER: &str = "crossgraph_string_literal";

/// Import name (module `env`) of the runtime's allocation helper, `[cell i32] -> [i32]`:
/// compiled code's `newobj` calls it with the address of the type's `NewObject` cell
/// (ReadyToRun fixup 0x1C); it asks the embedder for a new, zeroed instance of that type and
/// returns its reference (the constructor runs next, in the code).
pub const NEW_OBJECT_HELPER: &str = "crossgraph_new_object";

/// Import name (module `env`) of the runtime's array helper, `[length i32, cell i32] -> [i32]`:
/// compiled code's `newarr` calls it with the element count and the address of the element
/// type's `NewArray` cell (ReadyToRun fixup 0x1D); it asks the embedder for a new, zeroed
/// array laid out as [`array`](mod@array) says and returns its reference. A negative length traps
/// (`OverflowException`, ECMA-335 III.4.20).
pub const NEW_ARRAY_HELPER: &str = "crossgraph_new_array";

/// Import name (module `env`) of the runtime's type-check helper, `[object i32, cell i32] ->
/// [i32]`: compiled code's `isinst` and `castclass` call it with the object and the address of
/// the type's `IsInstanceOf` or `ChkCast` cell (ReadyToRun fixups 0x1E, 0x1F); it returns the
/// object when it is an instance of that type (ECMA-335 III.4.6), 0 when it is not or is null
/// (the embedder owns the object model and answers the test). `castclass` traps on 0 for a
/// non-null object (InvalidCastException, III.4.3).
pub const IS_INSTANCE_HELPER: &str = "crossgraph_is_instance";

/// Import name (module `env`) of the runtime's virtual-entry helper, `[object i32, cell i32]
/// -> [i32]`: compiled code's `callvirt` of a virtual method calls it with the receiver (not
/// null: the code checks first) and the address of the method's `VirtualEntry` cell
/// (ReadyToRun fixup 0x16; crossgen2's `DelayLoad_Helper_Obj`). The embedder names the
/// override the receiver's type runs; the helper returns the address of that method's
/// portable entry point `[code, handle]` (two `i32` words: a table slot relative to
/// `__table_base`, then the entry-point handle the callee gets as its `PE` argument), which
/// the code calls like a managed `calli`. Entry points are made once per (code, handle) and
/// live as long as the module.
pub const VIRTUAL_ENTRY_HELPER: &str = "crossgraph_virtual_entry";

/// Single-dimension, zero-based arrays as compiled code reads them on wasm32 (CoreCLR's layout
/// on 32-bit targets): the object header (4 bytes), the element count (`u32`), then the
/// elements, each at `DATA_OFFSET + index * element size`. The embedder allocates them
/// ([`NEW_ARRAY_HELPER`]) and must lay them out so.
pub mod array {
    /// Offset of the element count, bytes from the array's reference.
    pub const LENGTH_OFFSET: u32 = 4;
    /// Offset of element 0, bytes from the array's reference.
    pub const DATA_OFFSET: u32 = 8;
}

/// Boxed value types as compiled code reads them on wasm32 (CoreCLR's layout): the object
/// header (4 bytes), then the value. `box` of a value type allocates through the type's
/// `NewObject` cell ([`NEW_OBJECT_HELPER`]: the embedder sizes the box) and stores the value
/// at [`boxed::DATA_OFFSET`]; `unbox.any` loads it from there.
pub mod boxed {
    /// Offset of the value, bytes from the box's reference.
    pub const DATA_OFFSET: u32 = 4;
}

/// Import name (module `env`) of the runtime's static-field helper, `[cell i32] -> [i32]`:
/// compiled code's `ldsfld`, `stsfld` and `ldsflda` call it with the address of the field's
/// lazy `FieldAddress` cell (ReadyToRun fixup 0x20) while it still holds 0; it asks the
/// embedder for the field's address (the embedder runs the class constructor first when the
/// class needs it), stores it in the cell and returns it.
pub const FIELD_ADDRESS_HELPER: &str = "crossgraph_field_address";

/// Import name (module `env`) of the runtime's runtime-handle helper, `[cell i32] -> [i32]`:
/// compiled code's `ldtoken` calls it with the address of the token's lazy `TypeHandle` or
/// `FieldHandle` cell (ReadyToRun fixups 0x10, 0x12) while the cell holds 0; the runtime asks
/// the embedder for the handle (the value of a `RuntimeTypeHandle` or `RuntimeFieldHandle`, a
/// pointer-sized word), stores it in the cell and returns it.
pub const RUNTIME_HANDLE_HELPER: &str = "crossgraph_runtime_handle";

/// Import name (module `env`) of the runtime's array-store check, `[array i32, value i32] ->
/// [i32]`: compiled code's `stelem.ref` calls it, after the null and bounds checks, with the
/// array and the non-null reference it stores; it returns 1 when the reference's type is
/// assignment compatible with the array's element type (ECMA-335 III.4.27: arrays are
/// covariant, so only the object model can tell) and 0 otherwise, when the code traps
/// (ArrayTypeMismatchException). crossgen2's code calls the `StelemRef` helper the same way.
pub const ARRAY_STORE_HELPER: &str = "crossgraph_array_store_check";

/// Import name (module `env`) of the runtime's throw helper, `[object i32] -> []`, which
/// never returns: compiled code's `throw` calls it with the exception object, and the
/// exception leaves every compiled frame up to the nearest host frame (the interpreter, or
/// the embedder's call), as compiled methods have no handlers (a method with exception
/// clauses stays interpreted).
pub const THROW_HELPER: &str = "crossgraph_throw";

pub use layout::{ArgLayout, ArgRole, ArgSlot, LayoutError, RetSlot, SlotKind};
pub use signature::{
    ParamAbi, ParseErrorKind, ReturnAbi, SignatureError, SignatureParseError, SignatureParts,
    ThunkDirection, WasmFuncType, WasmSignature,
};

/// A wasm value type the ABI uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WasmValueType {
    /// `i32`.
    I32,
    /// `i64`.
    I64,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
    /// `v128`.
    V128,
}

impl WasmValueType {
    /// The signature-string character: `i l f d V` (crossgen2 `WasmValueTypeToSigChar`).
    pub fn sig_char(self) -> char {
        match self {
            WasmValueType::I32 => 'i',
            WasmValueType::I64 => 'l',
            WasmValueType::F32 => 'f',
            WasmValueType::F64 => 'd',
            WasmValueType::V128 => 'V',
        }
    }

    /// The value type of a signature-string character, if it is one.
    pub fn from_sig_char(c: char) -> Option<Self> {
        Some(match c {
            'i' => WasmValueType::I32,
            'l' => WasmValueType::I64,
            'f' => WasmValueType::F32,
            'd' => WasmValueType::F64,
            'V' => WasmValueType::V128,
            _ => return None,
        })
    }
}

impl fmt::Display for WasmValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WasmValueType::I32 => "i32",
            WasmValueType::I64 => "i64",
            WasmValueType::F32 => "f32",
            WasmValueType::F64 => "f64",
            WasmValueType::V128 => "v128",
        })
    }
}

/// The target's pointer width: wasm32 first, wasm64 designed in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PointerWidth {
    /// 4-byte pointers, `i32`.
    #[default]
    Wasm32,
    /// 8-byte pointers, `i64`.
    Wasm64,
}

impl PointerWidth {
    /// The value type of pointers (and of the hidden SP, `this`, return buffer, generic
    /// context, async continuation and portable-entry-point parameters).
    pub fn value_type(self) -> WasmValueType {
        match self {
            PointerWidth::Wasm32 => WasmValueType::I32,
            PointerWidth::Wasm64 => WasmValueType::I64,
        }
    }

    /// Pointer size in bytes.
    pub fn size(self) -> u32 {
        match self {
            PointerWidth::Wasm32 => 4,
            PointerWidth::Wasm64 => 8,
        }
    }
}
