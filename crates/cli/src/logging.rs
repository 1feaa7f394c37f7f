//! Logging setup. Protocol modes (RAS reads stdout, CloudStack reads stdout + stderr) log
//! to a file or nowhere; human commands log warnings to stderr unless a file is given.

use std::path::Path;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. A `--log-file` that cannot be opened for appending is
/// an error (the reason names the file and the cause): the caller reports it the way the
/// mode speaks, never silently running without the log the operator asked for.
pub fn init(log_file: Option<&Path>, level: &str, protocol_mode: bool) -> Result<(), String> {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))?;
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .try_init();
        }
        None if !protocol_mode => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(EnvFilter::new("warn"))
                .with_writer(std::io::stderr)
                .try_init();
        }
        None => {}
    }
    Ok(())
}
