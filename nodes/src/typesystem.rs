//! The type-system view of the input: ECMA-335 assemblies read with `cildec`.
//!
//! Why `cildec` (0.1, MIT, no dependencies): in a trial on this machine kind it loaded and
//! decoded all of Mono's mscorlib in about 20 ms and agreed instruction for instruction with a
//! second reader on 13 Mono assemblies; it is panic-free on hostile input (fuzzed). `dotscope`
//! 0.9 took about 0.4 s with validation off, rejected System.dll under its default validation
//! and returned varying instruction counts on mscorlib; `dotnetdll` is GPL-3.0.
//!
//! This first slice covers what the compiler reads first: methods (token, name, owner type,
//! flags, signature shape) and their IL bodies (instructions with decoded operands, local
//! types, exception clauses).
//! Field layout, custom attributes and cross-assembly resolution come next (issue "Compile
//! real .NET assemblies").

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cildec::tables::MethodDefRow;
use cildec::{
    HandlerKind, LocalVarSig, Metadata, MethodBody, MethodSig, Names, Operand, PeImage, Rid, Token,
};

/// The 32-bit metadata token.
fn token_value(token: Token) -> u32 {
    (u32::from(token.table_byte()) << 24) | token.rid()
}

/// Why an assembly or one of its items cannot be read. Each error names the file, and the
/// method token where one is involved.
#[derive(Debug, thiserror::Error)]
pub enum TypeSystemError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not a valid managed image.
    #[error("{path}: not a readable ECMA-335 image: {message}")]
    Image {
        /// The file.
        path: PathBuf,
        /// What `cildec` reported.
        message: String,
    },
    /// An item refers to an assembly that is not among the inputs and references.
    #[error(
        "{path}: {item} is defined in assembly {assembly}, which is not given (add it with -r)"
    )]
    MissingReference {
        /// The referencing file.
        path: PathBuf,
        /// The missing assembly's simple name.
        assembly: String,
        /// The item that needs it.
        item: String,
    },
    /// A token does not resolve to a definition.
    #[error("{path}: token 0x{token:08x}: {message}")]
    Unresolved {
        /// The file the token belongs to.
        path: PathBuf,
        /// The token (0 when the item is a signature element).
        token: u32,
        /// What is wrong.
        message: String,
    },
    /// A method's row, signature or body cannot be decoded.
    #[error("{path}: method 0x{token:08x}: {message}")]
    Method {
        /// The file.
        path: PathBuf,
        /// The method's token.
        token: u32,
        /// What is wrong.
        message: String,
    },
}

/// One loaded assembly. The bytes are kept; metadata is decoded lazily on each query (opening
/// an image only parses headers and the table directory).
#[derive(Clone, Debug)]
pub struct Assembly {
    path: PathBuf,
    bytes: Arc<[u8]>,
}

/// The shape of a method signature, as the ABI lowering needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureShape {
    /// Instance method (`HASTHIS`).
    pub has_this: bool,
    /// Parameter types, as `cildec` names them (e.g. `I4`, `Class(..)`).
    pub params: Vec<String>,
    /// Return type, likewise (`Void` for none).
    pub ret: String,
    /// Generic parameter count.
    pub generic_params: u32,
}

/// A method definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodDef {
    /// `MethodDef` token (0x06xxxxxx).
    pub token: u32,
    /// `Namespace.Type::Method` (nested types as `Outer/Inner`).
    pub name: String,
    /// `MethodAttributes`.
    pub flags: u16,
    /// `MethodImplAttributes` (runtime-async is 0x2000).
    pub impl_flags: u16,
    /// RVA of the IL body, 0 for none.
    pub rva: u32,
    /// Callable from outside the assembly: a public method of a type visible outside it.
    pub public_surface: bool,
    /// Marked `[UnmanagedCallersOnly]`.
    pub unmanaged_callers_only: Option<UnmanagedCallersOnly>,
}

/// What `[UnmanagedCallersOnly]` says about a method.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnmanagedCallersOnly {
    /// `EntryPoint = "..."`: the name native code uses (exported under it).
    pub entry_point: Option<String>,
}

/// The attribute's full name (crossgen2 matches it by name, not by assembly).
pub const UNMANAGED_CALLERS_ONLY_ATTRIBUTE: &str =
    "System.Runtime.InteropServices.UnmanagedCallersOnlyAttribute";

impl MethodDef {
    /// Whether the method has an IL body to compile.
    pub fn has_body(&self) -> bool {
        self.rva != 0
    }
}

pub use crossgraph_codegen::il::{IlInstruction, IlOperand, IlPrefixes};

/// What an exception clause does (ECMA-335 II.25.4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClauseKind {
    /// A typed catch of the class with this token.
    Catch {
        /// `TypeDef`, `TypeRef` or `TypeSpec` token of the caught class.
        class_token: u32,
    },
    /// A filtered catch whose filter starts at this IL offset.
    Filter {
        /// IL offset of the filter.
        filter_offset: u32,
    },
    /// `finally`.
    Finally,
    /// `fault`.
    Fault,
}

/// An exception clause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExceptionClause {
    /// Clause kind.
    pub kind: ClauseKind,
    /// Protected block, IL offsets `[start, end)`.
    pub try_range: (u32, u32),
    /// Handler, IL offsets `[start, end)`.
    pub handler_range: (u32, u32),
}

/// An IL method body.
#[derive(Clone, Debug, PartialEq)]
pub struct IlBody {
    /// `.maxstack`.
    pub max_stack: u16,
    /// Code size in bytes.
    pub code_size: usize,
    /// Local variable types (ILDasm spelling; `&` suffix for byref locals).
    pub locals: Vec<String>,
    /// Instructions in order, prefixes folded.
    pub instructions: Vec<IlInstruction>,
    /// Exception clauses.
    pub exception_clauses: Vec<ExceptionClause>,
}

/// A parsed view of an [`Assembly`]: parse once, query many times.
pub struct AssemblyView<'a> {
    assembly: &'a Assembly,
    image: PeImage<'a>,
    metadata: Metadata<'a>,
}

impl std::fmt::Debug for AssemblyView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssemblyView")
            .field("path", &self.assembly.path)
            .finish_non_exhaustive()
    }
}

impl Assembly {
    /// Reads an assembly from a file.
    ///
    /// # Errors
    /// [`TypeSystemError::Io`], or [`TypeSystemError::Image`] when it is not a managed image.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, TypeSystemError> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|source| TypeSystemError::Io {
            path: path.clone(),
            source,
        })?;
        let assembly = Assembly {
            path,
            bytes: bytes.into(),
        };
        assembly.view()?;
        Ok(assembly)
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Parses the image headers and metadata tables for queries.
    ///
    /// # Errors
    /// [`TypeSystemError::Image`].
    pub fn view(&self) -> Result<AssemblyView<'_>, TypeSystemError> {
        let image_error = |e: cildec::Error| TypeSystemError::Image {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let image = PeImage::parse(&self.bytes).map_err(image_error)?;
        let metadata = image.metadata().map_err(image_error)?;
        Ok(AssemblyView {
            assembly: self,
            image,
            metadata,
        })
    }
}

impl<'a> AssemblyView<'a> {
    /// The file this view reads.
    pub fn path(&self) -> &Path {
        &self.assembly.path
    }

    /// The PE image (for method bodies).
    pub fn image(&self) -> &PeImage<'a> {
        &self.image
    }

    /// The decoded metadata (for queries this view does not wrap).
    pub fn metadata(&self) -> &Metadata<'a> {
        &self.metadata
    }

    /// The UTF-16 code units of the string literal with user-string token `token`
    /// (0x70xxxxxx, an `ldstr` operand; ECMA-335 II.24.2.4), or `None` when the token is not
    /// a user-string token or the `#US` heap has no such entry.
    pub fn user_string(&self, token: u32) -> Option<Vec<u16>> {
        if token >> 24 != 0x70 {
            return None;
        }
        let entry = self
            .metadata
            .user_strings()
            .get(cildec::UserStringToken(token))
            .ok()?;
        Some(entry.code_units().collect())
    }

    /// A `#Strings` entry, `""` when the index is bad.
    pub fn string(&self, index: cildec::StringIndex) -> &'a str {
        self.metadata.strings().str_opt(index).unwrap_or("")
    }

    pub(crate) fn image_error(&self, e: impl std::fmt::Display) -> TypeSystemError {
        TypeSystemError::Image {
            path: self.assembly.path.clone(),
            message: e.to_string(),
        }
    }

    /// Whether the metadata item `parent` (a token of this assembly) carries a custom
    /// attribute of the type named `name` (`Namespace.Type`). Unreadable rows count as absent.
    pub fn has_attribute(&self, parent: u32, name: &str) -> bool {
        let tables = self.metadata.tables();
        let Ok(rows) = tables.custom_attributes(Token(parent)) else {
            return false;
        };
        rows.into_iter().any(|rid| {
            tables
                .row::<cildec::tables::CustomAttributeRow>(rid)
                .is_ok_and(|row| self.attribute_type_name(row.constructor).as_deref() == Some(name))
        })
    }

    /// The custom attribute type name of a `CustomAttributeType` constructor token.
    fn attribute_type_name(&self, constructor: Token) -> Option<String> {
        let names = Names::new(&self.metadata);
        let tables = self.metadata.tables();
        match constructor.table()? {
            cildec::TableId::MethodDef => {
                let owner = tables.type_of_method(Rid::new(constructor.rid())).ok()??;
                names.type_def(owner).ok()
            }
            cildec::TableId::MemberRef => {
                let row = tables.member_ref(constructor.rid()).ok()?;
                match row.class.table()? {
                    cildec::TableId::TypeRef => {
                        let r = tables.type_ref(row.class.rid()).ok()?;
                        let ns = self.string(r.type_namespace);
                        let n = self.string(r.type_name);
                        Some(if ns.is_empty() {
                            n.to_owned()
                        } else {
                            format!("{ns}.{n}")
                        })
                    }
                    cildec::TableId::TypeDef => names.type_def(Rid::new(row.class.rid())).ok(),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// `[UnmanagedCallersOnly]` methods of this assembly by `MethodDef` token, with their
    /// decoded arguments.
    ///
    /// # Errors
    /// [`TypeSystemError::Method`] naming the method whose attribute blob is malformed.
    pub fn unmanaged_callers_only(
        &self,
    ) -> Result<std::collections::HashMap<u32, UnmanagedCallersOnly>, TypeSystemError> {
        use rayon::prelude::*;
        const CHUNK: u32 = 1024;
        let tables = self.metadata.tables();
        let count = tables.row_count(cildec::TableId::CustomAttribute);
        // Every attribute row's constructor is named: in parallel chunks, in row order.
        let chunks: Vec<Result<Vec<(u32, UnmanagedCallersOnly)>, TypeSystemError>> = (0..count
            .div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                let mut found = Vec::new();
                for rid in c * CHUNK + 1..=((c + 1) * CHUNK).min(count) {
                    let Ok(row) = tables.row::<cildec::tables::CustomAttributeRow>(rid) else {
                        continue;
                    };
                    if let Some(uco) = self.unmanaged_callers_only_of(&row)? {
                        found.push(uco);
                    }
                }
                Ok(found)
            })
            .collect();
        let mut out = std::collections::HashMap::new();
        // The first error in row order, whatever the thread count.
        for chunk in chunks {
            out.extend(chunk?);
        }
        Ok(out)
    }

    /// The method and decoded `[UnmanagedCallersOnly]` of a custom attribute row, if it is one
    /// on a method.
    fn unmanaged_callers_only_of(
        &self,
        row: &cildec::tables::CustomAttributeRow,
    ) -> Result<Option<(u32, UnmanagedCallersOnly)>, TypeSystemError> {
        if row.parent.table() != Some(cildec::TableId::MethodDef) {
            return Ok(None);
        }
        if self.attribute_type_name(row.constructor).as_deref()
            != Some(UNMANAGED_CALLERS_ONLY_ATTRIBUTE)
        {
            return Ok(None);
        }
        let token = row.parent.value();
        let blob = self
            .metadata
            .blobs()
            .get(row.value)
            .map_err(|e| self.method_error(token, e))?;
        let decoded = crate::custom_attribute::decode(blob, &[])
            .map_err(|e| self.method_error(token, format!("[UnmanagedCallersOnly]: {e}")))?;
        let entry_point = match decoded.named("EntryPoint") {
            Some(crate::custom_attribute::AttributeValue::String(s)) => s.clone(),
            _ => None,
        };
        Ok(Some((token, UnmanagedCallersOnly { entry_point })))
    }

    /// Whether the type and all its enclosing types are public.
    fn type_is_public(&self, rid: u32) -> bool {
        let tables = self.metadata.tables();
        let mut current = rid;
        for _ in 0..64 {
            let Ok(row) = tables.type_def(current) else {
                return false;
            };
            match row.flags & 0x7 {
                1 => return true, // public (top level)
                2 => {}           // nested public
                _ => return false,
            }
            match tables.enclosing_type(Rid::new(current)) {
                Ok(Some(outer)) => current = outer.get(),
                _ => return false,
            }
        }
        false
    }

    fn method_error(&self, token: u32, e: impl std::fmt::Display) -> TypeSystemError {
        TypeSystemError::Method {
            path: self.assembly.path.clone(),
            token,
            message: e.to_string(),
        }
    }

    /// Every method definition, in token order. Runs on the current rayon pool (chunks of
    /// rows in parallel, results in token order).
    ///
    /// # Errors
    /// [`TypeSystemError::Method`] naming the first method that cannot be decoded.
    pub fn methods(&self) -> Result<Vec<MethodDef>, TypeSystemError> {
        use rayon::prelude::*;
        const CHUNK: u32 = 1024;
        let uco = self.unmanaged_callers_only()?;
        let count = self.metadata.tables().row_count(cildec::TableId::MethodDef);
        let chunks: Vec<Result<Vec<MethodDef>, TypeSystemError>> = (0..count.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                let names = Names::new(&self.metadata);
                // Methods of a type are contiguous: remember the last owner's name.
                let mut owner: Option<(u32, String, bool)> = None;
                (c * CHUNK + 1..=((c + 1) * CHUNK).min(count))
                    .map(|rid| self.method_def(rid, &names, &uco, &mut owner))
                    .collect()
            })
            .collect();
        let mut methods = Vec::with_capacity(count as usize);
        for chunk in chunks {
            methods.extend(chunk?);
        }
        Ok(methods)
    }

    /// The full signature of a method as ILDasm writes it:
    /// `int32 Demo.Calc::Add(int32, int32)` (built on demand: 27k of them cost more than
    /// reading the methods).
    ///
    /// # Errors
    /// [`TypeSystemError::Method`] when its metadata cannot be decoded.
    pub fn full_signature(&self, method: &MethodDef) -> Result<String, TypeSystemError> {
        Names::new(&self.metadata)
            .method_def_full(Rid::new(method.token & 0x00ff_ffff))
            .map_err(|e| self.method_error(method.token, e))
    }

    /// The shape of a method's signature, with ILDasm type names.
    ///
    /// # Errors
    /// [`TypeSystemError::Method`] when its signature cannot be decoded.
    pub fn signature_shape(&self, method: &MethodDef) -> Result<SignatureShape, TypeSystemError> {
        let fail = |e: cildec::Error| self.method_error(method.token, e);
        let row: MethodDefRow = self
            .metadata
            .tables()
            .row(method.token & 0x00ff_ffff)
            .map_err(fail)?;
        let blob = self.metadata.blobs().get(row.signature).map_err(fail)?;
        let sig = MethodSig::parse(blob).map_err(fail)?;
        let names = Names::new(&self.metadata);
        Ok(SignatureShape {
            has_this: sig.has_this,
            params: sig.params.iter().map(|p| names.param(p)).collect(),
            ret: names.param(&sig.return_type),
            generic_params: sig.calling_convention.generic_param_count(),
        })
    }

    fn method_def(
        &self,
        rid: u32,
        names: &Names<'_, '_>,
        uco: &std::collections::HashMap<u32, UnmanagedCallersOnly>,
        owner_cache: &mut Option<(u32, String, bool)>,
    ) -> Result<MethodDef, TypeSystemError> {
        let tables = self.metadata.tables();
        let token = 0x0600_0000 | rid;
        let fail = |e: cildec::Error| self.method_error(token, e);
        let row: MethodDefRow = tables.row(rid).map_err(fail)?;
        let method_name = self.metadata.strings().str_opt(row.name).unwrap_or("?");
        let (owner, public_type) = match tables.type_of_method(Rid::new(rid)).map_err(fail)? {
            Some(type_def) => match owner_cache {
                Some((cached, name, public)) if *cached == type_def.get() => {
                    (name.clone(), *public)
                }
                _ => {
                    let name = names.type_def(type_def).map_err(fail)?;
                    let public = self.type_is_public(type_def.get());
                    *owner_cache = Some((type_def.get(), name.clone(), public));
                    (name, public)
                }
            },
            None => (String::from("<Module>"), false),
        };
        Ok(MethodDef {
            token,
            name: format!("{owner}::{method_name}"),
            flags: row.flags,
            impl_flags: row.impl_flags,
            rva: row.rva,
            public_surface: row.flags & 0x7 == 6 && public_type,
            unmanaged_callers_only: uco.get(&token).cloned(),
        })
    }

    /// The IL body of the method with `token`, or `None` if it has none.
    ///
    /// # Errors
    /// [`TypeSystemError::Method`] when the token is not a method of this assembly or its body
    /// cannot be decoded.
    pub fn method_body(&self, token: u32) -> Result<Option<IlBody>, TypeSystemError> {
        if token >> 24 != 0x06 || token & 0x00ff_ffff == 0 {
            return Err(self.method_error(token, "not a MethodDef token"));
        }
        let fail = |e: cildec::Error| self.method_error(token, e);
        let row = self
            .metadata
            .tables()
            .method_def(token & 0x00ff_ffff)
            .map_err(fail)?;
        let Some(body) = MethodBody::from_image(&self.image, &row).map_err(fail)? else {
            return Ok(None);
        };
        let mut instructions = Vec::new();
        for folded in body.folded_instructions() {
            let folded = folded.map_err(fail)?;
            let instruction = &folded.instruction;
            let operand = match &instruction.operand {
                Operand::I8(v) => IlOperand::Int(i64::from(*v)),
                Operand::I32(v) => IlOperand::Int(i64::from(*v)),
                Operand::I64(v) => IlOperand::Int(*v),
                Operand::R32(v) => IlOperand::Float(f64::from(*v)),
                Operand::R64(v) => IlOperand::Float(*v),
                Operand::BranchTarget(t) => IlOperand::Branch(*t),
                Operand::Switch(targets) => IlOperand::Switch(targets.clone()),
                Operand::Var(v) => IlOperand::Var(*v),
                Operand::String(token) => IlOperand::Token(token.value()),
                other => other
                    .token()
                    .map_or(IlOperand::None, |t| IlOperand::Token(token_value(t))),
            };
            instructions.push(IlInstruction {
                // Branches and exception clauses land on the first prefix.
                offset: folded.first_offset,
                opcode: instruction.opcode.name(),
                operand,
                prefixes: IlPrefixes {
                    volatile: folded.prefixes.volatile,
                    unaligned: folded.prefixes.unaligned,
                    tail: folded.prefixes.tail,
                    constrained: folded.prefixes.constrained.map(token_value),
                    readonly: folded.prefixes.readonly,
                    other: !folded.prefixes.no.is_empty(),
                },
            });
        }
        let mut locals = Vec::new();
        if let Some(token) = body.local_var_sig {
            let names = Names::new(&self.metadata);
            let row = self
                .metadata
                .tables()
                .stand_alone_sig(token.rid())
                .map_err(fail)?;
            let blob = self.metadata.blobs().get(row.signature).map_err(fail)?;
            let sig = LocalVarSig::parse(blob).map_err(fail)?;
            for local in &sig.locals {
                let mut name = names.type_(&local.type_);
                if local.by_ref {
                    name.push('&');
                }
                locals.push(name);
            }
        }
        Ok(Some(IlBody {
            max_stack: body.max_stack,
            locals,
            code_size: body.code_size(),
            instructions,
            exception_clauses: body
                .exception_handlers
                .iter()
                .map(|h| ExceptionClause {
                    kind: match h.kind {
                        HandlerKind::Catch(class) => ClauseKind::Catch {
                            class_token: token_value(class),
                        },
                        HandlerKind::Filter { filter_offset } => {
                            ClauseKind::Filter { filter_offset }
                        }
                        HandlerKind::Finally => ClauseKind::Finally,
                        HandlerKind::Fault => ClauseKind::Fault,
                    },
                    try_range: (h.try_offset, h.try_end()),
                    handler_range: (h.handler_offset, h.handler_end()),
                })
                .collect(),
        }))
    }
}
