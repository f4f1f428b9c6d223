//! Runtime-async suspension: the continuation layout and the runtime helpers compiled code,
//! resumption stubs and the runtime's dispatcher share. One definition, used by the compiler
//! (`crossgraph-codegen`) and by the runtime (`exec`).
//!
//! **Calls.** An async variant (signature flag `AsyncVariant` 0x100, `a` in its signature
//! string) takes the continuation to resume as its hidden continuation argument: 0 on a fresh
//! call. It returns its result normally when it completes. When it suspends it returns a
//! dummy result (zero) and hands its continuation to the runtime through
//! [`SUSPEND_HELPER`]; its caller picks it up with [`TAKE_HELPER`] right after the call (the
//! wasm stand-in for CoreCLR's dedicated continuation return register). A taken 0 means the
//! callee completed.
//!
//! **Suspending.** A compiled async variant awaiting a callee that suspended allocates its own
//! continuation ([`ALLOC_HELPER`], zeroed), stores the code reference of its resumption stub
//! at [`RESUME`], the 1-based suspension point at [`STATE`], its IL arguments, IL locals and
//! the evaluation-stack values below the awaited result in slots from [`DATA`], links the
//! callee's continuation to it (`callee.next = mine`, at [`NEXT`]), and suspends with it. The
//! innermost continuation (the one the suspending leaf, e.g. the runtime's own await, made)
//! is the head of the chain; each `next` leads outwards.
//!
//! **Resuming.** The dispatcher completes the head: it stores the leaf's result into the
//! result slot of `head.next` ([`RESULT`]) and calls each continuation's resumption stub
//! (`object(object continuation, ref byte result)`, signature `iiip`,
//! `[SP i32, continuation i32, result i32, PE i32] -> [i32]`) from the innermost outwards,
//! each with the result slot of the next continuation. A stub calls its variant's compiled
//! body directly with the continuation (the variant restores its state from it and jumps to
//! the suspension point), stores the variant's result at `result`, and returns 0; if the
//! variant suspends again, the stub returns the variant's new continuation instead, and the
//! dispatcher links it to the rest of the chain (`new.next = next`) and stops.
//!
//! Layout (bytes, wasm32; each header field has an 8-byte slot so wasm64 keeps the offsets):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | `next`: the caller's continuation (0: the outermost) |
//! | 8 | 4 | `resume`: absolute table index of the resumption stub |
//! | 16 | 4 | `state`: 1-based suspension point |
//! | 32 | 16 | `result`: where the awaited callee's result is stored on resumption |
//! | 48 | ... | saved values, each in an 8-byte slot (16 bytes, 16-aligned, for `v128`) |

use super::WasmValueType;

/// Offset of `next` (the caller's continuation).
pub const NEXT: u32 = 0;
/// Offset of `resume` (absolute table index of the resumption stub).
pub const RESUME: u32 = 8;
/// Offset of `state` (1-based suspension point).
pub const STATE: u32 = 16;
/// Offset of the 16-byte result slot.
pub const RESULT: u32 = 32;
/// Offset of the first saved value.
pub const DATA: u32 = 48;

/// `[size i32] -> [i32]`: allocates a zeroed, 16-byte aligned continuation of `size` bytes.
pub const ALLOC_HELPER: &str = "crossgraph_alloc_continuation";
/// `[continuation i32] -> []`: the calling async variant suspends with `continuation`.
pub const SUSPEND_HELPER: &str = "crossgraph_async_suspend";
/// `[] -> [i32]`: the continuation the last async callee suspended with (0: it completed);
/// clears it.
pub const TAKE_HELPER: &str = "crossgraph_async_take";

/// The signature string of every resumption stub: `object(object continuation, ref byte
/// result)` as a managed method.
pub const RESUMPTION_STUB_SIGNATURE: &str = "iiip";

/// Lays out saved values from [`DATA`]: returns each value's offset and the continuation's
/// total size in bytes (a multiple of 16).
pub fn data_layout(values: &[WasmValueType]) -> (Vec<u32>, u32) {
    let mut at = DATA;
    let offsets = values
        .iter()
        .map(|&v| {
            let (size, align) = if v == WasmValueType::V128 {
                (16, 16)
            } else {
                (8, 8)
            };
            at = at.next_multiple_of(align);
            let offset = at;
            at += size;
            offset
        })
        .collect();
    (offsets, at.next_multiple_of(16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_values_take_aligned_slots_after_the_header() {
        use WasmValueType::*;
        let (offsets, size) = data_layout(&[I32, V128, F64, I64]);
        assert_eq!(offsets, vec![48, 64, 80, 88]);
        assert_eq!(size, 96);
        assert_eq!(data_layout(&[]), (vec![], 48));
        assert_eq!(data_layout(&[I32]), (vec![48], 64));
    }
}
