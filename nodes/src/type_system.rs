//! The assemblies of a compilation together: type and member references resolved across
//! them, field layout by the CLI rules (ECMA-335 II.10.1.2, II.10.7, II.22.8, II.22.16) and
//! ABI types for the wasm lowering.
//!
//! An input's references (`-r`) are only read, never compiled. A reference to an assembly
//! that is not in the set is [`TypeSystemError::MissingReference`], naming the referencing
//! file, the assembly and the item.

use std::sync::{Arc, OnceLock, RwLock};

use cildec::tables::{AssemblyRow, ClassLayoutRow, FieldRow, MemberRefRow, TypeDefRow, TypeRefRow};
use cildec::{FieldSig, MethodSig, Rid, TableId, Token, Type};
use crossgraph_codegen::abi::{AbiType, PointerKind, Primitive, StructLayout};
use crossgraph_codegen::{MethodAbi, PointerWidth};
use rustc_hash::FxHashMap;

use crate::typesystem::{AssemblyView, TypeSystemError};

/// A type definition: the assembly (index in the [`TypeSystem`]) and its `TypeDef` RID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TypeDefId {
    /// Index of the assembly in the type system.
    pub assembly: usize,
    /// `TypeDef` row (1-based).
    pub rid: u32,
}

/// A method definition somewhere in the type system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MethodDefId {
    /// Index of the assembly in the type system.
    pub assembly: usize,
    /// `MethodDef` token (0x06xxxxxx).
    pub token: u32,
}

/// How a type's fields are laid out (`TypeAttributes` layout mask 0x18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutKind {
    /// `auto` (0x00): laid out like sequential here (the runtime may reorder; the ABI of
    /// such structs is the runtime's to decide, and crossgraph's runtime keeps the order).
    Auto,
    /// `sequential` (0x08).
    Sequential,
    /// `explicit` (0x10): offsets from the `FieldLayout` table.
    Explicit,
}

/// One instance field in a [`TypeLayout`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldLayout {
    /// `Field` token (0x04xxxxxx).
    pub token: u32,
    /// Field name.
    pub name: String,
    /// Offset in bytes from the start of the value (value types) or of the object,
    /// method-table pointer included (reference types).
    pub offset: u32,
    /// The field's type.
    pub ty: AbiType,
}

/// The layout of a type's instances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeLayout {
    /// Layout kind.
    pub kind: LayoutKind,
    /// Value type (derives from `System.ValueType` or `System.Enum`).
    pub is_value_type: bool,
    /// Instance size in bytes, after `ClassSize` (value types: the value; reference types:
    /// the object including its method-table pointer).
    pub size: u32,
    /// Alignment in bytes.
    pub align: u32,
    /// Instance fields declared by this type (base-class fields excluded), in declaration
    /// order.
    pub fields: Vec<FieldLayout>,
}

/// How `constrained. T callvirt M` resolves ([`TypeSystem::constrained_target`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstrainedTarget {
    /// `T` is a reference type.
    Reference,
    /// `T` is a value type whose method implements `M`.
    Implemented(MethodDefId),
    /// `T` is a value type that does not implement `M`: the call goes to a box of it.
    Boxed,
}

/// A field reference, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedField {
    /// The owning type.
    pub owner: TypeDefId,
    /// `static`.
    pub is_static: bool,
    /// `[ThreadStatic]` (`System.ThreadStaticAttribute`): one instance per thread.
    pub is_thread_static: bool,
    /// Offset in bytes (instance fields; 0 for statics).
    pub offset: u32,
    /// The field's type.
    pub ty: AbiType,
}

/// The assemblies of one compilation: inputs first, then references.
pub struct TypeSystem<'v, 'a> {
    views: Vec<&'v AssemblyView<'a>>,
    names: Vec<String>,
    pointer: PointerWidth,
    /// Top-level type definitions by `(namespace, name)`, per assembly.
    type_index: Vec<OnceLock<FxHashMap<(String, String), u32>>>,
    /// Computed layouts per assembly, by `TypeDef` row: lock-free reads from every
    /// compiling thread (a race computes a layout twice and keeps the first).
    layouts: Vec<Vec<LayoutCell>>,
    /// Layouts of generic value types instantiated over these ABI types (`Nullable<int>`,
    /// `KeyValuePair<string, int>`), computed once each.
    instantiations: InstantiatedLayouts,
}

/// A type definition's layout, computed once (or why it cannot be laid out).
type LayoutCell = OnceLock<Result<Arc<TypeLayout>, String>>;

/// Instantiated layouts by generic type definition and ABI types of the type arguments.
type InstantiatedLayouts =
    RwLock<FxHashMap<(TypeDefId, Vec<AbiType>), Result<Arc<TypeLayout>, String>>>;

/// What the generic parameters of a signature stand for: the ABI types of the enclosing
/// type's arguments (`!0`, `!1`, ...) and of the method's (`!!0`, `!!1`, ...).
#[derive(Clone, Copy, Debug, Default)]
pub struct Instantiation<'g> {
    /// The type's arguments.
    pub types: &'g [AbiType],
    /// The method's arguments.
    pub methods: &'g [AbiType],
}

impl std::fmt::Debug for TypeSystem<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypeSystem")
            .field("assemblies", &self.names)
            .finish_non_exhaustive()
    }
}

const MAX_DEPTH: u32 = 64;

fn primitive_by_name(namespace: &str, name: &str) -> Option<AbiType> {
    if namespace != "System" {
        return None;
    }
    Some(match name {
        "Boolean" => AbiType::Primitive(Primitive::Bool),
        "Char" => AbiType::Primitive(Primitive::Char),
        "SByte" => AbiType::Primitive(Primitive::I8),
        "Byte" => AbiType::Primitive(Primitive::U8),
        "Int16" => AbiType::Primitive(Primitive::I16),
        "UInt16" => AbiType::Primitive(Primitive::U16),
        "Int32" => AbiType::Primitive(Primitive::I32),
        "UInt32" => AbiType::Primitive(Primitive::U32),
        "Int64" => AbiType::Primitive(Primitive::I64),
        "UInt64" => AbiType::Primitive(Primitive::U64),
        "Single" => AbiType::Primitive(Primitive::F32),
        "Double" => AbiType::Primitive(Primitive::F64),
        "IntPtr" => AbiType::Pointer(PointerKind::NativeInt),
        "UIntPtr" => AbiType::Pointer(PointerKind::NativeUInt),
        _ => return None,
    })
}

fn align_of(ty: &AbiType, pointer: PointerWidth) -> u32 {
    match ty {
        AbiType::Struct(s) => s.align,
        AbiType::Vector128 => 16,
        other => other.size(pointer).max(1),
    }
}

fn align_up(value: u32, align: u32) -> u32 {
    value.div_ceil(align.max(1)) * align.max(1)
}

impl<'v, 'a> TypeSystem<'v, 'a> {
    /// A type system over `views` (the inputs first, then references), for wasm32.
    ///
    /// # Errors
    /// [`TypeSystemError::Image`] when an assembly has no readable `Assembly` row.
    pub fn new(views: Vec<&'v AssemblyView<'a>>) -> Result<Self, TypeSystemError> {
        let mut names = Vec::with_capacity(views.len());
        for view in &views {
            let row = view
                .metadata()
                .tables()
                .iter::<AssemblyRow>()
                .next()
                .map(|(_, r)| r)
                .transpose()
                .map_err(|e| view.image_error(e))?
                .ok_or_else(|| view.image_error("no Assembly row: a module, not an assembly"))?;
            names.push(view.string(row.name).to_owned());
        }
        let type_index = views.iter().map(|_| OnceLock::new()).collect();
        let layouts = views
            .iter()
            .map(|view| {
                let rows = view.metadata().tables().row_count(TableId::TypeDef);
                (0..=rows).map(|_| OnceLock::new()).collect()
            })
            .collect();
        Ok(TypeSystem {
            views,
            names,
            pointer: PointerWidth::Wasm32,
            type_index,
            layouts,
            instantiations: RwLock::new(FxHashMap::default()),
        })
    }

    /// The view of assembly `index`.
    ///
    /// # Panics
    /// When `index` is out of range.
    pub fn view(&self, index: usize) -> &'v AssemblyView<'a> {
        self.views[index]
    }

    /// The simple name of assembly `index` (`mscorlib`).
    ///
    /// # Panics
    /// When `index` is out of range.
    pub fn assembly_name(&self, index: usize) -> &str {
        &self.names[index]
    }

    /// Number of assemblies.
    pub fn len(&self) -> usize {
        self.views.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }

    fn unresolved(
        &self,
        assembly: usize,
        token: u32,
        message: impl std::fmt::Display,
    ) -> TypeSystemError {
        TypeSystemError::Unresolved {
            path: self.views[assembly].path().to_path_buf(),
            token,
            message: message.to_string(),
        }
    }

    fn type_def_row(&self, id: TypeDefId) -> Result<TypeDefRow, TypeSystemError> {
        self.views[id.assembly]
            .metadata()
            .tables()
            .type_def(id.rid)
            .map_err(|e| self.unresolved(id.assembly, 0x0200_0000 | id.rid, e))
    }

    /// `(namespace, name)` of a type definition (nested types: the outer's namespace).
    ///
    /// # Errors
    /// [`TypeSystemError::Unresolved`] for a bad row.
    pub fn type_name(&self, id: TypeDefId) -> Result<String, TypeSystemError> {
        let view = self.views[id.assembly];
        cildec::Names::new(view.metadata())
            .type_def(Rid::new(id.rid))
            .map_err(|e| self.unresolved(id.assembly, 0x0200_0000 | id.rid, e))
    }

    fn find_type(&self, assembly: usize, namespace: &str, name: &str) -> Option<u32> {
        let index = self.type_index[assembly].get_or_init(|| {
            let view = self.views[assembly];
            let tables = view.metadata().tables();
            let mut map = FxHashMap::default();
            for (rid, row) in tables.iter::<TypeDefRow>() {
                let Ok(row) = row else { continue };
                // Nested types are found through their enclosing type.
                if matches!(tables.enclosing_type(Rid::new(rid)), Ok(Some(_))) {
                    continue;
                }
                map.insert(
                    (
                        view.string(row.type_namespace).to_owned(),
                        view.string(row.type_name).to_owned(),
                    ),
                    rid,
                );
            }
            map
        });
        index.get(&(namespace.to_owned(), name.to_owned())).copied()
    }

    fn assembly_by_name(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n.eq_ignore_ascii_case(name))
    }

    /// Resolves a `TypeDef` or `TypeRef` token of `assembly` to its definition.
    ///
    /// # Errors
    /// [`TypeSystemError::MissingReference`] when the defining assembly is not in the set;
    /// [`TypeSystemError::Unresolved`] when it does not define the type (or the token is a
    /// `TypeSpec`, a generic instantiation).
    pub fn resolve_type(
        &self,
        assembly: usize,
        token: Token,
    ) -> Result<TypeDefId, TypeSystemError> {
        self.resolve_type_depth(assembly, token, 0)
    }

    fn resolve_type_depth(
        &self,
        assembly: usize,
        token: Token,
        depth: u32,
    ) -> Result<TypeDefId, TypeSystemError> {
        let fail = |m: &dyn std::fmt::Display| self.unresolved(assembly, token.value(), m);
        if depth > MAX_DEPTH {
            return Err(fail(&"type reference chain too deep"));
        }
        match token.table() {
            Some(TableId::TypeDef) if !token.is_null() => Ok(TypeDefId {
                assembly,
                rid: token.rid(),
            }),
            Some(TableId::TypeRef) if !token.is_null() => {
                let view = self.views[assembly];
                let tables = view.metadata().tables();
                let row: TypeRefRow = tables.type_ref(token.rid()).map_err(|e| fail(&e))?;
                let namespace = view.string(row.type_namespace);
                let name = view.string(row.type_name);
                let scope = row.resolution_scope;
                match scope.table() {
                    Some(TableId::AssemblyRef) => {
                        let aref = tables.assembly_ref(scope.rid()).map_err(|e| fail(&e))?;
                        let target_name = view.string(aref.name);
                        let target = self.assembly_by_name(target_name).ok_or_else(|| {
                            TypeSystemError::MissingReference {
                                path: view.path().to_path_buf(),
                                assembly: target_name.to_owned(),
                                item: format!("{namespace}.{name}"),
                            }
                        })?;
                        self.find_type(target, namespace, name)
                            .map(|rid| TypeDefId {
                                assembly: target,
                                rid,
                            })
                            .ok_or_else(|| {
                                fail(&format!(
                                    "{target_name} defines no type {namespace}.{name} \
                                     (forwarded types are not followed)"
                                ))
                            })
                    }
                    Some(TableId::TypeRef) => {
                        let outer = self.resolve_type_depth(assembly, scope, depth + 1)?;
                        self.nested_type(outer, name)
                            .ok_or_else(|| fail(&format!("no nested type {name}")))
                    }
                    Some(TableId::Module) => self
                        .find_type(assembly, namespace, name)
                        .map(|rid| TypeDefId { assembly, rid })
                        .ok_or_else(|| fail(&format!("no type {namespace}.{name}"))),
                    _ => Err(fail(&"resolution scope is a module reference")),
                }
            }
            _ => Err(fail(
                &"not a TypeDef or TypeRef (generic instantiations are not resolved)",
            )),
        }
    }

    /// The generic definition and the ABI types of the type arguments of the `TypeSpec`
    /// `spec` of `assembly`, a generic instantiation (`List<int>`: `List<T>`, `[i32]`).
    ///
    /// # Errors
    /// A `TypeSpec` that is not a generic instantiation; resolution failures.
    fn generic_parent(
        &self,
        assembly: usize,
        spec: Token,
    ) -> Result<(TypeDefId, Vec<AbiType>), TypeSystemError> {
        let view = self.views[assembly];
        let fail = |e: &dyn std::fmt::Display| self.unresolved(assembly, spec.value(), e);
        let row = view
            .metadata()
            .tables()
            .type_spec(spec.rid())
            .map_err(|e| fail(&e))?;
        let blob = view
            .metadata()
            .blobs()
            .get(row.signature)
            .map_err(|e| fail(&e))?;
        let sig = cildec::TypeSpecSig::parse(blob).map_err(|e| fail(&e))?;
        let Type::GenericInst { def, args, .. } = &sig.type_ else {
            return Err(fail(&"a TypeSpec that is not a generic instantiation"));
        };
        let def = self.resolve_type(assembly, *def)?;
        let args = args
            .iter()
            .map(|a| self.abi_type(assembly, a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((def, args))
    }

    /// How `constrained. constraint callvirt method` (tokens of `assembly`) calls
    /// (ECMA-335 III.2.1): a reference type's method is called virtually; a value type's own
    /// implementation of `method` (an explicit one from its `MethodImpl` rows, or a virtual
    /// method of the same name and signature) directly; otherwise a box of the value.
    ///
    /// # Errors
    /// Resolution failures; a generic constraint (`TypeSpec`); a generic interface method on a
    /// value type without an explicit implementation (matching it needs the instantiation).
    pub fn constrained_target(
        &self,
        assembly: usize,
        constraint: Token,
        method: u32,
    ) -> Result<ConstrainedTarget, TypeSystemError> {
        const VIRTUAL: u16 = 0x0040;
        let t = self.resolve_type(assembly, constraint)?;
        if !self.is_value_type(t)? {
            return Ok(ConstrainedTarget::Reference);
        }
        let declared = self.resolve_method(assembly, method)?;
        let view = self.views[t.assembly];
        let tables = view.metadata().tables();
        let fail = |e: &dyn std::fmt::Display| self.unresolved(assembly, method, e);
        // An explicit implementation (`MethodImpl`) of the declaration.
        for rid in tables.method_impls(Rid::new(t.rid)).map_err(|e| fail(&e))? {
            let row = tables.method_impl(rid).map_err(|e| fail(&e))?;
            let declaration = row.method_declaration.value();
            let same = match declaration >> 24 {
                0x06 => {
                    declared
                        == MethodDefId {
                            assembly: t.assembly,
                            token: declaration,
                        }
                }
                _ => self
                    .resolve_method(t.assembly, declaration)
                    .is_ok_and(|d| d == declared),
            };
            let body = row.method_body.value();
            if same && body >> 24 == 0x06 {
                return Ok(ConstrainedTarget::Implemented(MethodDefId {
                    assembly: t.assembly,
                    token: body,
                }));
            }
        }
        if !self.member_ref_type_args(assembly, method)?.is_empty() {
            return Err(fail(&"a generic interface method on a value type"));
        }
        // An implicit one: a virtual method of the same name and signature.
        let declared_view = self.views[declared.assembly];
        let row = declared_view
            .metadata()
            .tables()
            .method_def(declared.token & 0x00ff_ffff)
            .map_err(|e| fail(&e))?;
        let name = declared_view.string(row.name);
        let wanted = self.signature_key(
            declared.assembly,
            &self.method_sig(declared.assembly, declared.token)?,
        );
        let range = tables.method_range(Rid::new(t.rid)).map_err(|e| fail(&e))?;
        for rid in range {
            let Ok(rid) = tables.resolve_indirection(TableId::MethodDef, rid) else {
                continue;
            };
            let Ok(m) = tables.method_def(rid) else {
                continue;
            };
            if m.flags & VIRTUAL == 0 || view.string(m.name) != name {
                continue;
            }
            let token = 0x0600_0000 | rid;
            if self.signature_key(t.assembly, &self.method_sig(t.assembly, token)?) == wanted {
                return Ok(ConstrainedTarget::Implemented(MethodDefId {
                    assembly: t.assembly,
                    token,
                }));
            }
        }
        Ok(ConstrainedTarget::Boxed)
    }

    /// The `MethodSpec` `token` of `assembly` (a generic method instantiation): the method it
    /// instantiates (a `MethodDef` or `MemberRef` token) and the ABI types of its arguments.
    ///
    /// # Errors
    /// Unreadable rows or signatures; resolution failures of the arguments.
    pub fn method_spec(
        &self,
        assembly: usize,
        token: u32,
    ) -> Result<(u32, Vec<AbiType>), TypeSystemError> {
        let view = self.views[assembly];
        let fail = |e: &dyn std::fmt::Display| self.unresolved(assembly, token, e);
        if token >> 24 != 0x2b {
            return Err(fail(&"not a MethodSpec"));
        }
        let row = view
            .metadata()
            .tables()
            .method_spec(token & 0x00ff_ffff)
            .map_err(|e| fail(&e))?;
        let blob = view
            .metadata()
            .blobs()
            .get(row.instantiation)
            .map_err(|e| fail(&e))?;
        let sig = cildec::MethodSpecSig::parse(blob).map_err(|e| fail(&e))?;
        let args = sig
            .args
            .iter()
            .map(|a| self.abi_type(assembly, a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((row.method.value(), args))
    }

    /// The ABI types of the type arguments of the parent of the `MemberRef` `token` of
    /// `assembly` when it is a generic instantiation (`List<int>::Add`: `[i32]`); empty for
    /// any other parent.
    ///
    /// # Errors
    /// Resolution failures of the instantiation.
    pub fn member_ref_type_args(
        &self,
        assembly: usize,
        token: u32,
    ) -> Result<Vec<AbiType>, TypeSystemError> {
        if token >> 24 != 0x0a {
            return Ok(Vec::new());
        }
        let row: MemberRefRow = self.views[assembly]
            .metadata()
            .tables()
            .member_ref(token & 0x00ff_ffff)
            .map_err(|e| self.unresolved(assembly, token, e))?;
        match row.class.table() {
            Some(TableId::TypeSpec) => Ok(self.generic_parent(assembly, row.class)?.1),
            _ => Ok(Vec::new()),
        }
    }

    fn nested_type(&self, outer: TypeDefId, name: &str) -> Option<TypeDefId> {
        let view = self.views[outer.assembly];
        let tables = view.metadata().tables();
        let nested = tables.nested_types(Rid::new(outer.rid)).ok()?;
        nested.into_iter().find_map(|rid| {
            let row: TypeDefRow = tables.type_def(rid).ok()?;
            (view.string(row.type_name) == name).then_some(TypeDefId {
                assembly: outer.assembly,
                rid,
            })
        })
    }

    fn base_of(&self, id: TypeDefId) -> Result<Option<TypeDefId>, TypeSystemError> {
        let row = self.type_def_row(id)?;
        if row.extends.is_null() {
            return Ok(None);
        }
        self.resolve_type(id.assembly, row.extends).map(Some)
    }

    /// `(namespace, name)` of a type definition's row.
    fn row_name(&self, id: TypeDefId) -> Result<(String, String), TypeSystemError> {
        let row = self.type_def_row(id)?;
        let view = self.views[id.assembly];
        Ok((
            view.string(row.type_namespace).to_owned(),
            view.string(row.type_name).to_owned(),
        ))
    }

    /// The ABI type of a type definition used as a value (a field, parameter or local).
    ///
    /// # Errors
    /// Resolution failures, and layout failures of value types.
    pub fn abi_of_def(&self, id: TypeDefId) -> Result<AbiType, TypeSystemError> {
        let (namespace, name) = self.row_name(id)?;
        if let Some(p) = primitive_by_name(&namespace, &name) {
            return Ok(p);
        }
        let layout = self.layout(id)?;
        if !layout.is_value_type {
            return Ok(AbiType::Pointer(PointerKind::ObjectRef));
        }
        // An enum is its underlying integer (its one instance field, `value__`).
        if self.is_enum(id)? {
            if let [field] = layout.fields.as_slice() {
                return Ok(field.ty.clone());
            }
            return Err(self.unresolved(
                id.assembly,
                0x0200_0000 | id.rid,
                "enum without exactly one instance field",
            ));
        }
        Ok(AbiType::Struct(StructLayout {
            size: layout.size,
            align: layout.align,
            fields: layout.fields.iter().map(|f| f.ty.clone()).collect(),
        }))
    }

    /// Whether `newobj` can allocate `id` as a plain object and run a constructor on it: a
    /// class (`TypeAttributes`: not an interface 0x20, not abstract 0x80; not a value type)
    /// that is not `System.String` (its constructors make the string from their arguments).
    /// A delegate is one: its constructor is provided by the runtime (the embedder runs it,
    /// given the target and the function pointer, a portable entry point's address).
    /// Otherwise the reason.
    ///
    /// # Errors
    /// The reason, as text (for a method's not-compiled record).
    pub fn plain_class(&self, id: TypeDefId) -> Result<(), String> {
        let row = self.type_def_row(id).map_err(|e| e.to_string())?;
        if row.flags & 0x20 != 0 {
            return Err("newobj of an interface".into());
        }
        if row.flags & 0x80 != 0 {
            return Err("newobj of an abstract class".into());
        }
        if self.is_value_type(id).map_err(|e| e.to_string())? {
            return Err("newobj of a value type (constructed in place)".into());
        }
        let mut class = Some(id);
        while let Some(c) = class {
            match self.row_name(c).map_err(|e| e.to_string())? {
                (ns, n) if ns == "System" && n == "String" => {
                    return Err("newobj of System.String (made from its arguments)".into());
                }
                _ => {}
            }
            class = self.base_of(c).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Whether `id` is a value type (derives from `System.ValueType` or `System.Enum`, and is
    /// not `System.Enum` itself), without laying it out.
    fn is_value_type(&self, id: TypeDefId) -> Result<bool, TypeSystemError> {
        let base = match self.base_of(id)? {
            Some(b) => self.row_name(b)?,
            None => return Ok(false),
        };
        Ok(base.0 == "System"
            && (base.1 == "ValueType" || base.1 == "Enum")
            && self.row_name(id)? != ("System".into(), "Enum".into()))
    }

    fn is_enum(&self, id: TypeDefId) -> Result<bool, TypeSystemError> {
        Ok(match self.base_of(id)? {
            Some(base) => self.row_name(base)? == ("System".into(), "Enum".into()),
            None => false,
        })
    }

    /// The ABI type of a signature type in `assembly`.
    ///
    /// # Errors
    /// [`TypeSystemError::Unresolved`] for generic parameters, typed references and other
    /// shapes without a fixed ABI here; resolution failures. A generic value type instantiated
    /// over concrete types (`Nullable<int>`) is laid out over its type arguments.
    pub fn abi_type(&self, assembly: usize, ty: &Type<'_>) -> Result<AbiType, TypeSystemError> {
        self.abi_type_in(assembly, ty, Instantiation::default(), 0)
    }

    /// [`TypeSystem::abi_type`] inside an instantiation (what `!0` and `!!0` stand for).
    fn abi_type_in(
        &self,
        assembly: usize,
        ty: &Type<'_>,
        inst: Instantiation<'_>,
        depth: u32,
    ) -> Result<AbiType, TypeSystemError> {
        let unsupported =
            |what: &str| self.unresolved(assembly, 0, format!("{what} has no ABI type here"));
        Ok(match ty {
            Type::Void => AbiType::Void,
            Type::Boolean => AbiType::Primitive(Primitive::Bool),
            Type::Char => AbiType::Primitive(Primitive::Char),
            Type::I1 => AbiType::Primitive(Primitive::I8),
            Type::U1 => AbiType::Primitive(Primitive::U8),
            Type::I2 => AbiType::Primitive(Primitive::I16),
            Type::U2 => AbiType::Primitive(Primitive::U16),
            Type::I4 => AbiType::Primitive(Primitive::I32),
            Type::U4 => AbiType::Primitive(Primitive::U32),
            Type::I8 => AbiType::Primitive(Primitive::I64),
            Type::U8 => AbiType::Primitive(Primitive::U64),
            Type::R4 => AbiType::Primitive(Primitive::F32),
            Type::R8 => AbiType::Primitive(Primitive::F64),
            Type::IntPtr => AbiType::Pointer(PointerKind::NativeInt),
            Type::UIntPtr => AbiType::Pointer(PointerKind::NativeUInt),
            Type::String | Type::Object | Type::Class(_) | Type::SzArray(..) | Type::Array(..) => {
                AbiType::Pointer(PointerKind::ObjectRef)
            }
            Type::GenericInst {
                is_value_type: false,
                ..
            } => AbiType::Pointer(PointerKind::ObjectRef),
            Type::Ptr(..) => AbiType::Pointer(PointerKind::Pointer),
            Type::ByRef(_) => AbiType::Pointer(PointerKind::ByRef),
            Type::FnPtr(_) => AbiType::Pointer(PointerKind::FunctionPointer),
            Type::ValueType(token) => {
                let id = self.resolve_type(assembly, *token)?;
                self.abi_of_def(id)?
            }
            Type::Modified(_, inner) | Type::Pinned(inner) => {
                self.abi_type_in(assembly, inner, inst, depth)?
            }
            // A generic value type over these arguments: its fields with the arguments' ABI
            // types substituted, laid out by the same rules.
            Type::GenericInst { def, args, .. } => {
                if depth > MAX_DEPTH {
                    return Err(unsupported("a generic instantiation nested too deep"));
                }
                let id = self.resolve_type(assembly, *def)?;
                let args = args
                    .iter()
                    .map(|a| self.abi_type_in(assembly, a, inst, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                let layout = self.instantiated_layout(id, args, depth + 1)?;
                if !layout.is_value_type {
                    return Ok(AbiType::Pointer(PointerKind::ObjectRef));
                }
                AbiType::Struct(StructLayout {
                    size: layout.size,
                    align: layout.align,
                    fields: layout.fields.iter().map(|f| f.ty.clone()).collect(),
                })
            }
            Type::Var(i) if (*i as usize) < inst.types.len() => inst.types[*i as usize].clone(),
            Type::MVar(i) if (*i as usize) < inst.methods.len() => {
                inst.methods[*i as usize].clone()
            }
            Type::Var(_) | Type::MVar(_) => return Err(unsupported("a generic parameter")),
            Type::TypedByRef => return Err(unsupported("TypedReference")),
            _ => return Err(unsupported("this signature element")),
        })
    }

    /// The ABI shape of a method signature in `assembly` (`unmanaged` for an
    /// `UnmanagedCallersOnly` method or an unmanaged calling convention).
    ///
    /// # Errors
    /// As [`TypeSystem::abi_type`], naming the parameter; generic methods.
    pub fn method_abi(
        &self,
        assembly: usize,
        sig: &MethodSig<'_>,
        unmanaged: bool,
    ) -> Result<MethodAbi, TypeSystemError> {
        self.method_abi_in(assembly, sig, unmanaged, Instantiation::default())
    }

    /// [`TypeSystem::method_abi`] of an instantiated method: of a generic type instantiated
    /// over `inst.types` (see [`TypeSystem::member_ref_type_args`]), a generic method over
    /// `inst.methods` (see [`TypeSystem::method_spec`]).
    ///
    /// # Errors
    /// As [`TypeSystem::method_abi`]; a generic method given another number of arguments.
    pub fn method_abi_in(
        &self,
        assembly: usize,
        sig: &MethodSig<'_>,
        unmanaged: bool,
        inst: Instantiation<'_>,
    ) -> Result<MethodAbi, TypeSystemError> {
        let generic_params = sig.calling_convention.generic_param_count() as usize;
        if generic_params != inst.methods.len() {
            return Err(self.unresolved(assembly, 0, "generic method (needs instantiation)"));
        }
        if !sig.vararg_params.is_empty() {
            return Err(self.unresolved(assembly, 0, "vararg method"));
        }
        let param = |p: &cildec::Param<'_>| -> Result<AbiType, TypeSystemError> {
            if p.by_ref {
                Ok(AbiType::Pointer(PointerKind::ByRef))
            } else {
                self.abi_type_in(assembly, &p.type_, inst, 0)
            }
        };
        Ok(MethodAbi {
            ret: param(&sig.return_type)?,
            has_this: sig.has_this && !unmanaged,
            params: sig.params.iter().map(param).collect::<Result<_, _>>()?,
            generic_context: false,
            async_call: false,
            unmanaged: unmanaged || sig.calling_convention.is_unmanaged(),
        })
    }

    /// The instance layout of a type definition (computed once, shared).
    ///
    /// # Errors
    /// Resolution failures of field types; a value type that contains itself.
    pub fn layout(&self, id: TypeDefId) -> Result<Arc<TypeLayout>, TypeSystemError> {
        self.layout_depth(id, 0)
    }

    /// The instance layout of generic type `id` instantiated over the ABI types `args`
    /// (cached).
    fn instantiated_layout(
        &self,
        id: TypeDefId,
        args: Vec<AbiType>,
        depth: u32,
    ) -> Result<Arc<TypeLayout>, TypeSystemError> {
        let key = (id, args);
        let known = self
            .instantiations
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let result = match known {
            Some(known) => known,
            // Computed outside the lock: field types may instantiate other generics.
            None => {
                let computed = self
                    .compute_layout(id, &key.1, depth)
                    .map(Arc::new)
                    .map_err(|e| e.to_string());
                self.instantiations
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(key)
                    .or_insert(computed)
                    .clone()
            }
        };
        result.map_err(|m| self.unresolved(id.assembly, 0x0200_0000 | id.rid, m))
    }

    fn layout_depth(&self, id: TypeDefId, depth: u32) -> Result<Arc<TypeLayout>, TypeSystemError> {
        let cell = self
            .layouts
            .get(id.assembly)
            .and_then(|rows| rows.get(id.rid as usize));
        if let Some(known) = cell.and_then(OnceLock::get) {
            return known
                .clone()
                .map_err(|m| self.unresolved(id.assembly, 0x0200_0000 | id.rid, m));
        }
        // Computed outside the cell (not `get_or_init`): a value type that contains itself
        // recurses here and must hit the depth limit, not block on its own cell.
        let result = self.compute_layout(id, &[], depth).map(Arc::new);
        if let Some(cell) = cell {
            let _ = cell.set(result.as_ref().map_err(|e| e.to_string()).cloned());
        }
        result
    }

    fn compute_layout(
        &self,
        id: TypeDefId,
        type_args: &[AbiType],
        depth: u32,
    ) -> Result<TypeLayout, TypeSystemError> {
        let token = 0x0200_0000 | id.rid;
        if depth > MAX_DEPTH {
            return Err(self.unresolved(
                id.assembly,
                token,
                "value type nesting too deep (a cycle?)",
            ));
        }
        let view = self.views[id.assembly];
        let tables = view.metadata().tables();
        let row = self.type_def_row(id)?;
        let fail = |e: &dyn std::fmt::Display| self.unresolved(id.assembly, token, e);
        let kind = match row.flags & 0x18 {
            0x08 => LayoutKind::Sequential,
            0x10 => LayoutKind::Explicit,
            _ => LayoutKind::Auto,
        };
        let base = self.base_of(id)?;
        let is_value_type = self.is_value_type(id)?;
        // Reference types start after their base's fields (System.Object: the method-table
        // pointer).
        let pointer_size = self.pointer.size();
        let (mut offset, mut align) = if is_value_type {
            (0, 1)
        } else {
            match base {
                Some(b) => {
                    let l = self.layout_depth(b, depth + 1)?;
                    (l.size, l.align)
                }
                None => (pointer_size, pointer_size),
            }
        };
        let class_layout: Option<ClassLayoutRow> = tables
            .class_layout_of(Rid::new(id.rid))
            .map_err(|e| fail(&e))?;
        let packing = class_layout.map_or(0, |c| u32::from(c.packing_size));
        let range = tables.field_range(Rid::new(id.rid)).map_err(|e| fail(&e))?;
        let mut fields = Vec::new();
        let mut end = offset;
        for field_rid in range {
            let field_rid = tables
                .resolve_indirection(TableId::Field, field_rid)
                .map_err(|e| fail(&e))?;
            let field: FieldRow = tables.field(field_rid).map_err(|e| fail(&e))?;
            if field.flags & 0x0010 != 0 {
                continue; // static
            }
            let name = view.string(field.name).to_owned();
            let blob = view
                .metadata()
                .blobs()
                .get(field.signature)
                .map_err(|e| fail(&e))?;
            let sig = FieldSig::parse(blob).map_err(|e| fail(&e))?;
            let ty = match &sig.type_ {
                Type::ValueType(t) => {
                    let inner = self.resolve_type(id.assembly, *t)?;
                    if inner == id {
                        return Err(fail(&format!("field {name} contains its own type")));
                    }
                    let (ns, n) = self.row_name(inner)?;
                    match primitive_by_name(&ns, &n) {
                        Some(p) => p,
                        None => {
                            self.layout_depth(inner, depth + 1)?;
                            self.abi_of_def(inner)?
                        }
                    }
                }
                other => self.abi_type_in(
                    id.assembly,
                    other,
                    Instantiation {
                        types: type_args,
                        methods: &[],
                    },
                    depth + 1,
                )?,
            };
            let size = ty.size(self.pointer);
            let mut field_align = align_of(&ty, self.pointer);
            if packing > 0 {
                field_align = field_align.min(packing);
            }
            let at = match kind {
                LayoutKind::Explicit => {
                    tables
                        .field_layout_of(Rid::new(field_rid))
                        .map_err(|e| fail(&e))?
                        .ok_or_else(|| {
                            fail(&format!("explicit layout without an offset for {name}"))
                        })?
                        + if is_value_type { 0 } else { offset }
                }
                _ => align_up(end, field_align),
            };
            end = end.max(at + size);
            align = align.max(field_align);
            fields.push(FieldLayout {
                token: 0x0400_0000 | field_rid,
                name,
                offset: at,
                ty,
            });
        }
        offset = end;
        let mut size = if is_value_type {
            // An empty value type still occupies one byte (II.10.7, CoreCLR).
            align_up(offset.max(1), align)
        } else {
            align_up(offset, align)
        };
        if let Some(c) = class_layout
            && c.class_size > size
        {
            size = c.class_size;
        }
        Ok(TypeLayout {
            kind,
            is_value_type,
            size,
            align,
            fields,
        })
    }

    /// Resolves a `Field` or field `MemberRef` token of `assembly`.
    ///
    /// # Errors
    /// Resolution failures; a token that is neither.
    pub fn resolve_field(
        &self,
        assembly: usize,
        token: u32,
    ) -> Result<ResolvedField, TypeSystemError> {
        let view = self.views[assembly];
        let tables = view.metadata().tables();
        let fail = |e: &dyn std::fmt::Display| self.unresolved(assembly, token, e);
        // The ABI types of the parent's type arguments, for a field of a generic instantiation.
        let mut type_args = Vec::new();
        let (owner, field_token) = match token >> 24 {
            0x04 => {
                let owner = tables
                    .type_of_field(Rid::new(token & 0x00ff_ffff))
                    .map_err(|e| fail(&e))?
                    .ok_or_else(|| fail(&"field without an owning type"))?;
                (
                    TypeDefId {
                        assembly,
                        rid: owner.get(),
                    },
                    token,
                )
            }
            0x0a => {
                let row: MemberRefRow = tables
                    .member_ref(token & 0x00ff_ffff)
                    .map_err(|e| fail(&e))?;
                let owner = match row.class.table() {
                    Some(TableId::TypeSpec) => {
                        let (def, args) = self.generic_parent(assembly, row.class)?;
                        type_args = args;
                        def
                    }
                    _ => self.resolve_type(assembly, row.class)?,
                };
                let name = view.string(row.name);
                let target = self.views[owner.assembly];
                let target_tables = target.metadata().tables();
                let range = target_tables
                    .field_range(Rid::new(owner.rid))
                    .map_err(|e| fail(&e))?;
                let found = range
                    .filter_map(|r| target_tables.resolve_indirection(TableId::Field, r).ok())
                    .find(|&r| {
                        target_tables
                            .field(r)
                            .is_ok_and(|f: FieldRow| target.string(f.name) == name)
                    })
                    .ok_or_else(|| fail(&format!("no field {name}")))?;
                (owner, 0x0400_0000 | found)
            }
            _ => return Err(fail(&"not a field token")),
        };
        let target = self.views[owner.assembly];
        let row: FieldRow = target
            .metadata()
            .tables()
            .field(field_token & 0x00ff_ffff)
            .map_err(|e| fail(&e))?;
        if row.flags & 0x0010 != 0 {
            let blob = target
                .metadata()
                .blobs()
                .get(row.signature)
                .map_err(|e| fail(&e))?;
            let sig = FieldSig::parse(blob).map_err(|e| fail(&e))?;
            return Ok(ResolvedField {
                owner,
                is_static: true,
                is_thread_static: target.has_attribute(field_token, "System.ThreadStaticAttribute"),
                offset: 0,
                ty: self.abi_type_in(
                    owner.assembly,
                    &sig.type_,
                    Instantiation {
                        types: &type_args,
                        methods: &[],
                    },
                    0,
                )?,
            });
        }
        let layout = if type_args.is_empty() {
            self.layout(owner)?
        } else {
            self.instantiated_layout(owner, type_args, 0)?
        };
        let field = layout
            .fields
            .iter()
            .find(|f| f.token == field_token)
            .ok_or_else(|| fail(&"instance field missing from its type's layout"))?;
        Ok(ResolvedField {
            owner,
            is_static: false,
            is_thread_static: false,
            offset: field.offset,
            ty: field.ty.clone(),
        })
    }

    /// Resolves a method `MemberRef` of `assembly` to the `MethodDef` it names, matching
    /// name and signature (types compared after resolution).
    ///
    /// # Errors
    /// [`TypeSystemError::MissingReference`] when the defining assembly is not in the set;
    /// [`TypeSystemError::Unresolved`] when no method matches, or the parent is a module
    /// reference. A method of a generic instantiation resolves to the generic definition's
    /// method.
    pub fn resolve_method(
        &self,
        assembly: usize,
        token: u32,
    ) -> Result<MethodDefId, TypeSystemError> {
        let view = self.views[assembly];
        let tables = view.metadata().tables();
        let fail = |e: &dyn std::fmt::Display| self.unresolved(assembly, token, e);
        match token >> 24 {
            0x06 => {
                return Ok(MethodDefId { assembly, token });
            }
            0x0a => {}
            _ => {
                return Err(fail(
                    &"not a MethodDef or MemberRef (generic method instantiations are not resolved)",
                ));
            }
        }
        let row: MemberRefRow = tables
            .member_ref(token & 0x00ff_ffff)
            .map_err(|e| fail(&e))?;
        let name = view.string(row.name);
        let blob = view
            .metadata()
            .blobs()
            .get(row.signature)
            .map_err(|e| fail(&e))?;
        let sig = MethodSig::parse(blob).map_err(|e| fail(&e))?;
        let owner = match row.class.table() {
            Some(TableId::TypeDef | TableId::TypeRef) => self.resolve_type(assembly, row.class)?,
            // A method of a generic instantiation: the generic definition's method (its
            // signature is written over the same `!0`, `!1`, ...).
            Some(TableId::TypeSpec) => self.generic_parent(assembly, row.class)?.0,
            Some(TableId::MethodDef) => {
                return Ok(MethodDefId {
                    assembly,
                    token: row.class.value(),
                });
            }
            _ => {
                return Err(fail(&format!("{name}: parent is a module")));
            }
        };
        let wanted = self.signature_key(assembly, &sig);
        let target = self.views[owner.assembly];
        let target_tables = target.metadata().tables();
        let range = target_tables
            .method_range(Rid::new(owner.rid))
            .map_err(|e| fail(&e))?;
        for rid in range {
            let Ok(rid) = target_tables.resolve_indirection(TableId::MethodDef, rid) else {
                continue;
            };
            let Ok(m) = target_tables.method_def(rid) else {
                continue;
            };
            if target.string(m.name) != name {
                continue;
            }
            let Ok(blob) = target.metadata().blobs().get(m.signature) else {
                continue;
            };
            let Ok(candidate) = MethodSig::parse(blob) else {
                continue;
            };
            if self.signature_key(owner.assembly, &candidate) == wanted {
                return Ok(MethodDefId {
                    assembly: owner.assembly,
                    token: 0x0600_0000 | rid,
                });
            }
        }
        let owner_name = self.type_name(owner)?;
        Err(fail(&format!(
            "{owner_name}::{name} with this signature is not defined in {}",
            self.names[owner.assembly]
        )))
    }

    /// A string identifying a method signature independent of the assembly it is written in
    /// (type references resolved to `assembly!Namespace.Name`).
    fn signature_key(&self, assembly: usize, sig: &MethodSig<'_>) -> String {
        let mut key = format!(
            "{}{}:",
            if sig.has_this { "instance " } else { "" },
            sig.calling_convention.generic_param_count()
        );
        let mut param = |p: &cildec::Param<'_>| {
            if p.by_ref {
                key.push('&');
            }
            self.type_key(assembly, &p.type_, &mut key, 0);
            key.push(',');
        };
        param(&sig.return_type);
        for p in &sig.params {
            param(p);
        }
        key
    }

    fn type_key(&self, assembly: usize, ty: &Type<'_>, out: &mut String, depth: u32) {
        use std::fmt::Write;
        if depth > MAX_DEPTH {
            out.push('?');
            return;
        }
        match ty {
            Type::ValueType(t) | Type::Class(t) => match self.resolve_type(assembly, *t) {
                Ok(id) => {
                    let _ = write!(
                        out,
                        "{}!{}",
                        self.names[id.assembly],
                        self.type_name(id).unwrap_or_default()
                    );
                }
                Err(_) => {
                    let _ = write!(out, "?{:x}", t.value());
                }
            },
            Type::Ptr(_, inner) => {
                self.type_key(assembly, inner, out, depth + 1);
                out.push('*');
            }
            Type::ByRef(inner) => {
                self.type_key(assembly, inner, out, depth + 1);
                out.push('&');
            }
            Type::SzArray(_, inner) => {
                self.type_key(assembly, inner, out, depth + 1);
                out.push_str("[]");
            }
            Type::Array(inner, shape) => {
                self.type_key(assembly, inner, out, depth + 1);
                let _ = write!(out, "[{}]", shape.rank);
            }
            Type::GenericInst { def, args, .. } => {
                self.type_key(assembly, &Type::Class(*def), out, depth + 1);
                out.push('<');
                for a in args {
                    self.type_key(assembly, a, out, depth + 1);
                    out.push(',');
                }
                out.push('>');
            }
            Type::Modified(_, inner) | Type::Pinned(inner) => {
                self.type_key(assembly, inner, out, depth + 1);
            }
            Type::FnPtr(sig) => {
                out.push_str("fnptr(");
                out.push_str(&self.signature_key(assembly, sig));
                out.push(')');
            }
            other => {
                let _ = write!(out, "{other:?}");
            }
        }
    }
}

impl<'a> TypeSystem<'_, 'a> {
    /// The ABI types of a method's IL locals (`MethodDef` `token` of `assembly`); byref
    /// locals are managed pointers.
    ///
    /// # Errors
    /// [`TypeSystemError::Method`] for an unreadable body; resolution failures of local types.
    pub fn locals_abi(&self, assembly: usize, token: u32) -> Result<Vec<AbiType>, TypeSystemError> {
        let view = self.views[assembly];
        let fail = |e: &dyn std::fmt::Display| TypeSystemError::Method {
            path: view.path().to_path_buf(),
            token,
            message: e.to_string(),
        };
        let tables = view.metadata().tables();
        let row = tables
            .method_def(token & 0x00ff_ffff)
            .map_err(|e| fail(&e))?;
        let Some(body) =
            cildec::MethodBody::from_image(view.image(), &row).map_err(|e| fail(&e))?
        else {
            return Ok(Vec::new());
        };
        let Some(sig_token) = body.local_var_sig else {
            return Ok(Vec::new());
        };
        let sig_row = tables
            .stand_alone_sig(sig_token.rid())
            .map_err(|e| fail(&e))?;
        let blob = view
            .metadata()
            .blobs()
            .get(sig_row.signature)
            .map_err(|e| fail(&e))?;
        let sig = cildec::LocalVarSig::parse(blob).map_err(|e| fail(&e))?;
        sig.locals
            .iter()
            .map(|local| {
                if local.by_ref {
                    Ok(AbiType::Pointer(PointerKind::ByRef))
                } else {
                    self.abi_type(assembly, &local.type_)
                }
            })
            .collect()
    }

    /// The method signature of a `MethodDef` or `MemberRef` token of `assembly`, parsed.
    ///
    /// # Errors
    /// [`TypeSystemError::Unresolved`] for other tokens or undecodable signatures.
    pub fn method_sig(
        &self,
        assembly: usize,
        token: u32,
    ) -> Result<MethodSig<'a>, TypeSystemError> {
        let view = self.views[assembly];
        let tables = view.metadata().tables();
        let fail = |e: &dyn std::fmt::Display| self.unresolved(assembly, token, e);
        let blob_index = match token >> 24 {
            0x06 => {
                tables
                    .method_def(token & 0x00ff_ffff)
                    .map_err(|e| fail(&e))?
                    .signature
            }
            0x0a => {
                let row: MemberRefRow = tables
                    .member_ref(token & 0x00ff_ffff)
                    .map_err(|e| fail(&e))?;
                row.signature
            }
            _ => return Err(fail(&"not a MethodDef or MemberRef")),
        };
        let blob = view
            .metadata()
            .blobs()
            .get(blob_index)
            .map_err(|e| fail(&e))?;
        MethodSig::parse(blob).map_err(|e| fail(&e))
    }

    /// `Namespace.Type::Method` of a `MethodDef`, `MemberRef` or `MethodSpec` token, without
    /// resolving across assemblies (for diagnostics and for recognising well-known methods).
    pub fn method_name(&self, assembly: usize, token: u32) -> Option<String> {
        let view = self.views[assembly];
        let tables = view.metadata().tables();
        let names = cildec::Names::new(view.metadata());
        match token >> 24 {
            0x06 => {
                let row = tables.method_def(token & 0x00ff_ffff).ok()?;
                let owner = tables
                    .type_of_method(Rid::new(token & 0x00ff_ffff))
                    .ok()??;
                Some(format!(
                    "{}::{}",
                    names.type_def(owner).ok()?,
                    view.string(row.name)
                ))
            }
            0x0a => {
                let row: MemberRefRow = tables.member_ref(token & 0x00ff_ffff).ok()?;
                let owner = match row.class.table()? {
                    TableId::TypeRef => {
                        let r: TypeRefRow = tables.type_ref(row.class.rid()).ok()?;
                        let ns = view.string(r.type_namespace);
                        let n = view.string(r.type_name);
                        if ns.is_empty() {
                            n.to_owned()
                        } else {
                            format!("{ns}.{n}")
                        }
                    }
                    TableId::TypeDef => names.type_def(Rid::new(row.class.rid())).ok()?,
                    TableId::TypeSpec => {
                        let spec = tables.type_spec(row.class.rid()).ok()?;
                        let blob = view.metadata().blobs().get(spec.signature).ok()?;
                        let sig = cildec::TypeSpecSig::parse(blob).ok()?;
                        names.type_(&sig.type_)
                    }
                    _ => return None,
                };
                Some(format!("{owner}::{}", view.string(row.name)))
            }
            0x2b => {
                let spec = tables.method_spec(token & 0x00ff_ffff).ok()?;
                self.method_name(assembly, spec.method.value())
            }
            _ => None,
        }
    }

    /// The result type of a task-returning method's async variant: `Some(None)` for
    /// `Task`/`ValueTask` (the variant returns nothing), `Some(Some(T))` for `Task<T>` /
    /// `ValueTask<T>`, `None` when the return type is not task-like.
    pub fn task_result<'t>(
        &self,
        assembly: usize,
        ret: &'t Type<'t>,
    ) -> Option<Option<&'t Type<'t>>> {
        let name_of = |token: Token| -> Option<(String, String)> {
            let id = self.resolve_type(assembly, token).ok()?;
            self.row_name(id).ok()
        };
        match ret {
            Type::Class(t) | Type::ValueType(t) => {
                let (ns, n) = name_of(*t)?;
                (ns == "System.Threading.Tasks" && (n == "Task" || n == "ValueTask"))
                    .then_some(None)
            }
            Type::GenericInst { def, args, .. } if args.len() == 1 => {
                let (ns, n) = name_of(*def)?;
                (ns == "System.Threading.Tasks" && (n == "Task`1" || n == "ValueTask`1"))
                    .then_some(Some(&args[0]))
            }
            _ => None,
        }
    }
}
