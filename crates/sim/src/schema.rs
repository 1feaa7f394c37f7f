//! The sim database schema (one version; `PRAGMA user_version` records it).

/// Schema version stored in `PRAGMA user_version`.
pub(crate) const VERSION: i64 = 1;

/// Creates every table and index. Run once, inside the first IMMEDIATE transaction.
pub(crate) const CREATE: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS guests (
    id               INTEGER PRIMARY KEY,
    name             TEXT NOT NULL,
    visible          INTEGER NOT NULL DEFAULT 1,
    is_template      INTEGER NOT NULL DEFAULT 0,
    power            TEXT NOT NULL,
    power_until      INTEGER NOT NULL DEFAULT 0,
    os               TEXT,
    cpus             INTEGER NOT NULL,
    memory_mb        INTEGER NOT NULL,
    disk_gb          INTEGER NOT NULL,
    ip               TEXT NOT NULL,
    key              TEXT,
    origin_id        INTEGER,
    linked_to        INTEGER,
    linked_snapshot  INTEGER,
    current_snapshot INTEGER,
    created_ms       INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS guests_key ON guests(key) WHERE key IS NOT NULL;
CREATE INDEX IF NOT EXISTS guests_linked ON guests(linked_to) WHERE linked_to IS NOT NULL;
CREATE INDEX IF NOT EXISTS guests_name ON guests(name);

CREATE TABLE IF NOT EXISTS nics (
    guest_id INTEGER NOT NULL,
    idx      INTEGER NOT NULL,
    mac      TEXT NOT NULL,
    vlan     INTEGER,
    network  TEXT,
    PRIMARY KEY (guest_id, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nics_mac ON nics(mac);

CREATE TABLE IF NOT EXISTS macs_issued (
    mac TEXT PRIMARY KEY
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS snapshots (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    guest_id        INTEGER NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT,
    parent_id       INTEGER,
    includes_memory INTEGER NOT NULL,
    power           TEXT NOT NULL,
    cpus            INTEGER NOT NULL,
    memory_mb       INTEGER NOT NULL,
    created_unix    INTEGER NOT NULL,
    UNIQUE (guest_id, name)
);

CREATE TABLE IF NOT EXISTS tasks (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    nonce      INTEGER NOT NULL,
    op         TEXT NOT NULL,
    guest_id   INTEGER,
    params     TEXT NOT NULL DEFAULT '{}',
    due_ms     INTEGER NOT NULL,
    finish_ms  INTEGER NOT NULL,
    applied    INTEGER NOT NULL DEFAULT 0,
    state      TEXT NOT NULL DEFAULT 'running',
    new_guest  INTEGER,
    error_kind TEXT,
    error      TEXT,
    fail       TEXT
);
CREATE INDEX IF NOT EXISTS tasks_due ON tasks(due_ms) WHERE state = 'running' AND applied = 0;
CREATE INDEX IF NOT EXISTS tasks_new_guest ON tasks(new_guest) WHERE new_guest IS NOT NULL;

CREATE TABLE IF NOT EXISTS faults (
    op         TEXT PRIMARY KEY,
    count      INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    mode       TEXT NOT NULL
) WITHOUT ROWID;
"#;

/// The event log (issue 12): filled by triggers, so every writer (driver, admin commands,
/// other processes) is logged in the same transaction as its change. Run on every open
/// (`IF NOT EXISTS`), so databases created before it gain it.
pub(crate) const EVENTS: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms    INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    guest_id INTEGER NOT NULL,
    name     TEXT NOT NULL,
    snapshot TEXT,
    native   TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS ev_guest_insert AFTER INSERT ON guests WHEN NEW.visible = 1 BEGIN
    INSERT INTO events (at_ms, kind, guest_id, name, native)
    VALUES (CAST(unixepoch('subsec') * 1000 AS INTEGER), 'vm_created', NEW.id, NEW.name, 'insert');
END;
CREATE TRIGGER IF NOT EXISTS ev_guest_visible AFTER UPDATE OF visible ON guests
    WHEN OLD.visible = 0 AND NEW.visible = 1 BEGIN
    INSERT INTO events (at_ms, kind, guest_id, name, native)
    VALUES (CAST(unixepoch('subsec') * 1000 AS INTEGER), 'vm_created', NEW.id, NEW.name, 'visible');
END;
CREATE TRIGGER IF NOT EXISTS ev_guest_delete AFTER DELETE ON guests WHEN OLD.visible = 1 BEGIN
    INSERT INTO events (at_ms, kind, guest_id, name, native)
    VALUES (CAST(unixepoch('subsec') * 1000 AS INTEGER), 'vm_deleted', OLD.id, OLD.name, 'delete');
END;
CREATE TRIGGER IF NOT EXISTS ev_guest_power AFTER UPDATE OF power ON guests
    WHEN NEW.visible = 1 AND OLD.power <> NEW.power BEGIN
    INSERT INTO events (at_ms, kind, guest_id, name, native)
    SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER),
           CASE WHEN NEW.power IN ('powered_on', 'powering_on') THEN 'vm_powered_on'
                WHEN NEW.power IN ('suspended', 'suspending') THEN 'vm_suspended'
                ELSE 'vm_powered_off' END,
           NEW.id, NEW.name, 'power:' || NEW.power;
END;
CREATE TRIGGER IF NOT EXISTS ev_guest_template AFTER UPDATE OF is_template ON guests
    WHEN NEW.visible = 1 AND OLD.is_template <> NEW.is_template BEGIN
    INSERT INTO events (at_ms, kind, guest_id, name, native)
    VALUES (CAST(unixepoch('subsec') * 1000 AS INTEGER),
            CASE WHEN NEW.is_template THEN 'template_converted' ELSE 'vm_converted' END, NEW.id, NEW.name, 'convert');
END;
CREATE TRIGGER IF NOT EXISTS ev_snapshot_insert AFTER INSERT ON snapshots BEGIN
    INSERT INTO events (at_ms, kind, guest_id, name, snapshot, native)
    SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER), 'snapshot_created', g.id, g.name, NEW.name, 'snapshot'
    FROM guests g WHERE g.id = NEW.guest_id AND g.visible = 1;
END;
CREATE TRIGGER IF NOT EXISTS ev_snapshot_delete AFTER DELETE ON snapshots BEGIN
    INSERT INTO events (at_ms, kind, guest_id, name, snapshot, native)
    SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER), 'snapshot_removed', g.id, g.name, OLD.name, 'snapshot'
    FROM guests g WHERE g.id = OLD.guest_id AND g.visible = 1;
END;
CREATE TRIGGER IF NOT EXISTS ev_revert AFTER UPDATE OF applied ON tasks
    WHEN NEW.op = 'revert' AND OLD.applied = 0 AND NEW.applied = 1 BEGIN
    INSERT INTO events (at_ms, kind, guest_id, name, snapshot, native)
    SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER), 'snapshot_reverted', g.id, g.name,
           json_extract(NEW.params, '$.name'), 'revert'
    FROM guests g WHERE g.id = NEW.guest_id;
END;
"#;

/// Deletes every row (used by `polyvisor sim reset`); keeps persisted timing.
pub(crate) const CLEAR: &str = r#"
DELETE FROM guests;
DELETE FROM nics;
DELETE FROM macs_issued;
DELETE FROM snapshots;
DELETE FROM tasks;
DELETE FROM faults;
DELETE FROM subnets;
DELETE FROM events;
DELETE FROM meta WHERE key NOT IN ('task_ms', 'boot_ms');
"#;
