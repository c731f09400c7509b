//! `nacre-bench`: a load generator for any Nacos-compatible server at a loopback address.
//!
//! Each connection is one keep-alive HTTP/1.1 client that sends a request, reads the full
//! response, records the latency and sends the next, until the duration or the request
//! budget runs out (both bounded). `ceiling` runs the same client against a trivial axum
//! handler in this process, so a server's figure can be stated as a fraction of what this
//! machine's HTTP stack does at all; `fsync` measures the disk's fsync rate.

mod client;
mod report;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::client::{run_load, Load, Workload};
use crate::report::Report;

#[derive(Parser)]
#[command(
    name = "nacre-bench",
    about = "Load generator for Nacos-compatible servers (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 50, global = true)]
    connections: usize,
    /// Seconds of load (at most 300).
    #[arg(long, default_value_t = 10, global = true)]
    duration: u64,
    /// Stop after this many requests in total (at most 10 million).
    #[arg(long, default_value_t = 10_000_000, global = true)]
    max_requests: u64,
    /// Print the report as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// PID of the server, to report its RSS and CPU time.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
}

#[derive(Subcommand)]
enum Command {
    /// GET /nacos/v1/cs/configs over `keys` configs (published first).
    ConfigGet {
        #[arg(long, default_value = "127.0.0.1:8848")]
        addr: SocketAddr,
        #[arg(long, default_value_t = 1)]
        keys: u64,
    },
    /// POST /nacos/v1/cs/configs, each request a new content over `keys` configs.
    ConfigPublish {
        #[arg(long, default_value = "127.0.0.1:8848")]
        addr: SocketAddr,
        #[arg(long, default_value_t = 100)]
        keys: u64,
    },
    /// The same GET client against a trivial in-process axum handler.
    Ceiling,
    /// fsync rate of a file in `dir`.
    Fsync {
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, default_value_t = 2_000)]
        count: u64,
    },
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
    };
    let report = match cli.command {
        Command::ConfigGet { addr, keys } => match loopback_only(addr) {
            Ok(addr) => {
                run_load(
                    addr,
                    Workload::ConfigGet { keys: keys.max(1) },
                    &load,
                    "config-get",
                )
                .await
            }
            Err(e) => fail(&e),
        },
        Command::ConfigPublish { addr, keys } => match loopback_only(addr) {
            Ok(addr) => {
                run_load(
                    addr,
                    Workload::ConfigPublish { keys: keys.max(1) },
                    &load,
                    "config-publish",
                )
                .await
            }
            Err(e) => fail(&e),
        },
        Command::Ceiling => ceiling(&load).await,
        Command::Fsync { dir, count } => report::fsync(&dir, count.clamp(1, 100_000)),
    };
    let report = match report {
        Ok(r) => r.with_server(cli.server_pid),
        Err(e) => fail(&e),
    };
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

/// A trivial handler shaped like a config GET answer, on an ephemeral loopback port.
async fn ceiling(load: &Load) -> Result<Report, String> {
    let app = axum::Router::new().route(
        "/nacos/v1/cs/configs",
        axum::routing::get(|| async { "helloWorld" }).post(|| async { "true" }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let report = run_load(
        addr,
        Workload::Ceiling,
        load,
        "ceiling (trivial axum handler)",
    )
    .await;
    server.abort();
    report
}
