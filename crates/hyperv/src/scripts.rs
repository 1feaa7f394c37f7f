//! The fixed PowerShell scripts (`scripts/*.ps1`, compiled in) and how a call is built:
//! values travel as **data** — a JSON object, base64-encoded into a single-quoted literal
//! whose alphabet (`A–Z a–z 0–9 + / =`) cannot close the quote — that the script decodes
//! with `ConvertFrom-Json`. The script text itself never contains a caller's value. The
//! whole text is then passed as `powershell.exe -EncodedCommand` (UTF-16LE base64).

use base64::Engine;
use serde_json::Value;

/// One of the fixed scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// Host name and VM count.
    Probe,
    /// Every VM.
    List,
    /// One VM by id.
    Get,
    /// A power action.
    Power,
    /// Set a VM's Notes (compare-and-set).
    Notes,
    /// List/create/restore/remove checkpoints.
    Snapshot,
    /// Linked or full clone into a new VM.
    Clone,
    /// Remove a VM and the files polyvisor created for it.
    Delete,
}

/// The prelude's first line (the stand-in checks it verbatim).
pub const PRELUDE: &str = "$ErrorActionPreference = 'Stop'\n$ProgressPreference = 'SilentlyContinue'\n$pv = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{DATA}')) | ConvertFrom-Json\n";
/// Helpers shared by every script.
pub const COMMON: &str = include_str!("../scripts/common.ps1");

impl Script {
    /// Every script.
    pub const ALL: [Script; 8] = [
        Script::Probe,
        Script::List,
        Script::Get,
        Script::Power,
        Script::Notes,
        Script::Snapshot,
        Script::Clone,
        Script::Delete,
    ];

    /// The script's name (its file stem).
    pub fn name(self) -> &'static str {
        match self {
            Script::Probe => "probe",
            Script::List => "list",
            Script::Get => "get",
            Script::Power => "power",
            Script::Notes => "notes",
            Script::Snapshot => "snapshot",
            Script::Clone => "clone",
            Script::Delete => "delete",
        }
    }

    /// The script body.
    pub fn body(self) -> &'static str {
        match self {
            Script::Probe => include_str!("../scripts/probe.ps1"),
            Script::List => include_str!("../scripts/list.ps1"),
            Script::Get => include_str!("../scripts/get.ps1"),
            Script::Power => include_str!("../scripts/power.ps1"),
            Script::Notes => include_str!("../scripts/notes.ps1"),
            Script::Snapshot => include_str!("../scripts/snapshot.ps1"),
            Script::Clone => include_str!("../scripts/clone.ps1"),
            Script::Delete => include_str!("../scripts/delete.ps1"),
        }
    }

    /// The full script text for `args` (prelude with the data literal, helpers, body).
    pub fn render(self, args: &Value) -> String {
        let data = base64::engine::general_purpose::STANDARD.encode(args.to_string());
        debug_assert!(data.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='));
        format!("{}{}{}", PRELUDE.replace("{DATA}", &data), COMMON, self.body())
    }

    /// `powershell.exe` arguments running the rendered script.
    pub fn command_args(self, args: &Value) -> Vec<String> {
        let text = self.render(args);
        let utf16: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let enc = base64::engine::general_purpose::STANDARD.encode(utf16);
        ["-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-EncodedCommand"]
            .iter()
            .map(|s| s.to_string())
            .chain(std::iter::once(enc))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(args: &[String]) -> String {
        let raw = base64::engine::general_purpose::STANDARD.decode(args.last().unwrap()).unwrap();
        let u: Vec<u16> = raw.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        String::from_utf16(&u).unwrap()
    }

    #[test]
    fn hostile_values_never_reach_the_script_text() {
        let evil = "x'; Remove-VM * -Force; '$(Stop-Computer)`\"\n";
        for s in Script::ALL {
            let text = decode(&s.command_args(&json!({"id": evil, "name": evil, "notes": evil})));
            assert!(!text.contains("Remove-VM *") && !text.contains("Stop-Computer"), "{}", s.name());
            assert!(text.starts_with("$ErrorActionPreference = 'Stop'\n"));
            assert!(text.ends_with(s.body()) && text.contains(COMMON));
            // The only data is one base64 literal in the prelude.
            let line = text.lines().nth(2).unwrap();
            let lit = line.split('\'').nth(1).unwrap();
            assert!(lit.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='));
            let back = base64::engine::general_purpose::STANDARD.decode(lit).unwrap();
            let v: Value = serde_json::from_slice(&back).unwrap();
            assert_eq!(v["id"], evil);
        }
    }

    #[test]
    fn every_script_names_itself_and_fits_a_command_line() {
        for s in Script::ALL {
            assert!(s.body().starts_with(&format!("# polyvisor-hyperv script: {} v1\n", s.name())));
            let a = s.command_args(&json!({"notes": "n".repeat(2000)}));
            assert!(a.iter().map(String::len).sum::<usize>() < 30_000, "{}", s.name());
        }
    }
}
