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
//! | `GET /stores/{store}/all?limit=N&cursor=C` | a page: `{"entries":[{"key":…,"value":…},…],"more":…,"cursor":…}` in encoded-key order |
//! | `GET /stores/{store}/range?from=K&to=K&limit=N&cursor=C` | the same, `from <= key <= to` |
//! | `GET /stores/{store}/windows/{key}?from=MS&to=MS` | `[{"start":…,"value":…},…]` |
//! | `GET /instances` | every instance of the application: `[{"host":"h:p","process_id":…,"local":…,"tasks":[…],"partitions":[…],"stores":[…]},…]` |
//! | `GET /stores/{store}/instances` | the instances holding a part of the store |
//! | `GET /stores/{store}/instances/{key}` | the instance holding a key: `{"key":…,"active_host":"h:p","partition":…,"local":…,"standby_hosts":[]}` |
//! | `GET /health` | 200 `{"state":"RUNNING"}`, else 503 with the state |
//! | `GET /livez` | 200 unless the application stopped after an error (503 with the error) |
//! | `GET /readyz` | 200 when this instance's tasks run; else 503 with the restores' progress |
//! | `GET /metrics` | OpenMetrics text (Prometheus scrapes it), see [`MetricsCollector`](crate::MetricsCollector) |
//!
//! Errors are JSON `{"error":"…"}`: 404 for an unknown store or key (or a route the store's
//! kind has not, or the owner of a key when this instance set no `application.server`), 400
//! for a key, bound,
//! `limit` or `cursor` that does not parse, 401 without the bearer token when the server has
//! one (see `auth`), 503 with `Retry-After` while the store's task is being restored or
//! moved, or while it is not known which instance holds it, 500 otherwise. Store reads block
//! on the owning stream thread, so they run on tokio's blocking pool.
//!
//! Full and range reads are paged: `limit` entries (default 100, at most 1000) and about
//! 1 MiB of JSON per answer; while `more` is true, `cursor` asks for the next page. A page
//! holds a stream thread for one page of each of its tasks, never a whole partition (see
//! `page`).
//!
//! With several instances (on Kafka), every route answers for the whole store from every
//! instance: a key another instance holds is forwarded there, once (see `route`), and a page
//! merges this instance's page with the pages of the instances holding the other partitions.
//!
//! `GET /openapi.json` describes the routes as an OpenAPI 3.1 document.
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
use crate::runtime::page::Part;
use crate::runtime::{KeyValueQuery, Route, Shared, Streams, StreamsState, WindowQuery};
use crate::serdes::Serde;
use page::PageAsk;

mod auth;
mod health;
mod page;
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
    scan: Option<Scan>,
    windows: Option<Handler<(String, i64, i64)>>,
}

/// One page of the partitions asked for, read here; entries as `{"key","value"}`.
type ReadPage = Arc<dyn Fn(PageAsk) -> std::result::Result<Part<Value>, HttpError> + Send + Sync>;

/// Where each partition's task runs.
type Routes = Arc<dyn Fn() -> std::result::Result<Vec<(u32, Route)>, HttpError> + Send + Sync>;

/// The paged reads of a key-value store (see `page`).
#[derive(Clone)]
struct Scan {
    read: ReadPage,
    routes: Routes,
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

/// The paged reads of a key-value store read with `query`.
fn scan_of<K, V>(query: Arc<KeyValueQuery<K, V>>) -> Scan
where
    K: FromStr + Serialize + Send + 'static,
    V: Serialize + Send + 'static,
{
    let routes = query.clone();
    Scan {
        read: Arc::new(move |ask: PageAsk| {
            let range = match &ask.range {
                Some((from, to)) => Some((
                    query.encode_key(&parse_key::<K>(from)?)?,
                    query.encode_key(&parse_key::<K>(to)?)?,
                )),
                None => None,
            };
            let part = query.raw_page(&ask.partitions, range, ask.after.as_ref(), ask.limit)?;
            let entries = part
                .entries
                .into_iter()
                .map(|(raw, stored)| {
                    let (key, value) = query.decode_entry(&raw, &stored)?;
                    let entry = json!({ "key": to_json(&key)?, "value": to_json(value)? });
                    Ok((raw, entry))
                })
                .collect::<std::result::Result<Vec<_>, HttpError>>()?;
            Ok(Part {
                entries,
                more: part.more,
            })
        }),
        routes: Arc::new(move || {
            routes
                .partitions()
                .into_iter()
                .map(|p| Ok((p, routes.route_partition(p)?)))
                .collect()
        }),
    }
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
    /// The bearer token every request but the probes needs (see `auth`).
    token: Option<Arc<str>>,
}

impl QueryServer {
    /// A server with only `/health` and `/metrics`; add stores with the builder methods.
    /// It asks for the application's `http.bearer.token` when one is set.
    pub fn new(streams: &Streams) -> Self {
        let token = streams.shared.config.http_bearer_token.as_deref();
        QueryServer {
            shared: streams.shared.clone(),
            stores: BTreeMap::new(),
            token: token.map(Arc::from),
        }
    }

    /// Asks every request but the probes for `Authorization: Bearer <token>` (see the
    /// module docs), in place of the application's `http.bearer.token`. The error says what
    /// is wrong with the token, without showing it.
    pub fn with_bearer_token(mut self, token: &str) -> Result<Self> {
        crate::runtime::check_bearer_token(token)?;
        self.token = Some(Arc::from(token));
        Ok(self)
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
        let (q1, q4) = (query.clone(), query.clone());
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
                scan: Some(scan_of(query)),
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
                scan: None,
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
            let m = shared
                .query_metadata_for_key(&store, &key, &*keys)
                .map_err(|e| match &e {
                    // This instance's configuration, not the request, lacks it: there is no
                    // instance to name.
                    Error::Config { key, .. } if key == "application.server" => {
                        HttpError::not_found(e.report().to_string())
                    }
                    _ => HttpError::from(e),
                })?;
            Ok(route::key_metadata_json(to_json(&key)?, &m))
        })
    }

    /// The routes (stores, `/health`, `/livez`, `/readyz`, `/metrics`), to serve as they are
    /// or to merge into a service's own router (`Router::merge`); see the README's "Use it in
    /// your axum service".
    pub fn router(self) -> Router {
        let state = Arc::new(self);
        let router = Router::new()
            .route("/health", get(health))
            .route("/livez", get(health::livez))
            .route("/readyz", get(health::readyz))
            .route("/metrics", get(metrics))
            .route("/openapi.json", get(openapi))
            .route("/stores", get(list))
            .route("/stores/{store}/keys/{key}", get(get_key))
            .route("/stores/{store}/all", get(page::all))
            .route("/stores/{store}/range", get(page::range))
            .route("/stores/{store}/windows/{key}", get(windows))
            .route("/instances", get(route::instances))
            .route("/stores/{store}/instances", get(route::store_instances))
            .route("/stores/{store}/instances/{key}", get(route::key_instance));
        let router = match state.token.clone() {
            Some(token) => {
                router.layer(axum::middleware::from_fn_with_state(token, auth::authorize))
            }
            None => router,
        };
        router.with_state(state)
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

/// The OpenAPI document of these routes, written by hand; the tests check it against the
/// router (`runtime_queries`) and scripts/schemathesis.sh against a running server.
pub const OPENAPI: &str = include_str!("http/openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn list(State(s): Server) -> Json<Value> {
    Json(Value::Array(
        s.stores
            .iter()
            .map(|(name, e)| json!({ "name": name, "kind": e.kind }))
            .collect(),
    ))
}

/// 404: the route does not exist for a store of this kind (a window read of a key-value
/// store, say).
pub(super) fn unsupported(store: &str, kind: &str) -> HttpError {
    HttpError::not_found(format!(
        "store `{store}` is a {kind} store, which this route does not read; see /stores"
    ))
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
