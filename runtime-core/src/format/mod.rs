//! The image format: the single definition of the R2R-style image that the object writer
//! places in a wasm data segment and the runtime reads (the way crossgen2 and the VM share
//! `readytorun.h`). Every byte is described in `docs/image-format.md`.
//!
//! All integers are little-endian; "RVA" is a byte offset from the start of the image; "code
//! reference" is a function-table index (the object writer resolves it at emit time).

mod decode;
mod encode;
mod error;

pub use encode::{CodeOffsets, CodeRefSite};
pub use error::FormatError;

/// `b"CGR2"`: the first four bytes of every image.
pub const MAGIC: [u8; 4] = *b"CGR2";
/// Major version: readers reject other majors.
pub const MAJOR_VERSION: u16 = 1;
/// Minor version: additive changes only (1: portable entry-point import sections,
/// [`ImportSectionType::PORTABLE_ENTRY_POINT`]).
pub const MINOR_VERSION: u16 = 1;
/// Header size in bytes (magic, major, minor, flags, section count).
pub const HEADER_SIZE: u32 = 16;
/// Section directory entry size in bytes (kind, RVA, size).
pub const DIRECTORY_ENTRY_SIZE: u32 = 12;
/// Import section descriptor size in bytes (ReadyToRun `READYTORUN_IMPORT_SECTION`).
pub const IMPORT_SECTION_SIZE: u32 = 20;
/// Method entry-point record size in bytes (token, flags, code reference, fixups RVA).
pub const METHOD_ENTRY_SIZE: u32 = 16;

/// Section kinds, with the ReadyToRun section type numbers (`ReadyToRunSectionType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum SectionKind {
    /// `CompilerIdentifier` (100): NUL-terminated UTF-8.
    CompilerIdentifier = 100,
    /// `ImportSections` (101): an array of import section descriptors.
    ImportSections = 101,
    /// `MethodDefEntryPoints` (103): method entry-point records.
    MethodDefEntryPoints = 103,
    /// `InstanceMethodEntryPoints` (109): entry points of instantiated and async-variant
    /// methods.
    InstanceMethodEntryPoints = 109,
}

impl SectionKind {
    /// The kind of a directory value, if known.
    pub fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            100 => SectionKind::CompilerIdentifier,
            101 => SectionKind::ImportSections,
            103 => SectionKind::MethodDefEntryPoints,
            109 => SectionKind::InstanceMethodEntryPoints,
            _ => return None,
        })
    }
}

/// Import section flags (ReadyToRun `ReadyToRunImportSectionFlags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ImportSectionFlags(pub u16);

impl ImportSectionFlags {
    /// No flags: lazy (delay-load) cells.
    pub const NONE: Self = ImportSectionFlags(0x0000);
    /// `Eager` (0x0001): resolved when the image loads.
    pub const EAGER: Self = ImportSectionFlags(0x0001);
    /// `PCode` (0x0004): cells hold code references (per-method precode fixups).
    pub const PCODE: Self = ImportSectionFlags(0x0004);

    /// Whether all bits of `other` are set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Import section type (ReadyToRun `ReadyToRunImportSectionType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImportSectionType(pub u8);

impl ImportSectionType {
    /// `Unknown` (0): general fixups.
    pub const UNKNOWN: Self = ImportSectionType(0);
    /// `StubDispatch` (2).
    pub const STUB_DISPATCH: Self = ImportSectionType(2);
    /// `StringHandle` (3).
    pub const STRING_HANDLE: Self = ImportSectionType(3);
    /// Portable entry points (0x80; crossgraph's, wasm has no public number): each entry is
    /// a managed function pointer, two pointer-sized words `[code, handle]`: the code
    /// reference (a delay-load cell: first its import thunk, then the method's code) and the
    /// entry-point handle compiled code passes as the `PE` argument (the method token of its
    /// `MethodEntry` signature). Entry size 8 on wasm32, 16 on wasm64; every cell's signature
    /// is a `MethodEntry`.
    pub const PORTABLE_ENTRY_POINT: Self = ImportSectionType(0x80);
}

/// Method signature flags carried by method fixups (ReadyToRun `ReadyToRunMethodSigFlags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MethodSigFlags(pub u32);

impl MethodSigFlags {
    /// No flags.
    pub const NONE: Self = MethodSigFlags(0);
    /// `AsyncVariant` (0x100): the runtime-async variant of a task-returning method.
    pub const ASYNC_VARIANT: Self = MethodSigFlags(0x100);
    /// The async resumption stub of a method (0x200; crossgraph's: no public number).
    pub const RESUMPTION_STUB: Self = MethodSigFlags(0x200);

    /// Whether all bits of `other` are set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// A method as fixups name it: metadata token plus signature flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MethodRef {
    /// Signature flags.
    pub flags: MethodSigFlags,
    /// `MethodDef` (0x06xxxxxx) or `MemberRef` (0x0Axxxxxx) token.
    pub token: u32,
}

/// ReadyToRun fixup kinds used by the image (`ReadyToRunFixupKind`).
pub mod fixup_kind {
    /// `TypeHandle` (0x10): the runtime handle of a type (`ldtoken` of a type).
    pub const TYPE_HANDLE: u8 = 0x10;
    /// `FieldHandle` (0x12): the runtime handle of a field (`ldtoken` of a field).
    pub const FIELD_HANDLE: u8 = 0x12;
    /// `MethodEntry` (0x13): the entry point of a method.
    pub const METHOD_ENTRY: u8 = 0x13;
    /// `VirtualEntry` (0x16): a virtual method, the receiver's override of which a call runs.
    pub const VIRTUAL_ENTRY: u8 = 0x16;
    /// `Helper` (0x1A): a runtime helper.
    pub const HELPER: u8 = 0x1A;
    /// `StringHandle` (0x1B): the string object of a string literal (`ldstr`).
    pub const STRING_HANDLE: u8 = 0x1B;
    /// `NewObject` (0x1C): the allocator of a type (`newobj`).
    pub const NEW_OBJECT: u8 = 0x1C;
    /// `NewArray` (0x1D): the allocator of an array type (`newarr`).
    pub const NEW_ARRAY: u8 = 0x1D;
    /// `IsInstanceOf` (0x1E): a type test (`isinst`).
    pub const IS_INSTANCE_OF: u8 = 0x1E;
    /// `ChkCast` (0x1F): a checked cast (`castclass`).
    pub const CHK_CAST: u8 = 0x1F;
    /// `FieldAddress` (0x20): the address of a static field (`ldsfld`, `stsfld`, `ldsflda`).
    pub const FIELD_ADDRESS: u8 = 0x20;
    /// `ResumptionStubEntryPoint` (0x38): the async resumption stub of a method variant.
    pub const RESUMPTION_STUB_ENTRY_POINT: u8 = 0x38;
    /// `InjectStringThunks` (0x39): string-discoverable thunks to merge at load.
    pub const INJECT_STRING_THUNKS: u8 = 0x39;
}

/// A fixup signature: kind byte + payload.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FixupSignature {
    /// 0x10, payload `token: u32`: a type token (`TypeDef`, `TypeRef` or `TypeSpec`) of the
    /// image's assembly, an `ldtoken` operand. The cell holds the type's runtime handle (the
    /// value of its `RuntimeTypeHandle`) once resolved (0 before; lazy: resolved by the code
    /// on first use, through the embedder, which owns the type handles).
    TypeHandle(u32),
    /// 0x12, payload `token: u32`: a field token (`Field` or `MemberRef`) of the image's
    /// assembly, an `ldtoken` operand (e.g. the data of an array initializer). As `TypeHandle`,
    /// for the field's `RuntimeFieldHandle`.
    FieldHandle(u32),
    /// 0x13, payload `flags: u32, token: u32`.
    MethodEntry(MethodRef),
    /// 0x16, payload `flags: u32, token: u32`: a virtual method (`MethodDef` or `MemberRef`
    /// token of the image's assembly) that `callvirt` calls. The code calls the runtime's
    /// virtual-entry helper with the receiver and the cell's address; the helper asks the
    /// embedder which override the receiver's type runs and returns that method's portable
    /// entry point (crossgen2 reaches it through a `DelayLoad_Helper_Obj` import of the same
    /// fixup). The cell's initial value is the code reference of the R2R -> interpreter thunk
    /// of the method's signature (crossgraph's: the code for an override without R2R code);
    /// the runtime never overwrites it.
    VirtualEntry(MethodRef),
    /// 0x1A, payload `helper: u32`.
    Helper(u32),
    /// 0x1B, payload `token: u32`: a user-string token (0x70xxxxxx, the operand of `ldstr`)
    /// of the image's assembly. The cell holds the string object's reference once resolved
    /// (0 before; lazy: resolved by the code on first use, through the embedder).
    StringHandle(u32),
    /// 0x1C, payload `token: u32`: a `TypeDef` or `TypeRef` token (0x02xxxxxx, 0x01xxxxxx) of
    /// the image's assembly, a reference type that `newobj` allocates, or a value type (also
    /// a `TypeSpec`, 0x1Bxxxxxx) that `box` boxes (the value then goes after the header,
    /// [`crate::abi::boxed`]). The code calls the
    /// runtime's allocation helper with the cell's address; the cell holds no value.
    NewObject(u32),
    /// 0x1D, payload `token: u32`: the element type's token (`TypeDef`, `TypeRef` or `TypeSpec`,
    /// 0x02xxxxxx, 0x01xxxxxx, 0x1Bxxxxxx) of the image's assembly, the operand of `newarr`.
    /// The code calls the runtime's array helper with the cell's address and the length; the
    /// cell holds no value.
    NewArray(u32),
    /// 0x1E, payload `token: u32`: the type token (`TypeDef`, `TypeRef` or `TypeSpec`) of the
    /// image's assembly that `isinst` tests against. The code calls the runtime's type-check
    /// helper with the object and the cell's address; the cell holds no value.
    IsInstanceOf(u32),
    /// 0x1F, payload `token: u32`: as `IsInstanceOf`, the type `castclass` casts to.
    ChkCast(u32),
    /// 0x20, payload `token: u32`: a `Field` or `MemberRef` token (0x04xxxxxx, 0x0Axxxxxx) of
    /// the image's assembly, a static field. The cell holds the field's address once resolved
    /// (0 before; lazy: resolved by the code on first use, through the embedder, which owns
    /// the statics and runs the class constructor it needs).
    FieldAddress(u32),
    /// 0x38, payload `flags: u32, token: u32, stub: u32` (the variant and the code
    /// reference of its resumption stub).
    ResumptionStubEntryPoint {
        /// The async variant the stub resumes.
        method: MethodRef,
        /// Code reference of the stub.
        stub: u32,
    },
    /// 0x39, payload `(UTF-8 string, NUL, code: u32)*` then `0x00`, sorted by string
    /// (ordinal).
    InjectStringThunks(Vec<StringThunk>),
}

impl FixupSignature {
    /// The fixup kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            FixupSignature::TypeHandle(_) => fixup_kind::TYPE_HANDLE,
            FixupSignature::FieldHandle(_) => fixup_kind::FIELD_HANDLE,
            FixupSignature::MethodEntry(_) => fixup_kind::METHOD_ENTRY,
            FixupSignature::VirtualEntry(_) => fixup_kind::VIRTUAL_ENTRY,
            FixupSignature::Helper(_) => fixup_kind::HELPER,
            FixupSignature::StringHandle(_) => fixup_kind::STRING_HANDLE,
            FixupSignature::NewObject(_) => fixup_kind::NEW_OBJECT,
            FixupSignature::NewArray(_) => fixup_kind::NEW_ARRAY,
            FixupSignature::IsInstanceOf(_) => fixup_kind::IS_INSTANCE_OF,
            FixupSignature::ChkCast(_) => fixup_kind::CHK_CAST,
            FixupSignature::FieldAddress(_) => fixup_kind::FIELD_ADDRESS,
            FixupSignature::ResumptionStubEntryPoint { .. } => {
                fixup_kind::RESUMPTION_STUB_ENTRY_POINT
            }
            FixupSignature::InjectStringThunks(_) => fixup_kind::INJECT_STRING_THUNKS,
        }
    }
}

/// One string-discoverable thunk: lookup string (`I...`/`M...`) and code reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StringThunk {
    /// Lookup string: non-empty, no NUL.
    pub key: String,
    /// Code reference (function-table index).
    pub code: u32,
}

/// One import cell: its initial contents and its fixup.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImportCell {
    /// Initial cell value (for a delay-load cell: the code reference of its import thunk;
    /// otherwise 0).
    pub initial: u32,
    /// What the runtime resolves the cell to.
    pub signature: FixupSignature,
}

/// An import section (ReadyToRun `READYTORUN_IMPORT_SECTION`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImportSection {
    /// Flags (`Eager`, `PCode`).
    pub flags: ImportSectionFlags,
    /// Type.
    pub kind: ImportSectionType,
    /// Cell size in bytes: 4 on wasm32, 8 on wasm64.
    pub entry_size: u8,
    /// The cells, with their signatures (the parallel signature list).
    pub cells: Vec<ImportCell>,
}

/// A fixup a method needs before it first runs: a cell of an import section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FixupRef {
    /// Index of the import section.
    pub section: u32,
    /// Index of the cell in it.
    pub cell: u32,
}

/// A method entry point: method, code reference, fixups.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MethodEntryPoint {
    /// The method (async variants carry [`MethodSigFlags::ASYNC_VARIANT`]).
    pub method: MethodRef,
    /// Code reference: function-table index of the compiled body (for an
    /// `UnmanagedCallersOnly` method, of its unmanaged-typed function).
    pub code: u32,
    /// Per-method fixup list (ReadyToRun's method fixup blob), resolved before first call.
    pub fixups: Vec<FixupRef>,
}

/// A whole image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Image {
    /// Minor version the image was written with (the major is always [`MAJOR_VERSION`]).
    pub minor_version: u16,
    /// The compiler that wrote it, if recorded.
    pub compiler: Option<String>,
    /// Import sections, in order (fixup references index them).
    pub import_sections: Vec<ImportSection>,
    /// `MethodDefEntryPoints`.
    pub method_entry_points: Vec<MethodEntryPoint>,
    /// `InstanceMethodEntryPoints` (async variants are listed here; resumption stubs are not:
    /// they are found through their fixup).
    pub instance_entry_points: Vec<MethodEntryPoint>,
}
