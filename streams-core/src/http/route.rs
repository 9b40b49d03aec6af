//! Queries across instances: a key query for a key another instance holds is forwarded to
//! that instance (one hop), and the instances' metadata is served as JSON.
//!
//! The rules:
//!
//! - A key route (`/stores/{store}/keys/{key}`, `/stores/{store}/windows/{key}`) answers
//!   here when this instance runs the key's task, whether or not the task is ready (a task
//!   still restoring answers 503 with `Retry-After`, as before).
//! - Otherwise it asks the group which instance runs the task and forwards the request there
//!   unchanged (path and query), marked with the `x-streams-forwarded-by` header, and passes
//!   the owner's answer on: status, body, `content-type`, `retry-after` and
//!   `x-streams-served-by` (the endpoint of the instance that answered).
//! - A forwarded request is answered here or not at all: when this instance does not run the
//!   key's task (the group moved it since the sender asked), the answer is 503 naming the
//!   owner this instance knows of. A request never travels two hops and never loops.
//! - When no instance is known to hold the key (the group rebalances, or the owner set no
//!   `application.server`), or the owner does not answer, the answer is 503 with
//!   `Retry-After`, and `owner` in the body when one is known. An instance that does not hold
//!   a key never answers 404 for it.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::{blocking, HttpError, Locate, Server};
use crate::runtime::{HostInfo, KeyQueryMetadata, Route, StreamsMetadata};

/// The header that marks a forwarded request, with the endpoint of the instance that
/// forwarded it.
pub const FORWARDED_BY: &str = "x-streams-forwarded-by";
/// The header naming the endpoint of the instance whose stores answered.
pub const SERVED_BY: &str = "x-streams-served-by";

/// How long a forward waits for a connection to the owner.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a forward waits for the owner's answer (its own store read waits up to 30 s).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(35);
/// The largest answer passed on.
const MAX_ANSWER_BYTES: usize = 64 << 20;

impl super::QueryServer {
    /// Answers a query of one key: here, or on the instance that holds it (see the module
    /// docs). `local` reads the stores here.
    pub(super) async fn answer_key(
        &self,
        locate: Locate,
        key: String,
        uri: &Uri,
        headers: &HeaderMap,
        local: impl FnOnce() -> Result<Value, HttpError> + Send + 'static,
    ) -> Response {
        let route = match blocking(move || locate(&key)).await {
            Ok(route) => route,
            Err(e) => return e.into_response(),
        };
        match route {
            Route::Local => {
                let mut response = match blocking(local).await {
                    Ok(value) => Json(value).into_response(),
                    Err(e) => e.into_response(),
                };
                if let Some(me) = self.me() {
                    response
                        .headers_mut()
                        .insert(HeaderName::from_static(SERVED_BY), me);
                }
                response
            }
            Route::Remote(owner) => match headers.get(FORWARDED_BY) {
                Some(from) => HttpError::unavailable(format!(
                    "this instance does not hold the key; {} forwarded the request here, and \
                     the group now says {owner} holds it",
                    from.to_str().unwrap_or("another instance")
                ))
                .with_owner(&owner)
                .into_response(),
                None => match self.forward(&owner, uri).await {
                    Ok(response) => response,
                    Err(e) => e.into_response(),
                },
            },
        }
    }

    /// This instance's endpoint, as a header value.
    fn me(&self) -> Option<HeaderValue> {
        let me = self.shared.endpoint.as_ref()?;
        HeaderValue::from_str(&me.to_string()).ok()
    }

    /// Sends the request to `owner` and returns its answer.
    async fn forward(&self, owner: &HostInfo, uri: &Uri) -> Result<Response, HttpError> {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let (parts, body) = self.send(owner, path).await?;
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = parts.status;
        let passed = [
            header::CONTENT_TYPE,
            header::RETRY_AFTER,
            HeaderName::from_static(SERVED_BY),
        ];
        for name in passed {
            if let Some(v) = parts.headers.get(&name) {
                response.headers_mut().insert(name, v.clone());
            }
        }
        Ok(response)
    }

    /// Sends `GET path` to `owner`, marked as forwarded (and with the token, when this
    /// server has one), and reads the whole answer.
    pub(super) async fn send(
        &self,
        owner: &HostInfo,
        path: &str,
    ) -> Result<(axum::http::response::Parts, axum::body::Bytes), HttpError> {
        let failed = |why: String| {
            HttpError::unavailable(format!(
                "the instance holding the data asked for, {owner}, did not answer: {why}"
            ))
            .with_owner(owner)
        };
        let connect = tokio::net::TcpStream::connect((owner.host(), owner.port()));
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| failed(format!("no connection within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| failed(e.to_string()))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(stream))
                .await
                .map_err(|e| failed(e.to_string()))?;
        let peer = owner.to_string();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(owner = %peer, error = %e, "a forwarded query's connection failed");
            }
        });
        let mut request = Request::get(path)
            .header(header::HOST, owner.to_string())
            .body(Body::empty())
            .map_err(|e| failed(e.to_string()))?;
        let from = self
            .me()
            .unwrap_or_else(|| HeaderValue::from_static("unknown"));
        request
            .headers_mut()
            .insert(HeaderName::from_static(FORWARDED_BY), from);
        if let Some(token) = &self.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| failed("the bearer token cannot be sent as a header".into()))?;
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        let answer = tokio::time::timeout(ANSWER_TIMEOUT, sender.send_request(request))
            .await
            .map_err(|_| failed(format!("no answer within {ANSWER_TIMEOUT:?}")))?
            .map_err(|e| failed(e.to_string()))?;
        let (parts, body) = answer.into_parts();
        let body = axum::body::to_bytes(Body::new(body), MAX_ANSWER_BYTES);
        let body = tokio::time::timeout(ANSWER_TIMEOUT, body)
            .await
            .map_err(|_| failed(format!("the answer did not end within {ANSWER_TIMEOUT:?}")))?
            .map_err(|e| failed(e.to_string()))?;
        Ok((parts, body))
    }
}

fn metadata_json(m: &StreamsMetadata) -> Value {
    json!({
        "host": m.host.as_ref().map(ToString::to_string),
        "process_id": m.process_id,
        "local": m.local,
        "tasks": m.tasks.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "partitions": m.partitions.iter()
            .map(|tp| json!({ "topic": tp.topic, "partition": tp.partition }))
            .collect::<Vec<_>>(),
        "stores": m.stores,
    })
}

pub(super) fn key_metadata_json(key: Value, m: &KeyQueryMetadata) -> Value {
    json!({
        "key": key,
        "active_host": m.active_host.to_string(),
        "standby_hosts": m.standby_hosts.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "partition": m.partition,
        "local": m.local,
    })
}

/// `GET /instances`: every instance of the application.
pub(super) async fn instances(State(s): Server) -> Result<Json<Value>, HttpError> {
    let shared = s.shared.clone();
    let all = blocking(move || Ok(shared.all_metadata()?)).await?;
    Ok(Json(Value::Array(all.iter().map(metadata_json).collect())))
}

/// `GET /stores/{store}/instances`: the instances holding a part of the store.
pub(super) async fn store_instances(
    State(s): Server,
    Path(store): Path<String>,
) -> Result<Json<Value>, HttpError> {
    s.endpoint(&store)?;
    let shared = s.shared.clone();
    let all = blocking(move || Ok(shared.all_metadata_for_store(&store)?)).await?;
    Ok(Json(Value::Array(all.iter().map(metadata_json).collect())))
}

/// `GET /stores/{store}/instances/{key}`: the instance holding a key.
pub(super) async fn key_instance(
    State(s): Server,
    Path((store, key)): Path<(String, String)>,
) -> Result<Json<Value>, HttpError> {
    let e = s.endpoint(&store)?;
    blocking(move || (e.owner)(key)).await.map(Json)
}

impl HttpError {
    /// 503 with `Retry-After`.
    pub(super) fn unavailable(message: impl Into<String>) -> Self {
        HttpError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            owner: None,
        }
    }

    /// Names the instance that holds the key in the body.
    pub(super) fn with_owner(mut self, owner: &HostInfo) -> Self {
        self.owner = Some(owner.to_string());
        self
    }
}
