#![allow(clippy::unwrap_used)]
//! Model-based test: random stateless pipelines followed by a grouped aggregation, run through
//! the `TestDriver` and compared with a plain-Rust reference over `Vec<(String, u64, i64)>`.
//! Timestamps are out of order; an aggregate's timestamp is the largest of its records' (Kafka
//! Streams' rule: the larger of the record's and the previous aggregate's).

use std::collections::BTreeMap;

use proptest::prelude::*;
use streams_core::{DriverConfig, I64Serde, OptionSerde, StringSerde, TestDriver, U64Serde};
use streams_dsl::prelude::*;
use streams_dsl::KeyValueStoreView;

/// A key's aggregate and its timestamp.
type Table = BTreeMap<String, (u64, i64)>;

/// One stateless operator, applicable both to a `KStream<String, u64>` and to the reference.
#[derive(Debug, Clone)]
enum Op {
    /// `filter(|_, v| v % m != 0)`
    FilterNotMultiple(u64),
    /// `map_values(|v| v + c)`
    AddValue(u64),
    /// `flat_map_values(|v| repeat(v).take(n))`
    Repeat(usize),
    /// `select_key(|k, _| k + suffix)`
    KeySuffix(String),
    /// `select_key(|_, v| "v{v % m}")`
    KeyFromValue(u64),
    /// `filter_not(|_, v| v >= t)`
    DropAtLeast(u64),
}

impl Op {
    fn apply_dsl(&self, s: &KStream<String, u64>) -> KStream<String, u64> {
        match self.clone() {
            Op::FilterNotMultiple(m) => s.filter(move |_, v| v % m != 0),
            Op::AddValue(c) => s.map_values(move |v| v + c),
            Op::Repeat(n) => s.flat_map_values(move |v| std::iter::repeat_n(v, n)),
            Op::KeySuffix(suffix) => s.select_key(move |k, _| format!("{k}{suffix}")),
            Op::KeyFromValue(m) => s.select_key(move |_, v| format!("v{}", v % m)),
            Op::DropAtLeast(t) => s.filter_not(move |_, v| *v >= t),
        }
    }

    /// The operator over `(key, value, timestamp)`; every operator keeps the timestamp.
    fn apply_model(&self, records: Vec<(String, u64, i64)>) -> Vec<(String, u64, i64)> {
        match self {
            Op::FilterNotMultiple(m) => {
                records.into_iter().filter(|(_, v, _)| v % m != 0).collect()
            }
            Op::AddValue(c) => records
                .into_iter()
                .map(|(k, v, ts)| (k, v + c, ts))
                .collect(),
            Op::Repeat(n) => records
                .into_iter()
                .flat_map(|r| std::iter::repeat_n(r, *n))
                .collect(),
            Op::KeySuffix(suffix) => records
                .into_iter()
                .map(|(k, v, ts)| (format!("{k}{suffix}"), v, ts))
                .collect(),
            Op::KeyFromValue(m) => records
                .into_iter()
                .map(|(_, v, ts)| (format!("v{}", v % m), v, ts))
                .collect(),
            Op::DropAtLeast(t) => records.into_iter().filter(|(_, v, _)| v < t).collect(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Agg {
    Count,
    Sum,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        (2u64..5).prop_map(Op::FilterNotMultiple),
        (0u64..20).prop_map(Op::AddValue),
        (0usize..3).prop_map(Op::Repeat),
        prop::sample::select(vec!["x", "-y", ""]).prop_map(|s| Op::KeySuffix(s.to_string())),
        (1u64..4).prop_map(Op::KeyFromValue),
        (0u64..150).prop_map(Op::DropAtLeast),
    ]
}

fn input_strategy() -> impl Strategy<Value = Vec<(String, u64, i64)>> {
    prop::collection::vec(
        (
            prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(str::to_string),
            0u64..100,
            0i64..1_000,
        ),
        0..40,
    )
}

/// Final aggregate per key and the largest timestamp of its records, computed in plain Rust.
fn reference(input: &[(String, u64, i64)], ops: &[Op], agg: Agg) -> Table {
    let mut records = input.to_vec();
    for op in ops {
        records = op.apply_model(records);
    }
    let mut table = BTreeMap::new();
    for (k, v, ts) in records {
        let entry = table.entry(k).or_insert((0u64, i64::MIN));
        entry.0 += match agg {
            Agg::Count => 1,
            Agg::Sum => v,
        };
        entry.1 = entry.1.max(ts);
    }
    table
}

/// Runs the pipeline through the driver; returns the store contents and the last value per key
/// emitted on the output topic, each with its timestamp.
fn run_dsl(
    input: &[(String, u64, i64)],
    ops: &[Op],
    agg: Agg,
    caching: bool,
    commit_every_record: bool,
) -> (Table, Table) {
    let b = StreamsBuilder::new();
    let mut stream = b.stream::<String, u64>("in", Consumed::default());
    for op in ops {
        stream = op.apply_dsl(&stream);
    }
    let grouped = stream.group_by_key(Grouped::with(StringSerde, U64Serde));
    match agg {
        Agg::Count => grouped
            .count(Materialized::named("agg").with_caching(caching))
            .to_stream()
            .to("out", Produced::with(StringSerde, OptionSerde(I64Serde))),
        Agg::Sum => grouped
            .aggregate(
                || 0u64,
                |_, v, a| a + v,
                Materialized::named("agg")
                    .with_key_serde(StringSerde)
                    .with_value_serde(U64Serde)
                    .with_caching(caching),
            )
            .to_stream()
            .to("out", Produced::with(StringSerde, OptionSerde(U64Serde))),
    }
    let topo = b.build().unwrap();
    let config = DriverConfig::default().with_commit_every_record(commit_every_record);
    let mut d = TestDriver::with_config(&topo, config).unwrap();
    for (k, v, ts) in input {
        d.pipe_typed("in", &StringSerde, &U64Serde, k, v, *ts)
            .unwrap();
    }
    d.commit().unwrap();

    let store = d.kv_store("agg").unwrap();
    let entries: Vec<(String, u64, i64)> = match agg {
        Agg::Count => KeyValueStoreView::new(store, StringSerde, I64Serde)
            .all_with_timestamps()
            .unwrap()
            .into_iter()
            .map(|(k, v, ts)| (k, u64::try_from(v).unwrap(), ts))
            .collect(),
        Agg::Sum => KeyValueStoreView::new(store, StringSerde, U64Serde)
            .all_with_timestamps()
            .unwrap(),
    };
    let mut table = BTreeMap::new();
    for (key, v, ts) in entries {
        assert!(
            table.insert(key, (v, ts)).is_none(),
            "duplicate key in store"
        );
    }

    let mut last = BTreeMap::new();
    match agg {
        Agg::Count => {
            let out = d
                .read_output_typed("out", &StringSerde, &OptionSerde(I64Serde))
                .unwrap();
            for (k, v, ts) in out {
                let v = v.expect("an aggregation never emits a tombstone here");
                last.insert(k, (u64::try_from(v).unwrap(), ts));
            }
        }
        Agg::Sum => {
            let out = d
                .read_output_typed("out", &StringSerde, &OptionSerde(U64Serde))
                .unwrap();
            for (k, v, ts) in out {
                let v = v.expect("an aggregation never emits a tombstone here");
                last.insert(k, (v, ts));
            }
        }
    }
    (table, last)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn dsl_model_matches_reference(
        input in input_strategy(),
        ops in prop::collection::vec(op_strategy(), 0..5),
        sum in any::<bool>(),
        caching in any::<bool>(),
        commit_every_record in any::<bool>(),
    ) {
        let agg = if sum { Agg::Sum } else { Agg::Count };
        let expected = reference(&input, &ops, agg);
        let (table, last) = run_dsl(&input, &ops, agg, caching, commit_every_record);
        prop_assert_eq!(&table, &expected, "store contents");
        prop_assert_eq!(&last, &expected, "last emitted value per key");
    }
}

/// A fixed case exercising every operator at once (a regression anchor for the model).
#[test]
fn dsl_model_fixed_pipeline() {
    let input: Vec<(String, u64, i64)> = [("a", 1, 5), ("b", 2, 3), ("a", 3, 1), ("c", 9, 7)]
        .into_iter()
        .map(|(k, v, ts)| (k.to_string(), v, ts))
        .collect();
    let ops = vec![
        Op::AddValue(1),
        Op::FilterNotMultiple(5),
        Op::Repeat(2),
        Op::KeySuffix("x".into()),
        Op::DropAtLeast(10),
        Op::KeyFromValue(2),
    ];
    for agg in [Agg::Count, Agg::Sum] {
        let expected = reference(&input, &ops, agg);
        for caching in [false, true] {
            for commit in [false, true] {
                let (table, last) = run_dsl(&input, &ops, agg, caching, commit);
                assert_eq!(table, expected, "{agg:?} caching={caching} commit={commit}");
                assert_eq!(last, expected, "{agg:?} caching={caching} commit={commit}");
            }
        }
    }
    // values 2, 4, 10(dropped: multiple of 5)... after +1: 2,3,4,10 -> 10 % 5 == 0 dropped;
    // each kept twice, keys by parity: v0 = {2,4,2,4}, v1 = {3,3}.
    let expected = reference(&input, &ops, Agg::Sum);
    // v0's records came at 5 and 1, v1's at 3.
    assert_eq!(expected.get("v0"), Some(&(12, 5)));
    assert_eq!(expected.get("v1"), Some(&(6, 3)));
}
