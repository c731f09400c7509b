//! Log matching.
//!
//! Raft §5.3: if two logs contain an entry with the same index and term (here: the same
//! committed leader id), the logs are identical in all entries up through that index. Checked
//! over the members' mirrored logs (entries purged behind a snapshot are no longer compared).

use std::collections::BTreeMap;

use super::{LogMirror, Violation};

/// Compares every pair of logs.
pub fn check(logs: &BTreeMap<u64, LogMirror>, out: &mut Vec<Violation>) {
    let nodes: Vec<&u64> = logs.keys().collect();
    for (i, a) in nodes.iter().enumerate() {
        for b in &nodes[i + 1..] {
            check_pair(**a, &logs[*a], **b, &logs[*b], out);
        }
    }
}

fn check_pair(a: u64, la: &LogMirror, b: u64, lb: &LogMirror, out: &mut Vec<Violation>) {
    // The highest index at which both logs hold an entry of the same leader id.
    let agree_at = la
        .iter()
        .rev()
        .find(|(i, e)| {
            lb.get(i)
                .is_some_and(|f| f.term == e.term && f.leader == e.leader)
        })
        .map(|(i, _)| *i);
    let Some(agree_at) = agree_at else { return };
    for (i, e) in la.range(..=agree_at) {
        if let Some(f) = lb.get(i) {
            if f != e {
                out.push(Violation::LogMatching {
                    nodes: [a, b],
                    agree_at,
                    differ_at: *i,
                });
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nacre_engine::ports::EntryDigest;

    fn log(entries: &[(u64, u64, u64)]) -> LogMirror {
        entries
            .iter()
            .map(|&(index, term, payload)| {
                (
                    index,
                    EntryDigest {
                        index,
                        term,
                        leader: term,
                        payload,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn matching_prefixes_pass_and_divergent_prefix_fails() {
        let mut logs = BTreeMap::new();
        logs.insert(1, log(&[(1, 1, 1), (2, 1, 2), (3, 2, 3)]));
        logs.insert(2, log(&[(1, 1, 1), (2, 1, 2), (3, 3, 9)]));
        let mut out = Vec::new();
        check(&logs, &mut out);
        assert!(out.is_empty(), "{out:?}");
        logs.insert(3, log(&[(1, 1, 7), (2, 1, 2)]));
        check(&logs, &mut out);
        assert!(out.contains(&Violation::LogMatching {
            nodes: [1, 3],
            agree_at: 2,
            differ_at: 1
        }));
    }
}
