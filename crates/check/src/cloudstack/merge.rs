//! The management server's merge of a `prepare` patch into the VM object (spec §4.2):
//! objects merge recursively, `null` sets null, arrays of objects that all carry a
//! `"uuid"` (on both sides) merge element-wise by uuid, anything else replaces.

use serde_json::Value;

/// Merges `patch` into `base` in place.
pub fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, pv) in p {
                match b.get_mut(k) {
                    Some(bv) if bv.is_object() && pv.is_object() => merge(bv, pv),
                    Some(bv) if bv.is_array() && pv.is_array() => merge_arrays(bv, pv),
                    _ => {
                        b.insert(k.clone(), pv.clone());
                    }
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

fn uuid_of(v: &Value) -> Option<&str> {
    v.as_object()?.get("uuid")?.as_str()
}

fn merge_arrays(base: &mut Value, patch: &Value) {
    let (Some(b), Some(p)) = (base.as_array_mut(), patch.as_array()) else { return };
    let all_uuid = b.iter().chain(p.iter()).all(|e| uuid_of(e).is_some());
    if !all_uuid {
        *b = p.clone();
        return;
    }
    for pe in p {
        let id = uuid_of(pe).map(str::to_owned);
        match b.iter_mut().find(|be| uuid_of(be).map(str::to_owned) == id) {
            Some(be) => merge(be, pe),
            None => b.push(pe.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_details_and_nics_by_uuid() {
        let mut vm = json!({"details": {"deployvm": "true"}, "vncPassword": "x",
            "nics": [{"uuid": "n1", "mac": "02:00:00:00:00:01", "ip": "10.0.0.2"}]});
        merge(
            &mut vm,
            &json!({"details": {"proxmox_vmid": "103"},
            "nics": [{"uuid": "n1", "mac": "52:54:00:ab:cd:ef"}, {"uuid": "n2"}]}),
        );
        assert_eq!(vm["details"], json!({"deployvm": "true", "proxmox_vmid": "103"}));
        assert_eq!(vm["nics"][0], json!({"uuid": "n1", "mac": "52:54:00:ab:cd:ef", "ip": "10.0.0.2"}));
        assert_eq!(vm["nics"].as_array().map(Vec::len), Some(2));
        assert_eq!(vm["vncPassword"], "x");
    }

    #[test]
    fn arrays_without_uuids_replace_and_null_sets_null() {
        let mut v = json!({"a": [1, 2], "b": "x"});
        merge(&mut v, &json!({"a": [3], "b": null}));
        assert_eq!(v, json!({"a": [3], "b": null}));
    }
}
