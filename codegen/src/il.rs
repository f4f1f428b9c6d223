//! The baseline IL -> wasm compiler, talking to the type system only through
//! [`JitInterface`] (crossgen2's JIT/EE split).
//!
//! Supported subset (everything else is "not compiled", with the reason recorded; the method
//! then runs in the interpreter, as crossgen2 leaves such methods to the JIT): `nop`,
//! arguments (`ldarg*`, `starg*`), locals (`ldloc*`, `stloc*`), constants (`ldc.*`),
//! integer and float arithmetic and bitwise operations, comparisons (`ceq`, `cgt*`, `clt*`),
//! conversions (`conv.*` without overflow checks), `dup`, `pop`, static calls to methods the
//! JIT interface can call directly, and `ret`, in straight-line code (branches come with the
//! block-dispatch lowering). The evaluation stack maps onto the wasm operand stack; a call
//! spills its arguments to locals so the stack-pointer argument can go first.

use wasm_encoder::Instruction;

use crate::abi::WasmValueType;
use crate::object_writer::{Code, Op, SymbolId};
use crate::signature::{ParamAbi, ReturnAbi, WasmSignature};

/// An IL operand, decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum IlOperand {
    /// No operand.
    None,
    /// An integer constant (`ldc.i4*`, `ldc.i8`).
    Int(i64),
    /// A float constant (`ldc.r4`, `ldc.r8`).
    Float(f64),
    /// An argument or local index.
    Var(u16),
    /// A metadata token.
    Token(u32),
    /// An absolute branch target (IL offset).
    Branch(u32),
    /// `switch` targets.
    Switch(Vec<u32>),
}

/// One IL instruction, prefixes folded (the compiler refuses prefixed instructions).
#[derive(Clone, Debug, PartialEq)]
pub struct IlInstruction {
    /// Byte offset of the instruction itself.
    pub offset: u32,
    /// Opcode name as ECMA-335 spells it (`ldarg.0`, `add`, `conv.i8`, ...).
    pub opcode: &'static str,
    /// Its operand.
    pub operand: IlOperand,
    /// Whether prefixes precede it.
    pub prefixed: bool,
}

/// How a call site reaches its callee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallTarget {
    /// A direct `call` of a method with R2R code in this image.
    Direct {
        /// The callee's symbol.
        symbol: SymbolId,
        /// The callee's signature.
        signature: WasmSignature,
    },
    /// Not callable from compiled code yet; the reason.
    Unsupported(String),
}

/// What the compiler asks the type system (crossgen2's `ICorJitInfo`, reduced).
pub trait JitInterface {
    /// How to call the method with `token`.
    fn call_target(&mut self, token: u32) -> CallTarget;
}

/// A compiled method body and what it needs.
#[derive(Clone, Debug)]
pub struct CompiledBody {
    /// The body, with symbolic relocations.
    pub code: Code,
    /// Tokens of the methods it calls directly.
    pub callees: Vec<u32>,
}

/// Why a method was not compiled (it stays interpreted).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not compiled: {reason}")]
pub struct NotCompiled {
    /// The reason, naming the first unsupported construct and its IL offset.
    pub reason: String,
}

fn refuse(reason: impl Into<String>) -> NotCompiled {
    NotCompiled {
        reason: reason.into(),
    }
}

/// Compiles a managed method with signature `sig`, IL locals `locals` and body `il`.
///
/// # Errors
/// [`NotCompiled`] naming the first construct outside the subset.
pub fn compile(
    sig: &WasmSignature,
    locals: &[WasmValueType],
    il: &[IlInstruction],
    jit: &mut dyn JitInterface,
) -> Result<CompiledBody, NotCompiled> {
    let parts = sig.parts();
    if !parts.managed {
        return Err(refuse("UnmanagedCallersOnly bodies are not compiled yet"));
    }
    if parts.generic_context
        || parts.async_continuation
        || !matches!(parts.ret, ReturnAbi::Void | ReturnAbi::Value(_))
    {
        return Err(refuse(
            "hidden return buffer, generic context or async continuation",
        ));
    }
    // IL argument i -> wasm parameter i + 1 (parameter 0 is SP; `this` is IL argument 0).
    let mut args: Vec<WasmValueType> = Vec::new();
    if parts.has_this {
        args.push(sig.pointer().value_type());
    }
    for p in &parts.params {
        match p {
            ParamAbi::Value(v) => args.push(*v),
            _ => return Err(refuse("struct or empty-struct parameter")),
        }
    }
    let ret = match parts.ret {
        ReturnAbi::Value(v) => Some(v),
        _ => None,
    };
    let wasm_params = sig.func_type().params.len() as u32;
    let mut body = Body {
        ops: Vec::new(),
        stack: Vec::new(),
        extra_locals: locals.to_vec(),
        first_local: wasm_params,
        scratch_base: wasm_params + locals.len() as u32,
        scratch: Vec::new(),
        callees: Vec::new(),
    };
    for (i, ins) in il.iter().enumerate() {
        if ins.prefixed {
            return Err(refuse(format!(
                "IL_{:04x}: prefixed {}",
                ins.offset, ins.opcode
            )));
        }
        let at = |what: &str| refuse(format!("IL_{:04x}: {what}", ins.offset));
        let last = i + 1 == il.len();
        body.instruction(ins, &args, ret, last, jit)
            .map_err(|e| at(&e))?;
    }
    Ok(CompiledBody {
        code: Code {
            locals: body.extra_locals,
            ops: body.ops,
        },
        callees: body.callees,
    })
}

struct Body {
    ops: Vec<Op>,
    stack: Vec<WasmValueType>,
    extra_locals: Vec<WasmValueType>,
    first_local: u32,
    /// Index of the first scratch local (after IL locals).
    scratch_base: u32,
    scratch: Vec<WasmValueType>,
    callees: Vec<u32>,
}

impl Body {
    fn push(&mut self, ins: Instruction<'static>) {
        self.ops.push(Op::Ins(ins));
    }

    fn pop(&mut self) -> Result<WasmValueType, String> {
        self.stack
            .pop()
            .ok_or_else(|| "evaluation stack underflow".to_string())
    }

    /// A scratch local of type `ty` not used by the current instruction.
    fn scratch(&mut self, ty: WasmValueType, taken: &mut Vec<u32>) -> u32 {
        for (i, &t) in self.scratch.iter().enumerate() {
            let index = self.scratch_base + i as u32;
            if t == ty && !taken.contains(&index) {
                taken.push(index);
                return index;
            }
        }
        self.scratch.push(ty);
        self.extra_locals.push(ty);
        let index = self.scratch_base + self.scratch.len() as u32 - 1;
        taken.push(index);
        index
    }

    fn binary(&mut self, opcode: &str) -> Result<(), String> {
        use WasmValueType::*;
        let b = self.pop()?;
        let a = self.pop()?;
        if a != b {
            return Err(format!("{opcode} on {a} and {b}"));
        }
        let ins = match (opcode, a) {
            ("add", I32) => Instruction::I32Add,
            ("sub", I32) => Instruction::I32Sub,
            ("mul", I32) => Instruction::I32Mul,
            ("div", I32) => Instruction::I32DivS,
            ("div.un", I32) => Instruction::I32DivU,
            ("rem", I32) => Instruction::I32RemS,
            ("rem.un", I32) => Instruction::I32RemU,
            ("and", I32) => Instruction::I32And,
            ("or", I32) => Instruction::I32Or,
            ("xor", I32) => Instruction::I32Xor,
            ("add", I64) => Instruction::I64Add,
            ("sub", I64) => Instruction::I64Sub,
            ("mul", I64) => Instruction::I64Mul,
            ("div", I64) => Instruction::I64DivS,
            ("div.un", I64) => Instruction::I64DivU,
            ("rem", I64) => Instruction::I64RemS,
            ("rem.un", I64) => Instruction::I64RemU,
            ("and", I64) => Instruction::I64And,
            ("or", I64) => Instruction::I64Or,
            ("xor", I64) => Instruction::I64Xor,
            ("add", F64) => Instruction::F64Add,
            ("sub", F64) => Instruction::F64Sub,
            ("mul", F64) => Instruction::F64Mul,
            ("div", F64) => Instruction::F64Div,
            ("add", F32) => Instruction::F32Add,
            ("sub", F32) => Instruction::F32Sub,
            ("mul", F32) => Instruction::F32Mul,
            ("div", F32) => Instruction::F32Div,
            _ => return Err(format!("{opcode} on {a}")),
        };
        self.push(ins);
        self.stack.push(a);
        Ok(())
    }

    fn compare(&mut self, opcode: &str) -> Result<(), String> {
        use WasmValueType::*;
        let b = self.pop()?;
        let a = self.pop()?;
        if a != b {
            return Err(format!("{opcode} on {a} and {b}"));
        }
        let ins = match (opcode, a) {
            ("ceq", I32) => Instruction::I32Eq,
            ("cgt", I32) => Instruction::I32GtS,
            ("cgt.un", I32) => Instruction::I32GtU,
            ("clt", I32) => Instruction::I32LtS,
            ("clt.un", I32) => Instruction::I32LtU,
            ("ceq", I64) => Instruction::I64Eq,
            ("cgt", I64) => Instruction::I64GtS,
            ("cgt.un", I64) => Instruction::I64GtU,
            ("clt", I64) => Instruction::I64LtS,
            ("clt.un", I64) => Instruction::I64LtU,
            ("ceq", F64) => Instruction::F64Eq,
            ("cgt", F64) => Instruction::F64Gt,
            ("clt", F64) => Instruction::F64Lt,
            _ => return Err(format!("{opcode} on {a}")),
        };
        self.push(ins);
        self.stack.push(I32);
        Ok(())
    }

    fn convert(&mut self, opcode: &str) -> Result<(), String> {
        use WasmValueType::*;
        let from = self.pop()?;
        let (ins, to): (Vec<Instruction<'static>>, WasmValueType) = match (opcode, from) {
            ("conv.i4" | "conv.u4" | "conv.i" | "conv.u", I32) => (vec![], I32),
            ("conv.i4" | "conv.u4" | "conv.i" | "conv.u", I64) => {
                (vec![Instruction::I32WrapI64], I32)
            }
            ("conv.i1", I32) => (vec![Instruction::I32Extend8S], I32),
            ("conv.i2", I32) => (vec![Instruction::I32Extend16S], I32),
            ("conv.u1", I32) => (vec![Instruction::I32Const(0xff), Instruction::I32And], I32),
            ("conv.u2", I32) => (
                vec![Instruction::I32Const(0xffff), Instruction::I32And],
                I32,
            ),
            ("conv.i8", I32) => (vec![Instruction::I64ExtendI32S], I64),
            ("conv.u8", I32) => (vec![Instruction::I64ExtendI32U], I64),
            ("conv.i8" | "conv.u8", I64) => (vec![], I64),
            ("conv.r8", I32) => (vec![Instruction::F64ConvertI32S], F64),
            ("conv.r8", I64) => (vec![Instruction::F64ConvertI64S], F64),
            ("conv.r8", F32) => (vec![Instruction::F64PromoteF32], F64),
            ("conv.r8", F64) => (vec![], F64),
            ("conv.r4", I32) => (vec![Instruction::F32ConvertI32S], F32),
            ("conv.r4", F64) => (vec![Instruction::F32DemoteF64], F32),
            ("conv.r4", F32) => (vec![], F32),
            _ => return Err(format!("{opcode} from {from}")),
        };
        for i in ins {
            self.push(i);
        }
        self.stack.push(to);
        Ok(())
    }

    fn instruction(
        &mut self,
        ins: &IlInstruction,
        args: &[WasmValueType],
        ret: Option<WasmValueType>,
        last: bool,
        jit: &mut dyn JitInterface,
    ) -> Result<(), String> {
        use WasmValueType::*;
        let op = ins.opcode;
        let var = || match ins.operand {
            IlOperand::Var(v) => Ok(u32::from(v)),
            _ => Err(format!("{op} without an index")),
        };
        match op {
            "nop" => {}
            "ldarg.0" | "ldarg.1" | "ldarg.2" | "ldarg.3" | "ldarg.s" | "ldarg" => {
                let n = match op.strip_prefix("ldarg.").and_then(|d| d.parse().ok()) {
                    Some(n) => n,
                    None => var()?,
                };
                let ty = *args.get(n as usize).ok_or("ldarg beyond the arguments")?;
                self.push(Instruction::LocalGet(n + 1));
                self.stack.push(ty);
            }
            "starg.s" | "starg" => {
                let n = var()?;
                let ty = *args.get(n as usize).ok_or("starg beyond the arguments")?;
                if self.pop()? != ty {
                    return Err("starg of the wrong type".into());
                }
                self.push(Instruction::LocalSet(n + 1));
            }
            "ldloc.0" | "ldloc.1" | "ldloc.2" | "ldloc.3" | "ldloc.s" | "ldloc" => {
                let n = match op.strip_prefix("ldloc.").and_then(|d| d.parse().ok()) {
                    Some(n) => n,
                    None => var()?,
                };
                let ty = *self
                    .extra_locals
                    .get(n as usize)
                    .ok_or("ldloc beyond the locals")?;
                self.push(Instruction::LocalGet(self.first_local + n));
                self.stack.push(ty);
            }
            "stloc.0" | "stloc.1" | "stloc.2" | "stloc.3" | "stloc.s" | "stloc" => {
                let n = match op.strip_prefix("stloc.").and_then(|d| d.parse().ok()) {
                    Some(n) => n,
                    None => var()?,
                };
                let ty = *self
                    .extra_locals
                    .get(n as usize)
                    .ok_or("stloc beyond the locals")?;
                if self.pop()? != ty {
                    return Err("stloc of the wrong type".into());
                }
                self.push(Instruction::LocalSet(self.first_local + n));
            }
            _ if op.starts_with("ldc.i4") => {
                let value = match (op.strip_prefix("ldc.i4."), &ins.operand) {
                    (Some("m1" | "M1"), _) => -1,
                    (Some(d), _) if d.len() == 1 => d.parse::<i64>().map_err(|e| e.to_string())?,
                    (_, IlOperand::Int(v)) => *v,
                    _ => return Err(format!("{op} without a value")),
                };
                self.push(Instruction::I32Const(value as i32));
                self.stack.push(I32);
            }
            "ldc.i8" => {
                let IlOperand::Int(v) = ins.operand else {
                    return Err("ldc.i8 without a value".into());
                };
                self.push(Instruction::I64Const(v));
                self.stack.push(I64);
            }
            "ldc.r8" | "ldc.r4" => {
                let IlOperand::Float(v) = ins.operand else {
                    return Err(format!("{op} without a value"));
                };
                if op == "ldc.r8" {
                    self.push(Instruction::F64Const(v.into()));
                    self.stack.push(F64);
                } else {
                    self.push(Instruction::F32Const((v as f32).into()));
                    self.stack.push(F32);
                }
            }
            "shl" | "shr" | "shr.un" => {
                // The shift amount is an int32 (or native int) even for int64 values.
                if self.pop()? != I32 {
                    return Err("shift amount is not int32".into());
                }
                let value = *self.stack.last().ok_or("evaluation stack underflow")?;
                let ins = match (op, value) {
                    ("shl", I32) => Instruction::I32Shl,
                    ("shr", I32) => Instruction::I32ShrS,
                    (_, I32) => Instruction::I32ShrU,
                    (_, I64) => {
                        self.push(Instruction::I64ExtendI32U);
                        match op {
                            "shl" => Instruction::I64Shl,
                            "shr" => Instruction::I64ShrS,
                            _ => Instruction::I64ShrU,
                        }
                    }
                    _ => return Err(format!("{op} on {value}")),
                };
                self.push(ins);
            }
            "add" | "sub" | "mul" | "div" | "div.un" | "rem" | "rem.un" | "and" | "or" | "xor" => {
                self.binary(op)?;
            }
            "neg" => {
                let ty = *self.stack.last().ok_or("evaluation stack underflow")?;
                match ty {
                    I32 => {
                        let mut taken = Vec::new();
                        let t = self.scratch(I32, &mut taken);
                        self.push(Instruction::LocalSet(t));
                        self.push(Instruction::I32Const(0));
                        self.push(Instruction::LocalGet(t));
                        self.push(Instruction::I32Sub);
                    }
                    I64 => {
                        let mut taken = Vec::new();
                        let t = self.scratch(I64, &mut taken);
                        self.push(Instruction::LocalSet(t));
                        self.push(Instruction::I64Const(0));
                        self.push(Instruction::LocalGet(t));
                        self.push(Instruction::I64Sub);
                    }
                    F64 => self.push(Instruction::F64Neg),
                    F32 => self.push(Instruction::F32Neg),
                    V128 => return Err("neg on v128".into()),
                }
            }
            "not" => match *self.stack.last().ok_or("evaluation stack underflow")? {
                I32 => {
                    self.push(Instruction::I32Const(-1));
                    self.push(Instruction::I32Xor);
                }
                I64 => {
                    self.push(Instruction::I64Const(-1));
                    self.push(Instruction::I64Xor);
                }
                other => return Err(format!("not on {other}")),
            },
            "ceq" | "cgt" | "cgt.un" | "clt" | "clt.un" => self.compare(op)?,
            _ if op.starts_with("conv.") && !op.starts_with("conv.ovf") => self.convert(op)?,
            "dup" => {
                let ty = self.pop()?;
                let mut taken = Vec::new();
                let t = self.scratch(ty, &mut taken);
                self.push(Instruction::LocalTee(t));
                self.push(Instruction::LocalGet(t));
                self.stack.push(ty);
                self.stack.push(ty);
            }
            "pop" => {
                self.pop()?;
                self.push(Instruction::Drop);
            }
            "call" => {
                let IlOperand::Token(token) = ins.operand else {
                    return Err("call without a token".into());
                };
                let (symbol, callee) = match jit.call_target(token) {
                    CallTarget::Direct { symbol, signature } => (symbol, signature),
                    CallTarget::Unsupported(reason) => {
                        return Err(format!("call 0x{token:08x}: {reason}"));
                    }
                };
                let cp = callee.parts();
                let mut callee_args: Vec<WasmValueType> = Vec::new();
                if cp.has_this {
                    callee_args.push(callee.pointer().value_type());
                }
                for p in &cp.params {
                    match p {
                        ParamAbi::Value(v) => callee_args.push(*v),
                        _ => return Err("call with a struct argument".into()),
                    }
                }
                if !cp.managed
                    || cp.generic_context
                    || cp.async_continuation
                    || matches!(cp.ret, ReturnAbi::Buffer { .. })
                {
                    return Err("call of an unsupported callee shape".into());
                }
                // Spill the IL arguments so SP can go first.
                let mut taken = Vec::new();
                let mut temps = Vec::new();
                for &ty in callee_args.iter().rev() {
                    if self.pop()? != ty {
                        return Err("call argument of the wrong type".into());
                    }
                    let t = self.scratch(ty, &mut taken);
                    self.push(Instruction::LocalSet(t));
                    temps.push(t);
                }
                self.push(Instruction::LocalGet(0)); // SP
                for &t in temps.iter().rev() {
                    self.push(Instruction::LocalGet(t));
                }
                self.push(Instruction::I32Const(0)); // PE: direct calls need no entry point
                self.ops.push(Op::Call(symbol));
                if let ReturnAbi::Value(v) = cp.ret {
                    self.stack.push(v);
                }
                self.callees.push(token);
            }
            "ret" => {
                if let Some(ty) = ret
                    && self.pop()? != ty
                {
                    return Err("ret of the wrong type".into());
                }
                if !self.stack.is_empty() {
                    return Err("ret with a non-empty evaluation stack".into());
                }
                if !last {
                    self.push(Instruction::Return);
                    // Code after a mid-body ret is only reachable through branches, which are
                    // refused, so stop tracking.
                }
            }
            other => return Err(format!("{other} is outside the baseline subset")),
        }
        Ok(())
    }
}

/// The wasm value type of an IL local or argument type name (ILDasm spelling), or `None` for
/// value types the baseline compiler does not lower.
pub fn il_type(name: &str, pointer: WasmValueType) -> Option<WasmValueType> {
    Some(match name {
        "bool" | "char" | "int8" | "uint8" | "int16" | "uint16" | "int32" | "uint32" => {
            WasmValueType::I32
        }
        "int64" | "uint64" => WasmValueType::I64,
        "float32" => WasmValueType::F32,
        "float64" => WasmValueType::F64,
        "native int" | "native uint" | "object" | "string" => pointer,
        n if n.ends_with('&') || n.ends_with('*') || n.ends_with("[]") => pointer,
        n if n.starts_with("class ") => pointer,
        _ => return None,
    })
}
