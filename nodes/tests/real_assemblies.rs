//! The type-system view over real assemblies: Mono's mscorlib from Debian, and a small C#
//! assembly compiled with `mcs` in the test.

use std::path::Path;
use std::process::Command;

use crossgraph_nodes::typesystem::{Assembly, ClauseKind, TypeSystemError};

const MSCORLIB: &str = "/usr/lib/mono/4.5/mscorlib.dll";
const INSTALL: &str = "apt-get install -y --no-install-recommends mono-mcs libmono-corlib4.5-cil";

fn require(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install Mono's class libraries with `{INSTALL}`"
    );
}

#[test]
fn mscorlib_has_the_methods_bodies_and_instructions_of_the_trial() {
    require(MSCORLIB);
    let assembly = Assembly::load(MSCORLIB).unwrap();
    let corlib = assembly.view().unwrap();
    let methods = corlib.methods().unwrap();
    let with_body: Vec<_> = methods.iter().filter(|m| m.has_body()).collect();
    let mut instructions = 0;
    for method in &with_body {
        let body = corlib
            .method_body(method.token)
            .unwrap()
            .expect("has a body");
        assert!(!body.instructions.is_empty(), "{}", method.name);
        instructions += body.instructions.len();
    }
    // The counts the issue quotes from the reader trial on this machine kind.
    assert_eq!(
        (methods.len(), with_body.len(), instructions),
        (27_261, 24_395, 582_453)
    );
    let max = methods
        .iter()
        .find(|m| m.name == "System.Math::Max")
        .expect("System.Math::Max exists");
    let shape = corlib.signature_shape(max).unwrap();
    assert!(!shape.has_this);
    assert_eq!(shape.params.len(), 2);
}

#[test]
fn a_compiled_csharp_method_reads_back() {
    let mcs = Command::new("mcs").arg("--version").output();
    assert!(
        mcs.is_ok_and(|o| o.status.success()),
        "mcs is missing: install it with `{INSTALL}`"
    );
    let dir = std::env::temp_dir().join(format!("crossgraph-ts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("Calc.cs");
    std::fs::write(
        &source,
        "namespace Demo { public static class Calc {\n\
         public static int Add(int a, int b) { return a + b; }\n\
         public static int Safe(int a) { try { return 10 / a; } catch (System.DivideByZeroException) { return -1; } }\n\
         } }\n",
    )
    .unwrap();
    let dll = dir.join("Calc.dll");
    let out = Command::new("mcs")
        .args(["-target:library", "-optimize+"])
        .arg(format!("-out:{}", dll.display()))
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let loaded = Assembly::load(&dll).unwrap();
    let assembly = loaded.view().unwrap();
    let methods = assembly.methods().unwrap();
    let add = methods
        .iter()
        .find(|m| m.name == "Demo.Calc::Add")
        .unwrap_or_else(|| panic!("{methods:#?}"));
    assert_eq!(
        assembly.full_signature(add).unwrap(),
        "int32 Demo.Calc::Add(int32, int32)"
    );
    let shape = assembly.signature_shape(add).unwrap();
    assert_eq!(shape.params, ["int32", "int32"]);
    assert!(!shape.has_this);
    let body = assembly.method_body(add.token).unwrap().unwrap();
    let opcodes: Vec<&str> = body.instructions.iter().map(|i| i.opcode).collect();
    assert_eq!(opcodes, ["ldarg.0", "ldarg.1", "add", "ret"]);

    let safe = methods
        .iter()
        .find(|m| m.name == "Demo.Calc::Safe")
        .unwrap();
    let body = assembly.method_body(safe.token).unwrap().unwrap();
    assert_eq!(body.exception_clauses.len(), 1);
    assert!(matches!(
        body.exception_clauses[0].kind,
        ClauseKind::Catch { class_token } if class_token >> 24 == 0x01
    ));

    // Bad input names the file.
    let err = Assembly::load(&source).unwrap_err();
    assert!(matches!(err, TypeSystemError::Image { .. }));
    assert!(err.to_string().contains("Calc.cs"), "{err}");
    assert!(matches!(
        assembly.method_body(0x0200_0001),
        Err(TypeSystemError::Method { .. })
    ));
    std::fs::remove_dir_all(&dir).ok();
}
