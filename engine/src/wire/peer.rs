//! Messages between members, and between a client adapter and a member.
//!
//! Raft RPCs carry openraft's own request/response types (serde). `Forward` carries a client
//! request that a follower routes to the leader (DESIGN §2 "forward routing"), with a hop count
//! bounded by `FORWARD_HOPS_MAX`. `Ping` is the bootstrap probe.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigItem, ConfigKey};
use crate::error::Reject;
use crate::naming::distro::{DistroMsg, DistroReply, IpPortOutcome, IpPortWrite, NamingError};
use crate::naming::{Instance, ServiceKey};
use crate::raft::command::{Command, CommandResult};
use crate::raft::type_config::TypeConfig;

/// A request from one member to another.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum PeerRequest {
    RaftAppend(AppendEntriesRequest<TypeConfig>),
    RaftVote(VoteRequest<u64>),
    RaftSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A client request routed towards the leader; `hops` counts forwards so far.
    Forward {
        hops: u8,
        request: ClientRequest,
    },
    /// Bootstrap probe: is the member up, and has it joined a cluster already?
    Ping,
    /// A Distro message from member `from` (its Distro name, `ip:port`).
    Distro {
        from: String,
        msg: DistroMsg,
    },
    /// A naming request of a client, or an HTTP client write forwarded `hops` times towards
    /// its responsible member.
    Naming {
        hops: u8,
        request: NamingRequest,
    },
}

/// The answer to a `PeerRequest`, variant for variant.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    RaftAppend(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    RaftVote(Result<VoteResponse<u64>, RaftError<u64>>),
    RaftSnapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    Forward(Result<ClientResponse, Reject>),
    Pong { initialized: bool },
    Distro(DistroReply),
    Naming(Result<NamingResponse, NamingError>),
}

/// A naming request of a client at a member (the transport-independent form of the SDK and
/// HTTP naming calls the simulator and the peer port carry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NamingRequest {
    Connect {
        conn: String,
    },
    KeepAlive {
        conn: String,
    },
    Disconnect {
        conn: String,
    },
    Register {
        conn: String,
        service: ServiceKey,
        instance: Instance,
    },
    Deregister {
        conn: String,
        service: ServiceKey,
    },
    Subscribe {
        conn: String,
        service: ServiceKey,
    },
    /// An HTTP client write, routed to the responsible member.
    IpPort(IpPortWrite),
    /// The instances of a service in the local view.
    List {
        service: ServiceKey,
    },
    /// A connection client publishes a list of instances of one service at once (replacing
    /// whatever it published for that service; an empty list withdraws them).
    RegisterBatch {
        conn: String,
        service: ServiceKey,
        instances: Vec<Instance>,
    },
}

/// The answer to a `NamingRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NamingResponse {
    Ok,
    IpPort(IpPortOutcome),
    Instances(Vec<Instance>),
}

/// A request of the CP data API, transport-independent.
// Messages are built once and encoded; boxing the large variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Replicate a command through the leader.
    Write(Command),
    /// Read one config from the local replica (Nacos semantics).
    GetLocal(ConfigKey),
    /// Read one config linearizably (ReadIndex at the leader).
    GetLinearizable(ConfigKey),
    /// Add a member: learner first, then voter once caught up.
    AddMember { id: u64, addr: String },
    /// Remove a voter safely.
    RemoveMember { id: u64 },
}

/// The answer to a `ClientRequest`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientResponse {
    Written(Written),
    Config(Option<ConfigItem>),
    MembershipChanged,
}

/// An acknowledged write: the log index it committed at, and what applying it returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    pub index: u64,
    pub result: CommandResult,
}
