//! `to()` takes a `Produced` of the stream's own key and value types.
use streams_dsl::prelude::*;

fn main() {
    let b = StreamsBuilder::new();
    let stream = b.stream::<String, String>("in", Consumed::default());
    stream.to("out", Produced::<String, u64>::default());
}
