//! Per-client monotonic local reads.
//!
//! A client that keeps reading one key from one member (one incarnation of it: a restarted
//! member rebuilds its state from disk and may briefly be behind) never sees the key's revision
//! go backwards. A read of an absent key carries no revision and is skipped.

use std::collections::BTreeMap;

use super::Violation;

/// One successful local read.
#[derive(Debug, Clone)]
pub struct LocalRead {
    pub op: u64,
    pub client: u64,
    pub node: u64,
    pub incarnation: u64,
    pub key: String,
    pub revision: Option<u64>,
}

/// Reads must be given in each client's completion order.
pub fn check(reads: &[LocalRead], out: &mut Vec<Violation>) {
    let mut last: BTreeMap<(u64, u64, u64, &str), u64> = BTreeMap::new();
    for r in reads {
        let Some(rev) = r.revision else { continue };
        let k = (r.client, r.node, r.incarnation, r.key.as_str());
        if let Some(prev) = last.get(&k) {
            if rev < *prev {
                out.push(Violation::MonotonicRead {
                    op: r.op,
                    client: r.client,
                    key: r.key.clone(),
                    from: *prev,
                    to: rev,
                });
            }
        }
        last.insert(k, rev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(op: u64, incarnation: u64, revision: u64) -> LocalRead {
        LocalRead {
            op,
            client: 1,
            node: 1,
            incarnation,
            key: "k".into(),
            revision: Some(revision),
        }
    }

    #[test]
    fn going_back_within_an_incarnation_is_caught() {
        let mut out = Vec::new();
        check(&[read(1, 0, 5), read(2, 0, 7), read(3, 1, 3)], &mut out);
        assert!(out.is_empty());
        check(&[read(1, 0, 5), read(2, 0, 4)], &mut out);
        assert_eq!(out.len(), 1);
    }
}
