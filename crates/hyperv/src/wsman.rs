//! WS-Management (DMTF DSP0226) with Microsoft's Windows Remote Shell (WinRS) extension
//! ([MS-WSMV]): the five messages polyvisor sends — shell Create, Command, Receive,
//! Signal, Delete — built as fixed envelopes (every value XML-escaped), and the answers
//! parsed with `roxmltree`. SOAP faults become a typed [`Fault`].

use crate::error::HvError;
use base64::Engine;
use polyvisor_core::ErrorKind;

const NS_S: &str = "http://www.w3.org/2003/05/soap-envelope";
const NS_RSP: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";
const NS_WSMANFAULT: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault";
/// WinRS cmd shell resource URI.
pub const RESOURCE_CMD: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd";
/// Actions.
pub const ACTION_CREATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create";
/// Delete action.
pub const ACTION_DELETE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete";
/// Command action.
pub const ACTION_COMMAND: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command";
/// Receive action.
pub const ACTION_RECEIVE: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive";
/// Signal action.
pub const ACTION_SIGNAL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Signal";
const SIGNAL_TERMINATE: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate";
const STATE_DONE: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done";
/// `WSManFault` code of an OperationTimeout expiry on Receive (nothing new yet; ask again).
pub const CODE_OPERATION_TIMEOUT: &str = "2150858793";

/// A WS-Management SOAP fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The `s:Subcode` value's local name (`TimedOut`, `InvalidSelectors`, `AccessDenied`, …).
    pub subcode: String,
    /// `WSManFault/@Code` (a Windows error number), empty when absent.
    pub code: String,
    /// The reason text (shortened).
    pub reason: String,
}

impl Fault {
    /// The Receive long-poll expired without output (not an error: poll again).
    pub fn is_operation_timeout(&self) -> bool {
        self.code == CODE_OPERATION_TIMEOUT || self.subcode == "TimedOut"
    }

    /// The core kind, from the subcode.
    pub fn kind(&self) -> ErrorKind {
        match self.subcode.as_str() {
            "AccessDenied" => ErrorKind::Unauthorized,
            "TimedOut" => ErrorKind::Timeout,
            "InvalidSelectors" | "DestinationUnreachable" => ErrorKind::NotFound,
            "QuotaLimit" | "ConcurrencyLimit" => ErrorKind::Unavailable,
            "SchemaValidationError" | "InvalidParameter" | "EncodingLimit" => ErrorKind::InvalidInput,
            _ => ErrorKind::Backend,
        }
    }
}

/// Escapes text for an XML element or attribute.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

/// Request parameters of one envelope.
pub struct Envelope<'a> {
    /// `https://host:5986/wsman`.
    pub to: &'a str,
    /// The action URI.
    pub action: &'a str,
    /// The shell id selector (all but Create).
    pub shell_id: Option<&'a str>,
    /// `w:OperationTimeout` in seconds.
    pub timeout_secs: u64,
    /// `(name, value)` options.
    pub options: &'a [(&'a str, &'a str)],
    /// The body's inner XML (already escaped).
    pub body: String,
}

impl Envelope<'_> {
    /// The XML text.
    pub fn render(&self) -> String {
        let id = uuid();
        let selector = self
            .shell_id
            .map(|s| format!("<w:SelectorSet><w:Selector Name=\"ShellId\">{}</w:Selector></w:SelectorSet>", esc(s)))
            .unwrap_or_default();
        let options = if self.options.is_empty() {
            String::new()
        } else {
            let o: String = self
                .options
                .iter()
                .map(|(n, v)| format!("<w:Option Name=\"{}\">{}</w:Option>", esc(n), esc(v)))
                .collect();
            format!("<w:OptionSet>{o}</w:OptionSet>")
        };
        format!(
            concat!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?>",
                "<s:Envelope xmlns:s=\"{s}\" xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" ",
                "xmlns:w=\"http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd\" ",
                "xmlns:p=\"http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd\" xmlns:rsp=\"{rsp}\">",
                "<s:Header><a:To>{to}</a:To>",
                "<a:ReplyTo><a:Address s:mustUnderstand=\"true\">http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>",
                "<w:MaxEnvelopeSize s:mustUnderstand=\"true\">512000</w:MaxEnvelopeSize>",
                "<a:MessageID>uuid:{id}</a:MessageID>",
                "<w:Locale xml:lang=\"en-US\" s:mustUnderstand=\"false\"/>",
                "<p:DataLocale xml:lang=\"en-US\" s:mustUnderstand=\"false\"/>",
                "<w:OperationTimeout>PT{t}S</w:OperationTimeout>",
                "<w:ResourceURI s:mustUnderstand=\"true\">{res}</w:ResourceURI>",
                "<a:Action s:mustUnderstand=\"true\">{action}</a:Action>{sel}{opt}</s:Header>",
                "<s:Body>{body}</s:Body></s:Envelope>"
            ),
            s = NS_S,
            rsp = NS_RSP,
            to = esc(self.to),
            id = id,
            t = self.timeout_secs,
            res = RESOURCE_CMD,
            action = esc(self.action),
            sel = selector,
            opt = options,
            body = self.body,
        )
    }
}

/// A random RFC 4122 version-4 UUID (message ids).
pub fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let x = match i {
                6 => (x & 0x0f) | 0x40,
                8 => (x & 0x3f) | 0x80,
                _ => *x,
            };
            format!("{x:02X}")
        })
        .collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Body of a shell Create.
pub fn create_body() -> String {
    "<rsp:Shell><rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>"
        .into()
}

/// Body of a Command: `command` and each argument escaped.
pub fn command_body(command: &str, args: &[String]) -> String {
    let a: String = args.iter().map(|x| format!("<rsp:Arguments>{}</rsp:Arguments>", esc(x))).collect();
    format!("<rsp:CommandLine><rsp:Command>{}</rsp:Command>{a}</rsp:CommandLine>", esc(command))
}

/// Body of a Receive for stdout and stderr of `command_id`.
pub fn receive_body(command_id: &str) -> String {
    format!(
        "<rsp:Receive><rsp:DesiredStream CommandId=\"{}\">stdout stderr</rsp:DesiredStream></rsp:Receive>",
        esc(command_id)
    )
}

/// Body of a terminate Signal.
pub fn signal_body(command_id: &str) -> String {
    format!("<rsp:Signal CommandId=\"{}\"><rsp:Code>{SIGNAL_TERMINATE}</rsp:Code></rsp:Signal>", esc(command_id))
}

fn parse(xml: &str) -> Result<roxmltree::Document<'_>, HvError> {
    roxmltree::Document::parse(xml).map_err(|_| HvError::BadAnswer("the answer is not an XML envelope".into()))
}

/// The fault in an envelope, if it is one.
pub fn fault(xml: &str) -> Option<Fault> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let f = doc.descendants().find(|n| n.tag_name().name() == "Fault" && n.tag_name().namespace() == Some(NS_S))?;
    let subcode = f
        .descendants()
        .find(|n| n.tag_name().name() == "Subcode")
        .and_then(|s| s.children().find(|n| n.tag_name().name() == "Value"))
        .and_then(|v| v.text())
        .map(|t| t.trim().rsplit(':').next().unwrap_or("").to_string())
        .unwrap_or_default();
    let wf = f
        .descendants()
        .find(|n| n.tag_name().name() == "WSManFault" && n.tag_name().namespace() == Some(NS_WSMANFAULT));
    let code = wf.and_then(|w| w.attribute("Code")).unwrap_or("").to_string();
    let text = wf
        .and_then(|w| w.descendants().find(|n| n.tag_name().name() == "Message"))
        .and_then(|m| m.text())
        .or_else(|| f.descendants().find(|n| n.tag_name().name() == "Text").and_then(|t| t.text()))
        .unwrap_or("");
    let reason: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
    Some(Fault { subcode, code, reason: reason.trim().to_string() })
}

/// Valid shell/command ids: what the host hands out (UUIDs), never anything else.
fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

fn rsp_text(doc: &roxmltree::Document<'_>, name: &str) -> Option<String> {
    doc.descendants()
        .find(|n| n.tag_name().name() == name && n.tag_name().namespace() == Some(NS_RSP))
        .and_then(|n| n.text())
        .map(|t| t.trim().to_string())
}

/// The shell id of a Create response.
pub fn shell_id(xml: &str) -> Result<String, HvError> {
    let doc = parse(xml)?;
    let id = rsp_text(&doc, "ShellId").or_else(|| {
        doc.descendants()
            .find(|n| n.tag_name().name() == "Selector" && n.attribute("Name") == Some("ShellId"))
            .and_then(|n| n.text())
            .map(str::to_string)
    });
    id.filter(|i| valid_id(i)).ok_or_else(|| HvError::BadAnswer("no ShellId in the shell Create response".into()))
}

/// The command id of a Command response.
pub fn command_id(xml: &str) -> Result<String, HvError> {
    let doc = parse(xml)?;
    rsp_text(&doc, "CommandId")
        .filter(|i| valid_id(i))
        .ok_or_else(|| HvError::BadAnswer("no CommandId in the Command response".into()))
}

/// What one Receive returned.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// stdout bytes in this answer.
    pub stdout: Vec<u8>,
    /// stderr bytes in this answer.
    pub stderr: Vec<u8>,
    /// `Some(exit code)` once the command state is Done.
    pub done: Option<i64>,
}

/// Parses a ReceiveResponse.
pub fn received(xml: &str) -> Result<Received, HvError> {
    let doc = parse(xml)?;
    let mut out = Received::default();
    let b64 = base64::engine::general_purpose::STANDARD;
    for s in doc.descendants().filter(|n| n.tag_name().name() == "Stream" && n.tag_name().namespace() == Some(NS_RSP)) {
        let Some(t) = s.text().map(str::trim).filter(|t| !t.is_empty()) else { continue };
        let bytes = b64.decode(t).map_err(|_| HvError::BadAnswer("a stream is not base64".into()))?;
        match s.attribute("Name") {
            Some("stdout") => out.stdout.extend(bytes),
            Some("stderr") => out.stderr.extend(bytes),
            _ => {}
        }
    }
    if let Some(st) = doc.descendants().find(|n| n.tag_name().name() == "CommandState") {
        if st.attribute("State") == Some(STATE_DONE) {
            let code = rsp_text(&doc, "ExitCode").and_then(|c| c.parse().ok()).unwrap_or(0);
            out.done = Some(code);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_escape_every_value() {
        let e = Envelope {
            to: "https://h:5986/wsman",
            action: ACTION_COMMAND,
            shell_id: Some("ABC\"<x>"),
            timeout_secs: 20,
            options: &[("WINRS_SKIP_CMD_SHELL", "TRUE")],
            body: command_body("powershell.exe", &["-X".into(), "</rsp:Arguments><evil/>".into()]),
        }
        .render();
        assert!(roxmltree::Document::parse(&e).is_ok());
        assert!(!e.contains("<evil/>") && e.contains("&lt;/rsp:Arguments&gt;&lt;evil/&gt;"));
        assert!(e.contains("ABC&quot;&lt;x&gt;") && e.contains("PT20S"));
    }

    #[test]
    fn responses_and_faults_parse() {
        let create = format!(
            "<s:Envelope xmlns:s=\"{NS_S}\" xmlns:rsp=\"{NS_RSP}\"><s:Body><rsp:Shell><rsp:ShellId>0A1B-2C</rsp:ShellId></rsp:Shell></s:Body></s:Envelope>"
        );
        assert_eq!(shell_id(&create).unwrap(), "0A1B-2C");
        let bad = create.replace("0A1B-2C", "x y");
        assert!(shell_id(&bad).is_err());
        let recv = format!(
            "<s:Envelope xmlns:s=\"{NS_S}\" xmlns:rsp=\"{NS_RSP}\"><s:Body><rsp:ReceiveResponse>\
             <rsp:Stream Name=\"stdout\" CommandId=\"1\">aGk=</rsp:Stream><rsp:Stream Name=\"stdout\" CommandId=\"1\" End=\"true\"></rsp:Stream>\
             <rsp:CommandState CommandId=\"1\" State=\"{STATE_DONE}\"><rsp:ExitCode>3</rsp:ExitCode></rsp:CommandState>\
             </rsp:ReceiveResponse></s:Body></s:Envelope>"
        );
        assert_eq!(received(&recv).unwrap(), Received { stdout: b"hi".to_vec(), stderr: vec![], done: Some(3) });
        let f = format!(
            "<s:Envelope xmlns:s=\"{NS_S}\"><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode>\
             <s:Value xmlns:w=\"x\">w:TimedOut</s:Value></s:Subcode></s:Code><s:Reason><s:Text>op timed out</s:Text></s:Reason>\
             <s:Detail><f:WSManFault xmlns:f=\"{NS_WSMANFAULT}\" Code=\"2150858793\"><f:Message>The WS-Management service cannot complete the operation within the time specified in OperationTimeout.</f:Message></f:WSManFault></s:Detail></s:Fault></s:Body></s:Envelope>"
        );
        let f = fault(&f).unwrap();
        assert!(f.is_operation_timeout());
        assert_eq!((f.subcode.as_str(), f.kind()), ("TimedOut", ErrorKind::Timeout));
        assert!(fault(&recv).is_none());
        assert_eq!(uuid().len(), 36);
    }
}
