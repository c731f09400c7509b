//! `nacre`: a Nacre member. This first cut runs a standalone member on durable embedded storage
//! (the Raft journal and snapshot in the data directory) and reports readiness; the HTTP and
//! gRPC APIs and cluster transport are the server issue's work.

mod storage;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use nacre_engine::cp_node::{CpNode, CpOptions};
use nacre_engine::ports::{BoxFuture, Clock, PeerTransport, TransportError};
use nacre_engine::wire::{PeerRequest, PeerResponse};

#[derive(Parser)]
#[command(
    name = "nacre",
    about = "Nacos-compatible service registry and configuration center"
)]
struct Cli {
    /// Main port (HTTP); the Raft port is this minus 1000, as in Nacos.
    #[arg(long, default_value_t = 8848)]
    port: u16,
    /// Data directory (Raft journal and snapshots).
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// `standalone` (the default) or `cluster`; Nacos's `-m standalone` works too.
    #[arg(short = 'm', long, default_value = "standalone")]
    mode: String,
}

/// The system clock.
struct SystemClock;

impl Clock for SystemClock {
    // The one place the server reads the wall clock: the engine gets time through this port.
    #[allow(clippy::disallowed_methods)]
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A standalone member has no peers: every call is refused.
struct NoPeers;

impl PeerTransport for NoPeers {
    fn call(
        &self,
        _: u64,
        addr: &str,
        _: PeerRequest,
        _: Duration,
    ) -> BoxFuture<Result<PeerResponse, TransportError>> {
        let addr = addr.to_string();
        Box::pin(async move {
            Err(TransportError::Unreachable(format!(
                "{addr}: standalone member has no peers"
            )))
        })
    }
}

#[tokio::main]
// Start-up timing for the readiness log line uses the real clock.
#[allow(clippy::disallowed_methods)]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    if cli.mode != "standalone" {
        eprintln!("nacre: cluster mode is not available yet in this build; run with -m standalone");
        std::process::exit(2);
    }
    let raft_port = cli.port.saturating_sub(1000);
    let addr = format!("127.0.0.1:{raft_port}");
    let disk = match storage::FileDisk::open(cli.data_dir.join("protocol").join("raft")) {
        Ok(d) => Arc::new(d),
        Err(e) => {
            eprintln!("nacre: {e}");
            std::process::exit(1);
        }
    };
    let members = BTreeMap::from([(1u64, addr.clone())]);
    let opts = CpOptions::new(1, addr, members);
    let node = match CpNode::start(opts, disk, Arc::new(NoPeers), Arc::new(SystemClock)).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("nacre: cannot start: {e}");
            std::process::exit(1);
        }
    };
    let started = std::time::Instant::now();
    while node.status().leader.is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let st = node.status();
    tracing::info!(
        data_dir = %cli.data_dir.display(),
        applied = ?st.last_applied,
        ready_ms = started.elapsed().as_millis() as u64,
        "nacre standalone member ready (leader elected, storage open)"
    );
    let _ = tokio::signal::ctrl_c().await;
    node.shutdown().await;
    tracing::info!("nacre stopped");
}
