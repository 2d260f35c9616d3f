//! The command line: raw flags parsed by clap into these types; values are
//! validated while parsing (durations, ports), so commands never see bad input.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "kindling",
    version,
    about = "eBPF observability: what your services do, from the kernel up to the code stack",
    long_about = "Kindling watches socket and process activity through eBPF tracepoints \
                  (no kprobes, no application changes) and turns it into events, requests, \
                  service maps and profiles.\n\nMost commands need root (or CAP_BPF and CAP_PERFMON) \
                  and a kernel >= 5.8 with BTF. `replay` works anywhere."
)]
pub struct Cli {
    /// Log level for the agent's own messages (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", env = "KINDLING_LOG")]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the agent: capture continuously, turn events into requests, RED
    /// metrics and the service map, and serve them over HTTP: /healthz,
    /// /metrics (Prometheus: request metrics and self-telemetry),
    /// /api/v1/requests and /api/v1/topology.
    Run(RunArgs),
    /// Print decoded kernel events (socket syscalls, connects, process
    /// lifecycle) as they happen; optionally record them to a capture file.
    Capture(CaptureArgs),
    /// Print completed requests as they happen: L7 protocol, endpoint, status,
    /// latency and its network breakdown, from both ends of each connection.
    Requests(RequestsArgs),
    /// Feed a capture file through the analysis pipeline and print its request
    /// records (deterministic); with --events, print its events as `capture` did.
    Replay(ReplayArgs),
    /// A flame graph of one process: on-CPU samples, off-CPU time by reason
    /// (net, file, lock, epoll, sleep, runqueue, other), or both; as folded
    /// stacks, pprof or speedscope JSON.
    Profile(crate::profile::ProfileArgs),
    /// Check that Kindling works on this host: load and attach every BPF
    /// program, drive loopback traffic, processes and CPU load in a child
    /// process, and check each kind of event arrives with sane values. One
    /// line per kernel feature, program and check; exits 1 on any failure,
    /// quoting the verifier when the kernel rejects a program.
    Selftest(SelftestArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// TOML configuration file (unknown keys are rejected). Flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address of the HTTP API [default: 127.0.0.1:9500].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory for the agent's data [default: ./kindling-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct FilterArgs {
    /// Trace only this process and its descendants (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Trace only sockets with this port at either end (repeatable).
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// Stop after this long (e.g. 500ms, 5s, 2m); default: until Ctrl-C.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

#[derive(Args, Debug)]
pub struct CaptureArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also print payload heads (secrets masked), escaped.
    #[arg(long)]
    pub payload: bool,
    /// Bytes of payload captured per send/receive (0-4096).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(0..=4096))]
    pub snaplen: u32,
    /// Record the events to FILE (see docs/CAPTURE_FORMAT.md) for `kindling replay`.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Do not print events (useful with --record).
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct RequestsArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Bytes of payload captured per send/receive (0-4096). The default fits
    /// pipelined batches of small commands (redis -P 16) in one head.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(0..=4096))]
    pub snaplen: u32,
    /// Also record the raw events to FILE, for `kindling replay`.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// A capture file written by `kindling capture --record` or `requests --record`.
    pub file: PathBuf,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print the recorded events (as `capture` printed them) instead of requests.
    #[arg(long)]
    pub events: bool,
    /// With --events: also print payload heads, escaped.
    #[arg(long)]
    pub payload: bool,
}

#[derive(Args, Debug)]
pub struct SelftestArgs {
    /// Print the whole verifier log when a program is rejected (default: its last 40 lines).
    #[arg(long, short)]
    pub verbose: bool,
    /// Internal: be the workload the selftest observes.
    #[arg(long, hide = true)]
    pub workload: bool,
    /// Internal: exit at once with this status (the workload's child).
    #[arg(long, hide = true, value_name = "CODE")]
    pub exit_with: Option<i32>,
}

/// `500ms`, `5s`, `2m`, `1h`, `250us`, `10ns`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    kindling_api::params::parse_duration(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
