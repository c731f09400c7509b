//! `cargo sim`: run one seed, or sweep a seed range in child processes.
//!
//! ```text
//! cargo sim --seed 7                                  one run of the default scenario
//! cargo sim --seed 7 --scenario scenarios/fast/leader-crash.toml [--trace] [--summary]
//! cargo sim sweep --from 0 --count 2000 --jobs 2 scenarios/smoke scenarios/fast
//! cargo sim sweep --expect-fail scenarios/negative/stale-read.toml --count 300
//! cargo sim sweep --without-bug scenarios/negative/stale-read.toml --count 20   (control)
//! ```
//! One seed is one process (simulation reference: in-process sweeps do not replay).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "sim", about = "Nacre deterministic simulator")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Seed of the run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Scenario file (default: the bundled mixed-faults scenario).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Print every event.
    #[arg(long)]
    trace: bool,
    /// Print the golden summary.
    #[arg(long)]
    summary: bool,
    /// Use the scenario's pinned seed instead of --seed.
    #[arg(long)]
    pinned: bool,
    /// Leave a negative scenario's injected bug switched off (the control run: it must pass).
    #[arg(long)]
    without_bug: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run many seeds in child processes.
    Sweep {
        /// Scenario files or folders; seeds are spread over them round-robin.
        paths: Vec<PathBuf>,
        #[command(flatten)]
        opts: nacre_sim::cli::SweepOptions,
    },
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Some(Command::Sweep { paths, opts }) => nacre_sim::cli::sweep(&paths, &opts),
        None => nacre_sim::cli::run_one(
            cli.seed,
            cli.scenario.as_deref(),
            cli.trace,
            cli.summary,
            cli.pinned,
            cli.without_bug,
        ),
    };
    std::process::exit(code);
}
