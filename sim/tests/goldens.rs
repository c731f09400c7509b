//! Golden summaries (insta) of every smoke and fast scenario at its pinned seed.
//!
//! Each scenario runs once through the real simulator binary (built with `--cfg madsim` into
//! `target/sim`, as `cargo sim` does) and its full report — seed-derived plan, operation
//! counts, final state digests and trace hash — must match the reviewed snapshot. Regenerate
//! with `INSTA_UPDATE=always cargo test -p nacre-sim --test goldens` and explain the diff in
//! the PR.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the simulator exactly as the `cargo sim` alias does and returns its path.
fn sim_binary() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .current_dir(workspace())
        .env_remove("RUSTFLAGS")
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "nacre-sim",
            "--bin",
            "sim",
        ])
        .args([
            "--config",
            "build.rustflags=['--cfg','madsim']",
            "--config",
            "build.target-dir='target/sim'",
        ])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the simulator failed");
    workspace().join("target/sim/release/sim")
}

#[test]
fn scenario_goldens() {
    let bin = sim_binary();
    let mut checked = 0;
    for tier in ["smoke", "fast"] {
        let dir = workspace().join("scenarios").join(tier);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("tier folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for file in files {
            let rel = file
                .strip_prefix(workspace())
                .expect("inside the workspace")
                .to_path_buf();
            let out = Command::new(&bin)
                .current_dir(workspace())
                .args(["--pinned", "--summary", "--scenario"])
                .arg(&rel)
                .output()
                .expect("simulator runs");
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{} failed:\n{text}",
                rel.display()
            );
            let name = format!(
                "{tier}-{}",
                file.file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("scenario")
            );
            insta::assert_snapshot!(name, text);
            checked += 1;
        }
    }
    assert!(
        checked >= 10,
        "expected the scenario catalogue, checked {checked}"
    );
}
