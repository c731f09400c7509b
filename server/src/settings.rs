//! Command-line settings of a member and their resolution into the CP options.
//!
//! Standalone mode is a one-member cluster `{1: 127.0.0.1:<port − 1000>}`. Cluster mode takes
//! the member list either from a Nacos-format `cluster.conf` (`--cluster-conf PATH`, or
//! `conf/cluster.conf` when it exists) or from `--members id=host:raftport,...` with
//! `--node-id`. The Raft port is the HTTP port minus 1000, as in Nacos (wire reference §1.1).
//!
//! `cluster.conf` rules (wire reference §5.1): one `ip[:port]` per entry, entries separated by
//! lines or commas, `#` starts a comment (whole line or trailing), blank lines are ignored; a
//! missing port means this member's `--port`; the port is the member's HTTP port and its Raft
//! port is port − 1000 (or `?raft_port=N` when given). A member's node id is derived from its
//! `host:port` alone (`ConfMember::node_id`), so every member derives the same ids from the
//! file and an id never changes when members are added or removed later. This member is the
//! entry whose port equals `--port` and whose host is `--bind` or a loopback address (127.x,
//! `localhost`); exactly one entry must match. The file is watched for changes while the
//! member runs (`membership`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};

/// The Raft port is the main port minus this (Nacos `DEFAULT_RAFT_OFFSET_PORT`).
pub const RAFT_PORT_OFFSET: u16 = 1000;
/// The SDK gRPC port is the main port plus this (wire reference §1.1: P+1000).
pub const GRPC_PORT_OFFSET: u16 = 1000;
/// The Distro/peer-report port is the main port plus this (wire reference §1.1: P+1001).
pub const DISTRO_PORT_OFFSET: u16 = 1001;
/// Most members a cluster list may name.
pub const MEMBERS_MAX: usize = 64;
/// The member list read in cluster mode when neither `--members` nor `--cluster-conf` is given.
pub const DEFAULT_CLUSTER_CONF: &str = "conf/cluster.conf";
/// Largest `cluster.conf` accepted.
pub const CLUSTER_CONF_BYTES_MAX: u64 = 1024 * 1024;

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
    /// This member's id with `--members` (default 1). With a cluster.conf the id is derived
    /// from the file; if given anyway it must agree.
    #[arg(long)]
    pub node_id: Option<u64>,
    /// Cluster members, comma separated `id=host:raftport` (cluster mode).
    #[arg(long, default_value = "")]
    pub members: String,
    /// Nacos-format member list (`ip:port` per line, `#` comments), cluster mode. Default:
    /// `conf/cluster.conf` when it exists and `--members` is not given.
    #[arg(long)]
    pub cluster_conf: Option<PathBuf>,
    /// Member list in cluster.conf entry syntax, comma separated (Nacos's `-c`,
    /// `nacos.member.list`, `NACOS_SERVERS`); used instead of a cluster.conf, not watched.
    #[arg(short = 'c', long)]
    pub member_list: Option<String>,
    /// Nacos `application.properties` to read. Default: `$NACOS_HOME/conf/application.properties`
    /// or `conf/application.properties` when one exists. The command line wins over the
    /// environment, which wins over the file.
    #[arg(long)]
    pub properties: Option<PathBuf>,
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
    /// The cluster.conf the member list came from, watched for changes.
    pub cluster_conf: Option<PathBuf>,
    /// The main port (the default port of cluster.conf entries).
    pub port: u16,
    pub standalone: bool,
}

impl Settings {
    /// Checks the command line and derives the member list and addresses.
    pub fn resolve(cli: &Cli) -> anyhow::Result<Settings> {
        let Some(raft_port) = cli.port.checked_sub(RAFT_PORT_OFFSET).filter(|p| *p > 0) else {
            bail!("--port must be above {RAFT_PORT_OFFSET} (the Raft port is port - 1000)");
        };
        let http_addr = format!("{}:{}", cli.bind, cli.port);
        if cli.mode == Mode::Cluster && cli.members.trim().is_empty() {
            return Self::from_cluster_conf(cli, http_addr);
        }
        if cli.cluster_conf.is_some() {
            bail!("give either --members or --cluster-conf, not both");
        }
        let (node_id, members) = match cli.mode {
            Mode::Standalone => (1, BTreeMap::from([(1, format!("127.0.0.1:{raft_port}"))])),
            Mode::Cluster => (cli.node_id.unwrap_or(1), parse_members(&cli.members)?),
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
            cluster_conf: None,
            port: cli.port,
            standalone: cli.mode == Mode::Standalone,
        })
    }
}

impl Settings {
    /// Cluster mode with the member list from a Nacos `cluster.conf`.
    fn from_cluster_conf(cli: &Cli, http_addr: String) -> anyhow::Result<Settings> {
        if let Some(list) = &cli.member_list {
            if cli.cluster_conf.is_some() {
                bail!("give either --member-list or --cluster-conf, not both");
            }
            let conf = parse_cluster_conf(list, cli.port).context("bad member list")?;
            return Self::from_conf_entries(cli, http_addr, conf, None, "the member list");
        }
        let path = match &cli.cluster_conf {
            Some(p) => p.clone(),
            None if Path::new(DEFAULT_CLUSTER_CONF).is_file() => {
                PathBuf::from(DEFAULT_CLUSTER_CONF)
            }
            None => bail!(
                "cluster mode needs a member list: --cluster-conf PATH, {DEFAULT_CLUSTER_CONF}, \
                 or --members id=host:raftport,..."
            ),
        };
        let conf = read_cluster_conf(&path, cli.port)?;
        let source = format!("cluster.conf {}", path.display());
        Self::from_conf_entries(cli, http_addr, conf, Some(path), &source)
    }

    /// Cluster mode with the members of a parsed member list; `path` is watched when given.
    fn from_conf_entries(
        cli: &Cli,
        http_addr: String,
        conf: Vec<ConfMember>,
        path: Option<PathBuf>,
        source: &str,
    ) -> anyhow::Result<Settings> {
        let (node_id, me) = find_self(&conf, &cli.bind, cli.port).context(source.to_string())?;
        if let Some(given) = cli.node_id {
            if given != node_id {
                bail!(
                    "--node-id {given} disagrees with {source}: this member ({}:{}) is node \
                     {node_id} (ids are derived from host:port)",
                    me.host,
                    me.port
                );
            }
        }
        let members = conf_members(&conf)?;
        // Peers reach this member at its cluster.conf host; listen there unless the HTTP side
        // listens on every interface.
        let wildcard = matches!(cli.bind.as_str(), "0.0.0.0" | "::" | "[::]");
        let raft_bind = if wildcard {
            format!("{}:{}", cli.bind, me.raft_port)
        } else {
            me.raft_addr()
        };
        Ok(Settings {
            http_addr,
            node_id,
            raft_addr: me.raft_addr(),
            raft_bind,
            members,
            data_dir: cli.data_dir.clone(),
            cluster_conf: path,
            port: cli.port,
            standalone: false,
        })
    }
}

/// One entry of a `cluster.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfMember {
    pub host: String,
    /// The member's main (HTTP) port.
    pub port: u16,
    /// Its Raft/peer port: port − 1000 unless `?raft_port=` says otherwise.
    pub raft_port: u16,
    /// 1-based line of the file it came from.
    pub line: usize,
}

impl ConfMember {
    /// The member's Raft node id: FNV-1a of `host:port`, in 1..2^63. Stable whatever else the
    /// file lists.
    pub fn node_id(&self) -> u64 {
        let h = nacre_engine::digest::fnv64(format!("{}:{}", self.host, self.port).as_bytes());
        (h >> 1).max(1)
    }

    /// `host:port`, the member's name in Distro and the cluster views.
    pub fn name(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `host:port+1001`, where the member serves Distro.
    pub fn distro_addr(&self) -> String {
        format!(
            "{}:{}",
            self.host,
            u32::from(self.port) + u32::from(DISTRO_PORT_OFFSET)
        )
    }

    /// `host:raftport`, the address peers use.
    pub fn raft_addr(&self) -> String {
        format!("{}:{}", self.host, self.raft_port)
    }
}

/// Reads and parses a `cluster.conf`; errors name the file.
pub fn read_cluster_conf(path: &Path, default_port: u16) -> anyhow::Result<Vec<ConfMember>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("read cluster.conf {}", path.display()))?
        .len();
    if len > CLUSTER_CONF_BYTES_MAX {
        bail!(
            "cluster.conf {} is {len} bytes, over {CLUSTER_CONF_BYTES_MAX}",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read cluster.conf {}", path.display()))?;
    parse_cluster_conf(&text, default_port)
        .with_context(|| format!("bad cluster.conf {}", path.display()))
}

/// Parses Nacos `cluster.conf` text: entries `ip[:port][?raft_port=N]`, one per line or comma
/// separated, `#` comments, blank lines ignored; a missing port is `default_port`. The result is
/// sorted by (host, port).
pub fn parse_cluster_conf(text: &str, default_port: u16) -> anyhow::Result<Vec<ConfMember>> {
    let mut members: Vec<ConfMember> = Vec::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line_no = index + 1;
        let content = raw_line.split('#').next().unwrap_or("");
        for entry in content.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let member = parse_conf_entry(entry, default_port, line_no)
                .with_context(|| format!("line {line_no} `{entry}`"))?;
            if let Some(other) = members
                .iter()
                .find(|m| m.host == member.host && m.port == member.port)
            {
                bail!(
                    "line {line_no} `{entry}`: duplicates the member on line {}",
                    other.line
                );
            }
            let clash = members.iter().find(|m| {
                m.host == member.host
                    && [m.port, m.raft_port]
                        .iter()
                        .any(|p| *p == member.port || *p == member.raft_port)
            });
            if let Some(other) = clash {
                bail!(
                    "line {line_no} `{entry}`: its ports {} (HTTP) and {} (Raft) collide with \
                     the member on line {} ({}:{}, Raft {})",
                    member.port,
                    member.raft_port,
                    other.line,
                    other.host,
                    other.port,
                    other.raft_port
                );
            }
            members.push(member);
            if members.len() > MEMBERS_MAX {
                bail!("line {line_no}: more than {MEMBERS_MAX} members");
            }
        }
    }
    if members.is_empty() {
        bail!("no members (expected `ip:port` lines)");
    }
    members.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    Ok(members)
}

fn parse_conf_entry(entry: &str, default_port: u16, line: usize) -> anyhow::Result<ConfMember> {
    let (addr, raft_override) = match entry.split_once('?') {
        None => (entry, None),
        Some((addr, query)) => {
            let value = query
                .strip_prefix("raft_port=")
                .with_context(|| format!("unknown option `{query}` (only raft_port=N)"))?;
            let port = value
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .with_context(|| format!("raft_port `{value}` is not a port 1..=65535"))?;
            (addr, Some(port))
        }
    };
    let (host, port) = match addr.rsplit_once(':') {
        None => (addr, default_port),
        Some((host, port_text)) => {
            let port = port_text
                .parse::<u16>()
                .map_err(|_| anyhow::anyhow!("port `{port_text}` is not a number 0..=65535"))?;
            (host, port)
        }
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !host_ok {
        bail!("host `{host}` is not an IPv4 address or host name");
    }
    let raft_port = match raft_override {
        Some(p) => p,
        None => port
            .checked_sub(RAFT_PORT_OFFSET)
            .filter(|p| *p > 0)
            .with_context(|| {
                format!(
                    "port {port} must be above {RAFT_PORT_OFFSET} (the Raft port is port - 1000)"
                )
            })?,
    };
    if raft_port == port {
        bail!("raft_port {raft_port} equals the HTTP port");
    }
    if port.checked_add(DISTRO_PORT_OFFSET).is_none() {
        bail!("port {port} leaves no room for the Distro port (port + {DISTRO_PORT_OFFSET})");
    }
    Ok(ConfMember {
        host: host.to_string(),
        port,
        raft_port,
        line,
    })
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// This member in a parsed cluster.conf: the entry with port `port` whose host is `bind` or a
/// loopback address (an exact `bind` match wins over loopback ones). Returns its node id.
pub fn find_self<'a>(
    conf: &'a [ConfMember],
    bind: &str,
    port: u16,
) -> anyhow::Result<(u64, &'a ConfMember)> {
    let candidates: Vec<(u64, &ConfMember)> = conf
        .iter()
        .map(|m| (m.node_id(), m))
        .filter(|(_, m)| m.port == port && (m.host == bind || is_loopback(&m.host)))
        .collect();
    let exact: Vec<_> = candidates.iter().filter(|(_, m)| m.host == bind).collect();
    match (candidates.as_slice(), exact.as_slice()) {
        ([only], _) => Ok(*only),
        (_, [only]) => Ok(**only),
        ([], _) => bail!(
            "no entry is this member: expected one with port {port} and host `{bind}` (--bind) \
             or a loopback address"
        ),
        (many, _) => {
            let lines: Vec<String> = many.iter().map(|(_, m)| m.line.to_string()).collect();
            bail!(
                "entries on lines {} all match this member (port {port}); set --bind to its host",
                lines.join(", ")
            )
        }
    }
}

/// The Raft member map (`node id → host:raftport`) of a parsed cluster.conf.
pub fn conf_members(conf: &[ConfMember]) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut members = BTreeMap::new();
    for m in conf {
        if let Some(other) = members.insert(m.node_id(), m.raft_addr()) {
            bail!(
                "members {other} and {} have the same node id; change one's port",
                m.raft_addr()
            );
        }
    }
    Ok(members)
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

    fn conf_file(text: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("nacre-settings-{}-{n}.conf", std::process::id()));
        std::fs::write(&path, text).expect("write conf");
        path
    }

    fn chain(e: &anyhow::Error) -> String {
        format!("{e:#}")
    }

    #[test]
    fn cluster_conf_skips_comments_and_blank_lines_and_sorts() {
        let text = "# Nacos cluster\n\n10.0.0.3:8848  # third\n   \n10.0.0.1:8848\n\
                    #10.0.0.9:8848\n10.0.0.2:8848,10.0.0.2:8850\n10.0.0.4\n";
        let conf = parse_cluster_conf(text, 8849).expect("valid");
        let got: Vec<(String, u16, u16, usize)> = conf
            .iter()
            .map(|m| (m.host.clone(), m.port, m.raft_port, m.line))
            .collect();
        let want = [
            ("10.0.0.1", 8848, 7848, 5),
            ("10.0.0.2", 8848, 7848, 7),
            ("10.0.0.2", 8850, 7850, 7),
            ("10.0.0.3", 8848, 7848, 3),
            ("10.0.0.4", 8849, 7849, 8),
        ];
        let want: Vec<(String, u16, u16, usize)> = want
            .iter()
            .map(|(h, p, r, l)| (h.to_string(), *p, *r, *l))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn cluster_conf_raft_port_override() {
        let conf = parse_cluster_conf("10.0.0.1:8848?raft_port=9000", 8848).expect("valid");
        assert_eq!(conf[0].raft_addr(), "10.0.0.1:9000");
        let e = parse_cluster_conf("10.0.0.1:8848?grpc=1", 8848).expect_err("bad option");
        assert!(chain(&e).contains("unknown option"), "{e:#}");
    }

    #[test]
    fn cluster_conf_errors_name_the_line() {
        for (text, want) in [
            (
                "10.0.0.1:8848\n10.0.0.2:abc\n",
                "line 2 `10.0.0.2:abc`: port `abc`",
            ),
            (
                "10.0.0.1:8848\n\n10.0.0.2:70000",
                "line 3 `10.0.0.2:70000`: port `70000`",
            ),
            (
                "10.0.0.1:900",
                "line 1 `10.0.0.1:900`: port 900 must be above 1000",
            ),
            (
                "1=10.0.0.1:7848",
                "line 1 `1=10.0.0.1:7848`: host `1=10.0.0.1`",
            ),
            ("# only comments\n\n", "no members"),
        ] {
            let e = parse_cluster_conf(text, 8848).expect_err(text);
            assert!(chain(&e).contains(want), "{text:?}: {e:#}");
        }
    }

    #[test]
    fn cluster_conf_duplicates_and_port_clashes_are_refused() {
        let e = parse_cluster_conf("10.0.0.1:8848\n10.0.0.2:8848\n10.0.0.1:8848 # again", 8848)
            .expect_err("duplicate");
        assert!(
            chain(&e).contains("line 3 `10.0.0.1:8848`: duplicates the member on line 1"),
            "{e:#}"
        );
        let e = parse_cluster_conf("127.0.0.1:8848\n127.0.0.1:9848", 8848).expect_err("clash");
        assert!(chain(&e).contains("line 2 `127.0.0.1:9848`"), "{e:#}");
        assert!(chain(&e).contains("collide"), "{e:#}");
    }

    #[test]
    fn cluster_conf_resolves_ids_and_self() {
        let path = conf_file("127.0.0.1:18850\n127.0.0.1:18848\n127.0.0.1:18849\n");
        let conf_arg = path.to_str().expect("utf-8 path");
        let s = Settings::resolve(&cli(&[
            "-m",
            "cluster",
            "--port",
            "18849",
            "--cluster-conf",
            conf_arg,
        ]))
        .expect("valid");
        let id = |port: u16| {
            ConfMember {
                host: "127.0.0.1".into(),
                port,
                raft_port: port - 1000,
                line: 0,
            }
            .node_id()
        };
        assert_eq!(s.node_id, id(18849));
        assert_eq!(s.raft_addr, "127.0.0.1:17849");
        assert_eq!(s.raft_bind, "127.0.0.1:17849");
        assert_eq!(s.http_addr, "127.0.0.1:18849");
        let want: BTreeMap<u64, String> = [18848, 18849, 18850]
            .into_iter()
            .map(|p| (id(p), format!("127.0.0.1:{}", p - 1000)))
            .collect();
        assert_eq!(s.members, want);
        // Ids depend on the entry alone: adding a member changes no existing id.
        let bigger = parse_cluster_conf(
            "127.0.0.1:18850\n127.0.0.1:18847\n127.0.0.1:18848\n127.0.0.1:18849\n",
            18848,
        )
        .expect("valid");
        let grown = conf_members(&bigger).expect("distinct ids");
        assert!(want.iter().all(|(k, v)| grown.get(k) == Some(v)));
        assert_eq!(grown.len(), 4);

        // A wildcard bind listens for peers on every interface too.
        let s = Settings::resolve(&cli(&[
            "-m",
            "cluster",
            "--port",
            "18848",
            "--bind",
            "0.0.0.0",
            "--cluster-conf",
            conf_arg,
        ]))
        .expect("valid");
        assert_eq!(
            (s.node_id, s.raft_bind.as_str()),
            (id(18848), "0.0.0.0:17848")
        );

        // A matching --node-id is accepted, a different one refused.
        let args = [
            "-m",
            "cluster",
            "--port",
            "18850",
            "--cluster-conf",
            conf_arg,
        ];
        let mut with_id = args.to_vec();
        let own = id(18850).to_string();
        with_id.extend(["--node-id", own.as_str()]);
        assert_eq!(
            Settings::resolve(&cli(&with_id)).expect("valid").node_id,
            id(18850)
        );
        let mut wrong = args.to_vec();
        wrong.extend(["--node-id", "1"]);
        assert!(Settings::resolve(&cli(&wrong)).is_err());

        // No entry on this port; --members together with --cluster-conf.
        let e = Settings::resolve(&cli(&[
            "-m",
            "cluster",
            "--port",
            "18851",
            "--cluster-conf",
            conf_arg,
        ]))
        .expect_err("not a member");
        assert!(chain(&e).contains("no entry is this member"), "{e:#}");
        let both = Settings::resolve(&cli(&[
            "-m",
            "cluster",
            "--members",
            "1=h:1",
            "--cluster-conf",
            conf_arg,
        ]));
        assert!(both.is_err());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn self_match_prefers_the_bind_address_and_refuses_ambiguity() {
        let conf = parse_cluster_conf("10.0.0.1:8848\n10.0.0.2:8848\n127.0.0.1:8848", 8848)
            .expect("valid");
        let (id, me) = find_self(&conf, "10.0.0.2", 8848).expect("bind matches");
        assert_eq!((id, me.host.as_str()), (conf[1].node_id(), "10.0.0.2"));
        let (id, _) = find_self(&conf, "127.0.0.1", 8848).expect("loopback");
        assert_eq!(id, conf[2].node_id());
        assert!(
            find_self(&conf, "10.0.0.9", 8848).is_ok(),
            "only the loopback entry"
        );
        let conf = parse_cluster_conf("127.0.0.1:8848\n127.0.0.2:8848", 8848).expect("valid");
        let e = find_self(&conf, "0.0.0.0", 8848).expect_err("ambiguous");
        assert!(chain(&e).contains("lines 1, 2"), "{e:#}");
        assert_eq!(
            find_self(&conf, "127.0.0.2", 8848).expect("exact").0,
            conf[1].node_id()
        );
    }

    #[test]
    fn cluster_mode_without_a_member_list_is_refused() {
        // The test runs in the crate directory, which has no conf/cluster.conf.
        let e = Settings::resolve(&cli(&["-m", "cluster"])).expect_err("no list");
        assert!(chain(&e).contains("--cluster-conf"), "{e:#}");
    }
}
