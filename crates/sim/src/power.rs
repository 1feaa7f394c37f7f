//! Power-state transitions as pure functions of (stored state, deadline, now): nothing
//! runs in the background; every read evaluates where a transition has got to.

use polyvisor_core::{PowerAction, PowerState};

/// Durations that drive transitions and tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Duration of an asynchronous task (clone, snapshot, graceful shutdown, ...), ms.
    pub task_ms: i64,
    /// Duration of a boot (powering_on → powered_on, IPv4 appears), ms.
    pub boot_ms: i64,
}

/// Default task duration (ms) when neither settings, env nor the database set one.
pub const DEFAULT_TASK_MS: i64 = 1500;
/// Default boot duration (ms).
pub const DEFAULT_BOOT_MS: i64 = 3000;

/// Where a transitional state ends up.
pub(crate) fn settled(state: PowerState) -> PowerState {
    match state {
        PowerState::PoweringOn => PowerState::PoweredOn,
        PowerState::PoweringOff => PowerState::PoweredOff,
        PowerState::Suspending => PowerState::Suspended,
        s => s,
    }
}

/// The state a guest is in now, given its stored state and the transition deadline.
pub(crate) fn effective(stored: PowerState, until_ms: i64, now_ms: i64) -> PowerState {
    if now_ms < until_ms {
        stored
    } else {
        settled(stored)
    }
}

/// The platform-style raw state name (libvirt/Proxmox vocabulary).
pub(crate) fn raw_name(state: PowerState) -> &'static str {
    match state {
        PowerState::PoweredOn => "running",
        PowerState::PoweredOff => "stopped",
        PowerState::PoweringOn => "starting",
        PowerState::PoweringOff => "stopping",
        PowerState::Suspended => "suspended",
        PowerState::Suspending => "suspending",
    }
}

/// Parses a stored state name; unknown text reads as powered off.
pub(crate) fn parse(s: &str) -> PowerState {
    match s {
        "powered_on" => PowerState::PoweredOn,
        "powering_on" => PowerState::PoweringOn,
        "powering_off" => PowerState::PoweringOff,
        "suspended" => PowerState::Suspended,
        "suspending" => PowerState::Suspending,
        _ => PowerState::PoweredOff,
    }
}

/// What a power action does to a guest in a given state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Already there (or on the way): nothing changes.
    Noop,
    /// Enter `state` for `ms` milliseconds (then it settles); `ms == 0` settles at once.
    Enter {
        /// The (possibly transitional) state to enter.
        state: PowerState,
        /// How long the transition takes.
        ms: i64,
    },
    /// Not possible in this state; the text completes "guest [X] ...".
    Refuse(&'static str),
}

/// The plan for `action` on a guest whose current state is `now`.
pub(crate) fn plan(action: PowerAction, now: PowerState, is_template: bool, t: Timing) -> Plan {
    use PowerState::*;
    let off = matches!(now, PoweredOff | PoweringOff);
    let paused = matches!(now, Suspended | Suspending);
    if is_template {
        return match action {
            PowerAction::Stop | PowerAction::Shutdown => Plan::Noop,
            _ => Plan::Refuse("is a template and cannot be started; convert it to a VM or clone it"),
        };
    }
    match action {
        PowerAction::Start | PowerAction::Resume if paused => Plan::Enter { state: PoweringOn, ms: t.task_ms },
        PowerAction::Start if off => Plan::Enter { state: PoweringOn, ms: t.boot_ms },
        PowerAction::Start => Plan::Noop,
        PowerAction::Resume if off => Plan::Refuse("is powered off, not suspended; start it instead"),
        PowerAction::Resume => Plan::Noop,
        PowerAction::Stop if now == PoweredOff => Plan::Noop,
        PowerAction::Stop => Plan::Enter { state: PoweredOff, ms: 0 },
        PowerAction::Shutdown if off => Plan::Noop,
        PowerAction::Shutdown if paused => Plan::Enter { state: PoweredOff, ms: 0 },
        PowerAction::Shutdown => Plan::Enter { state: PoweringOff, ms: t.task_ms },
        PowerAction::Reset | PowerAction::Reboot if off => Plan::Refuse("is not running"),
        PowerAction::Reset => Plan::Enter { state: PoweringOn, ms: t.boot_ms },
        PowerAction::Reboot => Plan::Enter { state: PoweringOn, ms: t.task_ms + t.boot_ms },
        PowerAction::Suspend if off => Plan::Refuse("is powered off and cannot be suspended"),
        PowerAction::Suspend if paused => Plan::Noop,
        PowerAction::Suspend => Plan::Enter { state: Suspending, ms: t.task_ms },
    }
}

/// The (state, deadline) to store for entering `state` for `ms` from `now_ms`.
pub(crate) fn stored_for(state: PowerState, ms: i64, now_ms: i64) -> (PowerState, i64) {
    if ms <= 0 {
        (settled(state), 0)
    } else {
        (state, now_ms + ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PowerState::*;

    const T: Timing = Timing { task_ms: 100, boot_ms: 300 };

    #[test]
    fn transitions_settle_at_their_deadline() {
        assert_eq!(effective(PoweringOn, 1000, 999), PoweringOn);
        assert_eq!(effective(PoweringOn, 1000, 1000), PoweredOn);
        assert_eq!(effective(PoweringOff, 5, 10), PoweredOff);
        assert_eq!(effective(Suspending, 5, 10), Suspended);
        assert_eq!(effective(Suspended, 50, 10), Suspended);
        assert_eq!(stored_for(PoweringOn, 0, 7), (PoweredOn, 0));
        assert_eq!(stored_for(PoweringOn, 300, 7), (PoweringOn, 307));
    }

    #[test]
    fn power_actions_are_idempotent() {
        assert_eq!(plan(PowerAction::Start, PoweredOn, false, T), Plan::Noop);
        assert_eq!(plan(PowerAction::Start, PoweringOn, false, T), Plan::Noop);
        assert_eq!(plan(PowerAction::Stop, PoweredOff, false, T), Plan::Noop);
        assert_eq!(plan(PowerAction::Shutdown, PoweredOff, false, T), Plan::Noop);
        assert_eq!(plan(PowerAction::Suspend, Suspended, false, T), Plan::Noop);
        assert_eq!(plan(PowerAction::Resume, PoweredOn, false, T), Plan::Noop);
    }

    #[test]
    fn power_actions_move_between_states() {
        assert_eq!(plan(PowerAction::Start, PoweredOff, false, T), Plan::Enter { state: PoweringOn, ms: 300 });
        assert_eq!(plan(PowerAction::Start, Suspended, false, T), Plan::Enter { state: PoweringOn, ms: 100 });
        assert_eq!(plan(PowerAction::Stop, PoweredOn, false, T), Plan::Enter { state: PoweredOff, ms: 0 });
        assert_eq!(plan(PowerAction::Stop, PoweringOff, false, T), Plan::Enter { state: PoweredOff, ms: 0 });
        assert_eq!(plan(PowerAction::Shutdown, PoweredOn, false, T), Plan::Enter { state: PoweringOff, ms: 100 });
        assert_eq!(plan(PowerAction::Suspend, PoweredOn, false, T), Plan::Enter { state: Suspending, ms: 100 });
        assert_eq!(plan(PowerAction::Reboot, PoweredOn, false, T), Plan::Enter { state: PoweringOn, ms: 400 });
        assert!(matches!(plan(PowerAction::Reset, PoweredOff, false, T), Plan::Refuse(_)));
        assert!(matches!(plan(PowerAction::Suspend, PoweredOff, false, T), Plan::Refuse(_)));
        assert!(matches!(plan(PowerAction::Resume, PoweredOff, false, T), Plan::Refuse(_)));
    }

    #[test]
    fn templates_cannot_start_but_stop_is_harmless() {
        assert!(matches!(plan(PowerAction::Start, PoweredOff, true, T), Plan::Refuse(_)));
        assert_eq!(plan(PowerAction::Stop, PoweredOff, true, T), Plan::Noop);
    }

    #[test]
    fn stored_names_round_trip() {
        for s in [PoweredOn, PoweredOff, PoweringOn, PoweringOff, Suspended, Suspending] {
            assert_eq!(parse(s.as_str()), s);
        }
        assert_eq!(parse("garbage"), PoweredOff);
    }
}
