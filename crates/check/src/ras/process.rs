//! The provider process as the RAS Provider Agent sees it: stdin for requests, stdout for
//! exactly one reply line per request, stderr drained continuously into a bounded tail
//! (unlike the Test Kit, which reads stderr only at the end and can deadlock).
//!
//! Every read is bounded by a timeout; a provider that dies or times out is marked dead
//! and killed, and the caller decides whether to start a fresh process.

use serde_json::Value;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many bytes of stderr are kept for the report.
pub const STDERR_TAIL_BYTES: usize = 4096;
/// Longest reply line accepted; longer lines are cut (and reported as garbage).
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// One raw line read from the provider's stdout.
#[derive(Debug, Clone)]
pub struct Line {
    /// The bytes without the final `\n`.
    pub bytes: Vec<u8>,
    /// The line ended with `\r\n`.
    pub crlf: bool,
    /// The line started with a UTF-8 BOM.
    pub bom: bool,
}

/// A parsed reply line.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The JSON value of the line (after the Test Kit's BOM strip and trim).
    pub value: Value,
    /// The raw line.
    pub line: Line,
    /// Extra lines that arrived before this request was sent (they belong to an earlier
    /// request and break the one-line-per-request rule).
    pub stray_before: usize,
}

impl Reply {
    /// `result`, or `None` when absent.
    pub fn result(&self) -> Option<&Value> {
        self.value.get("result")
    }

    /// The `error.code`, when the reply is an error.
    pub fn error_code(&self) -> Option<i64> {
        self.value.get("error").and_then(|e| e.get("code")).and_then(Value::as_i64)
    }

    /// The `error.message`, when the reply is an error.
    pub fn error_message(&self) -> Option<&str> {
        self.value.get("error").and_then(|e| e.get("message")).and_then(Value::as_str)
    }

    /// The Test Kit's receive rule: an `error` member throws, a null/missing `result` throws
    /// (`[]` counts as missing); otherwise the result.
    pub fn test_kit_result(&self) -> Result<&Value, String> {
        if let Some(e) = self.value.get("error") {
            return Err(format!("provider answered an error: {}", short(e)));
        }
        match self.result() {
            None | Some(Value::Null) => Err(format!("Missing 'result' in reply {}", short(&self.value))),
            Some(Value::Array(a)) if a.is_empty() => Err("Missing 'result' (empty array)".into()),
            Some(v) => Ok(v),
        }
    }
}

/// Why a request got no usable reply.
#[derive(Debug, Clone)]
pub enum ProcError {
    /// No reply within the timeout (the process has been killed).
    Timeout(Duration),
    /// The process closed stdout or exited.
    Dead(String),
    /// The reply line was not JSON.
    BadReply(String),
}

impl std::fmt::Display for ProcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcError::Timeout(d) => write!(f, "no reply within {} ms (provider killed)", d.as_millis()),
            ProcError::Dead(s) => write!(f, "provider is dead: {s}"),
            ProcError::BadReply(s) => write!(f, "reply is not JSON: {s}"),
        }
    }
}

/// Counters for the wire rules our replies must follow (§1.2 "our rules").
#[derive(Debug, Default, Clone)]
pub struct WireStats {
    /// Reply lines read.
    pub lines: usize,
    /// Lines that started with a BOM, with the first offending request.
    pub bom: (usize, Option<String>),
    /// Lines ending in CRLF.
    pub crlf: (usize, Option<String>),
    /// Lines that arrived without a request to answer (extra lines).
    pub stray: (usize, Option<String>),
    /// Replies that were blank or not JSON.
    pub garbage: (usize, Option<String>),
}

fn bump(slot: &mut (usize, Option<String>), what: &str) {
    slot.0 += 1;
    if slot.1.is_none() {
        slot.1 = Some(what.to_string());
    }
}

/// A running provider process.
pub struct Provider {
    command: Vec<String>,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
    stderr: Arc<Mutex<StderrTail>>,
    dead: Option<String>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Wire-rule counters over the process's whole life.
    pub wire: WireStats,
    last_request: String,
}

/// The bounded tail of stderr plus the total byte count.
#[derive(Debug, Default)]
pub struct StderrTail {
    tail: VecDeque<u8>,
    /// Total bytes the provider wrote to stderr.
    pub total: u64,
}

impl StderrTail {
    fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let keep = data.len().min(STDERR_TAIL_BYTES);
        self.tail.extend(&data[data.len() - keep..]);
        while self.tail.len() > STDERR_TAIL_BYTES {
            self.tail.pop_front();
        }
    }
}

impl Provider {
    /// Starts `command` (program + args) with all three streams piped.
    pub fn spawn(command: &[String], timeout: Duration) -> Result<Provider, String> {
        let (program, args) = command.split_first().ok_or("empty provider command")?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start `{program}`: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let tail = Arc::new(Mutex::new(StderrTail::default()));
        let sink = Arc::clone(&tail);
        std::thread::Builder::new()
            .name("ras-provider-stderr".into())
            .spawn(move || drain_stderr(stderr, sink))
            .map_err(|e| format!("cannot start stderr thread: {e}"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("ras-provider-stdout".into())
            .spawn(move || read_lines(stdout, tx))
            .map_err(|e| format!("cannot start stdout thread: {e}"))?;
        Ok(Provider {
            command: command.to_vec(),
            stdin: child.stdin.take(),
            child,
            lines: rx,
            stderr: tail,
            dead: None,
            timeout,
            wire: WireStats::default(),
            last_request: String::new(),
        })
    }

    /// The command this process runs.
    pub fn command(&self) -> &[String] {
        &self.command
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Why the process is unusable, if it is.
    pub fn dead(&mut self) -> Option<String> {
        if self.dead.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.dead = Some(format!("exited with {st}"));
            }
        }
        self.dead.clone()
    }

    /// Sends one request the way the Test Kit does: compact JSON, `params` before
    /// `method` (an unordered hashtable), one line.
    pub fn call(&mut self, method: &str, params: Option<Value>) -> Result<Reply, ProcError> {
        let m = Value::String(method.to_string());
        let line = match params {
            Some(p) => format!("{{\"params\":{p},\"method\":{m}}}"),
            None => format!("{{\"method\":{m}}}"),
        };
        self.request_raw(format!("{line}\n").as_bytes())
    }

    /// Sends raw bytes (one or more lines, already terminated) and reads one reply line.
    pub fn request_raw(&mut self, bytes: &[u8]) -> Result<Reply, ProcError> {
        let stray = self.drain_stray();
        self.last_request = describe_request(bytes);
        self.send_raw(bytes)?;
        let mut reply = self.read_reply(self.timeout)?;
        reply.stray_before = stray;
        Ok(reply)
    }

    /// Writes raw bytes to stdin and flushes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ProcError> {
        if let Some(why) = self.dead() {
            return Err(ProcError::Dead(why));
        }
        let stdin = self.stdin.as_mut().ok_or_else(|| ProcError::Dead("stdin already closed".into()))?;
        if let Err(e) = stdin.write_all(bytes).and_then(|_| stdin.flush()) {
            let why = format!("cannot write to stdin: {e}");
            self.dead = Some(why.clone());
            return Err(ProcError::Dead(why));
        }
        Ok(())
    }

    /// Reads the next line within `timeout` and parses it like the Test Kit (BOM strip,
    /// trim, empty → error).
    pub fn read_reply(&mut self, timeout: Duration) -> Result<Reply, ProcError> {
        let line = match self.lines.recv_timeout(timeout) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                self.dead = Some(format!("killed after {} ms without a reply", timeout.as_millis()));
                return Err(ProcError::Timeout(timeout));
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.wait_exit(Duration::from_secs(2));
                let why = match status {
                    Some(st) => format!("stdout closed, process exited with {st}"),
                    None => "stdout closed".to_string(),
                };
                self.dead = Some(why.clone());
                return Err(ProcError::Dead(why));
            }
        };
        self.account(&line);
        let text = String::from_utf8_lossy(strip_bom(&line.bytes)).trim().to_string();
        if text.is_empty() {
            bump(&mut self.wire.garbage, &self.last_request);
            return Err(ProcError::BadReply("Cannot parse empty response".into()));
        }
        match serde_json::from_str::<Value>(&text) {
            Ok(value) => Ok(Reply { value, line, stray_before: 0 }),
            Err(e) => {
                bump(&mut self.wire.garbage, &self.last_request);
                Err(ProcError::BadReply(format!("{e}: {}", clip(&text, 200))))
            }
        }
    }

    /// Waits up to `wait` for a line that should not come (e.g. an answer to a blank
    /// line); returns it if one arrived. Not counted as a reply.
    pub fn unexpected_line(&mut self, wait: Duration) -> Option<Line> {
        let l = self.lines.recv_timeout(wait).ok()?;
        self.account(&l);
        bump(&mut self.wire.stray, &self.last_request);
        Some(l)
    }

    /// Collects every line that arrives within `wait` (extra lines: counted as stray) so
    /// the next request's reply lines up again; returns them.
    pub fn settle(&mut self, wait: Duration) -> Vec<Line> {
        let mut out = Vec::new();
        while let Some(l) = self.unexpected_line(wait) {
            out.push(l);
        }
        out
    }

    fn drain_stray(&mut self) -> usize {
        let mut n = 0;
        while let Ok(l) = self.lines.try_recv() {
            self.account(&l);
            bump(&mut self.wire.stray, &self.last_request);
            n += 1;
        }
        n
    }

    fn account(&mut self, line: &Line) {
        self.wire.lines += 1;
        if line.bom {
            bump(&mut self.wire.bom, &self.last_request);
        }
        if line.crlf {
            bump(&mut self.wire.crlf, &self.last_request);
        }
    }

    /// Closes stdin (the provider sees EOF).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits up to `wait` for the process to exit.
    pub fn wait_exit(&mut self, wait: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + wait;
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => return Some(st),
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
                _ => return None,
            }
        }
    }

    /// Kills the process (if alive) and reaps it.
    pub fn kill(&mut self) {
        self.stdin = None;
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// The last bytes of stderr (lossy UTF-8) and the total stderr byte count.
    pub fn stderr_tail(&self) -> (String, u64) {
        match self.stderr.lock() {
            Ok(t) => {
                let bytes: Vec<u8> = t.tail.iter().copied().collect();
                (String::from_utf8_lossy(&bytes).into_owned(), t.total)
            }
            Err(_) => (String::new(), 0),
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        // Give a well-behaved provider the EOF it expects, then make sure it is gone.
        self.close_stdin();
        if self.wait_exit(Duration::from_millis(500)).is_none() {
            self.kill();
        }
    }
}

fn drain_stderr(mut stderr: impl Read, sink: Arc<Mutex<StderrTail>>) {
    let mut buf = [0u8; 8192];
    loop {
        match stderr.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Ok(mut t) = sink.lock() {
                    t.push(&buf[..n]);
                }
            }
        }
    }
}

fn read_lines(stdout: impl Read, tx: mpsc::Sender<Line>) {
    let mut r = BufReader::with_capacity(64 * 1024, stdout);
    loop {
        let mut bytes = Vec::new();
        let mut overflow = false;
        let ended = loop {
            let buf = match r.fill_buf() {
                Ok(b) => b,
                Err(_) => break false,
            };
            if buf.is_empty() {
                break false;
            }
            let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            if bytes.len() + chunk.len() <= MAX_LINE_BYTES {
                bytes.extend_from_slice(chunk);
            } else {
                overflow = true;
            }
            let used = found.unwrap_or(buf.len());
            r.consume(used);
            if found.is_some() {
                break true;
            }
        };
        if !ended && bytes.is_empty() {
            return;
        }
        if overflow {
            bytes = b"<reply line longer than 16 MiB>".to_vec();
        }
        let crlf = bytes.last() == Some(&b'\r');
        if crlf {
            bytes.pop();
        }
        let bom = bytes.starts_with(BOM);
        if tx.send(Line { bytes, crlf, bom }).is_err() || !ended {
            return;
        }
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(BOM).unwrap_or(b)
}

/// A short, single-line rendering of a request for reports (long lines are clipped).
fn describe_request(bytes: &[u8]) -> String {
    clip(String::from_utf8_lossy(bytes).trim(), 120)
}

/// `s` cut to at most `max` characters, with an ellipsis when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// Compact JSON of `v`, clipped for messages.
pub fn short(v: &Value) -> String {
    clip(&v.to_string(), 300)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn reads_one_reply_and_parses_bom_crlf() {
        let mut p = Provider::spawn(
            &sh("read l; printf '\\357\\273\\277{\"result\":1}\\r\\n'; read l"),
            Duration::from_secs(5),
        )
        .unwrap();
        let r = p.call("provider/initialize", None).unwrap();
        assert_eq!(r.result(), Some(&Value::from(1)));
        assert!(r.line.bom && r.line.crlf);
        assert_eq!(p.wire.bom.0, 1);
        assert_eq!(p.wire.crlf.0, 1);
    }

    #[test]
    fn timeout_kills_and_marks_dead() {
        let mut p = Provider::spawn(&sh("sleep 30"), Duration::from_millis(200)).unwrap();
        let t = Instant::now();
        assert!(matches!(p.call("x", None), Err(ProcError::Timeout(_))));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(p.dead().is_some());
        assert!(matches!(p.call("x", None), Err(ProcError::Dead(_))));
    }

    #[test]
    fn dead_provider_is_detected() {
        let mut p = Provider::spawn(&sh("exit 3"), Duration::from_secs(5)).unwrap();
        match p.call("x", None) {
            Err(ProcError::Dead(why)) => assert!(why.contains('3') || why.contains("stdin"), "{why}"),
            other => panic!("expected dead, got {other:?}"),
        }
    }

    #[test]
    fn megabytes_of_stderr_do_not_deadlock() {
        // 4 MiB on stderr before answering: a harness that does not drain would hang.
        let script = "head -c 4194304 /dev/zero | tr '\\0' x >&2; read l; echo '{\"result\":{}}'";
        let mut p = Provider::spawn(&sh(script), Duration::from_secs(20)).unwrap();
        let r = p.call("provider/initialize", None).unwrap();
        assert!(r.result().is_some());
        std::thread::sleep(Duration::from_millis(100));
        let (tail, total) = p.stderr_tail();
        assert_eq!(total, 4 << 20);
        assert_eq!(tail.len(), STDERR_TAIL_BYTES);
    }

    #[test]
    fn stray_lines_are_counted_and_skipped() {
        let script = "read l; echo '{\"result\":1}'; echo '{\"result\":2}'; read l; echo '{\"result\":3}'; read l";
        let mut p = Provider::spawn(&sh(script), Duration::from_secs(5)).unwrap();
        assert_eq!(p.call("a", None).unwrap().result(), Some(&Value::from(1)));
        std::thread::sleep(Duration::from_millis(200));
        let r = p.call("b", None).unwrap();
        assert_eq!(r.result(), Some(&Value::from(3)));
        assert_eq!(r.stray_before, 1);
        assert_eq!(p.wire.stray.0, 1);
    }

    #[test]
    fn test_kit_result_rules() {
        let mk = |v: Value| Reply { value: v, line: Line { bytes: vec![], crlf: false, bom: false }, stray_before: 0 };
        assert!(mk(serde_json::json!({"result": false})).test_kit_result().is_ok());
        assert!(mk(serde_json::json!({"result": null})).test_kit_result().is_err());
        assert!(mk(serde_json::json!({"result": []})).test_kit_result().is_err());
        assert!(mk(serde_json::json!({"error": {"code": 1}})).test_kit_result().is_err());
    }
}
