//! Durability of acknowledged writes.
//!
//! A write acknowledged to a client at log index `i` must be the entry the cluster committed at
//! `i` (same payload digest) or one of the writes of that entry if it is a batch (group
//! commit), and every live member must have applied past `i` once the cluster has converged.
//! Losing an acknowledged write across crashes fails this check.

use std::collections::BTreeMap;

use nacre_engine::ports::EntryDigest;

use super::Violation;

/// An acknowledged write: the client op id, its log index and its payload digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckedWrite {
    pub op: u64,
    pub index: u64,
    pub payload: u64,
}

/// Checks every acknowledged write against the committed sequence and the converged
/// applied index.
/// `batches` maps a batched entry's payload digest to the digests of its writes.
pub fn check(
    acked: &[AckedWrite],
    committed: &BTreeMap<u64, EntryDigest>,
    batches: &BTreeMap<u64, Vec<u64>>,
    converged_applied: u64,
    out: &mut Vec<Violation>,
) {
    for w in acked {
        let present = committed.get(&w.index).is_some_and(|e| {
            e.payload == w.payload
                || batches
                    .get(&e.payload)
                    .is_some_and(|parts| parts.contains(&w.payload))
        });
        if !present || w.index > converged_applied {
            out.push(Violation::Durability {
                op: w.op,
                index: w.index,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_or_replaced_writes_are_caught() {
        let committed: BTreeMap<u64, EntryDigest> = [(
            4,
            EntryDigest {
                index: 4,
                term: 1,
                leader: 1,
                payload: 40,
            },
        )]
        .into_iter()
        .collect();
        let mut out = Vec::new();
        check(
            &[AckedWrite {
                op: 1,
                index: 4,
                payload: 40,
            }],
            &committed,
            &BTreeMap::new(),
            4,
            &mut out,
        );
        assert!(out.is_empty());
        check(
            &[AckedWrite {
                op: 2,
                index: 4,
                payload: 41,
            }],
            &committed,
            &BTreeMap::new(),
            4,
            &mut out,
        );
        check(
            &[AckedWrite {
                op: 3,
                index: 5,
                payload: 50,
            }],
            &committed,
            &BTreeMap::new(),
            4,
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                Violation::Durability { op: 2, index: 4 },
                Violation::Durability { op: 3, index: 5 }
            ]
        );
    }

    #[test]
    fn a_write_inside_a_committed_batch_counts_and_one_outside_does_not() {
        let committed: BTreeMap<u64, EntryDigest> = [(
            4,
            EntryDigest {
                index: 4,
                term: 1,
                leader: 1,
                payload: 400,
            },
        )]
        .into_iter()
        .collect();
        let batches: BTreeMap<u64, Vec<u64>> = [(400, vec![41, 42])].into_iter().collect();
        let write = |op, payload| AckedWrite {
            op,
            index: 4,
            payload,
        };
        let mut out = Vec::new();
        check(
            &[write(1, 41), write(2, 42)],
            &committed,
            &batches,
            4,
            &mut out,
        );
        assert!(out.is_empty());
        check(&[write(3, 43)], &committed, &batches, 4, &mut out);
        // Part of a batch that was not the one committed at that index.
        let other: BTreeMap<u64, Vec<u64>> = [(999, vec![41])].into_iter().collect();
        check(&[write(4, 41)], &committed, &other, 4, &mut out);
        assert_eq!(
            out,
            vec![
                Violation::Durability { op: 3, index: 4 },
                Violation::Durability { op: 4, index: 4 }
            ]
        );
    }
}
