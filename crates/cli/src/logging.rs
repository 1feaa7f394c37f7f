//! Logging setup. Protocol modes (RAS reads stdout, CloudStack reads stdout + stderr) log
//! to a file or nowhere; human commands log warnings to stderr unless a file is given.

use std::path::Path;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Never fails the program: a log file that cannot be
/// opened means no logging (a provider must start even with a bad log path).
pub fn init(log_file: Option<&Path>, level: &str, protocol_mode: bool) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
            if let Ok(file) = file {
                let _ = tracing_subscriber::fmt()
                    .with_env_filter(filter)
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(file))
                    .try_init();
            }
        }
        None if !protocol_mode => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(EnvFilter::new("warn"))
                .with_writer(std::io::stderr)
                .try_init();
        }
        None => {}
    }
}
