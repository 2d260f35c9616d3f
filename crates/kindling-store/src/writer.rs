//! The writer thread: drains a bounded queue and commits in batches.

use crate::retention::{self, RetentionReport};
use crate::{sqlite_err, Counters, StoreConfig, StoreError, StoreStats};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use rusqlite::{params, Connection};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rows in one transaction at most (a burst is split in several commits).
const MAX_BATCH: usize = 8_192;

/// One kept request record.
#[derive(Clone, Debug)]
pub struct RequestRow {
    pub end_ts_ns: u64,
    pub start_ts_ns: u64,
    pub duration_ns: u64,
    pub protocol: String,
    pub side: String,
    pub src_node: String,
    pub dst_node: String,
    pub dst_port: u16,
    pub endpoint: String,
    pub is_error: bool,
    pub is_slow: bool,
    pub trace_id: String,
    /// The record as JSON (the `/api/v1/requests` shape).
    pub record: String,
}

/// One minute of one service-map edge.
#[derive(Clone, Debug, Default)]
pub struct EdgeRow {
    pub src: String,
    pub dst: String,
    pub protocol: String,
    pub dst_port: u16,
    pub requests: u64,
    pub errors: u64,
    pub slow: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub avg_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub retransmits: Option<u64>,
    pub rtt_ms: Option<f64>,
    pub resets: Option<u64>,
    pub drops: Option<u64>,
    pub connect_failures: Option<u64>,
}

/// One minute of one node, summed over its inbound or outbound edges.
#[derive(Clone, Debug, Default)]
pub struct NodeRow {
    pub node: String,
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    pub requests: u64,
    pub errors: u64,
    pub slow: u64,
    pub p99_ms: Option<f64>,
}

/// A minute of the service map.
#[derive(Clone, Debug, Default)]
pub struct Rollup {
    /// The minute's start.
    pub ts_ns: u64,
    pub edges: Vec<EdgeRow>,
    pub nodes: Vec<NodeRow>,
    /// (node id, node as JSON): display names of the nodes seen.
    pub node_info: Vec<(String, String)>,
}

/// A kept trace-profile (the `/api/v1/profiles/{id}` JSON and its index fields).
#[derive(Clone, Debug)]
pub struct ProfileRow {
    pub id: String,
    pub start_ts_ns: u64,
    pub trace_id: String,
    pub endpoint: String,
    pub duration_ns: u64,
    pub kept_because: String,
    pub profile: String,
}

pub(crate) enum Msg {
    Request(Box<RequestRow>),
    Rollup(Box<Rollup>),
    Profile(Box<ProfileRow>),
    /// A kept trace-profile displaced by a later request of its window.
    ProfileRemove(String),
    Flush(Sender<()>),
    Retention(Option<u64>, Sender<RetentionReport>),
    Stop,
}

impl Msg {
    fn rows(&self) -> usize {
        match self {
            Msg::Request(_) | Msg::Profile(_) | Msg::ProfileRemove(_) => 1,
            Msg::Rollup(r) => r.edges.len() + r.nodes.len() + r.node_info.len(),
            _ => 0,
        }
    }
}

/// Where writes go: cheap to clone, never blocks (a full queue drops the
/// write and counts it).
#[derive(Clone)]
pub struct Handle {
    tx: Sender<Msg>,
    pub(crate) counters: Arc<Counters>,
}

impl Handle {
    fn send(&self, m: Msg) -> bool {
        match self.tx.try_send(m) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    pub fn request(&self, row: RequestRow) -> bool {
        self.send(Msg::Request(Box::new(row)))
    }

    pub fn rollup(&self, r: Rollup) -> bool {
        self.send(Msg::Rollup(Box::new(r)))
    }

    pub fn profile_row(&self, p: ProfileRow) -> bool {
        self.send(Msg::Profile(Box::new(p)))
    }

    /// Forgets a kept trace-profile (displaced by sampling).
    pub fn remove_profile(&self, id: &str) -> bool {
        self.send(Msg::ProfileRemove(id.to_string()))
    }

    /// Keeps a trace-profile given in the `/api/v1/profiles/{id}` shape
    /// (PRODUCT.md): `id`, `trace_id`, `kept_because`, `request` {`endpoint`,
    /// `start_ts_ns`, `duration_ns`}. False when it has no `id` or the queue is full.
    pub fn profile<T: serde::Serialize>(&self, profile: &T) -> bool {
        let Ok(v) = serde_json::to_value(profile) else { return false };
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let id = match &v["id"] {
            serde_json::Value::String(s) if !s.is_empty() => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return false,
        };
        let req = &v["request"];
        self.profile_row(ProfileRow {
            id,
            start_ts_ns: req["start_ts_ns"].as_u64().unwrap_or(0),
            trace_id: s(&v["trace_id"]),
            endpoint: s(&req["endpoint"]),
            duration_ns: req["duration_ns"].as_u64().unwrap_or(0),
            kept_because: s(&v["kept_because"]),
            profile: v.to_string(),
        })
    }

    /// Waits (up to 30 s) until everything queued before the call is committed.
    pub fn flush(&self) {
        let (tx, rx) = bounded(1);
        if self.tx.send_timeout(Msg::Flush(tx), Duration::from_secs(30)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(30));
        }
    }

    /// Runs retention at `now_ns` (default: the wall clock) and waits for it.
    pub fn run_retention(&self, now_ns: Option<u64>) -> Option<RetentionReport> {
        let (tx, rx) = bounded(1);
        self.tx.send_timeout(Msg::Retention(now_ns, tx), Duration::from_secs(30)).ok()?;
        rx.recv_timeout(Duration::from_secs(120)).ok()
    }

    pub(crate) fn stop(&self) {
        let _ = self.tx.send_timeout(Msg::Stop, Duration::from_secs(10));
    }

    pub fn stats(&self) -> StoreStats {
        self.counters.snapshot()
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }
}

pub(crate) fn start(
    conn: Connection,
    cfg: StoreConfig,
    counters: Arc<Counters>,
) -> Result<(Handle, std::thread::JoinHandle<()>), StoreError> {
    let (tx, rx) = bounded(cfg.queue.max(1));
    let handle = Handle { tx, counters: counters.clone() };
    let path = cfg.db_path();
    let thread = std::thread::Builder::new()
        .name("kindling-store".into())
        .spawn(move || Writer { conn, cfg, counters, batch: Vec::new(), last_error: None }.run(rx))
        .map_err(|source| StoreError::Io { path, source })?;
    Ok((handle, thread))
}

struct Writer {
    conn: Connection,
    cfg: StoreConfig,
    counters: Arc<Counters>,
    batch: Vec<Msg>,
    last_error: Option<Instant>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut first_at: Option<Instant> = None;
        let mut last_retention = Instant::now();
        // Retention soon after start: a restart after a long stop cleans up at once.
        let mut retention_due = Duration::from_secs(5).min(self.cfg.retention_interval);
        loop {
            let wait = match first_at {
                Some(t) => self.cfg.commit_interval.saturating_sub(t.elapsed()),
                None => Duration::from_millis(500),
            };
            match rx.recv_timeout(wait) {
                Ok(Msg::Flush(ack)) => {
                    self.commit();
                    first_at = None;
                    let _ = ack.send(());
                }
                Ok(Msg::Retention(now, ack)) => {
                    self.commit();
                    first_at = None;
                    let _ = ack.send(self.retention(now));
                    last_retention = Instant::now();
                }
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    self.commit();
                    let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
                    return;
                }
                Ok(m) => {
                    self.batch.push(m);
                    first_at.get_or_insert_with(Instant::now);
                    if self.batch.len() >= MAX_BATCH {
                        self.commit();
                        first_at = None;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if first_at.is_some_and(|t| t.elapsed() >= self.cfg.commit_interval) {
                self.commit();
                first_at = None;
            }
            if last_retention.elapsed() >= retention_due {
                self.commit();
                first_at = None;
                self.retention(None);
                last_retention = Instant::now();
                retention_due = self.cfg.retention_interval;
            }
        }
    }

    fn retention(&mut self, now: Option<u64>) -> RetentionReport {
        let now = now.unwrap_or_else(crate::now_ns);
        let path = self.cfg.db_path();
        match retention::apply(&self.conn, &path, self.cfg.max_age, self.cfg.max_size_bytes, now) {
            Ok(r) => {
                self.counters.expired.fetch_add(r.deleted, Ordering::Relaxed);
                self.counters.size_bytes.store(r.size_bytes, Ordering::Relaxed);
                r
            }
            Err(e) => {
                self.error(&e);
                RetentionReport::default()
            }
        }
    }

    fn commit(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let rows: usize = batch.iter().map(Msg::rows).sum();
        match write(&self.conn, &batch) {
            Ok(()) => {
                self.counters.written.fetch_add(rows as u64, Ordering::Relaxed);
            }
            Err(e) => {
                self.counters.write_errors.fetch_add(rows as u64, Ordering::Relaxed);
                self.error(&sqlite_err(&self.cfg.db_path())(e));
            }
        }
        self.batch = batch;
        self.batch.clear();
    }

    /// Logs at most one store error a minute (a full disk fails every batch).
    fn error(&mut self, e: &dyn std::fmt::Display) {
        if self.last_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            tracing::warn!("{e} (writes are dropped and counted until it recovers)");
            self.last_error = Some(Instant::now());
        }
    }
}

fn write(conn: &Connection, batch: &[Msg]) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut req = tx.prepare_cached(
            "INSERT INTO requests (end_ts_ns, start_ts_ns, duration_ns, protocol, side, src_node, dst_node,
             dst_port, endpoint, is_error, is_slow, trace_id, record) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)",
        )?;
        let mut edge = tx.prepare_cached(
            "INSERT OR REPLACE INTO edge_minutes (ts_ns, src, dst, protocol, dst_port, requests, errors, slow,
             bytes_sent, bytes_received, avg_ms, p50_ms, p95_ms, p99_ms, max_ms, retransmits, rtt_ms, resets, drops,
             connect_failures) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20)",
        )?;
        let mut node = tx.prepare_cached(
            "INSERT OR REPLACE INTO node_minutes (ts_ns, node, direction, requests, errors, slow, p99_ms)
             VALUES (?1,?2,?3,?4,?5,?6,?7)",
        )?;
        let mut info = tx.prepare_cached("INSERT OR REPLACE INTO nodes (id, last_ts_ns, node) VALUES (?1,?2,?3)")?;
        let mut prof = tx.prepare_cached(
            "INSERT OR REPLACE INTO profiles (id, start_ts_ns, trace_id, endpoint, duration_ns, kept_because, profile)
             VALUES (?1,?2,?3,?4,?5,?6,?7)",
        )?;
        // SQLite integers are signed: clamp so a wild timestamp cannot fail a batch.
        let i = |v: u64| v.min(i64::MAX as u64) as i64;
        for m in batch {
            match m {
                Msg::Request(r) => {
                    req.execute(params![
                        i(r.end_ts_ns),
                        i(r.start_ts_ns),
                        i(r.duration_ns),
                        r.protocol,
                        r.side,
                        r.src_node,
                        r.dst_node,
                        r.dst_port,
                        r.endpoint,
                        r.is_error,
                        r.is_slow,
                        r.trace_id,
                        r.record
                    ])?;
                }
                Msg::Rollup(r) => {
                    let ts = i(r.ts_ns);
                    for e in &r.edges {
                        edge.execute(params![
                            ts,
                            e.src,
                            e.dst,
                            e.protocol,
                            e.dst_port,
                            i(e.requests),
                            i(e.errors),
                            i(e.slow),
                            i(e.bytes_sent),
                            i(e.bytes_received),
                            e.avg_ms,
                            e.p50_ms,
                            e.p95_ms,
                            e.p99_ms,
                            e.max_ms,
                            e.retransmits.map(i),
                            e.rtt_ms,
                            e.resets.map(i),
                            e.drops.map(i),
                            e.connect_failures.map(i)
                        ])?;
                    }
                    for n in &r.nodes {
                        node.execute(params![ts, n.node, n.direction, i(n.requests), i(n.errors), i(n.slow), n.p99_ms])?;
                    }
                    for (id, json) in &r.node_info {
                        info.execute(params![id, ts, json])?;
                    }
                }
                Msg::Profile(p) => {
                    prof.execute(params![
                        p.id,
                        i(p.start_ts_ns),
                        p.trace_id,
                        p.endpoint,
                        i(p.duration_ns),
                        p.kept_because,
                        p.profile
                    ])?;
                }
                Msg::ProfileRemove(id) => {
                    tx.execute("DELETE FROM profiles WHERE id = ?1", params![id])?;
                }
                Msg::Flush(_) | Msg::Retention(..) | Msg::Stop => {}
            }
        }
    }
    tx.commit()
}
