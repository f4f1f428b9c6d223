//! The baseline IL -> wasm compiler, talking to the type system only through
//! [`JitInterface`] (crossgen2's JIT/EE split).
//!
//! Supported subset (everything else is "not compiled", with the reason recorded; the method then
//! runs in the interpreter, as crossgen2 leaves such methods to the JIT): `nop`, arguments
//! (`ldarg*`, `starg*`; the ABI passes a struct argument as the address of the caller's copy,
//! which `ldarga` pushes), locals (`ldloc*`, `stloc*`; a struct local lives in the frame), their
//! addresses (`ldloca`, `ldarga`: such locals and arguments live in an 8-byte slot of the
//! method's frame on the shadow stack, below the incoming SP, and callees get the frame's bottom
//! as their SP), `localloc` (zeroed, 16-byte aligned memory below the frame, callees' SP below
//! it), struct values on the evaluation stack (each the address of a frame temporary
//! of its own, one per instruction that makes one: `ldarg`, `ldloc`, `ldobj`, `ldfld` and
//! `ldsfld` of a struct-typed field, `ldelem` of a struct element, `unbox.any` and `dup` copy
//! into it, `newobj` of a struct constructs in it (zeroed, its address the constructor's
//! `this`), a call returning a struct gets it as the return buffer; `stloc`, `starg`,
//! `stobj`, `stfld`, `stsfld`, `stelem`, `box` and `ret` (into the caller's return buffer) copy
//! out of it, `ldfld` reads a field of it, a call passes its address, the callee owning that
//! copy; a struct value crosses forward branches in entry locals like any value, a backward
//! branch with one on the stack is not compiled), constants
//! (`ldc.*`, `ldnull`),
//! string literals (`ldstr`: the reference in the literal's lazy `StringHandle` import cell,
//! resolved through the runtime's helper on first use, [`string_through_cell`]), static fields
//! of primitive and reference types (`ldsfld`, `stsfld`, `ldsflda` of any type: the address in
//! the field's lazy `FieldAddress` import cell, resolved the same way,
//! [`field_address_through_cell`]; the embedder owns the statics and runs class constructors),
//! single-dimension arrays (`newarr` through the runtime's array helper and the element type's
//! `NewArray` cell, [`new_array_through_cell`]; `ldlen`; `ldelem.*`, `ldelem`, `ldelema` and
//! `stelem.*`, `stelem` of primitive, reference and struct elements (`ldelema` of a reference
//! element only under `readonly.`),
//! with null and bounds checks that trap; a reference store asks the runtime's array-store
//! check, which asks the embedder (array covariance), and traps on a misfit; layout in
//! [`crossgraph_runtime_core::abi::array`]), type tests (`isinst`, and `castclass`, which traps
//! when the test fails on a non-null object: the runtime's type-check helper asks the embedder,
//! through the type's `IsInstanceOf` or `ChkCast` cell, [`type_check_through_cell`]),
//! `ldtoken` of types and fields (the handle in the token's lazy `TypeHandle` or `FieldHandle`
//! cell, resolved through the runtime's helper on first use, [`runtime_handle_through_cell`];
//! a `RuntimeTypeHandle` or `RuntimeFieldHandle` is one pointer to the ABI),
//! integer and float arithmetic and bitwise operations, the overflow-checking `add.ovf`, `sub.ovf`,
//! `mul.ovf` (and `.un`; not `mul.ovf` on int64), comparisons (`ceq`, `cgt*`, `clt*`), conversions
//! (`conv.*`, and `conv.ovf.*` trapping when the value does not fit), indirect loads and stores
//! (`ldind.*`, `stind.*`; with `ldfld`/`stfld` also under `volatile.` and `unaligned.`) on
//! native-int or managed pointers, `cpblk` and `initblk` (`memory.copy`, `memory.fill`), `ldobj`/`stobj` of primitive and reference types, `initobj` and
//! `sizeof`, `newobj` of a class (a zeroed instance from the runtime's allocation helper through
//! the class's `NewObject` cell, [`new_object_through_cell`], then the constructor called on it;
//! not of strings; a delegate's runtime-provided constructor is the embedder's, given the
//! target and the function pointer; a value type of one primitive or reference is constructed in
//! place: in a zeroed slot of the frame, its address the constructor's `this`, then loaded),
//! `box` of value types (a box
//! from the same allocation helper through the type's `NewObject` cell, the value stored after
//! its header; a reference type's `box` does nothing) and `unbox.any` (a null check and the
//! type test through the type's `ChkCast` cell, then the value; of a reference type it is
//! `castclass`), `throw` (the runtime's throw helper takes the
//! exception object, and the exception leaves this and every compiled frame, none of which has a
//! handler), `dup`, `pop`, calls to methods the JIT interface
//! can call directly or through an import cell (`tail.` calls run as plain calls; `callvirt` too
//! when no virtual dispatch is needed: a non-virtual or `final` callee, after a null check of
//! `this` that traps), virtual calls (`callvirt` of a virtual method, an interface method
//! included: after the null check, the runtime's virtual-entry helper asks the embedder for the
//! receiver's override through the method's `VirtualEntry` cell and returns its portable entry
//! point, called like a managed `calli`, [`virtual_entry_through_cell`]; `ldvirtftn` pushes
//! that entry point's address, or the method's own when no dispatch is needed), `constrained.`
//! `callvirt` resolved at compile time ([`JitInterface::constrained_call`]: a value type's own
//! implementation called directly on the pointer, else a box of the value, or the reference
//! loaded through the pointer, called virtually), `ldftn` of an
//! `UnmanagedCallersOnly` method (its own unmanaged table slot) with `calli` of an unmanaged
//! signature, `ldftn` of a managed method (the address of its portable entry point) with `calli` of
//! a managed signature, `ret`, and any control-flow graph of `br`, `brtrue`, `brfalse`, the
//! compare-and-branch family and `switch`, lowered to a block-dispatch loop (values on the
//! evaluation stack at a block boundary travel in the target block's entry locals). The evaluation
//! stack maps onto the wasm operand stack; a call spills its arguments to locals so the
//! stack-pointer argument can go first. `UnmanagedCallersOnly` bodies compile with their unmanaged
//! signature (no SP parameter: calls they make pass the `__stack_pointer` global).
//!
//! Runtime-async variants (an async continuation parameter) may await: `call X` followed by
//! `call AsyncHelpers.Await` is a suspension point. The call goes to X's async variant with a
//! null continuation; if X suspended (the runtime's take helper returns its continuation),
//! this frame saves its IL arguments, IL locals and the evaluation stack below the awaited
//! result into a new continuation (with its resumption stub and the 1-based state), links
//! X's continuation to it, suspends with it and returns. The code after each await starts a
//! block of the dispatch loop; one more block, entered when the continuation argument is not
//! null, restores the saved state and the awaited result and branches there. Protocol and
//! layout: `crossgraph_runtime_core::abi::continuation`.
//!
//! A managed function pointer is the absolute address of a portable entry point, two words
//! `[code, handle]` (`docs/image-format.md`): a managed `calli` traps on null, loads `code`
//! (a table slot relative to `__table_base`) and passes `handle` as the callee's `PE`
//! argument, exactly what a direct call passes.

use crossgraph_runtime_core::abi::{array, boxed};
use wasm_encoder::Instruction;

use crate::abi::WasmValueType;
use crate::memory::{load, store, zero};
use crate::object_writer::{Code, Op, SymbolId};
use crate::resumption::{self, AsyncHelpers};
use crate::signature::{ParamAbi, ReturnAbi, WasmSignature};

/// An IL operand, decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum IlOperand {
    /// No operand.
    None,
    /// An integer constant (`ldc.i4*`, `ldc.i8`).
    Int(i64),
    /// A float constant (`ldc.r4`, `ldc.r8`).
    Float(f64),
    /// An argument or local index.
    Var(u16),
    /// A metadata token.
    Token(u32),
    /// An absolute branch target (IL offset).
    Branch(u32),
    /// `switch` targets.
    Switch(Vec<u32>),
}

/// The prefixes folded into an instruction (ECMA-335 III.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IlPrefixes {
    /// `volatile.`: honoured by any access (wasm memory here is not shared, its accesses are
    /// not reordered).
    pub volatile: bool,
    /// `unaligned.` and its alignment (1, 2 or 4): wasm loads and stores accept any address.
    pub unaligned: Option<u8>,
    /// `tail.`: the call runs as a plain call (only the stack depth differs).
    pub tail: bool,
    /// `constrained.` and its type token (on `callvirt`: see
    /// [`JitInterface::constrained_call`]).
    pub constrained: Option<u32>,
    /// `readonly.` (on `ldelema`: the address needs no exact-type check, III.2.3).
    pub readonly: bool,
    /// `no.`, which the baseline compiler refuses.
    pub other: bool,
}

impl IlPrefixes {
    /// No prefix at all.
    pub fn is_empty(&self) -> bool {
        *self == IlPrefixes::default()
    }

    /// Whether the baseline compiler honours these prefixes on `opcode`: `volatile.` and
    /// `unaligned.` on field and indirect loads and stores and on `cpblk`/`initblk`, `tail.`
    /// on calls, `constrained.` on `callvirt`, `readonly.` on `ldelema`.
    fn supported_on(&self, opcode: &str) -> bool {
        let access = matches!(
            opcode,
            "ldfld" | "stfld" | "ldsfld" | "stsfld" | "cpblk" | "initblk"
        ) || opcode.starts_with("ldind.")
            || opcode.starts_with("stind.");
        let call = matches!(opcode, "call" | "callvirt" | "calli");
        if self.readonly {
            return opcode == "ldelema"
                && *self
                    == IlPrefixes {
                        readonly: true,
                        ..IlPrefixes::default()
                    };
        }
        !self.other
            && (self.constrained.is_none() || opcode == "callvirt")
            && ((access && !self.tail && self.constrained.is_none())
                || (call && !self.volatile && self.unaligned.is_none()))
    }
}

/// One IL instruction, prefixes folded.
#[derive(Clone, Debug, PartialEq)]
pub struct IlInstruction {
    /// Byte offset of the instruction, or of its first prefix when it has prefixes (where
    /// branches land).
    pub offset: u32,
    /// Opcode name as ECMA-335 spells it (`ldarg.0`, `add`, `conv.i8`, ...).
    pub opcode: &'static str,
    /// Its operand.
    pub operand: IlOperand,
    /// The prefixes that precede it.
    pub prefixes: IlPrefixes,
}

/// How a call site reaches its callee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallTarget {
    /// A direct `call` of a method with R2R code in this image.
    Direct {
        /// The callee's symbol.
        symbol: SymbolId,
        /// The callee's signature.
        signature: WasmSignature,
    },
    /// A call through the callee's MethodEntry import cell (a method without R2R code in this
    /// image: another assembly's, one the runtime provides, or a runtime-async method's
    /// Task-returning entry). The compiler leaves a placeholder `unreachable` at the call
    /// site, listed in [`SiteKind::Call`]; the compilation must replace it with
    /// [`call_through_cell`] once the cell's offset is known.
    Import {
        /// The callee's signature.
        signature: WasmSignature,
    },
    /// A virtual call (`callvirt` of a virtual, not `final` method): the override the
    /// receiver's type runs is found at run time. The compiler leaves a placeholder
    /// `unreachable` where the receiver's portable entry point is computed, listed in
    /// [`SiteKind::Virtual`]; the compilation must replace it with
    /// [`virtual_entry_through_cell`] once the method's `VirtualEntry` cell has its offset.
    Virtual {
        /// The virtual method's signature (an override's is the same).
        signature: WasmSignature,
    },
    /// Not callable from compiled code yet; the reason.
    Unsupported(String),
}

/// The kind of runtime handle an `ldtoken` loads ([`JitInterface::runtime_handle`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleKind {
    /// A `RuntimeTypeHandle` (ReadyToRun fixup `TypeHandle`, 0x10).
    Type,
    /// A `RuntimeFieldHandle` (ReadyToRun fixup `FieldHandle`, 0x12).
    Field,
}

/// What `newobj` of a constructor does ([`JitInterface::new_object`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NewObject {
    /// Allocate an instance of a class, then call its constructor on it: the class's token
    /// (`TypeDef` or `TypeRef`, what the allocation's `NewObject` cell names) and how to call
    /// the constructor (an instance method returning nothing).
    Class {
        /// The class token.
        type_token: u32,
        /// The constructor.
        ctor: CallTarget,
    },
    /// Construct a value type in place (III.4.21): in a zeroed slot of the method's frame,
    /// whose address the constructor gets as `this`, then load the value. Only for value
    /// types that are one primitive or reference (`access`, at most 8 bytes).
    Value {
        /// The `ldind`/`stind` suffix of the value.
        access: &'static str,
        /// The constructor.
        ctor: CallTarget,
    },
    /// Construct a struct (a value type the ABI passes by reference) in place: in a zeroed
    /// frame temporary of `size` bytes, whose address the constructor gets as `this`; the
    /// temporary is the struct value on the stack.
    Struct {
        /// Size in bytes.
        size: u32,
        /// The constructor.
        ctor: CallTarget,
    },
    /// Not compiled yet; the reason.
    Unsupported(String),
}

/// What `ldftn` of a method yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FunctionPointer {
    /// An `UnmanagedCallersOnly` method: the absolute table index of its own unmanaged-typed
    /// slot (never the managed-shaped entry: crossgen2's "indirect call signature mismatch").
    Unmanaged {
        /// The method's symbol.
        symbol: SymbolId,
        /// Its unmanaged signature (`[retbuf], params`).
        signature: WasmSignature,
    },
    /// A managed method: the address of its portable entry point. The compiler leaves a
    /// placeholder `unreachable` listed in [`SiteKind::EntryPoint`]; the
    /// compilation replaces it with the entry's address ([`portable_entry_point_address`]).
    Managed,
    /// Not available to compiled code; the reason.
    Unsupported(String),
}

/// An instance field's place and how to load it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldAccess {
    /// Offset in bytes from the address of the object or value.
    pub offset: u32,
    /// The `ldind`/`stind` suffix of its type (`i1`, `u2`, `i4`, `i8`, `r4`, `r8`, `i`,
    /// `ref`), or `None` for a struct-typed field (copied as `size` bytes).
    pub access: Option<&'static str>,
    /// Size of its type in bytes.
    pub size: u32,
}

/// A type as `ldobj`, `stobj`, `initobj` and `sizeof` see it
/// ([`JitInterface::value_type`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueAccess {
    /// Size in bytes (a reference's for reference types, III.4.25).
    pub size: u32,
    /// The `ldind`/`stind` suffix that loads and stores it (as in [`FieldAccess`]), or `None`
    /// for a struct.
    pub access: Option<&'static str>,
    /// Whether it is a reference type (a class, interface or array), which `box` leaves as it
    /// is and `unbox.any` casts to.
    pub reference: bool,
}

/// What the compiler asks the type system (crossgen2's `ICorJitInfo`, reduced).
pub trait JitInterface {
    /// How to call the method with `token`.
    fn call_target(&mut self, token: u32) -> CallTarget;

    /// What `ldftn token` pushes. The default refuses.
    fn function_pointer(&mut self, token: u32) -> FunctionPointer {
        FunctionPointer::Unsupported(format!("ldftn 0x{token:08x} is not supported here"))
    }

    /// The instance field `token` (`Field` or `MemberRef`), as `ldfld`/`stfld`/`ldflda` reach
    /// it through an object reference or a managed pointer.
    ///
    /// # Errors
    /// The reason it cannot be accessed (static fields, struct-typed fields for
    /// `ldfld`/`stfld`). The default refuses.
    fn instance_field(&mut self, token: u32) -> Result<FieldAccess, String> {
        Err(format!("field 0x{token:08x} is not supported here"))
    }

    /// The static field `token` (`Field` or `MemberRef`) of an `ldsfld`, `stsfld` or
    /// `ldsflda`: how to load it, as for [`JitInterface::instance_field`] (offset 0: its
    /// address comes from the field's `FieldAddress` cell,
    /// [`SiteKind::StaticField`]).
    ///
    /// # Errors
    /// The reason it cannot be accessed (an instance field, a thread-static field). The
    /// default refuses.
    fn static_field(&mut self, token: u32) -> Result<FieldAccess, String> {
        Err(format!("static field 0x{token:08x} is not supported here"))
    }

    /// Whether `isinst token` and `castclass token` can be compiled: the type `token`
    /// (`TypeDef`, `TypeRef` or `TypeSpec`) names the type-check cell the runtime's helper
    /// reads ([`SiteKind::IsInstance`]).
    ///
    /// # Errors
    /// The reason they cannot. The default refuses.
    fn type_check(&mut self, token: u32) -> Result<(), String> {
        Err(format!(
            "type test against 0x{token:08x} is not supported here"
        ))
    }

    /// What `ldtoken token` loads: the runtime handle of a type (`TypeDef`, `TypeRef` or
    /// `TypeSpec`) or of a field, which names the token's `TypeHandle` or `FieldHandle` cell
    /// ([`SiteKind::TypeHandle`], [`SiteKind::FieldHandle`]).
    ///
    /// # Errors
    /// The reason it cannot be compiled (a method's handle, say). The default refuses.
    fn runtime_handle(&mut self, token: u32) -> Result<HandleKind, String> {
        Err(format!("ldtoken 0x{token:08x} is not supported here"))
    }

    /// Whether `newarr token` can be compiled: the element type `token` (`TypeDef`, `TypeRef`
    /// or `TypeSpec`) names the array's `NewArray` cell ([`SiteKind::NewArray`]).
    ///
    /// # Errors
    /// The reason it cannot. The default refuses.
    fn new_array(&mut self, token: u32) -> Result<(), String> {
        Err(format!("newarr of 0x{token:08x} is not supported here"))
    }

    /// The type `token` (`TypeDef`, `TypeRef` or `TypeSpec`) of an `ldobj`, `stobj`, `initobj`
    /// or `sizeof` (and of `ldelem`, `stelem`, `ldelema`: the element type).
    ///
    /// # Errors
    /// The reason it cannot be used here. The default refuses.
    fn value_type(&mut self, token: u32) -> Result<ValueAccess, String> {
        Err(format!("type 0x{token:08x} is not supported here"))
    }

    /// The wasm signature of the `StandAloneSig` `token` of a `calli`, lowered with its own
    /// calling convention (unmanaged conventions give unmanaged signatures).
    ///
    /// # Errors
    /// The reason the signature cannot be lowered. The default refuses.
    fn indirect_call_signature(&mut self, token: u32) -> Result<WasmSignature, String> {
        Err(format!("calli 0x{token:08x} is not supported here"))
    }

    /// The `ldind`/`stind` suffix of IL local `index`'s type. Asked for the locals whose
    /// address is taken (`ldloca`): they live in the method's shadow-stack frame. The default:
    /// unknown, which refuses the method.
    fn local_access(&mut self, index: u32) -> Option<&'static str> {
        let _ = index;
        None
    }

    /// The size in bytes of IL local `index` when it is a struct the ABI does not pass as one
    /// value (alignment at most 8): such a local lives in the method's frame, reached only
    /// through `ldloca`; its wasm local is a placeholder. The default: none.
    fn local_struct(&mut self, index: u32) -> Option<u32> {
        let _ = index;
        None
    }

    /// As [`local_access`](JitInterface::local_access), for IL argument `index` (`ldarga`;
    /// `this` is argument 0).
    fn arg_access(&mut self, index: u32) -> Option<&'static str> {
        let _ = index;
        None
    }

    /// Whether the method `token` is `AsyncHelpers.Await`: in an async variant, a call of it
    /// right after a call is a suspension point, fused with that call (which then calls the
    /// callee's async variant). The default: no method is.
    fn is_await(&mut self, token: u32) -> bool {
        let _ = token;
        false
    }

    /// The symbol of the runtime's throw helper (`crossgraph_throw`, `[object i32] -> []`,
    /// never returns), which `throw` calls; the compilation imports it when a compiled body
    /// uses it ([`CompiledBody::throws`]).
    ///
    /// # Errors
    /// The reason `throw` cannot be compiled. The default refuses.
    fn throw_helper(&mut self) -> Result<SymbolId, String> {
        Err("throw is outside the baseline subset".into())
    }

    /// The symbol of the runtime's array-store check (`crossgraph_array_store_check`,
    /// `[array i32, value i32] -> [i32]`), which `stelem.ref` calls for a non-null reference;
    /// the compilation imports it when a compiled body uses it
    /// ([`CompiledBody::checks_array_stores`]).
    ///
    /// # Errors
    /// The reason `stelem.ref` cannot be compiled. The default refuses.
    fn array_store_helper(&mut self) -> Result<SymbolId, String> {
        Err("stelem.ref of a reference (array covariance check)".into())
    }

    /// What `newobj ctor` does. The default refuses.
    fn new_object(&mut self, ctor: u32) -> NewObject {
        let _ = ctor;
        NewObject::Unsupported("newobj is outside the baseline subset".into())
    }

    /// How `callvirt token` reaches its callee: when no virtual dispatch is needed (the method
    /// is not virtual, or is `final`) like [`call_target`](JitInterface::call_target), with a
    /// null check of `this`; otherwise [`CallTarget::Virtual`]. The default refuses.
    fn callvirt_target(&mut self, token: u32) -> CallTarget {
        CallTarget::Unsupported(format!("callvirt 0x{token:08x} is not supported here"))
    }

    /// How an async variant calls the async variant of the method `token` (the call an
    /// `AsyncHelpers.Await` consumes). [`CallTarget::Import`] sites are listed in
    /// [`SiteKind::AsyncCall`]. The default refuses.
    fn async_call_target(&mut self, token: u32) -> CallTarget {
        CallTarget::Unsupported(format!("await of 0x{token:08x} is not supported here"))
    }

    /// How `constrained. constraint callvirt method` calls (ECMA-335 III.2.1): `constraint`
    /// is the prefix's type token.
    ///
    /// # Errors
    /// The reason it cannot be told statically (a generic constraint, an implementation in
    /// another assembly). The default refuses.
    fn constrained_call(&mut self, constraint: u32, method: u32) -> Result<Constrained, String> {
        Err(format!(
            "constrained. 0x{constraint:08x} callvirt 0x{method:08x} is not supported here"
        ))
    }

    /// What the method being compiled needs to suspend: its resumption stub's symbol and the
    /// runtime's async helpers.
    ///
    /// # Errors
    /// The reason it cannot suspend. The default refuses.
    fn suspension(&mut self) -> Result<Suspension, String> {
        Err("suspension is not supported here".into())
    }
}

/// How `constrained. T callvirt M` calls (ECMA-335 III.2.1), `this` being a managed
/// pointer to a `T` ([`JitInterface::constrained_call`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Constrained {
    /// `T` is a reference type: the reference is loaded through the pointer, then called as
    /// `callvirt M`.
    Dereference,
    /// `T` is a value type whose method (`MethodDef` token of the input) implements `M`:
    /// called directly, the pointer its `this`.
    Direct {
        /// The implementing method.
        method: u32,
    },
    /// `T` is a value type that does not implement `M` (it inherits `System.ValueType`'s or
    /// `System.Enum`'s): the value is boxed (through `T`'s `NewObject` cell) and the box
    /// called as `callvirt M`.
    Box,
}

/// What an async variant needs to suspend ([`JitInterface::suspension`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suspension {
    /// The symbol of the method's resumption stub (its table index goes into the
    /// continuation).
    pub resumption_stub: SymbolId,
    /// The runtime's async helpers.
    pub helpers: AsyncHelpers,
}

/// What a site of a compiled body is ([`CompiledBody::sites`]): an op the compilation may
/// replace once the image is laid out, and what its token names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SiteKind {
    /// A call: an `Op::Call` (or [`CallTarget::Import`] placeholder) and the callee's token,
    /// so a compilation that learns the callee stays interpreted routes the call through an
    /// import cell instead ([`call_through_cell`]).
    Call,
    /// A call of an async variant at a suspension point (`Op::Call` or placeholder) and the
    /// callee's token; a callee without R2R code here is called through its async variant's
    /// import cell.
    AsyncCall,
    /// `ldftn` of an `UnmanagedCallersOnly` method: its `Op::TableIndex` and the target's
    /// token, so a compilation that learns the target has no R2R code loads its import cell.
    Address,
    /// `ldftn` of a managed method: a placeholder ([`FunctionPointer::Managed`]) and the
    /// target's token, replaced with [`portable_entry_point_address`].
    EntryPoint,
    /// `ldstr`: a placeholder `unreachable` and the user-string token (0x70xxxxxx), replaced
    /// with [`string_through_cell`] once the literal's `StringHandle` cell has its offset.
    String,
    /// An allocation (`newobj`, `box`): a placeholder and the type's token, replaced with
    /// [`new_object_through_cell`] once the type's `NewObject` cell has its offset.
    NewObject,
    /// A static field's address (`ldsfld`, `stsfld`, `ldsflda`): a placeholder and the
    /// field's token, replaced with [`field_address_through_cell`] once the field's
    /// `FieldAddress` cell has its offset.
    StaticField,
    /// `newarr`: a placeholder (the length on the stack below it) and the element type's
    /// token, replaced with [`new_array_through_cell`] once the type's `NewArray` cell has
    /// its offset.
    NewArray,
    /// `isinst`: a placeholder (the object on the stack below it) and the type's token,
    /// replaced with [`type_check_through_cell`] once the type's `IsInstanceOf` cell has its
    /// offset.
    IsInstance,
    /// `castclass` (and `unbox.any`'s type test): as [`SiteKind::IsInstance`], with the
    /// type's `ChkCast` cell (the code around the placeholder traps when the test fails on a
    /// non-null object).
    Cast,
    /// A virtual call: a placeholder (the receiver on the stack below it) and the virtual
    /// method's token, replaced with [`virtual_entry_through_cell`] once the method's
    /// `VirtualEntry` cell has its offset.
    Virtual,
    /// `ldtoken` of a type: a placeholder and the type's token, replaced with
    /// [`runtime_handle_through_cell`] once the type's `TypeHandle` cell has its offset.
    TypeHandle,
    /// `ldtoken` of a field: as [`SiteKind::TypeHandle`], with the field's `FieldHandle` cell.
    FieldHandle,
}

/// A compiled method body and what it needs.
#[derive(Clone, Debug)]
pub struct CompiledBody {
    /// The body, with symbolic relocations.
    pub code: Code,
    /// Tokens of the methods it calls.
    pub callees: Vec<u32>,
    /// The ops a compilation may replace: `(index in code.ops, token, kind)`, in the order
    /// the compiler made them (see [`SiteKind`] for what each kind's op and token are).
    pub sites: Vec<(usize, u32, SiteKind)>,
    /// Whether it calls the throw helper ([`JitInterface::throw_helper`]).
    pub throws: bool,
    /// Whether it calls the array-store check ([`JitInterface::array_store_helper`]).
    pub checks_array_stores: bool,
    /// The resumption stub the body stores into its continuations, when it can suspend.
    pub resumption_stub: Option<SymbolId>,
}

impl CompiledBody {
    /// Encodes the body's plain instructions ([`Code::encode_runs`]), keeping every site op
    /// a compilation may still replace, and renumbers the sites to match. Call it in the
    /// compiler's parallel batches: the object writer then copies bytes instead of encoding
    /// instructions one by one. The module written is byte-identical.
    pub fn encode_runs(&mut self) {
        let mut keep: Vec<usize> = self.sites.iter().map(|&(index, _, _)| index).collect();
        keep.sort_unstable();
        keep.dedup();
        let moved = self.code.encode_runs(&keep);
        for (index, _, _) in &mut self.sites {
            let k = keep.binary_search(index).expect("every site index is kept");
            *index = moved[k];
        }
    }

    /// The sites of one kind: `(index in code.ops, token)`.
    pub fn sites_of(&self, kind: SiteKind) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.sites
            .iter()
            .filter(move |&&(_, _, k)| k == kind)
            .map(|&(index, token, _)| (index, token))
    }
}

/// The operations replacing a direct call when the callee has no R2R code: load the callee's
/// import cell at image offset `cell_rva` (a table slot relative to `__table_base`, first the
/// cell's import thunk, after resolution the callee's code or its R2R -> interpreter thunk)
/// and `call_indirect` it with the callee's wasm type.
pub fn call_through_cell(cell_rva: u32, callee: &WasmSignature) -> Vec<Op> {
    let mut ops = function_pointer_through_cell(cell_rva);
    ops.push(Op::CallIndirect(callee.func_type()));
    ops
}

/// The operations replacing an `ldftn` when the target has no R2R code: the absolute table
/// index held by the target's import cell at image offset `cell_rva` (first the cell's
/// import thunk, after resolution the target's entry). `[] -> [i32]`.
pub fn function_pointer_through_cell(cell_rva: u32) -> Vec<Op> {
    vec![
        Op::ImageAddress(cell_rva),
        Op::Ins(Instruction::I32Load(wasm_encoder::MemArg {
            offset: 0,
            align: 2,
            memory_index: 0,
        })),
        Op::TableBase,
        Op::Ins(Instruction::I32Add),
    ]
}

/// The operations replacing an `ldstr` placeholder: the string object's reference from the
/// literal's lazy `StringHandle` cell at image offset `cell_rva` (ReadyToRun fixup 0x1B),
/// `[] -> [i32]`. The cell holds 0 until resolved: then the code calls `helper` (the runtime's
/// `crossgraph_string_literal`, `[cell i32] -> [i32]`), which resolves it through the
/// embedder and stores the reference, so later loads find it.
pub fn string_through_cell(cell_rva: u32, helper: SymbolId) -> Vec<Op> {
    lazy_cell_value(cell_rva, helper)
}

/// The operations replacing a static field's address placeholder (`ldsfld`, `stsfld`,
/// `ldsflda`): the field's address from its lazy `FieldAddress` cell at image offset
/// `cell_rva` (ReadyToRun fixup 0x20), `[] -> [i32]`. The cell holds 0 until resolved: then
/// the code calls `helper` (the runtime's `crossgraph_field_address`, `[cell i32] -> [i32]`),
/// which asks the embedder (running the class constructor it needs) and stores the address.
pub fn field_address_through_cell(cell_rva: u32, helper: SymbolId) -> Vec<Op> {
    lazy_cell_value(cell_rva, helper)
}

/// The operations replacing a `newarr` placeholder: a new zeroed array from the runtime's
/// `helper` (`crossgraph_new_array`, `[length i32, cell i32] -> [i32]`), given the element
/// type's `NewArray` cell at image offset `cell_rva` (ReadyToRun fixup 0x1D). `[length i32] ->
/// [i32]`.
pub fn new_array_through_cell(cell_rva: u32, helper: SymbolId) -> Vec<Op> {
    vec![Op::ImageAddress(cell_rva), Op::Call(helper)]
}

/// The operations replacing an `isinst` or `castclass` placeholder: the runtime's `helper`
/// (`crossgraph_is_instance`, `[object i32, cell i32] -> [i32]`) with the type's `IsInstanceOf`
/// or `ChkCast` cell at image offset `cell_rva` (ReadyToRun fixups 0x1E, 0x1F): the object
/// when it is an instance of the type, else 0. `[object i32] -> [i32]`.
pub fn type_check_through_cell(cell_rva: u32, helper: SymbolId) -> Vec<Op> {
    vec![Op::ImageAddress(cell_rva), Op::Call(helper)]
}

/// The operations replacing a virtual call's placeholder: the portable entry point of the
/// override the receiver runs, from the runtime's `helper` (`crossgraph_virtual_entry`,
/// `[object i32, cell i32] -> [i32]`) given the virtual method's `VirtualEntry` cell at image
/// offset `cell_rva` (ReadyToRun fixup 0x16). `[object i32] -> [i32]`.
pub fn virtual_entry_through_cell(cell_rva: u32, helper: SymbolId) -> Vec<Op> {
    vec![Op::ImageAddress(cell_rva), Op::Call(helper)]
}

/// The operations replacing an `ldtoken` placeholder: the runtime handle in the token's lazy
/// `TypeHandle` or `FieldHandle` cell at image offset `cell_rva` (ReadyToRun fixups 0x10,
/// 0x12), `[] -> [i32]`. The cell holds 0 until resolved: then the code calls `helper` (the
/// runtime's `crossgraph_runtime_handle`, `[cell i32] -> [i32]`), which asks the embedder and
/// stores the handle.
pub fn runtime_handle_through_cell(cell_rva: u32, helper: SymbolId) -> Vec<Op> {
    lazy_cell_value(cell_rva, helper)
}

/// The value of the lazy cell at image offset `cell_rva`, `[] -> [i32]`: its contents, or,
/// while they are 0, what `helper` (`[cell i32] -> [i32]`, which resolves and stores it)
/// returns.
fn lazy_cell_value(cell_rva: u32, helper: SymbolId) -> Vec<Op> {
    let load = || {
        [
            Op::ImageAddress(cell_rva),
            Op::Ins(Instruction::I32Load(wasm_encoder::MemArg {
                offset: 0,
                align: 2,
                memory_index: 0,
            })),
        ]
    };
    let mut ops = vec![Op::Ins(Instruction::Block(
        wasm_encoder::BlockType::Result(wasm_encoder::ValType::I32),
    ))];
    ops.extend(load()); // the reference
    ops.extend(load()); // resolved?
    ops.push(Op::Ins(Instruction::BrIf(0)));
    ops.extend([
        Op::Ins(Instruction::Drop),
        Op::ImageAddress(cell_rva),
        Op::Call(helper),
        Op::Ins(Instruction::End),
    ]);
    ops
}

/// The operations replacing a `newobj` allocation placeholder: a new zeroed instance of the
/// class whose lazy `NewObject` cell (ReadyToRun fixup 0x1C) is at image offset `cell_rva`,
/// from the runtime's `helper` (`crossgraph_new_object`, `[cell i32] -> [i32]`), which asks
/// the embedder. `[] -> [i32]`.
pub fn new_object_through_cell(cell_rva: u32, helper: SymbolId) -> Vec<Op> {
    vec![Op::ImageAddress(cell_rva), Op::Call(helper)]
}

/// The operations replacing a managed `ldftn` placeholder: the absolute address of the
/// target's portable entry point at image offset `entry_rva`. `[] -> [i32]`.
pub fn portable_entry_point_address(entry_rva: u32) -> Vec<Op> {
    vec![Op::ImageAddress(entry_rva)]
}

/// Size in bytes of an element of `ldind` suffix `access`.
fn element_size(access: &str, pointer: WasmValueType) -> u32 {
    match access {
        "i1" | "u1" => 1,
        "i2" | "u2" => 2,
        "i8" | "r8" => 8,
        "i" | "ref" if pointer == WasmValueType::I64 => 8,
        _ => 4,
    }
}

/// The `stind` suffix that stores a value of `ldind` suffix `access` (stores do not care for
/// signedness).
fn store_suffix(access: &str) -> &str {
    match access {
        "u1" => "i1",
        "u2" => "i2",
        "u4" => "i4",
        other => other,
    }
}

/// A pointer-sized load at constant `offset`: `[addr] -> [pointer]`.
fn pointer_load(pointer: WasmValueType, offset: u32) -> Instruction<'static> {
    let arg = |align| wasm_encoder::MemArg {
        offset: u64::from(offset),
        align,
        memory_index: 0,
    };
    if pointer == WasmValueType::I64 {
        Instruction::I64Load(arg(3))
    } else {
        Instruction::I32Load(arg(2))
    }
}

/// Why a method was not compiled (it stays interpreted).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not compiled: {reason}")]
pub struct NotCompiled {
    /// The reason, naming the first unsupported construct and its IL offset.
    pub reason: String,
}

fn refuse(reason: impl Into<String>) -> NotCompiled {
    NotCompiled {
        reason: reason.into(),
    }
}

/// Compiles a managed method with signature `sig`, IL locals `locals` and body `il`.
///
/// # Errors
/// [`NotCompiled`] naming the first construct outside the subset.
pub fn compile(
    sig: &WasmSignature,
    locals: &[WasmValueType],
    il: &[IlInstruction],
    jit: &mut dyn JitInterface,
) -> Result<CompiledBody, NotCompiled> {
    let parts = sig.parts();
    if parts.generic_context {
        return Err(refuse("hidden generic context"));
    }
    let ret_buffer_size = match parts.ret {
        ReturnAbi::Buffer { size } => Some(size),
        _ => None,
    };
    if ret_buffer_size.is_some() && (!parts.managed || parts.async_continuation) {
        return Err(refuse(
            "struct return of an UnmanagedCallersOnly method or an async variant",
        ));
    }
    // Managed: IL argument i -> wasm parameter i + 1 (parameter 0 is SP; `this` is IL
    // argument 0). Unmanaged (`UnmanagedCallersOnly`): IL argument i -> wasm parameter i, and
    // managed callees get the `__stack_pointer` global as their SP.
    // An async variant's continuation (after `this`) is no IL argument: only the resume
    // dispatch reads it.
    let mut args: Vec<WasmValueType> = Vec::new();
    let mut arg_params: Vec<u32> = Vec::new();
    let mut struct_args: Vec<Option<u32>> = Vec::new();
    let mut next = u32::from(parts.managed);
    if parts.has_this {
        args.push(sig.pointer().value_type());
        arg_params.push(next);
        struct_args.push(None);
        next += 1;
    }
    // The caller's return buffer follows `this`.
    let ret_buffer = ret_buffer_size.map(|size| {
        next += 1;
        (next - 1, size)
    });
    let continuation = parts.async_continuation.then_some(next);
    if parts.async_continuation {
        next += 1;
    }
    for p in &parts.params {
        match p {
            ParamAbi::Value(v) => {
                args.push(*v);
                struct_args.push(None);
            }
            ParamAbi::ByRef { size } | ParamAbi::ByRefOverAligned { size } => {
                args.push(sig.pointer().value_type());
                struct_args.push(Some(*size));
            }
            _ => return Err(refuse("empty-struct parameter")),
        }
        arg_params.push(next);
        next += 1;
    }
    let ret = match parts.ret {
        ReturnAbi::Value(v) => Some(v),
        _ => None,
    };
    let wasm_params = sig.func_type().params.len() as u32;
    let mut body = Body {
        cf: None,
        ops: Vec::new(),
        stack: Vec::new(),
        extra_locals: locals.to_vec(),
        first_local: wasm_params,
        managed: parts.managed,
        params: sig.func_type().params,
        ret,
        ret_buffer,
        arg_params,
        struct_args,
        structs: Vec::new(),
        struct_locals: (0..locals.len() as u32)
            .map(|i| jit.local_struct(i))
            .collect(),
        pointer: sig.pointer().value_type(),
        scratch: Vec::new(),
        callees: Vec::new(),
        sites: Vec::new(),
        throws: false,
        checks_array_stores: false,
        suspend: None,
        frame: None,
    };
    // Suspension points (an async variant's `call X; call AsyncHelpers.Await`): the await
    // ends a basic block, so the code after it can be resumed into.
    let mut awaits: Vec<usize> = Vec::new();
    if continuation.is_some() {
        for (i, ins) in il.iter().enumerate() {
            if let ("call", IlOperand::Token(t)) = (ins.opcode, &ins.operand)
                && jit.is_await(*t)
            {
                let at = |what: &str| refuse(format!("IL_{:04x}: {what}", ins.offset));
                if i == 0 || il[i - 1].opcode != "call" || !il[i - 1].prefixes.is_empty() {
                    return Err(at("await of a task that is not the result of a call"));
                }
                if i + 1 == il.len() {
                    return Err(at("await at the end of the body"));
                }
                awaits.push(i);
            }
        }
    }
    // Basic blocks: starts at 0, at branch targets, and after every branch or ret.
    let mut starts = std::collections::BTreeSet::from([il.first().map_or(0, |i| i.offset)]);
    let mut branches = false;
    for (i, ins) in il.iter().enumerate() {
        let targets: Vec<u32> = match &ins.operand {
            IlOperand::Branch(t) => vec![*t],
            IlOperand::Switch(ts) => ts.clone(),
            _ => Vec::new(),
        };
        if !targets.is_empty() || ins.opcode == "ret" {
            branches |= !targets.is_empty();
            starts.extend(targets);
            if let Some(next) = il.get(i + 1) {
                starts.insert(next.offset);
            }
        }
    }
    for &i in &awaits {
        starts.insert(il[i + 1].offset);
    }
    for &i in &awaits {
        if starts.contains(&il[i].offset) {
            return Err(refuse(format!(
                "IL_{:04x}: branch between an async call and its await",
                il[i].offset
            )));
        }
    }
    if !awaits.is_empty() && body.struct_args.iter().any(Option::is_some) {
        // The caller's copy need not outlive a suspension.
        return Err(refuse("struct argument in an async variant that awaits"));
    }
    if !awaits.is_empty() {
        let suspension = jit.suspension().map_err(refuse)?;
        let (callee, mine) = (
            body.new_local(WasmValueType::I32),
            body.new_local(WasmValueType::I32),
        );
        body.suspend = Some(Suspend {
            continuation: continuation.expect("awaits are scanned in async variants only"),
            suspension,
            il_locals: locals.len(),
            calls: awaits.iter().map(|&i| il[i - 1].offset).collect(),
            awaits: awaits
                .iter()
                .map(|&i| (il[i].offset, il[i + 1].offset))
                .collect(),
            points: Vec::new(),
            awaited_value: false,
            callee,
            mine,
        });
        branches = true;
    }
    body.frame_prologue(il, jit).map_err(refuse)?;
    if branches {
        let offsets: std::collections::BTreeSet<u32> = il.iter().map(|i| i.offset).collect();
        if let Some(bad) = starts.iter().find(|s| !offsets.contains(s)) {
            return Err(refuse(format!(
                "branch into the middle of an instruction at IL_{bad:04x}"
            )));
        }
        // An async variant that can suspend has one more block, after the IL's: the resume
        // dispatch, entered when the continuation argument is not 0.
        let blocks = starts.len() + usize::from(body.suspend.is_some());
        let pc = body.new_local(WasmValueType::I32);
        if let Some(continuation) = body.suspend.as_ref().map(|s| s.continuation) {
            body.push(Instruction::LocalGet(continuation));
            body.push(Instruction::If(wasm_encoder::BlockType::Empty));
            body.push(Instruction::I32Const(starts.len() as i32));
            body.push(Instruction::LocalSet(pc));
            body.push(Instruction::End);
        }
        body.ops
            .push(Op::Ins(Instruction::Loop(wasm_encoder::BlockType::Empty)));
        for _ in 0..blocks {
            body.ops
                .push(Op::Ins(Instruction::Block(wasm_encoder::BlockType::Empty)));
        }
        body.ops.push(Op::Ins(Instruction::LocalGet(pc)));
        body.ops.push(Op::Ins(Instruction::BrTable(
            (0..blocks as u32).collect::<Vec<_>>().into(),
            blocks as u32 - 1,
        )));
        body.ops.push(Op::Ins(Instruction::End));
        let mut entry = vec![None; blocks];
        entry[0] = Some(Vec::new());
        body.cf = Some(ControlFlow {
            block_of: starts.iter().enumerate().map(|(i, &o)| (o, i)).collect(),
            blocks,
            current: 0,
            terminated: false,
            pc,
            entry,
            entry_structs: vec![Vec::new(); blocks],
        });
    }
    for (i, ins) in il.iter().enumerate() {
        if !ins.prefixes.is_empty() && !ins.prefixes.supported_on(ins.opcode) {
            return Err(refuse(format!(
                "IL_{:04x}: prefixed {}",
                ins.offset, ins.opcode
            )));
        }
        let at = |what: &str| refuse(format!("IL_{:04x}: {what}", ins.offset));
        body.enter_block(ins.offset).map_err(|e| at(&e))?;
        let last = i + 1 == il.len();
        body.instruction(ins, &args, ret, last, jit)
            .map_err(|e| at(&e))?;
    }
    if body.suspend.is_some() {
        body.resume_dispatch();
    }
    if body.cf.is_some() {
        // Close the dispatch loop; every block ends in a branch or ret.
        body.ops.push(Op::Ins(Instruction::End));
        body.ops.push(Op::Ins(Instruction::Unreachable));
    }
    // The frame's size, final now that the struct temporaries are known.
    if let Some(frame) = &body.frame {
        let size = frame.temps_end.next_multiple_of(16);
        let constant = if body.pointer == WasmValueType::I64 {
            Instruction::I64Const(i64::from(size))
        } else {
            Instruction::I32Const(size as i32)
        };
        for at in frame.size_ops {
            body.ops[at] = Op::Ins(constant.clone());
        }
    }
    Ok(CompiledBody {
        code: Code {
            locals: body.extra_locals,
            ops: body.ops,
        },
        callees: body.callees,
        sites: body.sites,
        throws: body.throws,
        checks_array_stores: body.checks_array_stores,
        resumption_stub: body.suspend.map(|s| s.suspension.resumption_stub),
    })
}

/// What `newobj` constructs (from [`NewObject`]).
enum Constructed {
    /// An instance of the class with this token.
    Class(u32),
    /// A value type of one primitive or reference, loaded with this `ldind` suffix.
    Value(&'static str),
    /// A struct of this many bytes.
    Struct(u32),
}

/// What [`Body::managed_call_arguments`] set up besides pushing the arguments.
struct CallArguments {
    /// The local holding `this`, if the callee has one.
    this: Option<u32>,
    /// The return buffer of a struct result: its frame offset and size in bytes.
    buffer: Option<(u32, u32)>,
}

/// The suspension points of an async variant and what resuming needs.
struct Suspend {
    /// The wasm parameter holding the continuation to resume (0: a fresh call).
    continuation: u32,
    suspension: Suspension,
    /// The number of IL locals (wasm locals `first_local..`).
    il_locals: usize,
    /// IL offsets of the async calls.
    calls: std::collections::BTreeSet<u32>,
    /// IL offset of each await -> IL offset of the instruction it resumes at.
    awaits: std::collections::BTreeMap<u32, u32>,
    /// Compiled suspension points, in IL order (state = index + 1).
    points: Vec<SuspensionPoint>,
    /// Whether the last async call left a result for its await.
    awaited_value: bool,
    /// Locals: the callee's continuation, this frame's.
    callee: u32,
    mine: u32,
}

/// One compiled suspension point.
struct SuspensionPoint {
    /// The block resumed into.
    block: usize,
    /// Saved values: type, local (IL arguments, IL locals, stack values below the result),
    /// and offset in the continuation.
    saved: Vec<(WasmValueType, u32, u32)>,
    /// The entry local receiving the awaited result, if the callee returns one.
    result: Option<(WasmValueType, u32)>,
}

/// Control flow as a block-dispatch loop: a `pc` local selects the IL basic block; each
/// block's code sits after the `end` of its own wasm block inside the dispatch `loop`, so
/// falling through from one IL block to the next needs no dispatch, and a branch sets `pc`
/// and `br`s back to the loop. Values live across block boundaries in per-block entry
/// locals (IL fixes the stack shape at every block start, ECMA-335 III.1.7.5).
struct ControlFlow {
    /// Block index by IL offset of its first instruction.
    block_of: std::collections::BTreeMap<u32, usize>,
    blocks: usize,
    current: usize,
    /// The current block ended with an unconditional transfer.
    terminated: bool,
    pc: u32,
    /// Entry stack of each block (types and the locals that carry them), once known.
    entry: Vec<Option<Vec<(WasmValueType, u32)>>>,
    /// The struct values of each block's entry stack (as [`Body::structs`]), once known.
    entry_structs: Vec<Vec<(usize, u32)>>,
}

struct Body {
    cf: Option<ControlFlow>,
    ops: Vec<Op>,
    stack: Vec<WasmValueType>,
    extra_locals: Vec<WasmValueType>,
    first_local: u32,
    /// Managed body (SP is parameter 0), as opposed to `UnmanagedCallersOnly`.
    managed: bool,
    /// The wasm parameter types.
    params: Vec<WasmValueType>,
    /// The method's result type.
    ret: Option<WasmValueType>,
    /// A struct return: the wasm parameter of the caller's return buffer, and its size in
    /// bytes (`ret` copies the struct value there).
    ret_buffer: Option<(u32, u32)>,
    /// The wasm parameter of each IL argument.
    arg_params: Vec<u32>,
    /// By IL argument: the size of a struct passed by reference to the caller's copy (`S<N>`,
    /// `A<N>`): its parameter is the copy's address, which `ldarga` pushes (the callee owns
    /// the copy).
    struct_args: Vec<Option<u32>>,
    /// The struct values on the evaluation stack: `(index in stack, size in bytes)`, in stack
    /// order. A struct value is the address of a frame temporary holding its bytes (its type
    /// in `stack` is the pointer type); [`Body::pop`] refuses it, [`Body::pop_struct`] takes it.
    structs: Vec<(usize, u32)>,
    /// By IL local: the size of a struct local, which lives in the frame (only `ldloca`
    /// reaches it).
    struct_locals: Vec<Option<u32>>,
    /// The pointer-sized value type (`native int`, addresses, table indices).
    pointer: WasmValueType,
    /// Scratch locals `(type, index)`, reused across instructions.
    scratch: Vec<(WasmValueType, u32)>,
    callees: Vec<u32>,
    /// [`CompiledBody::sites`].
    sites: Vec<(usize, u32, SiteKind)>,
    throws: bool,
    checks_array_stores: bool,
    /// Suspension points, in an async variant that awaits.
    suspend: Option<Suspend>,
    /// The shadow-stack frame of address-taken locals and arguments.
    frame: Option<Frame>,
}

/// The shadow-stack frame of the IL locals and arguments whose address is taken (`ldloca`,
/// `ldarga`): each lives in an 8-byte slot below the incoming SP, zeroed (locals) or holding
/// the incoming value (arguments) on entry; callees get the frame's bottom as their SP.
#[derive(Debug)]
struct Frame {
    /// The local holding the frame's address (the incoming SP minus the frame size).
    fp: u32,
    /// With `localloc`: the local holding the stack pointer below the memory it allocated
    /// (`fp` at entry), which callees get as their SP.
    sp: Option<u32>,
    /// Slot offset and `ldind` suffix of each address-taken local.
    locals: std::collections::BTreeMap<u32, (u32, &'static str)>,
    /// Slot offset and `ldind` suffix of each address-taken argument.
    args: std::collections::BTreeMap<u32, (u32, &'static str)>,
    /// Slot offset of the 8-byte slot value types are constructed in (`newobj` of a value
    /// type: each is complete before the next starts, so one slot serves them all).
    value_slot: Option<u32>,
    /// The end of the frame so far: struct temporaries go here, one per instruction that
    /// makes a struct value ([`Body::temp`]), so the frame's size is final only once the body
    /// is compiled.
    temps_end: u32,
    /// The prologue's two ops holding the frame's size, patched at the end.
    size_ops: [usize; 2],
}

impl Body {
    /// The suspension check after an await whose code resumes at IL offset `resume`: the
    /// evaluation stack (the awaited result on top) goes to the resume block's entry locals;
    /// if the callee suspended, this frame saves its state into a new continuation, links the
    /// callee's continuation to it, suspends with it and returns; otherwise the stack is
    /// reloaded and execution falls into the resume block.
    fn suspension_point(&mut self, resume: u32, awaited: bool) -> Result<(), String> {
        let k = self.target(resume)?;
        self.spill_to(k)?;
        let entry = self.entry_locals_known(k);
        let suspend = self
            .suspend
            .as_ref()
            .expect("suspension points need Suspend");
        let (below, result) = match entry.split_last() {
            Some((&last, below)) if awaited => (below.to_vec(), Some(last)),
            _ => (entry.clone(), None),
        };
        let mut values: Vec<(WasmValueType, u32)> = Vec::new();
        for &param in &self.arg_params {
            values.push((self.local_type(param), param));
        }
        for j in 0..suspend.il_locals as u32 {
            values.push((self.extra_locals[j as usize], self.first_local + j));
        }
        values.extend(below);
        let types: Vec<WasmValueType> = values.iter().map(|&(t, _)| t).collect();
        let (offsets, size) = resumption::data_layout(&types);
        let (callee, mine) = (suspend.callee, suspend.mine);
        let Suspension {
            resumption_stub,
            helpers,
        } = suspend.suspension;
        let state = suspend.points.len() as i32 + 1;
        let pointer = self.pointer;
        self.ops.extend([
            Op::Call(helpers.take),
            Op::Ins(Instruction::LocalTee(callee)),
            Op::Ins(Instruction::If(wasm_encoder::BlockType::Empty)),
            Op::Ins(Instruction::I32Const(size as i32)),
            Op::Call(helpers.alloc),
            Op::Ins(Instruction::LocalSet(mine)),
            Op::Ins(Instruction::LocalGet(mine)),
            Op::TableIndex(resumption_stub),
            Op::Ins(store(pointer, resumption::RESUME)),
            Op::Ins(Instruction::LocalGet(mine)),
            Op::Ins(Instruction::I32Const(state)),
            Op::Ins(store(WasmValueType::I32, resumption::STATE)),
        ]);
        for (&(ty, local), &offset) in values.iter().zip(&offsets) {
            self.push(Instruction::LocalGet(mine));
            self.push(Instruction::LocalGet(local));
            self.push(store(ty, offset));
        }
        self.ops.extend([
            Op::Ins(Instruction::LocalGet(callee)),
            Op::Ins(Instruction::LocalGet(mine)),
            Op::Ins(store(pointer, resumption::NEXT)),
            Op::Ins(Instruction::LocalGet(mine)),
            Op::Call(helpers.suspend),
        ]);
        if let Some(ret) = self.ret {
            self.push(zero(ret));
        }
        self.push(Instruction::Return);
        self.push(Instruction::End);
        for &(ty, local) in &entry {
            self.push(Instruction::LocalGet(local));
            self.stack.push(ty);
        }
        let saved = values
            .iter()
            .zip(offsets)
            .map(|(&(ty, local), offset)| (ty, local, offset))
            .collect();
        self.suspend
            .as_mut()
            .expect("suspension points need Suspend")
            .points
            .push(SuspensionPoint {
                block: k,
                saved,
                result,
            });
        Ok(())
    }

    /// The resume dispatch block, after the IL's blocks: restores the state saved at the
    /// continuation's suspension point (and the awaited result from its result slot) and
    /// branches to the block after that await.
    fn resume_dispatch(&mut self) {
        let suspend = self.suspend.take().expect("resume dispatch needs Suspend");
        let cf = self
            .cf
            .as_mut()
            .expect("async variants use the dispatch loop");
        cf.current = cf.blocks - 1;
        let pc = cf.pc;
        self.push(Instruction::End);
        let c = suspend.continuation;
        for (state, point) in suspend.points.iter().enumerate() {
            self.push(Instruction::LocalGet(c));
            self.push(load(WasmValueType::I32, resumption::STATE));
            self.push(Instruction::I32Const(state as i32 + 1));
            self.push(Instruction::I32Eq);
            self.push(Instruction::If(wasm_encoder::BlockType::Empty));
            for &(ty, local, offset) in &point.saved {
                self.push(Instruction::LocalGet(c));
                self.push(load(ty, offset));
                self.push(Instruction::LocalSet(local));
            }
            if let Some((ty, local)) = point.result {
                self.push(Instruction::LocalGet(c));
                self.push(load(ty, resumption::RESULT));
                self.push(Instruction::LocalSet(local));
            }
            self.push(Instruction::I32Const(point.block as i32));
            self.push(Instruction::LocalSet(pc));
            self.push(Instruction::Br(1)); // the dispatch loop, from inside the `if`
            self.push(Instruction::End);
        }
        // A continuation whose state names no suspension point of this body.
        self.push(Instruction::Unreachable);
        self.suspend = Some(suspend);
    }

    /// The type of wasm local `index` (a parameter or an extra local).
    fn local_type(&self, index: u32) -> WasmValueType {
        match index.checked_sub(self.first_local) {
            Some(j) => self.extra_locals[j as usize],
            None => self.params[index as usize],
        }
    }

    /// The locals carrying block `k`'s entry stack, recording it from `stack` the first time.
    fn entry_locals(&mut self, k: usize) -> Result<Vec<(WasmValueType, u32)>, String> {
        let known = self.cf.as_ref().and_then(|cf| cf.entry[k].clone());
        match known {
            Some(entry) => {
                let types: Vec<WasmValueType> = entry.iter().map(|&(t, _)| t).collect();
                let same_structs = self
                    .cf
                    .as_ref()
                    .is_none_or(|cf| cf.entry_structs[k] == self.structs);
                if types != self.stack || !same_structs {
                    return Err("inconsistent evaluation stack at a block start".into());
                }
                Ok(entry)
            }
            None => {
                let types = self.stack.clone();
                let mut entry = Vec::new();
                for ty in types {
                    let index = self.new_local(ty);
                    entry.push((ty, index));
                }
                if let Some(cf) = self.cf.as_mut() {
                    cf.entry[k] = Some(entry.clone());
                    cf.entry_structs[k] = self.structs.clone();
                }
                Ok(entry)
            }
        }
    }

    /// Stores the evaluation stack into block `k`'s entry locals (emptying it).
    ///
    /// A struct value (the address of its temporary) goes forward only: its temporary belongs
    /// to the instruction that made it, which a backward branch could run again while the
    /// value is still on the stack.
    fn spill_to(&mut self, k: usize) -> Result<(), String> {
        let current = self.cf.as_ref().map_or(0, |cf| cf.current);
        if !self.structs.is_empty() && k <= current {
            return Err("a struct value on the stack at a backward branch".into());
        }
        let entry = self.entry_locals(k)?;
        for &(_, local) in entry.iter().rev() {
            self.push(Instruction::LocalSet(local));
        }
        self.stack.clear();
        self.structs.clear();
        Ok(())
    }

    /// Called before each instruction: at a block start, closes the previous block (its
    /// fallthrough carrying the stack into the new block's entry locals) and reloads them.
    fn enter_block(&mut self, offset: u32) -> Result<(), String> {
        let Some(k) = self
            .cf
            .as_ref()
            .and_then(|cf| cf.block_of.get(&offset).copied())
        else {
            return Ok(());
        };
        if k == 0 {
            return Ok(());
        }
        let terminated = self.cf.as_ref().is_some_and(|cf| cf.terminated);
        if terminated {
            self.stack.clear();
            self.structs.clear();
            if self.cf.as_ref().is_some_and(|cf| cf.entry[k].is_none()) {
                self.entry_locals(k)?; // an empty entry (III.1.7.5)
            }
        } else {
            self.spill_to(k)?;
        }
        self.push(Instruction::End);
        let entry = self.entry_locals_known(k);
        for &(ty, local) in &entry {
            self.push(Instruction::LocalGet(local));
            self.stack.push(ty);
        }
        if let Some(cf) = self.cf.as_mut() {
            cf.current = k;
            cf.terminated = false;
            self.structs = cf.entry_structs[k].clone();
        }
        Ok(())
    }

    fn entry_locals_known(&self, k: usize) -> Vec<(WasmValueType, u32)> {
        self.cf
            .as_ref()
            .and_then(|cf| cf.entry[k].clone())
            .unwrap_or_default()
    }

    /// `br` depth of the dispatch loop from the current block, plus `extra` enclosing
    /// structured blocks.
    fn dispatch_depth(&self, extra: u32) -> u32 {
        let cf = self.cf.as_ref().expect("control flow");
        (cf.blocks - 1 - cf.current) as u32 + extra
    }

    fn target(&self, offset: u32) -> Result<usize, String> {
        self.cf
            .as_ref()
            .and_then(|cf| cf.block_of.get(&offset).copied())
            .ok_or_else(|| format!("branch target IL_{offset:04x} is not a block start"))
    }

    /// Unconditional transfer to the block at `offset`.
    fn goto(&mut self, offset: u32) -> Result<(), String> {
        let k = self.target(offset)?;
        self.spill_to(k)?;
        let (pc, depth) = (
            self.cf.as_ref().expect("control flow").pc,
            self.dispatch_depth(0),
        );
        self.push(Instruction::I32Const(k as i32));
        self.push(Instruction::LocalSet(pc));
        self.push(Instruction::Br(depth));
        if let Some(cf) = self.cf.as_mut() {
            cf.terminated = true;
        }
        Ok(())
    }

    /// Transfer to the block at `offset` if the i32 on top of the stack is non-zero. Values
    /// below the condition go with either way (ECMA-335 III.1.7.5: the target and the
    /// fallthrough see the same stack): they are stored in the target's entry locals, and
    /// reloaded from them for the fallthrough.
    fn goto_if(&mut self, offset: u32) -> Result<(), String> {
        if self.pop()? != WasmValueType::I32 {
            return Err("branch condition is not int32".into());
        }
        let k = self.target(offset)?;
        let carried = if self.stack.is_empty() {
            self.entry_locals(k)?;
            None
        } else {
            // A local of its own: `switch` holds its index in a scratch local meanwhile.
            let condition = self.new_local(WasmValueType::I32);
            self.push(Instruction::LocalSet(condition));
            let stack = (self.stack.clone(), self.structs.clone());
            self.spill_to(k)?;
            self.push(Instruction::LocalGet(condition));
            Some(stack)
        };
        let (pc, depth) = (
            self.cf.as_ref().expect("control flow").pc,
            self.dispatch_depth(1),
        );
        self.push(Instruction::If(wasm_encoder::BlockType::Empty));
        self.push(Instruction::I32Const(k as i32));
        self.push(Instruction::LocalSet(pc));
        self.push(Instruction::Br(depth));
        self.push(Instruction::End);
        if let Some((stack, structs)) = carried {
            for (_, local) in self.entry_locals_known(k) {
                self.push(Instruction::LocalGet(local));
            }
            self.stack = stack;
            self.structs = structs;
        }
        Ok(())
    }

    fn push(&mut self, ins: Instruction<'static>) {
        self.ops.push(Op::Ins(ins));
    }

    /// Appends `op` as a site of `kind` naming `token` ([`CompiledBody::sites`]).
    fn push_site(&mut self, token: u32, kind: SiteKind, op: Op) {
        self.sites.push((self.ops.len(), token, kind));
        self.ops.push(op);
    }

    /// Appends the placeholder `unreachable` of a site of `kind` naming `token`, which the
    /// compilation replaces once the image is laid out.
    fn push_placeholder(&mut self, token: u32, kind: SiteKind) {
        self.push_site(token, kind, Op::Ins(Instruction::Unreachable));
    }

    /// Pops a scalar (a struct value is an error: see [`Body::pop_struct`]).
    fn pop(&mut self) -> Result<WasmValueType, String> {
        if self.top_struct().is_some() {
            return Err("a struct value where a scalar is expected".into());
        }
        self.stack
            .pop()
            .ok_or_else(|| "evaluation stack underflow".to_string())
    }

    /// A scratch local of type `ty` not used by the current instruction.
    fn scratch(&mut self, ty: WasmValueType, taken: &mut Vec<u32>) -> u32 {
        if let Some(&(_, index)) = self
            .scratch
            .iter()
            .find(|&&(t, index)| t == ty && !taken.contains(&index))
        {
            taken.push(index);
            return index;
        }
        let index = self.new_local(ty);
        self.scratch.push((ty, index));
        taken.push(index);
        index
    }

    /// A fresh local of type `ty`.
    fn new_local(&mut self, ty: WasmValueType) -> u32 {
        self.extra_locals.push(ty);
        self.first_local + self.extra_locals.len() as u32 - 1
    }

    fn binary(&mut self, opcode: &str) -> Result<(), String> {
        use WasmValueType::*;
        let b = self.pop()?;
        let a = self.pop()?;
        if a != b {
            return Err(format!("{opcode} on {a} and {b}"));
        }
        let ins = match (opcode, a) {
            ("add", I32) => Instruction::I32Add,
            ("sub", I32) => Instruction::I32Sub,
            ("mul", I32) => Instruction::I32Mul,
            ("div", I32) => Instruction::I32DivS,
            ("div.un", I32) => Instruction::I32DivU,
            ("rem", I32) => Instruction::I32RemS,
            ("rem.un", I32) => Instruction::I32RemU,
            ("and", I32) => Instruction::I32And,
            ("or", I32) => Instruction::I32Or,
            ("xor", I32) => Instruction::I32Xor,
            ("add", I64) => Instruction::I64Add,
            ("sub", I64) => Instruction::I64Sub,
            ("mul", I64) => Instruction::I64Mul,
            ("div", I64) => Instruction::I64DivS,
            ("div.un", I64) => Instruction::I64DivU,
            ("rem", I64) => Instruction::I64RemS,
            ("rem.un", I64) => Instruction::I64RemU,
            ("and", I64) => Instruction::I64And,
            ("or", I64) => Instruction::I64Or,
            ("xor", I64) => Instruction::I64Xor,
            ("add", F64) => Instruction::F64Add,
            ("sub", F64) => Instruction::F64Sub,
            ("mul", F64) => Instruction::F64Mul,
            ("div", F64) => Instruction::F64Div,
            ("add", F32) => Instruction::F32Add,
            ("sub", F32) => Instruction::F32Sub,
            ("mul", F32) => Instruction::F32Mul,
            ("div", F32) => Instruction::F32Div,
            _ => return Err(format!("{opcode} on {a}")),
        };
        self.push(ins);
        self.stack.push(a);
        Ok(())
    }

    /// A comparison, `[a b] -> [i32]`: `ceq`, `cgt(.un)`, `clt(.un)` (III.3.21-25), or the
    /// condition of a compare-and-branch (`beq`, `bge.un`, ...). The relation is the
    /// opcode's letters after the first (`eq ne gt ge lt le`); `.un` means unsigned for
    /// integers and, for floats, unordered: the ordered opposite negated (`gt.un` = not
    /// `le`), so NaN compares true.
    fn relation(&mut self, opcode: &str) -> Result<(), String> {
        let rel = opcode.get(1..3).unwrap_or_default();
        let un = opcode.ends_with(".un");
        use Instruction as I;
        use WasmValueType::*;
        let b = self.pop()?;
        let a = self.pop()?;
        if a != b {
            return Err(format!("{opcode} on {a} and {b}"));
        }
        let float = matches!(a, F32 | F64);
        // Unordered float forms: the ordered opposite, negated (`ne` is unordered already).
        let (rel, negate) = match (rel, float && un) {
            ("gt", true) => ("le", true),
            ("ge", true) => ("lt", true),
            ("lt", true) => ("ge", true),
            ("le", true) => ("gt", true),
            (rel, _) => (rel, false),
        };
        let ins = match (rel, a, un) {
            ("eq", I32, _) => I::I32Eq,
            ("ne", I32, _) => I::I32Ne,
            ("gt", I32, false) => I::I32GtS,
            ("gt", I32, true) => I::I32GtU,
            ("ge", I32, false) => I::I32GeS,
            ("ge", I32, true) => I::I32GeU,
            ("lt", I32, false) => I::I32LtS,
            ("lt", I32, true) => I::I32LtU,
            ("le", I32, false) => I::I32LeS,
            ("le", I32, true) => I::I32LeU,
            ("eq", I64, _) => I::I64Eq,
            ("ne", I64, _) => I::I64Ne,
            ("gt", I64, false) => I::I64GtS,
            ("gt", I64, true) => I::I64GtU,
            ("ge", I64, false) => I::I64GeS,
            ("ge", I64, true) => I::I64GeU,
            ("lt", I64, false) => I::I64LtS,
            ("lt", I64, true) => I::I64LtU,
            ("le", I64, false) => I::I64LeS,
            ("le", I64, true) => I::I64LeU,
            ("eq", F64, _) => I::F64Eq,
            ("ne", F64, _) => I::F64Ne,
            ("gt", F64, _) => I::F64Gt,
            ("ge", F64, _) => I::F64Ge,
            ("lt", F64, _) => I::F64Lt,
            ("le", F64, _) => I::F64Le,
            ("eq", F32, _) => I::F32Eq,
            ("ne", F32, _) => I::F32Ne,
            ("gt", F32, _) => I::F32Gt,
            ("ge", F32, _) => I::F32Ge,
            ("lt", F32, _) => I::F32Lt,
            ("le", F32, _) => I::F32Le,
            _ => return Err(format!("{opcode} on {a}")),
        };
        self.push(ins);
        if negate {
            self.push(I::I32Eqz);
        }
        self.stack.push(I32);
        Ok(())
    }

    /// `conv.*` without overflow checks. Float -> integer conversions out of range are
    /// unspecified by ECMA-335 (III.3.27); they give what x64 code gives (the "integer
    /// indefinite" `MIN` for NaN and overflow, as Mono and CoreCLR JIT it on x64), never a
    /// trap.
    fn convert(&mut self, opcode: &str) -> Result<(), String> {
        use WasmValueType::*;
        let from = self.pop()?;
        let target = opcode.trim_start_matches("conv.");
        match (target, from) {
            ("r8", I32) => self.push(Instruction::F64ConvertI32S),
            ("r8", I64) => self.push(Instruction::F64ConvertI64S),
            ("r8", F32) => self.push(Instruction::F64PromoteF32),
            ("r4", I32) => self.push(Instruction::F32ConvertI32S),
            ("r4", I64) => self.push(Instruction::F32ConvertI64S),
            ("r4", F64) => self.push(Instruction::F32DemoteF64),
            ("r8", F64) | ("r4", F32) => {}
            // III.3.29: the integer is unsigned; the result is F (kept as float64).
            ("r.un", I32) => self.push(Instruction::F64ConvertI32U),
            ("r.un", I64) => self.push(Instruction::F64ConvertI64U),
            ("r.un", F32) => self.push(Instruction::F64PromoteF32),
            ("r.un", F64) => {}
            ("i8" | "u8", I32) => self.push(if target == "i8" {
                Instruction::I64ExtendI32S
            } else {
                Instruction::I64ExtendI32U
            }),
            ("i8" | "u8", I64) => {}
            ("i8", F32 | F64) => {
                self.widen_to_f64(from);
                self.truncate_indefinite(I64);
            }
            ("u8", F32 | F64) => {
                self.widen_to_f64(from);
                self.truncate_u64(); // what gcc emits for `(uint64_t)double` on x64
            }
            ("i4" | "u4" | "i" | "u" | "i1" | "u1" | "i2" | "u2", I32 | I64 | F32 | F64) => {
                match (target, from) {
                    (_, I32) => {}
                    (_, I64) => self.push(Instruction::I32WrapI64),
                    ("u4" | "u", _) => {
                        // x64 converts through a 64-bit truncation and keeps the low half.
                        self.widen_to_f64(from);
                        self.truncate_indefinite(I64);
                        self.push(Instruction::I32WrapI64);
                    }
                    _ => {
                        self.widen_to_f64(from);
                        self.truncate_indefinite(I32);
                    }
                }
                match target {
                    "i1" => self.push(Instruction::I32Extend8S),
                    "i2" => self.push(Instruction::I32Extend16S),
                    "u1" => {
                        self.push(Instruction::I32Const(0xff));
                        self.push(Instruction::I32And);
                    }
                    "u2" => {
                        self.push(Instruction::I32Const(0xffff));
                        self.push(Instruction::I32And);
                    }
                    _ => {}
                }
            }
            _ => return Err(format!("{opcode} from {from}")),
        }
        let to = match target {
            "r8" | "r.un" => F64,
            "r4" => F32,
            "i8" | "u8" => I64,
            _ => I32,
        };
        self.stack.push(to);
        Ok(())
    }

    /// Widens an f32 on the wasm stack to f64 (exact); f64 stays.
    fn widen_to_f64(&mut self, from: WasmValueType) {
        if from == WasmValueType::F32 {
            self.push(Instruction::F64PromoteF32);
        }
    }

    /// `[f64] -> [i32|i64]`: truncation toward zero, `MIN` when NaN or out of range (x64
    /// `cvttsd2si`).
    fn truncate_indefinite(&mut self, to: WasmValueType) {
        let mut taken = Vec::new();
        let t = self.scratch(WasmValueType::F64, &mut taken);
        let (bound, sat, min) = if to == WasmValueType::I32 {
            (
                2f64.powi(31),
                Instruction::I32TruncSatF64S,
                Instruction::I32Const(i32::MIN),
            )
        } else {
            (
                2f64.powi(63),
                Instruction::I64TruncSatF64S,
                Instruction::I64Const(i64::MIN),
            )
        };
        self.push(Instruction::LocalTee(t));
        self.push(sat);
        self.push(min);
        self.push(Instruction::LocalGet(t));
        self.push(Instruction::F64Const((-bound).into()));
        self.push(Instruction::F64Ge);
        self.push(Instruction::LocalGet(t));
        self.push(Instruction::F64Const(bound.into()));
        self.push(Instruction::F64Lt);
        self.push(Instruction::I32And);
        self.push(Instruction::Select);
    }

    /// `[f64] -> [i64]` as gcc lowers `(uint64_t)v` on x64: below 2^63 a signed truncation,
    /// else the truncation of `v - 2^63` with the top bit flipped.
    fn truncate_u64(&mut self) {
        let mut taken = Vec::new();
        let t = self.scratch(WasmValueType::F64, &mut taken);
        let two63 = 2f64.powi(63);
        self.push(Instruction::LocalSet(t));
        self.push(Instruction::LocalGet(t));
        self.push(Instruction::F64Const(two63.into()));
        self.push(Instruction::F64Lt);
        self.push(Instruction::If(wasm_encoder::BlockType::Result(
            wasm_encoder::ValType::I64,
        )));
        self.push(Instruction::LocalGet(t));
        self.truncate_indefinite(WasmValueType::I64);
        self.push(Instruction::Else);
        self.push(Instruction::LocalGet(t));
        self.push(Instruction::F64Const(two63.into()));
        self.push(Instruction::F64Sub);
        self.truncate_indefinite(WasmValueType::I64);
        self.push(Instruction::I64Const(i64::MIN));
        self.push(Instruction::I64Xor);
        self.push(Instruction::End);
    }

    /// `if (cond) unreachable`: the trap of the overflow-checking forms (the runtime reports
    /// it as `OverflowException`).
    /// Pops a managed callee's IL arguments (`[this], params`) and pushes its wasm arguments
    /// up to `PE`: `SP, [this], params`, or for an async variant (`async_call`) `SP, [this],
    /// 0, params` (a fresh call: no continuation to resume). Arguments are spilled to scratch
    /// locals (kept in `taken`) so SP can go first.
    /// Lays out the frame of address-taken locals and arguments, if any, and emits its
    /// prologue: `fp = SP - size`, the slots zeroed, address-taken arguments stored.
    fn frame_prologue(
        &mut self,
        il: &[IlInstruction],
        jit: &mut dyn JitInterface,
    ) -> Result<(), String> {
        use std::collections::{BTreeMap, BTreeSet};
        let (mut locals, mut args) = (BTreeSet::new(), BTreeSet::new());
        let mut values = false;
        // Whether struct values reach the evaluation stack (they live in frame temporaries).
        let mut temps = false;
        // `localloc`: memory below the frame, from a stack pointer of its own.
        let dynamic = il.iter().any(|ins| ins.opcode == "localloc");
        let returns_struct =
            |signature: &WasmSignature| matches!(signature.parts().ret, ReturnAbi::Buffer { .. });
        for ins in il {
            match (ins.opcode, &ins.operand) {
                ("ldloca" | "ldloca.s", IlOperand::Var(n)) => {
                    locals.insert(u32::from(*n));
                }
                // A struct argument's address is its parameter: no slot.
                ("ldarga" | "ldarga.s", IlOperand::Var(n))
                    if self
                        .struct_args
                        .get(usize::from(*n))
                        .is_none_or(Option::is_none) =>
                {
                    args.insert(u32::from(*n));
                }
                ("newobj", IlOperand::Token(token)) => match jit.new_object(*token) {
                    NewObject::Value { .. } => values = true,
                    NewObject::Struct { .. } => temps = true,
                    _ => {}
                },
                ("call" | "callvirt", IlOperand::Token(token)) => {
                    let target = if ins.opcode == "call" {
                        jit.call_target(*token)
                    } else {
                        jit.callvirt_target(*token)
                    };
                    temps |= match &target {
                        CallTarget::Direct { signature, .. }
                        | CallTarget::Import { signature }
                        | CallTarget::Virtual { signature } => returns_struct(signature),
                        CallTarget::Unsupported(_) => false,
                    };
                }
                ("calli", IlOperand::Token(token)) => {
                    temps |= jit
                        .indirect_call_signature(*token)
                        .is_ok_and(|s| returns_struct(&s));
                }
                ("ldobj", IlOperand::Token(token)) => {
                    temps |= jit.value_type(*token).is_ok_and(|v| v.access.is_none());
                }
                ("ldelem", IlOperand::Token(token)) => {
                    temps |= jit.value_type(*token).is_ok_and(|v| v.access.is_none());
                }
                ("unbox.any", IlOperand::Token(token)) => {
                    temps |= jit
                        .value_type(*token)
                        .is_ok_and(|v| v.access.is_none() && !v.reference);
                }
                ("ldfld", IlOperand::Token(token)) => {
                    temps |= jit.instance_field(*token).is_ok_and(|f| f.access.is_none());
                }
                ("ldsfld", IlOperand::Token(token)) => {
                    temps |= jit.static_field(*token).is_ok_and(|f| f.access.is_none());
                }
                _ => {}
            }
            // Struct locals copied to or from the stack live in the frame, like those whose
            // address is taken.
            match variable_of(ins) {
                Some(("ldarg", n)) => {
                    temps |= self
                        .struct_args
                        .get(n as usize)
                        .is_some_and(Option::is_some);
                }
                Some((what @ ("ldloc" | "stloc"), n))
                    if self
                        .struct_locals
                        .get(n as usize)
                        .is_some_and(Option::is_some) =>
                {
                    locals.insert(n);
                    temps |= what == "ldloc";
                }
                _ => {}
            }
        }
        if locals.is_empty() && args.is_empty() && !values && !temps && !dynamic {
            return Ok(());
        }
        // The frame: address-taken locals and arguments, the slot values are built in.
        if !self.managed {
            return Err("a frame (address of a local, value built in place) in an UnmanagedCallersOnly method".into());
        }
        if self.suspend.is_some() {
            return Err("a frame (address of a local, value built in place) in an async variant that awaits".into());
        }
        let mut offset = 0;
        let mut slots = |set: BTreeSet<u32>,
                         access: &mut dyn FnMut(u32) -> Option<&'static str>,
                         what: &str|
         -> Result<BTreeMap<u32, (u32, &'static str)>, String> {
            let mut slots = BTreeMap::new();
            for n in set {
                let access = access(n).ok_or_else(|| {
                    format!("address of {what} {n}, a struct or a type not described here")
                })?;
                slots.insert(n, (offset, access));
                offset += 8;
            }
            Ok(slots)
        };
        // Struct locals get slots of their size (8-aligned); no access: only their address is
        // used.
        let (structs, values_locals): (BTreeSet<u32>, BTreeSet<u32>) =
            locals.into_iter().partition(|&n| {
                self.struct_locals
                    .get(n as usize)
                    .is_some_and(|s| s.is_some())
            });
        let mut locals = slots(values_locals, &mut |n| jit.local_access(n), "local")?;
        let args = slots(args, &mut |n| jit.arg_access(n), "argument")?;
        for n in structs {
            let size = self.struct_locals[n as usize].expect("partitioned");
            locals.insert(n, (offset, ""));
            offset += size.next_multiple_of(8);
        }
        let value_slot = values.then(|| {
            offset += 8;
            offset - 8
        });
        if let Some((&n, _)) = locals
            .iter()
            .find(|(n, _)| self.struct_locals.len() <= **n as usize)
        {
            return Err(format!("ldloca of local {n} beyond the locals"));
        }
        if let Some((&n, _)) = args
            .iter()
            .find(|(n, _)| self.arg_params.len() <= **n as usize)
        {
            return Err(format!("ldarga of argument {n} beyond the arguments"));
        }
        // The size: patched at the end, when the struct temporaries are known.
        let size = offset.next_multiple_of(16);
        let pointer = self.pointer;
        let fp = self.new_local(pointer);
        // fp = SP - size (parameter 0 is SP in a managed body)
        self.push(Instruction::LocalGet(0));
        let subtrahend = self.ops.len();
        self.push_pointer_const(size);
        self.push(if pointer == WasmValueType::I64 {
            Instruction::I64Sub
        } else {
            Instruction::I32Sub
        });
        self.push(Instruction::LocalSet(fp));
        // Zero the frame (IL locals start zeroed).
        self.push(Instruction::LocalGet(fp));
        self.push(Instruction::I32Const(0));
        let length = self.ops.len();
        self.push_pointer_const(size);
        self.push(Instruction::MemoryFill(0));
        for (&n, &(slot, access)) in &args {
            self.push(Instruction::LocalGet(fp));
            self.stack.push(pointer);
            self.push(Instruction::LocalGet(self.arg_params[n as usize]));
            self.stack
                .push(self.params[self.arg_params[n as usize] as usize]);
            self.store_at(&format!("stind.{}", store_suffix(access)), pointer, slot)?;
        }
        let sp = dynamic.then(|| {
            let sp = self.new_local(pointer);
            self.push(Instruction::LocalGet(fp));
            self.push(Instruction::LocalSet(sp));
            sp
        });
        self.frame = Some(Frame {
            fp,
            sp,
            locals,
            args,
            value_slot,
            temps_end: offset,
            size_ops: [subtrahend, length],
        });
        Ok(())
    }

    /// A new frame temporary of `size` bytes (8-aligned): its offset in the frame.
    fn temp(&mut self, size: u32) -> Result<u32, String> {
        let frame = self
            .frame
            .as_mut()
            .ok_or("a struct value on the stack, but no frame for it")?;
        let slot = frame.temps_end;
        frame.temps_end += size.next_multiple_of(8);
        Ok(slot)
    }

    /// The address of frame offset `slot`, on the wasm stack only: `[] -> [fp + slot]`.
    fn frame_address(&mut self, slot: u32) -> Result<(), String> {
        let fp = self.frame.as_ref().ok_or("no frame")?.fp;
        self.slot_address(fp, slot);
        self.stack.pop();
        Ok(())
    }

    /// Pushes the struct value of `size` bytes held at frame offset `slot` (its address).
    fn push_struct(&mut self, slot: u32, size: u32) -> Result<(), String> {
        self.frame_address(slot)?;
        self.stack.push(self.pointer);
        self.structs.push((self.stack.len() - 1, size));
        Ok(())
    }

    /// The size of the struct value on top of the evaluation stack, if it is one.
    fn top_struct(&self) -> Option<u32> {
        match self.structs.last() {
            Some(&(at, size)) if at + 1 == self.stack.len() => Some(size),
            _ => None,
        }
    }

    /// Pops a struct value of `size` bytes; its address stays on the wasm stack.
    fn pop_struct(&mut self, size: u32) -> Result<(), String> {
        match self.top_struct() {
            Some(found) if found == size => {
                self.structs.pop();
                self.stack.pop();
                Ok(())
            }
            Some(found) => Err(format!(
                "a struct of {found} bytes where one of {size} is expected"
            )),
            None => Err("a scalar where a struct value is expected".into()),
        }
    }

    /// `memory.copy` of `size` bytes: `[dst src] -> []` on the wasm stack.
    fn copy_bytes(&mut self, size: u32) {
        self.push_pointer_const(size);
        self.push(Instruction::MemoryCopy {
            src_mem: 0,
            dst_mem: 0,
        });
    }

    /// Copies `size` bytes from the address on top of the wasm stack to the address `dst`
    /// pushes: `[src] -> []`.
    fn copy_to(
        &mut self,
        size: u32,
        dst: impl FnOnce(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut taken = Vec::new();
        let src = self.scratch(self.pointer, &mut taken);
        self.push(Instruction::LocalSet(src));
        dst(self)?;
        self.push(Instruction::LocalGet(src));
        self.copy_bytes(size);
        Ok(())
    }

    /// A struct value of `size` bytes copied from the address `src` pushes onto the wasm stack
    /// into a new temporary: `[] -> [struct]`.
    fn load_struct(
        &mut self,
        size: u32,
        src: impl FnOnce(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        let slot = self.temp(size)?;
        self.frame_address(slot)?;
        src(self)?;
        self.copy_bytes(size);
        self.push_struct(slot, size)
    }

    /// Pushes a pointer-sized constant.
    fn push_pointer_const(&mut self, value: u32) {
        self.push(if self.pointer == WasmValueType::I64 {
            Instruction::I64Const(i64::from(value))
        } else {
            Instruction::I32Const(value as i32)
        });
    }

    /// The frame slot of IL local (`arg` false) or argument `n`, if its address is taken.
    fn slot(&self, arg: bool, n: u32) -> Option<(u32, u32, &'static str)> {
        let frame = self.frame.as_ref()?;
        let slots = if arg { &frame.args } else { &frame.locals };
        slots
            .get(&n)
            .map(|&(slot, access)| (frame.fp, slot, access))
    }

    /// `ldloc`/`ldarg` of a frame slot: `[] -> [value]`.
    fn load_slot(&mut self, fp: u32, slot: u32, access: &str) -> Result<(), String> {
        self.push(Instruction::LocalGet(fp));
        self.stack.push(self.pointer);
        self.load_at(&format!("ldind.{access}"), self.pointer, slot)
    }

    /// `stloc`/`starg` of a frame slot: `[value] -> []`.
    fn store_slot(&mut self, fp: u32, slot: u32, access: &str) -> Result<(), String> {
        let ty = self.pop()?;
        let mut taken = Vec::new();
        let value = self.scratch(ty, &mut taken);
        self.push(Instruction::LocalSet(value));
        self.push(Instruction::LocalGet(fp));
        self.stack.push(self.pointer);
        self.push(Instruction::LocalGet(value));
        self.stack.push(ty);
        self.store_at(
            &format!("stind.{}", store_suffix(access)),
            self.pointer,
            slot,
        )
    }

    /// `ldloca`/`ldarga`: `[] -> [fp + slot]`.
    fn slot_address(&mut self, fp: u32, slot: u32) {
        self.push(Instruction::LocalGet(fp));
        if slot != 0 {
            self.push_pointer_const(slot);
            self.push(if self.pointer == WasmValueType::I64 {
                Instruction::I64Add
            } else {
                Instruction::I32Add
            });
        }
        self.stack.push(self.pointer);
    }

    /// Spills a managed call's arguments and pushes them back after the SP; with
    /// `check_this`, traps when `this` is null first (`callvirt`, III.4.2). A struct argument
    /// is passed as the address of its temporary, which the callee owns from then on; a struct
    /// result gets a new temporary as the return buffer ([`Body::push_result`] pushes it).
    fn managed_call_arguments(
        &mut self,
        callee: &WasmSignature,
        taken: &mut Vec<u32>,
        async_call: bool,
        check_this: bool,
    ) -> Result<CallArguments, String> {
        let cp = callee.parts();
        if cp.generic_context
            || cp.async_continuation != async_call
            || (async_call && matches!(cp.ret, ReturnAbi::Buffer { .. }))
        {
            return Err("call of an unsupported callee shape".into());
        }
        // (type, struct size) of each argument.
        let mut callee_args: Vec<(WasmValueType, Option<u32>)> = Vec::new();
        if cp.has_this {
            callee_args.push((callee.pointer().value_type(), None));
        }
        for p in &cp.params {
            match p {
                ParamAbi::Value(v) => callee_args.push((*v, None)),
                ParamAbi::ByRef { size } => callee_args.push((self.pointer, Some(*size))),
                _ => return Err("call with an over-aligned or empty struct argument".into()),
            }
        }
        let mut temps = Vec::new();
        for &(ty, size) in callee_args.iter().rev() {
            match size {
                Some(size) => self.pop_struct(size)?,
                None if self.pop()? != ty => {
                    return Err("call argument of the wrong type".into());
                }
                None => {}
            }
            let t = self.scratch(ty, taken);
            self.push(Instruction::LocalSet(t));
            temps.push(t);
        }
        let buffer = match cp.ret {
            ReturnAbi::Buffer { size } => Some((self.temp(size)?, size)),
            _ => None,
        };
        if check_this {
            let (Some(&this), true) = (temps.last(), cp.has_this) else {
                return Err("callvirt of a method without `this`".into());
            };
            self.push(Instruction::LocalGet(this));
            self.trap_if_null();
        }
        if self.managed {
            // SP: below this method's frame (and what `localloc` took), if it has one.
            let sp = self.frame.as_ref().map_or(0, |f| f.sp.unwrap_or(f.fp));
            self.push(Instruction::LocalGet(sp));
        } else {
            self.ops.push(Op::StackPointerGet);
        }
        // The hidden arguments after `this`: the return buffer, the continuation.
        let hidden_at = usize::from(cp.has_this);
        for i in 0..=temps.len() {
            if i == hidden_at {
                if let Some((slot, _)) = buffer {
                    self.frame_address(slot)?;
                }
                if async_call {
                    self.push(Instruction::I32Const(0));
                }
            }
            if let Some(&t) = temps.iter().rev().nth(i) {
                self.push(Instruction::LocalGet(t));
            }
        }
        Ok(CallArguments {
            this: cp
                .has_this
                .then(|| *temps.last().expect("`this` was popped")),
            buffer,
        })
    }

    /// After a call: its result on the evaluation stack, a value or the struct in the return
    /// buffer `arguments` made.
    fn push_result(&mut self, ret: ReturnAbi, arguments: &CallArguments) -> Result<(), String> {
        match (ret, arguments.buffer) {
            (ReturnAbi::Value(v), _) => self.stack.push(v),
            (ReturnAbi::Buffer { .. }, Some((slot, size))) => self.push_struct(slot, size)?,
            _ => {}
        }
        Ok(())
    }

    /// `callvirt` of a virtual method (`token`, of signature `callee`): the arguments as for
    /// any managed call (the receiver checked for null), then the portable entry point of the
    /// receiver's override from the runtime's virtual-entry helper (a placeholder listed in
    /// [`SiteKind::Virtual`]), called like a managed `calli`: the entry's handle is the `PE`
    /// argument, its code a table slot relative to `__table_base`.
    fn virtual_call(&mut self, token: u32, callee: &WasmSignature) -> Result<(), String> {
        let cp = callee.parts();
        if !cp.managed || !cp.has_this {
            return Err(format!(
                "callvirt 0x{token:08x}: a virtual method without `this`"
            ));
        }
        if self.pointer != WasmValueType::I32 {
            return Err("callvirt: references are 32-bit here".into());
        }
        let mut taken = Vec::new();
        let arguments = self.managed_call_arguments(callee, &mut taken, false, true)?;
        let this = arguments.this.expect("the callee has `this`");
        let entry = self.scratch(WasmValueType::I32, &mut taken);
        self.push(Instruction::LocalGet(this));
        self.push_placeholder(token, SiteKind::Virtual); // replaced: the receiver's entry
        self.push(Instruction::LocalTee(entry));
        self.push(pointer_load(WasmValueType::I32, 4)); // handle: the PE argument
        self.push(Instruction::LocalGet(entry));
        self.push(pointer_load(WasmValueType::I32, 0)); // code: a relative table slot
        self.ops.push(Op::TableBase);
        self.push(Instruction::I32Add);
        self.ops.push(Op::CallIndirect(callee.func_type()));
        self.push_result(cp.ret, &arguments)?;
        self.callees.push(token);
        Ok(())
    }

    /// Rewrites the `this` below a call's `params` arguments with `f` (`[this] -> [this']`),
    /// the arguments kept in fresh locals meanwhile.
    fn rewrite_this(
        &mut self,
        params: usize,
        f: impl FnOnce(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut saved = Vec::new();
        for _ in 0..params {
            let size = self.top_struct();
            let ty = match size {
                Some(size) => {
                    self.pop_struct(size)?;
                    self.pointer
                }
                None => self.pop()?,
            };
            let local = self.new_local(ty);
            self.push(Instruction::LocalSet(local));
            saved.push((local, ty, size));
        }
        f(self)?;
        for &(local, ty, size) in saved.iter().rev() {
            self.push(Instruction::LocalGet(local));
            self.stack.push(ty);
            if let Some(size) = size {
                self.structs.push((self.stack.len() - 1, size));
            }
        }
        Ok(())
    }

    /// A box of the value of type `token` at the address on the stack: `[address] ->
    /// [box]` (the value's bytes copied after the header of a box from the type's
    /// `NewObject` cell).
    fn box_from_address(&mut self, token: u32, value: ValueAccess) -> Result<(), String> {
        use WasmValueType::I32;
        if self.pointer != I32 {
            return Err("box: references are 32-bit here".into());
        }
        if self.pop()? != I32 {
            return Err("box of a value at a non-pointer".into());
        }
        let mut taken = Vec::new();
        let src = self.scratch(I32, &mut taken);
        let object = self.scratch(I32, &mut taken);
        self.push(Instruction::LocalSet(src));
        self.push_placeholder(token, SiteKind::NewObject); // replaced: the allocation
        self.push(Instruction::LocalTee(object));
        self.push(Instruction::I32Const(boxed::DATA_OFFSET as i32));
        self.push(Instruction::I32Add);
        self.push(Instruction::LocalGet(src));
        self.copy_bytes(value.size);
        self.push(Instruction::LocalGet(object));
        self.stack.push(I32);
        Ok(())
    }

    /// `isinst` or `castclass` (`op`) of the type `token`: `[object] -> [object or 0]`, the
    /// test asked of the runtime's type-check helper through the type's `IsInstanceOf` or
    /// `ChkCast` cell (a placeholder in [`SiteKind::IsInstance`] or
    /// [`SiteKind::Cast`]); `castclass` traps when the test fails on a
    /// non-null object. Scratch locals in `taken` stay untouched.
    fn type_test(
        &mut self,
        op: &str,
        token: u32,
        jit: &mut dyn JitInterface,
        taken: &mut Vec<u32>,
    ) -> Result<(), String> {
        use WasmValueType::I32;
        jit.type_check(token)
            .map_err(|reason| format!("{op} 0x{token:08x}: {reason}"))?;
        if self.pointer != I32 {
            return Err(format!("{op}: references are 32-bit here"));
        }
        if self.pop()? != I32 {
            return Err(format!("{op} of a non-reference"));
        }
        let object = self.scratch(I32, taken);
        if op == "castclass" {
            self.push(Instruction::LocalTee(object));
        }
        let kind = if op == "isinst" {
            SiteKind::IsInstance
        } else {
            SiteKind::Cast
        };
        self.push_placeholder(token, kind); // replaced: the test
        if op == "castclass" {
            // InvalidCastException (III.4.3): the test failed on a non-null object.
            let result = self.scratch(I32, taken);
            self.push(Instruction::LocalTee(result));
            self.push(Instruction::I32Eqz);
            self.push(Instruction::LocalGet(object));
            self.push(Instruction::I32Const(0));
            self.push(Instruction::I32Ne);
            self.push(Instruction::I32And);
            self.trap_if();
            self.push(Instruction::LocalGet(result));
        }
        self.stack.push(I32);
        Ok(())
    }

    fn trap_if(&mut self) {
        self.push(Instruction::If(wasm_encoder::BlockType::Empty));
        self.push(Instruction::Unreachable);
        self.push(Instruction::End);
    }

    /// Traps when the pointer on top of the wasm stack is null (consuming it): the
    /// NullReferenceException of `ldfld`, `callvirt` and `calli` (address 0 is valid wasm
    /// memory, so nothing else would catch it).
    fn trap_if_null(&mut self) {
        self.push(if self.pointer == WasmValueType::I64 {
            Instruction::I64Eqz
        } else {
            Instruction::I32Eqz
        });
        self.trap_if();
    }

    /// Pushes the length of the array in local `array` (wasm only; [`array::LENGTH_OFFSET`]).
    fn array_length(&mut self, array: u32) {
        self.push(Instruction::LocalGet(array));
        self.push(Instruction::I32Load(wasm_encoder::MemArg {
            offset: u64::from(array::LENGTH_OFFSET),
            align: 2,
            memory_index: 0,
        }));
    }

    /// `[array index] -> [address]` of element `index` of an array of `size`-byte elements,
    /// minus [`array::DATA_OFFSET`] (the loads and stores add it as their offset): traps when
    /// the array is null (NullReferenceException) or the index is not below its length
    /// (IndexOutOfRangeException; compared unsigned, so a negative index traps too). Returns
    /// the local holding the array.
    fn element_address(&mut self, size: u32, taken: &mut Vec<u32>) -> Result<u32, String> {
        use WasmValueType::I32;
        if self.pointer != I32 {
            return Err("arrays are laid out for wasm32 here".into());
        }
        if self.pop()? != I32 {
            return Err("array index of the wrong type".into());
        }
        if self.pop()? != I32 {
            return Err("array access on a non-reference".into());
        }
        let index = self.scratch(I32, taken);
        let array = self.scratch(I32, taken);
        self.push(Instruction::LocalSet(index));
        self.push(Instruction::LocalTee(array));
        self.trap_if_null();
        self.push(Instruction::LocalGet(index));
        self.array_length(array);
        self.push(Instruction::I32GeU);
        self.trap_if();
        self.push(Instruction::LocalGet(array));
        self.push(Instruction::LocalGet(index));
        if size != 1 {
            self.push(Instruction::I32Const(size as i32));
            self.push(Instruction::I32Mul);
        }
        self.push(Instruction::I32Add);
        self.stack.push(I32);
        Ok(array)
    }

    /// `conv.ovf.<target>[.un]` (III.3.19, III.3.20): traps when the value does not fit.
    fn convert_checked(&mut self, opcode: &str) -> Result<(), String> {
        use WasmValueType::*;
        let from = self.pop()?;
        let rest = opcode.trim_start_matches("conv.ovf.");
        let (target, unsigned_source) = match rest.strip_suffix(".un") {
            Some(t) => (t, true),
            None => (rest, false),
        };
        // (min, max) of the target as i128, on wasm32 (native int is 32 bits).
        let (min, max): (i128, i128) = match target {
            "i1" => (i8::MIN.into(), i8::MAX.into()),
            "u1" => (0, u8::MAX.into()),
            "i2" => (i16::MIN.into(), i16::MAX.into()),
            "u2" => (0, u16::MAX.into()),
            "i4" | "i" => (i32::MIN.into(), i32::MAX.into()),
            "u4" | "u" => (0, u32::MAX.into()),
            "i8" => (i64::MIN.into(), i64::MAX.into()),
            "u8" => (0, u64::MAX.into()),
            _ => return Err(format!("{opcode} is not an IL instruction")),
        };
        let wide = matches!(target, "i8" | "u8");
        match from {
            F32 | F64 => {
                // Wasm's trapping truncations trap exactly on NaN and out of range.
                self.widen_to_f64(from);
                let signed = min < 0;
                self.push(match (wide, signed) {
                    (true, true) => Instruction::I64TruncF64S,
                    (true, false) => Instruction::I64TruncF64U,
                    (false, true) => Instruction::I32TruncF64S,
                    (false, false) => Instruction::I32TruncF64U,
                });
                if !wide && (max < i128::from(u32::MAX) && max != i128::from(i32::MAX)) {
                    self.check_i32_range(min, max, !signed);
                }
            }
            I32 | I64 => {
                if from == I32 {
                    self.push(if unsigned_source {
                        Instruction::I64ExtendI32U
                    } else {
                        Instruction::I64ExtendI32S
                    });
                }
                let unsigned_domain = from == I64 && unsigned_source;
                self.check_i64_range(min, max, unsigned_domain);
                if !wide {
                    self.push(Instruction::I32WrapI64);
                }
            }
            V128 => return Err(format!("{opcode} from v128")),
        }
        self.stack.push(if wide { I64 } else { I32 });
        Ok(())
    }

    /// Traps unless the i64 on the wasm stack lies in `[min, max]`; `unsigned` reads it as
    /// a u64. Leaves the value on the stack.
    fn check_i64_range(&mut self, min: i128, max: i128, unsigned: bool) {
        let mut taken = Vec::new();
        let t = self.scratch(WasmValueType::I64, &mut taken);
        self.push(Instruction::LocalTee(t));
        let mut checks = 0;
        if unsigned {
            // A u64 is never below 0; above max only when max < u64::MAX.
            if max < i128::from(u64::MAX) {
                self.push(Instruction::LocalGet(t));
                self.push(Instruction::I64Const(max as u64 as i64));
                self.push(Instruction::I64GtU);
                checks += 1;
            }
        } else {
            if min > i128::from(i64::MIN) {
                self.push(Instruction::LocalGet(t));
                self.push(Instruction::I64Const(min as i64));
                self.push(Instruction::I64LtS);
                checks += 1;
            }
            if max < i128::from(i64::MAX) {
                self.push(Instruction::LocalGet(t));
                self.push(Instruction::I64Const(max as i64));
                self.push(Instruction::I64GtS);
                checks += 1;
            }
        }
        if checks == 2 {
            self.push(Instruction::I32Or);
        }
        if checks > 0 {
            self.trap_if();
        }
    }

    /// Traps unless the i32 on the wasm stack lies in `[min, max]` (read as unsigned when
    /// `unsigned`). Leaves the value on the stack.
    fn check_i32_range(&mut self, min: i128, max: i128, unsigned: bool) {
        let mut taken = Vec::new();
        let t = self.scratch(WasmValueType::I32, &mut taken);
        self.push(Instruction::LocalTee(t));
        self.push(Instruction::LocalGet(t));
        if unsigned {
            self.push(Instruction::I32Const(max as u32 as i32));
            self.push(Instruction::I32GtU);
        } else {
            self.push(Instruction::I32Const(min as i32));
            self.push(Instruction::I32LtS);
            self.push(Instruction::LocalGet(t));
            self.push(Instruction::I32Const(max as i32));
            self.push(Instruction::I32GtS);
            self.push(Instruction::I32Or);
        }
        self.trap_if();
    }

    /// `add.ovf`, `sub.ovf`, `mul.ovf` and their `.un` forms (III.3.2, III.3.45, III.3.65).
    fn arithmetic_checked(&mut self, opcode: &str) -> Result<(), String> {
        use WasmValueType::*;
        let b = self.pop()?;
        let a = self.pop()?;
        if a != b {
            return Err(format!("{opcode} on {a} and {b}"));
        }
        let unsigned = opcode.ends_with(".un");
        let op = opcode.split('.').next().unwrap_or_default();
        match a {
            I32 => {
                // Exact in 64 bits, then a range check.
                let mut taken = Vec::new();
                let rhs = self.scratch(I32, &mut taken);
                self.push(Instruction::LocalSet(rhs));
                let extend = if unsigned {
                    Instruction::I64ExtendI32U
                } else {
                    Instruction::I64ExtendI32S
                };
                self.push(extend.clone());
                self.push(Instruction::LocalGet(rhs));
                self.push(extend);
                self.push(match op {
                    "add" => Instruction::I64Add,
                    "sub" => Instruction::I64Sub,
                    _ => Instruction::I64Mul,
                });
                if unsigned {
                    self.check_i64_range(0, u32::MAX.into(), false);
                } else {
                    self.check_i64_range(i32::MIN.into(), i32::MAX.into(), false);
                }
                self.push(Instruction::I32WrapI64);
            }
            I64 if op != "mul" => {
                let mut taken = Vec::new();
                let (x, y, r) = (
                    self.scratch(I64, &mut taken),
                    self.scratch(I64, &mut taken),
                    self.scratch(I64, &mut taken),
                );
                self.push(Instruction::LocalSet(y));
                self.push(Instruction::LocalTee(x));
                self.push(Instruction::LocalGet(y));
                self.push(if op == "add" {
                    Instruction::I64Add
                } else {
                    Instruction::I64Sub
                });
                self.push(Instruction::LocalTee(r));
                match (op, unsigned) {
                    // Carry: the sum wrapped below an operand.
                    ("add", true) => {
                        self.push(Instruction::LocalGet(x));
                        self.push(Instruction::I64LtU);
                    }
                    // Borrow.
                    (_, true) => {
                        self.push(Instruction::Drop);
                        self.push(Instruction::LocalGet(x));
                        self.push(Instruction::LocalGet(y));
                        self.push(Instruction::I64LtU);
                    }
                    // Signed: the result's sign differs from what both operands imply
                    // (Hacker's Delight 2-13).
                    ("add", false) => {
                        self.push(Instruction::LocalGet(x));
                        self.push(Instruction::I64Xor);
                        self.push(Instruction::LocalGet(y));
                        self.push(Instruction::LocalGet(r));
                        self.push(Instruction::I64Xor);
                        self.push(Instruction::I64And);
                        self.push(Instruction::I64Const(0));
                        self.push(Instruction::I64LtS);
                    }
                    (_, false) => {
                        self.push(Instruction::LocalGet(x));
                        self.push(Instruction::I64Xor);
                        self.push(Instruction::LocalGet(x));
                        self.push(Instruction::LocalGet(y));
                        self.push(Instruction::I64Xor);
                        self.push(Instruction::I64And);
                        self.push(Instruction::I64Const(0));
                        self.push(Instruction::I64LtS);
                    }
                }
                self.trap_if();
                self.push(Instruction::LocalGet(r));
            }
            other => return Err(format!("{opcode} on {other}")),
        }
        self.stack.push(a);
        Ok(())
    }

    /// `ldind.*` (III.3.42): `[addr] -> [value]`.
    fn load_indirect(&mut self, opcode: &str, pointer: WasmValueType) -> Result<(), String> {
        self.load_at(opcode, pointer, 0)
    }

    /// A load of `ldind.<suffix>` shape at constant `offset` from the address on the stack.
    fn load_at(&mut self, opcode: &str, pointer: WasmValueType, offset: u32) -> Result<(), String> {
        use WasmValueType::*;
        if self.pop()? != pointer {
            return Err(format!("{opcode} on a non-pointer"));
        }
        let arg = |align| wasm_encoder::MemArg {
            offset: u64::from(offset),
            align,
            memory_index: 0,
        };
        let ptr_load = if pointer == I64 {
            Instruction::I64Load(arg(3))
        } else {
            Instruction::I32Load(arg(2))
        };
        let (ins, ty) = match opcode.trim_start_matches("ldind.") {
            "i1" => (Instruction::I32Load8S(arg(0)), I32),
            "u1" => (Instruction::I32Load8U(arg(0)), I32),
            "i2" => (Instruction::I32Load16S(arg(1)), I32),
            "u2" => (Instruction::I32Load16U(arg(1)), I32),
            "i4" | "u4" => (Instruction::I32Load(arg(2)), I32),
            "i8" => (Instruction::I64Load(arg(3)), I64),
            "r4" => (Instruction::F32Load(arg(2)), F32),
            "r8" => (Instruction::F64Load(arg(3)), F64),
            "i" | "ref" => (ptr_load, pointer),
            _ => return Err(format!("{opcode} is not an IL instruction")),
        };
        self.push(ins);
        self.stack.push(ty);
        Ok(())
    }

    /// `stind.*` (III.3.62): `[addr value] -> []`.
    fn store_indirect(&mut self, opcode: &str, pointer: WasmValueType) -> Result<(), String> {
        self.store_at(opcode, pointer, 0)
    }

    /// A store of `stind.<suffix>` shape at constant `offset` from the address.
    fn store_at(
        &mut self,
        opcode: &str,
        pointer: WasmValueType,
        offset: u32,
    ) -> Result<(), String> {
        use WasmValueType::*;
        let value = self.pop()?;
        if self.pop()? != pointer {
            return Err(format!("{opcode} on a non-pointer"));
        }
        let arg = |align| wasm_encoder::MemArg {
            offset: u64::from(offset),
            align,
            memory_index: 0,
        };
        let (ins, ty) = match opcode.trim_start_matches("stind.") {
            "i1" => (Instruction::I32Store8(arg(0)), I32),
            "i2" => (Instruction::I32Store16(arg(1)), I32),
            "i4" => (Instruction::I32Store(arg(2)), I32),
            "i8" => (Instruction::I64Store(arg(3)), I64),
            "r4" => (Instruction::F32Store(arg(2)), F32),
            "r8" => (Instruction::F64Store(arg(3)), F64),
            "i" | "ref" if pointer == I64 => (Instruction::I64Store(arg(3)), I64),
            "i" | "ref" => (Instruction::I32Store(arg(2)), I32),
            _ => return Err(format!("{opcode} is not an IL instruction")),
        };
        if value != ty {
            return Err(format!("{opcode} of a {value}"));
        }
        self.push(ins);
        Ok(())
    }

    fn instruction(
        &mut self,
        ins: &IlInstruction,
        args: &[WasmValueType],
        ret: Option<WasmValueType>,
        last: bool,
        jit: &mut dyn JitInterface,
    ) -> Result<(), String> {
        use WasmValueType::*;
        let op = ins.opcode;
        let pointer = self.pointer;
        let var = || match ins.operand {
            IlOperand::Var(v) => Ok(u32::from(v)),
            _ => Err(format!("{op} without an index")),
        };
        match op {
            "nop" => {}
            "ldarg.0" | "ldarg.1" | "ldarg.2" | "ldarg.3" | "ldarg.s" | "ldarg" => {
                let n = match op.strip_prefix("ldarg.").and_then(|d| d.parse().ok()) {
                    Some(n) => n,
                    None => var()?,
                };
                let ty = *args.get(n as usize).ok_or("ldarg beyond the arguments")?;
                if let Some(size) = self.struct_args[n as usize] {
                    // A copy of the caller's copy.
                    let param = self.arg_params[n as usize];
                    return self.load_struct(size, |b| {
                        b.push(Instruction::LocalGet(param));
                        Ok(())
                    });
                }
                if let Some((fp, slot, access)) = self.slot(true, n) {
                    self.load_slot(fp, slot, access)?;
                } else {
                    self.push(Instruction::LocalGet(self.arg_params[n as usize]));
                    self.stack.push(ty);
                }
            }
            "starg.s" | "starg" => {
                let n = var()?;
                let ty = *args.get(n as usize).ok_or("starg beyond the arguments")?;
                if let Some(size) = self.struct_args[n as usize] {
                    // Into this method's own copy.
                    self.pop_struct(size)?;
                    let param = self.arg_params[n as usize];
                    return self.copy_to(size, |b| {
                        b.push(Instruction::LocalGet(param));
                        Ok(())
                    });
                }
                if *self.stack.last().ok_or("evaluation stack underflow")? != ty {
                    return Err("starg of the wrong type".into());
                }
                if let Some((fp, slot, access)) = self.slot(true, n) {
                    self.store_slot(fp, slot, access)?;
                } else {
                    self.pop()?;
                    self.push(Instruction::LocalSet(self.arg_params[n as usize]));
                }
            }
            "ldloc.0" | "ldloc.1" | "ldloc.2" | "ldloc.3" | "ldloc.s" | "ldloc" => {
                let n = match op.strip_prefix("ldloc.").and_then(|d| d.parse().ok()) {
                    Some(n) => n,
                    None => var()?,
                };
                // IL locals only: scratch locals follow them in `extra_locals`.
                let ty = *self
                    .extra_locals
                    .get(n as usize)
                    .filter(|_| (n as usize) < self.struct_locals.len())
                    .ok_or("ldloc beyond the locals")?;
                if let Some(size) = self.struct_locals[n as usize] {
                    let (_, slot, _) =
                        self.slot(false, n).ok_or("a struct local without a slot")?;
                    return self.load_struct(size, |b| b.frame_address(slot));
                }
                if let Some((fp, slot, access)) = self.slot(false, n) {
                    self.load_slot(fp, slot, access)?;
                } else {
                    self.push(Instruction::LocalGet(self.first_local + n));
                    self.stack.push(ty);
                }
            }
            "stloc.0" | "stloc.1" | "stloc.2" | "stloc.3" | "stloc.s" | "stloc" => {
                let n = match op.strip_prefix("stloc.").and_then(|d| d.parse().ok()) {
                    Some(n) => n,
                    None => var()?,
                };
                let ty = *self
                    .extra_locals
                    .get(n as usize)
                    .filter(|_| (n as usize) < self.struct_locals.len())
                    .ok_or("stloc beyond the locals")?;
                if let Some(size) = self.struct_locals[n as usize] {
                    self.pop_struct(size)?;
                    let (_, slot, _) =
                        self.slot(false, n).ok_or("a struct local without a slot")?;
                    return self.copy_to(size, |b| b.frame_address(slot));
                }
                if *self.stack.last().ok_or("evaluation stack underflow")? != ty {
                    return Err("stloc of the wrong type".into());
                }
                if let Some((fp, slot, access)) = self.slot(false, n) {
                    self.store_slot(fp, slot, access)?;
                } else {
                    self.pop()?;
                    self.push(Instruction::LocalSet(self.first_local + n));
                }
            }
            "ldarga" | "ldarga.s"
                if self
                    .struct_args
                    .get(var()? as usize)
                    .is_some_and(Option::is_some) =>
            {
                // The address of the caller's copy: a managed pointer.
                self.push(Instruction::LocalGet(self.arg_params[var()? as usize]));
                self.stack.push(pointer);
            }
            "ldloca" | "ldloca.s" | "ldarga" | "ldarga.s" => {
                let n = var()?;
                let arg = op.starts_with("ldarga");
                let (fp, slot, _) = self
                    .slot(arg, n)
                    .ok_or_else(|| format!("{op} {n} has no frame slot"))?;
                self.slot_address(fp, slot);
            }
            _ if op.starts_with("ldc.i4") => {
                let value = match (op.strip_prefix("ldc.i4."), &ins.operand) {
                    (Some("m1" | "M1"), _) => -1,
                    (Some(d), _) if d.len() == 1 && d.as_bytes()[0].is_ascii_digit() => {
                        i64::from(d.as_bytes()[0] - b'0')
                    }
                    (_, IlOperand::Int(v)) => *v,
                    _ => return Err(format!("{op} without a value")),
                };
                self.push(Instruction::I32Const(value as i32));
                self.stack.push(I32);
            }
            "ldstr" => {
                let IlOperand::Token(token) = ins.operand else {
                    return Err("ldstr without a token".into());
                };
                if self.pointer != I32 {
                    return Err("ldstr: string cells hold 32-bit references".into());
                }
                self.push_placeholder(token, SiteKind::String); // replaced
                self.stack.push(I32);
            }
            "ldnull" => {
                // The null reference: a pointer-sized zero (references are pointers here).
                self.push_pointer_const(0);
                self.stack.push(self.pointer);
            }
            "ldc.i8" => {
                let IlOperand::Int(v) = ins.operand else {
                    return Err("ldc.i8 without a value".into());
                };
                self.push(Instruction::I64Const(v));
                self.stack.push(I64);
            }
            "ldc.r8" | "ldc.r4" => {
                let IlOperand::Float(v) = ins.operand else {
                    return Err(format!("{op} without a value"));
                };
                if op == "ldc.r8" {
                    self.push(Instruction::F64Const(v.into()));
                    self.stack.push(F64);
                } else {
                    self.push(Instruction::F32Const((v as f32).into()));
                    self.stack.push(F32);
                }
            }
            "shl" | "shr" | "shr.un" => {
                // The shift amount is an int32 (or native int) even for int64 values.
                if self.pop()? != I32 {
                    return Err("shift amount is not int32".into());
                }
                let value = *self.stack.last().ok_or("evaluation stack underflow")?;
                let ins = match (op, value) {
                    ("shl", I32) => Instruction::I32Shl,
                    ("shr", I32) => Instruction::I32ShrS,
                    (_, I32) => Instruction::I32ShrU,
                    (_, I64) => {
                        self.push(Instruction::I64ExtendI32U);
                        match op {
                            "shl" => Instruction::I64Shl,
                            "shr" => Instruction::I64ShrS,
                            _ => Instruction::I64ShrU,
                        }
                    }
                    _ => return Err(format!("{op} on {value}")),
                };
                self.push(ins);
            }
            "add" | "sub" | "mul" | "div" | "div.un" | "rem" | "rem.un" | "and" | "or" | "xor" => {
                self.binary(op)?;
            }
            "neg" => {
                let ty = *self.stack.last().ok_or("evaluation stack underflow")?;
                match ty {
                    I32 => {
                        let mut taken = Vec::new();
                        let t = self.scratch(I32, &mut taken);
                        self.push(Instruction::LocalSet(t));
                        self.push(Instruction::I32Const(0));
                        self.push(Instruction::LocalGet(t));
                        self.push(Instruction::I32Sub);
                    }
                    I64 => {
                        let mut taken = Vec::new();
                        let t = self.scratch(I64, &mut taken);
                        self.push(Instruction::LocalSet(t));
                        self.push(Instruction::I64Const(0));
                        self.push(Instruction::LocalGet(t));
                        self.push(Instruction::I64Sub);
                    }
                    F64 => self.push(Instruction::F64Neg),
                    F32 => self.push(Instruction::F32Neg),
                    V128 => return Err("neg on v128".into()),
                }
            }
            "not" => match *self.stack.last().ok_or("evaluation stack underflow")? {
                I32 => {
                    self.push(Instruction::I32Const(-1));
                    self.push(Instruction::I32Xor);
                }
                I64 => {
                    self.push(Instruction::I64Const(-1));
                    self.push(Instruction::I64Xor);
                }
                other => return Err(format!("not on {other}")),
            },
            "ceq" | "cgt" | "cgt.un" | "clt" | "clt.un" => self.relation(op)?,
            _ if op.starts_with("conv.ovf.") => self.convert_checked(op)?,
            _ if op.starts_with("conv.") => self.convert(op)?,
            "add.ovf" | "add.ovf.un" | "sub.ovf" | "sub.ovf.un" | "mul.ovf" | "mul.ovf.un" => {
                self.arithmetic_checked(op)?;
            }
            _ if op.starts_with("ldind.") => self.load_indirect(op, pointer)?,
            _ if op.starts_with("stind.") => self.store_indirect(op, pointer)?,
            "ldtoken" => {
                let IlOperand::Token(token) = ins.operand else {
                    return Err("ldtoken without a token".into());
                };
                let kind = jit
                    .runtime_handle(token)
                    .map_err(|reason| format!("ldtoken 0x{token:08x}: {reason}"))?;
                if pointer != I32 {
                    return Err("ldtoken: handles are 32-bit here".into());
                }
                let kind = match kind {
                    HandleKind::Type => SiteKind::TypeHandle,
                    HandleKind::Field => SiteKind::FieldHandle,
                };
                self.push_placeholder(token, kind); // replaced: the handle
                // A RuntimeTypeHandle or RuntimeFieldHandle: a struct of one pointer, which
                // the ABI passes as that pointer.
                self.stack.push(I32);
            }
            "box" => {
                let IlOperand::Token(token) = ins.operand else {
                    return Err("box without a token".into());
                };
                let value = jit
                    .value_type(token)
                    .map_err(|reason| format!("box 0x{token:08x}: {reason}"))?;
                if value.reference {
                    // III.4.1: boxing a reference type does nothing.
                    if self.stack.last() != Some(&pointer) {
                        return Err("box of a reference type with no reference".into());
                    }
                    return Ok(());
                }
                if pointer != I32 {
                    return Err("box: references are 32-bit here".into());
                }
                let Some(access) = value.access else {
                    // A struct: its bytes copied into a new box from its temporary.
                    self.pop_struct(value.size)?;
                    self.stack.push(pointer);
                    return self.box_from_address(token, value);
                };
                // A new box of the type from the embedder (through the type's NewObject
                // cell), the value stored after its header.
                let ty = self.pop()?;
                let mut taken = Vec::new();
                let value = self.scratch(ty, &mut taken);
                let object = self.scratch(I32, &mut taken);
                self.push(Instruction::LocalSet(value));
                self.push_placeholder(token, SiteKind::NewObject); // replaced: the allocation
                self.push(Instruction::LocalTee(object));
                self.stack.push(I32);
                self.push(Instruction::LocalGet(value));
                self.stack.push(ty);
                self.store_at(
                    &format!("stind.{}", store_suffix(access)),
                    pointer,
                    boxed::DATA_OFFSET,
                )?;
                self.push(Instruction::LocalGet(object));
                self.stack.push(I32);
            }
            "unbox.any" => {
                let IlOperand::Token(token) = ins.operand else {
                    return Err("unbox.any without a token".into());
                };
                let value = jit
                    .value_type(token)
                    .map_err(|reason| format!("unbox.any 0x{token:08x}: {reason}"))?;
                if value.reference {
                    // III.4.33: of a reference type, unbox.any is castclass.
                    return self.type_test("castclass", token, jit, &mut Vec::new());
                }
                // NullReferenceException for null, InvalidCastException unless the object is
                // a box of the type (the embedder's type test, through the ChkCast cell); then
                // the value after the header.
                if self.stack.last() != Some(&I32) {
                    return Err("unbox.any of a non-reference".into());
                }
                let mut taken = Vec::new();
                let object = self.scratch(I32, &mut taken);
                self.push(Instruction::LocalTee(object));
                self.trap_if_null();
                self.push(Instruction::LocalGet(object));
                self.type_test("castclass", token, jit, &mut taken)?;
                self.pop()?;
                self.push(Instruction::Drop);
                match value.access {
                    Some(access) => {
                        self.push(Instruction::LocalGet(object));
                        self.stack.push(I32);
                        self.load_at(&format!("ldind.{access}"), pointer, boxed::DATA_OFFSET)?;
                    }
                    // A struct: its bytes copied out of the box.
                    None => self.load_struct(value.size, |b| {
                        b.push(Instruction::LocalGet(object));
                        b.push(Instruction::I32Const(boxed::DATA_OFFSET as i32));
                        b.push(Instruction::I32Add);
                        Ok(())
                    })?,
                }
            }
            "isinst" | "castclass" => {
                let IlOperand::Token(token) = ins.operand else {
                    return Err(format!("{op} without a token"));
                };
                self.type_test(op, token, jit, &mut Vec::new())?;
            }
            "newarr" => {
                let IlOperand::Token(token) = ins.operand else {
                    return Err("newarr without a token".into());
                };
                jit.new_array(token)
                    .map_err(|reason| format!("newarr 0x{token:08x}: {reason}"))?;
                if pointer != I32 {
                    return Err("newarr: arrays are laid out for wasm32 here".into());
                }
                if self.pop()? != I32 {
                    return Err("newarr length of the wrong type".into());
                }
                self.push_placeholder(token, SiteKind::NewArray); // replaced: the allocation
                self.stack.push(I32);
            }
            "ldlen" => {
                if pointer != I32 {
                    return Err("ldlen: arrays are laid out for wasm32 here".into());
                }
                if self.pop()? != I32 {
                    return Err("ldlen on a non-reference".into());
                }
                let mut taken = Vec::new();
                let array = self.scratch(I32, &mut taken);
                self.push(Instruction::LocalTee(array));
                self.trap_if_null();
                self.array_length(array);
                self.stack.push(I32);
            }
            _ if op.starts_with("ldelem") || op.starts_with("stelem") => {
                // The element's `ldind`/`stind` suffix and size, from the opcode or the token.
                let (access, size) = match (op.split_once('.'), &ins.operand) {
                    (Some((_, suffix)), _) => {
                        let access: &'static str = match suffix {
                            "i1" => "i1",
                            "u1" => "u1",
                            "i2" => "i2",
                            "u2" => "u2",
                            "i4" => "i4",
                            "u4" => "u4",
                            "i8" => "i8",
                            "r4" => "r4",
                            "r8" => "r8",
                            "i" => "i",
                            "ref" => "ref",
                            _ => return Err(format!("{op} is not an IL instruction")),
                        };
                        (Some(access), element_size(access, pointer))
                    }
                    (None, IlOperand::Token(token)) => {
                        let value = jit
                            .value_type(*token)
                            .map_err(|reason| format!("{op} 0x{token:08x}: {reason}"))?;
                        (value.access, value.size)
                    }
                    (None, _) => return Err(format!("{op} without a token")),
                };
                let mut taken = Vec::new();
                if op.starts_with("stelem") {
                    let Some(access) = access else {
                        // A struct element: the value's bytes copied in.
                        self.pop_struct(size)?;
                        let src = self.scratch(pointer, &mut taken);
                        self.push(Instruction::LocalSet(src));
                        self.element_address(size, &mut taken)?;
                        self.pop()?;
                        self.push(Instruction::I32Const(array::DATA_OFFSET as i32));
                        self.push(Instruction::I32Add);
                        self.push(Instruction::LocalGet(src));
                        self.copy_bytes(size);
                        return Ok(());
                    };
                    // III.4.27: storing a reference checks it against the array's element
                    // type (ArrayTypeMismatchException), which needs the object model.
                    let check = if access == "ref" {
                        Some(jit.array_store_helper()?)
                    } else {
                        None
                    };
                    let ty = self.pop()?;
                    let value = self.scratch(ty, &mut taken);
                    self.push(Instruction::LocalSet(value));
                    let array = self.element_address(size, &mut taken)?;
                    if let Some(helper) = check {
                        if ty != I32 {
                            return Err(format!("{op} of a non-reference"));
                        }
                        // After the null and bounds checks; null always fits.
                        self.push(Instruction::LocalGet(value));
                        self.push(Instruction::If(wasm_encoder::BlockType::Empty));
                        self.push(Instruction::LocalGet(array));
                        self.push(Instruction::LocalGet(value));
                        self.ops.push(Op::Call(helper));
                        self.push(Instruction::I32Eqz);
                        self.trap_if();
                        self.push(Instruction::End);
                        self.checks_array_stores = true;
                    }
                    self.push(Instruction::LocalGet(value));
                    self.stack.push(ty);
                    let store = format!("stind.{}", store_suffix(access));
                    self.store_at(&store, pointer, array::DATA_OFFSET)?;
                } else if op == "ldelema" {
                    if access == Some("ref") && !ins.prefixes.readonly {
                        // Without `readonly.`, the address of a reference element checks the
                        // array's exact type (III.4.9), which needs the object model.
                        return Err("ldelema of a reference element (array type check)".into());
                    }
                    self.element_address(size, &mut taken)?;
                    self.push(Instruction::I32Const(array::DATA_OFFSET as i32));
                    self.push(Instruction::I32Add);
                } else {
                    let Some(access) = access else {
                        // A struct element: its bytes copied into a temporary.
                        self.element_address(size, &mut taken)?;
                        self.pop()?;
                        let element = self.scratch(pointer, &mut taken);
                        self.push(Instruction::LocalSet(element));
                        return self.load_struct(size, |b| {
                            b.push(Instruction::LocalGet(element));
                            b.push(Instruction::I32Const(array::DATA_OFFSET as i32));
                            b.push(Instruction::I32Add);
                            Ok(())
                        });
                    };
                    self.element_address(size, &mut taken)?;
                    self.load_at(&format!("ldind.{access}"), pointer, array::DATA_OFFSET)?;
                }
            }
            "ldsfld" | "stsfld" | "ldsflda" => {
                let IlOperand::Token(token) = ins.operand else {
                    return Err(format!("{op} without a token"));
                };
                let field = jit
                    .static_field(token)
                    .map_err(|reason| format!("{op} 0x{token:08x}: {reason}"))?;
                let access = field.access;
                if pointer != I32 {
                    return Err(format!("{op}: field cells hold 32-bit addresses"));
                }
                let mut taken = Vec::new();
                if access.is_none() && op != "ldsflda" {
                    // A struct-typed static: copied to or from its address.
                    let size = field.size;
                    let value = if op == "stsfld" {
                        self.pop_struct(size)?;
                        let src = self.scratch(pointer, &mut taken);
                        self.push(Instruction::LocalSet(src));
                        Some(src)
                    } else {
                        None
                    };
                    self.push_placeholder(token, SiteKind::StaticField); // replaced: the address
                    return match value {
                        Some(src) => {
                            self.push(Instruction::LocalGet(src));
                            self.copy_bytes(size);
                            Ok(())
                        }
                        None => {
                            let address = self.scratch(pointer, &mut taken);
                            self.push(Instruction::LocalSet(address));
                            self.load_struct(size, |b| {
                                b.push(Instruction::LocalGet(address));
                                Ok(())
                            })
                        }
                    };
                }
                let value = if op == "stsfld" {
                    let ty = self.pop()?;
                    let t = self.scratch(ty, &mut taken);
                    self.push(Instruction::LocalSet(t));
                    Some((ty, t))
                } else {
                    None
                };
                // The field's address, from its cell (replaced).
                self.push_placeholder(token, SiteKind::StaticField);
                self.stack.push(pointer);
                match (op, access) {
                    ("ldsflda", _) => {}
                    ("ldsfld", Some(access)) => {
                        self.load_at(&format!("ldind.{access}"), pointer, 0)?;
                    }
                    ("stsfld", Some(access)) => {
                        let (ty, t) = value.expect("stsfld value");
                        self.push(Instruction::LocalGet(t));
                        self.stack.push(ty);
                        self.store_at(&format!("stind.{}", store_suffix(access)), pointer, 0)?;
                    }
                    _ => return Err(format!("{op} of a struct-typed field")),
                }
            }
            "ldfld" | "stfld" | "ldflda" => {
                let IlOperand::Token(token) = ins.operand else {
                    return Err(format!("{op} without a token"));
                };
                let field = jit
                    .instance_field(token)
                    .map_err(|reason| format!("{op} 0x{token:08x}: {reason}"))?;
                let mut taken = Vec::new();
                // A struct-typed field's value is a struct (copied by its `size` bytes).
                let struct_field = field.access.is_none() && op != "ldflda";
                let value = if op == "stfld" && struct_field {
                    self.pop_struct(field.size)?;
                    let t = self.scratch(pointer, &mut taken);
                    self.push(Instruction::LocalSet(t));
                    Some((pointer, t))
                } else if op == "stfld" {
                    let ty = self.pop()?;
                    let t = self.scratch(ty, &mut taken);
                    self.push(Instruction::LocalSet(t));
                    Some((ty, t))
                } else {
                    None
                };
                let at_offset = |b: &mut Self, base: u32| {
                    b.push(Instruction::LocalGet(base));
                    if field.offset != 0 {
                        b.push(Instruction::I32Const(field.offset as i32));
                        b.push(Instruction::I32Add);
                    }
                    Ok(())
                };
                if op == "ldfld"
                    && let Some(size) = self.top_struct()
                {
                    // A field of a struct value: at its offset in the temporary (no null check).
                    self.pop_struct(size)?;
                    if struct_field {
                        let base = self.scratch(pointer, &mut taken);
                        self.push(Instruction::LocalSet(base));
                        return self.load_struct(field.size, |b| at_offset(b, base));
                    }
                    self.stack.push(pointer);
                    let access = field.access.expect("a scalar field");
                    return self.load_at(&format!("ldind.{access}"), pointer, field.offset);
                }
                if *self.stack.last().ok_or("evaluation stack underflow")? != pointer {
                    return Err(format!("{op} on a value type on the stack"));
                }
                let object = self.scratch(pointer, &mut taken);
                self.push(Instruction::LocalTee(object));
                self.trap_if_null();
                if struct_field {
                    self.pop()?;
                    return match value {
                        Some((_, src)) => {
                            at_offset(self, object)?;
                            self.push(Instruction::LocalGet(src));
                            self.copy_bytes(field.size);
                            Ok(())
                        }
                        None => self.load_struct(field.size, |b| at_offset(b, object)),
                    };
                }
                self.push(Instruction::LocalGet(object));
                match (op, field.access) {
                    ("ldflda", _) => {
                        self.pop()?;
                        self.push(Instruction::I32Const(field.offset as i32));
                        self.push(Instruction::I32Add);
                        self.stack.push(pointer);
                    }
                    ("ldfld", Some(access)) => {
                        self.load_at(&format!("ldind.{access}"), pointer, field.offset)?;
                    }
                    ("stfld", Some(access)) => {
                        let (ty, t) = value.expect("stfld value");
                        self.push(Instruction::LocalGet(t));
                        self.stack.push(ty);
                        let store = format!("stind.{}", store_suffix(access));
                        self.store_at(&store, pointer, field.offset)?;
                    }
                    _ => return Err(format!("{op} of a struct-typed field")),
                }
            }
            "ldobj" | "stobj" | "initobj" | "sizeof" => {
                let IlOperand::Token(token) = ins.operand else {
                    return Err(format!("{op} without a token"));
                };
                let value = jit
                    .value_type(token)
                    .map_err(|reason| format!("{op} 0x{token:08x}: {reason}"))?;
                match (op, value.access) {
                    ("sizeof", _) => {
                        self.push(Instruction::I32Const(value.size as i32));
                        self.stack.push(I32);
                    }
                    // III.4.13: `[addr] -> [value]`.
                    ("ldobj", Some(access)) => {
                        self.load_at(&format!("ldind.{access}"), pointer, 0)?;
                    }
                    // III.4.29: `[addr value] -> []`.
                    ("stobj", Some(access)) => {
                        self.store_at(&format!("stind.{}", store_suffix(access)), pointer, 0)?;
                    }
                    // A struct: its bytes copied into a temporary.
                    ("ldobj", None) => {
                        if self.pop()? != pointer {
                            return Err("ldobj on a non-pointer".into());
                        }
                        let mut taken = Vec::new();
                        let src = self.scratch(pointer, &mut taken);
                        self.push(Instruction::LocalSet(src));
                        self.load_struct(value.size, |b| {
                            b.push(Instruction::LocalGet(src));
                            Ok(())
                        })?;
                    }
                    ("stobj", None) => {
                        self.pop_struct(value.size)?;
                        let mut taken = Vec::new();
                        let src = self.scratch(pointer, &mut taken);
                        self.push(Instruction::LocalSet(src));
                        if self.pop()? != pointer {
                            return Err("stobj on a non-pointer".into());
                        }
                        self.push(Instruction::LocalGet(src));
                        self.copy_bytes(value.size);
                    }
                    // III.4.5: `[addr] -> []`, the value's bytes zeroed.
                    ("initobj", _) => {
                        if self.pop()? != pointer {
                            return Err("initobj on a non-pointer".into());
                        }
                        self.push(Instruction::I32Const(0));
                        self.push_pointer_const(value.size);
                        self.push(Instruction::MemoryFill(0));
                    }
                    _ => return Err(format!("{op} of a struct")),
                }
            }
            "ldftn" => {
                let IlOperand::Token(token) = ins.operand else {
                    return Err("ldftn without a token".into());
                };
                match jit.function_pointer(token) {
                    FunctionPointer::Unmanaged { symbol, .. } => {
                        self.push_site(token, SiteKind::Address, Op::TableIndex(symbol));
                        self.stack.push(pointer);
                    }
                    FunctionPointer::Managed => {
                        self.push_placeholder(token, SiteKind::EntryPoint); // replaced
                        self.stack.push(pointer);
                    }
                    FunctionPointer::Unsupported(reason) => {
                        return Err(format!("ldftn 0x{token:08x}: {reason}"));
                    }
                }
            }
            "ldvirtftn" => {
                // [object] -> [function pointer]: the portable entry point of the override
                // the object's type runs (from the virtual-entry helper), or of the method
                // itself when no dispatch is needed; the object is checked for null first.
                let IlOperand::Token(token) = ins.operand else {
                    return Err("ldvirtftn without a token".into());
                };
                if pointer != I32 || self.pop()? != I32 {
                    return Err("ldvirtftn of a non-reference".into());
                }
                let mut taken = Vec::new();
                let object = self.scratch(I32, &mut taken);
                self.push(Instruction::LocalTee(object));
                self.trap_if_null();
                match jit.callvirt_target(token) {
                    CallTarget::Virtual { .. } => {
                        self.push(Instruction::LocalGet(object));
                        self.push_placeholder(token, SiteKind::Virtual); // replaced: the entry
                    }
                    CallTarget::Unsupported(reason) => {
                        return Err(format!("ldvirtftn 0x{token:08x}: {reason}"));
                    }
                    CallTarget::Direct { .. } | CallTarget::Import { .. } => {
                        match jit.function_pointer(token) {
                            FunctionPointer::Managed => {
                                self.push_placeholder(token, SiteKind::EntryPoint); // replaced
                            }
                            FunctionPointer::Unmanaged { .. } => {
                                return Err("ldvirtftn of an UnmanagedCallersOnly method".into());
                            }
                            FunctionPointer::Unsupported(reason) => {
                                return Err(format!("ldvirtftn 0x{token:08x}: {reason}"));
                            }
                        }
                    }
                }
                self.stack.push(I32);
            }
            "calli" => {
                let IlOperand::Token(token) = ins.operand else {
                    return Err("calli without a token".into());
                };
                let callee = jit
                    .indirect_call_signature(token)
                    .map_err(|reason| format!("calli 0x{token:08x}: {reason}"))?;
                let cp = callee.parts();
                if cp.managed {
                    // [args..., entry] -> SP, args, entry.handle; call_indirect entry.code.
                    if self.pop()? != pointer {
                        return Err("calli target is not a native int".into());
                    }
                    let mut taken = Vec::new();
                    let entry = self.scratch(pointer, &mut taken);
                    self.push(Instruction::LocalTee(entry));
                    self.trap_if_null();
                    let arguments =
                        self.managed_call_arguments(&callee, &mut taken, false, false)?;
                    let word = if pointer == I64 { 8 } else { 4 };
                    self.push(Instruction::LocalGet(entry));
                    self.push(pointer_load(pointer, word)); // handle: the PE argument
                    self.push(Instruction::LocalGet(entry));
                    self.push(pointer_load(pointer, 0)); // code: a relative table slot
                    if pointer == I64 {
                        self.push(Instruction::I32WrapI64); // tables are 32-bit indexed
                    }
                    self.ops.push(Op::TableBase);
                    self.push(Instruction::I32Add);
                    self.ops.push(Op::CallIndirect(callee.func_type()));
                    return self.push_result(cp.ret, &arguments);
                }
                if !matches!(cp.ret, ReturnAbi::Void | ReturnAbi::Value(_)) {
                    return Err("calli with a hidden return buffer".into());
                }
                // [params..., fnptr] -> call_indirect with the unmanaged type; the pointer is
                // an absolute table index.
                if self.pop()? != pointer {
                    return Err("calli target is not a native int".into());
                }
                let mut taken = Vec::new();
                let target = self.scratch(pointer, &mut taken);
                self.push(Instruction::LocalSet(target));
                for p in cp.params.iter().rev() {
                    let ParamAbi::Value(v) = p else {
                        return Err("calli with a struct argument".into());
                    };
                    if self.pop()? != *v {
                        return Err("calli argument of the wrong type".into());
                    }
                }
                self.push(Instruction::LocalGet(target));
                self.ops.push(Op::CallIndirect(callee.func_type()));
                if let ReturnAbi::Value(v) = cp.ret {
                    self.stack.push(v);
                }
            }
            // III.3.30, III.3.36: `[dst src size] -> []`, `[addr value size] -> []` (the
            // value an unsigned int8).
            "cpblk" | "initblk" => {
                if pointer != I32 {
                    return Err(format!("{op}: addresses are 32-bit here"));
                }
                for what in ["size", "source or value", "destination"] {
                    if self.pop()? != I32 {
                        return Err(format!("{op} with a {what} that is no int32"));
                    }
                }
                self.push(if op == "cpblk" {
                    Instruction::MemoryCopy {
                        src_mem: 0,
                        dst_mem: 0,
                    }
                } else {
                    Instruction::MemoryFill(0)
                });
            }
            "localloc" => {
                // III.3.47: `[size] -> [address]` of `size` bytes (zeroed: `localsinit` is
                // what compilers emit) below the frame, until the method returns.
                if pointer != I32 || self.pop()? != I32 {
                    return Err("localloc of a non-int32 size".into());
                }
                if !self.stack.is_empty() {
                    return Err("localloc with a non-empty evaluation stack".into());
                }
                let sp = self
                    .frame
                    .as_ref()
                    .and_then(|f| f.sp)
                    .ok_or("localloc without a frame")?;
                let mut taken = Vec::new();
                let size = self.scratch(I32, &mut taken);
                // 16-byte aligned: sp -= (size + 15) & -16.
                self.push(Instruction::I32Const(15));
                self.push(Instruction::I32Add);
                self.push(Instruction::I32Const(-16));
                self.push(Instruction::I32And);
                self.push(Instruction::LocalSet(size));
                self.push(Instruction::LocalGet(sp));
                self.push(Instruction::LocalGet(size));
                self.push(Instruction::I32Sub);
                self.push(Instruction::LocalTee(sp));
                self.push(Instruction::I32Const(0));
                self.push(Instruction::LocalGet(size));
                self.push(Instruction::MemoryFill(0));
                self.push(Instruction::LocalGet(sp));
                self.stack.push(I32);
            }
            "dup" if self.top_struct().is_some() => {
                // A second copy: the two values may go different ways (a callee owns the copy
                // it is given).
                let size = self.top_struct().expect("checked");
                let mut taken = Vec::new();
                let src = self.scratch(pointer, &mut taken);
                self.push(Instruction::LocalTee(src));
                self.load_struct(size, |b| {
                    b.push(Instruction::LocalGet(src));
                    Ok(())
                })?;
            }
            "dup" => {
                let ty = self.pop()?;
                let mut taken = Vec::new();
                let t = self.scratch(ty, &mut taken);
                self.push(Instruction::LocalTee(t));
                self.push(Instruction::LocalGet(t));
                self.stack.push(ty);
                self.stack.push(ty);
            }
            "pop" => {
                match self.top_struct() {
                    Some(size) => self.pop_struct(size)?,
                    None => {
                        self.pop()?;
                    }
                }
                self.push(Instruction::Drop);
            }
            "call"
                if self
                    .suspend
                    .as_ref()
                    .is_some_and(|s| s.awaits.contains_key(&ins.offset)) =>
            {
                // AsyncHelpers.Await<T>(Task<T>) -> T: the fused async call left the T.
                let suspend = self.suspend.as_ref().expect("checked");
                let (resume, awaited) = (suspend.awaits[&ins.offset], suspend.awaited_value);
                self.suspension_point(resume, awaited)?;
            }
            "call" | "callvirt" => {
                let IlOperand::Token(mut token) = ins.operand else {
                    return Err(format!("{op} without a token"));
                };
                let mut virtual_call = op == "callvirt";
                if let Some(constraint) = ins.prefixes.constrained {
                    // `this` (below the arguments) is a managed pointer to a `constraint`.
                    let how = jit
                        .constrained_call(constraint, token)
                        .map_err(|reason| format!("constrained. callvirt: {reason}"))?;
                    if let Constrained::Direct { method } = how {
                        token = method;
                        virtual_call = false;
                    } else {
                        let params = match jit.callvirt_target(token) {
                            CallTarget::Direct { signature, .. }
                            | CallTarget::Import { signature }
                            | CallTarget::Virtual { signature } => signature.parts().params.len(),
                            CallTarget::Unsupported(reason) => {
                                return Err(format!("callvirt 0x{token:08x}: {reason}"));
                            }
                        };
                        let boxed = match how {
                            Constrained::Box => {
                                Some(jit.value_type(constraint).map_err(|reason| {
                                    format!("box 0x{constraint:08x}: {reason}")
                                })?)
                            }
                            _ => None,
                        };
                        self.rewrite_this(params, |b| match boxed {
                            None => b.load_at("ldind.ref", pointer, 0),
                            Some(value) => b.box_from_address(constraint, value),
                        })?;
                    }
                }
                // The call an await consumes goes to the callee's async variant.
                let async_call = self
                    .suspend
                    .as_ref()
                    .is_some_and(|s| s.calls.contains(&ins.offset));
                let target = if async_call {
                    jit.async_call_target(token)
                } else if virtual_call {
                    jit.callvirt_target(token)
                } else {
                    jit.call_target(token)
                };
                let (symbol, callee) = match target {
                    CallTarget::Direct { symbol, signature } => (Some(symbol), signature),
                    CallTarget::Import { signature } => (None, signature),
                    CallTarget::Virtual { signature } if virtual_call && !async_call => {
                        return self.virtual_call(token, &signature);
                    }
                    CallTarget::Virtual { .. } => {
                        return Err(format!(
                            "{op} 0x{token:08x}: virtual target of a non-virtual call"
                        ));
                    }
                    CallTarget::Unsupported(reason) => {
                        let what = if async_call { "awaited call" } else { op };
                        return Err(format!("{what} 0x{token:08x}: {reason}"));
                    }
                };
                let cp = callee.parts();
                if async_call && !cp.async_continuation {
                    return Err("the awaited callee is not an async variant".into());
                }
                if !cp.managed {
                    return Err("call of an unsupported callee shape".into());
                }
                let arguments = self.managed_call_arguments(
                    &callee,
                    &mut Vec::new(),
                    async_call,
                    virtual_call,
                )?;
                // PE: the callee's token, the entry-point handle the interpreter gets when the
                // call ends up in an R2R -> interpreter thunk (direct calls ignore it).
                self.push(Instruction::I32Const(token as i32));
                let kind = if async_call {
                    SiteKind::AsyncCall
                } else {
                    SiteKind::Call
                };
                self.push_site(
                    token,
                    kind,
                    match symbol {
                        Some(symbol) => Op::Call(symbol),
                        None => Op::Ins(Instruction::Unreachable), // replaced by the cell call
                    },
                );
                let value = matches!(cp.ret, ReturnAbi::Value(_));
                self.push_result(cp.ret, &arguments)?;
                if async_call && let Some(s) = self.suspend.as_mut() {
                    s.awaited_value = value;
                }
                self.callees.push(token);
            }
            "newobj" => {
                let IlOperand::Token(token) = ins.operand else {
                    return Err("newobj without a token".into());
                };
                let (class, target) = match jit.new_object(token) {
                    NewObject::Class { type_token, ctor } => (Constructed::Class(type_token), ctor),
                    NewObject::Value { access, ctor } => (Constructed::Value(access), ctor),
                    NewObject::Struct { size, ctor } => (Constructed::Struct(size), ctor),
                    NewObject::Unsupported(reason) => {
                        return Err(format!("newobj 0x{token:08x}: {reason}"));
                    }
                };
                let (symbol, callee) = match target {
                    CallTarget::Direct { symbol, signature } => (Some(symbol), signature),
                    CallTarget::Import { signature } => (None, signature),
                    CallTarget::Virtual { .. } => {
                        return Err(format!("newobj 0x{token:08x}: a virtual constructor"));
                    }
                    CallTarget::Unsupported(reason) => {
                        return Err(format!("newobj 0x{token:08x}: {reason}"));
                    }
                };
                let cp = callee.parts();
                if !cp.managed || !cp.has_this || cp.ret != ReturnAbi::Void {
                    return Err("newobj of an unsupported constructor shape".into());
                }
                if self.pointer != I32 {
                    return Err("newobj: references are 32-bit here".into());
                }
                // The constructor's explicit arguments go to locals; the new object goes
                // below them, as `this`.
                let mut taken = Vec::new();
                // (local, type, struct size) of each explicit argument.
                let mut args = Vec::new();
                for p in cp.params.iter().rev() {
                    let (ty, size) = match *p {
                        ParamAbi::Value(ty) => (ty, None),
                        ParamAbi::ByRef { size } => (pointer, Some(size)),
                        _ => {
                            return Err(
                                "newobj with an over-aligned or empty struct argument".into()
                            );
                        }
                    };
                    match size {
                        Some(size) => self.pop_struct(size)?,
                        None if self.pop()? != ty => {
                            return Err("newobj argument of the wrong type".into());
                        }
                        None => {}
                    }
                    let local = self.scratch(ty, &mut taken);
                    self.push(Instruction::LocalSet(local));
                    args.push((local, ty, size));
                }
                // `this`: a new object, or the address of the zeroed value slot or struct
                // temporary.
                let object = self.scratch(I32, &mut taken);
                let mut constructed_struct = None;
                let value_slot = match class {
                    Constructed::Class(type_token) => {
                        self.push_placeholder(type_token, SiteKind::NewObject); // replaced: the allocation
                        None
                    }
                    Constructed::Struct(size) => {
                        let slot = self.temp(size)?;
                        self.frame_address(slot)?;
                        self.push(Instruction::I32Const(0));
                        self.push_pointer_const(size);
                        self.push(Instruction::MemoryFill(0));
                        self.frame_address(slot)?;
                        constructed_struct = Some((slot, size));
                        None
                    }
                    Constructed::Value(access) => {
                        let frame = self.frame.as_ref().expect("the prologue saw this newobj");
                        let (fp, slot) = (
                            frame.fp,
                            frame.value_slot.expect("the prologue made the slot"),
                        );
                        let zero = wasm_encoder::MemArg {
                            offset: u64::from(slot),
                            align: 3,
                            memory_index: 0,
                        };
                        self.push(Instruction::LocalGet(fp));
                        self.push(Instruction::I64Const(0));
                        self.push(Instruction::I64Store(zero));
                        self.push(Instruction::LocalGet(fp));
                        self.push(Instruction::I32Const(slot as i32));
                        self.push(Instruction::I32Add);
                        Some((fp, slot, access))
                    }
                };
                self.push(Instruction::LocalTee(object));
                self.stack.push(I32);
                for &(local, ty, size) in args.iter().rev() {
                    self.push(Instruction::LocalGet(local));
                    self.stack.push(ty);
                    if let Some(size) = size {
                        self.structs.push((self.stack.len() - 1, size));
                    }
                }
                self.managed_call_arguments(&callee, &mut taken, false, false)?;
                // PE: the constructor's token, as for any call.
                self.push(Instruction::I32Const(token as i32));
                self.push_site(
                    token,
                    SiteKind::Call,
                    match symbol {
                        Some(symbol) => Op::Call(symbol),
                        None => Op::Ins(Instruction::Unreachable), // replaced by the cell call
                    },
                );
                self.callees.push(token);
                match (value_slot, constructed_struct) {
                    (Some((fp, slot, access)), _) => self.load_slot(fp, slot, access)?,
                    (None, Some((slot, size))) => self.push_struct(slot, size)?,
                    (None, None) => {
                        self.push(Instruction::LocalGet(object));
                        self.stack.push(I32);
                    }
                }
            }
            "throw" => {
                // The exception leaves this frame (compiled methods have no handlers): the
                // helper never returns, and what the evaluation stack held is gone (III.4.33).
                let helper = jit.throw_helper()?;
                if self.pop()? != self.pointer || self.pointer != I32 {
                    return Err("throw of a non-reference".into());
                }
                self.ops.push(Op::Call(helper));
                self.push(Instruction::Unreachable);
                self.stack.clear();
                self.structs.clear();
                self.throws = true;
                if let Some(cf) = self.cf.as_mut() {
                    cf.terminated = true;
                }
            }
            "ret" => {
                if let Some(ty) = ret
                    && self.pop()? != ty
                {
                    return Err("ret of the wrong type".into());
                }
                if let Some((buffer, size)) = self.ret_buffer {
                    // Into the caller's return buffer.
                    self.pop_struct(size)?;
                    self.copy_to(size, |b| {
                        b.push(Instruction::LocalGet(buffer));
                        Ok(())
                    })?;
                }
                if !self.stack.is_empty() {
                    return Err("ret with a non-empty evaluation stack".into());
                }
                if !last || self.cf.is_some() {
                    self.push(Instruction::Return);
                    if let Some(cf) = self.cf.as_mut() {
                        cf.terminated = true;
                    }
                    // Code after a mid-body ret is only reachable through branches, which are
                    // refused, so stop tracking.
                }
            }
            "br" | "br.s" if self.cf.is_some() => {
                let IlOperand::Branch(target) = ins.operand else {
                    return Err(format!("{op} without a target"));
                };
                self.goto(target)?;
            }
            "brtrue" | "brtrue.s" | "brfalse" | "brfalse.s" if self.cf.is_some() => {
                let IlOperand::Branch(target) = ins.operand else {
                    return Err(format!("{op} without a target"));
                };
                match self.pop()? {
                    I32 => {}
                    I64 => {
                        self.push(Instruction::I64Eqz);
                        self.push(Instruction::I32Eqz);
                    }
                    other => return Err(format!("{op} on {other}")),
                }
                if op.starts_with("brfalse") {
                    self.push(Instruction::I32Eqz);
                }
                self.stack.push(I32);
                self.goto_if(target)?;
            }
            _ if self.cf.is_some() && is_compare_branch(op) => {
                let IlOperand::Branch(target) = ins.operand else {
                    return Err(format!("{op} without a target"));
                };
                self.relation(op.trim_end_matches(".s"))?;
                self.goto_if(target)?;
            }
            "switch" if self.cf.is_some() => {
                let IlOperand::Switch(targets) = &ins.operand else {
                    return Err("switch without targets".into());
                };
                if self.pop()? != I32 {
                    return Err("switch on a non-int32".into());
                }
                let mut taken = Vec::new();
                let index = self.scratch(I32, &mut taken);
                self.push(Instruction::LocalSet(index));
                for (j, &target) in targets.iter().enumerate() {
                    self.push(Instruction::LocalGet(index));
                    self.push(Instruction::I32Const(j as i32));
                    self.push(Instruction::I32Eq);
                    self.stack.push(I32);
                    self.goto_if(target)?;
                }
            }
            other => return Err(format!("{other} is outside the baseline subset")),
        }
        Ok(())
    }
}

/// The IL argument or local an `ldarg`, `starg`, `ldloc` or `stloc` (any form) names:
/// `(what, index)`, `what` without the form's suffix.
fn variable_of(ins: &IlInstruction) -> Option<(&'static str, u32)> {
    for what in ["ldarg", "starg", "ldloc", "stloc"] {
        if let Some(form) = ins.opcode.strip_prefix(what) {
            return match (form.as_bytes(), &ins.operand) {
                (b"" | b".s", IlOperand::Var(n)) => Some((what, u32::from(*n))),
                ([b'.', d], _) if d.is_ascii_digit() => Some((what, u32::from(d - b'0'))),
                _ => None,
            };
        }
    }
    None
}

fn is_compare_branch(op: &str) -> bool {
    matches!(
        op.trim_end_matches(".s"),
        "beq"
            | "bne.un"
            | "bgt"
            | "bgt.un"
            | "bge"
            | "bge.un"
            | "blt"
            | "blt.un"
            | "ble"
            | "ble.un"
    )
}

/// The wasm value type of an IL local or argument type name (ILDasm spelling), or `None` for
/// value types the baseline compiler does not lower.
pub fn il_type(name: &str, pointer: WasmValueType) -> Option<WasmValueType> {
    Some(match name {
        "bool" | "char" | "int8" | "uint8" | "int16" | "uint16" | "int32" | "uint32" => {
            WasmValueType::I32
        }
        "int64" | "uint64" => WasmValueType::I64,
        "float32" => WasmValueType::F32,
        "float64" => WasmValueType::F64,
        "native int" | "native uint" | "object" | "string" => pointer,
        n if n.ends_with('&') || n.ends_with('*') || n.ends_with("[]") => pointer,
        n if n.starts_with("class ") => pointer,
        _ => return None,
    })
}
