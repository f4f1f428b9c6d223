//! Object writer: one module of 100,000 functions and a 10 MB image.
//!
//! Peer (the floor): wasm-encoder encoding the very same sections from already-resolved
//! indices — no symbol tables, no type deduplication, no relocation resolution, no
//! validation. The bench asserts both produce the same bytes, then prints MB/s (of module
//! output) and the ratios: the writer against the floor, and against the floor plus
//! wasmparser's validation of the result (the writer validates every module it returns).
//!
//! Run: `cargo bench --bench object_writer`.

mod common;

/// The allocator the `crossgraph` binary uses (both the writer and the floor run on it).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use crossgraph_codegen::object_writer::{
    IMAGE_BASE_GLOBAL, STACK_POINTER_GLOBAL, TABLE_BASE_GLOBAL, val_type,
};
use crossgraph_codegen::{
    Code, DataReloc, DefinedFunction, ImportedFunction, ObjectModule, Op, PointerWidth, SymbolId,
    WasmFuncType, WasmSignature, thunk,
};
use wasm_encoder::{
    CodeSection, ConstExpr, DataSection, ElementSection, Elements, EntityType, ExportSection,
    Function, FunctionSection, GlobalType, ImportSection, Instruction, MemoryType, Module, NameMap,
    NameSection, RefType, TableType, TypeSection, ValType,
};

const FUNCTIONS: usize = 100_000;
const IMAGE_BYTES: usize = 10 * 1024 * 1024;
const GROUP: &str = "object_writer";
const SIGNATURES: [&str; 8] = [
    "iiip", "vp", "lTlp", "vS24dp", "dddp", "iTiip", "S16Tip", "fffp",
];

fn sig(s: &str) -> WasmSignature {
    WasmSignature::parse(s, PointerWidth::Wasm32).expect("valid signature")
}

/// Function `i`: pushes its arguments' worth of constants, calls function `i + 1` of the
/// same signature when there is one (a function-index relocation), and every tenth
/// function also takes a table index and does a `call_indirect` (table and type relocations).
fn object() -> ObjectModule {
    let sigs: Vec<WasmSignature> = SIGNATURES.iter().map(|s| sig(s)).collect();
    let mut module = ObjectModule::new();
    thunk::import_runtime_helpers(&mut module);
    let symbols: Vec<SymbolId> = (0..FUNCTIONS)
        .map(|i| module.symbol(&format!("f{i}")))
        .collect();
    for i in 0..FUNCTIONS {
        let s = &sigs[i % sigs.len()];
        let ty = s.func_type();
        let mut ops = Vec::new();
        let push_args = |ops: &mut Vec<Op>| {
            for v in &ty.params {
                ops.push(Op::Ins(zero(*v)));
            }
        };
        if i + sigs.len() < FUNCTIONS {
            push_args(&mut ops);
            ops.push(Op::Call(symbols[i + sigs.len()]));
            for _ in &ty.results {
                ops.push(Op::Ins(Instruction::Drop));
            }
        }
        if i % 10 == 0 {
            push_args(&mut ops);
            ops.push(Op::TableIndex(symbols[i]));
            ops.push(Op::CallIndirect(ty.clone()));
            for _ in &ty.results {
                ops.push(Op::Ins(Instruction::Drop));
            }
        }
        ops.push(Op::StackPointerGet);
        ops.push(Op::StackPointerSet);
        ops.push(Op::ImageAddress((i * 64) as u32));
        ops.push(Op::Ins(Instruction::Drop));
        for v in &ty.results {
            ops.push(Op::Ins(zero(*v)));
        }
        module.define(
            symbols[i],
            DefinedFunction {
                ty,
                code: Code {
                    locals: vec![],
                    ops,
                },
                table_slot: true,
                export: None,
            },
        );
    }
    let mut image = vec![0u8; IMAGE_BYTES];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for b in image.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    module.image = image;
    module.image_relocs = (0..FUNCTIONS)
        .map(|i| DataReloc {
            offset: (i * 100) as u32,
            symbol: symbols[i],
        })
        .collect();
    module
}

fn zero(v: crossgraph_codegen::WasmValueType) -> Instruction<'static> {
    use crossgraph_codegen::WasmValueType::*;
    match v {
        I32 => Instruction::I32Const(0),
        I64 => Instruction::I64Const(0),
        F32 => Instruction::F32Const(0.0.into()),
        F64 => Instruction::F64Const(0.0.into()),
        V128 => Instruction::V128Const(0),
    }
}

/// Everything the writer computes, precomputed: what the floor gets for free.
struct Resolved {
    types: Vec<WasmFuncType>,
    imports: Vec<(ImportedFunction, u32)>,
    function_types: Vec<u32>,
    bodies: Vec<Vec<Instruction<'static>>>,
    slots: Vec<u32>,
    image: Vec<u8>,
    names: Vec<(u32, String)>,
}

fn resolve(object: &ObjectModule) -> Resolved {
    let mut index = HashMap::new();
    for (i, symbol) in object
        .imports()
        .map(|(s, _)| s)
        .chain(object.functions().map(|(s, _)| s))
        .enumerate()
    {
        index.insert(symbol, i as u32);
    }
    let slot: HashMap<SymbolId, u32> = object
        .functions()
        .enumerate()
        .map(|(i, (s, _))| (s, i as u32))
        .collect();
    let mut types: Vec<WasmFuncType> = Vec::new();
    let mut type_of = |t: &WasmFuncType| match types.iter().position(|x| x == t) {
        Some(i) => i as u32,
        None => {
            types.push(t.clone());
            types.len() as u32 - 1
        }
    };
    let imports = object
        .imports()
        .map(|(_, f)| (f.clone(), type_of(&f.ty)))
        .collect();
    let function_types = object.functions().map(|(_, f)| type_of(&f.ty)).collect();
    let bodies = object
        .functions()
        .map(|(_, f)| {
            let mut out = Vec::new();
            for op in &f.code.ops {
                match op {
                    Op::Ins(i) => out.push(i.clone()),
                    Op::Call(s) => out.push(Instruction::Call(index[s])),
                    Op::CallIndirect(t) => out.push(Instruction::CallIndirect {
                        type_index: type_of(t),
                        table_index: 0,
                    }),
                    Op::TableIndex(s) => out.extend([
                        Instruction::GlobalGet(TABLE_BASE_GLOBAL),
                        Instruction::I32Const(slot[s] as i32),
                        Instruction::I32Add,
                    ]),
                    Op::ImageAddress(rva) => out.extend([
                        Instruction::GlobalGet(IMAGE_BASE_GLOBAL),
                        Instruction::I32Const(*rva as i32),
                        Instruction::I32Add,
                    ]),
                    Op::TableBase => out.push(Instruction::GlobalGet(TABLE_BASE_GLOBAL)),
                    Op::StackPointerGet => out.push(Instruction::GlobalGet(STACK_POINTER_GLOBAL)),
                    Op::StackPointerSet => out.push(Instruction::GlobalSet(STACK_POINTER_GLOBAL)),
                    Op::Sequence(_) | Op::Encoded(_) => {
                        unreachable!("the bench's bodies use no sequences and no encoded runs")
                    }
                }
            }
            out.push(Instruction::End);
            out
        })
        .collect();
    let mut image = object.image.clone();
    for r in &object.image_relocs {
        image[r.offset as usize..r.offset as usize + 4]
            .copy_from_slice(&slot[&r.symbol].to_le_bytes());
    }
    let mut names: Vec<(u32, String)> = index
        .iter()
        .map(|(&s, &i)| (i, object.name(s).to_string()))
        .collect();
    names.sort();
    let imported = object.imports().count() as u32;
    Resolved {
        types,
        imports,
        function_types,
        bodies,
        slots: (0..object.functions().count() as u32)
            .map(|i| i + imported)
            .collect(),
        image,
        names,
    }
}

/// The floor: wasm-encoder writing the resolved sections.
fn floor(r: &Resolved) -> Vec<u8> {
    let mut types = TypeSection::new();
    for t in &r.types {
        types.ty().function(
            t.params.iter().map(|&v| val_type(v)),
            t.results.iter().map(|&v| val_type(v)),
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
            minimum: r.slots.len() as u64,
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
    for (f, ty) in &r.imports {
        imports.import(&f.module, &f.name, EntityType::Function(*ty));
    }
    let mut functions = FunctionSection::new();
    for &t in &r.function_types {
        functions.function(t);
    }
    let mut elements = ElementSection::new();
    elements.active(
        None,
        &ConstExpr::global_get(TABLE_BASE_GLOBAL),
        Elements::Functions(r.slots.as_slice().into()),
    );
    let mut code = CodeSection::new();
    for body in &r.bodies {
        let mut f = Function::new([]);
        for i in body {
            f.instruction(i);
        }
        code.function(&f);
    }
    let mut data = DataSection::new();
    data.active(
        0,
        &ConstExpr::global_get(IMAGE_BASE_GLOBAL),
        r.image.iter().copied(),
    );
    let mut map = NameMap::new();
    for (i, n) in &r.names {
        map.append(*i, n);
    }
    let mut names = NameSection::new();
    names.functions(&map);
    let mut module = Module::new();
    module.section(&types);
    module.section(&imports);
    module.section(&functions);
    module.section(&ExportSection::new());
    module.section(&elements);
    module.section(&code);
    module.section(&data);
    module.section(&names);
    module.finish()
}

fn median_ns(id: &str) -> Option<f64> {
    common::median_ns(GROUP, id)
}

fn main() {
    let object = object();
    let resolved = resolve(&object);
    let written = object.emit().expect("the bench module is valid").bytes;
    let floor_bytes = floor(&resolved);
    assert!(
        written == floor_bytes,
        "the floor must write the same module"
    );
    let mb = written.len() as f64 / 1e6;

    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group(GROUP);
        group.bench_function("crossgraph ObjectModule::emit", |b| {
            b.iter(|| black_box(object.emit().expect("valid")))
        });
        group.bench_function("wasm-encoder floor", |b| {
            b.iter(|| black_box(floor(&resolved)))
        });
        group.bench_function("wasmparser validation", |b| {
            b.iter(|| {
                wasmparser::Validator::new()
                    .validate_all(black_box(&written))
                    .expect("valid")
            })
        });
        group.finish();
    }
    criterion.final_summary();

    let (Some(writer), Some(floor_ns), Some(validate)) = (
        median_ns("crossgraph ObjectModule__emit"),
        median_ns("wasm-encoder floor"),
        median_ns("wasmparser validation"),
    ) else {
        println!("(no criterion estimates to tabulate)");
        return;
    };
    println!();
    println!(
        "object_writer: {FUNCTIONS} functions, {} MB image, {mb:.1} MB module",
        IMAGE_BYTES >> 20
    );
    println!();
    println!("| run | median | MB/s | vs floor |");
    println!("|---|---:|---:|---:|");
    for (name, ns) in [
        ("crossgraph ObjectModule::emit (validates)", writer),
        ("wasm-encoder floor", floor_ns),
        ("wasmparser validation alone", validate),
        ("floor + validation", floor_ns + validate),
    ] {
        println!(
            "| {name} | {:.1} ms | {:.0} | {:.2}x |",
            ns / 1e6,
            mb / (ns / 1e9),
            ns / floor_ns
        );
    }
    println!();
    println!(
        "Writer overhead: {:.2}x the floor; {:.2}x the floor plus validation.",
        writer / floor_ns,
        writer / (floor_ns + validate)
    );
}
