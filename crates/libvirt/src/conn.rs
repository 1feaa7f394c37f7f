//! Running blocking libvirt calls off the async runtime, bounded in time, and mapping
//! libvirt errors onto polyvisor's error kinds.
//!
//! Every call runs on one of a fixed pool of libvirt worker threads (safe on the RAS
//! front's current-thread runtime; see [`workers`] for why not `spawn_blocking`) with the driver's lazily opened connection (re-opened when it is dead). A call that outlives its bound
//! returns [`ErrorKind::Timeout`](polyvisor_core::ErrorKind::Timeout) to the caller, but
//! **the blocking libvirt call keeps running** on its thread until libvirt returns (C calls
//! cannot be cancelled); its result is then dropped and the connection closed.

use crate::config::Config;
use polyvisor_core::{Error, Result};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;
use virt::connect::Connect;
use virt::error::ErrorNumber;

static QUIET: Once = Once::new();

/// An open connection that is closed on drop.
pub(crate) struct Conn(Connect);

impl std::ops::Deref for Conn {
    type Target = Connect;
    fn deref(&self) -> &Connect {
        &self.0
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.0.close();
    }
}

/// Removes the URI from libvirt's message (it may carry a user name or key path).
fn scrub(msg: &str, uri: &str) -> String {
    let m = msg.trim().trim_end_matches('.');
    if uri.is_empty() {
        m.to_string()
    } else {
        m.replace(uri, "<uri>")
    }
}

/// Maps a libvirt error to a polyvisor error with `what` as context.
pub(crate) fn lv_err(e: virt::error::Error, what: &str, uri: &str) -> Error {
    let msg = scrub(e.message(), uri);
    let full = format!("{what}: {msg}");
    let err = match e.code() {
        ErrorNumber::NoDomain
        | ErrorNumber::NoDomainSnapshot
        | ErrorNumber::NoStorageVolume
        | ErrorNumber::NoStoragePool
        | ErrorNumber::NoNetwork => Error::new(polyvisor_core::ErrorKind::NotFound, full),
        ErrorNumber::OperationInvalid | ErrorNumber::DomExist => Error::conflict(full),
        ErrorNumber::NoSupport | ErrorNumber::OperationUnsupported | ErrorNumber::ArgumentUnsupported => {
            Error::new(polyvisor_core::ErrorKind::Unsupported, full)
        }
        ErrorNumber::AuthFailed | ErrorNumber::AuthUnavailable => Error::unauthorized(full),
        ErrorNumber::OperationTimeout | ErrorNumber::AgentUnresponsive => Error::timeout(full),
        ErrorNumber::NoConnect | ErrorNumber::Rpc => Error::unavailable(full),
        _ => Error::backend(full),
    };
    err.with_detail(format!("libvirt code {:?} domain {:?}", e.code(), e.domain()))
}

/// Opens a connection (on the calling, blocking thread).
pub(crate) fn open(uri: &str) -> Result<Conn> {
    QUIET.call_once(virt::error::clear_error_callback);
    Connect::open(Some(uri)).map(Conn).map_err(|e| {
        let mut err = lv_err(e, "cannot connect to libvirt", uri);
        if err.kind() == polyvisor_core::ErrorKind::Backend {
            err = Error::unavailable(err.message().to_string());
        }
        err
    })
}

/// A lazily opened connection shared by a driver's calls (re-opened when it dies). It is a
/// cache only: nothing in it decides a result.
#[derive(Clone, Default)]
pub(crate) struct Shared(Arc<Mutex<Option<Arc<Conn>>>>);

impl Shared {
    fn get(&self, uri: &str) -> Result<Arc<Conn>> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = g.as_ref() {
            if c.is_alive().unwrap_or(false) {
                return Ok(c.clone());
            }
        }
        let c = Arc::new(open(uri)?);
        *g = Some(c.clone());
        Ok(c)
    }

    fn drop_conn(&self) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *g = None;
    }
}

/// Runs `f` with the shared connection on a blocking thread, bounded by `bound`.
pub(crate) async fn call<T, F>(shared: &Shared, cfg: &Config, bound: Duration, what: &'static str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Conn, &Config) -> Result<T> + Send + 'static,
{
    let cfg2 = cfg.clone();
    let sh = shared.clone();
    let job = workers::run(move || {
        let c = sh.get(&cfg2.uri)?;
        let r = f(&c, &cfg2);
        if matches!(&r, Err(e) if e.kind() == polyvisor_core::ErrorKind::Unavailable) {
            sh.drop_conn();
        }
        r
    });
    match tokio::time::timeout(bound, job).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(Error::internal(format!("libvirt worker for {what} failed"))),
        Err(_) => Err(Error::timeout(format!("libvirt did not finish {what} within {} s", bound.as_secs()))),
    }
}

mod workers {
    //! A fixed pool of named libvirt worker threads that live as long as the process.
    //!
    //! Why not `spawn_blocking`: tokio retires idle blocking threads, and a thread that
    //! exits after libvirt calls runs libvirt's and GLib's thread-local destructors; with
    //! Debian 12's libvirt 9 / GLib 2.74 that intermittently corrupted the heap
    //! (`malloc_consolidate(): invalid chunk size` at exit, seen in CI). Threads that never
    //! exit never run those destructors. A call that hangs keeps its thread; the pool has
    //! several so the others keep serving.

    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::sync::{Arc, Mutex, OnceLock};

    type Job = Box<dyn FnOnce() + Send>;

    const THREADS: usize = 4;

    fn sender() -> &'static Mutex<Sender<Job>> {
        static TX: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
        TX.get_or_init(|| {
            let (tx, rx) = channel::<Job>();
            let rx: Arc<Mutex<Receiver<Job>>> = Arc::new(Mutex::new(rx));
            for i in 0..THREADS {
                let rx = rx.clone();
                let _ = std::thread::Builder::new().name(format!("libvirt-{i}")).spawn(move || loop {
                    let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                        Ok(j) => j,
                        Err(_) => return,
                    };
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                });
            }
            Mutex::new(tx)
        })
    }

    /// Runs `f` on a worker thread; the receiver yields its result.
    pub(super) fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> tokio::sync::oneshot::Receiver<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        let _ = sender().lock().unwrap_or_else(|p| p.into_inner()).send(job);
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_is_scrubbed() {
        assert_eq!(
            scrub("Failed to connect socket to 'qemu+ssh://u@h/system'.", "qemu+ssh://u@h/system"),
            "Failed to connect socket to '<uri>'"
        );
    }
}
