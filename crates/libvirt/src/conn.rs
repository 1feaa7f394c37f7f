//! Running blocking libvirt calls off the async runtime, bounded in time, and classifying
//! libvirt errors once ([`LvError`], from `virt::error::Error` codes, never message text).
//!
//! Two kinds of call, so that no slow call can hold up another (issue: on a busy host
//! libvirtd took 8-20 s for one internal snapshot, and with a fixed pool of 4 threads on one
//! shared connection, calls that had already timed out kept their threads until libvirt
//! returned, so later unrelated calls queued behind them and timed out as well):
//!
//! - [`call`]: short calls (lookups, XML, state, power) on the driver's shared, lazily opened
//!   connection, bounded by `call_timeout_secs`;
//! - [`call_own`] / [`spawn_own`]: long operations (clone, volume copy, snapshot create/revert,
//!   delete) on a **connection of their own** (opened for the job, closed after), bounded by
//!   `job_timeout_secs`; [`spawn_own`] runs them as background jobs behind a task token.
//!
//! Both run on [`workers`], a pool that grows whenever every thread is busy (a call that
//! outlives its bound keeps its thread until libvirt returns — C calls cannot be cancelled —
//! but it never delays another call). A timed-out caller gets `ErrorKind::Timeout`.

use crate::config::Config;
use polyvisor_core::{Error, ErrorKind, Result};
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

/// A libvirt failure, classified once from its error code where the call returns.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum LvError {
    /// No such domain, snapshot, volume, pool, network or network filter.
    #[error("{what}: {message}")]
    NotFound { what: String, message: String, code: i32 },
    /// The object is in a state that forbids the operation, or already exists.
    #[error("{what}: {message}")]
    Conflict { what: String, message: String, code: i32 },
    /// The hypervisor or this libvirt does not support the operation.
    #[error("{what}: {message}")]
    Unsupported { what: String, message: String, code: i32 },
    /// Authentication failed or is unavailable.
    #[error("{what}: {message}")]
    Auth { what: String, message: String, code: i32 },
    /// libvirt itself timed out (e.g. waiting for a domain job or the guest agent).
    #[error("{what}: {message}")]
    Timeout { what: String, message: String, code: i32 },
    /// The daemon is unreachable or the connection broke.
    #[error("{what}: {message}")]
    Unavailable { what: String, message: String, code: i32 },
    /// Anything else libvirt reported.
    #[error("{what}: {message}")]
    Other { what: String, message: String, code: i32 },
}

impl LvError {
    /// Classifies `e` by its code (never by its text); `what` says what polyvisor was doing.
    pub(crate) fn classify(e: &virt::error::Error, what: &str, uri: &str) -> LvError {
        let (what, message, code) = (what.to_string(), scrub(e.message(), uri), e.code() as i32);
        match e.code() {
            ErrorNumber::NoDomain
            | ErrorNumber::NoDomainSnapshot
            | ErrorNumber::NoStorageVolume
            | ErrorNumber::NoStoragePool
            | ErrorNumber::NoNetwork
            | ErrorNumber::NoNwfilter => LvError::NotFound { what, message, code },
            ErrorNumber::OperationInvalid | ErrorNumber::DomExist => LvError::Conflict { what, message, code },
            ErrorNumber::NoSupport
            | ErrorNumber::OperationUnsupported
            | ErrorNumber::ArgumentUnsupported
            | ErrorNumber::ConfigUnsupported => LvError::Unsupported { what, message, code },
            ErrorNumber::AuthFailed | ErrorNumber::AuthUnavailable | ErrorNumber::AuthCancelled => {
                LvError::Auth { what, message, code }
            }
            ErrorNumber::OperationTimeout | ErrorNumber::AgentUnresponsive => LvError::Timeout { what, message, code },
            ErrorNumber::NoConnect | ErrorNumber::Rpc => LvError::Unavailable { what, message, code },
            _ => LvError::Other { what, message, code },
        }
    }

    fn code(&self) -> i32 {
        match self {
            LvError::NotFound { code, .. }
            | LvError::Conflict { code, .. }
            | LvError::Unsupported { code, .. }
            | LvError::Auth { code, .. }
            | LvError::Timeout { code, .. }
            | LvError::Unavailable { code, .. }
            | LvError::Other { code, .. } => *code,
        }
    }

    /// The core error kind this maps to.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            LvError::NotFound { .. } => ErrorKind::NotFound,
            LvError::Conflict { .. } => ErrorKind::Conflict,
            LvError::Unsupported { .. } => ErrorKind::Unsupported,
            LvError::Auth { .. } => ErrorKind::Unauthorized,
            LvError::Timeout { .. } => ErrorKind::Timeout,
            LvError::Unavailable { .. } => ErrorKind::Unavailable,
            LvError::Other { .. } => ErrorKind::Backend,
        }
    }
}

impl From<LvError> for Error {
    fn from(e: LvError) -> Error {
        let code = e.code();
        Error::new(e.kind(), e.to_string()).with_detail(format!("libvirt error code {code}"))
    }
}

/// Classifies a libvirt error and converts it to the core error (the `Driver` boundary).
pub(crate) fn lv_err(e: virt::error::Error, what: &str, uri: &str) -> Error {
    LvError::classify(&e, what, uri).into()
}

/// Opens a connection (on the calling, blocking thread); any failure is `Unavailable`
/// unless it is an authentication failure.
pub(crate) fn open(uri: &str) -> Result<Conn> {
    QUIET.call_once(virt::error::clear_error_callback);
    Connect::open(Some(uri)).map(Conn).map_err(|e| match LvError::classify(&e, "cannot connect to libvirt", uri) {
        a @ LvError::Auth { .. } => a.into(),
        LvError::NotFound { what, message, code }
        | LvError::Conflict { what, message, code }
        | LvError::Unsupported { what, message, code }
        | LvError::Timeout { what, message, code }
        | LvError::Unavailable { what, message, code }
        | LvError::Other { what, message, code } => LvError::Unavailable { what, message, code }.into(),
    })
}

/// A lazily opened connection shared by a driver's short calls (re-opened when it dies).
/// It is a cache only: nothing in it decides a result.
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

fn with_shared<T>(sh: &Shared, cfg: &Config, f: impl FnOnce(&Conn, &Config) -> Result<T>) -> Result<T> {
    let c = sh.get(&cfg.uri)?;
    let r = f(&c, cfg);
    if matches!(&r, Err(e) if e.kind() == ErrorKind::Unavailable) {
        sh.drop_conn();
    }
    r
}

/// Runs `f` on its own connection (`test:` URIs keep the shared one: each connection to the
/// built-in test driver is a separate, empty hypervisor).
fn with_own<T>(sh: &Shared, cfg: &Config, f: impl FnOnce(&Conn, &Config) -> Result<T>) -> Result<T> {
    if cfg.is_test_driver() {
        return with_shared(sh, cfg, f);
    }
    let c = open(&cfg.uri)?;
    f(&c, cfg)
}

async fn bounded<T>(job: tokio::sync::oneshot::Receiver<Result<T>>, bound: Duration, what: &str) -> Result<T> {
    match tokio::time::timeout(bound, job).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(Error::internal(format!("libvirt worker for {what} failed"))),
        Err(_) => Err(Error::timeout(format!("libvirt did not finish {what} within {} s", bound.as_secs()))),
    }
}

/// Runs a short call with the shared connection on a worker thread, bounded by `bound`.
pub(crate) async fn call<T, F>(shared: &Shared, cfg: &Config, bound: Duration, what: &'static str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Conn, &Config) -> Result<T> + Send + 'static,
{
    let (cfg2, sh) = (cfg.clone(), shared.clone());
    bounded(workers::run(move || with_shared(&sh, &cfg2, f)), bound, what).await
}

/// Runs a long operation on a connection of its own, bounded by `job_timeout_secs`.
pub(crate) async fn call_own<T, F>(shared: &Shared, cfg: &Config, what: &'static str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Conn, &Config) -> Result<T> + Send + 'static,
{
    let (cfg2, sh) = (cfg.clone(), shared.clone());
    bounded(workers::run(move || with_own(&sh, &cfg2, f)), cfg.job_timeout, what).await
}

/// Starts a long operation in the background on a connection of its own and records its
/// outcome in `jobs` under `job` (the task token carries `job`; see [`Jobs`]).
pub(crate) fn spawn_own<F>(shared: &Shared, cfg: &Config, jobs: &Jobs, job: String, f: F)
where
    F: FnOnce(&Conn, &Config) -> Result<()> + Send + 'static,
{
    let (cfg2, sh, jobs2) = (cfg.clone(), shared.clone(), jobs.clone());
    jobs.set(&job, JobState::Running);
    let _detached = workers::run(move || {
        let r = with_own(&sh, &cfg2, f);
        jobs2.set(&job, if let Err(e) = r { JobState::Failed(e) } else { JobState::Done });
    });
}

/// What this process knows about a background job it started.
#[derive(Clone, Debug)]
pub(crate) enum JobState {
    /// Still running.
    Running,
    /// Finished without error.
    Done,
    /// Failed with this error.
    Failed(Error),
}

/// Outcomes of the background jobs this process started, keyed by the random job id in
/// their task token. A cache for early answers only: task status is derived from libvirt
/// state (the domain or snapshot exists), and a process that did not start the job (RAS may
/// poll from another one) waits for that state or the token's max age.
#[derive(Clone, Default)]
pub(crate) struct Jobs(Arc<Mutex<std::collections::HashMap<String, JobState>>>);

impl Jobs {
    fn set(&self, job: &str, s: JobState) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.insert(job.to_string(), s);
    }

    /// The job's state, if this process started it.
    pub(crate) fn get(&self, job: &str) -> Option<JobState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(job).cloned()
    }
}

pub(crate) mod workers {
    //! Named libvirt worker threads that live as long as the process, in a pool that grows
    //! whenever no thread is free.
    //!
    //! Why not `spawn_blocking`: tokio retires idle blocking threads, and a thread that
    //! exits after libvirt calls runs libvirt's and GLib's thread-local destructors; with
    //! Debian 12's libvirt 9 / GLib 2.74 that intermittently corrupted the heap
    //! (`malloc_consolidate(): invalid chunk size` at exit, seen in CI). Threads that never
    //! exit never run those destructors.
    //!
    //! Why it grows: a call whose caller timed out still occupies its thread until libvirt
    //! returns. Every submitted job either takes a free thread or gets a new one, so the
    //! number of queued-or-running jobs never exceeds the number of threads: no job waits
    //! behind another (up to [`MAX_THREADS`]).

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::sync::{Arc, Mutex, OnceLock};

    type Job = Box<dyn FnOnce() + Send>;

    /// Upper bound on worker threads (each stuck libvirt call holds one).
    pub(crate) const MAX_THREADS: usize = 64;

    struct Pool {
        tx: Mutex<Sender<Job>>,
        rx: Arc<Mutex<Receiver<Job>>>,
        /// Threads not committed to a submitted job.
        free: AtomicUsize,
        threads: AtomicUsize,
    }

    fn pool() -> &'static Pool {
        static P: OnceLock<Pool> = OnceLock::new();
        P.get_or_init(|| {
            let (tx, rx) = channel::<Job>();
            Pool {
                tx: Mutex::new(tx),
                rx: Arc::new(Mutex::new(rx)),
                free: AtomicUsize::new(0),
                threads: AtomicUsize::new(0),
            }
        })
    }

    fn spawn_thread(p: &'static Pool) {
        let n = p.threads.fetch_add(1, Ordering::SeqCst);
        let rx = p.rx.clone();
        let spawned = std::thread::Builder::new().name(format!("libvirt-{n}")).spawn(move || loop {
            let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                Ok(j) => j,
                Err(_) => return,
            };
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            p.free.fetch_add(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            p.threads.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Commits a thread to one more job: takes a free one, or starts a new one.
    fn reserve(p: &'static Pool) {
        let mut free = p.free.load(Ordering::SeqCst);
        loop {
            if free == 0 {
                if p.threads.load(Ordering::SeqCst) < MAX_THREADS {
                    spawn_thread(p);
                } else {
                    tracing::warn!("all {MAX_THREADS} libvirt worker threads are busy; the call waits for one");
                }
                return;
            }
            match p.free.compare_exchange(free, free - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return,
                Err(now) => free = now,
            }
        }
    }

    /// Runs `f` on a worker thread; the receiver yields its result.
    pub(crate) fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> tokio::sync::oneshot::Receiver<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        let p = pool();
        reserve(p);
        let _ = p.tx.lock().unwrap_or_else(|e| e.into_inner()).send(job);
        rx
    }

    /// Threads started so far (tests).
    #[cfg(test)]
    pub(crate) fn threads() -> usize {
        pool().threads.load(Ordering::SeqCst)
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

    /// Regression (issue 8 item 9): with the old fixed pool of 4 threads, 4 calls stuck in
    /// libvirt made every later call wait (and time out) behind them.
    #[tokio::test(flavor = "current_thread")]
    async fn stuck_calls_never_delay_a_quick_one() {
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let mut stuck = Vec::new();
        for _ in 0..6 {
            let r = release_rx.clone();
            stuck.push(workers::run(move || {
                let _ = r.lock().unwrap_or_else(|p| p.into_inner()).recv_timeout(Duration::from_secs(60));
            }));
        }
        let t0 = std::time::Instant::now();
        let quick = tokio::time::timeout(Duration::from_secs(5), workers::run(|| 42)).await;
        assert_eq!(quick.ok().and_then(|r| r.ok()), Some(42), "a quick call ran while 6 calls were stuck");
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(workers::threads() >= 7, "the pool grew: {}", workers::threads());
        for _ in 0..6 {
            let _ = release_tx.send(());
        }
        for s in stuck {
            let _ = s.await;
        }
    }
}
