//! IL fixtures assembled with Mono's ilasm (`scripts/ilasm`, installed by
//! `bash scripts/install-mono.sh`): UnmanagedCallersOnly methods reached through `ldftn` +
//! `calli unmanaged` from compiled code, managed function pointers (`ldftn` + managed
//! `calli`, to compiled and to interpreted targets), and runtime-async methods (impl flag 0x2000 patched
//! into the assembled file, as ilasm has no keyword for it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crossgraph::codegen::{PointerWidth, WasmSignature};
use crossgraph::nodes::type_system::TypeSystem;
use crossgraph::nodes::typesystem::Assembly;
use crossgraph::nodes::{CompileOptions, CompileOutput, compile_input};
use crossgraph::runtime_core::abi::{ArgLayout, ArgRole, WasmValueType};
use crossgraph::runtime_core::exec::{AsyncResult, ExecConfig, ExecError, Executor, Interpreter};
use crossgraph::runtime_core::format::{
    FixupSignature, Image, ImportSectionType, MethodRef, MethodSigFlags,
};
use crossgraph::runtime_core::loader::{InterpretedMethod, UNMANAGED_CALLERS_ONLY};
use crossgraph::runtime_core::{Loader, ThunkRuntime, image_from_module};
use wasmtime::Val;

const INSTALL: &str = "bash scripts/install-mono.sh";
const MSCORLIB: &str = "/usr/lib/mono/4.5/mscorlib.dll";

fn assemble(il: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // One directory per call: tests run in parallel and patch their copies.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("crossgraph-il-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dll = dir.join(Path::new(il).with_extension("dll").file_name().unwrap());
    let out = Command::new("bash")
        .arg(root.join("scripts/ilasm"))
        .arg("/dll")
        .arg(format!("/output:{}", dll.display()))
        .arg(root.join("tests/fixtures").join(il))
        .output()
        .unwrap_or_else(|e| panic!("scripts/ilasm cannot run ({e}): run `{INSTALL}`"));
    assert!(
        out.status.success(),
        "ilasm failed (install it with `{INSTALL}`): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dll
}

fn compile(dll: &Path) -> CompileOutput {
    assert!(
        Path::new(MSCORLIB).exists(),
        "{MSCORLIB} is missing: run `{INSTALL}`"
    );
    let input = Assembly::load(dll).unwrap();
    let corlib = Assembly::load(MSCORLIB).unwrap();
    let (a, b) = (input.view().unwrap(), corlib.view().unwrap());
    let ts = TypeSystem::new(vec![&a, &b]).unwrap();
    // The tests read the map too.
    let options = CompileOptions {
        map: true,
        ..CompileOptions::default()
    };
    compile_input(&ts, &options).unwrap()
}

struct NoInterpreter;

impl Interpreter for NoInterpreter {
    fn execute(&self, entry: u32, _: &mut [u8], _: u32, _: u32, _: u32) -> Result<(), String> {
        Err(format!("{entry:#x} was not expected in the interpreter"))
    }
}

/// Instantiates a compiled module in wasmtime with a fresh loader (its image loaded, eager
/// fixups resolved).
fn instantiate(output: &CompileOutput, interpreter: Arc<dyn Interpreter>) -> Executor {
    let loader = Arc::new(Loader::new(ThunkRuntime::default()));
    Executor::instantiate(&output.module, loader, interpreter, ExecConfig::default()).unwrap()
}

fn token_of(output: &CompileOutput, name: &str) -> u32 {
    output
        .compiled
        .iter()
        .find(|(_, n)| n == name)
        .map(|&(t, _)| t)
        .unwrap_or_else(|| panic!("{name} not compiled: {:#?}", output.not_compiled))
}

/// Calls `name` with an embedder that has no object model and checks that the call fails
/// with the default answer naming what is missing (`message`).
fn fails_without_an_embedder(
    output: &CompileOutput,
    name: &str,
    signature: &str,
    args: &[Val],
    message: &str,
) {
    let mut bare = instantiate(output, Arc::new(NoInterpreter));
    let err = bare
        .invoke_by_name(name, &sig(signature), args)
        .unwrap_err();
    assert!(err.to_string().contains(message), "{name}: {err}");
}

fn sig(s: &str) -> WasmSignature {
    WasmSignature::parse(s, PointerWidth::Wasm32).unwrap()
}

/// Invokes the exported method `name` (signature string `signature`) and returns its `i32`.
fn run_i32(exec: &mut Executor, name: &str, signature: &str, args: &[Val]) -> i32 {
    exec.invoke_by_name(name, &sig(signature), args)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .unwrap_or_else(|| panic!("{name} returned nothing"))
        .unwrap_i32()
}

#[test]
fn uco_method_called_through_ldftn_and_calli_unmanaged_runs() {
    let output = compile(&assemble("uco.il"));
    let add = token_of(&output, "Fixture.Native::Add");
    token_of(&output, "Fixture.Native::CallAdd");
    let image = Image::decode(image_from_module(&output.module).unwrap()).unwrap();
    let entry = image
        .method_entry_points
        .iter()
        .find(|e| e.method.token == add)
        .unwrap();
    assert_eq!(entry.method.flags, UNMANAGED_CALLERS_ONLY);
    // No interpreter <-> R2R thunk exists for the unmanaged signature.
    let thunks = image
        .import_sections
        .iter()
        .flat_map(|s| &s.cells)
        .find_map(|c| match &c.signature {
            FixupSignature::InjectStringThunks(t) => Some(t),
            _ => None,
        })
        .unwrap();
    assert!(thunks.iter().all(|t| t.key != "Miii" && t.key != "Iiii"));

    let mut exec = instantiate(&output, Arc::new(NoInterpreter));
    // Compiled managed code: ldftn Add; calli unmanaged cdecl int32(int32, int32). The
    // crossgen2 failure mode was "indirect call signature mismatch" here.
    assert_eq!(
        run_i32(
            &mut exec,
            "Fixture.Native::CallAdd",
            "iiip",
            &[Val::I32(2), Val::I32(40)]
        ),
        42
    );
    // A native caller gets the same unmanaged entry.
    let method = MethodRef {
        flags: MethodSigFlags::NONE,
        token: add,
    };
    let r = exec
        .call_unmanaged(method, &[Val::I32(5), Val::I32(6)])
        .unwrap();
    assert_eq!(r[0].unwrap_i32(), 11);
    // And it is exported under its EntryPoint name.
    let exports: Vec<String> = wasmparser::Parser::new(0)
        .parse_all(&output.module)
        .filter_map(|p| match p.unwrap() {
            wasmparser::Payload::ExportSection(r) => Some(
                r.into_iter()
                    .map(|e| e.unwrap().name.to_string())
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(exports.iter().any(|e| e == "uco_add"), "{exports:?}");
}

/// Sets `MethodImplAttributes` bit 0x2000 (runtime-async) on the named methods of `dll`.
fn mark_runtime_async(dll: &Path, names: &[&str]) {
    let mut bytes = std::fs::read(dll).unwrap();
    let mut offsets = Vec::new();
    {
        let image = cildec::PeImage::parse(&bytes).unwrap();
        let metadata = image.metadata().unwrap();
        let tables = metadata.tables();
        for (rid, row) in tables.iter::<cildec::tables::MethodDefRow>() {
            let row = row.unwrap();
            if names.contains(&metadata.strings().str(row.name).unwrap()) {
                let raw = tables.row_bytes(cildec::TableId::MethodDef, rid).unwrap();
                // Row layout (II.22.26): RVA u32, ImplFlags u16, Flags u16, ...
                offsets.push(raw.as_ptr() as usize - bytes.as_ptr() as usize + 4);
            }
        }
    }
    assert_eq!(offsets.len(), names.len());
    for at in offsets {
        let flags = u16::from_le_bytes([bytes[at], bytes[at + 1]]) | 0x2000;
        bytes[at..at + 2].copy_from_slice(&flags.to_le_bytes());
    }
    std::fs::write(dll, bytes).unwrap();
}

/// async.il assembled, with every method of `Fixture.Async` marked runtime-async.
fn async_fixture() -> PathBuf {
    let dll = assemble("async.il");
    mark_runtime_async(&dll, &["NoAwait", "WithAwait", "Leaf", "Middle", "Outer"]);
    dll
}

/// The async variant of the method `token`.
fn async_variant(token: u32) -> MethodRef {
    MethodRef {
        flags: MethodSigFlags::ASYNC_VARIANT,
        token,
    }
}

#[test]
fn runtime_async_variant_without_suspension_runs_like_a_plain_method() {
    let dll = async_fixture();
    let output = compile(&dll);
    let no_await = token_of(&output, "Fixture.Async::NoAwait");
    let with_await = token_of(&output, "Fixture.Async::WithAwait");

    let image = Image::decode(image_from_module(&output.module).unwrap()).unwrap();
    // Async variants are listed in the instance entry-point table with AsyncVariant.
    let variant = |token: u32| {
        image
            .instance_entry_points
            .iter()
            .find(|e| e.method.token == token)
            .expect("async variant entry")
    };
    assert_eq!(
        variant(no_await).method.flags,
        MethodSigFlags::ASYNC_VARIANT
    );
    assert!(
        image
            .method_entry_points
            .iter()
            .all(|e| e.method.token != no_await)
    );
    // A variant that never awaits needs no resumption stub; one that awaits has its
    // ResumptionStubEntryPoint fixup.
    assert!(variant(no_await).fixups.is_empty());
    let fixup = variant(with_await).fixups[0];
    let stub_section = &image.import_sections[fixup.section as usize];
    assert!(matches!(
        stub_section.cells[fixup.cell as usize].signature,
        FixupSignature::ResumptionStubEntryPoint { method, .. }
            if method == async_variant(with_await)
    ));

    let mut exec = instantiate(&output, Arc::new(NoInterpreter));
    // The variant: int32(continuation, int32) -> x + 1, signature `iaip`.
    assert_eq!(
        run_i32(
            &mut exec,
            "Fixture.Async::NoAwait",
            "iaip",
            &[Val::I32(0), Val::I32(41)]
        ),
        42
    );
    // WithAwait awaits NoAwait, which completes: no suspension, x + 2.
    assert_eq!(
        run_i32(
            &mut exec,
            "Fixture.Async::WithAwait",
            "iaip",
            &[Val::I32(0), Val::I32(41)]
        ),
        43
    );
    assert_eq!(exec.take_suspension(), None);
}

/// The embedder's interpreter for async.il: runs `Leaf`'s async variant, which always
/// suspends; the test completes each suspended leaf with its argument + 1.
struct SuspendingInterpreter {
    leaf: u32,
    /// Suspended leaves: (continuation address, argument).
    pending: std::sync::Mutex<Vec<(u32, i32)>>,
}

impl Interpreter for SuspendingInterpreter {
    fn execute(&self, entry: u32, _: &mut [u8], _: u32, _: u32, _: u32) -> Result<(), String> {
        Err(format!("{entry:#x} must run through execute_async"))
    }

    fn execute_async(
        &self,
        entry: u32,
        memory: &mut [u8],
        args: u32,
        _size: u32,
        ret: u32,
    ) -> Result<u32, String> {
        if entry != self.leaf {
            return Err(format!("{entry:#x} was not expected in the interpreter"));
        }
        let layout = ArgLayout::of(&sig("iaip")).unwrap();
        let word = |role: ArgRole| {
            let slot = layout.args.iter().find(|a| a.role == role).unwrap();
            let at = (args + slot.offset) as usize;
            i32::from_le_bytes(memory[at..at + 4].try_into().unwrap())
        };
        if word(ArgRole::AsyncContinuation) != 0 {
            return Err("the leaf is never resumed through the interpreter entry".into());
        }
        let x = word(ArgRole::Param(0));
        let mut pending = self.pending.lock().unwrap();
        // The leaf's own continuation, in memory below the image (header only: next at 0).
        let leaf = 0x1000 + 64 * pending.len() as u32;
        memory[leaf as usize..leaf as usize + 64].fill(0);
        pending.push((leaf, x));
        memory[ret as usize..ret as usize + 4].fill(0);
        Ok(leaf)
    }
}

#[test]
fn awaiting_variants_suspend_and_resume_through_their_resumption_stubs() {
    let dll = async_fixture();
    let output = compile(&dll);
    let outer = token_of(&output, "Fixture.Async::Outer");
    let middle = token_of(&output, "Fixture.Async::Middle");
    let leaf = output
        .not_compiled
        .iter()
        .find(|m| m.name == "Fixture.Async::Leaf")
        .expect("Leaf stays interpreted");
    assert!(leaf.reason.contains("ldsfld"), "{}", leaf.reason);
    // WithAwait, Middle and Outer await: one resumption stub each.
    assert_eq!(output.nodes_by_kind.get("ResumptionStub"), Some(&3));
    assert!(
        output
            .map
            .iter()
            .any(|e| e.kind == "ResumptionStub" && e.section == "code"),
        "{:#?}",
        output.map
    );

    let interpreter = Arc::new(SuspendingInterpreter {
        leaf: leaf.token,
        pending: std::sync::Mutex::new(Vec::new()),
    });
    let mut exec = instantiate(&output, interpreter.clone());
    exec.loader().register_interpreted(
        async_variant(leaf.token),
        InterpretedMethod {
            thunk_key: "Iiaip".into(),
        },
    );
    // Outer(2): awaits Middle(3), which awaits Leaf(30): the chain suspends.
    let dummy = run_i32(
        &mut exec,
        "Fixture.Async::Outer",
        "iaip",
        &[Val::I32(0), Val::I32(2)],
    );
    assert_eq!(dummy, 0, "a suspended variant returns a dummy");
    let outer_continuation = exec.take_suspension().expect("Outer suspended");
    let (first, x) = interpreter.pending.lock().unwrap()[0];
    assert_eq!(x, 30);
    // The chain: leaf -> Middle's continuation -> Outer's (outermost).
    let middle_continuation = exec.read_u32(first as usize).unwrap();
    assert_eq!(
        exec.read_u32(middle_continuation as usize).unwrap(),
        outer_continuation
    );
    assert_eq!(exec.read_u32(outer_continuation as usize).unwrap(), 0);
    // Each continuation names its method's resumption stub, the one the runtime registered
    // through the ResumptionStubEntryPoint fixup when the variant was prepared.
    let registered = exec
        .loader()
        .entry_point(async_variant(outer))
        .unwrap()
        .resumption_stub()
        .expect("Outer's stub is registered");
    assert_eq!(
        exec.read_u32(outer_continuation as usize + 8).unwrap(),
        registered.code.0
    );
    exec.loader().prepare_method(async_variant(middle)).unwrap();
    let middle_stub = exec
        .loader()
        .entry_point(async_variant(middle))
        .unwrap()
        .resumption_stub()
        .unwrap();
    assert_eq!(
        exec.read_u32(middle_continuation as usize + 8).unwrap(),
        middle_stub.code.0
    );

    // Leaf(30) completes with 31: Middle resumes (a = 30 restored, still on its stack) and
    // suspends again at Leaf(3).
    let AsyncResult::Suspended { continuation } = exec
        .resume(first, Some(Val::I32(31)), Some(WasmValueType::I32))
        .unwrap()
    else {
        panic!("Middle awaits a second leaf");
    };
    assert_eq!(
        exec.read_u32(continuation as usize).unwrap(),
        outer_continuation
    );
    let (second, x) = interpreter.pending.lock().unwrap()[1];
    assert_eq!(x, 3);
    // Leaf(3) completes with 4: Middle returns 30 + 31 + 4 = 65 into Outer, which doubles it
    // (130, a branch after the await) and adds NoAwait(130) = 131: 261.
    let AsyncResult::Completed(result) = exec
        .resume(second, Some(Val::I32(4)), Some(WasmValueType::I32))
        .unwrap()
    else {
        panic!("the chain completes");
    };
    assert_eq!(result.unwrap().unwrap_i32(), 261);
    assert_eq!(interpreter.pending.lock().unwrap().len(), 2);
    // Completing a continuation nothing awaits is an error, not a wild call.
    let orphan = 0x1000 + 64 * 5;
    assert!(exec.resume(orphan, Some(Val::I32(1)), None).is_err());
}

/// The embedder's interpreter for fnptr.il: runs `Slow` (x + 100) and counts its calls.
struct SlowInterpreter {
    slow: u32,
    calls: std::sync::Mutex<Vec<u32>>,
}

impl Interpreter for SlowInterpreter {
    fn execute(
        &self,
        entry: u32,
        memory: &mut [u8],
        args: u32,
        _size: u32,
        ret: u32,
    ) -> Result<(), String> {
        self.calls.lock().unwrap().push(entry);
        if entry != self.slow {
            return Err(format!("{entry:#x} was not expected in the interpreter"));
        }
        let at = args as usize;
        let x = i32::from_le_bytes(memory[at..at + 4].try_into().unwrap());
        let r = ret as usize;
        memory[r..r + 4].copy_from_slice(&(x + 100).to_le_bytes());
        Ok(())
    }
}

#[test]
fn managed_function_pointers_call_compiled_and_interpreted_targets() {
    let output = compile(&assemble("fnptr.il"));
    for name in [
        "CallTwice",
        "CallSlow",
        "CallWiden",
        "SamePointer",
        "Pick",
        "CallNull",
    ] {
        token_of(&output, &format!("Fixture.Pointers::{name}"));
    }
    let twice = token_of(&output, "Fixture.Pointers::Twice");
    let slow = output
        .not_compiled
        .iter()
        .find(|m| m.name == "Fixture.Pointers::Slow")
        .expect("Slow stays interpreted")
        .token;

    // One portable entry point per ldftn target, [code, handle] with handle = token.
    let image = Image::decode(image_from_module(&output.module).unwrap()).unwrap();
    let section = image
        .import_sections
        .iter()
        .find(|s| s.kind == ImportSectionType::PORTABLE_ENTRY_POINT)
        .expect("a PortableEntryPoint section");
    assert_eq!(section.entry_size, 8);
    let targets: Vec<u32> = section
        .cells
        .iter()
        .map(|c| match c.signature {
            FixupSignature::MethodEntry(m) => m.token,
            ref other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(targets.len(), 3, "Twice, Slow, Widen: {targets:x?}");
    assert!(targets.contains(&twice) && targets.contains(&slow));
    // Slow's entry needs the R2R -> interpreter thunk of `iip`.
    assert!(
        output.map.iter().any(|e| e.name == "Iiip"),
        "{:#?}",
        output.map
    );

    let interpreter = Arc::new(SlowInterpreter {
        slow,
        calls: Default::default(),
    });
    let mut exec = instantiate(&output, interpreter.clone());
    // The embedder tells the loader its interpreter runs Slow.
    exec.loader().register_interpreted(
        MethodRef {
            flags: MethodSigFlags::NONE,
            token: slow,
        },
        InterpretedMethod {
            thunk_key: "Iiip".into(),
        },
    );
    let mut call = |name: &str, signature: &str, args: &[Val]| {
        exec.invoke_by_name(&format!("Fixture.Pointers::{name}"), &sig(signature), args)
    };
    let i32_of = |r: Result<Option<Val>, _>| r.unwrap().unwrap().unwrap_i32();
    assert_eq!(i32_of(call("CallTwice", "iip", &[Val::I32(21)])), 42);
    assert!(interpreter.calls.lock().unwrap().is_empty());
    // Through the entry's import thunk, the delay-load helper, the R2R -> interpreter thunk.
    assert_eq!(i32_of(call("CallSlow", "iip", &[Val::I32(5)])), 105);
    assert_eq!(*interpreter.calls.lock().unwrap(), vec![slow]);
    // Again: the entry is patched now, the interpreter still gets Slow's handle.
    assert_eq!(i32_of(call("CallSlow", "iip", &[Val::I32(6)])), 106);
    assert_eq!(*interpreter.calls.lock().unwrap(), vec![slow, slow]);
    let wide = call("CallWiden", "lilp", &[Val::I32(2), Val::I64(1 << 40)]);
    assert_eq!(wide.unwrap().unwrap().unwrap_i64(), (1 << 40) + 2);
    assert_eq!(i32_of(call("SamePointer", "ip", &[])), 1);
    assert_eq!(i32_of(call("Pick", "iiip", &[Val::I32(0), Val::I32(4)])), 8);
    assert_eq!(
        i32_of(call("Pick", "iiip", &[Val::I32(1), Val::I32(4)])),
        104
    );
    // A null function pointer traps (NullReferenceException), never jumps through slot 0.
    let err = call("CallNull", "iip", &[Val::I32(1)]).unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");
}

/// The async fixture (suspension points, resumption stubs, async-variant cells) compiles to the
/// same bytes for 1 and 2 threads and any mark-order shuffle.
#[test]
fn async_fixture_output_is_deterministic() {
    let dll = async_fixture();
    let input = Assembly::load(&dll).unwrap();
    let corlib = Assembly::load(MSCORLIB).unwrap();
    let (a, b) = (input.view().unwrap(), corlib.view().unwrap());
    let ts = TypeSystem::new(vec![&a, &b]).unwrap();
    let build = |threads, shuffle_seed| {
        compile_input(
            &ts,
            &CompileOptions {
                threads: Some(threads),
                shuffle_seed,
                ..CompileOptions::default()
            },
        )
        .unwrap()
        .module
    };
    let reference = build(1, None);
    assert_eq!(build(2, None), reference);
    for seed in [1, 7, 42] {
        assert_eq!(build(2, Some(seed)), reference, "shuffle seed {seed}");
    }
}

#[test]
fn a_branch_onto_a_prefix_lands_on_the_prefixed_instruction() {
    let dll = assemble("prefixes.il");
    let output = compile(&dll);
    let method = output
        .not_compiled
        .iter()
        .find(|m| m.name == "Fixture.Prefixes::BranchToPrefixed")
        .expect("a thread-static field stays interpreted");
    // The reason is the prefixed instruction, at the offset where the branch lands.
    assert!(
        method
            .reason
            .starts_with("IL_0005: ldsfld 0x04000001: thread-static field"),
        "{}",
        method.reason
    );

    let assembly = Assembly::load(&dll).unwrap();
    let view = assembly.view().unwrap();
    let body = view.method_body(method.token).unwrap().expect("has IL");
    let offsets: Vec<(u32, &str, bool)> = body
        .instructions
        .iter()
        .map(|i| (i.offset, i.opcode, !i.prefixes.is_empty()))
        .collect();
    assert_eq!(
        offsets,
        [
            (0x00, "ldarg.0", false),
            (0x01, "brtrue.s", false),
            (0x03, "ldc.i4.1", false),
            (0x04, "ret", false),
            (0x05, "ldsfld", true),
            (0x0c, "ret", false),
        ]
    );
    assert_eq!(
        body.instructions[1].operand,
        crossgraph::nodes::typesystem::IlOperand::Branch(0x05)
    );
}

#[test]
fn volatile_unaligned_and_tail_prefixes_compile_and_run() {
    let output = compile(&assemble("prefixes.il"));
    let mut exec = instantiate(&output, Arc::new(NoInterpreter));
    // An odd address: `unaligned. 1` is honest. Below the image, free memory here.
    let at = Val::I32(1025);
    exec.invoke_by_name(
        "Fixture.Prefixes::Store",
        &sig("viip"),
        &[at, Val::I32(0x1234_5678)],
    )
    .unwrap_or_else(|e| panic!("Store: {e}"));
    assert_eq!(
        run_i32(&mut exec, "Fixture.Prefixes::Load", "iip", &[at]),
        0x1234_5678
    );
    assert_eq!(
        run_i32(&mut exec, "Fixture.Prefixes::TailLoad", "iip", &[at]),
        0x1234_5678
    );
}

#[test]
fn mutated_assemblies_are_errors_or_compile_never_panics() {
    // Bad input must never panic: flip a few bytes of a small real assembly, many times, and
    // load + compile each mutant against mscorlib (an error or an output are both fine).
    let original = std::fs::read(assemble("async.il")).unwrap();
    let corlib = Assembly::load(MSCORLIB).unwrap();
    let corlib_view = corlib.view().unwrap();
    let dir = std::env::temp_dir().join(format!("crossgraph-mutants-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // Load or parse error, type-system or compile error, compiled.
    let mut outcomes = [0usize; 3];
    for mutant in 0..1000 {
        let mut bytes = original.clone();
        for _ in 0..1 + next() % 8 {
            let at = (next() % bytes.len() as u64) as usize;
            bytes[at] ^= 1 << (next() % 8);
        }
        let path = dir.join(format!("m{mutant}.dll"));
        std::fs::write(&path, &bytes).unwrap();
        let result = std::panic::catch_unwind(|| {
            let Ok(input) = Assembly::load(&path) else {
                return 0;
            };
            let Ok(view) = input.view() else { return 0 };
            let Ok(ts) = TypeSystem::new(vec![&view, &corlib_view]) else {
                return 1;
            };
            match compile_input(&ts, &CompileOptions::default()) {
                Ok(_) => 2,
                Err(_) => 1,
            }
        });
        match result {
            Ok(outcome) => outcomes[outcome] += 1,
            Err(_) => panic!("mutant {mutant} panicked ({})", path.display()),
        }
    }
    // Not vacuous: the mutants reach every outcome (fixed seed: the same mutants every run).
    assert!(outcomes.iter().all(|&n| n > 0), "outcomes {outcomes:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ldobj_stobj_initobj_and_sizeof_run_through_pointers() {
    let output = compile(&assemble("values.il"));
    let mut exec = instantiate(&output, Arc::new(NoInterpreter));
    // ldobj of a struct: its 16 bytes copied into a frame temporary.
    token_of(&output, "Fixture.Values::LoadPair");
    assert_eq!(
        run_i32(
            &mut exec,
            "Fixture.Values::LoadPair",
            "iip",
            &[Val::I32(2048)]
        ),
        0
    );
    let write = |exec: &mut Executor, at: i32, v: i32| {
        exec.invoke_by_name(
            "Fixture.Values::Write",
            &sig("viip"),
            &[Val::I32(at), Val::I32(v)],
        )
        .unwrap_or_else(|e| panic!("Write: {e}"));
    };
    let read = |exec: &mut Executor, at: i32| {
        run_i32(exec, "Fixture.Values::Read", "iip", &[Val::I32(at)])
    };
    // Two words at 2048, copied as one int64 to 4096.
    write(&mut exec, 2048, 7);
    write(&mut exec, 2052, -9);
    exec.invoke_by_name(
        "Fixture.Values::Copy",
        &sig("viip"),
        &[Val::I32(4096), Val::I32(2048)],
    )
    .unwrap_or_else(|e| panic!("Copy: {e}"));
    assert_eq!(read(&mut exec, 4096), 7);
    assert_eq!(read(&mut exec, 4100), -9);
    // sizeof Pair = 16 (int32, padding, int64); initobj zeroes exactly those bytes.
    assert_eq!(
        run_i32(&mut exec, "Fixture.Values::SizeOfPair", "ip", &[]),
        16
    );
    for at in (4096..4096 + 24).step_by(4) {
        write(&mut exec, at, -1);
    }
    exec.invoke_by_name("Fixture.Values::Clear", &sig("vip"), &[Val::I32(4096)])
        .unwrap_or_else(|e| panic!("Clear: {e}"));
    let words: Vec<i32> = (4096..4096 + 24)
        .step_by(4)
        .map(|at| read(&mut exec, at))
        .collect();
    assert_eq!(words, [0, 0, 0, 0, -1, -1]);
}

#[test]
fn addresses_of_locals_and_arguments_and_localloc_live_in_the_frame() {
    let output = compile(&assemble("values.il"));
    let mut exec = instantiate(&output, Arc::new(NoInterpreter));
    let int = |exec: &mut Executor, name: &str, x: i32| {
        run_i32(
            exec,
            &format!("Fixture.Values::{name}"),
            "iip",
            &[Val::I32(x)],
        )
    };
    assert_eq!(int(&mut exec, "UseOut", 20), 41);
    // 2x, then UseOut(2x) = 4x + 1, plus 2x.
    assert_eq!(int(&mut exec, "Outer", 5), 31);
    assert_eq!(int(&mut exec, "ByteLocal", 300), 44);
    assert_eq!(int(&mut exec, "ByteLocal", -1), 255);
    let bumped = exec
        .invoke_by_name("Fixture.Values::BumpArg", &sig("llp"), &[Val::I64(1 << 40)])
        .unwrap_or_else(|e| panic!("BumpArg: {e}"))
        .expect("an int64")
        .unwrap_i64();
    assert_eq!(bumped, (1 << 40) + 5);
    // initblk and cpblk: memory.fill and memory.copy.
    let blocks = run_i32(
        &mut exec,
        "Fixture.Values::Blocks",
        "iiiip",
        &[Val::I32(2048), Val::I32(4096), Val::I32(0x1234)],
    );
    assert_eq!(blocks, 0x3434_3434);
    assert_eq!(exec.read_bytes(4096, 8).unwrap(), [0x34; 8]);
    // localloc: n ints below the frame, a call's frame below them.
    for n in [1, 5, 40] {
        let sum: i32 = (0..n).map(|i| i * i).sum();
        // UseOut(n) = 2n + 1.
        assert_eq!(
            int(&mut exec, "Squares", n),
            sum * 1000 + 2 * n + 1,
            "Squares({n})"
        );
        // The memory Squares used (and dirtied) comes back zeroed.
        assert_eq!(int(&mut exec, "Zeroed", n), 1, "Zeroed({n})");
    }
}

/// An embedder whose string objects are `[length u32][UTF-16 code units]` in an arena at the
/// bottom of memory (below the image), interned by content as ECMA-335 requires of literals.
struct StringInterpreter {
    literals: std::collections::HashMap<u32, Vec<u16>>,
    objects: std::sync::Mutex<(u32, std::collections::HashMap<Vec<u16>, u32>)>,
    calls: std::sync::atomic::AtomicUsize,
}

impl Interpreter for StringInterpreter {
    fn execute(&self, entry: u32, _: &mut [u8], _: u32, _: u32, _: u32) -> Result<(), String> {
        Err(format!("{entry:#x} was not expected in the interpreter"))
    }

    fn string_literal(&self, memory: &mut [u8], token: u32) -> Result<u32, String> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let units = self
            .literals
            .get(&token)
            .ok_or_else(|| format!("no literal {token:#x}"))?;
        let mut objects = self.objects.lock().unwrap();
        if let Some(&object) = objects.1.get(units) {
            return Ok(object);
        }
        let object = objects.0;
        let at = object as usize;
        memory[at..at + 4].copy_from_slice(&(units.len() as u32).to_le_bytes());
        for (i, unit) in units.iter().enumerate() {
            memory[at + 4 + 2 * i..at + 6 + 2 * i].copy_from_slice(&unit.to_le_bytes());
        }
        objects.0 = (object + 4 + 2 * units.len() as u32).next_multiple_of(8);
        objects.1.insert(units.clone(), object);
        Ok(object)
    }
}

/// The string object at `object` of [`StringInterpreter`]'s layout.
fn read_string(exec: &Executor, object: i32) -> String {
    let at = object as u32 as usize;
    let len = exec.read_u32(at).unwrap() as usize;
    let bytes = exec.read_bytes(at + 4, 2 * len).unwrap();
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|u| u16::from_le_bytes([u[0], u[1]]))
        .collect();
    String::from_utf16(&units).unwrap()
}

#[test]
fn ldstr_loads_a_lazy_string_handle_cell_the_embedder_resolves_once() {
    let dll = assemble("strings.il");
    let output = compile(&dll);
    for name in ["Hello", "Same", "Different", "Maybe"] {
        token_of(&output, &format!("Fixture.Strings::{name}"));
    }
    // One lazy StringHandle cell per literal (ilasm stores "hello" once), initially 0.
    let image = Image::decode(image_from_module(&output.module).unwrap()).unwrap();
    let section = image
        .import_sections
        .iter()
        .find(|s| s.kind == ImportSectionType::STRING_HANDLE)
        .unwrap();
    assert!(section.flags.0 & 1 == 0, "string cells are lazy");
    let tokens: Vec<u32> = section
        .cells
        .iter()
        .map(|c| match c.signature {
            FixupSignature::StringHandle(token) => token,
            ref other => panic!("{other:?} in the string section"),
        })
        .collect();
    assert_eq!(tokens.len(), 3);
    assert!(tokens.iter().all(|t| t >> 24 == 0x70));
    let input = Assembly::load(&dll).unwrap();
    let view = input.view().unwrap();
    let literals: std::collections::HashMap<u32, Vec<u16>> = tokens
        .iter()
        .map(|&t| (t, view.user_string(t).unwrap()))
        .collect();
    let mut texts: Vec<String> = literals
        .values()
        .map(|u| String::from_utf16(u).unwrap())
        .collect();
    texts.sort();
    assert_eq!(texts, ["hello", "only when taken", "w\u{f6}rld"]);
    let map_names: Vec<&str> = output
        .map
        .iter()
        .filter(|e| e.kind == "StringImport")
        .map(|e| e.name.as_str())
        .collect();
    assert!(
        map_names.contains(&"StringImport \"hello\""),
        "{map_names:?}"
    );

    let strings = Arc::new(StringInterpreter {
        literals,
        objects: std::sync::Mutex::new((4096, Default::default())),
        calls: Default::default(),
    });
    let mut exec = instantiate(&output, strings.clone());
    let calls = || strings.calls.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(calls(), 0, "nothing is resolved at load");
    let hello = run_i32(&mut exec, "Fixture.Strings::Hello", "ip", &[]);
    assert_eq!(read_string(&exec, hello), "hello");
    assert_eq!(calls(), 1);
    // Resolved once: the cell now holds the object.
    assert_eq!(
        run_i32(&mut exec, "Fixture.Strings::Hello", "ip", &[]),
        hello
    );
    assert_eq!(run_i32(&mut exec, "Fixture.Strings::Same", "ip", &[]), 1);
    assert_eq!(calls(), 1);
    assert_eq!(
        run_i32(&mut exec, "Fixture.Strings::Different", "ip", &[]),
        0
    );
    assert_eq!(calls(), 2);
    assert_eq!(
        run_i32(&mut exec, "Fixture.Strings::Maybe", "iip", &[Val::I32(0)]),
        0
    );
    assert_eq!(calls(), 2, "a literal on a path not taken is not resolved");
    let taken = run_i32(&mut exec, "Fixture.Strings::Maybe", "iip", &[Val::I32(1)]);
    assert_eq!(read_string(&exec, taken), "only when taken");
    assert_eq!(calls(), 3);

    // An embedder without string literals: the ldstr traps with its message.
    fails_without_an_embedder(
        &output,
        "Fixture.Strings::Hello",
        "ip",
        &[],
        "no string literals",
    );
}

/// An embedder with objects laid out as the compiler lays them out (a 4-byte header holding
/// the type token, then the fields at the type system's offsets), allocated from an arena at
/// the bottom of memory; it runs `System.Object::.ctor` (a no-op) for the compiled
/// constructors that chain to it.
struct ObjectInterpreter {
    /// Instance size by type token.
    sizes: std::collections::HashMap<u32, u32>,
    object_ctors: Vec<u32>,
    next: std::sync::Mutex<u32>,
    allocations: std::sync::Mutex<Vec<u32>>,
}

impl Interpreter for ObjectInterpreter {
    fn execute(&self, entry: u32, _: &mut [u8], _: u32, _: u32, _: u32) -> Result<(), String> {
        if self.object_ctors.contains(&entry) {
            return Ok(());
        }
        Err(format!("{entry:#x} was not expected in the interpreter"))
    }

    fn new_object(&self, memory: &mut [u8], token: u32) -> Result<u32, String> {
        let size = *self
            .sizes
            .get(&token)
            .ok_or_else(|| format!("no type {token:#x}"))?;
        let mut next = self.next.lock().unwrap();
        let object = *next;
        *next = (object + size).next_multiple_of(8);
        let at = object as usize;
        memory[at..at + size as usize].fill(0);
        memory[at..at + 4].copy_from_slice(&token.to_le_bytes());
        self.allocations.lock().unwrap().push(token);
        Ok(object)
    }
}

#[test]
fn newobj_allocates_through_the_embedder_and_throw_leaves_the_compiled_frames() {
    let dll = assemble("objects.il");
    let output = compile(&dll);
    for name in [
        "Make",
        "Distinct",
        "Both",
        "NotNull",
        "Checked",
        "CallsChecked",
    ] {
        token_of(&output, &format!("Fixture.Objects::{name}"));
    }
    let repeat = output
        .not_compiled
        .iter()
        .find(|m| m.name == "Fixture.Objects::Repeat")
        .expect("new string(...) stays interpreted");
    assert!(repeat.reason.contains("System.String"), "{}", repeat.reason);

    // One lazy NewObject cell per allocated class: System.Object (a TypeRef) and Box.
    let image = Image::decode(image_from_module(&output.module).unwrap()).unwrap();
    let classes: Vec<u32> = image
        .import_sections
        .iter()
        .flat_map(|s| &s.cells)
        .filter_map(|c| match c.signature {
            FixupSignature::NewObject(token) => Some(token),
            _ => None,
        })
        .collect();
    assert_eq!(classes.len(), 2);
    let (object_class, box_class) = (classes[0], classes[1]);
    assert_eq!((object_class >> 24, box_class >> 24), (0x01, 0x02));
    // Instance sizes from the same type system the compiler laid fields out with.
    let input = Assembly::load(&dll).unwrap();
    let corlib = Assembly::load(MSCORLIB).unwrap();
    let (a, b) = (input.view().unwrap(), corlib.view().unwrap());
    let ts = TypeSystem::new(vec![&a, &b]).unwrap();
    let size = |token: u32| {
        let table = if token >> 24 == 0x01 {
            cildec::TableId::TypeRef
        } else {
            cildec::TableId::TypeDef
        };
        let id = ts
            .resolve_type(0, cildec::Token::new(table, token & 0x00ff_ffff))
            .unwrap();
        (token, ts.layout(id).unwrap().size)
    };
    let sizes: std::collections::HashMap<u32, u32> =
        [size(object_class), size(box_class)].into_iter().collect();
    assert_eq!(sizes[&object_class], 4, "System.Object: the header");
    assert_eq!(sizes[&box_class], 16, "header, int32 at 4, int64 at 8");
    // The constructors chain to System.Object::.ctor, which only the interpreter has.
    let object_ctors: Vec<u32> = image
        .import_sections
        .iter()
        .flat_map(|s| &s.cells)
        .filter_map(|c| match c.signature {
            FixupSignature::MethodEntry(m) if m.token >> 24 == 0x0a => Some(m.token),
            _ => None,
        })
        .collect();
    assert!(!object_ctors.is_empty());

    let objects = Arc::new(ObjectInterpreter {
        sizes,
        object_ctors: object_ctors.clone(),
        next: std::sync::Mutex::new(4096),
        allocations: Default::default(),
    });
    let mut exec = instantiate(&output, objects.clone());
    for &ctor in &object_ctors {
        exec.loader().register_interpreted(
            MethodRef {
                flags: MethodSigFlags::NONE,
                token: ctor,
            },
            InterpretedMethod {
                thunk_key: "IvTp".into(),
            },
        );
    }
    let allocations = || objects.allocations.lock().unwrap().clone();
    assert_eq!(
        run_i32(&mut exec, "Fixture.Objects::Make", "iip", &[Val::I32(41)]),
        42
    );
    assert_eq!(allocations(), [box_class]);
    assert_eq!(
        run_i32(&mut exec, "Fixture.Objects::Distinct", "ip", &[]),
        0
    );
    let both = exec
        .invoke_by_name(
            "Fixture.Objects::Both",
            &sig("lilp"),
            &[Val::I32(3), Val::I64(5_000_000_000)],
        )
        .unwrap()
        .unwrap()
        .unwrap_i64();
    assert_eq!(both, 5_000_000_003);
    assert_eq!(run_i32(&mut exec, "Fixture.Objects::NotNull", "ip", &[]), 1);
    assert_eq!(
        allocations(),
        [box_class, box_class, box_class, box_class, object_class]
    );

    // throw: the exception object leaves both compiled frames to the embedder; the
    // executor goes on afterwards.
    assert_eq!(
        run_i32(
            &mut exec,
            "Fixture.Objects::CallsChecked",
            "iip",
            &[Val::I32(4)]
        ),
        5
    );
    let thrown = exec.invoke_by_name(
        "Fixture.Objects::CallsChecked",
        &sig("iip"),
        &[Val::I32(-7)],
    );
    let Err(ExecError::Exception { object }) = thrown else {
        panic!("expected a managed exception, got {thrown:?}");
    };
    assert_eq!(exec.read_u32(object as usize), Some(box_class));
    assert_eq!(exec.read_u32(object as usize + 4), Some(-7i32 as u32));
    assert_eq!(
        run_i32(
            &mut exec,
            "Fixture.Objects::CallsChecked",
            "iip",
            &[Val::I32(1)]
        ),
        2
    );

    // An embedder without objects: newobj traps with its message.
    fails_without_an_embedder(
        &output,
        "Fixture.Objects::Make",
        "iip",
        &[Val::I32(1)],
        "allocates no objects",
    );
}

/// An embedder owning the statics of statics.il: an 8-byte slot per field, from an arena at
/// the bottom of memory, handed out on each field's first resolution; the first resolution of
/// a `Fixture.Statics` field runs its "class constructor" (Big = 5, Ratio = 3.0, Pair = {1, 7},
/// written where those fields live), and String.Empty holds a made-up reference.
struct StaticsInterpreter {
    /// Field tokens of the fixture by name, and String.Empty's `MemberRef`.
    fields: std::collections::HashMap<String, u32>,
    slots: std::sync::Mutex<std::collections::HashMap<u32, u32>>,
    resolved: std::sync::Mutex<Vec<u32>>,
}

const EMPTY_STRING: u32 = 0x0bad_cafe;

impl StaticsInterpreter {
    /// The slot of field `token`, allocated (zeroed) on first use.
    fn slot(&self, memory: &mut [u8], token: u32) -> u32 {
        let mut slots = self.slots.lock().unwrap();
        let next = 4096 + 8 * slots.len() as u32;
        *slots.entry(token).or_insert_with(|| {
            memory[next as usize..next as usize + 8].fill(0);
            next
        })
    }
}

impl Interpreter for StaticsInterpreter {
    fn execute(&self, entry: u32, _: &mut [u8], _: u32, _: u32, _: u32) -> Result<(), String> {
        Err(format!("{entry:#x} was not expected in the interpreter"))
    }

    fn static_field_address(&self, memory: &mut [u8], token: u32) -> Result<u32, String> {
        let known = self.fields.values().any(|&t| t == token);
        if !known {
            return Err(format!("no static field {token:#x}"));
        }
        let first = {
            let mut resolved = self.resolved.lock().unwrap();
            resolved.push(token);
            resolved.iter().filter(|&&t| t >> 24 == 0x04).count() == 1 && token >> 24 == 0x04
        };
        if first {
            // The class constructor, before the first access to any of its fields.
            let big = self.slot(memory, self.fields["Big"]) as usize;
            memory[big..big + 8].copy_from_slice(&5i64.to_le_bytes());
            let ratio = self.slot(memory, self.fields["Ratio"]) as usize;
            memory[ratio..ratio + 8].copy_from_slice(&3.0f64.to_le_bytes());
            let pair = self.slot(memory, self.fields["Pair"]) as usize;
            memory[pair..pair + 4].copy_from_slice(&1i32.to_le_bytes());
            memory[pair + 4..pair + 8].copy_from_slice(&7i32.to_le_bytes());
        }
        let at = self.slot(memory, token);
        if token == self.fields["String.Empty"] {
            memory[at as usize..at as usize + 4].copy_from_slice(&EMPTY_STRING.to_le_bytes());
        }
        Ok(at)
    }
}

#[test]
fn static_fields_go_through_lazy_field_address_cells_the_embedder_resolves_once() {
    let dll = assemble("statics.il");
    let output = compile(&dll);
    for name in [
        "Bump",
        "Scale",
        "Half",
        "Narrow",
        "StoreRef",
        "PairAddress",
        "PairB",
        "Maybe",
        "Empty",
        "CopyPair",
    ] {
        token_of(&output, &format!("Fixture.Statics::{name}"));
    }
    let reason = |name: &str| {
        output
            .not_compiled
            .iter()
            .find(|m| m.name == format!("Fixture.Statics::{name}"))
            .unwrap_or_else(|| panic!("{name} is compiled"))
            .reason
            .clone()
    };
    assert!(
        reason("ReadPerThread").ends_with("thread-static field"),
        "{}",
        reason("ReadPerThread")
    );
    // One lazy FieldAddress cell per field reached (not PerThread), initially 0.
    let image = Image::decode(image_from_module(&output.module).unwrap()).unwrap();
    let cells: Vec<u32> = image
        .import_sections
        .iter()
        .flat_map(|s| s.cells.iter().map(move |c| (s, c)))
        .filter_map(|(s, c)| match c.signature {
            FixupSignature::FieldAddress(token) => {
                assert!(s.flags.0 & 1 == 0, "field cells are lazy");
                Some(token)
            }
            _ => None,
        })
        .collect();
    assert_eq!(cells.len(), 8, "{cells:x?}");
    let input = Assembly::load(&dll).unwrap();
    let view = input.view().unwrap();
    let tables = view.metadata().tables();
    let mut fields = std::collections::HashMap::new();
    for &token in &cells {
        let name = match token >> 24 {
            0x04 => view
                .string(tables.field(token & 0x00ff_ffff).unwrap().name)
                .to_string(),
            0x0a => {
                let member = tables.member_ref(token & 0x00ff_ffff).unwrap();
                format!("String.{}", view.string(member.name))
            }
            other => panic!("a field cell of table {other:#x}"),
        };
        fields.insert(name, token);
    }
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "Big",
            "Counter",
            "Pair",
            "Ratio",
            "Ref",
            "Small",
            "String.Empty",
            "Untouched"
        ]
    );
    assert!(
        output
            .map
            .iter()
            .any(|e| e.name == "FieldAddress [mscorlib]System.String::Empty"),
        "the map names the cells"
    );

    let statics = Arc::new(StaticsInterpreter {
        fields: fields.clone(),
        slots: Default::default(),
        resolved: Default::default(),
    });
    let mut exec = instantiate(&output, statics.clone());
    let resolved = || statics.resolved.lock().unwrap().clone();
    assert!(resolved().is_empty(), "nothing is resolved at load");
    assert_eq!(
        run_i32(&mut exec, "Fixture.Statics::Bump", "iip", &[Val::I32(5)]),
        5
    );
    assert_eq!(
        run_i32(&mut exec, "Fixture.Statics::Bump", "iip", &[Val::I32(-2)]),
        3
    );
    assert_eq!(resolved(), [fields["Counter"]], "resolved once");
    // The class constructor ran before the first access: Big = 5, Ratio = 3.0.
    let scaled = exec
        .invoke_by_name("Fixture.Statics::Scale", &sig("llp"), &[Val::I64(1 << 33)])
        .unwrap()
        .unwrap()
        .unwrap_i64();
    assert_eq!(scaled, 5 << 33);
    let half = exec
        .invoke_by_name("Fixture.Statics::Half", &sig("dp"), &[])
        .unwrap()
        .unwrap()
        .unwrap_f64();
    assert_eq!(half, 1.5);
    assert_eq!(
        run_i32(
            &mut exec,
            "Fixture.Statics::Narrow",
            "iip",
            &[Val::I32(300)]
        ),
        44
    );
    assert_eq!(
        run_i32(
            &mut exec,
            "Fixture.Statics::StoreRef",
            "iip",
            &[Val::I32(0)]
        ),
        1
    );
    assert_eq!(
        run_i32(
            &mut exec,
            "Fixture.Statics::StoreRef",
            "iip",
            &[Val::I32(64)]
        ),
        0
    );
    let pair = run_i32(&mut exec, "Fixture.Statics::PairAddress", "ip", &[]);
    assert_eq!(pair as u32, statics.slots.lock().unwrap()[&fields["Pair"]]);
    assert_eq!(run_i32(&mut exec, "Fixture.Statics::PairB", "ip", &[]), 7);
    assert_eq!(
        run_i32(&mut exec, "Fixture.Statics::Empty", "ip", &[]) as u32,
        EMPTY_STRING
    );
    assert_eq!(
        run_i32(&mut exec, "Fixture.Statics::Maybe", "iip", &[Val::I32(0)]),
        0
    );
    assert!(
        !resolved().contains(&fields["Untouched"]),
        "a field on a path not taken is not resolved"
    );
    assert_eq!(
        run_i32(&mut exec, "Fixture.Statics::Maybe", "iip", &[Val::I32(1)]),
        0
    );
    let mut once = resolved();
    once.sort_unstable();
    let before = once.len();
    once.dedup();
    assert_eq!(once.len(), before, "each cell resolved once");
    assert_eq!(once.len(), 8);

    // An embedder without statics: the access traps with its message.
    fails_without_an_embedder(
        &output,
        "Fixture.Statics::Bump",
        "iip",
        &[Val::I32(1)],
        "no statics",
    );
}

/// An embedder whose arrays are laid out as the runtime's ABI says
/// (`crossgraph::runtime_core::abi::array`: the element type's token as the header, the
/// length at 4, the elements from 8), allocated from an arena at the bottom of memory; element
/// sizes come from the `newarr` operand's `TypeSpec` signature.
struct ArrayInterpreter {
    /// Element size by `newarr` token.
    sizes: std::collections::HashMap<u32, u32>,
    next: std::sync::Mutex<u32>,
    allocations: std::sync::Mutex<Vec<(u32, u32)>>,
    /// References no array of this embedder can hold (as if of an unrelated type).
    misfits: Vec<u32>,
    /// The array-store checks asked: (array, value).
    store_checks: std::sync::Mutex<Vec<(u32, u32)>>,
}

impl Interpreter for ArrayInterpreter {
    fn execute(&self, entry: u32, _: &mut [u8], _: u32, _: u32, _: u32) -> Result<(), String> {
        Err(format!("{entry:#x} was not expected in the interpreter"))
    }

    fn can_store_element(&self, _: &mut [u8], array: u32, value: u32) -> Result<bool, String> {
        self.store_checks.lock().unwrap().push((array, value));
        Ok(!self.misfits.contains(&value))
    }

    fn new_array(&self, memory: &mut [u8], token: u32, length: u32) -> Result<u32, String> {
        use crossgraph::runtime_core::abi::array::{DATA_OFFSET, LENGTH_OFFSET};
        let size = *self
            .sizes
            .get(&token)
            .ok_or_else(|| format!("no element type {token:#x}"))?;
        let mut next = self.next.lock().unwrap();
        let array = *next;
        let end = array + DATA_OFFSET + size * length;
        *next = end.next_multiple_of(8);
        memory[array as usize..end as usize].fill(0);
        memory[array as usize..array as usize + 4].copy_from_slice(&token.to_le_bytes());
        let at = (array + LENGTH_OFFSET) as usize;
        memory[at..at + 4].copy_from_slice(&length.to_le_bytes());
        self.allocations.lock().unwrap().push((token, length));
        Ok(array)
    }
}

#[test]
fn arrays_are_allocated_by_the_embedder_and_indexed_with_checks() {
    let dll = assemble("arrays.il");
    let output = compile(&dll);
    for name in [
        "SumOfSquares",
        "Length",
        "Get",
        "Longs",
        "Narrow",
        "ThroughAddress",
        "NullElement",
        "Make",
        "StoreRef",
        "MakeObjects",
        "LoadRef",
    ] {
        token_of(&output, &format!("Fixture.Arrays::{name}"));
    }
    // One NewArray cell per element type; the embedder reads the type from the token.
    let image = Image::decode(image_from_module(&output.module).unwrap()).unwrap();
    let tokens: Vec<u32> = image
        .import_sections
        .iter()
        .flat_map(|s| &s.cells)
        .filter_map(|c| match c.signature {
            FixupSignature::NewArray(token) => Some(token),
            _ => None,
        })
        .collect();
    assert_eq!(tokens.len(), 4, "int32, int64, uint8, object: {tokens:x?}");
    let input = Assembly::load(&dll).unwrap();
    let view = input.view().unwrap();
    let sizes: std::collections::HashMap<u32, u32> = tokens
        .iter()
        .map(|&token| {
            assert_eq!(
                token >> 24,
                0x1b,
                "ilasm writes these operands as TypeSpecs"
            );
            let spec = view
                .metadata()
                .tables()
                .type_spec(token & 0x00ff_ffff)
                .unwrap();
            let blob = view.metadata().blobs().get(spec.signature).unwrap();
            // ECMA-335 II.23.1.16: I4 0x08, I8 0x0A, U1 0x05, OBJECT 0x1C.
            let size = match blob[0] {
                0x08 | 0x1c => 4,
                0x0a => 8,
                0x05 => 1,
                other => panic!("element type {other:#x}"),
            };
            (token, size)
        })
        .collect();

    let arrays = Arc::new(ArrayInterpreter {
        sizes,
        next: std::sync::Mutex::new(4096),
        allocations: Default::default(),
        misfits: vec![0xbad0],
        store_checks: Default::default(),
    });
    let mut exec = instantiate(&output, arrays.clone());
    let sum = |n: i32| (0..n).map(|i| i * i).sum::<i32>();
    for n in [0, 1, 5, 30] {
        assert_eq!(
            run_i32(
                &mut exec,
                "Fixture.Arrays::SumOfSquares",
                "iip",
                &[Val::I32(n)]
            ),
            sum(n),
            "n = {n}"
        );
    }
    let made = run_i32(&mut exec, "Fixture.Arrays::Make", "iip", &[Val::I32(3)]);
    assert_eq!(
        run_i32(
            &mut exec,
            "Fixture.Arrays::Length",
            "iip",
            &[Val::I32(made)]
        ),
        3
    );
    assert_eq!(
        run_i32(
            &mut exec,
            "Fixture.Arrays::Get",
            "iiip",
            &[Val::I32(made), Val::I32(2)]
        ),
        0
    );
    let longs = exec
        .invoke_by_name(
            "Fixture.Arrays::Longs",
            &sig("llp"),
            &[Val::I64(-(1 << 40))],
        )
        .unwrap()
        .unwrap()
        .unwrap_i64();
    assert_eq!(longs, -(1 << 40));
    assert_eq!(
        run_i32(&mut exec, "Fixture.Arrays::Narrow", "iip", &[Val::I32(300)]),
        44
    );
    assert_eq!(
        run_i32(
            &mut exec,
            "Fixture.Arrays::ThroughAddress",
            "iip",
            &[Val::I32(7)]
        ),
        7
    );
    assert_eq!(
        run_i32(&mut exec, "Fixture.Arrays::NullElement", "ip", &[]),
        1
    );
    assert!(
        arrays.allocations.lock().unwrap().contains(&(tokens[0], 0)),
        "an empty array is an allocation too"
    );

    // Null arrays, indices out of range (negative ones too) and negative lengths trap.
    let traps = |exec: &mut Executor, name: &str, signature: &str, args: &[Val]| {
        assert!(
            exec.invoke_by_name(name, &sig(signature), args).is_err(),
            "{name}{args:?} should trap"
        );
    };
    traps(&mut exec, "Fixture.Arrays::Length", "iip", &[Val::I32(0)]);
    for index in [3, -1, i32::MAX] {
        traps(
            &mut exec,
            "Fixture.Arrays::Get",
            "iiip",
            &[Val::I32(made), Val::I32(index)],
        );
    }
    traps(
        &mut exec,
        "Fixture.Arrays::Get",
        "iiip",
        &[Val::I32(0), Val::I32(0)],
    );
    let before = arrays.allocations.lock().unwrap().len();
    traps(&mut exec, "Fixture.Arrays::Make", "iip", &[Val::I32(-1)]);
    assert_eq!(
        arrays.allocations.lock().unwrap().len(),
        before,
        "a negative length never reaches the embedder"
    );
    // The executor goes on after the traps.
    assert_eq!(
        run_i32(
            &mut exec,
            "Fixture.Arrays::SumOfSquares",
            "iip",
            &[Val::I32(4)]
        ),
        sum(4)
    );

    // stelem.ref: the embedder checks every non-null reference (array covariance), after
    // the null and bounds checks; null needs no check.
    let objects = run_i32(
        &mut exec,
        "Fixture.Arrays::MakeObjects",
        "iip",
        &[Val::I32(3)],
    );
    let store = |exec: &mut Executor, array: i32, index: i32, value: i32| {
        exec.invoke_by_name(
            "Fixture.Arrays::StoreRef",
            &sig("viiip"),
            &[Val::I32(array), Val::I32(index), Val::I32(value)],
        )
        .map(|_| ())
    };
    let load = |exec: &mut Executor, index: i32| {
        run_i32(
            exec,
            "Fixture.Arrays::LoadRef",
            "iiip",
            &[Val::I32(objects), Val::I32(index)],
        )
    };
    store(&mut exec, objects, 1, 0x7000).unwrap();
    assert_eq!(load(&mut exec, 1), 0x7000);
    store(&mut exec, objects, 1, 0).unwrap();
    assert_eq!(load(&mut exec, 1), 0);
    assert_eq!(
        *arrays.store_checks.lock().unwrap(),
        [(objects as u32, 0x7000)],
        "null is stored without asking"
    );
    // ArrayTypeMismatchException: a trap, and the element keeps its value.
    store(&mut exec, objects, 2, 0x7100).unwrap();
    assert!(store(&mut exec, objects, 2, 0xbad0).is_err());
    assert_eq!(load(&mut exec, 2), 0x7100);
    // NullReferenceException and IndexOutOfRangeException come first: no check asked.
    let asked = arrays.store_checks.lock().unwrap().len();
    assert!(store(&mut exec, 0, 0, 0x7000).is_err());
    assert!(store(&mut exec, objects, 3, 0x7000).is_err());
    assert!(store(&mut exec, objects, -1, 0x7000).is_err());
    assert_eq!(arrays.store_checks.lock().unwrap().len(), asked);

    // An embedder without arrays: newarr traps with its message.
    fails_without_an_embedder(
        &output,
        "Fixture.Arrays::Make",
        "iip",
        &[Val::I32(1)],
        "allocates no arrays",
    );
    // Nor an object model: its answer to a reference store is an error (a trap).
    let err = NoInterpreter
        .can_store_element(&mut [], 4096, 0x7000)
        .unwrap_err();
    assert!(err.contains("no object model"), "{err}");
}

/// An embedder whose objects are handles it keeps the types of (compiled code never reads
/// them here): a Dog, a Cat and a string, and the fixture's class hierarchy (Dog and Cat
/// derive from Animal); it answers type tests and counts them.
struct TypeCheckInterpreter {
    /// Type of each object handle: a `TypeDef` token, or 0 for a string.
    objects: std::collections::HashMap<u32, u32>,
    /// Base class of each `TypeDef`.
    bases: std::collections::HashMap<u32, u32>,
    /// The `TypeSpec` token the fixture names `string` with.
    string: u32,
    tests: std::sync::atomic::AtomicUsize,
}

impl Interpreter for TypeCheckInterpreter {
    fn execute(&self, entry: u32, _: &mut [u8], _: u32, _: u32, _: u32) -> Result<(), String> {
        Err(format!("{entry:#x} was not expected in the interpreter"))
    }

    fn is_instance_of(&self, _: &mut [u8], object: u32, token: u32) -> Result<bool, String> {
        self.tests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut ty = *self
            .objects
            .get(&object)
            .ok_or_else(|| format!("no object {object:#x}"))?;
        if ty == 0 {
            return Ok(token == self.string);
        }
        loop {
            if ty == token {
                return Ok(true);
            }
            match self.bases.get(&ty) {
                Some(&base) => ty = base,
                None => return Ok(false),
            }
        }
    }
}

#[test]
fn isinst_and_castclass_ask_the_embedder_through_type_check_cells() {
    let dll = assemble("typechecks.il");
    let output = compile(&dll);
    for name in ["IsDog", "AsAnimal", "ToDog", "IsString"] {
        token_of(&output, &format!("Fixture.Checks::{name}"));
    }
    let image = Image::decode(image_from_module(&output.module).unwrap()).unwrap();
    let cells: Vec<&FixupSignature> = image
        .import_sections
        .iter()
        .flat_map(|s| &s.cells)
        .map(|c| &c.signature)
        .filter(|s| {
            matches!(
                s,
                FixupSignature::IsInstanceOf(_) | FixupSignature::ChkCast(_)
            )
        })
        .collect();
    // isinst Animal, Dog, string; castclass Dog: Dog has one cell of each kind.
    assert_eq!(cells.len(), 4, "{cells:?}");
    let input = Assembly::load(&dll).unwrap();
    let view = input.view().unwrap();
    let names = cildec::Names::new(view.metadata());
    let type_def = |name: &str| {
        (1..=view.metadata().tables().row_count(cildec::TableId::TypeDef))
            .find(|&rid| names.type_def(cildec::Rid::new(rid)).unwrap() == name)
            .map(|rid| 0x0200_0000 | rid)
            .unwrap_or_else(|| panic!("no type {name}"))
    };
    let (animal, dog, cat) = (
        type_def("Fixture.Animal"),
        type_def("Fixture.Dog"),
        type_def("Fixture.Cat"),
    );
    assert!(cells.contains(&&FixupSignature::ChkCast(dog)));
    assert!(cells.contains(&&FixupSignature::IsInstanceOf(dog)));
    let string = cells
        .iter()
        .find_map(|s| match s {
            FixupSignature::IsInstanceOf(t) if t >> 24 == 0x1b => Some(*t),
            _ => None,
        })
        .expect("ilasm names string with a TypeSpec");
    let (a_dog, a_cat, a_string) = (0x1000, 0x2000, 0x3000);
    let checks = Arc::new(TypeCheckInterpreter {
        objects: [(a_dog, dog), (a_cat, cat), (a_string, 0)].into(),
        bases: [(dog, animal), (cat, animal)].into(),
        string,
        tests: Default::default(),
    });
    let mut exec = instantiate(&output, checks.clone());
    let call = |exec: &mut Executor, name: &str, object: u32| {
        exec.invoke_by_name(
            &format!("Fixture.Checks::{name}"),
            &sig("iip"),
            &[Val::I32(object as i32)],
        )
        .map(|v| v.unwrap().unwrap_i32() as u32)
    };
    assert_eq!(call(&mut exec, "IsDog", a_dog).unwrap(), 1);
    assert_eq!(call(&mut exec, "IsDog", a_cat).unwrap(), 0);
    assert_eq!(call(&mut exec, "IsDog", a_string).unwrap(), 0);
    assert_eq!(call(&mut exec, "AsAnimal", a_cat).unwrap(), a_cat);
    assert_eq!(call(&mut exec, "AsAnimal", a_string).unwrap(), 0);
    assert_eq!(call(&mut exec, "IsString", a_string).unwrap(), 1);
    assert_eq!(call(&mut exec, "IsString", a_dog).unwrap(), 0);
    assert_eq!(call(&mut exec, "ToDog", a_dog).unwrap(), a_dog);
    let tests = || checks.tests.load(std::sync::atomic::Ordering::Relaxed);
    let before = tests();
    // null passes every test as null without asking the embedder; castclass lets it through.
    assert_eq!(call(&mut exec, "IsDog", 0).unwrap(), 0);
    assert_eq!(call(&mut exec, "AsAnimal", 0).unwrap(), 0);
    assert_eq!(call(&mut exec, "ToDog", 0).unwrap(), 0);
    assert_eq!(tests(), before, "null is never the embedder's question");
    // A failed castclass of a non-null object traps (InvalidCastException); the executor
    // goes on.
    assert!(call(&mut exec, "ToDog", a_cat).is_err());
    assert_eq!(call(&mut exec, "IsDog", a_dog).unwrap(), 1);

    // An embedder without an object model: the test traps with its message.
    let mut bare = instantiate(&output, Arc::new(NoInterpreter));
    let err = call(&mut bare, "IsDog", a_dog).unwrap_err();
    assert!(err.to_string().contains("no object model"), "{err}");
}

/// An embedder whose objects are handles it keeps the types of (compiled code never reads
/// them here), with each type's overrides; it runs `Circle`'s interpreted overrides (the
/// thread-static field they read is 100 here) and counts the dispatches it answers.
struct VirtualInterpreter {
    /// Type of each object handle (any distinct number per type).
    objects: std::collections::HashMap<u32, u32>,
    /// (type, virtual method) -> the override that type runs.
    overrides: std::collections::HashMap<(u32, u32), u32>,
    circle_area: u32,
    circle_scale: u32,
    dispatches: std::sync::atomic::AtomicUsize,
    /// Entry points the interpreter ran, and `this` of each.
    executed: std::sync::Mutex<Vec<(u32, u32)>>,
}

impl Interpreter for VirtualInterpreter {
    fn execute(
        &self,
        entry: u32,
        memory: &mut [u8],
        args: u32,
        _: u32,
        ret: u32,
    ) -> Result<(), String> {
        let signature = if entry == self.circle_area {
            "iTp"
        } else if entry == self.circle_scale {
            "iTip"
        } else {
            return Err(format!("{entry:#x} was not expected in the interpreter"));
        };
        let layout = ArgLayout::of(&sig(signature)).unwrap();
        let word = |role: ArgRole| {
            let slot = layout.args.iter().find(|a| a.role == role).unwrap();
            let at = (args + slot.offset) as usize;
            i32::from_le_bytes(memory[at..at + 4].try_into().unwrap())
        };
        let this = word(ArgRole::This) as u32;
        let result = if entry == self.circle_area {
            100 + 3
        } else {
            100 + word(ArgRole::Param(0))
        };
        self.executed.lock().unwrap().push((entry, this));
        let r = ret as usize;
        memory[r..r + 4].copy_from_slice(&result.to_le_bytes());
        Ok(())
    }

    fn virtual_target(&self, _: &mut [u8], object: u32, token: u32) -> Result<u32, String> {
        self.dispatches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ty = self
            .objects
            .get(&object)
            .ok_or_else(|| format!("no object {object:#x}"))?;
        self.overrides
            .get(&(*ty, token))
            .copied()
            .ok_or_else(|| format!("type {ty} has no override of 0x{token:08x}"))
    }
}

#[test]
fn virtual_calls_reach_the_receivers_override_through_virtual_entry_cells() {
    let output = compile(&assemble("virtual.il"));
    for name in ["AreaOf", "ScaleOf", "MeasureOf", "HashOf", "SidesOf"] {
        token_of(&output, &format!("Fixture.Calls::{name}"));
    }
    let shape_area = token_of(&output, "Fixture.Shape::Area");
    let shape_scale = token_of(&output, "Fixture.Shape::Scale");
    let shape_sides = token_of(&output, "Fixture.Shape::Sides");
    let square_area = token_of(&output, "Fixture.Square::Area");
    let square_scale = token_of(&output, "Fixture.Square::Scale");
    let square_measure = token_of(&output, "Fixture.Square::Measure");
    let square_hash = token_of(&output, "Fixture.Square::GetHashCode");
    let interpreted = |name: &str| {
        output
            .not_compiled
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} stays interpreted"))
            .token
    };
    let (circle_area, circle_scale) = (
        interpreted("Fixture.Circle::Area"),
        interpreted("Fixture.Circle::Scale"),
    );

    // One VirtualEntry cell per virtual method called (none for the final Sides), in a
    // dispatch section; each holds the R2R -> interpreter thunk of its method's signature.
    let image = Image::decode(image_from_module(&output.module).unwrap()).unwrap();
    let section = image
        .import_sections
        .iter()
        .find(|s| {
            s.cells
                .iter()
                .any(|c| matches!(c.signature, FixupSignature::VirtualEntry(_)))
        })
        .expect("a VirtualEntry section");
    assert_eq!(section.kind, ImportSectionType::STUB_DISPATCH);
    let cells: Vec<(u32, u32)> = section
        .cells
        .iter()
        .map(|c| match c.signature {
            FixupSignature::VirtualEntry(m) => {
                assert_eq!(m.flags, MethodSigFlags::NONE);
                (m.token, c.initial)
            }
            ref other => panic!("{other:?} in the VirtualEntry section"),
        })
        .collect();
    assert_eq!(cells.len(), 4, "{cells:?}");
    let tokens: Vec<u32> = cells.iter().map(|c| c.0).collect();
    assert!(tokens.contains(&shape_area) && tokens.contains(&shape_scale));
    assert!(
        !tokens.contains(&shape_sides),
        "a final method needs no dispatch"
    );
    let get_hash_code = *tokens
        .iter()
        .find(|&&t| t >> 24 == 0x0a)
        .expect("Object::GetHashCode is a MemberRef cell");
    let measure = *tokens
        .iter()
        .find(|&&t| t >> 24 == 0x06 && t != shape_area && t != shape_scale)
        .expect("IMeasured::Measure has a cell");
    let thunks: std::collections::HashMap<String, u32> = image
        .import_sections
        .iter()
        .flat_map(|s| &s.cells)
        .find_map(|c| match &c.signature {
            FixupSignature::InjectStringThunks(t) => {
                Some(t.iter().map(|t| (t.key.clone(), t.code)).collect())
            }
            _ => None,
        })
        .expect("string thunks");
    let thunk_of = |signature: &str| {
        thunks[&sig(signature)
            .thunk_key(crossgraph::runtime_core::abi::ThunkDirection::R2RToInterpreter)]
    };
    for &(token, initial) in &cells {
        let signature = if token == shape_scale || token == measure {
            "iTip"
        } else {
            "iTp"
        };
        assert_eq!(initial, thunk_of(signature), "cell of 0x{token:08x}");
    }

    let (a_square, a_circle, a_shape) = (0x1000u32, 0x2000u32, 0x3000u32);
    let (square, circle, shape) = (1, 2, 3);
    let embedder = Arc::new(VirtualInterpreter {
        objects: [(a_square, square), (a_circle, circle), (a_shape, shape)].into(),
        overrides: [
            ((square, shape_area), square_area),
            ((square, shape_scale), square_scale),
            ((square, measure), square_measure),
            ((square, get_hash_code), square_hash),
            ((circle, shape_area), circle_area),
            ((circle, shape_scale), circle_scale),
            ((shape, shape_area), shape_area),
            ((shape, shape_scale), shape_scale),
        ]
        .into(),
        circle_area,
        circle_scale,
        dispatches: Default::default(),
        executed: Default::default(),
    });
    let mut exec = instantiate(&output, embedder.clone());
    let call = |exec: &mut Executor, name: &str, args: &[i32]| {
        let signature = if args.len() == 1 { "iip" } else { "iiip" };
        let args: Vec<Val> = args.iter().map(|&a| Val::I32(a)).collect();
        exec.invoke_by_name(&format!("Fixture.Calls::{name}"), &sig(signature), &args)
            .map(|v| v.unwrap().unwrap_i32())
    };
    let dispatches = || {
        embedder
            .dispatches
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    // Compiled overrides, the compiled base method, interpreted overrides.
    assert_eq!(call(&mut exec, "AreaOf", &[a_square as i32]).unwrap(), 16);
    assert_eq!(call(&mut exec, "AreaOf", &[a_shape as i32]).unwrap(), 0);
    assert_eq!(call(&mut exec, "AreaOf", &[a_circle as i32]).unwrap(), 103);
    assert_eq!(
        call(&mut exec, "ScaleOf", &[a_square as i32, 5]).unwrap(),
        20 + 16
    );
    assert_eq!(call(&mut exec, "ScaleOf", &[a_shape as i32, 5]).unwrap(), 5);
    assert_eq!(
        call(&mut exec, "ScaleOf", &[a_circle as i32, 5]).unwrap(),
        105 + 103
    );
    assert_eq!(
        *embedder.executed.lock().unwrap(),
        [
            (circle_area, a_circle),
            (circle_scale, a_circle),
            (circle_area, a_circle)
        ],
        "the interpreter runs the override the embedder named, with the receiver"
    );
    // Through an interface, and a virtual method of mscorlib.
    assert_eq!(
        call(&mut exec, "MeasureOf", &[a_square as i32, 7]).unwrap(),
        17
    );
    assert_eq!(call(&mut exec, "HashOf", &[a_square as i32]).unwrap(), 4242);
    assert_eq!(dispatches(), 3 + 6 + 2);
    // A final method is called directly; a null receiver traps before any dispatch.
    assert_eq!(call(&mut exec, "SidesOf", &[a_square as i32]).unwrap(), -1);
    assert!(call(&mut exec, "AreaOf", &[0]).is_err());
    assert!(call(&mut exec, "SidesOf", &[0]).is_err());
    assert_eq!(dispatches(), 3 + 6 + 2, "neither asked the embedder");
    // An override the embedder cannot name is a trap with its message; the executor goes on.
    let err = call(&mut exec, "MeasureOf", &[a_circle as i32, 1]).unwrap_err();
    assert!(err.to_string().contains("has no override"), "{err}");
    assert_eq!(call(&mut exec, "AreaOf", &[a_square as i32]).unwrap(), 16);

    // An embedder without an object model: the call traps with its message.
    let mut bare = instantiate(&output, Arc::new(NoInterpreter));
    let err = call(&mut bare, "AreaOf", &[a_square as i32]).unwrap_err();
    assert!(err.to_string().contains("no object model"), "{err}");
}

/// An embedder that owns runtime handles: one per token, counting the questions.
struct HandleInterpreter {
    asks: std::sync::Mutex<Vec<u32>>,
}

impl HandleInterpreter {
    /// The handle of `token`: any non-zero word the embedder chooses.
    fn handle(token: u32) -> u32 {
        token ^ 0x5000_0000
    }
}

impl Interpreter for HandleInterpreter {
    fn execute(&self, entry: u32, _: &mut [u8], _: u32, _: u32, _: u32) -> Result<(), String> {
        Err(format!("{entry:#x} was not expected in the interpreter"))
    }

    fn runtime_handle(&self, _: &mut [u8], token: u32) -> Result<u32, String> {
        self.asks.lock().unwrap().push(token);
        Ok(Self::handle(token))
    }
}

#[test]
fn ldtoken_loads_runtime_handles_the_embedder_resolves_once() {
    let output = compile(&assemble("handles.il"));
    for name in ["OwnType", "StringType", "CounterField", "ThroughLocal"] {
        token_of(&output, &format!("Fixture.Handles::{name}"));
    }
    let refused = output
        .not_compiled
        .iter()
        .find(|m| m.name == "Fixture.Handles::OwnMethod")
        .expect("a method's handle stays interpreted");
    assert!(
        refused.reason.contains("ldtoken of a method"),
        "{}",
        refused.reason
    );

    // One lazy cell per token (ilasm names `string` with a TypeSpec), the field's of its own
    // kind.
    let image = Image::decode(image_from_module(&output.module).unwrap()).unwrap();
    let mut types = Vec::new();
    let mut fields = Vec::new();
    for section in &image.import_sections {
        for cell in &section.cells {
            match cell.signature {
                FixupSignature::TypeHandle(t) => types.push(t),
                FixupSignature::FieldHandle(f) => fields.push(f),
                _ => continue,
            }
            assert_eq!(cell.initial, 0, "lazy: 0 until resolved");
            assert!(
                !section
                    .flags
                    .contains(crossgraph::runtime_core::format::ImportSectionFlags::EAGER)
            );
        }
    }
    types.sort_unstable();
    assert_eq!(types.len(), 2, "{types:?}");
    assert_eq!(types[0] >> 24, 0x02, "Fixture.Handles is a TypeDef");
    assert_eq!(types[1] >> 24, 0x1b, "string is a TypeSpec");
    assert_eq!(fields.len(), 1);
    assert_eq!(fields[0] >> 24, 0x04);

    let embedder = Arc::new(HandleInterpreter {
        asks: Default::default(),
    });
    let mut exec = instantiate(&output, embedder.clone());
    let call = |exec: &mut Executor, name: &str| {
        run_i32(exec, &format!("Fixture.Handles::{name}"), "ip", &[]) as u32
    };
    let own = HandleInterpreter::handle(types[0]);
    assert_eq!(call(&mut exec, "OwnType"), own);
    assert_eq!(call(&mut exec, "ThroughLocal"), own);
    assert_eq!(call(&mut exec, "OwnType"), own);
    assert_eq!(
        call(&mut exec, "StringType"),
        HandleInterpreter::handle(types[1])
    );
    assert_eq!(
        call(&mut exec, "CounterField"),
        HandleInterpreter::handle(fields[0])
    );
    // Each cell asked once: later loads find the handle in the cell.
    assert_eq!(
        *embedder.asks.lock().unwrap(),
        [types[0], types[1], fields[0]]
    );

    // An embedder without handles: the load traps with its message.
    fails_without_an_embedder(
        &output,
        "Fixture.Handles::OwnType",
        "ip",
        &[],
        "no runtime handles",
    );
}

/// A bump allocator for the test embedders' objects: zeroed blocks, 16-byte aligned, the
/// type token in the first word (the header their type tests read).
struct BumpHeap(std::sync::Mutex<u32>);

impl BumpHeap {
    fn new(start: u32) -> BumpHeap {
        BumpHeap(std::sync::Mutex::new(start))
    }

    fn alloc(&self, memory: &mut [u8], size: u32, token: u32) -> u32 {
        let mut next = self.0.lock().unwrap();
        let at = *next;
        *next = (at + size).next_multiple_of(16);
        memory[at as usize..(at + size) as usize].fill(0);
        memory[at as usize..at as usize + 4].copy_from_slice(&token.to_le_bytes());
        at
    }
}

/// An embedder that allocates boxes (a 4-byte header holding the type token, then 8 bytes
/// for the value) and answers type tests from the header; a few string handles it knows by
/// number.
struct BoxInterpreter {
    heap: BumpHeap,
    /// Boxes made: (type token, reference).
    boxes: std::sync::Mutex<Vec<(u32, u32)>>,
    strings: Vec<u32>,
    /// The token the fixture names `string` with.
    string: u32,
}

impl Interpreter for BoxInterpreter {
    fn execute(&self, entry: u32, _: &mut [u8], _: u32, _: u32, _: u32) -> Result<(), String> {
        Err(format!("{entry:#x} was not expected in the interpreter"))
    }

    fn new_object(&self, memory: &mut [u8], token: u32) -> Result<u32, String> {
        let object = self.heap.alloc(memory, 16, token);
        self.boxes.lock().unwrap().push((token, object));
        Ok(object)
    }

    fn is_instance_of(&self, memory: &mut [u8], object: u32, token: u32) -> Result<bool, String> {
        if self.strings.contains(&object) {
            return Ok(token == self.string);
        }
        let at = object as usize;
        Ok(memory[at..at + 4] == token.to_le_bytes())
    }
}

#[test]
fn box_and_unbox_any_go_through_the_embedders_allocation_and_type_test() {
    let output = compile(&assemble("boxing.il"));
    for name in [
        "BoxInt",
        "BoxLong",
        "BoxColor",
        "BoxString",
        "UnboxInt",
        "UnboxLong",
        "UnboxColor",
        "UnboxString",
        "RoundTrip",
    ] {
        token_of(&output, &format!("Fixture.Boxes::{name}"));
    }
    // A NewObject cell per boxed value type (Int32, Int64, Color; not String), a ChkCast
    // cell per unboxed type (String's included).
    let image = Image::decode(image_from_module(&output.module).unwrap()).unwrap();
    let cells: Vec<&FixupSignature> = image
        .import_sections
        .iter()
        .flat_map(|s| &s.cells)
        .map(|c| &c.signature)
        .collect();
    let boxed: Vec<u32> = cells
        .iter()
        .filter_map(|s| match s {
            FixupSignature::NewObject(t) => Some(*t),
            _ => None,
        })
        .collect();
    let casts: Vec<u32> = cells
        .iter()
        .filter_map(|s| match s {
            FixupSignature::ChkCast(t) => Some(*t),
            _ => None,
        })
        .collect();
    assert_eq!(boxed.len(), 3, "{boxed:x?}");
    assert_eq!(casts.len(), 4, "{casts:x?}");
    let string = *casts
        .iter()
        .find(|t| !boxed.contains(t))
        .expect("String is cast to, never boxed");
    let color = *boxed
        .iter()
        .find(|&&t| t >> 24 == 0x02)
        .expect("Color is a TypeDef");

    let embedder = Arc::new(BoxInterpreter {
        heap: BumpHeap::new(4096),
        boxes: Default::default(),
        strings: vec![0x9000],
        string,
    });
    let mut exec = instantiate(&output, embedder.clone());
    let call = |exec: &mut Executor, name: &str, signature: &str, arg: Val| {
        exec.invoke_by_name(&format!("Fixture.Boxes::{name}"), &sig(signature), &[arg])
            .map(|v| v.unwrap())
    };
    let i32_of = |v: Val| v.unwrap_i32();
    // A box holds the type token in its header (the embedder's) and the value after it.
    let int_box = i32_of(call(&mut exec, "BoxInt", "iip", Val::I32(-42)).unwrap()) as u32;
    let bytes = exec.read_bytes(int_box as usize, 8).unwrap();
    assert_eq!(bytes[4..8], (-42i32).to_le_bytes());
    let long_box = i32_of(call(&mut exec, "BoxLong", "ilp", Val::I64(1 << 40)).unwrap()) as u32;
    let color_box = i32_of(call(&mut exec, "BoxColor", "iip", Val::I32(-3)).unwrap()) as u32;
    let bytes = exec.read_bytes(color_box as usize, 8).unwrap();
    assert_eq!(bytes[0..4], color.to_le_bytes());
    assert_eq!(
        bytes[4..6],
        (-3i16).to_le_bytes(),
        "an int16 enum stores 2 bytes"
    );
    assert_eq!(embedder.boxes.lock().unwrap().len(), 3);
    // Boxing a reference is the reference; nothing is allocated.
    assert_eq!(
        i32_of(call(&mut exec, "BoxString", "iip", Val::I32(0x9000)).unwrap()),
        0x9000
    );
    assert_eq!(embedder.boxes.lock().unwrap().len(), 3);

    // unbox.any reads the value back; the wrong box or null traps.
    assert_eq!(
        i32_of(call(&mut exec, "UnboxInt", "iip", Val::I32(int_box as i32)).unwrap()),
        -42
    );
    assert_eq!(
        call(&mut exec, "UnboxLong", "lip", Val::I32(long_box as i32))
            .unwrap()
            .unwrap_i64(),
        1 << 40
    );
    assert_eq!(
        i32_of(call(&mut exec, "UnboxColor", "iip", Val::I32(color_box as i32)).unwrap()),
        -3
    );
    assert!(call(&mut exec, "UnboxInt", "iip", Val::I32(long_box as i32)).is_err());
    assert!(call(&mut exec, "UnboxInt", "iip", Val::I32(0)).is_err());
    assert!(call(&mut exec, "UnboxLong", "lip", Val::I32(0x9000)).is_err());
    // Of a reference type, unbox.any is castclass: null passes.
    assert_eq!(
        i32_of(call(&mut exec, "UnboxString", "iip", Val::I32(0x9000)).unwrap()),
        0x9000
    );
    assert_eq!(
        i32_of(call(&mut exec, "UnboxString", "iip", Val::I32(0)).unwrap()),
        0
    );
    assert!(call(&mut exec, "UnboxString", "iip", Val::I32(int_box as i32)).is_err());
    assert_eq!(
        i32_of(call(&mut exec, "RoundTrip", "iip", Val::I32(i32::MIN)).unwrap()),
        i32::MIN
    );
}

#[test]
fn newobj_of_a_value_type_constructs_it_in_a_zeroed_frame_slot() {
    let output = compile(&assemble("inplace.il"));
    for name in [
        "Fixture.Build::Make",
        "Fixture.Build::Sum",
        "Fixture.Meters::.ctor",
        "Fixture.Meters::Get",
    ] {
        token_of(&output, name);
    }
    // No allocation: no NewObject cell.
    let image = Image::decode(image_from_module(&output.module).unwrap()).unwrap();
    assert!(
        !image
            .import_sections
            .iter()
            .flat_map(|s| &s.cells)
            .any(|c| matches!(c.signature, FixupSignature::NewObject(_)))
    );
    let mut exec = instantiate(&output, Arc::new(NoInterpreter));
    let make = |exec: &mut Executor, v: i64| {
        exec.invoke_by_name("Fixture.Build::Make", &sig("llp"), &[Val::I64(v)])
            .unwrap()
            .unwrap()
            .unwrap_i64()
    };
    // The constructor adds to what the slot held: 0 every time (III.4.21).
    assert_eq!(make(&mut exec, 21), 42);
    assert_eq!(make(&mut exec, 21), 42);
    assert_eq!(make(&mut exec, -1 << 40), -2 << 40);
    let sum = exec
        .invoke_by_name(
            "Fixture.Build::Sum",
            &sig("lllp"),
            &[Val::I64(5), Val::I64(100)],
        )
        .unwrap()
        .unwrap()
        .unwrap_i64();
    assert_eq!(sum, 210);
}

#[test]
fn struct_arguments_and_locals_are_reached_through_their_addresses() {
    let output = compile(&assemble("inplace.il"));
    token_of(&output, "Fixture.Build::Combine");
    token_of(&output, "Fixture.Build::Clear");

    let mut exec = instantiate(&output, Arc::new(NoInterpreter));
    // Pair { a: 7, b: -5 } somewhere in memory; invoke copies it into the argument block.
    let pair = 2048;
    let bytes: Vec<u8> = [7i64, -5].iter().flat_map(|v| v.to_le_bytes()).collect();
    exec.write_bytes(pair, &bytes).unwrap();
    let combine = |exec: &mut Executor, k: i64| {
        exec.invoke_by_name(
            "Fixture.Build::Combine",
            &sig("lS16lp"),
            &[Val::I32(pair as i32), Val::I64(k)],
        )
        .unwrap()
        .unwrap()
        .unwrap_i64()
    };
    assert_eq!(combine(&mut exec, 3), 7 * 3 - 5);
    // The callee writes its own copy, never the caller's bytes.
    exec.invoke_by_name(
        "Fixture.Build::Clear",
        &sig("vS16p"),
        &[Val::I32(pair as i32)],
    )
    .unwrap();
    assert_eq!(exec.read_bytes(pair as usize, 16).unwrap(), bytes);
    assert_eq!(combine(&mut exec, -2), 7 * -2 - 5);

    // A struct local lives in the frame: zeroed, written and read through its address.
    token_of(&output, "Fixture.Build::Local");
    let local = exec
        .invoke_by_name(
            "Fixture.Build::Local",
            &sig("lllp"),
            &[Val::I64(1 << 33), Val::I64(-9)],
        )
        .unwrap()
        .unwrap()
        .unwrap_i64();
    assert_eq!(local, (1 << 34) - 9);
}

/// Struct values on the evaluation stack live in frame temporaries, one per instruction that
/// makes one: `ldarg`/`ldloc` copy into one, `stloc`/`starg`/`stobj` copy out of one, a call
/// passes one's address (the callee owns that copy) and gives a struct result one as its
/// return buffer, `dup` copies, `ret` copies into the caller's return buffer.
#[test]
fn struct_values_on_the_stack_are_copies_in_frame_temporaries() {
    let output = compile(&assemble("inplace.il"));
    for name in [
        "Copy",
        "LocalCopy",
        "MakePair",
        "Swap",
        "Bump",
        "Chain",
        "Assign",
        "AssignPairs",
        "Branchy",
    ] {
        token_of(&output, &format!("Fixture.Build::{name}"));
    }
    let looped = output
        .not_compiled
        .iter()
        .find(|m| m.name == "Fixture.Build::Loop")
        .expect("a struct value across a backward branch stays interpreted");
    assert!(
        looped
            .reason
            .contains("struct value on the stack at a backward branch"),
        "{}",
        looped.reason
    );

    let mut exec = instantiate(&output, Arc::new(NoInterpreter));
    let mut call = |name: &str, signature: &str, args: &[Val]| {
        exec.invoke_by_name(&format!("Fixture.Build::{name}"), &sig(signature), args)
            .unwrap()
            .unwrap()
            .unwrap_i64()
    };
    for (a, b) in [(3i64, 4i64), (-7, 1 << 40), (0, 0)] {
        // x = Swap(MakePair(a, b)) = (b, a); Bump(x) = 100 + a; Combine(x, 1000) = b * 1000 + a.
        let r = 100 + a + b.wrapping_mul(1000) + a;
        assert_eq!(
            call("Chain", "lllp", &[Val::I64(a), Val::I64(b)]),
            r.wrapping_mul(10) + b,
            "Chain({a}, {b})"
        );
        // Assign((a, b), (b, a)) = b - a.
        assert_eq!(
            call("AssignPairs", "lllp", &[Val::I64(a), Val::I64(b)]),
            b - a,
            "AssignPairs({a}, {b})"
        );
    }
    assert_eq!(call("LocalCopy", "lp", &[]), 0);
    // Copy reads its argument's copy: (7, -5) in memory, passed by address.
    let pair = 4096;
    let bytes: Vec<u8> = [7i64, -5].iter().flat_map(|v| v.to_le_bytes()).collect();
    exec.write_bytes(pair, &bytes).unwrap();
    assert_eq!(
        exec.invoke_by_name(
            "Fixture.Build::Copy",
            &sig("lS16p"),
            &[Val::I32(pair as i32)]
        )
        .unwrap()
        .unwrap()
        .unwrap_i64(),
        7
    );
    assert_eq!(exec.read_bytes(pair as usize, 16).unwrap(), bytes);
    // c ? p.b : p.a, the copy carried into either block.
    for (c, expected) in [(1, -5), (0, 7)] {
        assert_eq!(
            exec.invoke_by_name(
                "Fixture.Build::Branchy",
                &sig("lS16ip"),
                &[Val::I32(pair as i32), Val::I32(c)]
            )
            .unwrap()
            .unwrap()
            .unwrap_i64(),
            expected
        );
    }
}

/// An embedder that owns delegates: it allocates them, runs their runtime-provided
/// constructor (recording the target and the function pointer) and their `Invoke`, which
/// reads the portable entry point the function pointer addresses and runs the method it
/// names (natively here: `Twice`, by its token).
struct DelegateInterpreter {
    ctor: u32,
    invoke: u32,
    twice: u32,
    next: std::sync::Mutex<u32>,
    /// Delegate -> (target, function pointer).
    delegates: std::sync::Mutex<std::collections::HashMap<u32, (u32, u32)>>,
    /// The `Scale` override `ldvirtftn` finds, and the one object of its type.
    scale: u32,
    scaler: u32,
}

impl Interpreter for DelegateInterpreter {
    fn execute(
        &self,
        entry: u32,
        memory: &mut [u8],
        args: u32,
        _: u32,
        ret: u32,
    ) -> Result<(), String> {
        let word = |memory: &[u8], at: u32| {
            u32::from_le_bytes(memory[at as usize..at as usize + 4].try_into().unwrap())
        };
        let arg = |memory: &[u8], signature: &str, role: ArgRole| {
            let layout = ArgLayout::of(&sig(signature)).unwrap();
            let slot = layout.args.iter().find(|a| a.role == role).unwrap();
            word(memory, args + slot.offset)
        };
        if entry == self.ctor {
            let this = arg(memory, "vTiip", ArgRole::This);
            let target = arg(memory, "vTiip", ArgRole::Param(0));
            let method = arg(memory, "vTiip", ArgRole::Param(1));
            self.delegates
                .lock()
                .unwrap()
                .insert(this, (target, method));
            return Ok(());
        }
        if entry == self.invoke {
            let this = arg(memory, "iTip", ArgRole::This);
            let x = arg(memory, "iTip", ArgRole::Param(0)) as i32;
            let (_, method) = *self
                .delegates
                .lock()
                .unwrap()
                .get(&this)
                .ok_or("not a delegate")?;
            // A portable entry point: [code, handle]; the handle is the method's token.
            let handle = word(memory, method + 4);
            let result = match handle {
                h if h == self.twice => x * 2,
                h if h == self.scale => x * 3,
                _ => return Err(format!("the delegate's method is {handle:#x}")),
            };
            let r = ret as usize;
            memory[r..r + 4].copy_from_slice(&result.to_le_bytes());
            return Ok(());
        }
        Err(format!("{entry:#x} was not expected in the interpreter"))
    }

    fn new_object(&self, memory: &mut [u8], _: u32) -> Result<u32, String> {
        let mut next = self.next.lock().unwrap();
        let object = *next;
        *next += 16;
        memory[object as usize..object as usize + 16].fill(0);
        Ok(object)
    }

    fn virtual_target(&self, _: &mut [u8], object: u32, token: u32) -> Result<u32, String> {
        // A Scaler's Scale is its own; anything else is a delegate's Invoke.
        Ok(if object == self.scaler {
            self.scale
        } else {
            token
        })
    }
}

#[test]
fn delegates_are_constructed_and_invoked_by_the_embedder() {
    let output = compile(&assemble("delegates.il"));
    let twice = token_of(&output, "Fixture.Delegates::Twice");
    let scale = token_of(&output, "Fixture.Scaler::Scale");
    token_of(&output, "Fixture.Delegates::Make");
    token_of(&output, "Fixture.Delegates::Bind");
    token_of(&output, "Fixture.Delegates::Call");
    let image = Image::decode(image_from_module(&output.module).unwrap()).unwrap();
    let cells: Vec<&FixupSignature> = image
        .import_sections
        .iter()
        .flat_map(|s| &s.cells)
        .map(|c| &c.signature)
        .collect();
    // The constructor through its MethodEntry cell, Invoke through its VirtualEntry cell.
    let ctor = cells
        .iter()
        .find_map(|s| match s {
            FixupSignature::MethodEntry(m) if m.token != twice => Some(m.token),
            _ => None,
        })
        .expect("a MethodEntry cell of the constructor");
    let invoke = cells
        .iter()
        .find_map(|s| match s {
            FixupSignature::VirtualEntry(m) if m.token != scale => Some(m.token),
            _ => None,
        })
        .expect("a VirtualEntry cell of Invoke");
    let embedder = Arc::new(DelegateInterpreter {
        ctor,
        invoke,
        twice,
        next: std::sync::Mutex::new(4096),
        delegates: Default::default(),
        scale,
        scaler: 0x3000,
    });
    let mut exec = instantiate(&output, embedder.clone());
    // The embedder runs the constructor (a call through its cell); Invoke is found per call.
    exec.loader().register_interpreted(
        MethodRef {
            flags: MethodSigFlags::NONE,
            token: ctor,
        },
        InterpretedMethod {
            thunk_key: "IvTiip".into(),
        },
    );
    let op = run_i32(&mut exec, "Fixture.Delegates::Make", "ip", &[]);
    let (target, method) = embedder.delegates.lock().unwrap()[&(op as u32)];
    assert_eq!(target, 0, "a static method's delegate has no target");
    let entry = exec.read_bytes(method as usize, 8).unwrap();
    assert_eq!(
        entry[4..8],
        twice.to_le_bytes(),
        "the function pointer names Twice"
    );
    assert_eq!(
        run_i32(
            &mut exec,
            "Fixture.Delegates::Call",
            "iiip",
            &[Val::I32(op), Val::I32(21)]
        ),
        42
    );
    // ldvirtftn: the override's entry point, bound to its object.
    let bound = run_i32(
        &mut exec,
        "Fixture.Delegates::Bind",
        "iip",
        &[Val::I32(0x3000)],
    );
    let (target, method) = embedder.delegates.lock().unwrap()[&(bound as u32)];
    assert_eq!(target, 0x3000);
    assert_eq!(
        exec.read_bytes(method as usize + 4, 4).unwrap(),
        scale.to_le_bytes()
    );
    assert_eq!(
        run_i32(
            &mut exec,
            "Fixture.Delegates::Call",
            "iiip",
            &[Val::I32(bound), Val::I32(5)]
        ),
        15
    );
    // A null object: NullReferenceException before any dispatch.
    assert!(
        exec.invoke_by_name("Fixture.Delegates::Bind", &sig("iip"), &[Val::I32(0)])
            .is_err()
    );
}

/// An embedder with an object model small enough for structs.il: objects and boxes (a header
/// naming their type token, zeroed data), arrays of 16-byte elements, and 16-byte statics.
struct StructInterpreter {
    heap: BumpHeap,
    statics: std::sync::Mutex<std::collections::HashMap<u32, u32>>,
}

impl Interpreter for StructInterpreter {
    fn execute(&self, entry: u32, _: &mut [u8], _: u32, _: u32, _: u32) -> Result<(), String> {
        Err(format!("{entry:#x} was not expected in the interpreter"))
    }

    fn new_object(&self, memory: &mut [u8], token: u32) -> Result<u32, String> {
        Ok(self.heap.alloc(memory, 64, token))
    }

    fn is_instance_of(&self, memory: &mut [u8], object: u32, token: u32) -> Result<bool, String> {
        let at = object as usize;
        Ok(memory[at..at + 4] == token.to_le_bytes())
    }

    fn new_array(&self, memory: &mut [u8], token: u32, length: u32) -> Result<u32, String> {
        use crossgraph::runtime_core::abi::array::{DATA_OFFSET, LENGTH_OFFSET};
        let array = self.heap.alloc(memory, DATA_OFFSET + 16 * length, token);
        let at = (array + LENGTH_OFFSET) as usize;
        memory[at..at + 4].copy_from_slice(&length.to_le_bytes());
        Ok(array)
    }

    fn static_field_address(&self, memory: &mut [u8], token: u32) -> Result<u32, String> {
        if let Some(&at) = self.statics.lock().unwrap().get(&token) {
            return Ok(at);
        }
        let at = self.heap.alloc(memory, 16, 0);
        self.statics.lock().unwrap().insert(token, at);
        Ok(at)
    }
}

/// Struct values made by `newobj` (in a zeroed temporary), read from and written to
/// struct-typed fields of objects and statics, boxed and unboxed, and stored to and loaded
/// from arrays: each a copy in a frame temporary of its own.
#[test]
fn struct_values_are_constructed_boxed_and_kept_in_fields_statics_and_arrays() {
    let output = compile(&assemble("structs.il"));
    for name in [
        "Construct",
        "FieldRoundTrip",
        "Static",
        "BoxRoundTrip",
        "Array",
    ] {
        token_of(&output, &format!("Fixture.Structs::{name}"));
    }
    let interpreter = Arc::new(StructInterpreter {
        heap: BumpHeap::new(8192),
        statics: std::sync::Mutex::new(std::collections::HashMap::new()),
    });
    let mut exec = instantiate(&output, interpreter.clone());
    let mut call = |name: &str, signature: &str, args: &[Val]| {
        exec.invoke_by_name(&format!("Fixture.Structs::{name}"), &sig(signature), args)
            .map(|v| v.unwrap().unwrap_i64())
            .map_err(|e| e.to_string())
    };
    for (a, b) in [(0i64, 0i64), (-7, 1 << 40), (3, 4)] {
        let ab = [Val::I64(a), Val::I64(b)];
        assert_eq!(
            call("Construct", "lllp", &ab),
            Ok(a * 10 + b),
            "Construct({a}, {b})"
        );
        assert_eq!(
            call("FieldRoundTrip", "lllp", &ab),
            Ok(a - b + a),
            "FieldRoundTrip({a}, {b})"
        );
        assert_eq!(call("Static", "lllp", &ab), Ok(b), "Static({a}, {b})");
        assert_eq!(
            call("BoxRoundTrip", "lllp", &ab),
            Ok(a + b),
            "BoxRoundTrip({a}, {b})"
        );
        // arr[1] = (a, b): a * 100 + b; arr[0] stays zero.
        let mut array = |i: i32| call("Array", "lllip", &[Val::I64(a), Val::I64(b), Val::I32(i)]);
        assert_eq!(array(1), Ok(a * 100 + b), "Array({a}, {b}, 1)");
        // arr[2] = (a, b): arr[1] stays zero; arr[0] too.
        assert_eq!(array(2), Ok(0), "Array({a}, {b}, 2)");
        // arr[0] = (a, b): a shows through arr[0].a.
        assert_eq!(array(0), Ok(a), "Array({a}, {b}, 0)");
        // Out of range: IndexOutOfRangeException, a trap here.
        assert!(array(3).is_err(), "Array({a}, {b}, 3)");
    }
    // One static, resolved once, holds the last pair stored.
    let statics = interpreter.statics.lock().unwrap();
    assert_eq!(statics.len(), 1);
    let at = *statics.values().next().unwrap() as usize;
    drop(statics);
    let saved: Vec<u8> = [3i64, 4].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(exec.read_bytes(at, 16).unwrap(), saved);
}

/// The embedder of generics.il: runs `Box<long>::GetTag` (reading `tag` at offset 8 of the
/// `this` it is given) and `Cell<long>::.ctor` (nothing), which the image reaches through the
/// cells of their `MemberRef`s; allocates `Cell<long>` objects.
struct GenericInterpreter {
    get_tag: u32,
    cell_ctor: u32,
    /// `Echo<long>` and `Echo<Box<long>>` (`MethodSpec`s): return their argument.
    echo_long: u32,
    echo_box: u32,
    heap: BumpHeap,
    calls: std::sync::Mutex<Vec<u32>>,
    allocated: std::sync::Mutex<Vec<u32>>,
}

impl Interpreter for GenericInterpreter {
    fn execute(
        &self,
        entry: u32,
        memory: &mut [u8],
        args: u32,
        _size: u32,
        ret: u32,
    ) -> Result<(), String> {
        self.calls.lock().unwrap().push(entry);
        let word = |memory: &[u8], at: u32| {
            i32::from_le_bytes(memory[at as usize..at as usize + 4].try_into().unwrap())
        };
        if entry == self.get_tag {
            let this = word(memory, args) as u32;
            let tag = word(memory, this + 8);
            memory[ret as usize..ret as usize + 4].copy_from_slice(&tag.to_le_bytes());
            return Ok(());
        }
        if entry == self.cell_ctor {
            return Ok(());
        }
        // The argument's bytes (copied into its slot by value) to the return slot or buffer.
        let echoed = match entry {
            e if e == self.echo_long => 8,
            e if e == self.echo_box => 16,
            _ => 0,
        };
        if echoed > 0 {
            memory.copy_within(args as usize..(args + echoed) as usize, ret as usize);
            return Ok(());
        }
        Err(format!("{entry:#x} was not expected in the interpreter"))
    }

    fn new_object(&self, memory: &mut [u8], token: u32) -> Result<u32, String> {
        self.allocated.lock().unwrap().push(token);
        Ok(self.heap.alloc(memory, 32, token))
    }
}

/// Generic value types instantiated over concrete types are laid out over their type
/// arguments wherever non-generic code uses them (locals, arguments, returns, fields through
/// the instantiation's `MemberRef`s, `sizeof`); a method of an instantiation is called through
/// its `MemberRef`'s cell with the signature lowered over the type arguments, a generic
/// method instantiation through its `MethodSpec`'s cell likewise; `newobj` of a class
/// instantiation allocates through the cell of its `TypeSpec`.
#[test]
fn generic_instantiations_are_laid_out_over_their_type_arguments() {
    let dll = assemble("generics.il");
    let output = compile(&dll);
    for name in [
        "Fields",
        "Make",
        "Sum",
        "RoundTrip",
        "Sizes",
        "Tag",
        "NewCell",
        "EchoLong",
        "EchoBox",
    ] {
        token_of(&output, &format!("Fixture.Generic::{name}"));
    }
    let get_tag = output
        .not_compiled
        .iter()
        .find(|m| m.name == "Fixture.Box`1::GetTag")
        .expect("a method of a generic type reading its fields stays interpreted");
    assert!(
        get_tag.reason.contains("generic parameter"),
        "{}",
        get_tag.reason
    );
    // The MemberRefs (of instantiations) the image calls through.
    let input = Assembly::load(&dll).unwrap();
    let view = input.view().unwrap();
    let tables = view.metadata().tables();
    let member_ref = |name: &str| {
        (1..=tables.row_count(cildec::TableId::MemberRef))
            .find(|&rid| {
                let row = tables.member_ref(rid).unwrap();
                view.string(row.name) == name
                    && row.class.table() == Some(cildec::TableId::TypeSpec)
            })
            .map(|rid| 0x0a00_0000 | rid)
            .unwrap_or_else(|| panic!("no MemberRef {name}"))
    };
    let interpreter = Arc::new(GenericInterpreter {
        get_tag: member_ref("GetTag"),
        cell_ctor: member_ref(".ctor"),
        // The two MethodSpecs, in the order ilasm wrote them.
        echo_long: 0x2b00_0001,
        echo_box: 0x2b00_0002,
        heap: BumpHeap::new(8192),
        calls: std::sync::Mutex::new(Vec::new()),
        allocated: std::sync::Mutex::new(Vec::new()),
    });
    let mut exec = instantiate(&output, interpreter.clone());
    // The embedder tells the loader its interpreter runs the two instantiations' methods
    // (their thunks: `int32 (this)` and `void (this)`).
    for (token, key) in [
        (interpreter.get_tag, "IiTp"),
        (interpreter.cell_ctor, "IvTp"),
        (interpreter.echo_long, "Illp"),
        (interpreter.echo_box, "IS16S16p"),
    ] {
        exec.loader().register_interpreted(
            MethodRef {
                flags: MethodSigFlags::NONE,
                token,
            },
            InterpretedMethod {
                thunk_key: key.into(),
            },
        );
    }
    let mut call = |name: &str, signature: &str, args: &[Val]| {
        exec.invoke_by_name(&format!("Fixture.Generic::{name}"), &sig(signature), args)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .expect("a value")
    };
    for (v, t) in [(5i64, 7i32), (-(1 << 40), -3), (0, 0)] {
        assert_eq!(
            call("Fields", "llip", &[Val::I64(v), Val::I32(t)]).unwrap_i64(),
            v + i64::from(t)
        );
        assert_eq!(
            call("RoundTrip", "llip", &[Val::I64(v), Val::I32(t)]).unwrap_i64(),
            v.wrapping_mul(1000) + i64::from(t)
        );
        assert_eq!(call("Tag", "iip", &[Val::I32(t)]).unwrap_i32(), t);
        assert_eq!(call("NewCell", "llp", &[Val::I64(v)]).unwrap_i64(), v);
        // Generic method instantiations, through their MethodSpecs' cells.
        assert_eq!(call("EchoLong", "llp", &[Val::I64(v)]).unwrap_i64(), v);
        assert_eq!(
            call("EchoBox", "llip", &[Val::I64(v), Val::I32(t)]).unwrap_i64(),
            v - i64::from(t)
        );
    }
    // Box<int> is { int32, int32 }, Box<long> { int64, int32 } padded to 16.
    assert_eq!(call("Sizes", "ip", &[]).unwrap_i32(), 816);
    let calls = interpreter.calls.lock().unwrap();
    assert_eq!(
        calls.iter().filter(|&&c| c == interpreter.get_tag).count(),
        3
    );
    assert_eq!(
        calls
            .iter()
            .filter(|&&c| c == interpreter.cell_ctor)
            .count(),
        3
    );
    // Each Cell<long> came from the embedder, named by its TypeSpec.
    let allocated = interpreter.allocated.lock().unwrap();
    assert_eq!(allocated.len(), 3);
    assert!(allocated.iter().all(|&t| t >> 24 == 0x1b), "{allocated:x?}");
}

/// The embedder of constrained.il: objects and boxes carry their type token in their header;
/// a virtual call on a `Ref` reaches `Ref::GetHashCode` (R2R code), on a box of `Plain` the
/// interpreter's `ValueType::GetHashCode` (handle `VALUE_TYPE_HASH`: the boxed `v` times 3).
struct ConstrainedInterpreter {
    ref_type: u32,
    ref_hash: u32,
    plain_type: u32,
    heap: BumpHeap,
    allocated: std::sync::Mutex<Vec<u32>>,
}

const VALUE_TYPE_HASH: u32 = 0x7000_0001;

impl Interpreter for ConstrainedInterpreter {
    fn execute(
        &self,
        entry: u32,
        memory: &mut [u8],
        args: u32,
        _: u32,
        ret: u32,
    ) -> Result<(), String> {
        if entry != VALUE_TYPE_HASH {
            return Err(format!("{entry:#x} was not expected in the interpreter"));
        }
        let word =
            |at: u32| i32::from_le_bytes(memory[at as usize..at as usize + 4].try_into().unwrap());
        let this = word(args) as u32;
        let hash = word(this + 4) * 3;
        memory[ret as usize..ret as usize + 4].copy_from_slice(&hash.to_le_bytes());
        Ok(())
    }

    fn new_object(&self, memory: &mut [u8], token: u32) -> Result<u32, String> {
        self.allocated.lock().unwrap().push(token);
        Ok(self.heap.alloc(memory, 32, token))
    }

    fn virtual_target(&self, memory: &mut [u8], object: u32, token: u32) -> Result<u32, String> {
        let at = object as usize;
        let ty = u32::from_le_bytes(memory[at..at + 4].try_into().unwrap());
        match ty {
            t if t == self.ref_type => Ok(self.ref_hash),
            t if t == self.plain_type => Ok(VALUE_TYPE_HASH),
            _ => Err(format!("no override of {token:#x} for type {ty:#x}")),
        }
    }
}

/// `constrained. T callvirt M` resolved at compile time: a value type's override or interface
/// implementation (implicit or explicit) is called directly on the pointer, so mutations land
/// in the caller's value; a value type without one is boxed and the box called virtually; a
/// reference is loaded through the pointer and called virtually.
#[test]
fn constrained_calls_resolve_to_the_implementation_a_box_or_the_reference() {
    let dll = assemble("constrained.il");
    let output = compile(&dll);
    for name in [
        "HashMeter",
        "BumpCounter",
        "BumpExplicit",
        "HashPlain",
        "HashRef",
    ] {
        token_of(&output, &format!("Fixture.Calls::{name}"));
    }
    let input = Assembly::load(&dll).unwrap();
    let view = input.view().unwrap();
    let tables = view.metadata().tables();
    let type_def = |name: &str| {
        (1..=tables.row_count(cildec::TableId::TypeDef))
            .find(|&rid| view.string(tables.type_def(rid).unwrap().type_name) == name)
            .map(|rid| 0x0200_0000 | rid)
            .unwrap_or_else(|| panic!("no type {name}"))
    };
    let interpreter = Arc::new(ConstrainedInterpreter {
        ref_type: type_def("Ref"),
        ref_hash: token_of(&output, "Fixture.Ref::GetHashCode"),
        plain_type: type_def("Plain"),
        heap: BumpHeap::new(8192),
        allocated: std::sync::Mutex::new(Vec::new()),
    });
    let mut exec = instantiate(&output, interpreter.clone());
    let mut call = |name: &str, signature: &str, args: &[Val]| {
        run_i32(
            &mut exec,
            &format!("Fixture.Calls::{name}"),
            signature,
            args,
        )
    };
    assert_eq!(call("HashMeter", "iip", &[Val::I32(21)]), 42);
    assert_eq!(call("BumpCounter", "ip", &[]), 2 + 200);
    assert_eq!(call("BumpExplicit", "ip", &[]), 20 + 2000);
    assert_eq!(call("HashPlain", "iip", &[Val::I32(7)]), 21);
    assert_eq!(call("HashRef", "iip", &[Val::I32(-5)]), -5);
    // One box of Plain and one Ref: the value types with implementations were not boxed.
    let allocated = interpreter.allocated.lock().unwrap();
    assert_eq!(
        *allocated,
        [interpreter.plain_type, interpreter.ref_type],
        "{allocated:x?}"
    );
}
