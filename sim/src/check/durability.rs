//! Durability of acknowledged writes.
//!
//! A write acknowledged to a client at log index `i` must be the entry the cluster committed at
//! `i` (same payload digest), and every live member must have applied past `i` once the cluster
//! has converged. Losing an acknowledged write across crashes fails this check.

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
pub fn check(
    acked: &[AckedWrite],
    committed: &BTreeMap<u64, EntryDigest>,
    converged_applied: u64,
    out: &mut Vec<Violation>,
) {
    for w in acked {
        let present = committed
            .get(&w.index)
            .is_some_and(|e| e.payload == w.payload);
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
}
