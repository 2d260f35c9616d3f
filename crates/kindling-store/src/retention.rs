//! Retention: by age, then by size (the oldest data goes first).

use rusqlite::{params, Connection};
use std::path::Path;
use std::time::Duration;

/// What one retention pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Rows deleted.
    pub deleted: u64,
    /// Data older than this is gone (ns since the epoch; 0: nothing deleted).
    pub cutoff_ns: u64,
    /// Database plus write-ahead log after the pass, bytes.
    pub size_bytes: u64,
}

/// (table, time column) of every table retention trims.
const TABLES: [(&str, &str); 5] = [
    ("requests", "end_ts_ns"),
    ("edge_minutes", "ts_ns"),
    ("node_minutes", "ts_ns"),
    ("profiles", "start_ts_ns"),
    ("nodes", "last_ts_ns"),
];

/// Bytes the database uses: its pages (after incremental vacuum, free pages
/// are returned to the file system) plus the write-ahead log.
pub fn size_bytes(conn: &Connection, path: &Path) -> u64 {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap_or(0);
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0)).unwrap_or(0);
    let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap_or(4096);
    let wal = std::fs::metadata(wal_path(path)).map(|m| m.len()).unwrap_or(0);
    ((pages - free).max(0) * page) as u64 + wal
}

fn wal_path(path: &Path) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-wal");
    p.into()
}

fn delete_before(conn: &Connection, cutoff_ns: u64) -> rusqlite::Result<u64> {
    let cutoff = cutoff_ns.min(i64::MAX as u64) as i64;
    let tx = conn.unchecked_transaction()?;
    let mut n = 0;
    for (table, col) in TABLES {
        n += tx.execute(&format!("DELETE FROM {table} WHERE {col} < ?1"), params![cutoff])? as u64;
    }
    tx.commit()?;
    Ok(n)
}

fn oldest_newest(conn: &Connection) -> rusqlite::Result<Option<(u64, u64)>> {
    let mut lo: Option<i64> = None;
    let mut hi: Option<i64> = None;
    for (table, col) in TABLES {
        let (a, b): (Option<i64>, Option<i64>) =
            conn.query_row(&format!("SELECT MIN({col}), MAX({col}) FROM {table}"), [], |r| Ok((r.get(0)?, r.get(1)?)))?;
        lo = match (lo, a) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        hi = match (hi, b) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        };
    }
    Ok(lo.zip(hi).map(|(a, b)| (a.max(0) as u64, b.max(0) as u64)))
}

/// Gives deleted pages back and empties the write-ahead log.
fn compact(conn: &Connection) -> rusqlite::Result<()> {
    // Stepped to the end: it frees pages as it is stepped.
    let mut st = conn.prepare("PRAGMA incremental_vacuum")?;
    let mut rows = st.query([])?;
    while rows.next()?.is_some() {}
    // TRUNCATE fails softly (busy) while a reader holds a snapshot: fine, next pass.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// Deletes data older than `max_age`, then the oldest tenth of what is left
/// until the database is under `max_size` (a bounded number of rounds; the
/// newest minute is always kept).
pub fn apply(
    conn: &Connection,
    path: &Path,
    max_age: Duration,
    max_size: u64,
    now_ns: u64,
) -> rusqlite::Result<RetentionReport> {
    let mut report = RetentionReport::default();
    let age_cutoff = now_ns.saturating_sub(max_age.as_nanos().min(u64::MAX as u128) as u64);
    if age_cutoff > 0 {
        report.deleted += delete_before(conn, age_cutoff)?;
        report.cutoff_ns = age_cutoff;
    }
    if report.deleted > 0 {
        compact(conn)?;
    }
    for _ in 0..40 {
        let size = size_bytes(conn, path);
        report.size_bytes = size;
        if size <= max_size {
            break;
        }
        let Some((oldest, newest)) = oldest_newest(conn)? else { break };
        let keep_from = newest.saturating_sub(60_000_000_000);
        if oldest >= keep_from {
            break;
        }
        // A tenth of the span, at least a minute, never the newest minute.
        let step = ((newest - oldest) / 10).max(60_000_000_000);
        let cutoff = oldest.saturating_add(step).min(keep_from);
        report.deleted += delete_before(conn, cutoff)?;
        report.cutoff_ns = report.cutoff_ns.max(cutoff);
        compact(conn)?;
    }
    report.size_bytes = size_bytes(conn, path);
    Ok(report)
}
