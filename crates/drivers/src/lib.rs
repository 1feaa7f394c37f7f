//! The driver registry: ONE table, [`DRIVERS`], of every driver polyvisor knows, and the
//! [`Registry`] that turns platform settings into a [`Driver`] through it.
//!
//! The `driver` setting (alias `platform`, as RAS samples call it) selects a row by name
//! or alias; the default is `sim`, the embedded simulator. This is the only crate that
//! names drivers; fronts receive a [`DriverFactory`] and never know which driver they
//! talk to. Adding a driver is one crate plus one row in [`DRIVERS`]: selection, the
//! unknown-driver message, [`DriverFactory::driver_names`] and `polyvisor drivers` all
//! read the table.

use async_trait::async_trait;
use polyvisor_core::{
    Capabilities, ConsoleKind, Driver, DriverFactory, Error, ErrorKind, OpenOptions, Result, Settings, TemplateStrategy,
};
use std::fmt::Write as _;
use std::sync::Arc;

/// The settings key that selects a driver.
pub const DRIVER_KEY: &str = "driver";
/// Alias of [`DRIVER_KEY`] used by the RAS samples.
pub const PLATFORM_KEY: &str = "platform";
/// The driver used when the settings name none.
pub const DEFAULT_DRIVER: &str = "sim";

/// The two entry points of a driver compiled into this build.
#[derive(Clone, Copy)]
pub struct Backend {
    /// What the driver would do with these settings and options, without credentials
    /// and without I/O (RAS asks before `provider/connect`; `cloudstack install` asks
    /// before any host is known). Must equal `open(..)?.capabilities()` when `open` works.
    pub capabilities: fn(&Settings, &OpenOptions) -> Result<Capabilities>,
    /// Builds the driver (validates settings; no I/O: `Driver::probe` connects).
    pub open: fn(&Settings, &OpenOptions) -> Result<Arc<dyn Driver>>,
}

/// One row of the driver table.
pub struct DriverEntry {
    /// Canonical name (the `driver` setting's value, lower case).
    pub name: &'static str,
    /// Other accepted values of the `driver`/`platform` setting (lower case).
    pub aliases: &'static [&'static str],
    /// One line for `polyvisor drivers`.
    pub summary: &'static str,
    /// The cargo feature that compiles the driver in, when it needs one.
    pub feature: Option<&'static str>,
    /// The entry points; `None` when this build lacks the driver (feature off).
    pub backend: Option<Backend>,
}

/// Every driver polyvisor knows, compiled in or not. The first row is the default.
pub static DRIVERS: &[DriverEntry] = &[
    DriverEntry {
        name: "sim",
        aliases: &["simulator"],
        summary: "embedded SQLite simulator (zero setup)",
        feature: None,
        backend: Some(Backend {
            capabilities: |s, _| polyvisor_sim::capabilities(s),
            open: |s, _| polyvisor_sim::open(s),
        }),
    },
    DriverEntry {
        name: "proxmox",
        aliases: &["pve", "proxmox-ve"],
        summary: "Proxmox VE over its REST API",
        feature: None,
        backend: Some(Backend { capabilities: polyvisor_proxmox::capabilities, open: polyvisor_proxmox::open }),
    },
    DriverEntry {
        name: "libvirt",
        aliases: &["kvm", "qemu"],
        summary: "libvirt/KVM over the libvirt C library",
        feature: Some("libvirt"),
        #[cfg(feature = "libvirt")]
        backend: Some(Backend {
            capabilities: |s, _| polyvisor_libvirt::capabilities(s),
            open: |s, _| polyvisor_libvirt::open(s),
        }),
        #[cfg(not(feature = "libvirt"))]
        backend: None,
    },
    DriverEntry {
        name: "hpevme",
        aliases: &["morpheus", "hpe-vme"],
        summary: "HPE VM Essentials over the Morpheus REST API",
        feature: None,
        backend: Some(Backend { capabilities: polyvisor_hpevme::capabilities, open: polyvisor_hpevme::open }),
    },
    DriverEntry {
        name: "azure",
        aliases: &["arm", "azure-arm"],
        summary: "Azure virtual machines over Azure Resource Manager",
        feature: None,
        backend: Some(Backend { capabilities: polyvisor_azure::capabilities, open: polyvisor_azure::open }),
    },
    DriverEntry {
        name: "xcpng",
        aliases: &["xenserver", "xcp-ng"],
        summary: "XCP-ng / XenServer over XAPI JSON-RPC",
        feature: None,
        backend: Some(Backend { capabilities: polyvisor_xcpng::capabilities, open: polyvisor_xcpng::open }),
    },
    DriverEntry {
        name: "openstack",
        aliases: &["nova"],
        summary: "OpenStack (Keystone v3, Nova, Glance, Neutron) over its REST APIs",
        feature: None,
        backend: Some(Backend { capabilities: polyvisor_openstack::capabilities, open: polyvisor_openstack::open }),
    },
    DriverEntry {
        name: "virtuozzo",
        aliases: &["vhi"],
        summary: "Virtuozzo Hybrid Infrastructure: the openstack driver with VHI defaults",
        feature: None,
        backend: Some(Backend {
            capabilities: polyvisor_openstack::capabilities,
            open: polyvisor_openstack::open_virtuozzo,
        }),
    },
    DriverEntry {
        name: "kubevirt",
        aliases: &["openshift", "openshift-virtualization"],
        summary: "KubeVirt / OpenShift Virtualization over the Kubernetes API",
        feature: None,
        backend: Some(Backend { capabilities: polyvisor_kubevirt::capabilities, open: polyvisor_kubevirt::open }),
    },
    DriverEntry {
        name: "hyperv",
        aliases: &["hyper-v", "hyperv-winrm"],
        summary: "Microsoft Hyper-V: fixed PowerShell scripts over WinRM (HTTPS, NTLM or Basic)",
        feature: None,
        backend: Some(Backend { capabilities: polyvisor_hyperv::capabilities, open: polyvisor_hyperv::open }),
    },
];

impl DriverEntry {
    /// Whether `raw` (trimmed, any case) is this driver's name or one of its aliases.
    pub fn matches(&self, raw: &str) -> bool {
        let raw = raw.trim();
        raw.eq_ignore_ascii_case(self.name) || self.aliases.iter().any(|a| raw.eq_ignore_ascii_case(a))
    }

    /// Whether this build contains the driver.
    pub fn available(&self) -> bool {
        self.backend.is_some()
    }

    /// The entry points, or an `Unsupported` error saying how to get the driver.
    pub fn backend(&self) -> Result<&Backend> {
        self.backend.as_ref().ok_or_else(|| {
            let how = match self.feature {
                Some(f) => format!("; rebuild polyvisor with `--features {f}`"),
                None => String::new(),
            };
            Error::new(ErrorKind::Unsupported, format!("the {} driver is not in this build{how}", self.name))
        })
    }

    /// Capabilities without credentials or I/O (see [`Backend::capabilities`]).
    pub fn capabilities(&self, settings: &Settings, opts: &OpenOptions) -> Result<Capabilities> {
        (self.backend()?.capabilities)(settings, opts)
    }

    /// Builds the driver (see [`Backend::open`]).
    pub fn open(&self, settings: &Settings, opts: &OpenOptions) -> Result<Arc<dyn Driver>> {
        (self.backend()?.open)(settings, opts)
    }
}

/// The table row for a user-supplied driver name or alias (empty = the default).
pub fn find_driver(raw: &str) -> Option<&'static DriverEntry> {
    let raw = if raw.trim().is_empty() { DEFAULT_DRIVER } else { raw };
    DRIVERS.iter().find(|e| e.matches(raw))
}

/// Canonical driver name for a user-supplied one (accepts every alias in the table).
pub fn canonical_driver_name(raw: &str) -> Option<&'static str> {
    find_driver(raw).map(|e| e.name)
}

/// The row the settings select (`driver`, else `platform`, else [`DEFAULT_DRIVER`]).
/// An unknown name is `InvalidInput` listing the names in the table.
pub fn selected_entry(settings: &Settings) -> Result<&'static DriverEntry> {
    let raw = settings.str_any(&[DRIVER_KEY, PLATFORM_KEY]).unwrap_or_default();
    find_driver(&raw).ok_or_else(|| {
        let shown: String = raw.chars().take(40).flat_map(char::escape_default).collect();
        let known: Vec<&str> = DRIVERS.iter().map(|e| e.name).collect();
        Error::invalid(format!("unknown driver '{shown}' (known: {})", known.join(", ")))
    })
}

/// The driver name the settings select.
pub fn selected_driver(settings: &Settings) -> Result<&'static str> {
    selected_entry(settings).map(|e| e.name)
}

/// Every driver polyvisor knows, compiled in or not, through the table.
#[derive(Clone, Copy, Debug, Default)]
pub struct Registry;

#[async_trait]
impl DriverFactory for Registry {
    async fn open(&self, settings: &Settings, opts: &OpenOptions) -> Result<Arc<dyn Driver>> {
        selected_entry(settings)?.open(settings, opts)
    }

    async fn capabilities(&self, settings: &Settings, opts: &OpenOptions) -> Result<Capabilities> {
        selected_entry(settings)?.capabilities(settings, opts)
    }

    fn driver_names(&self) -> Vec<&'static str> {
        DRIVERS.iter().filter(|e| e.available()).map(|e| e.name).collect()
    }
}

/// Capabilities in a few words (`templates=flag linked-clones snapshots ...`).
pub fn capabilities_summary(c: &Capabilities) -> String {
    let templates = match c.templates {
        TemplateStrategy::None => "none",
        TemplateStrategy::Native => "native",
        TemplateStrategy::Flag => "flag",
    };
    let mut out = format!("templates={templates}");
    for (on, word) in [
        (c.linked_clones, "linked-clones"),
        (c.snapshots, "snapshots"),
        (c.snapshot_memory, "memory-snapshots"),
        (c.clone_from_snapshot, "clone-from-snapshot"),
        (c.suspend, "suspend"),
        (c.create, "create"),
    ] {
        if on {
            out.push(' ');
            out.push_str(word);
        }
    }
    if !c.consoles.is_empty() {
        let kinds: Vec<&str> = c
            .consoles
            .iter()
            .map(|k| match k {
                ConsoleKind::Vnc => "vnc",
                ConsoleKind::Url => "url",
                ConsoleKind::Rdp => "rdp",
            })
            .collect();
        let _ = write!(out, " consoles={}", kinds.join(","));
    }
    out
}

/// The `polyvisor drivers` listing: one line per table row (name first), with aliases,
/// the capabilities under default settings (no credentials, no I/O) or why the driver
/// is missing, and its summary.
pub fn describe_drivers() -> String {
    let mut out = String::new();
    for e in DRIVERS {
        let caps = match e.capabilities(&Settings::new(), &OpenOptions::default()) {
            Ok(c) => capabilities_summary(&c),
            Err(err) if !e.available() => format!("(missing: {})", err.message()),
            Err(err) => format!("(capabilities need settings: {})", err.message()),
        };
        let _ = writeln!(out, "{:<8} aliases={:<20} {} ({})", e.name, e.aliases.join(","), caps, e.summary);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyvisor_core::TemplatePreference;

    fn with(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn every_name_and_alias_resolves_to_its_row() {
        assert_eq!(selected_driver(&Settings::new()).unwrap(), DEFAULT_DRIVER);
        assert_eq!(DRIVERS[0].name, DEFAULT_DRIVER);
        for e in DRIVERS {
            for raw in std::iter::once(&e.name).chain(e.aliases) {
                for spelled in [raw.to_string(), raw.to_ascii_uppercase(), format!(" {raw} ")] {
                    assert_eq!(canonical_driver_name(&spelled), Some(e.name), "{spelled}");
                    assert_eq!(selected_driver(&with(&[("driver", &spelled)])).unwrap(), e.name);
                    assert_eq!(selected_driver(&with(&[("platform", &spelled)])).unwrap(), e.name);
                }
            }
        }
        // No alias is claimed twice.
        let mut all: Vec<&str> =
            DRIVERS.iter().flat_map(|e| std::iter::once(e.name).chain(e.aliases.iter().copied())).collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "duplicate driver name or alias");
        // `driver` wins over `platform`.
        assert_eq!(selected_driver(&with(&[("driver", "pve"), ("platform", "kvm")])).unwrap(), "proxmox");
    }

    #[tokio::test]
    async fn unknown_drivers_are_invalid_and_list_the_table() {
        let e = Registry.open(&with(&[("driver", "vm\u{1b}ware")]), &OpenOptions::default()).await.err().unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(
            e.message(),
            "unknown driver 'vm\\u{1b}ware' (known: sim, proxmox, libvirt, hpevme, azure, xcpng, openstack, virtuozzo, kubevirt, hyperv)"
        );
        let e = Registry.capabilities(&with(&[("platform", "xen")]), &OpenOptions::default()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        for d in DRIVERS {
            assert!(e.message().contains(d.name), "{}", e.message());
        }
    }

    #[test]
    fn driver_names_are_the_available_rows() {
        let names = Registry.driver_names();
        let expected: Vec<&str> = DRIVERS.iter().filter(|e| e.available()).map(|e| e.name).collect();
        assert_eq!(names, expected);
        assert!(names.starts_with(&["sim", "proxmox"]));
        assert_eq!(names.contains(&"libvirt"), cfg!(feature = "libvirt"));
    }

    #[tokio::test]
    async fn proxmox_capabilities_need_no_credentials_in_both_template_modes() {
        let pve = with(&[("driver", "proxmox")]);
        let native = OpenOptions::with_templates(TemplatePreference::Native);
        let flag = OpenOptions::with_templates(TemplatePreference::Flag);
        let by_default = Registry.capabilities(&pve, &OpenOptions::default()).await.unwrap();
        assert_eq!(by_default.templates, TemplateStrategy::Flag);
        assert!(by_default.suspend && !by_default.linked_clones && by_default.clone_from_snapshot);
        assert!(by_default.create && by_default.consoles == vec![ConsoleKind::Vnc]);
        assert_eq!(Registry.capabilities(&pve, &flag).await.unwrap(), by_default);
        let n = Registry.capabilities(&pve, &native).await.unwrap();
        assert_eq!(n.templates, TemplateStrategy::Native);
        assert!(n.linked_clones && !n.clone_from_snapshot);
        // The operator's explicit setting wins over the front's preference, both ways.
        let set_flag = with(&[("driver", "proxmox"), ("template_mode", "flag")]);
        assert_eq!(Registry.capabilities(&set_flag, &native).await.unwrap().templates, TemplateStrategy::Flag);
        let set_native = with(&[("driver", "pve"), ("template_mode", "native")]);
        assert_eq!(Registry.capabilities(&set_native, &flag).await.unwrap().templates, TemplateStrategy::Native);
        let bad = with(&[("driver", "proxmox"), ("template_mode", "gold")]);
        assert_eq!(Registry.capabilities(&bad, &flag).await.unwrap_err().kind(), ErrorKind::InvalidInput);
        // open still needs a host; with one, the opened driver agrees with the table.
        assert!(Registry.open(&pve, &native).await.is_err(), "open still needs a host");
        let full =
            with(&[("driver", "proxmox"), ("host", "pve.invalid"), ("username", "root@pam"), ("password", "pw")]);
        for opts in [native, flag, OpenOptions::default()] {
            let opened = Registry.open(&full, &opts).await.unwrap().capabilities();
            assert_eq!(opened, Registry.capabilities(&full, &opts).await.unwrap(), "{opts:?}");
        }
    }

    #[tokio::test]
    async fn sim_capabilities_do_not_create_the_database() {
        let dir = std::env::temp_dir().join(format!("polyvisor-drivers-caps-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("caps.db");
        let s = with(&[("driver", "sim"), ("sim_db", db.to_str().unwrap())]);
        let caps = Registry.capabilities(&s, &OpenOptions::default()).await.unwrap();
        assert!(caps.create && caps.consoles == vec![ConsoleKind::Vnc]);
        assert!(!db.exists(), "capabilities touched the database");
        let opened = Registry.open(&s, &OpenOptions::default()).await.unwrap();
        assert_eq!(opened.capabilities(), caps);
        assert!(db.exists(), "open creates the database");
        drop(opened);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(not(feature = "libvirt"))]
    #[tokio::test]
    async fn libvirt_absent_says_how_to_get_it() {
        let s = with(&[("driver", "kvm")]);
        for e in [
            Registry.open(&s, &OpenOptions::default()).await.err().unwrap(),
            Registry.capabilities(&s, &OpenOptions::default()).await.unwrap_err(),
        ] {
            assert_eq!(e.kind(), ErrorKind::Unsupported);
            assert_eq!(
                e.message(),
                "the libvirt driver is not in this build; rebuild polyvisor with `--features libvirt`"
            );
        }
        assert!(describe_drivers().lines().any(|l| l.starts_with("libvirt") && l.contains("--features libvirt")));
    }

    #[cfg(feature = "libvirt")]
    #[tokio::test]
    async fn libvirt_present_answers_capabilities_without_connecting() {
        // A URI nothing listens on: capabilities and open must not connect.
        let s = with(&[("driver", "libvirt"), ("uri", "qemu+tcp://polyvisor-nowhere.invalid/system")]);
        let caps = Registry.capabilities(&s, &OpenOptions::default()).await.unwrap();
        assert!(caps.create && caps.linked_clones && !caps.clone_from_snapshot);
        assert_eq!(caps.consoles, vec![ConsoleKind::Vnc]);
        let d = Registry.open(&s, &OpenOptions::default()).await.unwrap();
        assert_eq!(d.capabilities(), caps);
        let test = with(&[("driver", "qemu"), ("uri", "test:///default")]);
        assert!(Registry.capabilities(&test, &OpenOptions::default()).await.unwrap().consoles.is_empty());
        assert!(describe_drivers().lines().any(|l| l.starts_with("libvirt") && l.contains("templates=flag")));
    }

    #[test]
    fn describe_lists_every_row_name_first() {
        let text = describe_drivers();
        let firsts: Vec<&str> = text.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
        let names: Vec<&str> = DRIVERS.iter().map(|e| e.name).collect();
        assert_eq!(firsts, names);
        let pve = text.lines().find(|l| l.starts_with("proxmox")).unwrap();
        assert!(
            pve.contains("aliases=pve,proxmox-ve") && pve.contains("templates=flag") && pve.contains("consoles=vnc")
        );
    }
}
