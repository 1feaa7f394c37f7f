//! `events`: NDJSON, one ManageIQ-shaped event per line (spec §6), each carrying the
//! `cursor` that resumes right after it; a line `{"cursor": C}` reports a new position
//! when a poll brought no event (and first thing, so a caller always has a cursor).
//! Without `--follow`: one poll. With it: polls every `--poll` seconds until killed, and at
//! once when the driver is told of a change (`Driver::wait_for_change`); an
//! unreachable backend ends the stream with the error line and exit 3 (ManageIQ's
//! event catcher restarts it with the last cursor).

use clap::Args as ClapArgs;
use polyvisor_core::events::{Event, EventCursor};
use polyvisor_core::{Driver, Result};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

/// `events` options.
#[derive(Debug, ClapArgs)]
pub struct EventsArgs {
    /// Keep polling.
    #[arg(long)]
    pub follow: bool,
    /// Resume after this cursor (default: from now).
    #[arg(long)]
    pub since: Option<String>,
    /// Seconds between polls with `--follow`.
    #[arg(long, default_value_t = 5)]
    pub poll: u64,
    /// ManageIQ `source` of the events (default: the platform, upper-case).
    #[arg(long)]
    pub source: Option<String>,
}

/// The line for one event (spec §6 shape).
pub fn line(e: &Event, source: &str) -> Value {
    let guest = e.guest.as_ref().map(|g| g.as_str());
    json!({
        "event_type": e.kind.as_str(),
        "source": source,
        "ems_ref": e.id,
        "timestamp": crate::inventory::iso(e.at),
        "vm_ems_ref": guest,
        "vm_uid_ems": guest,
        "vm_name": e.guest_name,
        "host_ems_ref": e.node,
        "snapshot": e.snapshot,
        "native_type": e.native,
        "message": e.message,
        "full_data": e.data,
        "cursor": e.cursor.as_str(),
    })
}

/// Runs the stream.
pub async fn run(driver: &dyn Driver, platform: &str, a: &EventsArgs) -> ExitCode {
    let source = a.source.clone().unwrap_or_else(|| platform.to_ascii_uppercase());
    let mut cursor = a.since.clone().map(EventCursor);
    let mut printed: Option<EventCursor> = None;
    if a.follow {
        // Subscribe to the driver's change notifications (if any) before the first poll, so
        // that a change right after it is never left to the poll interval.
        driver.wait_for_change(Duration::ZERO).await;
    }
    loop {
        match poll(driver, cursor.as_ref(), &source, &mut printed).await {
            Ok(next) => cursor = Some(next),
            Err(e) => return crate::fail(&e),
        }
        if !a.follow {
            return ExitCode::SUCCESS;
        }
        // Returns early when the driver is told of a change (libvirt domain events).
        driver.wait_for_change(Duration::from_secs(a.poll.max(1))).await;
    }
}

async fn poll(
    driver: &dyn Driver,
    cursor: Option<&EventCursor>,
    source: &str,
    printed: &mut Option<EventCursor>,
) -> Result<EventCursor> {
    let batch = driver.events_since(cursor).await?;
    let io = |_| polyvisor_core::Error::internal("cannot write to stdout");
    for e in &batch.events {
        crate::emit(&line(e, source)).map_err(io)?;
        *printed = Some(e.cursor.clone());
    }
    if printed.as_ref() != Some(&batch.cursor) {
        crate::emit(&json!({"cursor": batch.cursor.as_str()})).map_err(io)?;
        *printed = Some(batch.cursor.clone());
    }
    Ok(batch.cursor)
}
