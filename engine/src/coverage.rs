//! Coverage marks: counters on rare branches, so a scenario can prove it exercised them
//! (STYLE 14; FoundationDB's `CODE_PROBE`, TigerBeetle's canaries).
//!
//! `hit(Mark::X)` costs one relaxed atomic add. The simulator prints the counts in every run's
//! summary, and a scenario's `expect_marks` fails its pinned run if a named mark stayed at zero.
//! The counters are process-global: the simulator runs one seed per process.

use std::sync::atomic::{AtomicU64, Ordering};

/// The marked branches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mark {
    /// Recovery cut a torn journal tail.
    JournalTornTailCut,
    /// Recovery refused a corrupted journal.
    JournalCorruptRefused,
    /// A snapshot was built.
    SnapshotBuilt,
    /// A snapshot received from the leader was installed.
    SnapshotInstalled,
    /// A member started from a snapshot on disk.
    SnapshotLoadedOnStart,
    /// The journal was rewritten without dead records.
    JournalCompacted,
    /// A forward that certainly did not execute was routed again.
    ForwardRetried,
    /// A forward was abandoned because a new leader appeared.
    ForwardAbandonedOnLeaderChange,
    /// A write answered `NoLeader` after the bounded wait.
    NoLeaderRejected,
    /// A linearizable read was served after ReadIndex.
    ReadIndexServed,
    /// A member was added (learner, then voter).
    MemberAdded,
    /// A member was removed from the voters.
    MemberRemoved,
    /// Distro: a failed verify made the owner resend a client.
    DistroVerifyResend,
    /// Distro: a deletion older than the receiver's copy was refused.
    DistroStaleDeleteRefused,
    /// Distro: a snapshot from a peer was loaded.
    DistroSnapshotLoaded,
    /// Distro: a copy its owner no longer lists was dropped.
    DistroUnlistedCopyDropped,
    /// Distro: a DOWN peer came back and was verified at once.
    DistroPeerRecovered,
    /// Distro: a new owner took a handed-over copy of an HTTP client.
    DistroHandoffTaken,
    /// The leader proposed several config writes as one entry (group commit).
    WritesBatched,
    /// The leader stopped waiting for a proposal whose term ended (or that outlived the write
    /// deadline); its outcome is unknown.
    ProposalAbandoned,
}

/// Every mark, in report order.
pub const ALL: [Mark; 20] = [
    Mark::JournalTornTailCut,
    Mark::JournalCorruptRefused,
    Mark::SnapshotBuilt,
    Mark::SnapshotInstalled,
    Mark::SnapshotLoadedOnStart,
    Mark::JournalCompacted,
    Mark::ForwardRetried,
    Mark::ForwardAbandonedOnLeaderChange,
    Mark::NoLeaderRejected,
    Mark::ReadIndexServed,
    Mark::MemberAdded,
    Mark::MemberRemoved,
    Mark::DistroVerifyResend,
    Mark::DistroStaleDeleteRefused,
    Mark::DistroSnapshotLoaded,
    Mark::DistroUnlistedCopyDropped,
    Mark::DistroPeerRecovered,
    Mark::DistroHandoffTaken,
    Mark::WritesBatched,
    Mark::ProposalAbandoned,
];

static COUNTS: [AtomicU64; ALL.len()] = [const { AtomicU64::new(0) }; ALL.len()];

impl Mark {
    /// The mark's name in scenario files and summaries.
    pub fn name(self) -> &'static str {
        match self {
            Mark::JournalTornTailCut => "journal_torn_tail_cut",
            Mark::JournalCorruptRefused => "journal_corrupt_refused",
            Mark::SnapshotBuilt => "snapshot_built",
            Mark::SnapshotInstalled => "snapshot_installed",
            Mark::SnapshotLoadedOnStart => "snapshot_loaded_on_start",
            Mark::JournalCompacted => "journal_compacted",
            Mark::ForwardRetried => "forward_retried",
            Mark::ForwardAbandonedOnLeaderChange => "forward_abandoned_on_leader_change",
            Mark::NoLeaderRejected => "no_leader_rejected",
            Mark::ReadIndexServed => "read_index_served",
            Mark::MemberAdded => "member_added",
            Mark::MemberRemoved => "member_removed",
            Mark::DistroVerifyResend => "distro_verify_resend",
            Mark::DistroStaleDeleteRefused => "distro_stale_delete_refused",
            Mark::DistroSnapshotLoaded => "distro_snapshot_loaded",
            Mark::DistroUnlistedCopyDropped => "distro_unlisted_copy_dropped",
            Mark::DistroPeerRecovered => "distro_peer_recovered",
            Mark::DistroHandoffTaken => "distro_handoff_taken",
            Mark::WritesBatched => "writes_batched",
            Mark::ProposalAbandoned => "proposal_abandoned",
        }
    }

    /// The mark with this name.
    pub fn from_name(name: &str) -> Option<Mark> {
        ALL.into_iter().find(|m| m.name() == name)
    }

    fn slot(self) -> &'static AtomicU64 {
        let i = ALL
            .iter()
            .position(|m| *m == self)
            .expect("every mark is listed in ALL");
        &COUNTS[i]
    }
}

/// Records that a marked branch ran.
pub fn hit(mark: Mark) {
    mark.slot().fetch_add(1, Ordering::Relaxed);
}

/// How often a mark was hit in this process.
pub fn count(mark: Mark) -> u64 {
    mark.slot().load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_counts_grow() {
        for m in ALL {
            assert_eq!(Mark::from_name(m.name()), Some(m));
        }
        let before = count(Mark::MemberRemoved);
        hit(Mark::MemberRemoved);
        assert_eq!(count(Mark::MemberRemoved), before + 1);
    }
}
