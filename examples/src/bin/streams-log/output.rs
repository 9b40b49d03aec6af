//! How results are printed: aligned tables for people, one line per record for pipes.

use std::io::Write;

use streams_core::StoredRecord;

use crate::ToolError;

/// Columns separated by two spaces, each as wide as its widest cell; no trailing spaces.
#[derive(Debug)]
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with this header row.
    pub(crate) fn new(header: &[&str]) -> Self {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Writes the table to stdout.
    pub(crate) fn print(&self) -> Result<(), ToolError> {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                let width = |r: &Vec<String>| r.get(c).map_or(0, |s| s.chars().count());
                self.rows.iter().map(width).max().unwrap_or(0)
            })
            .collect();
        let mut out = std::io::stdout().lock();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 < row.len() {
                    let pad = widths[c] - cell.chars().count() + 2;
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                } else {
                    line.push_str(cell);
                }
            }
            writeln!(out, "{line}")?;
        }
        Ok(())
    }
}

/// Prints one line to stdout; unlike `println!`, a closed pipe is an error, not a panic.
pub(crate) fn line(text: impl std::fmt::Display) -> Result<(), ToolError> {
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

/// How `consume` prints a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// `partition,offset,timestamp,key,value`; keys and values as UTF-8 (lossy), a missing
    /// key or a null value as `<null>`. Commas inside keys or values are not escaped.
    Text,
    /// One JSON object per line: partition, offset, timestamp, key, value (null when absent)
    /// and headers.
    Json,
}

fn text(bytes: &Option<Vec<u8>>) -> Option<std::borrow::Cow<'_, str>> {
    bytes.as_deref().map(String::from_utf8_lossy)
}

/// One record as a line (without the newline).
pub(crate) fn record_line(format: Format, partition: u32, r: &StoredRecord) -> String {
    match format {
        Format::Text => format!(
            "{partition},{},{},{},{}",
            r.offset,
            r.record.timestamp,
            text(&r.record.key).as_deref().unwrap_or("<null>"),
            text(&r.record.value).as_deref().unwrap_or("<null>"),
        ),
        Format::Json => {
            // Written field by field to keep this order (serde_json's maps sort their keys).
            let json = |b: &Option<Vec<u8>>| serde_json::Value::from(text(b)).to_string();
            let headers: Vec<String> = r
                .record
                .headers
                .iter()
                .map(|h| {
                    let key = serde_json::Value::from(h.key.as_str());
                    format!(r#"{{"key":{key},"value":{}}}"#, json(&h.value))
                })
                .collect();
            format!(
                r#"{{"partition":{partition},"offset":{},"timestamp":{},"key":{},"value":{},"headers":[{}]}}"#,
                r.offset,
                r.record.timestamp,
                json(&r.record.key),
                json(&r.record.value),
                headers.join(",")
            )
        }
    }
}
