//! `--key-format` and `--value-format`: keys and values through the library's own serdes, so
//! the tool reads and writes what an application with those serdes reads and writes.
//!
//! Decoding gives a JSON value, which each output renders its way: the JSON output embeds it
//! (a number stays a number, a JSON document stays a document), text and CSV print it as
//! text. Without a format the bytes are shown as text, invalid UTF-8 replaced (`raw`, what
//! the tool always did). A record that does not decode in the asked format is an error
//! naming its topic, partition and offset and which part failed, with a hint:
//! `--value-format bytes` shows anything, as hex. (Printing undecodable records as hex with a
//! marker instead would make a wrong `--value-format` look like data.)

use clap::ValueEnum;
use streams_core::{
    I32Serde, I64Serde, JsonSerde, RecordPart, Serde, SerdeError, StringSerde, U32Serde, U64Serde,
};

/// How a key or a value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DataFormat {
    /// The default: the bytes as they are typed, shown as text with invalid UTF-8 replaced
    /// by U+FFFD (nothing fails; for a look at any topic).
    Raw,
    /// UTF-8 text (`StringSerde`): what is not UTF-8 is an error.
    String,
    /// `i64` as `I64Serde` writes it: 8 bytes big-endian with the sign bit flipped (so byte
    /// order is numeric order). Not Kafka's `LongSerde`, which does not flip the sign bit.
    I64,
    /// `u64`, 8 bytes big-endian (`U64Serde`).
    U64,
    /// `i32` as `I32Serde` writes it: 4 bytes big-endian, sign bit flipped.
    I32,
    /// `u32`, 4 bytes big-endian (`U32Serde`).
    U32,
    /// A JSON document (`JsonSerde`); produced compact.
    Json,
    /// Raw bytes, shown and read as hexadecimal (`BytesSerde`).
    Bytes,
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn unhex(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    let text = text.strip_prefix("0x").unwrap_or(text);
    if !text.len().is_multiple_of(2) {
        return Err(format!(
            "`{text}` has an odd number of hex digits (two per byte)"
        ));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("`{text}` is not hexadecimal"))
        })
        .collect()
}

impl DataFormat {
    fn name(self) -> &'static str {
        match self {
            DataFormat::Raw => "raw",
            DataFormat::String => "string",
            DataFormat::I64 => "i64",
            DataFormat::U64 => "u64",
            DataFormat::I32 => "i32",
            DataFormat::U32 => "u32",
            DataFormat::Json => "json",
            DataFormat::Bytes => "bytes",
        }
    }

    fn decode_bytes(self, bytes: &[u8]) -> Result<serde_json::Value, SerdeError> {
        use serde_json::Value;
        Ok(match self {
            DataFormat::Raw => Value::String(String::from_utf8_lossy(bytes).into_owned()),
            DataFormat::String => Value::String(StringSerde.deserialize(bytes)?),
            DataFormat::I64 => Value::from(I64Serde.deserialize(bytes)?),
            DataFormat::U64 => Value::from(U64Serde.deserialize(bytes)?),
            DataFormat::I32 => Value::from(I32Serde.deserialize(bytes)?),
            DataFormat::U32 => Value::from(U32Serde.deserialize(bytes)?),
            DataFormat::Json => JsonSerde::<Value>::new().deserialize(bytes)?,
            DataFormat::Bytes => Value::String(hex(bytes)),
        })
    }

    /// Decodes a key or value (`None`: absent, JSON null), or says which record failed.
    pub(crate) fn decode(
        self,
        bytes: Option<&[u8]>,
        at: (&str, u32, u64),
        part: RecordPart,
    ) -> Result<serde_json::Value, String> {
        let Some(bytes) = bytes else {
            return Ok(serde_json::Value::Null);
        };
        self.decode_bytes(bytes).map_err(|e| {
            let (topic, partition, offset) = at;
            let flag = match part {
                RecordPart::Key => "--key-format",
                RecordPart::Value => "--value-format",
            };
            format!(
                "{} (with {flag} {}; {flag} bytes shows it as hex)",
                e.at(topic, partition, offset, part).report(),
                self.name()
            )
        })
    }

    /// Encodes text typed on a line as this format would.
    pub(crate) fn encode(self, text: &[u8]) -> Result<Vec<u8>, String> {
        let utf8 = || std::str::from_utf8(text).map_err(|e| format!("not UTF-8 ({e})"));
        let number = |what: &str| {
            let t = utf8()?.trim().to_string();
            if t.is_empty() {
                return Err(format!("empty, not {what}"));
            }
            Ok(t)
        };
        let bad =
            |t: &str, what: &str, e: &dyn std::fmt::Display| format!("`{t}` is not {what} ({e})");
        let serde_failed = |e: SerdeError| e.to_string();
        match self {
            DataFormat::Raw => Ok(text.to_vec()),
            DataFormat::String => {
                utf8()?;
                Ok(text.to_vec())
            }
            DataFormat::I64 => {
                let t = number("an i64")?;
                let v: i64 = t.parse().map_err(|e| bad(&t, "an i64", &e))?;
                I64Serde.serialize(&v).map_err(serde_failed)
            }
            DataFormat::U64 => {
                let t = number("a u64")?;
                let v: u64 = t.parse().map_err(|e| bad(&t, "a u64", &e))?;
                U64Serde.serialize(&v).map_err(serde_failed)
            }
            DataFormat::I32 => {
                let t = number("an i32")?;
                let v: i32 = t.parse().map_err(|e| bad(&t, "an i32", &e))?;
                I32Serde.serialize(&v).map_err(serde_failed)
            }
            DataFormat::U32 => {
                let t = number("a u32")?;
                let v: u32 = t.parse().map_err(|e| bad(&t, "a u32", &e))?;
                U32Serde.serialize(&v).map_err(serde_failed)
            }
            DataFormat::Json => {
                let v: serde_json::Value = serde_json::from_slice(text)
                    .map_err(|e| format!("not a JSON document ({e})"))?;
                JsonSerde::<serde_json::Value>::new()
                    .serialize(&v)
                    .map_err(serde_failed)
            }
            DataFormat::Bytes => unhex(utf8()?),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_format_decodes_what_it_encodes() {
        let cases: [(DataFormat, &str, serde_json::Value); 8] = [
            (DataFormat::Raw, "héllo", "héllo".into()),
            (DataFormat::String, "héllo, world", "héllo, world".into()),
            (DataFormat::I64, "-42", (-42i64).into()),
            (DataFormat::U64, "18446744073709551615", u64::MAX.into()),
            (DataFormat::I32, "-7", (-7i32).into()),
            (DataFormat::U32, "7", 7u32.into()),
            (
                DataFormat::Json,
                r#"{ "a": [1, 2] }"#,
                serde_json::json!({"a": [1, 2]}),
            ),
            (DataFormat::Bytes, "00ff10", "00ff10".into()),
        ];
        for (format, text, value) in cases {
            let bytes = format.encode(text.as_bytes()).unwrap();
            let decoded = format
                .decode(Some(&bytes), ("t", 0, 0), RecordPart::Value)
                .unwrap();
            assert_eq!(decoded, value, "{format:?}");
        }
        // The library's i64: sign bit flipped, so it differs from Kafka's LongSerde.
        assert_eq!(
            DataFormat::I64.encode(b"1").unwrap(),
            [0x80, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(
            DataFormat::Json.encode(b"{ \"a\" : 1 }").unwrap(),
            b"{\"a\":1}"
        );
    }

    #[test]
    fn bad_input_is_an_error_saying_what_and_where() {
        assert!(DataFormat::I64
            .encode(b"x")
            .unwrap_err()
            .contains("`x` is not an i64"));
        assert!(DataFormat::Bytes
            .encode(b"abc")
            .unwrap_err()
            .contains("odd number"));
        assert!(DataFormat::Bytes
            .encode(b"zz")
            .unwrap_err()
            .contains("not hexadecimal"));
        assert!(DataFormat::Json
            .encode(b"{")
            .unwrap_err()
            .contains("not a JSON document"));
        let e = DataFormat::I64
            .decode(Some(b"abc"), ("counts", 2, 17), RecordPart::Value)
            .unwrap_err();
        assert!(e.contains("counts") && e.contains("17"), "{e}");
        assert!(e.contains("--value-format bytes"), "{e}");
        let e = DataFormat::String
            .decode(Some(&[0xff]), ("t", 0, 3), RecordPart::Key)
            .unwrap_err();
        assert!(e.contains("--key-format"), "{e}");
        assert_eq!(
            DataFormat::Raw
                .decode(Some(&[b'a', 0xff]), ("t", 0, 3), RecordPart::Key)
                .unwrap(),
            "a\u{fffd}"
        );
        assert_eq!(
            DataFormat::I64
                .decode(None, ("t", 0, 0), RecordPart::Value)
                .unwrap(),
            serde_json::Value::Null
        );
    }
}
