//! The baseline IL -> wasm compiler, talking to the type system only through
//! [`JitInterface`] (crossgen2's JIT/EE split).
//!
//! Supported subset (everything else is "not compiled", with the reason recorded; the method
//! then runs in the interpreter, as crossgen2 leaves such methods to the JIT): `nop`,
//! arguments (`ldarg*`, `starg*`), locals (`ldloc*`, `stloc*`), constants (`ldc.*`),
//! integer and float arithmetic and bitwise operations, comparisons (`ceq`, `cgt*`, `clt*`),
//! conversions (`conv.*` without overflow checks), `dup`, `pop`, static calls to methods the
//! JIT interface can call directly, `ret`, and any control-flow graph of `br`, `brtrue`,
//! `brfalse`, the compare-and-branch family and `switch`, lowered to a block-dispatch loop
//! (conditional branches need an otherwise empty evaluation stack). The evaluation stack
//! maps onto the wasm operand stack; a call spills its arguments to locals so the
//! stack-pointer argument can go first.

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
    /// Tokens of the methods it calls.
    pub callees: Vec<u32>,
    /// Call sites: the index in `code.ops` of each `Op::Call` and the callee's token, so a
    /// compilation that learns a callee stays interpreted can route the call through an
    /// import cell instead ([`call_through_cell`]).
    pub call_sites: Vec<(usize, u32)>,
}

/// The operations replacing a direct call when the callee has no R2R code: load the callee's
/// import cell at image offset `cell_rva` (a table slot relative to `__table_base`, first the
/// cell's import thunk, after resolution the callee's code or its R2R -> interpreter thunk)
/// and `call_indirect` it with the callee's wasm type.
pub fn call_through_cell(cell_rva: u32, callee: &WasmSignature) -> Vec<Op> {
    vec![
        Op::ImageAddress(cell_rva),
        Op::Ins(Instruction::I32Load(wasm_encoder::MemArg {
            offset: 0,
            align: 2,
            memory_index: 0,
        })),
        Op::TableBase,
        Op::Ins(Instruction::I32Add),
        Op::CallIndirect(callee.func_type()),
    ]
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
        cf: None,
        ops: Vec::new(),
        stack: Vec::new(),
        extra_locals: locals.to_vec(),
        first_local: wasm_params,
        scratch: Vec::new(),
        callees: Vec::new(),
        call_sites: Vec::new(),
    };
    // Basic blocks: starts at 0, at branch targets, and after every branch or ret.
    let mut starts = std::collections::BTreeSet::from([il.first().map_or(0, |i| i.offset)]);
    let mut branches = false;
    for (i, ins) in il.iter().enumerate() {
        let targets: Vec<u32> = match &ins.operand {
            IlOperand::Branch(t) => vec![*t],
            IlOperand::Switch(ts) => ts.clone(),
            _ => Vec::new(),
        };
        if !targets.is_empty() || ins.opcode == "ret" {
            branches |= !targets.is_empty();
            starts.extend(targets);
            if let Some(next) = il.get(i + 1) {
                starts.insert(next.offset);
            }
        }
    }
    if branches {
        let offsets: std::collections::BTreeSet<u32> = il.iter().map(|i| i.offset).collect();
        if let Some(bad) = starts.iter().find(|s| !offsets.contains(s)) {
            return Err(refuse(format!(
                "branch into the middle of an instruction at IL_{bad:04x}"
            )));
        }
        let blocks = starts.len();
        let pc = body.new_local(WasmValueType::I32);
        body.ops
            .push(Op::Ins(Instruction::Loop(wasm_encoder::BlockType::Empty)));
        for _ in 0..blocks {
            body.ops
                .push(Op::Ins(Instruction::Block(wasm_encoder::BlockType::Empty)));
        }
        body.ops.push(Op::Ins(Instruction::LocalGet(pc)));
        body.ops.push(Op::Ins(Instruction::BrTable(
            (0..blocks as u32).collect::<Vec<_>>().into(),
            blocks as u32 - 1,
        )));
        body.ops.push(Op::Ins(Instruction::End));
        let mut entry = vec![None; blocks];
        entry[0] = Some(Vec::new());
        body.cf = Some(ControlFlow {
            block_of: starts.iter().enumerate().map(|(i, &o)| (o, i)).collect(),
            blocks,
            current: 0,
            terminated: false,
            pc,
            entry,
        });
    }
    for (i, ins) in il.iter().enumerate() {
        if ins.prefixed {
            return Err(refuse(format!(
                "IL_{:04x}: prefixed {}",
                ins.offset, ins.opcode
            )));
        }
        let at = |what: &str| refuse(format!("IL_{:04x}: {what}", ins.offset));
        body.enter_block(ins.offset).map_err(|e| at(&e))?;
        let last = i + 1 == il.len();
        body.instruction(ins, &args, ret, last, jit)
            .map_err(|e| at(&e))?;
    }
    if body.cf.is_some() {
        // Close the dispatch loop; every block ends in a branch or ret.
        body.ops.push(Op::Ins(Instruction::End));
        body.ops.push(Op::Ins(Instruction::Unreachable));
    }
    Ok(CompiledBody {
        code: Code {
            locals: body.extra_locals,
            ops: body.ops,
        },
        callees: body.callees,
        call_sites: body.call_sites,
    })
}

/// Control flow as a block-dispatch loop: a `pc` local selects the IL basic block; each
/// block's code sits after the `end` of its own wasm block inside the dispatch `loop`, so
/// falling through from one IL block to the next needs no dispatch, and a branch sets `pc`
/// and `br`s back to the loop. Values live across block boundaries in per-block entry
/// locals (IL fixes the stack shape at every block start, ECMA-335 III.1.7.5).
struct ControlFlow {
    /// Block index by IL offset of its first instruction.
    block_of: std::collections::BTreeMap<u32, usize>,
    blocks: usize,
    current: usize,
    /// The current block ended with an unconditional transfer.
    terminated: bool,
    pc: u32,
    /// Entry stack of each block (types and the locals that carry them), once known.
    entry: Vec<Option<Vec<(WasmValueType, u32)>>>,
}

struct Body {
    cf: Option<ControlFlow>,
    ops: Vec<Op>,
    stack: Vec<WasmValueType>,
    extra_locals: Vec<WasmValueType>,
    first_local: u32,
    /// Scratch locals `(type, index)`, reused across instructions.
    scratch: Vec<(WasmValueType, u32)>,
    callees: Vec<u32>,
    call_sites: Vec<(usize, u32)>,
}

impl Body {
    /// The locals carrying block `k`'s entry stack, recording it from `stack` the first time.
    fn entry_locals(&mut self, k: usize) -> Result<Vec<(WasmValueType, u32)>, String> {
        let known = self.cf.as_ref().and_then(|cf| cf.entry[k].clone());
        match known {
            Some(entry) => {
                let types: Vec<WasmValueType> = entry.iter().map(|&(t, _)| t).collect();
                if types != self.stack {
                    return Err("inconsistent evaluation stack at a block start".into());
                }
                Ok(entry)
            }
            None => {
                let types = self.stack.clone();
                let mut entry = Vec::new();
                for ty in types {
                    let index = self.new_local(ty);
                    entry.push((ty, index));
                }
                if let Some(cf) = self.cf.as_mut() {
                    cf.entry[k] = Some(entry.clone());
                }
                Ok(entry)
            }
        }
    }

    /// Stores the evaluation stack into block `k`'s entry locals (emptying it).
    fn spill_to(&mut self, k: usize) -> Result<(), String> {
        let entry = self.entry_locals(k)?;
        for &(_, local) in entry.iter().rev() {
            self.push(Instruction::LocalSet(local));
        }
        self.stack.clear();
        Ok(())
    }

    /// Called before each instruction: at a block start, closes the previous block (its
    /// fallthrough carrying the stack into the new block's entry locals) and reloads them.
    fn enter_block(&mut self, offset: u32) -> Result<(), String> {
        let Some(k) = self
            .cf
            .as_ref()
            .and_then(|cf| cf.block_of.get(&offset).copied())
        else {
            return Ok(());
        };
        if k == 0 {
            return Ok(());
        }
        let terminated = self.cf.as_ref().is_some_and(|cf| cf.terminated);
        if terminated {
            self.stack.clear();
            if self.cf.as_ref().is_some_and(|cf| cf.entry[k].is_none()) {
                self.entry_locals(k)?; // an empty entry (III.1.7.5)
            }
        } else {
            self.spill_to(k)?;
        }
        self.push(Instruction::End);
        let entry = self.entry_locals_known(k);
        for &(ty, local) in &entry {
            self.push(Instruction::LocalGet(local));
            self.stack.push(ty);
        }
        if let Some(cf) = self.cf.as_mut() {
            cf.current = k;
            cf.terminated = false;
        }
        Ok(())
    }

    fn entry_locals_known(&self, k: usize) -> Vec<(WasmValueType, u32)> {
        self.cf
            .as_ref()
            .and_then(|cf| cf.entry[k].clone())
            .unwrap_or_default()
    }

    /// `br` depth of the dispatch loop from the current block, plus `extra` enclosing
    /// structured blocks.
    fn dispatch_depth(&self, extra: u32) -> u32 {
        let cf = self.cf.as_ref().expect("control flow");
        (cf.blocks - 1 - cf.current) as u32 + extra
    }

    fn target(&self, offset: u32) -> Result<usize, String> {
        self.cf
            .as_ref()
            .and_then(|cf| cf.block_of.get(&offset).copied())
            .ok_or_else(|| format!("branch target IL_{offset:04x} is not a block start"))
    }

    /// Unconditional transfer to the block at `offset`.
    fn goto(&mut self, offset: u32) -> Result<(), String> {
        let k = self.target(offset)?;
        self.spill_to(k)?;
        let (pc, depth) = (
            self.cf.as_ref().expect("control flow").pc,
            self.dispatch_depth(0),
        );
        self.push(Instruction::I32Const(k as i32));
        self.push(Instruction::LocalSet(pc));
        self.push(Instruction::Br(depth));
        if let Some(cf) = self.cf.as_mut() {
            cf.terminated = true;
        }
        Ok(())
    }

    /// Transfer to the block at `offset` if the i32 on top of the stack is non-zero.
    fn goto_if(&mut self, offset: u32) -> Result<(), String> {
        if self.pop()? != WasmValueType::I32 {
            return Err("branch condition is not int32".into());
        }
        if !self.stack.is_empty() {
            return Err("conditional branch with values on the evaluation stack".into());
        }
        let k = self.target(offset)?;
        self.entry_locals(k)?;
        let (pc, depth) = (
            self.cf.as_ref().expect("control flow").pc,
            self.dispatch_depth(1),
        );
        self.push(Instruction::If(wasm_encoder::BlockType::Empty));
        self.push(Instruction::I32Const(k as i32));
        self.push(Instruction::LocalSet(pc));
        self.push(Instruction::Br(depth));
        self.push(Instruction::End);
        Ok(())
    }

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
        if let Some(&(_, index)) = self
            .scratch
            .iter()
            .find(|&&(t, index)| t == ty && !taken.contains(&index))
        {
            taken.push(index);
            return index;
        }
        let index = self.new_local(ty);
        self.scratch.push((ty, index));
        taken.push(index);
        index
    }

    /// A fresh local of type `ty`.
    fn new_local(&mut self, ty: WasmValueType) -> u32 {
        self.extra_locals.push(ty);
        self.first_local + self.extra_locals.len() as u32 - 1
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
        // (instruction, negate): unordered float forms are negated ordered ones.
        let (ins, negate) = match (opcode, a) {
            ("ceq", I32) => (Instruction::I32Eq, false),
            ("cgt", I32) => (Instruction::I32GtS, false),
            ("cgt.un", I32) => (Instruction::I32GtU, false),
            ("clt", I32) => (Instruction::I32LtS, false),
            ("clt.un", I32) => (Instruction::I32LtU, false),
            ("ceq", I64) => (Instruction::I64Eq, false),
            ("cgt", I64) => (Instruction::I64GtS, false),
            ("cgt.un", I64) => (Instruction::I64GtU, false),
            ("clt", I64) => (Instruction::I64LtS, false),
            ("clt.un", I64) => (Instruction::I64LtU, false),
            ("ceq", F64) => (Instruction::F64Eq, false),
            ("cgt", F64) => (Instruction::F64Gt, false),
            ("clt", F64) => (Instruction::F64Lt, false),
            ("cgt.un", F64) => (Instruction::F64Le, true),
            ("clt.un", F64) => (Instruction::F64Ge, true),
            ("ceq", F32) => (Instruction::F32Eq, false),
            ("cgt", F32) => (Instruction::F32Gt, false),
            ("clt", F32) => (Instruction::F32Lt, false),
            ("cgt.un", F32) => (Instruction::F32Le, true),
            ("clt.un", F32) => (Instruction::F32Ge, true),
            _ => return Err(format!("{opcode} on {a}")),
        };
        self.push(ins);
        if negate {
            self.push(Instruction::I32Eqz);
        }
        self.stack.push(I32);
        Ok(())
    }

    /// The condition of a compare-and-branch (`beq`, `bge.un`, ...), as an i32.
    fn branch_compare(&mut self, op: &str) -> Result<(), String> {
        use WasmValueType::*;
        let b = self.pop()?;
        let a = self.pop()?;
        if a != b {
            return Err(format!("{op} on {a} and {b}"));
        }
        // (instruction, negate): unordered float forms are negated ordered ones.
        let (ins, negate) = match (op, a) {
            ("beq", I32) => (Instruction::I32Eq, false),
            ("bne.un", I32) => (Instruction::I32Ne, false),
            ("bgt", I32) => (Instruction::I32GtS, false),
            ("bgt.un", I32) => (Instruction::I32GtU, false),
            ("bge", I32) => (Instruction::I32GeS, false),
            ("bge.un", I32) => (Instruction::I32GeU, false),
            ("blt", I32) => (Instruction::I32LtS, false),
            ("blt.un", I32) => (Instruction::I32LtU, false),
            ("ble", I32) => (Instruction::I32LeS, false),
            ("ble.un", I32) => (Instruction::I32LeU, false),
            ("beq", I64) => (Instruction::I64Eq, false),
            ("bne.un", I64) => (Instruction::I64Ne, false),
            ("bgt", I64) => (Instruction::I64GtS, false),
            ("bgt.un", I64) => (Instruction::I64GtU, false),
            ("bge", I64) => (Instruction::I64GeS, false),
            ("bge.un", I64) => (Instruction::I64GeU, false),
            ("blt", I64) => (Instruction::I64LtS, false),
            ("blt.un", I64) => (Instruction::I64LtU, false),
            ("ble", I64) => (Instruction::I64LeS, false),
            ("ble.un", I64) => (Instruction::I64LeU, false),
            ("beq", F64) => (Instruction::F64Eq, false),
            ("bne.un", F64) => (Instruction::F64Ne, false),
            ("bgt", F64) => (Instruction::F64Gt, false),
            ("bge", F64) => (Instruction::F64Ge, false),
            ("blt", F64) => (Instruction::F64Lt, false),
            ("ble", F64) => (Instruction::F64Le, false),
            ("bgt.un", F64) => (Instruction::F64Le, true),
            ("bge.un", F64) => (Instruction::F64Lt, true),
            ("blt.un", F64) => (Instruction::F64Ge, true),
            ("ble.un", F64) => (Instruction::F64Gt, true),
            _ => return Err(format!("{op} on {a}")),
        };
        self.push(ins);
        if negate {
            self.push(Instruction::I32Eqz);
        }
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
                    (Some(d), _) if d.len() == 1 && d.as_bytes()[0].is_ascii_digit() => {
                        i64::from(d.as_bytes()[0] - b'0')
                    }
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
                // PE: the callee's token, the entry-point handle the interpreter gets when the
                // call ends up in an R2R -> interpreter thunk (direct calls ignore it).
                self.push(Instruction::I32Const(token as i32));
                self.call_sites.push((self.ops.len(), token));
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
                if !last || self.cf.is_some() {
                    self.push(Instruction::Return);
                    if let Some(cf) = self.cf.as_mut() {
                        cf.terminated = true;
                    }
                    // Code after a mid-body ret is only reachable through branches, which are
                    // refused, so stop tracking.
                }
            }
            "br" | "br.s" if self.cf.is_some() => {
                let IlOperand::Branch(target) = ins.operand else {
                    return Err(format!("{op} without a target"));
                };
                self.goto(target)?;
            }
            "brtrue" | "brtrue.s" | "brfalse" | "brfalse.s" if self.cf.is_some() => {
                let IlOperand::Branch(target) = ins.operand else {
                    return Err(format!("{op} without a target"));
                };
                match self.pop()? {
                    I32 => {}
                    I64 => {
                        self.push(Instruction::I64Eqz);
                        self.push(Instruction::I32Eqz);
                    }
                    other => return Err(format!("{op} on {other}")),
                }
                if op.starts_with("brfalse") {
                    self.push(Instruction::I32Eqz);
                }
                self.stack.push(I32);
                self.goto_if(target)?;
            }
            _ if self.cf.is_some() && is_compare_branch(op) => {
                let IlOperand::Branch(target) = ins.operand else {
                    return Err(format!("{op} without a target"));
                };
                self.branch_compare(op.trim_end_matches(".s"))?;
                self.goto_if(target)?;
            }
            "switch" if self.cf.is_some() => {
                let IlOperand::Switch(targets) = &ins.operand else {
                    return Err("switch without targets".into());
                };
                if self.pop()? != I32 {
                    return Err("switch on a non-int32".into());
                }
                let mut taken = Vec::new();
                let index = self.scratch(I32, &mut taken);
                self.push(Instruction::LocalSet(index));
                for (j, &target) in targets.iter().enumerate() {
                    self.push(Instruction::LocalGet(index));
                    self.push(Instruction::I32Const(j as i32));
                    self.push(Instruction::I32Eq);
                    self.stack.push(I32);
                    self.goto_if(target)?;
                }
            }
            other => return Err(format!("{other} is outside the baseline subset")),
        }
        Ok(())
    }
}

fn is_compare_branch(op: &str) -> bool {
    matches!(
        op.trim_end_matches(".s"),
        "beq"
            | "bne.un"
            | "bgt"
            | "bgt.un"
            | "bge"
            | "bge.un"
            | "blt"
            | "blt.un"
            | "ble"
            | "ble.un"
    )
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
