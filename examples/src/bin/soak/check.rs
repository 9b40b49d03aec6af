//! The check after the last run: every output topic and the final stores against what the
//! input implies.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use streams_core::{EmbeddedLog, I64Serde, IsolationLevel, Log, Record, Serde, TopicPartition};

use super::{child, key_name, key_of, open_reader, weight_of, Args, Error, Guarantee};
use super::{COUNTS, JOINED, SUMS};

/// What the check found. Counts of problems; zero is right.
#[derive(Debug, Default)]
pub(super) struct Report {
    records: u64,
    keys: u32,
    joined: u64,
    /// Input records with no join result.
    lost: u64,
    /// Join results beyond the first of an input record.
    duplicated: u64,
    /// Join results of a key that skipped ahead, or (exactly-once) went back.
    out_of_order: u64,
    /// Join results with another key's weight, or that do not decode.
    wrong: u64,
    /// Keys whose last count, last sum or stored values fall short of the input's.
    short: u64,
    /// Keys whose counts were not emitted exactly as 1, 2, … total, or whose last sum or
    /// stored values exceed the input's (fine under at-least-once only).
    over: u64,
    /// The first problems, spelled out.
    examples: Vec<String>,
}

impl Report {
    fn note(&mut self, what: String) {
        if self.examples.len() < 10 {
            self.examples.push(what);
        }
    }

    /// Whether the run kept its guarantee.
    pub(super) fn passed(&self, guarantee: Guarantee) -> bool {
        let exact = self.duplicated == 0 && self.over == 0;
        self.lost == 0
            && self.out_of_order == 0
            && self.wrong == 0
            && self.short == 0
            && (guarantee == Guarantee::AtLeastOnce || exact)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "joined: {} results for {} inputs: lost {}, duplicated {}, out of order {}, wrong {}",
            self.joined, self.records, self.lost, self.duplicated, self.out_of_order, self.wrong
        )?;
        write!(
            f,
            "counts, sums and stores of {} keys: short {}, over {}",
            self.keys, self.short, self.over
        )?;
        for e in &self.examples {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// Every record of `topic`, read committed, per partition in offset order.
fn read_all(log: &EmbeddedLog, topic: &str) -> Result<Vec<Record>, Error> {
    let mut out = Vec::new();
    for p in 0..log.describe_topic(topic)?.partitions {
        let tp = TopicPartition::new(topic, p);
        let end = log.end_offset(&tp, IsolationLevel::ReadCommitted)?;
        let mut offset = log.start_offset(&tp)?;
        while offset < end {
            let fetch = log.read(&tp, offset, 10_000, IsolationLevel::ReadCommitted)?;
            if fetch.next_offset <= offset {
                return Err(format!("reading {tp} stalled at offset {offset}").into());
            }
            offset = fetch.next_offset;
            out.extend(fetch.records.into_iter().map(|r| r.record));
        }
    }
    Ok(out)
}

fn text(bytes: Option<&[u8]>) -> String {
    bytes.map_or_else(String::new, |b| String::from_utf8_lossy(b).into_owned())
}

fn number(bytes: Option<&[u8]>) -> Option<i64> {
    I64Serde.deserialize(bytes?).ok()
}

/// The values of `topic` per key, in offset order (a key lives in one partition).
fn by_key(log: &EmbeddedLog, topic: &str) -> Result<BTreeMap<String, Vec<Option<i64>>>, Error> {
    let mut out: BTreeMap<String, Vec<Option<i64>>> = BTreeMap::new();
    for r in read_all(log, topic)? {
        out.entry(text(r.key.as_deref()))
            .or_default()
            .push(number(r.value.as_deref()));
    }
    Ok(out)
}

pub(super) fn check(args: &Args, state: &Path, seed: u64) -> Result<Report, Error> {
    let exactly_once = args.guarantee == Guarantee::ExactlyOnce;
    let log = open_reader(args, state)?;
    let mut totals = vec![0i64; args.keys as usize];
    for i in 0..args.records {
        totals[key_of(seed, i, args.keys) as usize] += 1;
    }
    let mut report = Report {
        records: args.records,
        keys: args.keys,
        ..Report::default()
    };
    check_joined(&log, &totals, &mut report)?;
    check_aggregates(&log, state, &totals, exactly_once, &mut report)?;
    Ok(report)
}

/// Each input record joined once with its key's weight, per key in order.
fn check_joined(log: &EmbeddedLog, totals: &[i64], report: &mut Report) -> Result<(), Error> {
    let mut seen: Vec<Vec<u32>> = totals
        .iter()
        .map(|&n| vec![0; usize::try_from(n).unwrap_or(0)])
        .collect();
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for r in read_all(log, JOINED)? {
        report.joined += 1;
        let key = text(r.key.as_deref());
        let value = text(r.value.as_deref());
        let k = key
            .strip_prefix('k')
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|&k| (k as usize) < totals.len());
        let parsed = value
            .split_once(':')
            .and_then(|(s, w)| Some((s.parse::<i64>().ok()?, w.parse::<i64>().ok()?)));
        let (Some(k), Some((seq, weight))) = (k, parsed) else {
            report.wrong += 1;
            report.note(format!("joined {key} → {value}: not a key and seq:weight"));
            continue;
        };
        if weight != weight_of(k) || seq < 0 || seq >= totals[k as usize] {
            report.wrong += 1;
            report.note(format!("joined {key} → {value}: no such input"));
            continue;
        }
        seen[k as usize][seq as usize] += 1;
        let previous = last.insert(key.clone(), seq).unwrap_or(-1);
        // Replays after a crash go back to a committed point; nothing may be skipped.
        if seq > previous + 1 {
            report.out_of_order += 1;
            report.note(format!("{key}: {seq} right after {previous}"));
        }
    }
    for (k, counts) in seen.iter().enumerate() {
        for (seq, &n) in counts.iter().enumerate() {
            if n == 0 {
                report.lost += 1;
                report.note(format!("{}: input {seq} never joined", key_name(k as u32)));
            }
            report.duplicated += u64::from(n.saturating_sub(1));
        }
    }
    Ok(())
}

/// Counts emitted 1, 2, … total; last sums and the final stores equal to the input's.
fn check_aggregates(
    log: &EmbeddedLog,
    state: &Path,
    totals: &[i64],
    exactly_once: bool,
    report: &mut Report,
) -> Result<(), Error> {
    let counts = by_key(log, COUNTS)?;
    let sums = by_key(log, SUMS)?;
    let stored: BTreeMap<String, (i64, i64)> = std::fs::read_to_string(state.join(child::STORES))?
        .lines()
        .filter_map(|l| {
            let mut f = l.split(',');
            let key = f.next()?.to_string();
            Some((key, (f.next()?.parse().ok()?, f.next()?.parse().ok()?)))
        })
        .collect();
    for (k, &total) in totals.iter().enumerate() {
        if total == 0 {
            continue;
        }
        let key = key_name(k as u32);
        let sum = total * (total - 1) / 2;
        let emitted = counts.get(&key).map(Vec::as_slice).unwrap_or_default();
        let exact = emitted.iter().copied().eq((1..=total).map(Some));
        let last_count = emitted.last().copied().flatten().unwrap_or(0);
        let last_sum = sums
            .get(&key)
            .and_then(|v| v.last().copied().flatten())
            .unwrap_or(0);
        let (store_count, store_sum) = stored.get(&key).copied().unwrap_or((0, 0));
        let found = [last_count, last_sum, store_count, store_sum];
        let wanted = [total, sum, total, sum];
        if found.iter().zip(&wanted).any(|(f, w)| f < w) {
            report.short += 1;
            report.note(format!(
                "{key}: count, sum, stored count, stored sum {found:?}, input {wanted:?}"
            ));
        } else if !exact || found != wanted {
            report.over += 1;
            // Expected of a replay under at-least-once: not worth spelling out.
            if !exactly_once {
                continue;
            }
            report.note(format!(
                "{key}: counts emitted {} times for {total} inputs; final {found:?}, input {wanted:?}",
                emitted.len()
            ));
        }
    }
    Ok(())
}
