//! libvirt domain lifecycle events as the wake-up of a following event stream
//! (`Driver::wait_for_change`, `Capabilities::event_wakeup`).
//!
//! The events themselves still come from the core poll-and-diff (`Driver::events_since`):
//! its cursor carries the state it has seen, so a stream restarted from a cursor loses and
//! repeats nothing, which a live-only libvirt callback cannot promise. What libvirt's events
//! add is timing: a guest defined, undefined, started, suspended, resumed or stopped wakes the
//! stream at once instead of at its next `--poll`. Snapshot changes on a stopped guest raise
//! no lifecycle event (libvirt has no snapshot events); the poll interval finds them.
//!
//! Why `unsafe` here, and only here: the `virt` crate (0.4) wraps libvirt's event loop
//! (`virt::event`) but not domain event callbacks, so this module calls
//! `virConnectDomainEventRegisterAny` through `virt::sys` with one callback that only
//! signals a `tokio::sync::Notify`. The crate otherwise denies unsafe code.
#![allow(unsafe_code)]

use crate::config::Config;
use std::collections::HashMap;
use std::os::raw::{c_int, c_void};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;
use virt::sys;

/// A subscription: its connection stays open while it lives (libvirt delivers events of a
/// connection only); replaced when the connection dies.
struct Watch {
    notify: Arc<Notify>,
    conn: crate::conn::Conn,
}

fn watches() -> &'static Mutex<HashMap<String, Arc<Watch>>> {
    static W: OnceLock<Mutex<HashMap<String, Arc<Watch>>>> = OnceLock::new();
    W.get_or_init(Default::default)
}

/// Registers libvirt's default event loop and runs it on a thread of its own, once per
/// process (the thread never exits: see `conn::workers` on libvirt threads that exit).
fn event_loop() -> Result<(), String> {
    static LOOP: OnceLock<Result<(), String>> = OnceLock::new();
    LOOP.get_or_init(|| {
        virt::event::event_register_default_impl().map_err(|e| format!("libvirt event loop: {e}"))?;
        std::thread::Builder::new()
            .name("libvirt-events".into())
            .spawn(|| loop {
                if virt::event::event_run_default_impl().is_err() {
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
            .map(|_| ())
            .map_err(|e| format!("libvirt event thread: {e}"))
    })
    .clone()
}

/// The lifecycle callback: signals the watch's `Notify` (a permit is kept when no one waits,
/// so a change between two polls is never missed).
unsafe extern "C" fn on_lifecycle(
    _conn: sys::virConnectPtr,
    _dom: sys::virDomainPtr,
    _event: c_int,
    _detail: c_int,
    opaque: *mut c_void,
) -> c_int {
    // SAFETY: `opaque` is the `Arc<Notify>` handed to libvirt in `subscribe` by
    // `Arc::into_raw`; libvirt passes it back unchanged and frees it only through
    // `release_notify`, after the last callback.
    let notify = unsafe { &*(opaque as *const Notify) };
    notify.notify_one();
    0
}

/// libvirt's free callback for the opaque pointer of [`on_lifecycle`].
unsafe extern "C" fn release_notify(opaque: *mut c_void) {
    // SAFETY: the pointer came from `Arc::into_raw` in `subscribe`; libvirt calls this once.
    drop(unsafe { Arc::from_raw(opaque as *const Notify) });
}

/// Opens a connection and subscribes to every domain's lifecycle events (blocking; runs on
/// a libvirt worker thread).
fn subscribe(uri: &str) -> polyvisor_core::Result<Watch> {
    event_loop().map_err(polyvisor_core::Error::unavailable)?;
    let conn = crate::conn::open(uri)?;
    let notify = Arc::new(Notify::new());
    let opaque = Arc::into_raw(notify.clone()) as *mut c_void;
    type Lifecycle = unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, c_int, c_int, *mut c_void) -> c_int;
    type Generic = unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void);
    // SAFETY: libvirt calls a VIR_DOMAIN_EVENT_ID_LIFECYCLE callback with the lifecycle
    // signature; the generic type is only how the C API takes it (the VIR_DOMAIN_EVENT_CALLBACK
    // cast of libvirt's own headers). `conn` is open; a null domain means every domain.
    let id = unsafe {
        let cb = std::mem::transmute::<Lifecycle, Generic>(on_lifecycle as Lifecycle);
        sys::virConnectDomainEventRegisterAny(
            conn.as_ptr(),
            std::ptr::null_mut(),
            sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE as c_int,
            Some(cb),
            opaque,
            Some(release_notify),
        )
    };
    if id < 0 {
        // SAFETY: libvirt did not take the pointer; this is the only reference it stood for.
        drop(unsafe { Arc::from_raw(opaque as *const Notify) });
        let e = virt::error::Error::last_error();
        return Err(crate::conn::lv_err(e, "cannot subscribe to libvirt domain events", uri));
    }
    Ok(Watch { notify, conn })
}

/// The `Notify` signalled on every domain lifecycle event of `cfg.uri`, subscribing on first
/// use (bounded by `call_timeout_secs`). `None` where events cannot come: the built-in
/// `test:` driver (each connection is a separate hypervisor) or a failed subscription
/// (logged; the stream falls back to its poll interval).
pub(crate) async fn notifier(cfg: &Config) -> Option<Arc<Notify>> {
    if cfg.is_test_driver() {
        return None;
    }
    {
        let g = watches().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = g.get(&cfg.uri) {
            if w.conn.is_alive().unwrap_or(false) {
                return Some(w.notify.clone());
            }
        }
    }
    let uri = cfg.uri.clone();
    let job = crate::conn::workers::run(move || subscribe(&uri));
    let w = match tokio::time::timeout(cfg.call_timeout, job).await {
        Ok(Ok(Ok(w))) => Arc::new(w),
        Ok(Ok(Err(e))) => {
            tracing::warn!(target: "polyvisor_libvirt", error = %e, "no libvirt domain events; polling only");
            return None;
        }
        _ => {
            tracing::warn!(target: "polyvisor_libvirt", "libvirt domain event subscription timed out; polling only");
            return None;
        }
    };
    let n = w.notify.clone();
    watches().lock().unwrap_or_else(|p| p.into_inner()).insert(cfg.uri.clone(), w);
    Some(n)
}
