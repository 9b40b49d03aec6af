//! An HTTP query server for materialized stores (feature `http`): point, range and full
//! reads of key-value stores, and key × time-range reads of window stores, as JSON, plus
//! `/health` and a Prometheus `/metrics` endpoint.
//!
//! Routes (keys are URL path segments, parsed with the key type's `FromStr`):
//!
//! | route | answer |
//! |---|---|
//! | `GET /stores` | the stores served |
//! | `GET /stores/{store}/keys/{key}` | `{"key":…,"value":…}`, or 404 |
//! | `GET /stores/{store}/all` | `[{"key":…,"value":…},…]` in key order |
//! | `GET /stores/{store}/range?from=K&to=K` | the same, `from <= key <= to` |
//! | `GET /stores/{store}/windows/{key}?from=MS&to=MS` | `[{"start":…,"value":…},…]` |
//! | `GET /instances` | every instance of the application: `[{"host":"h:p","process_id":…,"local":…,"tasks":[…],"partitions":[…],"stores":[…]},…]` |
//! | `GET /stores/{store}/instances` | the instances holding a part of the store |
//! | `GET /stores/{store}/instances/{key}` | the instance holding a key: `{"key":…,"active_host":"h:p","partition":…,"local":…,"standby_hosts":[]}` |
//! | `GET /health` | 200 `{"state":"RUNNING"}`, else 503 with the state |
//! | `GET /livez` | 200 unless the application stopped after an error (503 with the error) |
//! | `GET /readyz` | 200 when this instance's tasks run; else 503 with the restores' progress |
//! | `GET /metrics` | OpenMetrics text (Prometheus scrapes it), see [`MetricsCollector`](crate::MetricsCollector) |
//!
//! Errors are JSON `{"error":"…"}`: 404 for an unknown store or key, 400 for a key or bound
//! that does not parse, 503 with `Retry-After` while the store's task is being restored or
//! moved, or while it is not known which instance holds it, 500 otherwise. Store reads block
//! on the owning stream thread, so they run on tokio's blocking pool.
//!
//! With several instances (on Kafka), the two key routes answer for every key from every
//! instance: a key another instance holds is forwarded there, once (see `route`). A full or
//! range read answers from this instance's tasks only, so it is 503 unless this instance
//! runs every task of the store.
//!
//! The routes answer from the moment [`Streams::new`] returned: bind the server before
//! starting the application, and the probes see the start-up restore (see `health`).

use std::collections::BTreeMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::runtime::{KeyValueQuery, Route, Shared, Streams, StreamsState, WindowQuery};
use crate::serdes::Serde;

mod health;
mod route;

pub use route::{FORWARDED_BY, SERVED_BY};

/// A store read that went wrong, as an HTTP answer.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    message: String,
    /// The instance that holds the key asked for, when another does.
    owner: Option<String>,
}

impl HttpError {
    /// 404 with a message.
    pub fn not_found(message: impl Into<String>) -> Self {
        HttpError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            owner: None,
        }
    }

    /// 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        HttpError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            owner: None,
        }
    }
}

impl From<Error> for HttpError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::StoreUnavailable { .. }
            | Error::MetadataUnavailable { .. }
            | Error::InvalidState { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Config { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        HttpError {
            status,
            message: e.report().to_string(),
            owner: None,
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = match &self.owner {
            Some(owner) => Json(json!({ "error": self.message, "owner": owner })),
            None => Json(json!({ "error": self.message })),
        };
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            (self.status, [(header::RETRY_AFTER, "1")], body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

/// Runs a blocking store read on tokio's blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, HttpError> + Send + 'static,
) -> std::result::Result<T, HttpError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HttpError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("the store read failed: {e}"),
            owner: None,
        })?
}

type Handler<A> = Arc<dyn Fn(A) -> std::result::Result<Value, HttpError> + Send + Sync>;

/// Where a query of a key (as given in the path) runs.
type Locate = Arc<dyn Fn(&str) -> std::result::Result<Route, HttpError> + Send + Sync>;

/// What the server can do with one store.
#[derive(Clone)]
struct Endpoint {
    kind: &'static str,
    locate: Locate,
    /// The instance holding a key, as JSON.
    owner: Handler<String>,
    get: Option<Handler<String>>,
    all: Option<Handler<()>>,
    range: Option<Handler<(String, String)>>,
    windows: Option<Handler<(String, i64, i64)>>,
}

fn parse_key<K: FromStr>(raw: &str) -> std::result::Result<K, HttpError> {
    raw.parse()
        .map_err(|_| HttpError::bad_request(format!("`{raw}` is not a valid key")))
}

fn to_json<T: Serialize>(v: T) -> std::result::Result<Value, HttpError> {
    serde_json::to_value(v).map_err(|e| HttpError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("cannot render the value as JSON: {e}"),
        owner: None,
    })
}

fn entries<K: Serialize, V: Serialize>(rows: Vec<(K, V)>) -> std::result::Result<Value, HttpError> {
    let rows: std::result::Result<Vec<Value>, HttpError> = rows
        .into_iter()
        .map(|(k, v)| Ok(json!({ "key": to_json(k)?, "value": to_json(v)? })))
        .collect();
    Ok(Value::Array(rows?))
}

/// Serves the stores of a running application over HTTP.
///
/// ```no_run
/// # async fn run(streams: &streams_core::Streams) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use streams_core::http::QueryServer;
/// use streams_core::{I64Serde, StringSerde};
///
/// let server = QueryServer::new(streams)
///     .key_value::<String, i64>("counts", Arc::new(StringSerde), Arc::new(I64Serde))?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// server.serve(listener, std::future::pending()).await?;
/// # Ok(()) }
/// ```
pub struct QueryServer {
    shared: Arc<Shared>,
    stores: BTreeMap<String, Endpoint>,
}

impl QueryServer {
    /// A server with only `/health` and `/metrics`; add stores with the builder methods.
    pub fn new(streams: &Streams) -> Self {
        QueryServer {
            shared: streams.shared.clone(),
            stores: BTreeMap::new(),
        }
    }

    /// Serves a key-value store; `keys` and `values` are the serdes it was materialized with.
    pub fn key_value<K, V>(
        mut self,
        store: &str,
        keys: Arc<dyn Serde<K>>,
        values: Arc<dyn Serde<V>>,
    ) -> Result<Self>
    where
        K: FromStr + Serialize + Send + 'static,
        V: Serialize + Send + 'static,
    {
        let query = Arc::new(KeyValueQuery::new(
            &self.shared,
            store,
            keys.clone(),
            values,
        )?);
        let (q1, q2, q3, q4) = (query.clone(), query.clone(), query.clone(), query);
        let owner = self.owner_of(store, keys);
        self.stores.insert(
            store.to_string(),
            Endpoint {
                kind: "key-value",
                locate: Arc::new(move |raw: &str| Ok(q4.route(&parse_key::<K>(raw)?)?)),
                owner,
                get: Some(Arc::new(move |raw: String| {
                    let key: K = parse_key(&raw)?;
                    match q1.get(&key)? {
                        Some(v) => Ok(json!({ "key": to_json(&key)?, "value": to_json(v)? })),
                        None => Err(HttpError::not_found(format!("no value for key `{raw}`"))),
                    }
                })),
                all: Some(Arc::new(move |()| entries(q2.all()?))),
                range: Some(Arc::new(move |(from, to): (String, String)| {
                    let (from, to): (K, K) = (parse_key(&from)?, parse_key(&to)?);
                    entries(q3.range(&from, &to)?)
                })),
                windows: None,
            },
        );
        Ok(self)
    }

    /// Serves a window store; `keys` and `values` are the serdes it was materialized with.
    pub fn window<K, V>(
        mut self,
        store: &str,
        keys: Arc<dyn Serde<K>>,
        values: Arc<dyn Serde<V>>,
    ) -> Result<Self>
    where
        K: FromStr + Serialize + Send + 'static,
        V: Serialize + Send + 'static,
    {
        let query = Arc::new(WindowQuery::new(&self.shared, store, keys.clone(), values)?);
        let q1 = query.clone();
        let owner = self.owner_of(store, keys);
        self.stores.insert(
            store.to_string(),
            Endpoint {
                kind: "window",
                locate: Arc::new(move |raw: &str| Ok(q1.route(&parse_key::<K>(raw)?)?)),
                owner,
                get: None,
                all: None,
                range: None,
                windows: Some(Arc::new(move |(raw, from, to): (String, i64, i64)| {
                    let key: K = parse_key(&raw)?;
                    let rows: std::result::Result<Vec<Value>, HttpError> = query
                        .fetch(&key, from, to)?
                        .into_iter()
                        .map(|(start, v)| Ok(json!({ "start": start, "value": to_json(v)? })))
                        .collect();
                    Ok(Value::Array(rows?))
                })),
            },
        );
        Ok(self)
    }

    /// The instance holding a key of `store`, as JSON.
    fn owner_of<K>(&self, store: &str, keys: Arc<dyn Serde<K>>) -> Handler<String>
    where
        K: FromStr + Serialize + Send + 'static,
    {
        let shared = self.shared.clone();
        let store = store.to_string();
        Arc::new(move |raw: String| {
            let key: K = parse_key(&raw)?;
            let m = shared.query_metadata_for_key(&store, &key, &*keys)?;
            Ok(route::key_metadata_json(to_json(&key)?, &m))
        })
    }

    /// The routes (stores, `/health`, `/livez`, `/readyz`, `/metrics`), to serve as they are
    /// or to merge into a service's own router (`Router::merge`); see the README's "Use it in
    /// your axum service".
    pub fn router(self) -> Router {
        let state = Arc::new(self);
        Router::new()
            .route("/health", get(health))
            .route("/livez", get(health::livez))
            .route("/readyz", get(health::readyz))
            .route("/metrics", get(metrics))
            .route("/stores", get(list))
            .route("/stores/{store}/keys/{key}", get(get_key))
            .route("/stores/{store}/all", get(all))
            .route("/stores/{store}/range", get(range))
            .route("/stores/{store}/windows/{key}", get(windows))
            .route("/instances", get(route::instances))
            .route("/stores/{store}/instances", get(route::store_instances))
            .route("/stores/{store}/instances/{key}", get(route::key_instance))
            .with_state(state)
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    fn endpoint(&self, store: &str) -> std::result::Result<Endpoint, HttpError> {
        self.stores
            .get(store)
            .cloned()
            .ok_or_else(|| HttpError::not_found(format!("no store `{store}` is served here")))
    }
}

/// `/health`, `/livez`, `/readyz` and `/metrics` for any application, to merge into a router
/// of its own.
pub fn health_and_metrics(streams: &Streams) -> Router {
    QueryServer::new(streams).router()
}

type Server = State<Arc<QueryServer>>;

async fn health(State(s): Server) -> Response {
    let state = *s.shared.state.lock();
    let body = Json(json!({ "state": state.to_string() }));
    match state {
        StreamsState::Running => (StatusCode::OK, body).into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, body).into_response(),
    }
}

async fn metrics(State(s): Server) -> Response {
    let text = crate::runtime::render_metrics(&s.shared.registry);
    let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, kind)], text).into_response()
}

async fn list(State(s): Server) -> Json<Value> {
    Json(Value::Array(
        s.stores
            .iter()
            .map(|(name, e)| json!({ "name": name, "kind": e.kind }))
            .collect(),
    ))
}

fn unsupported(store: &str, kind: &str) -> HttpError {
    HttpError::bad_request(format!("store `{store}` is a {kind} store; see /stores"))
}

async fn get_key(
    State(s): Server,
    Path((store, key)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> std::result::Result<Response, HttpError> {
    let e = s.endpoint(&store)?;
    let f = e.get.ok_or_else(|| unsupported(&store, e.kind))?;
    let raw = key.clone();
    Ok(s.answer_key(e.locate, raw, &uri, &headers, move || f(key))
        .await)
}

async fn all(
    State(s): Server,
    Path(store): Path<String>,
) -> std::result::Result<Json<Value>, HttpError> {
    let e = s.endpoint(&store)?;
    let f = e.all.ok_or_else(|| unsupported(&store, e.kind))?;
    blocking(move || f(())).await.map(Json)
}

async fn range(
    State(s): Server,
    Path(store): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> std::result::Result<Json<Value>, HttpError> {
    let e = s.endpoint(&store)?;
    let f = e.range.ok_or_else(|| unsupported(&store, e.kind))?;
    let (Some(from), Some(to)) = (q.get("from").cloned(), q.get("to").cloned()) else {
        return Err(HttpError::bad_request("range needs `from` and `to`"));
    };
    blocking(move || f((from, to))).await.map(Json)
}

async fn windows(
    State(s): Server,
    Path((store, key)): Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> std::result::Result<Response, HttpError> {
    let e = s.endpoint(&store)?;
    let f = e.windows.ok_or_else(|| unsupported(&store, e.kind))?;
    let bound = |name: &str, default: i64| -> std::result::Result<i64, HttpError> {
        match q.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|_| HttpError::bad_request(format!("`{name}={raw}` is not a time in ms"))),
        }
    };
    let (from, to) = (bound("from", 0)?, bound("to", i64::MAX)?);
    let raw = key.clone();
    Ok(
        s.answer_key(e.locate, raw, &uri, &headers, move || f((key, from, to)))
            .await,
    )
}
