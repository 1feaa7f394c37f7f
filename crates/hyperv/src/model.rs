//! The scripts' cmdlet-shaped JSON (`Get-VM` objects as `ConvertTo-PvVm` prints them) →
//! core types, and polyvisor's metadata, kept in the VM's **Notes** as one line
//! `polyvisor:{json}` (ownership key, template flag, the files polyvisor created, the clone
//! marker); the rest of the Notes is the operator's and is preserved.

use polyvisor_core::{Error, Guest, GuestId, GuestSummary, Nic, PowerState, Result};
use serde_json::{json, Map, Value};

/// Prefix of polyvisor's Notes line.
pub const NOTES_PREFIX: &str = "polyvisor:";

/// polyvisor's metadata of one VM.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meta {
    /// Ownership key (CloudStack internal name, …).
    pub key: Option<String>,
    /// Template flag.
    pub template: bool,
    /// Files polyvisor created for this VM (deleted with it).
    pub files: Vec<String>,
    /// `source-id:name` of the clone that made it.
    pub clone: Option<String>,
    /// Other fields (kept as they are).
    pub extra: Map<String, Value>,
}

impl Meta {
    /// The metadata in `notes` (empty when there is no polyvisor line).
    pub fn parse(notes: &str) -> Meta {
        let Some(line) = notes.lines().rev().find_map(|l| l.trim().strip_prefix(NOTES_PREFIX)) else {
            return Meta::default();
        };
        let Ok(Value::Object(mut m)) = serde_json::from_str::<Value>(line) else { return Meta::default() };
        let key = m.remove("key").and_then(|v| v.as_str().map(str::to_string));
        let template = m.remove("template").and_then(|v| v.as_bool()).unwrap_or(false);
        let files = m
            .remove("files")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        let clone = m.remove("clone").and_then(|v| v.as_str().map(str::to_string));
        Meta { key, template, files, clone, extra: m }
    }

    /// True when the VM carries any polyvisor metadata.
    pub fn is_empty(&self) -> bool {
        *self == Meta::default()
    }

    /// `notes` with polyvisor's line replaced by this metadata (removed when empty).
    pub fn write_into(&self, notes: &str) -> String {
        let mut lines: Vec<&str> = notes.lines().filter(|l| !l.trim().starts_with(NOTES_PREFIX)).collect();
        while lines.last().is_some_and(|l| l.trim().is_empty()) {
            lines.pop();
        }
        let mut out = lines.join("\n");
        if !self.is_empty() {
            let mut m = self.extra.clone();
            if let Some(k) = &self.key {
                m.insert("key".into(), json!(k));
            }
            if self.template {
                m.insert("template".into(), json!(true));
            }
            if !self.files.is_empty() {
                m.insert("files".into(), json!(self.files));
            }
            if let Some(c) = &self.clone {
                m.insert("clone".into(), json!(c));
            }
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(NOTES_PREFIX);
            out.push_str(&Value::Object(m).to_string());
        }
        out
    }
}

/// A VM id is a GUID (what `Get-VM` reports); anything else is refused before any call.
pub fn vm_id(id: &GuestId) -> Result<String> {
    let s = id.as_str();
    let ok = s.len() == 36
        && s.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() });
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(Error::invalid(format!(
            "'{}' is not a Hyper-V VM id (a GUID)",
            s.chars().filter(|c| !c.is_control()).take(64).collect::<String>()
        )))
    }
}

/// VM and checkpoint names polyvisor passes: letters, digits, space, `. _ -`, 1–100 chars
/// (a quote, `$`, `;`, backtick, path or wildcard character is refused, though values
/// never reach script text anyway).
pub fn valid_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.trim() == name
        && name.chars().all(|c| c.is_ascii_alphanumeric() || " ._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!("{what} must be 1-100 letters, digits, spaces, '.', '_' or '-'")))
    }
}

/// Hyper-V `VMState` names → core power state.
pub fn power_of(state: &str) -> PowerState {
    match state {
        "Running" | "RunningCritical" => PowerState::PoweredOn,
        "Off" | "OffCritical" => PowerState::PoweredOff,
        "Paused" | "PausedCritical" | "Saved" | "SavedCritical" => PowerState::Suspended,
        "Starting" | "StartingCritical" | "Resuming" | "ResumingCritical" | "Reset" => PowerState::PoweringOn,
        "Stopping" | "StoppingCritical" => PowerState::PoweringOff,
        "Pausing" | "PausingCritical" | "Saving" | "SavingCritical" => PowerState::Suspending,
        _ => PowerState::PoweredOff,
    }
}

/// `00155D010203` → `00:15:5D:01:02:03`.
pub fn mac(raw: &str) -> String {
    let hex: String = raw.chars().filter(char::is_ascii_hexdigit).collect();
    if hex.len() != 12 {
        return raw.to_string();
    }
    hex.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).to_ascii_uppercase()).collect::<Vec<_>>().join(":")
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// The VM's Notes.
pub fn notes(v: &Value) -> &str {
    s(v, "Notes")
}

/// The VM's metadata.
pub fn meta(v: &Value) -> Meta {
    Meta::parse(notes(v))
}

/// The VM's state name.
pub fn state(v: &Value) -> &str {
    s(v, "State")
}

/// The VM's id (lower-case GUID).
pub fn id_of(v: &Value) -> Option<String> {
    let id = s(v, "Id");
    (!id.is_empty()).then(|| id.to_ascii_lowercase())
}

/// A `ConvertTo-PvVm` object → [`Guest`].
pub fn guest(v: &Value) -> Option<Guest> {
    let id = id_of(v)?;
    let m = meta(v);
    let nics = v
        .get("NetworkAdapters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| {
            let ips: Vec<String> = a
                .get("IPAddresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            Nic {
                mac: mac(s(a, "MacAddress")),
                ipv4: ips.iter().filter(|i| !i.contains(':')).cloned().collect(),
                ipv6: ips.iter().filter(|i| i.contains(':')).cloned().collect(),
                network: Some(s(a, "SwitchName").to_string()).filter(|x| !x.is_empty()),
                vlan: None,
            }
        })
        .collect();
    Some(Guest {
        id: GuestId::new(id),
        name: s(v, "Name").to_string(),
        node: Some(s(v, "ComputerName").to_string()).filter(|x| !x.is_empty()),
        os: None,
        cpus: v.get("ProcessorCount").and_then(Value::as_u64).map(|c| c as u32),
        memory_mb: v.get("MemoryStartup").and_then(Value::as_u64).map(|b| b / (1024 * 1024)),
        nics,
        is_template: m.template,
        power: power_of(state(v)),
        raw_power_state: state(v).to_string(),
        key: m.key,
    })
}

/// A `ConvertTo-PvVm` object → [`GuestSummary`].
pub fn summary(v: &Value) -> Option<GuestSummary> {
    guest(v).map(|g| g.summary())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_keep_the_operators_text() {
        let notes = "Owner: ops team\r\nDo not touch";
        let m = Meta { key: Some("i-2-3-VM".into()), files: vec!["D:\\VHD\\a.vhdx".into()], ..Default::default() };
        let n = m.write_into(notes);
        assert!(n.starts_with("Owner: ops team\nDo not touch\npolyvisor:{"), "{n}");
        assert_eq!(Meta::parse(&n), m);
        let t = Meta { template: true, ..Meta::parse(&n) };
        let n2 = t.write_into(&n);
        assert_eq!(n2.matches(NOTES_PREFIX).count(), 1);
        assert!(Meta::parse(&n2).template);
        assert_eq!(Meta::default().write_into(&n2), "Owner: ops team\nDo not touch");
        assert!(Meta::parse("polyvisor:not json").is_empty());
    }

    #[test]
    fn ids_names_states_and_macs() {
        assert!(vm_id(&GuestId::new("6A1E0B3C-1F2D-4E5F-8A9B-0C1D2E3F4A5B")).is_ok());
        for bad in ["x'; Remove-VM *", "6A1E0B3C-1F2D-4E5F-8A9B-0C1D2E3F4A5", "../../etc", ""] {
            assert_eq!(vm_id(&GuestId::new(bad)).unwrap_err().kind(), polyvisor_core::ErrorKind::InvalidInput);
        }
        assert!(valid_name("name", "i-2-34-VM").is_ok() && valid_name("name", "RAS clone 1.2").is_ok());
        for bad in ["a'b", "a$(b)", "a;b", "a`b", "a\\b", "a*", " a", "", &"x".repeat(101)] {
            assert!(valid_name("name", bad).is_err(), "{bad}");
        }
        assert_eq!(power_of("Running"), PowerState::PoweredOn);
        assert_eq!(power_of("Saved"), PowerState::Suspended);
        assert_eq!(mac("00155D010203"), "00:15:5D:01:02:03");
    }
}
