//! The soak harness, CI-sized: an application killed with SIGKILL mid-run and restarted,
//! under both guarantees, with nothing lost and (exactly-once) nothing twice; and its check
//! finds a duplicated, a lost and a wrong result planted in the output.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use streams_core::{EmbeddedLog, Log, Record, StreamsConfig, TopicPartition};

fn soak(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_soak"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.success(), format!("{stdout}{stderr}"))
}

const SMALL: [&str; 8] = [
    "--records",
    "30000",
    "--keys",
    "50",
    "--partitions",
    "2",
    "--kills",
    "5",
];

#[test]
fn exactly_once_loses_nothing_and_duplicates_nothing_across_kills() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let mut args = SMALL.to_vec();
    args.extend([
        "--guarantee",
        "exactly-once",
        "--seed",
        "11",
        "--state-dir",
        state,
    ]);
    let (ok, out) = soak(&args);
    assert!(ok, "{out}");
    assert!(out.contains("5 killed"), "{out}");
    assert!(
        out.contains(
            "joined: 30000 results for 30000 inputs: lost 0, duplicated 0, out of order 0, wrong 0"
        ),
        "{out}"
    );
    assert!(out.contains("short 0, over 0"), "{out}");

    // The check is not a formality: results planted in the output are found.
    let log_dir = StreamsConfig::new("soak", dir.path()).embedded_log_dir();
    let log = EmbeddedLog::open(&log_dir).unwrap();
    let tp = |key: &str| {
        TopicPartition::new(
            "soak-joined",
            streams_core::partition_for_key(key.as_bytes(), 2),
        )
    };
    // k00000's first input again (its weight is 3), and one with another key's weight.
    log.append(&tp("k00000"), &[Record::new("k00000", "0:3", 1)])
        .unwrap();
    log.append(&tp("k00001"), &[Record::new("k00001", "0:3", 1)])
        .unwrap();
    drop(log);
    let mut again = args.clone();
    again.push("--check-only");
    let (ok, out) = soak(&again);
    assert!(!ok, "{out}");
    assert!(out.contains("duplicated 1"), "{out}");
    assert!(out.contains("wrong 1"), "{out}");
}

#[test]
fn at_least_once_loses_nothing_across_kills() {
    let mut args = SMALL.to_vec();
    args.extend(["--guarantee", "at-least-once", "--seed", "12"]);
    let (ok, out) = soak(&args);
    assert!(ok, "{out}");
    assert!(out.contains("5 killed"), "{out}");
    assert!(out.contains("lost 0"), "{out}");
    assert!(out.contains("out of order 0, wrong 0"), "{out}");
    assert!(out.contains("short 0"), "{out}");
}
