//! The optional bearer token (`http.bearer.token`, or [`QueryServer::with_bearer_token`]):
//! when set, every route but the probes (`/health`, `/livez`, `/readyz`) and
//! `/openapi.json` answers only a request with `Authorization: Bearer <token>`, else 401
//! with `WWW-Authenticate: Bearer`. The comparison takes the same time however much of a
//! guess is right. Instances forward queries to each other with the token they were given,
//! so every instance of an application needs the same one.
//!
//! [`QueryServer::with_bearer_token`]: super::QueryServer::with_bearer_token

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use subtle::ConstantTimeEq;

/// The routes that answer without a token: an orchestrator's probes carry none.
const OPEN: &[&str] = &["/health", "/livez", "/readyz", "/openapi.json"];

/// The token a request carries, if it carries one the bearer way.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let space = value.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| rest.trim_ascii_start())
}

pub(super) async fn authorize(
    State(token): State<Arc<str>>,
    request: Request,
    next: Next,
) -> Response {
    if OPEN.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let refused = match bearer(request.headers()) {
        Some(given) if bool::from(given.ct_eq(token.as_bytes())) => None,
        Some(_) => Some("the bearer token is not this server's"),
        None => Some("this server needs `Authorization: Bearer <token>` (http.bearer.token)"),
    };
    match refused {
        None => next.run(request).await,
        Some(why) => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"streams\"")],
            Json(json!({ "error": why })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        for (value, token) in [
            ("Bearer abc", Some(&b"abc"[..])),
            ("bearer  abc", Some(b"abc")),
            ("Basic abc", None),
            ("Bearer", None),
        ] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer(&h), token, "{value}");
        }
    }
}
