//! Field validators for RAS CPF replies (spec §3, §4.4, §4.9). Each returns every rule a
//! value breaks, phrased as "expected …, saw …".

use super::process::short;
use serde_json::Value;

/// The six power states (§5).
pub const STATES: [&str; 6] = ["powered_on", "powered_off", "powering_on", "powering_off", "suspended", "suspending"];

/// Template support levels a provider can advertise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateMethod {
    /// No templates.
    None,
    /// Full (and maybe link) clones.
    Basic,
    /// Template versions.
    Versioning,
}

/// The capabilities the provider advertised in `provider/initialize`.
#[derive(Debug, Clone)]
pub struct Caps {
    /// `version`.
    pub version: String,
    /// `can_suspend_guests`.
    pub can_suspend: bool,
    /// `guests_polling_rate` seconds.
    pub guests_polling_rate: u64,
    /// `tasks_polling_rate` seconds.
    pub tasks_polling_rate: u64,
    /// `tasks_polling_retries`.
    pub tasks_polling_retries: u64,
    /// `template_method`.
    pub template_method: TemplateMethod,
    /// `can_link_clones`.
    pub can_link_clones: bool,
}

impl Caps {
    /// Clone/convert/tasks are available (basic or versioning).
    pub fn templates(&self) -> bool {
        self.template_method != TemplateMethod::None
    }

    /// The snapshot methods are available (link clones or versioning).
    pub fn snapshots(&self) -> bool {
        self.template_method == TemplateMethod::Versioning
            || (self.template_method == TemplateMethod::Basic && self.can_link_clones)
    }

    /// The §7 snapshot name for template version `n`, or `None` when no snapshot applies.
    pub fn snapshot_name(&self, n: u32) -> Option<String> {
        match self.template_method {
            TemplateMethod::Versioning => Some(format!("RAS_TEMPLATE_VERSION_{n}")),
            TemplateMethod::Basic if self.can_link_clones => Some("RAS Template Snapshot".into()),
            _ => None,
        }
    }

    /// A short label (`none`, `basic`, `basic+link-clones`, `versioning`).
    pub fn level(&self) -> &'static str {
        match self.template_method {
            TemplateMethod::None => "none",
            TemplateMethod::Basic if self.can_link_clones => "basic+link-clones",
            TemplateMethod::Basic => "basic",
            TemplateMethod::Versioning => "versioning",
        }
    }
}

/// Validates an initialize result; returns the capabilities (with Test Kit-compatible
/// fallbacks for broken fields) and every violation.
pub fn initialize(result: &Value) -> (Caps, Vec<String>) {
    let mut errs = Vec::new();
    let version = match result.get("version") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        other => {
            errs.push(format!("expected `version` to be a non-empty string, saw {}", opt(other)));
            String::new()
        }
    };
    let empty = Value::Object(Default::default());
    let caps = match result.get("capabilities") {
        Some(c @ Value::Object(_)) => c,
        other => {
            errs.push(format!("expected `capabilities` object, saw {}", opt(other)));
            &empty
        }
    };
    let mut boolean = |key: &str| match caps.get(key) {
        Some(Value::Bool(b)) => *b,
        other => {
            errs.push(format!("expected capabilities.{key} to be a JSON boolean, saw {}", opt(other)));
            false
        }
    };
    let can_suspend = boolean("can_suspend_guests");
    let can_link_clones = boolean("can_link_clones");
    let mut int = |key: &str, lo: u64, hi: u64, default: u64| match caps.get(key).and_then(Value::as_u64) {
        Some(n) if (lo..=hi).contains(&n) => n,
        Some(n) => {
            errs.push(format!("expected capabilities.{key} in {lo}..={hi}, saw {n}"));
            n.clamp(lo, hi)
        }
        None => {
            errs.push(format!(
                "expected capabilities.{key} to be an integer in {lo}..={hi}, saw {}",
                opt(caps.get(key))
            ));
            default
        }
    };
    let guests_polling_rate = int("guests_polling_rate", 3, 900, 15);
    let tasks_polling_rate = int("tasks_polling_rate", 1, 60, 3);
    let tasks_polling_retries = int("tasks_polling_retries", 0, 180, 20);
    let template_method = match caps.get("template_method").and_then(Value::as_str) {
        Some("none") => TemplateMethod::None,
        Some("basic") => TemplateMethod::Basic,
        Some("versioning") => TemplateMethod::Versioning,
        _ => {
            errs.push(format!(
                "expected capabilities.template_method \"none\"|\"basic\"|\"versioning\", saw {} (the Test Kit refuses templates)",
                opt(caps.get("template_method"))
            ));
            TemplateMethod::None
        }
    };
    if caps.get("suspend").is_some() {
        errs.push("expected no legacy `suspend` key (use can_suspend_guests), saw it".into());
    }
    let c = Caps {
        version,
        can_suspend,
        guests_polling_rate,
        tasks_polling_rate,
        tasks_polling_retries,
        template_method,
        can_link_clones,
    };
    (c, errs)
}

/// Validates a `guests/list` result; returns the ids and every violation.
pub fn guest_list(result: &Value) -> (Vec<String>, Vec<String>) {
    let mut errs = Vec::new();
    let mut ids = Vec::new();
    match result.get("guests") {
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(s) if !s.is_empty() => ids.push(s.clone()),
                    Value::Number(n) => {
                        errs.push(format!("expected guest ids as JSON strings, saw number {n}"));
                        ids.push(n.to_string());
                    }
                    other => errs.push(format!("expected guest ids as non-empty strings, saw {}", short(other))),
                }
            }
        }
        other => errs.push(format!("expected {{\"guests\":[\"id\",…]}}, saw result {}", opt(other.or(Some(result))))),
    }
    let mut seen = std::collections::HashSet::new();
    for id in &ids {
        if !seen.insert(id) {
            errs.push(format!("expected unique ids, saw \"{id}\" twice"));
        }
    }
    (ids, errs)
}

/// Validates a full guest object (§4.4). `id` is the requested id.
pub fn guest(id: &str, g: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    if !g.is_object() {
        return vec![format!("expected a guest object, saw {}", short(g))];
    }
    match g.get("name") {
        Some(Value::String(s)) if !s.is_empty() => {}
        other => errs.push(format!(
            "expected non-null, non-empty string `name` (RAS drops the guest otherwise), saw {}",
            opt(other)
        )),
    }
    match g.get("state").and_then(Value::as_str) {
        Some(s) if STATES.contains(&s) => {}
        _ => errs.push(format!("expected `state` to be one of {}, saw {}", STATES.join("|"), opt(g.get("state")))),
    }
    match g.get("is_template") {
        Some(Value::Bool(_)) => {}
        other => errs.push(format!("expected `is_template` JSON boolean, saw {}", opt(other))),
    }
    match g.get("id") {
        None => {}
        Some(Value::String(s)) if s == id => {}
        Some(other) => errs.push(format!("expected `id` to be the string \"{id}\", saw {}", short(other))),
    }
    match g.get("ip_addresses") {
        Some(Value::Array(ips)) => {
            if ips.len() > 3 {
                errs.push(format!("expected at most 3 ip_addresses, saw {}", ips.len()));
            }
            for ip in ips {
                match ip.as_str().map(|s| s.parse::<std::net::Ipv4Addr>()) {
                    Some(Ok(a)) if a.is_loopback() => {
                        errs.push(format!("expected no loopback address in ip_addresses, saw {a}"))
                    }
                    Some(Ok(_)) => {}
                    _ => errs.push(format!("expected ip_addresses to hold IPv4 strings, saw {}", short(ip))),
                }
            }
        }
        other => errs.push(format!("expected `ip_addresses` array (never null), saw {}", opt(other))),
    }
    match g.get("mac_addresses") {
        Some(Value::Array(macs)) => {
            if macs.len() > 3 {
                errs.push(format!("expected at most 3 mac_addresses, saw {}", macs.len()));
            }
            for m in macs {
                if !m.as_str().is_some_and(is_mac) {
                    errs.push(format!("expected MACs as upper-case AA:BB:CC:DD:EE:FF strings, saw {}", short(m)));
                }
            }
        }
        other => errs.push(format!("expected `mac_addresses` array (never null), saw {}", opt(other))),
    }
    if g.get("macAddresses").is_some() {
        errs.push("expected the key `mac_addresses`, saw the legacy `macAddresses`".into());
    }
    errs
}

/// True for `AA:BB:CC:DD:EE:FF` (upper-case hex, colons).
pub fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)))
}

/// The `task_id` of an async reply: a non-empty string.
pub fn task_id(result: &Value) -> Result<String, String> {
    match result.get("task_id") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        other => Err(format!("expected a non-empty string `task_id`, saw {}", opt(other))),
    }
}

/// One `tasks/get` result.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskState {
    /// Still running.
    Running,
    /// Completed with this output.
    Completed(Value),
    /// Failed with this message.
    Failed(String),
}

/// Validates a `tasks/get` result (§4.9).
pub fn task_state(result: &Value) -> Result<TaskState, String> {
    match result.get("state").and_then(Value::as_str) {
        Some("running") => Ok(TaskState::Running),
        Some("completed") => match result.get("output") {
            None | Some(Value::Null) => Err(format!(
                "expected non-null `output` on a completed task (Test Kit: \"Missing 'output'\"), saw {}",
                short(result)
            )),
            Some(o) => Ok(TaskState::Completed(o.clone())),
        },
        Some("failed") => {
            let e = result.get("error");
            let msg = e.and_then(|e| e.get("message")).and_then(Value::as_str);
            match (e.and_then(|e| e.get("code")).and_then(Value::as_i64), msg) {
                (Some(_), Some(m)) => Ok(TaskState::Failed(m.to_string())),
                _ => Err(format!("expected failed task with error {{code,message}}, saw {}", short(result))),
            }
        }
        _ => Err(format!("expected `state` running|completed|failed, saw {}", short(result))),
    }
}

fn opt(v: Option<&Value>) -> String {
    match v {
        None => "nothing (key missing)".into(),
        Some(v) => short(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn initialize_accepts_the_spec_example_and_catches_defects() {
        let good = json!({"version":"1.0.0","capabilities":{"can_suspend_guests":true,"guests_polling_rate":5,"tasks_polling_rate":30,"tasks_polling_retries":180,"template_method":"versioning","can_link_clones":false}});
        let (c, errs) = initialize(&good);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(c.snapshot_name(2).as_deref(), Some("RAS_TEMPLATE_VERSION_2"));
        let bad = json!({"version":1,"capabilities":{"suspend":true,"guests_polling_rate":1,"tasks_polling_rate":"3","template_method":"full","can_link_clones":"false"}});
        let (c, errs) = initialize(&bad);
        assert_eq!(c.template_method, TemplateMethod::None);
        let all = errs.join("\n");
        for needle in [
            "version",
            "can_suspend_guests",
            "guests_polling_rate in 3..=900",
            "tasks_polling_rate",
            "tasks_polling_retries",
            "template_method",
            "can_link_clones",
            "legacy",
        ] {
            assert!(all.contains(needle), "missing {needle} in {all}");
        }
    }

    #[test]
    fn guest_rules() {
        let good = json!({"id":"101","name":"w","state":"powered_on","ip_addresses":["10.0.0.1"],"mac_addresses":["BC:24:11:AA:BB:CC"],"is_template":false});
        assert!(guest("101", &good).is_empty());
        let bad = json!({"id":101,"name":null,"state":"paused","ip_addresses":["127.0.0.1","::1","1.1.1.1","2.2.2.2"],"mac_addresses":null,"is_template":"no"});
        let e = guest("101", &bad);
        assert_eq!(e.len(), 8, "{e:#?}");
        assert!(!is_mac("bc:24:11:aa:bb:cc") && !is_mac("BC-24-11-AA-BB-CC") && is_mac("00:11:22:AA:BB:CC"));
    }

    #[test]
    fn list_and_tasks() {
        let (ids, e) = guest_list(&json!({"guests":["1",2]}));
        assert_eq!(ids, ["1", "2"]);
        assert_eq!(e.len(), 1);
        assert!(!guest_list(&json!(["1"])).1.is_empty());
        assert_eq!(task_state(&json!({"state":"completed","output":{}})).unwrap(), TaskState::Completed(json!({})));
        assert!(task_state(&json!({"state":"completed"})).is_err());
        assert!(task_state(&json!({"state":"done"})).is_err());
        assert_eq!(
            task_state(&json!({"state":"failed","error":{"code":1,"message":"m"}})).unwrap(),
            TaskState::Failed("m".into())
        );
        assert!(task_id(&json!({"task_id":""})).is_err());
    }
}
