//! A stream-table join requires the stream's key type to be the table's.
use streams_dsl::prelude::*;

fn main() {
    let b = StreamsBuilder::new();
    let stream = b.stream::<u64, String>("clicks", Consumed::default());
    let table = b.table::<String, String>("users", Consumed::default(), Materialized::default());
    let _joined = stream.join(&table, |c: &String, u: &String| format!("{c}{u}"));
}
