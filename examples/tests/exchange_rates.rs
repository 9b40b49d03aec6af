#![allow(clippy::unwrap_used)]
//! `exchange-rates` as a process: feed updates, query over HTTP, SIGKILL it, restart it with
//! no input and get the same answers from the restored store; then stop it with SIGTERM.

mod common;

use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_exchange-rates");
const WAIT: Duration = Duration::from_secs(120);

#[test]
fn serves_rates_and_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let updates = dir.path().join("updates.csv");
    std::fs::write(
        &updates,
        "USD/GBP,0.71\nEUR/GBP,0.86\nJPY/GBP,0.0053\nnot a pair,1\nUSD/GBP,0.72\nJPY/GBP,\nCHF/GBP,zero\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let app = Running::start(
        BIN,
        &[
            "--state-dir",
            state,
            "--http",
            "127.0.0.1:0",
            "--updates",
            updates.to_str().unwrap(),
        ],
    );
    let addr = app.http_addr();
    let answers = [
        ("/rates/USD/GBP", (200, r#"{"pair":"USD/GBP","rate":0.72}"#)),
        ("/rates/EUR/GBP", (200, r#"{"pair":"EUR/GBP","rate":0.86}"#)),
        (
            "/rates/JPY/GBP",
            (404, r#"{"error":"no rate for JPY/GBP"}"#),
        ),
        (
            "/rates",
            (
                200,
                r#"[{"pair":"EUR/GBP","rate":0.86},{"pair":"USD/GBP","rate":0.72}]"#,
            ),
        ),
    ];
    for (path, want) in answers {
        wait_for_answer(addr, path, want, WAIT);
    }
    app.wait_for_stderr("updates:4: pair `not a pair` is not BASE/QUOTE", WAIT);
    app.wait_for_stderr("updates:7: rate `zero` is not valid", WAIT);
    assert_eq!(
        http_get(addr, "/health"),
        (200, r#"{"state":"RUNNING"}"#.into())
    );
    let (status, metrics) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("streams_task_records_processed_total{application_id=\"exchange-rates\"")
    );
    assert_eq!(
        http_get(addr, "/stores/rates-store/keys/EUR%2FGBP"),
        (200, r#"{"key":"EUR/GBP","value":0.86}"#.into())
    );
    assert_eq!(http_get(addr, "/stores/nope/all").0, 404);

    // SIGKILL, then a restart with no input: the answers come from the restored store.
    app.signal("KILL");
    drop(app);
    let app = Running::start(BIN, &["--state-dir", state, "--http", "127.0.0.1:0"]);
    let addr = app.http_addr();
    for (path, want) in answers {
        wait_for_answer(addr, path, want, WAIT);
    }

    // SIGTERM: a clean close.
    app.signal("TERM");
    let mut app = app;
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = app.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

/// The sum of a metric family's samples in Prometheus text.
fn metric_sum(metrics: &str, family: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// Waits for the process to exit and returns whether it succeeded.
fn wait_exit(app: &mut Running) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(s) = app.child.try_wait().unwrap() {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// HTTP is up before the start-up restore: `/readyz` answers 503 with the restore's progress
/// and `/livez` 200. A SIGTERM in the middle of the restore closes the application cleanly:
/// it exits 0 with checkpoints written where the restore got, so the next start replays only
/// the rest, and every rate is there.
#[test]
fn sigterm_during_restore_closes_cleanly() {
    const PAIRS: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..PAIRS {
        text.push_str(&format!("P{i}/GBP,1.{}\n", i % 1000 + 1));
    }
    let updates = write(dir.path(), "updates.csv", &text);
    let state = dir.path().join("state");
    let state_arg = state.to_str().unwrap();
    let args = ["--state-dir", state_arg, "--http", "127.0.0.1:0"];

    // Build the table, then close cleanly.
    let mut app = Running::start(BIN, &[&args[..], &["--updates", &updates]].concat());
    let addr = app.http_addr();
    let deadline = std::time::Instant::now() + WAIT;
    while metric_sum(
        &http_get(addr, "/metrics").1,
        "streams_task_records_processed_total",
    ) < PAIRS as f64
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the updates were not all processed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    app.signal("TERM");
    assert!(wait_exit(&mut app).success());
    drop(app);

    // Without checkpoints, the next start restores every store from its changelog.
    let app_dir = state.join("exchange-rates");
    let task_dirs: Vec<_> = std::fs::read_dir(&app_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join(".checkpoint").exists())
        .collect();
    assert_eq!(
        task_dirs.len(),
        4,
        "a checkpoint per task after a clean close"
    );
    for d in &task_dirs {
        std::fs::remove_file(d.join(".checkpoint")).unwrap();
    }

    let mut app = Running::start(BIN, &args);
    let addr = app.http_addr();
    let deadline = std::time::Instant::now() + WAIT;
    let (seen, restoring) = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no restore in progress was seen"
        );
        let (status, live) = http_get(addr, "/livez");
        assert_eq!(status, 200, "/livez during the restore: {live}");
        let (status, body) = http_get(addr, "/readyz");
        assert_ne!(status, 200, "ready before the restore was seen: {body}");
        assert_eq!(status, 503, "{body}");
        let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(ready["ready"], false);
        assert_eq!(ready["state"], "REBALANCING");
        let restored = ready["restored"].as_u64().unwrap();
        let total = ready["total"].as_u64().unwrap();
        assert!(restored <= total && total <= PAIRS, "{body}");
        if restored >= 10_000 && restored < total {
            let tasks: Vec<String> = ready["restoring"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    assert_eq!(r["store"], "rates-store");
                    r["task"].as_str().unwrap().to_string()
                })
                .collect();
            break (restored, tasks);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    app.signal("TERM");
    let status = wait_exit(&mut app);
    let stderr = app.stderr.lock().unwrap().join("\n");
    assert!(status.success(), "{status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for task in &restoring {
        assert!(
            app_dir.join(task).join(".checkpoint").exists(),
            "task {task} was restoring at SIGTERM and wrote no checkpoint"
        );
    }
    drop(app);

    // The next start replays what the stopped restore had not, and serves every rate.
    let app = Running::start(BIN, &args);
    let addr = app.http_addr();
    wait_for_answer(
        addr,
        "/readyz",
        (
            200,
            r#"{"ready":true,"restored":0,"restoring":[],"state":"RUNNING","total":0}"#,
        ),
        WAIT,
    );
    assert_eq!(http_get(addr, "/livez").0, 200);
    let restored = metric_sum(
        &http_get(addr, "/metrics").1,
        "streams_task_restored_records",
    );
    assert!(
        restored <= (PAIRS - seen) as f64,
        "restored {restored} records again; the stopped restore had done {seen} of {PAIRS}"
    );
    let (status, all) = http_get(addr, "/rates");
    assert_eq!(status, 200);
    let all: serde_json::Value = serde_json::from_str(&all).unwrap();
    assert_eq!(all.as_array().unwrap().len() as u64, PAIRS);
    assert_eq!(
        http_get(addr, "/rates/P4321/GBP"),
        (200, r#"{"pair":"P4321/GBP","rate":1.322}"#.into())
    );
}
