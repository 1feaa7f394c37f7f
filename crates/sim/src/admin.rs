//! `polyvisor sim …`: inspect, seed, reset and inject faults into the sim database.
//! Uses the driver's path rules (`--db`, else `POLYVISOR_SIM_DB`, else the data dir).

use crate::control::SimDb;
use crate::faults::{Mode, Op};
use polyvisor_core::Result;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// `polyvisor sim` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Database file (default: $POLYVISOR_SIM_DB, else <data dir>/polyvisor/sim.db).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// Admin subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Cmd {
    /// Print counts of guests, templates, snapshots and running tasks.
    Status,
    /// List guests.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete everything and re-seed the demo estate (persisted timing is kept).
    Reset {
        /// Leave the estate empty.
        #[arg(long)]
        empty: bool,
    },
    /// Bulk-insert running guests (one transaction), e.g. for benchmarks.
    Seed {
        /// How many guests.
        #[arg(long)]
        guests: u32,
        /// Name prefix (`<prefix>-<id>`).
        #[arg(long, default_value = "bench")]
        prefix: String,
    },
    /// Fault injection knobs.
    Fault {
        /// set | clear | list.
        #[command(subcommand)]
        action: FaultCmd,
    },
    /// Persist task and boot durations (settings/env still override).
    SetTiming {
        /// Task duration, ms.
        #[arg(long)]
        task_ms: Option<u32>,
        /// Boot duration, ms.
        #[arg(long)]
        boot_ms: Option<u32>,
    },
}

/// `polyvisor sim fault …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum FaultCmd {
    /// Fail the next N operations of a kind and/or add latency to each call.
    Set {
        /// Operation kind.
        #[arg(long, value_enum)]
        op: Op,
        /// How many upcoming operations fail.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Latency added to every call of this kind, ms (max 30000).
        #[arg(long, default_value_t = 0)]
        latency_ms: u32,
        /// Fail at submit time (Backend error) or make the task end Failed.
        #[arg(long, value_enum, default_value_t = Mode::Submit)]
        mode: Mode,
    },
    /// Clear one knob (`--op`) or all.
    Clear {
        /// Operation kind.
        #[arg(long, value_enum)]
        op: Option<Op>,
    },
    /// Show the knobs.
    List,
}

/// Runs one admin command.
pub fn run(args: Args) -> ExitCode {
    match exec(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("polyvisor sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn exec(args: Args) -> Result<()> {
    let path = crate::config::db_path(args.db.map(|p| p.to_string_lossy().into_owned()))?;
    let seed = crate::config::Config::resolve(&polyvisor_core::Settings::from_pairs([(
        crate::config::SETTING_DB,
        path.to_string_lossy(),
    )]))?
    .seed;
    let db = SimDb::open(&path, seed)?;
    let mut out = String::new();
    match args.command {
        Cmd::Status => {
            let c = db.counts()?;
            let _ = writeln!(out, "database: {}", db.path().display());
            let _ = writeln!(out, "guests: {} (templates: {}), in progress: {}", c.guests, c.templates, c.pending);
            let _ = writeln!(out, "snapshots: {}, running tasks: {}", c.snapshots, c.running_tasks);
            let show = |v: Option<i64>| v.map_or("default".to_string(), |v| format!("{v} ms"));
            let _ = writeln!(out, "timing: task {}, boot {}", show(c.task_ms), show(c.boot_ms));
            for f in db.faults()? {
                let _ =
                    writeln!(out, "fault: {} count={} latency_ms={} mode={:?}", f.op, f.count, f.latency_ms, f.mode);
            }
        }
        Cmd::List { json } => {
            let guests = db.list()?;
            if json {
                let _ = writeln!(out, "{}", serde_json::to_string_pretty(&guests).unwrap_or_else(|_| "[]".into()));
            } else {
                let _ =
                    writeln!(out, "{:<8} {:<32} {:<13} {:<8} {:<16} KEY", "ID", "NAME", "POWER", "TEMPLATE", "IPV4");
                for g in guests {
                    let ip = if g.power == polyvisor_core::PowerState::PoweredOn {
                        db.guest_ip(g.id.as_str())?.unwrap_or_default()
                    } else {
                        String::new()
                    };
                    let _ = writeln!(
                        out,
                        "{:<8} {:<32} {:<13} {:<8} {:<16} {}",
                        g.id.as_str(),
                        g.name,
                        g.power.as_str(),
                        if g.is_template { "yes" } else { "no" },
                        ip,
                        g.key.unwrap_or_default()
                    );
                }
            }
        }
        Cmd::Reset { empty } => {
            db.reset(empty)?;
            let _ = writeln!(out, "reset {} ({})", db.path().display(), if empty { "empty" } else { "demo estate" });
        }
        Cmd::Seed { guests, prefix } => {
            crate::names::check_guest_name(&format!("{prefix}-1"))?;
            let t = std::time::Instant::now();
            match db.seed_guests(guests, &prefix)? {
                Some((a, b)) => {
                    let _ = writeln!(out, "inserted {guests} guests ({a}..={b}) in {} ms", t.elapsed().as_millis());
                }
                None => {
                    let _ = writeln!(out, "inserted 0 guests");
                }
            }
        }
        Cmd::Fault { action } => match action {
            FaultCmd::Set { op, count, latency_ms, mode } => {
                db.set_fault(op, count, latency_ms, mode)?;
                let _ = writeln!(out, "fault set: {} count={count} latency_ms={latency_ms} mode={mode:?}", op.as_str());
            }
            FaultCmd::Clear { op } => {
                db.clear_faults(op)?;
                let _ = writeln!(out, "faults cleared");
            }
            FaultCmd::List => {
                for f in db.faults()? {
                    let _ = writeln!(out, "{} count={} latency_ms={} mode={:?}", f.op, f.count, f.latency_ms, f.mode);
                }
            }
        },
        Cmd::SetTiming { task_ms, boot_ms } => {
            db.set_timing(task_ms, boot_ms)?;
            let _ = writeln!(out, "timing persisted (task_ms={task_ms:?}, boot_ms={boot_ms:?})");
        }
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn run_args(db: &std::path::Path, rest: &[&str]) -> Result<()> {
        let mut argv = vec!["sim", "--db", db.to_str().unwrap_or_default()];
        argv.extend_from_slice(rest);
        exec(Cli::try_parse_from(argv).map_err(|e| polyvisor_core::Error::invalid(e.to_string()))?.args)
    }

    #[test]
    fn admin_commands_change_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        run_args(&db, &["status"]).unwrap();
        run_args(&db, &["seed", "--guests", "25"]).unwrap();
        run_args(
            &db,
            &["fault", "set", "--op", "snapshot_create", "--count", "2", "--latency-ms", "5", "--mode", "task"],
        )
        .unwrap();
        run_args(&db, &["set-timing", "--task-ms", "0", "--boot-ms", "7"]).unwrap();
        run_args(&db, &["list", "--json"]).unwrap();
        let ctl = SimDb::open(&db, true).unwrap();
        let c = ctl.counts().unwrap();
        assert_eq!((c.guests, c.task_ms, c.boot_ms), (32, Some(0), Some(7)));
        let f = ctl.faults().unwrap();
        assert_eq!((f[0].op.as_str(), f[0].count, f[0].latency_ms, f[0].mode), ("snapshot_create", 2, 5, Mode::Task));
        run_args(&db, &["fault", "clear"]).unwrap();
        run_args(&db, &["reset", "--empty"]).unwrap();
        assert_eq!(ctl.counts().unwrap().guests, 0);
        assert!(ctl.faults().unwrap().is_empty());
        assert_eq!(ctl.counts().unwrap().boot_ms, Some(7), "timing survives reset");
        assert!(run_args(&db, &["fault", "set", "--op", "bogus"]).is_err());
        assert!(run_args(&db, &["seed", "--guests", "1", "--prefix", "-bad"]).is_err());
    }
}
