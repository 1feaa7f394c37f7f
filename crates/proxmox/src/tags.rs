//! What polyvisor stores on a VM, as Proxmox tags (visible in `cluster/resources`, so a
//! listing needs no extra request): the template flag and the platform key.
//!
//! - `polyvisor-template`: the guest is a polyvisor (flag-mode) template.
//! - `pvkey-<hex>`: the platform key (CloudStack internal name), hex of its UTF-8 bytes,
//!   because tags are lower-case `[a-z0-9_][a-z0-9_+.-]*` and keys are case-sensitive.

/// The template flag tag.
pub const TEMPLATE_TAG: &str = "polyvisor-template";
const KEY_PREFIX: &str = "pvkey-";

/// Splits PVE's tag string (`;`, `,` or space separated).
pub fn split(tags: &str) -> Vec<String> {
    tags.split([';', ',', ' ']).map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect()
}

/// Joins tags as PVE writes them.
pub fn join(tags: &[String]) -> String {
    tags.join(";")
}

/// Whether the tag string carries the template flag.
pub fn has_template_flag(tags: &str) -> bool {
    split(tags).iter().any(|t| t.eq_ignore_ascii_case(TEMPLATE_TAG))
}

/// The tag for a platform key.
pub fn key_tag(key: &str) -> String {
    let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{KEY_PREFIX}{hex}")
}

/// The platform key stored in the tag string, if any.
pub fn key_of(tags: &str) -> Option<String> {
    split(tags).iter().find_map(|t| {
        let hex = t.to_ascii_lowercase().strip_prefix(KEY_PREFIX)?.to_string();
        if hex.len() % 2 != 0 || hex.is_empty() {
            return None;
        }
        let bytes: Option<Vec<u8>> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect();
        String::from_utf8(bytes?).ok()
    })
}

/// The user's tags without any polyvisor marker (what a clone keeps of its source's tags).
pub fn without_markers(tags: &str) -> Vec<String> {
    split(tags)
        .into_iter()
        .filter(|t| !t.eq_ignore_ascii_case(TEMPLATE_TAG) && !t.to_ascii_lowercase().starts_with(KEY_PREFIX))
        .collect()
}

/// Whether the tag string carries any polyvisor marker.
pub fn has_markers(tags: &str) -> bool {
    split(tags).len() != without_markers(tags).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_valid_tags() {
        for key in ["i-2-45-VM", "VM_ä", "x"] {
            let tag = key_tag(key);
            assert!(tag.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'), "{tag}");
            assert_eq!(key_of(&format!("a;{tag},b")).as_deref(), Some(key));
        }
        assert_eq!(key_of("pvkey-zz;pvkey-6"), None);
        assert!(has_template_flag("web;polyvisor-template"));
        assert!(!has_template_flag("web"));
        assert_eq!(without_markers("a;polyvisor-template;pvkey-78;b"), ["a", "b"]);
        assert!(has_markers("pvkey-78") && !has_markers("a b"));
    }
}
