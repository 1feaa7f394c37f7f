//! One extension invocation: `<action> <payload file> <timeout>` → one JSON document on
//! stdout and the exit code (spec §1). Stdin is never read; nothing goes to stderr.
//!
//! Time: the run's hard deadline is 95 % of the timeout argument (CloudStack SIGKILLs at
//! 100 %); actions plan against 90 % so a failed `create` can still clean up and answer.

use crate::action::Action;
use crate::actions::dispatch;
use crate::config;
use crate::ctx::Ctx;
use crate::output::Reply;
use crate::payload::Payload;
use polyvisor_core::{DriverFactory, Error, Settings};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Timeout assumed when `argv[3]` is missing, unparsable or not positive (spec §1.1).
pub const DEFAULT_TIMEOUT_SECS: f64 = 600.0;

/// Upper bound on `status` / `statuses`, whatever the timeout argument says.
pub const STATUS_CAP: Duration = Duration::from_secs(20);

/// The timeout argument in seconds.
pub fn parse_timeout(raw: Option<&str>) -> Duration {
    let secs = raw
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(DEFAULT_TIMEOUT_SECS)
        .min(7.0 * 86_400.0);
    Duration::from_secs_f64(secs)
}

/// Answers one invocation (`argv` = the arguments after `cloudstack`).
pub fn answer(argv: &[String], config_file: Option<&Path>, factory: Arc<dyn DriverFactory>) -> Reply {
    let Some(raw) = argv.first() else { return Reply::error("Missing required arguments") };
    let action = Action::parse(raw);
    match &action {
        Action::JavaCommand(fqcn) => {
            tracing::info!(command = %fqcn, "unhandled agent command refused");
            return Reply::error(&format!("unsupported command {fqcn}"));
        }
        Action::Unknown(_) => return Reply::error("Invalid action"),
        _ => {}
    }
    let Some(path) = argv.get(1) else { return Reply::error("Missing required arguments") };
    let mut timeout = parse_timeout(argv.get(2).map(String::as_str));
    if matches!(action, Action::Status | Action::Statuses) {
        // Status runs per VM, sequentially, inside the host ping: a stuck backend must
        // yield PowerUnknown quickly rather than hold the ping for the 1800 s `wait`.
        timeout = timeout.min(STATUS_CAP);
    }
    let payload = match Payload::read(path) {
        Ok(p) => p,
        Err(e) => return Reply::from_error(&e),
    };
    let file = match config_file.map(config::load_file).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => return Reply::from_error(&e),
    };
    let settings = config::merged(&file, &payload);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(_) => return Reply::error("could not start the async runtime"),
    };
    let reply = runtime.block_on(run_action(action, payload, settings, timeout, factory));
    // Do not wait for blocking backend calls that outlived the deadline.
    runtime.shutdown_background();
    reply
}

async fn run_action(
    action: Action,
    payload: Payload,
    settings: Settings,
    timeout: Duration,
    factory: Arc<dyn DriverFactory>,
) -> Reply {
    let start = tokio::time::Instant::now();
    let hard = start + timeout.mul_f64(0.95);
    let soft = start + timeout.mul_f64(0.90);
    let vm = crate::ctx::shown(&payload.internal_name().unwrap_or_default());
    // The driver outlives the action future so that it can be closed after a timeout too.
    let opened: std::sync::OnceLock<Arc<dyn polyvisor_core::Driver>> = std::sync::OnceLock::new();
    let work = async {
        let driver = factory.open(&settings, &polyvisor_core::OpenOptions::default()).await?;
        let _ = opened.set(driver.clone());
        let ctx = Ctx { driver, settings, payload, deadline: soft };
        dispatch(&ctx, &action).await
    };
    let reply = match tokio::time::timeout_at(hard, work).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => Reply::from_error(&e),
        Err(_) => Reply::from_error(&Error::timeout(format!("Timed out after {} s", timeout.as_secs()))),
    };
    // One action per process: release the driver's backend session now (bounded; the
    // reply is decided already and never changes because of it).
    if let Some(driver) = opened.get() {
        if tokio::time::timeout(close_bound(timeout), driver.close()).await.is_err() {
            tracing::debug!("closing the driver outlived its bound; the backend session expires on its own");
        }
    }
    tracing::info!(?action, vm = %vm, ok = reply.ok, elapsed_ms = start.elapsed().as_millis() as u64, "cloudstack action");
    reply
}

/// How long closing the driver may take: inside the 5 % CloudStack leaves after the hard
/// deadline, at most 5 s.
pub fn close_bound(timeout: Duration) -> Duration {
    timeout.mul_f64(0.04).min(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_argument_is_lenient() {
        assert_eq!(parse_timeout(Some("1800")), Duration::from_secs(1800));
        assert_eq!(parse_timeout(Some(" 5 ")), Duration::from_secs(5));
        assert_eq!(parse_timeout(Some("2.5")), Duration::from_millis(2500));
        for bad in [None, Some(""), Some("abc"), Some("0"), Some("-3"), Some("NaN"), Some("inf")] {
            assert_eq!(parse_timeout(bad), Duration::from_secs(600), "{bad:?}");
        }
    }
}
