//! `polyvisor cloudshell`: the CloudShell front's registration in the CLI.

use crate::Command;

/// `cloudshell exec` speaks JSON on stdout and error text on stderr for the shell's
/// `driver.py`: logs must go to the log file only.
pub(crate) fn is_protocol(command: &Command) -> bool {
    matches!(command, Command::Cloudshell(a) if matches!(a.command, polyvisor_cloudshell::Command::Exec { .. }))
}
