//! Whole compiles of Mono's class libraries from Debian (mscorlib, System, System.Core,
//! System.Xml), each with its references; the images load in runtime-core with every eager
//! fixup resolved. Bad input: truncated assemblies, missing references, unknown roots.

use std::path::Path;

use crossgraph::nodes::type_system::TypeSystem;
use crossgraph::nodes::typesystem::{Assembly, TypeSystemError};
use crossgraph::nodes::{CompileError, CompileOptions, Roots, compile_assembly, compile_input};
use crossgraph::runtime_core::{Loader, ThunkRuntime, image_from_module};

const INSTALL: &str = "bash scripts/install-mono.sh";
const LIB: &str = "/usr/lib/mono/4.5";

fn load(name: &str) -> Assembly {
    let path = Path::new(LIB).join(name);
    assert!(
        path.exists(),
        "{} is missing: install Mono's class libraries with `{INSTALL}`",
        path.display()
    );
    Assembly::load(&path).unwrap()
}

#[test]
fn mono_class_libraries_compile_and_their_images_load() {
    let names = [
        "mscorlib.dll",
        "System.dll",
        "System.Core.dll",
        "System.Xml.dll",
    ];
    // What they reference beyond each other (read, not compiled).
    let references = ["Mono.Security.dll", "System.Configuration.dll"];
    let assemblies: Vec<Assembly> = names.iter().chain(&references).map(|n| load(n)).collect();
    let views: Vec<_> = assemblies.iter().map(|a| a.view().unwrap()).collect();
    for (i, name) in names.iter().enumerate() {
        let mut order = vec![&views[i]];
        order.extend(
            views
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, v)| v),
        );
        let ts = TypeSystem::new(order).unwrap();
        let output = compile_input(&ts, &CompileOptions::default()).unwrap();
        // Emission's time is its phases' sum.
        let emit: std::time::Duration = output
            .phases
            .iter()
            .filter(|(name, _)| name.starts_with("emit: "))
            .map(|&(_, time)| time)
            .sum();
        assert_eq!(emit, output.emit_time, "{name}: {:?}", output.phases);
        let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
        for m in &output.not_compiled {
            let kind = m.reason.rsplit(": ").next().unwrap_or("").to_string();
            *reasons.entry(kind).or_default() += 1;
        }
        let mut top: Vec<_> = reasons.into_iter().collect();
        top.sort_by_key(|t| std::cmp::Reverse(t.1));
        println!(
            "{name}: {} compiled, {} left to the interpreter; top reasons: {:?}",
            output.compiled.len(),
            output.not_compiled.len(),
            &top[..top.len().min(4)]
        );
        assert!(!output.compiled.is_empty(), "{name}: nothing compiled");
        assert!(
            output.diagnostics.is_empty(),
            "{name}: {:?}",
            output.diagnostics
        );
        // The writer validated the module; the runtime loads its image and resolves the
        // eager fixups (InjectStringThunks) at load.
        let image = image_from_module(&output.module).unwrap();
        let loader = Loader::new(ThunkRuntime::default());
        loader.load_image(image, 0).unwrap();
        let stubs = output
            .nodes_by_kind
            .get("R2RToInterpreterThunk")
            .unwrap_or(&0)
            + output
                .nodes_by_kind
                .get("InterpreterToR2RThunk")
                .unwrap_or(&0);
        assert_eq!(
            loader.thunks().table().injected_len(),
            stubs,
            "{name}: every string thunk merged at load"
        );
    }
}

#[test]
fn a_missing_reference_names_the_assembly_and_the_compile_goes_on() {
    // System.dll without mscorlib: calls into mscorlib stay interpreted, reported once.
    let system = load("System.dll");
    let view = system.view().unwrap();
    let output = compile_assembly(&view, &CompileOptions::default()).unwrap();
    assert!(!output.compiled.is_empty());
    assert!(
        output
            .diagnostics
            .iter()
            .any(|d| d.contains("System.dll") && d.contains("mscorlib") && d.contains("-r")),
        "{:?}",
        output.diagnostics
    );
    assert!(
        output
            .not_compiled
            .iter()
            .any(|m| m.reason.contains("which is not given")),
        "a method calling into mscorlib names the missing reference"
    );
}

#[test]
fn truncated_and_corrupted_assemblies_are_errors_naming_the_file() {
    let bytes = std::fs::read(Path::new(LIB).join("System.dll")).unwrap();
    let dir = std::env::temp_dir().join(format!("crossgraph-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, data) in [
        ("truncated.dll", bytes[..bytes.len() / 3].to_vec()),
        ("header.dll", bytes[..200].to_vec()),
        ("zeros.dll", vec![0; 4096]),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, &data).unwrap();
        let err = match Assembly::load(&path) {
            Err(e) => e,
            Ok(a) => match a.view().and_then(|v| v.methods().map(|_| ())) {
                Err(e) => e,
                Ok(()) => {
                    // Metadata may survive a cut that removes bodies: compiling must then
                    // fail per method, never panic.
                    let view = a.view().unwrap();
                    let out = compile_assembly(&view, &CompileOptions::default());
                    match out {
                        Err(CompileError::TypeSystem(e)) => e,
                        Err(other) => panic!("{name}: {other}"),
                        Ok(_) => continue,
                    }
                }
            },
        };
        assert!(
            err.to_string().contains(name),
            "{name}: the error names the file: {err}"
        );
        assert!(matches!(
            err,
            TypeSystemError::Image { .. }
                | TypeSystemError::Method { .. }
                | TypeSystemError::Io { .. }
        ));
    }
}

#[test]
fn named_and_public_roots_select_what_is_compiled() {
    let corlib = load("mscorlib.dll");
    let view = corlib.view().unwrap();
    let named = compile_assembly(
        &view,
        &CompileOptions {
            roots: Roots::Named(vec!["System.Math::BigMul".into()]),
            ..CompileOptions::default()
        },
    )
    .unwrap();
    let names: Vec<&str> = named.compiled.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["System.Math::BigMul"]);
    let public = compile_assembly(
        &view,
        &CompileOptions {
            roots: Roots::PublicSurface,
            ..CompileOptions::default()
        },
    )
    .unwrap();
    let all = compile_assembly(&view, &CompileOptions::default()).unwrap();
    assert!(public.compiled.len() < all.compiled.len());
    assert!(public.compiled.len() > 1000);
    let err = compile_assembly(
        &view,
        &CompileOptions {
            roots: Roots::Named(vec!["No.Such::Method".into()]),
            ..CompileOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("No.Such::Method") && err.to_string().contains("mscorlib.dll")
    );
}
