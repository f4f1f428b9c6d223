//! Thunks and the object writer: WAT snapshots of both thunk directions and the import thunk
//! for a table of signatures, argument layouts, and writer errors.

use crossgraph_codegen::thunk::{
    self, ArgLayout, ArgRole, RetSlot, SlotKind, ThunkError, interpreter_to_r2r,
    portable_entry_point_import_thunk, r2r_to_interpreter,
};
use crossgraph_codegen::{
    Code, DataReloc, DefinedFunction, ObjectModule, Op, PointerWidth, WasmSignature, WasmValueType,
    WriteError,
};

fn sig(s: &str) -> WasmSignature {
    WasmSignature::parse(s, PointerWidth::Wasm32).unwrap()
}

fn thunk_module(s: &str) -> ObjectModule {
    let sig = sig(s);
    let mut module = ObjectModule::new();
    let r2r = r2r_to_interpreter(&sig, &mut module).unwrap();
    interpreter_to_r2r(&sig, &mut module).unwrap();
    portable_entry_point_import_thunk(&sig, &mut module).unwrap();
    // Thunks are interned by key: asking again returns the same symbol, adds nothing.
    assert_eq!(r2r_to_interpreter(&sig, &mut module).unwrap(), r2r);
    module
}

#[test]
fn thunk_wat_snapshots() {
    for s in [
        "vp", "iiip", "lTlp", "S16Tip", "vS24dp", "VVp", "viaip", "vTA32ep", "fS12ffp",
    ] {
        let emitted = thunk_module(s)
            .emit()
            .unwrap_or_else(|e| panic!("{s}: {e}"));
        let wat = wasmprinter::print_bytes(&emitted.bytes).unwrap();
        insta::assert_snapshot!(format!("thunks_{s}"), wat);
    }
}

#[test]
fn unmanaged_signatures_get_cell_import_thunks_only() {
    let native = sig("iii");
    let mut module = ObjectModule::new();
    assert!(matches!(
        r2r_to_interpreter(&native, &mut module),
        Err(ThunkError::Unmanaged { .. })
    ));
    assert!(matches!(
        interpreter_to_r2r(&native, &mut module),
        Err(ThunkError::Unmanaged { .. })
    ));
    assert!(portable_entry_point_import_thunk(&native, &mut module).is_err());
    thunk::cell_import_thunk(&native, 64, &mut module);
    module.image = vec![0; 128];
    let wat = wasmprinter::print_bytes(module.emit().unwrap().bytes).unwrap();
    insta::assert_snapshot!("cell_import_thunk_iii", wat);
}

#[test]
fn arg_layout_is_shared_and_aligned() {
    let layout = ArgLayout::of(&sig("S16TiaVS24A32dp")).unwrap();
    let slots: Vec<(ArgRole, SlotKind, u32, u32)> = layout
        .args
        .iter()
        .map(|s| (s.role, s.kind, s.offset, s.wasm_param))
        .collect();
    use WasmValueType::*;
    assert_eq!(
        slots,
        [
            (ArgRole::This, SlotKind::Value(I32), 0, 1),
            (ArgRole::GenericContext, SlotKind::Value(I32), 8, 3),
            (ArgRole::AsyncContinuation, SlotKind::Value(I32), 16, 4),
            (ArgRole::Param(0), SlotKind::Value(V128), 32, 5),
            (ArgRole::Param(1), SlotKind::Struct { size: 24 }, 48, 6),
            (ArgRole::Param(2), SlotKind::Struct { size: 32 }, 80, 7),
            (ArgRole::Param(3), SlotKind::Value(F64), 112, 8),
        ]
    );
    // The return buffer is wasm parameter 2: this before retbuf.
    assert_eq!(
        layout.ret,
        RetSlot::Buffer {
            size: 16,
            wasm_param: 2
        }
    );
    assert_eq!(layout.size, 128);
    let iiip = ArgLayout::of(&sig("iiip")).unwrap();
    assert_eq!(
        iiip.ret,
        RetSlot::Value {
            ty: I32,
            offset: 16
        }
    );
    assert_eq!(iiip.size, 32);
}

#[test]
fn writer_errors_name_the_symbol() {
    let body = |ops| DefinedFunction {
        ty: sig("vp").func_type(),
        code: Code {
            locals: vec![],
            ops,
        },
        table_slot: false,
        export: None,
    };
    let mut module = ObjectModule::new();
    let caller = module.symbol("Caller");
    let missing = module.symbol("Missing");
    module.define(caller, body(vec![Op::Call(missing)]));
    assert_eq!(
        module.emit().unwrap_err(),
        WriteError::MissingSymbol {
            symbol: "Missing".into(),
            referenced_by: "Caller".into()
        }
    );

    let mut twice = ObjectModule::new();
    let f = twice.symbol("F");
    twice.define(f, body(vec![]));
    twice.define(f, body(vec![]));
    assert_eq!(
        twice.emit().unwrap_err(),
        WriteError::DuplicateSymbol { symbol: "F".into() }
    );

    let mut reloc = ObjectModule::new();
    let f = reloc.symbol("F");
    reloc.define(f, body(vec![]));
    reloc.image = vec![0; 8];
    reloc.image_relocs = vec![DataReloc {
        offset: 6,
        symbol: f,
    }];
    assert!(matches!(
        reloc.emit(),
        Err(WriteError::RelocOutOfImage { offset: 6, size: 8 })
    ));
    reloc.image_relocs[0].offset = 0;
    assert_eq!(
        reloc.emit().unwrap_err(),
        WriteError::NoTableSlot {
            symbol: "F".into(),
            referenced_by: "image".into()
        }
    );

    // Code the validator rejects is reported, not returned.
    let mut bad = ObjectModule::new();
    let f = bad.symbol("Bad");
    bad.define(f, body(vec![Op::Ins(wasm_encoder::Instruction::I32Add)]));
    assert!(matches!(bad.emit(), Err(WriteError::Invalid { .. })));
}

#[test]
fn emitted_bytes_do_not_depend_on_the_thread_count() {
    let module = thunk_module("S16Tip");
    let emit = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| module.emit().unwrap().bytes)
    };
    assert_eq!(emit(1), emit(2));
    assert_eq!(emit(1), emit(4));
}

/// Resumption stubs for a `this`-taking variant returning `i64` and a static `void` one: the
/// module validates (the writer checks it) and the WAT is stable.
#[test]
fn resumption_stub_wat_snapshots() {
    use crossgraph_codegen::resumption::{AsyncHelpers, ResumptionStubError, resumption_stub};
    for (s, token) in [("lTaip", 0x0600_0007u32), ("vadp", 0x0600_0009)] {
        let variant_sig = sig(s);
        let mut module = ObjectModule::new();
        let helpers = AsyncHelpers::intern(&mut module);
        helpers.import(&mut module);
        let variant = module.symbol("variant");
        module.define(
            variant,
            DefinedFunction {
                ty: variant_sig.func_type(),
                code: Code {
                    locals: vec![],
                    ops: vec![Op::Ins(wasm_encoder::Instruction::Unreachable)],
                },
                table_slot: true,
                export: None,
            },
        );
        let stub = module.symbol("stub");
        let function = resumption_stub(variant, &variant_sig, token, helpers.take).unwrap();
        module.define(stub, function);
        let wat = wasmprinter::print_bytes(module.emit().unwrap().bytes).unwrap();
        insta::assert_snapshot!(format!("resumption_stub_{s}"), wat);
    }
    // Only managed async variants have resumption stubs.
    let mut module = ObjectModule::new();
    let take = module.symbol("take");
    let variant = module.symbol("variant");
    assert!(matches!(
        resumption_stub(variant, &sig("iiip"), 1, take),
        Err(ResumptionStubError { .. })
    ));
}

/// Bodies are validated in parallel while the parser goes on; the error reported is the
/// first invalid body in module order for any thread count.
#[test]
fn the_first_invalid_body_is_reported_whatever_the_thread_count() {
    use wasm_encoder::Instruction;
    let mut module = ObjectModule::new();
    for i in 0..1000 {
        let op = match i {
            300 => Instruction::I32Add, // first error: i32 operands missing
            700 => Instruction::F64Add, // later error: f64 operands missing
            _ => Instruction::Nop,
        };
        let f = module.symbol(&format!("F{i}"));
        module.define(
            f,
            DefinedFunction {
                ty: sig("vp").func_type(),
                code: Code {
                    locals: vec![],
                    ops: vec![Op::Ins(op)],
                },
                table_slot: false,
                export: None,
            },
        );
    }
    let error = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| module.emit().unwrap_err())
    };
    let WriteError::Invalid { message } = error(1) else {
        panic!("an invalid module");
    };
    assert!(message.contains("i32"), "{message}");
    for threads in [2, 4] {
        assert_eq!(
            error(threads),
            WriteError::Invalid {
                message: message.clone()
            }
        );
    }
}

/// The sections before the code section validate while the bodies encode: an error there
/// (two exports of one name) is reported, and before any body error behind it.
#[test]
fn an_invalid_head_is_reported_before_the_bodies() {
    use wasm_encoder::Instruction;
    let mut module = ObjectModule::new();
    for (name, op) in [("A", Instruction::Nop), ("B", Instruction::I32Add)] {
        let f = module.symbol(name);
        module.define(
            f,
            DefinedFunction {
                ty: sig("vp").func_type(),
                code: Code {
                    locals: vec![],
                    ops: vec![Op::Ins(op)],
                },
                table_slot: false,
                export: Some("same".into()),
            },
        );
    }
    let WriteError::Invalid { message } = module.emit().unwrap_err() else {
        panic!("an invalid module");
    };
    assert!(
        message.contains("duplicate export name `same`"),
        "{message}"
    );
}
