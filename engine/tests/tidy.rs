//! Tidy: layout rules that a reviewer should not have to check by hand (STYLE 15).
//!
//! - The engine's dependency tree holds no HTTP, gRPC or filesystem crate (STYLE 3).
//! - Every Rust source file opens with a `//!` module header (STYLE 9).
//! - No `dbg!`, `todo!` or `unimplemented!` is left in the code.
//! - Protocol code in the engine iterates nothing with an unordered `HashMap`/`HashSet`
//!   (STYLE 2: iteration order is an input).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name()
                .is_some_and(|n| n == "target" || n == "snapshots")
            {
                continue;
            }
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for krate in [
        "engine", "server", "sim", "checkers", "fuzz", "tests", "bench",
    ] {
        rust_files(&root().join(krate).join("src"), &mut files);
        rust_files(&root().join(krate).join("tests"), &mut files);
    }
    files.sort();
    files
}

#[test]
fn engine_dependency_tree_has_no_io_stack() {
    let out = Command::new(env!("CARGO"))
        .current_dir(root())
        .args([
            "tree",
            "-p",
            "nacre-engine",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"openraft"),
        "the tree was read: {crates:?}"
    );
    for banned in [
        "hyper",
        "axum",
        "tonic",
        "h2",
        "tower",
        "reqwest",
        "tokio-stream",
        "tempfile",
        "walkdir",
        "notify",
    ] {
        assert!(!crates.contains(&banned), "the engine depends on {banned}");
    }
    let features = Command::new(env!("CARGO"))
        .current_dir(root())
        .args([
            "tree",
            "-p",
            "nacre-engine",
            "-e",
            "features",
            "-i",
            "tokio",
            "--offline",
        ])
        .output()
        .expect("cargo tree runs");
    let text = String::from_utf8_lossy(&features.stdout);
    for banned in [
        "tokio feature \"fs\"",
        "tokio feature \"net\"",
        "tokio feature \"process\"",
    ] {
        assert!(!text.contains(banned), "the engine enables {banned}");
    }
}

#[test]
fn every_source_file_has_a_module_header() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|p| {
            !std::fs::read_to_string(p)
                .unwrap_or_default()
                .trim_start()
                .starts_with("//!")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! header: {missing:#?}"
    );
}

#[test]
fn no_debugging_leftovers() {
    let banned = [
        concat!("db", "g!("),
        concat!("to", "do!("),
        concat!("unimpl", "emented!("),
    ];
    for p in sources() {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        for b in banned {
            assert!(!text.contains(b), "{} contains {b}", p.display());
        }
    }
}

#[test]
fn engine_protocol_code_uses_ordered_maps() {
    let mut files = Vec::new();
    rust_files(&root().join("engine/src"), &mut files);
    assert!(!files.is_empty());
    for p in files {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        for b in ["HashMap", "HashSet"] {
            assert!(
                !text.contains(b),
                "{} uses {b}; use BTreeMap/BTreeSet",
                p.display()
            );
        }
    }
}
