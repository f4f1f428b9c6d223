//! The interpreter's argument block: the one layout both thunk directions and the runtime's
//! `invoke` use.
//!
//! The arguments `this`, generic context, async continuation, then the explicit parameters,
//! in that order, each in a slot aligned to 8 bytes (16 for `v128` and for structs aligned
//! beyond 8) and padded to a multiple of 8; a by-reference struct is copied into its slot by
//! value. Then the return slot (8 bytes, 16 for `v128`) when the method returns a value. The
//! block is a multiple of 16 bytes. A struct return goes through the caller's return buffer.

use super::WasmValueType;
use super::signature::{ParamAbi, ReturnAbi, WasmSignature};

/// The block would not fit in 32 bits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signature {signature:?}: argument block exceeds 4 GiB")]
pub struct LayoutError {
    /// The signature string.
    pub signature: String,
}

/// What an argument of the block is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgRole {
    /// `this`.
    This,
    /// The hidden generic context.
    GenericContext,
    /// The async continuation.
    AsyncContinuation,
    /// Explicit parameter `n`.
    Param(usize),
}

/// How an argument sits in its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotKind {
    /// One value.
    Value(WasmValueType),
    /// A struct copy of `size` bytes (the wasm argument is a pointer to it).
    Struct {
        /// Size in bytes.
        size: u32,
    },
}

/// One argument slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgSlot {
    /// Which argument.
    pub role: ArgRole,
    /// Its wasm parameter index in the signature's function type.
    pub wasm_param: u32,
    /// How it is stored.
    pub kind: SlotKind,
    /// Byte offset in the block.
    pub offset: u32,
    /// Slot size in bytes (a multiple of 8).
    pub size: u32,
}

/// Where the result goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetSlot {
    /// No result.
    None,
    /// A value in the block at `offset`.
    Value {
        /// Its type.
        ty: WasmValueType,
        /// Byte offset in the block.
        offset: u32,
    },
    /// The caller's return buffer (wasm parameter `wasm_param`).
    Buffer {
        /// Struct size in bytes.
        size: u32,
        /// Wasm parameter index of the buffer pointer.
        wasm_param: u32,
    },
}

/// The argument block of a signature (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgLayout {
    /// Argument slots in block order (empty structs have none).
    pub args: Vec<ArgSlot>,
    /// The result.
    pub ret: RetSlot,
    /// Block size in bytes, a multiple of 16.
    pub size: u32,
}

/// A slot kind and its alignment in bytes.
type Placed = (SlotKind, u64);

fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

impl ArgLayout {
    /// Computes the layout of `sig` (wasm32).
    ///
    /// # Errors
    /// [`LayoutError`] when the structs add up beyond 4 GiB.
    pub fn of(sig: &WasmSignature) -> Result<ArgLayout, LayoutError> {
        let p = sig.parts();
        let ptr = sig.pointer().value_type();
        let mut wasm_param = u32::from(p.managed); // SP first on managed calls
        let mut roles: Vec<(ArgRole, Option<Placed>, u32)> = Vec::new();
        let mut push = |role, kind: Option<Placed>, wasm_param: &mut u32| {
            roles.push((role, kind, *wasm_param));
            if kind.is_some() {
                *wasm_param += 1;
            }
        };
        if p.has_this {
            push(
                ArgRole::This,
                Some((SlotKind::Value(ptr), 8)),
                &mut wasm_param,
            );
        }
        let buffer = match p.ret {
            ReturnAbi::Buffer { size } => {
                let at = wasm_param;
                wasm_param += 1;
                Some((size, at))
            }
            _ => None,
        };
        if p.generic_context {
            push(
                ArgRole::GenericContext,
                Some((SlotKind::Value(ptr), 8)),
                &mut wasm_param,
            );
        }
        if p.async_continuation {
            push(
                ArgRole::AsyncContinuation,
                Some((SlotKind::Value(ptr), 8)),
                &mut wasm_param,
            );
        }
        for (i, param) in p.params.iter().enumerate() {
            let kind = match *param {
                ParamAbi::Value(v) => Some((SlotKind::Value(v), value_align(v))),
                ParamAbi::ByRef { size } => Some((SlotKind::Struct { size }, 8)),
                ParamAbi::ByRefOverAligned { size } => Some((SlotKind::Struct { size }, 16)),
                ParamAbi::Empty => None,
            };
            push(ArgRole::Param(i), kind, &mut wasm_param);
        }
        let mut cursor: u64 = 0;
        let mut args = Vec::new();
        for (role, kind, wasm_param) in roles {
            let Some((kind, align)) = kind else { continue };
            let size = match kind {
                SlotKind::Value(v) => value_align(v),
                SlotKind::Struct { size } => round_up(u64::from(size), 8),
            };
            cursor = round_up(cursor, align);
            args.push((role, wasm_param, kind, cursor, size));
            cursor += size;
        }
        let ret = match (p.ret, buffer) {
            (ReturnAbi::Value(ty), _) => {
                cursor = round_up(cursor, value_align(ty));
                let offset = cursor;
                cursor += value_align(ty);
                (Some(ty), offset)
            }
            _ => (None, 0),
        };
        let total = round_up(cursor, 16);
        let too_large = || LayoutError {
            signature: sig.as_str().to_string(),
        };
        let fits = |v: u64| u32::try_from(v).map_err(|_| too_large());
        Ok(ArgLayout {
            args: args
                .into_iter()
                .map(|(role, wasm_param, kind, offset, size)| {
                    Ok(ArgSlot {
                        role,
                        wasm_param,
                        kind,
                        offset: fits(offset)?,
                        size: fits(size)?,
                    })
                })
                .collect::<Result<_, LayoutError>>()?,
            ret: match (ret, buffer) {
                ((Some(ty), offset), _) => RetSlot::Value {
                    ty,
                    offset: fits(offset)?,
                },
                (_, Some((size, wasm_param))) => RetSlot::Buffer { size, wasm_param },
                _ => RetSlot::None,
            },
            size: fits(total)?,
        })
    }
}

fn value_align(v: WasmValueType) -> u64 {
    match v {
        WasmValueType::V128 => 16,
        _ => 8,
    }
}
