//! The dependency analyzer: roots in, every reachable node marked once, in a deterministic
//! order, expanded in parallel.
//!
//! Marking proceeds level by level. A step takes the nodes marked by the previous step (the
//! frontier) plus pending edges (roots, triggered conditional edges, dynamic dependencies) and:
//!
//! 1. expands the frontier in parallel (rayon, work stealing over fixed-size chunks): runs
//!    `on_marked`, asks each node for its dependencies and buckets each edge by the hash
//!    partition of its target;
//! 2. interns and marks in parallel, one worker per partition, without locks: each partition
//!    owns its key map, its mark bits and the conditional store of its nodes;
//! 3. collects the newly marked nodes, partition by partition, as the next frontier.
//!
//! The set of nodes marked at each level is a function of the input alone, so the marked set,
//! the final order and the logs are the same for any thread count and any shuffle seed.
//! Between levels sit crossgen2's outer loops: dynamic dependencies once the frontier is
//! empty, then the deferred batch of the current phase, then the next phase.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::mem;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::id::PARTITIONS;
use crate::mark_log::sealed::{EdgeOrigin, Strategy, id as raw_id};
use crate::mark_log::{LoggedEdge, MarkLog, MarkStrategy, NONE, NoLog};
use crate::partition::{Partition, Waiting, hash_key, partition_of};
use crate::reason::{ReasonCache, Reasons, RecentReasons};
use crate::shuffle::Shuffler;
use crate::{AnalysisError, Dependencies, MarkedNode, NodeId, NodeSource, Reason};

/// Most frontier nodes per expansion task (the unit of work stealing). Large, so that each
/// task's per-partition buckets are long runs the marking workers read sequentially.
const CHUNK: usize = 16 * 1024;
/// Fewest frontier nodes per expansion task (a level smaller than four tasks a worker gets
/// smaller tasks, down to this).
const MIN_CHUNK: usize = 1024;
/// Frontier nodes per sub-step: bounds the memory of bucketed edges in one step (about 48 MiB
/// with `NoLog` and 8-byte keys). Large, because every sub-step walks every partition's map
/// once: fewer sub-steps, fewer cold walks.
const SUB_STEP: usize = 1024 * 1024;

/// How far past a bucket's end expansion prefetches the lines its next edges go to (edges:
/// 256 bytes with `NoLog`'s 8-byte entries, 512 with `FirstMark`'s 16). FirstMark 1 thread,
/// expansion: 82-88 ms with it, 98-104 ms without (NoLog ~2 ms less); 512 bytes rather than
/// 256 took FirstMark's whole run ~2% further.
const BUCKET_PREFETCH_EDGES: usize = 32;

/// Edges ahead of the one being marked whose first index slot marking prefetches.
const PREFETCH_AHEAD: usize = 16;

/// Environment variable read by [`AnalyzerOptions::from_env`] (crossgen2 reads
/// `CoreRT_DeterminismSeed`).
pub const DETERMINISM_SEED_VAR: &str = "CROSSGRAPH_DETERMINISM_SEED";

/// How an [`Analyzer`] runs. Results do not depend on these options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnalyzerOptions {
    /// Worker threads; `None` uses rayon's global pool. Called on a rayon pool of this
    /// size, the analyzer runs on that pool; otherwise on [`shared_pool`](crate::shared_pool)
    /// of this size.
    pub threads: Option<usize>,
    /// Shuffle every work list with this seed (determinism test mode).
    pub shuffle_seed: Option<u64>,
    /// About how many nodes the analysis will intern: a capacity hint, like
    /// `HashMap::with_capacity`. Each interning partition reserves its share (plus 1/16)
    /// up front, so a growing graph neither rehashes the key maps nor moves the keys (NoLog,
    /// 1,000,000 nodes: ~6 ms of ~140 at 1 thread). Too low costs only that growth again,
    /// too high the memory reserved.
    pub capacity: Option<usize>,
}

impl AnalyzerOptions {
    /// Options with the shuffle seed taken from `CROSSGRAPH_DETERMINISM_SEED` when it is set to
    /// an integer.
    pub fn from_env() -> Self {
        AnalyzerOptions {
            threads: None,
            shuffle_seed: std::env::var(DETERMINISM_SEED_VAR)
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            capacity: None,
        }
    }

    /// These options with `threads` worker threads.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// These options with the shuffle test mode on.
    pub fn with_shuffle_seed(mut self, seed: u64) -> Self {
        self.shuffle_seed = Some(seed);
        self
    }

    /// These options with room reserved for about `nodes` interned nodes (see
    /// [`capacity`](AnalyzerOptions::capacity)).
    pub fn with_capacity(mut self, nodes: usize) -> Self {
        self.capacity = Some(nodes);
        self
    }
}

/// Counters of a finished analysis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnalysisStats {
    /// Marked nodes.
    pub marked: usize,
    /// Interned nodes, including conditions that never got marked.
    pub interned: usize,
    /// Marking levels (steps).
    pub levels: u32,
    /// Deferred batches handed to the compute routine.
    pub compute_batches: u32,
    /// Final phase.
    pub phase: u32,
    /// Wall time spent expanding frontiers (asking nodes for dependencies, bucketing edges).
    pub expand_time: Duration,
    /// Wall time spent interning and marking.
    pub mark_time: Duration,
    /// Wall time spent in the compute routine.
    pub compute_time: Duration,
    /// Wall time spent sorting the marked nodes and building the log.
    pub finish_time: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Work {
    node: NodeId,
    /// First time in a frontier (run `on_marked`), as opposed to a deferred node whose
    /// dependencies were just computed.
    fresh: bool,
}

/// The output of one expansion task, bucketed by partition.
#[derive(Debug)]
struct Buckets<K, C> {
    /// Static edges by target partition.
    statics: Vec<Vec<(K, C)>>,
    /// Edges a marked condition enabled `(target, carry, condition)`, by target partition.
    triggered: Vec<Vec<(K, C, u32)>>,
    /// Conditional edges `(condition, target)` by condition partition.
    conditionals: Vec<Vec<(K, K, C)>>,
    interesting: Vec<NodeId>,
    dynamic: Vec<NodeId>,
    deferred: Vec<(u32, NodeId)>,
    deps: Dependencies<K>,
    reason_cache: ReasonCache,
    /// The ids of the two reasons most recently fetched from `reason_cache`: consecutive
    /// edges, within a node and across nodes, mostly alternate between a few reasons.
    recent_reasons: RecentReasons,
}

impl<K: Clone + std::hash::Hash, C: Copy> Buckets<K, C> {
    fn new() -> Self {
        Buckets {
            statics: (0..PARTITIONS).map(|_| Vec::new()).collect(),
            triggered: (0..PARTITIONS).map(|_| Vec::new()).collect(),
            conditionals: (0..PARTITIONS).map(|_| Vec::new()).collect(),
            interesting: Vec::new(),
            dynamic: Vec::new(),
            deferred: Vec::new(),
            deps: Dependencies::default(),
            reason_cache: ReasonCache::default(),
            recent_reasons: RecentReasons::default(),
        }
    }

    fn clear(&mut self) {
        self.statics.iter_mut().for_each(Vec::clear);
        self.triggered.iter_mut().for_each(Vec::clear);
        self.conditionals.iter_mut().for_each(Vec::clear);
    }

    #[inline]
    fn push_static(&mut self, target: K, carry: C) {
        let bucket = &mut self.statics[partition_of(hash_key(&target))];
        bucket.push((target, carry));
        crate::prefetch::ahead_of(bucket, BUCKET_PREFETCH_EDGES * size_of::<(K, C)>());
    }

    fn push_triggered(&mut self, target: K, carry: C, condition: u32) {
        self.triggered[partition_of(hash_key(&target))].push((target, carry, condition));
    }

    fn push_conditional(&mut self, condition: K, target: K, carry: C) {
        self.conditionals[partition_of(hash_key(&condition))].push((condition, target, carry));
    }

    /// Moves `self.deps` into the buckets as edges from `source`.
    #[inline]
    fn commit<M: Strategy<Carry = C>>(&mut self, reasons: &Reasons, source: u32, source_hash: u32) {
        let mut deps = mem::take(&mut self.deps);
        for (target, reason) in deps.statics.drain(..) {
            let reason = if M::LOGS {
                self.recent_reasons
                    .id(reason, |r| self.reason_cache.id(reasons, r))
            } else {
                0
            };
            let carry = M::carry(EdgeOrigin {
                source,
                condition: NONE,
                source_hash,
                reason,
            });
            self.push_static(target, carry);
        }
        for c in deps.conditionals.drain(..) {
            let carry = M::carry(EdgeOrigin {
                source,
                condition: NONE,
                source_hash,
                reason: if M::LOGS {
                    self.reason_cache.id(reasons, c.reason)
                } else {
                    0
                },
            });
            self.push_conditional(c.condition, c.target, carry);
        }
        self.deps = deps;
    }
}

struct Done<L> {
    order: Vec<NodeId>,
    log: L,
}

/// The dependency analyzer (crossgen2 `DependencyAnalyzer<MarkStrategy, DependencyContextType>`).
///
/// `S` supplies the nodes; `M` is the mark strategy ([`NoLog`], [`FirstMark`](crate::FirstMark),
/// [`FullGraph`](crate::FullGraph)). Add roots, call
/// [`compute_marked_nodes`](Analyzer::compute_marked_nodes), then read the ordered marked
/// list, keys, and the log.
pub struct Analyzer<'s, S: NodeSource, M: MarkStrategy = NoLog> {
    source: &'s S,
    options: AnalyzerOptions,
    shuffler: Option<Shuffler>,
    parts: Vec<Partition<S::Key, M::Carry>>,
    stores: Vec<M::Store>,
    buckets: Vec<Buckets<S::Key, M::Carry>>,
    pending_statics: Vec<(S::Key, M::Carry)>,
    pending_triggered: Vec<(S::Key, M::Carry, u32)>,
    pending_conditionals: Vec<(S::Key, S::Key, M::Carry)>,
    frontier: Vec<Work>,
    interesting: Vec<NodeId>,
    /// Nodes with dynamic dependencies and their cursor into `interesting`.
    dynamic: Vec<(NodeId, usize)>,
    deferred: BTreeMap<u32, Vec<NodeId>>,
    phase: u32,
    levels: u32,
    compute_batches: u32,
    times: [Duration; 4],
    failed: bool,
    reasons: Reasons,
    done: Option<Done<M::Log>>,
}

impl<S: NodeSource, M: MarkStrategy> std::fmt::Debug for Analyzer<'_, S, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer")
            .field("options", &self.options)
            .field("phase", &self.phase)
            .field("levels", &self.levels)
            .field("completed", &self.done.is_some())
            .finish_non_exhaustive()
    }
}

impl<'s, S: NodeSource, M: MarkStrategy> Analyzer<'s, S, M> {
    /// An analyzer over `source` with no roots yet.
    pub fn new(source: &'s S, options: AnalyzerOptions) -> Self {
        // Each partition's share of the capacity hint, plus 1/16 for uneven hashing.
        let share = options.capacity.map_or(0, |nodes| {
            let share = nodes.div_ceil(PARTITIONS);
            share + share / 16
        });
        Analyzer {
            source,
            shuffler: options.shuffle_seed.map(Shuffler::new),
            options,
            parts: (0..PARTITIONS)
                .map(|p| {
                    let mut part = Partition::new(p);
                    part.reserve(share);
                    part
                })
                .collect(),
            stores: (0..PARTITIONS)
                .map(|_| {
                    let mut store = M::Store::default();
                    M::reserve(&mut store, share);
                    store
                })
                .collect(),
            buckets: Vec::new(),
            pending_statics: Vec::new(),
            pending_triggered: Vec::new(),
            pending_conditionals: Vec::new(),
            frontier: Vec::new(),
            interesting: Vec::new(),
            dynamic: Vec::new(),
            deferred: BTreeMap::new(),
            phase: 0,
            levels: 0,
            compute_batches: 0,
            times: [Duration::ZERO; 4],
            failed: false,
            reasons: Reasons::default(),
            done: None,
        }
    }

    /// The node source.
    pub fn source(&self) -> &'s S {
        self.source
    }

    /// Adds a root: `key` is marked because of `reason`. Returns its id.
    ///
    /// # Errors
    /// [`AnalysisError::RootAfterCompletion`] once marking has completed.
    pub fn add_root(&mut self, key: S::Key, reason: Reason) -> Result<NodeId, AnalysisError> {
        if self.done.is_some() {
            return Err(AnalysisError::RootAfterCompletion {
                name: self.source.name(&key),
                reason,
            });
        }
        let hash = hash_key(&key);
        let part = &mut self.parts[partition_of(hash)];
        let local = part.intern(&key, hash);
        let id = part.id(local);
        let carry = M::carry(EdgeOrigin {
            source: NONE,
            condition: NONE,
            source_hash: 0,
            reason: if M::LOGS { self.reasons.id(reason) } else { 0 },
        });
        self.pending_statics.push((key, carry));
        Ok(id)
    }

    /// Adds roots in bulk: each of `keys` is marked because of `reason`. Unlike
    /// [`add_root`](Analyzer::add_root) it returns no ids, so the keys are interned by the
    /// first marking step, in parallel, rather than one by one here.
    ///
    /// # Errors
    /// [`AnalysisError::RootAfterCompletion`] once marking has completed (naming the first key).
    pub fn add_roots(
        &mut self,
        keys: impl IntoIterator<Item = S::Key>,
        reason: Reason,
    ) -> Result<(), AnalysisError> {
        let mut keys = keys.into_iter();
        if self.done.is_some() {
            return match keys.next() {
                Some(key) => Err(AnalysisError::RootAfterCompletion {
                    name: self.source.name(&key),
                    reason,
                }),
                None => Ok(()),
            };
        }
        let carry = M::carry(EdgeOrigin {
            source: NONE,
            condition: NONE,
            source_hash: 0,
            reason: if M::LOGS { self.reasons.id(reason) } else { 0 },
        });
        self.pending_statics.extend(keys.map(|key| (key, carry)));
        Ok(())
    }

    /// Marks everything reachable from the roots, to a fixed point, and sorts the result
    /// (read it with [`marked_nodes`](Analyzer::marked_nodes)). Calling it again does nothing.
    ///
    /// # Errors
    /// [`AnalysisError::Uncomputed`] if the compute routine leaves a deferred node uncomputed;
    /// [`AnalysisError::ThreadPool`] if the requested pool cannot be built;
    /// [`AnalysisError::Failed`] after an earlier failure.
    pub fn compute_marked_nodes(&mut self) -> Result<(), AnalysisError> {
        if self.failed {
            return Err(AnalysisError::Failed);
        }
        if self.done.is_none() {
            let result = match self.options.threads {
                // Already on a pool of that size (a compiler that runs every phase on one
                // pool): no second pool.
                Some(threads)
                    if rayon::current_thread_index().is_some()
                        && rayon::current_num_threads() == threads =>
                {
                    self.run()
                }
                Some(threads) => {
                    let pool = crate::shared_pool(threads)
                        .map_err(|source| AnalysisError::ThreadPool { threads, source })?;
                    pool.install(|| self.run())
                }
                None => self.run(),
            };
            if let Err(e) = result {
                self.failed = true;
                return Err(e);
            }
        }
        Ok(())
    }

    /// The marked nodes in the final order supplied by [`NodeSource::compare`].
    ///
    /// # Errors
    /// [`AnalysisError::NotCompleted`] before marking completed.
    pub fn marked_nodes(&self) -> Result<&[NodeId], AnalysisError> {
        self.done
            .as_ref()
            .map(|d| d.order.as_slice())
            .ok_or(AnalysisError::NotCompleted)
    }

    /// The log left by the mark strategy.
    ///
    /// # Errors
    /// [`AnalysisError::NotCompleted`] before marking completed.
    pub fn log(&self) -> Result<&M::Log, AnalysisError> {
        self.done
            .as_ref()
            .map(|d| &d.log)
            .ok_or(AnalysisError::NotCompleted)
    }

    /// The key of a node.
    ///
    /// # Errors
    /// [`AnalysisError::UnknownNode`] for an id this analyzer did not produce.
    pub fn key(&self, node: NodeId) -> Result<&S::Key, AnalysisError> {
        self.parts[node.partition()]
            .keys
            .get(node.local() as usize)
            .ok_or(AnalysisError::UnknownNode { node })
    }

    /// The node's name (from [`NodeSource::name`]).
    ///
    /// # Errors
    /// [`AnalysisError::UnknownNode`] for an id this analyzer did not produce.
    pub fn name(&self, node: NodeId) -> Result<String, AnalysisError> {
        Ok(self.source.name(self.key(node)?))
    }

    /// The id of `key`, if it has been interned.
    pub fn id_of(&self, key: &S::Key) -> Option<NodeId> {
        let hash = hash_key(key);
        let part = &self.parts[partition_of(hash)];
        part.find(key, hash).map(|local| part.id(local))
    }

    /// Whether `node` is marked (so far, while marking is in progress).
    pub fn is_marked(&self, node: NodeId) -> bool {
        self.parts[node.partition()].is_marked(node.local())
    }

    /// The chain of reasons from a root to `node`, root edge first ("why is this here?"):
    /// a shortest chain under [`FullGraph`](crate::FullGraph), the chain of first marks under
    /// [`FirstMark`](crate::FirstMark) (see [`MarkLog::path_to`]).
    ///
    /// # Errors
    /// [`AnalysisError::NotCompleted`], [`AnalysisError::UnknownNode`], or
    /// [`AnalysisError::NotLogged`] when the node is not marked or the analyzer has no log.
    pub fn why(&self, node: NodeId) -> Result<Vec<LoggedEdge>, AnalysisError> {
        let name = self.name(node)?;
        self.log()?
            .path_to(node)
            .ok_or(AnalysisError::NotLogged { node, name })
    }

    /// Counters of the analysis so far.
    pub fn stats(&self) -> AnalysisStats {
        AnalysisStats {
            marked: self.parts.iter().map(|p| p.marked_locals().count()).sum(),
            interned: self.parts.iter().map(|p| p.keys.len()).sum(),
            levels: self.levels,
            compute_batches: self.compute_batches,
            phase: self.phase,
            expand_time: self.times[0],
            mark_time: self.times[1],
            compute_time: self.times[2],
            finish_time: self.times[3],
        }
    }

    fn has_step_work(&self) -> bool {
        !(self.frontier.is_empty()
            && self.pending_statics.is_empty()
            && self.pending_triggered.is_empty()
            && self.pending_conditionals.is_empty())
    }

    fn run(&mut self) -> Result<(), AnalysisError> {
        loop {
            // Mark to a fixed point of static, conditional and dynamic dependencies.
            loop {
                while self.has_step_work() {
                    self.step();
                }
                if !self.search_dynamic() {
                    break;
                }
            }
            // Compute the dependencies that were not ready, then go around again.
            if let Some(batch) = self.deferred.remove(&self.phase) {
                self.compute(batch)?;
            }
            if !self.has_step_work() {
                self.phase += 1;
                self.source.on_phase_change(self.phase);
                if self.deferred.is_empty() {
                    break;
                }
            }
        }
        self.finish();
        Ok(())
    }

    /// One marking level.
    fn step(&mut self) {
        let mut work = mem::take(&mut self.frontier);
        let mut statics = mem::take(&mut self.pending_statics);
        let mut triggered = mem::take(&mut self.pending_triggered);
        let mut conditionals = mem::take(&mut self.pending_conditionals);
        if let Some(shuffler) = &mut self.shuffler {
            shuffler.shuffle(&mut work);
            shuffler.shuffle(&mut statics);
            shuffler.shuffle(&mut triggered);
            shuffler.shuffle(&mut conditionals);
        }
        self.levels += 1;

        let mut start = 0;
        loop {
            let end = work.len().min(start + SUB_STEP);
            let slice = &work[start..end];
            // Small levels in smaller chunks, so every worker gets some (the edges a partition
            // sees are in frontier order whatever the chunks: results do not depend on them).
            let chunk = (slice.len() / (4 * rayon::current_num_threads())).clamp(MIN_CHUNK, CHUNK);
            let tasks = slice.len().div_ceil(chunk);
            while self.buckets.len() <= tasks {
                self.buckets.push(Buckets::new());
            }

            let started = Instant::now();
            let (source, parts, phase, reasons) =
                (self.source, &self.parts, self.phase, &self.reasons);
            slice
                .par_chunks(chunk)
                .zip(self.buckets[..tasks].par_iter_mut())
                .for_each(|(items, buckets)| {
                    expand::<S, M>(source, parts, reasons, phase, items, buckets)
                });

            // Pending edges ride in one extra bucket set, in the first sub-step.
            let extra = &mut self.buckets[tasks];
            extra.clear();
            for (target, carry) in statics.drain(..) {
                extra.push_static(target, carry);
            }
            for (target, carry, condition) in triggered.drain(..) {
                extra.push_triggered(target, carry, condition);
            }
            for (condition, target, carry) in conditionals.drain(..) {
                extra.push_conditional(condition, target, carry);
            }

            let expanded = Instant::now();
            self.times[0] += expanded - started;
            let buckets = &self.buckets[..=tasks];
            let names = if M::LOGS {
                self.reasons.names()
            } else {
                Vec::new()
            };
            self.parts
                .par_iter_mut()
                .zip(self.stores.par_iter_mut())
                .for_each(|(part, store)| {
                    mark_partition::<S::Key, M>(part, store, buckets, &names)
                });

            if M::NEEDS_HASH {
                self.resolve_contests(&names);
            }
            self.times[1] += expanded.elapsed();
            for buckets in &mut self.buckets[..=tasks] {
                for &node in &buckets.interesting {
                    self.interesting.push(node);
                }
                buckets.interesting.clear();
                self.dynamic
                    .extend(buckets.dynamic.drain(..).map(|n| (n, 0)));
                for (phase, node) in buckets.deferred.drain(..) {
                    self.deferred.entry(phase).or_default().push(node);
                }
            }

            start = end;
            if start >= work.len() {
                break;
            }
        }

        // The next frontier reuses this one's memory.
        work.clear();
        debug_assert!(self.frontier.is_empty());
        self.frontier = work;
        for part in &mut self.parts {
            if M::SAME_LEVEL_REPEATS_ONLY {
                part.end_level();
            }
            self.frontier.extend(
                part.newly_marked
                    .drain(..)
                    .map(|node| Work { node, fresh: true }),
            );
            self.pending_triggered.append(&mut part.triggered);
        }
    }

    /// Runs every dynamic node's search over the interesting nodes it has not seen.
    /// Returns whether it produced work.
    fn search_dynamic(&mut self) -> bool {
        let seen = self.interesting.len();
        if self.dynamic.iter().all(|&(_, cursor)| cursor >= seen) {
            return false;
        }
        let (source, parts) = (self.source, &self.parts);
        let interesting: Vec<MarkedNode<'_, S::Key>> = self
            .interesting
            .iter()
            .map(|&id| MarkedNode {
                id,
                key: key_of(parts, id),
            })
            .collect();
        let found: Vec<(NodeId, Dependencies<S::Key>)> = self
            .dynamic
            .par_iter()
            .filter(|&&(_, cursor)| cursor < seen)
            .map(|&(node, cursor)| {
                let mut deps = Dependencies::default();
                let key = key_of(parts, node);
                source.search_dynamic_dependencies(node, key, &interesting[cursor..], &mut deps);
                (node, deps)
            })
            .collect();
        drop(interesting);
        for (_, cursor) in &mut self.dynamic {
            *cursor = seen;
        }
        for (node, deps) in found {
            let source_hash = if M::NEEDS_HASH {
                order_hash(key_of(&self.parts, node))
            } else {
                0
            };
            let reasons = &self.reasons;
            let origin = |reason| EdgeOrigin {
                source: node.as_u32(),
                condition: NONE,
                source_hash,
                reason: if M::LOGS { reasons.id(reason) } else { 0 },
            };
            for (target, reason) in deps.statics {
                self.pending_statics
                    .push((target, M::carry(origin(reason))));
            }
            for c in deps.conditionals {
                let carry = M::carry(origin(c.reason));
                self.pending_conditionals
                    .push((c.condition, c.target, carry));
            }
        }
        self.has_step_work()
    }

    /// Hands a deferred batch to the compute routine, in parallel.
    fn compute(&mut self, mut batch: Vec<NodeId>) -> Result<(), AnalysisError> {
        if let Some(shuffler) = &mut self.shuffler {
            shuffler.shuffle(&mut batch);
        }
        self.compute_batches += 1;
        let started = Instant::now();
        let (source, parts) = (self.source, &self.parts);
        batch
            .par_iter()
            .for_each(|&node| source.compute_dependencies(node, key_of(parts, node)));
        for &node in &batch {
            let key = key_of(parts, node);
            if !source.static_dependencies_computed(node, key) {
                return Err(AnalysisError::Uncomputed {
                    node,
                    name: source.name(key),
                    phase: self.phase,
                });
            }
        }
        self.frontier
            .extend(batch.into_iter().map(|node| Work { node, fresh: false }));
        self.times[2] += started.elapsed();
        Ok(())
    }

    /// Replaces first-mark candidates that only keys could order.
    fn resolve_contests(&mut self, names: &[Reason]) {
        for p in 0..PARTITIONS {
            for (local, candidate) in M::take_contests(&mut self.stores[p]) {
                let current = M::current(&self.stores[p], local);
                let less = |c: &EdgeOrigin| self.full_cmp(&candidate, c, names) == Ordering::Less;
                if current.is_some_and(|c| less(&c)) {
                    M::replace(&mut self.stores[p], local, candidate);
                }
            }
        }
    }

    /// The total order of first-mark candidates (see [`crate::mark_log`]).
    fn full_cmp(&self, a: &EdgeOrigin, b: &EdgeOrigin, names: &[Reason]) -> Ordering {
        let key = |raw: u32| (raw != NONE).then(|| key_of(&self.parts, raw_id(raw)));
        let cmp_keys = |x: Option<&S::Key>, y: Option<&S::Key>| match (x, y) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => self.source.compare(x, y),
        };
        (!a.is_root())
            .cmp(&!b.is_root())
            .then(a.source_hash.cmp(&b.source_hash))
            .then_with(|| cmp_keys(key(a.source), key(b.source)))
            .then_with(|| names[a.reason as usize].cmp(names[b.reason as usize]))
            .then_with(|| cmp_keys(key(a.condition), key(b.condition)))
    }

    /// Sorts the marked nodes and builds the log.
    fn finish(&mut self) {
        let started = Instant::now();
        self.buckets = Vec::new();
        let order = crate::order::sorted_marked(self.source, &self.parts);
        let id_bound = self
            .parts
            .iter()
            .map(|p| p.keys.len() << crate::id::PARTITION_BITS)
            .max()
            .unwrap_or(0);
        let stores = mem::take(&mut self.stores);
        let log = M::finish(stores, &order, id_bound, self.reasons.names());
        self.done = Some(Done { order, log });
        self.times[3] += started.elapsed();
    }
}

/// 16 bits of the key's hash (its top, which neither the partition nor the partition's table
/// index uses): the cheap first part of the first-mark order.
#[inline]
pub(crate) fn order_hash<K: std::hash::Hash>(key: &K) -> u32 {
    (hash_key(key) >> 48) as u32
}

#[inline]
fn key_of<K, C>(parts: &[Partition<K, C>], node: NodeId) -> &K {
    &parts[node.partition()].keys[node.local() as usize]
}

/// Expansion of one chunk of the frontier (runs on a worker thread).
fn expand<S: NodeSource, M: MarkStrategy>(
    source: &S,
    parts: &[Partition<S::Key, M::Carry>],
    reasons: &Reasons,
    phase: u32,
    items: &[Work],
    buckets: &mut Buckets<S::Key, M::Carry>,
) {
    buckets.clear();
    for &Work { node, fresh } in items {
        let key = key_of(parts, node);
        if fresh {
            source.on_marked(node, key);
            if source.interesting_for_dynamic_analysis(node, key) {
                buckets.interesting.push(node);
            }
            if !source.static_dependencies_computed(node, key) {
                let deferred_phase = source.deferral_phase(node, key).max(phase);
                buckets.deferred.push((deferred_phase, node));
                continue;
            }
        }
        if source.has_dynamic_dependencies(node, key) {
            buckets.dynamic.push(node);
        }
        source.static_dependencies(node, key, &mut buckets.deps);
        let source_hash = if M::NEEDS_HASH { order_hash(key) } else { 0 };
        buckets.commit::<M>(reasons, node.as_u32(), source_hash);
        buckets.deps.clear();
    }
}

/// Interning and marking of one partition (runs on a worker thread; the partition's worker is
/// the only writer of its map, marks, conditional store and log store).
fn mark_partition<K, M>(
    part: &mut Partition<K, M::Carry>,
    store: &mut M::Store,
    buckets: &[Buckets<K, M::Carry>],
    names: &[Reason],
) where
    K: Clone + Eq + std::hash::Hash,
    M: MarkStrategy,
{
    let p = part.index;
    for b in buckets {
        let statics = &b.statics[p];
        for (i, (key, carry)) in statics.iter().enumerate() {
            if let Some((ahead, _)) = statics.get(i + PREFETCH_AHEAD) {
                part.prefetch(hash_key(ahead));
            }
            mark_edge::<K, M>(part, store, key, *carry, NONE, names);
        }
        for (key, carry, condition) in &b.triggered[p] {
            mark_edge::<K, M>(part, store, key, *carry, *condition, names);
        }
    }
    // After every static edge of the step, so "condition already marked" does not depend on
    // the order of edges inside the step.
    for b in buckets {
        for (condition, target, carry) in &b.conditionals[p] {
            let local = part.intern(condition, hash_key(condition));
            if part.is_marked(local) {
                let condition = part.id(local).as_u32();
                part.triggered.push((target.clone(), *carry, condition));
            } else {
                part.conditional.entry(local).or_default().push(Waiting {
                    target: target.clone(),
                    carry: *carry,
                });
            }
        }
    }
}

/// Interns and marks the target of one edge (`condition`: raw id of the node whose marking
/// enabled the edge, or `NONE`) and records it in the log.
#[inline(always)]
fn mark_edge<K, M>(
    part: &mut Partition<K, M::Carry>,
    store: &mut M::Store,
    key: &K,
    carry: M::Carry,
    condition: u32,
    names: &[Reason],
) where
    K: Clone + Eq + std::hash::Hash,
    M: MarkStrategy,
{
    let local = part.intern(key, hash_key(key));
    let newly = part.mark(local);
    let target = part.id(local);
    if newly {
        part.newly_marked.push(target);
        if M::SAME_LEVEL_REPEATS_ONLY {
            part.set_this_level(local);
        }
        if !part.conditional.is_empty()
            && let Some(waiting) = part.conditional.remove(&local)
        {
            let condition = target.as_u32();
            part.triggered
                .extend(waiting.into_iter().map(|w| (w.target, w.carry, condition)));
        }
    }
    if newly || !M::SAME_LEVEL_REPEATS_ONLY || part.is_this_level(local) {
        M::record(store, target, newly, carry, condition, names);
    }
}
