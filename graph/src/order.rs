//! The final order of the marked nodes: [`NodeSource::compare`], sped up by
//! [`NodeSource::order_prefix`] when the source gives one.
//!
//! Without prefixes (all equal) the marked `(key, id)` pairs get one parallel comparison
//! sort. With prefixes, a most-significant-digit radix sort on the prefix's offset from the
//! least one runs first: one parallel pass of [`DIGIT_BITS`] bits into a second buffer, then,
//! inside each of its buckets (a few thousand nodes, in cache), a second digit about as wide
//! as the bucket is long, and `compare` sorts only the few nodes left in each sub-bucket.
//! Equal prefixes stay in one sub-bucket, so the result is `compare`'s order whatever the
//! prefixes are.

use std::cmp::Ordering;

use rayon::prelude::*;

use crate::partition::Partition;
use crate::{NodeId, NodeSource};

/// Bits of each radix digit: 256 buckets a pass.
const DIGIT_BITS: u32 = 8;
const RADIX: usize = 1 << DIGIT_BITS;
/// Below this many nodes, one comparison sort.
const SMALL: usize = 1 << 14;
/// Buckets larger than this (prefixes bunched together) are sorted by `compare` in parallel.
const LARGE: usize = 1 << 16;
/// Buckets up to this size are sorted by `compare` rather than by a further digit.
const TINY: usize = 64;
/// Widest second digit: 16,384 sub-buckets (a 64 KiB histogram) for a bucket of 8,192 nodes
/// or more.
const MAX_SECOND_BITS: u32 = 14;

type Pair<K> = (K, NodeId);

/// The marked nodes of `parts`, ordered by `source.compare`.
///
/// # Panics
/// In debug builds, if the source's prefixes contradict its `compare`.
pub(crate) fn sorted_marked<S: NodeSource, C: Sync>(
    source: &S,
    parts: &[Partition<S::Key, C>],
) -> Vec<NodeId> {
    let counts: Vec<usize> = parts.iter().map(Partition::marked_count).collect();
    let total: usize = counts.iter().sum();
    let Some(any) = parts.iter().find_map(|p| p.keys.first()) else {
        return Vec::new();
    };
    let filler = (any.clone(), NodeId::from_parts(0, 0));
    let compare = |a: &Pair<S::Key>, b: &Pair<S::Key>| source.compare(&a.0, &b.0);
    let pair = |p: &Partition<S::Key, C>, l: u32| (p.keys[l as usize].clone(), p.id(l));

    let (min, max) = if total < SMALL {
        (0, 0)
    } else {
        parts
            .par_iter()
            .map(|p| {
                p.marked_locals().fold((u64::MAX, 0), |(lo, hi), l| {
                    let prefix = source.order_prefix(&p.keys[l as usize]);
                    (lo.min(prefix), hi.max(prefix))
                })
            })
            .reduce(|| (u64::MAX, 0), |a, b| (a.0.min(b.0), a.1.max(b.1)))
    };
    // Sort (key, id) pairs rather than ids, so comparisons do not chase keys through ids.
    // They are written in place, partition by partition in parallel, into one exactly sized
    // vector (16 bytes a node with 8-byte keys), itself filled in parallel (a serial fill of
    // fresh pages was ~2 ms of a 2-thread finish).
    let mut sorted: Vec<Pair<S::Key>> =
        (0..total).into_par_iter().map(|_| filler.clone()).collect();
    if min >= max {
        let slices = split_by_lengths(&mut sorted, counts);
        parts.par_iter().zip(slices).for_each(|(p, slice)| {
            for (slot, l) in slice.iter_mut().zip(p.marked_locals()) {
                *slot = pair(p, l);
            }
        });
        sorted.par_sort_unstable_by(compare);
        return sorted.par_iter().map(|&(_, id)| id).collect();
    }

    // Digits are taken from the top of the prefixes' span (`prefix - min`).
    let top = u64::BITS - (max - min).leading_zeros();
    let first_shift = top.saturating_sub(DIGIT_BITS);
    // The first digit of a key (a constant mask: made a parameter, it cost the first pass
    // ~2 ms in 15 at 1 thread).
    let first_digit =
        |key: &S::Key| ((source.order_prefix(key) - min) >> first_shift) as usize & (RADIX - 1);

    // First digit: each partition counts, then scatters into its own regions of `sorted`
    // (bucket-major: bucket 0 of partition 0, of partition 1, ..., bucket 1 of partition 0...).
    let histograms: Vec<[usize; RADIX]> = parts
        .par_iter()
        .map(|p| {
            let mut histogram = [0; RADIX];
            for l in p.marked_locals() {
                histogram[first_digit(&p.keys[l as usize])] += 1;
            }
            histogram
        })
        .collect();
    let bucket_lens: Vec<usize> = (0..RADIX)
        .map(|b| histograms.iter().map(|h| h[b]).sum())
        .collect();
    let bucket_major = (0..RADIX).flat_map(|b| histograms.iter().map(move |h| h[b]));
    let mut regions: Vec<Vec<&mut [Pair<S::Key>]>> = (0..histograms.len())
        .map(|_| Vec::with_capacity(RADIX))
        .collect();
    for (i, region) in split_by_lengths(&mut sorted, bucket_major)
        .into_iter()
        .enumerate()
    {
        regions[i % histograms.len()].push(region);
    }
    parts.par_iter().zip(regions).for_each(|(p, mut regions)| {
        let mut cursors = [0; RADIX];
        for l in p.marked_locals() {
            let b = first_digit(&p.keys[l as usize]);
            regions[b][cursors[b]] = pair(p, l);
            cursors[b] += 1;
        }
    });

    // Inside each bucket: the next digit, back and forth through a scratch copy, then
    // `compare` on what is left. The digit is as wide as the bucket is long (up to
    // `MAX_SECOND_BITS`, and no wider than the bits left), so with prefixes as fine as the
    // keys most sub-buckets hold one node and `compare` has nothing left to do.
    let buckets = split_by_lengths(&mut sorted, bucket_lens);
    buckets.into_par_iter().for_each(|bucket| {
        if bucket.len() <= TINY || first_shift == 0 {
            sort_by(bucket, compare);
            return;
        }
        let bits = (usize::BITS - bucket.len().leading_zeros())
            .clamp(DIGIT_BITS, MAX_SECOND_BITS)
            .min(first_shift);
        let shift = first_shift - bits;
        let sub_digit = |pair: &Pair<S::Key>| {
            ((source.order_prefix(&pair.0) - min) >> shift) as usize & ((1 << bits) - 1)
        };
        let scratch = bucket.to_vec();
        let mut starts = vec![0u32; (1 << bits) + 1];
        for pair in &scratch {
            starts[sub_digit(pair) + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        let mut cursors = starts.clone();
        for pair in scratch {
            let b = sub_digit(&pair);
            bucket[cursors[b] as usize] = pair;
            cursors[b] += 1;
        }
        for range in starts.windows(2) {
            if range[1] - range[0] > 1 {
                sort_by(&mut bucket[range[0] as usize..range[1] as usize], compare);
            }
        }
    });
    debug_assert!(
        sorted
            .windows(2)
            .all(|w| compare(&w[0], &w[1]) == Ordering::Less),
        "NodeSource::order_prefix contradicts NodeSource::compare"
    );
    sorted.par_iter().map(|&(_, id)| id).collect()
}

/// `items` cut into consecutive slices of `lengths` (which must sum to at most its length).
fn split_by_lengths<T>(
    mut items: &mut [T],
    lengths: impl IntoIterator<Item = usize>,
) -> Vec<&mut [T]> {
    lengths
        .into_iter()
        .map(|len| {
            let (head, tail) = std::mem::take(&mut items).split_at_mut(len);
            items = tail;
            head
        })
        .collect()
}

/// Sorts `items` by `compare`, in parallel when there are many.
fn sort_by<T: Send>(items: &mut [T], compare: impl Fn(&T, &T) -> Ordering + Sync) {
    if items.len() > LARGE {
        items.par_sort_unstable_by(compare);
    } else {
        items.sort_unstable_by(compare);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dependencies;
    use crate::partition::{hash_key, partition_of};

    type PrefixFn = fn(u64) -> u64;

    /// Keys in `u64` order, with a prefix chosen by the test.
    struct Keys(PrefixFn);

    impl NodeSource for Keys {
        type Key = u64;
        fn static_dependencies(&self, _: NodeId, _: &u64, _: &mut Dependencies<u64>) {}
        fn order_prefix(&self, &key: &u64) -> u64 {
            (self.0)(key)
        }
    }

    /// Partitions holding `keys`, every third one interned but not marked.
    fn partitions(keys: &[u64]) -> Vec<Partition<u64, ()>> {
        let mut parts: Vec<Partition<u64, ()>> =
            (0..crate::id::PARTITIONS).map(Partition::new).collect();
        for (i, key) in keys.iter().enumerate() {
            let hash = hash_key(key);
            let part = &mut parts[partition_of(hash)];
            let local = part.intern(key, hash);
            if i % 3 != 0 {
                part.mark(local);
            }
        }
        parts
    }

    #[test]
    fn the_order_is_compares_whatever_the_prefixes() {
        // Pseudo-random keys over the whole u64 range, plus a dense run of small ones.
        let keys: Vec<u64> = (0..150_000u64)
            .map(|i| {
                if i % 2 == 0 {
                    i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17)
                } else {
                    i
                }
            })
            .collect();
        let parts = partitions(&keys);
        let mut expected: Vec<u64> = keys
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0)
            .map(|(_, &k)| k)
            .collect();
        expected.sort_unstable();
        let prefixes: [(&str, PrefixFn); 6] = [
            ("exact", |k| k),
            ("none", |_| 0),
            ("top four bits", |k| k >> 60),
            ("low bits dropped", |k| k >> 12),
            // Nearly every key in one bucket, sorted in parallel.
            ("skewed", |k| u64::from(k > 1_000)),
            ("small span", |k| k.min(300)),
        ];
        for (name, prefix) in prefixes {
            let order = sorted_marked(&Keys(prefix), &parts);
            let got: Vec<u64> = order
                .iter()
                .map(|id| parts[id.partition()].keys[id.local() as usize])
                .collect();
            assert!(got == expected, "prefix {name}: order differs");
        }
    }

    #[test]
    fn nothing_marked_sorts_to_nothing() {
        let parts: Vec<Partition<u64, ()>> =
            (0..crate::id::PARTITIONS).map(Partition::new).collect();
        assert!(sorted_marked(&Keys(|k| k), &parts).is_empty());
        let mut parts = parts;
        parts[0].intern(&5, hash_key(&5));
        assert!(sorted_marked(&Keys(|k| k), &parts).is_empty());
    }
}
