//! Live `cluster.conf` reload (Nacos watches the file too): every `CONF_POLL_MS` the member
//! re-reads its cluster.conf. A changed, valid file replaces Distro's member list at once; a
//! file that does not parse is logged and ignored (the last good list stays).
//!
//! The Raft leader then reconciles the voters with the file: a new entry is added as a learner
//! (it catches up, by snapshot if the log was purged) and then promoted to voter; an entry that
//! disappeared is removed from the voters. A new member started with the new file never
//! initializes a group of its own, because its peers already belong to one (`CpNode`
//! bootstrap); it waits to be added. Members that are not the leader only update Distro, and a
//! leader elected later reconciles on its next poll.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nacre_engine::cp_node::CpNode;
use nacre_engine::naming::runner::{DistroRunner, PeerAddr};
use nacre_engine::wire::ClientRequest;

use crate::settings::{conf_members, read_cluster_conf, ConfMember};

/// How often the member re-reads its cluster.conf.
pub const CONF_POLL_MS: u64 = 1_000;

/// Distro's member map of a cluster.conf: `host:port` → node id and Distro address (P+1001).
pub fn distro_members(conf: &[ConfMember]) -> BTreeMap<String, PeerAddr> {
    conf.iter()
        .map(|m| {
            (
                m.name(),
                PeerAddr {
                    id: m.node_id(),
                    addr: m.distro_addr(),
                },
            )
        })
        .collect()
}

/// Watches `path` until the process ends.
pub async fn watch(
    path: PathBuf,
    default_port: u16,
    mut current: Vec<ConfMember>,
    cp: Arc<CpNode>,
    distro: Arc<DistroRunner>,
) {
    let mut last_error: Option<String> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(CONF_POLL_MS)).await;
        let read = read_cluster_conf(&path, default_port)
            .and_then(|conf| conf_members(&conf).map(|m| (conf, m)));
        let (conf, members) = match read {
            Ok(v) => v,
            Err(e) => {
                let msg = format!("{e:#}");
                if last_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!("cluster.conf ignored, keeping the last good list: {msg}");
                    last_error = Some(msg);
                }
                continue;
            }
        };
        last_error = None;
        if names(&conf) != names(&current) {
            tracing::info!(
                "cluster.conf changed: {:?} -> {:?}",
                names(&current),
                names(&conf)
            );
            distro.set_members(distro_members(&conf));
            current = conf;
        }
        if cp.status().is_leader {
            reconcile(&cp, &members).await;
        }
    }
}

fn names(conf: &[ConfMember]) -> Vec<String> {
    conf.iter().map(ConfMember::name).collect()
}

/// Makes the Raft voters equal to `want` (node id → peer address), one change at a time.
async fn reconcile(cp: &CpNode, want: &BTreeMap<u64, String>) {
    let status = cp.status();
    let voters: BTreeSet<u64> = status.voters.clone();
    for (id, addr) in want.iter().filter(|(id, _)| !voters.contains(id)) {
        tracing::info!(node = id, addr, "adding member from cluster.conf");
        let request = ClientRequest::AddMember {
            id: *id,
            addr: addr.clone(),
        };
        match cp.handle_client(request, 0).await {
            Ok(_) => tracing::info!(node = id, "member added"),
            Err(e) => {
                tracing::warn!(
                    node = id,
                    "adding member failed, retried on the next poll: {e}"
                );
                return;
            }
        }
    }
    for id in voters.iter().filter(|id| !want.contains_key(id)) {
        tracing::info!(node = id, "removing member absent from cluster.conf");
        match cp
            .handle_client(ClientRequest::RemoveMember { id: *id }, 0)
            .await
        {
            Ok(_) => tracing::info!(node = id, "member removed"),
            Err(e) => {
                tracing::warn!(
                    node = id,
                    "removing member failed, retried on the next poll: {e}"
                );
                return;
            }
        }
    }
}
