package kstreams.reference;

import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.test.TestRecord;

/**
 * Runs a file of cases through Kafka Streams' TopologyTestDriver, one JVM for all of them.
 *
 * <pre>
 *   java -cp 'JARS/*:CLASSES' kstreams.reference.Runner CASES RESULTS
 * </pre>
 *
 * CASES, a line-based text file ('#' starts a comment line):
 * <pre>
 *   case NAME TOPOLOGY [PARAM=VALUE ...]
 *   TOPIC KEY VALUE TIMESTAMP        one input record, piped in this order
 *   end
 * </pre>
 * KEY and VALUE are strings without whitespace, "~" for null (a null key, a tombstone).
 *
 * RESULTS, for each case in order:
 * <pre>
 *   case NAME
 *   output KEY VALUE TIMESTAMP       every record written to "output", in order
 *   error MESSAGE                    instead, when the case failed (its other lines stop there)
 *   end
 * </pre>
 * KEY and VALUE here are the record's bytes: "~" for null, else "x" and the bytes in hex.
 */
public final class Runner {
    /** Kafka Streams' internal setting of how often (wall-clock) a left or outer stream–stream
     * join looks for unmatched records to emit; 0 looks on every record, so that the output
     * does not depend on the wall clock. Kafka's own join tests set it the same way. */
    private static final String OUTER_JOIN_EMIT_INTERVAL =
        "__emit.interval.ms.kstreams.outer.join.spurious.results.fix__";

    private record Input(String topic, String key, String value, long timestamp) {}

    private record Case(String name, String topology, Map<String, String> params, List<Input> inputs) {}

    public static void main(String[] args) throws IOException {
        if (args.length != 2) {
            System.err.println("usage: Runner CASES RESULTS");
            System.exit(2);
        }
        List<Case> cases = parse(Path.of(args[0]));
        Path state = Files.createTempDirectory("kstreams-reference-");
        try (BufferedWriter out = Files.newBufferedWriter(Path.of(args[1]), StandardCharsets.UTF_8)) {
            int n = 0;
            for (Case c : cases) {
                out.write("case " + c.name() + "\n");
                try {
                    for (String line : run(c, state.resolve(Integer.toString(n++)))) {
                        out.write(line);
                        out.write('\n');
                    }
                } catch (RuntimeException e) {
                    StringWriter trace = new StringWriter();
                    e.printStackTrace(new PrintWriter(trace));
                    out.write("error " + trace.toString().replace('\n', ' ').replace('\t', ' ') + "\n");
                }
                out.write("end\n");
            }
        }
    }

    private static List<String> run(Case c, Path state) {
        Topology topology = Topologies.build(c.topology(), c.params());
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, "reference");
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, "unused:9092");
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0L);
        props.put(StreamsConfig.STATE_DIR_CONFIG, state.toString());
        props.put(OUTER_JOIN_EMIT_INTERVAL, 0L);
        List<String> lines = new ArrayList<>();
        try (TopologyTestDriver driver = new TopologyTestDriver(topology, props)) {
            Map<String, TestInputTopic<String, String>> topics = new HashMap<>();
            for (Input in : c.inputs()) {
                topics.computeIfAbsent(in.topic(), t ->
                        driver.createInputTopic(t, new StringSerializer(), new StringSerializer()))
                    .pipeInput(in.key(), in.value(), in.timestamp());
            }
            TestOutputTopic<byte[], byte[]> output = driver.createOutputTopic(
                "output", new ByteArrayDeserializer(), new ByteArrayDeserializer());
            for (TestRecord<byte[], byte[]> r : output.readRecordsToList()) {
                lines.add("output " + hex(r.key()) + " " + hex(r.value()) + " " + r.timestamp());
            }
        }
        return lines;
    }

    private static List<Case> parse(Path file) throws IOException {
        List<Case> cases = new ArrayList<>();
        Case current = null;
        int lineNo = 0;
        try (BufferedReader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
            for (String line; (line = r.readLine()) != null; ) {
                lineNo++;
                String t = line.strip();
                if (t.isEmpty() || t.startsWith("#")) {
                    continue;
                }
                String[] f = t.split("\\s+");
                if (f[0].equals("case") && current == null && f.length >= 3) {
                    Map<String, String> params = new LinkedHashMap<>();
                    for (int i = 3; i < f.length; i++) {
                        int eq = f[i].indexOf('=');
                        if (eq < 0) {
                            throw new IOException(file + ":" + lineNo + ": parameter without '=': " + f[i]);
                        }
                        params.put(f[i].substring(0, eq), f[i].substring(eq + 1));
                    }
                    current = new Case(f[1], f[2], params, new ArrayList<>());
                } else if (f[0].equals("end") && current != null && f.length == 1) {
                    cases.add(current);
                    current = null;
                } else if (current != null && f.length == 4) {
                    current.inputs().add(new Input(f[0], nullable(f[1]), nullable(f[2]), Long.parseLong(f[3])));
                } else {
                    throw new IOException(file + ":" + lineNo + ": unexpected line: " + line);
                }
            }
        }
        if (current != null) {
            throw new IOException(file + ": case " + current.name() + " has no end");
        }
        return cases;
    }

    private static String nullable(String token) {
        return token.equals("~") ? null : token;
    }

    private static String hex(byte[] bytes) {
        if (bytes == null) {
            return "~";
        }
        StringBuilder s = new StringBuilder(1 + 2 * bytes.length).append('x');
        for (byte b : bytes) {
            s.append(Character.forDigit((b >> 4) & 0xf, 16)).append(Character.forDigit(b & 0xf, 16));
        }
        return s.toString();
    }
}
