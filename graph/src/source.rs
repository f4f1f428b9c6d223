//! The node source: how the analyzer asks a node about its dependencies.

use std::cmp::Ordering;
use std::fmt::Debug;
use std::hash::Hash;

use crate::NodeId;

/// Why an edge exists. A `&'static str`, so reasons cost no allocation per edge
/// (crossgen2 allocates a `string` per dependency list entry).
pub type Reason = &'static str;

/// A conditional static dependency: `target` is a dependency only once `condition` is marked
/// (crossgen2 `CombinedDependencyListEntry`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionalDependency<K> {
    /// The node that becomes a dependency.
    pub target: K,
    /// The node whose marking makes `target` a dependency.
    pub condition: K,
    /// Why.
    pub reason: Reason,
}

/// The dependency list a node fills when asked (crossgen2 `DependencyList` plus
/// `CombinedDependencyList`). Dependencies are named by key; the analyzer interns them, so a
/// dependency on a node the source never produced cannot be expressed.
#[derive(Clone, Debug)]
pub struct Dependencies<K> {
    pub(crate) statics: Vec<(K, Reason)>,
    pub(crate) conditionals: Vec<ConditionalDependency<K>>,
}

impl<K> Default for Dependencies<K> {
    fn default() -> Self {
        Dependencies {
            statics: Vec::new(),
            conditionals: Vec::new(),
        }
    }
}

impl<K> Dependencies<K> {
    /// Adds an unconditional dependency on `target`.
    pub fn add(&mut self, target: K, reason: Reason) {
        self.statics.push((target, reason));
    }

    /// Adds a dependency on `target` that holds once `condition` is marked.
    pub fn add_conditional(&mut self, target: K, condition: K, reason: Reason) {
        self.conditionals.push(ConditionalDependency {
            target,
            condition,
            reason,
        });
    }

    /// Number of dependencies (static and conditional) added so far.
    pub fn len(&self) -> usize {
        self.statics.len() + self.conditionals.len()
    }

    /// `true` if nothing has been added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn clear(&mut self) {
        self.statics.clear();
        self.conditionals.clear();
    }
}

/// A marked node as seen by a dynamic-dependency search.
#[derive(Clone, Copy, Debug)]
pub struct MarkedNode<'a, K> {
    /// The node's id.
    pub id: NodeId,
    /// The node's key.
    pub key: &'a K,
}

/// Everything the analyzer needs to know about nodes (crossgen2 `DependencyNodeCore` plus the
/// analyzer's `ComputeDependencyRoutine` and phase-change events).
///
/// Nodes are named by [`Key`](NodeSource::Key): the analyzer interns keys to [`NodeId`]s
/// the way a node factory does, so equal keys are one node. Every method may be called from
/// several threads at once (the analyzer expands the frontier with rayon), hence `Sync`; a
/// method is called on each node from one thread at a time. Answers must be functions of the
/// key, except that [`static_dependencies_computed`](NodeSource::static_dependencies_computed)
/// turns from `false` to `true` once
/// [`compute_dependencies`](NodeSource::compute_dependencies) has run.
pub trait NodeSource: Sync {
    /// The semantic key a node is interned by. `Ord` is the default final order.
    type Key: Clone + Eq + Hash + Ord + Debug + Send + Sync;

    /// Fills `deps` with the node's static and conditional dependencies. Called once per
    /// marked node whose static dependencies are computed.
    fn static_dependencies(
        &self,
        node: NodeId,
        key: &Self::Key,
        deps: &mut Dependencies<Self::Key>,
    );

    /// Whether the node's static dependencies can be asked for now. A node answering `false`
    /// when marked is deferred: it is handed to
    /// [`compute_dependencies`](NodeSource::compute_dependencies) in a batch (the place where
    /// a compiler compiles methods), in phase [`deferral_phase`](NodeSource::deferral_phase).
    fn static_dependencies_computed(&self, _node: NodeId, _key: &Self::Key) -> bool {
        true
    }

    /// The earliest phase in which a deferred node's dependencies are computed
    /// (crossgen2 `DependencyPhaseForDeferredStaticComputation`).
    fn deferral_phase(&self, _node: NodeId, _key: &Self::Key) -> u32 {
        0
    }

    /// Computes a deferred node's static dependencies. The analyzer calls it for every node of
    /// a batch in parallel on its thread pool; afterwards
    /// [`static_dependencies_computed`](NodeSource::static_dependencies_computed) must answer
    /// `true`, or analysis fails with
    /// [`AnalysisError::Uncomputed`](crate::AnalysisError::Uncomputed).
    fn compute_dependencies(&self, _node: NodeId, _key: &Self::Key) {}

    /// Whether the node searches marked "interesting" nodes for dynamic dependencies.
    fn has_dynamic_dependencies(&self, _node: NodeId, _key: &Self::Key) -> bool {
        false
    }

    /// Whether nodes with dynamic dependencies should see this node.
    fn interesting_for_dynamic_analysis(&self, _node: NodeId, _key: &Self::Key) -> bool {
        false
    }

    /// Searches interesting nodes marked since this node's last search (each interesting node
    /// is shown to each dynamic node exactly once) and adds what they imply to `deps`.
    fn search_dynamic_dependencies(
        &self,
        _node: NodeId,
        _key: &Self::Key,
        _interesting: &[MarkedNode<'_, Self::Key>],
        _deps: &mut Dependencies<Self::Key>,
    ) {
    }

    /// Runs exactly once per node, when it is first marked. Side effects of marking (register a
    /// stub, place an import in its section) belong here, never in key construction.
    fn on_marked(&self, _node: NodeId, _key: &Self::Key) {}

    /// Called when the analyzer enters `phase` (crossgen2 `ComputingDependencyPhaseChange`).
    fn on_phase_change(&self, _phase: u32) {}

    /// The node's name in logs and exports.
    fn name(&self, key: &Self::Key) -> String {
        format!("{key:?}")
    }

    /// The final total order of marked nodes (crossgen2 sorts by phase, custom sort, class
    /// code, then a per-kind compare). Must be a total order: distinct keys never compare
    /// `Equal`. Defaults to the key's `Ord`.
    fn compare(&self, a: &Self::Key, b: &Self::Key) -> Ordering {
        a.cmp(b)
    }

    /// A 64-bit prefix of the final order, which lets the analyzer sort the marked nodes by
    /// their prefixes' top bits first and by [`compare`](NodeSource::compare) only within
    /// small buckets. Keys with different prefixes must compare as their prefixes do
    /// (`order_prefix(a) < order_prefix(b)` implies `compare(a, b) == Less`); keys with equal
    /// prefixes are ordered by `compare` alone. The default, 0 for every key, leaves the whole
    /// order to `compare`. The prefix changes the speed of the sort, never its result.
    fn order_prefix(&self, _key: &Self::Key) -> u64 {
        0
    }
}
