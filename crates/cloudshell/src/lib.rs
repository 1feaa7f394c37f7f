//! Quali CloudShell front (spec `cloudshell-cloud-provider.md`): a generated
//! 2nd-generation Cloud Provider shell whose thin Python driver (`src/driver.py`) forwards
//! every command to `polyvisor cloudshell exec <Command>`.
//!
//! - [`package`]: `polyvisor cloudshell package` writes the shell folder in shellfoundry's
//!   layout and the importable zip;
//! - [`exec`]: one shim call: context + raw request JSON on stdin, `{result, effects}` on
//!   stdout;
//! - [`model`]: the request/response shapes.
//!
//! The front never names a driver: the provider's `Driver` attribute selects one through
//! the [`DriverFactory`], and capabilities decide what is offered.

pub mod exec;
pub mod model;
pub mod package;

use polyvisor_core::DriverFactory;
use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

/// Name of the clone-from-template deployment path.
pub const PATH_TEMPLATE: &str = "Polyvisor Clone From Template";
/// Name of the install-from-ISO deployment path.
pub const PATH_ISO: &str = "Polyvisor From ISO";

/// `polyvisor cloudshell` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Write a Cloud Provider shell package (folder + importable zip).
    Package(package::PackageArgs),
    /// Run one driver command for the shell's `driver.py` (JSON on stdin and stdout).
    Exec {
        /// The driver method (`Deploy`, `PowerOn`, `GetVmDetails`, ...).
        command: String,
    },
}

/// Runs `polyvisor cloudshell …`.
pub fn run(args: Args, factory: Arc<dyn DriverFactory>) -> ExitCode {
    match args.command {
        Command::Package(a) => package::run(a, factory),
        Command::Exec { command } => {
            let mut input = String::new();
            if let Err(e) = std::io::stdin().take(64 << 20).read_to_string(&mut input) {
                eprintln!("polyvisor cloudshell: cannot read stdin: {e}");
                return ExitCode::from(1);
            }
            match exec_text(&command, &input, factory) {
                Ok(out) => {
                    println!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}", e.message());
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// One exec call from its stdin text: the stdout document, or the error the shim raises.
pub fn exec_text(command: &str, input: &str, factory: Arc<dyn DriverFactory>) -> polyvisor_core::Result<String> {
    let mut call = exec::Call::parse(input)?;
    if !call.command.is_empty() && call.command != command {
        return Err(polyvisor_core::Error::invalid("the command on stdin differs from the command argument"));
    }
    call.command = command.to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| polyvisor_core::Error::internal("cannot start the runtime").with_source(e))?;
    rt.block_on(async move {
        let ex = exec::Exec::open(call, &*factory).await?;
        let reply = ex.run().await;
        ex.close().await;
        Ok(reply?.to_json().to_string())
    })
}
