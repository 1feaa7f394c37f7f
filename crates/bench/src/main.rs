//! `polyvisor-bench`: measures the built `polyvisor` binary the way platforms see it —
//! whole processes over their real wire (stdio line JSON for RAS, one process per action
//! for CloudStack) on the embedded `sim` driver with instant tasks.
//!
//! Run: `cargo build --release && ./target/release/polyvisor-bench --bin ./target/release/polyvisor`.
//! Prints a Markdown table (the README's figures) and optionally writes JSON.

mod cloudstack;
mod libvirt;
mod manageiq;
mod openstack;
mod proc_stats;
mod proxmox;
mod ras;
mod ssh;
mod stats;

use clap::Parser;
use std::path::PathBuf;

/// Benchmarks of polyvisor as platforms see it.
#[derive(Debug, Parser)]
#[command(name = "polyvisor-bench", version, about)]
struct Args {
    /// The polyvisor binary to measure.
    #[arg(long, default_value = "target/release/polyvisor")]
    bin: PathBuf,
    /// Process starts to time per start-up figure.
    #[arg(long, default_value_t = 100)]
    starts: usize,
    /// `guests/get` requests for the throughput figure.
    #[arg(long, default_value_t = 20_000)]
    gets: usize,
    /// Guests seeded for the large-listing figure.
    #[arg(long, default_value_t = 10_000)]
    guests: usize,
    /// Repetitions of the large listing.
    #[arg(long, default_value_t = 30)]
    lists: usize,
    /// CloudStack action runs per action.
    #[arg(long, default_value_t = 50)]
    actions: usize,
    /// Also measure the Proxmox driver against a fakepve started with this launcher
    /// (`scripts/ci/fakepve-launcher.py`; needs `pip install fakepve[crypto]`).
    #[arg(long)]
    fakepve_launcher: Option<PathBuf>,
    /// Also measure the libvirt driver on real QEMU with the tiny guest built in this
    /// directory (`scripts/ci/start-libvirt.sh` builds it into /var/lib/polyvisor-tiny);
    /// the binary must be built with `--features libvirt`.
    #[arg(long)]
    libvirt_tiny: Option<PathBuf>,
    /// The directory of the libvirt `polyvisor` storage pool.
    #[arg(long, default_value = "/var/lib/polyvisor-pool")]
    pool_dir: PathBuf,
    /// Also measure what SSH adds (a loopback `sshd` forcing `polyvisor ras` with the
    /// `install-ssh` fields; needs root and `openssh-server`).
    #[arg(long)]
    ssh: bool,
    /// Also measure the OpenStack driver against the loopback OpenStack whose backend contract
    /// (`openstack.json`, written by `scripts/ci/start-openstack.sh`) is in this directory;
    /// skipped with a note when the contract is absent.
    #[arg(long, value_name = "CONTRACT_DIR", num_args = 0..=1, default_missing_value = "/run/polyvisor-test")]
    openstack: Option<PathBuf>,
    /// Write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One measured figure.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// How it was measured (sample size, statistic).
    pub note: String,
}

impl Figure {
    fn new(name: &str, value: f64, unit: &str, note: impl Into<String>) -> Self {
        Figure { name: name.into(), value, unit: unit.into(), note: note.into() }
    }
}

fn main() {
    let args = Args::parse();
    if !args.bin.exists() {
        eprintln!("polyvisor-bench: {} not found (build it with `cargo build --release`)", args.bin.display());
        std::process::exit(2);
    }
    let dir = std::env::temp_dir().join(format!("polyvisor-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let outcome = collect(&args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let figures = match outcome {
        Ok(f) => f,
        Err(e) => {
            eprintln!("polyvisor-bench: {e}");
            std::process::exit(1);
        }
    };
    println!("| figure | value | how |\n|---|---|---|");
    for f in &figures {
        println!("| {} | {:.3} {} | {} |", f.name, f.value, f.unit, f.note);
    }
    if let Some(path) = &args.json {
        let _ = std::fs::write(path, serde_json::to_vec_pretty(&figures).unwrap_or_default());
    }
}

fn collect(args: &Args, dir: &std::path::Path) -> Result<Vec<Figure>, String> {
    let mut figures = ras::run(&args.bin, dir, args.starts, args.gets, args.guests, args.lists)?;
    figures.extend(manageiq::run(&args.bin, dir, args.guests, 5)?);
    figures.extend(cloudstack::run(&args.bin, dir, args.actions)?);
    if let Some(launcher) = &args.fakepve_launcher {
        figures.extend(proxmox::run(&args.bin, dir, launcher, args.actions.min(30))?);
    }
    if args.ssh {
        figures.extend(ssh::run(&args.bin, dir, args.starts, args.gets)?);
    }
    if let Some(tiny) = &args.libvirt_tiny {
        figures.extend(libvirt::run(&args.bin, dir, tiny, &args.pool_dir, args.actions.min(30))?);
    }
    if let Some(contract_dir) = &args.openstack {
        figures.extend(openstack::run(&args.bin, dir, contract_dir, args.actions.min(20))?);
    }
    Ok(figures)
}
