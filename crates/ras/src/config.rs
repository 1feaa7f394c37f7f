//! Resolved front configuration: command-line/env defaults, overridden by
//! `provider/connect` settings, clamped to the driver's [`Capabilities`].

use crate::args::Args;
use polyvisor_core::{Capabilities, OpenOptions, Settings, TemplatePreference, TemplateStrategy};
use std::time::Duration;

/// Settings key: template level (`none|basic|versioning`).
pub(crate) const KEY_TEMPLATE_METHOD: &str = "template_method";
/// Settings key: link clones (bool).
pub(crate) const KEY_LINK_CLONES: &str = "can_link_clones";
/// Settings key: driver name.
pub(crate) const KEY_DRIVER: &str = "driver";
/// Alias of [`KEY_DRIVER`] used by the RAS samples.
pub(crate) const KEY_PLATFORM: &str = "platform";
/// Settings key: suspend mode (`auto|on|off` or a bool).
pub(crate) const KEY_SUSPEND: &str = "can_suspend_guests";

/// The driver used when neither args, env nor settings name one.
pub(crate) const DEFAULT_DRIVER: &str = "sim";
const DEFAULT_GUESTS_POLLING: u64 = 5;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
const TASK_BUDGET_SECS: u64 = 30 * 60;

/// RAS `template_method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TemplateMethod {
    /// No templates.
    None,
    /// Full clones (plus link clones with `can_link_clones`).
    Basic,
    /// Template versions (snapshots `RAS_TEMPLATE_VERSION_<N>`).
    Versioning,
}

impl TemplateMethod {
    fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "none" => Some(TemplateMethod::None),
            "basic" => Some(TemplateMethod::Basic),
            "versioning" => Some(TemplateMethod::Versioning),
            _ => None,
        }
    }

    /// The wire value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TemplateMethod::None => "none",
            TemplateMethod::Basic => "basic",
            TemplateMethod::Versioning => "versioning",
        }
    }
}

/// How `can_suspend_guests` is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SuspendMode {
    /// The driver's capability.
    Auto,
    /// Advertise unless the driver says it cannot.
    On,
    /// Never advertise.
    Off,
}

impl SuspendMode {
    fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Some(SuspendMode::Auto),
            "on" | "true" | "yes" | "1" => Some(SuspendMode::On),
            "off" | "false" | "no" | "0" => Some(SuspendMode::Off),
            _ => None,
        }
    }
}

/// The requested (not yet clamped) configuration.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Requested template level.
    pub template_method: TemplateMethod,
    /// Requested link clones.
    pub link_clones: bool,
    /// Driver name, when configured.
    pub driver: Option<String>,
    /// Suspend advertisement.
    pub suspend: SuspendMode,
    /// `guests_polling_rate` (clamped).
    pub guests_polling_rate: u64,
    /// `tasks_polling_rate` (clamped), `None` = driver's advice.
    pub tasks_polling_rate: Option<u64>,
    /// `tasks_polling_retries` (clamped), `None` = derived from the rate.
    pub tasks_polling_retries: Option<u64>,
    /// Budget for one request's driver work.
    pub request_timeout: Duration,
    /// Problems found in args/env, reported by `provider/connect`.
    pub problems: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            template_method: TemplateMethod::Versioning,
            link_clones: false,
            driver: None,
            suspend: SuspendMode::Auto,
            guests_polling_rate: DEFAULT_GUESTS_POLLING,
            tasks_polling_rate: None,
            tasks_polling_retries: None,
            request_timeout: DEFAULT_TIMEOUT,
            problems: Vec::new(),
        }
    }
}

fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "" | "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn parse_int(raw: &str, lo: u64, hi: u64) -> Option<u64> {
    raw.trim().parse::<u64>().ok().map(|v| v.clamp(lo, hi))
}

impl Config {
    /// From command-line arguments (clap already applied the env fallbacks).
    pub(crate) fn from_args(args: &Args) -> Config {
        let mut c = Config::default();
        let bad = c_problem;
        let mut problems = Vec::new();
        if let Some(raw) = args.template_method.as_deref().filter(|s| !s.trim().is_empty()) {
            match TemplateMethod::parse(raw) {
                Some(m) => c.template_method = m,
                None => problems.push(bad("--template-method", "none, basic or versioning")),
            }
        }
        if let Some(raw) = args.link_clones.as_deref() {
            match parse_bool(raw) {
                Some(b) => c.link_clones = b,
                None => problems.push(bad("--link-clones", "a boolean")),
            }
        }
        c.driver = args.driver.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
        if let Some(raw) = args.suspend.as_deref() {
            match SuspendMode::parse(raw) {
                Some(m) => c.suspend = m,
                None => problems.push(bad("--suspend", "auto, on or off")),
            }
        }
        if let Some(raw) = args.guests_polling_rate.as_deref() {
            match parse_int(raw, 3, 900) {
                Some(v) => c.guests_polling_rate = v,
                None => problems.push(bad("--guests-polling-rate", "an integer")),
            }
        }
        if let Some(raw) = args.tasks_polling_rate.as_deref() {
            match parse_int(raw, 1, 60) {
                Some(v) => c.tasks_polling_rate = Some(v),
                None => problems.push(bad("--tasks-polling-rate", "an integer")),
            }
        }
        if let Some(raw) = args.tasks_polling_retries.as_deref() {
            match parse_int(raw, 0, 180) {
                Some(v) => c.tasks_polling_retries = Some(v),
                None => problems.push(bad("--tasks-polling-retries", "an integer")),
            }
        }
        if let Some(raw) = args.request_timeout.as_deref() {
            match raw.trim().parse::<f64>().ok().filter(|v| v.is_finite()) {
                Some(v) => c.request_timeout = Duration::from_secs_f64(v.clamp(0.1, 300.0)),
                None => problems.push(bad("--request-timeout", "a number of seconds")),
            }
        }
        c.problems = problems;
        c
    }

    /// Applies the overrides carried by `provider/connect` settings. The error names the
    /// key, never the value.
    pub(crate) fn with_settings(&self, s: &Settings) -> Result<Config, String> {
        let mut c = self.clone();
        if let Some(raw) = s.str(KEY_TEMPLATE_METHOD) {
            c.template_method = TemplateMethod::parse(&raw)
                .ok_or_else(|| format!("setting '{KEY_TEMPLATE_METHOD}' must be none, basic or versioning"))?;
        }
        if let Some(b) = s.bool(KEY_LINK_CLONES).map_err(|e| e.message().to_string())? {
            c.link_clones = b;
        }
        if let Some(raw) = s.str(KEY_SUSPEND) {
            c.suspend =
                SuspendMode::parse(&raw).ok_or_else(|| format!("setting '{KEY_SUSPEND}' must be auto, on or off"))?;
        }
        if let Some(d) = s.str_any(&[KEY_DRIVER, KEY_PLATFORM]) {
            c.driver = Some(d);
        }
        Ok(c)
    }

    /// Whether the requested level is the link-clone level (`basic` + link clones).
    pub(crate) fn link_clone_level(&self) -> bool {
        self.template_method == TemplateMethod::Basic && self.link_clones
    }

    /// Settings for `factory.open`: `base` plus the driver name when `base` names none.
    pub(crate) fn open_settings(&self, base: &Settings) -> Settings {
        let mut s = base.clone();
        if !s.has(KEY_DRIVER) && !s.has(KEY_PLATFORM) {
            s.set(KEY_DRIVER, self.driver.clone().unwrap_or_else(|| DEFAULT_DRIVER.to_string()));
        }
        s
    }

    /// Typed options for `factory.open`/`capabilities`: the link-clone level asks for
    /// native templates (linked clones from a read-only base), every other level for
    /// flagged templates that keep their snapshots (versioning). A driver setting the
    /// operator gave explicitly (e.g. Proxmox `template_mode`) still wins in the driver.
    pub(crate) fn open_options(&self) -> OpenOptions {
        OpenOptions::with_templates(if self.link_clone_level() {
            TemplatePreference::Native
        } else {
            TemplatePreference::Flag
        })
    }
}

fn c_problem(flag: &str, want: &str) -> String {
    format!("{flag} must be {want}")
}

/// What the front advertises and enforces: the requested level clamped to the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Level {
    /// Effective template method.
    pub template_method: TemplateMethod,
    /// Effective link clones.
    pub link_clones: bool,
    /// Effective suspend support.
    pub can_suspend: bool,
    /// `guests_polling_rate`.
    pub guests_polling_rate: u64,
    /// `tasks_polling_rate`.
    pub tasks_polling_rate: u64,
    /// `tasks_polling_retries`.
    pub tasks_polling_retries: u64,
    /// The driver's template strategy (`None` when the driver is unknown).
    pub strategy: Option<TemplateStrategy>,
}

impl Level {
    /// Clamps `cfg` to `caps` (`None`: driver unknown, trust the operator's choice).
    pub(crate) fn resolve(cfg: &Config, caps: Option<&Capabilities>) -> Level {
        let mut method = cfg.template_method;
        let mut link = cfg.link_clones && method != TemplateMethod::None;
        let mut can_suspend = cfg.suspend == SuspendMode::On;
        let mut rate = cfg.tasks_polling_rate.unwrap_or(3);
        if let Some(caps) = caps {
            if caps.templates == TemplateStrategy::None {
                method = TemplateMethod::None;
            }
            if !caps.snapshots {
                link = false;
                if method == TemplateMethod::Versioning {
                    method = TemplateMethod::Basic;
                }
            }
            if method == TemplateMethod::Versioning && !caps.clone_from_snapshot {
                method = TemplateMethod::Basic;
            }
            if !caps.linked_clones || method == TemplateMethod::None {
                link = false;
            }
            can_suspend = caps.suspend && cfg.suspend != SuspendMode::Off;
            rate = cfg.tasks_polling_rate.unwrap_or(u64::from(caps.task_poll_secs));
        }
        let rate = rate.clamp(1, 60);
        let retries = cfg.tasks_polling_retries.unwrap_or_else(|| TASK_BUDGET_SECS.div_ceil(rate)).min(180);
        Level {
            template_method: method,
            link_clones: link,
            can_suspend,
            guests_polling_rate: cfg.guests_polling_rate.clamp(3, 900),
            tasks_polling_rate: rate,
            tasks_polling_retries: retries,
            strategy: caps.map(|c| c.templates),
        }
    }

    /// Clone, convert and tasks are available.
    pub(crate) fn templates(&self) -> bool {
        self.template_method != TemplateMethod::None
    }

    /// The snapshot methods are available (versioning or link clones).
    pub(crate) fn snapshots(&self) -> bool {
        self.template_method == TemplateMethod::Versioning
            || (self.template_method == TemplateMethod::Basic && self.link_clones)
    }

    /// A label for messages (`basic`, `basic+link-clones`).
    pub(crate) fn label(&self) -> String {
        if self.template_method == TemplateMethod::Basic && self.link_clones {
            "basic+link-clones".into()
        } else {
            self.template_method.as_str().into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyvisor_test_support::fake::full_caps as caps_full;

    #[test]
    fn args_parse_leniently_and_clamp() {
        let a = Args {
            template_method: Some(" Basic ".into()),
            link_clones: Some("true".into()),
            guests_polling_rate: Some("1".into()),
            tasks_polling_rate: Some("999".into()),
            tasks_polling_retries: Some("1000".into()),
            request_timeout: Some("0.5".into()),
            ..Args::default()
        };
        let c = Config::from_args(&a);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.template_method, TemplateMethod::Basic);
        assert!(c.link_clones && c.link_clone_level());
        assert_eq!(c.guests_polling_rate, 3);
        assert_eq!(c.tasks_polling_rate, Some(60));
        assert_eq!(c.tasks_polling_retries, Some(180));
        assert_eq!(c.request_timeout, Duration::from_millis(500));
    }

    #[test]
    fn bad_args_become_problems_not_failures() {
        let a =
            Args { template_method: Some("gold".into()), guests_polling_rate: Some("fast".into()), ..Args::default() };
        let c = Config::from_args(&a);
        assert_eq!(c.template_method, TemplateMethod::Versioning);
        assert_eq!(c.problems.len(), 2);
        assert!(c.problems[0].contains("--template-method"));
    }

    #[test]
    fn level_is_clamped_to_capabilities() {
        let cfg = Config { link_clones: true, ..Config::default() };
        let l = Level::resolve(&cfg, Some(&caps_full()));
        assert_eq!(l.template_method, TemplateMethod::Versioning);
        assert!(l.can_suspend && l.link_clones);
        assert_eq!(l.tasks_polling_rate, 2);
        assert_eq!(l.tasks_polling_retries, 180);

        let no_snap = Capabilities { snapshots: false, suspend: false, ..caps_full() };
        let l = Level::resolve(&cfg, Some(&no_snap));
        assert_eq!(l.template_method, TemplateMethod::Basic);
        assert!(!l.link_clones && !l.can_suspend && !l.snapshots());

        let none = Capabilities { templates: TemplateStrategy::None, ..caps_full() };
        let l = Level::resolve(&cfg, Some(&none));
        assert_eq!(l.template_method, TemplateMethod::None);
        assert!(!l.link_clones && !l.templates());

        let off = Config { suspend: SuspendMode::Off, ..Config::default() };
        assert!(!Level::resolve(&off, Some(&caps_full())).can_suspend);
        let on = Config { suspend: SuspendMode::On, ..Config::default() };
        assert!(Level::resolve(&on, None).can_suspend);
        assert!(!Level::resolve(&Config::default(), None).can_suspend);
    }

    #[test]
    fn settings_override_and_open_settings() {
        let base = Config::default();
        let s = Settings::from_pairs([("template_method", "basic"), ("can_link_clones", "1")]);
        let c = base.with_settings(&s).unwrap();
        assert!(c.link_clone_level());
        assert_eq!(c.open_options().templates, TemplatePreference::Native);
        let o = c.open_settings(&s);
        assert_eq!(o.str("template_mode"), None, "no untyped driver keys are injected");
        assert_eq!(o.str("driver").as_deref(), Some("sim"));
        assert_eq!(base.open_options().templates, TemplatePreference::Flag);
        let basic = Config { template_method: TemplateMethod::Basic, ..Config::default() };
        assert_eq!(basic.open_options().templates, TemplatePreference::Flag);
        let o = base.open_settings(&Settings::from_pairs([("platform", "proxmox"), ("template_mode", "flag")]));
        assert_eq!(o.str("driver"), None);
        assert_eq!(o.str("template_mode").as_deref(), Some("flag"));
        let err = base.with_settings(&Settings::from_pairs([("template_method", "s3cret")])).unwrap_err();
        assert!(err.contains("template_method") && !err.contains("s3cret"));
    }
}
