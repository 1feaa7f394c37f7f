//! Runs the extension executable the way the management server does (spec §1): direct
//! exec of `<cmd…> <action> <payload> <timeout>`, stdin a pipe that is never written nor
//! closed, stdout and stderr **merged into one pipe**, SIGKILL of the direct child at the
//! timeout. Unlike CloudStack the pipe is drained while the process runs, so an oversized
//! output is measured and reported instead of deadlocking the harness.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The Linux pipe buffer: CloudStack reads only after exit, so output this size or larger
/// blocks the extension until it is killed.
pub const PIPE_LIMIT: usize = 64 * 1024;
/// Bytes of output kept for inspection (the total is still counted).
const KEEP_BYTES: usize = 1 << 20;
/// How long to wait for the pipe to close after the child exited (grandchildren may hold it).
const EOF_GRACE: Duration = Duration::from_millis(300);

/// One finished run.
#[derive(Debug, Clone)]
pub struct Run {
    /// `argv[1]`.
    pub action: String,
    /// Exit code; `None` when killed or spawn failed.
    pub code: Option<i32>,
    /// Killed at the timeout (CloudStack: `(false, "Timeout")`).
    pub timed_out: bool,
    /// Could not be started (CloudStack: an exception).
    pub spawn_error: Option<String>,
    /// Merged stdout+stderr (the first MiB).
    pub output: Vec<u8>,
    /// Total bytes written to the pipe.
    pub output_len: usize,
    /// Spawn to exit.
    pub elapsed: Duration,
}

impl Run {
    /// CloudStack's success rule: exit code 0 and nothing else.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The merged output, trimmed, lossy UTF-8 (what CloudStack parses).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).trim().to_string()
    }

    /// A one-line description for failure messages (the caller redacts it).
    pub fn describe(&self) -> String {
        let how = if let Some(e) = &self.spawn_error {
            format!("spawn failed: {e}")
        } else if self.timed_out {
            format!("killed at the timeout after {} ms", self.elapsed.as_millis())
        } else {
            match self.code {
                Some(c) => format!("exit {c} after {} ms", self.elapsed.as_millis()),
                None => format!("killed by a signal after {} ms", self.elapsed.as_millis()),
            }
        };
        let out = excerpt(&self.text(), 300).replace('\n', " ⏎ ");
        format!("`{}`: {how}, output {} B: {out}", self.action, self.output_len)
    }
}

/// Cuts `s` to at most `max` characters on a char boundary.
pub fn excerpt(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}…")
}

/// Runs `cmd` with `action`, `payload` and the timeout argument `timeout_arg`; kills the
/// child after `kill_after`.
pub fn run(cmd: &[String], action: &str, payload: &Path, timeout_arg: &str, kill_after: Duration) -> Run {
    let mut r = Run {
        action: action.to_string(),
        code: None,
        timed_out: false,
        spawn_error: None,
        output: Vec::new(),
        output_len: 0,
        elapsed: Duration::ZERO,
    };
    let Some((program, args)) = cmd.split_first() else {
        r.spawn_error = Some("empty command".into());
        return r;
    };
    let (mut reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => {
            r.spawn_error = Some(format!("pipe: {e}"));
            return r;
        }
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => {
            r.spawn_error = Some(format!("pipe: {e}"));
            return r;
        }
    };
    let mut command = Command::new(program);
    command.args(args).arg(action).arg(payload).arg(timeout_arg);
    command.stdin(Stdio::piped()).stdout(writer).stderr(writer2);
    let started = Instant::now();
    let spawned = command.spawn();
    drop(command); // closes our copies of the pipe's write end
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            r.spawn_error = Some(e.to_string());
            return r;
        }
    };
    let stdin_held = child.stdin.take(); // never written, closed only after exit

    let buf = Arc::new(Mutex::new((Vec::<u8>::new(), 0usize)));
    let (eof_tx, eof_rx) = mpsc::channel::<()>();
    let shared = Arc::clone(&buf);
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Ok(mut g) = shared.lock() {
                        let room = KEEP_BYTES.saturating_sub(g.0.len());
                        let take = n.min(room);
                        g.0.extend_from_slice(&chunk[..take]);
                        g.1 += n;
                    }
                }
            }
        }
        let _ = eof_tx.send(());
    });

    let deadline = started + kill_after;
    let mut eof = false;
    let status = loop {
        if !eof {
            // Wake on EOF at once (the usual exit), else poll the child every few ms: a
            // grandchild may hold the pipe open after the child has exited.
            match eof_rx.recv_timeout(Duration::from_millis(3)) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => eof = true,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                r.timed_out = true;
                break child.wait().ok();
            }
            Ok(None) if eof => std::thread::sleep(Duration::from_micros(500)),
            Ok(None) => {}
            Err(_) => break None,
        }
    };
    r.elapsed = started.elapsed();
    drop(stdin_held);
    if !r.timed_out {
        r.code = status.and_then(|s| s.code());
    }
    if !eof {
        let _ = eof_rx.recv_timeout(EOF_GRACE);
    }
    if let Ok(g) = buf.lock() {
        r.output = g.0.clone();
        r.output_len = g.1;
    }
    if r.timed_out {
        r.output.clear(); // CloudStack discards the output of a killed run
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into(), "ext".into()]
    }

    #[test]
    fn merges_stderr_passes_args_and_reports_exit() {
        let r = run(
            &sh(r#"echo "out $1 $3"; echo err >&2; exit 3"#),
            "status",
            Path::new("/p.json"),
            "7",
            Duration::from_secs(5),
        );
        assert_eq!(r.code, Some(3));
        assert!(!r.success());
        assert_eq!(r.text(), "out status 7\nerr");
    }

    #[test]
    fn kills_at_the_timeout_and_never_feeds_stdin() {
        let r = run(&sh("cat; echo done"), "status", Path::new("/p.json"), "1", Duration::from_millis(300));
        assert!(r.timed_out, "{r:?}");
        assert!(r.elapsed < Duration::from_secs(3));
        assert!(!r.success());
    }

    #[test]
    fn a_grandchild_holding_the_pipe_does_not_stall() {
        let r = run(&sh("sleep 5 & echo hi"), "x", Path::new("/p"), "5", Duration::from_secs(5));
        assert!(r.success() && r.text() == "hi", "{r:?}");
        assert!(r.elapsed < Duration::from_secs(2), "{r:?}");
    }

    #[test]
    fn counts_large_output() {
        let r = run(&sh("head -c 100000 /dev/zero"), "x", Path::new("/p"), "5", Duration::from_secs(5));
        assert_eq!(r.output_len, 100000);
        assert!(r.success());
    }

    #[test]
    fn spawn_failure_is_reported() {
        let r = run(&["/nonexistent/ext".to_string()], "x", Path::new("/p"), "5", Duration::from_secs(1));
        assert!(r.spawn_error.is_some() && !r.success());
    }
}
