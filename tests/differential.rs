//! Differential test against a real runtime: every mscorlib method crossgraph compiles whose
//! signature is static with primitive parameters and return runs in wasmtime (through
//! runtime-core's invoke) and on Mono (a C# reflection harness compiled by mcs) on the same
//! argument tuples; results must be equal, traps must be exceptions (the few methods that
//! answer the pointer width are held to the wasm32 answer: Mono runs 64-bit here).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use crossgraph::codegen::{PointerWidth, WasmSignature};
use crossgraph::nodes::typesystem::Assembly;
use crossgraph::nodes::{CompileOptions, compile_assembly};
use crossgraph::runtime_core::exec::{ExecConfig, ExecError, Executor, Interpreter};
use crossgraph::runtime_core::{Loader, ThunkRuntime};
use wasmtime::Val;

mod common;

const MSCORLIB: &str = "/usr/lib/mono/4.5/mscorlib.dll";

/// Methods whose answer is the target's pointer width: Mono runs 64-bit here, crossgraph
/// compiles for wasm32. They are checked against the wasm32 answer instead of Mono's.
const WASM32_ANSWERS: &[(&str, &str)] = &[
    ("System.IntPtr::get_Size", "4"),
    ("System.UIntPtr::get_Size", "4"),
    ("System.Environment::get_Is64BitProcess", "0"),
];
use common::INSTALL;

struct NoInterpreter;

impl Interpreter for NoInterpreter {
    fn execute(&self, entry: u32, _: &mut [u8], _: u32, _: u32, _: u32) -> Result<(), String> {
        Err(format!("needs the interpreter for 0x{entry:08x}"))
    }
}

/// Argument values per parameter type, as the harness reads them (doubles and floats as
/// bit patterns).
fn values(ty: &str) -> Vec<i64> {
    match ty {
        "int32" => vec![0, 1, -1, 7, 100, -100, 65535],
        "uint32" => vec![0, 1, 7, 65535, 4_294_967_295],
        "int64" => vec![0, 1, -1, 1 << 33, -(1 << 33), 100],
        "uint64" => vec![0, 1, 1 << 40, 65535],
        "float64" => [
            0.0,
            -0.0,
            1.5,
            -2.25,
            1e300,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ]
        .iter()
        .map(|x: &f64| x.to_bits() as i64)
        .collect(),
        "float32" => [0.0f32, 1.5, -2.25, f32::NAN]
            .iter()
            .map(|x| i64::from(x.to_bits() as i32))
            .collect(),
        "bool" => vec![0, 1],
        "char" => vec![0, 65, 945, 65535],
        _ => Vec::new(),
    }
}

fn sig_char(ty: &str) -> Option<char> {
    Some(match ty {
        "int32" | "uint32" | "bool" | "char" => 'i',
        "int64" | "uint64" => 'l',
        "float64" => 'd',
        "float32" => 'f',
        _ => return None,
    })
}

fn wasm_arg(ty: &str, v: i64) -> Val {
    match sig_char(ty) {
        Some('i') => Val::I32(v as i32),
        Some('l') => Val::I64(v),
        Some('d') => Val::F64(v as u64),
        _ => Val::F32(v as u32),
    }
}

fn show(v: &Val) -> String {
    match v {
        Val::I32(x) => x.to_string(),
        Val::I64(x) => x.to_string(),
        Val::F64(bits) => (*bits as i64).to_string(),
        Val::F32(bits) => (*bits as i32).to_string(),
        other => format!("{other:?}"),
    }
}

#[test]
fn compiled_mscorlib_methods_agree_with_mono() {
    assert!(
        Path::new(MSCORLIB).exists(),
        "{MSCORLIB} is missing: install it with `{INSTALL}`"
    );
    let dir = std::env::temp_dir().join(format!("crossgraph-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let harness = dir.join("Harness.exe");
    common::mcs(
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/differential/Harness.cs"
        )),
        &harness,
        false,
    );

    let assembly = Assembly::load(MSCORLIB).unwrap();
    let view = assembly.view().unwrap();
    let methods = view.methods().unwrap();
    let output = compile_assembly(&view, &CompileOptions::default()).unwrap();
    let mut name_counts: HashMap<&str, usize> = HashMap::new();
    for m in &methods {
        *name_counts.entry(m.name.as_str()).or_default() += 1;
    }
    let compiled: std::collections::HashSet<u32> =
        output.compiled.iter().map(|(t, _)| *t).collect();
    let candidates: Vec<_> = methods
        .iter()
        .filter(|m| compiled.contains(&m.token) && name_counts[m.name.as_str()] == 1)
        .map(|m| (m, view.signature_shape(m).unwrap()))
        .filter(|(_, s)| !s.has_this && s.generic_params == 0)
        .filter(|(_, s)| sig_char(&s.ret).is_some())
        .filter(|(_, s)| s.params.iter().all(|p| sig_char(p).is_some()))
        .collect();

    let loader = Arc::new(Loader::new(ThunkRuntime::default()));
    let mut exec = Executor::instantiate(
        &output.module,
        loader,
        Arc::new(NoInterpreter),
        ExecConfig::default(),
    )
    .unwrap();

    // (method name, harness input line, crossgraph's answer)
    let mut cases: Vec<(String, String, String)> = Vec::new();
    let mut skipped_methods = 0;
    'methods: for (m, shape) in &candidates {
        let params = &shape.params;
        let sig: String = std::iter::once(sig_char(&shape.ret).unwrap())
            .chain(params.iter().map(|p| sig_char(p).unwrap()))
            .chain(['p'])
            .collect();
        let signature = WasmSignature::parse(&sig, PointerWidth::Wasm32).unwrap();
        let tuples = if params.is_empty() { 1 } else { 6 };
        let mut method_cases = Vec::new();
        for i in 0..tuples {
            let args: Vec<i64> = params
                .iter()
                .enumerate()
                .map(|(j, p)| {
                    let vs = values(p);
                    vs[(i * (j + 1) + j) % vs.len()]
                })
                .collect();
            let wasm_args: Vec<Val> = params
                .iter()
                .zip(&args)
                .map(|(p, &v)| wasm_arg(p, v))
                .collect();
            let ours = match exec.invoke_by_name(&m.name, &signature, &wasm_args) {
                Ok(Some(v)) => show(&v),
                Ok(None) => "void".into(),
                Err(ExecError::Wasm(msg)) if msg.contains("interpreter") => {
                    skipped_methods += 1;
                    continue 'methods;
                }
                Err(ExecError::Wasm(_) | ExecError::Exception { .. }) => "exception".into(),
                Err(e) => panic!("{}: {e}", m.name),
            };
            let line = format!(
                "{}|{}|{}",
                m.name,
                params.join(","),
                args.iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            );
            method_cases.push((m.name.clone(), line, ours));
        }
        cases.extend(method_cases);
    }

    let mut mono = Command::new("mono")
        .arg(&harness)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("mono cannot run ({e}): install it with `{INSTALL}`"));
    {
        let mut stdin = mono.stdin.take().unwrap();
        for (_, line, _) in &cases {
            writeln!(stdin, "{line}").unwrap();
        }
    }
    let out = mono.wait_with_output().unwrap();
    let answers: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        answers.len(),
        cases.len(),
        "the harness answered every case"
    );

    let mut mismatches = Vec::new();
    let mut compared_methods = std::collections::BTreeSet::new();
    for ((name, line, ours), theirs) in cases.iter().zip(&answers) {
        if theirs == "missing" {
            continue;
        }
        compared_methods.insert(name.clone());
        let (expected, who) = match WASM32_ANSWERS.iter().find(|(n, _)| n == name) {
            Some((_, answer)) => (*answer, "wasm32"),
            None => (theirs.as_str(), "mono"),
        };
        if ours != expected {
            mismatches.push(format!("{line}: crossgraph {ours}, {who} {expected}"));
        }
    }
    let compared = cases.len() - answers.iter().filter(|a| *a == "missing").count();
    eprintln!(
        "differential: {} methods, {} tuples compared with Mono ({} candidates, {} need the interpreter)",
        compared_methods.len(),
        compared,
        candidates.len(),
        skipped_methods
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(
        compared_methods.len() >= 20,
        "too few methods compared: {}",
        compared_methods.len()
    );
    std::fs::remove_dir_all(&dir).ok();
}
