//! The `streams-log` tool, run as a process on a temporary log: topics, produce and consume
//! with exact output, consumer-group offsets and resets, and its errors.
//!
//! The log admits one process at a time, so a test that opens it with the API to set up or
//! check offsets drops it before running the tool (except the test of the lock error).
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use streams_core::{
    partition_for_key, EmbeddedLog, EmbeddedLogConfig, Log, StreamsConfig, TopicPartition,
};
use tempfile::TempDir;

/// A temporary log directory and a way to run the tool on it.
struct Tool {
    _dir: TempDir,
    log: PathBuf,
}

/// What one run of the tool did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts success and no complaints; returns stdout.
    #[track_caller]
    fn ok(self) -> String {
        assert_eq!(self.code, Some(0), "stderr: {}", self.stderr);
        assert_eq!(self.stderr, "");
        self.stdout
    }

    /// Asserts success; returns stdout and what was said on stderr.
    #[track_caller]
    fn ok_saying(self) -> (String, String) {
        assert_eq!(self.code, Some(0), "stderr: {}", self.stderr);
        (self.stdout, self.stderr)
    }

    /// Asserts a failure with exit code 1 and one line on stderr; returns that line.
    #[track_caller]
    fn error(self) -> String {
        assert_eq!(self.code, Some(1), "stdout: {}", self.stdout);
        assert_eq!(self.stderr.lines().count(), 1, "stderr: {}", self.stderr);
        assert!(self.stderr.starts_with("error: "), "{}", self.stderr);
        self.stderr.trim_end().to_string()
    }

    /// Asserts that argument parsing refused the command (exit code 2); returns stderr.
    #[track_caller]
    fn usage_error(self) -> String {
        assert_eq!(self.code, Some(2), "stdout: {}", self.stdout);
        self.stderr
    }
}

fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streams-log"));
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

impl Tool {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        Tool { _dir: dir, log }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = command();
        cmd.arg("--log-dir").arg(&self.log).args(args);
        cmd
    }

    /// Runs the tool with `stdin` as its input.
    fn run_with(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = self.command(args).spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap().into()
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, "")
    }

    /// Opens the log with the API; drop it before running the tool again.
    fn open(&self) -> EmbeddedLog {
        let config = EmbeddedLogConfig::default().with_cleaner_interval(None);
        EmbeddedLog::open_with(&self.log, config).unwrap()
    }
}

/// A log with topic `payments` (3 partitions) holding five records at timestamps 1000–1004:
/// EUR and USD go to partition 0, GBP to 1, nothing to 2.
fn payments() -> Tool {
    let tool = Tool::new();
    tool.run(&["create", "payments", "--partitions", "3"]).ok();
    for (i, line) in ["EUR,1250", "USD,99", "GBP,7", "EUR,1300", "GBP,8"]
        .iter()
        .enumerate()
    {
        let ts = (1000 + i).to_string();
        let out = tool
            .run_with(&["produce", "payments", "--timestamp-ms", &ts], line)
            .ok();
        assert_eq!(out, "appended 1 record to `payments`\n");
    }
    tool
}

#[test]
fn create_produce_consume_round_trip() {
    let tool = Tool::new();
    let out = tool.run(&["create", "payments", "--partitions", "3"]).ok();
    assert_eq!(
        out,
        "created topic `payments`: 3 partitions, cleanup.policy=delete, retention.ms=604800000\n"
    );
    let out = tool
        .run(&["create", "rates", "--partitions", "2", "--compact"])
        .ok();
    assert_eq!(
        out,
        "created topic `rates`: 2 partitions, cleanup.policy=compact, retention.ms=none\n"
    );
    let out = tool.run(&["topics"]).ok();
    assert_eq!(
        out,
        "TOPIC     PARTITIONS  CLEANUP\n\
         payments  3           delete\n\
         rates     2           compact\n"
    );

    let input = "EUR,1250\nUSD,99\nGBP,7,5\r\nEUR,1300\n";
    let out = tool
        .run_with(&["produce", "payments", "--timestamp-ms", "1000"], input)
        .ok();
    assert_eq!(out, "appended 4 records to `payments`\n");
    let out = tool.run(&["consume", "payments"]).ok();
    // Partition by partition; the value keeps everything after the first separator.
    assert_eq!(
        out,
        "0,0,1000,EUR,1250\n\
         0,1,1000,USD,99\n\
         0,2,1000,EUR,1300\n\
         1,0,1000,GBP,7,5\n"
    );
    let out = tool
        .run(&["consume", "payments", "--format", "json", "--max", "1"])
        .ok();
    assert_eq!(
        out,
        "{\"partition\":0,\"offset\":0,\"timestamp\":1000,\"key\":\"EUR\",\"value\":\"1250\",\"headers\":[]}\n"
    );

    let out = tool.run(&["describe", "payments"]).ok();
    assert!(
        out.starts_with(
            "topic                payments\n\
             partitions           3\n\
             cleanup.policy       delete\n\
             retention.ms         604800000\n\
             retention.bytes      none\n\
             delete.retention.ms  86400000\n\
             segment.bytes        67108864\n\
             \n\
             PARTITION  START  END  STABLE-END  SEGMENTS  BYTES\n"
        ),
        "{out}"
    );
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(9)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let offsets: Vec<_> = rows.iter().map(|r| (r[0], r[1], r[2], r[3])).collect();
    assert_eq!(
        offsets,
        [
            ("0", "0", "3", "3"),
            ("1", "0", "1", "1"),
            ("2", "0", "0", "0")
        ]
    );
}

#[test]
fn keys_go_to_the_partition_of_partition_for_key() {
    let tool = Tool::new();
    tool.run(&["create", "t", "--partitions", "7"]).ok();
    let keys: Vec<String> = (0..60).map(|i| format!("key-{i}")).collect();
    let input: String = keys.iter().map(|k| format!("{k},v\n")).collect();
    assert_eq!(
        tool.run_with(&["produce", "t"], &input).ok(),
        "appended 60 records to `t`\n"
    );
    let out = tool.run(&["consume", "t"]).ok();
    let mut seen = 0;
    for line in out.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        let partition: u32 = fields[0].parse().unwrap();
        assert_eq!(
            partition,
            partition_for_key(fields[3].as_bytes(), 7),
            "{line}"
        );
        seen += 1;
    }
    assert_eq!(seen, 60);
    // More than one partition is used, so the check above means something.
    let used: std::collections::BTreeSet<&str> = out.lines().map(|l| &l[..1]).collect();
    assert!(used.len() > 3, "{used:?}");

    // --partition overrides the key's partition.
    let p = (partition_for_key(b"key-0", 7) + 1) % 7;
    let out = tool
        .run_with(
            &["produce", "t", "--partition", &p.to_string()],
            "key-0,x\n",
        )
        .ok();
    assert_eq!(out, "appended 1 record to `t`\n");
    let out = tool
        .run(&["consume", "t", "--partition", &p.to_string()])
        .ok();
    assert!(out.lines().last().unwrap().ends_with(",key-0,x"), "{out}");
}

#[test]
fn tombstones_and_values_without_keys() {
    let tool = Tool::new();
    tool.run(&["create", "rates", "--partitions", "1", "--compact"])
        .ok();
    let input = "EUR,0.86\nEUR,\n";
    let out = tool
        .run_with(
            &["produce", "rates", "--tombstones", "--timestamp-ms", "5"],
            input,
        )
        .ok();
    assert_eq!(out, "appended 2 records to `rates`\n");
    // Without --tombstones an empty value is an empty value, not a null.
    tool.run_with(&["produce", "rates", "--timestamp-ms", "6"], "EUR,\n")
        .ok();
    let out = tool.run(&["consume", "rates"]).ok();
    assert_eq!(out, "0,0,5,EUR,0.86\n0,1,5,EUR,<null>\n0,2,6,EUR,\n");
    let out = tool
        .run(&["consume", "rates", "--format", "json", "--from-offset", "1"])
        .usage_error();
    assert!(out.contains("--partition"), "{out}");
    let out = tool
        .run(&[
            "consume",
            "rates",
            "--format",
            "json",
            "--partition",
            "0",
            "--from-offset",
            "1",
        ])
        .ok();
    assert_eq!(
        out,
        "{\"partition\":0,\"offset\":1,\"timestamp\":5,\"key\":\"EUR\",\"value\":null,\"headers\":[]}\n\
         {\"partition\":0,\"offset\":2,\"timestamp\":6,\"key\":\"EUR\",\"value\":\"\",\"headers\":[]}\n"
    );

    // A compacted topic refuses records without a key, before reading any input.
    let err = tool
        .run_with(&["produce", "rates", "--no-key"], "x\n")
        .error();
    assert_eq!(
        err,
        "error: topic `rates` is compacted, so every record needs a key: drop --no-key"
    );

    // Values without keys are spread round-robin over the partitions.
    tool.run(&["create", "events", "--partitions", "2"]).ok();
    let out = tool
        .run_with(
            &["produce", "events", "--no-key", "--timestamp-ms", "9"],
            "a,1\nb\nc\n",
        )
        .ok();
    assert_eq!(out, "appended 3 records to `events`\n");
    let out = tool.run(&["consume", "events"]).ok();
    assert_eq!(out, "0,0,9,<null>,a,1\n0,1,9,<null>,c\n1,0,9,<null>,b\n");
}

#[test]
fn malformed_lines_are_reported_with_their_numbers_and_skipped() {
    let tool = Tool::new();
    tool.run(&["create", "t", "--partitions", "1"]).ok();
    let input = "a,1\nno separator here\n\n,empty key\nb;2\nc,3\n";
    let run = tool.run_with(&["produce", "t", "--timestamp-ms", "1"], input);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "appended 2 records to `t` (3 malformed lines skipped)\n"
    );
    assert_eq!(
        run.stderr,
        "line 2: no `,` between key and value (use --no-key for lines that are only a value); skipped\n\
         line 4: empty key (use --no-key for records without a key); skipped\n\
         line 5: no `,` between key and value (use --no-key for lines that are only a value); skipped\n"
    );
    assert_eq!(tool.run(&["consume", "t"]).ok(), "0,0,1,a,1\n0,1,1,c,3\n");

    // Another separator makes line 5 good; bytes that are not UTF-8 are printed lossily.
    let run = tool.run_with(
        &["produce", "t", "--separator", ";", "--timestamp-ms", "2"],
        "b;2\nbad\n",
    );
    assert_eq!(
        run.stdout,
        "appended 1 record to `t` (1 malformed line skipped)\n"
    );
    assert!(run.stderr.starts_with("line 2: no `;` "), "{}", run.stderr);
    let mut child = tool
        .command(&["produce", "t", "--timestamp-ms", "3"])
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"k\xff,v\xfe\n")
        .unwrap();
    Run::from(child.wait_with_output().unwrap()).ok();
    let out = tool
        .run(&["consume", "t", "--partition", "0", "--from-offset", "3"])
        .ok();
    assert_eq!(out, "0,3,3,k\u{fffd},v\u{fffd}\n");
}

#[test]
fn consume_from_offset_timestamp_and_max() {
    let tool = payments();
    let out = tool
        .run(&[
            "consume",
            "payments",
            "--partition",
            "0",
            "--from-offset",
            "1",
        ])
        .ok();
    assert_eq!(out, "0,1,1001,USD,99\n0,2,1003,EUR,1300\n");
    // From a timestamp: in each partition, the first record at or after it.
    let out = tool
        .run(&["consume", "payments", "--from-timestamp", "1002"])
        .ok();
    assert_eq!(out, "0,2,1003,EUR,1300\n1,0,1002,GBP,7\n1,1,1004,GBP,8\n");
    let out = tool
        .run(&["consume", "payments", "--from-timestamp", "5000"])
        .ok();
    assert_eq!(out, "");
    let out = tool
        .run(&["consume", "payments", "--from-beginning", "--max", "2"])
        .ok();
    assert_eq!(out, "0,0,1000,EUR,1250\n0,1,1001,USD,99\n");
    let err = tool
        .run(&[
            "consume",
            "payments",
            "--partition",
            "0",
            "--from-offset",
            "9",
        ])
        .error();
    assert_eq!(
        err,
        "error: offset 9 is out of range for payments-0 (valid: 0..=3)"
    );
    let err = tool
        .run(&["consume", "payments", "--partition", "3"])
        .error();
    assert_eq!(
        err,
        "error: partition 3 is out of range for topic `payments` (3 partitions)"
    );
}

#[test]
fn follow_prints_records_produced_later_by_another_process() {
    let tool = payments();
    let mut follower = tool
        .command(&[
            "consume",
            "payments",
            "--partition",
            "2",
            "--follow",
            "--max",
            "2",
        ])
        .spawn()
        .unwrap();
    // The follower closes the log between polls; a producer waits for its turn.
    std::thread::sleep(Duration::from_millis(300));
    let p2 = (0..)
        .map(|i| format!("k{i}"))
        .filter(|k| partition_for_key(k.as_bytes(), 3) == 2)
        .take(2)
        .collect::<Vec<_>>();
    for (i, key) in p2.iter().enumerate() {
        let ts = (2000 + i).to_string();
        tool.run_with(
            &[
                "produce",
                "payments",
                "--lock-wait-ms",
                "10000",
                "--timestamp-ms",
                &ts,
            ],
            &format!("{key},v{i}\n"),
        )
        .ok();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while follower.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            follower.kill().unwrap();
            panic!("the follower did not stop after --max records");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let run = Run::from(follower.wait_with_output().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        format!("2,0,2000,{},v0\n2,1,2001,{},v1\n", p2[0], p2[1])
    );
}

#[test]
fn group_offsets_and_lag() {
    let tool = payments();
    {
        let log = tool.open();
        log.commit_offsets(
            "app",
            &[
                (TopicPartition::new("payments", 0), 1),
                (TopicPartition::new("payments", 1), 2),
            ],
        )
        .unwrap();
        log.commit_offsets("other", &[(TopicPartition::new("payments", 0), 3)])
            .unwrap();
    }
    let out = tool.run(&["offsets", "app"]).ok();
    assert_eq!(
        out,
        "TOPIC     PARTITION  COMMITTED  END  LAG\n\
         payments  0          1          3    2\n\
         payments  1          2          2    0\n\
         payments  2          -          0    0\n\
         total lag: 2\n"
    );
    let out = tool.run(&["groups"]).ok();
    assert_eq!(
        out,
        "GROUP  TOPICS    LAG\n\
         app    payments  2\n\
         other  payments  2\n"
    );
    // A consumer can start where the group left off.
    let out = tool.run(&["consume", "payments", "--group", "app"]).ok();
    assert_eq!(out, "0,1,1001,USD,99\n0,2,1003,EUR,1300\n");
    let err = tool.run(&["offsets", "nobody"]).error();
    assert_eq!(
        err,
        "error: group `nobody` has no committed offsets (see `streams-log groups`)"
    );
}

#[test]
fn reset_offsets_to_earliest_latest_timestamp_and_offset() {
    let tool = payments();
    let committed = |tool: &Tool| {
        let log = tool.open();
        let offsets = log.committed_offsets("app").unwrap();
        offsets
            .into_iter()
            .map(|(tp, o)| (tp.partition, o))
            .collect::<Vec<_>>()
    };
    tool.open()
        .commit_offsets("app", &[(TopicPartition::new("payments", 0), 2)])
        .unwrap();

    let out = tool
        .run(&[
            "reset-offsets",
            "app",
            "--topic",
            "payments",
            "--to-earliest",
            "--dry-run",
        ])
        .ok();
    assert_eq!(
        out,
        "TOPIC     PARTITION  OLD  NEW\n\
         payments  0          2    0\n\
         payments  1          -    0\n\
         payments  2          -    0\n\
         dry run: nothing committed\n"
    );
    assert_eq!(committed(&tool), [(0, 2)]);

    let out = tool
        .run(&[
            "reset-offsets",
            "app",
            "--topic",
            "payments",
            "--to-earliest",
        ])
        .ok();
    assert!(
        out.ends_with("committed 3 offsets for group `app`\n"),
        "{out}"
    );
    assert_eq!(committed(&tool), [(0, 0), (1, 0), (2, 0)]);

    let out = tool
        .run(&["reset-offsets", "app", "--topic", "payments", "--to-latest"])
        .ok();
    assert_eq!(
        out,
        "TOPIC     PARTITION  OLD  NEW\n\
         payments  0          0    3\n\
         payments  1          0    2\n\
         payments  2          0    0\n\
         committed 3 offsets for group `app`\n"
    );
    assert_eq!(committed(&tool), [(0, 3), (1, 2), (2, 0)]);

    // Replay from an event time: the first record at or after it, or the end.
    tool.run(&[
        "reset-offsets",
        "app",
        "--topic",
        "payments",
        "--to-timestamp",
        "1002",
    ])
    .ok();
    assert_eq!(committed(&tool), [(0, 2), (1, 0), (2, 0)]);

    tool.run(&[
        "reset-offsets",
        "app",
        "--topic",
        "payments",
        "--partition",
        "1",
        "--to-offset",
        "1",
    ])
    .ok();
    assert_eq!(committed(&tool), [(0, 2), (1, 1), (2, 0)]);
    let err = tool
        .run(&[
            "reset-offsets",
            "app",
            "--topic",
            "payments",
            "--to-offset",
            "3",
        ])
        .error();
    assert_eq!(
        err,
        "error: offset 3 is out of range for payments-1 (valid: 0..=2)"
    );
    assert_eq!(committed(&tool), [(0, 2), (1, 1), (2, 0)]);

    // One destination is required.
    let err = tool
        .run(&["reset-offsets", "app", "--topic", "payments"])
        .usage_error();
    assert!(err.contains("--to-earliest"), "{err}");
}

#[test]
fn unknown_topic_is_a_one_line_error() {
    let tool = payments();
    for args in [
        &["consume", "nope"][..],
        &["describe", "nope"],
        &["produce", "nope"],
        &["reset-offsets", "g", "--topic", "nope", "--to-earliest"],
    ] {
        assert_eq!(tool.run(args).error(), "error: unknown topic `nope`");
    }
    let err = tool
        .run(&["create", "payments", "--partitions", "3"])
        .error();
    assert_eq!(
        err,
        "error: topic `payments` already exists (3 partitions, cleanup.policy=delete)"
    );
    tool.run(&["create", "payments", "--partitions", "3", "--if-not-exists"])
        .ok();
    let err = tool
        .run(&["create", "bad/name", "--partitions", "1"])
        .error();
    assert!(err.contains("bad/name"), "{err}");
}

#[test]
fn a_log_held_by_another_process_is_read_but_not_written() {
    let tool = payments();
    let held = tool.open();
    // Looking needs no lock: read-only commands work beside the writer.
    assert!(tool.run(&["topics"]).ok().contains("payments"));
    let err = tool.run(&["create", "other", "--partitions", "1"]).error();
    assert!(err.contains("is in use by another process"), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(err.ends_with("stop the application (or pass --lock-wait-ms) and try again"));
    // Nothing was appended while the log was held.
    let err = tool
        .run_with(&["produce", "payments", "--lock-wait-ms", "200"], "a,b\n")
        .error();
    assert!(err.contains("is in use by another process"), "{err}");
    assert_eq!(
        held.end_offset(&TopicPartition::new("payments", 0), Default::default())
            .unwrap(),
        3
    );
    drop(held);
    tool.run(&["create", "other", "--partitions", "1"]).ok();
}

#[test]
fn a_missing_log_or_state_dir_is_a_clear_error() {
    let tool = Tool::new();
    let err = tool.run(&["topics"]).error();
    assert_eq!(
        err,
        format!(
            "error: no embedded log at {}; `create` makes a new log",
            tool.log.display()
        )
    );
    let run: Run = command().arg("topics").output().unwrap().into();
    assert_eq!(
        run.error(),
        "error: no log given: pass --log-dir DIR, --state-dir DIR or --bootstrap-servers HOST:PORT"
    );
    // Kafka settings without a cluster, and a cluster beside a log directory: refused.
    let run: Run = command()
        .args(["--kafka-property", "sasl.password=x", "topics"])
        .output()
        .unwrap()
        .into();
    assert!(run.usage_error().contains("--bootstrap-servers"));
    let run: Run = command()
        .args([
            "--log-dir",
            "x",
            "--bootstrap-servers",
            "127.0.0.1:1",
            "topics",
        ])
        .output()
        .unwrap()
        .into();
    assert!(run.usage_error().contains("cannot be used with"));

    // --state-dir finds the log where the runtime puts it.
    let state = tool.log.parent().unwrap();
    assert_eq!(
        StreamsConfig::new("any", state).embedded_log_dir(),
        tool.log
    );
    tool.run(&["create", "t", "--partitions", "1"]).ok();
    let run: Run = command()
        .args(["--state-dir".as_ref(), state.as_os_str(), "topics".as_ref()])
        .output()
        .unwrap()
        .into();
    assert_eq!(
        run.ok(),
        "TOPIC  PARTITIONS  CLEANUP\nt      1           delete\n"
    );
    // The state directory passed as --log-dir gets a hint, not a new empty log.
    let run: Run = command()
        .args(["--log-dir".as_ref(), state.as_os_str(), "topics".as_ref()])
        .output()
        .unwrap()
        .into();
    assert!(run
        .error()
        .ends_with("it looks like a state directory: pass it as --state-dir"));
    assert!(!Path::new(state).join("topics").exists());
}

#[test]
fn every_subcommand_has_help() {
    for sub in [
        "topics",
        "create",
        "describe",
        "produce",
        "consume",
        "groups",
        "offsets",
        "reset-offsets",
        "delete",
        "application-reset",
    ] {
        let run: Run = command().args([sub, "--help"]).output().unwrap().into();
        let out = run.ok();
        assert!(out.contains("Usage: streams-log"), "{sub}: {out}");
        assert!(out.lines().next().unwrap().len() > 10, "{sub}: {out}");
    }
}

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

/// The segment files (`.log`) of partition 0 of `topic`, oldest first.
fn segments(tool: &Tool, topic: &str) -> Vec<PathBuf> {
    let dir = tool.log.join("topics").join(topic).join("0");
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

/// A log with a one-partition topic `t` of 300 records in segments of about 1 KiB.
fn many_segments() -> Tool {
    let tool = Tool::new();
    let log = tool.open();
    log.create_topic(
        "t",
        streams_core::TopicConfig::new(1).with_segment_bytes(1024),
    )
    .unwrap();
    let tp = TopicPartition::new("t", 0);
    for i in 0..300 {
        let record = streams_core::Record::new(format!("k{i}"), "v", i);
        log.append(&tp, &[record]).unwrap();
    }
    drop(log);
    assert!(
        segments(&tool, "t").len() >= 4,
        "{:?}",
        segments(&tool, "t")
    );
    tool
}

#[test]
fn looking_at_a_log_with_a_torn_tail_changes_no_file_and_says_what_it_skipped() {
    let tool = payments();
    let active = segments(&tool, "payments").pop().unwrap();
    // A batch whose length runs past the end: what a crash mid-append leaves.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&active)
        .unwrap();
    f.write_all(&[0x40, 0, 0, 0, 9, 9, 9]).unwrap();
    drop(f);
    let before = files(&tool.log);
    for args in [
        &["topics"][..],
        &["describe", "payments"],
        &["consume", "payments"],
        &["groups"],
    ] {
        let (out, said) = tool.run(args).ok_saying();
        assert!(
            said.contains(&active.display().to_string()),
            "{args:?}: {said}"
        );
        assert!(
            said.contains("7 bytes left (read-only)"),
            "{args:?}: {said}"
        );
        if args[0] == "consume" {
            assert_eq!(out.lines().count(), 5, "{out}");
        }
        assert_eq!(
            files(&tool.log),
            before,
            "`{}` changed the log",
            args.join(" ")
        );
    }
    // A writer cuts the torn bytes, says so, and appends after the last whole batch.
    let (_, said) = tool.run_with(&["produce", "payments"], "EUR,1").ok_saying();
    assert!(said.contains("7 bytes cut"), "{said}");
    let out = tool.run(&["consume", "payments"]).ok();
    assert_eq!(out.lines().count(), 6, "{out}");
}

#[test]
fn a_journal_whose_first_entry_is_damaged_is_an_error_and_is_kept() {
    let tool = payments();
    tool.run(&["reset-offsets", "app", "--topic", "payments", "--to-latest"])
        .ok();
    let journal = tool.log.join("meta.journal");
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes[9] ^= 0x10; // inside the first entry's payload
    std::fs::write(&journal, &bytes).unwrap();
    for args in [&["groups"][..], &["offsets", "app"]] {
        let err = tool.run(args).error();
        assert!(err.contains("meta.journal"), "{err}");
        assert!(err.contains("first entry is not valid"), "{err}");
    }
    // A writer refuses it too, rather than truncating every group's offsets away.
    let err = tool.run_with(&["produce", "payments"], "EUR,1").error();
    assert!(err.contains("first entry is not valid"), "{err}");
    assert_eq!(std::fs::read(&journal).unwrap(), bytes);

    // A damaged first entry that is also the last one is not taken for a torn write.
    let tool = Tool::new();
    tool.run(&["create", "t", "--partitions", "1"]).ok();
    let journal = tool.log.join("meta.journal");
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes[9] ^= 0x10;
    std::fs::write(&journal, &bytes).unwrap();
    for args in [&["groups"][..], &["create", "u", "--partitions", "1"]] {
        let err = tool.run(args).error();
        assert!(err.contains("first entry is not valid"), "{err}");
    }
    assert_eq!(std::fs::read(&journal).unwrap(), bytes);
}

#[test]
fn a_segment_missing_in_the_middle_is_an_error_naming_the_gap() {
    let tool = many_segments();
    let logs = segments(&tool, "t");
    let gone = &logs[logs.len() / 2];
    std::fs::remove_file(gone).unwrap();
    std::fs::remove_file(gone.with_extension("index")).unwrap();
    for args in [&["consume", "t"][..], &["describe", "t"]] {
        let err = tool.run(args).error();
        assert!(err.contains("are missing"), "{err}");
        assert!(
            err.contains(&logs[logs.len() / 2 - 1].display().to_string()),
            "{err}"
        );
    }
    // Its index alone left behind names the segment file.
    let tool = many_segments();
    let logs = segments(&tool, "t");
    std::fs::remove_file(&logs[1]).unwrap();
    let err = tool.run(&["consume", "t"]).error();
    assert!(err.contains(&logs[1].display().to_string()), "{err}");
    assert!(err.contains("segment file is missing"), "{err}");
}

#[test]
fn a_missing_last_segment_is_an_error_so_offsets_are_not_reused() {
    let tool = many_segments();
    let last = segments(&tool, "t").pop().unwrap();
    std::fs::remove_file(&last).unwrap();
    let err = tool.run(&["consume", "t"]).error();
    assert!(err.contains("last segment is missing"), "{err}");
    // A writer would hand out offsets again from the previous segment's end: refused.
    let err = tool.run_with(&["produce", "t"], "k,v").error();
    assert!(err.contains("last segment is missing"), "{err}");
    assert!(!last.exists());
}

/// Counts of `words` values (re-keyed by value: a repartition topic `wc-by-word-repartition`
/// and a changelog `wc-counts-changelog`), run in this process until caught up; returns the
/// store's contents. The log is closed again when this returns.
fn run_word_count(state: &Path) -> std::collections::BTreeMap<String, i64> {
    use std::sync::Arc;
    use streams_core::{I64Serde, StringSerde};
    use streams_dsl::prelude::*;

    let log = Arc::new(EmbeddedLog::open(state.join("log")).unwrap());
    let b = StreamsBuilder::new();
    b.stream::<String, String>("words", Consumed::default())
        .group_by(
            |_, word| word.clone(),
            Grouped::with(StringSerde, StringSerde).named("by-word"),
        )
        .count(Materialized::named("counts"));
    let config = StreamsConfig::new("wc", state).with_commit_interval(Duration::from_millis(50));
    let streams = streams_core::Streams::new(b.build().unwrap(), config, log).unwrap();
    streams.start().unwrap();
    streams
        .wait_until_caught_up(Duration::from_secs(120))
        .unwrap();
    // The tool cannot write the log while the application holds it.
    let held = command()
        .arg("--state-dir")
        .arg(state)
        .args(["application-reset", "--application-id", "wc"])
        .output()
        .unwrap();
    let held = Run::from(held).error();
    assert!(held.contains("stop the application"), "{held}");
    let counts = streams
        .key_value_store("counts", Arc::new(StringSerde), Arc::new(I64Serde))
        .unwrap()
        .all()
        .unwrap()
        .into_iter()
        .collect();
    streams.close().unwrap();
    counts
}

#[test]
fn application_reset_replays_an_application_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    {
        let log = EmbeddedLog::open(state.join("log")).unwrap();
        log.create_topic("words", streams_core::TopicConfig::new(2))
            .unwrap();
        for (i, word) in ["a", "b", "a", "c", "a", "b"].iter().enumerate() {
            let p = (i % 2) as u32;
            let record = streams_core::Record::new(format!("line{i}"), *word, 1000 + i as i64);
            log.append(&TopicPartition::new("words", p), &[record])
                .unwrap();
        }
    }
    let want: std::collections::BTreeMap<String, i64> = [
        ("a".to_string(), 3),
        ("b".to_string(), 2),
        ("c".to_string(), 1),
    ]
    .into();
    assert_eq!(run_word_count(state), want);

    let tool = |args: &[&str]| -> Run {
        command()
            .arg("--state-dir")
            .arg(state)
            .args([
                "application-reset",
                "--application-id",
                "wc",
                "--input-topics",
                "words",
            ])
            .args(args)
            .output()
            .unwrap()
            .into()
    };
    let local = state.join("wc");
    let tasks = |verb: &str| {
        // Two sub-topologies × two partitions: one directory per task.
        let mut s = format!("{verb} local state in {}:\n", local.display());
        for task in ["0_0", "0_1", "1_0", "1_1"] {
            s.push_str(&format!("  {task}\n"));
        }
        s
    };
    let planned = tool(&["--dry-run"]).ok();
    assert_eq!(
        planned,
        format!(
            "would move offsets of group `wc`:\n\
             TOPIC  PARTITION  OLD  NEW\n\
             words  0          3    0\n\
             words  1          3    0\n\
             would delete internal topics:\n  \
             wc-by-word-repartition\n  \
             wc-counts-changelog\n\
             {}\
             dry run: nothing changed\n",
            tasks("would remove")
        )
    );
    assert!(local.join("1_0").is_dir(), "a dry run removes nothing");

    let done = tool(&[]).ok();
    assert_eq!(
        done,
        format!(
            "moved offsets of group `wc`:\n\
             TOPIC  PARTITION  OLD  NEW\n\
             words  0          3    0\n\
             words  1          3    0\n\
             deleted internal topics:\n  \
             wc-by-word-repartition\n  \
             wc-counts-changelog\n\
             {}",
            tasks("removed")
        )
    );
    assert!(local.join("process-id").is_file(), "the process id stays");
    assert!(!local.join("1_0").exists());
    {
        let log = EmbeddedLog::open(state.join("log")).unwrap();
        assert_eq!(log.list_topics().unwrap(), vec!["words".to_string()]);
        assert_eq!(
            log.committed_offsets("wc").unwrap(),
            vec![
                (TopicPartition::new("words", 0), 0),
                (TopicPartition::new("words", 1), 0)
            ]
        );
    }
    // Replayed from the start into empty stores: the same counts, not doubled ones.
    assert_eq!(run_word_count(state), want);

    // Again, to a time after every record: nothing to replay; the stores start empty.
    let out = tool(&["--to-datetime", "2100-01-01T00:00:00+01:00"]).ok();
    assert!(out.contains("words  0          3    3\n"), "{out}");
    assert_eq!(run_word_count(state), std::collections::BTreeMap::new());

    let bad = tool(&["--to-datetime", "yesterday"]).usage_error();
    assert!(bad.contains("is not an RFC 3339 date and time"), "{bad}");
    let unknown: Run = command()
        .arg("--state-dir")
        .arg(state)
        .args([
            "application-reset",
            "--application-id",
            "wc",
            "--input-topics",
            "nope",
        ])
        .output()
        .unwrap()
        .into();
    let unknown = unknown.error();
    assert!(
        unknown.contains("nope (an input topic of `wc`)"),
        "{unknown}"
    );
}

#[test]
fn delete_removes_a_topic_and_its_offsets() {
    let tool = payments();
    tool.run(&["reset-offsets", "app", "--topic", "payments", "--to-latest"])
        .ok();
    let out = tool.run(&["delete", "payments"]).ok();
    assert_eq!(out, "deleted topic `payments`\n");
    assert_eq!(tool.run(&["topics"]).ok(), "TOPIC  PARTITIONS  CLEANUP\n");
    assert_eq!(tool.run(&["groups"]).ok(), "GROUP  TOPICS  LAG\n");
    let again = tool.run(&["delete", "payments"]).error();
    assert!(again.contains("payments"), "{again}");
}

/// Keys and values through the library's serdes both ways: what `produce --value-format i64`
/// writes is what `I64Serde` reads, and `consume` decodes it back; a record that does not
/// decode in the asked format is an error naming it.
#[test]
fn formats_encode_and_decode_with_the_library_serdes() {
    use streams_core::{I64Serde, JsonSerde, Serde};

    let tool = Tool::new();
    tool.run(&["create", "counts", "--partitions", "1"]).ok();
    let out = tool
        .run_with(
            &[
                "produce",
                "counts",
                "--partition",
                "0",
                "--value-format",
                "i64",
                "--timestamp-ms",
                "1000",
            ],
            "a,5\nb,-3\nc,lots\n",
        )
        .ok_saying();
    assert_eq!(
        out.0,
        "appended 2 records to `counts` (1 malformed line skipped)\n"
    );
    assert!(
        out.1.contains("line 3: value: `lots` is not an i64"),
        "{}",
        out.1
    );
    {
        let log = tool.open();
        let fetch = log
            .read(
                &TopicPartition::new("counts", 0),
                0,
                10,
                streams_core::IsolationLevel::ReadCommitted,
            )
            .unwrap();
        let values: Vec<i64> = fetch
            .records
            .iter()
            .map(|r| {
                I64Serde
                    .deserialize(r.record.value.as_deref().unwrap())
                    .unwrap()
            })
            .collect();
        assert_eq!(values, [5, -3]);
    }

    let out = tool
        .run(&["consume", "counts", "--value-format", "i64"])
        .ok();
    assert_eq!(out, "0,0,1000,a,5\n0,1,1000,b,-3\n");
    let out = tool
        .run(&["consume", "counts", "--value-format", "bytes", "--max", "1"])
        .ok();
    assert_eq!(out, "0,0,1000,a,8000000000000005\n");
    let out = tool
        .run(&[
            "consume",
            "counts",
            "--value-format",
            "i64",
            "--output",
            "json",
            "--max",
            "1",
        ])
        .ok();
    assert_eq!(
        out,
        "{\"partition\":0,\"offset\":0,\"timestamp\":1000,\"key\":\"a\",\"value\":5,\"headers\":[]}\n"
    );
    // Eight bytes of i64 are not UTF-8 text.
    let err = tool
        .run(&["consume", "counts", "--value-format", "string"])
        .error();
    assert!(
        err.contains("cannot decode the value of counts-0@0")
            && err.contains("--value-format bytes shows it as hex"),
        "{err}"
    );
    let err = tool
        .run(&["consume", "counts", "--key-format", "u64"])
        .error();
    assert!(err.contains("cannot decode the key of counts-0@0"), "{err}");

    tool.run(&["create", "docs", "--partitions", "1"]).ok();
    tool.run_with(
        &[
            "produce",
            "docs",
            "--value-format",
            "json",
            "--key-format",
            "u64",
            "--timestamp-ms",
            "7",
        ],
        "42,{ \"a\": [1, 2], \"b\": \"x,y\" }\n",
    )
    .ok();
    {
        let log = tool.open();
        let fetch = log
            .read(
                &TopicPartition::new("docs", 0),
                0,
                10,
                streams_core::IsolationLevel::ReadCommitted,
            )
            .unwrap();
        let doc: serde_json::Value = JsonSerde::new()
            .deserialize(fetch.records[0].record.value.as_deref().unwrap())
            .unwrap();
        assert_eq!(doc, serde_json::json!({"a": [1, 2], "b": "x,y"}));
        assert_eq!(
            fetch.records[0].record.key.as_deref(),
            Some(&42u64.to_be_bytes()[..])
        );
    }
    let out = tool
        .run(&[
            "consume",
            "docs",
            "--key-format",
            "u64",
            "--value-format",
            "json",
            "--output",
            "json",
        ])
        .ok();
    assert_eq!(
        out,
        "{\"partition\":0,\"offset\":0,\"timestamp\":7,\"key\":42,\"value\":{\"a\":[1,2],\"b\":\"x,y\"},\"headers\":[]}\n"
    );
}

/// CSV output: a header row, RFC 4180 quoting of a value with a comma, a quote and a line
/// break, headers as a JSON array; read back by a CSV reader to the same fields. Headers
/// given to `produce` are on every record and shown by every output.
#[test]
fn csv_output_quotes_fields_and_shows_headers() {
    let tool = Tool::new();
    tool.run(&["create", "notes", "--partitions", "1"]).ok();
    tool.run_with(
        &[
            "produce",
            "notes",
            "--timestamp-ms",
            "5",
            "--header",
            "trace=abc",
            "--header",
            "note=x,y",
        ],
        "k1,plain\n",
    )
    .ok();
    let tricky = "a,b \"quoted\"\nnext line";
    {
        let log = tool.open();
        log.append(
            &TopicPartition::new("notes", 0),
            &[
                streams_core::Record::new("k,2", tricky, 6),
                streams_core::Record {
                    key: None,
                    value: None,
                    timestamp: 7,
                    headers: Vec::new(),
                },
            ],
        )
        .unwrap();
    }
    let out = tool.run(&["consume", "notes", "--output", "csv"]).ok();
    assert_eq!(
        out,
        "partition,offset,timestamp,key,value,headers\r\n\
         0,0,5,k1,plain,\"[{\"\"key\"\":\"\"trace\"\",\"\"value\"\":\"\"abc\"\"},{\"\"key\"\":\"\"note\"\",\"\"value\"\":\"\"x,y\"\"}]\"\r\n\
         0,1,6,\"k,2\",\"a,b \"\"quoted\"\"\nnext line\",\r\n\
         0,2,7,,,\r\n"
    );
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(
        header,
        [
            "partition",
            "offset",
            "timestamp",
            "key",
            "value",
            "headers"
        ]
    );
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1][3], "k,2");
    assert_eq!(rows[1][4], tricky);
    let headers: serde_json::Value = serde_json::from_str(&rows[0][5]).unwrap();
    assert_eq!(
        headers,
        serde_json::json!([{"key": "trace", "value": "abc"}, {"key": "note", "value": "x,y"}])
    );

    let out = tool.run(&["consume", "notes", "--max", "1"]).ok();
    assert_eq!(out, "0,0,5,k1,plain [trace=abc note=x,y]\n");
    let out = tool
        .run(&["consume", "notes", "--output", "json", "--max", "1"])
        .ok();
    assert!(
        out.ends_with(
            "\"headers\":[{\"key\":\"trace\",\"value\":\"abc\"},{\"key\":\"note\",\"value\":\"x,y\"}]}\n"
        ),
        "{out}"
    );
    // An empty topic in CSV is the header row alone.
    tool.run(&["create", "empty", "--partitions", "1"]).ok();
    let out = tool.run(&["consume", "empty", "--output", "csv"]).ok();
    assert_eq!(out, "partition,offset,timestamp,key,value,headers\r\n");
    let bad = tool
        .run_with(&["produce", "notes", "--header", "=v"], "k,v\n")
        .usage_error();
    assert!(bad.contains("is not KEY=VALUE"), "{bad}");
}
