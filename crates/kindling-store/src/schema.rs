//! The database's tables and connection settings.

use crate::{sqlite_err, StoreError};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// Bumped when the tables change; a newer file is refused, never rewritten.
pub const VERSION: i64 = 1;

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS requests (
    id          INTEGER PRIMARY KEY,
    end_ts_ns   INTEGER NOT NULL,
    start_ts_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    protocol    TEXT NOT NULL,
    side        TEXT NOT NULL,
    src_node    TEXT NOT NULL,
    dst_node    TEXT NOT NULL,
    dst_port    INTEGER NOT NULL,
    endpoint    TEXT NOT NULL,
    is_error    INTEGER NOT NULL,
    is_slow     INTEGER NOT NULL,
    trace_id    TEXT NOT NULL,
    record      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_end ON requests(end_ts_ns);
CREATE INDEX IF NOT EXISTS requests_edge ON requests(src_node, dst_node, end_ts_ns);
CREATE INDEX IF NOT EXISTS requests_dst ON requests(dst_node, end_ts_ns);
CREATE INDEX IF NOT EXISTS requests_trace ON requests(trace_id) WHERE trace_id <> '';

CREATE TABLE IF NOT EXISTS edge_minutes (
    ts_ns            INTEGER NOT NULL,
    src              TEXT NOT NULL,
    dst              TEXT NOT NULL,
    protocol         TEXT NOT NULL,
    dst_port         INTEGER NOT NULL,
    requests         INTEGER NOT NULL,
    errors           INTEGER NOT NULL,
    slow             INTEGER NOT NULL,
    bytes_sent       INTEGER NOT NULL,
    bytes_received   INTEGER NOT NULL,
    avg_ms           REAL NOT NULL,
    p50_ms           REAL NOT NULL,
    p95_ms           REAL NOT NULL,
    p99_ms           REAL NOT NULL,
    max_ms           REAL NOT NULL,
    retransmits      INTEGER,
    rtt_ms           REAL,
    resets           INTEGER,
    drops            INTEGER,
    connect_failures INTEGER,
    PRIMARY KEY (ts_ns, src, dst, protocol, dst_port)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS edge_minutes_edge ON edge_minutes(src, dst, ts_ns);

CREATE TABLE IF NOT EXISTS node_minutes (
    ts_ns     INTEGER NOT NULL,
    node      TEXT NOT NULL,
    direction TEXT NOT NULL,
    requests  INTEGER NOT NULL,
    errors    INTEGER NOT NULL,
    slow      INTEGER NOT NULL,
    p99_ms    REAL,
    PRIMARY KEY (ts_ns, node, direction)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS node_minutes_node ON node_minutes(node, direction, ts_ns);

CREATE TABLE IF NOT EXISTS nodes (
    id         TEXT PRIMARY KEY,
    last_ts_ns INTEGER NOT NULL,
    node       TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS profiles (
    id           TEXT PRIMARY KEY,
    start_ts_ns  INTEGER NOT NULL,
    trace_id     TEXT NOT NULL,
    endpoint     TEXT NOT NULL,
    duration_ns  INTEGER NOT NULL,
    kept_because TEXT NOT NULL,
    profile      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS profiles_start ON profiles(start_ts_ns);
CREATE INDEX IF NOT EXISTS profiles_trace ON profiles(trace_id);
";

/// The writer's connection: WAL (atomic commits, readers never block it),
/// `synchronous = NORMAL` (a crash of the process loses nothing committed;
/// only a power loss may lose the last commits, never consistency),
/// incremental auto-vacuum so retention can give space back.
pub fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let e = sqlite_err(path);
    let conn = Connection::open(path).map_err(&e)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(&e)?;
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(&e)?;
    if found > VERSION {
        return Err(StoreError::Version { path: path.to_path_buf(), found, known: VERSION });
    }
    // auto_vacuum only takes effect before the first table exists.
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;").map_err(&e)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(&e)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!("store {}: journal mode {mode}, not WAL", path.display());
    }
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL;
         PRAGMA journal_size_limit = 8388608;
         PRAGMA wal_autocheckpoint = 1000;",
    )
    .map_err(&e)?;
    conn.execute_batch(TABLES).map_err(&e)?;
    conn.execute_batch(&format!("PRAGMA user_version = {VERSION};")).map_err(&e)?;
    Ok(conn)
}

/// A read-only connection (WAL: it sees the last commit, never blocks the writer).
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let e = sqlite_err(path);
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(&e)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(&e)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    #[test]
    fn new_databases_vacuum_incrementally_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::open_writer(&dir.path().join("x.db")).unwrap();
        let av: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap();
        assert_eq!(av, 2, "incremental");
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }
}
