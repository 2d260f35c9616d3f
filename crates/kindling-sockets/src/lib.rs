//! The socket table: for every (pid, fd) the agent has seen, which socket it
//! is and which end of the conversation we are (client or server).
//!
//! Pure and event-driven: fed the same stream live and in replay, it gives the
//! same answers. The role comes from, in order of trust:
//! 1. the call that made the socket: `accept` -> server, `connect` -> client;
//! 2. the start-up snapshot: a TCP socket whose local port is a listening port
//!    is a server end, others are clients;
//! 3. for sockets first seen mid-life (inherited, or missed): TCP by the same
//!    listening-port rule; UDP by the first operation (receive first -> server).
//!
//! Memory is bounded: at most `capacity` sockets are remembered; beyond that,
//! roles are derived per event and `overflow` counts how often.

use kindling_events::model::*;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    sock_id: u64,
    role: Role,
}

pub struct SocketTable {
    by_pid: HashMap<u32, HashMap<i32, Entry>>,
    /// (protocol, port) of listening sockets, learned from snapshots and accepts.
    listening: HashSet<(L4Proto, u16)>,
    len: usize,
    capacity: usize,
    /// Sockets not remembered because the table was full.
    pub overflow: u64,
}

impl Default for SocketTable {
    fn default() -> Self {
        SocketTable::with_capacity(1 << 20)
    }
}

impl SocketTable {
    pub fn with_capacity(capacity: usize) -> SocketTable {
        SocketTable { by_pid: HashMap::default(), listening: HashSet::default(), len: 0, capacity, overflow: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Updates the table from `ev` and, for socket events, sets their role.
    pub fn observe(&mut self, ev: &mut Event) {
        let pid = ev.pid;
        match &mut ev.body {
            EventBody::Socket(s) => s.role = self.observe_socket(pid, s),
            EventBody::SocketSnapshot(s) => self.observe_snapshot(pid, s),
            EventBody::Exit(e) if e.group_dead => self.forget_process(pid),
            _ => {}
        }
    }

    /// The role of (pid, fd) if known.
    pub fn role(&self, pid: u32, fd: i32) -> Option<Role> {
        self.by_pid.get(&pid)?.get(&fd).map(|e| e.role)
    }

    fn observe_snapshot(&mut self, pid: u32, s: &SocketSnapshot) {
        if s.is_listening() {
            self.listening.insert((s.proto, s.src.port()));
            self.remember(pid, s.fd, Entry { sock_id: 0, role: Role::Server });
            return;
        }
        let role = match s.proto {
            L4Proto::Tcp if self.listening.contains(&(L4Proto::Tcp, s.src.port())) => Role::Server,
            L4Proto::Tcp => Role::Client,
            // A connected UDP socket talks to one peer: a client. An unbound-peer
            // one is decided by its first operation.
            L4Proto::Udp if s.dst.port() != 0 => Role::Client,
            L4Proto::Udp => return,
        };
        self.remember(pid, s.fd, Entry { sock_id: 0, role });
    }

    fn observe_socket(&mut self, pid: u32, s: &SocketEvent) -> Role {
        match s.op {
            SocketOp::Accept => {
                if s.ret >= 0 {
                    self.listening.insert((s.proto, s.src.port()));
                    self.remember(pid, s.fd, Entry { sock_id: s.sock_id, role: Role::Server });
                }
                Role::Server
            }
            SocketOp::Connect | SocketOp::ConnectDone => {
                self.remember(pid, s.fd, Entry { sock_id: s.sock_id, role: Role::Client });
                Role::Client
            }
            SocketOp::Close => {
                let role = self.lookup(pid, s).unwrap_or_else(|| self.guess(s));
                self.forget(pid, s.fd);
                role
            }
            SocketOp::Send | SocketOp::Recv => {
                if let Some(r) = self.lookup(pid, s) {
                    return r;
                }
                let role = self.guess(s);
                self.remember(pid, s.fd, Entry { sock_id: s.sock_id, role });
                role
            }
        }
    }

    /// The remembered role, if the entry is for this very socket (an fd can be
    /// reused for another socket after a close we did not see).
    fn lookup(&mut self, pid: u32, s: &SocketEvent) -> Option<Role> {
        let e = self.by_pid.get_mut(&pid)?.get_mut(&s.fd)?;
        if e.sock_id == 0 {
            // From the snapshot: adopt the kernel's identity on first sight.
            e.sock_id = s.sock_id;
        } else if e.sock_id != s.sock_id {
            return None;
        }
        Some(e.role)
    }

    fn guess(&self, s: &SocketEvent) -> Role {
        match s.proto {
            L4Proto::Tcp => {
                if self.listening.contains(&(L4Proto::Tcp, s.src.port())) {
                    Role::Server
                } else {
                    Role::Client
                }
            }
            L4Proto::Udp => {
                if s.op == SocketOp::Recv {
                    Role::Server
                } else {
                    Role::Client
                }
            }
        }
    }

    fn remember(&mut self, pid: u32, fd: i32, e: Entry) {
        let fds = self.by_pid.entry(pid).or_default();
        if let Some(old) = fds.get_mut(&fd) {
            *old = e;
            return;
        }
        if self.len >= self.capacity {
            self.overflow += 1;
            return;
        }
        fds.insert(fd, e);
        self.len += 1;
    }

    fn forget(&mut self, pid: u32, fd: i32) {
        if let Some(fds) = self.by_pid.get_mut(&pid) {
            if fds.remove(&fd).is_some() {
                self.len -= 1;
            }
            if fds.is_empty() {
                self.by_pid.remove(&pid);
            }
        }
    }

    fn forget_process(&mut self, pid: u32) {
        if let Some(fds) = self.by_pid.remove(&pid) {
            self.len -= fds.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(op: SocketOp, syscall: Syscall, fd: i32, sock_id: u64, proto: L4Proto, src: &str, dst: &str) -> Event {
        Event {
            ts_ns: 0,
            pid: 1,
            tid: 1,
            cpu: 0,
            comm: Comm::from("t"),
            body: EventBody::Socket(SocketEvent {
                op,
                syscall,
                fd,
                sock_id,
                proto,
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                bytes: 0,
                latency_ns: 0,
                ret: 0,
                msg_index: 0,
                payload: vec![],
                role: Role::Unknown,
            }),
        }
    }

    fn role(t: &mut SocketTable, mut ev: Event) -> Role {
        t.observe(&mut ev);
        ev.as_socket().unwrap().role
    }

    #[test]
    fn accept_and_connect_decide_the_role() {
        let mut t = SocketTable::default();
        let tcp = L4Proto::Tcp;
        assert_eq!(role(&mut t, sock(SocketOp::Accept, Syscall::Accept4, 5, 9, tcp, "127.0.0.1:80", "127.0.0.1:5000")), Role::Server);
        assert_eq!(role(&mut t, sock(SocketOp::Recv, Syscall::Read, 5, 9, tcp, "127.0.0.1:80", "127.0.0.1:5000")), Role::Server);
        assert_eq!(role(&mut t, sock(SocketOp::Connect, Syscall::Connect, 6, 10, tcp, "127.0.0.1:5001", "127.0.0.1:80")), Role::Client);
        assert_eq!(role(&mut t, sock(SocketOp::Send, Syscall::Write, 6, 10, tcp, "127.0.0.1:5001", "127.0.0.1:80")), Role::Client);
        assert_eq!(t.len(), 2);
        role(&mut t, sock(SocketOp::Close, Syscall::Close, 6, 10, tcp, "127.0.0.1:5001", "127.0.0.1:80"));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn snapshot_sockets_use_listening_ports() {
        let mut t = SocketTable::default();
        let mk = |fd, src: &str, dst: &str, state| Event {
            ts_ns: 0,
            pid: 7,
            tid: 7,
            cpu: 0,
            comm: Comm::from("srv"),
            body: EventBody::SocketSnapshot(SocketSnapshot {
                fd,
                inode: 1,
                proto: L4Proto::Tcp,
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                state,
            }),
        };
        t.observe(&mut mk(3, "0.0.0.0:8080", "0.0.0.0:0", SocketSnapshot::TCP_LISTEN));
        t.observe(&mut mk(4, "127.0.0.1:8080", "127.0.0.1:40000", SocketSnapshot::TCP_ESTABLISHED));
        t.observe(&mut mk(5, "127.0.0.1:40001", "127.0.0.1:6379", SocketSnapshot::TCP_ESTABLISHED));
        assert_eq!(t.role(7, 4), Some(Role::Server));
        assert_eq!(t.role(7, 5), Some(Role::Client));
        // A later event adopts the snapshot's answer.
        let mut e = sock(SocketOp::Recv, Syscall::Read, 4, 99, L4Proto::Tcp, "127.0.0.1:8080", "127.0.0.1:40000");
        e.pid = 7;
        t.observe(&mut e);
        assert_eq!(e.as_socket().unwrap().role, Role::Server);
    }

    #[test]
    fn udp_role_from_first_operation_and_fd_reuse() {
        let mut t = SocketTable::default();
        let udp = L4Proto::Udp;
        assert_eq!(role(&mut t, sock(SocketOp::Recv, Syscall::Recvmsg, 3, 1, udp, "0.0.0.0:53", "127.0.0.1:4000")), Role::Server);
        assert_eq!(role(&mut t, sock(SocketOp::Send, Syscall::Sendmsg, 3, 1, udp, "0.0.0.0:53", "127.0.0.1:4000")), Role::Server);
        // fd 3 now names another socket (a close was missed): decided afresh.
        assert_eq!(role(&mut t, sock(SocketOp::Send, Syscall::Sendto, 3, 2, udp, "0.0.0.0:5353", "127.0.0.1:53")), Role::Client);
    }

    #[test]
    fn capacity_bounds_memory_and_counts_overflow() {
        let mut t = SocketTable::with_capacity(2);
        for fd in 0..5 {
            role(&mut t, sock(SocketOp::Connect, Syscall::Connect, fd, fd as u64 + 1, L4Proto::Tcp, "127.0.0.1:1", "127.0.0.1:2"));
        }
        assert_eq!(t.len(), 2);
        assert_eq!(t.overflow, 3);
    }
}
