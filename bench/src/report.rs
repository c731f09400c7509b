//! Reports: throughput, latency percentiles, errors by kind, server RSS and CPU; a table, JSON,
//! or a Markdown summary of several JSON reports.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The real monotonic clock: the load generator measures real processes in real time.
#[allow(clippy::disallowed_methods)]
pub fn now() -> Instant {
    Instant::now()
}

/// Longest error kind kept; longer messages are cut, so kinds stay few and readable.
const ERROR_KIND_CHARS: usize = 90;
/// Most distinct error kinds kept; further ones are counted as `other`.
const ERROR_KINDS_MAX: usize = 32;

/// Latencies and errors gathered by one or more sessions.
#[derive(Default)]
pub struct Tally {
    /// Microseconds, one per success.
    pub lat: Vec<u32>,
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    pub fn ok(&mut self, took: Duration) {
        self.lat
            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
    }

    pub fn error(&mut self, kind: impl Into<String>) {
        let mut kind: String = kind.into();
        if let Some((cut, _)) = kind.char_indices().nth(ERROR_KIND_CHARS) {
            kind.truncate(cut);
        }
        if !self.errors.contains_key(&kind) && self.errors.len() >= ERROR_KINDS_MAX {
            kind = "other".into();
        }
        *self.errors.entry(kind).or_insert(0) += 1;
    }

    pub fn merge(&mut self, other: Tally) {
        self.lat.extend(other.lat);
        for (k, n) in other.errors {
            *self.errors.entry(k).or_insert(0) += n;
        }
    }
}

/// One reading of a server process from /proc.
#[derive(Clone, Copy)]
pub struct Sample {
    pub rss_kb: u64,
    pub cpu_s: f64,
}

/// RSS and total CPU time (user + system) of `pid`, if it runs.
pub fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields 14 and 15 (utime, stime) after the parenthesized command name, in ticks.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(Sample {
        rss_kb,
        cpu_s: ticks / 100.0,
    })
}

/// One measurement.
#[derive(Serialize, Deserialize)]
pub struct Report {
    /// The mode that produced it (`config-get`, `grpc-register`, …).
    #[serde(default)]
    pub workload: String,
    /// What was measured, for people.
    pub name: String,
    pub target: String,
    pub connections: usize,
    pub seconds: f64,
    pub ok: u64,
    pub errors: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub error_kinds: BTreeMap<String, u64>,
    pub per_second: f64,
    pub p50_us: u32,
    pub p99_us: u32,
    pub p999_us: u32,
    #[serde(default)]
    pub max_us: u32,
    /// Server RSS after the run (summed over the server processes).
    pub server_rss_kb: Option<u64>,
    /// Server RSS before the run, when it was read.
    #[serde(default)]
    pub server_rss_before_kb: Option<u64>,
    /// Server CPU time since it started (user + system).
    pub server_cpu_s: Option<f64>,
    /// Server CPU time spent during the run.
    #[serde(default)]
    pub server_cpu_run_s: Option<f64>,
    /// The workload whose throughput this one is a fraction of (the in-process ceiling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<String>,
    /// Mode-specific figures.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub detail: BTreeMap<String, Value>,
}

/// The `p` quantile of sorted values (0 when there are none).
pub fn pct(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

impl Report {
    /// Builds a report from what the sessions gathered.
    pub fn new(
        workload: &str,
        name: &str,
        target: String,
        connections: usize,
        elapsed: Duration,
        mut tally: Tally,
    ) -> Report {
        tally.lat.sort_unstable();
        let lat = &tally.lat;
        let secs = elapsed.as_secs_f64();
        Report {
            workload: workload.into(),
            name: name.into(),
            target,
            connections,
            seconds: secs,
            ok: lat.len() as u64,
            errors: tally.errors.values().sum(),
            error_kinds: tally.errors,
            per_second: lat.len() as f64 / secs.max(1e-9),
            p50_us: pct(lat, 0.50),
            p99_us: pct(lat, 0.99),
            p999_us: pct(lat, 0.999),
            max_us: lat.last().copied().unwrap_or(0),
            server_rss_kb: None,
            server_rss_before_kb: None,
            server_cpu_s: None,
            server_cpu_run_s: None,
            ceiling: None,
            detail: BTreeMap::new(),
        }
    }

    /// Adds one mode-specific figure.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Report {
        self.detail.insert(key.into(), value.into());
        self
    }

    /// Adds the servers' RSS and CPU time (summed over `pids`), and what was spent since the
    /// samples `before` (same order as `pids`) when there are any.
    pub fn with_servers(mut self, pids: &[u32], before: &[Option<Sample>]) -> Report {
        let after: Vec<Option<Sample>> = pids.iter().map(|p| sample(*p)).collect();
        if pids.is_empty() || after.iter().all(Option::is_none) {
            return self;
        }
        let live = after.iter().flatten();
        self.server_rss_kb = Some(live.clone().map(|s| s.rss_kb).sum());
        self.server_cpu_s = Some(live.map(|s| s.cpu_s).sum());
        if before.len() == pids.len() && before.iter().all(Option::is_some) {
            let pairs = before.iter().flatten().zip(after.iter().flatten());
            self.server_rss_before_kb = Some(before.iter().flatten().map(|s| s.rss_kb).sum());
            self.server_cpu_run_s = Some(pairs.map(|(b, a)| a.cpu_s - b.cpu_s).sum());
        }
        self
    }

    /// A human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "{:<40} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7}\n",
            "workload", "ops/s", "p50 µs", "p99 µs", "p999 µs", "max µs", "errors"
        ));
        s.push_str(&format!(
            "{:<40} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>7}\n",
            self.name,
            self.per_second,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.errors
        ));
        s.push_str(&format!(
            "target {} · {} connections · {:.1} s · {} ok\n",
            self.target, self.connections, self.seconds, self.ok
        ));
        for (kind, n) in &self.error_kinds {
            s.push_str(&format!("  error ×{n}: {kind}\n"));
        }
        if let Some(rss) = self.server_rss_kb {
            s.push_str(&format!("server RSS {:.1} MB", rss as f64 / 1024.0));
            if let Some(before) = self.server_rss_before_kb {
                s.push_str(&format!(
                    " (before the run {:.1} MB)",
                    before as f64 / 1024.0
                ));
            }
            if let Some(cpu) = self.server_cpu_s {
                s.push_str(&format!(", CPU {cpu:.1} s total"));
            }
            if let Some(run) = self.server_cpu_run_s {
                s.push_str(&format!(
                    ", {run:.1} s during the run ({:.0}% of one core)",
                    100.0 * run / self.seconds.max(1e-9)
                ));
            }
            s.push('\n');
        }
        for (k, v) in &self.detail {
            s.push_str(&format!("  {k}: {v}\n"));
        }
        s
    }

    /// JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// A Markdown table of JSON reports (as `--json` printed them), with each workload's fraction
/// of its ceiling when the ceiling's report is among them.
pub fn summary(files: &[PathBuf]) -> Result<String, String> {
    let mut reports = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let r: Report = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))?;
        reports.push(r);
    }
    let ceiling_of = |w: &str| reports.iter().find(|r| r.workload == w);
    let mut s = String::from(
        "| workload | conns | ops/s | p50 µs | p99 µs | p999 µs | max µs | errors | fraction of ceiling | server RSS MB |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &reports {
        let fraction = r
            .ceiling
            .as_deref()
            .and_then(ceiling_of)
            .map_or("—".to_string(), |c| {
                format!("{:.0}%", 100.0 * r.per_second / c.per_second.max(1e-9))
            });
        let rss = r
            .server_rss_kb
            .map_or("—".to_string(), |kb| format!("{:.1}", kb as f64 / 1024.0));
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {fraction} | {rss} |\n",
            r.name,
            r.connections,
            thousands(r.per_second.round() as u64),
            thousands(u64::from(r.p50_us)),
            thousands(u64::from(r.p99_us)),
            thousands(u64::from(r.p999_us)),
            thousands(u64::from(r.max_us)),
            r.errors
        ));
    }
    let mut notes = String::new();
    for r in &reports {
        let mut parts: Vec<String> = Vec::new();
        if let Some(cpu) = r.server_cpu_run_s {
            parts.push(format!("server CPU {cpu:.1} s during {:.1} s", r.seconds));
        }
        if let Some(before) = r.server_rss_before_kb {
            parts.push(format!("RSS before {:.1} MB", before as f64 / 1024.0));
        }
        parts.extend(
            r.error_kinds
                .iter()
                .map(|(k, n)| format!("error ×{n}: {k}")),
        );
        parts.extend(r.detail.iter().map(|(k, v)| format!("{k} {v}")));
        if !parts.is_empty() {
            notes.push_str(&format!(
                "- {} ({}): {}\n",
                r.name,
                r.target,
                parts.join("; ")
            ));
        }
    }
    if !notes.is_empty() {
        s.push('\n');
        s.push_str(&notes);
    }
    Ok(s)
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let groups: Vec<String> = digits
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|g| String::from_utf8_lossy(g).into_owned())
        .collect();
    groups.join(",")
}

/// Measures fsync calls per second on a file in `dir` (one 4 KiB write per fsync).
pub fn fsync(dir: &Path, count: u64) -> Result<Report, String> {
    let path = dir.join(format!(".nacre-bench-fsync-{}", std::process::id()));
    let mut f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    let block = [7u8; 4096];
    let mut tally = Tally::default();
    let started = now();
    for _ in 0..count {
        let t = now();
        f.write_all(&block).map_err(|e| e.to_string())?;
        f.sync_data().map_err(|e| e.to_string())?;
        tally.ok(t.elapsed());
    }
    let elapsed = started.elapsed();
    let _ = std::fs::remove_file(&path);
    Ok(Report::new(
        "fsync",
        "fsync (4 KiB write + fdatasync)",
        dir.display().to_string(),
        1,
        elapsed,
        tally,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_error_kinds() {
        let mut t = Tally::default();
        for us in 1..=1000u64 {
            t.ok(Duration::from_micros(us));
        }
        t.error("HTTP 500");
        t.error("HTTP 500");
        t.error("x".repeat(500));
        let r = Report::new("w", "w", "t".into(), 1, Duration::from_secs(1), t);
        assert_eq!((r.p50_us, r.p99_us, r.max_us), (501, 990, 1000));
        assert_eq!(r.errors, 3);
        assert_eq!(r.error_kinds["HTTP 500"], 2);
        assert!(r.error_kinds.keys().all(|k| k.len() <= ERROR_KIND_CHARS));
        let back: Report = serde_json::from_str(&r.json()).expect("round trip");
        assert_eq!(back.ok, 1000);
    }

    #[test]
    fn error_kinds_are_bounded() {
        let mut t = Tally::default();
        for i in 0..100 {
            t.error(format!("kind {i}"));
        }
        assert_eq!(t.errors.len(), ERROR_KINDS_MAX + 1);
        assert_eq!(t.errors["other"], 100 - ERROR_KINDS_MAX as u64);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
