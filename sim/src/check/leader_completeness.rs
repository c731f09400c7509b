//! Leader completeness, in its observable form: a committed entry is never truncated.
//!
//! Raft §5.4: a leader's log holds every entry committed in earlier terms. A leader missing a
//! committed entry would overwrite it on its followers, which is seen as a truncation of an
//! entry that some member has already applied. The check runs at every truncation.

use std::collections::BTreeMap;

use nacre_engine::ports::EntryDigest;

use super::{LogMirror, Violation};

/// Called before `node` truncates its log from `since`.
pub fn on_truncate(
    node: u64,
    since: u64,
    log: &LogMirror,
    committed: &BTreeMap<u64, EntryDigest>,
    out: &mut Vec<Violation>,
) {
    for (index, entry) in log.range(since..) {
        if committed.get(index) == Some(entry) {
            out.push(Violation::LeaderCompleteness {
                node,
                index: *index,
            });
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncating_an_applied_entry_is_caught() {
        let e = |index, payload| EntryDigest {
            index,
            term: 1,
            leader: 1,
            payload,
        };
        let log: LogMirror = [(1, e(1, 1)), (2, e(2, 2)), (3, e(3, 3))]
            .into_iter()
            .collect();
        let committed: BTreeMap<u64, EntryDigest> =
            [(1, e(1, 1)), (2, e(2, 2))].into_iter().collect();
        let mut out = Vec::new();
        on_truncate(4, 3, &log, &committed, &mut out);
        assert!(out.is_empty());
        on_truncate(4, 2, &log, &committed, &mut out);
        assert_eq!(
            out,
            vec![Violation::LeaderCompleteness { node: 4, index: 2 }]
        );
    }
}
