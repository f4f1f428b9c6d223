//! Hash-partitioned interning: each partition's map is written by one worker per step, so
//! interning and marking take no locks.

use std::hash::{BuildHasher, Hash};

use rustc_hash::{FxBuildHasher, FxHashMap};

use crate::NodeId;
use crate::id::{MAX_LOCAL, PARTITION_BITS};

/// The key's hash; stable for a given key (FxHash), so partitions and first-mark ordering do
/// not depend on the run.
#[inline]
pub(crate) fn hash_key<K: Hash>(key: &K) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// First hash bit of the partition number (see [`partition_of`]).
const PARTITION_SHIFT: u32 = 20;

/// The partition a hash belongs to. FxHash's best-mixed bits are the top of its product,
/// which its final rotate (by 26) moves to bits 0..26: the partition takes bits 20..26, a
/// partition's index ([`Index`]) the bits around them.
#[inline]
pub(crate) fn partition_of(hash: u64) -> usize {
    ((hash >> PARTITION_SHIFT) as usize) & ((1 << PARTITION_BITS) - 1)
}

/// Bits of an index slot that hold the local index (the rest hold the tag).
const LOCAL_BITS: u32 = u32::BITS - PARTITION_BITS;
const LOCAL_MASK: u32 = (1 << LOCAL_BITS) - 1;
/// A free slot (tag and local index all ones: `MAX_LOCAL` stays below `LOCAL_MASK`).
const EMPTY: u32 = u32::MAX;
const _: () = assert!(MAX_LOCAL < LOCAL_MASK);

/// A partition's key -> local index map: open addressing with linear probing over 4-byte
/// slots, each a local index under a 6-bit tag of the key's hash, so a probe reads a key
/// only when the tags agree. Keys live in the partition's `keys`, in local-index order, which
/// is also what growing rehashes from (sequentially). Its own table rather than hashbrown's,
/// for [`prefetch`](Index::prefetch): marking walks long runs of edges whose slots it can
/// compute ahead.
#[derive(Debug, Default)]
struct Index {
    slots: Vec<u32>,
}

impl Index {
    /// The slot a hash probes first: the hash without its partition bits (constant within a
    /// partition), masked to the table.
    #[inline]
    fn home(&self, hash: u64) -> usize {
        let bits = (hash & ((1 << PARTITION_SHIFT) - 1))
            | ((hash >> (PARTITION_SHIFT + PARTITION_BITS)) << PARTITION_SHIFT);
        bits as usize & (self.slots.len().wrapping_sub(1))
    }

    /// A slot's tag for this hash: the hash's top bits (which neither the partition nor the
    /// home slot uses), above the local index.
    #[inline]
    fn tag(hash: u64) -> u32 {
        ((hash >> (u64::BITS - PARTITION_BITS)) as u32) << LOCAL_BITS
    }

    /// The slot of `key`: `Ok(local)` if present, `Err(free slot)` if not. The table must
    /// have a free slot.
    #[inline(always)]
    fn probe<K: Eq>(&self, keys: &[K], key: &K, hash: u64) -> Result<u32, usize> {
        let tag = Self::tag(hash);
        let mask = self.slots.len() - 1;
        let mut at = self.home(hash);
        loop {
            let slot = self.slots[at];
            if slot == EMPTY {
                return Err(at);
            }
            if slot & !LOCAL_MASK == tag && keys[(slot & LOCAL_MASK) as usize] == *key {
                return Ok(slot & LOCAL_MASK);
            }
            at = (at + 1) & mask;
        }
    }

    /// Whether a table of `slots` slots holds `keys` keys: at most 3/4 full.
    #[inline]
    fn holds(slots: usize, keys: usize) -> bool {
        keys * 4 <= slots * 3
    }

    /// Doubles the table (or makes the first one) once `len + 1` keys would fill it past 3/4,
    /// reinserting `keys` in order.
    #[inline]
    fn reserve_one<K: Hash>(&mut self, keys: &[K]) {
        if !Self::holds(self.slots.len(), keys.len() + 1) {
            self.grow(keys);
        }
    }

    #[cold]
    fn grow<K: Hash>(&mut self, keys: &[K]) {
        self.rehash(keys, (self.slots.len() * 2).max(16));
    }

    /// Makes room for `keys` plus `additional` more without growing, reinserting `keys`.
    fn reserve<K: Hash>(&mut self, keys: &[K], additional: usize) {
        let wanted = keys.len() + additional;
        if !Self::holds(self.slots.len(), wanted) {
            let mut len = self.slots.len().max(16);
            while !Self::holds(len, wanted) {
                len *= 2;
            }
            self.rehash(keys, len);
        }
    }

    /// A table of `len` slots (a power of two) holding `keys`.
    fn rehash<K: Hash>(&mut self, keys: &[K], len: usize) {
        self.slots = vec![EMPTY; len];
        let mask = len - 1;
        for (local, key) in keys.iter().enumerate() {
            let hash = hash_key(key);
            let mut at = self.home(hash);
            while self.slots[at] != EMPTY {
                at = (at + 1) & mask;
            }
            self.slots[at] = Self::tag(hash) | local as u32;
        }
    }

    /// Hints the processor to load the first slot `hash` probes.
    #[inline]
    fn prefetch(&self, hash: u64) {
        if self.slots.is_empty() {
            return;
        }
        crate::prefetch::line(&self.slots[self.home(hash)]);
    }
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
    /// Key -> local index.
    lookup: Index,
    marked: Vec<u64>,
    /// Local indices from here on were interned in the current level (first-mark logs ask
    /// whether a marked node was marked in the current level: these were).
    level_start: u32,
    /// Nodes interned before the current level and marked in it (conditions, roots added
    /// by `add_root`): their bits in `marked_late_bits`.
    marked_late: Vec<u32>,
    marked_late_bits: Vec<u64>,
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
            lookup: Index::default(),
            marked: Vec::new(),
            level_start: 0,
            marked_late: Vec::new(),
            marked_late_bits: Vec::new(),
            conditional: FxHashMap::default(),
            newly_marked: Vec::new(),
            triggered: Vec::new(),
        }
    }

    /// Reserves room for `additional` more keys: interning them neither grows the key map
    /// nor moves the keys.
    pub(crate) fn reserve(&mut self, additional: usize) {
        if additional == 0 {
            return;
        }
        self.lookup.reserve(&self.keys, additional);
        self.keys.reserve(additional);
        let words = (self.keys.len() + additional).div_ceil(64);
        self.marked.reserve(words.saturating_sub(self.marked.len()));
        self.marked_late_bits
            .reserve(words.saturating_sub(self.marked_late_bits.len()));
    }

    /// Interns `key` (whose hash is `hash`), returning its local index.
    #[inline(always)]
    pub(crate) fn intern(&mut self, key: &K, hash: u64) -> u32 {
        self.lookup.reserve_one(&self.keys);
        match self.lookup.probe(&self.keys, key, hash) {
            Ok(local) => local,
            Err(free) => {
                let local = self.keys.len() as u32;
                // Panics (documented on NodeId) if the partition is full.
                let _ = NodeId::new(self.index, local);
                self.keys.push(key.clone());
                self.lookup.slots[free] = Index::tag(hash) | local;
                if (local as usize) / 64 >= self.marked.len() {
                    self.marked.push(0);
                    self.marked_late_bits.push(0);
                }
                local
            }
        }
    }

    /// Hints the processor to load what interning a key of this hash reads first.
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        self.lookup.prefetch(hash);
    }

    /// Looks `key` up without interning it.
    pub(crate) fn find(&self, key: &K, hash: u64) -> Option<u32> {
        if self.lookup.slots.is_empty() {
            return None;
        }
        self.lookup.probe(&self.keys, key, hash).ok()
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

    /// Remembers that `local` was marked in the current level (only nodes interned before
    /// the level need remembering).
    #[inline]
    pub(crate) fn set_this_level(&mut self, local: u32) {
        if local < self.level_start {
            self.marked_late.push(local);
            self.marked_late_bits[local as usize / 64] |= 1 << (local % 64);
        }
    }

    /// Whether `local`, a marked node, was marked in the current level: a node interned in
    /// the level is marked in it by the same edge, unless it was interned as a condition,
    /// which is then not marked at all.
    #[inline]
    pub(crate) fn is_this_level(&self, local: u32) -> bool {
        local >= self.level_start
            || (!self.marked_late.is_empty()
                && self.marked_late_bits[local as usize / 64] & (1 << (local % 64)) != 0)
    }

    /// Ends the level: the next one starts with the next interned key.
    pub(crate) fn end_level(&mut self) {
        for local in self.marked_late.drain(..) {
            self.marked_late_bits[local as usize / 64] = 0;
        }
        self.level_start = self.keys.len() as u32;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A key whose hash is chosen by the test: equal hashes put keys in one probe chain under
    /// one tag, so only the key comparison tells them apart.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Forced {
        hash: u64,
        value: u32,
    }

    impl Hash for Forced {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            self.hash.hash(state);
        }
    }

    #[test]
    fn interning_gives_dense_locals_and_finds_every_key_across_growth() {
        let mut part: Partition<u64, ()> = Partition::new(3);
        let keys: Vec<u64> = (0..100_000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9))
            .collect();
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(part.intern(key, hash_key(key)), i as u32);
        }
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(
                part.intern(key, hash_key(key)),
                i as u32,
                "re-interning {key}"
            );
            assert_eq!(part.find(key, hash_key(key)), Some(i as u32));
        }
        assert_eq!(part.find(&1, hash_key(&1)), None);
        assert_eq!(part.keys, keys);
        // At most 3/4 full.
        assert!(part.lookup.slots.len() * 3 >= keys.len() * 4);
    }

    #[test]
    fn a_reserved_partition_interns_its_reservation_without_growing() {
        let mut part: Partition<u64, ()> = Partition::new(2);
        part.intern(&7, hash_key(&7));
        part.reserve(10_000);
        let (slots, keys) = (part.lookup.slots.len(), part.keys.capacity());
        assert!(slots * 3 >= 10_001 * 4, "{slots} slots");
        for key in 100..10_100u64 {
            part.intern(&key, hash_key(&key));
        }
        assert_eq!(part.lookup.slots.len(), slots, "the key map grew");
        assert_eq!(part.keys.capacity(), keys, "the keys moved");
        assert_eq!(part.find(&7, hash_key(&7)), Some(0));
        for key in 100..10_100u64 {
            assert_eq!(part.find(&key, hash_key(&key)), Some((key - 99) as u32));
        }
        // Reserving what is already there changes nothing.
        part.reserve(0);
        assert_eq!(part.lookup.slots.len(), slots);
    }

    #[test]
    fn keys_sharing_a_hash_and_tag_are_told_apart_by_comparison() {
        let mut part: Partition<Forced, ()> = Partition::new(0);
        let keys: Vec<Forced> = (0..1_000)
            .map(|value| Forced {
                hash: value as u64 % 3,
                value,
            })
            .collect();
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(part.intern(key, hash_key(key)), i as u32);
        }
        for (i, key) in keys.iter().enumerate().rev() {
            assert_eq!(part.find(key, hash_key(key)), Some(i as u32));
        }
        let absent = Forced {
            hash: 1,
            value: 5_000,
        };
        assert_eq!(part.find(&absent, hash_key(&absent)), None);
    }

    #[test]
    fn a_level_is_the_keys_it_interned_plus_older_nodes_it_marked() {
        let mut part: Partition<u64, ()> = Partition::new(0);
        let mark = |part: &mut Partition<u64, ()>, key: u64| {
            let local = part.intern(&key, hash_key(&key));
            if part.mark(local) {
                part.set_this_level(local);
            }
            local
        };
        // Level 1 marks 0 and 1; 2 is interned as a condition, not marked.
        let (a, b) = (mark(&mut part, 10), mark(&mut part, 11));
        let condition = part.intern(&12, hash_key(&12));
        assert!(part.is_this_level(a) && part.is_this_level(b));
        part.end_level();
        // Level 2 marks a new node and the old condition.
        let c = mark(&mut part, 13);
        assert_eq!(mark(&mut part, 12), condition);
        assert_eq!(mark(&mut part, 10), a);
        assert!(part.is_this_level(c) && part.is_this_level(condition));
        assert!(!part.is_this_level(a) && !part.is_this_level(b));
        part.end_level();
        // Level 3 marks nothing new: nothing is of this level.
        for local in [a, b, c, condition] {
            assert!(part.is_marked(local));
            assert!(!part.is_this_level(local), "local {local}");
        }
    }

    #[test]
    fn a_partition_without_keys_finds_nothing() {
        let part: Partition<u64, ()> = Partition::new(1);
        assert_eq!(part.find(&7, hash_key(&7)), None);
        part.prefetch(hash_key(&7));
    }
}
