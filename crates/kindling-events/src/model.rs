//! The event model every later stage consumes: what happened, to which
//! process and thread, when (wall clock, nanoseconds since the Unix epoch).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// One thing the kernel (or the start-up scan of /proc) told us.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock time, ns since the Unix epoch. For syscalls: the syscall's end.
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    #[serde(default)]
    pub cpu: u32,
    pub comm: Comm,
    pub body: EventBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EventBody {
    Socket(SocketEvent),
    Exec(ExecEvent),
    Exit(ExitEvent),
    Fork(ForkEvent),
    Rename(RenameEvent),
    /// A process that existed when capture started (from /proc).
    ProcessSnapshot(ProcessInfo),
    /// A socket that was open when capture started (from /proc).
    SocketSnapshot(SocketSnapshot),
    /// TCP health from the tcp module (src/tcp.rs).
    Tcp(crate::tcp::TcpEvent),
    /// Scheduler and sampling events from the sched module (src/sched.rs).
    Sched(crate::sched::SchedEvent),
}

impl Event {
    /// The `kind` name used in JSON output and telemetry labels.
    pub fn kind(&self) -> &'static str {
        match &self.body {
            EventBody::Socket(s) => s.op.name(),
            EventBody::Exec(_) => "exec",
            EventBody::Exit(_) => "exit",
            EventBody::Fork(_) => "fork",
            EventBody::Rename(_) => "rename",
            EventBody::ProcessSnapshot(_) => "process_snapshot",
            EventBody::SocketSnapshot(_) => "socket_snapshot",
            EventBody::Tcp(t) => t.kind.name(),
            EventBody::Sched(s) => s.kind_name(),
        }
    }

    pub fn as_socket(&self) -> Option<&SocketEvent> {
        match &self.body {
            EventBody::Socket(s) => Some(s),
            _ => None,
        }
    }
}

/// What a socket event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SocketOp {
    Connect,
    /// A non-blocking connect's handshake finished (successfully or not).
    ConnectDone,
    Accept,
    Send,
    Recv,
    Close,
}

impl SocketOp {
    pub fn name(self) -> &'static str {
        match self {
            SocketOp::Connect => "connect",
            SocketOp::ConnectDone => "connect_done",
            SocketOp::Accept => "accept",
            SocketOp::Send => "send",
            SocketOp::Recv => "recv",
            SocketOp::Close => "close",
        }
    }
}

/// The syscall an event came from (x86-64 names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Syscall {
    Read,
    Write,
    Readv,
    Writev,
    Sendto,
    Recvfrom,
    Sendmsg,
    Recvmsg,
    Sendmmsg,
    Recvmmsg,
    Sendfile,
    Connect,
    Accept,
    Accept4,
    Close,
}

impl Syscall {
    pub const ALL: [Syscall; 15] = [
        Syscall::Read,
        Syscall::Write,
        Syscall::Readv,
        Syscall::Writev,
        Syscall::Sendto,
        Syscall::Recvfrom,
        Syscall::Sendmsg,
        Syscall::Recvmsg,
        Syscall::Sendmmsg,
        Syscall::Recvmmsg,
        Syscall::Sendfile,
        Syscall::Connect,
        Syscall::Accept,
        Syscall::Accept4,
        Syscall::Close,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Syscall::Read => "read",
            Syscall::Write => "write",
            Syscall::Readv => "readv",
            Syscall::Writev => "writev",
            Syscall::Sendto => "sendto",
            Syscall::Recvfrom => "recvfrom",
            Syscall::Sendmsg => "sendmsg",
            Syscall::Recvmsg => "recvmsg",
            Syscall::Sendmmsg => "sendmmsg",
            Syscall::Recvmmsg => "recvmmsg",
            Syscall::Sendfile => "sendfile",
            Syscall::Connect => "connect",
            Syscall::Accept => "accept",
            Syscall::Accept4 => "accept4",
            Syscall::Close => "close",
        }
    }

    /// The operation a successful call of this syscall performs on a socket.
    pub fn op(self) -> SocketOp {
        match self {
            Syscall::Read | Syscall::Readv | Syscall::Recvfrom | Syscall::Recvmsg | Syscall::Recvmmsg => {
                SocketOp::Recv
            }
            Syscall::Write
            | Syscall::Writev
            | Syscall::Sendto
            | Syscall::Sendmsg
            | Syscall::Sendmmsg
            | Syscall::Sendfile => SocketOp::Send,
            Syscall::Connect => SocketOp::Connect,
            Syscall::Accept | Syscall::Accept4 => SocketOp::Accept,
            Syscall::Close => SocketOp::Close,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum L4Proto {
    Tcp,
    Udp,
}

impl L4Proto {
    pub fn name(self) -> &'static str {
        match self {
            L4Proto::Tcp => "tcp",
            L4Proto::Udp => "udp",
        }
    }
}

/// Which end of a conversation the local socket is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    Client,
    Server,
    #[default]
    Unknown,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
            Role::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SocketEvent {
    pub op: SocketOp,
    pub syscall: Syscall,
    pub fd: i32,
    /// Identity of the kernel socket while it lives (joins syscalls with TCP events).
    pub sock_id: u64,
    pub proto: L4Proto,
    /// The local end.
    pub src: SocketAddr,
    /// The peer.
    pub dst: SocketAddr,
    /// Bytes moved (send/recv); 0 otherwise.
    pub bytes: u32,
    pub latency_ns: u64,
    /// The syscall's return value (negative errno on failure).
    pub ret: i64,
    /// Index of the message within a sendmmsg/recvmmsg call.
    #[serde(default)]
    pub msg_index: u32,
    /// The first bytes moved (up to the snaplen). Raw: anything that stores or
    /// prints it masks secrets first (`redact`).
    #[serde(with = "serde_bytes", default)]
    pub payload: Vec<u8>,
    /// Client or server; derived by the socket table, never recorded.
    #[serde(skip)]
    pub role: Role,
}

impl SocketEvent {
    /// When the syscall started, given the event's end timestamp.
    pub fn start_ns(&self, end_ts_ns: u64) -> u64 {
        end_ts_ns.saturating_sub(self.latency_ns)
    }

    pub fn family(&self) -> &'static str {
        family_name(&self.src, &self.dst)
    }
}

fn family_name(a: &SocketAddr, b: &SocketAddr) -> &'static str {
    if a.is_ipv6() || b.is_ipv6() {
        "ipv6"
    } else {
        "ipv4"
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecEvent {
    pub ppid: u32,
    pub filename: String,
    pub args: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExitEvent {
    /// The wait status the parent sees (exit code << 8, or the signal).
    pub exit_code: i32,
    /// The whole process is gone (this was its last thread).
    pub group_dead: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForkEvent {
    pub child_pid: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RenameEvent {
    pub new_comm: Comm,
}

/// A process as /proc described it at start-up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub ppid: u32,
    pub exe: String,
    pub cmdline: Vec<String>,
    /// The process's cgroup v2 path (or the v1 lines joined), for workload identity.
    pub cgroup: String,
}

/// A socket that was open before capture started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SocketSnapshot {
    pub fd: i32,
    pub inode: u64,
    pub proto: L4Proto,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Kernel socket state (TCP_ESTABLISHED = 1, TCP_LISTEN = 10, ...).
    pub state: u8,
}

impl SocketSnapshot {
    pub const TCP_ESTABLISHED: u8 = 1;
    pub const TCP_LISTEN: u8 = 10;

    pub fn is_listening(&self) -> bool {
        self.proto == L4Proto::Tcp && self.state == Self::TCP_LISTEN
    }

    pub fn family(&self) -> &'static str {
        family_name(&self.src, &self.dst)
    }
}

/// A task name: at most 15 bytes, stored inline (no allocation per event).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Comm {
    len: u8,
    bytes: [u8; 16],
}

impl Comm {
    /// From a kernel comm buffer (NUL-terminated or full).
    pub fn from_bytes(raw: &[u8]) -> Comm {
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len()).min(15);
        let mut bytes = [0u8; 16];
        bytes[..end].copy_from_slice(&raw[..end]);
        Comm { len: end as u8, bytes }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }
}

impl From<&str> for Comm {
    fn from(s: &str) -> Comm {
        Comm::from_bytes(s.as_bytes())
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string_lossy())
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_lossy())
    }
}

impl Serialize for Comm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string_lossy())
    }
}

impl<'de> Deserialize<'de> for Comm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Comm, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Comm::from_bytes(s.as_bytes()))
    }
}

/// Formats an address the way the JSON contract wants: `ip:port`, IPv6 as `[addr]:port`.
pub fn format_addr(a: &SocketAddr) -> String {
    a.to_string()
}

/// v4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are IPv4 on the wire; show them so.
pub fn canonical_addr(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

pub fn unspecified_v4() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
}
