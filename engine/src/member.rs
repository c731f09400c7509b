//! A member: the CP core (Raft) and the AP core (Distro) behind one peer port.

use std::sync::Arc;

use crate::cp_node::CpNode;
use crate::naming::runner::DistroRunner;
use crate::wire::{PeerRequest, PeerResponse};

/// Both cores of one member, as the peer port serves them.
pub struct Member {
    pub cp: Arc<CpNode>,
    pub naming: Arc<DistroRunner>,
}

impl Member {
    /// Handles a request from another member or a client adapter.
    pub async fn handle_peer(&self, request: PeerRequest) -> PeerResponse {
        match request {
            PeerRequest::Distro { from, msg } => {
                PeerResponse::Distro(self.naming.on_peer_message(&from, msg))
            }
            PeerRequest::Naming { hops, request } => {
                PeerResponse::Naming(self.naming.handle(request, hops).await)
            }
            other => self.cp.handle_peer(other).await,
        }
    }
}
