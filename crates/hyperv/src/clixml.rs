//! PowerShell's CLIXML error stream: what `powershell.exe` writes to stderr when a command
//! run over WinRM fails (`#< CLIXML` followed by `<Objs>` with `<S S="Error">` lines). The
//! error record's `CategoryInfo` category (`ObjectNotFound`, `ResourceExists`, …) and its
//! `FullyQualifiedErrorId` are the typed fields classification uses — never the wording.

use polyvisor_core::ErrorKind;

/// One PowerShell error record, as recovered from CLIXML.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorRecord {
    /// The message (first line of the record, without the `Cmdlet : ` prefix position info).
    pub message: String,
    /// `CategoryInfo` category (`ObjectNotFound`, …); empty when absent.
    pub category: String,
    /// `FullyQualifiedErrorId` (`PolyvisorVmNotFound,Get-PvVm`); empty when absent.
    pub error_id: String,
}

impl ErrorRecord {
    /// The core kind, from the category (then the error id for Hyper-V's own ids).
    pub fn kind(&self) -> ErrorKind {
        match self.category.as_str() {
            "ObjectNotFound" => ErrorKind::NotFound,
            "ResourceExists" => ErrorKind::AlreadyExists,
            "ResourceBusy" | "InvalidOperation" => ErrorKind::Conflict,
            "PermissionDenied" | "SecurityError" | "AuthenticationError" => ErrorKind::Unauthorized,
            "OperationTimeout" => ErrorKind::Timeout,
            "ResourceUnavailable" | "ConnectionError" => ErrorKind::Unavailable,
            "InvalidArgument" | "InvalidData" | "InvalidType" | "SyntaxError" | "ParserError" => {
                ErrorKind::InvalidInput
            }
            _ => ErrorKind::Backend,
        }
    }
}

/// Decodes `_xHHHH_` escapes (CLIXML's encoding of control characters).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < s.len() {
        if b[i] == b'_' && i + 7 <= s.len() && b[i + 1] == b'x' && b[i + 6] == b'_' {
            if let Ok(n) = u32::from_str_radix(&s[i + 2..i + 6], 16) {
                if let Some(c) = char::from_u32(n) {
                    out.push(c);
                    i += 7;
                    continue;
                }
            }
        }
        let c = s[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// The error text lines of a CLIXML stderr stream, or `None` when it is not CLIXML.
pub fn error_lines(stderr: &str) -> Option<Vec<String>> {
    let start = stderr.find("#< CLIXML")?;
    let xml = stderr[start + "#< CLIXML".len()..].trim();
    let doc = roxmltree::Document::parse(xml).ok()?;
    let text: String = doc
        .descendants()
        .filter(|n| n.has_tag_name("S") && n.attribute("S") == Some("Error"))
        .map(|n| unescape(n.text().unwrap_or("")))
        .collect();
    Some(text.lines().map(|l| l.trim_end().to_string()).filter(|l| !l.trim().is_empty()).collect())
}

/// Parses the first error record of a CLIXML stderr stream.
pub fn parse_error(stderr: &str) -> Option<ErrorRecord> {
    let lines = error_lines(stderr)?;
    let first = lines.first()?.clone();
    // `Cmdlet : message` (as PowerShell formats a record) or the bare message.
    let message = match first.split_once(" : ") {
        Some((head, rest)) if !head.contains(' ') || head.starts_with("Write-Error") => rest.to_string(),
        _ => first,
    };
    let field = |name: &str| {
        lines.iter().find_map(|l| {
            let t = l.trim_start().trim_start_matches('+').trim_start();
            let rest = t.strip_prefix(name)?;
            Some(rest.trim_start().trim_start_matches(':').trim().to_string())
        })
    };
    let category =
        field("CategoryInfo").map(|c| c.split(':').next().unwrap_or("").trim().to_string()).unwrap_or_default();
    let error_id = field("FullyQualifiedErrorId").unwrap_or_default();
    let message: String = message.chars().filter(|c| !c.is_control()).take(400).collect();
    Some(ErrorRecord { message: message.trim().to_string(), category, error_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape `powershell.exe -EncodedCommand` writes over WinRM for a failing cmdlet
    /// (modelled on the record of a `Get-VM -Name` for a missing VM).
    const GETVM: &str = concat!(
        "#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\">",
        "<S S=\"Error\">Get-VM : Hyper-V was unable to find a virtual machine with name \"nope\"._x000D__x000A_</S>",
        "<S S=\"Error\">At line:1 char:1_x000D__x000A_</S><S S=\"Error\">+ Get-VM -Name nope_x000D__x000A_</S>",
        "<S S=\"Error\">+ ~~~~~~~~~~~~~~~~~_x000D__x000A_</S>",
        "<S S=\"Error\">    + CategoryInfo          : InvalidArgument: (nope:String) [Get-VM], VirtualizationException_x000D__x000A_</S>",
        "<S S=\"Error\">    + FullyQualifiedErrorId : InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM_x000D__x000A_</S>",
        "<S S=\"Error\"> _x000D__x000A_</S></Objs>"
    );

    #[test]
    fn a_cmdlet_error_record_is_parsed_into_typed_fields() {
        let r = parse_error(GETVM).unwrap();
        assert_eq!(r.message, "Hyper-V was unable to find a virtual machine with name \"nope\".");
        assert_eq!(r.category, "InvalidArgument");
        assert_eq!(r.error_id, "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM");
        assert_eq!(r.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn polyvisor_records_classify_by_category() {
        let x = GETVM.replace("InvalidArgument: (nope:String) [Get-VM]", "ObjectNotFound: (:) [Write-Error]");
        assert_eq!(parse_error(&x).unwrap().kind(), ErrorKind::NotFound);
        let x = GETVM.replace("InvalidArgument: (nope:String) [Get-VM]", "ResourceExists: (:) [Write-Error]");
        assert_eq!(parse_error(&x).unwrap().kind(), ErrorKind::AlreadyExists);
    }

    #[test]
    fn not_clixml_or_broken_xml_is_none() {
        assert!(parse_error("plain text error").is_none());
        assert!(parse_error("#< CLIXML\r\n<Objs><S S=\"Error\">x</Objs>").is_none());
        assert_eq!(unescape("a_x000D__x000A_b_x00zz_"), "a\r\nb_x00zz_");
    }
}
