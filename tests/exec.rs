//! End to end: a module written by the object writer (R2R methods, both thunk directions, an
//! UnmanagedCallersOnly method, a lazy MethodEntry cell with its import thunk, an image)
//! runs in wasmtime through runtime-core's loader and dispatch paths.

use std::sync::{Arc, Mutex};

use crossgraph::codegen::thunk::{
    cell_import_thunk, interpreter_to_r2r, interpreter_to_r2r_symbol, r2r_to_interpreter,
    r2r_to_interpreter_symbol,
};
use crossgraph::codegen::{
    Code, DataReloc, DefinedFunction, ObjectModule, Op, PointerWidth, WasmSignature,
};
use crossgraph::runtime_core::exec::{ExecConfig, Executor, Interpreter};
use crossgraph::runtime_core::format::{
    FixupSignature, Image, ImportCell, ImportSection, ImportSectionFlags, ImportSectionType,
    MethodEntryPoint, MethodRef, MethodSigFlags, StringThunk,
};
use crossgraph::runtime_core::loader::UNMANAGED_CALLERS_ONLY;
use crossgraph::runtime_core::{CallKind, InterpretedMethod, LoadError, Loader, ThunkRuntime};
use wasm_encoder::{Instruction, MemArg};
use wasmtime::Val;

const ADD: u32 = 0x0600_0001;
const ADD_NATIVE: u32 = 0x0600_0002;
const CALLS_INTERPRETED: u32 = 0x0600_0003;
const INTERPRETED: u32 = 0x0600_0009;

fn sig(s: &str) -> WasmSignature {
    WasmSignature::parse(s, PointerWidth::Wasm32).unwrap()
}

fn method(token: u32) -> MethodRef {
    MethodRef {
        flags: MethodSigFlags::NONE,
        token,
    }
}

/// Runs `INTERPRETED` as `a + 10 * b`, and records what it was handed.
#[derive(Default)]
struct TestInterpreter {
    calls: Mutex<Vec<(u32, u32)>>,
}

impl Interpreter for TestInterpreter {
    fn execute(
        &self,
        entry_point: u32,
        memory: &mut [u8],
        args: u32,
        size: u32,
        ret: u32,
    ) -> Result<(), String> {
        self.calls.lock().unwrap().push((entry_point, size));
        let read =
            |at: u32| i32::from_le_bytes(memory[at as usize..at as usize + 4].try_into().unwrap());
        let result = read(args) + 10 * read(args + 8);
        memory[ret as usize..ret as usize + 4].copy_from_slice(&result.to_le_bytes());
        Ok(())
    }
}

struct Built {
    bytes: Vec<u8>,
    cell_rva: u32,
}

fn placeholder(i: u32) -> u32 {
    0x7eed_0000 + i
}

fn build() -> Built {
    let iiip = sig("iiip");
    let mut object = ObjectModule::new();
    let function = |s: &str, ops: Vec<Op>, export: &str| DefinedFunction {
        ty: sig(s).func_type(),
        code: Code {
            locals: vec![],
            ops,
        },
        table_slot: true,
        export: Some(export.into()),
    };
    let add = object.symbol("Program.Add");
    object.define(
        add,
        function(
            "iiip",
            vec![
                Op::Ins(Instruction::LocalGet(1)),
                Op::Ins(Instruction::LocalGet(2)),
                Op::Ins(Instruction::I32Add),
            ],
            "Program.Add",
        ),
    );
    let add_native = object.symbol("Program.AddNative");
    object.define(
        add_native,
        function(
            "iii",
            vec![
                Op::Ins(Instruction::LocalGet(0)),
                Op::Ins(Instruction::LocalGet(1)),
                Op::Ins(Instruction::I32Add),
            ],
            "Program.AddNative",
        ),
    );
    r2r_to_interpreter(&iiip, &mut object).unwrap();
    interpreter_to_r2r(&iiip, &mut object).unwrap();

    // The image, with placeholders where code references and the lazy cell go.
    let image = Image {
        import_sections: vec![
            ImportSection {
                flags: ImportSectionFlags::EAGER,
                kind: ImportSectionType::UNKNOWN,
                entry_size: 4,
                cells: vec![ImportCell {
                    initial: 0,
                    signature: FixupSignature::InjectStringThunks(vec![
                        StringThunk {
                            key: r2r_to_interpreter_symbol(&iiip),
                            code: placeholder(0),
                        },
                        StringThunk {
                            key: interpreter_to_r2r_symbol(&iiip),
                            code: placeholder(1),
                        },
                    ]),
                }],
            },
            ImportSection {
                flags: ImportSectionFlags::NONE,
                kind: ImportSectionType::UNKNOWN,
                entry_size: 4,
                cells: vec![ImportCell {
                    initial: placeholder(2),
                    signature: FixupSignature::MethodEntry(method(INTERPRETED)),
                }],
            },
        ],
        method_entry_points: vec![
            MethodEntryPoint {
                method: method(ADD),
                code: placeholder(3),
                fixups: vec![],
            },
            MethodEntryPoint {
                method: MethodRef {
                    flags: UNMANAGED_CALLERS_ONLY,
                    token: ADD_NATIVE,
                },
                code: placeholder(4),
                fixups: vec![],
            },
            MethodEntryPoint {
                method: method(CALLS_INTERPRETED),
                code: placeholder(5),
                fixups: vec![],
            },
        ],
        ..Image::default()
    };
    let bytes = image.encode().unwrap();
    let at = |i: u32| {
        bytes
            .windows(4)
            .position(|w| w == placeholder(i).to_le_bytes())
            .unwrap() as u32
    };
    let cell_rva = at(2);

    // CallsInterpreted(a, b): a managed call through the lazy cell: first through the cell's
    // import thunk, which resolves the cell to the R2R -> interpreter thunk.
    let thunk = cell_import_thunk(&iiip, cell_rva, &mut object);
    let calls = object.symbol("Program.CallsInterpreted");
    object.define(
        calls,
        function(
            "iiip",
            vec![
                Op::Ins(Instruction::LocalGet(0)),
                Op::Ins(Instruction::LocalGet(1)),
                Op::Ins(Instruction::LocalGet(2)),
                Op::Ins(Instruction::LocalGet(3)),
                // target = __table_base + cell (cells hold slots relative to the base)
                Op::ImageAddress(cell_rva),
                Op::Ins(Instruction::I32Load(MemArg {
                    offset: 0,
                    align: 2,
                    memory_index: 0,
                })),
                Op::TableBase,
                Op::Ins(Instruction::I32Add),
                Op::CallIndirect(iiip.func_type()),
            ],
            "Program.CallsInterpreted",
        ),
    );
    let keys = [
        r2r_to_interpreter_symbol(&iiip),
        interpreter_to_r2r_symbol(&iiip),
    ];
    object.image_relocs = vec![
        DataReloc {
            offset: at(0),
            symbol: object.lookup(&keys[0]).unwrap(),
        },
        DataReloc {
            offset: at(1),
            symbol: object.lookup(&keys[1]).unwrap(),
        },
        DataReloc {
            offset: cell_rva,
            symbol: thunk,
        },
        DataReloc {
            offset: at(3),
            symbol: add,
        },
        DataReloc {
            offset: at(4),
            symbol: add_native,
        },
        DataReloc {
            offset: at(5),
            symbol: calls,
        },
    ];
    object.image = bytes;
    Built {
        bytes: object.emit().unwrap().bytes,
        cell_rva,
    }
}

fn executor() -> (Executor, Arc<TestInterpreter>, Built) {
    let built = build();
    let loader = Arc::new(Loader::new(ThunkRuntime::default()));
    loader.register_interpreted(
        method(INTERPRETED),
        InterpretedMethod {
            thunk_key: r2r_to_interpreter_symbol(&sig("iiip")),
        },
    );
    let interpreter = Arc::new(TestInterpreter::default());
    let executor = Executor::instantiate(
        &built.bytes,
        loader,
        interpreter.clone(),
        ExecConfig::default(),
    )
    .unwrap();
    (executor, interpreter, built)
}

#[test]
fn invoke_runs_r2r_code_without_bytecode_through_the_interpreter_to_r2r_thunk() {
    let (mut exec, interpreter, _) = executor();
    let result = exec
        .invoke(method(ADD), &sig("iiip"), &[Val::I32(2), Val::I32(40)])
        .unwrap();
    assert_eq!(result.map(|v| v.unwrap_i32()), Some(42));
    // The interpreter was never involved.
    assert!(interpreter.calls.lock().unwrap().is_empty());
}

#[test]
fn unmanaged_callers_only_is_called_through_its_own_unmanaged_entry() {
    let (mut exec, _, _) = executor();
    let native = exec.unmanaged_entry(method(ADD_NATIVE)).unwrap();
    let managed = exec
        .loader()
        .method_entry(method(ADD), CallKind::Managed)
        .unwrap();
    assert_ne!(native, managed.0);
    let results = exec
        .call_unmanaged(method(ADD_NATIVE), &[Val::I32(3), Val::I32(4)])
        .unwrap();
    assert_eq!(results[0].unwrap_i32(), 7);
    assert!(matches!(
        exec.loader()
            .method_entry(method(ADD_NATIVE), CallKind::Managed),
        Err(LoadError::UnmanagedOnly { .. })
    ));
}

#[test]
fn a_lazy_cell_resolves_to_the_r2r_to_interpreter_thunk_on_first_call() {
    let (mut exec, interpreter, built) = executor();
    let config = ExecConfig::default();
    let cell = (config.image_base + built.cell_rva) as usize;
    let call = |exec: &mut Executor, a: i32, b: i32| {
        exec.invoke(
            method(CALLS_INTERPRETED),
            &sig("iiip"),
            &[Val::I32(a), Val::I32(b)],
        )
        .unwrap()
        .map(|v| v.unwrap_i32())
    };
    assert_eq!(call(&mut exec, 1, 2), Some(21));
    assert_eq!(call(&mut exec, 3, 4), Some(43));
    let calls = interpreter.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|&(_, size)| size == 32));
    // The cell now holds the R2R -> interpreter thunk's slot, not its import thunk's.
    let slot = exec.read_u32(cell).unwrap();
    let thunk = exec
        .loader()
        .thunks()
        .table()
        .lookup_thunk(&r2r_to_interpreter_symbol(&sig("iiip")))
        .unwrap();
    assert_eq!(slot + config.table_base, thunk.0);
}

#[test]
fn invoke_of_a_method_without_r2r_code_goes_to_the_interpreter() {
    let (mut exec, interpreter, _) = executor();
    let result = exec
        .invoke(
            method(INTERPRETED),
            &sig("iiip"),
            &[Val::I32(5), Val::I32(6)],
        )
        .unwrap();
    assert_eq!(result.map(|v| v.unwrap_i32()), Some(65));
    assert_eq!(
        interpreter.calls.lock().unwrap().as_slice(),
        &[(INTERPRETED, 32)]
    );
    // A method nobody has is an error, not a call into the interpreter.
    assert!(
        exec.invoke(
            method(0x0600_0077),
            &sig("iiip"),
            &[Val::I32(1), Val::I32(2)]
        )
        .is_err()
    );
}

#[test]
fn an_image_naming_a_slot_the_module_lacks_is_refused() {
    let mut object = ObjectModule::new();
    let f = object.symbol("F");
    object.define(
        f,
        DefinedFunction {
            ty: sig("vp").func_type(),
            code: Code::default(),
            table_slot: true,
            export: None,
        },
    );
    object.image = Image {
        method_entry_points: vec![MethodEntryPoint {
            method: method(ADD),
            code: 500,
            fixups: vec![],
        }],
        ..Image::default()
    }
    .encode()
    .unwrap();
    let bytes = object.emit().unwrap().bytes;
    let loader = Arc::new(Loader::new(ThunkRuntime::default()));
    let err = Executor::instantiate(
        &bytes,
        loader,
        Arc::new(TestInterpreter::default()),
        ExecConfig::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            crossgraph::runtime_core::exec::ExecError::CodeOutOfRange {
                code: 500,
                slots: 1
            }
        ),
        "{err}"
    );
}

#[test]
fn methods_are_called_by_exported_name_through_the_same_path() {
    let (mut exec, interpreter, _) = executor();
    let result = exec
        .invoke_by_name("Program.Add", &sig("iiip"), &[Val::I32(20), Val::I32(22)])
        .unwrap();
    assert_eq!(result.map(|v| v.unwrap_i32()), Some(42));
    assert!(interpreter.calls.lock().unwrap().is_empty());
    // A name the module does not export is a typed error.
    assert!(matches!(
        exec.invoke_by_name("Program.Missing", &sig("iiip"), &[Val::I32(1), Val::I32(2)]),
        Err(crossgraph::runtime_core::exec::ExecError::MissingExport { .. })
    ));
}
