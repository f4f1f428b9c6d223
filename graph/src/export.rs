//! The canonical layout shared by the DGML and DOT exporters: nodes numbered by final order,
//! then root-reason pseudo-nodes, then combined `(A, B)` nodes of conditional edges
//! (crossgen2's `DgmlWriter` layout), links in a deterministic order.

use rustc_hash::FxHashMap;

use crate::mark_log::MarkLog;
use crate::{AnalysisError, Analyzer, LoggedEdge, MarkStrategy, NodeSource};

/// What a link means; exporters style links by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkKind {
    /// Root reason pseudo-node -> root.
    Root,
    /// Static or dynamic dependency.
    Static,
    /// Depender -> combined node.
    Primary,
    /// Condition -> combined node.
    Secondary,
    /// Combined node -> dependency.
    Conditional,
}

#[derive(Debug)]
pub(crate) struct Link<'r> {
    pub(crate) source: usize,
    pub(crate) target: usize,
    pub(crate) reason: &'r str,
    pub(crate) kind: LinkKind,
}

/// Node labels and links, ready to write.
#[derive(Debug)]
pub(crate) struct Layout<'r> {
    /// Labels of marked nodes (in final order), then root reasons, then combined nodes.
    pub(crate) labels: Vec<String>,
    /// Index of the first root-reason node.
    pub(crate) first_root: usize,
    /// Index of the first combined node.
    pub(crate) first_combined: usize,
    pub(crate) links: Vec<Link<'r>>,
}

pub(crate) fn layout<S: NodeSource, M: MarkStrategy>(
    analyzer: &Analyzer<'_, S, M>,
) -> Result<Layout<'static>, AnalysisError> {
    let order = analyzer.marked_nodes()?;
    let log = analyzer.log()?;
    let mut rank = FxHashMap::default();
    let mut labels = Vec::with_capacity(order.len());
    for (i, &node) in order.iter().enumerate() {
        rank.insert(node, i);
        labels.push(analyzer.name(node)?);
    }
    let mut edges: Vec<LoggedEdge> = Vec::new();
    log.for_each_edge(&mut |e| edges.push(e));
    let r = |n: crate::NodeId| rank[&n];
    edges.sort_by(|a, b| {
        (a.source.map(r), r(a.target), a.reason, a.condition.map(r)).cmp(&(
            b.source.map(r),
            r(b.target),
            b.reason,
            b.condition.map(r),
        ))
    });
    edges.dedup();

    let first_root = labels.len();
    let mut root_reasons: Vec<&'static str> = edges
        .iter()
        .filter(|e| e.source.is_none())
        .map(|e| e.reason)
        .collect();
    root_reasons.sort_unstable();
    root_reasons.dedup();
    labels.extend(root_reasons.iter().map(|s| s.to_string()));
    let first_combined = labels.len();

    let mut combined: FxHashMap<(usize, usize), usize> = FxHashMap::default();
    let mut links = Vec::with_capacity(edges.len());
    for e in &edges {
        let target = r(e.target);
        match (e.source, e.condition) {
            (None, _) => links.push(Link {
                source: first_root + root_reasons.binary_search(&e.reason).unwrap_or(0),
                target,
                reason: "",
                kind: LinkKind::Root,
            }),
            (Some(source), None) => links.push(Link {
                source: r(source),
                target,
                reason: e.reason,
                kind: LinkKind::Static,
            }),
            (Some(source), Some(condition)) => {
                let pair = (r(source), r(condition));
                let node = match combined.get(&pair) {
                    Some(&node) => node,
                    None => {
                        let node = labels.len();
                        labels.push(format!("({}, {})", labels[pair.0], labels[pair.1]));
                        combined.insert(pair, node);
                        links.push(Link {
                            source: pair.0,
                            target: node,
                            reason: "Primary",
                            kind: LinkKind::Primary,
                        });
                        links.push(Link {
                            source: pair.1,
                            target: node,
                            reason: "Secondary",
                            kind: LinkKind::Secondary,
                        });
                        node
                    }
                };
                links.push(Link {
                    source: node,
                    target,
                    reason: e.reason,
                    kind: LinkKind::Conditional,
                });
            }
        }
    }
    Ok(Layout {
        labels,
        first_root,
        first_combined,
        links,
    })
}
