//! The object writer: emitted functions with symbolic relocations and the image become one
//! wasm module, built with wasm-encoder and validated with wasmparser before it is returned.
//!
//! Wasm indices exist only here (walrus `IdsToIndices`): code refers to functions by
//! [`SymbolId`] (handed out by the module, interned by name) and to types by
//! [`WasmFuncType`]; the writer assigns type, function and table indices in a deterministic
//! order (types by first use, imported then defined functions in the order they were added,
//! table slots in function order) and resolves every relocation.
//!
//! Module imports (module `env`): `memory`; `__indirect_function_table` (funcref, at least as
//! many slots as the module fills); globals `__stack_pointer` (mutable i32), `__image_base`
//! (i32: where the image data segment goes) and `__table_base` (i32: the module's first table
//! slot); then the runtime helpers the code calls (the interpreter entry and the delay-load
//! helper for thunks, the async helpers for variants that can suspend). A code reference (table index) in the
//! image is a slot relative to `__table_base`.

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use wasm_encoder::{
    ConstExpr, ElementSection, Elements, Encode, EntityType, ExportKind, ExportSection, Function,
    FunctionSection, GlobalType, ImportSection, Instruction, MemoryType, Module, NameMap,
    NameSection, RefType, Section, SectionId, TableType, TypeSection, ValType,
};

use crate::abi::WasmValueType;
use crate::signature::WasmFuncType;

/// Index of the imported `__stack_pointer` global.
pub const STACK_POINTER_GLOBAL: u32 = 0;
/// Index of the imported `__image_base` global.
pub const IMAGE_BASE_GLOBAL: u32 = 1;
/// Index of the imported `__table_base` global.
pub const TABLE_BASE_GLOBAL: u32 = 2;

/// A function symbol of one [`ObjectModule`], which hands them out ([`ObjectModule::symbol`]).
/// `Display` prints `s<n>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SymbolId(u32);

impl SymbolId {
    /// The id as an index.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for SymbolId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// A shared run of operations of one [`ObjectModule`] ([`ObjectModule::sequence`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SequenceId(u32);

/// One operation of a function body: a plain instruction, or one that names something whose
/// index only exists at emit time (a relocation).
#[derive(Clone, Debug)]
pub enum Op {
    /// An instruction without indices to resolve (no `call`, `call_indirect`, globals).
    Ins(Instruction<'static>),
    /// `call` a function symbol (function-index relocation).
    Call(SymbolId),
    /// `call_indirect` through table 0 with this type (type-index relocation); the table
    /// index operand is on the stack.
    CallIndirect(WasmFuncType),
    /// Push the absolute table index of a symbol's slot: `__table_base + slot` (table-index
    /// relocation).
    TableIndex(SymbolId),
    /// Push the address of an image offset: `__image_base + rva` (image-offset relocation).
    ImageAddress(u32),
    /// `global.get __table_base`: to turn a slot read from an import cell into a table index.
    TableBase,
    /// `global.get __stack_pointer`.
    StackPointerGet,
    /// `global.set __stack_pointer`.
    StackPointerSet,
    /// The operations of a shared sequence, written here as if inline (the same bytes): the
    /// call through one import cell is the same at every call site, so a compilation that
    /// learns where cells go patches one op per site instead of rebuilding every body.
    Sequence(SequenceId),
    /// Instructions already encoded (wasm-encoder's bytes for a run of [`Op::Ins`], no
    /// indices to resolve), written verbatim: what a compiler hands the writer once it knows
    /// which ops it may still patch ([`Code::encode_runs`]), the way crossgen2's JIT returns
    /// code bytes plus relocations and its object writer only copies and patches.
    Encoded(Box<[u8]>),
}

/// A function body: extra locals (after the parameters) and operations, without the final
/// `end` (the writer adds it).
#[derive(Clone, Debug, Default)]
pub struct Code {
    /// Locals beyond the parameters.
    pub locals: Vec<WasmValueType>,
    /// The body.
    pub ops: Vec<Op>,
}

impl Op {
    /// Appends this op's bytes to `sink` when they do not depend on the module being written
    /// (no function or type index; the globals have fixed indices) and says whether it did.
    fn encode_fixed(&self, sink: &mut Vec<u8>) -> bool {
        let mut put = |ins: &Instruction| ins.encode(sink);
        match self {
            Op::Ins(ins) => put(ins),
            Op::Encoded(bytes) => sink.extend_from_slice(bytes),
            Op::ImageAddress(rva) => {
                put(&Instruction::GlobalGet(IMAGE_BASE_GLOBAL));
                put(&Instruction::I32Const(*rva as i32));
                put(&Instruction::I32Add);
            }
            Op::TableBase => put(&Instruction::GlobalGet(TABLE_BASE_GLOBAL)),
            Op::StackPointerGet => put(&Instruction::GlobalGet(STACK_POINTER_GLOBAL)),
            Op::StackPointerSet => put(&Instruction::GlobalSet(STACK_POINTER_GLOBAL)),
            Op::Call(_) | Op::CallIndirect(_) | Op::TableIndex(_) | Op::Sequence(_) => {
                return false;
            }
        }
        true
    }
}

impl Code {
    /// Encodes each run of ops whose bytes do not depend on the module ([`Op::Ins`], and
    /// [`Op::ImageAddress`], [`Op::TableBase`], [`Op::StackPointerGet`],
    /// [`Op::StackPointerSet`], whose globals have fixed indices) into one [`Op::Encoded`]
    /// holding the same bytes, except the ops at the indices in `keep` (ascending; e.g.
    /// placeholders a compilation replaces later), which stay as they are. Returns the new
    /// index of each op of `keep`, in its order. The module written is byte-identical; the
    /// body takes fewer, smaller ops (one per function or type index, one per run between
    /// them), and the encoding happens wherever this is called (a compiler's parallel
    /// batches) instead of in [`ObjectModule::emit`].
    ///
    /// # Panics
    /// If `keep` is not ascending or names an index past the last op.
    pub fn encode_runs(&mut self, keep: &[usize]) -> Vec<usize> {
        assert!(
            keep.windows(2).all(|w| w[0] < w[1]),
            "`keep` must be ascending"
        );
        assert!(
            keep.last().is_none_or(|&k| k < self.ops.len()),
            "`keep` names an op past the last"
        );
        let mut ops = Vec::with_capacity(2 * keep.len() + 1);
        let mut kept = Vec::with_capacity(keep.len());
        let mut run: Vec<u8> = Vec::new();
        let mut keep = keep.iter().peekable();
        for (i, op) in std::mem::take(&mut self.ops).into_iter().enumerate() {
            let stays = keep.next_if_eq(&&i).is_some();
            match op {
                op if !stays && op.encode_fixed(&mut run) => {}
                op => {
                    if !run.is_empty() {
                        ops.push(Op::Encoded(run.as_slice().into()));
                        run.clear();
                    }
                    if stays {
                        kept.push(ops.len());
                    }
                    ops.push(op);
                }
            }
        }
        if !run.is_empty() {
            ops.push(Op::Encoded(run.into_boxed_slice()));
        }
        self.ops = ops;
        kept
    }
}

/// A function defined in the module.
#[derive(Clone, Debug)]
pub struct DefinedFunction {
    /// Its wasm type.
    pub ty: WasmFuncType,
    /// Its body.
    pub code: Code,
    /// Whether it gets a table slot (code references, `call_indirect` targets).
    pub table_slot: bool,
    /// Export name, if exported.
    pub export: Option<String>,
}

/// A runtime helper the module imports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedFunction {
    /// Import module name.
    pub module: String,
    /// Import field name.
    pub name: String,
    /// Its wasm type.
    pub ty: WasmFuncType,
}

/// A 4-byte little-endian slot in the image that receives a symbol's table slot (relative to
/// `__table_base`) at emit time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataReloc {
    /// Byte offset in the image (RVA).
    pub offset: u32,
    /// The symbol whose table slot goes there.
    pub symbol: SymbolId,
}

/// Everything one module is made of: symbols, imported and defined functions, the image.
#[derive(Clone, Debug, Default)]
pub struct ObjectModule {
    names: Vec<String>,
    /// Symbols by name, hashed over `names` (no second copy of every name).
    by_name: hashbrown::HashTable<SymbolId>,
    imports: Vec<(SymbolId, ImportedFunction)>,
    functions: Vec<(SymbolId, DefinedFunction)>,
    /// Shared op sequences, by [`SequenceId`].
    sequences: Vec<Vec<Op>>,
    /// Per symbol: where it is bound (index into `imports` or `functions`), so binding
    /// checks stay O(1) with 10^5 thunks.
    binding: Vec<Option<Binding>>,
    /// The image bytes (see `docs/image-format.md`), placed at `__image_base`.
    pub image: Vec<u8>,
    /// Table-slot relocations inside the image.
    pub image_relocs: Vec<DataReloc>,
}

/// Where a symbol is bound.
#[derive(Clone, Copy, Debug)]
enum Binding {
    Import,
    Function(u32),
}

/// A written, validated module and the indices the writer chose, by symbol.
#[derive(Clone, Debug)]
pub struct EmittedModule {
    /// The module bytes.
    pub bytes: Vec<u8>,
    function_indices: Vec<Option<u32>>,
    table_slots: Vec<Option<u32>>,
    /// Number of distinct function types.
    pub type_count: u32,
    /// Wall time [`ObjectModule::emit`] spent building the module's bytes (with validating
    /// the sections before the code section, which happens while bodies encode).
    pub encode_time: std::time::Duration,
    /// Wall time it spent validating the rest once the bytes were written (wasmparser): the
    /// code section's bodies, the sections after it.
    pub validate_time: std::time::Duration,
    /// Number of table slots the module fills.
    pub slot_count: u32,
    body_layout: Vec<(SymbolId, u32, u32)>,
}

impl EmittedModule {
    /// Every defined function as `(symbol, offset, size)`: the offset in bytes of its body
    /// (after its size prefix) within the code section's contents, and the body's size in
    /// bytes, in function-index order.
    pub fn function_bodies(&self) -> &[(SymbolId, u32, u32)] {
        &self.body_layout
    }

    /// The function index of `symbol`.
    pub fn function_index(&self, symbol: SymbolId) -> Option<u32> {
        self.function_indices.get(symbol.index()).copied().flatten()
    }

    /// The table slot (relative to `__table_base`) of `symbol`, if it has one.
    pub fn table_slot(&self, symbol: SymbolId) -> Option<u32> {
        self.table_slots.get(symbol.index()).copied().flatten()
    }
}

/// Why a module cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// A symbol defined or imported twice.
    #[error("symbol {symbol:?} is defined twice")]
    DuplicateSymbol {
        /// The symbol's name.
        symbol: String,
    },
    /// A relocation to a symbol that is never defined or imported.
    #[error("{referenced_by}: relocation to missing symbol {symbol:?}")]
    MissingSymbol {
        /// The missing symbol's name.
        symbol: String,
        /// Who refers to it (a function symbol, or "image").
        referenced_by: String,
    },
    /// A table-index relocation to a function without a table slot.
    #[error("{referenced_by}: {symbol:?} has no table slot")]
    NoTableSlot {
        /// The symbol's name.
        symbol: String,
        /// Who refers to it.
        referenced_by: String,
    },
    /// An image relocation outside the image.
    #[error("image relocation at offset {offset} is outside the {size}-byte image")]
    RelocOutOfImage {
        /// Its offset.
        offset: u32,
        /// The image size.
        size: usize,
    },
    /// An [`Op::Sequence`] this module did not hand out.
    #[error("{referenced_by}: unknown op sequence {id}")]
    UnknownSequence {
        /// The sequence's index.
        id: u32,
        /// The function that uses it.
        referenced_by: String,
    },
    /// The module failed validation: a bug in the writer or in the code it was given.
    #[error("written module is invalid: {message}")]
    Invalid {
        /// wasmparser's message (with its offset).
        message: String,
    },
}

/// The wasm-encoder value type of an ABI value type.
pub fn val_type(v: WasmValueType) -> ValType {
    match v {
        WasmValueType::I32 => ValType::I32,
        WasmValueType::I64 => ValType::I64,
        WasmValueType::F32 => ValType::F32,
        WasmValueType::F64 => ValType::F64,
        WasmValueType::V128 => ValType::V128,
    }
}

/// A shared sequence as stored: flat, its plain runs encoded (a sequence is written once per
/// use).
///
/// # Panics
/// If `ops` holds an [`Op::Sequence`].
fn encoded_sequence(ops: Vec<Op>) -> Vec<Op> {
    assert!(
        !ops.iter().any(|op| matches!(op, Op::Sequence(_))),
        "an op sequence cannot hold another"
    );
    let mut code = Code {
        locals: vec![],
        ops,
    };
    code.encode_runs(&[]);
    code.ops
}

impl ObjectModule {
    /// An empty module.
    pub fn new() -> Self {
        ObjectModule::default()
    }

    /// The symbol named `name`, created on first use (get or create). A symbol may be used
    /// in code before it is defined; at emit time it must be defined or imported once.
    pub fn symbol(&mut self, name: &str) -> SymbolId {
        match self.lookup(name) {
            Some(id) => id,
            None => self.add_symbol(name.to_string()),
        }
    }

    /// A new symbol named `name` whose name is not indexed: [`ObjectModule::symbol`] and
    /// [`ObjectModule::lookup`] never return it. For names unique by construction (a
    /// compilation's `Type::Method@token` symbols): it skips hashing and interning, the one
    /// serial step of handing out tens of thousands of method symbols.
    pub fn fresh_symbol(&mut self, name: String) -> SymbolId {
        let id = SymbolId(self.names.len() as u32);
        self.names.push(name);
        id
    }

    fn add_symbol(&mut self, name: String) -> SymbolId {
        let id = SymbolId(self.names.len() as u32);
        let hash = hash_name(&name);
        self.names.push(name);
        let names = &self.names;
        self.by_name
            .insert_unique(hash, id, |s| hash_name(&names[s.index()]));
        id
    }

    /// [`ObjectModule::symbol`] taking the name by value (one allocation fewer per new
    /// symbol).
    pub fn symbol_owned(&mut self, name: String) -> SymbolId {
        match self.lookup(&name) {
            Some(id) => id,
            None => self.add_symbol(name),
        }
    }

    /// The symbol named `name`, if it exists.
    pub fn lookup(&self, name: &str) -> Option<SymbolId> {
        self.by_name
            .find(hash_name(name), |s| self.names[s.index()] == name)
            .copied()
    }

    /// The name of `symbol`.
    ///
    /// # Panics
    /// If `symbol` comes from another module.
    pub fn name(&self, symbol: SymbolId) -> &str {
        &self.names[symbol.index()]
    }

    fn bind(&mut self, symbol: SymbolId, binding: Binding) {
        let i = symbol.index();
        if self.binding.len() <= i {
            self.binding.resize(i + 1, None);
        }
        // A second binding is reported by `emit` (`WriteError::DuplicateSymbol`); keep the
        // first for lookups.
        self.binding[i].get_or_insert(binding);
    }

    /// Imports `symbol` as a runtime helper.
    pub fn import(&mut self, symbol: SymbolId, function: ImportedFunction) {
        self.bind(symbol, Binding::Import);
        self.imports.push((symbol, function));
    }

    /// The symbol `name`, imported from module `env` with type `ty` unless it is already
    /// bound (the runtime's helpers: several users may ask for one).
    pub fn import_env(&mut self, name: &str, ty: WasmFuncType) -> SymbolId {
        let symbol = self.symbol(name);
        if !self.is_bound(symbol) {
            self.import(
                symbol,
                ImportedFunction {
                    module: "env".into(),
                    name: name.into(),
                    ty,
                },
            );
        }
        symbol
    }

    /// Defines `symbol`.
    pub fn define(&mut self, symbol: SymbolId, function: DefinedFunction) {
        self.bind(symbol, Binding::Function(self.functions.len() as u32));
        self.functions.push((symbol, function));
    }

    /// Imported functions, in import order.
    pub fn imports(&self) -> impl Iterator<Item = (SymbolId, &ImportedFunction)> {
        self.imports.iter().map(|(s, f)| (*s, f))
    }

    /// Defined functions, in definition order.
    pub fn functions(&self) -> impl Iterator<Item = (SymbolId, &DefinedFunction)> {
        self.functions.iter().map(|(s, f)| (*s, f))
    }

    /// Adds a shared sequence of operations, which bodies use through [`Op::Sequence`] (as if
    /// its ops stood there). Stored with its plain runs encoded ([`Code::encode_runs`]).
    ///
    /// # Panics
    /// If `ops` holds an [`Op::Sequence`]: sequences are flat (a programmer error).
    pub fn sequence(&mut self, ops: Vec<Op>) -> SequenceId {
        self.sequences.push(encoded_sequence(ops));
        SequenceId(self.sequences.len() as u32 - 1)
    }

    /// [`ObjectModule::sequence`] for many sequences at once, encoded in parallel (rayon; the
    /// ids follow the order given).
    ///
    /// # Panics
    /// As [`ObjectModule::sequence`].
    pub fn sequences(&mut self, sequences: Vec<Vec<Op>>) -> Vec<SequenceId> {
        let encoded: Vec<Vec<Op>> = sequences.into_par_iter().map(encoded_sequence).collect();
        let first = self.sequences.len() as u32;
        self.sequences.extend(encoded);
        (first..self.sequences.len() as u32)
            .map(SequenceId)
            .collect()
    }

    /// Moves the defined functions out, in definition order, and unbinds their symbols;
    /// names, imports and the image stay. For a caller done with [`ObjectModule::emit`] that
    /// still reads names but wants the bodies freed (in parallel: 9,000 bodies of mscorlib
    /// took 2.5 ms to free on one thread).
    pub fn take_functions(&mut self) -> Vec<(SymbolId, DefinedFunction)> {
        for (symbol, _) in &self.functions {
            self.binding[symbol.index()] = None;
        }
        std::mem::take(&mut self.functions)
    }

    /// The definition of `symbol`, to amend it (e.g. export a thunk).
    pub fn lookup_function_mut(&mut self, symbol: SymbolId) -> Option<&mut DefinedFunction> {
        match self.binding.get(symbol.index()).copied().flatten()? {
            Binding::Function(i) => Some(&mut self.functions[i as usize].1),
            Binding::Import => None,
        }
    }

    /// Whether `symbol` is already imported or defined.
    pub fn is_bound(&self, symbol: SymbolId) -> bool {
        self.binding
            .get(symbol.index())
            .is_some_and(|b| b.is_some())
    }

    /// Bound symbols in wasm function-index order: imports, then defined functions.
    fn function_symbols(&self) -> impl Iterator<Item = SymbolId> + '_ {
        self.imports
            .iter()
            .map(|(s, _)| *s)
            .chain(self.functions.iter().map(|(s, _)| *s))
    }

    /// Writes and validates the module.
    ///
    /// # Errors
    /// [`WriteError`] naming the symbol or offset at fault.
    pub fn emit(&self) -> Result<EmittedModule, WriteError> {
        let started = std::time::Instant::now();
        // Symbols -> function indices (imports first) and table slots.
        let mut function_indices: Vec<Option<u32>> = vec![None; self.names.len()];
        for (index, symbol) in self.function_symbols().enumerate() {
            let slot = &mut function_indices[symbol.index()];
            if slot.is_some() {
                return Err(WriteError::DuplicateSymbol {
                    symbol: self.name(symbol).to_string(),
                });
            }
            *slot = Some(index as u32);
        }
        let mut table_slots: Vec<Option<u32>> = vec![None; self.names.len()];
        let mut slot_functions = Vec::new();
        for (symbol, f) in &self.functions {
            if f.table_slot {
                table_slots[symbol.index()] = Some(slot_functions.len() as u32);
                slot_functions.push(function_indices[symbol.index()].unwrap_or(0));
            }
        }
        let missing = |symbol: SymbolId, referenced_by: &str| WriteError::MissingSymbol {
            symbol: self.name(symbol).to_string(),
            referenced_by: referenced_by.to_string(),
        };
        let slot_of = |symbol: SymbolId, referenced_by: &str| {
            if function_indices[symbol.index()].is_none() {
                return Err(missing(symbol, referenced_by));
            }
            table_slots[symbol.index()].ok_or_else(|| WriteError::NoTableSlot {
                symbol: self.name(symbol).to_string(),
                referenced_by: referenced_by.to_string(),
            })
        };

        // Types, deduplicated in order of first use (function types, then the types of
        // `call_indirect`s in body order), so bodies can then be encoded in parallel.
        let mut types: FxHashMap<&WasmFuncType, u32> = FxHashMap::default();
        let mut type_list: Vec<&WasmFuncType> = Vec::new();
        // Neighbouring functions mostly share a type: compare with the last one before
        // hashing (100,000 lookups otherwise hash two vectors each).
        let mut last: Option<(&WasmFuncType, u32)> = None;
        let mut intern_type = |ty| -> u32 {
            if let Some((last_ty, index)) = last
                && last_ty == ty
            {
                return index;
            }
            let index = *types.entry(ty).or_insert_with(|| {
                type_list.push(ty);
                type_list.len() as u32 - 1
            });
            last = Some((ty, index));
            index
        };
        let import_types: Vec<u32> = self
            .imports
            .iter()
            .map(|(_, i)| intern_type(&i.ty))
            .collect();
        let function_types: Vec<u32> = self
            .functions
            .iter()
            .map(|(_, f)| intern_type(&f.ty))
            .collect();
        // The scan for `call_indirect` types reads every op (a sequence's where it is used):
        // in parallel, interned in order.
        let indirect: Vec<Vec<&WasmFuncType>> = self
            .functions
            .par_iter()
            .map(|(_, f)| {
                // Each type once per function, at its first use (the order interning sees).
                fn note<'t>(found: &mut Vec<&'t WasmFuncType>, ty: &'t WasmFuncType) {
                    if !found.contains(&ty) {
                        found.push(ty);
                    }
                }
                let mut found = Vec::new();
                for op in &f.code.ops {
                    match op {
                        Op::CallIndirect(ty) => note(&mut found, ty),
                        Op::Sequence(id) => {
                            for op in self.sequences.get(id.0 as usize).into_iter().flatten() {
                                if let Op::CallIndirect(ty) = op {
                                    note(&mut found, ty);
                                }
                            }
                        }
                        _ => {}
                    }
                }
                found
            })
            .collect();
        for ty in indirect.iter().flatten() {
            intern_type(ty);
        }
        drop(indirect);

        // Bodies, with relocations resolved, encoded in parallel (in order).
        let encode_bodies = || -> Result<Vec<Function>, WriteError> {
            self.functions
                .par_iter()
                .map(|(symbol, f)| {
                    let locals = f.code.locals.iter().map(|&v| (1, val_type(v)));
                    let mut body = Function::new(locals);
                    let ops = f.code.ops.iter().flat_map(|op| match op {
                        Op::Sequence(id) => match self.sequences.get(id.0 as usize) {
                            Some(ops) => ops.iter(),
                            // Reported below, where the op is encoded.
                            None => std::slice::from_ref(op).iter(),
                        },
                        op => std::slice::from_ref(op).iter(),
                    });
                    for op in ops {
                        match op {
                            Op::Ins(ins) => {
                                body.instruction(ins);
                            }
                            Op::Encoded(bytes) => {
                                body.raw(bytes.iter().copied());
                            }
                            Op::Sequence(id) => {
                                return Err(WriteError::UnknownSequence {
                                    id: id.0,
                                    referenced_by: self.name(*symbol).to_string(),
                                });
                            }
                            Op::Call(target) => {
                                let index = function_indices[target.index()]
                                    .ok_or_else(|| missing(*target, self.name(*symbol)))?;
                                body.instruction(&Instruction::Call(index));
                            }
                            Op::CallIndirect(ty) => {
                                body.instruction(&Instruction::CallIndirect {
                                    type_index: types[ty],
                                    table_index: 0,
                                });
                            }
                            Op::TableIndex(target) => {
                                let slot = slot_of(*target, self.name(*symbol))?;
                                body.instruction(&Instruction::GlobalGet(TABLE_BASE_GLOBAL))
                                    .instruction(&Instruction::I32Const(slot as i32))
                                    .instruction(&Instruction::I32Add);
                            }
                            Op::ImageAddress(rva) => {
                                body.instruction(&Instruction::GlobalGet(IMAGE_BASE_GLOBAL))
                                    .instruction(&Instruction::I32Const(*rva as i32))
                                    .instruction(&Instruction::I32Add);
                            }
                            Op::TableBase => {
                                body.instruction(&Instruction::GlobalGet(TABLE_BASE_GLOBAL));
                            }
                            Op::StackPointerGet => {
                                body.instruction(&Instruction::GlobalGet(STACK_POINTER_GLOBAL));
                            }
                            Op::StackPointerSet => {
                                body.instruction(&Instruction::GlobalSet(STACK_POINTER_GLOBAL));
                            }
                        }
                    }
                    body.instruction(&Instruction::End);
                    Ok(body)
                })
                .collect::<Result<_, WriteError>>()
        };
        // The other sections do not depend on the bodies: built (and the ones before the code
        // section validated) while they encode.
        let build_sections = || {
            let mut type_section = TypeSection::new();
            for ty in &type_list {
                type_section.ty().function(
                    ty.params.iter().map(|&v| val_type(v)),
                    ty.results.iter().map(|&v| val_type(v)),
                );
            }
            let mut imports = ImportSection::new();
            imports.import(
                "env",
                "memory",
                MemoryType {
                    minimum: 1,
                    maximum: None,
                    memory64: false,
                    shared: false,
                    page_size_log2: None,
                },
            );
            imports.import(
                "env",
                "__indirect_function_table",
                TableType {
                    element_type: RefType::FUNCREF,
                    table64: false,
                    minimum: slot_functions.len() as u64,
                    maximum: None,
                    shared: false,
                },
            );
            let global = |mutable| {
                EntityType::Global(GlobalType {
                    val_type: ValType::I32,
                    mutable,
                    shared: false,
                })
            };
            imports.import("env", "__stack_pointer", global(true));
            imports.import("env", "__image_base", global(false));
            imports.import("env", "__table_base", global(false));
            for ((_, import), &ty) in self.imports.iter().zip(&import_types) {
                imports.import(&import.module, &import.name, EntityType::Function(ty));
            }
            let mut functions = FunctionSection::new();
            for &ty in &function_types {
                functions.function(ty);
            }
            let mut exports = ExportSection::new();
            for (symbol, f) in &self.functions {
                if let (Some(name), Some(index)) = (&f.export, function_indices[symbol.index()]) {
                    exports.export(name, ExportKind::Func, index);
                }
            }
            let mut elements = ElementSection::new();
            if !slot_functions.is_empty() {
                elements.active(
                    None,
                    &ConstExpr::global_get(TABLE_BASE_GLOBAL),
                    Elements::Functions(slot_functions.as_slice().into()),
                );
            }
            // The data section's bytes up to the image (one active segment at `__image_base`);
            // the image itself is copied once, straight into the module.
            let mut data_head = Vec::new();
            if !self.image.is_empty() {
                1u32.encode(&mut data_head); // one segment
                data_head.push(0x00); // active, memory 0, offset expression follows
                ConstExpr::global_get(IMAGE_BASE_GLOBAL).encode(&mut data_head);
                (self.image.len() as u32).encode(&mut data_head);
            }
            // The sections before the code section, written and validated here: they do
            // not wait for the bodies either.
            let mut head = Module::new();
            head.section(&type_section);
            head.section(&imports);
            head.section(&functions);
            head.section(&exports);
            if !elements.is_empty() {
                head.section(&elements);
            }
            let head = head.finish();
            let validated = validate_head(&head);
            (head, validated, data_head)
        };
        // Function names (the symbols), for WAT dumps and wasmtime backtraces.
        let build_names = || {
            let mut function_names = NameMap::new();
            for (index, symbol) in self.function_symbols().enumerate() {
                function_names.append(index as u32, self.name(symbol));
            }
            let mut names = NameSection::new();
            names.functions(&function_names);
            let mut names_section = vec![names.id()];
            names.encode(&mut names_section);
            names_section
        };
        let slot_count = slot_functions.len() as u32;
        let (bodies, ((head, validated_head, data_head), names_section)) =
            rayon::join(encode_bodies, || rayon::join(build_sections, build_names));
        let bodies = bodies?;
        let invalid = |e: wasmparser::BinaryReaderError| WriteError::Invalid {
            message: e.to_string(),
        };
        let validated_head = validated_head.map_err(invalid)?;
        // Where each body lands in the code section's contents (after the count), for maps.
        let leb_len = |v: u32| (32 - v.max(1).leading_zeros()).div_ceil(7);
        let mut body_layout = Vec::with_capacity(bodies.len());
        let mut at = leb_len(bodies.len() as u32);
        for ((symbol, _), body) in self.functions.iter().zip(&bodies) {
            let size = body.byte_len() as u32;
            at += leb_len(size);
            body_layout.push((*symbol, at, size));
            at += size;
        }
        let code_len = at;

        // The image's table-slot relocations, applied once the image sits in the module
        // (no copy of the image just to patch it).
        let mut image_patches = Vec::with_capacity(self.image_relocs.len());
        for reloc in &self.image_relocs {
            let at = reloc.offset as usize;
            if at.checked_add(4).is_none_or(|end| end > self.image.len()) {
                return Err(WriteError::RelocOutOfImage {
                    offset: reloc.offset,
                    size: self.image.len(),
                });
            }
            image_patches.push((at, slot_of(reloc.symbol, "image")?));
        }

        // The module, written once into a buffer of its final size: the small sections
        // through wasm-encoder, then the code and data sections straight from the encoded
        // bodies and the image (wasm-encoder's `CodeSection`/`DataSection` would copy each
        // of them once more, and a growing `Module` again). Same bytes as `Module` writes.
        let data_len = data_head.len() + self.image.len();
        let mut bytes = Vec::with_capacity(
            head.len() + 12 + code_len as usize + 12 + data_len + names_section.len(),
        );
        bytes.extend_from_slice(&head);
        bytes.push(SectionId::Code as u8);
        code_len.encode(&mut bytes);
        (bodies.len() as u32).encode(&mut bytes);
        for body in &bodies {
            body.encode(&mut bytes);
        }
        drop(bodies);
        let mut image_start = bytes.len();
        if !self.image.is_empty() {
            bytes.push(SectionId::Data as u8);
            (data_len as u32).encode(&mut bytes);
            bytes.extend_from_slice(&data_head);
            image_start = bytes.len();
            bytes.extend_from_slice(&self.image);
        }
        bytes.extend_from_slice(&names_section);
        for (at, slot) in image_patches {
            bytes[image_start + at..image_start + at + 4].copy_from_slice(&slot.to_le_bytes());
        }
        let encoded = std::time::Instant::now();
        validated_head.finish(&bytes).map_err(invalid)?;
        Ok(EmittedModule {
            encode_time: encoded - started,
            validate_time: encoded.elapsed(),
            bytes,
            function_indices,
            table_slots,
            type_count: type_list.len() as u32,
            slot_count,
            body_layout,
        })
    }
}

/// A module's sections before its code section, validated by [`validate_head`]: the
/// validator and parser stopped where the code section begins.
struct ValidatedHead {
    validator: wasmparser::Validator,
    parser: wasmparser::Parser,
    /// Where the parser stopped (bytes): the head's length.
    offset: usize,
    /// Type indices of the defined functions, from the function section.
    types: Vec<u32>,
}

/// Validates the start of a module (its header and the sections before the code section)
/// with wasmparser; [`ValidatedHead::finish`] validates the rest once the module is written.
/// Split so that the head validates while the bodies are still being encoded.
fn validate_head(head: &[u8]) -> Result<ValidatedHead, wasmparser::BinaryReaderError> {
    use wasmparser::{Chunk, Parser, Payload, Validator};
    let mut validated = ValidatedHead {
        validator: Validator::new(),
        parser: Parser::new(0),
        offset: 0,
        types: Vec::new(),
    };
    loop {
        let (payload, consumed) = match validated.parser.parse(&head[validated.offset..], false)? {
            Chunk::Parsed { consumed, payload } => (payload, consumed),
            // The end of the head: the code section comes next.
            Chunk::NeedMoreData(_) => return Ok(validated),
        };
        validated.offset += consumed;
        validated.validator.payload(&payload)?;
        if let Payload::FunctionSection(reader) = &payload {
            validated.types = reader.clone().into_iter().collect::<Result<_, _>>()?;
        }
    }
}

impl ValidatedHead {
    /// Validates the rest of `bytes`, the module whose head this validated (the same bytes
    /// up to [`ValidatedHead::offset`]): sections in order on this thread; the code section's
    /// entries are framed here (sizes read, count checked) and their bodies validated on the
    /// pool in batches while the parser goes on with the sections after it (wasmparser's
    /// `FuncToValidate` split, the way wasmtime validates, minus a per-body walk through the
    /// validator: each body's function index and type come from the function section). The
    /// error reported is the first in module order, whatever the thread count.
    fn finish(self, bytes: &[u8]) -> Result<(), wasmparser::BinaryReaderError> {
        use std::sync::Mutex;
        use wasmparser::{
            BinaryReader, Chunk, CodeSectionReader, FuncToValidate, FuncValidatorAllocations,
            FunctionBody, Payload,
        };
        let ValidatedHead {
            mut validator,
            mut parser,
            mut offset,
            mut types,
        } = self;
        // The first body error by function order.
        let first_error: Mutex<Option<(usize, wasmparser::BinaryReaderError)>> = Mutex::new(None);
        let record = |index: usize, error: wasmparser::BinaryReaderError| {
            let mut first = first_error.lock().expect("poisoned");
            if first.as_ref().is_none_or(|(at, _)| index < *at) {
                *first = Some((index, error));
            }
        };
        // The code section, once reached (the validator rejects a second one): its bodies,
        // their types, and the validation context of the first.
        type Code<'b> = (
            Vec<FunctionBody<'b>>,
            Vec<u32>,
            Option<FuncToValidate<wasmparser::ValidatorResources>>,
        );
        let code: std::sync::OnceLock<Code<'_>> = std::sync::OnceLock::new();
        let sections = rayon::scope(|scope| -> Result<(), wasmparser::BinaryReaderError> {
            loop {
                let (payload, consumed) = match parser.parse(&bytes[offset..], true)? {
                    Chunk::Parsed { consumed, payload } => (payload, consumed),
                    Chunk::NeedMoreData(_) => unreachable!("the whole module is given (eof)"),
                };
                offset += consumed;
                match &payload {
                    Payload::FunctionSection(reader) => {
                        validator.payload(&payload)?;
                        types = reader.clone().into_iter().collect::<Result<_, _>>()?;
                    }
                    Payload::CodeSectionStart { range, size, .. } => {
                        validator.payload(&payload)?; // the count against the function section
                        parser.skip_section();
                        offset += *size as usize;
                        let reader = CodeSectionReader::new(BinaryReader::new(
                            &bytes[range.clone()],
                            range.start,
                        ))?;
                        // Bodies framed before any framing error are still validated (their
                        // errors come first in module order).
                        let mut bodies = Vec::new();
                        let mut framed = Ok(());
                        for entry in reader {
                            match entry {
                                Ok(body) => bodies.push(body),
                                Err(e) => {
                                    framed = Err(e);
                                    break;
                                }
                            }
                        }
                        let first = match bodies.first() {
                            Some(body) => Some(validator.code_section_entry(body)?),
                            None => None,
                        };
                        let (bodies, types, first) =
                            code.get_or_init(|| (bodies, std::mem::take(&mut types), first));
                        let record = &record;
                        for start in (0..bodies.len()).step_by(256) {
                            scope.spawn(move |_| {
                                let first = first.as_ref().expect("set with the first body");
                                let mut allocations = FuncValidatorAllocations::default();
                                for (i, body) in bodies.iter().enumerate().skip(start).take(256) {
                                    let function = FuncToValidate {
                                        resources: &first.resources,
                                        index: first.index + i as u32,
                                        ty: types[i],
                                        features: first.features,
                                    };
                                    let mut validator = function.into_validator(allocations);
                                    if let Err(e) = validator.validate(body) {
                                        record(i, e);
                                    }
                                    allocations = validator.into_allocations();
                                }
                            });
                        }
                        // The reader yields exactly `count` entries, then fails on any bytes
                        // left in the section.
                        framed?;
                    }
                    Payload::End(_) => {
                        validator.payload(&payload)?;
                        return Ok(());
                    }
                    _ => {
                        validator.payload(&payload)?;
                    }
                }
            }
        });
        // A section error stops the parse, so any body error recorded precedes it in module
        // order.
        match first_error.into_inner().expect("poisoned") {
            Some((_, error)) => Err(error),
            None => sections,
        }
    }
}

fn hash_name(name: &str) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(name)
}
