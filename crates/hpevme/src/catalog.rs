//! Creates from the provisioning catalog (`POST /api/instances`): the `cloud`,
//! `instance_type`, `layout` and `plan` settings resolved through the API once per process
//! ([`resolve`]), the plan chosen by CPU and memory when none is configured ([`choose_plan`]),
//! virtual images (templates and ISOs) looked up per create ([`image`]) and the create body
//! ([`create_body`]).

use crate::api::Api;
use crate::config::Catalog;
use crate::error::VmeError;
use polyvisor_core::{Error, NicSpec, Result};
use serde_json::{json, Value};

/// A service plan offered for the configured layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Plan id.
    pub id: u64,
    /// Plan name.
    pub name: String,
    /// Cores (`maxCores`).
    pub cores: u64,
    /// Memory in MiB (`maxMemory` bytes / 2^20).
    pub memory_mb: u64,
}

/// The catalog settings resolved to ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Cloud (zone) id: `zoneId`.
    pub zone_id: u64,
    /// Group id: `instance.site.id`.
    pub site_id: u64,
    /// Instance type code: `instance.instanceType.code`.
    pub type_code: String,
    /// Layout id: `instance.layout.id`.
    pub layout_id: u64,
    /// The configured plan, if any.
    pub plan: Option<Plan>,
    /// Every plan offered for the cloud, layout and group (`/api/instances/service-plans`).
    pub plans: Vec<Plan>,
}

fn is_id(s: &str) -> Option<u64> {
    (!s.starts_with('0')).then(|| s.parse::<u64>().ok()).flatten()
}

fn str_of<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// Whether a catalog object is the one a setting names (by id, name or code).
fn names(obj: &Value, want: &str) -> bool {
    is_id(want).is_some_and(|n| obj.get("id").and_then(Value::as_u64) == Some(n))
        || str_of(obj, "name") == Some(want)
        || str_of(obj, "code") == Some(want)
}

fn list<'a>(v: &'a Value, k: &str) -> impl Iterator<Item = &'a Value> {
    v.get(k).and_then(Value::as_array).into_iter().flatten()
}

fn missing(key: &str, what: &str) -> Error {
    Error::invalid(format!("setting '{key}' names no {what} of HPE VM Essentials"))
}

/// A 404 while resolving a setting means the setting is wrong.
fn setting_err(e: VmeError, key: &str, what: &str) -> Error {
    match e {
        VmeError::NotFound(_) => missing(key, what),
        other => Error::from(other),
    }
}

fn plan_of(p: &Value) -> Option<Plan> {
    Some(Plan {
        id: p.get("id").and_then(Value::as_u64)?,
        name: str_of(p, "name").unwrap_or("").to_string(),
        cores: p.get("maxCores").and_then(Value::as_u64).unwrap_or(0),
        memory_mb: p.get("maxMemory").and_then(Value::as_u64).unwrap_or(0) / (1024 * 1024),
    })
}

/// Resolves the catalog settings (3–5 requests: cloud by id or name, instance type by id,
/// name or code, the instance type's layouts, the plans offered for that layout).
pub async fn resolve(api: &Api, c: &Catalog, site_id: u64) -> Result<Resolved> {
    // Cloud.
    let zone_id = match is_id(&c.cloud) {
        Some(n) => {
            let v = api.get(&format!("/api/zones/{n}"), &[]).await.map_err(|e| setting_err(e, "cloud", "cloud"))?;
            v.pointer("/zone/id").and_then(Value::as_u64).ok_or_else(|| missing("cloud", "cloud"))?
        }
        None => {
            let v = api.get("/api/zones", &[("name", c.cloud.clone())]).await?;
            let id = list(&v, "zones")
                .find(|z| str_of(z, "name") == Some(c.cloud.as_str()))
                .and_then(|z| z.get("id").and_then(Value::as_u64));
            id.ok_or_else(|| missing("cloud", "cloud"))?
        }
    };
    // Instance type (its code goes into the create).
    let itype = match is_id(&c.instance_type) {
        Some(n) => {
            let v = api
                .get(&format!("/api/instance-types/{n}"), &[])
                .await
                .map_err(|e| setting_err(e, "instance_type", "instance type"))?;
            v.get("instanceType").cloned()
        }
        None => {
            let mut found = None;
            for by in ["name", "code"] {
                let v = api.get("/api/instance-types", &[(by, c.instance_type.clone())]).await?;
                found = list(&v, "instanceTypes").find(|t| names(t, &c.instance_type)).cloned();
                if found.is_some() {
                    break;
                }
            }
            found
        }
    }
    .ok_or_else(|| missing("instance_type", "instance type"))?;
    let type_id = itype.get("id").and_then(Value::as_u64).ok_or_else(|| missing("instance_type", "instance type"))?;
    let type_code = str_of(&itype, "code")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::backend("the instance type has no code"))?
        .to_string();
    // Layout: one of the instance type's layouts.
    let v = api
        .get(&format!("/api/library/instance-types/{type_id}/layouts"), &[("max", "100".into())])
        .await
        .map_err(|e| setting_err(e, "instance_type", "instance type"))?;
    let layouts: Vec<&Value> =
        list(&v, "instanceTypeLayouts").filter(|l| l.get("creatable") != Some(&Value::Bool(false))).collect();
    let layout = match &c.layout {
        Some(want) => {
            layouts.iter().find(|l| names(l, want)).ok_or_else(|| missing("layout", "layout of the instance type"))?
        }
        None => match layouts.as_slice() {
            [one] => one,
            [] => return Err(Error::invalid("the instance type has no layout to provision with")),
            _ => {
                return Err(Error::invalid(format!(
                    "the instance type has {} layouts: set 'layout' (id or name)",
                    layouts.len()
                )))
            }
        },
    };
    let layout_id = layout.get("id").and_then(Value::as_u64).ok_or_else(|| missing("layout", "layout"))?;
    // Plans offered for that cloud, layout and group.
    let v = api
        .get(
            "/api/instances/service-plans",
            &[("zoneId", zone_id.to_string()), ("layoutId", layout_id.to_string()), ("siteId", site_id.to_string())],
        )
        .await?;
    let raw: Vec<&Value> = list(&v, "plans").collect();
    let plans: Vec<Plan> = raw.iter().filter_map(|p| plan_of(p)).collect();
    let plan = match &c.plan {
        Some(want) => Some(
            raw.iter()
                .find(|p| names(p, want))
                .and_then(|p| plan_of(p))
                .ok_or_else(|| missing("plan", "service plan offered for the layout"))?,
        ),
        None => None,
    };
    Ok(Resolved { zone_id, site_id, type_code, layout_id, plan, plans })
}

/// The plan of a create: the configured one (refused when smaller than asked), else the
/// smallest offered plan with at least the asked cores and memory (fewest cores, then least
/// memory); no request.
pub fn choose_plan(r: &Resolved, cpus: Option<u32>, memory_mb: Option<u64>) -> Result<Plan> {
    let fits = |p: &Plan| cpus.is_none_or(|c| p.cores >= u64::from(c)) && memory_mb.is_none_or(|m| p.memory_mb >= m);
    if let Some(p) = &r.plan {
        return if fits(p) {
            Ok(p.clone())
        } else {
            Err(Error::invalid(format!(
                "the configured plan '{}' ({} cores, {} MiB) is smaller than the create asks for",
                p.name, p.cores, p.memory_mb
            )))
        };
    }
    r.plans.iter().filter(|p| fits(p)).min_by_key(|p| (p.cores, p.memory_mb, p.id)).cloned().ok_or_else(|| {
        Error::invalid(format!(
            "no service plan offered for the layout has {} cores and {} MiB",
            cpus.map_or("any".into(), |c| c.to_string()),
            memory_mb.map_or("any".into(), |m| m.to_string())
        ))
    })
}

/// A virtual image by id or name (1 request); `iso` says whether it must be (or must not be)
/// an ISO. Returns its id.
pub async fn image(api: &Api, want: &str, iso: bool) -> Result<u64> {
    let what = if iso { "ISO" } else { "template image" };
    let img = match is_id(want) {
        Some(n) => match api.get(&format!("/api/virtual-images/{n}"), &[]).await {
            Ok(v) => v.get("virtualImage").cloned(),
            Err(VmeError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        },
        None => {
            let v = api.get("/api/virtual-images", &[("name", want.to_string())]).await?;
            let found = list(&v, "virtualImages").find(|i| str_of(i, "name") == Some(want)).cloned();
            found
        }
    };
    let shown: String = want.chars().take(60).flat_map(char::escape_default).collect();
    let img = img.ok_or_else(|| Error::not_found(format!("{what} '{shown}' (no such virtual image)")))?;
    if (str_of(&img, "imageType") == Some("iso")) != iso {
        return Err(Error::invalid(format!("virtual image '{shown}' is {}an ISO", if iso { "not " } else { "" })));
    }
    img.get("id").and_then(Value::as_u64).ok_or_else(|| Error::backend("virtual image without id"))
}

/// The NICs of a catalog create as `networkInterfaces`: each NIC's backend `network` (id or
/// name) and/or `vlan` matched among the cloud's networks (`GET /api/networks?zoneId=`, one
/// request). `None` (no request) when no NIC names a network or VLAN: the layout's defaults.
/// A NIC's MAC cannot be set through the API; the appliance assigns it.
pub async fn interfaces(api: &Api, zone_id: u64, nics: &[NicSpec]) -> Result<Option<Value>> {
    let named = nics.iter().filter(|n| n.network.is_some() || n.vlan.is_some()).count();
    if named == 0 {
        return Ok(None);
    }
    if named != nics.len() {
        return Err(Error::invalid("either every NIC names a network or VLAN, or none does"));
    }
    let v = api.get("/api/networks", &[("zoneId", zone_id.to_string())]).await?;
    let nets: Vec<&Value> = list(&v, "networks").collect();
    let mut out = Vec::new();
    for (i, nic) in nics.iter().enumerate() {
        let found = nets.iter().find(|n| {
            nic.network.as_deref().is_none_or(|want| names(n, want) || str_of(n, "displayName") == Some(want))
                && nic.vlan.is_none_or(|vl| n.get("vlanId").and_then(Value::as_u64) == Some(u64::from(vl)))
        });
        let id = found.and_then(|n| n.get("id").and_then(Value::as_u64)).ok_or_else(|| {
            let shown: String =
                nic.network.as_deref().unwrap_or("").chars().take(60).flat_map(char::escape_default).collect();
            Error::invalid(format!(
                "NIC {i}: no network of the cloud{}{}",
                if shown.is_empty() { String::new() } else { format!(" named '{shown}'") },
                nic.vlan.map(|v| format!(" with VLAN {v}")).unwrap_or_default()
            ))
        })?;
        out.push(json!({"network": {"id": format!("network-{id}")}, "ipMode": "dhcp"}));
    }
    Ok(Some(Value::Array(out)))
}

/// The `POST /api/instances` body.
pub fn create_body(
    r: &Resolved,
    plan: &Plan,
    name: &str,
    tags: Value,
    image_id: Option<u64>,
    disk_gb: Option<u64>,
    interfaces: Option<Value>,
) -> Value {
    let mut config = json!({});
    if let Some(i) = image_id {
        config["imageId"] = json!(i);
    }
    let mut body = json!({
        "zoneId": r.zone_id,
        "instance": {
            "name": name,
            "hostName": name,
            "site": {"id": r.site_id},
            "instanceType": {"code": r.type_code},
            "layout": {"id": r.layout_id},
            "plan": {"id": plan.id},
        },
        "config": config,
        "tags": tags,
    });
    if let Some(gb) = disk_gb {
        body["volumes"] = json!([{"id": -1, "rootVolume": true, "name": "root", "size": gb}]);
    }
    if let Some(nics) = interfaces {
        body["networkInterfaces"] = nics;
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: u64, cores: u64, mem: u64) -> Plan {
        Plan { id, name: format!("p{id}"), cores, memory_mb: mem }
    }

    #[test]
    fn the_plan_is_the_smallest_that_fits_or_the_configured_one() {
        let r = Resolved {
            zone_id: 5,
            site_id: 1,
            type_code: "mvm".into(),
            layout_id: 60,
            plan: None,
            plans: vec![p(72, 4, 8192), p(70, 1, 1024), p(71, 2, 4096)],
        };
        assert_eq!(choose_plan(&r, None, None).unwrap().id, 70);
        assert_eq!(choose_plan(&r, Some(1), Some(1024)).unwrap().id, 70);
        assert_eq!(choose_plan(&r, Some(2), Some(1024)).unwrap().id, 71);
        assert_eq!(choose_plan(&r, Some(1), Some(5000)).unwrap().id, 72);
        assert_eq!(choose_plan(&r, Some(8), None).unwrap_err().kind(), polyvisor_core::ErrorKind::InvalidInput);
        let fixed = Resolved { plan: Some(p(71, 2, 4096)), ..r.clone() };
        assert_eq!(choose_plan(&fixed, Some(1), None).unwrap().id, 71);
        assert_eq!(choose_plan(&fixed, Some(4), None).unwrap_err().kind(), polyvisor_core::ErrorKind::InvalidInput);
        let body = create_body(&r, &p(70, 1, 1024), "vm-1", json!([]), Some(80), Some(20), None);
        assert_eq!(body["zoneId"], 5);
        assert_eq!(body["instance"]["instanceType"]["code"], "mvm");
        assert_eq!(body["instance"]["plan"]["id"], 70);
        assert_eq!(body["config"]["imageId"], 80);
        assert_eq!(body["volumes"][0]["size"], 20);
    }
}
