//! Events and metrics (issue 12): the event log the schema's triggers fill, read by row id
//! (cursor `{"id": <last row>}`), and synthetic but plausible usage samples.

use crate::db::{now_ms, Sql};
use crate::guests;
use crate::power;
use polyvisor_core::events::{self, Event, EventBatch, EventCursor, EventKind, MetricSample, MetricsInterval};
use polyvisor_core::{Error, GuestId, PowerState, Result};
use rusqlite::{params, Connection};
use serde_json::{json, Value};

/// Cursor source name.
pub(crate) const SOURCE: &str = "sim";
/// Most events one poll returns (the batch cursor resumes after the last one).
const PAGE: i64 = 1000;
/// Most samples one metrics call returns.
const MAX_SAMPLES: u64 = 20_000;

fn kind(s: &str) -> Result<EventKind> {
    serde_json::from_value(Value::String(s.into()))
        .map_err(|_| Error::internal(format!("unknown sim event kind '{s}'")))
}

fn cursor(id: i64) -> EventCursor {
    EventCursor::new(SOURCE, &json!({ "id": id }))
}

/// Events after `cursor` (at most [`PAGE`]); no cursor: none, and a cursor at the log's end.
pub(crate) fn since(conn: &Connection, from: Option<&EventCursor>) -> Result<EventBatch> {
    let last: i64 = conn.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0)).db()?;
    let Some(from) = from else {
        return Ok(EventBatch { events: Vec::new(), cursor: cursor(last) });
    };
    let after = from
        .decode(SOURCE)?
        .get("id")
        .and_then(Value::as_i64)
        .ok_or_else(|| Error::invalid("Invalid event cursor for sim"))?;
    let mut s = conn
        .prepare_cached(
            "SELECT id, at_ms, kind, guest_id, name, snapshot, native FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
        )
        .db()?;
    let rows = s
        .query_map(params![after, PAGE], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, String>(6)?,
            ))
        })
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, at_ms, k, guest, name, snapshot, native) in rows {
        let kind = kind(&k)?;
        let message = match &snapshot {
            Some(s) => format!("{} {name} ({s})", kind.as_str()),
            None => format!("{} {name}", kind.as_str()),
        };
        out.push(Event {
            kind,
            id: format!("sim-event-{id}"),
            at: (at_ms / 1000).max(0) as u64,
            guest: Some(GuestId::new(guest.to_string())),
            guest_name: Some(name),
            node: Some(guests::NODE.to_string()),
            snapshot,
            native,
            message,
            data: json!({ "row": id, "at_ms": at_ms }),
            cursor: cursor(id),
        });
    }
    let next = out.last().map(|e| e.cursor.clone()).unwrap_or_else(|| cursor(after.max(0)));
    Ok(EventBatch { events: out, cursor: next })
}

/// A deterministic pseudo-random number in [0, 1) from a guest id and a timestamp (FNV-1a).
fn noise(guest: i64, t: u64, salt: u64) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in guest.to_le_bytes().iter().chain(t.to_le_bytes().iter()).chain(salt.to_le_bytes().iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Synthetic samples: a guest that is powered off now reads zero CPU, disk and network and
/// no memory in use; a running one a slow daily wave plus noise (CPU 5–65 %, memory
/// 30–70 %, disk up to ~800 KB/s, network up to ~300 KB/s). Deterministic per (guest, time),
/// so repeated captures agree. No samples before the guest was created.
pub(crate) fn metrics(
    conn: &Connection,
    id: i64,
    start: u64,
    end: u64,
    interval: MetricsInterval,
) -> Result<Vec<MetricSample>> {
    events::check_window(start, end)?;
    let step = interval.secs();
    if (end - start) / step > MAX_SAMPLES {
        return Err(Error::invalid(format!("metrics: more than {MAX_SAMPLES} samples asked for; shorten the window")));
    }
    let g = guests::row(conn, id)?;
    if g.is_template {
        return Ok(Vec::new());
    }
    let created: i64 = conn.query_row("SELECT created_ms FROM guests WHERE id = ?1", [id], |r| r.get(0)).db()?;
    let on = power::effective(g.power, g.power_until, now_ms()) == PowerState::PoweredOn;
    let now = polyvisor_core::task::now_unix();
    let mut out = Vec::new();
    let mut t = events::align(start, step);
    if t < start {
        t += step;
    }
    while t <= end.min(now) {
        if (t as i64) * 1000 >= created {
            let wave = ((t as f64) / 86_400.0 * std::f64::consts::TAU + id as f64).sin() * 0.5 + 0.5;
            out.push(if on {
                MetricSample {
                    at: t,
                    cpu_usage_rate: round1(5.0 + 40.0 * wave + 20.0 * noise(id, t, 1)),
                    mem_usage: round1(30.0 + 25.0 * wave + 15.0 * noise(id, t, 2)),
                    disk_rate_kbps: round1(800.0 * noise(id, t, 3) * wave),
                    net_rate_kbps: round1(300.0 * noise(id, t, 4)),
                }
            } else {
                MetricSample { at: t, cpu_usage_rate: 0.0, mem_usage: 0.0, disk_rate_kbps: 0.0, net_rate_kbps: 0.0 }
            });
        }
        t += step;
    }
    Ok(out)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
