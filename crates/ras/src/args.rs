//! `polyvisor ras` command-line options (the RAS Console "Arguments" field), each with an
//! environment fallback. Values are kept as raw strings and parsed leniently in
//! [`crate::config`], so a bad value never stops the process: it surfaces on
//! `provider/connect` as "Invalid connection parameters".

/// `polyvisor ras` options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// Template support level advertised at `provider/initialize`: `none`, `basic` or
    /// `versioning` (default). Clamped to what the driver can do.
    #[arg(long, env = "POLYVISOR_RAS_TEMPLATE_METHOD", value_name = "none|basic|versioning")]
    pub template_method: Option<String>,
    /// Advertise link clones (`basic` + `can_link_clones` = the link-clone level).
    #[arg(long, env = "POLYVISOR_RAS_LINK_CLONES", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub link_clones: Option<String>,
    /// Driver whose capabilities `provider/initialize` reports and that serves requests
    /// arriving without a `provider/connect` (default `sim`).
    #[arg(long, env = "POLYVISOR_DRIVER", value_name = "NAME")]
    pub driver: Option<String>,
    /// Advertise `can_suspend_guests`: `auto` (default: the driver's capability), `on`
    /// (also when the driver cannot be inspected), `off`.
    #[arg(long, env = "POLYVISOR_RAS_SUSPEND", value_name = "auto|on|off")]
    pub suspend: Option<String>,
    /// `guests_polling_rate` in seconds (clamped to 3..=900; default 5).
    #[arg(long, env = "POLYVISOR_RAS_GUESTS_POLLING_RATE", value_name = "SECS")]
    pub guests_polling_rate: Option<String>,
    /// `tasks_polling_rate` in seconds (clamped to 1..=60; default: the driver's advice).
    #[arg(long, env = "POLYVISOR_RAS_TASKS_POLLING_RATE", value_name = "SECS")]
    pub tasks_polling_rate: Option<String>,
    /// `tasks_polling_retries` (clamped to 0..=180; default: 30 min / rate, at most 180).
    #[arg(long, env = "POLYVISOR_RAS_TASKS_POLLING_RETRIES", value_name = "N")]
    pub tasks_polling_retries: Option<String>,
    /// Upper bound in seconds for any one request's driver work (default 20, 0.1..=300).
    #[arg(long, env = "POLYVISOR_RAS_REQUEST_TIMEOUT", value_name = "SECS")]
    pub request_timeout: Option<String>,
    /// `install-ssh` prints the set-up for running over SSH; without a subcommand
    /// `polyvisor ras` serves the protocol on stdio.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `polyvisor ras` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Print the RAS Console fields (Windows OpenSSH client), the pinned known_hosts line
    /// and the restricted authorized_keys line for running `polyvisor ras` on a Linux host.
    InstallSsh(Box<crate::install_ssh::InstallSshArgs>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(argv: &[&str]) -> Args {
        let mut v = vec!["ras"];
        v.extend_from_slice(argv);
        Cli::try_parse_from(v).expect("parses").args
    }

    #[test]
    fn flags_parse_as_the_ras_console_would_pass_them() {
        let a = parse(&["--template-method", "basic", "--link-clones", "--driver", "proxmox", "--suspend", "off"]);
        assert_eq!(a.template_method.as_deref(), Some("basic"));
        assert_eq!(a.link_clones.as_deref(), Some("true"));
        assert_eq!(a.driver.as_deref(), Some("proxmox"));
        assert_eq!(a.suspend.as_deref(), Some("off"));
        let a = parse(&["--link-clones", "false", "--tasks-polling-rate", "5", "--request-timeout", "2.5"]);
        assert_eq!(a.link_clones.as_deref(), Some("false"));
        assert_eq!(a.tasks_polling_rate.as_deref(), Some("5"));
        assert_eq!(a.request_timeout.as_deref(), Some("2.5"));
        // Bad values are accepted here and reported later by provider/connect.
        let a = parse(&["--template-method", "gold", "--guests-polling-rate", "fast"]);
        assert_eq!(a.template_method.as_deref(), Some("gold"));
    }
}
