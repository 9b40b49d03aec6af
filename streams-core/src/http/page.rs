//! `/stores/{store}/all` and `/stores/{store}/range`: paged reads of a key-value store,
//! merged across the instances that hold its partitions.
//!
//! An answer is `{"entries":[{"key":…,"value":…},…],"more":…,"cursor":…}`: at most `limit`
//! entries (default 100, at most 1000) and about 1 MiB of JSON, in encoded-key order, and
//! when `more` is true, `cursor` (hex) asks for the next page. Pages are read, not
//! snapshotted: an update between two pages shows if it lands after the cursor.
//!
//! The instance asked reads its own partitions of the store (one page per task, on the task's
//! stream thread, see `runtime::page`) and asks each other instance holding some for a page
//! of those partitions, naming them (`partitions=1,3`) and marking the request as forwarded;
//! an instance asked so answers for exactly those partitions or 503 (a moved task), with
//! each entry's encoded key (`raw_key`) so that the pages merge in the store's order. When a
//! partition is held by no instance the group knows of, the answer is 503 with `Retry-After`.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::route::FORWARDED_BY;
use super::{blocking, unsupported, HttpError, Server};
use crate::runtime::page::{self, Part};
use crate::runtime::{Cursor, HostInfo, PageLimit, Route};

/// What a paged read asks one instance for.
#[derive(Debug, Clone)]
pub(super) struct PageAsk {
    pub(super) partitions: Vec<u32>,
    /// The bounds as given (`from`, `to`), parsed with the key type.
    pub(super) range: Option<(String, String)>,
    pub(super) after: Option<Cursor>,
    pub(super) limit: PageLimit,
}

/// The largest answer, in bytes of JSON (a page ends after the entry that reaches it).
const PAGE_BYTES: usize = 1 << 20;

/// `GET /stores/{store}/all`.
pub(super) async fn all(
    state: Server,
    Path(store): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    scan(state, store, None, q, headers).await
}

/// `GET /stores/{store}/range?from=K&to=K`.
pub(super) async fn range(
    state: Server,
    Path(store): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let (Some(from), Some(to)) = (q.get("from").cloned(), q.get("to").cloned()) else {
        return Err(HttpError::bad_request("range needs `from` and `to`"));
    };
    scan(state, store, Some((from, to)), q, headers).await
}

fn limit_of(q: &BTreeMap<String, String>) -> Result<PageLimit, HttpError> {
    let entries = match q.get("limit") {
        None => PageLimit::default().entries,
        Some(raw) => raw.parse::<usize>().map_err(|_| {
            HttpError::bad_request(format!(
                "`limit={raw}` is not a count of entries (1 to {})",
                PageLimit::MAX_ENTRIES
            ))
        })?,
    };
    let limit = PageLimit::entries(entries)
        .map_err(|e| HttpError::bad_request(format!("`limit={entries}`: {}", e.report())))?;
    Ok(limit)
}

fn partitions_of(q: &BTreeMap<String, String>) -> Result<Vec<u32>, HttpError> {
    let raw = q
        .get("partitions")
        .ok_or_else(|| HttpError::bad_request("a forwarded page request names its `partitions`"))?;
    raw.split(',')
        .map(|p| {
            p.parse()
                .map_err(|_| HttpError::bad_request(format!("`partitions={raw}` is not a list")))
        })
        .collect()
}

async fn scan(
    State(s): Server,
    store: String,
    range: Option<(String, String)>,
    q: BTreeMap<String, String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let e = s.endpoint(&store)?;
    let scan = e.scan.ok_or_else(|| unsupported(&store, e.kind))?;
    let limit = limit_of(&q)?;
    let after = match q.get("cursor") {
        Some(raw) => Some(
            Cursor::from_hex(raw).map_err(|e| HttpError::bad_request(e.report().to_string()))?,
        ),
        None => None,
    };
    if headers.contains_key(FORWARDED_BY) {
        // Another instance's part of its read: exactly the partitions it named, here.
        let ask = PageAsk {
            partitions: partitions_of(&q)?,
            range,
            after,
            limit,
        };
        let read = scan.read.clone();
        let part = blocking(move || read(ask)).await?;
        return Ok(Json(part_json(&part, true)).into_response());
    }
    let routes = scan.routes.clone();
    let routes = blocking(move || routes()).await?;
    let mut local = Vec::new();
    let mut remote: BTreeMap<String, (HostInfo, Vec<u32>)> = BTreeMap::new();
    for (partition, route) in routes {
        match route {
            Route::Local => local.push(partition),
            Route::Remote(host) => remote
                .entry(host.to_string())
                .or_insert_with(|| (host, Vec::new()))
                .1
                .push(partition),
        }
    }
    // The other instances' pages, asked for all at once, while this one reads its own.
    let mut parts = Vec::with_capacity(remote.len() + 1);
    let mut asked = tokio::task::JoinSet::new();
    for (host, partitions) in remote.into_values() {
        let query = forwarded_query(&partitions, range.as_ref(), after.as_ref(), limit)?;
        let route = if range.is_some() { "range" } else { "all" };
        let path = format!("/stores/{}/{route}?{query}", encode_segment(&store));
        let server = s.clone();
        asked.spawn(async move { server.fetch_part(&host, &path).await });
    }
    if !local.is_empty() {
        let ask = PageAsk {
            partitions: local,
            range: range.clone(),
            after: after.clone(),
            limit,
        };
        let read = scan.read.clone();
        parts.push(blocking(move || read(ask)).await?);
    }
    while let Some(joined) = asked.join_next().await {
        let part = joined.map_err(|e| HttpError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("asking another instance for its page failed: {e}"),
            owner: None,
        })??;
        parts.push(part);
    }
    let limit = PageLimit {
        bytes: PAGE_BYTES,
        ..limit
    };
    let merged = page::merge(parts, limit, json_size);
    Ok(Json(part_json(&merged, false)).into_response())
}

/// The size of an entry in the answer.
fn json_size(key: &[u8], entry: &Value) -> usize {
    // The raw key goes out as hex in a forwarded answer; the entry as JSON text.
    let text = serde_json::to_string(entry).map_or(0, |t| t.len());
    text.saturating_add(key.len().saturating_mul(2))
}

fn forwarded_query(
    partitions: &[u32],
    range: Option<&(String, String)>,
    after: Option<&Cursor>,
    limit: PageLimit,
) -> Result<String, HttpError> {
    let partitions: Vec<String> = partitions.iter().map(u32::to_string).collect();
    let mut pairs: Vec<(&str, String)> = vec![
        ("partitions", partitions.join(",")),
        ("limit", limit.entries.to_string()),
    ];
    if let Some((from, to)) = range {
        pairs.push(("from", from.clone()));
        pairs.push(("to", to.clone()));
    }
    if let Some(after) = after {
        pairs.push(("cursor", after.to_hex()));
    }
    serde_urlencoded::to_string(&pairs).map_err(|e| HttpError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("cannot write the query of a forwarded page request: {e}"),
        owner: None,
    })
}

/// A store name as one URL path segment.
fn encode_segment(name: &str) -> String {
    // Store names are topic-like (letters, digits, `.`, `_`, `-`); anything else is escaped.
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A page as JSON; a forwarded page keeps each entry's encoded key for the merge.
fn part_json(part: &Part<Value>, forwarded: bool) -> Value {
    let entries: Vec<Value> = part
        .entries
        .iter()
        .map(|(raw, entry)| {
            let mut entry = entry.clone();
            if forwarded {
                if let Some(fields) = entry.as_object_mut() {
                    fields.insert("raw_key".into(), Value::String(hex::encode(raw)));
                }
            }
            entry
        })
        .collect();
    json!({
        "entries": entries,
        "more": part.more,
        "cursor": part.next().map(|c| c.to_hex()),
    })
}

impl super::QueryServer {
    /// Asks `owner` for its page of a paged read (see `page`).
    pub(super) async fn fetch_part(
        &self,
        owner: &HostInfo,
        path: &str,
    ) -> Result<Part<Value>, HttpError> {
        let (parts, body) = self.send(owner, path).await?;
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if parts.status != StatusCode::OK {
            let said = json
                .as_ref()
                .and_then(|j| j.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("no reason given");
            return Err(HttpError {
                status: if parts.status == StatusCode::SERVICE_UNAVAILABLE {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::BAD_GATEWAY
                },
                message: format!(
                    "{owner}, holding a part of the store, answered {}: {said}",
                    parts.status
                ),
                owner: Some(owner.to_string()),
            });
        }
        json.as_ref().and_then(parse_part).ok_or_else(|| HttpError {
            status: StatusCode::BAD_GATEWAY,
            message: format!("{owner}, holding a part of the store, answered no page"),
            owner: Some(owner.to_string()),
        })
    }
}

/// Reads another instance's forwarded page (see [`part_json`]).
pub(super) fn parse_part(body: &Value) -> Option<Part<Value>> {
    let entries = body.get("entries")?.as_array()?;
    let more = body.get("more")?.as_bool()?;
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let raw = hex::decode(entry.get("raw_key")?.as_str()?).ok()?;
        let plain = json!({ "key": entry.get("key")?, "value": entry.get("value")? });
        out.push((raw, plain));
    }
    Some(Part { entries: out, more })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_forwarded_page_reads_back_as_it_was_written() {
        let part = Part {
            entries: vec![
                (vec![0x01, 0xff], json!({"key": "a", "value": 1})),
                (vec![0x02], json!({"key": "b", "value": [2, 3]})),
            ],
            more: true,
        };
        let text = part_json(&part, true);
        assert_eq!(text["cursor"], "02");
        assert_eq!(parse_part(&text), Some(part.clone()));
        let plain = part_json(&part, false);
        assert!(plain["entries"][0].get("raw_key").is_none(), "{plain}");
        assert_eq!(
            parse_part(&json!({"entries": [{"key": 1}], "more": false})),
            None
        );
    }

    #[test]
    fn forwarded_queries_escape_the_bounds() {
        let q = forwarded_query(
            &[1, 3],
            Some(&("a b".into(), "z&y".into())),
            Some(&Cursor::after(vec![0xab])),
            PageLimit::default(),
        )
        .unwrap();
        assert_eq!(q, "partitions=1%2C3&limit=100&from=a+b&to=z%26y&cursor=ab");
        assert_eq!(encode_segment("rates-store.v1"), "rates-store.v1");
        assert_eq!(encode_segment("a/b"), "a%2Fb");
    }
}
