#![allow(clippy::unwrap_used)]
//! Test-driver tests of the stateless stream operators, with exact expected outputs.

use streams_core::{OptionSerde, Record, StringSerde, TestDriver, U64Serde, UnitSerde};
use streams_dsl::prelude::*;

fn s(x: &str) -> String {
    x.to_string()
}

fn pipe(driver: &mut TestDriver, topic: &str, records: &[(&str, u64, i64)]) {
    for (k, v, ts) in records {
        driver
            .pipe_typed(topic, &StringSerde, &U64Serde, &s(k), v, *ts)
            .unwrap();
    }
}

fn out(driver: &mut TestDriver, topic: &str) -> Vec<(String, u64, i64)> {
    driver
        .read_output_typed(topic, &StringSerde, &U64Serde)
        .unwrap()
}

#[test]
fn filter_map_values_and_filter_not() {
    let b = StreamsBuilder::new();
    let input = b.stream::<String, u64>("in", Consumed::default());
    input
        .filter(|_, v| v % 2 == 0)
        .map_values(|v| v * 10)
        .to("even", Produced::default());
    input
        .filter_not(|k, _| k == "skip")
        .to("not-skipped", Produced::default());
    let topo = b.build().unwrap();
    let mut d = TestDriver::new(&topo).unwrap();
    pipe(
        &mut d,
        "in",
        &[("a", 1, 10), ("b", 2, 11), ("skip", 4, 12), ("c", 3, 13)],
    );
    assert_eq!(
        out(&mut d, "even"),
        vec![(s("b"), 20, 11), (s("skip"), 40, 12)]
    );
    assert_eq!(
        out(&mut d, "not-skipped"),
        vec![(s("a"), 1, 10), (s("b"), 2, 11), (s("c"), 3, 13)]
    );
}

#[test]
fn map_select_key_flat_map_and_flat_map_values() {
    let b = StreamsBuilder::new();
    let input = b.stream::<String, u64>("in", Consumed::default());
    input
        .map(|k, v| (format!("{k}{v}"), v + 1))
        .to("mapped", Produced::default());
    input
        .select_key(|_, v| format!("key-{v}"))
        .to("rekeyed", Produced::default());
    input
        .flat_map(|k, v| (0..v).map(move |i| (format!("{k}.{i}"), i)))
        .to("flat", Produced::default());
    input
        .flat_map_values(|v| vec![v, v * 100])
        .to("flat-values", Produced::default());
    let topo = b.build().unwrap();
    let mut d = TestDriver::new(&topo).unwrap();
    pipe(&mut d, "in", &[("x", 2, 5), ("y", 0, 6)]);
    assert_eq!(
        out(&mut d, "mapped"),
        vec![(s("x2"), 3, 5), (s("y0"), 1, 6)]
    );
    assert_eq!(
        out(&mut d, "rekeyed"),
        vec![(s("key-2"), 2, 5), (s("key-0"), 0, 6)]
    );
    assert_eq!(
        out(&mut d, "flat"),
        vec![(s("x.0"), 0, 5), (s("x.1"), 1, 5)]
    );
    assert_eq!(
        out(&mut d, "flat-values"),
        vec![
            (s("x"), 2, 5),
            (s("x"), 200, 5),
            (s("y"), 0, 6),
            (s("y"), 0, 6)
        ]
    );
}

#[test]
fn peek_foreach_split_and_merge() {
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let peeked = Arc::new(Mutex::new(0u64));
    let b = StreamsBuilder::new();
    let input = b.stream::<String, u64>("in", Consumed::default());
    let p = peeked.clone();
    let branches = input.peek(move |_, v| *p.lock().unwrap() += v).split(
        vec![Box::new(|_, v| *v < 10), Box::new(|_, v| *v < 100)],
        true,
    );
    assert_eq!(branches.len(), 3);
    branches[0].to("small", Produced::default());
    branches[1].to("medium", Produced::default());
    branches[2].to("large", Produced::default());
    branches[0]
        .merge(&branches[2])
        .to("small-or-large", Produced::default());
    let sink = seen.clone();
    input.foreach(move |k, v| sink.lock().unwrap().push((k.clone(), *v)));
    let topo = b.build().unwrap();
    let mut d = TestDriver::new(&topo).unwrap();
    pipe(
        &mut d,
        "in",
        &[("a", 5, 1), ("b", 50, 2), ("c", 500, 3), ("d", 9, 4)],
    );
    assert_eq!(out(&mut d, "small"), vec![(s("a"), 5, 1), (s("d"), 9, 4)]);
    assert_eq!(out(&mut d, "medium"), vec![(s("b"), 50, 2)]);
    assert_eq!(out(&mut d, "large"), vec![(s("c"), 500, 3)]);
    assert_eq!(
        out(&mut d, "small-or-large"),
        vec![(s("a"), 5, 1), (s("c"), 500, 3), (s("d"), 9, 4)]
    );
    assert_eq!(*peeked.lock().unwrap(), 564);
    assert_eq!(seen.lock().unwrap().len(), 4);
}

#[test]
fn split_without_default_drops_unmatched() {
    let b = StreamsBuilder::new();
    let branches = b
        .stream::<String, u64>("in", Consumed::default())
        .split(vec![Box::new(|_, v| *v == 1)], false);
    assert_eq!(branches.len(), 1);
    branches[0].to("ones", Produced::default());
    let topo = b.build().unwrap();
    let mut d = TestDriver::new(&topo).unwrap();
    pipe(&mut d, "in", &[("a", 1, 1), ("b", 2, 2)]);
    assert_eq!(out(&mut d, "ones"), vec![(s("a"), 1, 1)]);
}

#[test]
fn unkeyed_input_uses_unit_keys_and_null_keys_are_counted_otherwise() {
    let b = StreamsBuilder::new();
    b.stream::<(), String>("lines", Consumed::with(UnitSerde, StringSerde))
        .map_values(|l| l.to_uppercase())
        .to("upper", Produced::with(UnitSerde, StringSerde));
    b.stream::<String, String>("keyed", Consumed::default())
        .to("keyed-out", Produced::default());
    let topo = b.build().unwrap();
    let mut d = TestDriver::new(&topo).unwrap();
    d.pipe("lines", Record::unkeyed("hello", 7)).unwrap();
    let upper = d.read_output("upper");
    assert_eq!(upper.len(), 1);
    assert_eq!(upper[0].key, None);
    assert_eq!(upper[0].value.as_deref(), Some(&b"HELLO"[..]));
    d.pipe("keyed", Record::unkeyed("no key", 8)).unwrap();
    assert!(d.read_output("keyed-out").is_empty());
    assert_eq!(d.metrics().dropped_for("null-key"), 1);
}

#[test]
fn repartition_round_trips_through_an_internal_topic() {
    let b = StreamsBuilder::new();
    b.stream::<String, u64>("in", Consumed::default())
        .select_key(|_, v| v.to_string())
        .repartition(Repartitioned::with(StringSerde, U64Serde).named("by-value"))
        .to("out", Produced::default());
    let topo = b.build().unwrap();
    assert_eq!(topo.subtopologies().len(), 2);
    assert!(
        topo.describe().contains("<app>-by-value-repartition"),
        "{}",
        topo.describe()
    );
    let mut d = TestDriver::new(&topo).unwrap();
    pipe(&mut d, "in", &[("a", 3, 1)]);
    assert_eq!(out(&mut d, "out"), vec![(s("3"), 3, 1)]);
}

#[test]
fn a_missing_serde_is_a_build_error_naming_the_operator() {
    let b = StreamsBuilder::new();
    b.stream::<String, u64>("in", Consumed::default())
        .map(|k, v| (v, k))
        .to("out", Produced::inferred().named("my-sink"));
    let err = b.build().unwrap_err().to_string();
    assert!(err.contains("my-sink"), "{err}");
    assert!(err.contains("serde"), "{err}");
}

#[test]
fn table_to_stream_forwards_deletions_as_none() {
    let b = StreamsBuilder::new();
    b.table::<String, u64>(
        "t",
        Consumed::default(),
        Materialized::named("t-store").with_caching(false),
    )
    .to_stream()
    .to(
        "changes",
        Produced::with(StringSerde, OptionSerde(U64Serde)),
    );
    let topo = b.build().unwrap();
    let mut d = TestDriver::new(&topo).unwrap();
    pipe(&mut d, "t", &[("a", 1, 1)]);
    d.pipe("t", Record::tombstone("a", 2)).unwrap();
    d.pipe("t", Record::tombstone("never-there", 3)).unwrap();
    let got = d
        .read_output_typed("changes", &StringSerde, &OptionSerde(U64Serde))
        .unwrap();
    // Uncached, a deletion of a key the table never held is forwarded too, as Kafka Streams'
    // uncached tables do.
    assert_eq!(
        got,
        vec![
            (s("a"), Some(1), 1),
            (s("a"), None, 2),
            (s("never-there"), None, 3)
        ]
    );
}

#[test]
fn undecodable_records_follow_the_deserialization_handler() {
    use streams_core::dead_letter_headers;
    use streams_core::{DriverConfig, RecordErrorHandler};

    let b = StreamsBuilder::new();
    b.stream::<String, u64>("in", Consumed::default())
        .to("out", Produced::default());
    let topo = b.build().unwrap();

    // Fail (the default): the error names the record, and its cause what could not be
    // decoded.
    let mut d = TestDriver::new(&topo).unwrap();
    let err = d
        .pipe("in", Record::new("k", "not eight bytes", 1))
        .unwrap_err()
        .report()
        .to_string();
    assert!(err.contains("in-0@0") && err.contains("value"), "{err}");
    assert!(err.contains("expected 8 bytes, got 15"), "{err}");

    // Log and continue: skipped, counted, later records flow.
    let config = DriverConfig::default().with_deserialization(RecordErrorHandler::LogAndContinue);
    let mut d = TestDriver::with_config(&topo, config).unwrap();
    d.pipe("in", Record::new("k", "bad", 1)).unwrap();
    pipe(&mut d, "in", &[("k", 7, 2)]);
    assert_eq!(out(&mut d, "out"), vec![(s("k"), 7, 2)]);
    assert_eq!(d.metrics().skipped_deserialization, 1);

    // Dead letter: the raw record goes to the topic with the error in headers.
    let config =
        DriverConfig::default().with_deserialization(RecordErrorHandler::DeadLetter("dlq".into()));
    let mut d = TestDriver::with_config(&topo, config).unwrap();
    d.pipe("in", Record::new("k", "bad", 1)).unwrap();
    let dead = d.read_output("dlq");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].value.as_deref(), Some(&b"bad"[..]));
    let header = |name: &str| {
        dead[0]
            .header(name)
            .and_then(|h| h.value.clone())
            .map(|v| String::from_utf8(v).unwrap())
    };
    assert_eq!(header(dead_letter_headers::TOPIC).as_deref(), Some("in"));
    assert_eq!(header(dead_letter_headers::OFFSET).as_deref(), Some("0"));
    assert!(header(dead_letter_headers::MESSAGE)
        .unwrap()
        .contains("expected 8 bytes, got 3"));
    assert!(out(&mut d, "out").is_empty());
}
