//! CloudShell request and response shapes (spec §4, §5), parsed leniently the way
//! cp-core does: booleans as JSON booleans or strings, `vlanId` as a string or a list,
//! `{attributeName, attributeValue}` lists as maps, unknown fields ignored.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A boolean sent as `true` or `"True"`/`"false"` (case-insensitive); anything else is `None`.
pub fn lenient_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Some(true),
            "false" | "no" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn de_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(lenient_bool(&v).unwrap_or(false))
}

/// `[{attributeName, attributeValue}]` (or `[{name, value}]`) as an ordered map; `null` = empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attrs(pub BTreeMap<String, String>);

impl Attrs {
    /// The value of `name`, matched like cp-core 2.x: `key == name` or `key` ends with
    /// `"." + name` (2G namespacing). Case-sensitive.
    pub fn get(&self, name: &str) -> Option<&str> {
        let dotted = format!(".{name}");
        self.0.iter().find(|(k, _)| *k == name || k.ends_with(&dotted)).map(|(_, v)| v.as_str())
    }

    /// Like [`Attrs::get`], empty values (after trimming) counting as absent.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// From a JSON object of strings (context `attributes`).
    pub fn from_object(v: &Value) -> Attrs {
        let mut m = BTreeMap::new();
        if let Some(o) = v.as_object() {
            for (k, v) in o {
                m.insert(k.clone(), value_text(v));
            }
        }
        Attrs(m)
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl<'de> Deserialize<'de> for Attrs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let mut m = BTreeMap::new();
        match v {
            Value::Null => {}
            Value::Array(items) => {
                for it in items {
                    let name = it.get("attributeName").or_else(|| it.get("name"));
                    let value = it.get("attributeValue").or_else(|| it.get("value"));
                    match name.and_then(Value::as_str) {
                        Some(n) => {
                            m.insert(n.to_string(), value.map(value_text).unwrap_or_default());
                        }
                        None => return Err(serde::de::Error::custom("attribute without attributeName")),
                    }
                }
            }
            Value::Object(_) => return Ok(Attrs::from_object(&v)),
            _ => return Err(serde::de::Error::custom("attributes must be a list")),
        }
        Ok(Attrs(m))
    }
}

/// `{"driverRequest": {"actions": [...]}}`; actions stay raw until dispatched, so one bad
/// action fails alone (its `actionId` echoed).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriverRequest {
    /// The envelope.
    pub driver_request: Actions,
}

/// The action list.
#[derive(Debug, Deserialize)]
pub struct Actions {
    /// Raw actions.
    #[serde(default)]
    pub actions: Vec<Value>,
}

/// The `actionId` and `type` every action carries.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Head {
    /// Echoed in the result.
    #[serde(default)]
    pub action_id: String,
    /// `deployApp`, `setVlan`, ...
    #[serde(default, rename = "type")]
    pub kind: String,
}

/// `deployApp`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployApp {
    /// Its parameters.
    pub action_params: DeployAppParams,
}

/// `deployAppParams`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployAppParams {
    /// The app's name in the sandbox.
    #[serde(default)]
    pub app_name: String,
    /// Deployment path and its attributes.
    pub deployment: Deployment,
    /// App resource attributes (`User`, `Password` decrypted by the shim, `Public IP`).
    #[serde(default)]
    pub app_resource: Option<AppResource>,
}

/// `deployAppDeploymentInfo`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// `"<Shell Name>.<Deployment Path Name>"` (or a bare name).
    #[serde(default)]
    pub deployment_path: String,
    /// Deployment path attributes.
    #[serde(default)]
    pub attributes: Attrs,
}

/// `appResourceInfo`.
#[derive(Debug, Deserialize)]
pub struct AppResource {
    /// Attributes.
    #[serde(default)]
    pub attributes: Attrs,
}

/// `connectSubnet`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectSubnet {
    /// Its parameters.
    pub action_params: ConnectToSubnetParams,
}

/// `connectToSubnetParams`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectToSubnetParams {
    /// The id our `prepareSubnet` returned.
    #[serde(default)]
    pub subnet_id: String,
    /// CIDR of the subnet.
    #[serde(default)]
    pub cidr: Option<String>,
    /// Requested NIC index (`"1"` = eth1).
    #[serde(default)]
    pub vnic_name: Option<Value>,
    /// Public address wanted.
    #[serde(default, deserialize_with = "de_bool")]
    pub is_public: bool,
}

impl ConnectToSubnetParams {
    /// `int(vnicName or 0)`, as cp-core orders connect actions.
    pub fn vnic_index(&self) -> i64 {
        match &self.vnic_name {
            Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
            Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
            _ => 0,
        }
    }
}

/// `prepareCloudInfra`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareCloudInfra {
    /// Its parameters.
    pub action_params: PrepareCloudInfraParams,
}

/// `prepareCloudInfraParams`.
#[derive(Debug, Deserialize)]
pub struct PrepareCloudInfraParams {
    /// The sandbox CIDR.
    #[serde(default)]
    pub cidr: String,
}

/// `prepareSubnet`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareSubnet {
    /// Its parameters.
    pub action_params: PrepareSubnetParams,
}

/// `prepareSubnetParams`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareSubnetParams {
    /// Subnet CIDR.
    #[serde(default)]
    pub cidr: String,
    /// Alias inside the sandbox (`DefaultSubnet`).
    #[serde(default)]
    pub alias: Option<String>,
    /// Public subnet.
    #[serde(default, deserialize_with = "de_bool")]
    pub is_public: bool,
}

/// `setVlan` / `removeVlan`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VlanAction {
    /// VLAN parameters.
    pub connection_params: SetVlanParameter,
    /// `Interface` (removeVlan: the MAC our setVlan returned).
    #[serde(default)]
    pub connector_attributes: Attrs,
    /// `VM_UUID`, `Vnic Name`, `Reservation Id`.
    #[serde(default)]
    pub custom_action_attributes: Attrs,
}

/// `setVlanParameter`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetVlanParameter {
    /// `"4"`, `"2-4,10"` or `["2"]`.
    #[serde(default)]
    pub vlan_id: Value,
    /// `Access` or `Trunk`.
    #[serde(default)]
    pub mode: Option<String>,
    /// VLAN service attributes.
    #[serde(default)]
    pub vlan_service_attributes: Attrs,
}

/// Expands a `vlanId` (string with ranges, or a list of them) into VLAN ids.
pub fn vlan_ids(v: &Value) -> Result<Vec<u32>, String> {
    let parts: Vec<String> = match v {
        Value::String(s) => vec![s.clone()],
        Value::Number(n) => vec![n.to_string()],
        Value::Array(a) => a.iter().map(value_text).collect(),
        _ => return Err("vlanId is missing".into()),
    };
    let mut out = Vec::new();
    for part in parts.iter().flat_map(|p| p.split(',')) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let bad = || format!("invalid vlanId [{}]", part.chars().take(40).collect::<String>());
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
                if a > b || b - a > 4096 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err("vlanId is empty".into());
    }
    Ok(out)
}

/// `deployedAppJson` / `deployed_app_json`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployedApp {
    /// App (resource) name.
    #[serde(default)]
    pub name: String,
    /// Current address.
    #[serde(default)]
    pub address: Option<String>,
    /// VM details CloudShell stored from our Deploy answer.
    #[serde(default)]
    pub vmdetails: Option<VmDetailsRef>,
}

/// `vmdetails`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmDetailsRef {
    /// Our `vmUuid`.
    #[serde(default)]
    pub uid: String,
    /// Our `deployedAppAdditionalData`, as `[{name, value}]`.
    #[serde(default)]
    pub vm_custom_params: Attrs,
}

/// `GetVmDetails` request: `{"items": [...]}`.
#[derive(Debug, Deserialize)]
pub struct VmDetailsRequest {
    /// One per app.
    #[serde(default)]
    pub items: Vec<VmDetailsItem>,
}

/// One `GetVmDetails` item.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmDetailsItem {
    /// The deployed app (object here, not a string).
    #[serde(default)]
    pub deployed_app_json: Value,
}

/// One `SetAppSecurityGroups` entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppSecurityGroups {
    /// The app.
    pub deployed_app: DeployedApp,
    /// Per-subnet rules.
    #[serde(default)]
    pub security_groups_configurations: Vec<SecurityGroupConfig>,
}

/// Rules for one subnet.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupConfig {
    /// Our subnet id.
    #[serde(default)]
    pub subnet_id: String,
    /// Inbound rules.
    #[serde(default)]
    pub rules: Vec<RuleIn>,
}

/// One rule as sent (ports as strings or numbers).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleIn {
    /// First port.
    #[serde(default)]
    pub from_port: Value,
    /// Last port.
    #[serde(default)]
    pub to_port: Value,
    /// `TCP`, `UDP`, ...
    #[serde(default)]
    pub protocol: Option<String>,
    /// Source address/CIDR.
    #[serde(default)]
    pub source: Option<String>,
}

/// Parses an optional port value (`"22"`, `22`, `""`, `null`).
pub fn port(v: &Value) -> Result<Option<u16>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()).map(Some).ok_or("invalid port".into()),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => s.trim().parse::<u16>().map(Some).map_err(|_| "invalid port".into()),
        _ => Err("invalid port".into()),
    }
}

// ---------------------------------------------------------------- responses

/// One entry of `vmInstanceData` / `networkData`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    /// Label.
    pub key: String,
    /// Value.
    pub value: String,
    /// Hidden from the UI.
    pub hidden: bool,
}

impl KeyValue {
    /// A visible entry.
    pub fn shown(key: &str, value: impl Into<String>) -> Self {
        KeyValue { key: key.into(), value: value.into(), hidden: false }
    }
}

/// One NIC in `vmNetworkData`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmNetwork {
    /// NIC id (its MAC).
    pub interface_id: String,
    /// Network id.
    pub network_id: String,
    /// Default NIC in the UI.
    pub is_primary: bool,
    /// Network existed before the sandbox.
    pub is_predefined: bool,
    /// Details.
    pub network_data: Vec<KeyValue>,
    /// Private address (mandatory on the primary NIC).
    pub private_ip_address: String,
    /// Public address.
    pub public_ip_address: String,
}

/// `VmDetailsData`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmDetailsData {
    /// App name (must be set in GetVmDetails).
    pub app_name: String,
    /// Error for this item.
    pub error_message: String,
    /// Instance details.
    pub vm_instance_data: Vec<KeyValue>,
    /// NICs.
    pub vm_network_data: Vec<VmNetwork>,
}

/// `{attributeName, attributeValue}` in results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttrOut {
    /// Name.
    pub attribute_name: String,
    /// Value.
    pub attribute_value: String,
}

/// One `actionResults` entry: the common fields plus the type's extras.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionResult {
    /// `DeployApp`, `ConnectToSubnet`, `PrepareNetwork`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Echo of the request's.
    pub action_id: String,
    /// Outcome.
    pub success: bool,
    /// Info text.
    pub info_message: String,
    /// Error text (empty on success).
    pub error_message: String,
    /// Type-specific fields (`vmUuid`, `subnetId`, `updatedInterface`, ...).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

impl ActionResult {
    /// A success.
    pub fn ok(kind: &str, action_id: &str, info: impl Into<String>) -> Self {
        ActionResult {
            kind: kind.into(),
            action_id: action_id.into(),
            success: true,
            info_message: info.into(),
            error_message: String::new(),
            extra: serde_json::Map::new(),
        }
    }

    /// A failure.
    pub fn failed(kind: &str, action_id: &str, error: impl Into<String>) -> Self {
        ActionResult {
            success: false,
            info_message: String::new(),
            error_message: error.into(),
            ..Self::ok(kind, action_id, "")
        }
    }

    /// Adds a type-specific field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }
}

/// The DriverResponse JSON text for `results`.
pub fn driver_response(results: &[ActionResult]) -> String {
    serde_json::json!({ "driverResponse": { "actionResults": results } }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn booleans_and_vlan_ids_are_lenient() {
        assert_eq!(lenient_bool(&json!("True")), Some(true));
        assert_eq!(lenient_bool(&json!("false")), Some(false));
        assert_eq!(lenient_bool(&json!(true)), Some(true));
        assert_eq!(lenient_bool(&json!("maybe")), None);
        assert_eq!(vlan_ids(&json!("4")).unwrap(), [4]);
        assert_eq!(vlan_ids(&json!(["2"])).unwrap(), [2]);
        assert_eq!(vlan_ids(&json!("2-4,10")).unwrap(), [2, 3, 4, 10]);
        assert!(vlan_ids(&json!("x")).is_err());
        assert!(vlan_ids(&json!("9-3")).is_err());
        assert!(vlan_ids(&json!(null)).is_err());
    }

    #[test]
    fn attributes_match_bare_and_namespaced_names() {
        let a: Attrs = serde_json::from_value(json!([
            {"attributeName": "Shell.Path.Template", "attributeValue": "9000", "type": "attribute"},
            {"attributeName": "Wait for IP", "attributeValue": "True"},
            {"name": "Password", "value": ""}
        ]))
        .unwrap();
        assert_eq!(a.get("Template"), Some("9000"));
        assert_eq!(a.get("Wait for IP"), Some("True"));
        assert_eq!(a.non_empty("Password"), None);
        assert_eq!(a.get("plate"), None);
        let none: Attrs = serde_json::from_value(json!(null)).unwrap();
        assert!(none.0.is_empty());
    }

    #[test]
    fn results_have_the_exact_shape() {
        let r = ActionResult::ok("PrepareSubnet", "a1", "").with("subnetId", "subnet-1");
        let v: Value = serde_json::from_str(&driver_response(&[r])).unwrap();
        assert_eq!(
            v,
            json!({"driverResponse": {"actionResults": [{"type": "PrepareSubnet", "actionId": "a1", "success": true,
                "infoMessage": "", "errorMessage": "", "subnetId": "subnet-1"}]}})
        );
    }
}
