//! Control case: the well-typed versions of the other cases compile.
use streams_dsl::prelude::*;

fn main() {
    let b = StreamsBuilder::new();
    let left = b.table::<String, String>("left", Consumed::default(), Materialized::default());
    let right = b.table::<String, u64>("right", Consumed::default(), Materialized::default());
    let _joined = left.join(&right, |l: &String, r: &u64| format!("{l}{r}"));
    let stream = b.stream::<String, u64>("clicks", Consumed::default());
    let _enriched = stream.join(&left, |c: &u64, u: &String| format!("{c}{u}"));
    stream.to("out", Produced::<String, u64>::default());
}
