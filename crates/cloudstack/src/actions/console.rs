//! `getconsole` (spec §4.9): VNC endpoint for the console proxy, or a direct URL. The VNC
//! password is the one secret that may appear in our output, here only.

use crate::actions::lifecycle::require;
use crate::ctx::Ctx;
use crate::output::Reply;
use polyvisor_core::{Console, ConsoleKind, Error, ErrorKind, ExposeSecret, Result};
use serde_json::{json, Map, Value};

/// `getconsole`.
pub async fn getconsole(ctx: &Ctx) -> Result<Reply> {
    let kinds = ctx.driver.capabilities().consoles;
    if kinds.is_empty() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("getconsole is not supported: the {} driver offers no console", ctx.driver.display_name()),
        ));
    }
    // CloudStack's console proxy speaks VNC, or hands the user a URL; an RDP console
    // (Hyper-V's VMConnect) is not something it can open.
    if !kinds.iter().any(|k| matches!(k, ConsoleKind::Vnc | ConsoleKind::Url)) {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "getconsole is not supported: the {} driver's console is RDP (VMConnect), which CloudStack's \
                 console proxy cannot open",
                ctx.driver.display_name()
            ),
        ));
    }
    let id = require(ctx).await?;
    let console = ctx.driver.console(&id).await?;
    console_reply(&console)
}

/// The CloudStack console object for a driver console (an RDP console has none).
pub fn console_reply(console: &Console) -> Result<Reply> {
    let obj = match console {
        Console::Vnc { host, port, password, one_time } => {
            let mut c = json!({
                "host": host,
                "port": port.to_string(),
                "passwordonetimeuseonly": one_time,
                "protocol": "vnc",
            });
            if let (Some(p), Some(m)) = (password, c.as_object_mut()) {
                m.insert("password".into(), Value::String(p.expose_secret().to_string()));
            }
            c
        }
        Console::Url { url } => json!({ "url": url.expose_secret(), "protocol": "direct" }),
        Console::Rdp { .. } => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "an RDP console cannot be opened by CloudStack's console proxy",
            ))
        }
    };
    let mut fields = Map::new();
    fields.insert("message".into(), "Console retrieved".into());
    fields.insert("console".into(), obj);
    Ok(Reply::success_with(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyvisor_core::SecretString;

    #[test]
    fn vnc_and_direct_shapes() {
        let r = console_reply(&Console::Vnc {
            host: "10.0.0.11".into(),
            port: 5901,
            password: Some(SecretString::from("PVEVNC:abc")),
            one_time: true,
        })
        .unwrap();
        assert_eq!(
            r.body,
            json!({"status":"success","message":"Console retrieved","console":{"host":"10.0.0.11","port":"5901","password":"PVEVNC:abc","passwordonetimeuseonly":true,"protocol":"vnc"}})
        );
        let r = console_reply(&Console::Url { url: SecretString::from("https://c.example/x?t=1") }).unwrap();
        assert_eq!(r.body["console"], json!({"url":"https://c.example/x?t=1","protocol":"direct"}));
        // CloudStack's proxy cannot open an RDP (VMConnect) console: declined, not mangled.
        let rdp = Console::Rdp { host: "hv01".into(), port: 2179, pcb: "6b0c…".into() };
        assert_eq!(console_reply(&rdp).unwrap_err().kind(), ErrorKind::Unsupported);
    }
}
