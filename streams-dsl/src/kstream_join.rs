//! The wiring of a windowed stream–stream join ([`KStream::join_stream`] and its left and
//! outer forms): both sides buffered in window stores (retaining duplicates), an optional
//! store of left/outer records still waiting for a match, one join processor per side, and
//! a merge of their output. Semantics are in `ops/stream_join.rs`.

use std::sync::Arc;

use streams_core::{NodeRef, StoreKind, StoreSpec};

use crate::kstream::KStream;
use crate::ops::stream_join::{JoinClocks, SideJoiner, StreamJoinSide, LEFT, RIGHT};
use crate::options::{Serdes, StreamJoined};
use crate::windows::JoinWindows;

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    pub(crate) fn stream_join<VO: Clone + 'static, R: Clone + 'static>(
        &self,
        other: &KStream<K, VO>,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
        (emit_left, emit_right): (bool, bool),
        joiner: SideJoiner<V, VO, R>,
    ) -> KStream<K, R> {
        let this = if self.needs_repartition {
            self.through_repartition(Serdes::none(), None)
        } else {
            self.clone()
        };
        let that = if other.needs_repartition {
            other.through_repartition(Serdes::none(), None)
        } else {
            other.clone()
        };
        let key = joined
            .key
            .clone()
            .or_else(|| this.serdes.key.clone())
            .or_else(|| that.serdes.key.clone());
        let value = joined.value.clone().or_else(|| this.serdes.value.clone());
        let other_value = joined
            .other_value
            .clone()
            .or_else(|| that.serdes.value.clone());
        let (Some(ks), Some(vs), Some(vos)) = (key, value, other_value) else {
            self.graph
                .borrow_mut()
                .missing_serde("stream-stream join", "key and both values");
            return this.derive(NodeRef::dangling(), Serdes::none(), false);
        };
        let (before, after, grace) = (windows.before_ms(), windows.after_ms(), windows.grace_ms());
        let problem = if before.saturating_add(after) < 0 {
            Some(format!(
                "before + after must not be negative, got {before} + {after} ms"
            ))
        } else {
            crate::windows::fits("before + after + grace + 1", &[before, after, grace, 1]).err()
        };
        if let Some(problem) = problem {
            self.graph.borrow_mut().invalid("JoinWindows", problem);
            return this.derive(NodeRef::dangling(), Serdes::none(), false);
        }
        let base = self
            .graph
            .borrow_mut()
            .name("KSTREAM-JOIN", joined.name.as_deref());
        let this_store = format!("{base}-this-store");
        let other_store = format!("{base}-other-store");
        let unmatched_store = (emit_left || emit_right).then(|| format!("{base}-unmatched-store"));
        let buffer = |name: &str| StoreSpec {
            name: name.to_string(),
            kind: StoreKind::Window {
                // As Kafka Streams' join buffers: a record stays visible while
                // `t + before + after + grace` is after the side's stream time.
                retention_ms: before.saturating_add(after).saturating_add(grace),
                window_size_ms: before.saturating_add(after).saturating_add(1),
                retain_duplicates: true,
                timestamped: false,
            },
            persistent: !joined.in_memory,
            logged: joined.logging,
            cached: false,
        };
        let mut specs = vec![buffer(&this_store), buffer(&other_store)];
        if let Some(name) = &unmatched_store {
            specs.push(StoreSpec {
                kind: StoreKind::KeyValue { timestamped: false },
                ..buffer(name)
            });
        }
        let clocks = Arc::new(JoinClocks::default());
        let side = {
            let (ks, unmatched_store) = (ks.clone(), unmatched_store.clone());
            move |side: u8, this_store: String, other_store: String| {
                let (ks, unmatched_store, clocks) =
                    (ks.clone(), unmatched_store.clone(), clocks.clone());
                move |inst: &mut streams_core::Instantiation<'_>| {
                    Ok::<_, streams_core::Error>((
                        inst.node_name().to_string(),
                        inst.window_store(&this_store)?,
                        inst.window_store(&other_store)?,
                        unmatched_store
                            .as_deref()
                            .map(|s| inst.kv_store(s))
                            .transpose()?,
                        (ks.clone(), clocks.clock(inst.task_id())),
                        side,
                    ))
                }
            }
        };
        let left_open = side(LEFT, this_store.clone(), other_store.clone());
        let (lvs, lvos, left_joiner) = (vs.clone(), vos.clone(), joiner.clone());
        let left = this.add(
            "KSTREAM-JOINTHIS",
            Some(&format!("{base}-this")),
            move |inst, down| {
                let (name, this_store, other_store, unmatched, (key_serde, join_time), side) =
                    left_open(inst)?;
                Ok(StreamJoinSide {
                    name,
                    side,
                    this_store,
                    other_store,
                    unmatched,
                    emit_unmatched: emit_left,
                    key_serde,
                    this_serde: lvs.clone(),
                    other_serde: lvos.clone(),
                    before_ms: before,
                    after_ms: after,
                    grace_ms: grace,
                    join_time,
                    joiner: left_joiner.clone(),
                    down,
                })
            },
        );
        let right_open = side(RIGHT, other_store.clone(), this_store.clone());
        let right = that.add(
            "KSTREAM-JOINOTHER",
            Some(&format!("{base}-other")),
            move |inst, down| {
                let (name, this_store, other_store, unmatched, (key_serde, join_time), side) =
                    right_open(inst)?;
                let joiner = joiner.clone();
                Ok(StreamJoinSide {
                    name,
                    side,
                    this_store,
                    other_store,
                    unmatched,
                    emit_unmatched: emit_right,
                    key_serde,
                    this_serde: vos.clone(),
                    other_serde: vs.clone(),
                    before_ms: after,
                    after_ms: before,
                    grace_ms: grace,
                    join_time,
                    joiner: Arc::new(move |r: Option<&VO>, l: Option<&V>| joiner(l, r)),
                    down,
                })
            },
        );
        let mut s = self.graph.borrow_mut();
        for spec in specs {
            let name = spec.name.clone();
            s.add_store(spec);
            for node in [left.id, right.id] {
                s.connect_store(node, &name);
            }
        }
        s.copartition(this.node.id, that.node.id);
        let merged = s.merge(
            "KSTREAM-MERGE",
            Some(&format!("{base}-merge")),
            &[left, right],
        );
        drop(s);
        KStream {
            graph: self.graph.clone(),
            node: merged,
            serdes: Serdes {
                key: Some(ks),
                value: None,
            },
            needs_repartition: false,
        }
    }
}
