//! `produce`: stdin lines to records.
//!
//! A line that cannot be a record is reported on stderr with its number and skipped; the rest
//! are appended. Records are appended in batches per partition, and a batch is written
//! whenever stdin has nothing more buffered, so an interactive producer's lines land as they
//! are typed while a piped file is appended in large batches.

use std::collections::BTreeMap;
use std::io::BufRead;

use clap::Args;
use streams_core::{
    partition_for_key, CleanupPolicy, Header, Log, Record, TopicConfig, TopicPartition,
};

use crate::formats::DataFormat;
use crate::output::line;
use crate::{now_ms, partitions, ToolError};

/// Arguments of `produce`.
#[derive(Args, Debug)]
#[command(
    after_help = "Blank lines are ignored. A key goes to the partition Kafka's default \
    partitioner (murmur2) picks; lines without a key are spread round-robin."
)]
pub(crate) struct ProduceArgs {
    /// The topic to append to.
    topic: String,
    /// What separates the key from the value; the first occurrence counts, so the value may
    /// contain it.
    #[arg(long, default_value = ",", value_name = "SEP")]
    separator: String,
    /// Each line is a value without a key.
    #[arg(long)]
    no_key: bool,
    /// `KEY,` (nothing after the separator) is a tombstone (a null value) rather than an empty
    /// value.
    #[arg(long, conflicts_with = "no_key")]
    tombstones: bool,
    /// Append every record to this partition instead of the key's.
    #[arg(long, value_name = "P")]
    partition: Option<u32>,
    /// Timestamp of every record (default: the time its line is read).
    #[arg(long, value_name = "MS")]
    timestamp_ms: Option<i64>,
    /// How the key text is encoded: with the library's serdes, as an application writes it
    /// (`i64`: `I64Serde`; `json`: checked and written compact; `bytes`: hex digits).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = DataFormat::Raw)]
    key_format: DataFormat,
    /// How the value text is encoded. A line whose key or value does not fit its format is
    /// reported and skipped.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = DataFormat::Raw)]
    value_format: DataFormat,
    /// A header on every record, `KEY=VALUE` (the value as UTF-8); repeatable, kept in order.
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = parse_header)]
    headers: Vec<Header>,
}

/// `KEY=VALUE` → a header (the key must not be empty; the value may be).
fn parse_header(s: &str) -> Result<Header, String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok(Header {
            key: k.to_string(),
            value: Some(v.as_bytes().to_vec()),
        }),
        _ => Err(format!("`{s}` is not KEY=VALUE with a KEY")),
    }
}

/// A parsed line: key and value, either possibly absent.
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Appends once this many records are pending even if stdin has more buffered.
const MAX_PENDING: usize = 1000;

/// Parses one line (without its line ending); `Ok(None)` for a blank line.
fn parse_line(line: &[u8], args: &ProduceArgs) -> Result<Option<KeyValue>, String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value_of = |text: &[u8]| {
        args.value_format
            .encode(text)
            .map_err(|e| format!("value: {e}"))
    };
    if args.no_key {
        return Ok(Some((None, Some(value_of(line)?))));
    }
    let sep = args.separator.as_bytes();
    let Some(at) = line.windows(sep.len()).position(|w| w == sep) else {
        return Err(format!(
            "no `{}` between key and value (use --no-key for lines that are only a value)",
            args.separator
        ));
    };
    let (key, value) = (&line[..at], &line[at + sep.len()..]);
    if key.is_empty() {
        return Err("empty key (use --no-key for records without a key)".into());
    }
    let value = if value.is_empty() && args.tombstones {
        None
    } else {
        Some(value_of(value)?)
    };
    let key = args
        .key_format
        .encode(key)
        .map_err(|e| format!("key: {e}"))?;
    Ok(Some((Some(key), value)))
}

/// Checks the arguments against the topic before reading any input.
fn check(args: &ProduceArgs, config: &TopicConfig) -> Result<(), ToolError> {
    if args.separator.is_empty() {
        return Err(ToolError::Usage("--separator must not be empty".into()));
    }
    if args.no_key && config.cleanup_policy == CleanupPolicy::Compact {
        return Err(ToolError::Usage(format!(
            "topic `{}` is compacted, so every record needs a key: drop --no-key",
            args.topic
        )));
    }
    Ok(())
}

/// `produce`.
pub(crate) fn run(log: &dyn Log, args: &ProduceArgs) -> Result<(), ToolError> {
    let config = log.describe_topic(&args.topic)?;
    check(args, &config)?;
    // Validates `--partition` against the topic.
    partitions(log, &args.topic, args.partition)?;
    let n = config.partitions;
    let mut pending: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
    let mut pending_count = 0;
    let mut appended = 0u64;
    let mut skipped = 0u64;
    let mut round_robin = 0u32;
    let mut append_pending = |pending: &mut BTreeMap<u32, Vec<Record>>| -> Result<(), ToolError> {
        for (p, records) in std::mem::take(pending) {
            log.append(&TopicPartition::new(&args.topic, p), &records)
                .map_err(|e| {
                    ToolError::Usage(format!(
                        "{}; {appended} records were appended before the failure",
                        e.report()
                    ))
                })?;
            appended += records.len() as u64;
        }
        Ok(())
    };

    let mut input = std::io::BufReader::with_capacity(64 << 10, std::io::stdin().lock());
    let mut raw = Vec::new();
    let mut number = 0u64;
    loop {
        raw.clear();
        if input.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        number += 1;
        let text = raw.strip_suffix(b"\n").unwrap_or(&raw);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        match parse_line(text, args) {
            Ok(None) => {}
            Ok(Some((key, value))) => {
                let partition = match (args.partition, &key) {
                    (Some(p), _) => p,
                    (None, Some(k)) => partition_for_key(k, n),
                    (None, None) => {
                        let p = round_robin % n;
                        round_robin = round_robin.wrapping_add(1);
                        p
                    }
                };
                let record = Record {
                    key,
                    value,
                    timestamp: args.timestamp_ms.unwrap_or_else(now_ms),
                    headers: args.headers.clone(),
                };
                pending.entry(partition).or_default().push(record);
                pending_count += 1;
            }
            Err(reason) => {
                skipped += 1;
                eprintln!("line {number}: {reason}; skipped");
            }
        }
        if pending_count >= MAX_PENDING || input.buffer().is_empty() {
            append_pending(&mut pending)?;
            pending_count = 0;
        }
    }
    append_pending(&mut pending)?;
    let skipped = match skipped {
        0 => String::new(),
        1 => " (1 malformed line skipped)".into(),
        n => format!(" ({n} malformed lines skipped)"),
    };
    let records = if appended == 1 { "record" } else { "records" };
    line(format!(
        "appended {appended} {records} to `{}`{skipped}",
        args.topic
    ))
}
