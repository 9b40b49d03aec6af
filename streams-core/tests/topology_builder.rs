//! The engine without the DSL: topologies built with `TopologyBuilder` directly, their
//! sub-topologies and declared topics, the builder's errors, and tasks running a processor
//! of the caller's own (stores, stream-time punctuation) on the test driver.

use std::sync::Arc;

use streams_core::{
    Downstream, I64Serde, InternalTopicKind, NodeRef, Processor, ProcessorContext, PunctuationType,
    Rec, Record, Result, StoreSpec, StringSerde, TestDriver, TopicName, Topology, TopologyBuilder,
};

#[path = "support/counter.rs"]
mod counter;
use counter::{decode_count, Counter};

/// `in` → upper-cased key → `<app>-rekeyed-repartition` → count (store `counts`) → `out`.
fn two_stage() -> Result<Topology> {
    let mut b = TopologyBuilder::new();
    let src = b.add_source::<String, String>(
        "src",
        vec![TopicName::User("in".into())],
        Arc::new(StringSerde),
        Arc::new(StringSerde),
    )?;
    let upper: NodeRef<String, String> =
        b.add_processor("upper", &[src], |_, down| Ok(Upper(down)))?;
    let repartition = TopicName::Internal("rekeyed-repartition".into());
    b.add_internal_topic("rekeyed-repartition", InternalTopicKind::Repartition);
    b.add_sink(
        "to-repartition",
        repartition.clone(),
        &[upper],
        Arc::new(StringSerde),
        Arc::new(StringSerde),
        None,
    )?;
    let again = b.add_source::<String, String>(
        "from-repartition",
        vec![repartition],
        Arc::new(StringSerde),
        Arc::new(StringSerde),
    )?;
    b.add_store(StoreSpec {
        persistent: false,
        cached: false,
        ..StoreSpec::key_value("counts")
    })?;
    let count = b.add_processor("count", &[again], |inst, down| {
        inst.schedule(10, PunctuationType::StreamTime, 0)?;
        Ok(Counter {
            store: inst.kv_store("counts")?,
            total: 0,
            down,
        })
    })?;
    b.connect_store(count.id, "counts")?;
    b.add_sink(
        "sink",
        TopicName::User("out".into()),
        &[count],
        Arc::new(StringSerde),
        Arc::new(I64Serde),
        None,
    )?;
    b.build()
}

struct Upper(Downstream<String, String>);

impl Processor<String, String> for Upper {
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<String, String>) -> Result<()> {
        let key = rec.key.to_uppercase();
        self.0.forward(ctx, rec.with(key, rec.value.clone()))
    }
}

#[test]
fn a_topic_between_nodes_splits_the_topology() -> Result<()> {
    let topology = two_stage()?;
    let subs = topology.subtopologies();
    assert_eq!(subs.len(), 2, "{}", topology.describe());
    assert_eq!(subs[0].source_topics, vec![TopicName::User("in".into())]);
    assert_eq!(
        subs[0].sink_topics,
        vec![TopicName::Internal("rekeyed-repartition".into())]
    );
    assert!(subs[0].stores.is_empty());
    assert_eq!(
        subs[1].source_topics,
        vec![TopicName::Internal("rekeyed-repartition".into())]
    );
    assert_eq!(subs[1].stores, vec!["counts".to_string()]);
    // A logged store declares its changelog; the repartition topic is declared as given.
    assert_eq!(
        topology.internal_topics().get("counts-changelog"),
        Some(&InternalTopicKind::Changelog)
    );
    assert_eq!(
        topology.internal_topics().get("rekeyed-repartition"),
        Some(&InternalTopicKind::Repartition)
    );
    let text = topology.describe();
    assert!(
        text.contains("Sub-topology: 1") && text.contains("counts"),
        "{text}"
    );
    Ok(())
}

#[test]
fn builder_errors_name_what_is_wrong() -> Result<()> {
    let mut b = TopologyBuilder::new();
    let src = b.add_source::<String, String>(
        "src",
        vec![TopicName::User("in".into())],
        Arc::new(StringSerde),
        Arc::new(StringSerde),
    )?;
    let twice = b.add_source::<String, String>(
        "src",
        vec![TopicName::User("other".into())],
        Arc::new(StringSerde),
        Arc::new(StringSerde),
    );
    let err = twice.expect_err("a second node named `src`");
    assert!(err.to_string().contains("src"), "{err}");

    let node: NodeRef<String, String> = b.add_processor("p", &[src], |_, down| Ok(Upper(down)))?;
    let err = b
        .connect_store(node.id, "nowhere")
        .expect_err("an unknown store");
    assert!(err.to_string().contains("nowhere"), "{err}");

    let dangling: NodeRef<String, String> = NodeRef::dangling();
    let under =
        b.add_processor::<_, _, String, String, _, _>("q", &[dangling], |_, down| Ok(Upper(down)));
    assert!(under.is_err(), "a node under a node that does not exist");
    Ok(())
}

#[test]
fn a_task_runs_a_stateful_processor_and_punctuates_on_stream_time() -> Result<()> {
    let topology = two_stage()?;
    let mut driver = TestDriver::new(&topology)?;
    for (k, ts) in [("a", 1), ("b", 4), ("A", 9), ("a", 12), ("b", 25)] {
        driver.pipe("in", Record::new(k, "v", ts))?;
    }
    let out = driver.read_output_typed("out", &StringSerde, &I64Serde)?;
    let counts: Vec<(String, i64)> = out
        .iter()
        .filter(|(k, _, _)| k != "*")
        .map(|(k, v, _)| (k.clone(), *v))
        .collect();
    // Keys were upper-cased before the repartition: `a` and `A` are one key.
    assert_eq!(
        counts,
        vec![
            ("A".to_string(), 1),
            ("B".to_string(), 1),
            ("A".to_string(), 2),
            ("A".to_string(), 3),
            ("B".to_string(), 2),
        ]
    );
    // Stream time punctuation: a schedule of 10 ms fires as stream time crosses 10 and 20
    // (once per crossing, at the record that crossed it), with the total so far.
    let totals: Vec<(i64, i64)> = out
        .iter()
        .filter(|(k, _, _)| k == "*")
        .map(|(_, v, ts)| (*v, *ts))
        .collect();
    assert!(!totals.is_empty(), "{out:?}");
    assert!(totals.windows(2).all(|w| w[0].1 < w[1].1), "{totals:?}");
    assert_eq!(totals.last().map(|t| t.0), Some(5), "{totals:?}");
    let store = driver.kv_store("counts")?;
    let a = store
        .borrow()
        .get(b"A")?
        .map(|b| decode_count(&b))
        .transpose()?;
    assert_eq!(a, Some(3));
    Ok(())
}
