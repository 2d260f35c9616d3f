//! What /proc says about processes and their sockets.
//!
//! Used once at start-up to describe the world the kernel probes cannot see
//! (sockets opened and processes started before the agent), as snapshot
//! events that go into the stream (and into recordings) like any other, and
//! later to look up a process's command line and cgroup for workload names.
//! The root directory is a parameter so tests run against a fake /proc.

use kindling_events::model::*;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct ProcFs {
    root: PathBuf,
}

impl Default for ProcFs {
    fn default() -> Self {
        ProcFs::new("/proc")
    }
}

/// One row of /proc/net/{tcp,tcp6,udp,udp6}.
#[derive(Clone, Debug, PartialEq)]
pub struct NetEntry {
    pub proto: L4Proto,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: u8,
    pub inode: u64,
}

impl ProcFs {
    pub fn new(root: impl Into<PathBuf>) -> ProcFs {
        ProcFs { root: root.into() }
    }

    fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// Every process id currently in /proc.
    pub fn pids(&self) -> Vec<u32> {
        let Ok(dir) = fs::read_dir(&self.root) else { return Vec::new() };
        let mut pids: Vec<u32> =
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
        pids.sort_unstable();
        pids
    }

    /// (comm, ppid) from /proc/PID/stat; comm may contain spaces and parentheses.
    pub fn stat(&self, pid: u32) -> Option<(String, u32)> {
        let s = fs::read_to_string(self.path(format!("{pid}/stat"))).ok()?;
        let open = s.find('(')?;
        let close = s.rfind(')')?;
        let comm = s.get(open + 1..close)?.to_string();
        let mut rest = s.get(close + 2..)?.split_whitespace();
        let _state = rest.next()?;
        let ppid = rest.next()?.parse().ok()?;
        Some((comm, ppid))
    }

    pub fn cmdline(&self, pid: u32) -> Vec<String> {
        fs::read(self.path(format!("{pid}/cmdline")))
            .map(|raw| {
                raw.split(|&b| b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn exe(&self, pid: u32) -> String {
        fs::read_link(self.path(format!("{pid}/exe")))
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    /// The cgroup v2 path (`0::/...`), else all v1 lines joined with `;`.
    pub fn cgroup(&self, pid: u32) -> String {
        let Ok(s) = fs::read_to_string(self.path(format!("{pid}/cgroup"))) else {
            return String::new();
        };
        if let Some(v2) = s.lines().find_map(|l| l.strip_prefix("0::")) {
            return v2.to_string();
        }
        s.lines().collect::<Vec<_>>().join(";")
    }

    pub fn process_info(&self, pid: u32) -> Option<(String, ProcessInfo)> {
        let (comm, ppid) = self.stat(pid)?;
        Some((
            comm,
            ProcessInfo { ppid, exe: self.exe(pid), cmdline: self.cmdline(pid), cgroup: self.cgroup(pid) },
        ))
    }

    /// The given processes and all their descendants alive now.
    pub fn with_descendants(&self, roots: &[u32]) -> HashSet<u32> {
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        for pid in self.pids() {
            if let Some((_, ppid)) = self.stat(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
        let mut out: HashSet<u32> = HashSet::new();
        let mut stack: Vec<u32> = roots.to_vec();
        while let Some(p) = stack.pop() {
            if out.insert(p) {
                if let Some(c) = children.get(&p) {
                    stack.extend(c);
                }
            }
        }
        out
    }

    /// (fd, socket inode) for every socket the process holds.
    pub fn socket_fds(&self, pid: u32) -> Vec<(i32, u64)> {
        let Ok(dir) = fs::read_dir(self.path(format!("{pid}/fd"))) else { return Vec::new() };
        let mut out = Vec::new();
        for e in dir.flatten() {
            let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            let Ok(target) = fs::read_link(e.path()) else { continue };
            let t = target.to_string_lossy();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                if let Ok(inode) = inode.parse() {
                    out.push((fd, inode));
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// The network namespace a process lives in (its inode number).
    pub fn netns(&self, pid: u32) -> Option<u64> {
        let t = fs::read_link(self.path(format!("{pid}/ns/net"))).ok()?;
        let t = t.to_string_lossy();
        t.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
    }

    /// TCP and UDP sockets of the network namespace `pid` lives in, by inode.
    pub fn net_table(&self, pid: u32) -> HashMap<u64, NetEntry> {
        let mut out = HashMap::new();
        for (file, proto) in
            [("tcp", L4Proto::Tcp), ("tcp6", L4Proto::Tcp), ("udp", L4Proto::Udp), ("udp6", L4Proto::Udp)]
        {
            if let Ok(s) = fs::read_to_string(self.path(format!("{pid}/net/{file}"))) {
                for e in parse_net_table(&s, proto) {
                    out.insert(e.inode, e);
                }
            }
        }
        out
    }

    /// Snapshot events for `pids` (all processes when `None`): one
    /// ProcessSnapshot each, then one SocketSnapshot per TCP/UDP socket they
    /// hold; listening sockets first so consumers learn server ports before
    /// the connections that use them.
    pub fn snapshot(&self, pids: Option<&HashSet<u32>>, ts_ns: u64, skip_pid: u32) -> Vec<Event> {
        let all = self.pids();
        let wanted: Vec<u32> = all
            .into_iter()
            .filter(|p| *p != skip_pid && pids.is_none_or(|set| set.contains(p)))
            .collect();
        let mut procs = Vec::new();
        let mut socks = Vec::new();
        let mut tables: HashMap<u64, HashMap<u64, NetEntry>> = HashMap::new();
        for pid in wanted {
            let Some((comm, info)) = self.process_info(pid) else { continue };
            let comm = Comm::from(comm.as_str());
            procs.push(Event { ts_ns, pid, tid: pid, cpu: 0, comm, body: EventBody::ProcessSnapshot(info) });
            let fds = self.socket_fds(pid);
            if fds.is_empty() {
                continue;
            }
            let ns = self.netns(pid).unwrap_or(0);
            let table = tables.entry(ns).or_insert_with(|| self.net_table(pid));
            for (fd, inode) in fds {
                if let Some(e) = table.get(&inode) {
                    socks.push(Event {
                        ts_ns,
                        pid,
                        tid: pid,
                        cpu: 0,
                        comm,
                        body: EventBody::SocketSnapshot(SocketSnapshot {
                            fd,
                            inode,
                            proto: e.proto,
                            src: e.local,
                            dst: e.remote,
                            state: e.state,
                        }),
                    });
                }
            }
        }
        socks.sort_by_key(|e| match &e.body {
            EventBody::SocketSnapshot(s) => !s.is_listening(),
            _ => true,
        });
        procs.extend(socks);
        procs
    }
}

/// Parses the text of /proc/net/tcp (or tcp6, udp, udp6).
pub fn parse_net_table(text: &str, proto: L4Proto) -> Vec<NetEntry> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            Some(NetEntry {
                proto,
                local: parse_hex_addr(f[1])?,
                remote: parse_hex_addr(f[2])?,
                state: u8::from_str_radix(f[3], 16).ok()?,
                inode: f[9].parse().ok()?,
            })
        })
        .collect()
}

/// `0100007F:1F90` (IPv4, host-order words) or 32 hex digits for IPv6.
fn parse_hex_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_le_bytes())),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                let w = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
                b[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(canonical_addr(SocketAddr::new(ip, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 12346 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F91 00000000000000000000000001000000:D431 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 20 4 0 10 -1
   1: 0000000000000000FFFF00000100007F:0050 0000000000000000FFFF00000100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 778 1 0000000000000000 20 4 0 10 -1
";

    #[test]
    fn parses_ipv4_and_ipv6_rows() {
        let v4 = parse_net_table(TCP, L4Proto::Tcp);
        assert_eq!(v4.len(), 2);
        assert_eq!(v4[0].local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(v4[0].state, 10);
        assert_eq!(v4[1].remote, "127.0.0.1:50000".parse().unwrap());
        assert_eq!(v4[1].inode, 12346);
        let v6 = parse_net_table(TCP6, L4Proto::Tcp);
        assert_eq!(v6[0].local, "[::1]:8081".parse().unwrap());
        assert_eq!(v6[0].remote, "[::1]:54321".parse().unwrap());
        // v4-mapped rows of a v6 socket read as IPv4.
        assert_eq!(v6[1].local, "127.0.0.1:80".parse().unwrap());
    }

    #[test]
    fn snapshot_from_a_fake_proc() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let p = root.join("100");
        fs::create_dir_all(p.join("fd")).unwrap();
        fs::create_dir_all(p.join("net")).unwrap();
        fs::create_dir_all(p.join("ns")).unwrap();
        fs::write(p.join("stat"), "100 (my (srv)) S 1 100 100 0 -1").unwrap();
        fs::write(p.join("cmdline"), b"python3\0orders_api.py\0").unwrap();
        fs::write(p.join("cgroup"), "0::/system.slice/orders.service\n").unwrap();
        fs::write(p.join("net/tcp"), TCP).unwrap();
        std::os::unix::fs::symlink("socket:[12346]", p.join("fd/4")).unwrap();
        std::os::unix::fs::symlink("socket:[12345]", p.join("fd/3")).unwrap();
        std::os::unix::fs::symlink("/dev/null", p.join("fd/0")).unwrap();
        std::os::unix::fs::symlink("net:[4026531840]", p.join("ns/net")).unwrap();
        let procfs = ProcFs::new(root);
        assert_eq!(procfs.stat(100), Some(("my (srv)".to_string(), 1)));
        let evs = procfs.snapshot(None, 7, 0);
        assert_eq!(evs.len(), 3);
        match &evs[0].body {
            EventBody::ProcessSnapshot(i) => {
                assert_eq!(i.cmdline, vec!["python3", "orders_api.py"]);
                assert_eq!(i.cgroup, "/system.slice/orders.service");
            }
            other => panic!("unexpected {other:?}"),
        }
        // The listening socket comes before the connection.
        match (&evs[1].body, &evs[2].body) {
            (EventBody::SocketSnapshot(l), EventBody::SocketSnapshot(c)) => {
                assert!(l.is_listening());
                assert_eq!(l.fd, 3);
                assert_eq!(c.fd, 4);
                assert_eq!(c.dst, "127.0.0.1:50000".parse().unwrap());
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(procfs.with_descendants(&[1]), [1, 100].into_iter().collect());
    }
}
