//! Errors of the analyzer and its exporters.

use crate::{NodeId, Reason};

/// What can go wrong while analyzing or querying an analysis.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// [`Analyzer::add_root`](crate::Analyzer::add_root) after marking completed: the marked
    /// set is final, so the root would be silently lost.
    #[error(
        "root {name} (reason {reason:?}) added after marking completed; create a new analyzer to analyze more roots"
    )]
    RootAfterCompletion {
        /// The root's name.
        name: String,
        /// The root's reason.
        reason: Reason,
    },
    /// A deferred node still reports uncomputed static dependencies after
    /// [`NodeSource::compute_dependencies`](crate::NodeSource::compute_dependencies) ran on it.
    #[error(
        "compute routine left node {node} ({name}) with uncomputed static dependencies in phase {phase}"
    )]
    Uncomputed {
        /// The node.
        node: NodeId,
        /// Its name.
        name: String,
        /// The phase whose batch held it.
        phase: u32,
    },
    /// A node id that this analyzer never produced.
    #[error("node {node} was not produced by this analyzer")]
    UnknownNode {
        /// The id.
        node: NodeId,
    },
    /// A query that needs the final result, before `compute_marked_nodes`.
    #[error("marking has not completed: call compute_marked_nodes first")]
    NotCompleted,
    /// `why` on a node the log knows nothing of (not marked, or the strategy is `NoLog`).
    #[error(
        "the mark log has no reason for node {node} ({name}): it is not marked, or the analyzer runs without a log"
    )]
    NotLogged {
        /// The node.
        node: NodeId,
        /// Its name.
        name: String,
    },
    /// A previous call failed; the analyzer's state is incomplete.
    #[error("a previous analysis step failed; create a new analyzer")]
    Failed,
    /// The thread pool could not be created.
    #[error("cannot build a thread pool with {threads} threads: {source}")]
    ThreadPool {
        /// Requested thread count.
        threads: usize,
        /// Cause.
        source: rayon::ThreadPoolBuildError,
    },
    /// Writing an export failed.
    #[error("cannot write the dependency graph: {0}")]
    Io(#[from] std::io::Error),
}
