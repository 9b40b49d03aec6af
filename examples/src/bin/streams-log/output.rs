//! How results are printed: aligned tables for people, one line per record for pipes.

use std::io::Write;

use streams_core::{RecordPart, StoredRecord};

use crate::formats::DataFormat;

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
    /// `partition,offset,timestamp,key,value` for people: nothing is escaped; a missing key or
    /// a null value is `<null>`; headers, if any, follow as ` [key=value ...]`.
    Text,
    /// One JSON object per line: partition, offset, timestamp, key, value (null when absent;
    /// numbers and JSON documents embedded as such) and headers.
    Json,
    /// CSV (RFC 4180: CRLF line ends; a field with a comma, a quote or a line break is quoted,
    /// its quotes doubled) with a header row `partition,offset,timestamp,key,value,headers`.
    /// A missing key or null value is an empty field; headers are a JSON array (as in the
    /// JSON output), empty when there are none.
    Csv,
}

/// The header row of a CSV output, if the format has one.
pub(crate) fn header_row(format: Format) -> Result<Option<String>, ToolError> {
    match format {
        Format::Csv => csv_row(&[
            "partition",
            "offset",
            "timestamp",
            "key",
            "value",
            "headers",
        ])
        .map(Some),
        Format::Text | Format::Json => Ok(None),
    }
}

/// What ends each line of the format: CRLF for CSV, as RFC 4180 has it.
pub(crate) fn line_end(format: Format) -> &'static str {
    match format {
        Format::Csv => "\r\n",
        Format::Text | Format::Json => "\n",
    }
}

/// One CSV record, quoted where needed, without its line end.
fn csv_row(fields: &[&str]) -> Result<String, ToolError> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    writer
        .write_record(fields)
        .map_err(|e| ToolError::Usage(format!("cannot write a CSV row: {e}")))?;
    let bytes = writer
        .into_inner()
        .map_err(|e| ToolError::Usage(format!("cannot write a CSV row: {e}")))?;
    let row = String::from_utf8(bytes)
        .map_err(|e| ToolError::Usage(format!("a CSV row is not UTF-8: {e}")))?;
    Ok(row.strip_suffix("\r\n").map(str::to_string).unwrap_or(row))
}

/// A decoded key or value as text: strings as they are, anything else as JSON.
fn as_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// How keys and values are decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Decoding {
    /// `--key-format`.
    pub(crate) key: DataFormat,
    /// `--value-format`.
    pub(crate) value: DataFormat,
}

/// One record of `topic` as printed, without its line end ([`line_end`]).
pub(crate) fn record_line(
    format: Format,
    decoding: Decoding,
    topic: &str,
    partition: u32,
    r: &StoredRecord,
) -> Result<String, ToolError> {
    let at = (topic, partition, r.offset);
    let key = decoding
        .key
        .decode(r.record.key.as_deref(), at, RecordPart::Key)
        .map_err(ToolError::Usage)?;
    let value = decoding
        .value
        .decode(r.record.value.as_deref(), at, RecordPart::Value)
        .map_err(ToolError::Usage)?;
    let header_value = |h: &streams_core::Header| {
        h.value
            .as_deref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let headers_json = || {
        let headers: Vec<String> = r
            .record
            .headers
            .iter()
            .map(|h| {
                let key = serde_json::Value::from(h.key.as_str());
                let value = serde_json::Value::from(header_value(h));
                format!(r#"{{"key":{key},"value":{value}}}"#)
            })
            .collect();
        format!("[{}]", headers.join(","))
    };
    Ok(match format {
        Format::Text => {
            let mut line = format!(
                "{partition},{},{},{},{}",
                r.offset,
                r.record.timestamp,
                as_text(&key).as_deref().unwrap_or("<null>"),
                as_text(&value).as_deref().unwrap_or("<null>"),
            );
            if !r.record.headers.is_empty() {
                let headers: Vec<String> = r
                    .record
                    .headers
                    .iter()
                    .map(|h| {
                        let v = header_value(h);
                        format!("{}={}", h.key, v.as_deref().unwrap_or("<null>"))
                    })
                    .collect();
                line.push_str(&format!(" [{}]", headers.join(" ")));
            }
            line
        }
        // Written field by field to keep this order (serde_json's maps sort their keys).
        Format::Json => format!(
            r#"{{"partition":{partition},"offset":{},"timestamp":{},"key":{key},"value":{value},"headers":{}}}"#,
            r.offset,
            r.record.timestamp,
            headers_json()
        ),
        Format::Csv => {
            let headers = if r.record.headers.is_empty() {
                String::new()
            } else {
                headers_json()
            };
            csv_row(&[
                &partition.to_string(),
                &r.offset.to_string(),
                &r.record.timestamp.to_string(),
                as_text(&key).as_deref().unwrap_or(""),
                as_text(&value).as_deref().unwrap_or(""),
                &headers,
            ])?
        }
    })
}
