//! The wasm ABI type model and lowering rules (crossgen2 `WasmLowering.LowerToAbiType` /
//! `LowerType`), independent of any .NET metadata reader.
//!
//! Rules: bool, char, int8/16/32 (signed or not) lower to `i32`; int64/uint64 to `i64`;
//! float32 to `f32`; float64 to `f64`; `Vector128<T>` to `v128`; native ints, object
//! references, byrefs, pointers and function pointers to the pointer type (`i32` on wasm32,
//! `i64` on wasm64). A struct whose only instance field is as large as the struct lowers as
//! that field, recursively; any other struct is passed by reference (its size in the
//! signature string), a struct with no fields and size 0 is "empty" and passes nothing.

pub use crossgraph_runtime_core::abi::{PointerWidth, WasmValueType};

/// Primitive (non-pointer) element types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Primitive {
    /// `bool` (1 byte).
    Bool,
    /// `char` (UTF-16 code unit, 2 bytes).
    Char,
    /// `sbyte`.
    I8,
    /// `byte`.
    U8,
    /// `short`.
    I16,
    /// `ushort`.
    U16,
    /// `int`.
    I32,
    /// `uint`.
    U32,
    /// `long`.
    I64,
    /// `ulong`.
    U64,
    /// `float`.
    F32,
    /// `double`.
    F64,
}

impl Primitive {
    /// Size in bytes.
    pub fn size(self) -> u32 {
        match self {
            Primitive::Bool | Primitive::I8 | Primitive::U8 => 1,
            Primitive::Char | Primitive::I16 | Primitive::U16 => 2,
            Primitive::I32 | Primitive::U32 | Primitive::F32 => 4,
            Primitive::I64 | Primitive::U64 | Primitive::F64 => 8,
        }
    }

    /// The lowered value type.
    pub fn value_type(self) -> WasmValueType {
        match self {
            Primitive::I64 | Primitive::U64 => WasmValueType::I64,
            Primitive::F32 => WasmValueType::F32,
            Primitive::F64 => WasmValueType::F64,
            _ => WasmValueType::I32,
        }
    }
}

/// Pointer-sized kinds: all lower to the pointer type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PointerKind {
    /// `nint`.
    NativeInt,
    /// `nuint`.
    NativeUInt,
    /// A reference to a class, interface or array.
    ObjectRef,
    /// A managed pointer (`ref T`).
    ByRef,
    /// An unmanaged pointer (`T*`).
    Pointer,
    /// A function pointer.
    FunctionPointer,
}

/// A struct's layout as the ABI sees it (after the CLI layout rules ran).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StructLayout {
    /// Size in bytes (including padding, and ClassSize where set).
    pub size: u32,
    /// Alignment in bytes (a power of two).
    pub align: u32,
    /// Instance fields in declaration order (static fields excluded).
    pub fields: Vec<AbiType>,
}

/// A type as the ABI sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AbiType {
    /// `void` (returns only).
    Void,
    /// A primitive.
    Primitive(Primitive),
    /// A pointer-sized value.
    Pointer(PointerKind),
    /// `System.Runtime.Intrinsics.Vector128<T>`: passed by value as `v128`.
    Vector128,
    /// A value type that is not a primitive.
    Struct(StructLayout),
}

/// How a type travels across a wasm call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lowered {
    /// Nothing (`void` return, or an empty struct).
    Nothing,
    /// As one wasm value.
    Value(WasmValueType),
    /// By reference to a copy of `size` bytes; `align` is the struct's alignment.
    ByRef {
        /// Size in bytes.
        size: u32,
        /// Alignment in bytes.
        align: u32,
    },
}

/// A type the ABI cannot lower.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoweringError {
    /// `void` where a value is required.
    #[error("{item}: void cannot be passed as a parameter")]
    VoidParameter {
        /// The offending item, e.g. "parameter 2".
        item: String,
    },
    /// A struct whose layout is impossible.
    #[error("{item}: struct layout is invalid: {reason}")]
    InvalidStruct {
        /// The offending item.
        item: String,
        /// What is wrong.
        reason: &'static str,
    },
}

impl AbiType {
    /// Size in bytes on the target.
    pub fn size(&self, pointer: PointerWidth) -> u32 {
        match self {
            AbiType::Void => 0,
            AbiType::Primitive(p) => p.size(),
            AbiType::Pointer(_) => pointer.size(),
            AbiType::Vector128 => 16,
            AbiType::Struct(s) => s.size,
        }
    }

    /// Lowers the type for a wasm call on `pointer`-wide targets.
    ///
    /// # Errors
    /// [`LoweringError::InvalidStruct`] for a struct whose alignment is not a power of two or
    /// that is smaller than one of its fields; `item` names the type in the error.
    pub fn lower(&self, pointer: PointerWidth, item: &str) -> Result<Lowered, LoweringError> {
        let mut ty = self;
        loop {
            match ty {
                AbiType::Void => return Ok(Lowered::Nothing),
                AbiType::Primitive(p) => return Ok(Lowered::Value(p.value_type())),
                AbiType::Pointer(_) => return Ok(Lowered::Value(pointer.value_type())),
                AbiType::Vector128 => return Ok(Lowered::Value(WasmValueType::V128)),
                AbiType::Struct(s) => {
                    validate(s, pointer, item)?;
                    if s.size == 0 && s.fields.is_empty() {
                        return Ok(Lowered::Nothing);
                    }
                    // Unwrap a struct whose single field fills it (no padding), recursively.
                    if let [only] = s.fields.as_slice()
                        && only.size(pointer) == s.size
                        && *only != AbiType::Void
                    {
                        ty = only;
                        continue;
                    }
                    return Ok(Lowered::ByRef {
                        size: s.size,
                        align: s.align,
                    });
                }
            }
        }
    }
}

fn validate(s: &StructLayout, pointer: PointerWidth, item: &str) -> Result<(), LoweringError> {
    let invalid = |reason| LoweringError::InvalidStruct {
        item: item.to_string(),
        reason,
    };
    if !s.align.is_power_of_two() {
        return Err(invalid("alignment is not a power of two"));
    }
    if s.fields.iter().any(|f| f.size(pointer) > s.size) {
        return Err(invalid("a field is larger than the struct"));
    }
    if s.fields.contains(&AbiType::Void) {
        return Err(invalid("a field has type void"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap(inner: AbiType, size: u32, align: u32) -> AbiType {
        AbiType::Struct(StructLayout {
            size,
            align,
            fields: vec![inner],
        })
    }

    #[test]
    fn primitives_and_pointers_lower_per_the_rules() {
        let w32 = PointerWidth::Wasm32;
        let lower = |t: AbiType| t.lower(w32, "t").unwrap();
        assert_eq!(
            lower(AbiType::Primitive(Primitive::Bool)),
            Lowered::Value(WasmValueType::I32)
        );
        assert_eq!(
            lower(AbiType::Primitive(Primitive::U16)),
            Lowered::Value(WasmValueType::I32)
        );
        assert_eq!(
            lower(AbiType::Primitive(Primitive::U64)),
            Lowered::Value(WasmValueType::I64)
        );
        assert_eq!(
            lower(AbiType::Primitive(Primitive::F32)),
            Lowered::Value(WasmValueType::F32)
        );
        assert_eq!(
            lower(AbiType::Pointer(PointerKind::ObjectRef)),
            Lowered::Value(WasmValueType::I32)
        );
        assert_eq!(
            lower(AbiType::Vector128),
            Lowered::Value(WasmValueType::V128)
        );
        assert_eq!(
            AbiType::Pointer(PointerKind::ByRef)
                .lower(PointerWidth::Wasm64, "t")
                .unwrap(),
            Lowered::Value(WasmValueType::I64)
        );
    }

    #[test]
    fn single_field_structs_unwrap_recursively() {
        let w32 = PointerWidth::Wasm32;
        let inner = wrap(AbiType::Primitive(Primitive::F64), 8, 8);
        let outer = wrap(inner, 8, 8);
        assert_eq!(
            outer.lower(w32, "t").unwrap(),
            Lowered::Value(WasmValueType::F64)
        );
    }

    #[test]
    fn padded_or_multi_field_structs_go_by_reference() {
        let w32 = PointerWidth::Wasm32;
        // One int field in an 8-byte struct (explicit size): padding, so by reference.
        let padded = wrap(AbiType::Primitive(Primitive::I32), 8, 4);
        assert_eq!(
            padded.lower(w32, "t").unwrap(),
            Lowered::ByRef { size: 8, align: 4 }
        );
        let pair = AbiType::Struct(StructLayout {
            size: 8,
            align: 4,
            fields: vec![
                AbiType::Primitive(Primitive::I32),
                AbiType::Primitive(Primitive::I32),
            ],
        });
        assert_eq!(
            pair.lower(w32, "t").unwrap(),
            Lowered::ByRef { size: 8, align: 4 }
        );
        let empty = AbiType::Struct(StructLayout {
            size: 0,
            align: 1,
            fields: vec![],
        });
        assert_eq!(empty.lower(w32, "t").unwrap(), Lowered::Nothing);
    }

    #[test]
    fn impossible_structs_are_errors_naming_the_item() {
        let bad = wrap(AbiType::Primitive(Primitive::I64), 4, 4);
        let err = bad
            .lower(PointerWidth::Wasm32, "parameter 1 of Foo.Bar")
            .unwrap_err();
        assert!(err.to_string().contains("parameter 1 of Foo.Bar"), "{err}");
        let misaligned = AbiType::Struct(StructLayout {
            size: 4,
            align: 3,
            fields: vec![],
        });
        assert!(matches!(
            misaligned.lower(PointerWidth::Wasm32, "x"),
            Err(LoweringError::InvalidStruct { .. })
        ));
    }
}
