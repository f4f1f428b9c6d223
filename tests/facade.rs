//! The README's library example, through the `crossgraph` facade.

use crossgraph::graph::{
    Analyzer, AnalyzerOptions, Dependencies, FirstMark, NodeId, NodeSource, write_dgml,
};

struct Calls;

impl NodeSource for Calls {
    type Key = &'static str;
    fn static_dependencies(
        &self,
        _: NodeId,
        key: &&'static str,
        deps: &mut Dependencies<&'static str>,
    ) {
        match *key {
            "Main" => deps.add("Helper", "call"),
            "Helper" => deps.add_conditional("Helper.Vtable", "Helper.Type", "virtual slot"),
            _ => {}
        }
    }
}

#[test]
fn readme_example_marks_and_explains() -> Result<(), Box<dyn std::error::Error>> {
    let mut analyzer = Analyzer::<_, FirstMark>::new(&Calls, AnalyzerOptions::default());
    analyzer.add_root("Main", "entry point")?;
    analyzer.compute_marked_nodes()?;
    let names: Vec<String> = analyzer
        .marked_nodes()?
        .iter()
        .map(|&n| analyzer.name(n))
        .collect::<Result<_, _>>()?;
    // "Helper.Type" is never marked, so the conditional "Helper.Vtable" is not either.
    assert_eq!(names, ["\"Helper\"", "\"Main\""]);

    let why = analyzer.why(analyzer.id_of(&"Helper").expect("interned"))?;
    let reasons: Vec<&str> = why.iter().map(|e| e.reason).collect();
    assert_eq!(reasons, ["entry point", "call"]);

    let mut dgml = Vec::new();
    write_dgml(&analyzer, &mut dgml)?;
    let dgml = String::from_utf8(dgml)?;
    assert!(
        dgml.contains(r#"<Node Id="2" Label="entry point" />"#),
        "{dgml}"
    );
    Ok(())
}

#[test]
fn readme_codegen_example_builds_a_module() -> Result<(), Box<dyn std::error::Error>> {
    use crossgraph::codegen::{ObjectModule, PointerWidth, WasmSignature, thunk};

    let sig = WasmSignature::parse("S16Tip", PointerWidth::Wasm32)?;
    assert_eq!(sig.func_type().to_string(), "[i32 i32 i32 i32 i32] -> []");
    let mut module = ObjectModule::new();
    let to_interpreter = thunk::r2r_to_interpreter(&sig, &mut module)?;
    let from_interpreter = thunk::interpreter_to_r2r(&sig, &mut module)?;
    assert_eq!(module.name(to_interpreter), "IS16Tip");
    assert_eq!(module.name(from_interpreter), "MS16Tip");
    let emitted = module.emit()?;
    assert_eq!(emitted.table_slot(to_interpreter), Some(0));
    assert_eq!(emitted.table_slot(from_interpreter), Some(1));
    assert_eq!(&emitted.bytes[..4], b"\0asm");
    Ok(())
}
