//! Tasks: self-describing ids that any process can resolve, their status, and a bounded
//! wait helper for fronts whose platform wants synchronous completion.
//!
//! A [`TaskId`] is opaque to platforms and echoed back verbatim. Drivers build it from a
//! [`TaskToken`]: `pv1:<kind>:<created unix secs>:<max age secs>:<base64url(JSON body)>`.
//! The body carries everything needed to finish the task (platform task reference,
//! target guest, clone id, requested name); live state is read from the hypervisor. No
//! process-local state is involved, so a task issued by one process is advanced and
//! completed by any other.

use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::model::GuestId;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default upper bound on any task's age: 30 minutes.
pub const DEFAULT_MAX_AGE_SECS: u64 = 30 * 60;

/// An opaque, self-describing task id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub String);

impl TaskId {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a completed task produced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOutput {
    /// The guest the task created (clone or new guest), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_guest: Option<GuestId>,
}

/// A task's state, a pure function of (task id, hypervisor state).
#[derive(Clone, Debug)]
pub enum TaskStatus {
    /// Still going.
    Running,
    /// Done; the output is always present.
    Completed(TaskOutput),
    /// Failed, with the reason.
    Failed(Error),
}

/// The immediate answer to a clone or create request.
#[derive(Clone, Debug)]
pub struct CloneStarted {
    /// The task to poll.
    pub task: TaskId,
    /// The new guest's id, when already known.
    pub new_guest: Option<GuestId>,
}

/// The decoded form of a polyvisor task id.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskToken {
    /// Task kind, chosen by the driver (`clone`, `snapshot`, `done`, ...); `[a-z0-9_-]+`.
    pub kind: String,
    /// Creation time, Unix seconds.
    pub created: u64,
    /// Maximum age in seconds; past it the task is failed with "Task timed out".
    pub max_age: u64,
    /// Driver-defined body.
    pub body: Value,
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl TaskToken {
    /// A new token created now with the default max age.
    pub fn new(kind: &str, body: Value) -> Self {
        TaskToken { kind: kind.to_string(), created: now_unix(), max_age: DEFAULT_MAX_AGE_SECS, body }
    }

    /// Overrides the max age.
    pub fn with_max_age(mut self, secs: u64) -> Self {
        self.max_age = secs;
        self
    }

    /// Encodes to a task id.
    pub fn encode(&self) -> TaskId {
        let body = serde_json::to_vec(&self.body).unwrap_or_default();
        TaskId(format!("pv1:{}:{}:{}:{}", self.kind, self.created, self.max_age, URL_SAFE_NO_PAD.encode(body)))
    }

    /// Decodes a task id; anything not produced by [`TaskToken::encode`] is
    /// [`crate::ErrorKind::UnknownTask`].
    pub fn decode(id: &TaskId) -> Result<Self> {
        let bad = || Error::unknown_task(&id.0);
        let mut parts = id.0.trim().splitn(5, ':');
        if parts.next() != Some("pv1") {
            return Err(bad());
        }
        let kind = parts
            .next()
            .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
            .ok_or_else(bad)?;
        let created = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let max_age = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let raw = URL_SAFE_NO_PAD.decode(parts.next().ok_or_else(bad)?).map_err(|_| bad())?;
        let body = serde_json::from_slice(&raw).map_err(|_| bad())?;
        Ok(TaskToken { kind: kind.to_string(), created, max_age, body })
    }

    /// Whether the token is past its max age.
    pub fn expired(&self) -> bool {
        now_unix() > self.created.saturating_add(self.max_age)
    }

    /// A body field as a string.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.body.get(key).and_then(Value::as_str)
    }

    /// A body field as a string, or an unknown-task error (the id was not ours after all).
    pub fn req_str(&self, key: &str) -> Result<&str> {
        self.str(key).ok_or_else(|| Error::unknown_task(format!("{} (missing {key})", self.kind)))
    }

    /// The [`crate::ErrorKind::UnknownTask`] error for this token (a kind or body the
    /// driver did not issue), naming the id in its canonical encoding.
    pub fn unknown(&self) -> Error {
        Error::unknown_task(self.encode())
    }
}

/// An already-completed task (for operations a backend does synchronously): any process
/// resolves it with [`completed_status`] without touching the backend.
pub fn completed(kind: &str, output: &TaskOutput) -> TaskId {
    let body = serde_json::json!({ "op": kind, "new_guest": output.new_guest });
    TaskToken::new("done", body).encode()
}

/// If `token` is a [`completed`] task, its status.
pub fn completed_status(token: &TaskToken) -> Option<TaskStatus> {
    (token.kind == "done").then(|| {
        let new_guest = token.str("new_guest").map(GuestId::new);
        TaskStatus::Completed(TaskOutput { new_guest })
    })
}

/// The failure every driver reports for a task past its max age.
pub fn timed_out() -> TaskStatus {
    TaskStatus::Failed(Error::timeout("Task timed out"))
}

/// Polls `driver.task_status(task)` until it is no longer running, sleeping `poll`
/// between polls, for at most `budget`. Returns the output, the task's own error, or a
/// [`crate::ErrorKind::Timeout`] error when the budget runs out.
pub async fn wait(driver: &dyn Driver, task: &TaskId, budget: Duration, poll: Duration) -> Result<TaskOutput> {
    let deadline = tokio::time::Instant::now() + budget;
    loop {
        match driver.task_status(task).await? {
            TaskStatus::Completed(out) => return Ok(out),
            TaskStatus::Failed(e) => return Err(e),
            TaskStatus::Running => {}
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(Error::timeout(format!("task did not finish within {} s", budget.as_secs())));
        }
        tokio::time::sleep(poll.min(deadline - now)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_round_trips_and_rejects_foreign_ids() {
        let t = TaskToken::new(
            "clone",
            json!({"upid": "UPID:pve1:0001:0002:65F0A1B2:qmclone:101:root@pam!x:", "clone": "137"}),
        );
        let id = t.encode();
        assert!(id.0.starts_with("pv1:clone:"));
        assert_eq!(TaskToken::decode(&id).unwrap(), t);
        for bad in ["", "x", "pv1:clone", "pv1:clone:1:2:!!!", "UPID:pve1:1", "pv1:cl one:1:2:e30", "pv1:c:a:2:e30"] {
            let e = TaskToken::decode(&TaskId(bad.into())).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::UnknownTask, "{bad}");
        }
    }

    #[test]
    fn completed_tasks_carry_their_output() {
        let id = completed("convert", &TaskOutput { new_guest: Some("9".into()) });
        let tok = TaskToken::decode(&id).unwrap();
        match completed_status(&tok) {
            Some(TaskStatus::Completed(o)) => assert_eq!(o.new_guest.unwrap().as_str(), "9"),
            other => panic!("{other:?}"),
        }
        assert!(!tok.expired());
        let old = TaskToken { created: 1, max_age: 1, ..tok };
        assert!(old.expired());
    }
}
