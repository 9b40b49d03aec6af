//! `exchange-rates`: accumulate exchange rates in a compacted stream and answer queries.
//!
//! Rate updates `PAIR,RATE` (`USD/GBP,0.71`; `PAIR,` deletes the pair) are read from
//! `--updates FILE` or stdin and published to the compacted topic `rates` (after
//! `--topic-prefix`). The application materializes the topic into a `KTable` store and serves
//! it over HTTP:
//!
//! - `GET /rates/{BASE}/{QUOTE}` → `{"pair":"USD/GBP","rate":0.71}`, or 404 with a JSON error;
//! - `GET /rates` → every pair;
//! - `GET /health`, `GET /livez`, `GET /readyz`, `GET /metrics` (Prometheus), and the
//!   generic `/stores/…` routes.
//!
//! HTTP is served from before the start-up restore (`/readyz` shows its progress). It keeps
//! serving after the input ends, until SIGINT or SIGTERM, then closes cleanly, also when the
//! signal comes during the restore.
//! Restarted on the same state directory with no input, it serves the last values, restored
//! from the store's changelog.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use serde_json::{json, Value};
use streams_core::http::{blocking, HttpError, QueryServer};
use streams_core::{
    partition_for_key, ExceptionResponse, JsonSerde, KeyValueQuery, Log, Record, Shutdown, Streams,
    StringSerde, TopicConfig, TopicPartition,
};
use streams_dsl::prelude::*;
use streams_examples::{field, input, read_csv, CommonArgs};

/// Publish exchange-rate updates to a compacted topic, materialize them, serve them over HTTP.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// File of `PAIR,RATE` lines (`PAIR,` deletes the pair); `-` or none reads stdin.
    #[arg(long, value_name = "FILE")]
    updates: Option<PathBuf>,
    /// Address to serve HTTP on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Partitions of the `rates` topic when it is created (an existing topic keeps its own).
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    #[command(flatten)]
    common: CommonArgs,
}

const APP: &str = "exchange-rates";
const STORE: &str = "rates-store";

fn topology(topic: &str) -> streams_core::Result<streams_core::Topology> {
    let builder = StreamsBuilder::new();
    builder.table::<String, f64>(
        topic,
        Consumed::with(StringSerde, JsonSerde::<f64>::new()),
        Materialized::named(STORE),
    );
    builder.build()
}

/// `PAIR,RATE` or `PAIR,` → (pair, rate or deletion).
fn parse_update(fields: &[&str]) -> Result<(String, Option<f64>), String> {
    if fields.len() != 2 {
        return Err(format!(
            "expected PAIR,RATE (or PAIR, to delete), found {} fields",
            fields.len()
        ));
    }
    let pair = fields[0];
    let valid_pair = matches!(pair.split_once('/'), Some((b, q))
        if !b.is_empty() && !q.is_empty() && !q.contains('/')
            && pair.chars().all(|c| c.is_ascii_alphanumeric() || c == '/'));
    if !valid_pair {
        return Err(format!("pair `{pair}` is not BASE/QUOTE"));
    }
    if fields[1].is_empty() {
        return Ok((pair.to_string(), None));
    }
    let rate: f64 = field(fields, 1, "rate")?;
    if !rate.is_finite() || rate <= 0.0 {
        return Err(format!("rate `{}` is not a positive number", fields[1]));
    }
    Ok((pair.to_string(), Some(rate)))
}

/// Reads updates and appends each to `topic`, of `partitions` partitions, as it arrives.
fn publish(
    log: Arc<dyn Log>,
    topic: &str,
    updates: Option<PathBuf>,
    partitions: u32,
) -> std::io::Result<()> {
    let source = input(updates.as_deref())?;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    };
    let counts = read_csv(source, "updates", parse_update, |(pair, rate)| {
        let tp = TopicPartition::new(topic, partition_for_key(pair.as_bytes(), partitions));
        let record = Record {
            key: Some(pair.clone().into_bytes()),
            value: rate.map(|r| r.to_string().into_bytes()),
            timestamp: now(),
            headers: Vec::new(),
        };
        if let Err(e) = log.append(&tp, &[record]) {
            eprintln!("cannot publish the update of {pair}: {}", e.report());
        }
    })?;
    tracing::info!(
        accepted = counts.accepted,
        skipped = counts.skipped,
        "input ended"
    );
    Ok(())
}

type Rates = Arc<KeyValueQuery<String, f64>>;

async fn rate(
    State(rates): State<Rates>,
    Path((base, quote)): Path<(String, String)>,
) -> Result<Json<Value>, HttpError> {
    let pair = format!("{base}/{quote}");
    blocking(move || match rates.get(&pair)? {
        Some(rate) => Ok(Json(json!({ "pair": pair, "rate": rate }))),
        None => Err(HttpError::not_found(format!("no rate for {pair}"))),
    })
    .await
}

async fn all_rates(State(rates): State<Rates>) -> Result<Json<Value>, HttpError> {
    blocking(move || {
        let all: Vec<Value> = rates
            .all()?
            .into_iter()
            .map(|(pair, rate)| json!({ "pair": pair, "rate": rate }))
            .collect();
        Ok(Json(Value::Array(all)))
    })
    .await
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let topic = args.common.topic("rates");
    let topology = topology(&topic)?;
    if args.common.print_description(&topology) {
        return Ok(());
    }
    let config = args.common.config(APP)?;
    let log = args.common.open_log(&config)?;
    // Updates go to the partition of their key among the topic's partitions, which an
    // existing topic (an earlier run's) may have another number of.
    let partitions = match log.describe_topic(&topic) {
        Ok(existing) => existing.partitions,
        Err(streams_core::Error::UnknownTopic { .. }) => {
            log.create_topic(&topic, TopicConfig::compacted(args.partitions))?;
            args.partitions
        }
        Err(e) => return Err(e.into()),
    };
    let streams = Streams::new(topology, config, log.clone())?;
    streams.set_uncaught_exception_handler(|_| ExceptionResponse::ReplaceThread);
    streams.set_restore_listener(streams_examples::RestoreBars::default());
    let values = || Arc::new(JsonSerde::<f64>::new());
    let rates: Rates = Arc::new(streams.key_value_store(STORE, Arc::new(StringSerde), values())?);
    let server = QueryServer::new(&streams).key_value::<String, f64>(
        STORE,
        Arc::new(StringSerde),
        values(),
    )?;
    let app = Router::new()
        .route("/rates", get(all_rates))
        .route("/rates/{base}/{quote}", get(rate))
        .with_state(rates)
        .merge(server.router());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let served = runtime.block_on(async {
        // Before anything slow: a SIGTERM from now on closes the application cleanly, and
        // the probes answer during the start-up restore.
        let shutdown = Shutdown::on_signals()?;
        let listener = tokio::net::TcpListener::bind(args.http).await?;
        eprintln!("serving {} on http://{}", STORE, listener.local_addr()?);
        let http = tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.wait())
                .into_future(),
        );
        let publisher = {
            let (log, updates) = (log.clone(), args.updates.clone());
            tokio::task::spawn_blocking(move || publish(log, &topic, updates, partitions))
        };
        let ran = streams.run_until(shutdown.wait()).await;
        shutdown.trigger();
        http.await??;
        // Reading stdin cannot be interrupted; a publisher still waiting for input is left.
        if publisher.is_finished() {
            publisher.await??;
        }
        ran?;
        Ok::<(), Box<dyn std::error::Error>>(())
    });
    runtime.shutdown_background();
    served
}

fn main() -> ExitCode {
    streams_examples::main("exchange-rates", run)
}

#[cfg(test)]
mod tests {
    use super::parse_update;

    #[test]
    fn updates_parse_or_say_why_not() {
        assert_eq!(
            parse_update(&["USD/GBP", "0.71"]),
            Ok(("USD/GBP".into(), Some(0.71)))
        );
        assert_eq!(parse_update(&["USD/GBP", ""]), Ok(("USD/GBP".into(), None)));
        for bad in [
            &["USDGBP", "0.7"][..],
            &["USD/GBP", "abc"],
            &["USD/GBP", "-1"],
            &["USD/GBP"],
            &["USD/GBP", "1", "2"],
            &["/GBP", "1"],
        ] {
            assert!(parse_update(bad).is_err(), "{bad:?}");
        }
    }
}
