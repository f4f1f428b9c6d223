//! Hash-partitioned interning: each partition's map is written by one worker per step, so
//! interning and marking take no locks.

use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;
use rustc_hash::{FxBuildHasher, FxHashMap};

use crate::NodeId;
use crate::id::PARTITION_BITS;

/// The key's hash; stable for a given key (FxHash), so partitions and first-mark ordering do
/// not depend on the run.
#[inline]
pub(crate) fn hash_key<K: Hash>(key: &K) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// The partition a hash belongs to. FxHash's best-mixed bits are the top of its product,
/// which its final rotate (by 26) moves to bits 0..26: hashbrown takes its bucket index from
/// the lowest of them, the partition takes bits 20..26, which only tables beyond 2^20
/// buckets per partition also use.
#[inline]
pub(crate) fn partition_of(hash: u64) -> usize {
    ((hash >> 20) as usize) & ((1 << PARTITION_BITS) - 1)
}

/// A conditional dependency waiting for its condition, stored under the condition's partition.
#[derive(Debug)]
pub(crate) struct Waiting<K, C> {
    pub(crate) target: K,
    pub(crate) carry: C,
}

/// One interning partition: keys, map, marks and the conditional store of its nodes.
#[derive(Debug)]
pub(crate) struct Partition<K, C> {
    pub(crate) index: usize,
    pub(crate) keys: Vec<K>,
    /// Key -> local index (4 bytes a slot; the key is compared through `keys`).
    table: HashTable<u32>,
    marked: Vec<u64>,
    /// Nodes marked in the current level (kept only for first-mark logs).
    this_level: Vec<u64>,
    /// crossgen2's conditional dependency store, keyed by the condition's local index.
    pub(crate) conditional: FxHashMap<u32, Vec<Waiting<K, C>>>,
    /// Nodes marked during the current step, in marking order.
    pub(crate) newly_marked: Vec<NodeId>,
    /// Edges whose condition (the raw id beside them) got marked: applied in the next step.
    pub(crate) triggered: Vec<(K, C, u32)>,
}

impl<K: Hash + Eq + Clone, C> Partition<K, C> {
    pub(crate) fn new(index: usize) -> Self {
        Partition {
            index,
            keys: Vec::new(),
            table: HashTable::new(),
            marked: Vec::new(),
            this_level: Vec::new(),
            conditional: FxHashMap::default(),
            newly_marked: Vec::new(),
            triggered: Vec::new(),
        }
    }

    /// Interns `key` (whose hash is `hash`), returning its local index.
    #[inline]
    pub(crate) fn intern(&mut self, key: &K, hash: u64) -> u32 {
        let keys = &mut self.keys;
        let entry = self.table.entry(
            hash,
            |&local| keys[local as usize] == *key,
            |&local| hash_key(&keys[local as usize]),
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(o) => *o.get(),
            hashbrown::hash_table::Entry::Vacant(v) => {
                let local = keys.len() as u32;
                // Panics (documented on NodeId) if the partition is full.
                let _ = NodeId::new(self.index, local);
                keys.push(key.clone());
                v.insert(local);
                if (local as usize) / 64 >= self.marked.len() {
                    self.marked.push(0);
                    self.this_level.push(0);
                }
                local
            }
        }
    }

    /// Looks `key` up without interning it.
    pub(crate) fn find(&self, key: &K, hash: u64) -> Option<u32> {
        self.table
            .find(hash, |&local| self.keys[local as usize] == *key)
            .copied()
    }

    #[inline]
    pub(crate) fn is_marked(&self, local: u32) -> bool {
        self.marked
            .get(local as usize / 64)
            .is_some_and(|w| w & (1 << (local % 64)) != 0)
    }

    /// Marks `local`; `true` if it was not marked before.
    #[inline]
    pub(crate) fn mark(&mut self, local: u32) -> bool {
        let word = &mut self.marked[local as usize / 64];
        let bit = 1u64 << (local % 64);
        let newly = *word & bit == 0;
        *word |= bit;
        newly
    }

    /// Remembers that `local` was marked in the current level.
    #[inline]
    pub(crate) fn set_this_level(&mut self, local: u32) {
        self.this_level[local as usize / 64] |= 1 << (local % 64);
    }

    #[inline]
    pub(crate) fn is_this_level(&self, local: u32) -> bool {
        self.this_level[local as usize / 64] & (1 << (local % 64)) != 0
    }

    /// Ends the level: forgets which nodes it marked.
    pub(crate) fn end_level(&mut self) {
        for id in &self.newly_marked {
            self.this_level[id.local() as usize / 64] = 0;
        }
    }

    /// Number of marked nodes.
    pub(crate) fn marked_count(&self) -> usize {
        self.marked.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Marked local indices, ascending.
    pub(crate) fn marked_locals(&self) -> impl Iterator<Item = u32> + '_ {
        self.marked.iter().enumerate().flat_map(|(w, &bits)| {
            let mut bits = bits;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let b = bits.trailing_zeros();
                bits &= bits - 1;
                Some(w as u32 * 64 + b)
            })
        })
    }

    /// The id of a node of this partition (`local` came from `intern`, which checked it).
    #[inline]
    pub(crate) fn id(&self, local: u32) -> NodeId {
        NodeId::from_parts(self.index, local)
    }
}
