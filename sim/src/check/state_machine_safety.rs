//! State-machine safety.
//!
//! Raft §5.4.3: if a member has applied an entry at an index, no other member ever applies a
//! different entry at that index. The first application of each index defines the committed
//! sequence that the durability checker uses.

use std::collections::BTreeMap;

use nacre_engine::ports::EntryDigest;

use super::Violation;

/// The committed sequence as applied.
#[derive(Debug, Default)]
pub struct StateMachineSafety {
    /// index -> (entry, first member that applied it).
    pub applied: BTreeMap<u64, (EntryDigest, u64)>,
}

impl StateMachineSafety {
    /// Records an application.
    pub fn on_apply(&mut self, node: u64, entry: &EntryDigest, out: &mut Vec<Violation>) {
        match self.applied.get(&entry.index) {
            Some((first, by)) if first != entry => {
                out.push(Violation::StateMachineSafety {
                    index: entry.index,
                    nodes: [*by, node],
                });
            }
            Some(_) => {}
            None => {
                self.applied.insert(entry.index, (*entry, node));
            }
        }
    }

    /// index -> entry of the committed sequence.
    pub fn committed(&self) -> BTreeMap<u64, EntryDigest> {
        self.applied.iter().map(|(i, (e, _))| (*i, *e)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn different_entry_at_applied_index_is_caught() {
        let mut c = StateMachineSafety::default();
        let mut out = Vec::new();
        let e = |payload| EntryDigest {
            index: 3,
            term: 1,
            leader: 1,
            payload,
        };
        c.on_apply(1, &e(5), &mut out);
        c.on_apply(2, &e(5), &mut out);
        assert!(out.is_empty());
        c.on_apply(3, &e(6), &mut out);
        assert_eq!(
            out,
            vec![Violation::StateMachineSafety {
                index: 3,
                nodes: [1, 3]
            }]
        );
    }
}
