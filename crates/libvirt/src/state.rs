//! libvirt domain states (`virDomainState` + reason) mapped onto the six power states.

use polyvisor_core::PowerState;

/// `VIR_DOMAIN_PAUSED_STARTING_UP`: paused while the domain is being started.
const PAUSED_STARTING_UP: i32 = 11;
/// `VIR_DOMAIN_SHUTOFF_SAVED`: stopped with a managed save image (resumes on start).
const SHUTOFF_SAVED: i32 = 5;

/// The normalised state and libvirt's own name for `(state, reason)` from `virDomainGetState`.
pub fn map_state(state: u32, reason: i32) -> (PowerState, &'static str) {
    match state {
        1 => (PowerState::PoweredOn, "running"),
        2 => (PowerState::PoweredOn, "blocked"),
        3 if reason == PAUSED_STARTING_UP => (PowerState::PoweringOn, "paused"),
        3 => (PowerState::Suspended, "paused"),
        4 => (PowerState::PoweringOff, "shutdown"),
        5 if reason == SHUTOFF_SAVED => (PowerState::Suspended, "shutoff"),
        5 => (PowerState::PoweredOff, "shutoff"),
        6 => (PowerState::PoweredOff, "crashed"),
        7 => (PowerState::Suspended, "pmsuspended"),
        _ => (PowerState::PoweredOff, "nostate"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_libvirt_state_maps() {
        assert_eq!(map_state(1, 1), (PowerState::PoweredOn, "running"));
        assert_eq!(map_state(2, 0), (PowerState::PoweredOn, "blocked"));
        assert_eq!(map_state(3, 1), (PowerState::Suspended, "paused"));
        assert_eq!(map_state(3, 11), (PowerState::PoweringOn, "paused"));
        assert_eq!(map_state(4, 1), (PowerState::PoweringOff, "shutdown"));
        assert_eq!(map_state(5, 1), (PowerState::PoweredOff, "shutoff"));
        assert_eq!(map_state(5, 5), (PowerState::Suspended, "shutoff"));
        assert_eq!(map_state(6, 0), (PowerState::PoweredOff, "crashed"));
        assert_eq!(map_state(7, 0), (PowerState::Suspended, "pmsuspended"));
        assert_eq!(map_state(0, 0), (PowerState::PoweredOff, "nostate"));
        assert_eq!(map_state(99, 0), (PowerState::PoweredOff, "nostate"));
    }
}
