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
