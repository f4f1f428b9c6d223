//! A node source described by data, shared by the integration tests.
//!
//! Nodes are numbered `0..n`; each node's static edges, conditional edges, dynamic flags and
//! deferral are plain data ([`GraphSpec`]). The source counts every callback per node, so tests
//! can check that `on_marked` runs exactly once, that deferred nodes are computed once and in
//! the right phase, and that each dynamic node sees each interesting node once.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst};

use crossgraph_graph::{
    AnalysisError, Analyzer, AnalyzerOptions, Dependencies, LoggedEdge, MarkStrategy, MarkedNode,
    NodeId, NodeSource, Reason,
};

/// A key type the test source can use: a node number in a wrapper.
pub trait TestKey: Clone + Eq + Hash + Ord + Debug + Send + Sync + 'static {
    fn from_n(n: u32) -> Self;
    fn n(&self) -> u32;
}

impl TestKey for u32 {
    fn from_n(n: u32) -> Self {
        n
    }
    fn n(&self) -> u32 {
        *self
    }
}

/// A key whose hash collides in groups of four, so that distinct nodes share an interning
/// hash: stresses the hash tables and the first-mark tie-breaks that only keys can decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Colliding(pub u32);

impl Hash for Colliding {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.0 / 4).hash(state);
    }
}

impl TestKey for Colliding {
    fn from_n(n: u32) -> Self {
        Colliding(n)
    }
    fn n(&self) -> u32 {
        self.0
    }
}

/// `target` is a dependency once `condition` is marked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CondSpec {
    pub target: u32,
    pub condition: u32,
    pub reason: Reason,
}

/// One node's behaviour.
#[derive(Clone, Debug, Default)]
pub struct NodeSpec {
    pub statics: Vec<(u32, Reason)>,
    pub conditionals: Vec<CondSpec>,
    /// Searches interesting nodes (applies [`GraphSpec::rules`] where it is the dynamic node).
    pub dynamic: bool,
    pub interesting: bool,
    /// Dependencies not computed until `compute_dependencies`, deferred to this phase.
    pub deferred: Option<u32>,
    /// `compute_dependencies` leaves the node uncomputed.
    pub broken_compute: bool,
    pub name: Option<String>,
    /// Final order: by rank, then by number. `None` ranks as the number itself.
    pub rank: Option<i64>,
}

/// When dynamic node `dynamic` is shown interesting node `interesting`, it depends on
/// `target` (once `condition` is marked, if there is one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamicRule {
    pub dynamic: u32,
    pub interesting: u32,
    pub target: u32,
    pub condition: Option<u32>,
    pub reason: Reason,
}

/// What [`NodeSource::order_prefix`] answers for a test source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Prefix {
    /// The default: 0 for every key, the order is `compare`'s alone.
    #[default]
    None,
    /// The rank only: coarse, nodes of one rank tie and `compare` orders them.
    Rank,
    /// Rank and number: every key its own prefix.
    Exact,
}

/// A whole graph: nodes `0..nodes.len()`, dynamic rules and roots.
#[derive(Clone, Debug, Default)]
pub struct GraphSpec {
    pub nodes: Vec<NodeSpec>,
    pub rules: Vec<DynamicRule>,
    pub roots: Vec<(u32, Reason)>,
    pub prefix: Prefix,
}

impl GraphSpec {
    /// `n` nodes without edges and without roots.
    pub fn new(n: u32) -> Self {
        GraphSpec {
            nodes: vec![NodeSpec::default(); n as usize],
            rules: Vec::new(),
            roots: Vec::new(),
            prefix: Prefix::None,
        }
    }

    /// This spec with the source answering `order_prefix` by `prefix`.
    pub fn with_prefix(mut self, prefix: Prefix) -> Self {
        self.prefix = prefix;
        self
    }

    pub fn len(&self) -> u32 {
        self.nodes.len() as u32
    }

    pub fn root(self, n: u32) -> Self {
        self.root_because(n, "root")
    }

    pub fn root_because(mut self, n: u32, reason: Reason) -> Self {
        self.roots.push((n, reason));
        self
    }

    pub fn edge(self, from: u32, to: u32) -> Self {
        self.edge_because(from, to, "static")
    }

    pub fn edge_because(mut self, from: u32, to: u32, reason: Reason) -> Self {
        self.nodes[from as usize].statics.push((to, reason));
        self
    }

    /// A chain of static edges through `path`.
    pub fn chain(mut self, path: &[u32]) -> Self {
        for w in path.windows(2) {
            self = self.edge(w[0], w[1]);
        }
        self
    }

    /// `from -> target` once `condition` is marked.
    pub fn cond(self, from: u32, target: u32, condition: u32) -> Self {
        self.cond_because(from, target, condition, "conditional")
    }

    pub fn cond_because(mut self, from: u32, target: u32, condition: u32, reason: Reason) -> Self {
        self.nodes[from as usize].conditionals.push(CondSpec {
            target,
            condition,
            reason,
        });
        self
    }

    /// Dynamic node `dynamic`, shown interesting node `interesting`, depends on `target`.
    /// Flags both nodes.
    pub fn rule(mut self, dynamic: u32, interesting: u32, target: u32) -> Self {
        self.nodes[dynamic as usize].dynamic = true;
        self.nodes[interesting as usize].interesting = true;
        self.rules.push(DynamicRule {
            dynamic,
            interesting,
            target,
            condition: None,
            reason: "dynamic",
        });
        self
    }

    /// Like [`rule`](GraphSpec::rule), but the dependency holds once `condition` is marked.
    pub fn rule_if(mut self, dynamic: u32, interesting: u32, target: u32, condition: u32) -> Self {
        self = self.rule(dynamic, interesting, target);
        self.rules.last_mut().unwrap().condition = Some(condition);
        self
    }

    pub fn dynamic(mut self, n: u32) -> Self {
        self.nodes[n as usize].dynamic = true;
        self
    }

    pub fn interesting(mut self, n: u32) -> Self {
        self.nodes[n as usize].interesting = true;
        self
    }

    pub fn defer(mut self, n: u32, phase: u32) -> Self {
        self.nodes[n as usize].deferred = Some(phase);
        self
    }

    pub fn broken_compute(mut self, n: u32) -> Self {
        self.nodes[n as usize].broken_compute = true;
        self
    }

    pub fn name(mut self, n: u32, name: &str) -> Self {
        self.nodes[n as usize].name = Some(name.to_string());
        self
    }

    pub fn rank(mut self, n: u32, rank: i64) -> Self {
        self.nodes[n as usize].rank = Some(rank);
        self
    }

    fn rank_of(&self, n: u32) -> (i64, u32) {
        (self.nodes[n as usize].rank.unwrap_or(n as i64), n)
    }

    /// Node numbers sorted by the final order the source's `compare` defines.
    pub fn sorted(&self, nodes: impl IntoIterator<Item = u32>) -> Vec<u32> {
        let mut v: Vec<u32> = nodes.into_iter().collect();
        v.sort_by_key(|&n| self.rank_of(n));
        v
    }
}

/// The test node source over a [`GraphSpec`], with a counter per callback and node.
#[derive(Debug)]
pub struct TestSource<K = u32> {
    pub spec: GraphSpec,
    on_marked: Vec<AtomicUsize>,
    static_calls: Vec<AtomicUsize>,
    computed: Vec<AtomicBool>,
    compute_calls: Vec<AtomicUsize>,
    /// Phase in which each node was computed (`u32::MAX`: never).
    compute_phase: Vec<AtomicU32>,
    /// Total `on_marked` calls when each node was computed.
    marked_at_compute: Vec<AtomicUsize>,
    marked_total: AtomicUsize,
    /// `static_dependencies` asked before the node was computed.
    premature: AtomicUsize,
    /// `(dynamic, interesting)` -> how often the dynamic node was shown the interesting node.
    seen: Mutex<BTreeMap<(u32, u32), usize>>,
    /// Nodes shown to a dynamic search that are not interesting or not marked.
    bad_shown: AtomicUsize,
    phases: Mutex<Vec<u32>>,
    current_phase: AtomicU32,
    /// `(dynamic, interesting)` -> indices into `spec.rules`.
    rules_by_pair: HashMap<(u32, u32), Vec<usize>>,
    _key: PhantomData<fn() -> K>,
}

impl<K: TestKey> TestSource<K> {
    pub fn new(spec: GraphSpec) -> Self {
        let n = spec.nodes.len();
        let counters = || (0..n).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>();
        let mut rules_by_pair: HashMap<(u32, u32), Vec<usize>> = HashMap::new();
        for (i, rule) in spec.rules.iter().enumerate() {
            rules_by_pair
                .entry((rule.dynamic, rule.interesting))
                .or_default()
                .push(i);
        }
        TestSource {
            rules_by_pair,
            computed: spec
                .nodes
                .iter()
                .map(|s| AtomicBool::new(s.deferred.is_none()))
                .collect(),
            on_marked: counters(),
            static_calls: counters(),
            compute_calls: counters(),
            compute_phase: (0..n).map(|_| AtomicU32::new(u32::MAX)).collect(),
            marked_at_compute: counters(),
            marked_total: AtomicUsize::new(0),
            premature: AtomicUsize::new(0),
            seen: Mutex::new(BTreeMap::new()),
            bad_shown: AtomicUsize::new(0),
            phases: Mutex::new(Vec::new()),
            current_phase: AtomicU32::new(0),
            spec,
            _key: PhantomData,
        }
    }

    pub fn on_marked_count(&self, n: u32) -> usize {
        self.on_marked[n as usize].load(SeqCst)
    }

    pub fn static_calls(&self, n: u32) -> usize {
        self.static_calls[n as usize].load(SeqCst)
    }

    pub fn compute_calls(&self, n: u32) -> usize {
        self.compute_calls[n as usize].load(SeqCst)
    }

    /// The phase in which `n` was computed, if it was.
    pub fn compute_phase(&self, n: u32) -> Option<u32> {
        let p = self.compute_phase[n as usize].load(SeqCst);
        (p != u32::MAX).then_some(p)
    }

    /// How many nodes had been marked when `n` was computed.
    pub fn marked_at_compute(&self, n: u32) -> usize {
        self.marked_at_compute[n as usize].load(SeqCst)
    }

    pub fn premature_static_calls(&self) -> usize {
        self.premature.load(SeqCst)
    }

    pub fn bad_shown(&self) -> usize {
        self.bad_shown.load(SeqCst)
    }

    pub fn seen(&self) -> BTreeMap<(u32, u32), usize> {
        self.seen.lock().unwrap().clone()
    }

    pub fn phases(&self) -> Vec<u32> {
        self.phases.lock().unwrap().clone()
    }

    /// Checks the per-node invariants against the marked set: `on_marked` and
    /// `static_dependencies` exactly once per marked node and never for others; deferred
    /// nodes computed exactly once, never asked early; each marked dynamic node shown each
    /// marked interesting node exactly once; the phase log runs `1..=last deferred phase + 1`.
    pub fn check_invariants(&self, marked: &BTreeSet<u32>) {
        for n in 0..self.spec.len() {
            let spec = &self.spec.nodes[n as usize];
            let is_marked = marked.contains(&n);
            let once = usize::from(is_marked);
            assert_eq!(self.on_marked_count(n), once, "on_marked count of node {n}");
            assert_eq!(
                self.static_calls(n),
                once,
                "static_dependencies count of node {n}"
            );
            let computes = if spec.deferred.is_some() { once } else { 0 };
            assert_eq!(self.compute_calls(n), computes, "compute count of node {n}");
            if let (Some(phase), true) = (spec.deferred, is_marked) {
                let at = self.compute_phase(n).unwrap();
                assert!(
                    at >= phase,
                    "node {n} deferred to phase {phase} computed in {at}"
                );
            }
        }
        assert_eq!(
            self.premature_static_calls(),
            0,
            "static deps asked before compute"
        );
        assert_eq!(
            self.bad_shown(),
            0,
            "dynamic search shown an unmarked or dull node"
        );

        let mut expected_seen = BTreeMap::new();
        for &d in marked {
            if !self.spec.nodes[d as usize].dynamic {
                continue;
            }
            for &i in marked {
                if self.spec.nodes[i as usize].interesting {
                    expected_seen.insert((d, i), 1);
                }
            }
        }
        assert_eq!(self.seen(), expected_seen, "dynamic searches");

        let last = marked
            .iter()
            .filter_map(|&n| self.spec.nodes[n as usize].deferred)
            .max()
            .unwrap_or(0);
        assert_eq!(
            self.phases(),
            (1..=last + 1).collect::<Vec<_>>(),
            "phase changes"
        );
    }
}

impl<K: TestKey> NodeSource for TestSource<K> {
    type Key = K;

    fn static_dependencies(&self, _node: NodeId, key: &K, deps: &mut Dependencies<K>) {
        let n = key.n() as usize;
        self.static_calls[n].fetch_add(1, SeqCst);
        if !self.computed[n].load(SeqCst) {
            self.premature.fetch_add(1, SeqCst);
        }
        let spec = &self.spec.nodes[n];
        for &(target, reason) in &spec.statics {
            deps.add(K::from_n(target), reason);
        }
        for c in &spec.conditionals {
            deps.add_conditional(K::from_n(c.target), K::from_n(c.condition), c.reason);
        }
    }

    fn static_dependencies_computed(&self, _node: NodeId, key: &K) -> bool {
        self.computed[key.n() as usize].load(SeqCst)
    }

    fn deferral_phase(&self, _node: NodeId, key: &K) -> u32 {
        self.spec.nodes[key.n() as usize].deferred.unwrap_or(0)
    }

    fn compute_dependencies(&self, _node: NodeId, key: &K) {
        let n = key.n() as usize;
        self.compute_calls[n].fetch_add(1, SeqCst);
        self.compute_phase[n].store(self.current_phase.load(SeqCst), SeqCst);
        self.marked_at_compute[n].store(self.marked_total.load(SeqCst), SeqCst);
        if !self.spec.nodes[n].broken_compute {
            self.computed[n].store(true, SeqCst);
        }
    }

    fn has_dynamic_dependencies(&self, _node: NodeId, key: &K) -> bool {
        self.spec.nodes[key.n() as usize].dynamic
    }

    fn interesting_for_dynamic_analysis(&self, _node: NodeId, key: &K) -> bool {
        self.spec.nodes[key.n() as usize].interesting
    }

    fn search_dynamic_dependencies(
        &self,
        _node: NodeId,
        key: &K,
        interesting: &[MarkedNode<'_, K>],
        deps: &mut Dependencies<K>,
    ) {
        let d = key.n();
        let mut seen = self.seen.lock().unwrap();
        for shown in interesting {
            let i = shown.key.n();
            if !self.spec.nodes[i as usize].interesting || self.on_marked_count(i) == 0 {
                self.bad_shown.fetch_add(1, SeqCst);
            }
            *seen.entry((d, i)).or_default() += 1;
            let rules = self
                .rules_by_pair
                .get(&(d, i))
                .map_or(&[][..], Vec::as_slice);
            for rule in rules.iter().map(|&r| &self.spec.rules[r]) {
                match rule.condition {
                    None => deps.add(K::from_n(rule.target), rule.reason),
                    Some(c) => {
                        deps.add_conditional(K::from_n(rule.target), K::from_n(c), rule.reason)
                    }
                }
            }
        }
    }

    fn on_marked(&self, _node: NodeId, key: &K) {
        self.on_marked[key.n() as usize].fetch_add(1, SeqCst);
        self.marked_total.fetch_add(1, SeqCst);
    }

    fn on_phase_change(&self, phase: u32) {
        self.phases.lock().unwrap().push(phase);
        self.current_phase.store(phase, SeqCst);
    }

    fn name(&self, key: &K) -> String {
        let n = key.n();
        match &self.spec.nodes[n as usize].name {
            Some(name) => name.clone(),
            None => format!("N{n}"),
        }
    }

    fn compare(&self, a: &K, b: &K) -> Ordering {
        self.spec.rank_of(a.n()).cmp(&self.spec.rank_of(b.n()))
    }

    fn order_prefix(&self, key: &K) -> u64 {
        let (rank, n) = self.spec.rank_of(key.n());
        // Ranks map to u32 in order (the specs' ranks fit in an i32).
        let rank = i32::try_from(rank).expect("test ranks fit in an i32") as u32 ^ (1 << 31);
        match self.spec.prefix {
            Prefix::None => 0,
            Prefix::Rank => u64::from(rank),
            Prefix::Exact => u64::from(rank) << 32 | u64::from(n),
        }
    }
}

/// Adds the spec's roots to a new analyzer over `source` and marks.
pub fn analyze<'s, K: TestKey, M: MarkStrategy>(
    source: &'s TestSource<K>,
    options: AnalyzerOptions,
) -> Result<Analyzer<'s, TestSource<K>, M>, AnalysisError> {
    let mut analyzer = Analyzer::<_, M>::new(source, options);
    for &(n, reason) in &source.spec.roots {
        analyzer.add_root(K::from_n(n), reason)?;
    }
    analyzer.compute_marked_nodes()?;
    Ok(analyzer)
}

/// The marked nodes as numbers, in final order.
pub fn marked_numbers<K: TestKey, M: MarkStrategy>(
    analyzer: &Analyzer<'_, TestSource<K>, M>,
) -> Vec<u32> {
    analyzer
        .marked_nodes()
        .unwrap()
        .iter()
        .map(|&id| analyzer.key(id).unwrap().n())
        .collect()
}

/// The analyzer's id of node `n` (which must be interned).
pub fn id<K: TestKey, M: MarkStrategy>(
    analyzer: &Analyzer<'_, TestSource<K>, M>,
    n: u32,
) -> NodeId {
    analyzer
        .id_of(&K::from_n(n))
        .unwrap_or_else(|| panic!("node {n} is not interned"))
}

/// A logged edge with node ids replaced by node numbers (ids depend on the run).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyEdge {
    pub source: Option<u32>,
    pub condition: Option<u32>,
    pub target: u32,
    pub reason: Reason,
}

pub fn key_edge<K: TestKey, M: MarkStrategy>(
    analyzer: &Analyzer<'_, TestSource<K>, M>,
    e: &LoggedEdge,
) -> KeyEdge {
    let n = |id: NodeId| analyzer.key(id).unwrap().n();
    KeyEdge {
        source: e.source.map(n),
        condition: e.condition.map(n),
        target: n(e.target),
        reason: e.reason,
    }
}

/// The dependency edges that fire for a marked set: every static edge of a marked node,
/// every conditional edge of a marked node whose condition is marked, every dynamic rule whose
/// dynamic and interesting nodes are marked (and whose condition is, if it has one). A
/// multiset, sorted; root edges are returned separately, as a set.
pub fn fired_edges(spec: &GraphSpec, marked: &BTreeSet<u32>) -> (BTreeSet<KeyEdge>, Vec<KeyEdge>) {
    let roots = spec
        .roots
        .iter()
        .map(|&(n, reason)| KeyEdge {
            source: None,
            condition: None,
            target: n,
            reason,
        })
        .collect();
    let mut edges = Vec::new();
    for &s in marked {
        let node = &spec.nodes[s as usize];
        for &(t, reason) in &node.statics {
            edges.push(KeyEdge {
                source: Some(s),
                condition: None,
                target: t,
                reason,
            });
        }
        for c in &node.conditionals {
            if marked.contains(&c.condition) {
                edges.push(KeyEdge {
                    source: Some(s),
                    condition: Some(c.condition),
                    target: c.target,
                    reason: c.reason,
                });
            }
        }
    }
    for r in &spec.rules {
        let applies = marked.contains(&r.dynamic)
            && spec.nodes[r.dynamic as usize].dynamic
            && marked.contains(&r.interesting)
            && spec.nodes[r.interesting as usize].interesting
            && r.condition.is_none_or(|c| marked.contains(&c));
        if applies {
            edges.push(KeyEdge {
                source: Some(r.dynamic),
                condition: r.condition,
                target: r.target,
                reason: r.reason,
            });
        }
    }
    edges.sort();
    (roots, edges)
}

/// The marked set by a plain sequential fixpoint over the spec's rules: the correctness
/// oracle. Deferral does not change what is marked (every phase is eventually computed).
pub fn reference_marked(spec: &GraphSpec) -> BTreeSet<u32> {
    let mut marked = vec![false; spec.nodes.len()];
    for &(n, _) in &spec.roots {
        marked[n as usize] = true;
    }
    loop {
        let mut changed = false;
        let mut mark = |marked: &mut Vec<bool>, t: u32| {
            if !marked[t as usize] {
                marked[t as usize] = true;
                changed = true;
            }
        };
        for s in 0..spec.nodes.len() {
            if !marked[s] {
                continue;
            }
            let node = &spec.nodes[s];
            for &(t, _) in &node.statics {
                mark(&mut marked, t);
            }
            for c in &node.conditionals {
                if marked[c.condition as usize] {
                    mark(&mut marked, c.target);
                }
            }
        }
        for r in &spec.rules {
            let (d, i) = (r.dynamic as usize, r.interesting as usize);
            if marked[d]
                && spec.nodes[d].dynamic
                && marked[i]
                && spec.nodes[i].interesting
                && r.condition.is_none_or(|c| marked[c as usize])
            {
                mark(&mut marked, r.target);
            }
        }
        if !changed {
            break;
        }
    }
    (0..spec.len()).filter(|&n| marked[n as usize]).collect()
}
