//! Reason interning for the logs: edges carry a `u32` reason id instead of a 16-byte
//! `&'static str`, which keeps logged bucket entries small.

use std::sync::RwLock;

use rustc_hash::FxHashMap;

use crate::Reason;

/// Identity of a `&'static str` (its address and length). Two literals with the same text
/// have two identities but one id.
type Identity = (usize, usize);

fn identity(reason: Reason) -> Identity {
    (reason.as_ptr() as usize, reason.len())
}

/// The analyzer-wide reason table: dense ids, one per distinct text, assigned on first sight.
/// Comparisons always go through the text, so ids never leak into results.
#[derive(Debug, Default)]
pub(crate) struct Reasons {
    table: RwLock<Table>,
}

#[derive(Debug, Default)]
struct Table {
    ids: FxHashMap<Identity, u32>,
    by_text: FxHashMap<Reason, u32>,
    names: Vec<Reason>,
}

impl Reasons {
    /// The id of `reason`, assigning one if it is new.
    pub(crate) fn id(&self, reason: Reason) -> u32 {
        let key = identity(reason);
        if let Some(&id) = self
            .table
            .read()
            .expect("reason table poisoned")
            .ids
            .get(&key)
        {
            return id;
        }
        let mut table = self.table.write().expect("reason table poisoned");
        let Table {
            ids,
            by_text,
            names,
        } = &mut *table;
        *ids.entry(key).or_insert_with(|| {
            *by_text.entry(reason).or_insert_with(|| {
                names.push(reason);
                names.len() as u32 - 1
            })
        })
    }

    /// The texts, indexed by id.
    pub(crate) fn names(&self) -> Vec<Reason> {
        self.table
            .read()
            .expect("reason table poisoned")
            .names
            .clone()
    }
}

/// A per-task cache in front of [`Reasons`], so the shared table is read once per distinct
/// reason per task: a few recent reasons in an array, then a map.
#[derive(Debug, Default)]
pub(crate) struct ReasonCache {
    recent: [(Identity, u32); 4],
    next: usize,
    ids: FxHashMap<Identity, u32>,
}

impl ReasonCache {
    #[inline]
    pub(crate) fn id(&mut self, reasons: &Reasons, reason: Reason) -> u32 {
        let key = identity(reason);
        if let Some(&(_, id)) = self.recent.iter().find(|(k, _)| *k == key && k.1 != 0) {
            return id;
        }
        self.slow(reasons, reason, key)
    }

    #[cold]
    fn slow(&mut self, reasons: &Reasons, reason: Reason, key: Identity) -> u32 {
        let id = *self.ids.entry(key).or_insert_with(|| reasons.id(reason));
        if key.1 != 0 {
            self.recent[self.next] = (key, id);
            self.next = (self.next + 1) % self.recent.len();
        }
        id
    }
}

/// The ids of the two reasons last looked up, checked without a data-dependent branch (a
/// "same as the last edge?" test mispredicts whenever edges alternate between reasons).
#[derive(Debug, Default)]
pub(crate) struct RecentReasons {
    /// `(address, length, id)`; length 0 never matches (the empty text takes the slow way).
    entries: [(usize, usize, u32); 2],
}

impl RecentReasons {
    /// The id of `reason`, from the two entries or else from `slow` (whose answer then
    /// replaces the entry installed first).
    #[inline(always)]
    pub(crate) fn id(&mut self, reason: Reason, slow: impl FnOnce(Reason) -> u32) -> u32 {
        let (at, len) = (reason.as_ptr() as usize, reason.len());
        let [a, b] = self.entries;
        let hit_a = a.0 == at && a.1 == len;
        let hit_b = b.0 == at && b.1 == len;
        if (hit_a | hit_b) && len != 0 {
            // Both entries' ids are loaded; the hit picks one (a conditional move).
            return if hit_a { a.2 } else { b.2 };
        }
        let id = slow(reason);
        self.entries = [(at, len, id), a];
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_dense_and_stable() {
        let reasons = Reasons::default();
        let mut cache = ReasonCache::default();
        let (call, field) = ("call", "field");
        let a = cache.id(&reasons, call);
        let b = cache.id(&reasons, field);
        assert_eq!(cache.id(&reasons, call), a);
        assert_eq!(reasons.id(field), b);
        assert_eq!((a, b), (0, 1));
        assert_eq!(reasons.names(), vec![call, field]);
    }

    #[test]
    fn recent_reasons_answer_from_two_entries_and_ask_on_a_miss() {
        let mut recent = RecentReasons::default();
        let mut asked = Vec::new();
        let mut id = |recent: &mut RecentReasons, reason: Reason| {
            recent.id(reason, |r| {
                asked.push(r);
                r.len() as u32
            })
        };
        // Alternating between two reasons asks once for each.
        for reason in ["call", "hot", "call", "hot", "call"] {
            assert_eq!(id(&mut recent, reason), reason.len() as u32);
        }
        // A third evicts the entry installed first ("call"); the empty text is never cached.
        assert_eq!(id(&mut recent, "field"), 5);
        assert_eq!(id(&mut recent, "hot"), 3);
        assert_eq!(id(&mut recent, "call"), 4);
        assert_eq!(id(&mut recent, ""), 0);
        assert_eq!(id(&mut recent, ""), 0);
        assert_eq!(asked, ["call", "hot", "field", "call", "", ""]);
    }

    #[test]
    fn equal_texts_share_an_id() {
        let reasons = Reasons::default();
        let owned = String::from("call");
        let leaked: &'static str = Box::leak(owned.into_boxed_str());
        assert_eq!(reasons.id("call"), reasons.id(leaked));
        assert_eq!(reasons.names().len(), 1);
    }
}
