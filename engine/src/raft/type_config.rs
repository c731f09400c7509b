//! The openraft type configuration of Nacre's single Raft group.
//!
//! One group holds every CP datum (DESIGN §2): commands are `Command`, replies `CommandResult`.
//! Snapshots travel as byte buffers. The runtime is openraft's Tokio runtime in production and
//! `SimRuntime` under `cfg(madsim)`.

use std::io::Cursor;

use openraft::BasicNode;

use super::command::{Command, CommandResult};

#[cfg(not(madsim))]
/// The async runtime openraft runs on.
pub type Runtime = openraft::TokioRuntime;
#[cfg(madsim)]
/// The async runtime openraft runs on.
pub type Runtime = super::runtime_sim::SimRuntime;

openraft::declare_raft_types!(
    /// Nacre's Raft types.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = Runtime,
);

/// A log entry of the group.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id of the group.
pub type LogId = openraft::LogId<u64>;
/// A vote of the group.
pub type Vote = openraft::Vote<u64>;
/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// Membership as stored with its log id.
pub type StoredMembership = openraft::StoredMembership<u64, BasicNode>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<u64, BasicNode>;
/// A storage error of the group.
pub type StorageError = openraft::StorageError<u64>;
