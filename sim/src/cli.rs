//! The body of the `sim` binary: single runs (madsim only) and sweeps (child processes).

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

#[cfg(madsim)]
use crate::scenario::Scenario;

/// Refuses to run outside the simulator build.
#[cfg(not(madsim))]
pub fn run_one(_: u64, _: Option<&Path>, _: bool, _: bool, _: bool) -> i32 {
    eprintln!(
        "the simulator must be built with --cfg madsim: use `cargo sim` (and unset RUSTFLAGS)"
    );
    1
}

/// Runs one seed and returns the exit code.
///
/// Everything, scenario parsing included, happens inside the madsim runtime: std's `RandomState`
/// caches its keys per thread on first use, so a hash map built before the runtime exists would
/// seed every later map (openraft's included) from the operating system, not from the seed.
#[cfg(madsim)]
pub fn run_one(
    seed: u64,
    scenario: Option<&Path>,
    trace: bool,
    summary: bool,
    pinned: bool,
) -> i32 {
    let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    let path = scenario.map(Path::to_path_buf);
    rt.block_on(run_in_runtime(seed, path, trace, summary, pinned))
}

#[cfg(madsim)]
async fn run_in_runtime(
    seed: u64,
    path: Option<PathBuf>,
    trace: bool,
    summary: bool,
    pinned: bool,
) -> i32 {
    let scenario = match &path {
        Some(p) => match Scenario::load(p) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        },
        None => Scenario::default_mixed(),
    };
    if pinned && scenario.seed != seed {
        // The runtime's seed is fixed at creation: re-run with the pinned seed.
        return run_one_pinned(scenario.seed, path, trace, summary);
    }
    if let Ok(filter) = std::env::var("NACRE_SIM_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let plan = crate::nemesis::plan(&scenario, seed);
    println!(
        "seed {seed} scenario {} ({} members, {} s, {} clients, {} keys)",
        scenario.name,
        scenario.nodes,
        scenario.duration_s,
        scenario.workload.clients,
        scenario.workload.keys
    );
    println!(
        "network latency {:?} ms loss {}",
        scenario.network.latency_ms, scenario.network.loss
    );
    for p in &plan {
        println!("plan: at {} ms for {} ms: {:?}", p.at_ms, p.dur_ms, p.fault);
    }
    let net = scenario.network.clone();
    madsim::net::NetSim::current().update_config(|c| {
        c.packet_loss_rate = net.loss;
        c.send_latency = std::time::Duration::from_millis(net.latency_ms[0])
            ..std::time::Duration::from_millis(net.latency_ms[1].max(net.latency_ms[0] + 1));
    });
    let report = crate::run::run(seed, scenario.clone(), trace).await;
    if summary {
        print!("{}", report.summary.0);
    }
    for v in &report.violations {
        println!("VIOLATION {}: {v:?}", v.property());
    }
    if let Some(l) = &report.liveness {
        println!("LIVENESS FAILURE: {l}");
    }
    for f in &report.failovers {
        println!(
            "failover: leader lost at {} ms, new leader after {:?} ms, first write after {:?} ms",
            f.at_ms, f.new_leader_ms, f.first_write_ms
        );
    }
    println!(
        "trace hash {:016x} ({} events, {} ms simulated)",
        report.trace_hash, report.events, report.sim_ms
    );
    if report.exit_code() != 0 {
        let scen = path
            .map(|p| format!(" --scenario {}", p.display()))
            .unwrap_or_default();
        println!("FAILED: replay with: cargo sim --seed {seed}{scen} --trace");
    }
    let mut code = report.exit_code();
    if seed == scenario.seed {
        for name in &scenario.expect_marks {
            let hit = nacre_engine::coverage::Mark::from_name(name)
                .map(nacre_engine::coverage::count)
                .unwrap_or(0);
            if hit == 0 {
                println!("MISSED COVERAGE MARK {name}: the pinned run no longer exercises it");
                code = code.max(crate::report::EXIT_CRASH);
            }
        }
    }
    println!("{}", report.result_line());
    code
}

/// Re-runs in a fresh process with the scenario's pinned seed.
#[cfg(madsim)]
fn run_one_pinned(seed: u64, path: Option<PathBuf>, trace: bool, summary: bool) -> i32 {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let mut cmd = Command::new(exe);
    cmd.arg("--seed").arg(seed.to_string());
    if let Some(p) = path {
        cmd.arg("--scenario").arg(p);
    }
    if trace {
        cmd.arg("--trace");
    }
    if summary {
        cmd.arg("--summary");
    }
    cmd.status().ok().and_then(|s| s.code()).unwrap_or(1)
}

fn scenario_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inner: Vec<PathBuf> = std::fs::read_dir(p)
                .map(|d| {
                    d.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| f.extension().is_some_and(|x| x == "toml"))
                        .collect()
                })
                .unwrap_or_default();
            inner.sort();
            files.extend(inner);
        } else {
            files.push(p.clone());
        }
    }
    files
}

struct Done {
    seed: u64,
    file: String,
    code: i32,
    line: String,
}

fn spawn(seed: u64, file: &Path) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("--seed").arg(seed.to_string());
    if !file.as_os_str().is_empty() {
        cmd.arg("--scenario").arg(file);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()
}

fn finish(seed: u64, file: &Path, child: Child) -> Done {
    let out = child.wait_with_output();
    let (code, line) = match out {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            let line = text
                .lines()
                .rev()
                .find(|l| l.starts_with("RESULT"))
                .unwrap_or("")
                .to_string();
            (o.status.code().unwrap_or(1), line)
        }
        Err(e) => (1, format!("spawn failed: {e}")),
    };
    Done {
        seed,
        file: file.display().to_string(),
        code,
        line,
    }
}

/// Runs a seed range in child processes and returns the exit code.
// The sweeper runs outside the simulation; it times itself with the real clock.
#[allow(clippy::disallowed_methods)]
pub fn sweep(
    paths: &[PathBuf],
    from: u64,
    count: u64,
    jobs: usize,
    expect_fail: bool,
    results: Option<&Path>,
) -> i32 {
    let mut files = scenario_files(paths);
    if files.is_empty() {
        files.push(PathBuf::new());
    }
    let mut queue: VecDeque<(u64, PathBuf)> = (from..from + count)
        .map(|s| (s, files[(s as usize) % files.len()].clone()))
        .collect();
    let mut running: VecDeque<(u64, PathBuf, Child)> = VecDeque::new();
    let mut done: Vec<Done> = Vec::new();
    let started = std::time::Instant::now();
    while !queue.is_empty() || !running.is_empty() {
        while running.len() < jobs.max(1) {
            let Some((seed, file)) = queue.pop_front() else {
                break;
            };
            match spawn(seed, &file) {
                Ok(child) => running.push_back((seed, file, child)),
                Err(e) => done.push(Done {
                    seed,
                    file: file.display().to_string(),
                    code: 1,
                    line: format!("spawn failed: {e}"),
                }),
            }
        }
        // Children finish in roughly submission order; waiting on the oldest keeps it simple.
        if let Some((seed, file, child)) = running.pop_front() {
            done.push(finish(seed, &file, child));
        }
        let fails = done.iter().filter(|d| d.code != 0).count();
        let n = done.len() as u64;
        let bar = "#".repeat((n * 30 / count.max(1)) as usize);
        // On a terminal the bar redraws in place; in a CI log it prints every 10%.
        if !std::io::IsTerminal::is_terminal(&std::io::stderr())
            && !n.is_multiple_of((count / 10).max(1))
        {
            continue;
        }
        eprint!(
            "\r[{bar:<30}] {n}/{count} seeds, {fails} failed, {:.1} seeds/s ",
            n as f64 / started.elapsed().as_secs_f64().max(0.001)
        );
        let _ = std::io::stderr().flush();
    }
    eprintln!();
    summarize(&done, started.elapsed().as_secs_f64(), expect_fail, results)
}

fn summarize(done: &[Done], secs: f64, expect_fail: bool, results: Option<&Path>) -> i32 {
    let mut by_file: std::collections::BTreeMap<&str, (u64, u64, u64, u64)> = Default::default();
    for d in done {
        let e = by_file.entry(d.file.as_str()).or_default();
        e.0 += 1;
        match d.code {
            0 => {}
            2 => e.1 += 1,
            3 => e.2 += 1,
            _ => e.3 += 1,
        }
    }
    println!(
        "{:<55} {:>6} {:>7} {:>8} {:>6}",
        "scenario", "seeds", "safety", "liveness", "crash"
    );
    for (f, (n, s, l, c)) in &by_file {
        let name = if f.is_empty() { "(default)" } else { f };
        println!("{name:<55} {n:>6} {s:>7} {l:>8} {c:>6}");
    }
    let failed: Vec<&Done> = done.iter().filter(|d| d.code != 0).collect();
    let sim_ms: u64 = done.iter().filter_map(|d| field(&d.line, "sim_ms=")).sum();
    println!(
        "{} seeds in {secs:.1} s: {:.2} seeds/s, {:.0} simulated s per wall s",
        done.len(),
        done.len() as f64 / secs,
        sim_ms as f64 / 1000.0 / secs
    );
    for d in failed.iter().take(20) {
        let scen = if d.file.is_empty() {
            String::new()
        } else {
            format!(" --scenario {}", d.file)
        };
        println!(
            "FAILED seed {} (exit {}): cargo sim --seed {}{scen} --trace",
            d.seed, d.code, d.seed
        );
    }
    if let Some(path) = results {
        let lines: Vec<String> = done
            .iter()
            .map(|d| format!("{} {}", d.file, d.line))
            .collect();
        let _ = std::fs::write(path, lines.join("\n") + "\n");
    }
    let passed = done.len() - failed.len();
    if !expect_fail {
        println!("sweep: {passed} passed, {} failed", failed.len());
    }
    if expect_fail {
        println!("negative tier: {} of {} seeds caught the injected bug (replay with the bug's feature enabled)", failed.len(), done.len());
        if failed.iter().any(|d| d.code == 2 || d.code == 3) {
            println!("negative tier: the injected bug was caught");
            0
        } else {
            println!("negative tier: the injected bug was NOT caught");
            1
        }
    } else if failed.is_empty() {
        0
    } else {
        1
    }
}

fn field(line: &str, name: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name))
        .and_then(|v| v.parse().ok())
}
