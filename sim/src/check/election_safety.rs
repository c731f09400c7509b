//! Election safety, keyed on the committed leader id.
//!
//! Raft §5.2: at most one leader per term. openraft's default leader id is `(term, node)`, which
//! allows several leaders in one term (simulation reference, "Traps"), so the observable form of
//! the property is: a committed leader id writes at most one entry per index. Two different
//! payloads under one `(term, leader, index)` mean two nodes acted as the same leader.

use std::collections::BTreeMap;

use nacre_engine::ports::EntryDigest;

use super::Violation;

/// Payload digests seen per (term, leader, index).
#[derive(Debug, Default)]
pub struct ElectionSafety {
    seen: BTreeMap<(u64, u64, u64), u64>,
}

impl ElectionSafety {
    /// Records appended entries; returns a violation for each conflict.
    pub fn on_append(&mut self, entries: &[EntryDigest], out: &mut Vec<Violation>) {
        for e in entries {
            let key = (e.term, e.leader, e.index);
            match self.seen.get(&key) {
                Some(p) if *p != e.payload => out.push(Violation::ElectionSafety {
                    term: e.term,
                    leader: e.leader,
                    index: e.index,
                    payloads: [*p, e.payload],
                }),
                Some(_) => {}
                None => {
                    self.seen.insert(key, e.payload);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(term: u64, leader: u64, index: u64, payload: u64) -> EntryDigest {
        EntryDigest {
            index,
            term,
            leader,
            payload,
        }
    }

    #[test]
    fn same_leader_id_two_payloads_is_caught() {
        let mut c = ElectionSafety::default();
        let mut out = Vec::new();
        c.on_append(&[d(2, 1, 5, 10)], &mut out);
        c.on_append(&[d(2, 1, 5, 10)], &mut out);
        assert!(out.is_empty());
        c.on_append(&[d(2, 1, 5, 11)], &mut out);
        assert_eq!(
            out,
            vec![Violation::ElectionSafety {
                term: 2,
                leader: 1,
                index: 5,
                payloads: [10, 11]
            }]
        );
    }

    #[test]
    fn different_leaders_in_one_term_are_distinct_ids() {
        let mut c = ElectionSafety::default();
        let mut out = Vec::new();
        c.on_append(&[d(2, 1, 5, 10), d(2, 2, 5, 11)], &mut out);
        assert!(out.is_empty());
    }
}
