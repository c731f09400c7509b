//! `nacre`: one Nacre member. It resolves the settings (flags, environment,
//! `application.properties`, cluster.conf), opens the Raft journal and snapshot in the data
//! directory (`FileDisk`), starts the engine's `CpNode` and Distro runner with the TCP peer
//! transport and the system clock, and serves: Raft on P − 1000, Distro on P + 1001, the HTTP
//! Open API on P, the gRPC SDK protocol on P + 1000 (wire reference §1.1). On Ctrl-C or SIGTERM
//! it resets its SDK connections and shuts Raft down cleanly.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use nacre_engine::cp_node::{CpNode, CpOptions};
use nacre_engine::member::Member;
use nacre_engine::naming::distro::DistroTimings;
use nacre_engine::naming::runner::{DistroRunner, PeerAddr};
use nacre_server::settings::{self, Cli, Settings};
use nacre_server::{
    grpc, http, http_console, http_naming, http_v2, membership, peer, properties, storage,
    SystemClock,
};

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// A member's Distro name (`ip:port` with the main port, as Nacos names members) and its
/// Distro address (main port + 1001), from its Raft address (main port − 1000).
fn distro_name_and_addr(raft_addr: &str) -> (String, String) {
    match raft_addr.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u32>() {
            Ok(p) => (
                format!("{host}:{}", p + u32::from(settings::RAFT_PORT_OFFSET)),
                format!(
                    "{host}:{}",
                    p + u32::from(settings::RAFT_PORT_OFFSET)
                        + u32::from(settings::DISTRO_PORT_OFFSET)
                ),
            ),
            Err(_) => (raft_addr.to_string(), raft_addr.to_string()),
        },
        None => (raft_addr.to_string(), raft_addr.to_string()),
    }
}

async fn run(settings: Settings, timings: DistroTimings, idle_ms: u64) -> anyhow::Result<()> {
    let raft_dir = settings.data_dir.join("protocol").join("raft");
    let disk = storage::FileDisk::open(raft_dir.clone())
        .with_context(|| format!("open data directory {}", raft_dir.display()))?;
    let peer_listener = tokio::net::TcpListener::bind(&settings.raft_bind)
        .await
        .with_context(|| format!("bind raft port {}", settings.raft_bind))?;
    let distro_bind = match settings.raft_bind.rsplit_once(':') {
        Some((host, _)) => format!(
            "{host}:{}",
            u32::from(settings.port) + u32::from(settings::DISTRO_PORT_OFFSET)
        ),
        None => anyhow::bail!("bad peer bind address {}", settings.raft_bind),
    };
    let distro_listener = tokio::net::TcpListener::bind(&distro_bind)
        .await
        .with_context(|| format!("bind distro port {distro_bind}"))?;
    let grpc_bind = match settings.http_addr.rsplit_once(':') {
        Some((host, _)) => format!(
            "{host}:{}",
            u32::from(settings.port) + u32::from(settings::GRPC_PORT_OFFSET)
        ),
        None => anyhow::bail!("bad http bind address {}", settings.http_addr),
    };
    let grpc_listener = tokio::net::TcpListener::bind(&grpc_bind)
        .await
        .with_context(|| format!("bind grpc port {grpc_bind}"))?;
    let http_listener = tokio::net::TcpListener::bind(&settings.http_addr)
        .await
        .with_context(|| format!("bind http port {}", settings.http_addr))?;
    let opts = CpOptions::new(
        settings.node_id,
        settings.raft_addr.clone(),
        settings.members.clone(),
    );
    let node = CpNode::start(
        opts,
        Arc::new(disk),
        Arc::new(peer::TcpTransport::default()),
        Arc::new(SystemClock),
    )
    .await
    .context("start the CP node")?;
    // Distro names members `host:port` (main port); with a cluster.conf they come from it.
    let conf = match &settings.cluster_conf {
        Some(path) => Some(settings::read_cluster_conf(path, settings.port)?),
        None => None,
    };
    let (me, distro_members) = match &conf {
        Some(conf) => (
            conf.iter()
                .find(|m| m.node_id() == settings.node_id)
                .map(settings::ConfMember::name)
                .unwrap_or_else(|| distro_name_and_addr(&settings.raft_addr).0),
            membership::distro_members(conf),
        ),
        None => (
            distro_name_and_addr(&settings.raft_addr).0,
            settings
                .members
                .iter()
                .map(|(id, raft_addr)| {
                    let (name, addr) = distro_name_and_addr(raft_addr);
                    (name, PeerAddr { id: *id, addr })
                })
                .collect(),
        ),
    };
    let naming = DistroRunner::start(
        &me,
        distro_members,
        timings,
        Arc::new(peer::TcpTransport::default()),
    );
    let member = Arc::new(Member {
        cp: node.clone(),
        naming,
    });
    let peers = tokio::spawn(peer::serve_peers(peer_listener, member.clone()));
    let distro_peers = tokio::spawn(peer::serve_peers(distro_listener, member.clone()));
    tracing::info!(
        node = settings.node_id,
        data_dir = %settings.data_dir.display(),
        "nacre listening http={} grpc={} raft={} distro={}",
        settings.http_addr,
        grpc_bind,
        settings.raft_bind,
        distro_bind
    );
    if let (Some(path), Some(conf)) = (settings.cluster_conf.clone(), conf) {
        tokio::spawn(membership::watch(
            path,
            settings.port,
            conf,
            node.clone(),
            member.naming.clone(),
        ));
    }
    let naming_api = Arc::new(http_naming::NamingApi {
        cp: node.clone(),
        distro: member.naming.clone(),
        me,
        data_dir: settings.data_dir.clone(),
        list_cache: Default::default(),
    });
    let grpc_state = grpc::Grpc::new(naming_api.clone(), node.clone(), idle_ms);
    let grpc_ops = grpc::ops_router(grpc_state.clone());
    let grpc_for_shutdown = grpc_state.clone();
    let grpc_task = tokio::spawn(async move {
        if let Err(e) = grpc::serve(grpc_state, grpc_listener).await {
            tracing::error!("grpc server stopped: {e:#}");
        }
    });
    let console_api = Arc::new(http_console::ConsoleApi {
        cp: node.clone(),
        standalone: settings.standalone,
        http_port: settings.port,
    });
    let v1 = http::router(node.clone())
        .merge(http_naming::router(naming_api))
        .merge(http_console::router(console_api));
    let app = v1.clone().merge(http_v2::router(v1)).merge(grpc_ops);
    let served = axum::serve(
        http_listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        // SDK clients move to another member now instead of noticing the closed transport.
        grpc_for_shutdown.reset_all().await;
    })
    .await;
    peers.abort();
    distro_peers.abort();
    grpc_task.abort();
    node.shutdown().await;
    tracing::info!("nacre stopped");
    served.context("http server")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .init();
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches)?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let props = match properties::locate(&cli, &env)? {
        Some(path) => {
            tracing::info!("reading {}", path.display());
            properties::read(&path)?
        }
        None => Default::default(),
    };
    let given =
        |field: &str| matches.value_source(field) == Some(clap::parser::ValueSource::CommandLine);
    for warning in properties::apply(&mut cli, &given, &props, &env)? {
        tracing::warn!("{warning}");
    }
    let settings = Settings::resolve(&cli)?;
    run(
        settings,
        properties::distro_timings(&props)?,
        properties::client_idle_ms(&props)?,
    )
    .await
}
