#![allow(clippy::unwrap_used)]
//! A user processor with a state store and both kinds of punctuation, through the DSL.

use streams_core::{
    Downstream, KvStoreRef, Processor, ProcessorContext, PunctuationType, Rec, StoreSpec,
    StringSerde, TestDriver, U64Serde,
};
use streams_dsl::prelude::*;

const EVERY_SECOND: u32 = 1;
const EVERY_10_MS_OF_STREAM_TIME: u32 = 2;

/// Keeps a running sum per key in a store and forwards it; a wall-clock punctuation reports
/// how many keys it has seen, a stream-time one the stream time it fired at.
struct RunningSum {
    store: KvStoreRef,
    down: Downstream<String, u64>,
}

impl Processor<String, u64> for RunningSum {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        rec: Rec<String, u64>,
    ) -> streams_core::Result<()> {
        let old = self.store.borrow().get(rec.key.as_bytes()).unwrap();
        let sum = old.map_or(0, |b| U64Serde.deserialize(&b).unwrap()) + rec.value;
        self.store
            .borrow_mut()
            .put(rec.key.as_bytes(), &U64Serde.serialize(&sum).unwrap())
            .unwrap();
        self.down
            .forward(ctx, Rec::new(rec.key, sum, rec.timestamp))
    }

    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        schedule: u32,
        ts: i64,
    ) -> streams_core::Result<()> {
        match schedule {
            EVERY_SECOND => {
                let keys = self.store.borrow().all().unwrap().count() as u64;
                self.down
                    .forward(ctx, Rec::new("#keys".to_string(), keys, ts))
            }
            _ => self
                .down
                .forward(ctx, Rec::new("#stream-time".to_string(), ts as u64, ts)),
        }
    }
}

#[test]
fn a_user_processor_uses_its_store_and_both_punctuations() {
    let b = StreamsBuilder::new();
    let mut spec = StoreSpec::key_value("sums");
    spec.cached = false;
    b.stream::<String, u64>("in", Consumed::default())
        .process(vec![spec], |inst, down| {
            inst.schedule(1000, PunctuationType::WallClockTime, EVERY_SECOND)?;
            inst.schedule(10, PunctuationType::StreamTime, EVERY_10_MS_OF_STREAM_TIME)?;
            Ok(RunningSum {
                store: inst.kv_store("sums")?,
                down,
            })
        })
        .to("out", Produced::with(StringSerde, U64Serde));
    let topo = b.build().unwrap();
    assert!(
        topo.describe().contains("(stores: [sums])"),
        "{}",
        topo.describe()
    );
    let mut d = TestDriver::new(&topo).unwrap();
    let read = |d: &mut TestDriver| d.read_output_typed("out", &StringSerde, &U64Serde).unwrap();
    // The wall-clock schedule starts with the task (at time 0) and first fires one interval
    // later, as in Kafka Streams.
    assert!(read(&mut d).is_empty());
    for (k, v, ts) in [("a", 1u64, 3), ("b", 2, 5), ("a", 3, 12)] {
        d.pipe_typed("in", &StringSerde, &U64Serde, &k.to_string(), &v, ts)
            .unwrap();
    }
    let s = |k: &str, v: u64, ts: i64| (k.to_string(), v, ts);
    assert_eq!(
        read(&mut d),
        vec![
            s("a", 1, 3),
            s("#stream-time", 3, 3),
            s("b", 2, 5),
            s("a", 4, 12),
            s("#stream-time", 12, 12),
        ]
    );
    d.advance_wall_clock(999).unwrap();
    assert!(read(&mut d).is_empty());
    d.advance_wall_clock(1).unwrap();
    assert_eq!(read(&mut d), vec![s("#keys", 2, 1000)]);
}
