//! The thin end-to-end path: C# compiled by mcs -> crossgraph compiles its methods to wasm
//! with an image -> runtime-core runs them in wasmtime.

use std::path::PathBuf;
use std::sync::Arc;

use crossgraph::codegen::{PointerWidth, WasmSignature};
use crossgraph::nodes::typesystem::Assembly;
use crossgraph::nodes::{CompileOptions, CompileOutput, compile_assembly};
use crossgraph::runtime_core::exec::{ExecConfig, Executor, Interpreter};
use crossgraph::runtime_core::format::{MethodRef, MethodSigFlags};
use crossgraph::runtime_core::{InterpretedMethod, Loader, ThunkRuntime};
use wasmtime::Val;

mod common;

const SOURCE: &str = r#"
namespace Demo {
    public static class Calc {
        public static int Add(int a, int b) { return a + b; }
        public static int Twice(int a) { return Add(a, a); }
        public static long Widen(int a, long b) { return a * b - 1; }
        public static double Mix(double x, int n) { return x * n + 0.5; }
        public static int Abs(int a) { return a < 0 ? -a : a; }
        public static int UsesAbs(int a) { return Abs(a) + 1; }
        public static int SumTo(int n) { int s = 0; while (n > 0) { s += n; n--; } return s; }
        public static int Pick(int k) {
            switch (k) { case 0: return 10; case 1: return 20; case 2: return 30; default: return -1; }
        }
        public static bool Between(double x, double lo, double hi) { return x >= lo && x <= hi; }
        public static int Len(string s) { return s.Length; }
        public static int UsesLen(string s) { return Len(s) + 1; }
        public static int Seven() { return "1234567".Length; }
        public static int UsesSeven(int a) { return Seven() * a + 1; }
        public static int CheckedNarrow(long v) { return checked((int)v); }
        public static byte CheckedByte(int v) { return checked((byte)v); }
        public static int CheckedAdd(int a, int b) { return checked(a + b); }
        public static long CheckedSub(long a, long b) { return checked(a - b); }
        public static uint CheckedFromDouble(double d) { return checked((uint)d); }
        public static int Trunc(double d) { return (int)d; }
        public static bool IsNull(object o) { return o == null; }
        public static int NullOr(int k) { object o = null; return o == null ? k : -k; }
        public static int AddPick(int x, bool c) { return x + (c ? 1 : 2); }
        public static int AddPick3(int x, int k) { return x + (k == 0 ? 1 : k == 1 ? 2 : 3); }
    }
    public class Counter {
        public int Get(int x) { return x + 1; }
        public virtual int Virt(int x) { return x - 1; }
        public static int CallGet(Counter c, int x) { return c.Get(x) * 2; }
        public static int CallVirt(Counter c, int x) { return c.Virt(x); }
    }
}
"#;

/// Builds the demo assembly once per test process: the tests run in parallel, and two `mcs`
/// runs writing the same output file race (one of them finds the file missing).
fn build_dll() -> PathBuf {
    static DLL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DLL.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("crossgraph-compile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let source = dir.join("Calc.cs");
        std::fs::write(&source, SOURCE).unwrap();
        let dll = dir.join("Calc.dll");
        common::mcs(&source, &dll, true);
        dll
    })
    .clone()
}

/// Stands in for the interpreter: runs `Seven` (whose call into mscorlib, not given to this
/// compile, leaves it to the interpreter) and records what it ran.
struct TestInterpreter {
    seven: u32,
    ran: std::sync::Mutex<Vec<u32>>,
}

impl Interpreter for TestInterpreter {
    fn execute(
        &self,
        entry: u32,
        memory: &mut [u8],
        _: u32,
        _: u32,
        ret: u32,
    ) -> Result<(), String> {
        self.ran.lock().unwrap().push(entry);
        if entry != self.seven {
            return Err(format!(
                "method {entry:#x} was not expected in the interpreter"
            ));
        }
        memory[ret as usize..ret as usize + 4].copy_from_slice(&7i32.to_le_bytes());
        Ok(())
    }
}

/// The demo assembly, compiled on its own (no references).
fn compile_demo() -> CompileOutput {
    let dll = build_dll();
    let assembly = Assembly::load(&dll).unwrap();
    let view = assembly.view().unwrap();
    compile_assembly(&view, &CompileOptions::default()).unwrap()
}

/// The compiled demo in wasmtime, with an interpreter that expects no calls.
fn executor_without_interpreted_methods(output: &CompileOutput) -> Executor {
    let loader = Arc::new(Loader::new(ThunkRuntime::default()));
    let interpreter = Arc::new(TestInterpreter {
        seven: 0,
        ran: Default::default(),
    });
    Executor::instantiate(&output.module, loader, interpreter, ExecConfig::default()).unwrap()
}

fn sig(s: &str) -> WasmSignature {
    WasmSignature::parse(s, PointerWidth::Wasm32).unwrap()
}

#[test]
fn csharp_methods_compile_and_run_in_wasmtime() {
    let output = compile_demo();

    let compiled: Vec<&str> = output.compiled.iter().map(|(_, n)| n.as_str()).collect();
    for name in [
        "Demo.Calc::Add",
        "Demo.Calc::Twice",
        "Demo.Calc::Widen",
        "Demo.Calc::Mix",
    ] {
        assert!(
            compiled.contains(&name),
            "{name} not compiled: {:#?}",
            output.not_compiled
        );
    }
    // `s.Length` is a call into mscorlib, which this compile is not given; such methods stay
    // interpreted (`Seven` loads its literal fine, then calls `String.get_Length`), and their
    // compiled callers reach them through MethodEntry import cells.
    let reason = |name: &str| {
        output
            .not_compiled
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.reason.clone())
            .unwrap_or_else(|| panic!("{name} should not be compiled"))
    };
    assert!(
        reason("Demo.Calc::Len").contains("mscorlib, which is not given"),
        "{}",
        reason("Demo.Calc::Len")
    );
    assert!(
        reason("Demo.Calc::Seven").contains("mscorlib, which is not given"),
        "{}",
        reason("Demo.Calc::Seven")
    );
    let token_of = |name: &str| {
        output
            .not_compiled
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.token)
            .unwrap()
    };

    let seven = token_of("Demo.Calc::Seven");
    let loader = Arc::new(Loader::new(ThunkRuntime::default()));
    // The runtime learns which methods the interpreter runs (and the thunk their callers
    // need) from its own metadata; here the test tells it.
    loader.register_interpreted(
        MethodRef {
            flags: MethodSigFlags::NONE,
            token: seven,
        },
        InterpretedMethod {
            thunk_key: "Iip".into(),
        },
    );
    let interpreter = Arc::new(TestInterpreter {
        seven,
        ran: Default::default(),
    });
    let mut exec = Executor::instantiate(
        &output.module,
        loader,
        interpreter.clone(),
        ExecConfig::default(),
    )
    .unwrap();
    let i32_of = |v: Option<Val>| v.unwrap().unwrap_i32();
    let add = exec
        .invoke_by_name("Demo.Calc::Add", &sig("iiip"), &[Val::I32(2), Val::I32(40)])
        .unwrap();
    assert_eq!(i32_of(add), 42);
    let twice = exec
        .invoke_by_name("Demo.Calc::Twice", &sig("iip"), &[Val::I32(21)])
        .unwrap();
    assert_eq!(i32_of(twice), 42);
    let widen = exec
        .invoke_by_name(
            "Demo.Calc::Widen",
            &sig("lilp"),
            &[Val::I32(7), Val::I64(6)],
        )
        .unwrap();
    assert_eq!(widen.unwrap().unwrap_i64(), 41);
    let mix = exec
        .invoke_by_name(
            "Demo.Calc::Mix",
            &sig("ddip"),
            &[Val::F64(2.5f64.to_bits()), Val::I32(4)],
        )
        .unwrap();
    assert_eq!(f64::from_bits(mix.unwrap().unwrap_f64().to_bits()), 10.5);

    let mut int = |name: &str, signature: &str, args: &[Val]| {
        exec.invoke_by_name(name, &sig(signature), args)
            .unwrap()
            .unwrap()
            .unwrap_i32()
    };
    assert_eq!(int("Demo.Calc::Abs", "iip", &[Val::I32(-7)]), 7);
    assert_eq!(int("Demo.Calc::Abs", "iip", &[Val::I32(9)]), 9);
    assert_eq!(int("Demo.Calc::UsesAbs", "iip", &[Val::I32(-3)]), 4);
    // References are pointers; `ldnull` is the null one.
    assert_eq!(int("Demo.Calc::IsNull", "iip", &[Val::I32(0)]), 1);
    assert_eq!(int("Demo.Calc::IsNull", "iip", &[Val::I32(1024)]), 0);
    assert_eq!(int("Demo.Calc::NullOr", "iip", &[Val::I32(5)]), 5);
    // Conditional branches with `x` on the stack below their condition.
    assert_eq!(
        int("Demo.Calc::AddPick", "iiip", &[Val::I32(10), Val::I32(1)]),
        11
    );
    assert_eq!(
        int("Demo.Calc::AddPick", "iiip", &[Val::I32(10), Val::I32(0)]),
        12
    );
    for (k, expected) in [(0, 11), (1, 12), (2, 13), (-4, 13)] {
        assert_eq!(
            int("Demo.Calc::AddPick3", "iiip", &[Val::I32(10), Val::I32(k)]),
            expected,
            "AddPick3(10, {k})"
        );
    }
    assert_eq!(int("Demo.Calc::SumTo", "iip", &[Val::I32(100)]), 5050);
    assert_eq!(int("Demo.Calc::SumTo", "iip", &[Val::I32(-5)]), 0);
    for (k, expected) in [(0, 10), (1, 20), (2, 30), (3, -1), (-1, -1)] {
        assert_eq!(
            int("Demo.Calc::Pick", "iip", &[Val::I32(k)]),
            expected,
            "Pick({k})"
        );
    }
    let f = |x: f64| Val::F64(x.to_bits());
    assert_eq!(
        int("Demo.Calc::Between", "idddp", &[f(2.0), f(1.0), f(3.0)]),
        1
    );
    assert_eq!(
        int("Demo.Calc::Between", "idddp", &[f(0.5), f(1.0), f(3.0)]),
        0
    );
    assert_eq!(
        int(
            "Demo.Calc::Between",
            "idddp",
            &[f(f64::NAN), f(1.0), f(3.0)]
        ),
        0
    );
}

#[test]
fn overflow_checks_trap_and_conversions_truncate() {
    let output = compile_demo();
    let mut exec = executor_without_interpreted_methods(&output);
    let mut call = |name: &str, signature: &str, args: &[Val]| {
        exec.invoke_by_name(name, &sig(signature), args)
            .map(|v| v.unwrap())
            .map_err(|e| e.to_string())
    };
    let i = |v: Result<Val, String>| v.unwrap().unwrap_i32();
    let traps = |v: Result<Val, String>| v.unwrap_err().contains("wasm trap");
    let f = |x: f64| Val::F64(x.to_bits());
    // conv.ovf.i4 from int64
    assert_eq!(
        i(call("Demo.Calc::CheckedNarrow", "ilp", &[Val::I64(-5)])),
        -5
    );
    assert!(traps(call(
        "Demo.Calc::CheckedNarrow",
        "ilp",
        &[Val::I64(1 << 31)]
    )));
    assert!(traps(call(
        "Demo.Calc::CheckedNarrow",
        "ilp",
        &[Val::I64(-(1 << 31) - 1)]
    )));
    // conv.ovf.u1 from int32
    assert_eq!(
        i(call("Demo.Calc::CheckedByte", "iip", &[Val::I32(255)])),
        255
    );
    assert!(traps(call(
        "Demo.Calc::CheckedByte",
        "iip",
        &[Val::I32(256)]
    )));
    assert!(traps(call(
        "Demo.Calc::CheckedByte",
        "iip",
        &[Val::I32(-1)]
    )));
    // add.ovf on int32, sub.ovf on int64
    assert_eq!(
        i(call(
            "Demo.Calc::CheckedAdd",
            "iiip",
            &[Val::I32(2), Val::I32(3)]
        )),
        5
    );
    assert!(traps(call(
        "Demo.Calc::CheckedAdd",
        "iiip",
        &[Val::I32(i32::MAX), Val::I32(1)]
    )));
    let sub = |a: i64, b: i64| [Val::I64(a), Val::I64(b)];
    let checked_sub = "Demo.Calc::CheckedSub";
    assert_eq!(
        call(checked_sub, "lllp", &sub(5, 7)).unwrap().unwrap_i64(),
        -2
    );
    assert!(traps(call(checked_sub, "lllp", &sub(i64::MIN, 1))));
    assert!(traps(call(checked_sub, "lllp", &sub(i64::MAX, -1))));
    // conv.ovf.u4 from float64
    assert_eq!(i(call("Demo.Calc::CheckedFromDouble", "idp", &[f(3.9)])), 3);
    assert!(traps(call(
        "Demo.Calc::CheckedFromDouble",
        "idp",
        &[f(-1.0)]
    )));
    assert!(traps(call(
        "Demo.Calc::CheckedFromDouble",
        "idp",
        &[f(f64::NAN)]
    )));
    // conv.i4 from float64: truncation, x64's MIN for NaN and overflow.
    assert_eq!(i(call("Demo.Calc::Trunc", "idp", &[f(-2.7)])), -2);
    assert_eq!(i(call("Demo.Calc::Trunc", "idp", &[f(f64::NAN)])), i32::MIN);
    assert_eq!(i(call("Demo.Calc::Trunc", "idp", &[f(1e10)])), i32::MIN);
}

#[test]
fn the_output_does_not_depend_on_the_thread_count() {
    let dll = build_dll();
    let assembly = Assembly::load(&dll).unwrap();
    let view = assembly.view().unwrap();
    let with = |threads, shuffle_seed| {
        compile_assembly(
            &view,
            &CompileOptions {
                threads: Some(threads),
                shuffle_seed,
                ..CompileOptions::default()
            },
        )
        .unwrap()
        .module
    };
    let one = with(1, None);
    assert_eq!(one, with(2, None));
    for seed in [1, 7, 0xdead_beef] {
        assert_eq!(one, with(2, Some(seed)), "shuffle seed {seed}");
    }
}

#[test]
fn the_map_is_built_only_when_asked_for_and_does_not_change_the_module() {
    let dll = build_dll();
    let assembly = Assembly::load(&dll).unwrap();
    let view = assembly.view().unwrap();
    let plain = compile_assembly(&view, &CompileOptions::default()).unwrap();
    assert!(plain.map.is_empty(), "{:?}", plain.map);
    let mapped = compile_assembly(
        &view,
        &CompileOptions {
            map: true,
            ..CompileOptions::default()
        },
    )
    .unwrap();
    assert_eq!(plain.module, mapped.module);
    // One code entry per compiled method, named by its symbol.
    let methods = mapped
        .map
        .iter()
        .filter(|e| e.kind == "MethodWithGCInfo" && e.section == "code")
        .count();
    assert_eq!(methods, mapped.compiled.len());
    assert!(
        mapped
            .map
            .iter()
            .any(|e| e.name.starts_with("Demo.Calc::Add@06")),
        "{:#?}",
        mapped.map
    );
}

#[test]
fn callvirt_of_a_non_virtual_method_is_a_direct_call_that_checks_this() {
    let output = compile_demo();
    // A virtual method's call is dispatched (tests/il_fixtures.rs runs it); a non-virtual
    // one is direct.
    assert!(
        output
            .compiled
            .iter()
            .any(|(_, name)| name == "Demo.Counter::CallVirt"),
        "{:?}",
        output.not_compiled
    );
    let mut exec = executor_without_interpreted_methods(&output);
    let mut call = |args: &[Val]| {
        exec.invoke_by_name("Demo.Counter::CallGet", &sig("iiip"), args)
            .map(|v| v.unwrap().unwrap_i32())
            .map_err(|e| e.to_string())
    };
    // `c.Get(x)` is `callvirt Counter::Get`: Get reads nothing of `c`, any non-null object
    // reference will do; null is a NullReferenceException (a trap here).
    assert_eq!(call(&[Val::I32(1024), Val::I32(5)]), Ok(12));
    let null = call(&[Val::I32(0), Val::I32(5)]).unwrap_err();
    assert!(null.contains("wasm trap"), "{null}");
}
