#![allow(clippy::unwrap_used)]
//! Every scenario of the throughput harness at a tiny size: engine and baseline must produce
//! the same results (same final counts, same output records). No timing is asserted; this is
//! what keeps the harness from rotting. K1 and K2 run through the Kafka test broker
//! (`KAFKA_BOOTSTRAP_SERVERS`, or one started for this test binary; none fails the test).

#[path = "../../streams-core/tests/support/kafka_broker.rs"]
mod kafka_broker;

use streams_benches::{run_scenario, Params, Scenario, Summary};

fn check(scenario: Scenario) {
    check_with(scenario, &Params::tiny());
}

fn check_with(scenario: Scenario, params: &Params) {
    let dir = tempfile::tempdir().unwrap();
    let outcome =
        run_scenario(scenario, params, dir.path()).unwrap_or_else(|e| panic!("{scenario}: {e}"));
    assert!(outcome.records > 0, "{scenario}: no records");
    assert!(
        outcome.engine_digest.entries > 0,
        "{scenario}: empty results"
    );
    assert_eq!(
        outcome.engine_digest, outcome.baseline_digest,
        "{scenario}: engine and baseline results differ ({})",
        outcome.note
    );
    // The line a child process reports must parse back.
    let s = Summary::from(&outcome);
    assert_eq!(Summary::from_output(&s.to_line()).unwrap(), s);
}

#[test]
fn s1_stateless() {
    check(Scenario::S1);
}

#[test]
fn s2_count_rocksdb() {
    check(Scenario::S2);
}

#[test]
fn s2e_count_exactly_once() {
    check(Scenario::S2e);
}

#[test]
fn s2m_count_in_memory() {
    check(Scenario::S2m);
}

#[test]
fn s3_windowed_count() {
    check(Scenario::S3);
}

#[test]
fn s4_stream_table_join() {
    check(Scenario::S4);
}

#[test]
fn s5_restore() {
    check(Scenario::S5);
}

#[test]
fn s6_scaling() {
    check(Scenario::S6);
}

#[test]
fn s7_memory_bound() {
    check(Scenario::S7);
}

#[test]
fn k1_through_a_kafka_broker() {
    let params = Params {
        bootstrap_servers: Some(kafka_broker::bootstrap_servers().to_string()),
        ..Params::tiny()
    };
    check_with(Scenario::K1, &params);
}

#[test]
fn k2_count_through_a_kafka_broker() {
    let params = Params {
        bootstrap_servers: Some(kafka_broker::bootstrap_servers().to_string()),
        ..Params::tiny()
    };
    check_with(Scenario::K2, &params);
}

#[test]
fn k1_without_a_broker_says_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let error = run_scenario(Scenario::K1, &Params::tiny(), dir.path()).unwrap_err();
    assert!(error.to_string().contains("--bootstrap-servers"), "{error}");
}
