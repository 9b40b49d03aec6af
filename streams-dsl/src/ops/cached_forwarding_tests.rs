//! The cached operators forward each change their store's cache writes through once, in
//! order: a task with four cached stores (a count, a sum, a windowed count and a table) over
//! one tiny record cache, so most writes evict, is checked against a plain-Rust model of each
//! table. For every key, each forwarded change starts where the previous one ended (an
//! evicted change lost, or forwarded twice, breaks that chain), its new value is one the
//! model's table took for the key after the previous change's (the per-key order), and the
//! last change ends at the model's final value.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use streams_core::{
    Change, DriverConfig, OptionSerde, Processor, ProcessorContext, Rec, StoreKind, StoreSpec,
    StringSerde, TestDriver, TopicName, Topology, TopologyBuilder, U64Serde,
};

use super::aggregate::{aggregate_fn, count_fn, Aggregate};
use super::table::Materialize;
use super::window_aggregate::{TimeWindowAggregate, WindowedCore};
use crate::windowed::Windowed;
use crate::windows::TimeWindows;

/// What one operator forwarded: key, change, timestamp, in the order they came.
type Seen<K, V> = Arc<Mutex<Vec<(K, Change<V>, i64)>>>;

/// Records every change it is given.
struct Capture<K, V>(Seen<K, V>);

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, Change<V>> for Capture<K, V> {
    fn process(
        &mut self,
        _ctx: &mut ProcessorContext<'_>,
        rec: Rec<K, Change<V>>,
    ) -> streams_core::Result<()> {
        self.0
            .lock()
            .expect("capture lock")
            .push((rec.key, rec.value, rec.timestamp));
        Ok(())
    }
}

const WINDOW_MS: i64 = 10;

struct Seens {
    counts: Seen<String, i64>,
    sums: Seen<String, i64>,
    windows: Seen<Windowed<String>, i64>,
    latest: Seen<String, u64>,
}

fn cached_kv(name: &str) -> StoreSpec {
    StoreSpec {
        kind: StoreKind::KeyValue { timestamped: true },
        ..StoreSpec::key_value(name)
    }
}

/// `in` → count, sum, 10 ms windowed count and the latest value (a table) per key, each over
/// its own cached store, each forwarding to a capture.
fn topology(seen: &Seens) -> streams_core::Result<Topology> {
    let mut b = TopologyBuilder::new();
    let src = b.add_source::<String, Option<u64>>(
        "src",
        vec![TopicName::User("in".into())],
        Arc::new(StringSerde),
        Arc::new(OptionSerde(U64Serde)),
    )?;
    for name in ["counts", "sums", "latest"] {
        b.add_store(cached_kv(name))?;
    }
    b.add_store(StoreSpec {
        kind: StoreKind::Window {
            retention_ms: 3_600_000,
            window_size_ms: WINDOW_MS,
            retain_duplicates: false,
            timestamped: true,
        },
        ..StoreSpec::key_value("windows")
    })?;
    let aggregations = [
        (
            "counts",
            count_fn::<String, Option<u64>>(),
            seen.counts.clone(),
        ),
        (
            "sums",
            aggregate_fn(
                || 0i64,
                |_: &String, v: Option<u64>, a: i64| a + v.map_or(0, |v| v as i64),
            ),
            seen.sums.clone(),
        ),
    ];
    for (store, f, out) in aggregations {
        let node = b.add_processor(store, &[src], move |inst, down| {
            Ok(Aggregate {
                name: inst.node_name().to_string(),
                store: inst.kv_store(store)?,
                store_name: store.into(),
                cached: true,
                key_serde: Arc::new(StringSerde),
                agg_serde: Arc::new(streams_core::I64Serde),
                f: f.clone(),
                down,
            })
        })?;
        b.connect_store(node.id, store)?;
        b.add_processor(
            format!("{store}-seen"),
            &[node],
            move |_, _: streams_core::Downstream<(), ()>| Ok(Capture(out.clone())),
        )?;
    }
    let latest = b.add_processor("latest", &[src], |inst, down| {
        Ok(Materialize {
            name: inst.node_name().to_string(),
            store: inst.kv_store("latest")?,
            store_name: "latest".into(),
            cached: true,
            key_serde: Arc::new(StringSerde),
            value_serde: Arc::new(U64Serde),
            down,
        })
    })?;
    b.connect_store(latest.id, "latest")?;
    let out = seen.latest.clone();
    b.add_processor(
        "latest-seen",
        &[latest],
        move |_, _: streams_core::Downstream<(), ()>| Ok(Capture(out.clone())),
    )?;
    let windows = TimeWindows::of_size_and_grace(
        Duration::from_millis(WINDOW_MS as u64),
        Duration::from_secs(3_000),
    );
    let windowed = b.add_processor("windows", &[src], move |inst, down| {
        Ok(TimeWindowAggregate {
            core: WindowedCore {
                name: inst.node_name().to_string(),
                store: inst.window_store("windows")?,
                cached: true,
                key_serde: Arc::new(StringSerde),
                agg_serde: Arc::new(streams_core::I64Serde),
                size_ms: WINDOW_MS,
                grace_ms: windows.grace_ms(),
                down,
                observed: super::ObservedTime::default(),
            },
            windows,
            f: count_fn::<String, Option<u64>>(),
        })
    })?;
    b.connect_store(windowed.id, "windows")?;
    let out = seen.windows.clone();
    b.add_processor(
        "windows-seen",
        &[windowed],
        move |_, _: streams_core::Downstream<(), ()>| Ok(Capture(out.clone())),
    )?;
    b.build()
}

/// Checks what an operator forwarded against `history`: for each key, the value of the
/// model's table after each write to it, in order. Returns how many changes were forwarded.
fn check<K: Ord + Clone + Debug, V: PartialEq + Clone + Debug>(
    what: &str,
    seen: &Seen<K, V>,
    history: &BTreeMap<K, Vec<Option<V>>>,
) -> Result<usize, TestCaseError> {
    let seen = seen.lock().expect("capture lock").clone();
    let mut per_key: BTreeMap<K, Vec<Change<V>>> = BTreeMap::new();
    for (k, change, _) in &seen {
        per_key.entry(k.clone()).or_default().push(change.clone());
    }
    for (k, values) in history {
        let changes = per_key.remove(k).unwrap_or_default();
        let mut previous: Option<V> = None;
        let mut next = 0;
        for change in changes {
            prop_assert_eq!(
                &change.old,
                &previous,
                "{} {:?}: a change starts where the previous one ended",
                what,
                k
            );
            let Some(at) = (next..values.len()).find(|&i| values[i] == change.new) else {
                return Err(TestCaseError::fail(format!(
                    "{what} {k:?}: {:?} is no value the table took after {previous:?} \
                     (history {values:?})",
                    change.new
                )));
            };
            next = at + 1;
            previous = change.new;
        }
        let last = values.last().cloned().flatten();
        prop_assert_eq!(previous, last, "{} {:?}: the final value", what, k);
    }
    prop_assert!(
        per_key.is_empty(),
        "{what}: changes of keys never written: {per_key:?}"
    );
    Ok(seen.len())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn evicted_changes_are_forwarded_once_and_in_order(
        records in proptest::collection::vec((0u8..12, proptest::option::weighted(0.8, 0u64..4), 0i64..6, 0u8..40), 1..300),
        cache_bytes in 0usize..3_000,
    ) {
        let seen = Seens {
            counts: Arc::default(),
            sums: Arc::default(),
            windows: Arc::default(),
            latest: Arc::default(),
        };
        let topology = topology(&seen).expect("topology");
        let config = DriverConfig::default()
            .with_commit_every_record(false)
            .with_cache_bytes(cache_bytes);
        let mut driver = TestDriver::with_config(&topology, config).expect("driver");

        let mut counts: BTreeMap<String, Vec<Option<i64>>> = BTreeMap::new();
        let mut sums: BTreeMap<String, Vec<Option<i64>>> = BTreeMap::new();
        let mut windows: BTreeMap<Windowed<String>, Vec<Option<i64>>> = BTreeMap::new();
        let mut latest: BTreeMap<String, Vec<Option<u64>>> = BTreeMap::new();
        let mut ts = 0i64;
        for (k, v, dt, commit) in &records {
            ts += dt;
            let key = format!("key-{k}");
            driver
                .pipe_typed("in", &StringSerde, &OptionSerde(U64Serde), &key, v, ts)
                .expect("pipe");
            let after = |h: &mut Vec<Option<i64>>, add: i64| {
                let n = h.last().cloned().flatten().unwrap_or(0) + add;
                h.push(Some(n));
            };
            after(counts.entry(key.clone()).or_default(), 1);
            after(sums.entry(key.clone()).or_default(), v.map_or(0, |v| v as i64));
            let start = ts - ts.rem_euclid(WINDOW_MS);
            let window = Windowed::new(key.clone(), crate::Window::new(start, start + WINDOW_MS));
            after(windows.entry(window).or_default(), 1);
            latest.entry(key).or_default().push(*v);
            // Now and then a commit, which flushes every store.
            if *commit == 0 {
                driver.commit().expect("commit");
            }
        }
        driver.commit().expect("final commit");

        let forwarded = check("count", &seen.counts, &counts)?
            + check("sum", &seen.sums, &sums)?
            + check("windowed count", &seen.windows, &windows)?
            + check("table", &seen.latest, &latest)?;
        prop_assert!(forwarded > 0);
        // The counts' timestamps: the largest record time of the key so far, which for
        // in-order input is the time of the key's record that made the count.
        let times: BTreeMap<(String, i64), i64> = {
            let mut t = 0i64;
            let mut n: BTreeMap<String, i64> = BTreeMap::new();
            records
                .iter()
                .map(|(k, _, dt, _)| {
                    t += dt;
                    let key = format!("key-{k}");
                    let c = n.entry(key.clone()).or_default();
                    *c += 1;
                    ((key, *c), t)
                })
                .collect()
        };
        for (k, change, ts) in seen.counts.lock().expect("capture lock").iter() {
            let n = change.new.expect("a count is never deleted");
            prop_assert_eq!(Some(ts), times.get(&(k.clone(), n)), "count {:?} = {}", k, n);
        }
    }
}

/// With a cache too small for one entry, every write evicts and forwards at once, across
/// the four stores, and nothing waits for the commit.
#[test]
fn with_no_cache_room_every_update_is_forwarded_at_once() {
    let seen = Seens {
        counts: Arc::default(),
        sums: Arc::default(),
        windows: Arc::default(),
        latest: Arc::default(),
    };
    let topology = topology(&seen).expect("topology");
    let config = DriverConfig::default()
        .with_commit_every_record(false)
        .with_cache_bytes(0);
    let mut driver = TestDriver::with_config(&topology, config).expect("driver");
    for i in 0..30u64 {
        let key = format!("key-{}", i % 3);
        driver
            .pipe_typed(
                "in",
                &StringSerde,
                &OptionSerde(U64Serde),
                &key,
                &Some(i),
                i as i64,
            )
            .expect("pipe");
    }
    let counts = seen.counts.lock().expect("capture lock").len();
    let latest = seen.latest.lock().expect("capture lock").len();
    assert_eq!((counts, latest), (30, 30));
}
