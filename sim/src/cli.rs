//! The body of the `sim` binary: single runs (madsim only) and sweeps (child processes).

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

#[cfg(madsim)]
use crate::scenario::Scenario;

/// Refuses to run outside the simulator build.
#[cfg(not(madsim))]
pub fn run_one(_: u64, _: Option<&Path>, _: bool, _: bool, _: bool, _: bool) -> i32 {
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
    without_bug: bool,
) -> i32 {
    let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    let path = scenario.map(Path::to_path_buf);
    rt.block_on(run_in_runtime(
        seed,
        path,
        trace,
        summary,
        pinned,
        without_bug,
    ))
}

#[cfg(madsim)]
async fn run_in_runtime(
    seed: u64,
    path: Option<PathBuf>,
    trace: bool,
    summary: bool,
    pinned: bool,
    without_bug: bool,
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
        return run_one_pinned(scenario.seed, path, trace, summary, without_bug);
    }
    if let Ok(filter) = std::env::var("NACRE_SIM_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let bug = scenario
        .expect_bug
        .as_deref()
        .and_then(nacre_engine::bugs::Bug::from_name)
        .filter(|_| !without_bug);
    nacre_engine::bugs::inject(bug);
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
    if let Some(b) = bug {
        println!("injected bug {} (engine/src/bugs.rs)", b.name());
    }
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
fn run_one_pinned(
    seed: u64,
    path: Option<PathBuf>,
    trace: bool,
    summary: bool,
    without_bug: bool,
) -> i32 {
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
    if without_bug {
        cmd.arg("--without-bug");
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

/// Exit code the sweep records for a child it killed at the wall-clock limit.
const EXIT_HUNG: i32 = 4;

/// A running seed: its child process and the file its output goes to (a file, not a pipe, so a
/// child that prints a lot never blocks on a reader that waits for it to exit).
struct Running {
    seed: u64,
    file: PathBuf,
    child: Child,
    out: PathBuf,
    started: std::time::Instant,
}

fn spawn(seed: u64, file: &Path, without_bug: bool) -> std::io::Result<Running> {
    let exe = std::env::current_exe()?;
    let out = std::env::temp_dir().join(format!("nacre-sim-{}-{seed}.out", std::process::id()));
    let mut cmd = Command::new(exe);
    cmd.arg("--seed").arg(seed.to_string());
    if without_bug {
        cmd.arg("--without-bug");
    }
    if !file.as_os_str().is_empty() {
        cmd.arg("--scenario").arg(file);
    }
    let child = cmd
        .stdout(std::fs::File::create(&out)?)
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Running {
        seed,
        file: file.to_path_buf(),
        child,
        out,
        // The sweeper runs outside the simulation; it times its children with the real clock.
        #[allow(clippy::disallowed_methods)]
        started: std::time::Instant::now(),
    })
}

/// The child's result once it has exited, or after killing it at `limit`; `None` while it runs.
fn poll(r: &mut Running, limit: std::time::Duration) -> Option<Done> {
    let (code, line) = match r.child.try_wait() {
        Ok(None) if r.started.elapsed() < limit => return None,
        Ok(None) => {
            let _ = r.child.kill();
            let _ = r.child.wait();
            let line = format!(
                "HUNG: killed after {} s of wall-clock time",
                limit.as_secs()
            );
            (EXIT_HUNG, line)
        }
        Ok(Some(status)) => {
            let text = std::fs::read_to_string(&r.out).unwrap_or_default();
            let line = text
                .lines()
                .rev()
                .find(|l| l.starts_with("RESULT"))
                .unwrap_or("")
                .to_string();
            (status.code().unwrap_or(1), line)
        }
        Err(e) => (1, format!("wait failed: {e}")),
    };
    let _ = std::fs::remove_file(&r.out);
    Some(Done {
        seed: r.seed,
        file: r.file.display().to_string(),
        code,
        line,
    })
}

/// How `sweep` runs its seeds (the `sweep` subcommand's options).
#[derive(Debug, Clone, clap::Args)]
pub struct SweepOptions {
    /// First seed.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Number of seeds.
    #[arg(long, default_value_t = 100)]
    pub count: u64,
    /// Child processes at once.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Succeed only if some seed fails (negative tier).
    #[arg(long)]
    pub expect_fail: bool,
    /// Leave negative scenarios' injected bugs switched off (the control sweep).
    #[arg(long)]
    pub without_bug: bool,
    /// Kill a seed's process after this many wall-clock seconds and count it as hung.
    #[arg(long, default_value_t = 120)]
    pub child_timeout_s: u64,
    /// Write per-run result lines to this file.
    #[arg(long)]
    pub results: Option<PathBuf>,
}

/// Runs a seed range in child processes and returns the exit code. A child still running after
/// `child_timeout_s` wall-clock seconds is killed and counted as hung (a run is bounded in
/// simulated time, so only a bug in the simulator or a livelock gets there).
// The sweeper runs outside the simulation; it times itself with the real clock.
#[allow(clippy::disallowed_methods)]
pub fn sweep(paths: &[PathBuf], opts: &SweepOptions) -> i32 {
    let (from, count, jobs) = (opts.from, opts.count, opts.jobs);
    let mut files = scenario_files(paths);
    if files.is_empty() {
        files.push(PathBuf::new());
    }
    let mut queue: VecDeque<(u64, PathBuf)> = (from..from + count)
        .map(|s| (s, files[(s as usize) % files.len()].clone()))
        .collect();
    let mut running: Vec<Running> = Vec::new();
    let mut done: Vec<Done> = Vec::new();
    let limit = std::time::Duration::from_secs(opts.child_timeout_s);
    let started = std::time::Instant::now();
    while !queue.is_empty() || !running.is_empty() {
        while running.len() < jobs.max(1) {
            let Some((seed, file)) = queue.pop_front() else {
                break;
            };
            match spawn(seed, &file, opts.without_bug) {
                Ok(r) => running.push(r),
                Err(e) => done.push(Done {
                    seed,
                    file: file.display().to_string(),
                    code: 1,
                    line: format!("spawn failed: {e}"),
                }),
            }
        }
        let before = done.len();
        running.retain_mut(|r| match poll(r, limit) {
            Some(d) => {
                done.push(d);
                false
            }
            None => true,
        });
        if done.len() == before {
            std::thread::sleep(std::time::Duration::from_millis(5));
            continue;
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
    done.sort_by_key(|d| d.seed);
    summarize(
        &done,
        started.elapsed().as_secs_f64(),
        opts.expect_fail,
        opts.results.as_deref(),
    )
}

fn summarize(done: &[Done], secs: f64, expect_fail: bool, results: Option<&Path>) -> i32 {
    let mut by_file: std::collections::BTreeMap<&str, (u64, u64, u64, u64, u64)> =
        Default::default();
    for d in done {
        let e = by_file.entry(d.file.as_str()).or_default();
        e.0 += 1;
        match d.code {
            0 => {}
            2 => e.1 += 1,
            3 => e.2 += 1,
            EXIT_HUNG => e.4 += 1,
            _ => e.3 += 1,
        }
    }
    println!(
        "{:<55} {:>6} {:>7} {:>8} {:>6} {:>5}",
        "scenario", "seeds", "safety", "liveness", "crash", "hung"
    );
    for (f, (n, s, l, c, h)) in &by_file {
        let name = if f.is_empty() { "(default)" } else { f };
        println!("{name:<55} {n:>6} {s:>7} {l:>8} {c:>6} {h:>5}");
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
        println!(
            "negative tier: {} of {} seeds caught the injected bug (a replay injects it again)",
            failed.len(),
            done.len()
        );
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
