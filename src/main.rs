//! The `crossgraph` command line: compile assemblies to a wasm ReadyToRun image, inspect an
//! image, run compiled methods.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// mimalloc: the compile allocates many small objects on every worker thread; glibc's malloc
/// serializes part of that (malloc/free were ~15% of a 2-thread mscorlib compile).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use crossgraph::codegen::{PointerWidth, WasmSignature};
use crossgraph::nodes::type_system::TypeSystem;
use crossgraph::nodes::typesystem::Assembly;
use crossgraph::nodes::{CompileOptions, CompileOutput, GraphLog, Roots, compile_input};
use crossgraph::runtime_core::exec::{ExecConfig, Executor, Interpreter};
use crossgraph::runtime_core::format::{FixupSignature, Image, ImportSectionType, MethodSigFlags};
use crossgraph::runtime_core::loader::UNMANAGED_CALLERS_ONLY;
use crossgraph::runtime_core::{Loader, ThunkRuntime, image_from_module};

#[derive(Parser, Debug)]
#[command(
    name = "crossgraph",
    version,
    about = "crossgen2-style AOT compiler to wasm ReadyToRun images"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compile assemblies' methods to wasm modules carrying an R2R image (one per input).
    Compile {
        /// Input assemblies (each is compiled; the others serve as references).
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Reference assemblies (read to resolve types and calls, not compiled).
        #[arg(short = 'r', long = "reference")]
        references: Vec<PathBuf>,
        /// The output module; with several inputs, a directory receiving INPUT.wasm files.
        #[arg(short, long)]
        output: PathBuf,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Roots: `all` (every method with an IL body), `public` (public methods of public
        /// types), or a comma-separated list of `Namespace.Type::Method` names.
        #[arg(long, default_value = "all")]
        roots: String,
        /// Write one CSV row per emitted node (kind, name, section, offset, size).
        #[arg(long)]
        map: Option<PathBuf>,
        /// Keep a mark log: `first` (first edge per node) or `full` (every edge).
        #[arg(long, value_parser = ["first", "full"])]
        graph: Option<String>,
        /// Write the mark log as DGML (implies `--graph first` unless given).
        #[arg(long)]
        dgml: Option<PathBuf>,
        /// Write the mark log as Graphviz DOT (implies `--graph first` unless given).
        #[arg(long)]
        dot: Option<PathBuf>,
        /// Write statistics as JSON to this file.
        #[arg(long)]
        stats: Option<PathBuf>,
        /// Print the chain of reasons that pulled in the node with this name (repeatable).
        #[arg(long)]
        why: Vec<String>,
    },
    /// List an image: header, sections, import sections with decoded fixups, methods.
    Inspect {
        /// A module written by `crossgraph compile`.
        module: PathBuf,
        /// Print the WAT of the function with this name (a method name, a thunk name).
        #[arg(long)]
        wat: Option<String>,
    },
    /// Run a compiled method through the runtime's invoke path.
    Run {
        /// A module written by `crossgraph compile`.
        module: PathBuf,
        /// The method, `Namespace.Type::Method`.
        method: String,
        /// Its wasm signature string (e.g. `iiip` for `int(int, int)`).
        signature: String,
        /// Arguments (integers or floats, one per parameter).
        #[arg(allow_negative_numbers = true)]
        args: Vec<String>,
    },
}

/// Methods without R2R code have no interpreter in this command line yet.
struct NoInterpreter;

impl Interpreter for NoInterpreter {
    fn execute(&self, entry: u32, _: &mut [u8], _: u32, _: u32, _: u32) -> Result<(), String> {
        Err(format!(
            "method 0x{entry:08x} has no R2R code and this command line has no interpreter"
        ))
    }
}

/// Writes `bytes` to `path` atomically (temporary file, then rename).
fn write_atomically(path: &PathBuf, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn main() -> Result<()> {
    crossgraph::allocator::keep_freed_memory();
    let mut out = String::new();
    let result = run(Cli::parse().command, &mut out);
    // Print what was produced even on error; a closed pipe (`| head`) is not an error.
    let mut stdout = std::io::stdout().lock();
    match std::io::Write::write_all(&mut stdout, out.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    result
}

fn run(command: Command, out: &mut String) -> Result<()> {
    use std::fmt::Write as _;
    match command {
        Command::Compile {
            inputs,
            references,
            output,
            threads,
            roots,
            map,
            graph,
            dgml,
            dot,
            stats,
            why,
        } => {
            let log = match (
                graph.as_deref(),
                dgml.is_some() || dot.is_some() || !why.is_empty(),
            ) {
                (Some("full"), _) => GraphLog::Full,
                (Some(_), _) | (None, true) => GraphLog::FirstMark,
                (None, false) => GraphLog::None,
            };
            let roots = match roots.as_str() {
                "all" => Roots::AllMethods,
                "public" => Roots::PublicSurface,
                names => Roots::Named(names.split(',').map(|n| n.trim().to_string()).collect()),
            };
            let options = CompileOptions {
                threads,
                roots,
                shuffle_seed: None,
                log,
                why,
                map: map.is_some(),
            };
            let several = inputs.len() > 1;
            if several {
                std::fs::create_dir_all(&output)
                    .with_context(|| format!("creating {}", output.display()))?;
            }
            let progress = indicatif::ProgressBar::new_spinner();
            progress.enable_steady_tick(std::time::Duration::from_millis(100));
            progress.set_message("loading assemblies");
            let load = |path: &PathBuf| Assembly::load(path); // errors name the file
            let input_assemblies = inputs.iter().map(load).collect::<Result<Vec<_>, _>>()?;
            let reference_assemblies =
                references.iter().map(load).collect::<Result<Vec<_>, _>>()?;
            let views = input_assemblies
                .iter()
                .chain(&reference_assemblies)
                .map(Assembly::view)
                .collect::<Result<Vec<_>, _>>()?;
            for (i, input) in inputs.iter().enumerate() {
                let started = Instant::now();
                progress.set_message(format!("compiling {}", input.display()));
                // This input first; every other assembly is a reference.
                let mut order: Vec<_> = vec![&views[i]];
                order.extend(
                    views
                        .iter()
                        .enumerate()
                        .filter(|&(j, _)| j != i)
                        .map(|(_, v)| v),
                );
                let ts = TypeSystem::new(order)?;
                let result = compile_input(&ts, &options)?;
                let target = if several {
                    let stem = input.file_stem().unwrap_or_default();
                    output.join(stem).with_extension("wasm")
                } else {
                    output.clone()
                };
                progress.set_message(format!("writing {}", target.display()));
                write_atomically(&target, &result.module)?;
                let elapsed = started.elapsed();
                progress.suspend(|| ());
                report(out, input, &target, &result, elapsed)?;
                if let Some(path) = &map {
                    let path = if several {
                        path.join(input.file_stem().unwrap_or_default())
                            .with_extension("csv")
                    } else {
                        path.clone()
                    };
                    let mut csv = String::from("kind,name,section,offset,size\n");
                    for e in &result.map {
                        writeln!(
                            csv,
                            "{},\"{}\",{},{},{}",
                            e.kind,
                            e.name.replace('"', "\"\""),
                            e.section,
                            e.offset,
                            e.size
                        )?;
                    }
                    write_atomically(&path, csv.as_bytes())?;
                }
                if let (Some(path), Some(text)) = (&dgml, &result.dgml) {
                    write_atomically(path, text.as_bytes())?;
                }
                if let (Some(path), Some(text)) = (&dot, &result.dot) {
                    write_atomically(path, text.as_bytes())?;
                }
                for (name, chain) in &result.why {
                    match chain {
                        Ok(chain) => {
                            writeln!(out, "why {name}:")?;
                            for (node, reason) in chain {
                                writeln!(out, "  {node}  <- {reason}")?;
                            }
                        }
                        Err(e) => writeln!(out, "why {name}: {e}")?,
                    }
                }
                if let Some(path) = &stats {
                    let path = if several {
                        path.join(input.file_stem().unwrap_or_default())
                            .with_extension("json")
                    } else {
                        path.clone()
                    };
                    let json = stats_json(input, &result, elapsed);
                    write_atomically(&path, serde_json::to_string_pretty(&json)?.as_bytes())?;
                }
            }
            progress.finish_and_clear();
        }
        Command::Inspect { module, wat } => {
            let bytes =
                std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
            let image_bytes = image_from_module(&bytes)
                .with_context(|| format!("reading the image of {}", module.display()))?;
            let image = Image::decode(image_bytes)
                .with_context(|| format!("decoding the image of {}", module.display()))?;
            if let Some(name) = wat {
                return print_function(&bytes, &name, out)
                    .with_context(|| format!("printing {name} from {}", module.display()));
            }
            writeln!(
                out,
                "{}: image {} bytes, version 1.{}",
                module.display(),
                image_bytes.len(),
                image.minor_version
            )?;
            if let Some(compiler) = &image.compiler {
                writeln!(out, "compiler: {compiler}")?;
            }
            for (i, section) in image.import_sections.iter().enumerate() {
                let kind = match section.kind {
                    ImportSectionType::UNKNOWN => "Unknown",
                    ImportSectionType::STUB_DISPATCH => "StubDispatch",
                    ImportSectionType::STRING_HANDLE => "StringHandle",
                    ImportSectionType::PORTABLE_ENTRY_POINT => "PortableEntryPoint",
                    _ => "?",
                };
                writeln!(
                    out,
                    "import section {i}: flags 0x{:04x} type {} ({kind}) entry {} bytes, {} cells",
                    section.flags.0,
                    section.kind.0,
                    section.entry_size,
                    section.cells.len()
                )?;
                for (c, cell) in section.cells.iter().enumerate() {
                    match &cell.signature {
                        FixupSignature::InjectStringThunks(thunks) => {
                            writeln!(
                                out,
                                "  [{c}] InjectStringThunks (0x39), {} thunks",
                                thunks.len()
                            )?;
                            for t in thunks {
                                writeln!(out, "      {:<24} slot {}", t.key, t.code)?;
                            }
                        }
                        FixupSignature::MethodEntry(m) => writeln!(
                            out,
                            "  [{c}] MethodEntry (0x13) 0x{:08x}{}",
                            m.token,
                            method_marks(m.flags)
                        )?,
                        FixupSignature::VirtualEntry(m) => writeln!(
                            out,
                            "  [{c}] VirtualEntry (0x16) 0x{:08x}{}, interpreter thunk slot {}",
                            m.token,
                            method_marks(m.flags),
                            cell.initial
                        )?,
                        FixupSignature::Helper(id) => {
                            writeln!(out, "  [{c}] Helper (0x1A) {id}")?;
                        }
                        FixupSignature::StringHandle(token) => {
                            writeln!(out, "  [{c}] StringHandle (0x1B) 0x{token:08x}")?;
                        }
                        FixupSignature::NewObject(token) => {
                            writeln!(out, "  [{c}] NewObject (0x1C) 0x{token:08x}")?;
                        }
                        FixupSignature::IsInstanceOf(token) => {
                            writeln!(out, "  [{c}] IsInstanceOf (0x1E) 0x{token:08x}")?;
                        }
                        FixupSignature::ChkCast(token) => {
                            writeln!(out, "  [{c}] ChkCast (0x1F) 0x{token:08x}")?;
                        }
                        FixupSignature::NewArray(token) => {
                            writeln!(out, "  [{c}] NewArray (0x1D) 0x{token:08x}")?;
                        }
                        FixupSignature::FieldAddress(token) => {
                            writeln!(out, "  [{c}] FieldAddress (0x20) 0x{token:08x}")?;
                        }
                        FixupSignature::TypeHandle(token) => {
                            writeln!(out, "  [{c}] TypeHandle (0x10) 0x{token:08x}")?;
                        }
                        FixupSignature::FieldHandle(token) => {
                            writeln!(out, "  [{c}] FieldHandle (0x12) 0x{token:08x}")?;
                        }
                        FixupSignature::ResumptionStubEntryPoint { method, stub } => writeln!(
                            out,
                            "  [{c}] ResumptionStubEntryPoint (0x38) 0x{:08x}{} stub slot {stub}",
                            method.token,
                            method_marks(method.flags)
                        )?,
                    }
                }
            }
            writeln!(
                out,
                "method entry points: {}",
                image.method_entry_points.len()
            )?;
            for e in image
                .method_entry_points
                .iter()
                .chain(&image.instance_entry_points)
            {
                let marks = method_marks(e.method.flags);
                writeln!(
                    out,
                    "  0x{:08x} slot {:>6} fixups {}{marks}",
                    e.method.token,
                    e.code,
                    e.fixups.len()
                )?;
            }
        }
        Command::Run {
            module,
            method,
            signature,
            args,
        } => {
            let bytes =
                std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
            let sig = WasmSignature::parse(&signature, PointerWidth::Wasm32)?;
            let loader = Arc::new(Loader::new(ThunkRuntime::default()));
            let mut exec = Executor::instantiate(
                &bytes,
                loader,
                Arc::new(NoInterpreter),
                ExecConfig::default(),
            )?;
            let func = sig.func_type();
            let params = &func.params[1..func.params.len() - 1];
            if params.len() != args.len() {
                bail!(
                    "{method} takes {} arguments, {} given",
                    params.len(),
                    args.len()
                );
            }
            let vals = params
                .iter()
                .zip(&args)
                .map(|(ty, a)| {
                    use crossgraph::codegen::WasmValueType::*;
                    Ok(match ty {
                        I32 => {
                            // int32 or uint32 (both travel as i32).
                            let v: i64 = a
                                .parse()
                                .with_context(|| format!("{a:?} is not an int32"))?;
                            if !(i64::from(i32::MIN)..=i64::from(u32::MAX)).contains(&v) {
                                bail!("{a} does not fit 32 bits");
                            }
                            wasmtime::Val::I32(v as i32)
                        }
                        I64 => wasmtime::Val::I64(
                            a.parse()
                                .with_context(|| format!("{a:?} is not an int64"))?,
                        ),
                        F32 => wasmtime::Val::F32(
                            a.parse::<f32>()
                                .with_context(|| format!("{a:?} is not a float32"))?
                                .to_bits(),
                        ),
                        F64 => wasmtime::Val::F64(
                            a.parse::<f64>()
                                .with_context(|| format!("{a:?} is not a float64"))?
                                .to_bits(),
                        ),
                        V128 => bail!("v128 arguments are not supported on the command line"),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let result = exec.invoke_by_name(&method, &sig, &vals)?;
            match result {
                Some(wasmtime::Val::I32(v)) => writeln!(out, "{v}")?,
                Some(wasmtime::Val::I64(v)) => writeln!(out, "{v}")?,
                Some(wasmtime::Val::F32(v)) => writeln!(out, "{}", f32::from_bits(v))?,
                Some(wasmtime::Val::F64(v)) => writeln!(out, "{}", f64::from_bits(v))?,
                Some(other) => writeln!(out, "{other:?}")?,
                None => writeln!(out, "(void)")?,
            }
        }
    }
    Ok(())
}

/// Groups a not-compiled reason by its kind (drops offsets and operands).
fn reason_kind(reason: &str) -> String {
    reason
        .split(": ")
        .last()
        .unwrap_or(reason)
        .split(" 0x")
        .next()
        .unwrap_or("")
        .to_string()
}

fn report(
    out: &mut String,
    input: &std::path::Path,
    target: &std::path::Path,
    result: &CompileOutput,
    elapsed: std::time::Duration,
) -> Result<()> {
    use std::fmt::Write as _;
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    for m in &result.not_compiled {
        *reasons.entry(reason_kind(&m.reason)).or_default() += 1;
    }
    writeln!(
        out,
        "{} -> {}: {} methods compiled, {} left to the interpreter, {} nodes marked, {} bytes, {:.2} s",
        input.display(),
        target.display(),
        result.compiled.len(),
        result.not_compiled.len(),
        result.marked_nodes,
        result.module.len(),
        elapsed.as_secs_f64()
    )?;
    let a = &result.analysis;
    writeln!(
        out,
        "  phases: analysis {:.3} s (expand {:.3}, mark {:.3}, compile {:.3}, finish {:.3}), emit {:.3} s",
        (a.expand_time + a.mark_time + a.compute_time + a.finish_time).as_secs_f64(),
        a.expand_time.as_secs_f64(),
        a.mark_time.as_secs_f64(),
        a.compute_time.as_secs_f64(),
        a.finish_time.as_secs_f64(),
        result.emit_time.as_secs_f64()
    )?;
    let kinds: Vec<String> = result
        .nodes_by_kind
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    writeln!(out, "  nodes: {}", kinds.join(", "))?;
    let mut top: Vec<(&String, &usize)> = reasons.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (reason, count) in top.iter().take(8) {
        writeln!(out, "  {count:>6}  {reason}")?;
    }
    for d in &result.diagnostics {
        writeln!(out, "  warning: {d}")?;
    }
    Ok(())
}

fn stats_json(
    input: &std::path::Path,
    result: &CompileOutput,
    elapsed: std::time::Duration,
) -> serde_json::Value {
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    for m in &result.not_compiled {
        *reasons.entry(reason_kind(&m.reason)).or_default() += 1;
    }
    let a = &result.analysis;
    serde_json::json!({
        "input": input.display().to_string(),
        "compiled": result.compiled.len(),
        "not_compiled": result.not_compiled.len(),
        "marked_nodes": result.marked_nodes,
        "nodes_by_kind": result.nodes_by_kind,
        "module_bytes": result.module.len(),
        "seconds": elapsed.as_secs_f64(),
        "phases": {
            "expand_seconds": a.expand_time.as_secs_f64(),
            "mark_seconds": a.mark_time.as_secs_f64(),
            "compile_seconds": a.compute_time.as_secs_f64(),
            "finish_seconds": a.finish_time.as_secs_f64(),
            "emit_seconds": result.emit_time.as_secs_f64(),
        },
        "timeline": result
            .phases
            .iter()
            .map(|(phase, time)| serde_json::json!({"phase": phase, "seconds": time.as_secs_f64()}))
            .collect::<Vec<_>>(),
        "not_compiled_by_reason": reasons,
        "diagnostics": result.diagnostics,
        "compiled_methods": result.compiled.iter().map(|(_, n)| n).collect::<Vec<_>>(),
    })
}

/// Prints the WAT of the function named `name` (its symbol, or a method name before `@`).
fn print_function(bytes: &[u8], name: &str, out: &mut String) -> Result<()> {
    // Find the function index in the name section.
    let mut index = None;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let wasmparser::Payload::CustomSection(c) = payload?
            && let wasmparser::KnownCustom::Name(names) = c.as_known()
        {
            for n in names {
                if let wasmparser::Name::Function(map) = n? {
                    for naming in map {
                        let naming = naming?;
                        let full = naming.name;
                        if full == name || full.split('@').next() == Some(name) {
                            index = Some(naming.index);
                            break;
                        }
                    }
                }
            }
        }
    }
    let Some(index) = index else {
        bail!("no function named {name:?} (names are symbols such as Ns.Type::Method@06000001)");
    };
    let text = wasmprinter::print_bytes(bytes)?;
    let marker = format!("(;{index};)");
    let mut lines = text
        .lines()
        .skip_while(|l| !(l.trim_start().starts_with("(func ") && l.contains(&marker)));
    let Some(first) = lines.next() else {
        bail!("function {index} not found in the printed module");
    };
    let indent = first.len() - first.trim_start().len();
    use std::fmt::Write as _;
    writeln!(out, "{first}")?;
    for line in lines {
        let this = line.len() - line.trim_start().len();
        if this <= indent && !line.trim().is_empty() {
            if line.trim() == ")" {
                writeln!(out, "{line}")?;
            }
            break;
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// ` [ASYNC]`, ` [RESUME]`, ` [UCO]` for the flags of a method reference.
fn method_marks(flags: MethodSigFlags) -> String {
    let mut marks = String::new();
    if flags.0 & MethodSigFlags::ASYNC_VARIANT.0 != 0 {
        marks.push_str(" [ASYNC]");
    }
    if flags.0 & MethodSigFlags::RESUMPTION_STUB.0 != 0 {
        marks.push_str(" [RESUME]");
    }
    if flags.0 & UNMANAGED_CALLERS_ONLY.0 != 0 {
        marks.push_str(" [UCO]");
    }
    marks
}
