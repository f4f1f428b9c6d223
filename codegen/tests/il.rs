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
            prefixed: false,
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
fn constructs_outside_the_subset_are_refused_with_their_offset() {
    let sig = WasmSignature::parse("iip", PointerWidth::Wasm32).unwrap();
    let branchy = il(&[
        ("ldarg.0", IlOperand::None),
        ("brtrue.s", IlOperand::Branch(4)),
        ("ldc.i4.0", IlOperand::None),
        ("ret", IlOperand::None),
    ]);
    let err = compile(&sig, &[], &branchy, &mut NoCalls).unwrap_err();
    assert_eq!(
        err.reason,
        "IL_0001: brtrue.s is outside the baseline subset"
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
}
