//! `nacre-bench`: a load generator for any Nacos-compatible server at a loopback address.
//!
//! Request workloads (HTTP Open API v1, and the 2.x gRPC SDK protocol on the port + 1000):
//! each connection sends a request, reads the whole answer, records the latency and sends the
//! next, until the duration or the request budget runs out (both bounded). `ceiling` and
//! `grpc-ceiling` run the same clients against trivial handlers in this process, so a server's
//! figure can be stated as a fraction of what this machine's HTTP or gRPC stack does at all.
//! `push-config` / `push-naming` measure server push latency, `failover` the unavailability
//! after a leader is SIGKILLed in a 3-member cluster the bench starts itself, `fill` the memory
//! a server holds for 10,000 configs and 10,000 instances; `fsync` measures the disk.

mod client;
mod cluster;
mod grpc;
mod load;
mod push;
mod report;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::client::{prepare, Http, HttpKind};
use crate::grpc::{grpc_addr, GrpcKind, GrpcLoad};
use crate::load::{run_load, Load};
use crate::report::Report;

#[derive(Parser)]
#[command(
    name = "nacre-bench",
    about = "Load generator for Nacos-compatible servers (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Concurrent connections (HTTP keep-alive or gRPC), at most 1,000.
    #[arg(long, default_value_t = 50, global = true)]
    connections: usize,
    /// Seconds of load (at most 300); also bounds the push measurements.
    #[arg(long, default_value_t = 10, global = true)]
    duration: u64,
    /// Stop after this many requests in total (at most 10 million).
    #[arg(long, default_value_t = 10_000_000, global = true)]
    max_requests: u64,
    /// Print the report as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// PIDs of the server processes (comma-separated), to report their RSS and CPU time.
    #[arg(long, global = true, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Name the report this way instead of after the workload (e.g. to mark cluster runs).
    #[arg(long, global = true)]
    label: Option<String>,
}

/// The server's HTTP address (its gRPC SDK port is this port + 1000).
#[derive(Args)]
struct Target {
    #[arg(long, default_value = "127.0.0.1:8848")]
    addr: SocketAddr,
}

impl Target {
    /// The HTTP address, if it is a loopback one.
    fn http(&self) -> Result<SocketAddr, String> {
        loopback_only(self.addr)
    }

    /// The gRPC SDK address (HTTP port + 1000), if it is a loopback one.
    fn sdk(&self) -> Result<SocketAddr, String> {
        grpc_addr(self.http()?)
    }
}

/// A push measurement's sides and pace.
#[derive(Args)]
struct PushArgs {
    /// HTTP address of the member the listening/subscribing connection uses.
    #[arg(long, default_value = "127.0.0.1:8848")]
    addr: SocketAddr,
    /// HTTP address of the member the changes go to (default: the same as --addr).
    #[arg(long)]
    publish_addr: Option<SocketAddr>,
    /// Changes made (at most 10,000).
    #[arg(long, default_value_t = 200)]
    count: u64,
    /// Milliseconds between two changes.
    #[arg(long, default_value_t = 50)]
    interval_ms: u64,
    /// Longest wait for one push, in milliseconds (at most 30,000).
    #[arg(long, default_value_t = 3_000)]
    push_timeout_ms: u64,
}

#[derive(Subcommand)]
enum Command {
    /// GET /nacos/v1/cs/configs over `keys` configs (published first).
    ConfigGet {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 1)]
        keys: u64,
    },
    /// POST /nacos/v1/cs/configs, each request a new content over `keys` configs.
    ConfigPublish {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 100)]
        keys: u64,
    },
    /// POST /nacos/v1/ns/instance (ephemeral), a distinct ip:port each time over `services`.
    NamingRegister {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 100)]
        services: u64,
    },
    /// GET /nacos/v1/ns/instance/list of a service of 10 instances (registered first).
    NamingList {
        #[command(flatten)]
        target: Target,
    },
    /// gRPC InstanceRequest registerInstance over `services` services per connection.
    GrpcRegister {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 10)]
        services: u64,
    },
    /// gRPC ConfigPublishRequest, each a new content over `keys` configs.
    GrpcConfigPublish {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 100)]
        keys: u64,
    },
    /// gRPC ConfigQueryRequest over `keys` configs (published first, over HTTP).
    GrpcConfigGet {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 1)]
        keys: u64,
    },
    /// The HTTP GET client against a trivial in-process axum handler.
    Ceiling,
    /// The gRPC client against a trivial in-process tonic `Request/request` handler.
    GrpcCeiling,
    /// Config push latency: publish (HTTP) answered → ConfigChangeNotifyRequest received.
    PushConfig {
        #[command(flatten)]
        push: PushArgs,
    },
    /// Naming push latency: register (gRPC) answered → NotifySubscriberRequest received.
    PushNaming {
        #[command(flatten)]
        push: PushArgs,
    },
    /// Publishes `configs` configs and registers `instances` ephemeral instances over HTTP,
    /// for the server's RSS afterwards (give --server-pid). HTTP instances expire 30 s after
    /// their registration without beats: read the RSS right away.
    Fill {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 10_000)]
        configs: u64,
        #[arg(long, default_value_t = 10_000)]
        instances: u64,
        #[arg(long, default_value_t = 100)]
        services: u64,
    },
    /// Starts a 3-member cluster of `bin` on free loopback ports, SIGKILLs its leader `rounds`
    /// times and measures kill → first acknowledged config publish through the survivors.
    Failover {
        /// The `nacre` binary.
        #[arg(long, default_value = "./target/release/nacre")]
        bin: PathBuf,
        /// Rounds (at most 50).
        #[arg(long, default_value_t = 10)]
        rounds: u32,
        /// Longest wait for a write after a kill, in seconds (at most 60).
        #[arg(long, default_value_t = 15)]
        write_limit: u64,
        /// Keep the members' directory (logs and data) afterwards.
        #[arg(long)]
        keep_logs: bool,
    },
    /// fsync rate of a file in `dir`.
    Fsync {
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, default_value_t = 2_000)]
        count: u64,
    },
    /// Prints `count` free HTTP ports on 127.0.0.1 whose Raft (−1000), gRPC (+1000) and Distro
    /// (+1001) ports are free too, for starting members.
    Ports {
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
    /// A Markdown table of reports saved with --json, with fractions of the ceilings.
    Summary { files: Vec<PathBuf> },
}

fn loopback_only(addr: SocketAddr) -> Result<SocketAddr, String> {
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err(format!(
            "{addr}: nacre-bench only targets loopback addresses"
        ))
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let load = Load {
        connections: cli.connections.clamp(1, 1_000),
        duration: Duration::from_secs(cli.duration.clamp(1, 300)),
        max_requests: cli.max_requests.min(10_000_000),
        server_pids: cli.server_pid.clone(),
    };
    let before: Vec<_> = cli.server_pid.iter().map(|p| report::sample(*p)).collect();
    let report = match run(cli.command, &load).await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => fail(&e),
    };
    // Request workloads read the servers themselves; failover reads the members it started.
    let mut report = if report.server_rss_kb.is_some() || report.workload == "failover" {
        report
    } else {
        report.with_servers(&cli.server_pid, &before)
    };
    if let Some(label) = cli.label {
        report.name = label;
    }
    if cli.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("nacre-bench: {msg}");
    std::process::exit(2);
}

/// Runs one command; its report, or `None` for the commands that print something else.
async fn run(command: Command, load: &Load) -> Result<Option<Report>, String> {
    let keys = |k: u64| k.clamp(1, 1_000_000);
    let services = |s: u64| s.clamp(1, 100_000);
    let report = match command {
        Command::ConfigGet { target, keys: k } => {
            let kind = HttpKind::ConfigGet { keys: keys(k) };
            http(target.http()?, kind, load).await?
        }
        Command::ConfigPublish { target, keys: k } => {
            let kind = HttpKind::ConfigPublish { keys: keys(k) };
            http(target.http()?, kind, load).await?
        }
        Command::NamingRegister {
            target,
            services: s,
        } => {
            let kind = HttpKind::NamingRegister {
                services: services(s),
            };
            http(target.http()?, kind, load).await?
        }
        Command::NamingList { target } => http(target.http()?, HttpKind::NamingList, load).await?,
        Command::Ceiling => {
            let (addr, server) = axum_trivial().await?;
            let report = http(addr, HttpKind::Ceiling, load).await;
            server.abort();
            report?
        }
        Command::GrpcRegister {
            target,
            services: s,
        } => {
            let kind = GrpcKind::Register {
                services: services(s),
            };
            grpc(target.sdk()?, kind, load).await?
        }
        Command::GrpcConfigPublish { target, keys: k } => {
            let kind = GrpcKind::ConfigPublish { keys: keys(k) };
            grpc(target.sdk()?, kind, load).await?
        }
        Command::GrpcConfigGet { target, keys: k } => {
            prepare(target.http()?, HttpKind::ConfigGet { keys: keys(k) }).await?;
            let kind = GrpcKind::ConfigGet { keys: keys(k) };
            grpc(target.sdk()?, kind, load).await?
        }
        Command::GrpcCeiling => {
            let (addr, server) = grpc::trivial_server().await?;
            let report = grpc(addr, GrpcKind::Ceiling, load).await;
            server.abort();
            report?
        }
        Command::PushConfig { push: p } => {
            let (sides, pace) = push_plan(&p, load)?;
            push::config(&sides, &pace).await?
        }
        Command::PushNaming { push: p } => {
            let (sides, pace) = push_plan(&p, load)?;
            push::naming(&sides, &pace).await?
        }
        Command::Fill {
            target,
            configs,
            instances,
            services: s,
        } => {
            let (configs, instances) = (configs.min(1_000_000), instances.min(1_000_000));
            let fill = Load {
                connections: load.connections,
                duration: Duration::from_secs(300),
                max_requests: configs + instances,
                server_pids: load.server_pids.clone(),
            };
            let kind = HttpKind::Fill {
                configs,
                instances,
                services: services(s),
            };
            http(target.http()?, kind, &fill)
                .await?
                .with("configs", configs)
                .with("instances", instances)
        }
        Command::Failover {
            bin,
            rounds,
            write_limit,
            keep_logs,
        } => {
            let plan = cluster::FailoverPlan {
                bin,
                rounds: rounds.clamp(1, 50),
                write_limit: Duration::from_secs(write_limit.clamp(1, 60)),
                keep: keep_logs,
            };
            cluster::failover(&plan).await?
        }
        Command::Fsync { dir, count } => report::fsync(&dir, count.clamp(1, 100_000))?,
        Command::Ports { count } => {
            let ports = cluster::free_member_ports(count.clamp(1, 16))?;
            let text: Vec<String> = ports.iter().map(u16::to_string).collect();
            println!("{}", text.join(" "));
            return Ok(None);
        }
        Command::Summary { files } => {
            print!("{}", report::summary(&files)?);
            return Ok(None);
        }
    };
    Ok(Some(report))
}

/// An HTTP workload against `addr`, prepared first.
async fn http(addr: SocketAddr, kind: HttpKind, load: &Load) -> Result<Report, String> {
    prepare(addr, kind).await?;
    let (id, name, ceiling) = kind.label();
    let mut report = run_load(Arc::new(Http { addr, kind }), load, id, &name).await?;
    report.ceiling = ceiling.map(str::to_string);
    Ok(report)
}

/// A gRPC workload against the SDK port `addr`.
async fn grpc(addr: SocketAddr, kind: GrpcKind, load: &Load) -> Result<Report, String> {
    let (id, name, ceiling) = kind.label();
    let mut report = run_load(Arc::new(GrpcLoad { addr, kind }), load, id, name).await?;
    report.ceiling = ceiling.map(str::to_string);
    Ok(report)
}

fn push_plan(p: &PushArgs, load: &Load) -> Result<(push::Sides, push::Pace), String> {
    let sides = push::Sides {
        listen: loopback_only(p.addr)?,
        publish: loopback_only(p.publish_addr.unwrap_or(p.addr))?,
    };
    let pace = push::Pace {
        count: p.count.clamp(1, 10_000),
        interval: Duration::from_millis(p.interval_ms.clamp(1, 10_000)),
        push_timeout: Duration::from_millis(p.push_timeout_ms.clamp(100, 30_000)),
        duration: load.duration,
    };
    Ok((sides, pace))
}

/// A trivial handler shaped like a config GET answer, on an ephemeral loopback port.
async fn axum_trivial() -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let app = axum::Router::new().route(
        client::CONFIGS,
        axum::routing::get(|| async { "helloWorld" }).post(|| async { "true" }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, server))
}
