//! Syscalls already in flight when the probes attach.
//!
//! A server blocked in `accept()`, or a client waiting in `read()` for a slow
//! reply, entered its syscall before our entry hooks existed, so its exit
//! would find nothing remembered and the event would be lost. The kernel
//! shows each blocked thread's syscall and arguments in
//! `/proc/PID/task/TID/syscall`; we hand those to the BPF side once, at
//! attach, instead of paying for a recovery path on every syscall exit.

use std::collections::HashSet;
use std::fs;

/// What the BPF side needs to finish a syscall it did not see start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adopted {
    pub tid: u32,
    /// `enum kd_syscall`.
    pub syscall: u16,
    pub fd: i32,
    pub buf: u64,
    pub addr: u64,
    pub count: u64,
}

/// (kd_syscall id, buffer arg, sockaddr arg, count arg).
type TracedArgs = (u16, Option<usize>, Option<usize>, Option<usize>);

/// x86-64 syscall number -> (kd_syscall id, buffer arg, sockaddr arg, count arg)
/// for the socket syscalls we trace (the fd is always argument 0).
#[cfg(target_arch = "x86_64")]
fn traced(nr: i64) -> Option<TracedArgs> {
    Some(match nr {
        0 => (1, Some(1), None, None),             // read
        1 => (2, Some(1), None, None),             // write
        19 => (3, Some(1), None, Some(2)),         // readv
        20 => (4, Some(1), None, Some(2)),         // writev
        44 => (5, Some(1), Some(4), None),         // sendto
        45 => (6, Some(1), Some(4), None),         // recvfrom
        46 => (7, Some(1), None, None),            // sendmsg
        47 => (8, Some(1), None, None),            // recvmsg
        307 => (9, Some(1), None, Some(2)),        // sendmmsg
        299 => (10, Some(1), None, Some(2)),       // recvmmsg
        40 => (11, None, None, None),              // sendfile
        42 => (12, None, Some(1), None),           // connect
        43 => (13, None, None, None),              // accept
        288 => (14, None, None, None),             // accept4
        _ => return None,
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn traced(_nr: i64) -> Option<TracedArgs> {
    None
}

/// Parses `/proc/PID/task/TID/syscall`: "NR ARG1..ARG6 SP PC" (args in hex),
/// "running", or "-1 SP PC" when not in a syscall.
pub fn parse_syscall_line(s: &str) -> Option<(i64, [u64; 6])> {
    let mut f = s.split_whitespace();
    let nr: i64 = f.next()?.parse().ok()?;
    if nr < 0 {
        return None;
    }
    let mut args = [0u64; 6];
    for a in &mut args {
        let v = f.next()?;
        *a = u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()?;
    }
    Some((nr, args))
}

/// The adopted entry for one thread's syscall line, if it is one we trace.
pub fn adopt_line(tid: u32, line: &str) -> Option<Adopted> {
    let (nr, args) = parse_syscall_line(line)?;
    let (syscall, buf, addr, count) = traced(nr)?;
    let arg = |i: Option<usize>| i.map_or(0, |i| args[i]);
    Some(Adopted { tid, syscall, fd: args[0] as i32, buf: arg(buf), addr: arg(addr), count: arg(count) })
}

/// Every thread of the wanted processes that is blocked in a traced syscall.
pub fn scan(pids: Option<&HashSet<u32>>, self_pid: u32) -> Vec<Adopted> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == self_pid || pids.is_some_and(|p| !p.contains(&pid)) {
            continue;
        }
        let Ok(tasks) = fs::read_dir(e.path().join("task")) else { continue };
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            if let Ok(line) = fs::read_to_string(t.path().join("syscall")) {
                if let Some(a) = adopt_line(tid, &line) {
                    out.push(a);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_syscalls_are_adopted() {
        let a = adopt_line(7, "45 0x5 0x7ffd1000 0x40 0x0 0x7ffd2000 0x7ffd2010 0x7ffd0f00 0x7f00aa").unwrap();
        assert_eq!(a, Adopted { tid: 7, syscall: 6, fd: 5, buf: 0x7ffd1000, addr: 0x7ffd2000, count: 0 });
        let a = adopt_line(8, "288 0x3 0x0 0x0 0x80800 0x0 0x0 0x7ffd0f00 0x7f00aa").unwrap();
        assert_eq!((a.syscall, a.fd), (14, 3));
        // Not traced, not in a syscall, running, garbage.
        assert_eq!(adopt_line(9, "202 0x1 0x2 0x3 0x4 0x5 0x6 0x7 0x8"), None);
        assert_eq!(adopt_line(9, "-1 0x7ffd 0x7f00"), None);
        assert_eq!(adopt_line(9, "running"), None);
        assert_eq!(adopt_line(9, "0 0xzz"), None);
    }
}
