//! Checkers, one per property (STYLE 13). Each file states its property and its source;
//! violations carry ids and indices as evidence.

pub mod durability;
pub mod election_safety;
pub mod leader_completeness;
pub mod log_matching;
pub mod monotonic_reads;
pub mod naming;
pub mod state_machine_safety;

use std::collections::BTreeMap;

use nacre_engine::ports::EntryDigest;

/// A member's log as the checkers mirror it: index -> entry digest.
pub type LogMirror = BTreeMap<u64, EntryDigest>;

/// A property violation with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Violation {
    /// Two different entries were written under one committed leader id at one index.
    ElectionSafety {
        term: u64,
        leader: u64,
        index: u64,
        payloads: [u64; 2],
    },
    /// Two logs agree on an entry but differ at an earlier index.
    LogMatching {
        nodes: [u64; 2],
        agree_at: u64,
        differ_at: u64,
    },
    /// A committed (applied somewhere) entry was truncated from a log.
    LeaderCompleteness { node: u64, index: u64 },
    /// Two members applied different entries at one index.
    StateMachineSafety { index: u64, nodes: [u64; 2] },
    /// An acknowledged write is not in the committed sequence.
    Durability { op: u64, index: u64 },
    /// A client's local reads through one member incarnation went back in revision.
    MonotonicRead {
        op: u64,
        client: u64,
        key: String,
        from: u64,
        to: u64,
    },
    /// The CP history of a key is not linearizable.
    Linearizability { key: String, ops: Vec<u64> },
    /// A locally read value was never written.
    PhantomRead { op: u64 },
    /// The linearizability search ran out of budget.
    LinearizabilityInconclusive { key: String },
    /// No running member showed the instance of a live, registered client.
    LiveInstanceDeleted { client: u64, at_ms: u64 },
    /// A member showed the instance of a client gone longer than its expiry bound.
    LingeringInstance { node: u64, client: u64, at_ms: u64 },
    /// A subscriber was pushed a list without the instance of a live, registered client.
    SpuriousOffline {
        subscriber: String,
        client: u64,
        at_ms: u64,
    },
    /// The member that acknowledged an HTTP client's registration did not hold it.
    ForwardedWriteLost {
        client: u64,
        member: u64,
        at_ms: u64,
    },
}

impl Violation {
    /// The property's short name, for tables.
    pub fn property(&self) -> &'static str {
        match self {
            Violation::ElectionSafety { .. } => "election-safety",
            Violation::LogMatching { .. } => "log-matching",
            Violation::LeaderCompleteness { .. } => "leader-completeness",
            Violation::StateMachineSafety { .. } => "state-machine-safety",
            Violation::Durability { .. } => "durability",
            Violation::MonotonicRead { .. } => "monotonic-reads",
            Violation::Linearizability { .. } => "linearizability",
            Violation::PhantomRead { .. } => "no-phantom-reads",
            Violation::LinearizabilityInconclusive { .. } => "linearizability-budget",
            Violation::LiveInstanceDeleted { .. } => "no-live-instance-deleted",
            Violation::LingeringInstance { .. } => "no-dead-instance-lingering",
            Violation::SpuriousOffline { .. } => "no-spurious-offline",
            Violation::ForwardedWriteLost { .. } => "forwarded-write-kept",
        }
    }
}
