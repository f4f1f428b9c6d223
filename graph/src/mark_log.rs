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

use std::cmp::Ordering;
use std::collections::VecDeque;

use petgraph::Direction;
use petgraph::graph::{Graph, NodeIndex};
use petgraph::visit::EdgeRef;

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

pub(crate) mod sealed {
    use super::*;

    /// Where an edge came from, carried through marking when a log needs it.
    #[derive(Clone, Copy, Debug)]
    pub struct EdgeOrigin {
        pub(crate) source: u32,
        pub(crate) condition: u32,
        pub(crate) source_hash: u64,
        pub(crate) reason: Reason,
    }

    impl EdgeOrigin {
        pub(crate) fn is_root(&self) -> bool {
            self.source == NONE
        }

        pub(crate) fn to_edge(self, target: NodeId) -> LoggedEdge {
            LoggedEdge {
                source: (self.source != NONE).then(|| id(self.source)),
                condition: (self.condition != NONE).then(|| id(self.condition)),
                target,
                reason: self.reason,
            }
        }

        /// Compares two candidate first edges without looking at keys; `None` when only the
        /// keys can decide (equal source hashes of distinct nodes, or distinct conditions).
        pub(crate) fn fast_cmp(&self, other: &EdgeOrigin) -> Option<Ordering> {
            match (self.is_root(), other.is_root()) {
                (true, false) => return Some(Ordering::Less),
                (false, true) => return Some(Ordering::Greater),
                (true, true) => return Some(self.reason.cmp(other.reason)),
                (false, false) => {}
            }
            if self.source_hash != other.source_hash {
                return Some(self.source_hash.cmp(&other.source_hash));
            }
            if self.source != other.source {
                return None;
            }
            match self.reason.cmp(other.reason) {
                Ordering::Equal if self.condition != other.condition => None,
                ord => Some(ord),
            }
        }
    }

    pub(crate) fn id(raw: u32) -> NodeId {
        NodeId::new(
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
        /// Per-edge data carried from expansion to marking.
        type Carry: Copy + Send + Sync;
        /// Per-partition log storage, written by the partition's worker only.
        type Store: Default + Send + Sync;
        /// The finished log.
        type Log: MarkLog + Send + Sync;

        fn carry(origin: EdgeOrigin) -> Self::Carry;
        fn set_condition(carry: &mut Self::Carry, condition: NodeId);
        fn record(store: &mut Self::Store, target: NodeId, level: u32, newly: bool, c: Self::Carry);
        /// Contested first-edge candidates (only keys can order them), drained after each step.
        fn take_contests(_store: &mut Self::Store) -> Vec<(u32, EdgeOrigin)> {
            Vec::new()
        }
        fn current(_store: &Self::Store, _local: u32) -> Option<EdgeOrigin> {
            None
        }
        fn replace(_store: &mut Self::Store, _local: u32, _origin: EdgeOrigin) {}
        /// Builds the log; `order` is the final node order, `id_bound` exceeds every id index.
        fn finish(stores: Vec<Self::Store>, order: &[NodeId], id_bound: usize) -> Self::Log;
    }
}

use sealed::{EdgeOrigin, Strategy};

/// A mark strategy: [`NoLog`], [`FirstMark`] or [`FullGraph`].
pub trait MarkStrategy: Strategy {}

/// Records nothing. The marking loop carries `()` per edge.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLog;

/// Records, per node, the edge that first marked it: enough to answer "why is this here?".
#[derive(Clone, Copy, Debug, Default)]
pub struct FirstMark;

/// Records every edge, in a petgraph [`Graph`].
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
    type Carry = ();
    type Store = ();
    type Log = ();

    #[inline(always)]
    fn carry(_origin: EdgeOrigin) {}
    #[inline(always)]
    fn set_condition(_carry: &mut (), _condition: NodeId) {}
    #[inline(always)]
    fn record(_store: &mut (), _target: NodeId, _level: u32, _newly: bool, _c: ()) {}
    fn finish(_stores: Vec<()>, _order: &[NodeId], _id_bound: usize) {}
}

/// First-mark storage of one partition.
#[derive(Debug, Default)]
#[doc(hidden)]
pub struct FirstMarkStore {
    /// Indexed by local index: (level marked, best edge so far).
    entries: Vec<Option<(u32, EdgeOrigin)>>,
    contests: Vec<(u32, EdgeOrigin)>,
}

impl Strategy for FirstMark {
    const LOGS: bool = true;
    const NEEDS_HASH: bool = true;
    type Carry = EdgeOrigin;
    type Store = FirstMarkStore;
    type Log = FirstMarkLog;

    #[inline(always)]
    fn carry(origin: EdgeOrigin) -> EdgeOrigin {
        origin
    }
    fn set_condition(carry: &mut EdgeOrigin, condition: NodeId) {
        carry.condition = condition.as_u32();
    }
    fn record(store: &mut FirstMarkStore, target: NodeId, level: u32, newly: bool, c: EdgeOrigin) {
        let local = target.local() as usize;
        if newly {
            if store.entries.len() <= local {
                store.entries.resize(local + 1, None);
            }
            store.entries[local] = Some((level, c));
            return;
        }
        // Later edges compete only within the level that marked the node.
        if let Some(Some((marked_level, best))) = store.entries.get_mut(local)
            && *marked_level == level
        {
            match c.fast_cmp(best) {
                Some(Ordering::Less) => *best = c,
                Some(_) => {}
                None => store.contests.push((local as u32, c)),
            }
        }
    }
    fn take_contests(store: &mut FirstMarkStore) -> Vec<(u32, EdgeOrigin)> {
        std::mem::take(&mut store.contests)
    }
    fn current(store: &FirstMarkStore, local: u32) -> Option<EdgeOrigin> {
        store
            .entries
            .get(local as usize)
            .copied()
            .flatten()
            .map(|(_, o)| o)
    }
    fn replace(store: &mut FirstMarkStore, local: u32, origin: EdgeOrigin) {
        if let Some(Some((_, best))) = store.entries.get_mut(local as usize) {
            *best = origin;
        }
    }
    fn finish(stores: Vec<FirstMarkStore>, _order: &[NodeId], id_bound: usize) -> FirstMarkLog {
        let mut first = vec![None; id_bound];
        for (p, store) in stores.into_iter().enumerate() {
            for (local, entry) in store.entries.into_iter().enumerate() {
                if let Some((_, origin)) = entry {
                    let target = NodeId::new(p, local as u32);
                    first[target.index()] = Some(origin.to_edge(target));
                }
            }
        }
        FirstMarkLog { first }
    }
}

/// The first-mark log: for each marked node, the edge that marked it.
#[derive(Clone, Debug)]
pub struct FirstMarkLog {
    first: Vec<Option<LoggedEdge>>,
}

impl FirstMarkLog {
    /// The edge that marked `node`, or `None` if the node is not marked (or not of this log).
    pub fn first_edge(&self, node: NodeId) -> Option<&LoggedEdge> {
        self.first.get(node.index()).and_then(Option::as_ref)
    }
}

impl MarkLog for FirstMarkLog {
    fn for_each_edge(&self, f: &mut dyn FnMut(LoggedEdge)) {
        self.first.iter().flatten().for_each(|e| f(*e));
    }

    fn path_to(&self, node: NodeId) -> Option<Vec<LoggedEdge>> {
        // Levels strictly decrease along first edges, so this walk ends at a root.
        let mut path = Vec::new();
        let mut at = node;
        loop {
            let edge = *self.first_edge(at)?;
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

/// Full-graph storage of one partition: every edge into the partition's nodes.
#[derive(Debug, Default)]
#[doc(hidden)]
pub struct FullGraphStore {
    edges: Vec<(u32, FullOrigin)>,
}

/// Origin of an edge in the full-graph log (no hash: nothing is compared while marking).
#[derive(Clone, Copy, Debug)]
#[doc(hidden)]
pub struct FullOrigin {
    source: u32,
    condition: u32,
    reason: Reason,
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
    type Carry = FullOrigin;
    type Store = FullGraphStore;
    type Log = FullGraphLog;

    #[inline(always)]
    fn carry(origin: EdgeOrigin) -> FullOrigin {
        FullOrigin {
            source: origin.source,
            condition: origin.condition,
            reason: origin.reason,
        }
    }
    fn set_condition(carry: &mut FullOrigin, condition: NodeId) {
        carry.condition = condition.as_u32();
    }
    fn record(
        store: &mut FullGraphStore,
        target: NodeId,
        _level: u32,
        _newly: bool,
        c: FullOrigin,
    ) {
        store.edges.push((target.local(), c));
    }
    fn finish(stores: Vec<FullGraphStore>, order: &[NodeId], id_bound: usize) -> FullGraphLog {
        let mut index = vec![u32::MAX; id_bound];
        let edge_count = stores.iter().map(|s| s.edges.len()).sum();
        let mut graph = Graph::with_capacity(order.len(), edge_count);
        for &node in order {
            index[node.index()] = graph.add_node(node).index() as u32;
        }
        let mut roots = Vec::new();
        for (p, store) in stores.into_iter().enumerate() {
            for (local, origin) in store.edges {
                let target = NodeId::new(p, local);
                let weight = LogEdge {
                    reason: origin.reason,
                    condition: (origin.condition != NONE).then(|| sealed::id(origin.condition)),
                };
                if origin.source == NONE {
                    roots.push((target, origin.reason));
                } else {
                    let from = NodeIndex::new(index[sealed::id(origin.source).index()] as usize);
                    let to = NodeIndex::new(index[target.index()] as usize);
                    graph.add_edge(from, to, weight);
                }
            }
        }
        // Node indices are ranks in the final order, so this sort is deterministic.
        roots.sort_unstable_by_key(|&(node, reason)| (index[node.index()], reason));
        roots.dedup();
        FullGraphLog {
            graph,
            index,
            roots,
        }
    }
}

/// The full-graph log: every edge, in a petgraph [`Graph`] whose node indices are the nodes'
/// ranks in the final order (so they are deterministic; edge indices are not).
#[derive(Clone, Debug)]
pub struct FullGraphLog {
    graph: Graph<NodeId, LogEdge>,
    index: Vec<u32>,
    roots: Vec<(NodeId, Reason)>,
}

impl FullGraphLog {
    /// The graph: node weights are node ids, edge weights carry the reason.
    pub fn graph(&self) -> &Graph<NodeId, LogEdge> {
        &self.graph
    }

    /// Root edges `(node, reason)`, in final node order.
    pub fn roots(&self) -> &[(NodeId, Reason)] {
        &self.roots
    }

    fn node_index(&self, node: NodeId) -> Option<NodeIndex> {
        match self.index.get(node.index()) {
            Some(&i) if i != u32::MAX => Some(NodeIndex::new(i as usize)),
            _ => None,
        }
    }

    /// Every logged edge into `node` (root edges first), in a deterministic order.
    pub fn edges_into(&self, node: NodeId) -> Vec<LoggedEdge> {
        let mut edges: Vec<LoggedEdge> = self
            .roots_of(node)
            .map(|reason| LoggedEdge {
                source: None,
                condition: None,
                target: node,
                reason,
            })
            .collect();
        if let Some(at) = self.node_index(node) {
            let mut incoming: Vec<_> = self
                .graph
                .edges_directed(at, Direction::Incoming)
                .map(|e| (e.source().index(), *e.weight()))
                .collect();
            incoming.sort_unstable_by_key(|&(source, w)| {
                (source, w.reason, w.condition.map(|c| self.index[c.index()]))
            });
            edges.extend(incoming.into_iter().map(|(source, w)| LoggedEdge {
                source: Some(self.graph[NodeIndex::new(source)]),
                condition: w.condition,
                target: node,
                reason: w.reason,
            }));
        }
        edges
    }

    fn roots_of(&self, node: NodeId) -> impl Iterator<Item = Reason> + '_ {
        let rank = self.index.get(node.index()).copied().unwrap_or(u32::MAX);
        let start = self
            .roots
            .partition_point(|&(n, _)| self.index[n.index()] < rank);
        self.roots[start..]
            .iter()
            .take_while(move |&&(n, _)| n == node)
            .map(|&(_, reason)| reason)
    }
}

impl MarkLog for FullGraphLog {
    fn for_each_edge(&self, f: &mut dyn FnMut(LoggedEdge)) {
        for &(target, reason) in &self.roots {
            f(LoggedEdge {
                source: None,
                condition: None,
                target,
                reason,
            });
        }
        for e in self.graph.edge_references() {
            f(LoggedEdge {
                source: Some(self.graph[e.source()]),
                condition: e.weight().condition,
                target: self.graph[e.target()],
                reason: e.weight().reason,
            });
        }
    }

    fn path_to(&self, node: NodeId) -> Option<Vec<LoggedEdge>> {
        let start = self.node_index(node)?;
        // Breadth-first over incoming edges (each node's in-edges in rank order) until a node
        // with a root edge: the shortest chain, chosen deterministically.
        let mut via: Vec<Option<LoggedEdge>> = vec![None; self.graph.node_count()];
        let mut seen = vec![false; self.graph.node_count()];
        let mut queue = VecDeque::from([start]);
        seen[start.index()] = true;
        while let Some(at) = queue.pop_front() {
            let here = self.graph[at];
            let into = self.edges_into(here);
            if let Some(root) = into.iter().find(|e| e.source.is_none()) {
                let mut path = vec![*root];
                let mut cursor = at;
                while let Some(edge) = via[cursor.index()] {
                    path.push(edge);
                    cursor = self.node_index(edge.target)?;
                }
                return Some(path);
            }
            for edge in into {
                let source = self.node_index(edge.source?)?;
                if !seen[source.index()] {
                    seen[source.index()] = true;
                    via[source.index()] = Some(edge);
                    queue.push_back(source);
                }
            }
        }
        None
    }
}
