#![allow(clippy::unwrap_used)]
//! Type-level checks of the DSL: the pipelines in `tests/ui/` must not compile, with the
//! error expected of each, and their well-typed counterparts must.
//!
//! The cases are compiled with `rustc` against the `streams_dsl` library cargo has just built
//! for this test (found next to the test binary), rather than with trybuild: trybuild builds
//! every dependency again in a target directory of its own, RocksDB's C++ included.

use std::path::{Path, PathBuf};
use std::process::Command;

use streams_dsl::prelude::*;

/// The `deps` directory holding this test binary and the libraries it was linked with.
fn deps_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().to_path_buf()
}

/// The most recently built `libstreams_dsl-*.rlib` (the one this test was just linked with).
fn streams_dsl_rlib(deps: &Path) -> PathBuf {
    std::fs::read_dir(deps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libstreams_dsl-") && n.ends_with(".rlib"))
        })
        .max_by_key(|p| p.metadata().unwrap().modified().unwrap())
        .expect("no libstreams_dsl rlib next to the test binary")
}

/// The `rustc` of the toolchain that runs this test (next to `$CARGO`), else the one on PATH.
fn rustc() -> PathBuf {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .and_then(|cargo| Some(cargo.parent()?.join("rustc")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("rustc"))
}

/// Type-checks `tests/ui/<case>.rs`; returns whether it compiled, and rustc's stderr.
fn check(case: &str) -> (bool, String) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let deps = deps_dir();
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(rustc())
        .current_dir(manifest)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "bin",
            "--emit",
            "metadata",
        ])
        .arg("--crate-name")
        .arg(case)
        .arg("--out-dir")
        .arg(out.path())
        .arg("-L")
        .arg(format!("dependency={}", deps.display()))
        .arg("--extern")
        .arg(format!("streams_dsl={}", streams_dsl_rlib(&deps).display()))
        .arg(manifest.join("tests/ui").join(format!("{case}.rs")))
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Asserts that `case` fails to compile with every one of `expected` in its errors.
fn assert_compile_fail(case: &str, expected: &[&str]) {
    let (ok, stderr) = check(case);
    assert!(!ok, "{case} compiled, but must not");
    for e in expected {
        assert!(
            stderr.contains(e),
            "{case}: expected `{e}` in the compiler's errors, got:\n{stderr}"
        );
    }
}

/// The control case compiles with the same harness, so the failures below are the types'.
#[test]
fn dsl_types_well_typed_case_compiles() {
    let (ok, stderr) = check("well_typed");
    assert!(ok, "the well-typed case must compile:\n{stderr}");
}

#[test]
fn dsl_types_table_table_join_needs_equal_key_types() {
    assert_compile_fail(
        "table_join_key_mismatch",
        &[
            "error[E0308]: mismatched types",
            "KTable<String, _>",
            "KTable<u64, String>",
        ],
    );
}

#[test]
fn dsl_types_stream_table_join_needs_equal_key_types() {
    assert_compile_fail(
        "stream_table_join_key_mismatch",
        &[
            "error[E0308]: mismatched types",
            "KTable<u64, _>",
            "KTable<String, String>",
        ],
    );
}

#[test]
fn dsl_types_produced_must_match_stream_types() {
    assert_compile_fail(
        "produced_serde_mismatch",
        &[
            "error[E0308]: mismatched types",
            "Produced<String, String>",
            "Produced<String, u64>",
        ],
    );
}

/// The well-typed counterparts also build a topology at run time.
#[test]
fn dsl_types_well_typed_counterparts_build() {
    let b = StreamsBuilder::new();
    let left = b.table::<String, String>("left", Consumed::default(), Materialized::default());
    let right = b.table::<String, u64>("right", Consumed::default(), Materialized::default());
    let _joined = left.join(&right, |l: &String, r: &u64| format!("{l}{r}"));
    let stream = b.stream::<String, u64>("clicks", Consumed::default());
    let _enriched = stream.join(&left, |c: &u64, u: &String| format!("{c}{u}"));
    stream.to("out", Produced::<String, u64>::default());
    let topo = b.build().unwrap();
    assert!(topo.describe().contains("KTABLE-JOIN"));
}
