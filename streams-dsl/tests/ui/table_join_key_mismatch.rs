//! Joining two tables requires equal key types.
use streams_dsl::prelude::*;

fn main() {
    let b = StreamsBuilder::new();
    let left = b.table::<String, String>("left", Consumed::default(), Materialized::default());
    let right = b.table::<u64, String>("right", Consumed::default(), Materialized::default());
    let _joined = left.join(&right, |l: &String, r: &String| format!("{l}{r}"));
}
