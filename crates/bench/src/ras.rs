//! RAS figures: process start to first reply, `guests/get` throughput over stdio,
//! `guests/list` with many guests, and peak RSS of the provider process.

use crate::proc_stats::peak_rss_kib;
use crate::stats::median_p95_ms;
use crate::Figure;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

/// A `polyvisor ras` process with line I/O.
pub(crate) struct Provider {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    line: String,
}

impl Provider {
    pub(crate) fn spawn(bin: &Path, db: &Path) -> Result<Self, String> {
        Self::spawn_with(bin, db, &["--template-method", "versioning"])
    }

    /// Spawns `polyvisor ras <flags>` on the sim database `db` (ignored by other drivers).
    pub(crate) fn spawn_with(bin: &Path, db: &Path, flags: &[&str]) -> Result<Self, String> {
        let mut child = Command::new(bin)
            .arg("ras")
            .args(flags)
            .env("POLYVISOR_SIM_DB", db)
            .env("POLYVISOR_SIM_TASK_MS", "0")
            .env("POLYVISOR_SIM_BOOT_MS", "0")
            .env_remove("POLYVISOR_LOG_FILE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Provider { child, stdin, stdout, line: String::new() })
    }

    fn call(&mut self, req: &str) -> Result<&str, String> {
        self.stdin.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        self.stdin.write_all(b"\n").map_err(|e| e.to_string())?;
        self.stdin.flush().map_err(|e| e.to_string())?;
        self.line.clear();
        self.stdout.read_line(&mut self.line).map_err(|e| e.to_string())?;
        if self.line.is_empty() {
            return Err(format!("provider closed stdout after {req}"));
        }
        Ok(&self.line)
    }

    pub(crate) fn call_json(&mut self, req: &Value) -> Result<Value, String> {
        let line = self.call(&req.to_string())?.to_string();
        let v: Value = serde_json::from_str(&line).map_err(|e| format!("bad reply {line}: {e}"))?;
        if v.get("error").is_some() {
            return Err(format!("{req} failed: {line}"));
        }
        Ok(v)
    }

    pub(crate) fn finish(mut self) {
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

pub(crate) fn seed(bin: &Path, db: &Path, guests: usize) -> Result<(), String> {
    let out = Command::new(bin)
        .args(["sim", "seed", "--guests", &guests.to_string()])
        .env("POLYVISOR_SIM_DB", db)
        .stdout(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("sim seed failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

/// Runs the RAS benchmarks.
pub fn run(
    bin: &Path,
    dir: &Path,
    starts: usize,
    gets: usize,
    guests: usize,
    lists: usize,
) -> Result<Vec<Figure>, String> {
    let mut figures = Vec::new();
    let db = dir.join("ras-small.db");

    // Warm the database (first use seeds the demo estate).
    let mut p = Provider::spawn(bin, &db)?;
    p.call_json(&json!({"method": "provider/initialize"}))?;
    p.finish();

    let mut samples = Vec::with_capacity(starts);
    for _ in 0..starts {
        let t = Instant::now();
        let mut p = Provider::spawn(bin, &db)?;
        p.call(r#"{"method":"provider/initialize"}"#)?;
        samples.push(t.elapsed());
        p.finish();
    }
    let (m, p95) = median_p95_ms(&mut samples);
    figures.push(Figure::new(
        "RAS: process start → first reply (initialize)",
        m,
        "ms",
        format!("median of {starts}; p95 {p95:.2} ms"),
    ));

    let mut samples = Vec::with_capacity(starts);
    for _ in 0..starts.min(30) {
        let t = Instant::now();
        let mut p = Provider::spawn(bin, &db)?;
        p.call(r#"{"method":"provider/connect","params":{"settings":{}}}"#)?;
        p.call(r#"{"method":"guests/list"}"#)?;
        samples.push(t.elapsed());
        p.finish();
    }
    let (m, p95) = median_p95_ms(&mut samples);
    figures.push(Figure::new(
        "RAS: process start → connect + guests/list (sim)",
        m,
        "ms",
        format!("median of {}; p95 {p95:.2} ms", starts.min(30)),
    ));

    let mut p = Provider::spawn(bin, &db)?;
    p.call_json(&json!({"method": "provider/connect", "params": {"settings": {}}}))?;
    let list = p.call_json(&json!({"method": "guests/list"}))?;
    let id = list["result"]["guests"][0].as_str().ok_or("no guests in the demo estate")?.to_string();
    let req = json!({"method": "guests/get", "params": {"id": id}}).to_string();
    let t = Instant::now();
    for _ in 0..gets {
        p.call(&req)?;
    }
    let secs = t.elapsed().as_secs_f64();
    figures.push(Figure::new(
        "RAS: guests/get throughput over stdio",
        gets as f64 / secs,
        "req/s",
        format!("{gets} serial requests, one process"),
    ));
    let rss_small = peak_rss_kib(p.child.id());
    p.finish();

    let big = dir.join("ras-big.db");
    seed(bin, &big, guests)?;
    let mut p = Provider::spawn(bin, &big)?;
    p.call_json(&json!({"method": "provider/connect", "params": {"settings": {}}}))?;
    let mut samples = Vec::with_capacity(lists);
    let mut count = 0;
    for _ in 0..lists {
        let t = Instant::now();
        let v = p.call_json(&json!({"method": "guests/list"}))?;
        samples.push(t.elapsed());
        count = v["result"]["guests"].as_array().map(Vec::len).unwrap_or(0);
    }
    if count < guests {
        return Err(format!("listing returned {count} guests, expected at least {guests}"));
    }
    let (m, p95) = median_p95_ms(&mut samples);
    figures.push(Figure::new(
        &format!("RAS: guests/list with {count} guests"),
        m,
        "ms",
        format!("median of {lists}; p95 {p95:.2} ms"),
    ));
    let rss_big = peak_rss_kib(p.child.id());
    p.finish();

    if let Some(kib) = rss_small {
        figures.push(Figure::new(
            "RAS: peak RSS after the get benchmark",
            kib as f64 / 1024.0,
            "MiB",
            "VmHWM of the provider process",
        ));
    }
    if let Some(kib) = rss_big {
        figures.push(Figure::new(
            &format!("RAS: peak RSS after listing {count} guests"),
            kib as f64 / 1024.0,
            "MiB",
            "VmHWM of the provider process",
        ));
    }
    Ok(figures)
}
