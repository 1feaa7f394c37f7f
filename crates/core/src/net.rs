//! Address helpers shared by drivers: MAC normalisation and IPv4 filtering/ordering.

/// Normalises a MAC address to upper-case, colon-separated form (`BC:24:11:AA:BB:CC`).
/// Accepts `-`, `:` or no separators. Returns `None` for anything that is not 6 octets.
pub fn normalize_mac(raw: &str) -> Option<String> {
    let hex: String = raw.chars().filter(|c| !matches!(c, ':' | '-' | '.')).collect();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let up = hex.to_ascii_uppercase();
    let parts: Vec<&str> = (0..6).map(|i| &up[i * 2..i * 2 + 2]).collect();
    Some(parts.join(":"))
}

/// Whether an IPv4 address is worth reporting (valid, not loopback, not unspecified).
pub fn is_reportable_ipv4(ip: &str) -> bool {
    match ip.parse::<std::net::Ipv4Addr>() {
        Ok(a) => !a.is_loopback() && !a.is_unspecified(),
        Err(_) => false,
    }
}

/// Whether an IPv6 address is worth reporting (valid, not loopback, not unspecified).
pub fn is_reportable_ipv6(ip: &str) -> bool {
    match ip.parse::<std::net::Ipv6Addr>() {
        Ok(a) => !a.is_loopback() && !a.is_unspecified(),
        Err(_) => false,
    }
}

/// Filters non-reportable addresses and moves link-local (`169.254.*`) ones last,
/// keeping the order otherwise.
pub fn order_ipv4(ips: Vec<String>) -> Vec<String> {
    let (mut normal, link_local): (Vec<String>, Vec<String>) =
        ips.into_iter().filter(|ip| is_reportable_ipv4(ip)).partition(|ip| !ip.starts_with("169.254."));
    normal.extend(link_local);
    normal
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn macs_normalise() {
        assert_eq!(normalize_mac("bc:24:11:aa:bb:cc").as_deref(), Some("BC:24:11:AA:BB:CC"));
        assert_eq!(normalize_mac("BC-24-11-AA-BB-CC").as_deref(), Some("BC:24:11:AA:BB:CC"));
        assert_eq!(normalize_mac("bc2411aabbcc").as_deref(), Some("BC:24:11:AA:BB:CC"));
        assert_eq!(normalize_mac("bc:24:11:aa:bb"), None);
        assert_eq!(normalize_mac("zz:24:11:aa:bb:cc"), None);
    }

    #[test]
    fn ipv4_ordering_drops_loopback_and_demotes_link_local() {
        let v = order_ipv4(vec!["127.0.0.1".into(), "169.254.3.4".into(), "10.1.1.1".into(), "junk".into()]);
        assert_eq!(v, ["10.1.1.1", "169.254.3.4"]);
    }

    proptest! {
        #[test]
        fn normalized_macs_are_canonical(bytes in proptest::array::uniform6(any::<u8>())) {
            let raw = bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join("-");
            let n = normalize_mac(&raw).unwrap();
            prop_assert_eq!(n.len(), 17);
            prop_assert_eq!(normalize_mac(&n).unwrap(), n.clone());
            prop_assert!(n.chars().all(|c| c == ':' || c.is_ascii_digit() || c.is_ascii_uppercase()));
        }
    }
}
