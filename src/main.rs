//! The `crossgraph` command line: compile assemblies to a wasm ReadyToRun image, inspect an
//! image, run compiled methods.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use crossgraph::codegen::{PointerWidth, WasmSignature};
use crossgraph::nodes::typesystem::Assembly;
use crossgraph::nodes::{CompileOptions, compile_assembly};
use crossgraph::runtime_core::exec::{ExecConfig, Executor, Interpreter};
use crossgraph::runtime_core::format::{FixupSignature, Image};
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
    /// Compile an assembly's methods to a wasm module carrying an R2R image.
    Compile {
        /// The input assembly.
        input: PathBuf,
        /// The output module.
        #[arg(short, long)]
        output: PathBuf,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Write statistics as JSON to this file.
        #[arg(long)]
        stats: Option<PathBuf>,
    },
    /// List an image: header, sections, import sections with decoded fixups, methods.
    Inspect {
        /// A module written by `crossgraph compile`.
        module: PathBuf,
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
            input,
            output,
            threads,
            stats,
        } => {
            let started = Instant::now();
            let assembly = Assembly::load(&input)?; // its errors name the file
            let view = assembly.view()?;
            let result = compile_assembly(&view, &CompileOptions { threads })?;
            write_atomically(&output, &result.module)?;
            let elapsed = started.elapsed();
            let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
            for m in &result.not_compiled {
                // Group by the reason's kind (drop offsets and operands).
                let kind = m
                    .reason
                    .split(": ")
                    .last()
                    .unwrap_or(&m.reason)
                    .split(" 0x")
                    .next()
                    .unwrap_or("")
                    .to_string();
                *reasons.entry(kind).or_default() += 1;
            }
            writeln!(
                out,
                "{}: {} methods compiled, {} left to the interpreter, {} nodes marked, {} bytes, {:.2} s",
                input.display(),
                result.compiled.len(),
                result.not_compiled.len(),
                result.marked_nodes,
                result.module.len(),
                elapsed.as_secs_f64()
            )?;
            let mut top: Vec<(&String, &usize)> = reasons.iter().collect();
            top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (reason, count) in top.iter().take(8) {
                writeln!(out, "  {count:>6}  {reason}")?;
            }
            if let Some(path) = stats {
                let json = serde_json::json!({
                    "input": input.display().to_string(),
                    "compiled": result.compiled.len(),
                    "not_compiled": result.not_compiled.len(),
                    "marked_nodes": result.marked_nodes,
                    "module_bytes": result.module.len(),
                    "seconds": elapsed.as_secs_f64(),
                    "not_compiled_by_reason": reasons,
                    "compiled_methods": result.compiled.iter().map(|(_, n)| n).collect::<Vec<_>>(),
                });
                write_atomically(&path, serde_json::to_string_pretty(&json)?.as_bytes())?;
            }
        }
        Command::Inspect { module } => {
            let bytes =
                std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
            let image_bytes = image_from_module(&bytes)
                .with_context(|| format!("reading the image of {}", module.display()))?;
            let image = Image::decode(image_bytes)
                .with_context(|| format!("decoding the image of {}", module.display()))?;
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
                writeln!(
                    out,
                    "import section {i}: flags 0x{:04x} type {} entry {} bytes, {} cells",
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
                        other => writeln!(out, "  [{c}] {other:?}")?,
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
                let marks = if e.method.flags.0 & 0x100 != 0 {
                    " [ASYNC]"
                } else {
                    ""
                };
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
