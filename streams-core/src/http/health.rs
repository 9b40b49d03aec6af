//! Probes for an orchestrator: `/livez` (the process works) and `/readyz` (this instance's
//! tasks run, so its stores answer), beside `/health`.
//!
//! `/livez` is 200 in every state but `ERROR` (503 with the error): a stopped application
//! needs a restart, a restoring or rebalancing one needs time. `/readyz` is 200 only in
//! `RUNNING`; otherwise 503 with the state and the restores under way in this process, so a
//! long start-up restore shows how far it got:
//!
//! ```text
//! {"ready":false,"state":"REBALANCING","restored":120000,"total":480000,
//!  "restoring":[{"task":"0_1","store":"rates-store","restored":120000,"total":480000}]}
//! ```

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::Server;
use crate::runtime::StreamsState;

pub(super) async fn livez(State(s): Server) -> Response {
    let state = *s.shared.state.lock();
    if state == StreamsState::Error {
        let error = s
            .shared
            .fatal
            .lock()
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let body = Json(json!({ "live": false, "state": state.to_string(), "error": error }));
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    let body = Json(json!({ "live": true, "state": state.to_string() }));
    (StatusCode::OK, body).into_response()
}

pub(super) async fn readyz(State(s): Server) -> Response {
    let state = *s.shared.state.lock();
    let progress = s.shared.restore_progress();
    let restored: u64 = progress.iter().map(|p| p.restored).sum();
    let total: u64 = progress.iter().map(|p| p.total).sum();
    let restoring: Vec<_> = progress
        .iter()
        .map(|p| {
            json!({
                "task": p.task.to_string(),
                "store": p.store,
                "restored": p.restored,
                "total": p.total,
            })
        })
        .collect();
    let ready = state == StreamsState::Running;
    let body = Json(json!({
        "ready": ready,
        "state": state.to_string(),
        "restored": restored,
        "total": total,
        "restoring": restoring,
    }));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}
