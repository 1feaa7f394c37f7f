//! ManageIQ figures: `polyvisor manageiq inventory` of a sim estate of many guests (wall
//! time per whole process, peak RSS), budget < 1 s and < 100 MB for 10,000 guests; the
//! bench fails (exit 1) when the median or the peak exceeds it.

use crate::proc_stats::peak_rss_kib;
use crate::Figure;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Budget of a full inventory of 10,000 guests.
const WALL_BUDGET: Duration = Duration::from_secs(1);
/// Peak RSS budget, KiB.
const RSS_BUDGET_KIB: u64 = 100 * 1024;

/// One inventory run: (wall, peak RSS KiB sampled every 2 ms, VMs in the answer).
fn inventory(bin: &Path, conn: &str) -> Result<(Duration, u64, usize), String> {
    let t0 = Instant::now();
    let mut child = Command::new(bin)
        .args(["manageiq", "inventory"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    child.stdin.take().ok_or("stdin")?.write_all(conn.as_bytes()).map_err(|e| e.to_string())?;
    let mut stdout = child.stdout.take().ok_or("stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let pid = child.id();
    let mut peak = 0;
    loop {
        if let Some(k) = peak_rss_kib(pid) {
            peak = peak.max(k);
        }
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let wall = t0.elapsed();
    let out = reader.join().map_err(|_| "reader panicked")?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| format!("inventory answer: {e}"))?;
    let n = v["vms"].as_array().map(Vec::len).ok_or_else(|| format!("no vms in the answer: {out:.200}"))?;
    Ok((wall, peak, n))
}

/// Seeds `guests` sim guests and measures `runs` full inventories.
pub fn run(bin: &Path, dir: &Path, guests: usize, runs: usize) -> Result<Vec<Figure>, String> {
    let db = dir.join("miq-big.db");
    crate::ras::seed(bin, &db, guests)?;
    let conn = serde_json::json!({"platform": "sim", "options": {"sim_db": db.to_string_lossy()}}).to_string();
    inventory(bin, &conn)?; // warm the page cache
    let mut walls = Vec::new();
    let mut peak = 0;
    let mut count = 0;
    for _ in 0..runs.max(1) {
        let (w, p, n) = inventory(bin, &conn)?;
        walls.push(w);
        peak = peak.max(p);
        count = n;
    }
    if count < guests {
        return Err(format!("inventory returned {count} VMs, expected at least {guests}"));
    }
    walls.sort();
    let median = walls[walls.len() / 2];
    let figures = vec![
        Figure::new(
            &format!("ManageIQ: full inventory of {count} sim guests"),
            median.as_secs_f64() * 1000.0,
            "ms",
            format!("median of {} whole `polyvisor manageiq inventory` processes (budget 1000 ms)", walls.len()),
        ),
        Figure::new(
            &format!("ManageIQ: peak RSS of that inventory ({count} guests)"),
            peak as f64 / 1024.0,
            "MiB",
            "VmHWM sampled every 2 ms, max over the runs (budget 100 MiB)",
        ),
    ];
    if guests >= 10_000 && (median > WALL_BUDGET || peak > RSS_BUDGET_KIB) {
        return Err(format!(
            "ManageIQ inventory over budget: median {median:?} (≤ 1 s), peak {} MiB (≤ 100 MiB)",
            peak / 1024
        ));
    }
    Ok(figures)
}
