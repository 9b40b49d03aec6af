#![allow(clippy::unwrap_used)]
//! Interactive queries of a running application: a key is found in whichever task holds it
//! when the topology does not partition the store's input itself (a table read from a topic
//! a producer partitioned its own way, a store of a processor of your own), and session and
//! global stores are queryable.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::open_log;
use streams_core::{
    Downstream, I64Serde, KvStoreRef, Processor, ProcessorContext, Rec, StoreSpec, Streams,
    StreamsConfig, StreamsState,
};
use streams_dsl::prelude::*;
use streams_dsl::SessionWindows;

const WAIT: Duration = Duration::from_secs(60);

fn config(dir: &std::path::Path) -> StreamsConfig {
    StreamsConfig::new("queries", dir)
        .with_threads(2)
        .with_commit_interval(Duration::from_millis(50))
}

/// `(key, value)` records put on partitions round-robin, not where murmur2 of the key would
/// put them: most keys land in a task other than the one their bytes partition to.
fn round_robin(log: &dyn Log, topic: &str, partitions: u32, rows: &[(String, String)]) {
    log.create_topic(topic, TopicConfig::new(partitions))
        .unwrap();
    for (i, (k, v)) in rows.iter().enumerate() {
        let p = i as u32 % partitions;
        log.append(
            &TopicPartition::new(topic, p),
            &[Record::new(k.as_str(), v.as_str(), 1 + i as i64)],
        )
        .unwrap();
    }
}

fn rows(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("key-{i}"), format!("value-{i}")))
        .collect()
}

#[test]
fn a_table_read_from_a_topic_partitioned_otherwise_answers_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let rows = rows(40);
    round_robin(&*log, "table-in", 4, &rows);
    let b = StreamsBuilder::new();
    b.table::<String, String>("table-in", Consumed::default(), Materialized::named("rows"));
    let streams = Streams::new(b.build().unwrap(), config(dir.path()), log.clone()).unwrap();
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    let store = streams
        .key_value_store("rows", Arc::new(StringSerde), Arc::new(StringSerde))
        .unwrap();
    for (k, v) in &rows {
        assert_eq!(
            store.get(k).unwrap().as_ref(),
            Some(v),
            "point query of {k}"
        );
    }
    assert_eq!(store.get(&"absent".to_string()).unwrap(), None);
    streams.close().unwrap();
}

/// Indexes each record under its value: the store's keys are not the records' keys.
struct ByValue {
    store: KvStoreRef,
    down: Downstream<String, String>,
}

impl Processor<String, String> for ByValue {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        rec: Rec<String, String>,
    ) -> streams_core::Result<()> {
        self.store
            .borrow_mut()
            .put(rec.value.as_bytes(), rec.key.as_bytes())?;
        self.down.forward(ctx, rec)
    }
}

#[test]
fn a_user_processor_store_answers_keys_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let rows = rows(40);
    log.create_topic("in", TopicConfig::new(4)).unwrap();
    for (i, (k, v)) in rows.iter().enumerate() {
        let p = streams_core::partition_for_key(k.as_bytes(), 4);
        log.append(
            &TopicPartition::new("in", p),
            &[Record::new(k.as_str(), v.as_str(), 1 + i as i64)],
        )
        .unwrap();
    }
    let b = StreamsBuilder::new();
    b.stream::<String, String>("in", Consumed::default())
        .process(vec![StoreSpec::key_value("by-value")], |inst, down| {
            Ok(ByValue {
                store: inst.kv_store("by-value")?,
                down,
            })
        })
        .to("out", Produced::with(StringSerde, StringSerde));
    let streams = Streams::new(b.build().unwrap(), config(dir.path()), log.clone()).unwrap();
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    let store = streams
        .key_value_store("by-value", Arc::new(StringSerde), Arc::new(StringSerde))
        .unwrap();
    for (k, v) in &rows {
        assert_eq!(
            store.get(v).unwrap().as_ref(),
            Some(k),
            "point query of {v}"
        );
    }
    streams.close().unwrap();
}

#[test]
fn session_and_global_stores_are_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    // Clicks per user at these times; sessions split by more than 10 ms of inactivity.
    let clicks: [(&str, &[i64]); 3] = [
        ("ann", &[1, 5, 12, 40, 45]),
        ("bob", &[2, 30]),
        ("cy", &[3, 4, 6, 8]),
    ];
    log.create_topic("clicks", TopicConfig::new(2)).unwrap();
    let mut expected: BTreeMap<String, Vec<(i64, i64, i64)>> = BTreeMap::new();
    // In time order, so none is late.
    let mut in_order: Vec<(i64, &str)> = clicks
        .iter()
        .flat_map(|(user, times)| times.iter().map(move |t| (*t, *user)))
        .collect();
    in_order.sort();
    for (t, user) in in_order {
        let p = streams_core::partition_for_key(user.as_bytes(), 2);
        log.append(
            &TopicPartition::new("clicks", p),
            &[Record::new(user, "", t)],
        )
        .unwrap();
    }
    for (user, times) in clicks {
        let mut sessions: Vec<(i64, i64, i64)> = Vec::new();
        for &t in times {
            match sessions.last_mut() {
                Some((_, end, n)) if t - *end <= 10 => {
                    *end = t;
                    *n += 1;
                }
                _ => sessions.push((t, t, 1)),
            }
        }
        expected.insert(user.to_string(), sessions);
    }
    round_robin(
        &*log,
        "countries",
        3,
        &[("ann".into(), "FR".into()), ("bob".into(), "NZ".into())],
    );

    let b = StreamsBuilder::new();
    b.global_table::<String, String>(
        "countries",
        Consumed::default(),
        Materialized::named("country"),
    );
    b.stream::<String, String>("clicks", Consumed::default())
        .group_by_key(Grouped::inferred())
        .windowed_by_session(SessionWindows::of_inactivity_gap_with_no_grace(
            Duration::from_millis(10),
        ))
        // Kept for a minute, so the early sessions are still there when the test asks.
        .count(Materialized::named("click-sessions").with_retention(Duration::from_secs(60)));
    let streams = Streams::new(b.build().unwrap(), config(dir.path()), log.clone()).unwrap();
    let countries = streams
        .global_store("country", Arc::new(StringSerde), Arc::new(StringSerde))
        .unwrap();
    assert!(
        countries.get(&"ann".to_string()).is_err(),
        "not readable before the application reads it"
    );
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    assert_eq!(streams.state(), StreamsState::Running);

    let sessions = streams
        .session_store("click-sessions", Arc::new(StringSerde), Arc::new(I64Serde))
        .unwrap();
    for (user, want) in &expected {
        assert_eq!(&sessions.fetch(user).unwrap(), want, "sessions of {user}");
    }
    assert_eq!(sessions.fetch(&"nobody".to_string()).unwrap(), vec![]);
    assert!(streams
        .session_store("country", Arc::new(StringSerde), Arc::new(I64Serde))
        .is_err());

    assert_eq!(
        countries.get(&"bob".to_string()).unwrap(),
        Some("NZ".to_string())
    );
    assert_eq!(countries.get(&"cy".to_string()).unwrap(), None);
    assert_eq!(
        countries.all().unwrap(),
        vec![
            ("ann".to_string(), "FR".to_string()),
            ("bob".to_string(), "NZ".to_string())
        ]
    );
    streams.close().unwrap();
    assert!(
        countries.get(&"ann".to_string()).is_err(),
        "not after close"
    );
}

/// Counts of `words` (4 partitions) and a global table, on the embedded log.
fn counting(dir: &std::path::Path, config: StreamsConfig) -> Streams {
    let log = open_log(dir);
    let rows = rows(20);
    log.create_topic("words", TopicConfig::new(4)).unwrap();
    for (i, (k, _)) in rows.iter().enumerate() {
        let p = streams_core::partition_for_key(k.as_bytes(), 4);
        log.append(
            &TopicPartition::new("words", p),
            &[Record::new(k.as_str(), "w", 1 + i as i64)],
        )
        .unwrap();
    }
    round_robin(&*log, "countries", 2, &[("ann".into(), "FR".into())]);
    let b = StreamsBuilder::new();
    b.global_table::<String, String>(
        "countries",
        Consumed::default(),
        Materialized::named("country"),
    );
    b.stream::<String, String>("words", Consumed::default())
        .group_by_key(Grouped::inferred())
        .count(Materialized::named("counts"));
    Streams::new(b.build().unwrap(), config, log).unwrap()
}

#[test]
fn metadata_on_the_embedded_log_names_this_instance_for_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let streams = counting(
        dir.path(),
        config(dir.path()).with_application_server("10.0.0.7:7070"),
    );
    assert!(
        matches!(
            streams.all_metadata(),
            Err(streams_core::Error::InvalidState { .. })
        ),
        "not before the start"
    );
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    let me = streams_core::HostInfo::parse("10.0.0.7:7070").unwrap();
    assert_eq!(streams.application_server(), Some(&me));

    let all = streams.all_metadata().unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    let only = &all[0];
    assert_eq!(only.host.as_ref(), Some(&me));
    assert!(only.local);
    assert_eq!(only.process_id, config(dir.path()).process_id().unwrap());
    let tasks: Vec<String> = only.tasks.iter().map(|t| t.to_string()).collect();
    assert_eq!(tasks, ["0_0", "0_1", "0_2", "0_3"]);
    let partitions: Vec<(String, u32)> = only
        .partitions
        .iter()
        .map(|tp| (tp.topic.clone(), tp.partition))
        .collect();
    assert_eq!(
        partitions,
        (0..4).map(|p| ("words".to_string(), p)).collect::<Vec<_>>()
    );
    assert_eq!(
        only.stores.iter().map(String::as_str).collect::<Vec<_>>(),
        ["country", "counts"]
    );
    assert_eq!(streams.all_metadata_for_store("counts").unwrap(), all);
    assert_eq!(streams.all_metadata_for_store("country").unwrap(), all);
    assert!(matches!(
        streams.all_metadata_for_store("nope"),
        Err(streams_core::Error::Config { .. })
    ));

    for (key, _) in rows(20) {
        let m = streams
            .query_metadata_for_key("counts", &key, &StringSerde)
            .unwrap();
        assert_eq!(m.active_host, me, "{key}");
        assert!(m.local && m.standby_hosts.is_empty());
        assert_eq!(
            m.partition,
            Some(streams_core::partition_for_key(key.as_bytes(), 4)),
            "{key}"
        );
    }
    let global = streams
        .query_metadata_for_key("country", &"ann".to_string(), &StringSerde)
        .unwrap();
    assert_eq!((global.active_host, global.partition), (me, None));
    let unknown = streams.query_metadata_for_key("nope", &"ann".to_string(), &StringSerde);
    assert!(matches!(unknown, Err(streams_core::Error::Config { .. })));
    streams.close().unwrap();
}

#[test]
fn without_an_application_server_no_key_can_be_pointed_at() {
    let dir = tempfile::tempdir().unwrap();
    let streams = counting(dir.path(), config(dir.path()));
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    let all = streams.all_metadata().unwrap();
    assert_eq!((all.len(), all[0].host.is_none()), (1, true), "{all:?}");
    match streams.query_metadata_for_key("counts", &"key-1".to_string(), &StringSerde) {
        Err(streams_core::Error::Config { key, reason }) => {
            assert_eq!(key, "application.server");
            assert!(reason.contains("is not set"), "{reason}")
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    streams.close().unwrap();
}

#[test]
fn a_bad_application_server_stops_the_application_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    log.create_topic("in", TopicConfig::new(1)).unwrap();
    let b = StreamsBuilder::new();
    b.stream::<String, String>("in", Consumed::default())
        .to("out", Produced::with(StringSerde, StringSerde));
    let config = config(dir.path()).with_application_server("localhost");
    match Streams::new(b.build().unwrap(), config, log) {
        Err(streams_core::Error::Config { key, reason }) => {
            assert_eq!(key, "application.server");
            assert!(reason.contains("`localhost` is not host:port"), "{reason}");
        }
        other => panic!("expected a config error, got {:?}", other.err()),
    }
    let props = streams_core::Properties::from_map([
        ("application.id", "app"),
        ("application.server", "10.0.0.7:port"),
    ]);
    let error = StreamsConfig::from_properties(&props)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("application.server")
            && error.contains("10.0.0.7:port")
            && error.contains("the map given"),
        "{error}"
    );
}

/// Serves store `counts` of `streams` on `listener` (on a runtime of its own, returned: the
/// server runs while it lives), then starts the application and waits until it caught up.
fn serve_counts(streams: &Streams, listener: std::net::TcpListener) -> tokio::runtime::Runtime {
    let server = streams_core::http::QueryServer::new(streams)
        .key_value::<String, i64>("counts", Arc::new(StringSerde), Arc::new(I64Serde))
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        server
            .serve(listener, std::future::pending())
            .await
            .unwrap();
    });
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    rt
}

/// One HTTP/1.1 GET: status, the `x-streams-served-by` header, body.
fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, Option<String>, String) {
    http_get_with(addr, path, &[])
}

/// [`http_get`] with extra header lines (`"Authorization: Bearer …"`).
fn http_get_with(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[&str],
) -> (u16, Option<String>, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let served_by = head
        .lines()
        .find_map(|l| l.strip_prefix("x-streams-served-by: "))
        .map(String::from);
    (head[9..12].parse().unwrap(), served_by, body.to_string())
}

#[test]
fn the_query_server_lists_the_instance_and_the_owner_of_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let streams = counting(
        dir.path(),
        config(dir.path()).with_application_server(addr.to_string()),
    );
    let _rt = serve_counts(&streams, listener);

    let (status, served_by, body) = http_get(addr, "/stores/counts/keys/key-3");
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"key":"key-3","value":1}"#)
    );
    assert_eq!(served_by, Some(addr.to_string()));
    let (status, served_by, _) = http_get(addr, "/stores/counts/keys/absent");
    assert_eq!((status, served_by), (404, Some(addr.to_string())));

    let (status, _, body) = http_get(addr, "/stores/counts/instances/key-3");
    assert_eq!(status, 200, "{body}");
    let owner: serde_json::Value = serde_json::from_str(&body).unwrap();
    let p = streams_core::partition_for_key(b"key-3", 4);
    assert_eq!(
        owner,
        serde_json::json!({"key": "key-3", "active_host": addr.to_string(), "partition": p,
            "local": true, "standby_hosts": []})
    );
    for path in ["/instances", "/stores/counts/instances"] {
        let (status, _, body) = http_get(addr, path);
        assert_eq!(status, 200, "{path}: {body}");
        let all: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(all.as_array().map(Vec::len), Some(1), "{path}: {body}");
        assert_eq!(all[0]["host"], addr.to_string().as_str(), "{path}");
        assert_eq!(
            all[0]["tasks"],
            serde_json::json!(["0_0", "0_1", "0_2", "0_3"])
        );
    }
    assert_eq!(http_get(addr, "/stores/nope/instances").0, 404);
    streams.close().unwrap();
    assert_eq!(http_get(addr, "/instances").0, 503, "not after close");
}

/// Counts of `keys` keys, key `key-{i:03}` seen `i % 3 + 1` times, over 4 partitions.
fn paged_counts(dir: &std::path::Path, keys: usize, config: StreamsConfig) -> Streams {
    let log = open_log(dir);
    log.create_topic("words", TopicConfig::new(4)).unwrap();
    let mut t = 0;
    for i in 0..keys {
        let key = format!("key-{i:03}");
        let p = streams_core::partition_for_key(key.as_bytes(), 4);
        for _ in 0..i % 3 + 1 {
            t += 1;
            log.append(
                &TopicPartition::new("words", p),
                &[Record::new(key.as_str(), "w", t)],
            )
            .unwrap();
        }
    }
    let b = StreamsBuilder::new();
    b.stream::<String, String>("words", Consumed::default())
        .group_by_key(Grouped::inferred())
        .count(Materialized::named("counts"));
    Streams::new(b.build().unwrap(), config, log).unwrap()
}

/// Follows `/…?limit=N&cursor=…` pages to the end: every entry, and the pages' sizes.
fn pages(
    addr: std::net::SocketAddr,
    path: &str,
    auth: &[&str],
) -> (Vec<(String, i64)>, Vec<usize>) {
    let (mut entries, mut sizes) = (Vec::new(), Vec::new());
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}cursor={c}"),
            None => path.to_string(),
        };
        let (status, _, body) = http_get_with(addr, &url, auth);
        assert_eq!(status, 200, "{url}: {body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        let got = page["entries"].as_array().unwrap();
        sizes.push(got.len());
        for e in got {
            entries.push((
                e["key"].as_str().unwrap().to_string(),
                e["value"].as_i64().unwrap(),
            ));
        }
        match (page["more"].as_bool().unwrap(), page["cursor"].as_str()) {
            (true, Some(c)) => cursor = Some(c.to_string()),
            (false, None) => return (entries, sizes),
            other => panic!("{url}: more and cursor disagree: {other:?} in {body}"),
        }
    }
    panic!("{path}: paging did not end");
}

#[test]
fn the_query_server_pages_full_and_range_reads_and_asks_for_its_token() {
    const KEYS: usize = 250;
    const TOKEN: &str = "s3cr3t-t0ken-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let streams = paged_counts(
        dir.path(),
        KEYS,
        config(dir.path()).with_http_bearer_token(TOKEN),
    );
    assert!(
        !format!("{:?}", config(dir.path()).with_http_bearer_token(TOKEN)).contains(TOKEN),
        "the token is printed"
    );
    let _rt = serve_counts(&streams, listener);

    // The token: asked for everywhere but the probes, compared whole.
    let auth = format!("Authorization: Bearer {TOKEN}");
    let auth = [auth.as_str()];
    for path in [
        "/stores",
        "/stores/counts/all",
        "/stores/counts/keys/key-001",
        "/metrics",
    ] {
        let (status, _, body) = http_get(addr, path);
        assert_eq!(status, 401, "{path} without a token: {body}");
        assert!(body.contains("Authorization: Bearer"), "{body}");
        let wrong = format!("Authorization: Bearer {TOKEN}x");
        assert_eq!(http_get_with(addr, path, &[&wrong]).0, 401, "{path}");
        assert_eq!(http_get_with(addr, path, &auth).0, 200, "{path}");
    }
    for probe in ["/livez", "/readyz", "/health"] {
        assert_eq!(http_get(addr, probe).0, 200, "{probe}");
    }

    // Every key, once, in order, with its count, whatever the page size.
    let reference: Vec<(String, i64)> = (0..KEYS)
        .map(|i| (format!("key-{i:03}"), (i % 3 + 1) as i64))
        .collect();
    for limit in [1, 7, 100, 1000] {
        let (all, sizes) = pages(addr, &format!("/stores/counts/all?limit={limit}"), &auth);
        assert_eq!(all, reference, "limit {limit}");
        assert!(
            sizes.iter().all(|n| *n <= limit),
            "limit {limit}: {sizes:?}"
        );
        assert_eq!(
            sizes.len(),
            KEYS.div_ceil(limit),
            "limit {limit}: {sizes:?}"
        );
    }
    // Without a limit, pages of 100.
    let (_, sizes) = pages(addr, "/stores/counts/all", &auth);
    assert_eq!(sizes, [100, 100, 50]);
    let (range, _) = pages(
        addr,
        "/stores/counts/range?from=key-040&to=key-099&limit=9",
        &auth,
    );
    assert_eq!(range, reference[40..100].to_vec());

    // The library's own paged read agrees.
    let query = streams
        .key_value_store("counts", Arc::new(StringSerde), Arc::new(I64Serde))
        .unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = query
            .all_page(
                after.as_ref(),
                streams_core::PageLimit::entries(33).unwrap(),
            )
            .unwrap();
        assert!(page.entries.len() <= 33);
        seen.extend(page.entries);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, reference);

    // Bad bounds and cursors are the caller's fault, and say which.
    for (path, says) in [
        ("/stores/counts/all?limit=0", "limit=0"),
        ("/stores/counts/all?limit=1001", "limit=1001"),
        ("/stores/counts/all?limit=ten", "limit=ten"),
        ("/stores/counts/all?cursor=xyz", "xyz"),
        ("/stores/counts/range?from=a", "`from` and `to`"),
    ] {
        let (status, _, body) = http_get_with(addr, path, &auth);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains(says), "{path}: {body}");
    }
    streams.close().unwrap();
}

#[test]
fn the_openapi_document_names_every_route_and_each_answers_as_it_says() {
    let doc: serde_json::Value = serde_json::from_str(streams_core::http::OPENAPI).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    // Every route the router has is in the document.
    let source = include_str!("../../streams-core/src/http.rs");
    let routed: Vec<&str> = source
        .split(".route(\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(routed.len() >= 10, "{routed:?}");
    for route in &routed {
        assert!(
            paths.contains_key(*route),
            "{route} is routed but not documented"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let streams = paged_counts(dir.path(), 10, config(dir.path()));
    let _rt = serve_counts(&streams, listener);
    // Every documented route is routed, and answers one of the statuses it documents.
    for (path, item) in paths {
        let url = path
            .replace("{store}", "counts")
            .replace("{key}", "key-001");
        let url = match path.as_str() {
            "/stores/{store}/range" => format!("{url}?from=key-000&to=key-005"),
            _ => url,
        };
        let (status, _, body) = http_get(addr, &url);
        assert!(
            routed.contains(&path.as_str()),
            "{path} is documented but not routed"
        );
        let documented = item["get"]["responses"].as_object().unwrap();
        assert!(
            documented.contains_key(&status.to_string()),
            "{url} answered {status}, which the document does not list: {body}"
        );
        if status == 200 && path != "/metrics" {
            serde_json::from_str::<serde_json::Value>(&body)
                .unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {body}"));
        }
    }
    streams.close().unwrap();
}
