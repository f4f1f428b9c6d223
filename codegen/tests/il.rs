//! The baseline IL compiler: what it compiles validates, what it refuses names the reason.

use crossgraph_codegen::il::{CallTarget, IlInstruction, IlOperand, JitInterface, compile};
use crossgraph_codegen::{DefinedFunction, ObjectModule, PointerWidth, WasmSignature};

struct NoCalls;

impl JitInterface for NoCalls {
    fn call_target(&mut self, _: u32) -> CallTarget {
        CallTarget::Unsupported("no calls in this test".into())
    }
}

fn il(ops: &[(&'static str, IlOperand)]) -> Vec<IlInstruction> {
    ops.iter()
        .enumerate()
        .map(|(i, (opcode, operand))| IlInstruction {
            offset: i as u32,
            opcode,
            operand: operand.clone(),
            prefixes: Default::default(),
        })
        .collect()
}

fn validates(sig: &WasmSignature, code: crossgraph_codegen::Code) {
    let mut module = ObjectModule::new();
    let f = module.symbol("F");
    module.define(
        f,
        DefinedFunction {
            ty: sig.func_type(),
            code,
            table_slot: false,
            export: None,
        },
    );
    module.emit().expect("compiled code validates");
}

#[test]
fn straight_line_arithmetic_compiles_to_valid_wasm() {
    use IlOperand::*;
    let sig = WasmSignature::parse("liilp", PointerWidth::Wasm32).unwrap();
    // (long)(a * b + 3) << 2 ^ c, with a local and dup/pop.
    let body = il(&[
        ("ldarg.0", None),
        ("ldarg.1", None),
        ("mul", None),
        ("ldc.i4.3", None),
        ("add", None),
        ("dup", None),
        ("pop", None),
        ("conv.i8", None),
        ("stloc.0", None),
        ("ldloc.0", None),
        ("ldc.i4.2", None),
        ("shl", None),
        ("ldarg.2", None),
        ("xor", None),
        ("ret", None),
    ]);
    let compiled = compile(
        &sig,
        &[crossgraph_codegen::WasmValueType::I64],
        &body,
        &mut NoCalls,
    )
    .unwrap();
    validates(&sig, compiled.code);
}

#[test]
fn conditional_branches_carry_the_values_below_the_condition() {
    use IlOperand::{Branch, None};
    // x + (c ? 1 : 2), as C# compilers emit it: `x` stays on the stack across `brtrue`.
    let sig = WasmSignature::parse("iiip", PointerWidth::Wasm32).unwrap();
    let body = il(&[
        ("ldarg.0", None),
        ("ldarg.1", None),
        ("brtrue.s", Branch(5)),
        ("ldc.i4.2", None),
        ("br.s", Branch(6)),
        ("ldc.i4.1", None),
        ("add", None),
        ("ret", None),
    ]);
    let compiled = compile(&sig, &[], &body, &mut NoCalls).unwrap();
    validates(&sig, compiled.code);
    // x + [1, 2][k] (3 otherwise), through `switch`: each case is a conditional branch with
    // `x` below its condition.
    let body = il(&[
        ("ldarg.0", None),
        ("ldarg.1", None),
        ("switch", IlOperand::Switch(vec![5, 7])),
        ("ldc.i4.3", None),
        ("br.s", Branch(9)),
        ("ldc.i4.1", None),
        ("br.s", Branch(9)),
        ("ldc.i4.2", None),
        ("br.s", Branch(9)),
        ("add", None),
        ("ret", None),
    ]);
    let compiled = compile(&sig, &[], &body, &mut NoCalls).unwrap();
    validates(&sig, compiled.code);
}

/// A JIT interface where `callvirt 0x06000002` reaches `int32 Get(this, int32)` directly.
struct ExactCallee {
    get: crossgraph_codegen::SymbolId,
}

impl JitInterface for ExactCallee {
    fn call_target(&mut self, _: u32) -> CallTarget {
        CallTarget::Unsupported("only callvirt in this test".into())
    }

    fn callvirt_target(&mut self, token: u32) -> CallTarget {
        match token {
            0x0600_0002 => CallTarget::Direct {
                symbol: self.get,
                signature: WasmSignature::parse("iTip", PointerWidth::Wasm32).unwrap(),
            },
            _ => CallTarget::Unsupported("virtual method".into()),
        }
    }
}

#[test]
fn callvirt_of_an_exact_callee_is_a_direct_call_after_a_null_check() {
    use crossgraph_codegen::Op;
    use wasm_encoder::Instruction;
    let mut module = ObjectModule::new();
    let get = module.symbol("Get");
    let caller = module.symbol("CallGet");
    // CallGet(object c, int32 x) = c.Get(x)
    let sig = WasmSignature::parse("iiip", PointerWidth::Wasm32).unwrap();
    let body = il(&[
        ("ldarg.0", IlOperand::None),
        ("ldarg.1", IlOperand::None),
        ("callvirt", IlOperand::Token(0x0600_0002)),
        ("ret", IlOperand::None),
    ]);
    let compiled = compile(&sig, &[], &body, &mut ExactCallee { get }).unwrap();
    // `this` is checked before the direct call: `i32.eqz`, then `if unreachable end`.
    let ops = &compiled.code.ops;
    let call = ops
        .iter()
        .position(|op| matches!(op, Op::Call(s) if *s == get))
        .expect("a direct call");
    let eqz = ops
        .iter()
        .position(|op| matches!(op, Op::Ins(Instruction::I32Eqz)))
        .expect("a null check");
    assert!(matches!(ops[eqz + 2], Op::Ins(Instruction::Unreachable)));
    assert!(eqz < call);
    let get_sig = WasmSignature::parse("iTip", PointerWidth::Wasm32).unwrap();
    module.define(
        get,
        DefinedFunction {
            ty: get_sig.func_type(),
            code: crossgraph_codegen::Code {
                locals: vec![],
                ops: vec![Op::Ins(Instruction::LocalGet(2))],
            },
            table_slot: false,
            export: None,
        },
    );
    module.define(
        caller,
        DefinedFunction {
            ty: sig.func_type(),
            code: compiled.code,
            table_slot: false,
            export: None,
        },
    );
    module.emit().expect("validates");

    // A virtual callee is refused, naming the call.
    let virtual_call = il(&[
        ("ldarg.0", IlOperand::None),
        ("ldarg.1", IlOperand::None),
        ("callvirt", IlOperand::Token(0x0600_0003)),
        ("ret", IlOperand::None),
    ]);
    let err = compile(&sig, &[], &virtual_call, &mut ExactCallee { get }).unwrap_err();
    assert_eq!(err.reason, "IL_0002: callvirt 0x06000003: virtual method");
}

/// A JIT interface that knows three types: 1 is an int64, 2 a 16-byte struct, 3 a class.
struct TwoTypes;

impl JitInterface for TwoTypes {
    fn call_target(&mut self, _: u32) -> CallTarget {
        CallTarget::Unsupported("no calls in this test".into())
    }

    fn value_type(&mut self, token: u32) -> Result<crossgraph_codegen::il::ValueAccess, String> {
        use crossgraph_codegen::il::ValueAccess;
        match token {
            1 => Ok(ValueAccess {
                size: 8,
                access: Some("i8"),
                reference: false,
            }),
            2 => Ok(ValueAccess {
                size: 16,
                access: None,
                reference: false,
            }),
            3 => Ok(ValueAccess {
                size: 4,
                access: Some("ref"),
                reference: true,
            }),
            _ => Err("unknown type".into()),
        }
    }
}

#[test]
fn ldelema_of_a_reference_element_needs_readonly() {
    use IlOperand::{None, Token};
    // &array[0], then the reference there: `[i32 (array)] -> [i32]`.
    let sig = WasmSignature::parse("iip", PointerWidth::Wasm32).unwrap();
    let mut body = il(&[
        ("ldarg.0", None),
        ("ldc.i4.0", None),
        ("ldelema", Token(3)),
        ("ldind.ref", None),
        ("ret", None),
    ]);
    // Without `readonly.` the address checks the array's exact type (III.4.9): refused.
    let err = compile(&sig, &[], &body, &mut TwoTypes).unwrap_err();
    assert_eq!(
        err.reason,
        "IL_0002: ldelema of a reference element (array type check)"
    );
    body[2].prefixes.readonly = true;
    let compiled = compile(&sig, &[], &body, &mut TwoTypes).unwrap();
    validates(&sig, compiled.code);
    // `readonly.` on anything else is refused.
    body[3].prefixes.readonly = true;
    let err = compile(&sig, &[], &body, &mut TwoTypes).unwrap_err();
    assert_eq!(err.reason, "IL_0003: prefixed ldind.ref");
}

#[test]
fn ldobj_stobj_initobj_and_sizeof_validate_and_a_struct_value_is_no_scalar() {
    use IlOperand::{None, Token};
    use crossgraph_codegen::Op;
    use wasm_encoder::Instruction;
    // *p = *q (int64); *q = default(struct); return sizeof(struct)
    let sig = WasmSignature::parse("iiip", PointerWidth::Wasm32).unwrap();
    let body = il(&[
        ("ldarg.0", None),
        ("ldarg.1", None),
        ("ldobj", Token(1)),
        ("stobj", Token(1)),
        ("ldarg.1", None),
        ("initobj", Token(2)),
        ("sizeof", Token(2)),
        ("ret", None),
    ]);
    let compiled = compile(&sig, &[], &body, &mut TwoTypes).unwrap();
    validates(&sig, compiled.code);
    // *q = *p for the struct: through a frame temporary.
    let copy = il(&[
        ("ldarg.1", None),
        ("ldarg.0", None),
        ("ldobj", Token(2)),
        ("stobj", Token(2)),
        ("ldc.i4.0", None),
        ("ret", None),
    ]);
    let compiled = compile(&sig, &[], &copy, &mut TwoTypes).unwrap();
    assert!(
        compiled
            .code
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Ins(Instruction::MemoryCopy { .. })))
            .count()
            == 2,
        "copied into the temporary and out of it"
    );
    validates(&sig, compiled.code);
    let structs = il(&[("ldarg.0", None), ("ldobj", Token(2)), ("ret", None)]);
    let err = compile(&sig, &[], &structs, &mut TwoTypes).unwrap_err();
    assert_eq!(
        err.reason,
        "IL_0002: a struct value where a scalar is expected"
    );
    let unknown = il(&[("sizeof", Token(4)), ("ret", None)]);
    let err = compile(&sig, &[], &unknown, &mut TwoTypes).unwrap_err();
    assert_eq!(err.reason, "IL_0000: sizeof 0x00000004: unknown type");
}

/// A JIT interface where local 0 is an int32 and local 1 a struct.
struct FrameJit;

impl JitInterface for FrameJit {
    fn call_target(&mut self, _: u32) -> CallTarget {
        CallTarget::Unsupported("no calls in this test".into())
    }

    fn local_access(&mut self, index: u32) -> Option<&'static str> {
        (index == 0).then_some("i4")
    }

    fn arg_access(&mut self, _: u32) -> Option<&'static str> {
        Some("i4")
    }
}

#[test]
fn address_taken_locals_and_arguments_get_frame_slots() {
    use IlOperand::{None, Var};
    // local0 = a; *(&local0) += *(&a); return local0
    let body = il(&[
        ("ldarg.0", None),
        ("stloc.0", None),
        ("ldloca.s", Var(0)),
        ("dup", None),
        ("ldind.i4", None),
        ("ldarga.s", Var(0)),
        ("ldind.i4", None),
        ("add", None),
        ("stind.i4", None),
        ("ldloc.0", None),
        ("ret", None),
    ]);
    let wasm = crossgraph_codegen::WasmValueType::I32;
    let managed = WasmSignature::parse("iip", PointerWidth::Wasm32).unwrap();
    let compiled = compile(&managed, &[wasm, wasm], &body, &mut FrameJit).unwrap();
    validates(&managed, compiled.code);
    // No SP parameter to carve a frame from.
    let unmanaged = WasmSignature::parse("ii", PointerWidth::Wasm32).unwrap();
    let err = compile(&unmanaged, &[wasm, wasm], &body, &mut FrameJit).unwrap_err();
    assert_eq!(
        err.reason,
        "a frame (address of a local, value built in place) in an UnmanagedCallersOnly method"
    );
    let structs = il(&[
        ("ldloca.s", Var(1)),
        ("pop", None),
        ("ldc.i4.0", None),
        ("ret", None),
    ]);
    let err = compile(&managed, &[wasm, wasm], &structs, &mut FrameJit).unwrap_err();
    assert_eq!(
        err.reason,
        "address of local 1, a struct or a type not described here"
    );
    // The default JIT interface knows no local's type.
    let err = compile(&managed, &[wasm, wasm], &body, &mut NoCalls).unwrap_err();
    assert_eq!(
        err.reason,
        "address of local 0, a struct or a type not described here"
    );
}

#[test]
fn ldnull_is_a_pointer_sized_zero() {
    use IlOperand::None;
    // (o == null) for a reference argument, on wasm32 and wasm64.
    for (signature, width) in [("iip", PointerWidth::Wasm32), ("ilp", PointerWidth::Wasm64)] {
        let sig = WasmSignature::parse(signature, width).unwrap();
        let body = il(&[
            ("ldarg.0", None),
            ("ldnull", None),
            ("ceq", None),
            ("ret", None),
        ]);
        let compiled = compile(&sig, &[], &body, &mut NoCalls).unwrap();
        validates(&sig, compiled.code);
    }
}

#[test]
fn constructs_outside_the_subset_are_refused_with_their_offset() {
    let sig = WasmSignature::parse("iip", PointerWidth::Wasm32).unwrap();
    let fields = il(&[
        ("ldarg.0", IlOperand::None),
        ("ldfld", IlOperand::Token(0x0400_0001)),
        ("ret", IlOperand::None),
    ]);
    let err = compile(&sig, &[], &fields, &mut NoCalls).unwrap_err();
    assert_eq!(
        err.reason,
        "IL_0001: ldfld 0x04000001: field 0x04000001 is not supported here"
    );
    let localloc = il(&[
        ("ldarg.0", IlOperand::None),
        ("ldarg.0", IlOperand::None),
        ("localloc", IlOperand::None),
        ("ret", IlOperand::None),
    ]);
    let err = compile(&sig, &[], &localloc, &mut NoCalls).unwrap_err();
    // III.3.47: nothing but the size may be on the stack.
    assert_eq!(
        err.reason,
        "IL_0002: localloc with a non-empty evaluation stack"
    );
    let arglist = il(&[("arglist", IlOperand::None), ("ret", IlOperand::None)]);
    let err = compile(&sig, &[], &arglist, &mut NoCalls).unwrap_err();
    assert_eq!(
        err.reason,
        "IL_0000: arglist is outside the baseline subset"
    );
    // Storing a reference element needs the array covariance check.
    let stelem = il(&[
        ("ldarg.0", IlOperand::None),
        ("ldarg.0", IlOperand::None),
        ("ldarg.0", IlOperand::None),
        ("stelem.ref", IlOperand::None),
        ("ldc.i4.0", IlOperand::None),
        ("ret", IlOperand::None),
    ]);
    let err = compile(&sig, &[], &stelem, &mut NoCalls).unwrap_err();
    assert_eq!(
        err.reason,
        "IL_0003: stelem.ref of a reference (array covariance check)"
    );
    let inconsistent_stacks = il(&[
        ("ldarg.0", IlOperand::None),
        ("ldarg.0", IlOperand::None),
        ("brtrue.s", IlOperand::Branch(4)),
        ("ldarg.0", IlOperand::None),
        ("ret", IlOperand::None),
    ]);
    let err = compile(&sig, &[], &inconsistent_stacks, &mut NoCalls).unwrap_err();
    assert!(
        err.reason.contains("inconsistent evaluation stack"),
        "{}",
        err.reason
    );
    let call = il(&[
        ("call", IlOperand::Token(0x0600_0001)),
        ("ret", IlOperand::None),
    ]);
    let err = compile(&sig, &[], &call, &mut NoCalls).unwrap_err();
    assert!(
        err.reason.contains("no calls in this test"),
        "{}",
        err.reason
    );
    let wrong = il(&[
        ("ldarg.0", IlOperand::None),
        ("conv.r8", IlOperand::None),
        ("ret", IlOperand::None),
    ]);
    assert!(compile(&sig, &[], &wrong, &mut NoCalls).is_err());
    // Prefixes the baseline compiler does not honour on that opcode.
    for (prefixes, opcode) in [
        (
            crossgraph_codegen::il::IlPrefixes {
                tail: true,
                ..Default::default()
            },
            "ldind.i4",
        ),
        (
            crossgraph_codegen::il::IlPrefixes {
                volatile: true,
                ..Default::default()
            },
            "add",
        ),
        (
            crossgraph_codegen::il::IlPrefixes {
                other: true,
                ..Default::default()
            },
            "ldind.i4",
        ),
    ] {
        let mut body = il(&[
            ("ldarg.0", IlOperand::None),
            ("ldarg.0", IlOperand::None),
            (opcode, IlOperand::None),
            ("ret", IlOperand::None),
        ]);
        body[2].prefixes = prefixes;
        let err = compile(&sig, &[], &body, &mut NoCalls).unwrap_err();
        assert_eq!(err.reason, format!("IL_0002: prefixed {opcode}"));
    }
}

#[test]
fn branches_compile_to_a_block_dispatch_loop_that_validates() {
    use IlOperand::*;
    let sig = WasmSignature::parse("iip", PointerWidth::Wasm32).unwrap();
    // Abs: a < 0 ? -a : a, with a value live across the join.
    let abs = il(&[
        ("ldarg.0", None),
        ("ldc.i4.0", None),
        ("bge.s", Branch(6)),
        ("ldarg.0", None),
        ("neg", None),
        ("br.s", Branch(7)),
        ("ldarg.0", None),
        ("ret", None),
    ]);
    validates(&sig, compile(&sig, &[], &abs, &mut NoCalls).unwrap().code);
    // A loop: sum = 0; while (n > 0) { sum += n; n--; } then switch (n) { case 0: -1 }.
    let looped = il(&[
        ("ldc.i4.0", None),
        ("stloc.0", None),
        ("br.s", Branch(11)),
        ("ldloc.0", None),
        ("ldarg.0", None),
        ("add", None),
        ("stloc.0", None),
        ("ldarg.0", None),
        ("ldc.i4.1", None),
        ("sub", None),
        ("starg.s", Var(0)),
        ("ldarg.0", None),
        ("ldc.i4.0", None),
        ("bgt.s", Branch(3)),
        ("ldarg.0", None),
        ("switch", Switch(vec![18])),
        ("ldloc.0", None),
        ("ret", None),
        ("ldc.i4.m1", None),
        ("ret", None),
    ]);
    let code = compile(
        &sig,
        &[crossgraph_codegen::WasmValueType::I32],
        &looped,
        &mut NoCalls,
    )
    .unwrap()
    .code;
    validates(&sig, code);
}

/// A JIT interface for async variants: token 1 is `AsyncHelpers.Await`, token 2 an async
/// callee `int32(continuation, int32)` with R2R code (symbol `callee`).
struct AsyncJit {
    callee: crossgraph_codegen::SymbolId,
    suspension: Result<crossgraph_codegen::il::Suspension, String>,
}

impl JitInterface for AsyncJit {
    fn call_target(&mut self, _: u32) -> CallTarget {
        CallTarget::Unsupported("only awaited calls in this test".into())
    }

    fn is_await(&mut self, token: u32) -> bool {
        token == 1
    }

    fn async_call_target(&mut self, token: u32) -> CallTarget {
        match token {
            2 => CallTarget::Direct {
                symbol: self.callee,
                signature: WasmSignature::parse("iaip", PointerWidth::Wasm32).unwrap(),
            },
            _ => CallTarget::Unsupported("unknown".into()),
        }
    }

    fn suspension(&mut self) -> Result<crossgraph_codegen::il::Suspension, String> {
        self.suspension.clone()
    }
}

#[test]
fn awaits_split_the_variant_and_malformed_awaits_are_refused() {
    use IlOperand::*;
    use crossgraph_codegen::resumption::AsyncHelpers;
    let variant = WasmSignature::parse("iaiip", PointerWidth::Wasm32).unwrap();
    let mut module = ObjectModule::new();
    let helpers = AsyncHelpers::intern(&mut module);
    helpers.import(&mut module);
    let callee = module.symbol("callee");
    let stub = module.symbol("stub");
    let mut jit = AsyncJit {
        callee,
        suspension: Ok(crossgraph_codegen::il::Suspension {
            resumption_stub: stub,
            helpers,
        }),
    };
    // a * await callee(b) + a: `a` stays on the stack across the await.
    let body = il(&[
        ("ldarg.0", None),
        ("ldarg.0", None),
        ("ldarg.1", None),
        ("call", Token(2)),
        ("call", Token(1)),
        ("mul", None),
        ("add", None),
        ("ret", None),
    ]);
    let compiled = compile(&variant, &[], &body, &mut jit).unwrap();
    assert_eq!(compiled.resumption_stub, Some(stub));
    use crossgraph_codegen::il::SiteKind;
    assert_eq!(compiled.sites_of(SiteKind::AsyncCall).count(), 1);
    assert_eq!(compiled.sites_of(SiteKind::Call).count(), 0);
    for (symbol, sig) in [(callee, "iaip"), (stub, "iiip")] {
        module.define(
            symbol,
            DefinedFunction {
                ty: WasmSignature::parse(sig, PointerWidth::Wasm32)
                    .unwrap()
                    .func_type(),
                code: crossgraph_codegen::Code {
                    locals: vec![],
                    ops: vec![crossgraph_codegen::Op::Ins(
                        wasm_encoder::Instruction::Unreachable,
                    )],
                },
                table_slot: true,
                export: Option::None,
            },
        );
    }
    let f = module.symbol("F");
    module.define(
        f,
        DefinedFunction {
            ty: variant.func_type(),
            code: compiled.code,
            table_slot: false,
            export: Option::None,
        },
    );
    module.emit().expect("the split variant validates");

    let refused = |body: &[(&'static str, IlOperand)], jit: &mut AsyncJit| {
        compile(&variant, &[], &il(body), jit).unwrap_err().reason
    };
    // Await of something that is not a call's result.
    let reason = refused(
        &[("ldarg.0", None), ("call", Token(1)), ("ret", None)],
        &mut jit,
    );
    assert!(reason.contains("IL_0001") && reason.contains("not the result of a call"));
    // A branch landing between the call and its await.
    let reason = refused(
        &[
            ("ldarg.0", None),
            ("call", Token(2)),
            ("call", Token(1)),
            ("ret", None),
            ("br", Branch(2)),
        ],
        &mut jit,
    );
    assert!(
        reason.contains("between an async call and its await"),
        "{reason}"
    );
    // No way to suspend: the reason the JIT interface gives.
    jit.suspension = Err("no resumption stub here".into());
    let reason = refused(
        &[
            ("ldarg.0", None),
            ("call", Token(2)),
            ("call", Token(1)),
            ("ret", None),
        ],
        &mut jit,
    );
    assert_eq!(reason, "no resumption stub here");
}
