//! Reports: throughput, latency percentiles, errors, server RSS and CPU; table or JSON.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// One measurement.
#[derive(serde::Serialize)]
pub struct Report {
    pub name: String,
    pub target: String,
    pub connections: usize,
    pub seconds: f64,
    pub ok: u64,
    pub errors: u64,
    pub per_second: f64,
    pub p50_us: u32,
    pub p99_us: u32,
    pub p999_us: u32,
    pub server_rss_kb: Option<u64>,
    pub server_cpu_s: Option<f64>,
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

impl Report {
    /// Builds a report from raw latencies (microseconds).
    pub fn from_latencies(
        name: &str,
        addr: SocketAddr,
        connections: usize,
        elapsed: Duration,
        mut lat: Vec<u32>,
        errors: u64,
    ) -> Report {
        lat.sort_unstable();
        let secs = elapsed.as_secs_f64();
        Report {
            name: name.into(),
            target: addr.to_string(),
            connections,
            seconds: secs,
            ok: lat.len() as u64,
            errors,
            per_second: lat.len() as f64 / secs.max(1e-9),
            p50_us: pct(&lat, 0.50),
            p99_us: pct(&lat, 0.99),
            p999_us: pct(&lat, 0.999),
            server_rss_kb: None,
            server_cpu_s: None,
        }
    }

    /// Adds the server's RSS and CPU time from /proc.
    pub fn with_server(mut self, pid: Option<u32>) -> Report {
        let Some(pid) = pid else { return self };
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            self.server_rss_kb = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok());
        }
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // Fields 14 and 15 (utime, stime) after the parenthesized command name, in ticks.
            let rest = stat.rsplit(')').next().unwrap_or("");
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.len() > 13 {
                let ticks: f64 =
                    f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
                self.server_cpu_s = Some(ticks / 100.0);
            }
        }
        self
    }

    /// A human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "{:<34} {:>10} {:>9} {:>9} {:>9} {:>7}\n",
            "workload", "ops/s", "p50 µs", "p99 µs", "p999 µs", "errors"
        ));
        s.push_str(&format!(
            "{:<34} {:>10.0} {:>9} {:>9} {:>9} {:>7}\n",
            self.name, self.per_second, self.p50_us, self.p99_us, self.p999_us, self.errors
        ));
        s.push_str(&format!(
            "target {} · {} connections · {:.1} s · {} ok\n",
            self.target, self.connections, self.seconds, self.ok
        ));
        if let Some(rss) = self.server_rss_kb {
            s.push_str(&format!("server RSS {:.1} MB", rss as f64 / 1024.0));
            if let Some(cpu) = self.server_cpu_s {
                s.push_str(&format!(", CPU {cpu:.1} s total"));
            }
            s.push('\n');
        }
        s
    }

    /// JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// Measures fsync calls per second on a file in `dir` (one 4 KiB write per fsync).
// Measures real elapsed time; not engine code.
#[allow(clippy::disallowed_methods)]
pub fn fsync(dir: &Path, count: u64) -> Result<Report, String> {
    let path = dir.join(format!(".nacre-bench-fsync-{}", std::process::id()));
    let mut f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    let block = [7u8; 4096];
    let mut lat = Vec::new();
    let started = Instant::now();
    for _ in 0..count {
        let t = Instant::now();
        f.write_all(&block).map_err(|e| e.to_string())?;
        f.sync_data().map_err(|e| e.to_string())?;
        lat.push(t.elapsed().as_micros() as u32);
    }
    let elapsed = started.elapsed();
    let _ = std::fs::remove_file(&path);
    let addr: SocketAddr = "127.0.0.1:0"
        .parse()
        .map_err(|e: std::net::AddrParseError| e.to_string())?;
    let mut r = Report::from_latencies("fsync (4 KiB write + fdatasync)", addr, 1, elapsed, lat, 0);
    r.target = dir.display().to_string();
    Ok(r)
}
