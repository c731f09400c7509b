//! Clusters the bench starts itself: free member ports, and the `failover` measurement — a
//! 3-member cluster of the given `nacre` binary on loopback, its Raft leader SIGKILLed round
//! after round while every survivor keeps publishing configs; each round's figure is the time
//! from the kill to the first acknowledged write. The killed member is restarted on its data
//! directory and must be ready before the next round.
//!
//! The members are started through `nacre-tests` (the integration tests' launcher) and only
//! they are killed, by their child handle. The leader is read from the members' own logs
//! (openraft's `become leader` / `quit leader` lines), as the HTTP API names no leader.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nacre_tests::{
    free_http_ports, temp_dir, write_cluster_conf, Nacre, DISTRO_PORT_OFFSET, RAFT_PORT_OFFSET,
};
use serde_json::json;

use crate::client::{publish, Conn};
use crate::grpc::GRPC_PORT_OFFSET;
use crate::report::{now, Report, Tally};

/// Log filter of the members: info lines plus openraft's leader transitions.
const RUST_LOG: &str = "info,openraft=warn,openraft::engine::handler::server_state_handler=info";
/// How long a member may take to answer readiness after a start.
const READY_LIMIT: Duration = Duration::from_secs(30);
/// How long to look for the leader in the logs before killing another member instead.
const LEADER_LOOKUP: Duration = Duration::from_secs(5);
/// One write attempt's limit, and the pause between attempts.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(3);
const ATTEMPT_PAUSE: Duration = Duration::from_millis(10);
/// Attempts at finding member ports that are all free and distinct.
const PORT_ATTEMPTS: usize = 50;
/// Lines of a member's log quoted in an error.
const LOG_TAIL_LINES: usize = 30;

/// Every port member `p` uses: HTTP, Raft, gRPC SDK, Distro.
fn member_ports(p: u16) -> [u16; 4] {
    [
        p,
        p - RAFT_PORT_OFFSET,
        p + GRPC_PORT_OFFSET,
        p + DISTRO_PORT_OFFSET,
    ]
}

/// `n` HTTP ports on 127.0.0.1 such that every member's four ports are free and no two
/// members share one.
pub fn free_member_ports(n: usize) -> Result<Vec<u16>, String> {
    for _ in 0..PORT_ATTEMPTS {
        let ports = free_http_ports(n);
        let mut all: Vec<u16> = ports.iter().flat_map(|p| member_ports(*p)).collect();
        all.sort_unstable();
        all.dedup();
        let grpc_free = ports
            .iter()
            .all(|p| TcpListener::bind(("127.0.0.1", p + GRPC_PORT_OFFSET)).is_ok());
        if all.len() == 4 * n && grpc_free {
            return Ok(ports);
        }
    }
    Err(format!(
        "no {n} free member port sets after {PORT_ATTEMPTS} attempts"
    ))
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The last lines of `text`.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Whether a member's log says it leads now: its last leader transition is `become leader`.
fn leads(log: &str) -> bool {
    let last = log.lines().rev().find_map(|l| {
        if l.contains("become leader") {
            Some(true)
        } else if l.contains("quit leader") {
            Some(false)
        } else {
            None
        }
    });
    last == Some(true)
}

/// A cluster of members started from one cluster.conf in one temporary directory.
struct Cluster {
    bin: PathBuf,
    root: PathBuf,
    conf: PathBuf,
    ports: Vec<u16>,
    members: Vec<Option<Nacre>>,
    starts: usize,
    /// Keep the directory (logs, data) when done.
    keep: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in self.members.iter_mut() {
            if let Some(mut nacre) = m.take() {
                nacre.kill();
            }
        }
        if self.keep {
            eprintln!("cluster directory kept: {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

impl Cluster {
    fn new(bin: &Path, n: usize, keep: bool) -> Result<Cluster, String> {
        if !bin.is_file() {
            return Err(format!("{}: no such binary", bin.display()));
        }
        let root = temp_dir("bench-cluster");
        let conf = root.join("cluster.conf");
        let ports = free_member_ports(n)?;
        write_cluster_conf(&conf, &ports);
        Ok(Cluster {
            bin: bin.to_path_buf(),
            root,
            conf,
            ports,
            members: (0..n).map(|_| None).collect(),
            starts: 0,
            keep,
        })
    }

    /// Starts member `i` on its own data directory, without waiting.
    fn launch(&mut self, i: usize) {
        self.starts += 1;
        let data = self.root.join(format!("data-{i}"));
        let log = self
            .root
            .join(format!("member-{i}-start-{}.log", self.starts));
        let conf = self.conf.display().to_string();
        let args = ["-m", "cluster", "--cluster-conf", conf.as_str()];
        self.members[i] = Some(Nacre::start(
            &self.bin,
            self.ports[i],
            &data,
            &log,
            &args,
            RUST_LOG,
        ));
    }

    /// Waits (blocking this worker) until member `i` answers readiness.
    fn wait_ready(&mut self, i: usize) -> Result<(), String> {
        let member = self.members[i]
            .as_mut()
            .ok_or_else(|| format!("member {i} is not running"))?;
        tokio::task::block_in_place(|| member.wait_ready_within(READY_LIMIT)).map_err(|e| {
            format!(
                "member {i} (port {}): {}; its log ends:\n{}",
                self.ports[i],
                e.lines().next().unwrap_or(""),
                tail(&member.log_text())
            )
        })
    }

    fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| self.members[*i].is_some())
            .collect()
    }

    fn pids(&self) -> Vec<u32> {
        self.members.iter().flatten().map(Nacre::pid).collect()
    }

    /// The running member whose log says it leads, when exactly one does.
    fn leader(&self) -> Option<usize> {
        let leaders: Vec<usize> = self
            .running()
            .into_iter()
            .filter(|i| {
                self.members[*i]
                    .as_ref()
                    .is_some_and(|m| leads(&m.log_text()))
            })
            .collect();
        (leaders.len() == 1).then(|| leaders[0])
    }

    /// SIGKILLs member `i` (a process this cluster started) and reaps it.
    fn kill(&mut self, i: usize) {
        if let Some(mut m) = self.members[i].take() {
            m.kill();
        }
    }
}

/// Publishes through `addr` until one publish is answered 200 or `limit` has passed since
/// `since`; the time from `since` to that answer.
async fn first_write(
    addr: SocketAddr,
    data_id: String,
    since: Instant,
    limit: Duration,
) -> Result<Duration, String> {
    let mut conn: Option<Conn> = None;
    let mut last = String::from("no attempt");
    let mut attempt = 0u64;
    while since.elapsed() < limit {
        attempt += 1;
        let left = limit.saturating_sub(since.elapsed());
        let step = ATTEMPT_LIMIT.min(left);
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match tokio::time::timeout(step, Conn::connect(addr)).await {
                Ok(Ok(c)) => conn.insert(c),
                Ok(Err(e)) => {
                    last = e;
                    tokio::time::sleep(ATTEMPT_PAUSE).await;
                    continue;
                }
                Err(_) => {
                    last = "connect timed out".into();
                    continue;
                }
            },
        };
        let request = publish(&data_id, &format!("a{attempt}"));
        match tokio::time::timeout(step, c.exchange(request.as_bytes())).await {
            Ok(Ok(200)) => return Ok(since.elapsed()),
            Ok(Ok(status)) => last = format!("HTTP {status}: {}", c.body()),
            Ok(Err(e)) => {
                last = e;
                conn = None;
            }
            Err(_) => {
                last = "attempt timed out".into();
                conn = None;
            }
        }
        tokio::time::sleep(ATTEMPT_PAUSE).await;
    }
    Err(format!(
        "no acknowledged write through {addr} within {} ms (last: {last})",
        limit.as_millis()
    ))
}

/// What `failover` does.
pub struct FailoverPlan {
    pub bin: PathBuf,
    pub rounds: u32,
    /// Longest wait, per round, for a write through the survivors.
    pub write_limit: Duration,
    pub keep: bool,
}

/// Runs the failover rounds on a fresh 3-member cluster.
pub async fn failover(plan: &FailoverPlan) -> Result<Report, String> {
    let mut cluster = Cluster::new(&plan.bin, 3, plan.keep)?;
    let result = failover_rounds(&mut cluster, plan).await;
    if result.is_err() {
        cluster.keep = true;
    }
    result
}

async fn failover_rounds(cluster: &mut Cluster, plan: &FailoverPlan) -> Result<Report, String> {
    let ports = cluster.ports.clone();
    for i in 0..ports.len() {
        cluster.launch(i);
    }
    for i in 0..ports.len() {
        cluster.wait_ready(i)?;
    }
    eprintln!(
        "failover: 3 members ready on 127.0.0.1 ports {ports:?} (directory {})",
        cluster.root.display()
    );
    first_write(
        loopback(ports[0]),
        "bench.failover.base".into(),
        now(),
        plan.write_limit,
    )
    .await?;

    let started = now();
    let mut tally = Tally::default();
    let (mut firsts, mut alls, mut restarts, mut victims) = (vec![], vec![], vec![], vec![]);
    for round in 0..plan.rounds {
        let lookup = now();
        let mut leader = cluster.leader();
        while leader.is_none() && lookup.elapsed() < LEADER_LOOKUP {
            tokio::time::sleep(Duration::from_millis(50)).await;
            leader = cluster.leader();
        }
        let victim = leader.unwrap_or(round as usize % ports.len());
        victims.push(if leader.is_some() {
            json!({"member": victim, "role": "leader"})
        } else {
            json!({"member": victim, "role": "not found in the logs; a member"})
        });
        cluster.kill(victim);
        let killed_at = now();
        let writers: Vec<_> = cluster
            .running()
            .into_iter()
            .map(|i| {
                let data_id = format!("bench.failover.r{round}.via{i}");
                tokio::spawn(first_write(
                    loopback(ports[i]),
                    data_id,
                    killed_at,
                    plan.write_limit,
                ))
            })
            .collect();
        let mut times = Vec::new();
        for w in writers {
            match w.await.map_err(|e| e.to_string())? {
                Ok(t) => times.push(t),
                Err(e) => tally.error(format!("round {round}: {e}")),
            }
        }
        if let Some(first) = times.iter().min() {
            tally.ok(*first);
            firsts.push(first.as_millis() as u64);
            eprintln!(
                "failover round {round}: killed member {victim}; first acknowledged write after {} ms",
                first.as_millis()
            );
        }
        if let Some(all) = times.iter().max() {
            alls.push(all.as_millis() as u64);
        }
        cluster.launch(victim);
        let restarted = now();
        cluster.wait_ready(victim)?;
        restarts.push(restarted.elapsed().as_millis() as u64);
    }
    let pids = cluster.pids();
    let target = format!(
        "3 members, 127.0.0.1 ports {}",
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    Ok(Report::new(
        "failover",
        "failover: leader SIGKILL → first write",
        target,
        2,
        started.elapsed(),
        tally,
    )
    .with("rounds", plan.rounds)
    .with("first_write_ms", firsts)
    .with("every_survivor_written_ms", alls)
    .with("restart_to_ready_ms", restarts)
    .with("victims", victims)
    .with_servers(&pids, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_transition_decides_leadership() {
        assert!(leads("x\nINFO become leader id=1\ny"));
        assert!(!leads("INFO become leader\nINFO quit leader"));
        assert!(!leads("nothing"));
    }

    #[test]
    fn member_port_sets_are_disjoint() {
        let ports = free_member_ports(3).expect("ports");
        let mut all: Vec<u16> = ports.iter().flat_map(|p| member_ports(*p)).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 12);
    }
}
