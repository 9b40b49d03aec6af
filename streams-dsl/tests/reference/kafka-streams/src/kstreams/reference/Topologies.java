package kstreams.reference;

import java.time.Duration;
import java.util.Map;

import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.GlobalKTable;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.JoinWindows;
import org.apache.kafka.streams.kstream.KGroupedStream;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.SessionWindows;
import org.apache.kafka.streams.kstream.SlidingWindows;
import org.apache.kafka.streams.kstream.StreamJoined;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.kstream.WindowedSerdes;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.SessionStore;
import org.apache.kafka.streams.state.WindowStore;

/**
 * The reference topologies, one per name, each parameterised by the case's settings. Input
 * topics are "input" (one input), or "left" and "right" (joins), and "global" (the global
 * table); every topology writes to "output". Keys and values are strings; counts are Longs
 * (Kafka's LongSerde); windowed keys use Kafka's windowed serdes. Every store is uncached, so
 * every update shows. streams-dsl/tests/dsl_reference.rs builds the same topologies with the
 * Rust DSL: change both together.
 */
final class Topologies {
    private static final Serde<String> S = Serdes.String();
    private static final Serde<Long> L = Serdes.Long();

    private Topologies() {}

    static Topology build(String name, Map<String, String> p) {
        StreamsBuilder b = new StreamsBuilder();
        switch (name) {
            case "count" -> input(b).groupByKey(Grouped.with(S, S))
                .count(kv(L))
                .toStream().to("output", Produced.with(S, L));
            case "reduce" -> input(b).groupByKey(Grouped.with(S, S))
                .reduce((a, v) -> a + "+" + v, kv(S))
                .toStream().to("output", Produced.with(S, S));
            case "aggregate" -> input(b).groupByKey(Grouped.with(S, S))
                .aggregate(() -> "i", (k, v, a) -> a + "," + v, kv(S))
                .toStream().to("output", Produced.with(S, S));
            case "select-key" -> input(b).selectKey((k, v) -> v)
                .groupByKey(Grouped.with(S, S))
                .count(kv(L))
                .toStream().to("output", Produced.with(S, L));
            case "windowed" -> windowed(b, p);
            case "stream-table" -> {
                KTable<String, String> right = b.table("right", Consumed.with(S, S), kv(S));
                KStream<String, String> left = b.stream("left", Consumed.with(S, S));
                KStream<String, String> out = switch (mode(p)) {
                    case "inner" -> left.join(right, (l, r) -> l + "/" + r);
                    case "left" -> left.leftJoin(right, (l, r) -> l + "/" + r);
                    default -> throw new IllegalArgumentException("stream-table mode " + mode(p));
                };
                out.to("output", Produced.with(S, S));
            }
            case "table-table" -> {
                KTable<String, String> left = b.table("left", Consumed.with(S, S), kv(S));
                KTable<String, String> right = b.table("right", Consumed.with(S, S), kv(S));
                KTable<String, String> out = switch (mode(p)) {
                    case "inner" -> left.join(right, (l, r) -> l + "/" + r);
                    case "left" -> left.leftJoin(right, (l, r) -> l + "/" + r);
                    case "outer" -> left.outerJoin(right, (l, r) -> l + "/" + r);
                    default -> throw new IllegalArgumentException("table-table mode " + mode(p));
                };
                out.toStream().to("output", Produced.with(S, S));
            }
            case "stream-stream" -> {
                KStream<String, String> left = b.stream("left", Consumed.with(S, S));
                KStream<String, String> right = b.stream("right", Consumed.with(S, S));
                JoinWindows w = JoinWindows.ofTimeDifferenceAndGrace(ms(p, "before"), ms(p, "grace"))
                    .after(ms(p, "after"));
                StreamJoined<String, String, String> j = StreamJoined.with(S, S, S);
                KStream<String, String> out = switch (mode(p)) {
                    case "inner" -> left.join(right, (l, r) -> l + "/" + r, w, j);
                    case "left" -> left.leftJoin(right, (l, r) -> l + "/" + r, w, j);
                    case "outer" -> left.outerJoin(right, (l, r) -> l + "/" + r, w, j);
                    default -> throw new IllegalArgumentException("stream-stream mode " + mode(p));
                };
                out.to("output", Produced.with(S, S));
            }
            case "table-groupby" -> {
                // Rows are re-grouped by their value; the new value is the row's key.
                var grouped = b.table("input", Consumed.with(S, S), kv(S))
                    .groupBy((k, v) -> KeyValue.pair(v, k), Grouped.with(S, S));
                switch (p.getOrDefault("agg", "count")) {
                    case "count" -> held(grouped.count(kv(L)), p).toStream().to("output", Produced.with(S, L));
                    case "reduce" -> held(grouped.reduce((a, v) -> a + "+" + v, (a, v) -> a + "-" + v, kv(S)), p)
                        .toStream().to("output", Produced.with(S, S));
                    default -> throw new IllegalArgumentException("table-groupby agg " + p.get("agg"));
                }
            }
            case "global" -> {
                GlobalKTable<String, String> g = b.globalTable("global", Consumed.with(S, S),
                    Materialized.<String, String, KeyValueStore<Bytes, byte[]>>as("global")
                        .withKeySerde(S).withValueSerde(S));
                KStream<String, String> left = b.stream("left", Consumed.with(S, S));
                KStream<String, String> out = switch (mode(p)) {
                    case "inner" -> left.join(g, (k, v) -> v, (l, r) -> l + "/" + r);
                    case "left" -> left.leftJoin(g, (k, v) -> v, (l, r) -> l + "/" + r);
                    default -> throw new IllegalArgumentException("global mode " + mode(p));
                };
                out.to("output", Produced.with(S, S));
            }
            default -> throw new IllegalArgumentException("no reference topology " + name);
        }
        return b.build();
    }

    private static void windowed(StreamsBuilder b, Map<String, String> p) {
        KGroupedStream<String, String> g = input(b).groupByKey(Grouped.with(S, S));
        boolean suppress = Boolean.parseBoolean(p.getOrDefault("suppress", "false"));
        Duration grace = ms(p, "grace");
        String kind = p.getOrDefault("kind", "tumbling");
        if (kind.equals("session")) {
            KTable<Windowed<String>, Long> t = g
                .windowedBy(SessionWindows.ofInactivityGapAndGrace(ms(p, "gap"), grace))
                .count(Materialized.<String, Long, SessionStore<Bytes, byte[]>>with(S, L)
                    .withCachingDisabled());
            if (suppress) {
                t = t.suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()));
            }
            t.toStream().to("output", Produced.with(WindowedSerdes.sessionWindowedSerdeFrom(String.class), L));
            return;
        }
        long size = Long.parseLong(p.getOrDefault("size", "0"));
        var windowed = switch (kind) {
            case "tumbling" -> g.windowedBy(TimeWindows.ofSizeAndGrace(ms(p, "size"), grace));
            case "hopping" -> g.windowedBy(
                TimeWindows.ofSizeAndGrace(ms(p, "size"), grace).advanceBy(ms(p, "advance")));
            case "sliding" -> g.windowedBy(SlidingWindows.ofTimeDifferenceAndGrace(ms(p, "size"), grace));
            default -> throw new IllegalArgumentException("window kind " + kind);
        };
        KTable<Windowed<String>, Long> t = windowed.count(
            Materialized.<String, Long, WindowStore<Bytes, byte[]>>with(S, L).withCachingDisabled());
        if (suppress) {
            t = t.suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()));
        }
        t.toStream().to("output", Produced.with(WindowedSerdes.timeWindowedSerdeFrom(String.class, size), L));
    }

    /** The table, its updates suppressed as "suppress" says: "time:MS" holds a key's updates
     * for MS ms (unbounded buffer), "records:N" holds at most N keys with no time limit and
     * emits the oldest early when full; absent, nothing is held. */
    private static <V> KTable<String, V> held(KTable<String, V> t, Map<String, String> p) {
        String s = p.get("suppress");
        if (s == null) {
            return t;
        }
        if (s.startsWith("time:")) {
            return t.suppress(Suppressed.untilTimeLimit(
                Duration.ofMillis(Long.parseLong(s.substring(5))), Suppressed.BufferConfig.unbounded()));
        }
        if (s.startsWith("records:")) {
            return t.suppress(Suppressed.untilTimeLimit(Duration.ofMillis(Long.MAX_VALUE),
                Suppressed.BufferConfig.maxRecords(Long.parseLong(s.substring(8))).emitEarlyWhenFull()));
        }
        throw new IllegalArgumentException("suppress " + s);
    }

    private static KStream<String, String> input(StreamsBuilder b) {
        return b.stream("input", Consumed.with(S, S));
    }

    private static <V> Materialized<String, V, KeyValueStore<Bytes, byte[]>> kv(Serde<V> values) {
        return Materialized.<String, V, KeyValueStore<Bytes, byte[]>>with(S, values).withCachingDisabled();
    }

    private static String mode(Map<String, String> p) {
        return p.getOrDefault("mode", "inner");
    }

    private static Duration ms(Map<String, String> p, String name) {
        String v = p.get(name);
        if (v == null) {
            throw new IllegalArgumentException("missing parameter " + name);
        }
        return Duration.ofMillis(Long.parseLong(v));
    }
}
