//! One process at a time: a second process opening the same log directory gets
//! `Error::Locked` naming the holder; once the holder closes the log, opening works again.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use streams_core::{EmbeddedLog, EmbeddedLogConfig, Error, Log, TopicConfig};
use tempfile::TempDir;

const DIR_VAR: &str = "STREAMS_CORE_LOG_LOCK_CHILD_DIR";
const CHILD: &str = "child_tries_to_open";

fn config() -> EmbeddedLogConfig {
    EmbeddedLogConfig::default().with_cleaner_interval(None)
}

/// Runs in the child process only (when the variable is set); in a normal test run it
/// returns at once. Prints the error from opening the directory; exits non-zero if the open
/// succeeded.
#[test]
fn child_tries_to_open() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    match EmbeddedLog::open_with(&dir, config()) {
        Ok(_) => {
            println!("CHILD-RESULT: opened");
            std::process::exit(3);
        }
        Err(e) => {
            let kind = if matches!(e, Error::Locked { .. }) {
                "locked"
            } else {
                "other"
            };
            println!("CHILD-RESULT: {kind}: {e}");
        }
    }
}

fn run_child(dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD, "--nocapture", "--test-threads", "1"])
        .env(DIR_VAR, dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = stdout
        .lines()
        // The harness may print `test ... ` on the same line first.
        .find_map(|l| l.find("CHILD-RESULT: ").map(|i| &l[i..]))
        .unwrap_or_else(|| {
            panic!(
                "child printed no result: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string();
    (out.status.success(), line)
}

#[test]
fn a_second_process_is_refused_while_the_log_is_open() {
    let dir = TempDir::new().unwrap();
    let log = EmbeddedLog::open_with(dir.path(), config()).unwrap();
    log.create_topic("t", TopicConfig::new(1)).unwrap();

    let (ok, line) = run_child(dir.path());
    assert!(ok, "the child's open succeeded: {line}");
    assert!(line.contains("CHILD-RESULT: locked: "), "{line}");
    assert!(line.contains("in use by another process"), "{line}");
    assert!(
        line.contains(&format!("pid {}", std::process::id())),
        "holder not named: {line}"
    );
    assert!(
        line.contains(&dir.path().display().to_string()),
        "directory not named: {line}"
    );
    // The refused open changed nothing for the holder.
    assert_eq!(log.list_topics().unwrap(), vec!["t".to_string()]);

    // Inside this process a second open of the same directory is refused as well.
    match EmbeddedLog::open_with(dir.path(), config()) {
        Err(Error::Locked { holder, .. }) => {
            assert!(holder.contains(&std::process::id().to_string()), "{holder}")
        }
        other => panic!("expected Error::Locked, got {other:?}"),
    }

    drop(log);
    let (ok, line) = run_child(dir.path());
    assert!(
        !ok,
        "the child's open should succeed once the log is closed: {line}"
    );
    assert_eq!(line, "CHILD-RESULT: opened");
    // And this process can open it again, with its topics.
    let log = EmbeddedLog::open_with(dir.path(), config()).unwrap();
    assert_eq!(log.list_topics().unwrap(), vec!["t".to_string()]);
}
