//! The loader: finds the image in a produced module (without running it), decodes and
//! validates it, processes its eager import sections at load, and resolves lazy and
//! per-method (precode) fixups on demand (the CoreCLR VM's R2R fixup resolution on wasm).
//!
//! Code references in an image are table slots relative to the module's `__table_base`; the
//! loader turns them into absolute table indices ([`CodeRef`]) when the module is loaded at a
//! table base.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use rustc_hash::FxHashMap;

use crate::entry_point::{PortableEntryPoint, ThunkRuntime};
use crate::format::{
    FixupRef, FixupSignature, FormatError, Image, ImportSectionFlags, MethodRef, MethodSigFlags,
};
use crate::string_thunks::CodeRef;

/// Not resolved yet.
const UNRESOLVED: u32 = u32::MAX;

/// Why a module or image cannot be loaded, or a fixup not resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The wasm module cannot be parsed.
    #[error("module is not valid wasm at offset {offset}: {message}")]
    Module {
        /// Byte offset in the module.
        offset: usize,
        /// wasmparser's message.
        message: String,
    },
    /// The module carries no image (no active data segment at `env.__image_base`).
    #[error("module has no image: no active data segment placed at global env.__image_base")]
    NoImage,
    /// The image is malformed.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A module handle from another runtime, or a fixup naming a missing cell.
    #[error("module {module}: no import cell {cell} in section {section}")]
    NoSuchCell {
        /// Module handle.
        module: usize,
        /// Section index.
        section: u32,
        /// Cell index.
        cell: u32,
    },
    /// A method no loaded image has code for and the interpreter does not know.
    #[error("method 0x{token:08x} (flags 0x{flags:x}) has no R2R code and no interpreter entry")]
    UnknownMethod {
        /// Token.
        token: u32,
        /// Signature flags.
        flags: u32,
    },
    /// A managed call to an `UnmanagedCallersOnly` method, which has only an unmanaged entry.
    #[error("method 0x{token:08x} is UnmanagedCallersOnly: it has no managed entry")]
    UnmanagedOnly {
        /// Token.
        token: u32,
    },
    /// A thunk that no loaded module and no startup table provides.
    #[error("no thunk {key:?} is available")]
    MissingThunk {
        /// Its lookup string.
        key: String,
    },
    /// A code reference that does not fit the table index space at this table base.
    #[error("code reference {code} at table base {table_base} overflows the table index space")]
    CodeReference {
        /// The slot the image names.
        code: u32,
        /// The module's table base.
        table_base: u32,
    },
    /// A helper fixup the runtime does not provide.
    #[error("helper {id} is not provided by the runtime")]
    UnknownHelper {
        /// Helper id.
        id: u32,
    },
    /// A `StringHandle` cell (fixup kind 0x1B) asked of the loader: string objects come from
    /// the embedder, so the executor resolves these cells ([`Loader::store_cell`]).
    #[error(
        "string literal 0x{token:08x} is resolved by the embedder (Interpreter::string_literal), not the loader"
    )]
    StringLiteral {
        /// The user-string token.
        token: u32,
    },
    /// A `NewObject` cell (fixup kind 0x1C) asked of the loader: objects come from the
    /// embedder; the cell carries the type for the executor's allocation helper.
    #[error(
        "type 0x{token:08x} is allocated by the embedder (Interpreter::new_object), not the loader"
    )]
    NewObject {
        /// The allocated type's token.
        token: u32,
    },
    /// A `NewArray` cell (fixup kind 0x1D) asked of the loader: arrays come from the embedder;
    /// the cell carries the element type for the executor's array helper.
    #[error(
        "arrays of type 0x{token:08x} are allocated by the embedder (Interpreter::new_array), not the loader"
    )]
    NewArray {
        /// The element type's token.
        token: u32,
    },
    /// An `IsInstanceOf` or `ChkCast` cell (fixup kinds 0x1E, 0x1F) asked of the loader: type
    /// tests belong to the embedder; the cell carries the type for the executor's helper.
    #[error(
        "type checks against 0x{token:08x} are the embedder's (Interpreter::is_instance_of), not the loader's"
    )]
    TypeCheck {
        /// The type's token.
        token: u32,
    },
    /// A `FieldAddress` cell (fixup kind 0x20) asked of the loader: statics belong to the
    /// embedder, so the executor resolves these cells ([`Loader::store_cell`]).
    #[error(
        "static field 0x{token:08x} is resolved by the embedder (Interpreter::static_field_address), not the loader"
    )]
    StaticField {
        /// The field's token.
        token: u32,
    },
    /// A `TypeHandle` or `FieldHandle` cell (fixup kinds 0x10, 0x12) asked of the loader: the
    /// embedder owns the runtime handles, so the executor resolves these cells
    /// ([`Loader::store_cell`]).
    #[error(
        "the runtime handle of 0x{token:08x} is resolved by the embedder (Interpreter::runtime_handle), not the loader"
    )]
    RuntimeHandle {
        /// The type or field token.
        token: u32,
    },
    /// A `VirtualEntry` cell (fixup kind 0x16) asked of the loader: which override a virtual
    /// call runs depends on each call's receiver, so the executor's virtual-entry helper asks
    /// the embedder per call ([`Loader::virtual_entry_code`]).
    #[error(
        "virtual calls of 0x{token:08x} are dispatched per receiver (Interpreter::virtual_target), not resolved by the loader"
    )]
    VirtualEntry {
        /// The virtual method's token.
        token: u32,
    },
    /// A virtual-entry helper's cell that is not a `VirtualEntry` cell.
    #[error("module {module}, import section {section}, cell {cell} is not a VirtualEntry cell")]
    NotVirtualEntry {
        /// Module index.
        module: usize,
        /// Import section index.
        section: u32,
        /// Cell index.
        cell: u32,
    },
}

/// Finds the image in a module written by the object writer: the active data segment whose
/// offset is `global.get` of the imported `env.__image_base`. The module is not run.
///
/// # Errors
/// [`LoadError::Module`] for unparsable wasm, [`LoadError::NoImage`].
pub fn image_from_module(module: &[u8]) -> Result<&[u8], LoadError> {
    use wasmparser::{DataKind, Operator, Parser, Payload, TypeRef};
    let fail = |e: wasmparser::BinaryReaderError| LoadError::Module {
        offset: e.offset(),
        message: e.message().to_string(),
    };
    let mut image_base_global = None;
    let mut imported_globals = 0u32;
    for payload in Parser::new(0).parse_all(module) {
        match payload.map_err(fail)? {
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    let import = import.map_err(fail)?;
                    if let TypeRef::Global(_) = import.ty {
                        if import.module == "env" && import.name == "__image_base" {
                            image_base_global = Some(imported_globals);
                        }
                        imported_globals += 1;
                    }
                }
            }
            Payload::DataSection(data) => {
                for segment in data {
                    let segment = segment.map_err(fail)?;
                    if let DataKind::Active {
                        memory_index: 0,
                        offset_expr,
                    } = segment.kind
                    {
                        let mut ops = offset_expr.get_operators_reader();
                        if let Ok(Operator::GlobalGet { global_index }) = ops.read()
                            && Some(global_index) == image_base_global
                        {
                            return Ok(segment.data);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Err(LoadError::NoImage)
}

/// Checks, before anything is registered, that every code reference of `image` plus
/// `table_base` is a valid table index (found by fuzzing the loader).
fn check_code_references(image: &Image, table_base: u32) -> Result<(), LoadError> {
    for code in code_references(image) {
        if table_base
            .checked_add(code)
            .is_none_or(|index| index == UNRESOLVED)
        {
            return Err(LoadError::CodeReference { code, table_base });
        }
    }
    Ok(())
}

/// Every code reference (table slot) an image names: entry points, string thunks,
/// resumption stubs.
fn code_references(image: &Image) -> impl Iterator<Item = u32> + '_ {
    let entries = image
        .method_entry_points
        .iter()
        .chain(&image.instance_entry_points)
        .map(|e| e.code);
    let cells = image.import_sections.iter().flat_map(|s| &s.cells);
    let fixups = cells.flat_map(|c| match &c.signature {
        FixupSignature::InjectStringThunks(thunks) => thunks.iter().map(|t| t.code).collect(),
        FixupSignature::ResumptionStubEntryPoint { stub, .. } => vec![*stub],
        _ => Vec::new(),
    });
    entries.chain(fixups)
}

/// The methods a module names and the table slot (relative to `__table_base`) of each that
/// has one: its function exports (an `UnmanagedCallersOnly(EntryPoint = ...)` method, say),
/// then the compiled methods of its name section, which the object writer names
/// `Namespace.Type::Method@06xxxxxx` (crossgraph exports no other methods: like a ReadyToRun
/// image, the runtime finds code through the entry-point tables), by the name before the `@`
/// when no other method has it (overloads share names). Read from the export, element and
/// name sections.
///
/// # Errors
/// [`LoadError::Module`] for unparsable wasm.
pub fn named_slots(module: &[u8]) -> Result<Vec<(String, Option<u32>)>, LoadError> {
    use wasmparser::{ElementItems, ElementKind, ExternalKind, KnownCustom, Name, Parser, Payload};
    let fail = |e: wasmparser::BinaryReaderError| LoadError::Module {
        offset: e.offset(),
        message: e.message().to_string(),
    };
    let mut exports = Vec::new();
    let mut methods: Vec<(String, u32)> = Vec::new();
    let mut slot_of_function: FxHashMap<u32, u32> = FxHashMap::default();
    for payload in Parser::new(0).parse_all(module) {
        match payload.map_err(fail)? {
            Payload::ExportSection(section) => {
                for export in section {
                    let export = export.map_err(fail)?;
                    if export.kind == ExternalKind::Func {
                        exports.push((export.name.to_string(), export.index));
                    }
                }
            }
            Payload::CustomSection(section) => {
                if let KnownCustom::Name(names) = section.as_known() {
                    for name in names {
                        let Name::Function(map) = name.map_err(fail)? else {
                            continue;
                        };
                        for naming in map {
                            let naming = naming.map_err(fail)?;
                            if let Some((method, token)) = naming.name.rsplit_once('@')
                                && token.len() == 8
                                && token.starts_with("06")
                                && u32::from_str_radix(token, 16).is_ok()
                            {
                                methods.push((method.to_string(), naming.index));
                            }
                        }
                    }
                }
            }
            Payload::ElementSection(section) => {
                for element in section {
                    let element = element.map_err(fail)?;
                    // The writer's one active segment at __table_base: slot = position.
                    if let (ElementKind::Active { .. }, ElementItems::Functions(functions)) =
                        (element.kind, element.items)
                    {
                        for (slot, function) in functions.into_iter().enumerate() {
                            slot_of_function
                                .entry(function.map_err(fail)?)
                                .or_insert(slot as u32);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let mut count: FxHashMap<&str, usize> = FxHashMap::default();
    for (name, _) in &methods {
        *count.entry(name.as_str()).or_default() += 1;
    }
    let exported: std::collections::HashSet<String> =
        exports.iter().map(|(name, _)| name.clone()).collect();
    let unique: Vec<(String, u32)> = methods
        .iter()
        .filter(|(name, _)| count[name.as_str()] == 1 && !exported.contains(name))
        .cloned()
        .collect();
    Ok(exports
        .into_iter()
        .chain(unique)
        .map(|(name, function)| {
            let slot = slot_of_function.get(&function).copied();
            (name, slot)
        })
        .collect())
}

/// What the embedder's interpreter knows about a method it can run: the key of the
/// R2R -> interpreter thunk R2R callers go through (`I` + signature).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterpretedMethod {
    /// `I` + the method's signature string.
    pub thunk_key: String,
}

#[derive(Debug)]
struct LoadedModule {
    image: Image,
    table_base: u32,
    /// Resolved cell values, by section then cell.
    cells: Vec<Vec<AtomicU32>>,
    /// Where each import section's cells are: (RVA, entry size).
    cell_layout: Vec<(u32, u8)>,
}

/// The (RVA, entry size) of each import section's cells, read from a decoded image's bytes.
fn cell_layout(bytes: &[u8]) -> Vec<(u32, u8)> {
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let count = u32_at(12) as usize;
    let Some((rva, size)) = (0..count)
        .map(|i| 16 + 12 * i)
        .find(|&at| u32_at(at) == crate::format::SectionKind::ImportSections as u32)
        .map(|at| (u32_at(at + 4) as usize, u32_at(at + 8) as usize))
    else {
        return Vec::new();
    };
    (0..size / crate::format::IMPORT_SECTION_SIZE as usize)
        .map(|i| {
            let d = rva + i * crate::format::IMPORT_SECTION_SIZE as usize;
            (u32_at(d), bytes.get(d + 11).copied().unwrap_or(4))
        })
        .collect()
}

#[derive(Debug)]
struct R2RMethod {
    module: Arc<LoadedModule>,
    handle: usize,
    /// Index in the module's entry points (method table, then instance table).
    entry: usize,
    code: CodeRef,
    /// Created on first use: most methods never need one.
    entry_point: OnceLock<Arc<PortableEntryPoint>>,
}

impl R2RMethod {
    fn fixups(&self) -> &[FixupRef] {
        let image = &self.module.image;
        let defs = image.method_entry_points.len();
        let entry = if self.entry < defs {
            &image.method_entry_points[self.entry]
        } else {
            &image.instance_entry_points[self.entry - defs]
        };
        &entry.fixups
    }
}

/// Loaded images, their methods, and the thunk runtime they feed.
#[derive(Debug, Default)]
pub struct Loader {
    thunks: ThunkRuntime,
    modules: RwLock<Vec<Arc<LoadedModule>>>,
    methods: RwLock<FxHashMap<MethodRef, Arc<R2RMethod>>>,
    interpreted: RwLock<FxHashMap<MethodRef, InterpretedMethod>>,
    helpers: RwLock<FxHashMap<u32, CodeRef>>,
}

/// How a caller will call a method's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// A managed call: the managed-shaped entry (`SP, ..., PE`).
    Managed,
    /// An unmanaged call through a function pointer (`ldftn` of an `UnmanagedCallersOnly`
    /// method feeding `calli unmanaged`, or a native caller).
    Unmanaged,
}

/// Method flag of entry points whose code is the unmanaged-typed function of an
/// `UnmanagedCallersOnly` method (crossgraph's: 0x400).
pub const UNMANAGED_CALLERS_ONLY: MethodSigFlags = MethodSigFlags(0x400);

impl Loader {
    /// A loader over a thunk runtime with these startup thunks.
    pub fn new(thunks: ThunkRuntime) -> Self {
        Loader {
            thunks,
            ..Loader::default()
        }
    }

    /// The thunk runtime.
    pub fn thunks(&self) -> &ThunkRuntime {
        &self.thunks
    }

    /// Provides a runtime helper for `Helper` fixups.
    pub fn provide_helper(&self, id: u32, code: CodeRef) {
        self.helpers.write().expect("poisoned").insert(id, code);
    }

    /// Tells the loader the interpreter can run `method`.
    pub fn register_interpreted(&self, method: MethodRef, info: InterpretedMethod) {
        self.interpreted
            .write()
            .expect("poisoned")
            .insert(method, info);
    }

    /// Loads an image whose module is instantiated with its slots at `table_base`: decodes
    /// it, registers its methods (the first module to provide a method wins), and processes
    /// its eager import sections (string thunks merge into the process-wide table; other
    /// eager cells resolve now). Returns the module handle.
    ///
    /// # Errors
    /// [`LoadError::Format`] for a malformed image (nothing is registered); resolution errors
    /// of eager cells (the module stays registered with its thunks merged, as a module whose
    /// eager fixups fail is unusable anyway: treat the error as fatal for it).
    pub fn load_image(&self, bytes: &[u8], table_base: u32) -> Result<usize, LoadError> {
        let image = Image::decode(bytes)?;
        check_code_references(&image, table_base)?;
        let cells = image
            .import_sections
            .iter()
            .map(|s| s.cells.iter().map(|_| AtomicU32::new(UNRESOLVED)).collect())
            .collect();
        let module = Arc::new(LoadedModule {
            image,
            table_base,
            cells,
            cell_layout: cell_layout(bytes),
        });
        let handle = {
            let mut modules = self.modules.write().expect("poisoned");
            modules.push(Arc::clone(&module));
            modules.len() - 1
        };
        {
            let mut methods = self.methods.write().expect("poisoned");
            let entries = module
                .image
                .method_entry_points
                .iter()
                .chain(&module.image.instance_entry_points);
            methods.reserve(
                module.image.method_entry_points.len() + module.image.instance_entry_points.len(),
            );
            for (index, entry) in entries.enumerate() {
                methods.entry(entry.method).or_insert_with(|| {
                    Arc::new(R2RMethod {
                        module: Arc::clone(&module),
                        handle,
                        entry: index,
                        code: CodeRef(table_base + entry.code),
                        entry_point: OnceLock::new(),
                    })
                });
            }
        }
        // String thunks first, so eager method entries can find them.
        for section in &module.image.import_sections {
            if !section.flags.contains(ImportSectionFlags::EAGER) {
                continue;
            }
            for cell in &section.cells {
                if let FixupSignature::InjectStringThunks(thunks) = &cell.signature {
                    let absolute: Vec<(&str, CodeRef)> = thunks
                        .iter()
                        .map(|t| (t.key.as_str(), CodeRef(table_base + t.code)))
                        .collect();
                    self.thunks.merge_thunks(absolute);
                }
            }
        }
        for (s, section) in module.image.import_sections.iter().enumerate() {
            if section.flags.contains(ImportSectionFlags::EAGER) {
                for c in 0..section.cells.len() {
                    self.resolve_cell(handle, s as u32, c as u32)?;
                }
            }
        }
        Ok(handle)
    }

    /// A loaded module (its `Arc`: no lock is held afterwards) that has cell `cell` of section
    /// `section`.
    fn module_with_cell(
        &self,
        module: usize,
        section: u32,
        cell: u32,
    ) -> Result<Arc<LoadedModule>, LoadError> {
        let no_cell = LoadError::NoSuchCell {
            module,
            section,
            cell,
        };
        let loaded = self
            .modules
            .read()
            .expect("poisoned")
            .get(module)
            .cloned()
            .ok_or(no_cell.clone())?;
        loaded
            .cells
            .get(section as usize)
            .and_then(|s| s.get(cell as usize))
            .ok_or(no_cell)?;
        Ok(loaded)
    }

    /// Resolves one import cell of a loaded module (lazy cells on first use; resolving twice
    /// returns the stored value) and returns its value: an absolute table index for code.
    ///
    /// # Errors
    /// [`LoadError::NoSuchCell`], [`LoadError::UnknownMethod`], [`LoadError::UnmanagedOnly`],
    /// [`LoadError::MissingThunk`], [`LoadError::UnknownHelper`].
    pub fn resolve_cell(&self, module: usize, section: u32, cell: u32) -> Result<u32, LoadError> {
        let loaded = self.module_with_cell(module, section, cell)?;
        let slot = &loaded.cells[section as usize][cell as usize];
        let value = slot.load(Ordering::Acquire);
        if value != UNRESOLVED {
            return Ok(value);
        }
        let signature =
            &loaded.image.import_sections[section as usize].cells[cell as usize].signature;
        let value = match signature {
            // A cell flagged UNMANAGED_CALLERS_ONLY holds the method's unmanaged entry (the
            // target of an `ldftn` of an UnmanagedCallersOnly method).
            FixupSignature::MethodEntry(method)
                if method.flags.0 & UNMANAGED_CALLERS_ONLY.0 != 0 =>
            {
                let method = MethodRef {
                    flags: MethodSigFlags(method.flags.0 & !UNMANAGED_CALLERS_ONLY.0),
                    ..*method
                };
                self.method_entry(method, CallKind::Unmanaged)?.0
            }
            FixupSignature::MethodEntry(method) => self.method_entry(*method, CallKind::Managed)?.0,
            FixupSignature::Helper(id) => {
                self.helpers
                    .read()
                    .expect("poisoned")
                    .get(id)
                    .ok_or(LoadError::UnknownHelper { id: *id })?
                    .0
            }
            FixupSignature::ResumptionStubEntryPoint { method, stub } => {
                let entry = self.entry_point(*method)?;
                entry
                    .register_resumption_stub(CodeRef(loaded.table_base + stub))
                    .code
                    .0
            }
            // Merged at load; the cell itself carries no value.
            FixupSignature::InjectStringThunks(_) => 0,
            FixupSignature::StringHandle(token) => {
                return Err(LoadError::StringLiteral { token: *token });
            }
            FixupSignature::NewObject(token) => {
                return Err(LoadError::NewObject { token: *token });
            }
            FixupSignature::NewArray(token) => {
                return Err(LoadError::NewArray { token: *token });
            }
            FixupSignature::IsInstanceOf(token) | FixupSignature::ChkCast(token) => {
                return Err(LoadError::TypeCheck { token: *token });
            }
            FixupSignature::FieldAddress(token) => {
                return Err(LoadError::StaticField { token: *token });
            }
            FixupSignature::TypeHandle(token) | FixupSignature::FieldHandle(token) => {
                return Err(LoadError::RuntimeHandle { token: *token });
            }
            FixupSignature::VirtualEntry(method) => {
                return Err(LoadError::VirtualEntry {
                    token: method.token,
                });
            }
        };
        // Resolution is idempotent, so a race stores the same value twice.
        slot.store(value, Ordering::Release);
        Ok(value)
    }

    /// The code a virtual call through the `VirtualEntry` cell `cell` of import section
    /// `section` of `module` (ReadyToRun fixup 0x16) runs once the embedder has named the
    /// override the receiver's type runs, `target`: the target's R2R code when an image has
    /// it, else the cell's R2R -> interpreter thunk (its initial value: an override shares
    /// its virtual method's signature). An absolute table index.
    ///
    /// # Errors
    /// [`LoadError::NoSuchCell`]; [`LoadError::NotVirtualEntry`] for a cell of another kind.
    pub fn virtual_entry_code(
        &self,
        module: usize,
        section: u32,
        cell: u32,
        target: MethodRef,
    ) -> Result<CodeRef, LoadError> {
        let loaded = self.module_with_cell(module, section, cell)?;
        let found = &loaded.image.import_sections[section as usize].cells[cell as usize];
        if !matches!(found.signature, FixupSignature::VirtualEntry(_)) {
            return Err(LoadError::NotVirtualEntry {
                module,
                section,
                cell,
            });
        }
        Ok(match self.r2r_method(target) {
            Ok(method) => method.code,
            Err(_) => CodeRef(loaded.table_base + found.initial),
        })
    }

    /// The method whose R2R code is at table index `code`, if any (several methods may share
    /// one body; the lowest token wins, for determinism).
    pub fn method_at(&self, code: CodeRef) -> Option<MethodRef> {
        self.methods
            .read()
            .expect("poisoned")
            .iter()
            .filter(|(_, m)| m.code == code)
            .map(|(method, _)| *method)
            .min()
    }

    /// The largest code reference (table slot) the image of `module` names, if any.
    pub fn max_code_reference(&self, module: usize) -> Option<u32> {
        let loaded = self
            .modules
            .read()
            .expect("poisoned")
            .get(module)
            .cloned()?;
        code_references(&loaded.image).max()
    }

    /// Whether the interpreter can run `method`.
    pub fn is_interpreted(&self, method: MethodRef) -> bool {
        self.interpreted
            .read()
            .expect("poisoned")
            .contains_key(&method)
    }

    /// Resolves the import cell at image offset `rva` of a loaded module (what the delay-load
    /// helper receives, minus the image base).
    ///
    /// # Errors
    /// [`LoadError::NoSuchCell`] when no cell starts at `rva`; as [`Loader::resolve_cell`].
    pub fn resolve_cell_at(&self, module: usize, rva: u32) -> Result<u32, LoadError> {
        let (section, cell, _) = self.cell_at(module, rva)?;
        self.resolve_cell(module, section, cell)
    }

    /// The import cell at image offset `rva` of a loaded module: its section, its index in
    /// the section and its fixup signature.
    ///
    /// # Errors
    /// [`LoadError::NoSuchCell`] when no cell starts at `rva`.
    pub fn cell_at(
        &self,
        module: usize,
        rva: u32,
    ) -> Result<(u32, u32, FixupSignature), LoadError> {
        let loaded = self.modules.read().expect("poisoned").get(module).cloned();
        let no_cell = LoadError::NoSuchCell {
            module,
            section: u32::MAX,
            cell: rva,
        };
        let loaded = loaded.ok_or(no_cell.clone())?;
        for (s, &(start, size)) in loaded.cell_layout.iter().enumerate() {
            let count = loaded.cells[s].len() as u32;
            let size = u32::from(size);
            if rva >= start && rva < start + count * size && (rva - start).is_multiple_of(size) {
                let c = (rva - start) / size;
                let signature = loaded.image.import_sections[s].cells[c as usize]
                    .signature
                    .clone();
                return Ok((s as u32, c, signature));
            }
        }
        Err(no_cell)
    }

    /// Stores `value` as the resolution of a cell the loader cannot resolve itself (a
    /// `StringHandle` or `FieldAddress` cell, resolved by the executor through the embedder)
    /// unless the cell is already resolved, and returns the cell's value: the first resolution wins, so racing
    /// resolvers of one string literal all get the same object.
    ///
    /// # Errors
    /// [`LoadError::NoSuchCell`].
    pub fn store_cell(
        &self,
        module: usize,
        section: u32,
        cell: u32,
        value: u32,
    ) -> Result<u32, LoadError> {
        let loaded = self.module_with_cell(module, section, cell)?;
        let slot = &loaded.cells[section as usize][cell as usize];
        Ok(
            match slot.compare_exchange(UNRESOLVED, value, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => value,
                Err(current) => current,
            },
        )
    }

    /// Resolves every fixup a method lists (ReadyToRun's per-method fixups), before its first
    /// call.
    ///
    /// # Errors
    /// As [`Loader::resolve_cell`]; [`LoadError::UnknownMethod`] if no image has the method.
    pub fn prepare_method(&self, method: MethodRef) -> Result<CodeRef, LoadError> {
        let found = self.r2r_method(method)?;
        for fixup in found.fixups() {
            self.resolve_cell(found.handle, fixup.section, fixup.cell)?;
        }
        Ok(found.code)
    }

    fn r2r_method(&self, method: MethodRef) -> Result<Arc<R2RMethod>, LoadError> {
        self.methods
            .read()
            .expect("poisoned")
            .get(&method)
            .cloned()
            .ok_or(LoadError::UnknownMethod {
                token: method.token,
                flags: method.flags.0,
            })
    }

    /// The portable entry point of a method with R2R code.
    ///
    /// # Errors
    /// [`LoadError::UnknownMethod`].
    pub fn entry_point(&self, method: MethodRef) -> Result<Arc<PortableEntryPoint>, LoadError> {
        let found = self.r2r_method(method)?;
        // The thunk key stays empty: format 1.0 records no signatures for R2R methods.
        let entry = found
            .entry_point
            .get_or_init(|| Arc::new(PortableEntryPoint::new("", Some(found.code), None)));
        Ok(Arc::clone(entry))
    }

    /// The code a caller of `kind` uses for `method` (MethodEntry resolution): a managed
    /// caller gets the method's R2R code, or, for a method only the interpreter can run, its
    /// R2R -> interpreter thunk; an unmanaged caller of an `UnmanagedCallersOnly` method gets
    /// the table index of its own unmanaged-typed function, never a managed-shaped entry.
    ///
    /// # Errors
    /// [`LoadError::UnmanagedOnly`] for a managed call to an `UnmanagedCallersOnly` method;
    /// [`LoadError::UnknownMethod`]; [`LoadError::MissingThunk`].
    pub fn method_entry(&self, method: MethodRef, kind: CallKind) -> Result<CodeRef, LoadError> {
        let uco = MethodRef {
            flags: MethodSigFlags(method.flags.0 | UNMANAGED_CALLERS_ONLY.0),
            ..method
        };
        match kind {
            CallKind::Unmanaged => self.r2r_method(uco).map(|m| m.code),
            CallKind::Managed => {
                if self.r2r_method(uco).is_ok() {
                    return Err(LoadError::UnmanagedOnly {
                        token: method.token,
                    });
                }
                if let Ok(m) = self.r2r_method(method) {
                    return Ok(m.code);
                }
                let interpreted = self
                    .interpreted
                    .read()
                    .expect("poisoned")
                    .get(&method)
                    .cloned()
                    .ok_or(LoadError::UnknownMethod {
                        token: method.token,
                        flags: method.flags.0,
                    })?;
                self.thunks
                    .table()
                    .lookup_thunk(&interpreted.thunk_key)
                    .ok_or(LoadError::MissingThunk {
                        key: interpreted.thunk_key,
                    })
            }
        }
    }
}
