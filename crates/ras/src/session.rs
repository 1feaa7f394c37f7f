//! The provider session: the configuration from args/env, the connected driver (or
//! none), and the per-request deadline that bounds every driver call.
//!
//! A session holds nothing a later process would need: task ids are self-describing
//! (issued by the driver or [`polyvisor_core::task::completed`]), so a fresh process
//! resolves them. When a request needs a driver and no `provider/connect` happened in
//! this process, one is opened lazily from the args/env defaults (`--driver` /
//! `POLYVISOR_DRIVER`, default `sim`), because RAS may start a new process per request.

use crate::config::{Config, Level};
use crate::errors::RpcError;
use polyvisor_core::{Capabilities, Driver, DriverFactory, Error, ErrorKind, Result, Settings};
use std::future::Future;
use std::sync::Arc;
use tokio::time::Instant;

/// A connected (or lazily opened) driver with its resolved level.
#[derive(Clone)]
pub(crate) struct Active {
    /// The driver.
    pub driver: Arc<dyn Driver>,
    /// The effective level (requested config clamped to the driver).
    pub level: Level,
}

enum Conn {
    /// No driver yet: open lazily from the defaults.
    Idle,
    /// Connected.
    Ready(Active),
    /// The last `provider/connect` failed; requests needing a driver report why.
    Failed { reason: String, prefix: Option<String> },
}

/// What a method needs from the template level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// `basic` or `versioning` (clone, convert, tasks).
    Templates,
    /// Link clones or versioning (snapshots).
    Snapshots,
}

/// Per-process provider state.
pub(crate) struct Session {
    factory: Arc<dyn DriverFactory>,
    base: Config,
    conn: Conn,
    default_driver: Option<Arc<dyn Driver>>,
    deadline: Instant,
}

impl Session {
    /// A fresh, unconnected session.
    pub(crate) fn new(factory: Arc<dyn DriverFactory>, base: Config) -> Self {
        Session { factory, base, conn: Conn::Idle, default_driver: None, deadline: Instant::now() }
    }

    /// Starts the time budget of one request.
    pub(crate) fn begin_request(&mut self) {
        self.deadline = Instant::now() + self.base.request_timeout;
    }

    /// The message prefix: the driver's display name, or `polyvisor` before one is open.
    pub(crate) fn prefix(&self) -> String {
        match &self.conn {
            Conn::Ready(a) => a.driver.display_name().to_string(),
            Conn::Failed { prefix: Some(p), .. } => p.clone(),
            _ => "polyvisor".to_string(),
        }
    }

    /// Runs one driver future within the request deadline; expiry is a `Timeout` error.
    pub(crate) async fn call<T>(&self, what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout_at(self.deadline, fut).await {
            Ok(r) => r,
            Err(_) => {
                Err(Error::timeout(format!("{what} timed out after {:.1} s", self.base.request_timeout.as_secs_f64())))
            }
        }
    }

    async fn open(&self, cfg: &Config, settings: &Settings) -> Result<Arc<dyn Driver>> {
        let s = cfg.open_settings(settings);
        self.call("opening the driver", self.factory.open(&s, &cfg.open_options())).await
    }

    /// The driver named by args/env (opened once, no I/O), for `provider/initialize`
    /// and lazy sessions.
    async fn default_driver(&mut self) -> Result<Arc<dyn Driver>> {
        if let Some(d) = &self.default_driver {
            return Ok(d.clone());
        }
        let base = self.base.clone();
        let d = self.open(&base, &Settings::new()).await?;
        self.default_driver = Some(d.clone());
        Ok(d)
    }

    /// The level `provider/initialize` advertises: args/env clamped to the default
    /// driver's capabilities (unclamped when that driver cannot be opened).
    pub(crate) async fn initialize_level(&mut self) -> Level {
        let base = self.base.clone();
        let settings = base.open_settings(&Settings::new());
        let caps: Option<Capabilities> = match self
            .call("reading driver capabilities", self.factory.capabilities(&settings, &base.open_options()))
            .await
        {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "initialize: default driver capabilities unavailable; advertising the configured level");
                None
            }
        };
        Level::resolve(&self.base, caps.as_ref())
    }

    /// The active driver, opening one lazily from the defaults when none is connected.
    pub(crate) async fn active(&mut self) -> Result<Active, RpcError> {
        match &self.conn {
            Conn::Ready(a) => return Ok(a.clone()),
            Conn::Failed { reason, .. } => {
                return Err(RpcError::internal(format!("Not connected: the last provider/connect failed: {reason}")))
            }
            Conn::Idle => {}
        }
        if !self.base.problems.is_empty() {
            return Err(RpcError::params(format!("Invalid connection parameters: {}", self.base.problems.join("; "))));
        }
        let driver = self
            .default_driver()
            .await
            .map_err(|e| RpcError::internal(format!("Not connected: call provider/connect first ({})", e.message())))?;
        tracing::info!(driver = driver.display_name(), "no provider/connect in this process: using the default driver");
        let level = Level::resolve(&self.base, Some(&driver.capabilities()));
        let a = Active { driver, level };
        self.conn = Conn::Ready(a.clone());
        Ok(a)
    }

    /// The active driver, if the level allows `method`; else `-32601`.
    pub(crate) async fn active_for(&mut self, need: Need, method: &str) -> Result<Active, RpcError> {
        let a = self.active().await?;
        let allowed = match need {
            Need::Templates => a.level.templates(),
            Need::Snapshots => a.level.snapshots(),
        };
        if allowed {
            Ok(a)
        } else {
            Err(RpcError::method(format!("Method {method} is not available with template_method {}", a.level.label())))
        }
    }

    /// `provider/connect`: resolve overrides, open the driver, probe it. A driver this
    /// connect replaces is closed.
    pub(crate) async fn connect(&mut self, settings: &Settings) -> Result<String, RpcError> {
        let (next, out) = match self.try_connect(settings).await {
            Ok((a, desc)) => (Conn::Ready(a), Ok(format!("Connected: {desc}"))),
            Err((e, prefix)) => (Conn::Failed { reason: e.message.clone(), prefix }, Err(e)),
        };
        if let Conn::Ready(old) = std::mem::replace(&mut self.conn, next) {
            let still_used = matches!(&self.conn, Conn::Ready(a) if Arc::ptr_eq(&a.driver, &old.driver))
                || self.default_driver.as_ref().is_some_and(|d| Arc::ptr_eq(d, &old.driver));
            if !still_used {
                close_driver(&old.driver).await;
            }
        }
        out
    }

    async fn try_connect(&self, settings: &Settings) -> Result<(Active, String), (RpcError, Option<String>)> {
        let invalid = |r: &str| (RpcError::params(format!("Invalid connection parameters: {r}")), None);
        if !self.base.problems.is_empty() {
            return Err(invalid(&self.base.problems.join("; ")));
        }
        let cfg = self.base.with_settings(settings).map_err(|r| invalid(&r))?;
        let driver = self.open(&cfg, settings).await.map_err(|e| match e.kind() {
            ErrorKind::InvalidInput => invalid(e.message()),
            _ => (RpcError::internal(format!("Connection failed: {}", e.message())), None),
        })?;
        let prefix = Some(driver.display_name().to_string());
        let desc = match self.call("probe", driver.probe()).await {
            Ok(d) => d,
            Err(e) => {
                // A half-open session (e.g. logged in, then a later probe call failed).
                close_driver(&driver).await;
                return Err((RpcError::internal(format!("Connection failed: {}", e.message())), prefix));
            }
        };
        let level = Level::resolve(&cfg, Some(&driver.capabilities()));
        Ok((Active { driver, level }, desc))
    }

    /// `provider/disconnect`: close and forget the drivers (tasks live in their ids; a
    /// later request opens the default driver again).
    pub(crate) async fn disconnect(&mut self) {
        self.close().await;
    }

    /// At the end of the process (stdin EOF) or on disconnect: closes every driver this
    /// session opened (each once, bounded) so that backend sessions are released; drivers
    /// keep what a handed-out task id still needs (see [`Driver::close`]).
    pub(crate) async fn close(&mut self) {
        let mut drivers: Vec<Arc<dyn Driver>> = Vec::new();
        if let Conn::Ready(a) = std::mem::replace(&mut self.conn, Conn::Idle) {
            drivers.push(a.driver);
        }
        if let Some(d) = self.default_driver.take() {
            if !drivers.iter().any(|x| Arc::ptr_eq(x, &d)) {
                drivers.push(d);
            }
        }
        for d in &drivers {
            close_driver(d).await;
        }
    }
}

/// How long closing one driver may take.
const CLOSE_BOUND: std::time::Duration = std::time::Duration::from_secs(5);

async fn close_driver(d: &Arc<dyn Driver>) {
    if tokio::time::timeout(CLOSE_BOUND, d.close()).await.is_err() {
        tracing::debug!(
            driver = d.display_name(),
            "closing the driver outlived its bound; its backend session expires on its own"
        );
    }
}
