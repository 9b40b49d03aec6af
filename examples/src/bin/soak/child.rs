//! One run of the soaked application: counts, sums and a stream–table join of the input.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use streams_core::{I64Serde, OptionSerde, Streams, StreamsState, StringSerde, Topology};
use streams_dsl::prelude::*;

use super::{
    config, open_writer, Args, Error, Mode, COUNTS, INPUT, JOINED, RUN_LIMIT, SUMS, WEIGHTS,
};

/// The file each run appends its restore to (`records,milliseconds`).
const RESTORES: &str = "soak-restores.csv";
/// The file the last run writes the final stores to (`key,count,sum`).
pub(super) const STORES: &str = "soak-stores.csv";

pub(super) fn topology() -> Result<Topology, Error> {
    let b = StreamsBuilder::new();
    let input = b.stream::<String, i64>(INPUT, Consumed::with(StringSerde, I64Serde));
    let weights = b.table::<String, i64>(
        WEIGHTS,
        Consumed::with(StringSerde, I64Serde),
        Materialized::named("weights"),
    );
    let grouped = input.group_by_key(Grouped::with(StringSerde, I64Serde));
    grouped
        .count(Materialized::named("counts"))
        .to_stream()
        .to(COUNTS, Produced::with(StringSerde, OptionSerde(I64Serde)));
    input
        .group_by_key(Grouped::with(StringSerde, I64Serde))
        .reduce(|a, b| a.saturating_add(b), Materialized::named("sums"))
        .to_stream()
        .to(SUMS, Produced::with(StringSerde, OptionSerde(I64Serde)));
    input
        .join(&weights, |seq: &i64, weight: &i64| {
            format!("{seq}:{weight}")
        })
        .to(JOINED, Produced::with(StringSerde, StringSerde));
    Ok(b.build()?)
}

/// Runs the application: until killed (`run`), or to the end of the input, then writes the
/// final stores and closes (`finish`).
pub(super) fn run(args: &Args, mode: Mode) -> Result<bool, Error> {
    let state = args.state_dir.clone().ok_or("a run needs --state-dir")?;
    let log = Arc::new(open_writer(args, &state)?);
    let streams = Streams::new(topology()?, config(args, &state), log)?;
    streams.start()?;
    streams.wait_for_state(StreamsState::Running, RUN_LIMIT)?;
    let metrics = streams.metrics();
    let restored: u64 = metrics.tasks.values().map(|t| t.restored).sum();
    let longest = metrics
        .tasks
        .values()
        .map(|t| t.restore_time)
        .max()
        .unwrap_or_default();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join(RESTORES))?;
    writeln!(file, "{restored},{}", longest.as_millis())?;
    drop(file);
    if mode == Mode::Run {
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    streams.wait_until_caught_up(RUN_LIMIT)?;
    let counts = streams.key_value_store("counts", Arc::new(StringSerde), Arc::new(I64Serde))?;
    let sums = streams.key_value_store("sums", Arc::new(StringSerde), Arc::new(I64Serde))?;
    let sums: std::collections::BTreeMap<String, i64> = sums.all()?.into_iter().collect();
    let mut out = String::new();
    for (key, count) in counts.all()? {
        let sum = sums.get(&key).copied().unwrap_or(-1);
        out.push_str(&format!("{key},{count},{sum}\n"));
    }
    std::fs::write(state.join(STORES), out)?;
    streams.close()?;
    Ok(true)
}

/// The restores of every run: (changelog records, longest task's milliseconds).
pub(super) fn restores(state: &Path) -> Result<Vec<(u64, u64)>, Error> {
    let text = std::fs::read_to_string(state.join(RESTORES))?;
    let mut out = Vec::new();
    for line in text.lines() {
        // A run killed while it wrote its line leaves part of one.
        let parsed = line
            .split_once(',')
            .and_then(|(r, ms)| Some((r.parse().ok()?, ms.parse().ok()?)));
        out.extend(parsed);
    }
    Ok(out)
}
