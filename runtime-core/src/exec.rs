//! Execution in wasmtime (feature `exec`): instantiate a produced module, provide its imports
//! (memory, funcref table, stack-pointer/image-base/table-base globals, the interpreter entry
//! and the delay-load helper), load its image, and call methods through the runtime's
//! dispatch paths.
//!
//! Dispatch rules: [`Executor::invoke`] (the reflection-style path) runs a method that has
//! R2R code through its interpreter -> R2R thunk, whether or not it has bytecode, and so never
//! hands a missing bytecode pointer to the interpreter; a method without R2R code goes to the
//! embedder's [`Interpreter`]. [`Executor::call_unmanaged`] (the native -> managed path of an
//! `UnmanagedCallersOnly` method) calls the method's own unmanaged-typed function directly.

use std::sync::Arc;

use wasmtime::{
    Caller, Engine, ExternType, Func, Global, GlobalType, Instance, Linker, Memory, MemoryType,
    Mutability, Ref, RefType, Store, Table, TableType, Val, ValType,
};

use crate::abi::continuation;
use crate::abi::{
    ARRAY_STORE_HELPER, ArgLayout, FIELD_ADDRESS_HELPER, IS_INSTANCE_HELPER, NEW_ARRAY_HELPER,
    NEW_OBJECT_HELPER, RUNTIME_HANDLE_HELPER, RetSlot, STRING_LITERAL_HELPER, SlotKind,
    THROW_HELPER, ThunkDirection, VIRTUAL_ENTRY_HELPER, WasmSignature, WasmValueType,
};
use crate::format::{FixupSignature, MethodRef};
use crate::loader::{CallKind, LoadError, Loader, image_from_module};

/// The embedder's interpreter: runs methods without R2R code.
pub trait Interpreter: Send + Sync + 'static {
    /// Runs the method whose portable entry point is `entry_point`, with its arguments in the
    /// block at `args` (`size` bytes, laid out by [`ArgLayout`]) in `memory`, writing the
    /// result to `ret` (a return slot or buffer; 0 for none).
    ///
    /// # Errors
    /// A message, surfaced as a trap of the calling wasm code.
    fn execute(
        &self,
        entry_point: u32,
        memory: &mut [u8],
        args: u32,
        size: u32,
        ret: u32,
    ) -> Result<(), String>;

    /// Runs a method that may suspend (an async variant; its continuation argument is in the
    /// block like any other): as [`Interpreter::execute`], returning the continuation it
    /// suspended with, or 0 when it completed. A suspending interpreter keeps that
    /// continuation (the head of the chain, see [`crate::abi::continuation`]) and completes it
    /// later with [`Executor::resume`]. The default runs `execute` and never suspends.
    ///
    /// # Errors
    /// As [`Interpreter::execute`].
    fn execute_async(
        &self,
        entry_point: u32,
        memory: &mut [u8],
        args: u32,
        size: u32,
        ret: u32,
    ) -> Result<u32, String> {
        self.execute(entry_point, memory, args, size, ret)
            .map(|()| 0)
    }

    /// The string object of the string literal with user-string token `token` (0x70xxxxxx)
    /// of the image's assembly (an `ldstr` operand; ReadyToRun fixup `StringHandle`, 0x1B):
    /// its reference (an address in `memory`, never 0), created or found by the embedder, which
    /// owns the object model (ECMA-335 III.4.16: equal literals are the same object). Called
    /// once per string cell, the first time code loads it (lazily). The default has no
    /// string literals.
    ///
    /// # Errors
    /// A message, surfaced as a trap of the calling wasm code.
    fn string_literal(&self, memory: &mut [u8], token: u32) -> Result<u32, String> {
        let _ = memory;
        Err(format!(
            "this interpreter has no string literals (ldstr 0x{token:08x})"
        ))
    }

    /// A new instance of the class `token` (a `TypeDef` or `TypeRef` token of the image's
    /// assembly; ReadyToRun fixup `NewObject`, 0x1C), for `newobj`: its reference (an address
    /// in `memory`, never 0), with every field zeroed (ECMA-335 III.4.21); the code then runs
    /// the constructor on it. The embedder owns the object model: the header, the instance
    /// size, where the object lives. The default has no objects.
    ///
    /// # Errors
    /// A message, surfaced as a trap of the calling wasm code.
    fn new_object(&self, memory: &mut [u8], token: u32) -> Result<u32, String> {
        let _ = memory;
        Err(format!(
            "this interpreter allocates no objects (newobj of type 0x{token:08x})"
        ))
    }

    /// A new single-dimension, zero-based array of `length` elements of the type `token` (the
    /// `newarr` operand: a `TypeDef`, `TypeRef` or `TypeSpec` token of the image's assembly;
    /// ReadyToRun fixup `NewArray`, 0x1D): its reference (never 0), zeroed, laid out as
    /// [`crate::abi::array`] says (header, length at 4, elements from 8). `length` is never
    /// negative (the runtime traps first). The default has no arrays.
    ///
    /// # Errors
    /// A message, surfaced as a trap of the calling wasm code.
    fn new_array(&self, memory: &mut [u8], token: u32, length: u32) -> Result<u32, String> {
        let _ = memory;
        Err(format!(
            "this interpreter allocates no arrays (newarr of {length} elements of 0x{token:08x})"
        ))
    }

    /// Whether the object at `object` (never 0) is an instance of the type `token` (the operand
    /// of an `isinst` or `castclass`: a `TypeDef`, `TypeRef` or `TypeSpec` token of the
    /// image's assembly; ReadyToRun fixups `IsInstanceOf` 0x1E, `ChkCast` 0x1F), by ECMA-335's
    /// assignment compatibility (III.4.6). The embedder owns the object model. The default
    /// has no objects.
    ///
    /// # Errors
    /// A message, surfaced as a trap of the calling wasm code.
    fn is_instance_of(&self, memory: &mut [u8], object: u32, token: u32) -> Result<bool, String> {
        let _ = memory;
        Err(format!(
            "this interpreter has no object model (type test of {object:#x} against 0x{token:08x})"
        ))
    }

    /// The method a virtual call runs: the override of the virtual method `token` (the operand
    /// of a `callvirt`: a `MethodDef` or `MemberRef` token of the image's assembly; ReadyToRun
    /// fixup `VirtualEntry`, 0x16) that the type of the receiver `object` (never 0) has
    /// (ECMA-335 II.10.3, III.4.2; interface methods by the type's implementation). Answer a
    /// `MethodDef` token of the image's assembly: the runtime calls its R2R code when the image
    /// has it, else this interpreter's [`Interpreter::execute`] with the answer as the entry
    /// point (so any handle `execute` understands works for methods elsewhere). Called on every
    /// virtual call of compiled code. The default has no object model.
    ///
    /// # Errors
    /// A message, surfaced as a trap of the calling wasm code.
    fn virtual_target(&self, memory: &mut [u8], object: u32, token: u32) -> Result<u32, String> {
        let _ = memory;
        Err(format!(
            "this interpreter has no object model (virtual call of 0x{token:08x} on {object:#x})"
        ))
    }

    /// Whether the array `array` (never 0) can hold the reference `value` (never 0): whether
    /// `value`'s type is assignment compatible with the array's element type (ECMA-335
    /// III.4.27; arrays of references are covariant, so a `string[]` seen as `object[]`
    /// refuses other objects). Asked by every `stelem.ref` of a non-null reference in compiled
    /// code; `false` traps (ArrayTypeMismatchException). The default has no object model.
    ///
    /// # Errors
    /// A message, surfaced as a trap of the calling wasm code.
    fn can_store_element(&self, memory: &mut [u8], array: u32, value: u32) -> Result<bool, String> {
        let _ = memory;
        Err(format!(
            "this interpreter has no object model (store of {value:#x} into array {array:#x})"
        ))
    }

    /// The runtime handle of the type or field `token` (the operand of an `ldtoken`: a
    /// `TypeDef`, `TypeRef` or `TypeSpec` token, or a `Field` or `MemberRef` token of a field,
    /// of the image's assembly; ReadyToRun fixups `TypeHandle` 0x10, `FieldHandle` 0x12): the
    /// value of its `RuntimeTypeHandle` or `RuntimeFieldHandle`, a pointer-sized word, never 0.
    /// The embedder owns the type system at run time. Called once per handle cell, the first
    /// time code loads it (lazily). The default has no handles.
    ///
    /// # Errors
    /// A message, surfaced as a trap of the calling wasm code.
    fn runtime_handle(&self, memory: &mut [u8], token: u32) -> Result<u32, String> {
        let _ = memory;
        Err(format!(
            "this interpreter has no runtime handles (ldtoken 0x{token:08x})"
        ))
    }

    /// The address in `memory` (never 0) of the static field `token` (a `Field` or `MemberRef`
    /// token of the image's assembly; ReadyToRun fixup `FieldAddress`, 0x20), for `ldsfld`,
    /// `stsfld` and `ldsflda`. The embedder owns the statics: where they live, and running the
    /// class constructor before the first access when the class needs it (ECMA-335 II.10.5.3).
    /// Called once per field cell, the first time code reaches it (lazily); the address must
    /// stay valid while the module runs (thread statics are not compiled). The default has no
    /// statics.
    ///
    /// # Errors
    /// A message, surfaced as a trap of the calling wasm code.
    fn static_field_address(&self, memory: &mut [u8], token: u32) -> Result<u32, String> {
        let _ = memory;
        Err(format!(
            "this interpreter has no statics (static field 0x{token:08x})"
        ))
    }
}

/// How a resumed chain of async frames ended ([`Executor::resume`]).
#[derive(Clone, Debug)]
pub enum AsyncResult {
    /// The outermost frame completed with this result (`None` for `void`).
    Completed(Option<Val>),
    /// A frame suspended again: the continuation of the outermost frame that suspended
    /// (linked to the rest of the chain). The leaf that suspended holds the new head.
    Suspended {
        /// Its address.
        continuation: u32,
    },
}

/// Why execution failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Loading the module or resolving a method failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// wasmtime rejected the module, or the code trapped.
    #[error("wasm: {0}")]
    Wasm(String),
    /// No thunk for the signature.
    #[error("no {key:?} thunk is loaded")]
    MissingThunk {
        /// Lookup string.
        key: String,
    },
    /// A name the module does not give a method (neither an export nor, in the name
    /// section, one compiled method alone under that name), or gives one without a table
    /// slot, so it is no method entry.
    #[error("the module names no method {name:?}")]
    MissingExport {
        /// The name asked for.
        name: String,
    },
    /// An image code reference beyond the module's table slots.
    #[error("image code reference {code} is outside the module's {slots} table slots")]
    CodeOutOfRange {
        /// The slot the image names.
        code: u32,
        /// The module's slot count.
        slots: u64,
    },
    /// Compiled code threw a managed exception (`throw`) that no compiled frame handles (they
    /// have no handlers): the exception object, for the embedder to dispatch.
    #[error("managed exception: object at {object:#x}")]
    Exception {
        /// The exception object's reference.
        object: u32,
    },
    /// Arguments that do not match the signature, or a shape `invoke` does not marshal yet.
    #[error("cannot invoke with signature {signature:?}: {reason}")]
    Arguments {
        /// Signature string.
        signature: String,
        /// What is wrong.
        reason: String,
    },
}

/// The wasm value type of `value` and its little-endian bytes (`None` for references).
fn value_bytes(value: &Val) -> Option<(WasmValueType, Vec<u8>)> {
    Some(match value {
        Val::I32(v) => (WasmValueType::I32, v.to_le_bytes().to_vec()),
        Val::I64(v) => (WasmValueType::I64, v.to_le_bytes().to_vec()),
        Val::F32(v) => (WasmValueType::F32, v.to_le_bytes().to_vec()),
        Val::F64(v) => (WasmValueType::F64, v.to_le_bytes().to_vec()),
        Val::V128(v) => (WasmValueType::V128, v.as_u128().to_le_bytes().to_vec()),
        _ => return None,
    })
}

/// Bytes in a wasm page.
const PAGE: u32 = 64 * 1024;

fn wasm(e: impl std::fmt::Display) -> ExecError {
    ExecError::Wasm(format!("{e:#}"))
}

/// What the throw helper raises through wasmtime: the exception object.
#[derive(Debug)]
struct ManagedException {
    object: u32,
}

impl std::fmt::Display for ManagedException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "managed exception: object at {:#x}", self.object)
    }
}

impl std::error::Error for ManagedException {}

/// The error of a call into compiled code: a managed exception it threw, or a trap.
fn trapped(e: wasmtime::Error) -> ExecError {
    match e.downcast_ref::<ManagedException>() {
        Some(exception) => ExecError::Exception {
            object: exception.object,
        },
        None => wasm(e),
    }
}

/// Where things go in the instance's memory and table.
#[derive(Clone, Copy, Debug)]
pub struct ExecConfig {
    /// Memory size in 64 KiB pages.
    pub memory_pages: u32,
    /// Where the image data segment goes (bytes).
    pub image_base: u32,
    /// The module's first table slot.
    pub table_base: u32,
    /// Initial `__stack_pointer` (the shadow stack grows down from here).
    pub stack_top: u32,
    /// Pages after the first `memory_pages` for the runtime's heap (async continuations;
    /// nothing is freed before the executor goes: there is no GC here).
    pub heap_pages: u32,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            memory_pages: 32,
            image_base: 64 * 1024,
            table_base: 1,
            stack_top: 32 * 64 * 1024,
            heap_pages: 16,
        }
    }
}

/// The import cell at absolute address `cell` of the loaded image, for the runtime helpers
/// code calls with a cell's address: `(module, section, cell index, signature)`.
fn cell_at(
    caller: &Caller<'_, HostState>,
    cell: i32,
) -> wasmtime::Result<(usize, u32, u32, FixupSignature)> {
    let state = caller.data();
    let module = state
        .module
        .ok_or_else(|| wasmtime::Error::msg("image not loaded"))?;
    let rva = (cell as u32).wrapping_sub(state.image_base);
    let (section, index, signature) = state
        .loader
        .cell_at(module, rva)
        .map_err(|e| wasmtime::Error::msg(e.to_string()))?;
    Ok((module, section, index, signature))
}

/// A reference the embedder made (a string literal, a new object), as a helper's result: its
/// error, or a null reference, becomes a trap naming `what`.
/// Resolves the lazy cell at address `cell` (0 until now) with `resolve`, which gets the
/// memory and the cell's fixup signature and asks the embedder; stores the value in the
/// loader's cell table and in the cell, the first resolution winning (racing threads get one
/// value), and returns it. `[cell i32] -> [i32]` helpers (`StringHandle`, `FieldAddress`).
fn resolve_lazy_cell(
    caller: &mut Caller<'_, HostState>,
    memory: Memory,
    cell: i32,
    resolve: impl FnOnce(&mut [u8], &FixupSignature) -> wasmtime::Result<u32>,
) -> wasmtime::Result<i32> {
    let (module, section, index, signature) = cell_at(caller, cell)?;
    let loader = Arc::clone(&caller.data().loader);
    let value = resolve(memory.data_mut(&mut *caller), &signature)?;
    let value = loader
        .store_cell(module, section, index, value)
        .map_err(|e| wasmtime::Error::msg(e.to_string()))?;
    let at = cell as u32 as usize;
    let bytes = memory
        .data_mut(caller)
        .get_mut(at..at + 4)
        .ok_or_else(|| wasmtime::Error::msg(format!("cell at {cell:#x} is outside memory")))?;
    bytes.copy_from_slice(&value.to_le_bytes());
    Ok(value as i32)
}

/// An embedder's (interpreter's) failure, as the trap of the wasm code that called it.
fn interpreter_error(message: String) -> wasmtime::Error {
    wasmtime::Error::msg(format!("interpreter: {message}"))
}

fn embedder_reference(
    made: Result<u32, String>,
    what: impl FnOnce() -> String,
) -> wasmtime::Result<u32> {
    match made {
        Ok(0) => Err(wasmtime::Error::msg(format!(
            "interpreter: {} gave a null reference",
            what()
        ))),
        Ok(object) => Ok(object),
        Err(e) => Err(interpreter_error(e)),
    }
}

struct HostState {
    loader: Arc<Loader>,
    module: Option<usize>,
    image_base: u32,
    table_base: u32,
    /// The continuation the last async callee suspended with (the continuation "register").
    async_continuation: u32,
    /// Next free heap byte, and the heap's end.
    heap_next: u32,
    heap_end: u32,
    /// The portable entry points virtual calls made, by (absolute code, handle).
    virtual_entries: rustc_hash::FxHashMap<(u32, u32), u32>,
}

impl HostState {
    /// `size` zeroed bytes of the heap in `memory`, 16-byte aligned, for `what` (named in the
    /// error when the heap is exhausted).
    fn alloc(&mut self, memory: &mut [u8], size: u32, what: &str) -> wasmtime::Result<u32> {
        let at = self.heap_next.next_multiple_of(16);
        let end = at
            .checked_add(size)
            .filter(|&end| end <= self.heap_end)
            .ok_or_else(|| {
                wasmtime::Error::msg(format!("{what} of {size} bytes: the heap is exhausted"))
            })?;
        self.heap_next = end;
        memory[at as usize..end as usize].fill(0);
        Ok(at)
    }
}

/// One instantiated module and its loaded image.
pub struct Executor {
    interpreter: Arc<dyn Interpreter>,
    store: Store<HostState>,
    instance: Instance,
    /// Method name -> table slot, for calls by name ([`crate::loader::named_slots`]).
    exports: rustc_hash::FxHashMap<String, u32>,
    table_base: u32,
    memory: Memory,
    table: Table,
    stack_pointer: Global,
    loader: Arc<Loader>,
    module: usize,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// Instantiates `module` (a module written by crossgraph's object writer), loads its
    /// image into `loader` (eager fixups run now), and wires the runtime helpers.
    ///
    /// # Errors
    /// [`ExecError::Load`] for a module without a valid image; [`ExecError::Wasm`] when
    /// wasmtime rejects it.
    pub fn instantiate(
        module: &[u8],
        loader: Arc<Loader>,
        interpreter: Arc<dyn Interpreter>,
        config: ExecConfig,
    ) -> Result<Executor, ExecError> {
        let image = image_from_module(module)?.to_vec();
        let interpreter_for_invoke = Arc::clone(&interpreter);
        let strings = Arc::clone(&interpreter);
        let objects = Arc::clone(&interpreter);
        let statics = Arc::clone(&interpreter);
        let arrays = Arc::clone(&interpreter);
        let types = Arc::clone(&interpreter);
        let dispatch = Arc::clone(&interpreter);
        let handles = Arc::clone(&interpreter);
        let stores = Arc::clone(&interpreter);
        let engine = Engine::default();
        let compiled = wasmtime::Module::new(&engine, module).map_err(wasm)?;
        let slots = compiled
            .imports()
            .find_map(|i| match i.ty() {
                ExternType::Table(t) if i.name() == "__indirect_function_table" => {
                    Some(t.minimum())
                }
                _ => None,
            })
            .unwrap_or(0);
        let mut store = Store::new(
            &engine,
            HostState {
                loader: Arc::clone(&loader),
                module: None,
                image_base: config.image_base,
                table_base: config.table_base,
                async_continuation: 0,
                heap_next: config.memory_pages.saturating_mul(PAGE),
                heap_end: config
                    .memory_pages
                    .saturating_add(config.heap_pages)
                    .saturating_mul(PAGE),
                virtual_entries: Default::default(),
            },
        );
        let memory = Memory::new(
            &mut store,
            MemoryType::new(config.memory_pages + config.heap_pages, None),
        )
        .map_err(wasm)?;
        let table_size = u32::try_from(slots + u64::from(config.table_base))
            .map_err(|_| ExecError::Wasm("table too large".into()))?;
        let table = Table::new(
            &mut store,
            TableType::new(RefType::FUNCREF, table_size, None),
            Ref::Func(None),
        )
        .map_err(wasm)?;
        let global = |store: &mut Store<HostState>, mutability, value: u32| {
            Global::new(
                store,
                GlobalType::new(ValType::I32, mutability),
                Val::I32(value as i32),
            )
            .map_err(wasm)
        };
        let stack_pointer = global(&mut store, Mutability::Var, config.stack_top)?;
        let image_base = global(&mut store, Mutability::Const, config.image_base)?;
        let table_base = global(&mut store, Mutability::Const, config.table_base)?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        let imports: [(&str, wasmtime::Extern); 5] = [
            ("memory", memory.into()),
            ("__indirect_function_table", table.into()),
            ("__stack_pointer", stack_pointer.into()),
            ("__image_base", image_base.into()),
            ("__table_base", table_base.into()),
        ];
        for (name, item) in imports {
            linker.define(&store, "env", name, item).map_err(wasm)?;
        }
        linker
            .func_wrap(
                "env",
                "crossgraph_interpreter_entry",
                move |mut caller: Caller<'_, HostState>,
                      entry: i32,
                      args: i32,
                      size: i32,
                      ret: i32|
                      -> wasmtime::Result<()> {
                    let data = memory.data_mut(&mut caller);
                    let suspended = interpreter
                        .execute_async(entry as u32, data, args as u32, size as u32, ret as u32)
                        .map_err(interpreter_error)?;
                    if suspended != 0 {
                        caller.data_mut().async_continuation = suspended;
                    }
                    Ok(())
                },
            )
            .map_err(wasm)?;
        linker
            .func_wrap(
                "env",
                STRING_LITERAL_HELPER,
                move |mut caller: Caller<'_, HostState>, cell: i32| -> wasmtime::Result<i32> {
                    resolve_lazy_cell(&mut caller, memory, cell, |memory, signature| {
                        let FixupSignature::StringHandle(token) = *signature else {
                            return Err(wasmtime::Error::msg(format!(
                                "cell at {cell:#x} is not a StringHandle cell"
                            )));
                        };
                        embedder_reference(strings.string_literal(memory, token), || {
                            format!("string literal 0x{token:08x}")
                        })
                    })
                },
            )
            .map_err(wasm)?;
        linker
            .func_wrap(
                "env",
                IS_INSTANCE_HELPER,
                move |mut caller: Caller<'_, HostState>,
                      object: i32,
                      cell: i32|
                      -> wasmtime::Result<i32> {
                    let (_, _, _, signature) = cell_at(&caller, cell)?;
                    let (FixupSignature::IsInstanceOf(token) | FixupSignature::ChkCast(token)) =
                        signature
                    else {
                        return Err(wasmtime::Error::msg(format!(
                            "cell at {cell:#x} is not an IsInstanceOf or ChkCast cell"
                        )));
                    };
                    if object == 0 {
                        return Ok(0);
                    }
                    match types.is_instance_of(memory.data_mut(&mut caller), object as u32, token) {
                        Ok(true) => Ok(object),
                        Ok(false) => Ok(0),
                        Err(e) => Err(interpreter_error(e)),
                    }
                },
            )
            .map_err(wasm)?;
        linker
            .func_wrap(
                "env",
                ARRAY_STORE_HELPER,
                move |mut caller: Caller<'_, HostState>,
                      array: i32,
                      value: i32|
                      -> wasmtime::Result<i32> {
                    stores
                        .can_store_element(memory.data_mut(&mut caller), array as u32, value as u32)
                        .map(i32::from)
                        .map_err(interpreter_error)
                },
            )
            .map_err(wasm)?;
        linker
            .func_wrap(
                "env",
                RUNTIME_HANDLE_HELPER,
                move |mut caller: Caller<'_, HostState>, cell: i32| -> wasmtime::Result<i32> {
                    resolve_lazy_cell(&mut caller, memory, cell, |memory, signature| {
                        let (FixupSignature::TypeHandle(token)
                        | FixupSignature::FieldHandle(token)) = *signature
                        else {
                            return Err(wasmtime::Error::msg(format!(
                                "cell at {cell:#x} is not a TypeHandle or FieldHandle cell"
                            )));
                        };
                        embedder_reference(handles.runtime_handle(memory, token), || {
                            format!("runtime handle of 0x{token:08x}")
                        })
                    })
                },
            )
            .map_err(wasm)?;
        linker
            .func_wrap(
                "env",
                VIRTUAL_ENTRY_HELPER,
                move |mut caller: Caller<'_, HostState>,
                      object: i32,
                      cell: i32|
                      -> wasmtime::Result<i32> {
                    let (module, section, index, signature) = cell_at(&caller, cell)?;
                    let FixupSignature::VirtualEntry(method) = signature else {
                        return Err(wasmtime::Error::msg(format!(
                            "cell at {cell:#x} is not a VirtualEntry cell"
                        )));
                    };
                    if object == 0 {
                        return Err(wasmtime::Error::msg(format!(
                            "virtual call of 0x{:08x} on a null reference",
                            method.token
                        )));
                    }
                    let target = dispatch
                        .virtual_target(memory.data_mut(&mut caller), object as u32, method.token)
                        .map_err(interpreter_error)?;
                    let code = caller
                        .data()
                        .loader
                        .virtual_entry_code(
                            module,
                            section,
                            index,
                            MethodRef {
                                flags: crate::format::MethodSigFlags::NONE,
                                token: target,
                            },
                        )
                        .map_err(|e| wasmtime::Error::msg(e.to_string()))?;
                    let (data, state) = memory.data_and_store_mut(&mut caller);
                    if let Some(&entry) = state.virtual_entries.get(&(code.0, target)) {
                        return Ok(entry as i32);
                    }
                    let entry = state.alloc(data, 8, "portable entry point")?;
                    let relative = code.0.wrapping_sub(state.table_base);
                    data[entry as usize..entry as usize + 4]
                        .copy_from_slice(&relative.to_le_bytes());
                    data[entry as usize + 4..entry as usize + 8]
                        .copy_from_slice(&target.to_le_bytes());
                    state.virtual_entries.insert((code.0, target), entry);
                    Ok(entry as i32)
                },
            )
            .map_err(wasm)?;
        linker
            .func_wrap(
                "env",
                NEW_ARRAY_HELPER,
                move |mut caller: Caller<'_, HostState>,
                      length: i32,
                      cell: i32|
                      -> wasmtime::Result<i32> {
                    let (_, _, _, signature) = cell_at(&caller, cell)?;
                    let FixupSignature::NewArray(token) = signature else {
                        return Err(wasmtime::Error::msg(format!(
                            "cell at {cell:#x} is not a NewArray cell"
                        )));
                    };
                    if length < 0 {
                        return Err(wasmtime::Error::msg(format!(
                            "newarr of {length} elements (OverflowException)"
                        )));
                    }
                    let array = embedder_reference(
                        arrays.new_array(memory.data_mut(&mut caller), token, length as u32),
                        || format!("newarr of type 0x{token:08x}"),
                    )?;
                    Ok(array as i32)
                },
            )
            .map_err(wasm)?;
        linker
            .func_wrap(
                "env",
                FIELD_ADDRESS_HELPER,
                move |mut caller: Caller<'_, HostState>, cell: i32| -> wasmtime::Result<i32> {
                    resolve_lazy_cell(&mut caller, memory, cell, |memory, signature| {
                        let FixupSignature::FieldAddress(token) = *signature else {
                            return Err(wasmtime::Error::msg(format!(
                                "cell at {cell:#x} is not a FieldAddress cell"
                            )));
                        };
                        match statics.static_field_address(memory, token) {
                            Ok(0) => Err(wasmtime::Error::msg(format!(
                                "interpreter: static field 0x{token:08x} has address 0"
                            ))),
                            Ok(address) => Ok(address),
                            Err(e) => Err(interpreter_error(e)),
                        }
                    })
                },
            )
            .map_err(wasm)?;
        linker
            .func_wrap("env", THROW_HELPER, |object: i32| -> wasmtime::Result<()> {
                Err(wasmtime::Error::new(ManagedException {
                    object: object as u32,
                }))
            })
            .map_err(wasm)?;
        linker
            .func_wrap(
                "env",
                NEW_OBJECT_HELPER,
                move |mut caller: Caller<'_, HostState>, cell: i32| -> wasmtime::Result<i32> {
                    let (_, _, _, signature) = cell_at(&caller, cell)?;
                    let FixupSignature::NewObject(token) = signature else {
                        return Err(wasmtime::Error::msg(format!(
                            "cell at {cell:#x} is not a NewObject cell"
                        )));
                    };
                    let object = embedder_reference(
                        objects.new_object(memory.data_mut(&mut caller), token),
                        || format!("newobj of type 0x{token:08x}"),
                    )?;
                    Ok(object as i32)
                },
            )
            .map_err(wasm)?;
        linker
            .func_wrap(
                "env",
                continuation::ALLOC_HELPER,
                move |mut caller: Caller<'_, HostState>, size: i32| -> wasmtime::Result<i32> {
                    let (data, state) = memory.data_and_store_mut(&mut caller);
                    Ok(state.alloc(data, size as u32, "continuation")? as i32)
                },
            )
            .map_err(wasm)?;
        linker
            .func_wrap(
                "env",
                continuation::SUSPEND_HELPER,
                |mut caller: Caller<'_, HostState>, continuation: i32| {
                    caller.data_mut().async_continuation = continuation as u32;
                },
            )
            .map_err(wasm)?;
        linker
            .func_wrap(
                "env",
                continuation::TAKE_HELPER,
                |mut caller: Caller<'_, HostState>| -> i32 {
                    std::mem::take(&mut caller.data_mut().async_continuation) as i32
                },
            )
            .map_err(wasm)?;
        linker
            .func_wrap(
                "env",
                "crossgraph_delay_load",
                move |mut caller: Caller<'_, HostState>, cell: i32| -> wasmtime::Result<i32> {
                    let state = caller.data();
                    let module = state
                        .module
                        .ok_or_else(|| wasmtime::Error::msg("image not loaded"))?;
                    let rva = (cell as u32).wrapping_sub(state.image_base);
                    let value = state
                        .loader
                        .resolve_cell_at(module, rva)
                        .map_err(|e| wasmtime::Error::msg(e.to_string()))?;
                    // Patch the cell (cells hold slots relative to __table_base), so later
                    // calls go straight to the target.
                    let relative = value.wrapping_sub(state.table_base);
                    let at = cell as usize;
                    if let Some(bytes) = memory.data_mut(&mut caller).get_mut(at..at + 4) {
                        bytes.copy_from_slice(&relative.to_le_bytes());
                    }
                    Ok(value as i32)
                },
            )
            .map_err(wasm)?;
        let instance = linker.instantiate(&mut store, &compiled).map_err(wasm)?;
        let handle = loader.load_image(&image, config.table_base)?;
        store.data_mut().module = Some(handle);
        // Every code reference of the image must name one of the module's table slots.
        if let Some(code) = loader.max_code_reference(handle)
            && u64::from(code) >= slots
        {
            return Err(ExecError::CodeOutOfRange { code, slots });
        }
        Ok(Executor {
            interpreter: interpreter_for_invoke,
            store,
            instance,
            exports: crate::loader::named_slots(module)?
                .into_iter()
                .filter_map(|(name, slot)| Some((name, slot?)))
                .collect(),
            table_base: config.table_base,
            memory,
            table,
            stack_pointer,
            loader,
            module: handle,
        })
    }

    /// The loader.
    pub fn loader(&self) -> &Loader {
        &self.loader
    }

    /// The loaded module's handle in the loader.
    pub fn module(&self) -> usize {
        self.module
    }

    /// The instance.
    pub fn instance(&self) -> Instance {
        self.instance
    }

    /// Reads a little-endian `u32` from the instance's memory (`None` out of bounds).
    pub fn read_u32(&self, address: usize) -> Option<u32> {
        let bytes = self.memory.data(&self.store).get(address..address + 4)?;
        Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// Copies `len` bytes at `address` out of the instance's memory (`None` out of bounds):
    /// for an embedder reading back an object the compiled code returned.
    pub fn read_bytes(&self, address: usize, len: usize) -> Option<Vec<u8>> {
        let end = address.checked_add(len)?;
        Some(self.memory.data(&self.store).get(address..end)?.to_vec())
    }

    /// Reflection-style invoke: a method with R2R code runs through the interpreter -> R2R
    /// thunk of its signature (its fixups resolved first); a method without R2R code that the
    /// interpreter knows runs in the [`Interpreter`] (its entry point is the method token).
    /// `args` are the explicit arguments (and `this` first for instance methods), as wasm
    /// values; a struct argument (`S<N>`, `A<N>`) as the address (`i32`) of its bytes in the
    /// instance's memory, which are copied into the argument block.
    ///
    /// # Errors
    /// [`ExecError::Load`] if no image has the method; [`ExecError::MissingThunk`];
    /// [`ExecError::Arguments`] for a signature with a struct return, a generic context or an
    /// async continuation (not marshalled yet) or a wrong argument count; [`ExecError::Wasm`]
    /// for a trap.
    pub fn invoke(
        &mut self,
        method: MethodRef,
        signature: &WasmSignature,
        args: &[Val],
    ) -> Result<Option<Val>, ExecError> {
        let code = match self.loader.prepare_method(method) {
            Ok(code) => Some(code),
            // No R2R code: the interpreter runs it, if it knows it.
            Err(LoadError::UnknownMethod { .. }) if self.loader.is_interpreted(method) => None,
            Err(e) => return Err(e.into()),
        };
        let key = signature.thunk_key(ThunkDirection::InterpreterToR2R);
        let bad = |reason: &str| ExecError::Arguments {
            signature: signature.as_str().to_string(),
            reason: reason.to_string(),
        };
        let layout = ArgLayout::of(signature).map_err(|e| bad(&e.to_string()))?;
        if layout.args.len() != args.len() {
            return Err(bad(&format!(
                "{} arguments given, {} expected",
                args.len(),
                layout.args.len()
            )));
        }
        let sp = self.stack_pointer.get(&mut self.store).unwrap_i32() as u32;
        let block = sp
            .checked_sub(layout.size)
            .ok_or_else(|| bad("the shadow stack is exhausted"))?
            & !15;
        let ret = match layout.ret {
            RetSlot::Value { offset, .. } => block + offset,
            RetSlot::None => 0,
            RetSlot::Buffer { .. } => return Err(bad("struct returns are not marshalled yet")),
        };
        {
            let data = self.memory.data_mut(&mut self.store);
            for (slot, arg) in layout.args.iter().zip(args) {
                let at = (block + slot.offset) as usize;
                let bytes = match (slot.kind, value_bytes(arg)) {
                    (SlotKind::Value(ty), Some((given, bytes))) if given == ty => bytes,
                    // A struct: the address of its bytes, copied into the block.
                    (SlotKind::Struct { size }, Some((WasmValueType::I32, _))) => {
                        let from = arg.unwrap_i32() as u32 as usize;
                        data.get(from..from + size as usize)
                            .ok_or_else(|| bad("a struct argument is outside memory"))?
                            .to_vec()
                    }
                    _ => return Err(bad("an argument does not match its slot")),
                };
                data.get_mut(at..at + bytes.len())
                    .ok_or_else(|| bad("the argument block is outside memory"))?
                    .copy_from_slice(&bytes);
            }
        }
        match code {
            Some(code) => {
                let thunk = self
                    .loader
                    .thunks()
                    .table()
                    .lookup_thunk(&key)
                    .ok_or(ExecError::MissingThunk { key })?;
                let thunk = self.function(thunk.0)?;
                self.stack_pointer
                    .set(&mut self.store, Val::I32(block as i32))
                    .map_err(wasm)?;
                let result = thunk
                    .typed::<(i32, i32, i32, i32), ()>(&self.store)
                    .map_err(wasm)?
                    .call(
                        &mut self.store,
                        (0, code.0 as i32, block as i32, ret as i32),
                    );
                self.stack_pointer
                    .set(&mut self.store, Val::I32(sp as i32))
                    .map_err(wasm)?;
                result.map_err(trapped)?;
            }
            None => {
                let data = self.memory.data_mut(&mut self.store);
                self.interpreter
                    .execute(method.token, data, block, layout.size, ret)
                    .map_err(|e| ExecError::Wasm(format!("interpreter: {e}")))?;
            }
        }
        let RetSlot::Value { ty, offset } = layout.ret else {
            return Ok(None);
        };
        Ok(Some(self.read_value(block + offset, ty)?))
    }

    /// The value of type `ty` at `address` in the instance's memory.
    fn read_value(&self, address: u32, ty: WasmValueType) -> Result<Val, ExecError> {
        let data = self.memory.data(&self.store);
        let at = address as usize;
        // The first `n` bytes at `address`, as a little-endian integer.
        let read = |n: usize| -> Result<u128, ExecError> {
            let bytes = data.get(at..at + n).ok_or_else(|| {
                ExecError::Wasm(format!("address {address:#x} is outside memory"))
            })?;
            let mut padded = [0u8; 16];
            padded[..n].copy_from_slice(bytes);
            Ok(u128::from_le_bytes(padded))
        };
        Ok(match ty {
            WasmValueType::I32 => Val::I32(read(4)? as i32),
            WasmValueType::I64 => Val::I64(read(8)? as i64),
            WasmValueType::F32 => Val::F32(read(4)? as u32),
            WasmValueType::F64 => Val::F64(read(8)? as u64),
            WasmValueType::V128 => Val::V128(read(16)?.into()),
        })
    }

    /// Writes `bytes` at `address` in the instance's memory (a struct argument for
    /// [`Executor::invoke`], say).
    ///
    /// # Errors
    /// [`ExecError::Wasm`] when the bytes do not fit in memory.
    pub fn write_bytes(&mut self, address: u32, bytes: &[u8]) -> Result<(), ExecError> {
        let at = address as usize;
        self.memory
            .data_mut(&mut self.store)
            .get_mut(at..at + bytes.len())
            .ok_or_else(|| ExecError::Wasm(format!("address {address:#x} is outside memory")))?
            .copy_from_slice(bytes);
        Ok(())
    }

    fn read_word(&self, address: u32) -> Result<u32, ExecError> {
        self.read_u32(address as usize)
            .ok_or_else(|| ExecError::Wasm(format!("address {address:#x} is outside memory")))
    }

    /// The continuation the last async variant run by [`Executor::invoke`] suspended with
    /// (taking it), or `None` when it completed (its result is then what `invoke` returned).
    pub fn take_suspension(&mut self) -> Option<u32> {
        let taken = std::mem::take(&mut self.store.data_mut().async_continuation);
        (taken != 0).then_some(taken)
    }

    /// The runtime's async dispatcher: completes the suspended leaf continuation `head` with
    /// `result` (stored into the result slot of `head`'s `next`), then calls the resumption
    /// stub of each continuation from there outwards, each storing its variant's result into
    /// the next one's result slot (layout and protocol: [`crate::abi::continuation`]). `ret`
    /// is the result type of the outermost frame.
    ///
    /// # Errors
    /// [`ExecError::Arguments`] when `head` has no `next` (nothing awaits it) or `result`
    /// does not fit a result slot; [`ExecError::Wasm`] for a trap, a continuation outside
    /// memory or a resume slot that holds no function.
    pub fn resume(
        &mut self,
        head: u32,
        result: Option<Val>,
        ret: Option<WasmValueType>,
    ) -> Result<AsyncResult, ExecError> {
        let bad = |reason: String| ExecError::Arguments {
            signature: continuation::RESUMPTION_STUB_SIGNATURE.to_string(),
            reason,
        };
        let mut current = self.read_word(head + continuation::NEXT)?;
        if current == 0 {
            return Err(bad(format!("continuation {head:#x}: nothing awaits it")));
        }
        if let Some(value) = &result {
            let (_, bytes) = value_bytes(value)
                .ok_or_else(|| bad(format!("result {value:?} has no wasm value type")))?;
            self.write_bytes(current + continuation::RESULT, &bytes)?;
        }
        // The outermost frame's result goes to a 16-byte slot on the shadow stack.
        let sp = self.stack_pointer.get(&mut self.store).unwrap_i32() as u32;
        let slot = sp
            .checked_sub(16)
            .ok_or_else(|| bad("the shadow stack is exhausted".into()))?
            & !15;
        loop {
            let next = self.read_word(current + continuation::NEXT)?;
            let stub = self.read_word(current + continuation::RESUME)?;
            let destination = if next == 0 {
                slot
            } else {
                next + continuation::RESULT
            };
            let stub = self
                .function(stub)?
                .typed::<(i32, i32, i32, i32), i32>(&self.store)
                .map_err(wasm)?;
            self.stack_pointer
                .set(&mut self.store, Val::I32(slot as i32))
                .map_err(wasm)?;
            let outcome = stub.call(
                &mut self.store,
                (slot as i32, current as i32, destination as i32, 0),
            );
            self.stack_pointer
                .set(&mut self.store, Val::I32(sp as i32))
                .map_err(wasm)?;
            let suspended = outcome.map_err(trapped)? as u32;
            if suspended != 0 {
                self.write_bytes(suspended + continuation::NEXT, &next.to_le_bytes())?;
                return Ok(AsyncResult::Suspended {
                    continuation: suspended,
                });
            }
            if next == 0 {
                return Ok(AsyncResult::Completed(match ret {
                    Some(ty) => Some(self.read_value(slot, ty)?),
                    None => None,
                }));
            }
            current = next;
        }
    }

    /// Calls a method by name (`Namespace.Type::Method`, or an export's name) through the same
    /// path as [`Executor::invoke`]: the name's table slot ([`crate::loader::named_slots`])
    /// names the method's R2R code, whose entry point in the image names the method.
    ///
    /// # Errors
    /// [`ExecError::MissingExport`] when the module names no method `name` with a table slot,
    /// or no image entry point has that code; as [`Executor::invoke`].
    pub fn invoke_by_name(
        &mut self,
        name: &str,
        signature: &WasmSignature,
        args: &[Val],
    ) -> Result<Option<Val>, ExecError> {
        let missing = || ExecError::MissingExport {
            name: name.to_string(),
        };
        let slot = *self.exports.get(name).ok_or_else(missing)?;
        let code = crate::string_thunks::CodeRef(self.table_base + slot);
        let method = self.loader.method_at(code).ok_or_else(missing)?;
        self.invoke(method, signature, args)
    }

    /// The native -> managed path: the table index of an `UnmanagedCallersOnly` method's own
    /// unmanaged-typed function (what `ldftn` feeding `calli unmanaged` yields).
    ///
    /// # Errors
    /// [`ExecError::Load`] when the method is not an `UnmanagedCallersOnly` method of a
    /// loaded image.
    pub fn unmanaged_entry(&self, method: MethodRef) -> Result<u32, ExecError> {
        Ok(self.loader.method_entry(method, CallKind::Unmanaged)?.0)
    }

    /// Calls an `UnmanagedCallersOnly` method natively with `args`.
    ///
    /// # Errors
    /// As [`Executor::unmanaged_entry`]; [`ExecError::Wasm`] for a trap or a type mismatch.
    pub fn call_unmanaged(
        &mut self,
        method: MethodRef,
        args: &[Val],
    ) -> Result<Vec<Val>, ExecError> {
        let index = self.unmanaged_entry(method)?;
        let func = self.function(index)?;
        let ty = func.ty(&self.store);
        let mut results = vec![Val::I32(0); ty.results().len()];
        func.call(&mut self.store, args, &mut results)
            .map_err(trapped)?;
        Ok(results)
    }

    fn function(&mut self, index: u32) -> Result<Func, ExecError> {
        match self.table.get(&mut self.store, u64::from(index)) {
            Some(Ref::Func(Some(func))) => Ok(func),
            _ => Err(ExecError::Wasm(format!(
                "table slot {index} holds no function"
            ))),
        }
    }
}
