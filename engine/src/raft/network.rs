//! openraft's network, over the `PeerTransport` port.
//!
//! Each Raft RPC becomes one `PeerRequest` with the RPC's deadline. A failure to connect is
//! reported as `Unreachable` (openraft backs off), anything else as a network error; a remote
//! Raft error comes back as openraft's `RemoteError`.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;

use super::type_config::TypeConfig;
use crate::ports::{PeerTransport, TransportError};
use crate::wire::{PeerRequest, PeerResponse};

/// Builds per-target clients over one shared transport.
#[derive(Clone)]
pub struct NetworkFactory {
    pub transport: Arc<dyn PeerTransport>,
}

/// The Raft client to one target member.
pub struct PeerClient {
    target: u64,
    addr: String,
    transport: Arc<dyn PeerTransport>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            transport: self.transport.clone(),
        }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<u64, BasicNode, RaftError<u64, E>>;

fn transport_err<E: std::error::Error>(e: TransportError) -> RpcErr<E> {
    match e {
        TransportError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
        _ => RPCError::Network(NetworkError::new(&e)),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("response of the wrong kind")]
struct WrongKind;

impl PeerClient {
    async fn call(&self, req: PeerRequest, ttl: Duration) -> Result<PeerResponse, TransportError> {
        self.transport.call(self.target, &self.addr, req, ttl).await
    }

    fn remote<E: std::error::Error>(&self, e: RaftError<u64, E>) -> RpcErr<E> {
        RPCError::RemoteError(RemoteError::new(self.target, e))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcErr> {
        match self
            .call(PeerRequest::RaftAppend(rpc), option.hard_ttl())
            .await
            .map_err(transport_err)?
        {
            PeerResponse::RaftAppend(Ok(r)) => Ok(r),
            PeerResponse::RaftAppend(Err(e)) => Err(self.remote(e)),
            _ => Err(RPCError::Network(NetworkError::new(&WrongKind))),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RpcErr<InstallSnapshotError>> {
        match self
            .call(PeerRequest::RaftSnapshot(rpc), option.hard_ttl())
            .await
            .map_err(transport_err)?
        {
            PeerResponse::RaftSnapshot(Ok(r)) => Ok(r),
            PeerResponse::RaftSnapshot(Err(e)) => Err(self.remote(e)),
            _ => Err(RPCError::Network(NetworkError::new(&WrongKind))),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RpcErr> {
        match self
            .call(PeerRequest::RaftVote(rpc), option.hard_ttl())
            .await
            .map_err(transport_err)?
        {
            PeerResponse::RaftVote(Ok(r)) => Ok(r),
            PeerResponse::RaftVote(Err(e)) => Err(self.remote(e)),
            _ => Err(RPCError::Network(NetworkError::new(&WrongKind))),
        }
    }
}
