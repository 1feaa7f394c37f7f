//! ManageIQ front: `polyvisor manageiq verify|inventory|op|events|metrics|plugin`.
//!
//! The connection (spec §8.2) comes as JSON on stdin; answers are JSON on stdout (NDJSON
//! for `events`); exit codes 0 success, 2 authentication, 3 unreachable, 1 anything else,
//! with `{"error":{"kind","message"}}` on stdout. Logs go to stderr only with `--verbose`
//! (or to `--log-file`). The front never names a driver: `platform` selects one through
//! the [`DriverFactory`].

pub mod inventory;
pub mod ops;
pub mod plugin;
pub mod request;
pub mod stream;

use clap::{Args as ClapArgs, Subcommand};
use polyvisor_core::{Driver, DriverFactory, Error, ErrorKind, GuestId, OpenOptions};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

/// `polyvisor manageiq ...`
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Log to stderr (level from `POLYVISOR_LOG_LEVEL`, default info); otherwise stderr stays quiet.
    #[arg(long, global = true)]
    pub verbose: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Checks reachability and credentials; prints `{"ok":true,"description":...}`.
    Verify,
    /// Prints the inventory (all, or targeted with `--vm`).
    Inventory(InventoryArgs),
    /// Runs an operation and prints its task (or waits for it).
    Op(ops::OpArgs),
    /// Prints events as NDJSON, each with the cursor that resumes after it.
    Events(stream::EventsArgs),
    /// Prints usage samples keyed by timestamp.
    Metrics(MetricsArgs),
    /// Generates the ManageIQ provider plugin gem (reads no stdin).
    Plugin(plugin::PluginArgs),
}

/// `inventory` options.
#[derive(Debug, ClapArgs)]
pub struct InventoryArgs {
    /// Only these VMs (targeted refresh), plus their hosts and cluster.
    #[arg(long = "vm")]
    pub vms: Vec<String>,
    /// `neutral` (spec §8.2) or `persister` (InventoryRefresh serialisation).
    #[arg(long, default_value = "neutral", value_parser = ["neutral", "persister"])]
    pub format: String,
    /// Provider class name for the persister format.
    #[arg(long, default_value = "Polyvisor")]
    pub name: String,
}

/// `metrics` options.
#[derive(Debug, ClapArgs)]
pub struct MetricsArgs {
    /// The VM.
    #[arg(long)]
    pub vm: String,
    /// Window start (RFC 3339 or unix seconds).
    #[arg(long)]
    pub start: String,
    /// Window end (RFC 3339 or unix seconds; default now).
    #[arg(long)]
    pub end: Option<String>,
    /// `realtime` (20 s) or `hourly`.
    #[arg(long, default_value = "realtime", value_parser = ["realtime", "hourly"])]
    pub interval: String,
}

/// Exit code for an error kind (spec §8.2).
pub fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Unauthorized => 2,
        ErrorKind::Unavailable | ErrorKind::Timeout => 3,
        _ => 1,
    }
}

/// The kind name on the wire.
pub fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Unauthorized => "auth",
        ErrorKind::Unavailable | ErrorKind::Timeout => "unreachable",
        ErrorKind::InvalidInput => "invalid_input",
        ErrorKind::NotFound => "not_found",
        ErrorKind::AlreadyExists => "already_exists",
        ErrorKind::Conflict => "conflict",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::UnknownTask => "unknown_task",
        ErrorKind::Backend => "backend",
        ErrorKind::Internal => "internal",
    }
}

/// Prints one JSON line on stdout.
pub(crate) fn emit(v: &Value) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Prints the error document and returns its exit code.
pub(crate) fn fail(e: &Error) -> ExitCode {
    tracing::warn!(kind = ?e.kind(), error = %e, "manageiq command failed");
    let _ = emit(&json!({"error": {"kind": kind_name(e.kind()), "message": e.message()}}));
    ExitCode::from(exit_code(e.kind()))
}

/// Parses RFC 3339 or unix seconds.
pub(crate) fn parse_time(s: &str, what: &str) -> polyvisor_core::Result<u64> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .ok_or_else(|| Error::invalid(format!("--{what} must be RFC 3339 (2026-01-02T15:04:05Z) or unix seconds")))
}

/// Reads stdin and opens the driver it selects.
async fn open(factory: &dyn DriverFactory) -> polyvisor_core::Result<(request::Request, Arc<dyn Driver>)> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map_err(|_| Error::invalid("cannot read stdin"))?;
    let req = request::Request::parse(&text)?;
    let settings = req.settings()?;
    let driver = factory.open(&settings, &OpenOptions::default()).await?;
    Ok((req, driver))
}

/// Runs the subcommand.
pub fn run(args: Args, factory: Arc<dyn DriverFactory>) -> ExitCode {
    if args.verbose {
        let filter = tracing_subscriber::EnvFilter::try_from_env("POLYVISOR_LOG_LEVEL")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ =
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).try_init();
    }
    if let Command::Plugin(p) = &args.command {
        return plugin::run(p);
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&Error::internal(format!("cannot start the async runtime: {e}"))),
    };
    rt.block_on(async move {
        let (req, driver) = match open(&*factory).await {
            Ok(x) => x,
            Err(e) => return fail(&e),
        };
        let closer = driver.clone();
        let code = async move {
            let result = match args.command {
                Command::Verify => driver.probe().await.map(|d| {
                    let caps = driver.capabilities();
                    json!({"ok": true, "description": d, "platform": req.platform,
                       "capabilities": caps})
                }),
                Command::Inventory(a) if a.format == "neutral" => {
                    let only: Vec<GuestId> = a.vms.iter().map(|v| GuestId::new(v.clone())).collect();
                    return match inventory::read(&*driver, &only).await {
                        Ok((description, vms)) => {
                            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                            match inventory::write_document(&mut out, &req.platform, &description, &vms) {
                                Ok(()) => ExitCode::SUCCESS,
                                Err(_) => ExitCode::FAILURE,
                            }
                        }
                        Err(e) => fail(&e),
                    };
                }
                Command::Inventory(a) => {
                    let only: Vec<GuestId> = a.vms.iter().map(|v| GuestId::new(v.clone())).collect();
                    inventory::collect(&*driver, &req.platform, &only).await.map(|doc| {
                        if a.format == "persister" {
                            let targeted = if only.is_empty() { None } else { Some(only.as_slice()) };
                            inventory::persister(&doc, &a.name, req.ems_id, targeted)
                        } else {
                            doc
                        }
                    })
                }
                Command::Op(a) => ops::run(&*driver, &a).await,
                Command::Events(a) => return stream::run(&*driver, &req.platform, &a).await,
                Command::Metrics(a) => metrics(&*driver, &a).await,
                Command::Plugin(_) => Err(Error::internal("plugin is handled before reading stdin")),
            };
            match result {
                Ok(v) => match emit(&v) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(_) => ExitCode::FAILURE,
                },
                Err(e) => fail(&e),
            }
        }
        .await;
        // One command per process: release the driver's backend session (e.g. an XAPI
        // logout; bounded, best effort, never changes the answer already written).
        if tokio::time::timeout(CLOSE_BOUND, closer.close()).await.is_err() {
            tracing::debug!("closing the driver outlived its bound; the backend session expires on its own");
        }
        code
    })
}

/// How long releasing the driver's backend session may take at exit.
const CLOSE_BOUND: std::time::Duration = std::time::Duration::from_secs(5);

async fn metrics(driver: &dyn Driver, a: &MetricsArgs) -> polyvisor_core::Result<Value> {
    use polyvisor_core::events::MetricsInterval;
    let start = parse_time(&a.start, "start")?;
    let end = match &a.end {
        Some(e) => parse_time(e, "end")?,
        None => polyvisor_core::task::now_unix(),
    };
    let interval = if a.interval == "hourly" { MetricsInterval::Hourly } else { MetricsInterval::Realtime };
    if !driver.capabilities().metrics {
        return Err(Error::unsupported("metrics"));
    }
    let samples = driver.metrics(&GuestId::new(a.vm.clone()), start, end, interval).await?;
    let mut out = serde_json::Map::new();
    for s in samples {
        out.insert(
            inventory::iso(s.at),
            json!({"cpu_usage_rate_average": s.cpu_usage_rate, "mem_usage_absolute_average": s.mem_usage,
                   "disk_usage_rate_average": s.disk_rate_kbps, "net_usage_rate_average": s.net_rate_kbps}),
        );
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(exit_code(ErrorKind::Unauthorized), 2);
        assert_eq!(exit_code(ErrorKind::Unavailable), 3);
        assert_eq!(exit_code(ErrorKind::Timeout), 3);
        assert_eq!(exit_code(ErrorKind::NotFound), 1);
        assert_eq!(parse_time("2023-11-14T22:13:20Z", "start").unwrap(), 1_700_000_000);
        assert_eq!(parse_time("1700000000", "start").unwrap(), 1_700_000_000);
        assert!(parse_time("yesterday", "start").is_err());
    }
}
