//! Command-line settings of a member and their resolution into the CP options.
//!
//! Standalone mode is a one-member cluster `{1: 127.0.0.1:<port − 1000>}`; cluster mode takes
//! the member list (`id=host:raftport`, like Nacos's `cluster.conf`) and this member's id.
//! The Raft port is the HTTP port minus 1000, as in Nacos (wire reference §1.1).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};

/// The Raft port is the main port minus this (Nacos `DEFAULT_RAFT_OFFSET_PORT`).
pub const RAFT_PORT_OFFSET: u16 = 1000;
/// Most members a cluster list may name.
pub const MEMBERS_MAX: usize = 64;

/// How the member runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Standalone,
    Cluster,
}

/// The `nacre` command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "nacre",
    about = "Nacos-compatible service registry and configuration center"
)]
pub struct Cli {
    /// Main port (HTTP); the Raft port is this minus 1000, as in Nacos.
    #[arg(long, default_value_t = 8848)]
    pub port: u16,
    /// Address the HTTP listener binds to.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Data directory (Raft journal and snapshots).
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// `standalone` (the default) or `cluster`; Nacos's `-m standalone` works too.
    #[arg(short = 'm', long, value_enum, default_value_t = Mode::Standalone)]
    pub mode: Mode,
    /// This member's id (cluster mode).
    #[arg(long, default_value_t = 1)]
    pub node_id: u64,
    /// Cluster members, comma separated `id=host:raftport` (cluster mode).
    #[arg(long, default_value = "")]
    pub members: String,
}

/// Resolved settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub http_addr: String,
    pub node_id: u64,
    /// This member's Raft/peer address as the others reach it.
    pub raft_addr: String,
    /// Where the peer listener binds.
    pub raft_bind: String,
    pub members: BTreeMap<u64, String>,
    pub data_dir: PathBuf,
}

impl Settings {
    /// Checks the command line and derives the member list and addresses.
    pub fn resolve(cli: &Cli) -> anyhow::Result<Settings> {
        let Some(raft_port) = cli.port.checked_sub(RAFT_PORT_OFFSET).filter(|p| *p > 0) else {
            bail!("--port must be above {RAFT_PORT_OFFSET} (the Raft port is port - 1000)");
        };
        let http_addr = format!("{}:{}", cli.bind, cli.port);
        let (node_id, members) = match cli.mode {
            Mode::Standalone => (1, BTreeMap::from([(1, format!("127.0.0.1:{raft_port}"))])),
            Mode::Cluster => (cli.node_id, parse_members(&cli.members)?),
        };
        let raft_addr = members
            .get(&node_id)
            .with_context(|| format!("--node-id {node_id} is not in --members"))?
            .clone();
        let raft_bind = match cli.mode {
            Mode::Standalone => raft_addr.clone(),
            Mode::Cluster => {
                let port = raft_addr
                    .rsplit_once(':')
                    .map(|(_, p)| p)
                    .context("member address without port")?;
                format!("0.0.0.0:{port}")
            }
        };
        Ok(Settings {
            http_addr,
            node_id,
            raft_addr,
            raft_bind,
            members,
            data_dir: cli.data_dir.clone(),
        })
    }
}

/// Parses `1=10.0.0.1:7848,2=10.0.0.2:7848`.
pub fn parse_members(list: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut members = BTreeMap::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .with_context(|| format!("member `{item}` is not id=host:port"))?;
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("member id in `{item}`"))?;
        let addr = addr.trim();
        let port_ok = addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            bail!("member address `{addr}` is not host:port");
        }
        if members.insert(id, addr.to_string()).is_some() {
            bail!("member id {id} appears twice");
        }
        if members.len() > MEMBERS_MAX {
            bail!("more than {MEMBERS_MAX} members");
        }
    }
    if members.is_empty() {
        bail!("cluster mode needs --members id=host:raftport,...");
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("nacre").chain(args.iter().copied()))
    }

    #[test]
    fn standalone_is_a_one_member_cluster_on_port_minus_1000() {
        let s = Settings::resolve(&cli(&["--port", "8848"])).expect("valid");
        assert_eq!(s.http_addr, "127.0.0.1:8848");
        assert_eq!(s.node_id, 1);
        assert_eq!(s.raft_addr, "127.0.0.1:7848");
        assert_eq!(s.raft_bind, "127.0.0.1:7848");
        assert_eq!(
            s.members,
            BTreeMap::from([(1, "127.0.0.1:7848".to_string())])
        );
    }

    #[test]
    fn cluster_members_are_parsed() {
        let s = Settings::resolve(&cli(&[
            "-m",
            "cluster",
            "--node-id",
            "2",
            "--members",
            "1=10.0.0.1:7848, 2=10.0.0.2:7848",
        ]))
        .expect("valid");
        assert_eq!(s.raft_addr, "10.0.0.2:7848");
        assert_eq!(s.raft_bind, "0.0.0.0:7848");
        assert_eq!(s.members.len(), 2);
    }

    #[test]
    fn bad_member_lists_are_refused() {
        assert!(parse_members("").is_err());
        assert!(parse_members("1=nohost").is_err());
        assert!(parse_members("x=h:1").is_err());
        assert!(parse_members("1=h:1,1=h:2").is_err());
        let s = Settings::resolve(&cli(&[
            "-m",
            "cluster",
            "--node-id",
            "3",
            "--members",
            "1=h:1",
        ]));
        assert!(s.is_err());
        assert!(Settings::resolve(&cli(&["--port", "900"])).is_err());
    }
}
