//! The compilation: roots (every method with an IL body) go into the dependency analyzer;
//! its compute routine compiles deferred methods in parallel; the marked nodes become one wasm
//! module with its image (crossgen2's `Compilation` -> `NodeFactory` -> `ObjectWriter`).
//!
//! Node kinds in this first slice: compiled methods (crossgen2 `MethodWithGCInfo`: their
//! dependencies are only known once compiled: callees and the interpreter -> R2R thunk of
//! their signature), interpreter -> R2R thunks (string-discoverable stubs, key `M` +
//! signature; marking one pulls in the single `InjectStringThunks` import), and that import.
//! Methods the baseline compiler cannot compile stay interpreted, with the reason recorded;
//! compiled callers reach them through one lazy MethodEntry import cell per callee, which
//! resolves to the callee's R2R -> interpreter thunk (those thunks and cells are added after
//! the analysis, once it is known which callees compiled).

use std::collections::BTreeSet;
use std::sync::Mutex;

use crossgraph_codegen::il::{
    CallTarget, CompiledBody, JitInterface, NotCompiled, call_through_cell, compile, il_type,
};
use crossgraph_codegen::thunk::{cell_import_thunk, interpreter_to_r2r, r2r_to_interpreter};
use crossgraph_codegen::{
    DataReloc, DefinedFunction, ObjectModule, ParamAbi, PointerWidth, ReturnAbi, SignatureParts,
    SymbolId, ThunkDirection, WasmSignature,
};
use crossgraph_graph::{
    AnalysisError, Analyzer, AnalyzerOptions, Dependencies, NodeId, NodeSource,
};
use crossgraph_runtime_core::format::{
    CodeRefSite, FixupSignature, Image, ImportCell, ImportSection, ImportSectionFlags,
    ImportSectionType, MethodEntryPoint, MethodRef, MethodSigFlags, StringThunk,
};
use rustc_hash::FxHashMap;

use crate::typesystem::{AssemblyView, MethodDef, TypeSystemError};

/// A node of the compilation graph, by its semantic key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeKey {
    /// A method to compile, by `MethodDef` token.
    Method(u32),
    /// The interpreter -> R2R thunk with this lookup string (`M` + signature).
    InterpreterToR2RThunk(String),
    /// The `InjectStringThunks` eager import (fixup kind 0x39).
    InjectStringThunks,
}

/// Options of a compilation.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// Worker threads (`None`: rayon's global pool).
    pub threads: Option<usize>,
}

/// A method that stays interpreted, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotCompiledMethod {
    /// Its token.
    pub token: u32,
    /// `Namespace.Type::Method`.
    pub name: String,
    /// Why it was not compiled.
    pub reason: String,
}

/// The result of compiling one assembly.
#[derive(Clone, Debug)]
pub struct CompileOutput {
    /// The wasm module with its image.
    pub module: Vec<u8>,
    /// Compiled methods `(token, name)`, in token order.
    pub compiled: Vec<(u32, String)>,
    /// Methods left to the interpreter, in token order.
    pub not_compiled: Vec<NotCompiledMethod>,
    /// Nodes the analyzer marked.
    pub marked_nodes: usize,
}

/// Why a compilation failed (a method the compiler cannot handle is not a failure).
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Reading the input failed.
    #[error(transparent)]
    TypeSystem(#[from] TypeSystemError),
    /// The dependency analysis failed.
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    /// Writing the module failed.
    #[error(transparent)]
    Write(#[from] crossgraph_codegen::WriteError),
    /// Encoding the image failed.
    #[error(transparent)]
    Format(#[from] crossgraph_runtime_core::format::FormatError),
    /// Building a thunk failed.
    #[error(transparent)]
    Thunk(#[from] crossgraph_codegen::thunk::ThunkError),
}

struct Plan {
    name: String,
    has_body: bool,
    signature: Result<WasmSignature, String>,
}

/// The node source: the type system plus compile results (crossgen2's `NodeFactory`).
struct Factory<'v, 'a> {
    view: &'v AssemblyView<'a>,
    plans: FxHashMap<u32, Plan>,
    symbols: FxHashMap<u32, SymbolId>,
    results: Mutex<FxHashMap<u32, Result<CompiledBody, NotCompiled>>>,
}

/// Lowers a method's signature shape (managed calling convention).
fn lower(method: &MethodDef) -> Result<WasmSignature, String> {
    let pointer = PointerWidth::Wasm32;
    let ty = |name: &str| {
        il_type(name, pointer.value_type()).ok_or_else(|| format!("type {name} is not lowered yet"))
    };
    if method.signature.generic_params > 0 {
        return Err("generic method".into());
    }
    let ret = match method.signature.ret.as_str() {
        "void" => ReturnAbi::Void,
        other => ReturnAbi::Value(ty(other)?),
    };
    let params = method
        .signature
        .params
        .iter()
        .map(|p| ty(p).map(ParamAbi::Value))
        .collect::<Result<Vec<_>, _>>()?;
    WasmSignature::new(
        pointer,
        SignatureParts {
            ret,
            has_this: method.signature.has_this,
            generic_context: false,
            async_continuation: false,
            params,
            managed: true,
        },
    )
    .map_err(|e| e.to_string())
}

struct Jit<'f, 'v, 'a> {
    factory: &'f Factory<'v, 'a>,
}

impl JitInterface for Jit<'_, '_, '_> {
    fn call_target(&mut self, token: u32) -> CallTarget {
        match (
            self.factory.plans.get(&token),
            self.factory.symbols.get(&token),
        ) {
            (Some(plan), Some(&symbol)) if plan.has_body => match &plan.signature {
                Ok(signature) => CallTarget::Direct {
                    symbol,
                    signature: signature.clone(),
                },
                Err(reason) => CallTarget::Unsupported(reason.clone()),
            },
            _ => CallTarget::Unsupported(
                "callee is not a method with IL body in this assembly".into(),
            ),
        }
    }
}

impl Factory<'_, '_> {
    fn compile_method(&self, token: u32) -> Result<CompiledBody, NotCompiled> {
        let refuse = |reason: String| NotCompiled { reason };
        let plan = self
            .plans
            .get(&token)
            .ok_or_else(|| refuse("unknown method".into()))?;
        let signature = plan.signature.clone().map_err(refuse)?;
        let body = self
            .view
            .method_body(token)
            .map_err(|e| refuse(e.to_string()))?
            .ok_or_else(|| refuse("no IL body".into()))?;
        if !body.exception_clauses.is_empty() {
            return Err(refuse("exception handling".into()));
        }
        let locals = body
            .locals
            .iter()
            .map(|l| {
                il_type(l, signature.pointer().value_type())
                    .ok_or_else(|| refuse(format!("local of type {l}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        compile(
            &signature,
            &locals,
            &body.instructions,
            &mut Jit { factory: self },
        )
    }
}

impl NodeSource for Factory<'_, '_> {
    type Key = NodeKey;

    fn static_dependencies(&self, _: NodeId, key: &NodeKey, deps: &mut Dependencies<NodeKey>) {
        match key {
            NodeKey::Method(token) => {
                let results = self.results.lock().expect("results poisoned");
                if let Some(Ok(body)) = results.get(token) {
                    for &callee in &body.callees {
                        deps.add(NodeKey::Method(callee), "call");
                    }
                    if let Some(Ok(signature)) = self.plans.get(token).map(|p| &p.signature) {
                        let key = signature.thunk_key(ThunkDirection::InterpreterToR2R);
                        deps.add(
                            NodeKey::InterpreterToR2RThunk(key),
                            "interpreter -> R2R thunk of the signature",
                        );
                    }
                }
            }
            NodeKey::InterpreterToR2RThunk(_) => {
                deps.add(NodeKey::InjectStringThunks, "string-discoverable stub");
            }
            NodeKey::InjectStringThunks => {}
        }
    }

    fn static_dependencies_computed(&self, _: NodeId, key: &NodeKey) -> bool {
        match key {
            NodeKey::Method(token) => self
                .results
                .lock()
                .expect("results poisoned")
                .contains_key(token),
            _ => true,
        }
    }

    fn compute_dependencies(&self, _: NodeId, key: &NodeKey) {
        if let NodeKey::Method(token) = key {
            let result = self.compile_method(*token);
            self.results
                .lock()
                .expect("results poisoned")
                .insert(*token, result);
        }
    }

    fn name(&self, key: &NodeKey) -> String {
        match key {
            NodeKey::Method(token) => self
                .plans
                .get(token)
                .map_or_else(|| format!("method 0x{token:08x}"), |p| p.name.clone()),
            NodeKey::InterpreterToR2RThunk(k) => format!("thunk {k}"),
            NodeKey::InjectStringThunks => "InjectStringThunks".into(),
        }
    }
}

/// Compiles the methods of an assembly view into a module.
///
/// # Errors
/// [`CompileError`] for unreadable input or a failure of the analyzer or the writer.
pub fn compile_assembly(
    view: &AssemblyView<'_>,
    options: &CompileOptions,
) -> Result<CompileOutput, CompileError> {
    let methods = view.methods()?;
    let mut object = ObjectModule::new();
    let mut plans = FxHashMap::default();
    let mut symbols = FxHashMap::default();
    let mut name_counts: FxHashMap<&str, usize> = FxHashMap::default();
    for m in &methods {
        *name_counts.entry(m.name.as_str()).or_default() += 1;
    }
    for m in &methods {
        let signature = lower(m);
        if signature.is_ok() && m.has_body() {
            symbols.insert(
                m.token,
                object.symbol(&format!("{}@{:08x}", m.name, m.token)),
            );
        }
        plans.insert(
            m.token,
            Plan {
                name: m.name.clone(),
                has_body: m.has_body(),
                signature,
            },
        );
    }
    let factory = Factory {
        view,
        plans,
        symbols,
        results: Mutex::new(FxHashMap::default()),
    };
    let mut analyzer: Analyzer<'_, Factory<'_, '_>> = Analyzer::new(
        &factory,
        AnalyzerOptions {
            threads: options.threads,
            shuffle_seed: None,
        },
    );
    for m in methods.iter().filter(|m| m.has_body()) {
        analyzer.add_root(NodeKey::Method(m.token), "method with an IL body")?;
    }
    analyzer.compute_marked_nodes()?;
    let marked: Vec<NodeKey> = analyzer
        .marked_nodes()?
        .iter()
        .map(|&id| analyzer.key(id).cloned())
        .collect::<Result<_, _>>()?;

    let mut results = factory.results.into_inner().expect("results poisoned");
    let compiled_tokens: BTreeSet<u32> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(&t, _)| t)
        .collect();
    let signature_of = |token: u32| -> &WasmSignature {
        factory.plans[&token]
            .signature
            .as_ref()
            .expect("called and compiled methods are lowered")
    };
    // Calls to methods left to the interpreter go through MethodEntry import cells (one per
    // callee), resolved on first call to the callee's R2R -> interpreter thunk.
    let interpreted_callees: BTreeSet<u32> = results
        .values()
        .filter_map(|r| r.as_ref().ok())
        .flat_map(|body| body.call_sites.iter().map(|&(_, callee)| callee))
        .filter(|callee| !compiled_tokens.contains(callee))
        .collect();
    let cell_of: FxHashMap<u32, usize> = interpreted_callees
        .iter()
        .enumerate()
        .map(|(c, &t)| (t, c))
        .collect();

    let mut thunk_keys: BTreeSet<String> = marked
        .iter()
        .filter_map(|k| match k {
            NodeKey::InterpreterToR2RThunk(key) => Some(key.clone()),
            _ => None,
        })
        .collect();
    for &callee in &interpreted_callees {
        thunk_keys.insert(signature_of(callee).thunk_key(ThunkDirection::R2RToInterpreter));
    }
    let thunk_keys: Vec<String> = thunk_keys.into_iter().collect();

    // The image model; code references are filled in by relocation.
    let mut import_sections = vec![ImportSection {
        flags: ImportSectionFlags::EAGER,
        kind: ImportSectionType::UNKNOWN,
        entry_size: 4,
        cells: vec![ImportCell {
            initial: 0,
            signature: FixupSignature::InjectStringThunks(
                thunk_keys
                    .iter()
                    .map(|key| StringThunk {
                        key: key.clone(),
                        code: 0,
                    })
                    .collect(),
            ),
        }],
    }];
    if !interpreted_callees.is_empty() {
        import_sections.push(ImportSection {
            flags: ImportSectionFlags::NONE,
            kind: ImportSectionType::UNKNOWN,
            entry_size: 4,
            cells: interpreted_callees
                .iter()
                .map(|&token| ImportCell {
                    initial: 0,
                    signature: FixupSignature::MethodEntry(MethodRef {
                        flags: MethodSigFlags::NONE,
                        token,
                    }),
                })
                .collect(),
        });
    }
    let mut compiled = Vec::new();
    let mut not_compiled = Vec::new();
    let mut entries = Vec::new();
    let mut bodies = Vec::new();
    for m in &methods {
        match results.remove(&m.token) {
            Some(Ok(body)) => {
                entries.push(MethodEntryPoint {
                    method: MethodRef {
                        flags: MethodSigFlags::NONE,
                        token: m.token,
                    },
                    code: 0,
                    fixups: vec![],
                });
                bodies.push((m, body));
                compiled.push((m.token, m.name.clone()));
            }
            Some(Err(e)) => not_compiled.push(NotCompiledMethod {
                token: m.token,
                name: m.name.clone(),
                reason: e.reason,
            }),
            None if m.has_body() => not_compiled.push(NotCompiledMethod {
                token: m.token,
                name: m.name.clone(),
                reason: "not reached".into(),
            }),
            None => {}
        }
    }
    let image = Image {
        compiler: Some(format!("crossgraph {}", env!("CARGO_PKG_VERSION"))),
        import_sections,
        method_entry_points: entries,
        ..Image::default()
    };
    let (bytes, sites) = image.encode_with_code_offsets()?;
    let cell_rva: FxHashMap<usize, u32> = sites
        .iter()
        .filter_map(|&(site, offset)| match site {
            CodeRefSite::CellInitial { section: 1, cell } => Some((cell, offset)),
            _ => None,
        })
        .collect();

    // Functions: compiled methods (calls to interpreted callees rerouted through their
    // cells), then the thunks, then the cells' import thunks.
    let mut method_symbols = Vec::new();
    for (m, mut body) in bodies {
        for &(index, callee) in body.call_sites.iter().rev() {
            if let Some(&cell) = cell_of.get(&callee) {
                let replacement = call_through_cell(cell_rva[&cell], signature_of(callee));
                body.code.ops.splice(index..=index, replacement);
            }
        }
        let symbol = factory.symbols[&m.token];
        let export = (name_counts[m.name.as_str()] == 1).then(|| m.name.clone());
        object.define(
            symbol,
            DefinedFunction {
                ty: signature_of(m.token).func_type(),
                code: body.code,
                table_slot: true,
                export,
            },
        );
        method_symbols.push(symbol);
    }
    let mut thunk_symbols = Vec::new();
    for key in &thunk_keys {
        let signature = WasmSignature::parse(&key[1..], PointerWidth::Wasm32)
            .expect("thunk keys come from signatures");
        thunk_symbols.push(match key.as_bytes()[0] {
            b'M' => interpreter_to_r2r(&signature, &mut object)?,
            _ => r2r_to_interpreter(&signature, &mut object)?,
        });
    }
    let cell_thunks: Vec<SymbolId> = interpreted_callees
        .iter()
        .enumerate()
        .map(|(c, &callee)| cell_import_thunk(signature_of(callee), cell_rva[&c], &mut object))
        .collect();
    let image_relocs = sites
        .into_iter()
        .filter_map(|(site, offset)| {
            let symbol = match site {
                CodeRefSite::StringThunk { thunk, .. } => thunk_symbols[thunk],
                CodeRefSite::MethodEntry(i) => method_symbols[i],
                CodeRefSite::CellInitial { section: 1, cell } => cell_thunks[cell],
                _ => return None,
            };
            Some(DataReloc { offset, symbol })
        })
        .collect();
    object.image = bytes;
    object.image_relocs = image_relocs;
    let module = object.emit()?.bytes;
    Ok(CompileOutput {
        module,
        compiled,
        not_compiled,
        marked_nodes: marked.len(),
    })
}
