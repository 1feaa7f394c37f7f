//! `polyvisor cloudshell package`: writes the Cloud Provider shell folder in the layout
//! `shellfoundry new --template gen2/cloud-provider` creates, and the importable zip that
//! `shellfoundry pack` builds from it (`dist/<name>.zip`: `TOSCA-Metadata/TOSCA.meta`,
//! `shell-definition.yaml`, `shell-icon.png`, the driver zip of `src/`, `Deployments.zip`).

use crate::{PATH_ISO, PATH_TEMPLATE};
use polyvisor_core::netops::NetworkingType;
use polyvisor_core::{DriverFactory, Error, OpenOptions, Result, Settings};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

const SHELL_DEFINITION: &str = include_str!("templates/shell-definition.yaml");
const DEPLOYMENT_TEMPLATE: &str = include_str!("templates/deployment-template.yaml");
const DEPLOYMENT_ISO: &str = include_str!("templates/deployment-iso.yaml");
const TOSCA_META: &str = include_str!("templates/TOSCA.meta");
const REQUIREMENTS: &str = include_str!("templates/requirements.txt");
const DRIVER_PY: &str = include_str!("templates/driver.py");
const ICON: &[u8] = include_bytes!("templates/shell-icon.png");

const L2_METHODS: &str = r#"
    def ApplyConnectivityChanges(self, context, request):
        return self._run("ApplyConnectivityChanges", context, request)
"#;

const L3_METHODS: &str = r#"
    def PrepareSandboxInfra(self, context, request, cancellation_context):
        return self._run("PrepareSandboxInfra", context, request, cancellation_context)

    def CleanupSandboxInfra(self, context, request):
        return self._run("CleanupSandboxInfra", context, request)
"#;

/// `polyvisor cloudshell package` options.
#[derive(Debug, Clone, clap::Args)]
pub struct PackageArgs {
    /// Folder to write (created; existing files are overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// Shell (model) name: letters, digits, spaces, '-' and '_'.
    #[arg(long, default_value = "Polyvisor Cloud Provider")]
    pub name: String,
    /// Networking type: L2 (VLANs) or L3 (subnets).
    #[arg(long, default_value = "L2", value_parser = parse_networking)]
    pub networking: NetworkingType,
    /// Default polyvisor driver of the provider resource.
    #[arg(long, default_value = "sim")]
    pub driver: String,
    /// Non-secret driver settings (JSON object): the networking check uses them (e.g.
    /// libvirt's `{"vlans": "true"}` for L2) and they become the `Driver Settings` default.
    #[arg(long, default_value = "{}")]
    pub settings: String,
}

fn parse_networking(s: &str) -> std::result::Result<NetworkingType, String> {
    match s {
        "L2" | "l2" => Ok(NetworkingType::L2),
        "L3" | "l3" => Ok(NetworkingType::L3),
        _ => Err("expected L2 or L3".into()),
    }
}

/// What the package needs to know.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Shell name.
    pub name: String,
    /// Networking type.
    pub networking: NetworkingType,
    /// Default driver.
    pub driver: String,
    /// Whether the ISO deployment option is offered.
    pub iso: bool,
    /// Default of the `Driver Settings` attribute (compact JSON object).
    pub settings: String,
}

impl Spec {
    /// The driver class name (`PolyvisorCloudProviderDriver`).
    pub fn class_name(&self) -> String {
        let base: String = self.name.chars().filter(char::is_ascii_alphanumeric).collect();
        format!("{base}Driver")
    }
}

fn check_name(what: &str, v: &str) -> Result<()> {
    let ok = !v.trim().is_empty()
        && v.len() <= 60
        && v.trim() == v
        && v.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!("{what} must be 1-60 letters, digits, spaces, '-' or '_', starting with a letter")))
    }
}

/// Checks the spec against the driver's capabilities (no credentials needed).
pub async fn resolve(args: &PackageArgs, factory: &dyn DriverFactory) -> Result<Spec> {
    check_name("--name", &args.name)?;
    if args.driver.is_empty() || !args.driver.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(Error::invalid("--driver must be a driver name (polyvisor drivers lists them)"));
    }
    if !factory.driver_names().contains(&args.driver.as_str()) {
        return Err(Error::invalid(format!("unknown driver [{}]", args.driver)));
    }
    let given: serde_json::Value = serde_json::from_str(&args.settings)
        .ok()
        .filter(serde_json::Value::is_object)
        .ok_or_else(|| Error::invalid("--settings must be a JSON object"))?;
    let mut settings = Settings::from_json(&given)?;
    settings.set("driver", args.driver.as_str());
    let caps = factory.capabilities(&settings, &OpenOptions::default()).await?;
    if !caps.create {
        return Err(Error::unsupported(format!(
            "CloudShell deployments with the {} driver (it cannot create VMs)",
            args.driver
        )));
    }
    if !caps.networking.supports(args.networking) {
        return Err(Error::unsupported(format!("{} networking with the {} driver", args.networking, args.driver)));
    }
    Ok(Spec {
        name: args.name.clone(),
        networking: args.networking,
        driver: args.driver.clone(),
        iso: caps.create,
        settings: given.to_string(),
    })
}

fn fill(t: &str, pairs: &[(&str, &str)]) -> String {
    let mut s = t.to_string();
    for (k, v) in pairs {
        s = s.replace(&format!("{{{{{k}}}}}"), v);
    }
    s
}

/// `src/drivermetadata.xml` for the networking type (spec §2.1).
pub fn driver_metadata(spec: &Spec) -> String {
    let class = spec.class_name();
    let net = match spec.networking {
        NetworkingType::L2 => {
            r#"      <Command DisplayName="Apply Connectivity Changes" Name="ApplyConnectivityChanges" Tags="allow_unreserved"/>
"#
        }
        NetworkingType::L3 => {
            r#"      <Command DisplayName="Prepare Connectivity" EnableCancellation="true" Name="PrepareSandboxInfra" Tags="allow_unreserved"/>
      <Command DisplayName="Cleanup Connectivity" EnableCancellation="true" Name="CleanupSandboxInfra" Tags="allow_unreserved"/>
"#
        }
    };
    format!(
        r#"<Driver Description="polyvisor cloud provider ({networking})" MainClass="driver.{class}" Name="{class}" Version="{version}" PythonVersion="3">
  <Layout>
    <Category Name="Connectivity">
      <Command DisplayName="Refresh IP" EnableCancellation="true" Name="remote_refresh_ip" Tags="remote_connectivity,allow_shared"/>
{net}    </Category>
    <Category Name="Console">
      <Command DisplayName="Console" Name="console" Tags="remote_app_management,allow_shared" Description="Console access details (VNC host/port/password or URL)"/>
    </Category>
    <Category Name="Hidden Commands">
      <Command DisplayName="Power Cycle" Name="PowerCycle" Tags="power"/>
      <Command DisplayName="Delete Instance" Name="DeleteInstance" Tags="remote_app_management,allow_shared"/>
      <Command DisplayName="Deploy" Name="Deploy" Tags="allow_unreserved"/>
      <Command DisplayName="Set App Security Groups" Name="SetAppSecurityGroups" Tags="allow_unreserved"/>
      <Command DisplayName="Get VmDetails" Name="GetVmDetails" Tags="allow_unreserved"/>
    </Category>
    <Category Name="Power">
      <Command DisplayName="Power On" Name="PowerOn" Tags="power"/>
      <Command DisplayName="Power Off" Name="PowerOff" Tags="power"/>
    </Category>
  </Layout>
</Driver>
"#,
        networking = spec.networking,
        version = env!("CARGO_PKG_VERSION"),
    )
}

/// Every file of the shell folder: (relative path, bytes).
pub fn files(spec: &Spec) -> Vec<(String, Vec<u8>)> {
    let version = env!("CARGO_PKG_VERSION");
    let networking = spec.networking.to_string();
    let class = spec.class_name();
    let driver_zip = format!("{class}.zip");
    // A YAML single-quoted scalar: a quote is written twice.
    let settings = spec.settings.replace('\'', "''");
    let vars: Vec<(&str, &str)> = vec![
        ("NAME", &spec.name),
        ("VERSION", version),
        ("NETWORKING", &networking),
        ("DRIVER", &spec.driver),
        ("DRIVER_SETTINGS", &settings),
        ("DRIVER_ZIP", &driver_zip),
        ("CLASS", &class),
    ];
    let methods = match spec.networking {
        NetworkingType::L2 => L2_METHODS,
        NetworkingType::L3 => L3_METHODS,
    };
    let mut driver_vars = vars.clone();
    driver_vars.push(("NETWORKING_METHODS", methods));
    let mut out = vec![
        ("TOSCA-Metadata/TOSCA.meta".to_string(), TOSCA_META.as_bytes().to_vec()),
        ("shell-definition.yaml".into(), fill(SHELL_DEFINITION, &vars).into_bytes()),
        ("shell-icon.png".into(), ICON.to_vec()),
        ("src/driver.py".into(), fill(DRIVER_PY, &driver_vars).into_bytes()),
        ("src/drivermetadata.xml".into(), driver_metadata(spec).into_bytes()),
        ("src/requirements.txt".into(), REQUIREMENTS.as_bytes().to_vec()),
        ("deployments/shell-icon.png".into(), ICON.to_vec()),
        (
            "deployments/polyvisor-clone-from-template.yaml".into(),
            fill(DEPLOYMENT_TEMPLATE, &[("PATH", PATH_TEMPLATE), ("VERSION", version)]).into_bytes(),
        ),
    ];
    if spec.iso {
        out.push((
            "deployments/polyvisor-from-iso.yaml".into(),
            fill(DEPLOYMENT_ISO, &[("PATH", PATH_ISO), ("VERSION", version)]).into_bytes(),
        ));
    }
    out
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::unavailable(format!("cannot write {}: {e}", path.display()))
}

fn zip_of(entries: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            z.start_file(name.as_str(), opts).map_err(|e| Error::internal("zip").with_source(e))?;
            z.write_all(data).map_err(|e| Error::internal("zip").with_source(e))?;
        }
        z.finish().map_err(|e| Error::internal("zip").with_source(e))?;
    }
    Ok(buf.into_inner())
}

/// Writes the folder and `dist/<name>.zip`; returns the zip's path.
pub fn write(spec: &Spec, out: &Path) -> Result<PathBuf> {
    let files = files(spec);
    for (rel, data) in &files {
        let p = out.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
        }
        std::fs::write(&p, data).map_err(|e| io_err(&p, e))?;
    }
    let under = |dir: &str| -> Vec<(String, Vec<u8>)> {
        files
            .iter()
            .filter_map(|(r, d)| r.strip_prefix(&format!("{dir}/")).map(|rest| (rest.to_string(), d.clone())))
            .collect()
    };
    let pick = |name: &str| files.iter().find(|(r, _)| r == name).cloned().expect("generated file");
    let package = vec![
        pick("TOSCA-Metadata/TOSCA.meta"),
        pick("shell-definition.yaml"),
        pick("shell-icon.png"),
        (format!("{}.zip", spec.class_name()), zip_of(&under("src"))?),
        ("Deployments.zip".to_string(), zip_of(&under("deployments"))?),
    ];
    let dist = out.join("dist");
    std::fs::create_dir_all(&dist).map_err(|e| io_err(&dist, e))?;
    let zip_path = dist.join(format!("{}.zip", spec.name));
    std::fs::write(&zip_path, zip_of(&package)?).map_err(|e| io_err(&zip_path, e))?;
    Ok(zip_path)
}

/// Runs `polyvisor cloudshell package`.
pub fn run(args: PackageArgs, factory: Arc<dyn DriverFactory>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("polyvisor cloudshell package: {e}");
            return ExitCode::from(1);
        }
    };
    let spec = match rt.block_on(resolve(&args, &*factory)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("polyvisor cloudshell package: {}", e.message());
            return ExitCode::from(2);
        }
    };
    match write(&spec, &args.out) {
        Ok(zip) => {
            println!("{}", zip.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("polyvisor cloudshell package: {}", e.message());
            ExitCode::from(1)
        }
    }
}
