//! `VecMap`: an ordered map kept as a sorted vector, for the many small maps of the naming
//! data (a client's instances per service, its last beats).
//!
//! A `BTreeMap` allocates a whole node (room for eleven entries) for its first entry: with an
//! `Instance` per `ServiceKey` that is about 1.8 KiB for the one service an HTTP client
//! usually registers, and the beats map added another 0.9 KiB. A sorted vector holds exactly
//! its entries (it grows by one while small). Lookups are binary searches; inserts and removals
//! shift, which is cheap at the sizes these maps have.
//!
//! It serializes as a map, so its encoding is the one a `BTreeMap` of the same entries has.
//! Decoding sorts once and keeps the last of equal keys, as a `BTreeMap` would, in
//! O(n log n) whatever order a hostile peer sends.

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Below this length the vector grows by exactly one entry.
const EXACT_GROWTH_MAX: usize = 8;

/// An ordered map over a sorted vector of entries.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VecMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap {
            entries: Vec::new(),
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for VecMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<K: Ord, V> VecMap<K, V> {
    /// An empty map (allocates nothing).
    pub fn new() -> Self {
        VecMap::default()
    }

    fn find<Q>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| &mut self.entries[i].1)
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).is_ok()
    }

    /// Inserts or replaces; the replaced value.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                if self.entries.len() == self.entries.capacity()
                    && self.entries.len() < EXACT_GROWTH_MAX
                {
                    self.entries.reserve_exact(1);
                }
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let i = self.find(key).ok()?;
        let (_, v) = self.entries.remove(i);
        if self.entries.is_empty() {
            self.entries = Vec::new();
        }
        Some(v)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }
}

impl<K, V> VecMap<K, V> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + ExactSizeIterator {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + ExactSizeIterator {
        self.entries.iter_mut().map(|(_, v)| v)
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for VecMap<K, V> {
    /// Sorted once; of equal keys the last wins (as collecting into a `BTreeMap`).
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut entries: Vec<(K, V)> = iter.into_iter().collect();
        // Reversed, a stable sort puts the last of equal keys first; `dedup` keeps it.
        entries.reverse();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, first| later.0 == first.0);
        entries.shrink_to_fit();
        VecMap { entries }
    }
}

impl<K: Ord, V, const N: usize> From<[(K, V); N]> for VecMap<K, V> {
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl<'a, K, V> IntoIterator for &'a VecMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl<K: Serialize, V: Serialize> Serialize for VecMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.entries.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Deserialize<'de> for VecMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor<K, V>(PhantomData<(K, V)>);

        impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Visitor<'de> for MapVisitor<K, V> {
            type Value = VecMap<K, V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                // The size hint comes from the input: do not trust it for an allocation.
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(entries.into_iter().collect())
            }
        }

        d.deserialize_map(MapVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn behaves_as_a_btree_map_and_encodes_the_same() {
        let ops: [(u8, Option<u32>); 9] = [
            (5, Some(1)),
            (2, Some(2)),
            (9, Some(3)),
            (5, Some(4)),
            (2, None),
            (7, Some(5)),
            (1, Some(6)),
            (9, None),
            (3, Some(7)),
        ];
        let mut ours: VecMap<u8, u32> = VecMap::new();
        let mut reference: BTreeMap<u8, u32> = BTreeMap::new();
        for (k, v) in ops {
            match v {
                Some(v) => assert_eq!(ours.insert(k, v), reference.insert(k, v)),
                None => assert_eq!(ours.remove(&k), reference.remove(&k)),
            }
            assert!(ours.iter().eq(reference.iter()));
            assert_eq!(ours.len(), reference.len());
            assert_eq!(
                postcard::to_allocvec(&ours).expect("encodes"),
                postcard::to_allocvec(&reference).expect("encodes")
            );
        }
        assert_eq!(ours.get(&5), Some(&4));
        assert!(ours.contains_key(&7) && !ours.contains_key(&2));
        *ours.get_mut(&7).expect("present") += 1;
        ours.retain(|k, _| *k != 1);
        assert_eq!(ours.keys().copied().collect::<Vec<_>>(), [3, 5, 7]);
        assert_eq!(ours.values().copied().collect::<Vec<_>>(), [7, 4, 6]);
    }

    #[test]
    fn decoding_sorts_and_keeps_the_last_of_equal_keys() {
        // A map encoded out of order, with a repeated key: as a list of pairs.
        let pairs: Vec<(u16, u16)> = vec![(3, 30), (1, 10), (3, 31), (2, 20)];
        let bytes = postcard::to_allocvec(&pairs).expect("encodes");
        let ours: VecMap<u16, u16> = postcard::from_bytes(&bytes).expect("decodes");
        let reference: BTreeMap<u16, u16> = postcard::from_bytes(&bytes).expect("decodes");
        assert!(ours.iter().eq(reference.iter()));
        assert_eq!(ours.get(&3), Some(&31));
    }

    #[test]
    fn a_small_map_holds_only_its_entries() {
        let mut m: VecMap<u64, [u8; 200]> = VecMap::new();
        m.insert(1, [0; 200]);
        assert_eq!(m.entries.capacity(), 1);
        m.insert(2, [0; 200]);
        assert_eq!(m.entries.capacity(), 2);
        m.remove(&1);
        m.remove(&2);
        assert_eq!(m.entries.capacity(), 0);
    }
}
