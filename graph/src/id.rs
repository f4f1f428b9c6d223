//! Typed node ids handed out by the analyzer's interning arena.

use std::fmt;

/// Number of bits of a [`NodeId`] that select its interning partition.
pub(crate) const PARTITION_BITS: u32 = 6;
/// Number of interning partitions (fixed, so ids never depend on the thread count).
pub(crate) const PARTITIONS: usize = 1 << PARTITION_BITS;
/// Largest index a node may have inside its partition.
pub(crate) const MAX_LOCAL: u32 = (u32::MAX >> PARTITION_BITS) - 1;

/// A node of one [`Analyzer`](crate::Analyzer), interned by its key.
///
/// Ids are dense per partition: the low 6 bits name the interning partition, the rest is the
/// node's index inside it, so `index()` is suitable for side tables (`Vec` indexed by id) with
/// about 1% slack. Only the analyzer that produced an id can interpret it; handing it to
/// another analyzer yields [`AnalysisError::UnknownNode`](crate::AnalysisError::UnknownNode).
/// Ids are deterministic for a given input and thread count; with a shuffle seed they may
/// differ, which is why every observable output (the final order, logs, exports) is keyed by
/// node order, not by id. `Display` prints the form the dumps use: `n42`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct NodeId(u32);

impl NodeId {
    #[inline]
    pub(crate) fn new(partition: usize, local: u32) -> Self {
        debug_assert!(partition < PARTITIONS);
        assert!(
            local <= MAX_LOCAL,
            "interning partition {partition} is full ({MAX_LOCAL} nodes)"
        );
        NodeId((local << PARTITION_BITS) | partition as u32)
    }

    /// For ids built from a local index the partition already validated.
    #[inline]
    pub(crate) fn from_parts(partition: usize, local: u32) -> Self {
        debug_assert!(partition < PARTITIONS && local <= MAX_LOCAL);
        NodeId((local << PARTITION_BITS) | partition as u32)
    }

    #[inline]
    pub(crate) fn partition(self) -> usize {
        (self.0 as usize) & (PARTITIONS - 1)
    }

    #[inline]
    pub(crate) fn local(self) -> u32 {
        self.0 >> PARTITION_BITS
    }

    /// The raw id, for compact storage.
    #[inline]
    pub fn as_u32(self) -> u32 {
        self.0
    }

    /// The id as an index into side tables.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trips_partition_and_local() {
        let id = NodeId::new(5, 1234);
        assert_eq!(id.partition(), 5);
        assert_eq!(id.local(), 1234);
        assert_eq!(id.to_string(), format!("n{}", (1234 << 6) | 5));
    }

    #[test]
    #[should_panic(expected = "is full")]
    fn overflowing_a_partition_panics() {
        let _ = NodeId::new(0, MAX_LOCAL + 1);
    }
}
