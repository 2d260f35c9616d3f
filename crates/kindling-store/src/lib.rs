//! The embedded store of `kindling run`: one SQLite file in the data
//! directory holding
//!
//! - sampled request records (every slow or failed one, a few per endpoint
//!   and second of the rest) with the service-map edge they belong to;
//! - per-minute rollups of every edge and node of the service map;
//! - kept trace-profiles.
//!
//! Writes go through a bounded queue to one writer thread that commits in
//! batches at least every [`StoreConfig::commit_interval`]; a full queue
//! drops the write and counts it. SQLite in WAL mode makes every commit
//! atomic and durable against a crash of the process, so a `kill -9` loses
//! at most the last batch and never corrupts the file. Retention deletes
//! what is older than `max_age` and then the oldest data until the file is
//! under `max_size_bytes`.
//!
//! Reads use their own connection ([`Reader`]); WAL lets them run while the
//! writer commits.

mod feed;
mod read;
mod retention;
mod sample;
mod schema;
mod writer;

pub use feed::{Feed, MINUTE_NS};
pub use read::{Order, ProfileFilter, ProfileSummary, Reader, RequestFilter};
pub use retention::RetentionReport;
pub use sample::Sampler;
pub use writer::{EdgeRow, Handle, NodeRow, ProfileRow, RequestRow, Rollup};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The file in the data directory.
pub const DB_FILE: &str = "kindling.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("store {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("store {path} was written by a newer Kindling (schema {found}, this one reads up to {known})")]
    Version { path: PathBuf, found: i64, known: i64 },
}

#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Directory of the database (created when missing).
    pub dir: PathBuf,
    /// Data older than this is deleted.
    pub max_age: Duration,
    /// The database (with its write-ahead log) is kept under this size by
    /// deleting the oldest data.
    pub max_size_bytes: u64,
    /// Normal (not slow, not failed) request records kept per endpoint,
    /// side and edge each second; slow and failed ones are all kept (up to
    /// [`StoreConfig::max_kept_per_second`]).
    pub requests_per_endpoint_per_second: u32,
    /// All request records kept per second at most.
    pub max_kept_per_second: u32,
    /// Writes waiting for the writer thread at most (beyond: dropped, counted).
    pub queue: usize,
    /// A batch is committed at least this often.
    pub commit_interval: Duration,
    /// How often retention runs.
    pub retention_interval: Duration,
}

impl StoreConfig {
    pub fn new(dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            dir: dir.into(),
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_size_bytes: 1024 * 1024 * 1024,
            requests_per_endpoint_per_second: 10,
            max_kept_per_second: 2_000,
            // ~1 KiB a request row: at most ~8 MiB waiting.
            queue: 8_192,
            commit_interval: Duration::from_millis(500),
            retention_interval: Duration::from_secs(30),
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.join(DB_FILE)
    }
}

/// Counters of the store, for self-telemetry.
#[derive(Debug, Default)]
pub struct Counters {
    /// Writes dropped because the writer's queue was full.
    pub queue_full: AtomicU64,
    /// Request records not kept by sampling (they still count in the rollups).
    pub sampled_out: AtomicU64,
    /// Writes lost because SQLite refused a batch (disk full, I/O error).
    pub write_errors: AtomicU64,
    /// Rows committed.
    pub written: AtomicU64,
    /// Rows deleted by retention.
    pub expired: AtomicU64,
    /// Size of the database and its log after the last retention, bytes.
    pub size_bytes: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    pub queue_full: u64,
    pub sampled_out: u64,
    pub write_errors: u64,
    pub written: u64,
    pub expired: u64,
    pub size_bytes: u64,
}

impl Counters {
    pub fn snapshot(&self) -> StoreStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreStats {
            queue_full: g(&self.queue_full),
            sampled_out: g(&self.sampled_out),
            write_errors: g(&self.write_errors),
            written: g(&self.written),
            expired: g(&self.expired),
            size_bytes: g(&self.size_bytes),
        }
    }
}

/// The open store: the writer thread and a reader.
pub struct Store {
    cfg: StoreConfig,
    handle: Handle,
    reader: Arc<Reader>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Store {
    /// Opens (or creates) the database, checks it and starts the writer.
    pub fn open(cfg: StoreConfig) -> Result<Store, StoreError> {
        std::fs::create_dir_all(&cfg.dir).map_err(|source| StoreError::Io { path: cfg.dir.clone(), source })?;
        let path = cfg.db_path();
        let conn = schema::open_writer(&path)?;
        let counters = Arc::new(Counters::default());
        counters.size_bytes.store(retention::size_bytes(&conn, &path), Ordering::Relaxed);
        let reader = Arc::new(Reader::open(&path)?);
        let (handle, thread) = writer::start(conn, cfg.clone(), counters)?;
        Ok(Store { cfg, handle, reader, thread: Some(thread) })
    }

    pub fn path(&self) -> PathBuf {
        self.cfg.db_path()
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// Where writes go (cheap to clone, for any thread).
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    pub fn reader(&self) -> Arc<Reader> {
        self.reader.clone()
    }

    /// What the analysis thread feeds: sampling and minute rollups.
    pub fn feed(&self) -> Feed {
        Feed::new(self.handle.clone(), &self.cfg)
    }

    pub fn stats(&self) -> StoreStats {
        self.handle.stats()
    }

    /// Waits until every write queued before this call is committed.
    pub fn flush(&self) {
        self.handle.flush();
    }

    /// Runs retention now (with the wall clock) and waits for it.
    pub fn run_retention(&self) -> Option<RetentionReport> {
        self.handle.run_retention(None)
    }

    /// Commits what is queued and stops the writer.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.handle.stop();
            let _ = t.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Wall-clock time in nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn sqlite_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite { path: path.to_path_buf(), source }
}
