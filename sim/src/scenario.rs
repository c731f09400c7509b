//! Scenario files: the data a reviewer reads in a PR (STYLE 10, docs/scenarios.md).
//!
//! A scenario names a cluster size, a duration, a workload mix and a fault timeline. Fault
//! times and victims are ranges or roles; the run's seed picks concrete values, so one file
//! covers many runs and a pinned `seed` replays one exactly.

use std::path::Path;

use serde::Deserialize;

/// One scenario file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// smoke, fast, slow, regress or negative.
    pub tier: String,
    /// The seed the golden summary is pinned to.
    pub seed: u64,
    /// Initial members.
    #[serde(default = "default_nodes")]
    pub nodes: u64,
    /// Length of the fault phase, simulated seconds.
    pub duration_s: u64,
    /// Bound for the liveness phase after all faults are healed, simulated seconds.
    #[serde(default = "default_liveness_bound")]
    pub liveness_bound_s: u64,
    /// The injected engine bug this negative scenario must catch (`nacre_engine::bugs`); the
    /// simulator switches it on for every run of the scenario.
    #[serde(default)]
    pub expect_bug: Option<String>,
    /// Coverage marks (`nacre_engine::coverage`) the pinned run must hit.
    #[serde(default)]
    pub expect_marks: Vec<String>,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub storage: Storage,
    pub workload: Workload,
    /// Naming clients (Distro); none if absent.
    #[serde(default)]
    pub naming: Option<NamingWorkload>,
    #[serde(default)]
    pub faults: Vec<Fault>,
}

fn default_nodes() -> u64 {
    3
}
fn default_liveness_bound() -> u64 {
    20
}

/// Base network conditions for the whole run.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// One-way latency range, milliseconds (reordering follows from its spread).
    pub latency_ms: [u64; 2],
    /// Probability that a message is lost.
    pub loss: f64,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            latency_ms: [1, 10],
            loss: 0.0,
        }
    }
}

/// Storage knobs that make snapshot and purge paths happen within a short run.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    pub snapshot_every_entries: u64,
    pub keep_after_snapshot: u64,
    /// On a crash, keep a random prefix of unsynced bytes (a torn tail) instead of none.
    pub torn_tail: bool,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            snapshot_every_entries: 200,
            keep_after_snapshot: 20,
            torn_tail: true,
        }
    }
}

/// The client workload.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub clients: u64,
    pub keys: u64,
    /// Pause between a client's operations, milliseconds.
    pub think_ms: [u64; 2],
    /// Relative weights.
    pub publish: u32,
    pub cas: u32,
    pub remove: u32,
    pub get_local: u32,
    pub get_linearizable: u32,
}

/// The naming workload of a scenario.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NamingWorkload {
    /// Connection (gRPC-style) clients.
    pub conn_clients: u64,
    /// HTTP (1.x-style) clients.
    pub http_clients: u64,
    /// Subscribers of every service.
    pub subscribers: u64,
    pub services: u64,
    /// Every `leave_one_in`-th client leaves once, at a time within `leave_at_s` (0: none).
    #[serde(default)]
    pub leave_one_in: u64,
    #[serde(default = "default_leave_at")]
    pub leave_at_s: [u64; 2],
    /// Probability, per keepalive, that a connection client registers the same instance again.
    #[serde(default)]
    pub reregister_p: f64,
}

fn default_leave_at() -> [u64; 2] {
    [0, 0]
}

/// One fault of the timeline. `at_s` is a range of start times (simulated seconds).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Crash a node (power loss: unsynced writes are lost) and restart it after `down_s`.
    Crash {
        at_s: [u64; 2],
        down_s: [u64; 2],
        target: Target,
    },
    /// Split the members into a minority and a majority for `for_s`.
    Partition { at_s: [u64; 2], for_s: [u64; 2] },
    /// Cut the current leader off from everyone for `for_s`.
    IsolateLeader { at_s: [u64; 2], for_s: [u64; 2] },
    /// Drop one direction of one link (a -> b) for `for_s`.
    OneWay { at_s: [u64; 2], for_s: [u64; 2] },
    /// A new member starts and joins the cluster under load.
    Join { at_s: [u64; 2] },
    /// Restart every member one after another, `gap_s` apart.
    RollingRestart { at_s: [u64; 2], gap_s: u64 },
    /// Crash a member, let the leader purge past it, restart it and crash it again while it
    /// installs the snapshot.
    CrashDuringSnapshot { at_s: [u64; 2], down_s: [u64; 2] },
    /// Crash every member at once, restart them after `down_s`.
    CrashAll { at_s: [u64; 2], down_s: [u64; 2] },
    /// Remove a follower from the Raft membership through the leader, then stop it for good.
    RemoveMember { at_s: [u64; 2] },
    /// Links between random pairs of members go down and up every `period_ms` for `for_s`.
    FlappingLinks {
        at_s: [u64; 2],
        for_s: [u64; 2],
        period_ms: u64,
    },
    /// Flip a bit in a synced journal record of a follower, then crash and restart it: it must
    /// refuse to start (checksum) and stay down.
    CorruptDisk { at_s: [u64; 2] },
}

/// Which member a fault hits.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Leader,
    Follower,
    Any,
}

impl Scenario {
    /// Parses a scenario from TOML text and checks its values.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let s: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        s.validate()?;
        Ok(s)
    }

    /// Reads and parses a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Scenario::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn validate(&self) -> Result<(), String> {
        if !["smoke", "fast", "slow", "regress", "negative"].contains(&self.tier.as_str()) {
            return Err(format!("unknown tier {:?}", self.tier));
        }
        if !(1..=7).contains(&self.nodes) {
            return Err("nodes must be 1..=7".into());
        }
        if self.workload.clients == 0 || self.workload.keys == 0 {
            return Err("workload needs clients and keys".into());
        }
        if self.tier == "negative" && self.expect_bug.is_none() {
            return Err("a negative scenario names the bug it must catch (expect_bug)".into());
        }
        if let Some(b) = &self.expect_bug {
            if nacre_engine::bugs::Bug::from_name(b).is_none() {
                return Err(format!("unknown injected bug {b:?} (engine/src/bugs.rs)"));
            }
        }
        for m in &self.expect_marks {
            if nacre_engine::coverage::Mark::from_name(m).is_none() {
                return Err(format!("unknown coverage mark {m:?}"));
            }
        }
        for f in &self.faults {
            let at = f.at_s();
            if at[0] > at[1] || at[1] > self.duration_s {
                return Err(format!(
                    "fault {f:?}: at_s must be an ordered range within duration_s"
                ));
            }
        }
        Ok(())
    }

    /// The built-in default scenario used by `cargo sim --seed N` without `--scenario`.
    pub fn default_mixed() -> Scenario {
        Scenario::parse(include_str!("../../scenarios/fast/mixed-faults.toml"))
            .expect("the bundled default scenario parses")
    }
}

impl Fault {
    /// The start-time range of the fault.
    pub fn at_s(&self) -> [u64; 2] {
        match self {
            Fault::Crash { at_s, .. }
            | Fault::Partition { at_s, .. }
            | Fault::IsolateLeader { at_s, .. }
            | Fault::OneWay { at_s, .. }
            | Fault::Join { at_s }
            | Fault::RollingRestart { at_s, .. }
            | Fault::CrashDuringSnapshot { at_s, .. }
            | Fault::CrashAll { at_s, .. }
            | Fault::CorruptDisk { at_s }
            | Fault::FlappingLinks { at_s, .. }
            | Fault::RemoveMember { at_s } => *at_s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_file_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut count = 0;
        for tier in std::fs::read_dir(&root).expect("scenarios dir") {
            let tier = tier.expect("entry").path();
            if !tier.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(&tier).expect("tier dir") {
                let f = f.expect("entry").path();
                if f.extension().is_some_and(|e| e == "toml") {
                    let s = Scenario::load(&f).unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(
                        Some(s.tier.as_str()),
                        tier.file_name().and_then(|n| n.to_str()),
                        "{}",
                        f.display()
                    );
                    count += 1;
                }
            }
        }
        assert!(
            count >= 10,
            "expected the scenario catalogue, found {count}"
        );
    }

    #[test]
    fn unknown_fields_and_bad_ranges_are_rejected() {
        let base = "name='x'\ntier='fast'\nseed=1\nduration_s=10\n[workload]\nclients=1\nkeys=1\nthink_ms=[1,2]\npublish=1\ncas=0\nremove=0\nget_local=0\nget_linearizable=0\n";
        assert!(Scenario::parse(base).is_ok());
        assert!(
            Scenario::parse(&format!("{base}bogus=1\n")).is_err()
                || Scenario::parse(&format!("bogus=1\n{base}")).is_err()
        );
        let bad = format!("{base}[[faults]]\nkind='join'\nat_s=[5,20]\n");
        assert!(Scenario::parse(&bad)
            .unwrap_err()
            .contains("within duration_s"));
    }
}
