//! Resolving the sim configuration: settings first, then environment, then the database
//! (timing persisted by `polyvisor sim set-timing`), then defaults.

use polyvisor_core::{Error, Result, Settings};
use std::path::PathBuf;

/// Setting naming the database file.
pub const SETTING_DB: &str = "sim_db";
/// Setting for the task duration in ms.
pub const SETTING_TASK_MS: &str = "sim_task_ms";
/// Setting for the boot duration in ms.
pub const SETTING_BOOT_MS: &str = "sim_boot_ms";
/// Setting: seed the demo estate into a fresh database (default true).
pub const SETTING_SEED: &str = "sim_seed";
/// Environment variable naming the database file.
pub const ENV_DB: &str = "POLYVISOR_SIM_DB";
/// Environment variable for the task duration in ms.
pub const ENV_TASK_MS: &str = "POLYVISOR_SIM_TASK_MS";
/// Environment variable for the boot duration in ms.
pub const ENV_BOOT_MS: &str = "POLYVISOR_SIM_BOOT_MS";
/// Environment variable: `0` for an empty estate in a fresh database.
pub const ENV_SEED: &str = "POLYVISOR_SIM_SEED";

/// Resolved driver configuration.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Database file.
    pub db_path: PathBuf,
    /// Explicit task duration (settings or env), overriding the database.
    pub task_ms: Option<i64>,
    /// Explicit boot duration (settings or env), overriding the database.
    pub boot_ms: Option<i64>,
    /// Seed a fresh database.
    pub seed: bool,
}

impl Config {
    /// From settings and the process environment.
    pub(crate) fn resolve(settings: &Settings) -> Result<Config> {
        Ok(Config {
            db_path: db_path(settings.str(SETTING_DB))?,
            task_ms: ms(settings, SETTING_TASK_MS, ENV_TASK_MS)?,
            boot_ms: ms(settings, SETTING_BOOT_MS, ENV_BOOT_MS)?,
            seed: match settings.bool(SETTING_SEED)? {
                Some(b) => b,
                None => env_bool(ENV_SEED)?.unwrap_or(true),
            },
        })
    }
}

/// The database path: explicit value, else `POLYVISOR_SIM_DB`, else
/// `<data dir>/polyvisor/sim.db`.
pub(crate) fn db_path(explicit: Option<String>) -> Result<PathBuf> {
    if let Some(p) = explicit.filter(|p| !p.trim().is_empty()) {
        return Ok(PathBuf::from(p.trim()));
    }
    if let Some(p) = env_str(ENV_DB) {
        return Ok(PathBuf::from(p));
    }
    dirs::data_dir().map(|d| d.join("polyvisor").join("sim.db")).ok_or_else(|| {
        Error::invalid(format!("no data directory for the sim database; set '{SETTING_DB}' or {ENV_DB}"))
    })
}

fn env_str(var: &str) -> Option<String> {
    std::env::var(var).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

fn env_bool(var: &str) -> Result<Option<bool>> {
    let Some(v) = env_str(var) else {
        return Ok(None);
    };
    Settings::from_pairs([(var, v)]).bool(var)
}

fn ms(settings: &Settings, key: &str, var: &str) -> Result<Option<i64>> {
    let v = match settings.u64(key)? {
        Some(v) => Some(v),
        None => match env_str(var) {
            Some(raw) => Some(
                raw.parse::<u64>().map_err(|_| Error::invalid(format!("{var} must be a non-negative integer (ms)")))?,
            ),
            None => None,
        },
    };
    Ok(v.map(|v| v.min(24 * 3600 * 1000) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_win_and_bad_values_name_the_key() {
        let s = Settings::from_pairs([
            (SETTING_DB, "/tmp/x.db"),
            (SETTING_TASK_MS, "0"),
            (SETTING_BOOT_MS, "25"),
            (SETTING_SEED, "no"),
        ]);
        let c = Config::resolve(&s).unwrap();
        assert_eq!(c.db_path, PathBuf::from("/tmp/x.db"));
        assert_eq!((c.task_ms, c.boot_ms, c.seed), (Some(0), Some(25), false));
        let bad = Settings::from_pairs([(SETTING_DB, "/tmp/x.db"), (SETTING_TASK_MS, "soon")]);
        let e = Config::resolve(&bad).unwrap_err();
        assert!(e.message().contains(SETTING_TASK_MS) && !e.message().contains("soon"), "{e}");
    }
}
