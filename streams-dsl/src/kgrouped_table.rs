//! [`KGroupedTable`]: a table re-grouped by a new key, aggregated with an adder and a
//! subtractor.
//!
//! `KTable::group_by` maps every row to a (new key, new value) pair. When a row changes, the
//! pair of its old value is *subtracted* from the aggregate of its old group and the pair of
//! its new value *added* to the aggregate of its new group, as in Kafka Streams, so the
//! aggregate always reflects the table's current rows. The halves travel through a
//! repartition topic (the new key decides the partition), subtraction first; each record
//! there carries one half, marked in its first byte. A row whose update keeps it in its group
//! (the old and the new value map to the same new key bytes) sends one record with both, so
//! the aggregate subtracts and adds in one update and emits once, as Kafka Streams does since
//! KIP-904.

use std::sync::Arc;

use streams_core::{Change, Serde, SerdeError};

/// One half of a table row's move between groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Half<V> {
    /// The row's value leaves the group.
    Subtract(V),
    /// The row's value joins the group.
    Add(V),
    /// The row stays in the group: its old value leaves and its new one joins, in one update.
    Replace {
        /// The value that leaves.
        old: V,
        /// The value that joins.
        new: V,
    },
}

use crate::kgrouped::KGroupedStream;
use crate::kstream::KStream;
use crate::ktable::KTable;
use crate::ops::aggregate::AggregateFn;
use crate::options::{count_materialized, Grouped, Materialized, Serdes};

/// A table grouped by a new key. See the module docs for the add/subtract semantics.
///
/// Timestamps follow Kafka Streams: a group's first aggregate takes the time of the row update
/// that created it; every later subtraction or addition stamps the aggregate with the larger of
/// the update's time and the previous aggregate's.
///
/// ```
/// use streams_dsl::prelude::*;
/// use streams_core::{I64Serde, OptionSerde, StringSerde, TestDriver};
///
/// // users: name → city; count users per city.
/// let builder = StreamsBuilder::new();
/// builder
///     .table::<String, String>("users", Consumed::default(), Materialized::named("users"))
///     .group_by(|_, city| (city.clone(), ()), Grouped::with(StringSerde, streams_core::UnitSerde))
///     .count(Materialized::named("per-city"))
///     .to_stream()
///     .to("per-city-out", Produced::with(StringSerde, OptionSerde(I64Serde)));
/// let mut driver = TestDriver::new(&builder.build()?)?;
/// let s = |x: &str| x.to_string();
/// driver.pipe_typed("users", &StringSerde, &StringSerde, &s("ann"), &s("Paris"), 1)?;
/// driver.pipe_typed("users", &StringSerde, &StringSerde, &s("bob"), &s("Paris"), 2)?;
/// driver.pipe_typed("users", &StringSerde, &StringSerde, &s("ann"), &s("Oslo"), 3)?; // moves
/// let out = driver.read_output_typed("per-city-out", &StringSerde, &OptionSerde(I64Serde))?;
/// assert_eq!(
///     out,
///     vec![
///         (s("Paris"), Some(1), 1),
///         (s("Paris"), Some(2), 2),
///         (s("Paris"), Some(1), 3), // ann subtracted from Paris...
///         (s("Oslo"), Some(1), 3),  // ...and added to Oslo
///     ]
/// );
/// # Ok::<(), streams_core::Error>(())
/// ```
pub struct KGroupedTable<K, V> {
    grouped: KGroupedStream<K, Half<V>>,
    value_serde: Option<Arc<dyn Serde<V>>>,
}

/// Encodes a [`Half`]: `0` + value (subtract) or `1` + value (add).
pub(crate) struct HalfSerde<V>(pub(crate) Arc<dyn Serde<V>>);

impl<V: 'static> Serde<Half<V>> for HalfSerde<V> {
    fn serialize_into(&self, value: &Half<V>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        match value {
            Half::Subtract(v) => {
                out.push(0);
                self.0.serialize_into(v, out)
            }
            Half::Add(v) => {
                out.push(1);
                self.0.serialize_into(v, out)
            }
            Half::Replace { old, new } => {
                out.push(2);
                let at = out.len();
                out.extend_from_slice(&[0; 4]);
                self.0.serialize_into(old, out)?;
                let len = u32::try_from(out.len() - at - 4)
                    .map_err(|_| SerdeError::new("table re-grouping", "an old value past 4 GiB"))?;
                out[at..at + 4].copy_from_slice(&len.to_be_bytes());
                self.0.serialize_into(new, out)
            }
        }
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Half<V>, SerdeError> {
        match bytes.split_first() {
            Some((1, rest)) => Ok(Half::Add(self.0.deserialize(rest)?)),
            Some((0, rest)) => Ok(Half::Subtract(self.0.deserialize(rest)?)),
            Some((2, rest)) => {
                let malformed = || {
                    SerdeError::new(
                        "table re-grouping",
                        "a replacement shorter than the length of its old value",
                    )
                };
                let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(malformed)?;
                let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| malformed())?;
                let (old, new) = rest.split_at_checked(len).ok_or_else(malformed)?;
                Ok(Half::Replace {
                    old: self.0.deserialize(old)?,
                    new: self.0.deserialize(new)?,
                })
            }
            _ => Err(SerdeError::new(
                "table re-grouping",
                "expected a 0 (subtract), 1 (add) or 2 (replace) marker byte",
            )),
        }
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KTable<K, V> {
    /// Re-groups the table by the key `selector` gives each row, for aggregation with an
    /// adder and a subtractor ([`KGroupedTable`]). Always repartitions, by the new key.
    /// `grouped` needs serdes for the new key and value unless the table's own fit.
    pub fn group_by<K2: Clone + 'static, V2: Clone + 'static>(
        &self,
        selector: impl Fn(&K, &V) -> (K2, V2) + Send + Sync + 'static,
        grouped: Grouped<K2, V2>,
    ) -> KGroupedTable<K2, V2> {
        let selector = Arc::new(selector);
        let key_serde = grouped.serdes.key.clone();
        // Whether two new keys are the same group: by their bytes, as partitions are chosen.
        let same = move |a: &K2, b: &K2| match &key_serde {
            Some(serde) => {
                matches!((serde.serialize(a), serde.serialize(b)), (Ok(x), Ok(y)) if x == y)
            }
            None => false,
        };
        let f: crate::ops::map::FlatMapFn<K, Change<V>, K2, Half<V2>> =
            Arc::new(move |k, change, out| {
                let old = change.old.as_ref().map(|v| selector(&k, v));
                let new = change.new.as_ref().map(|v| selector(&k, v));
                match (old, new) {
                    (Some((k_old, old)), Some((k_new, new))) if same(&k_old, &k_new) => {
                        out.push((k_new, Half::Replace { old, new }));
                    }
                    (old, new) => {
                        if let Some((k2, v2)) = old {
                            out.push((k2, Half::Subtract(v2)));
                        }
                        if let Some((k2, v2)) = new {
                            out.push((k2, Half::Add(v2)));
                        }
                    }
                }
            });
        let node = self.graph.borrow_mut().add_processor(
            "KTABLE-SELECT",
            grouped.name.as_deref(),
            &[self.node],
            move |_, down| {
                Ok(crate::ops::map::FlatMap {
                    f: f.clone(),
                    down,
                    buf: Vec::new(),
                })
            },
        );
        let value_serde = grouped.serdes.value.clone();
        let value: Option<Arc<dyn Serde<Half<V2>>>> = value_serde
            .clone()
            .map(|v| Arc::new(HalfSerde(v)) as Arc<dyn Serde<Half<V2>>>);
        let serdes = Serdes {
            key: grouped.serdes.key.clone(),
            value,
        };
        let stream = KStream {
            graph: self.graph.clone(),
            node,
            serdes: serdes.clone(),
            needs_repartition: true,
        };
        KGroupedTable {
            grouped: KGroupedStream::new(
                stream,
                Grouped {
                    serdes,
                    name: grouped.name,
                },
            ),
            value_serde,
        }
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KGroupedTable<K, V> {
    /// The number of rows per new key.
    pub fn count(self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        let f: AggregateFn<K, Half<V>, i64> = Arc::new(|_, half, old| {
            let n = old.unwrap_or(0);
            match half {
                Half::Add(_) => n + 1,
                Half::Subtract(_) => n - 1,
                Half::Replace { .. } => n,
            }
        });
        self.grouped
            .aggregate_with("KTABLE-AGGREGATE", count_materialized(materialized), f)
    }

    /// Combines the rows of each new key: `adder(aggregate, value)` for a row that arrives,
    /// `subtractor(aggregate, value)` for one that leaves (the first row is taken as is).
    pub fn reduce(
        self,
        adder: impl Fn(V, V) -> V + Send + Sync + 'static,
        subtractor: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let f: AggregateFn<K, Half<V>, V> = Arc::new(move |_, half, old| match (half, old) {
            (Half::Add(v), Some(agg)) => adder(agg, v),
            (Half::Subtract(v), Some(agg)) => subtractor(agg, v),
            (Half::Replace { old, new }, Some(agg)) => adder(subtractor(agg, old), new),
            // A row is added to its group before it can leave, so this is the first row.
            (Half::Add(v) | Half::Subtract(v) | Half::Replace { new: v, .. }, None) => v,
        });
        let materialized = Materialized {
            serdes: materialized.serdes.or(&Serdes {
                key: None,
                value: self.value_serde.clone(),
            }),
            ..materialized
        };
        self.grouped
            .aggregate_with("KTABLE-REDUCE", materialized, f)
    }

    /// Folds the rows of each new key into an aggregate that starts at `initializer()`:
    /// `adder(key, value, aggregate)` for a row that arrives, `subtractor(key, value,
    /// aggregate)` for one that leaves.
    pub fn aggregate<A: Clone + 'static>(
        self,
        initializer: impl Fn() -> A + Send + Sync + 'static,
        adder: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        subtractor: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        materialized: Materialized<K, A>,
    ) -> KTable<K, A> {
        let f: AggregateFn<K, Half<V>, A> = Arc::new(move |k, half, old: Option<A>| {
            let agg = old.unwrap_or_else(&initializer);
            match half {
                Half::Add(v) => adder(k, v, agg),
                Half::Subtract(v) => subtractor(k, v, agg),
                Half::Replace { old, new } => adder(k, new, subtractor(k, old, agg)),
            }
        });
        self.grouped
            .aggregate_with("KTABLE-AGGREGATE", materialized, f)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use streams_core::StringSerde;

    #[test]
    fn halves_round_trip_and_malformed_ones_are_errors() {
        let serde = HalfSerde::<String>(Arc::new(StringSerde));
        for half in [
            Half::Subtract("a".to_string()),
            Half::Add(String::new()),
            Half::Replace {
                old: "old".into(),
                new: "new".into(),
            },
        ] {
            let bytes = serde.serialize(&half).unwrap();
            assert_eq!(serde.deserialize(&bytes).unwrap(), half);
        }
        assert!(serde.deserialize(&[2, 0, 0, 0, 9, b'x']).is_err());
        assert!(serde.deserialize(&[7]).is_err());
    }
}
