//! The on-disk record batch format of the embedded log.
//!
//! ```text
//! length    u32 LE   bytes after this field (crc + body)
//! crc       u32 LE   CRC-32C of body
//! body:
//!   magic            u8   = 1
//!   flags            u8   bit 0: written inside a transaction
//!   base_offset      u64
//!   last_offset_delta u32  offset of the last record = base_offset + this
//!   count            u32  records in the batch (fewer than the offset span after compaction)
//!   txn_id           u64  0 outside transactions
//!   max_timestamp    i64  largest record timestamp
//!   append_time      i64  wall clock when the batch was appended (retention uses it)
//!   records, each:
//!     offset_delta u32, timestamp i64,
//!     key_len i32 (-1: none), key, value_len i32 (-1: tombstone), value,
//!     header_count u32, then per header: name_len u32, name, value_len i32, value
//! ```
//!
//! All integers are little-endian and fixed-width, so a batch can be validated with one CRC and
//! parsed without a schema. The length prefix lets recovery walk a segment batch by batch.

use crate::record::{Header, Record, StoredRecord};

pub(crate) const MAGIC: u8 = 1;
pub(crate) const FRAME_HEADER: usize = 8;
pub(crate) const BODY_HEADER: usize = 1 + 1 + 8 + 4 + 4 + 8 + 8 + 8;
/// A larger length field can only be damage; refusing it avoids a huge allocation.
pub(crate) const MAX_BATCH_BYTES: usize = 256 << 20;
pub(crate) const FLAG_TRANSACTIONAL: u8 = 1;

/// Parsed fixed fields of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub(crate) flags: u8,
    pub(crate) base_offset: u64,
    pub(crate) last_offset_delta: u32,
    pub(crate) count: u32,
    pub(crate) txn_id: u64,
    pub(crate) max_timestamp: i64,
    pub(crate) append_time: i64,
}

impl BatchHeader {
    pub(crate) fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.last_offset_delta)
    }

    pub(crate) fn next_offset(&self) -> u64 {
        self.last_offset() + 1
    }
}

/// Encodes `records` (given with their absolute offsets) as one framed batch appended to `out`.
///
/// `records` must be non-empty and in increasing offset order.
pub(crate) fn encode_batch<'a>(
    out: &mut Vec<u8>,
    records: impl Iterator<Item = (u64, &'a Record)> + Clone,
    txn_id: u64,
    append_time: i64,
) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    let body_start = out.len();
    let mut iter = records.clone();
    let base_offset = iter.next().map_or(0, |(o, _)| o);
    let mut last = base_offset;
    let mut count = 0u32;
    let mut max_ts = i64::MIN;
    for (offset, r) in records.clone() {
        last = offset;
        count += 1;
        max_ts = max_ts.max(r.timestamp);
    }
    out.push(MAGIC);
    out.push(if txn_id != 0 { FLAG_TRANSACTIONAL } else { 0 });
    out.extend_from_slice(&base_offset.to_le_bytes());
    out.extend_from_slice(&((last - base_offset) as u32).to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&txn_id.to_le_bytes());
    out.extend_from_slice(&max_ts.to_le_bytes());
    out.extend_from_slice(&append_time.to_le_bytes());
    for (offset, r) in records {
        out.extend_from_slice(&((offset - base_offset) as u32).to_le_bytes());
        out.extend_from_slice(&r.timestamp.to_le_bytes());
        put_opt_bytes(out, r.key.as_deref());
        put_opt_bytes(out, r.value.as_deref());
        out.extend_from_slice(&(r.headers.len() as u32).to_le_bytes());
        for h in &r.headers {
            out.extend_from_slice(&(h.key.len() as u32).to_le_bytes());
            out.extend_from_slice(h.key.as_bytes());
            put_opt_bytes(out, h.value.as_deref());
        }
    }
    let body_len = out.len() - body_start;
    let crc = crc32c::crc32c(&out[body_start..]);
    out[start..start + 4].copy_from_slice(&((body_len + 4) as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_opt_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            out.extend_from_slice(&(b.len() as i32).to_le_bytes());
            out.extend_from_slice(b);
        }
        None => out.extend_from_slice(&(-1i32).to_le_bytes()),
    }
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The buffer ends before the frame does.
    Truncated,
    /// The frame is complete but its CRC, magic or structure is wrong.
    Invalid(String),
}

/// Reads the length prefix of a frame at the start of `buf`: the whole frame's size.
pub(crate) fn frame_len(buf: &[u8]) -> Result<usize, FrameError> {
    if buf.len() < FRAME_HEADER {
        return Err(FrameError::Truncated);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(4 + BODY_HEADER..=MAX_BATCH_BYTES).contains(&len) {
        return Err(FrameError::Invalid(format!(
            "impossible batch length {len}"
        )));
    }
    Ok(4 + len)
}

/// Checks the frame at the start of `buf` and returns its header and total size.
pub(crate) fn check_frame(buf: &[u8]) -> Result<(BatchHeader, usize), FrameError> {
    let total = frame_len(buf)?;
    if buf.len() < total {
        return Err(FrameError::Truncated);
    }
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let body = &buf[FRAME_HEADER..total];
    let actual = crc32c::crc32c(body);
    if crc != actual {
        return Err(FrameError::Invalid(format!(
            "CRC mismatch (stored {crc:#010x}, computed {actual:#010x})"
        )));
    }
    let header = parse_header(body)?;
    Ok((header, total))
}

fn parse_header(body: &[u8]) -> Result<BatchHeader, FrameError> {
    let mut c = Cursor { buf: body, pos: 0 };
    let magic = c.u8()?;
    if magic != MAGIC {
        return Err(FrameError::Invalid(format!("unknown batch magic {magic}")));
    }
    Ok(BatchHeader {
        flags: c.u8()?,
        base_offset: c.u64()?,
        last_offset_delta: c.u32()?,
        count: c.u32()?,
        txn_id: c.u64()?,
        max_timestamp: c.i64()?,
        append_time: c.i64()?,
    })
}

/// Decodes the records of a frame already checked by [`check_frame`].
pub(crate) fn decode_records(
    frame: &[u8],
    header: &BatchHeader,
    mut sink: impl FnMut(StoredRecord),
) -> Result<(), FrameError> {
    let mut c = Cursor {
        buf: &frame[FRAME_HEADER..],
        pos: BODY_HEADER,
    };
    for _ in 0..header.count {
        let delta = c.u32()?;
        let timestamp = c.i64()?;
        let key = c.opt_bytes()?;
        let value = c.opt_bytes()?;
        let n_headers = c.u32()? as usize;
        let mut headers = Vec::with_capacity(n_headers.min(64));
        for _ in 0..n_headers {
            let name_len = c.u32()? as usize;
            let name = c.take(name_len)?;
            let key = String::from_utf8(name.to_vec())
                .map_err(|_| FrameError::Invalid("header name is not UTF-8".into()))?;
            headers.push(Header {
                key,
                value: c.opt_bytes()?,
            });
        }
        sink(StoredRecord {
            offset: header.base_offset + u64::from(delta),
            record: Record {
                key,
                value,
                timestamp,
                headers,
            },
        });
    }
    if c.pos != c.buf.len() {
        return Err(FrameError::Invalid(format!(
            "{} bytes left after the last record",
            c.buf.len() - c.pos
        )));
    }
    Ok(())
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                FrameError::Invalid(format!("field of {n} bytes runs past the batch end"))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, FrameError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn opt_bytes(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let len = i32::from_le_bytes(self.array()?);
        match len {
            -1 => Ok(None),
            n if n >= 0 => Ok(Some(self.take(n as usize)?.to_vec())),
            n => Err(FrameError::Invalid(format!("negative length {n}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_with_headers_nulls_and_gaps() {
        let records = [
            Record::new("k1", "v1", 10).with_header("h", "x"),
            Record::tombstone("k2", 5),
            Record::unkeyed("v3", 30),
        ];
        let offsets = [7u64, 9, 12];
        let mut buf = Vec::new();
        encode_batch(
            &mut buf,
            offsets.iter().copied().zip(records.iter()),
            42,
            1000,
        );
        let (h, len) = check_frame(&buf).unwrap();
        assert_eq!(len, buf.len());
        assert_eq!(h.base_offset, 7);
        assert_eq!(h.last_offset(), 12);
        assert_eq!(h.count, 3);
        assert_eq!(h.txn_id, 42);
        assert_eq!(h.flags, FLAG_TRANSACTIONAL);
        assert_eq!(h.max_timestamp, 30);
        let mut out = Vec::new();
        decode_records(&buf, &h, |r| out.push(r)).unwrap();
        assert_eq!(out.iter().map(|r| r.offset).collect::<Vec<_>>(), offsets);
        assert_eq!(
            out.iter().map(|r| r.record.clone()).collect::<Vec<_>>(),
            records
        );
    }

    #[test]
    fn damage_is_detected() {
        let r = Record::new("k", "v", 1);
        let mut buf = Vec::new();
        encode_batch(&mut buf, std::iter::once((0u64, &r)), 0, 0);
        for cut in 0..buf.len() {
            assert_eq!(
                check_frame(&buf[..cut]).unwrap_err(),
                FrameError::Truncated,
                "cut {cut}"
            );
        }
        for byte in 4..buf.len() {
            let mut bad = buf.clone();
            bad[byte] ^= 0x10;
            assert!(
                matches!(check_frame(&bad), Err(FrameError::Invalid(_))),
                "byte {byte}"
            );
        }
    }
}
