//! The object writer: emitted functions with symbolic relocations and the image become one
//! wasm module, built with wasm-encoder and validated with wasmparser before it is returned.
//!
//! Wasm indices exist only here (walrus `IdsToIndices`): code refers to functions by symbol
//! and to types by [`WasmFuncType`]; the writer assigns type, function and table indices in a
//! deterministic order (types by first use, imported then defined functions in the given
//! order, table slots in function order) and resolves every relocation.
//!
//! Module imports (module `env`): `memory`; `__indirect_function_table` (funcref, at least as
//! many slots as the module fills); globals `__stack_pointer` (mutable i32), `__image_base`
//! (i32: where the image data segment goes) and `__table_base` (i32: the module's first table
//! slot); then the runtime helpers the code calls. A code reference (table index) in the
//! image is a slot relative to `__table_base`.

use std::collections::{BTreeMap, HashMap};

use wasm_encoder::{
    CodeSection, ConstExpr, DataSection, ElementSection, Elements, EntityType, ExportKind,
    ExportSection, Function, FunctionSection, GlobalType, ImportSection, Instruction, MemoryType,
    Module, NameMap, NameSection, RefType, TableType, TypeSection, ValType,
};

use crate::abi::WasmValueType;
use crate::signature::WasmFuncType;

/// Index of the imported `__stack_pointer` global.
pub const STACK_POINTER_GLOBAL: u32 = 0;
/// Index of the imported `__image_base` global.
pub const IMAGE_BASE_GLOBAL: u32 = 1;
/// Index of the imported `__table_base` global.
pub const TABLE_BASE_GLOBAL: u32 = 2;

/// One operation of a function body: a plain instruction, or one that names something whose
/// index only exists at emit time (a relocation).
#[derive(Clone, Debug)]
pub enum Op {
    /// An instruction without indices to resolve (no `call`, `call_indirect`, globals).
    Ins(Instruction<'static>),
    /// `call` a function symbol (function-index relocation).
    Call(String),
    /// `call_indirect` through table 0 with this type (type-index relocation); the table
    /// index operand is on the stack.
    CallIndirect(WasmFuncType),
    /// Push the absolute table index of a symbol's slot: `__table_base + slot` (table-index
    /// relocation).
    TableIndex(String),
    /// Push the address of an image offset: `__image_base + rva` (image-offset relocation).
    ImageAddress(u32),
    /// `global.get __stack_pointer`.
    StackPointerGet,
    /// `global.set __stack_pointer`.
    StackPointerSet,
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

/// A function defined in the module.
#[derive(Clone, Debug)]
pub struct DefinedFunction {
    /// Unique symbol.
    pub symbol: String,
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
    /// Unique symbol code uses to call it.
    pub symbol: String,
    /// Import module name.
    pub module: String,
    /// Import field name.
    pub name: String,
    /// Its wasm type.
    pub ty: WasmFuncType,
}

/// A 4-byte little-endian slot in the image that receives a symbol's table slot (relative to
/// `__table_base`) at emit time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataReloc {
    /// Byte offset in the image (RVA).
    pub offset: u32,
    /// The symbol whose table slot goes there.
    pub symbol: String,
}

/// Everything one module is made of.
#[derive(Clone, Debug, Default)]
pub struct ObjectModule {
    /// Imported runtime helpers.
    pub imports: Vec<ImportedFunction>,
    /// Defined functions.
    pub functions: Vec<DefinedFunction>,
    /// The image bytes (see `docs/image-format.md`), placed at `__image_base`.
    pub image: Vec<u8>,
    /// Table-slot relocations inside the image.
    pub image_relocs: Vec<DataReloc>,
}

/// A written, validated module and the indices the writer chose.
#[derive(Clone, Debug)]
pub struct EmittedModule {
    /// The module bytes.
    pub bytes: Vec<u8>,
    /// Table slot (relative to `__table_base`) of each symbol that has one.
    pub table_slots: BTreeMap<String, u32>,
    /// Function index of each symbol.
    pub function_indices: BTreeMap<String, u32>,
    /// Number of distinct function types.
    pub type_count: u32,
}

/// Why a module cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Two functions (or imports) with one symbol.
    #[error("symbol {symbol:?} is defined twice")]
    DuplicateSymbol {
        /// The symbol.
        symbol: String,
    },
    /// A relocation to a symbol that does not exist.
    #[error("{referenced_by}: relocation to missing symbol {symbol:?}")]
    MissingSymbol {
        /// The missing symbol.
        symbol: String,
        /// Who refers to it (a function symbol, or "image").
        referenced_by: String,
    },
    /// A table-index relocation to a function without a table slot.
    #[error("{referenced_by}: {symbol:?} has no table slot")]
    NoTableSlot {
        /// The symbol.
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

impl ObjectModule {
    /// Writes and validates the module.
    ///
    /// # Errors
    /// [`WriteError`] naming the symbol or offset at fault.
    pub fn emit(&self) -> Result<EmittedModule, WriteError> {
        // Symbols -> function indices (imports first) and table slots.
        let mut function_indices = BTreeMap::new();
        let symbols = self
            .imports
            .iter()
            .map(|i| &i.symbol)
            .chain(self.functions.iter().map(|f| &f.symbol));
        for (index, symbol) in symbols.enumerate() {
            if function_indices
                .insert(symbol.clone(), index as u32)
                .is_some()
            {
                return Err(WriteError::DuplicateSymbol {
                    symbol: symbol.clone(),
                });
            }
        }
        let mut table_slots = BTreeMap::new();
        let mut slot_functions = Vec::new();
        for f in self.functions.iter().filter(|f| f.table_slot) {
            table_slots.insert(f.symbol.clone(), slot_functions.len() as u32);
            slot_functions.push(function_indices[&f.symbol]);
        }

        // Types, deduplicated in order of first use.
        let mut types: HashMap<WasmFuncType, u32> = HashMap::new();
        let mut type_list: Vec<WasmFuncType> = Vec::new();
        let mut type_index = |ty: &WasmFuncType| -> u32 {
            *types.entry(ty.clone()).or_insert_with(|| {
                type_list.push(ty.clone());
                type_list.len() as u32 - 1
            })
        };
        let import_types: Vec<u32> = self.imports.iter().map(|i| type_index(&i.ty)).collect();
        let function_types: Vec<u32> = self.functions.iter().map(|f| type_index(&f.ty)).collect();

        // Bodies, with relocations resolved.
        let mut code = CodeSection::new();
        for f in &self.functions {
            let locals = f.code.locals.iter().map(|&v| (1, val_type(v)));
            let mut body = Function::new(locals);
            for op in &f.code.ops {
                let missing = |symbol: &String| WriteError::MissingSymbol {
                    symbol: symbol.clone(),
                    referenced_by: f.symbol.clone(),
                };
                match op {
                    Op::Ins(ins) => {
                        body.instruction(ins);
                    }
                    Op::Call(symbol) => {
                        let index = *function_indices
                            .get(symbol)
                            .ok_or_else(|| missing(symbol))?;
                        body.instruction(&Instruction::Call(index));
                    }
                    Op::CallIndirect(ty) => {
                        body.instruction(&Instruction::CallIndirect {
                            type_index: type_index(ty),
                            table_index: 0,
                        });
                    }
                    Op::TableIndex(symbol) => {
                        if !function_indices.contains_key(symbol) {
                            return Err(missing(symbol));
                        }
                        let slot =
                            *table_slots
                                .get(symbol)
                                .ok_or_else(|| WriteError::NoTableSlot {
                                    symbol: symbol.clone(),
                                    referenced_by: f.symbol.clone(),
                                })?;
                        body.instruction(&Instruction::GlobalGet(TABLE_BASE_GLOBAL))
                            .instruction(&Instruction::I32Const(slot as i32))
                            .instruction(&Instruction::I32Add);
                    }
                    Op::ImageAddress(rva) => {
                        body.instruction(&Instruction::GlobalGet(IMAGE_BASE_GLOBAL))
                            .instruction(&Instruction::I32Const(*rva as i32))
                            .instruction(&Instruction::I32Add);
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
            code.function(&body);
        }

        // The image, with table-slot relocations applied.
        let mut image = self.image.clone();
        for reloc in &self.image_relocs {
            let at = reloc.offset as usize;
            if at.checked_add(4).is_none_or(|end| end > image.len()) {
                return Err(WriteError::RelocOutOfImage {
                    offset: reloc.offset,
                    size: image.len(),
                });
            }
            let slot = match table_slots.get(&reloc.symbol) {
                Some(&slot) => slot,
                None if function_indices.contains_key(&reloc.symbol) => {
                    return Err(WriteError::NoTableSlot {
                        symbol: reloc.symbol.clone(),
                        referenced_by: "image".into(),
                    });
                }
                None => {
                    return Err(WriteError::MissingSymbol {
                        symbol: reloc.symbol.clone(),
                        referenced_by: "image".into(),
                    });
                }
            };
            image[at..at + 4].copy_from_slice(&slot.to_le_bytes());
        }

        // Sections.
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
        for (import, &ty) in self.imports.iter().zip(&import_types) {
            imports.import(&import.module, &import.name, EntityType::Function(ty));
        }
        let mut functions = FunctionSection::new();
        for &ty in &function_types {
            functions.function(ty);
        }
        let mut exports = ExportSection::new();
        for f in &self.functions {
            if let Some(name) = &f.export {
                exports.export(name, ExportKind::Func, function_indices[&f.symbol]);
            }
        }
        let mut elements = ElementSection::new();
        if !slot_functions.is_empty() {
            elements.active(
                None,
                &ConstExpr::global_get(TABLE_BASE_GLOBAL),
                Elements::Functions(slot_functions.into()),
            );
        }
        let mut data = DataSection::new();
        if !image.is_empty() {
            data.active(0, &ConstExpr::global_get(IMAGE_BASE_GLOBAL), image);
        }

        let mut module = Module::new();
        module.section(&type_section);
        module.section(&imports);
        module.section(&functions);
        module.section(&exports);
        if !elements.is_empty() {
            module.section(&elements);
        }
        module.section(&code);
        if !data.is_empty() {
            module.section(&data);
        }
        // Function names (the symbols), for WAT dumps and wasmtime backtraces.
        let mut function_names = NameMap::new();
        let mut by_index: Vec<(&u32, &String)> =
            function_indices.iter().map(|(s, i)| (i, s)).collect();
        by_index.sort();
        for (&index, symbol) in by_index {
            function_names.append(index, symbol);
        }
        let mut names = NameSection::new();
        names.functions(&function_names);
        module.section(&names);
        let bytes = module.finish();
        wasmparser::Validator::new()
            .validate_all(&bytes)
            .map_err(|e| WriteError::Invalid {
                message: e.to_string(),
            })?;
        Ok(EmittedModule {
            bytes,
            table_slots,
            function_indices,
            type_count: type_list.len() as u32,
        })
    }
}
