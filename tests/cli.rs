//! The `crossgraph` binary: compile, inspect and run on a C# assembly built with mcs.

use std::path::PathBuf;
use std::process::Command;

mod common;

fn crossgraph(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_crossgraph"))
        .args(args)
        .output()
        .expect("the crossgraph binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn dll(dir: &PathBuf) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let source = dir.join("Cli.cs");
    std::fs::write(
        &source,
        "namespace Cli { public static class M {\n\
         public static int Add(int a, int b) { return a + b; }\n\
         public static double Half(double x) { return x / 2; }\n\
         public static int Branchy(int a) { return a > 0 ? 1 : 2; }\n\
         public static int Len(string s) { return s.Length; } } }\n",
    )
    .unwrap();
    let dll = dir.join("Cli.dll");
    common::mcs(&source, &dll, true);
    dll
}

#[test]
fn compile_inspect_and_run() {
    let dir = std::env::temp_dir().join(format!("crossgraph-cli-{}", std::process::id()));
    let dll = dll(&dir);
    let module = dir.join("Cli.wasm");
    let stats = dir.join("stats.json");
    let (ok, stdout, stderr) = crossgraph(&[
        "compile",
        dll.to_str().unwrap(),
        "-o",
        module.to_str().unwrap(),
        "--stats",
        stats.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("3 methods compiled, 1 left to the interpreter"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(json["compiled"], 3);

    let (ok, stdout, stderr) = crossgraph(&["inspect", module.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("InjectStringThunks (0x39), 3 thunks"),
        "{stdout}"
    );
    assert!(stdout.contains("Miiip"), "{stdout}");
    assert!(stdout.contains("method entry points: 3"), "{stdout}");

    let (ok, stdout, stderr) = crossgraph(&[
        "run",
        module.to_str().unwrap(),
        "Cli.M::Add",
        "iiip",
        "-2",
        "44",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "42");
    let (ok, stdout, _) = crossgraph(&["run", module.to_str().unwrap(), "Cli.M::Half", "ddp", "5"]);
    assert!(ok);
    assert_eq!(stdout.trim(), "2.5");

    let (ok, stdout, _) = crossgraph(&[
        "run",
        module.to_str().unwrap(),
        "Cli.M::Branchy",
        "iip",
        "-4",
    ]);
    assert!(ok);
    assert_eq!(stdout.trim(), "2");
    // A method left to the interpreter is not in the module; the error says so.
    let (ok, _, stderr) = crossgraph(&["run", module.to_str().unwrap(), "Cli.M::Len", "iip", "1"]);
    assert!(!ok);
    assert!(stderr.contains("names no method"), "{stderr}");
    // Bad input names the file.
    let (ok, _, stderr) = crossgraph(&["inspect", dll.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("not valid wasm") || stderr.contains("no image"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn map_graph_why_stats_and_wat() {
    let dir = std::env::temp_dir().join(format!("crossgraph-cli-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dll(&dir);
    let module = dir.join("out.wasm");
    let (map, dgml, dot, stats) = (
        dir.join("map.csv"),
        dir.join("g.dgml"),
        dir.join("g.dot"),
        dir.join("stats.json"),
    );
    let (ok, stdout, stderr) = crossgraph(&[
        "compile",
        input.to_str().unwrap(),
        "-o",
        module.to_str().unwrap(),
        "--map",
        map.to_str().unwrap(),
        "--graph",
        "full",
        "--dgml",
        dgml.to_str().unwrap(),
        "--dot",
        dot.to_str().unwrap(),
        "--stats",
        stats.to_str().unwrap(),
        "--why",
        "InjectStringThunks",
    ]);
    assert!(ok, "{stderr}");
    // The chain starts at a root and ends at the import.
    assert!(stdout.contains("why InjectStringThunks:"), "{stdout}");
    assert!(stdout.contains("root: method with an IL body"), "{stdout}");
    let map = std::fs::read_to_string(&map).unwrap();
    assert!(map.starts_with("kind,name,section,offset,size\n"), "{map}");
    assert!(map.contains("MethodWithGCInfo,"), "{map}");
    assert!(map.contains("InterpreterToR2RThunk,"), "{map}");
    assert!(
        std::fs::read_to_string(&dgml)
            .unwrap()
            .contains("<DirectedGraph")
    );
    assert!(
        std::fs::read_to_string(&dot)
            .unwrap()
            .starts_with("digraph")
    );
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert!(stats["phases"]["emit_seconds"].as_f64().is_some());
    let timeline = stats["timeline"].as_array().unwrap();
    let phases: Vec<&str> = timeline
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "read methods",
            "lower signatures",
            "intern symbols",
            "analysis",
            "log exports",
            "drop analyzer",
            "emit: layout",
            "emit: call sites",
            "emit: thunks",
            "emit: encode module",
            "emit: validate module",
            "emit: map"
        ]
    );
    // The phases add up to no more than the whole run.
    let sum: f64 = timeline
        .iter()
        .map(|p| p["seconds"].as_f64().unwrap())
        .sum();
    assert!(
        sum > 0.0 && sum <= stats["seconds"].as_f64().unwrap(),
        "{sum}"
    );
    assert!(stats["nodes_by_kind"]["MethodWithGCInfo"].as_u64().unwrap() > 0);

    let (ok, stdout, stderr) =
        crossgraph(&["inspect", module.to_str().unwrap(), "--wat", "Cli.M::Add"]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("  (func $Cli.M::Add@"), "{stdout}");
    assert!(stdout.contains("i32.add"), "{stdout}");
    let (ok, _, stderr) = crossgraph(&[
        "inspect",
        module.to_str().unwrap(),
        "--wat",
        "No.Such::Method",
    ]);
    assert!(!ok && stderr.contains("No.Such::Method"), "{stderr}");
}
