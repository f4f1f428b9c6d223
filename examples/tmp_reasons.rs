use crossgraph::nodes::typesystem::Assembly;
use crossgraph::nodes::{CompileOptions, compile_assembly};
fn main() {
    let pat = std::env::args().nth(1).unwrap();
    let a = Assembly::load("/usr/lib/mono/4.5/mscorlib.dll").unwrap();
    let v = a.view().unwrap();
    let out = compile_assembly(&v, &CompileOptions::default()).unwrap();
    for m in out
        .not_compiled
        .iter()
        .filter(|m| m.reason.contains(&pat))
        .take(12)
    {
        println!("{:08x} {} : {}", m.token, m.name, m.reason);
    }
}
