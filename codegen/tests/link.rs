//! A module with both thunk directions, an import thunk, an `UnmanagedCallersOnly` method
//! and an image, written by the object writer, validated, instantiated in wasmtime with the
//! runtime's imports stubbed, and run.

use std::sync::{Arc, Mutex};

use crossgraph_codegen::thunk::{
    self, interpreter_to_r2r, interpreter_to_r2r_symbol, portable_entry_point_import_thunk,
    r2r_to_interpreter, r2r_to_interpreter_symbol,
};
use crossgraph_codegen::{
    Code, DataReloc, DefinedFunction, EmittedModule, ObjectModule, Op, PointerWidth, SymbolId,
    WasmSignature, WriteError,
};
use crossgraph_runtime_core::format::{
    FixupSignature, Image, ImportCell, ImportSection, ImportSectionFlags, ImportSectionType,
    StringThunk,
};
use wasm_encoder::Instruction;
use wasmtime::{
    Caller, Engine, Global, GlobalType, Instance, Linker, Memory, MemoryType, Mutability, Ref,
    RefType, Store, Table, TableType, Val, ValType,
};

const IMAGE_BASE: i32 = 1024;
const TABLE_BASE: u32 = 1;
const STACK_TOP: i32 = 2 * 65536;

fn sig(s: &str) -> WasmSignature {
    WasmSignature::parse(s, PointerWidth::Wasm32).unwrap()
}

fn function(s: &str, ops: Vec<Instruction<'static>>, export: &str) -> DefinedFunction {
    DefinedFunction {
        ty: sig(s).func_type(),
        code: Code {
            locals: vec![],
            ops: ops.into_iter().map(Op::Ins).collect(),
        },
        table_slot: true,
        export: Some(export.into()),
    }
}

/// An image whose InjectStringThunks cell names the two thunks of `iiip`, with the two code
/// references relocated to the thunks' table slots.
fn image(module: &mut ObjectModule) -> (Vec<u8>, Vec<DataReloc>) {
    let iiip = sig("iiip");
    let keys = [
        r2r_to_interpreter_symbol(&iiip),
        interpreter_to_r2r_symbol(&iiip),
    ];
    let placeholder = |i: u32| 0xdead_0000 + i;
    let image = Image {
        compiler: Some("crossgraph link test".into()),
        import_sections: vec![ImportSection {
            flags: ImportSectionFlags::EAGER,
            kind: ImportSectionType::UNKNOWN,
            entry_size: 4,
            cells: vec![ImportCell {
                initial: 0,
                signature: FixupSignature::InjectStringThunks(
                    keys.iter()
                        .enumerate()
                        .map(|(i, key)| StringThunk {
                            key: key.clone(),
                            code: placeholder(i as u32),
                        })
                        .collect(),
                ),
            }],
        }],
        ..Image::default()
    };
    let bytes = image.encode().unwrap();
    let relocs = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let needle = placeholder(i as u32).to_le_bytes();
            let offset = bytes.windows(4).position(|w| w == needle).unwrap();
            DataReloc {
                offset: offset as u32,
                symbol: module.symbol(key),
            }
        })
        .collect();
    (bytes, relocs)
}

fn module() -> (ObjectModule, EmittedModule) {
    let iiip = sig("iiip");
    let mut object = ObjectModule::new();
    let add = object.symbol("Program.Add");
    let add_body = vec![
        Instruction::LocalGet(1),
        Instruction::LocalGet(2),
        Instruction::I32Add,
    ];
    object.define(add, function("iiip", add_body, "add"));
    let add_native = object.symbol("Program.AddNative");
    let native_body = vec![
        Instruction::LocalGet(0),
        Instruction::LocalGet(1),
        Instruction::I32Add,
    ];
    object.define(add_native, function("iii", native_body, "add_native"));
    let export = |object: &mut ObjectModule, symbol, name: &str| {
        object.lookup_function_mut(symbol).unwrap().export = Some(name.into());
    };
    let i = r2r_to_interpreter(&iiip, &mut object).unwrap();
    export(&mut object, i, "r2r_to_interpreter");
    let m = interpreter_to_r2r(&iiip, &mut object).unwrap();
    export(&mut object, m, "interpreter_to_r2r");
    let pe = portable_entry_point_import_thunk(&iiip, &mut object).unwrap();
    export(&mut object, pe, "import_thunk");
    // call_native(fnptr, a, b): an unmanaged call through the table;
    // call_managed(fnptr, a, b): the same pointer called with the managed shape.
    let indirect = |ops: Vec<Op>, name: &str| DefinedFunction {
        ty: sig("iiii").func_type(),
        code: Code {
            locals: vec![],
            ops,
        },
        table_slot: false,
        export: Some(name.into()),
    };
    let call_native = object.symbol("call_native");
    object.define(
        call_native,
        indirect(
            vec![
                Op::Ins(Instruction::LocalGet(1)),
                Op::Ins(Instruction::LocalGet(2)),
                Op::Ins(Instruction::LocalGet(0)),
                Op::CallIndirect(sig("iii").func_type()),
            ],
            "call_native",
        ),
    );
    let call_managed = object.symbol("call_managed");
    object.define(
        call_managed,
        indirect(
            vec![
                Op::StackPointerGet,
                Op::Ins(Instruction::LocalGet(1)),
                Op::Ins(Instruction::LocalGet(2)),
                Op::Ins(Instruction::I32Const(0)),
                Op::Ins(Instruction::LocalGet(0)),
                Op::CallIndirect(iiip.func_type()),
            ],
            "call_managed",
        ),
    );
    let (image, image_relocs) = image(&mut object);
    object.image = image;
    object.image_relocs = image_relocs;
    let emitted = object.emit().unwrap();
    (object, emitted)
}

fn slot(object: &ObjectModule, emitted: &EmittedModule, name: &str) -> u32 {
    emitted.table_slot(object.lookup(name).unwrap()).unwrap()
}

/// (entry point, args, size, ret) of one interpreter entry.
type InterpreterCall = (i32, i32, i32, i32);

struct Host {
    store: Store<()>,
    instance: Instance,
    memory: Memory,
    /// (entry point, args, size, ret) of each interpreter entry.
    interpreted: Arc<Mutex<Vec<InterpreterCall>>>,
}

fn instantiate(object: &ObjectModule, emitted: &EmittedModule) -> Host {
    let engine = Engine::default();
    let module = wasmtime::Module::new(&engine, &emitted.bytes).unwrap();
    let mut store = Store::new(&engine, ());
    let memory = Memory::new(&mut store, MemoryType::new(2, None)).unwrap();
    let slots = emitted.slot_count + TABLE_BASE;
    let table = Table::new(
        &mut store,
        TableType::new(RefType::FUNCREF, slots, None),
        Ref::Func(None),
    )
    .unwrap();
    let global = |store: &mut Store<()>, mutability, value| {
        Global::new(
            store,
            GlobalType::new(ValType::I32, mutability),
            Val::I32(value),
        )
        .unwrap()
    };
    let sp = global(&mut store, Mutability::Var, STACK_TOP);
    let image_base = global(&mut store, Mutability::Const, IMAGE_BASE);
    let table_base = global(&mut store, Mutability::Const, TABLE_BASE as i32);
    let mut linker = Linker::new(&engine);
    linker.define(&store, "env", "memory", memory).unwrap();
    linker
        .define(&store, "env", "__indirect_function_table", table)
        .unwrap();
    linker.define(&store, "env", "__stack_pointer", sp).unwrap();
    linker
        .define(&store, "env", "__image_base", image_base)
        .unwrap();
    linker
        .define(&store, "env", "__table_base", table_base)
        .unwrap();
    let interpreted = Arc::new(Mutex::new(Vec::new()));
    let log = interpreted.clone();
    // The stub interpreter runs `iiip` methods as "a + b" from the argument block.
    linker
        .func_wrap(
            "env",
            thunk::INTERPRETER_ENTRY,
            move |mut caller: Caller<'_, ()>, pe: i32, args: i32, size: i32, ret: i32| {
                log.lock().unwrap().push((pe, args, size, ret));
                let data = memory.data_mut(&mut caller);
                let read = |at: i32| {
                    i32::from_le_bytes(data[at as usize..at as usize + 4].try_into().unwrap())
                };
                let sum = read(args) + read(args + 8);
                data[ret as usize..ret as usize + 4].copy_from_slice(&sum.to_le_bytes());
            },
        )
        .unwrap();
    let add_slot = slot(object, emitted, "Program.Add");
    linker
        .func_wrap("env", thunk::DELAY_LOAD_HELPER, move |_cell: i32| {
            (add_slot + TABLE_BASE) as i32
        })
        .unwrap();
    let instance = linker.instantiate(&mut store, &module).unwrap();
    Host {
        store,
        instance,
        memory,
        interpreted,
    }
}

#[test]
fn module_links_and_runs_both_thunk_directions() {
    let (object, emitted) = module();
    let mut host = instantiate(&object, &emitted);
    let add_slot = (slot(&object, &emitted, "Program.Add") + TABLE_BASE) as i32;

    // Interpreter -> R2R: the interpreter's block holds 2 and 40; the thunk calls Add.
    let block = 4096;
    host.memory.data_mut(&mut host.store)[block..block + 4].copy_from_slice(&2i32.to_le_bytes());
    host.memory.data_mut(&mut host.store)[block + 8..block + 12]
        .copy_from_slice(&40i32.to_le_bytes());
    let invoke = host
        .instance
        .get_typed_func::<(i32, i32, i32, i32), ()>(&mut host.store, "interpreter_to_r2r")
        .unwrap();
    invoke
        .call(&mut host.store, (0, add_slot, block as i32, 8192))
        .unwrap();
    let result = i32::from_le_bytes(
        host.memory.data(&host.store)[8192..8196]
            .try_into()
            .unwrap(),
    );
    assert_eq!(result, 42);

    // R2R -> interpreter: the thunk spills 5 and 6 below SP and the stub interpreter adds.
    let call = host
        .instance
        .get_typed_func::<(i32, i32, i32, i32), i32>(&mut host.store, "r2r_to_interpreter")
        .unwrap();
    assert_eq!(
        call.call(&mut host.store, (STACK_TOP, 5, 6, 77)).unwrap(),
        11
    );
    let (pe, args, size, ret) = host.interpreted.lock().unwrap()[0];
    assert_eq!((pe, size), (77, 32));
    assert_eq!(args % 16, 0, "argument block is 16-byte aligned");
    assert!((STACK_TOP - 32..STACK_TOP).contains(&args));
    assert_eq!(ret, args + 16);

    // Import thunk: resolves through the delay-load helper, then calls Add.
    let import = host
        .instance
        .get_typed_func::<(i32, i32, i32, i32), i32>(&mut host.store, "import_thunk")
        .unwrap();
    assert_eq!(
        import
            .call(&mut host.store, (STACK_TOP, 20, 22, 512))
            .unwrap(),
        42
    );
}

#[test]
fn unmanaged_callers_only_has_its_own_unmanaged_slot() {
    let (object, emitted) = module();
    let native = slot(&object, &emitted, "Program.AddNative");
    let managed = slot(&object, &emitted, "Program.Add");
    assert_ne!(native, managed);
    let mut host = instantiate(&object, &emitted);
    let fnptr = (native + TABLE_BASE) as i32;
    let call_native = host
        .instance
        .get_typed_func::<(i32, i32, i32), i32>(&mut host.store, "call_native")
        .unwrap();
    assert_eq!(call_native.call(&mut host.store, (fnptr, 3, 4)).unwrap(), 7);
    // The failure mode crossgen2 had: calling the unmanaged slot with the managed shape.
    let call_managed = host
        .instance
        .get_typed_func::<(i32, i32, i32), i32>(&mut host.store, "call_managed")
        .unwrap();
    let trap = call_managed
        .call(&mut host.store, (fnptr, 3, 4))
        .unwrap_err();
    assert_eq!(
        trap.downcast_ref::<wasmtime::Trap>(),
        Some(&wasmtime::Trap::BadSignature),
        "{trap:?}"
    );
}

#[test]
fn image_in_the_data_segment_names_the_thunk_slots() {
    let (object, emitted) = module();
    let host = instantiate(&object, &emitted);
    let image_len = object.image.len();
    let start = IMAGE_BASE as usize;
    let bytes = host.memory.data(&host.store)[start..start + image_len].to_vec();
    // The loader finds the same image in the module without running it.
    assert_eq!(
        crossgraph_runtime_core::image_from_module(&emitted.bytes).unwrap(),
        bytes.as_slice()
    );
    let image = Image::decode(&bytes).unwrap();
    let FixupSignature::InjectStringThunks(thunks) = &image.import_sections[0].cells[0].signature
    else {
        panic!("expected the InjectStringThunks cell");
    };
    let iiip = sig("iiip");
    let slots: Vec<(String, u32)> = thunks.iter().map(|t| (t.key.clone(), t.code)).collect();
    assert_eq!(
        slots,
        [
            (
                r2r_to_interpreter_symbol(&iiip),
                slot(&object, &emitted, &r2r_to_interpreter_symbol(&iiip))
            ),
            (
                interpreter_to_r2r_symbol(&iiip),
                slot(&object, &emitted, &interpreter_to_r2r_symbol(&iiip))
            ),
        ]
    );
}

#[test]
fn take_functions_moves_the_bodies_out_and_keeps_the_names() {
    let mut object = ObjectModule::new();
    let answer = object.symbol("answer");
    let twice = object.symbol("twice");
    object.define(
        answer,
        function("i", vec![Instruction::I32Const(42)], "answer"),
    );
    object.define(
        twice,
        function(
            "ii",
            vec![
                Instruction::LocalGet(0),
                Instruction::LocalGet(0),
                Instruction::I32Add,
            ],
            "twice",
        ),
    );
    let emitted = object.emit().unwrap();
    let taken = object.take_functions();
    let symbols: Vec<SymbolId> = taken.iter().map(|&(s, _)| s).collect();
    assert_eq!(symbols, [answer, twice]);
    assert_eq!(taken[1].1.code.ops.len(), 3);
    // Names stay (a map of the emitted module still reads them); the symbols are free.
    assert_eq!(object.name(twice), "twice");
    assert_eq!(object.lookup("answer"), Some(answer));
    assert!(!object.is_bound(answer) && !object.is_bound(twice));
    assert_eq!(object.functions().count(), 0);
    // Defining them again gives the same module.
    for (symbol, function) in taken {
        object.define(symbol, function);
    }
    assert_eq!(object.emit().unwrap().bytes, emitted.bytes);
}

#[test]
fn a_shared_op_sequence_is_written_as_if_inline() {
    let ops = || {
        // table[x + image base + 64](x), through a `call_indirect`: `[] -> [i32]`.
        vec![
            Op::Ins(Instruction::LocalGet(0)),
            Op::Ins(Instruction::LocalGet(0)),
            Op::ImageAddress(64),
            Op::Ins(Instruction::I32Add),
            Op::CallIndirect(sig("ii").func_type()),
        ]
    };
    // Inline, one shared sequence used twice, or two made in bulk (`sequences`).
    let module = |how: &str| {
        let mut object = ObjectModule::new();
        let code = match how {
            "shared" => {
                let sequence = object.sequence(ops());
                vec![Op::Sequence(sequence), Op::Sequence(sequence)]
            }
            "bulk" => {
                let ids = object.sequences(vec![ops(), vec![], ops()]);
                assert_eq!(ids.len(), 3);
                assert!(ids.windows(2).all(|w| w[0] != w[1]));
                vec![
                    Op::Sequence(ids[0]),
                    Op::Sequence(ids[1]),
                    Op::Sequence(ids[2]),
                ]
            }
            _ => ops().into_iter().chain(ops()).collect(),
        };
        let f = object.symbol("f");
        object.define(
            f,
            DefinedFunction {
                ty: sig("ii").func_type(),
                code: Code {
                    locals: vec![],
                    ops: code
                        .into_iter()
                        .chain([Op::Ins(Instruction::I32Add)])
                        .collect(),
                },
                table_slot: true,
                export: Some("f".into()),
            },
        );
        object
    };
    let inline = module("inline").emit().unwrap().bytes;
    assert_eq!(module("shared").emit().unwrap().bytes, inline);
    assert_eq!(module("bulk").emit().unwrap().bytes, inline);
    // A sequence another module handed out is an error naming the function.
    let mut other = module("shared");
    let f = other.symbol("f");
    let mut foreign = ObjectModule::new();
    for _ in 0..5 {
        foreign.sequence(vec![]);
    }
    other.lookup_function_mut(f).unwrap().code.ops[0] = Op::Sequence(foreign.sequence(vec![]));
    match other.emit() {
        Err(WriteError::UnknownSequence {
            id: 5,
            referenced_by,
        }) => assert_eq!(referenced_by, "f"),
        other => panic!("{other:?}"),
    }
}

#[test]
#[should_panic(expected = "an op sequence cannot hold another")]
fn op_sequences_are_flat() {
    let mut object = ObjectModule::new();
    let inner = object.sequence(vec![Op::TableBase]);
    object.sequence(vec![Op::Sequence(inner)]);
}

#[test]
fn encoded_runs_write_the_same_module_and_keep_what_is_patched_later() {
    // `[i32] -> [i32]`: x + 1, a placeholder (kept), then + g(x).
    let ops = |g: SymbolId| {
        vec![
            Op::Ins(Instruction::LocalGet(0)),
            Op::Ins(Instruction::I32Const(1)),
            Op::Ins(Instruction::I32Add),
            Op::Ins(Instruction::Nop),
            Op::Ins(Instruction::LocalGet(0)),
            Op::Call(g),
            Op::Ins(Instruction::I32Add),
        ]
    };
    let module = |encode: bool| {
        let mut object = ObjectModule::new();
        let g = object.symbol("g");
        object.define(g, function("ii", vec![Instruction::LocalGet(0)], "g"));
        let mut code = Code {
            locals: vec![],
            ops: ops(g),
        };
        let mut placeholder = 3;
        if encode {
            assert_eq!(code.encode_runs(&[3]), [1]);
            placeholder = 1;
            let shapes: Vec<String> = code
                .ops
                .iter()
                .map(|op| match op {
                    Op::Encoded(bytes) => format!("{} bytes", bytes.len()),
                    op => format!("{op:?}"),
                })
                .collect();
            // local.get 0, i32.const 1, i32.add | nop | local.get 0 | call g | i32.add
            assert_eq!(
                shapes,
                [
                    "5 bytes",
                    "Ins(Nop)",
                    "2 bytes",
                    &format!("Call({g:?})"),
                    "1 bytes"
                ]
            );
        }
        // The placeholder, patched after encoding: + 5.
        let plus_five = object.sequence(vec![
            Op::Ins(Instruction::I32Const(5)),
            Op::Ins(Instruction::I32Add),
        ]);
        code.ops[placeholder] = Op::Sequence(plus_five);
        let f = object.symbol("f");
        object.define(
            f,
            DefinedFunction {
                ty: sig("ii").func_type(),
                code,
                table_slot: true,
                export: Some("f".into()),
            },
        );
        object.emit().unwrap().bytes
    };
    assert_eq!(module(true), module(false));
    // Nothing kept: one run per stretch between relocations.
    let mut object = ObjectModule::new();
    let g = object.symbol("g");
    let mut code = Code {
        locals: vec![],
        ops: ops(g),
    };
    assert!(code.encode_runs(&[]).is_empty());
    assert_eq!(code.ops.len(), 3);
    assert!(matches!(code.ops[1], Op::Call(s) if s == g));
    // Globals and image addresses have fixed encodings: they join the runs; function and
    // type indices do not.
    let mut code = Code {
        locals: vec![],
        ops: vec![
            Op::StackPointerGet,
            Op::ImageAddress(8),
            Op::TableBase,
            Op::TableIndex(g),
            Op::CallIndirect(sig("ii").func_type()),
            Op::StackPointerSet,
        ],
    };
    code.encode_runs(&[]);
    let shapes: Vec<&str> = code
        .ops
        .iter()
        .map(|op| match op {
            Op::Encoded(_) => "encoded",
            Op::TableIndex(_) => "table index",
            Op::CallIndirect(_) => "call_indirect",
            _ => "other",
        })
        .collect();
    assert_eq!(
        shapes,
        ["encoded", "table index", "call_indirect", "encoded"]
    );
    // global.get 0 (stack pointer), global.get 1 (image base), i32.const 8, i32.add,
    // global.get 2 (table base)
    assert!(
        matches!(&code.ops[0], Op::Encoded(b) if **b == [0x23, 0, 0x23, 1, 0x41, 8, 0x6a, 0x23, 2]),
        "{:?}",
        code.ops[0]
    );
}

#[test]
#[should_panic(expected = "`keep` must be ascending")]
fn encoded_runs_want_ascending_indices() {
    let mut code = Code {
        locals: vec![],
        ops: vec![Op::TableBase, Op::TableBase],
    };
    code.encode_runs(&[1, 0]);
}
