#![allow(clippy::unwrap_used)]
//! `KTable::group_by` with adder and subtractor: exact outputs, and a property test against
//! aggregates recomputed from the table's final rows.

use std::collections::BTreeMap;

use proptest::prelude::*;
use streams_core::{DriverConfig, I64Serde, OptionSerde, Record, StringSerde, TestDriver};
use streams_dsl::prelude::*;
use streams_dsl::KeyValueStoreView;

fn s(x: &str) -> String {
    x.to_string()
}

/// accounts: id → "region:amount"; per region: number of accounts and total amount.
fn topology(caching: bool) -> Topology {
    topology_with(caching, |m| m)
}

/// `store` adjusts the aggregate stores (the property test keeps them in memory: fast to
/// create).
fn topology_with(
    caching: bool,
    store: fn(Materialized<String, i64>) -> Materialized<String, i64>,
) -> Topology {
    let b = StreamsBuilder::new();
    let accounts = b.table::<String, String>(
        "accounts",
        Consumed::default(),
        Materialized::named("accounts").in_memory(),
    );
    let by_region = |_: &String, v: &String| {
        let (region, amount) = v.split_once(':').unwrap();
        (region.to_string(), amount.parse::<i64>().unwrap())
    };
    accounts
        .group_by(by_region, Grouped::with(StringSerde, I64Serde))
        .count(store(
            Materialized::named("count-per-region").with_caching(caching),
        ))
        .to_stream()
        .to("counts", Produced::with(StringSerde, OptionSerde(I64Serde)));
    accounts
        .group_by(by_region, Grouped::with(StringSerde, I64Serde))
        .reduce(
            |a, b| a + b,
            |a, b| a - b,
            store(Materialized::named("sum-per-region").with_caching(caching)),
        )
        .to_stream()
        .to("sums", Produced::with(StringSerde, OptionSerde(I64Serde)));
    accounts
        .group_by(by_region, Grouped::with(StringSerde, I64Serde))
        .aggregate(
            || 0i64,
            |_, v, agg| agg.max(v),
            // A max cannot be undone by subtraction; this one only counts departures.
            |_, _, agg| agg - 1_000,
            store(
                Materialized::named("odd-per-region")
                    .with_value_serde(I64Serde)
                    .with_caching(caching),
            ),
        );
    b.build().unwrap()
}

fn put(d: &mut TestDriver, id: &str, value: Option<&str>, ts: i64) {
    let record = Record {
        key: Some(id.as_bytes().to_vec()),
        value: value.map(|v| v.as_bytes().to_vec()),
        timestamp: ts,
        headers: Vec::new(),
    };
    d.pipe("accounts", record).unwrap();
}

#[test]
fn rows_moving_between_groups_are_subtracted_then_added() {
    let mut d = TestDriver::new(&topology(false)).unwrap();
    put(&mut d, "a1", Some("eu:10"), 1);
    put(&mut d, "a2", Some("eu:5"), 2);
    put(&mut d, "a1", Some("us:7"), 3); // moves from eu to us
    put(&mut d, "a2", Some("eu:8"), 4); // changes within eu: one update (KIP-904)
    put(&mut d, "a2", None, 5); // deleted
    let counts = d
        .read_output_typed("counts", &StringSerde, &OptionSerde(I64Serde))
        .unwrap();
    assert_eq!(
        counts,
        vec![
            (s("eu"), Some(1), 1),
            (s("eu"), Some(2), 2),
            (s("eu"), Some(1), 3),
            (s("us"), Some(1), 3),
            (s("eu"), Some(1), 4),
            (s("eu"), Some(0), 5),
        ]
    );
    let sums = d
        .read_output_typed("sums", &StringSerde, &OptionSerde(I64Serde))
        .unwrap();
    assert_eq!(
        sums,
        vec![
            (s("eu"), Some(10), 1),
            (s("eu"), Some(15), 2),
            (s("eu"), Some(5), 3),
            (s("us"), Some(7), 3),
            (s("eu"), Some(8), 4),
            (s("eu"), Some(0), 5),
        ]
    );
    let odd = KeyValueStoreView::new(d.kv_store("odd-per-region").unwrap(), StringSerde, I64Serde);
    let value = |k: &str| odd.get(&k.to_string()).unwrap().ok_or("absent");
    // eu: max(10, 5) = 10; a1 leaves: -990; a2 changes from 5 to 8 (subtracted, then
    // added, in one update): -1990, then 8; a2 deleted: -992.
    assert_eq!(value("eu").unwrap(), -992);
    assert_eq!(value("us").unwrap(), 7);
}

#[test]
fn regrouping_goes_through_a_repartition_topic() {
    let topo = topology(true);
    let text = topo.describe();
    assert!(text.contains("-repartition"), "{text}");
    assert!(text.contains("KTABLE-SELECT"), "{text}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// For random upserts and deletes, the final count and sum per region equal those
    /// recomputed from the table's final rows (with the cache on, flushed at the end).
    #[test]
    fn final_aggregates_match_the_final_rows(
        ops in prop::collection::vec((0u8..8, prop::option::of((0u8..3, -50i64..50))), 1..80),
        caching in any::<bool>(),
    ) {
        let config = DriverConfig::default().with_commit_every_record(false);
        let mut d = TestDriver::with_config(&topology_with(caching, |m| m.in_memory()), config).unwrap();
        let mut rows: BTreeMap<String, (String, i64)> = BTreeMap::new();
        for (i, (id, row)) in ops.iter().enumerate() {
            let id = format!("a{id}");
            let value = row.map(|(r, amount)| format!("r{r}:{amount}"));
            put(&mut d, &id, value.as_deref(), i as i64);
            match row {
                Some((r, amount)) => rows.insert(id, (format!("r{r}"), *amount)),
                None => rows.remove(&id),
            };
        }
        d.commit().unwrap();
        let mut want_counts: BTreeMap<String, i64> = BTreeMap::new();
        let mut want_sums: BTreeMap<String, i64> = BTreeMap::new();
        for (region, amount) in rows.values() {
            *want_counts.entry(region.clone()).or_default() += 1;
            *want_sums.entry(region.clone()).or_default() += amount;
        }
        let mut last = |topic: &str| {
            let mut out: BTreeMap<String, i64> = BTreeMap::new();
            for (k, v, _) in d.read_output_typed(topic, &StringSerde, &OptionSerde(I64Serde)).unwrap() {
                out.insert(k, v.unwrap());
            }
            out
        };
        let counts = last("counts");
        let sums = last("sums");
        // Regions emptied out stay, at 0; compare the non-empty ones and check the rest are 0.
        for (region, n) in &counts {
            prop_assert_eq!(*n, want_counts.get(region).copied().unwrap_or(0), "count of {}", region);
        }
        for (region, n) in &want_counts {
            prop_assert_eq!(counts.get(region), Some(n));
            prop_assert_eq!(sums.get(region), want_sums.get(region));
        }
    }
}
