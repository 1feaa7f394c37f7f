//! The ras harness.

pub mod process;

/// `polyvisor check ras` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Report options.
    #[command(flatten)]
    pub report: crate::ReportArgs,
    /// The provider command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Runs the harness; `Ok(true)` when every case passed.
pub fn run(_args: Args) -> Result<bool, String> {
    Err("not implemented yet".into())
}
