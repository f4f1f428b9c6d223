//! DGML export (the format crossgen2's `--map`-era tooling and Visual Studio read): root
//! reasons as pseudo-nodes, conditional edges through a combined `(A, B)` node.

use std::io::Write;

use crate::export::{LinkKind, layout};
use crate::{AnalysisError, Analyzer, MarkStrategy, NodeSource};

/// Escapes text for an XML attribute value; characters XML 1.0 cannot carry become U+FFFD.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push_str(&format!("&#x{:X};", c as u32)),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Writes the analysis as DGML (crossgen2 `DgmlWriter` layout, one-space indentation).
///
/// Nodes are numbered by final order, so the output is byte-identical for any thread count
/// and shuffle seed. With [`NoLog`](crate::NoLog) only nodes are written.
///
/// # Errors
/// [`AnalysisError::NotCompleted`] before marking completed; [`AnalysisError::Io`].
pub fn write_dgml<S: NodeSource, M: MarkStrategy, W: Write>(
    analyzer: &Analyzer<'_, S, M>,
    out: W,
) -> Result<(), AnalysisError> {
    let layout = layout(analyzer)?;
    let mut out = std::io::BufWriter::new(out);
    writeln!(out, r#"<?xml version="1.0" encoding="utf-8"?>"#)?;
    writeln!(
        out,
        r#"<DirectedGraph xmlns="http://schemas.microsoft.com/vs/2009/dgml">"#
    )?;
    writeln!(out, " <Nodes>")?;
    for (id, label) in layout.labels.iter().enumerate() {
        writeln!(out, r#"  <Node Id="{id}" Label="{}" />"#, xml_escape(label))?;
    }
    writeln!(out, " </Nodes>")?;
    writeln!(out, " <Links>")?;
    for link in &layout.links {
        let stroke = match link.kind {
            LinkKind::Root => String::new(),
            LinkKind::Static => r##" Stroke="#FF0000""##.to_string(),
            LinkKind::Primary | LinkKind::Secondary => r##" Stroke="#00FF00""##.to_string(),
            LinkKind::Conditional => r##" Stroke="#0000FF""##.to_string(),
        };
        writeln!(
            out,
            r#"  <Link Source="{}" Target="{}" Reason="{}"{stroke} />"#,
            link.source,
            link.target,
            xml_escape(link.reason)
        )?;
    }
    writeln!(out, " </Links>")?;
    writeln!(out, " <Properties>")?;
    writeln!(
        out,
        r#"  <Property Id="Label" Label="Label" DataType="String" />"#
    )?;
    writeln!(
        out,
        r#"  <Property Id="Reason" Label="Reason" DataType="String" />"#
    )?;
    writeln!(out, " </Properties>")?;
    writeln!(out, "</DirectedGraph>")?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::xml_escape;

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(xml_escape(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(xml_escape("x\ny\u{1}"), "x&#xA;y\u{FFFD}");
    }
}
