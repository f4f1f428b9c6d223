//! Graphviz DOT export, with the same layout as the DGML export.

use std::io::Write;

use crate::export::{LinkKind, layout};
use crate::{AnalysisError, Analyzer, MarkStrategy, NodeSource};

/// Escapes text for a DOT double-quoted string.
fn dot_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Writes the analysis as a Graphviz `digraph`: marked nodes as boxes (`n<rank>`), root
/// reasons as dashed ellipses (`r<i>`), combined conditional nodes as diamonds (`c<i>`).
/// Byte-identical for any thread count and shuffle seed.
///
/// # Errors
/// [`AnalysisError::NotCompleted`] before marking completed; [`AnalysisError::Io`].
pub fn write_dot<S: NodeSource, M: MarkStrategy, W: Write>(
    analyzer: &Analyzer<'_, S, M>,
    out: W,
) -> Result<(), AnalysisError> {
    let layout = layout(analyzer)?;
    let name = |i: usize| {
        if i < layout.first_root {
            format!("n{i}")
        } else if i < layout.first_combined {
            format!("r{}", i - layout.first_root)
        } else {
            format!("c{}", i - layout.first_combined)
        }
    };
    let mut out = std::io::BufWriter::new(out);
    writeln!(out, "digraph dependencies {{")?;
    writeln!(out, "  node [shape=box];")?;
    for (i, label) in layout.labels.iter().enumerate() {
        let style = if i < layout.first_root {
            ""
        } else if i < layout.first_combined {
            ", shape=ellipse, style=dashed"
        } else {
            ", shape=diamond"
        };
        writeln!(
            out,
            "  {} [label=\"{}\"{style}];",
            name(i),
            dot_escape(label)
        )?;
    }
    for link in &layout.links {
        let attrs = match link.kind {
            LinkKind::Root => String::new(),
            LinkKind::Static => format!(" [label=\"{}\"]", dot_escape(link.reason)),
            LinkKind::Primary | LinkKind::Secondary => {
                format!(" [label=\"{}\", color=green]", link.reason)
            }
            LinkKind::Conditional => {
                format!(" [label=\"{}\", color=blue]", dot_escape(link.reason))
            }
        };
        writeln!(
            out,
            "  {} -> {}{attrs};",
            name(link.source),
            name(link.target)
        )?;
    }
    writeln!(out, "}}")?;
    out.flush()?;
    Ok(())
}
