//! §13 item 31: secrets never reach logs, replies or error text.

use super::*;
use polyvisor_test_support::fake::{full_caps, FakeFactory};
use std::io::Write;
use std::sync::Mutex;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn settings_values_are_never_logged_or_echoed() {
    let buf = Buf::default();
    let writer = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let f = FakeFactory::new(full_caps());
    let replies = tracing::subscriber::with_default(sub, || {
        run(
            &Args::default(),
            &f,
            &[
                r#"{"method":"provider/connect","params":{"settings":{"token":"wrong-s3cret","password":"hunter2-s3cret"}}}"#,
                r#"{"method":"provider/connect","params":{"settings":{"host":"bad","token_secret":"tok-s3cret"}}}"#,
                r#"{"method":"provider/connect","params":{"settings":{"token_secret":"tok-s3cret"}}}"#,
                r#"{"method":"guests/get","params":{"id":"101"}}"#,
            ],
        )
    });
    let logs = String::from_utf8(buf.0.lock().map(|v| v.clone()).unwrap_or_default()).unwrap_or_default();
    assert!(logs.contains("provider/connect"), "logging works: {logs}");
    assert!(logs.contains("token_secret"), "keys may be logged: {logs}");
    assert!(!logs.contains("s3cret"), "secret in logs: {logs}");
    let out: String = replies.iter().map(|r| r.to_string()).collect();
    assert!(!out.contains("s3cret"), "secret in replies: {out}");
}
