//! Identifier newtypes shared by every layer.
//!
//! Members (servers) are identified by a `NodeId`, clients of the simulator and of the
//! request layer by a `ClientId`. Keeping them distinct types prevents a member id from being
//! passed where a client id is expected (STYLE 7).

use serde::{Deserialize, Serialize};

/// The Raft node id of a member. openraft wants a plain integer, so the raft layer uses the
/// inner `u64`; everywhere else carries the newtype.
pub type RaftNodeId = u64;

/// A member (server) of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// A client of the cluster (an SDK connection, an HTTP caller, a simulated client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientId(pub u64);
