//! openraft's network, over the `PeerTransport` port.
//!
//! Each Raft RPC becomes one `PeerRequest` with the RPC's deadline. A failure to connect is
//! reported as `Unreachable` (openraft backs off), anything else as a network error; a remote
//! Raft error comes back as openraft's `RemoteError`.

use std::sync::Arc;
use std::time::Duration;

use crate::constants::FRAME_BYTES_MAX;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
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

/// Whether an append request encodes within `FRAME_BYTES_MAX` (with room for the envelope).
fn fits_in_frame(rpc: &AppendEntriesRequest<TypeConfig>) -> bool {
    // The configs carried are large only when content is; sizing the rare large batch by
    // encoding it is cheaper than the panic or the endless retry a too-large frame would cause.
    let approx: usize = rpc
        .entries
        .iter()
        .map(|e| match &e.payload {
            openraft::EntryPayload::Normal(c) => command_bytes(c),
            _ => 64,
        })
        .sum();
    if approx < FRAME_BYTES_MAX / 2 {
        return true;
    }
    postcard::to_allocvec(rpc)
        .map(|b| b.len() + 1024 < FRAME_BYTES_MAX)
        .unwrap_or(false)
}

/// An upper-bound-ish size estimate of a command (its strings dominate).
fn command_bytes(c: &super::command::Command) -> usize {
    match &c.op {
        super::command::Op::Config(c) => c.approx_bytes(),
        super::command::Op::Batch(b) => b.iter().map(|b| b.command.approx_bytes() + 16).sum(),
        _ => 256,
    }
}

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
        let entries = rpc.entries.len() as u64;
        if entries > 1 && !fits_in_frame(&rpc) {
            // Too big for one frame: openraft retries with fewer entries. One entry always fits,
            // because a config's content is capped well below the frame limit.
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(entries / 2),
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigCommand, ConfigKey, PublishConfig};
    use crate::raft::command::{Command, Op};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};

    fn big_entry(index: u64, bytes: usize) -> Entry<TypeConfig> {
        let publish = PublishConfig::new(ConfigKey::new("", "G", "d"), "x".repeat(bytes));
        let cmd = Command {
            now_ms: 0,
            op: Op::Config(ConfigCommand::Publish(publish)),
        };
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(cmd),
        }
    }

    fn request(entries: Vec<Entry<TypeConfig>>) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            entries,
            leader_commit: None,
        }
    }

    #[test]
    fn batches_over_the_frame_limit_are_refused_but_one_entry_fits() {
        let seven_mib = 7 * 1024 * 1024;
        assert!(fits_in_frame(&request(vec![big_entry(1, seven_mib)])));
        assert!(!fits_in_frame(&request(
            (1..=3).map(|i| big_entry(i, seven_mib)).collect()
        )));
        assert!(fits_in_frame(&request(
            (1..=100).map(|i| big_entry(i, 100)).collect()
        )));
    }
}
