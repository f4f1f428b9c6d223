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
    /// The full signature as ILDasm writes it: `int32 Demo.Calc::Add(int32, int32)`.
    pub full_signature: String,
    /// `MethodAttributes`.
    pub flags: u16,
    /// `MethodImplAttributes` (runtime-async is 0x2000).
    pub impl_flags: u16,
    /// RVA of the IL body, 0 for none.
    pub rva: u32,
    /// Signature shape.
    pub signature: SignatureShape,
}

impl MethodDef {
    /// Whether the method has an IL body to compile.
    pub fn has_body(&self) -> bool {
        self.rva != 0
    }
}

pub use crossgraph_codegen::il::{IlInstruction, IlOperand};

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

impl AssemblyView<'_> {
    fn method_error(&self, token: u32, e: impl std::fmt::Display) -> TypeSystemError {
        TypeSystemError::Method {
            path: self.assembly.path.clone(),
            token,
            message: e.to_string(),
        }
    }

    /// Every method definition, in token order.
    ///
    /// # Errors
    /// [`TypeSystemError::Method`] naming the first method that cannot be decoded.
    pub fn methods(&self) -> Result<Vec<MethodDef>, TypeSystemError> {
        let names = Names::new(&self.metadata);
        let tables = self.metadata.tables();
        let mut methods = Vec::new();
        for (rid, row) in tables.iter::<MethodDefRow>() {
            let token = 0x0600_0000 | rid;
            let fail = |e: cildec::Error| self.method_error(token, e);
            let row = row.map_err(fail)?;
            let blob = self.metadata.blobs().get(row.signature).map_err(fail)?;
            let sig = MethodSig::parse(blob).map_err(fail)?;
            let method_name = self.metadata.strings().str_opt(row.name).unwrap_or("?");
            let owner = match tables.type_of_method(Rid::new(rid)).map_err(fail)? {
                Some(type_def) => names.type_def(type_def).map_err(fail)?,
                None => String::from("<Module>"),
            };
            methods.push(MethodDef {
                token,
                name: format!("{owner}::{method_name}"),
                full_signature: names.method_def_full(Rid::new(rid)).map_err(fail)?,
                flags: row.flags,
                impl_flags: row.impl_flags,
                rva: row.rva,
                signature: SignatureShape {
                    has_this: sig.has_this,
                    params: sig.params.iter().map(|p| names.param(p)).collect(),
                    ret: names.param(&sig.return_type),
                    generic_params: sig.calling_convention.generic_param_count(),
                },
            });
        }
        Ok(methods)
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
                other => other
                    .token()
                    .map_or(IlOperand::None, |t| IlOperand::Token(token_value(t))),
            };
            instructions.push(IlInstruction {
                offset: instruction.offset,
                opcode: instruction.opcode.name(),
                operand,
                prefixed: !folded.prefixes.is_empty(),
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
