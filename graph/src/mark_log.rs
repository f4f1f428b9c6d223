//! Mark strategies (no log, first mark, full graph) and the logs they leave behind.
//!
//! The strategy is a type parameter of [`Analyzer`](crate::Analyzer), so a build without a
//! log carries a zero-sized value through the marking loop and pays nothing (crossgen2's
//! `NoLogStrategy`, `FirstMarkLogStrategy`, `FullGraphLogStrategy`).
//!
//! Logs are deterministic: which edge a first-mark log keeps does not depend on the thread
//! count or the mark order. The analyzer marks level by level (a node's level is its distance
//! from the roots in marking steps), and the first-mark log keeps, among the edges that reached
//! a node in the level where it was marked, the least one in a fixed order (roots first, then
//! by the source key's hash, the source key, the reason, the condition).
//!
//! While marking, logged edges carry 8 bytes, not heap objects and strings: the source and
//! the reason id (`FirstMark` packs 16 bits of the source key's hash beside a 16-bit reason
//! id). The rare edges a condition enabled carry the condition beside them.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::sync::OnceLock;

use petgraph::graph::{Graph, NodeIndex};
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::{NodeId, Reason};

/// One logged edge: `source` (or a root reason) made `target` marked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LoggedEdge {
    /// The node whose dependency this is; `None` for a root.
    pub source: Option<NodeId>,
    /// For a conditional dependency, the node whose marking enabled it.
    pub condition: Option<NodeId>,
    /// The node that was marked.
    pub target: NodeId,
    /// Why (for a root: the root reason).
    pub reason: Reason,
}

/// What a log can answer. Implemented by every strategy's log (`()` for [`NoLog`]).
pub trait MarkLog {
    /// Calls `f` for every logged edge, in no particular order (exports sort them).
    fn for_each_edge(&self, f: &mut dyn FnMut(LoggedEdge));

    /// A chain of edges from a root to `node`, root edge first, or `None` when the log does
    /// not know the node. [`FullGraphLog`] returns a shortest chain (ties broken by node
    /// order); [`FirstMarkLog`] follows first marks, which can be longer when a shorter path
    /// went through a deferred node (crossgen2's first-mark log behaves the same).
    fn path_to(&self, node: NodeId) -> Option<Vec<LoggedEdge>>;
}

/// Marker for "no source node": the edge is a root.
pub(crate) const NONE: u32 = u32::MAX;

pub(crate) fn opt_id(raw: u32) -> Option<NodeId> {
    (raw != NONE).then(|| sealed::id(raw))
}

pub(crate) mod sealed {
    use super::*;

    /// Where an edge came from, carried through marking when a log needs it.
    #[derive(Clone, Copy, Debug)]
    pub struct EdgeOrigin {
        pub(crate) source: u32,
        pub(crate) condition: u32,
        /// The source key's [`order_hash`](crate::analyzer) (16 bits; 0 for roots).
        pub(crate) source_hash: u32,
        /// Id in the analyzer's reason table.
        pub(crate) reason: u32,
    }

    impl EdgeOrigin {
        #[inline]
        pub(crate) fn is_root(&self) -> bool {
            self.source == NONE
        }

        pub(crate) fn to_edge(self, target: NodeId, names: &[Reason]) -> LoggedEdge {
            LoggedEdge {
                source: opt_id(self.source),
                condition: opt_id(self.condition),
                target,
                reason: names[self.reason as usize],
            }
        }

        /// Compares two candidate first edges without looking at keys; `None` when only the
        /// keys can decide (equal source hashes of distinct nodes, or distinct conditions).
        #[inline]
        pub(crate) fn fast_cmp(&self, other: &EdgeOrigin, names: &[Reason]) -> Option<Ordering> {
            let reason = || names[self.reason as usize].cmp(names[other.reason as usize]);
            match (self.is_root(), other.is_root()) {
                (true, false) => return Some(Ordering::Less),
                (false, true) => return Some(Ordering::Greater),
                (true, true) => return Some(reason()),
                (false, false) => {}
            }
            if self.source_hash != other.source_hash {
                return Some(self.source_hash.cmp(&other.source_hash));
            }
            if self.source != other.source {
                return None;
            }
            match reason() {
                Ordering::Equal if self.condition != other.condition => None,
                ord => Some(ord),
            }
        }
    }

    #[inline]
    pub(crate) fn id(raw: u32) -> NodeId {
        NodeId::from_parts(
            raw as usize & (crate::id::PARTITIONS - 1),
            raw >> crate::id::PARTITION_BITS,
        )
    }

    /// The per-strategy hooks of the marking loop. Sealed: the three strategies are the API.
    pub trait Strategy: Default + Send + Sync + 'static {
        /// Whether edges carry their origin at all.
        const LOGS: bool;
        /// Whether the origin needs the source key's hash (first-mark ordering).
        const NEEDS_HASH: bool;
        /// Whether edges into a node already marked matter only within the level that
        /// marked it (first mark), so the marking loop can skip older nodes without
        /// touching the store.
        const SAME_LEVEL_REPEATS_ONLY: bool;
        /// Per-edge data carried from expansion to marking (everything but the condition,
        /// which the rare conditional edges carry beside it).
        type Carry: Copy + Send + Sync;
        /// Per-partition log storage, written by the partition's worker only.
        type Store: Default + Send + Sync;
        /// The finished log.
        type Log: MarkLog + Send + Sync;

        /// The carry of an edge from `origin` (whose condition is ignored).
        fn carry(origin: EdgeOrigin) -> Self::Carry;
        /// Records an edge into `target` (`condition`: the raw id of the node whose marking
        /// enabled it, or `NONE`).
        fn record(
            store: &mut Self::Store,
            target: NodeId,
            newly: bool,
            c: Self::Carry,
            condition: u32,
            names: &[Reason],
        );
        /// Contested first-edge candidates (only keys can order them), drained after each step.
        fn take_contests(_store: &mut Self::Store) -> Vec<(u32, EdgeOrigin)> {
            Vec::new()
        }
        fn current(_store: &Self::Store, _local: u32) -> Option<EdgeOrigin> {
            None
        }
        fn replace(_store: &mut Self::Store, _local: u32, _origin: EdgeOrigin) {}
        /// Makes room in a partition's store for `nodes` more nodes (the capacity hint).
        fn reserve(_store: &mut Self::Store, _nodes: usize) {}
        /// Builds the log; `order` is the final node order, `id_bound` exceeds every id index.
        fn finish(
            stores: Vec<Self::Store>,
            order: &[NodeId],
            id_bound: usize,
            names: Vec<Reason>,
        ) -> Self::Log;
    }
}

use sealed::{EdgeOrigin, Strategy};

/// A mark strategy: [`NoLog`], [`FirstMark`] or [`FullGraph`].
pub trait MarkStrategy: Strategy {}

/// Records nothing. The marking loop carries `()` per edge.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLog;

/// Records, per node, the edge that first marked it: enough to answer "why is this here?".
///
/// # Panics
/// Marking panics when the node source uses more than [`FIRST_MARK_MAX_REASONS`] distinct
/// reason texts (edges carry 16-bit reason ids while marking).
#[derive(Clone, Copy, Debug, Default)]
pub struct FirstMark;

/// Records every edge; the log offers them as a petgraph [`Graph`].
#[derive(Clone, Copy, Debug, Default)]
pub struct FullGraph;

impl MarkStrategy for NoLog {}
impl MarkStrategy for FirstMark {}
impl MarkStrategy for FullGraph {}

impl MarkLog for () {
    fn for_each_edge(&self, _f: &mut dyn FnMut(LoggedEdge)) {}
    fn path_to(&self, _node: NodeId) -> Option<Vec<LoggedEdge>> {
        None
    }
}

impl Strategy for NoLog {
    const LOGS: bool = false;
    const NEEDS_HASH: bool = false;
    const SAME_LEVEL_REPEATS_ONLY: bool = false;
    type Carry = ();
    type Store = ();
    type Log = ();

    #[inline(always)]
    fn carry(_origin: EdgeOrigin) {}
    #[inline(always)]
    fn record(_: &mut (), _: NodeId, _: bool, _: (), _: u32, _: &[Reason]) {}
    fn finish(_stores: Vec<()>, _order: &[NodeId], _id_bound: usize, _names: Vec<Reason>) {}
}

/// What a first-mark edge carries while marking, and what the log keeps per node: its source
/// (low 32 bits) and a word of 16 bits of the source key's hash above the 16-bit reason id
/// (high 32 bits). A condition, when there is one, is kept beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(hidden)]
pub struct FirstMarkCarry {
    /// One `u64` rather than two `u32`s: a bucket entry is then written with two stores (key,
    /// carry), not three (FirstMark ~2 ms faster at 2 threads, ~3-5 ms at 1).
    bits: u64,
}

impl FirstMarkCarry {
    /// No edge: the node is not marked (a root's word is below 2^16).
    const UNMARKED: FirstMarkCarry = FirstMarkCarry::new(NONE, u32::MAX);

    #[inline(always)]
    const fn new(source: u32, hash_reason: u32) -> FirstMarkCarry {
        FirstMarkCarry {
            bits: (hash_reason as u64) << 32 | source as u64,
        }
    }

    /// The edge's source, `NONE` for a root edge.
    #[inline(always)]
    fn source(self) -> u32 {
        self.bits as u32
    }

    /// The 16 bits of the source key's hash that order first-mark contests.
    #[inline(always)]
    fn source_hash(self) -> u64 {
        self.bits >> 48
    }

    /// The carry of `origin` (its condition left out).
    #[inline(always)]
    fn of(origin: &EdgeOrigin) -> FirstMarkCarry {
        FirstMarkCarry::new(origin.source, origin.source_hash << 16 | origin.reason)
    }

    #[inline(always)]
    fn origin(self, condition: u32) -> EdgeOrigin {
        let hash_reason = (self.bits >> 32) as u32;
        EdgeOrigin {
            source: self.bits as u32,
            condition,
            source_hash: hash_reason >> 16,
            reason: hash_reason & 0xffff,
        }
    }
}

/// Distinct reason texts a [`FirstMark`] log can tell apart (its edges carry 16-bit ids).
pub const FIRST_MARK_MAX_REASONS: usize = 1 << 16;

/// First-edge table of one partition: 8 bytes a node, conditions beside it (they are rare).
#[derive(Debug, Default, Clone)]
struct FirstEdges {
    /// By local index: the best edge so far, or `FirstMarkCarry::UNMARKED`.
    edges: Vec<FirstMarkCarry>,
    /// By local index, for the nodes whose best edge a condition enabled: that condition.
    conditions: FxHashMap<u32, u32>,
}

impl FirstEdges {
    #[inline]
    fn get(&self, local: u32) -> Option<EdgeOrigin> {
        let edge = *self.edges.get(local as usize)?;
        (edge != FirstMarkCarry::UNMARKED).then(|| {
            let condition = if self.conditions.is_empty() {
                NONE
            } else {
                self.conditions.get(&local).copied().unwrap_or(NONE)
            };
            edge.origin(condition)
        })
    }

    #[inline]
    fn set(&mut self, local: u32, edge: FirstMarkCarry, condition: u32) {
        let slot = local as usize;
        if self.edges.len() <= slot {
            self.edges.resize(slot + 1, FirstMarkCarry::UNMARKED);
        }
        self.edges[slot] = edge;
        if condition != NONE {
            self.conditions.insert(local, condition);
        } else if !self.conditions.is_empty() {
            self.conditions.remove(&local);
        }
    }
}

/// First-mark storage of one partition.
#[derive(Debug, Default)]
#[doc(hidden)]
pub struct FirstMarkStore {
    first: FirstEdges,
    contests: Vec<(u32, EdgeOrigin)>,
}

impl Strategy for FirstMark {
    const LOGS: bool = true;
    const NEEDS_HASH: bool = true;
    const SAME_LEVEL_REPEATS_ONLY: bool = true;
    type Carry = FirstMarkCarry;
    type Store = FirstMarkStore;
    type Log = FirstMarkLog;

    #[inline(always)]
    fn carry(origin: EdgeOrigin) -> FirstMarkCarry {
        assert!(
            (origin.reason as usize) < FIRST_MARK_MAX_REASONS,
            "a FirstMark log tells at most {FIRST_MARK_MAX_REASONS} distinct reason texts apart"
        );
        debug_assert!(origin.source_hash <= 0xffff);
        FirstMarkCarry::of(&origin)
    }
    /// Called for every edge into a node in the level that marked it (the analyzer skips
    /// older nodes), so later edges compete only within that level.
    #[inline(always)]
    fn record(
        store: &mut FirstMarkStore,
        target: NodeId,
        newly: bool,
        c: FirstMarkCarry,
        condition: u32,
        names: &[Reason],
    ) {
        let local = target.local();
        if newly {
            store.first.set(local, c, condition);
            return;
        }
        if condition == NONE
            && store.first.conditions.is_empty()
            && let Some(slot) = store.first.edges.get_mut(local as usize)
        {
            // The common contest: two edges from non-root sources of different source hashes,
            // no condition on either. The smaller hash wins (`fast_cmp`'s order), chosen with
            // a select rather than a branch: which edge wins is a coin toss the branch
            // predictor loses ~40% of the time (this bench: ~810 K such edges a run).
            let best = *slot;
            let (candidate_hash, best_hash) = (c.source_hash(), best.source_hash());
            if c.source() != NONE && best.source() != NONE && candidate_hash != best_hash {
                *slot = if candidate_hash < best_hash { c } else { best };
                return;
            }
        }
        if let Some(best) = store.first.get(local) {
            let candidate = c.origin(condition);
            match candidate.fast_cmp(&best, names) {
                Some(Ordering::Less) => store.first.set(local, c, condition),
                Some(_) => {}
                None => store.contests.push((local, candidate)),
            }
        }
    }
    fn reserve(store: &mut FirstMarkStore, nodes: usize) {
        store.first.edges.reserve(nodes);
    }
    fn take_contests(store: &mut FirstMarkStore) -> Vec<(u32, EdgeOrigin)> {
        std::mem::take(&mut store.contests)
    }
    fn current(store: &FirstMarkStore, local: u32) -> Option<EdgeOrigin> {
        store.first.get(local)
    }
    fn replace(store: &mut FirstMarkStore, local: u32, origin: EdgeOrigin) {
        store
            .first
            .set(local, FirstMarkCarry::of(&origin), origin.condition);
    }
    fn finish(
        stores: Vec<FirstMarkStore>,
        _order: &[NodeId],
        _id_bound: usize,
        names: Vec<Reason>,
    ) -> FirstMarkLog {
        // The stores already are the log: no per-node rebuilding.
        let partitions = stores.into_iter().map(|s| s.first).collect();
        FirstMarkLog { partitions, names }
    }
}

/// The first-mark log: for each marked node, the edge that marked it (8 bytes a node, plus
/// the condition of the few edges a condition enabled).
#[derive(Clone, Debug)]
pub struct FirstMarkLog {
    partitions: Vec<FirstEdges>,
    names: Vec<Reason>,
}

impl FirstMarkLog {
    /// The edge that marked `node`, or `None` if the node is not marked (or not of this log).
    pub fn first_edge(&self, node: NodeId) -> Option<LoggedEdge> {
        self.partitions
            .get(node.partition())?
            .get(node.local())
            .map(|origin| origin.to_edge(node, &self.names))
    }
}

impl MarkLog for FirstMarkLog {
    fn for_each_edge(&self, f: &mut dyn FnMut(LoggedEdge)) {
        for (p, first) in self.partitions.iter().enumerate() {
            for local in 0..first.edges.len() as u32 {
                if let Some(origin) = first.get(local) {
                    f(origin.to_edge(NodeId::from_parts(p, local), &self.names));
                }
            }
        }
    }

    fn path_to(&self, node: NodeId) -> Option<Vec<LoggedEdge>> {
        // Levels strictly decrease along first edges, so this walk ends at a root.
        let mut path = Vec::new();
        let mut at = node;
        loop {
            let edge = self.first_edge(at)?;
            path.push(edge);
            match edge.source {
                Some(source) => at = source,
                None => break,
            }
        }
        path.reverse();
        Some(path)
    }
}

/// What a full-graph edge carries while marking: source and reason.
#[derive(Clone, Copy, Debug)]
#[doc(hidden)]
pub struct FullGraphCarry {
    source: u32,
    reason: u32,
}

/// Origin of an edge in the full-graph log (no hash: nothing is compared while marking).
#[derive(Clone, Copy, Debug)]
#[doc(hidden)]
pub struct FullOrigin {
    source: u32,
    condition: u32,
    reason: u32,
}

/// An edge as the full-graph store keeps it while marking: 12 bytes (a condition, rare, is
/// kept aside in [`FullGraphStore::conditions`]).
#[derive(Clone, Copy, Debug)]
struct StoredEdge {
    /// Local index of the target in the store's partition.
    target: u32,
    source: u32,
    reason: u32,
}

/// Full-graph storage of one partition: every edge into the partition's nodes, in marking
/// order.
#[derive(Debug, Default)]
#[doc(hidden)]
pub struct FullGraphStore {
    edges: Vec<StoredEdge>,
    /// `(index in edges, condition)` of the edges a condition enabled, ascending.
    conditions: Vec<(u32, u32)>,
}

/// An incoming edge in [`IncomingRows`]: 8 bytes (its condition, if any, kept aside).
#[derive(Clone, Copy, Debug)]
struct RowEdge {
    source: u32,
    reason: u32,
}

/// Incoming edges of one partition's nodes, grouped by target (compressed rows).
#[derive(Debug, Default)]
struct IncomingRows {
    /// `offsets[local]..offsets[local + 1]` indexes `edges`.
    offsets: Vec<u32>,
    edges: Vec<RowEdge>,
    /// `(index in edges, condition)` of the edges a condition enabled, ascending.
    conditions: Vec<(u32, u32)>,
}

impl IncomingRows {
    /// Counting sort of the partition's edges by target (stable: a row keeps marking order).
    fn build(store: FullGraphStore) -> Self {
        let locals = store
            .edges
            .iter()
            .map(|e| e.target as usize + 1)
            .max()
            .unwrap_or(0);
        let mut offsets = vec![0u32; locals + 1];
        for e in &store.edges {
            offsets[e.target as usize + 1] += 1;
        }
        for i in 1..offsets.len() {
            offsets[i] += offsets[i - 1];
        }
        let mut next = offsets.clone();
        let filler = RowEdge {
            source: NONE,
            reason: 0,
        };
        let mut edges = vec![filler; store.edges.len()];
        // Edges between two conditioned ones move in a tight loop; a conditioned edge's
        // condition follows it to its slot.
        fn scatter(from: &[StoredEdge], next: &mut [u32], edges: &mut [RowEdge]) {
            for e in from {
                let slot = &mut next[e.target as usize];
                edges[*slot as usize] = RowEdge {
                    source: e.source,
                    reason: e.reason,
                };
                *slot += 1;
            }
        }
        let mut conditions = Vec::with_capacity(store.conditions.len());
        let mut from = 0;
        for &(at, condition) in &store.conditions {
            let at = at as usize;
            scatter(&store.edges[from..at], &mut next, &mut edges);
            conditions.push((next[store.edges[at].target as usize], condition));
            scatter(&store.edges[at..=at], &mut next, &mut edges);
            from = at + 1;
        }
        scatter(&store.edges[from..], &mut next, &mut edges);
        conditions.sort_unstable();
        IncomingRows {
            offsets,
            edges,
            conditions,
        }
    }

    /// The edges into `local`, in marking order.
    fn row(&self, local: u32) -> impl Iterator<Item = FullOrigin> + '_ {
        let (start, end) = match (
            self.offsets.get(local as usize),
            self.offsets.get(local as usize + 1),
        ) {
            (Some(&a), Some(&b)) => (a, b),
            _ => (0, 0),
        };
        let first = self.conditions.partition_point(|&(at, _)| at < start);
        let mut conditions = self.conditions[first..]
            .iter()
            .take_while(move |&&(at, _)| at < end)
            .peekable();
        (start..end).map(move |at| {
            let e = self.edges[at as usize];
            let condition = conditions
                .next_if(|&&(c, _)| c == at)
                .map_or(NONE, |&(_, condition)| condition);
            FullOrigin {
                source: e.source,
                condition,
                reason: e.reason,
            }
        })
    }
}

/// Weight of an edge in [`FullGraphLog::graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogEdge {
    /// Why.
    pub reason: Reason,
    /// For a conditional dependency, the node whose marking enabled it.
    pub condition: Option<NodeId>,
}

impl Strategy for FullGraph {
    const LOGS: bool = true;
    const NEEDS_HASH: bool = false;
    const SAME_LEVEL_REPEATS_ONLY: bool = false;
    type Carry = FullGraphCarry;
    type Store = FullGraphStore;
    type Log = FullGraphLog;

    #[inline(always)]
    fn carry(origin: EdgeOrigin) -> FullGraphCarry {
        FullGraphCarry {
            source: origin.source,
            reason: origin.reason,
        }
    }
    #[inline]
    fn record(
        store: &mut FullGraphStore,
        target: NodeId,
        _newly: bool,
        c: FullGraphCarry,
        condition: u32,
        _names: &[Reason],
    ) {
        if condition != NONE {
            store.conditions.push((store.edges.len() as u32, condition));
        }
        store.edges.push(StoredEdge {
            target: target.local(),
            source: c.source,
            reason: c.reason,
        });
    }
    fn finish(
        stores: Vec<FullGraphStore>,
        order: &[NodeId],
        id_bound: usize,
        names: Vec<Reason>,
    ) -> FullGraphLog {
        let rows: Vec<IncomingRows> = stores.into_par_iter().map(IncomingRows::build).collect();
        let mut rank = vec![u32::MAX; id_bound];
        for (i, node) in order.iter().enumerate() {
            rank[node.index()] = i as u32;
        }
        FullGraphLog {
            rows,
            rank,
            order: order.to_vec(),
            names,
            roots: OnceLock::new(),
            graph: OnceLock::new(),
        }
    }
}

/// The full-graph log: every edge, grouped by target.
///
/// [`graph`](FullGraphLog::graph) offers it as a petgraph [`Graph`] whose node indices are the
/// nodes' ranks in the final order (deterministic; edge indices follow the same order). The
/// `Graph` is built on first access: marking records compact rows, and a user who never
/// asks for petgraph never pays for its node and edge lists.
#[derive(Debug)]
pub struct FullGraphLog {
    rows: Vec<IncomingRows>,
    /// Rank in the final order, by id index.
    rank: Vec<u32>,
    order: Vec<NodeId>,
    names: Vec<Reason>,
    roots: OnceLock<Vec<(NodeId, Reason)>>,
    graph: OnceLock<Graph<NodeId, LogEdge>>,
}

impl FullGraphLog {
    fn row(&self, node: NodeId) -> impl Iterator<Item = FullOrigin> + '_ {
        self.rows
            .get(node.partition())
            .into_iter()
            .flat_map(move |rows| rows.row(node.local()))
    }

    fn rank(&self, node: NodeId) -> Option<u32> {
        self.rank
            .get(node.index())
            .copied()
            .filter(|&r| r != u32::MAX)
    }

    /// The log as a petgraph graph: node weights are node ids, edge weights carry the reason;
    /// root edges are in [`roots`](FullGraphLog::roots). Built on first call (linear in edges).
    pub fn graph(&self) -> &Graph<NodeId, LogEdge> {
        self.graph.get_or_init(|| {
            let edges: usize = self.rows.iter().map(|r| r.edges.len()).sum();
            let mut graph = Graph::with_capacity(self.order.len(), edges);
            for &node in &self.order {
                graph.add_node(node);
            }
            for &node in &self.order {
                for e in self.edges_into(node) {
                    if let Some(source) = e.source {
                        graph.add_edge(
                            NodeIndex::new(self.rank[source.index()] as usize),
                            NodeIndex::new(self.rank[node.index()] as usize),
                            LogEdge {
                                reason: e.reason,
                                condition: e.condition,
                            },
                        );
                    }
                }
            }
            graph
        })
    }

    /// Root edges `(node, reason)`, in final node order (a node's reasons by text).
    pub fn roots(&self) -> &[(NodeId, Reason)] {
        self.roots.get_or_init(|| {
            let mut roots = Vec::new();
            for &node in &self.order {
                let mut reasons: Vec<Reason> = self
                    .row(node)
                    .filter(|o| o.source == NONE)
                    .map(|o| self.names[o.reason as usize])
                    .collect();
                reasons.sort_unstable();
                reasons.dedup();
                roots.extend(reasons.into_iter().map(|r| (node, r)));
            }
            roots
        })
    }

    /// Every logged edge into `node` (root edges first, then by source rank, reason,
    /// condition rank), duplicates included.
    pub fn edges_into(&self, node: NodeId) -> Vec<LoggedEdge> {
        let mut edges: Vec<LoggedEdge> = self
            .row(node)
            .map(|o| LoggedEdge {
                source: opt_id(o.source),
                condition: opt_id(o.condition),
                target: node,
                reason: self.names[o.reason as usize],
            })
            .collect();
        let rank = |n: Option<NodeId>| n.map(|n| self.rank(n));
        edges.sort_by(|a, b| {
            (rank(a.source), a.reason, rank(a.condition)).cmp(&(
                rank(b.source),
                b.reason,
                rank(b.condition),
            ))
        });
        edges
    }
}

impl MarkLog for FullGraphLog {
    fn for_each_edge(&self, f: &mut dyn FnMut(LoggedEdge)) {
        for &node in &self.order {
            for o in self.row(node) {
                f(LoggedEdge {
                    source: opt_id(o.source),
                    condition: opt_id(o.condition),
                    target: node,
                    reason: self.names[o.reason as usize],
                });
            }
        }
    }

    fn path_to(&self, node: NodeId) -> Option<Vec<LoggedEdge>> {
        let start = self.rank(node)? as usize;
        // Breadth-first over incoming edges (each node's in-edges in rank order) until a node
        // with a root edge: a shortest chain, chosen deterministically. Indexed by rank.
        let mut via: Vec<Option<LoggedEdge>> = vec![None; self.order.len()];
        let mut seen = vec![false; self.order.len()];
        let mut queue = VecDeque::from([start]);
        seen[start] = true;
        while let Some(at) = queue.pop_front() {
            let into = self.edges_into(self.order[at]);
            if let Some(root) = into.iter().find(|e| e.source.is_none()) {
                let mut path = vec![*root];
                let mut cursor = at;
                while let Some(edge) = via[cursor] {
                    path.push(edge);
                    cursor = self.rank(edge.target)? as usize;
                }
                return Some(path);
            }
            for edge in into {
                let source = self.rank(edge.source?)? as usize;
                if !seen[source] {
                    seen[source] = true;
                    via[source] = Some(edge);
                    queue.push_back(source);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incoming_rows_group_edges_by_target_with_their_conditions() {
        // (target, source, reason, condition), in marking order.
        let marked: [(u32, u32, u32, u32); 7] = [
            (2, 10, 0, NONE),
            (0, 11, 1, 40),
            (2, 12, 2, 41),
            (1, 13, 3, NONE),
            (0, 14, 4, NONE),
            (2, 15, 5, 42),
            (0, 16, 6, 43),
        ];
        let mut store = FullGraphStore::default();
        for (target, source, reason, condition) in marked {
            FullGraph::record(
                &mut store,
                NodeId::from_parts(0, target),
                false,
                FullGraphCarry { source, reason },
                condition,
                &[],
            );
        }
        assert_eq!(store.edges.len(), 7);
        assert_eq!(store.conditions, [(1, 40), (2, 41), (5, 42), (6, 43)]);
        let rows = IncomingRows::build(store);
        let row = |local| -> Vec<(u32, u32, u32)> {
            rows.row(local)
                .map(|o| (o.source, o.reason, o.condition))
                .collect()
        };
        assert_eq!(row(0), [(11, 1, 40), (14, 4, NONE), (16, 6, 43)]);
        assert_eq!(row(1), [(13, 3, NONE)]);
        assert_eq!(row(2), [(10, 0, NONE), (12, 2, 41), (15, 5, 42)]);
        assert_eq!(row(3), []);
    }

    #[test]
    fn a_repeat_edge_in_the_marking_level_keeps_the_smaller_source_hash_in_any_order() {
        let node = NodeId::from_parts(0, 0);
        let edge = |source: u32, hash: u32| FirstMarkCarry::new(source, hash << 16 | 1);
        let (low, high, root) = (edge(5, 3), edge(6, 9), edge(NONE, 0));
        for (first, later, best) in [
            (low, high, low),
            (high, low, low),
            (high, root, root),
            (root, low, root),
        ] {
            let mut store = FirstMarkStore::default();
            FirstMark::record(&mut store, node, true, first, NONE, &["r", "s"]);
            FirstMark::record(&mut store, node, false, later, NONE, &["r", "s"]);
            assert_eq!(store.first.edges[0], best, "{first:?} then {later:?}");
            assert!(store.contests.is_empty());
        }
    }
}
