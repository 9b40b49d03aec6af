#![allow(clippy::unwrap_used)]
//! Test-driver tests of aggregations, table operators and joins, with exact expected outputs.

use streams_core::{
    DriverConfig, I64Serde, OptionSerde, Record, StringSerde, TestDriver, U64Serde,
};
use streams_dsl::prelude::*;
use streams_dsl::KeyValueStoreView;

fn s(x: &str) -> String {
    x.to_string()
}

fn pipe_str(d: &mut TestDriver, topic: &str, k: &str, v: &str, ts: i64) {
    d.pipe_typed(topic, &StringSerde, &StringSerde, &s(k), &s(v), ts)
        .unwrap();
}

#[test]
fn count_emits_an_update_per_record_without_caching() {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("words", Consumed::default())
        .group_by_key(Grouped::inferred())
        .count(Materialized::named("counts").with_caching(false))
        .to_stream()
        .to("out", Produced::with(StringSerde, OptionSerde(I64Serde)));
    let topo = b.build().unwrap();
    let mut d = TestDriver::new(&topo).unwrap();
    for (w, ts) in [("a", 1), ("b", 2), ("a", 3), ("a", 4)] {
        pipe_str(&mut d, "words", w, "", ts);
    }
    let got = d
        .read_output_typed("out", &StringSerde, &OptionSerde(I64Serde))
        .unwrap();
    assert_eq!(
        got,
        vec![
            (s("a"), Some(1), 1),
            (s("b"), Some(1), 2),
            (s("a"), Some(2), 3),
            (s("a"), Some(3), 4)
        ]
    );
    let store = KeyValueStoreView::new(d.kv_store("counts").unwrap(), StringSerde, I64Serde);
    assert_eq!(store.get_with_timestamp(&s("a")).unwrap(), Some((3, 4)));
}

#[test]
fn caching_merges_updates_between_commits() {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("words", Consumed::default())
        .group_by_key(Grouped::inferred())
        .count(Materialized::named("counts"))
        .to_stream()
        .to("out", Produced::with(StringSerde, OptionSerde(I64Serde)));
    let topo = b.build().unwrap();
    let config = DriverConfig::default().with_commit_every_record(false);
    let mut d = TestDriver::with_config(&topo, config).unwrap();
    for (w, ts) in [("a", 1), ("b", 2), ("a", 3), ("a", 4)] {
        pipe_str(&mut d, "words", w, "", ts);
    }
    assert!(
        d.read_output("out").is_empty(),
        "nothing is forwarded before the commit"
    );
    d.commit().unwrap();
    let mut got = d
        .read_output_typed("out", &StringSerde, &OptionSerde(I64Serde))
        .unwrap();
    got.sort();
    assert_eq!(got, vec![(s("a"), Some(3), 4), (s("b"), Some(1), 2)]);
}

#[test]
fn group_by_repartitions_and_aggregates_and_reduce() {
    let b = StreamsBuilder::new();
    let input = b.stream::<String, u64>("sales", Consumed::default());
    input
        .group_by(
            |k, _| k.split('/').next().unwrap_or_default().to_string(),
            Grouped::with(StringSerde, U64Serde),
        )
        .aggregate(
            || 0u64,
            |_, v, agg| agg + v,
            Materialized::with(StringSerde, U64Serde).with_caching(false),
        )
        .to_stream()
        .to("totals", Produced::with(StringSerde, OptionSerde(U64Serde)));
    input
        .group_by_key(Grouped::inferred())
        .reduce(
            |a, b| a.max(b),
            Materialized::named("max").with_caching(false),
        )
        .to_stream()
        .to(
            "max-out",
            Produced::with(StringSerde, OptionSerde(U64Serde)),
        );
    let topo = b.build().unwrap();
    assert_eq!(topo.subtopologies().len(), 2, "{}", topo.describe());
    let mut d = TestDriver::new(&topo).unwrap();
    for (k, v, ts) in [
        ("uk/london", 5u64, 1),
        ("fr/paris", 7, 2),
        ("uk/leeds", 1, 3),
        ("uk/london", 2, 4),
    ] {
        d.pipe_typed("sales", &StringSerde, &U64Serde, &s(k), &v, ts)
            .unwrap();
    }
    let totals = d
        .read_output_typed("totals", &StringSerde, &OptionSerde(U64Serde))
        .unwrap();
    assert_eq!(
        totals,
        vec![
            (s("uk"), Some(5), 1),
            (s("fr"), Some(7), 2),
            (s("uk"), Some(6), 3),
            (s("uk"), Some(8), 4)
        ]
    );
    let max = d
        .read_output_typed("max-out", &StringSerde, &OptionSerde(U64Serde))
        .unwrap();
    assert_eq!(max.last(), Some(&(s("uk/london"), Some(5), 4)));
}

#[test]
fn stream_table_join_sees_the_table_as_of_the_record_time() {
    let b = StreamsBuilder::new();
    let rates =
        b.table::<String, String>("rates", Consumed::default(), Materialized::named("rates"));
    let payments = b.stream::<String, String>("payments", Consumed::default());
    payments
        .join(&rates, |amount, rate| format!("{amount}@{rate}"))
        .to("inner", Produced::default());
    payments
        .left_join(&rates, |amount, rate| {
            format!("{amount}@{}", rate.map_or("none", String::as_str))
        })
        .to("left", Produced::default());
    let topo = b.build().unwrap();
    assert_eq!(topo.subtopologies().len(), 1);
    let mut d = TestDriver::new(&topo).unwrap();
    pipe_str(&mut d, "payments", "EUR", "10", 1);
    pipe_str(&mut d, "rates", "EUR", "0.86", 2);
    pipe_str(&mut d, "payments", "EUR", "20", 3);
    pipe_str(&mut d, "rates", "EUR", "0.85", 4);
    d.pipe("rates", Record::tombstone("EUR", 5)).unwrap();
    pipe_str(&mut d, "payments", "EUR", "30", 6);
    let inner = d
        .read_output_typed("inner", &StringSerde, &StringSerde)
        .unwrap();
    assert_eq!(inner, vec![(s("EUR"), s("20@0.86"), 3)]);
    let left = d
        .read_output_typed("left", &StringSerde, &StringSerde)
        .unwrap();
    assert_eq!(
        left,
        vec![
            (s("EUR"), s("10@none"), 1),
            (s("EUR"), s("20@0.86"), 3),
            (s("EUR"), s("30@none"), 6)
        ]
    );
}

#[test]
fn table_table_joins_emit_on_both_sides_and_propagate_deletions() {
    let b = StreamsBuilder::new();
    let l = b.table::<String, String>(
        "l",
        Consumed::default(),
        Materialized::named("l").with_caching(false),
    );
    let r = b.table::<String, String>(
        "r",
        Consumed::default(),
        Materialized::named("r").with_caching(false),
    );
    let opt = |x: Option<&String>| x.cloned().unwrap_or_else(|| "-".into());
    l.join(&r, |a, b| format!("{a}+{b}")).to_stream().to(
        "inner",
        Produced::with(StringSerde, OptionSerde(StringSerde)),
    );
    l.left_join(&r, move |a, b| format!("{a}+{}", opt(b)))
        .to_stream()
        .to(
            "left",
            Produced::with(StringSerde, OptionSerde(StringSerde)),
        );
    l.outer_join(&r, move |a, b| format!("{}+{}", opt(a), opt(b)))
        .to_stream()
        .to(
            "outer",
            Produced::with(StringSerde, OptionSerde(StringSerde)),
        );
    let topo = b.build().unwrap();
    let mut d = TestDriver::new(&topo).unwrap();
    pipe_str(&mut d, "l", "k", "a", 1);
    pipe_str(&mut d, "r", "k", "x", 2);
    pipe_str(&mut d, "l", "k", "b", 3);
    d.pipe("r", Record::tombstone("k", 4)).unwrap();
    d.pipe("l", Record::tombstone("k", 5)).unwrap();
    let read = |d: &mut TestDriver, t| {
        d.read_output_typed(t, &StringSerde, &OptionSerde(StringSerde))
            .unwrap()
    };
    let some = |v: &str, ts| (s("k"), Some(s(v)), ts);
    let none = |ts| (s("k"), None, ts);
    assert_eq!(
        read(&mut d, "inner"),
        vec![some("a+x", 2), some("b+x", 3), none(4)]
    );
    assert_eq!(
        read(&mut d, "left"),
        vec![
            some("a+-", 1),
            some("a+x", 2),
            some("b+x", 3),
            some("b+-", 4),
            none(5)
        ]
    );
    assert_eq!(
        read(&mut d, "outer"),
        vec![
            some("a+-", 1),
            some("a+x", 2),
            some("b+x", 3),
            some("b+-", 4),
            none(5)
        ]
    );
}

#[test]
fn table_filter_turns_failing_updates_into_deletions_and_map_values() {
    let b = StreamsBuilder::new();
    b.table::<String, u64>(
        "t",
        Consumed::default(),
        Materialized::named("t").with_caching(false),
    )
    .filter(|_, v| *v >= 10)
    .map_values(|_, v| v * 2)
    .to_stream()
    .to("out", Produced::with(StringSerde, OptionSerde(U64Serde)));
    let topo = b.build().unwrap();
    let mut d = TestDriver::new(&topo).unwrap();
    for (v, ts) in [(5u64, 1), (15, 2), (3, 3)] {
        d.pipe_typed("t", &StringSerde, &U64Serde, &s("k"), &v, ts)
            .unwrap();
    }
    let got = d
        .read_output_typed("out", &StringSerde, &OptionSerde(U64Serde))
        .unwrap();
    assert_eq!(got, vec![(s("k"), Some(30), 2), (s("k"), None, 3)]);
}

#[test]
fn joins_declare_copartitioning_and_the_check_names_both_topics() {
    let b = StreamsBuilder::new();
    let rates = b.table::<String, String>("rates", Consumed::default(), Materialized::named("r"));
    b.stream::<String, String>("payments", Consumed::default())
        .join(&rates, |p, r| format!("{p}{r}"))
        .to("out", Produced::default());
    let topo = b.build().unwrap();
    let counts = |equal: bool| {
        move |t: &str| match t {
            "rates" => Some(4),
            "payments" => Some(if equal { 4 } else { 3 }),
            _ => None,
        }
    };
    topo.check_copartitioning("app", counts(true)).unwrap();
    let err = topo
        .check_copartitioning("app", counts(false))
        .unwrap_err()
        .to_string();
    assert!(err.contains("rates") && err.contains("payments"), "{err}");
    assert!(err.contains("4") && err.contains("3"), "{err}");
}

/// Kafka Streams' rule for non-windowed aggregations: an aggregate's timestamp is the larger
/// of the record's and the previous aggregate's, so a late record does not move it back.
#[test]
fn aggregates_keep_the_largest_timestamp_of_their_records() {
    let b = StreamsBuilder::new();
    let words = b.stream::<String, u64>("words", Consumed::default());
    let grouped = || words.group_by_key(Grouped::inferred());
    grouped()
        .count(Materialized::named("counts").with_caching(false))
        .to_stream()
        .to("counts", Produced::with(StringSerde, OptionSerde(I64Serde)));
    grouped()
        .reduce(
            |a, b| a + b,
            Materialized::named("sums").with_caching(false),
        )
        .to_stream()
        .to("sums", Produced::with(StringSerde, OptionSerde(U64Serde)));
    grouped()
        .aggregate(
            || 0u64,
            |_, v, agg| agg.max(v),
            Materialized::named("max")
                .with_key_serde(StringSerde)
                .with_value_serde(U64Serde)
                .with_caching(false),
        )
        .to_stream()
        .to("max", Produced::with(StringSerde, OptionSerde(U64Serde)));
    let topo = b.build().unwrap();
    let mut d = TestDriver::new(&topo).unwrap();
    for (k, v, ts) in [
        ("a", 1u64, 5),
        ("a", 2, 3),
        ("b", 4, 2),
        ("a", 3, 4),
        ("a", 1, 9),
    ] {
        d.pipe_typed("words", &StringSerde, &U64Serde, &s(k), &v, ts)
            .unwrap();
    }
    let times = |out: Vec<(String, Option<u64>, i64)>| -> Vec<(String, i64)> {
        out.into_iter().map(|(k, _, ts)| (k, ts)).collect()
    };
    let expected = vec![
        (s("a"), 5),
        (s("a"), 5),
        (s("b"), 2),
        (s("a"), 5),
        (s("a"), 9),
    ];
    let counts = d
        .read_output_typed("counts", &StringSerde, &OptionSerde(I64Serde))
        .unwrap()
        .into_iter()
        .map(|(k, v, ts)| (k, v.map(|v| v as u64), ts))
        .collect();
    assert_eq!(times(counts), expected, "count");
    let sums = d
        .read_output_typed("sums", &StringSerde, &OptionSerde(U64Serde))
        .unwrap();
    assert_eq!(times(sums), expected, "reduce");
    let max = d
        .read_output_typed("max", &StringSerde, &OptionSerde(U64Serde))
        .unwrap();
    assert_eq!(max.last(), Some(&(s("a"), Some(3), 9)));
    assert_eq!(times(max), expected, "aggregate");
    let store = KeyValueStoreView::new(d.kv_store("counts").unwrap(), StringSerde, I64Serde);
    assert_eq!(store.get_with_timestamp(&s("a")).unwrap(), Some((4, 9)));
}

/// With caching, the one change forwarded at the commit carries the aggregate's timestamp
/// (the largest), not the time of the last write.
#[test]
fn cached_aggregates_forward_the_aggregate_timestamp_on_flush() {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("words", Consumed::default())
        .group_by_key(Grouped::inferred())
        .count(Materialized::named("counts"))
        .to_stream()
        .to("out", Produced::with(StringSerde, OptionSerde(I64Serde)));
    let config = DriverConfig::default().with_commit_every_record(false);
    let mut d = TestDriver::with_config(&b.build().unwrap(), config).unwrap();
    for ts in [7, 2, 3] {
        pipe_str(&mut d, "words", "a", "", ts);
    }
    d.commit().unwrap();
    let got = d
        .read_output_typed("out", &StringSerde, &OptionSerde(I64Serde))
        .unwrap();
    assert_eq!(got, vec![(s("a"), Some(3), 7)]);
}

/// Kafka Streams' rule for table–table joins: a result carries the larger of the update's
/// timestamp and the other side's value's; with no value on the other side, the update's.
/// Deletions follow the same rule.
#[test]
fn table_table_joins_stamp_results_with_the_later_side() {
    let b = StreamsBuilder::new();
    let l = b.table::<String, String>(
        "l",
        Consumed::default(),
        Materialized::named("l").with_caching(false),
    );
    let r = b.table::<String, String>(
        "r",
        Consumed::default(),
        Materialized::named("r").with_caching(false),
    );
    let opt = |x: Option<&String>| x.cloned().unwrap_or_else(|| "-".into());
    let out = || Produced::with(StringSerde, OptionSerde(StringSerde));
    l.join(&r, |a, b| format!("{a}+{b}"))
        .to_stream()
        .to("inner", out());
    l.left_join(&r, move |a, b| format!("{a}+{}", opt(b)))
        .to_stream()
        .to("left", out());
    l.outer_join(&r, move |a, b| format!("{}+{}", opt(a), opt(b)))
        .to_stream()
        .to("outer", out());
    let mut d = TestDriver::new(&b.build().unwrap()).unwrap();
    pipe_str(&mut d, "l", "k", "a", 10);
    pipe_str(&mut d, "r", "k", "x", 5); // joined with l's value of 10
    pipe_str(&mut d, "l", "k", "b", 3); // joined with r's value of 5
    d.pipe("r", Record::tombstone("k", 2)).unwrap(); // l's value is of 3
    d.pipe("l", Record::tombstone("k", 1)).unwrap(); // r has no value
    pipe_str(&mut d, "l", "j", "c", 7);
    pipe_str(&mut d, "r", "j", "y", 6);
    pipe_str(&mut d, "r", "j", "z", 8);
    let read = |d: &mut TestDriver, t| {
        d.read_output_typed(t, &StringSerde, &OptionSerde(StringSerde))
            .unwrap()
    };
    let some = |k: &str, v: &str, ts| (s(k), Some(s(v)), ts);
    let none = |k: &str, ts| (s(k), None, ts);
    assert_eq!(
        read(&mut d, "inner"),
        vec![
            some("k", "a+x", 10),
            some("k", "b+x", 5),
            none("k", 3),
            some("j", "c+y", 7),
            some("j", "c+z", 8),
        ]
    );
    let left_and_outer = vec![
        some("k", "a+-", 10),
        some("k", "a+x", 10),
        some("k", "b+x", 5),
        some("k", "b+-", 3),
        none("k", 1),
        some("j", "c+-", 7),
        some("j", "c+y", 7),
        some("j", "c+z", 8),
    ];
    assert_eq!(read(&mut d, "left"), left_and_outer);
    assert_eq!(read(&mut d, "outer"), left_and_outer);
}

/// Re-grouped tables follow the aggregation rule too: the larger of the record's and the
/// previous aggregate's timestamp, for the subtraction as for the addition.
#[test]
fn regrouped_table_aggregates_keep_the_largest_timestamp() {
    let b = StreamsBuilder::new();
    b.table::<String, String>(
        "users",
        Consumed::default(),
        Materialized::named("users").with_caching(false),
    )
    .group_by(
        |_, city| (city.clone(), ()),
        Grouped::with(StringSerde, streams_core::UnitSerde),
    )
    .count(Materialized::named("per-city").with_caching(false))
    .to_stream()
    .to(
        "per-city",
        Produced::with(StringSerde, OptionSerde(I64Serde)),
    );
    let mut d = TestDriver::new(&b.build().unwrap()).unwrap();
    pipe_str(&mut d, "users", "ann", "Paris", 5);
    pipe_str(&mut d, "users", "bob", "Paris", 2);
    pipe_str(&mut d, "users", "ann", "Oslo", 3);
    let got = d
        .read_output_typed("per-city", &StringSerde, &OptionSerde(I64Serde))
        .unwrap();
    assert_eq!(
        got,
        vec![
            (s("Paris"), Some(1), 5),
            (s("Paris"), Some(2), 5),
            (s("Paris"), Some(1), 5),
            (s("Oslo"), Some(1), 3),
        ]
    );
}

/// A materialized filtered and mapped table keeps the timestamps its changes pass through, so
/// a join downstream of it sees them.
#[test]
fn materialized_derived_tables_keep_the_timestamps_they_pass_through() {
    let b = StreamsBuilder::new();
    let prices = b
        .table::<String, u64>(
            "prices",
            Consumed::default(),
            Materialized::named("prices").with_caching(false),
        )
        .filter(|_, p| *p > 0)
        .map_values(|_, p| p * 2)
        .materialize(
            Materialized::named("doubled")
                .with_value_serde(U64Serde)
                .with_caching(false),
        );
    let names = b.table::<String, String>(
        "names",
        Consumed::default(),
        Materialized::named("names").with_caching(false),
    );
    names
        .join(&prices, |n, p| format!("{n}={p}"))
        .to_stream()
        .to("out", Produced::with(StringSerde, OptionSerde(StringSerde)));
    let mut d = TestDriver::new(&b.build().unwrap()).unwrap();
    d.pipe_typed("prices", &StringSerde, &U64Serde, &s("k"), &4, 9)
        .unwrap();
    pipe_str(&mut d, "names", "k", "tea", 1);
    let got = d
        .read_output_typed("out", &StringSerde, &OptionSerde(StringSerde))
        .unwrap();
    assert_eq!(got, vec![(s("k"), Some(s("tea=8")), 9)]);
    let doubled = KeyValueStoreView::new(d.kv_store("doubled").unwrap(), StringSerde, U64Serde);
    assert_eq!(doubled.get_with_timestamp(&s("k")).unwrap(), Some((8, 9)));
}

/// The three table–table joins of `l` and `r`, written to `inner`, `left` and `outer`, and
/// `l`'s own changes to `l-changes`; both tables cached or not.
fn table_joins(cached: bool) -> TestDriver {
    let b = StreamsBuilder::new();
    let table = |name: &str| {
        b.table::<String, String>(
            name,
            Consumed::default(),
            Materialized::named(name).with_caching(cached),
        )
    };
    let (l, r) = (table("l"), table("r"));
    let opt = |x: Option<&String>| x.cloned().unwrap_or_else(|| "-".into());
    let out = || Produced::with(StringSerde, OptionSerde(StringSerde));
    l.to_stream().to("l-changes", out());
    l.join(&r, |a, b| format!("{a}+{b}"))
        .to_stream()
        .to("inner", out());
    l.left_join(&r, move |a, b| format!("{a}+{}", opt(b)))
        .to_stream()
        .to("left", out());
    l.outer_join(&r, move |a, b| format!("{}+{}", opt(a), opt(b)))
        .to_stream()
        .to("outer", out());
    TestDriver::new(&b.build().unwrap()).unwrap()
}

/// Deletions of keys a table does not hold: `k` on the left while the right has it, `j` on
/// both sides where neither has it, `m` on the right while the left has it.
fn delete_absent_keys(d: &mut TestDriver) {
    pipe_str(d, "r", "k", "x", 1);
    d.pipe("l", Record::tombstone("k", 2)).unwrap();
    pipe_str(d, "l", "k", "a", 3);
    d.pipe("r", Record::tombstone("j", 4)).unwrap();
    d.pipe("l", Record::tombstone("j", 5)).unwrap();
    pipe_str(d, "l", "m", "b", 6);
    d.pipe("r", Record::tombstone("m", 7)).unwrap();
}

/// An uncached table forwards a deletion of a key it does not hold, as Kafka Streams' does,
/// and the joins pass it on where the other side has a row (Kafka Streams'
/// `KTableKTableInnerJoin`, `LeftJoin`, `RightJoin` and `OuterJoin`).
#[test]
fn uncached_tables_forward_deletions_of_absent_keys_and_joins_pass_them_on() {
    let mut d = table_joins(false);
    delete_absent_keys(&mut d);
    let mut read = |t| {
        d.read_output_typed(t, &StringSerde, &OptionSerde(StringSerde))
            .unwrap()
    };
    let some = |k: &str, v: &str, ts| (s(k), Some(s(v)), ts);
    let none = |k: &str, ts| (s(k), None, ts);
    assert_eq!(
        read("l-changes"),
        vec![
            none("k", 2),
            some("k", "a", 3),
            none("j", 5),
            some("m", "b", 6)
        ]
    );
    // The right side has `k` and the left `m`: deleting them on the other side joins to
    // nothing, a deletion; `j` is on neither side.
    assert_eq!(
        read("inner"),
        vec![none("k", 2), some("k", "a+x", 3), none("m", 7)]
    );
    // A left join's right side joins the left row with nothing again.
    assert_eq!(
        read("left"),
        vec![
            none("k", 2),
            some("k", "a+x", 3),
            some("m", "b+-", 6),
            some("m", "b+-", 7)
        ]
    );
    assert_eq!(
        read("outer"),
        vec![
            some("k", "-+x", 1),
            some("k", "-+x", 2),
            some("k", "a+x", 3),
            some("m", "b+-", 6),
            some("m", "b+-", 7)
        ]
    );
}

/// A cached table forwards what its cache writes through, which skips a key absent before
/// and after, as Kafka Streams' caching store does: no join sees those deletions.
#[test]
fn cached_tables_forward_no_deletion_of_an_absent_key() {
    let mut d = table_joins(true);
    delete_absent_keys(&mut d);
    let mut read = |t| {
        d.read_output_typed(t, &StringSerde, &OptionSerde(StringSerde))
            .unwrap()
    };
    let some = |k: &str, v: &str, ts| (s(k), Some(s(v)), ts);
    assert_eq!(
        read("l-changes"),
        vec![some("k", "a", 3), some("m", "b", 6)]
    );
    assert_eq!(read("inner"), vec![some("k", "a+x", 3)]);
    assert_eq!(read("left"), vec![some("k", "a+x", 3), some("m", "b+-", 6)]);
    assert_eq!(
        read("outer"),
        vec![
            some("k", "-+x", 1),
            some("k", "a+x", 3),
            some("m", "b+-", 6)
        ]
    );
}
