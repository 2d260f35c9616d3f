//! `kindling run --config FILE`: TOML, every key optional, unknown keys
//! rejected with the key's name, so a typo never silently does nothing.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9500";
pub const DEFAULT_DATA_DIR: &str = "./kindling-data";

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub api: ApiConfig,
    pub storage: StorageConfig,
    pub capture: CaptureConfig,
    pub requests: RequestsConfig,
    pub profiling: ProfilingConfig,
    pub traceprof: TraceprofConfig,
}

/// `[traceprof]`: which server requests keep a trace-profile.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TraceprofConfig {
    pub enabled: bool,
    /// The sampling window: per (workload, protocol, endpoint) and window...
    pub window: String,
    /// ...up to this many failed requests (bottom-k by trace-id hash),
    pub errors: usize,
    /// the slowest this many of the slow ones (`[requests.slow_ms]`),
    pub slow: usize,
    /// and this many of the others as a baseline.
    pub baseline: usize,
    /// Profiles kept per window in all (every key's first before anyone's second).
    pub max_per_window: usize,
    /// Keys (workload, protocol, endpoint) considered per window.
    pub max_keys: usize,
    /// Disk budget per window: profiles beyond it are not stored (counted).
    pub max_mb_per_window: u64,
    /// Time shown before and after each request.
    pub edge: String,
    /// Delay between a request's end and its profile (its threads' last
    /// slices arrive when they next run).
    pub settle: String,
    /// Server processes followed at once.
    pub follow_processes: usize,
    /// Threads shown per profile.
    pub max_threads: usize,
    /// Slices shown per profile (the nearest to the request are kept).
    pub max_slices: usize,
}

impl Default for TraceprofConfig {
    fn default() -> Self {
        let d = kindling_traceprof::TraceProfConfig::default();
        let s = d.sampler;
        TraceprofConfig {
            enabled: d.enabled,
            window: "60s".into(),
            errors: s.errors,
            slow: s.slow,
            baseline: s.baseline,
            max_per_window: s.max_per_window,
            max_keys: s.max_keys,
            max_mb_per_window: d.max_bytes_per_window / (1024 * 1024),
            edge: "20ms".into(),
            settle: "1s".into(),
            follow_processes: d.follow_processes,
            max_threads: d.max_threads,
            max_slices: d.max_slices,
        }
    }
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProfilingConfig {
    /// On-CPU samples per second per CPU of the processes being profiled.
    pub sample_hz: u32,
    /// How long thread timelines (slices, samples) are kept in memory.
    pub retention: String,
    /// Threads followed at once at most (kernel state).
    pub max_threads: u32,
}

impl Default for ProfilingConfig {
    fn default() -> Self {
        ProfilingConfig { sample_hz: 99, retention: "2m".into(), max_threads: 16_384 }
    }
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RequestsConfig {
    /// Per-protocol slow thresholds in milliseconds (`[requests.slow_ms]`, keys
    /// http, http2, grpc, mysql, postgresql, redis, kafka, dns, memcached).
    pub slow_ms: kindling_requests::SlowThresholds,
    /// A request with no response after this long is reported as `timeout`.
    pub response_timeout: String,
    /// Request records kept in memory for /api/v1/requests.
    pub recent: usize,
}

impl Default for RequestsConfig {
    fn default() -> Self {
        RequestsConfig {
            slow_ms: kindling_requests::SlowThresholds::default(),
            response_timeout: "30s".into(),
            recent: 10_000,
        }
    }
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Where the HTTP API, UI and /metrics listen.
    pub listen: SocketAddr,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { listen: DEFAULT_LISTEN.parse().expect("valid default address") }
    }
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// Stored requests, rollups and trace-profiles older than this are deleted.
    pub retention: String,
    /// The store (database and its log) is kept under this size; the oldest
    /// data goes first.
    pub max_size_mb: u64,
    /// Normal requests kept per endpoint, side and edge each second (slow
    /// and failed ones are all kept); every request counts in the rollups.
    pub requests_per_endpoint_per_second: u32,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            retention: "7d".into(),
            max_size_mb: 1024,
            requests_per_endpoint_per_second: 10,
        }
    }
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Bytes of payload head captured per send/receive (0-4096).
    pub snaplen: u32,
    /// Only these processes (and descendants); empty: all.
    pub pids: Vec<u32>,
    /// Only sockets with these ports; empty: all.
    pub ports: Vec<u16>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        // Large enough for pipelined batches of small commands (redis -P 16).
        CaptureConfig { snaplen: 1024, pids: Vec::new(), ports: Vec::new() }
    }
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let cfg: Config = toml::from_str(text).map_err(|e| e.message().to_string())?;
        if cfg.capture.snaplen > 4096 {
            return Err(format!("capture.snaplen {} is larger than 4096", cfg.capture.snaplen));
        }
        kindling_api::params::parse_duration(&cfg.requests.response_timeout)
            .map_err(|e| format!("requests.response_timeout: {e}"))?;
        let keep = kindling_api::params::parse_duration(&cfg.storage.retention)
            .map_err(|e| format!("storage.retention: {e}"))?;
        if keep.as_secs() < 60 {
            return Err(format!("storage.retention {:?} is shorter than a minute", cfg.storage.retention));
        }
        if cfg.storage.max_size_mb < 1 {
            return Err("storage.max_size_mb must be at least 1".into());
        }
        if !(1..=10_000).contains(&cfg.profiling.sample_hz) {
            return Err(format!("profiling.sample_hz {} is not between 1 and 10000", cfg.profiling.sample_hz));
        }
        kindling_api::params::parse_duration(&cfg.profiling.retention)
            .map_err(|e| format!("profiling.retention: {e}"))?;
        if cfg.profiling.max_threads < 1 {
            return Err("profiling.max_threads must be at least 1".into());
        }
        cfg.traceprof_config()?;
        Ok(cfg)
    }

    /// The store settings this configuration asks for.
    pub fn store(&self) -> kindling_store::StoreConfig {
        let mut s = kindling_store::StoreConfig::new(&self.storage.data_dir);
        if let Ok(d) = kindling_api::params::parse_duration(&self.storage.retention) {
            s.max_age = d;
        }
        s.max_size_bytes = self.storage.max_size_mb.saturating_mul(1024 * 1024);
        s.requests_per_endpoint_per_second = self.storage.requests_per_endpoint_per_second;
        s
    }

    /// The sched module's settings (following no process until asked).
    pub fn sched(&self) -> kindling_probe::SchedConfig {
        kindling_probe::SchedConfig {
            sample_hz: self.profiling.sample_hz,
            max_threads: self.profiling.max_threads,
            ..kindling_probe::SchedConfig::default()
        }
    }

    /// What the pipeline keeps for profiling.
    pub fn profiling(&self) -> kindling_profile::Profiling {
        let mut t = kindling_profile::TimelineConfig::default();
        if let Ok(d) = kindling_api::params::parse_duration(&self.profiling.retention) {
            t.retention_ns = d.as_nanos() as u64;
        }
        kindling_profile::Profiling::new(t, self.profiling.sample_hz)
    }

    /// `[traceprof]` as the engine's settings, or what is wrong with it.
    pub fn traceprof_config(&self) -> Result<kindling_traceprof::TraceProfConfig, String> {
        let t = &self.traceprof;
        let dur = |key: &str, v: &str| {
            kindling_api::params::parse_duration(v)
                .map(|d| d.as_nanos() as u64)
                .map_err(|e| format!("traceprof.{key}: {e}"))
        };
        let window_ns = dur("window", &t.window)?;
        if window_ns < 1_000_000_000 {
            return Err(format!("traceprof.window {:?} is shorter than a second", t.window));
        }
        let settle_ns = dur("settle", &t.settle)?;
        if settle_ns > 4_000_000_000 {
            return Err(format!("traceprof.settle {:?} is longer than 4s (profiles must show within 5s)", t.settle));
        }
        if t.max_per_window < 1 || t.max_keys < 1 || t.follow_processes < 1 || t.max_threads < 1 || t.max_slices < 1 {
            return Err(
                "traceprof.max_per_window, max_keys, follow_processes, max_threads and max_slices must be at least 1".into()
            );
        }
        Ok(kindling_traceprof::TraceProfConfig {
            enabled: t.enabled,
            sampler: kindling_traceprof::SamplerConfig {
                window_ns,
                errors: t.errors,
                slow: t.slow,
                baseline: t.baseline,
                max_per_window: t.max_per_window,
                max_keys: t.max_keys,
                ..Default::default()
            },
            edge_ns: dur("edge", &t.edge)?,
            settle_ns,
            follow_processes: t.follow_processes,
            max_bytes_per_window: t.max_mb_per_window.saturating_mul(1024 * 1024),
            max_threads: t.max_threads,
            max_slices: t.max_slices,
            ..Default::default()
        })
    }

    /// The pipeline settings this configuration asks for.
    pub fn pipeline(&self) -> kindling_pipeline::PipelineConfig {
        let mut p = kindling_pipeline::PipelineConfig::default();
        if let Ok(t) = self.traceprof_config() {
            p.traceprof = t;
        }
        p.tracker.slow = self.requests.slow_ms.clone();
        if let Ok(d) = kindling_api::params::parse_duration(&self.requests.response_timeout) {
            p.tracker.response_timeout_ns = d.as_nanos() as u64;
        }
        p.recent_requests = self.requests.recent;
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_is_the_defaults() {
        let example = include_str!("../../../docs/kindling.example.toml");
        assert_eq!(Config::parse(example).unwrap(), Config::default());
    }

    #[test]
    fn profiling_section() {
        let c = Config::parse("[profiling]\nsample_hz = 49\nretention = \"30s\"\n").unwrap();
        assert_eq!(c.sched().sample_hz, 49);
        assert_eq!(c.profiling().sample_period_ns, 1_000_000_000 / 49);
        assert!(Config::parse("[profiling]\nsample_hz = 0\n").is_err());
        assert!(Config::parse("[profiling]\nretention = \"soon\"\n").is_err());
        assert!(Config::parse("[profiling]\nhz = 5\n").is_err());
    }

    #[test]
    fn traceprof_section() {
        let c = Config::parse("[traceprof]\nslow = 50\nwindow = \"2m\"\nsettle = \"500ms\"\n").unwrap();
        let t = c.pipeline().traceprof;
        assert_eq!((t.sampler.slow, t.sampler.window_ns, t.settle_ns), (50, 120_000_000_000, 500_000_000));
        assert_eq!(t.max_bytes_per_window, 16 * 1024 * 1024);
        let err = |text: &str| Config::parse(text).unwrap_err();
        assert!(err("[traceprof]\nsettle = \"10s\"\n").contains("traceprof.settle"));
        assert!(err("[traceprof]\nwindow = \"100ms\"\n").contains("traceprof.window"));
        assert!(err("[traceprof]\nedge = \"x\"\n").contains("traceprof.edge"));
        assert!(err("[traceprof]\nmax_per_window = 0\n").contains("max_per_window"));
        assert!(err("[traceprof]\nslowest = 1\n").contains("slowest"));
    }

    #[test]
    fn empty_config_is_the_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(Config::default().api.listen.to_string(), "127.0.0.1:9500");
    }

    #[test]
    fn values_and_errors() {
        let c = Config::parse("[api]\nlisten = \"0.0.0.0:9600\"\n[capture]\nports = [80]\n").unwrap();
        assert_eq!(c.api.listen.port(), 9600);
        assert_eq!(c.capture.ports, vec![80]);
        let e = Config::parse("[capture]\nsnaplenn = 3\n").unwrap_err();
        assert!(e.contains("snaplenn"), "{e}");
        let e = Config::parse("[api]\nlisten = \"nope\"\n").unwrap_err();
        assert!(!e.is_empty());
        let c = Config::parse("[requests.slow_ms]\nhttp = 250\n").unwrap();
        assert_eq!(c.requests.slow_ms.http, 250);
        assert_eq!(c.requests.slow_ms.redis, 100);
        assert!(Config::parse("[requests.slow_ms]\nhtp = 250\n").is_err());
        assert!(Config::parse("[requests]\nresponse_timeout = \"soon\"\n").is_err());
        assert!(Config::parse("[capture]\nsnaplen = 9000\n").is_err());
        let c = Config::parse("[storage]\nretention = \"2d\"\nmax_size_mb = 50\n").unwrap();
        assert_eq!(c.store().max_age.as_secs(), 2 * 86400);
        assert_eq!(c.store().max_size_bytes, 50 * 1024 * 1024);
        assert!(Config::parse("[storage]\nretention = \"soon\"\n").unwrap_err().contains("storage.retention"));
        assert!(Config::parse("[storage]\nretention = \"5s\"\n").is_err());
        assert!(Config::parse("[storage]\nmax_size_mb = 0\n").is_err());
    }
}
