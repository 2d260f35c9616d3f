//! The selftest's workload: a child process (the agent never traces itself)
//! that drives every hook the probes have — each socket syscall over TCP
//! (IPv4 and IPv6) and UDP on loopback, a refused connect, a reset, a SYN
//! retransmit, a packet drop, fork/exec/exit/rename, CPU time and sleeps —
//! and reports what it did (addresses, pids) as one JSON line on stdout.
//!
//! The child waits for a line on stdin before starting, so the parent can
//! attach the probes (and name the child as the process to profile) first.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// The name the workload gives itself (a `rename` event).
pub const COMM: &str = "kd-selftest";
/// The grandchild's exit status (`exit` event: status << 8).
pub const GRANDCHILD_EXIT: i32 = 7;

/// Payloads, one per syscall, so every event can be matched by its head.
pub mod payload {
    pub const WRITE: &[u8] = b"KD:write";
    pub const WRITEV: [&[u8]; 2] = [b"KD:", b"writev"];
    pub const SENDTO: &[u8] = b"KD:sendto";
    pub const SENDMSG: &[u8] = b"KD:sendmsg";
    pub const SENDFILE: &[u8] = b"KD:sendfile";
    pub const REPLY: &[u8] = b"KD:reply";
    pub const UDP: &[u8] = b"KD:udp";
    pub const MMSG: [&[u8]; 2] = [b"KD:mmsg-0", b"KD:mmsg-1"];
    pub const V6: &[u8] = b"KD:ipv6";
}

/// A TCP connection as both ends see it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Conn {
    /// The connecting end's local address.
    pub client: SocketAddr,
    /// The listening end's address.
    pub server: SocketAddr,
}

/// What the workload did, for the checks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub pid: u32,
    /// The data connection: every send/receive syscall, then closed by the client.
    pub tcp: Conn,
    /// Accepted with accept() rather than accept4().
    pub plain_accept: Conn,
    /// Connected with a non-blocking connect().
    pub nonblocking: Conn,
    /// Closed by the client with SO_LINGER 0: a reset.
    pub reset: Conn,
    /// A connect() to this closed port (refused: a reset received).
    pub refused: SocketAddr,
    /// A SYN to a listener whose accept queue is full: retransmitted.
    pub retransmit: Conn,
    /// Two UDP sockets: sendto/recvfrom and sendmmsg/recvmmsg from `a` to `b`.
    pub udp_a: SocketAddr,
    pub udp_b: SocketAddr,
    /// A UDP datagram to this closed port (dropped by the kernel).
    pub udp_closed: SocketAddr,
    /// The IPv6 connection, when this host has ::1.
    pub tcp6: Option<Conn>,
    pub grandchild: u32,
    pub grandchild_exe: String,
    /// Time spent on the CPU in the busy loop, and the sleeps done.
    pub busy_ms: u64,
    pub sleeps: u32,
}

/// Entry point of `kindling selftest --workload`.
pub fn child_main() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("waiting for the start signal")?;
    if line.trim() != "go" {
        bail!("the selftest workload expects `go` on stdin");
    }
    let report = run()?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &report)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

fn run() -> anyhow::Result<Report> {
    rename(COMM)?;
    let lo = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
    let tcp = data_connection(lo).context("TCP data connection")?;
    let plain_accept = accept_plain(lo).context("accept()")?;
    let nonblocking = nonblocking_connect(lo).context("non-blocking connect")?;
    let reset = reset_connection(lo).context("reset")?;
    let refused = refused_connect(lo).context("refused connect")?;
    let (udp_a, udp_b) = udp_exchange().context("UDP")?;
    let udp_closed = udp_to_closed_port().context("UDP to a closed port")?;
    let tcp6 = ipv6_connection();
    let (grandchild, grandchild_exe) = spawn_grandchild().context("fork/exec")?;
    let (busy_ms, sleeps) = cpu_and_sleeps();
    // Last: it waits for the retransmission timer (1 s).
    let retransmit = syn_retransmit(lo).context("SYN retransmit")?;
    Ok(Report {
        pid: std::process::id(),
        tcp,
        plain_accept,
        nonblocking,
        reset,
        refused,
        retransmit,
        udp_a,
        udp_b,
        udp_closed,
        tcp6,
        grandchild,
        grandchild_exe,
        busy_ms,
        sleeps,
    })
}

fn check(ret: isize, what: &str) -> anyhow::Result<usize> {
    if ret < 0 {
        bail!("{what}: {}", std::io::Error::last_os_error());
    }
    Ok(ret as usize)
}

fn rename(name: &str) -> anyhow::Result<()> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    check(unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr()) } as isize, "prctl(PR_SET_NAME)")?;
    Ok(())
}

/// Reads exactly `n` bytes with one `read`-family call given by `f` (the
/// peer sent exactly that many, so one call returns them all).
fn expect_len(got: usize, want: usize, what: &str) -> anyhow::Result<()> {
    if got != want {
        bail!("{what}: got {got} bytes, expected {want}");
    }
    Ok(())
}

/// One connection through every send/receive syscall, one at a time.
fn data_connection(lo: SocketAddr) -> anyhow::Result<Conn> {
    let listener = TcpListener::bind(lo)?;
    let server = listener.local_addr()?;
    let client = TcpStream::connect(server)?; // connect()
    let (srv, _) = listener.accept()?; // accept4()
    let conn = Conn { client: client.local_addr()?, server };
    let (c, s) = (client.as_raw_fd(), srv.as_raw_fd());
    let mut buf = [0u8; 64];

    // SAFETY (all calls below): plain syscalls on fds we own, with pointers to
    // live buffers whose lengths are passed alongside.
    let n = unsafe { libc::write(c, payload::WRITE.as_ptr().cast(), payload::WRITE.len()) };
    check(n, "write")?;
    let n = check(unsafe { libc::read(s, buf.as_mut_ptr().cast(), buf.len()) }, "read")?;
    expect_len(n, payload::WRITE.len(), "read")?;

    let iov = payload::WRITEV.map(|p| libc::iovec { iov_base: p.as_ptr() as *mut _, iov_len: p.len() });
    check(unsafe { libc::writev(c, iov.as_ptr(), 2) }, "writev")?;
    let (mut b1, mut b2) = ([0u8; 3], [0u8; 32]);
    let riov = [
        libc::iovec { iov_base: b1.as_mut_ptr().cast(), iov_len: b1.len() },
        libc::iovec { iov_base: b2.as_mut_ptr().cast(), iov_len: b2.len() },
    ];
    let n = check(unsafe { libc::readv(s, riov.as_ptr(), 2) }, "readv")?;
    expect_len(n, 9, "readv")?;

    let n = unsafe { libc::sendto(c, payload::SENDTO.as_ptr().cast(), payload::SENDTO.len(), 0, std::ptr::null(), 0) };
    check(n, "sendto")?;
    let n = unsafe {
        libc::recvfrom(s, buf.as_mut_ptr().cast(), buf.len(), 0, std::ptr::null_mut(), std::ptr::null_mut())
    };
    expect_len(check(n, "recvfrom")?, payload::SENDTO.len(), "recvfrom")?;

    let mut siov = libc::iovec { iov_base: payload::SENDMSG.as_ptr() as *mut _, iov_len: payload::SENDMSG.len() };
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut siov;
    msg.msg_iovlen = 1;
    check(unsafe { libc::sendmsg(c, &msg, 0) }, "sendmsg")?;
    let mut riov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut rmsg: libc::msghdr = unsafe { zeroed() };
    rmsg.msg_iov = &mut riov;
    rmsg.msg_iovlen = 1;
    expect_len(check(unsafe { libc::recvmsg(s, &mut rmsg, 0) }, "recvmsg")?, payload::SENDMSG.len(), "recvmsg")?;

    let file = memfd_with(payload::SENDFILE)?;
    let mut off: libc::off_t = 0;
    let n = unsafe { libc::sendfile(c, file.as_raw_fd(), &mut off, payload::SENDFILE.len()) };
    check(n, "sendfile")?;
    let n = check(unsafe { libc::read(s, buf.as_mut_ptr().cast(), buf.len()) }, "read after sendfile")?;
    expect_len(n, payload::SENDFILE.len(), "read after sendfile")?;

    // The reply goes the other way: the client's receive.
    check(unsafe { libc::write(s, payload::REPLY.as_ptr().cast(), payload::REPLY.len()) }, "write reply")?;
    let n = check(unsafe { libc::read(c, buf.as_mut_ptr().cast(), buf.len()) }, "read reply")?;
    expect_len(n, payload::REPLY.len(), "read reply")?;

    // The client closes first (a close event for its fd), then the server.
    drop(client);
    drop(srv);
    Ok(conn)
}

fn memfd_with(data: &[u8]) -> anyhow::Result<OwnedFd> {
    let name = c"kd-selftest";
    // SAFETY: `name` is NUL-terminated; the returned fd is ours.
    let fd = check(unsafe { libc::memfd_create(name.as_ptr(), 0) } as isize, "memfd_create")? as RawFd;
    // SAFETY: `fd` was just created and is owned by nobody else.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: writes `data` (a live slice) to our fd.
    check(unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) }, "write memfd")?;
    Ok(file)
}

/// A connection accepted with plain accept() (std uses accept4).
fn accept_plain(lo: SocketAddr) -> anyhow::Result<Conn> {
    let listener = TcpListener::bind(lo)?;
    let server = listener.local_addr()?;
    let client = TcpStream::connect(server)?;
    // SAFETY: accept on our listening fd; no peer address wanted.
    let fd = check(
        unsafe { libc::accept(listener.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut()) } as isize,
        "accept",
    )?;
    // SAFETY: the accepted fd is new and ours.
    drop(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    Ok(Conn { client: client.local_addr()?, server })
}

fn tcp_socket(family: i32, flags: i32) -> anyhow::Result<OwnedFd> {
    // SAFETY: creates a socket; the fd is ours.
    let fd = check(unsafe { libc::socket(family, libc::SOCK_STREAM | flags, 0) } as isize, "socket")?;
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn sockaddr_v4(a: SocketAddr) -> anyhow::Result<libc::sockaddr_in> {
    let SocketAddr::V4(v4) = a else { bail!("not an IPv4 address: {a}") };
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut sa: libc::sockaddr_in = unsafe { zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = v4.port().to_be();
    sa.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
    Ok(sa)
}

/// connect() on `fd`; returns the raw result (0 or -1 with errno set).
fn connect_v4(fd: RawFd, to: SocketAddr) -> anyhow::Result<(i32, i32)> {
    let sa = sockaddr_v4(to)?;
    // SAFETY: `sa` is a valid sockaddr_in of the size passed.
    let rc = unsafe { libc::connect(fd, (&sa as *const libc::sockaddr_in).cast(), size_of::<libc::sockaddr_in>() as u32) };
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    Ok((rc, errno))
}

fn local_addr(fd: RawFd) -> anyhow::Result<SocketAddr> {
    // SAFETY: all-zero is a valid sockaddr_in; getsockname writes at most `len` bytes.
    let mut sa: libc::sockaddr_in = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_in>() as u32;
    check(unsafe { libc::getsockname(fd, (&mut sa as *mut libc::sockaddr_in).cast(), &mut len) } as isize, "getsockname")?;
    let ip = Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
    Ok(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sa.sin_port))))
}

fn wait_writable(fd: RawFd, timeout: Duration) -> anyhow::Result<()> {
    let mut p = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
    // SAFETY: one valid pollfd.
    let n = check(unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) } as isize, "poll")?;
    if n == 0 {
        bail!("timed out waiting for the connection");
    }
    Ok(())
}

fn nonblocking_connect(lo: SocketAddr) -> anyhow::Result<Conn> {
    let listener = TcpListener::bind(lo)?;
    let server = listener.local_addr()?;
    let sock = tcp_socket(libc::AF_INET, libc::SOCK_NONBLOCK)?;
    let (rc, errno) = connect_v4(sock.as_raw_fd(), server)?;
    if rc != 0 && errno != libc::EINPROGRESS {
        bail!("non-blocking connect: {}", std::io::Error::from_raw_os_error(errno));
    }
    wait_writable(sock.as_raw_fd(), Duration::from_secs(5))?;
    let client = local_addr(sock.as_raw_fd())?;
    let _srv = listener.accept()?;
    Ok(Conn { client, server })
}

fn reset_connection(lo: SocketAddr) -> anyhow::Result<Conn> {
    let listener = TcpListener::bind(lo)?;
    let server = listener.local_addr()?;
    let client = TcpStream::connect(server)?;
    let (srv, _) = listener.accept()?;
    let conn = Conn { client: client.local_addr()?, server };
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: SO_LINGER with a valid struct linger of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            client.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            size_of::<libc::linger>() as u32,
        )
    };
    check(rc as isize, "SO_LINGER")?;
    drop(client); // sends a reset
    std::thread::sleep(Duration::from_millis(20));
    drop(srv);
    Ok(conn)
}

/// A port nobody listens on: bound, then released.
fn free_port(lo: SocketAddr) -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind(lo)?;
    Ok(l.local_addr()?)
}

fn refused_connect(lo: SocketAddr) -> anyhow::Result<SocketAddr> {
    let target = free_port(lo)?;
    match TcpStream::connect(target) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(target),
        Err(e) => bail!("connect to a closed port: {e} (expected: refused)"),
        Ok(_) => bail!("connect to a closed port succeeded"),
    }
}

fn udp_exchange() -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let a = UdpSocket::bind("127.0.0.1:0")?;
    let b = UdpSocket::bind("127.0.0.1:0")?;
    let (aa, ba) = (a.local_addr()?, b.local_addr()?);
    a.set_read_timeout(Some(Duration::from_secs(5)))?;
    b.set_read_timeout(Some(Duration::from_secs(5)))?;
    a.send_to(payload::UDP, ba)?; // sendto() with an address
    let mut buf = [0u8; 64];
    let (n, from) = b.recv_from(&mut buf)?; // recvfrom()
    if n != payload::UDP.len() || from != aa {
        bail!("UDP: got {n} bytes from {from}");
    }

    // sendmmsg: two datagrams to b in one call; recvmmsg takes both.
    let to = sockaddr_v4(ba)?;
    let mut iovs = payload::MMSG.map(|p| libc::iovec { iov_base: p.as_ptr() as *mut _, iov_len: p.len() });
    // SAFETY: all-zero is a valid mmsghdr; every pointer set below outlives the call.
    let mut msgs: [libc::mmsghdr; 2] = unsafe { zeroed() };
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_name = (&to as *const libc::sockaddr_in) as *mut _;
        m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: two initialised mmsghdr entries.
    let sent = check(unsafe { libc::sendmmsg(a.as_raw_fd(), msgs.as_mut_ptr(), 2, 0) } as isize, "sendmmsg")?;
    expect_len(sent, 2, "sendmmsg messages")?;
    let mut bufs = [[0u8; 32]; 2];
    let mut riovs = [
        libc::iovec { iov_base: bufs[0].as_mut_ptr().cast(), iov_len: 32 },
        libc::iovec { iov_base: bufs[1].as_mut_ptr().cast(), iov_len: 32 },
    ];
    // SAFETY: as above, for receiving.
    let mut rmsgs: [libc::mmsghdr; 2] = unsafe { zeroed() };
    // SAFETY: all-zero is a valid sockaddr_in (the kernel writes the senders here).
    let mut from: [libc::sockaddr_in; 2] = unsafe { zeroed() };
    for ((m, iov), f) in rmsgs.iter_mut().zip(riovs.iter_mut()).zip(from.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
        m.msg_hdr.msg_name = (f as *mut libc::sockaddr_in).cast();
        m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
    }
    let got = check(
        // SAFETY: two initialised mmsghdr entries; MSG_WAITFORONE returns once
        // at least one arrived (both are already queued).
        unsafe {
            libc::recvmmsg(b.as_raw_fd(), rmsgs.as_mut_ptr(), 2, libc::MSG_WAITFORONE, std::ptr::null_mut())
        } as isize,
        "recvmmsg",
    )?;
    expect_len(got, 2, "recvmmsg messages")?;
    Ok((aa, ba))
}

fn udp_to_closed_port() -> anyhow::Result<SocketAddr> {
    let closed = {
        let s = UdpSocket::bind("127.0.0.1:0")?;
        s.local_addr()?
    };
    let a = UdpSocket::bind("127.0.0.1:0")?;
    a.send_to(b"KD:nobody", closed)?;
    std::thread::sleep(Duration::from_millis(10));
    Ok(closed)
}

fn ipv6_connection() -> Option<Conn> {
    let listener = TcpListener::bind("[::1]:0").ok()?;
    let server = listener.local_addr().ok()?;
    let mut client = TcpStream::connect(server).ok()?;
    let (mut srv, _) = listener.accept().ok()?;
    use std::io::{Read, Write as _};
    client.write_all(payload::V6).ok()?;
    let mut buf = [0u8; 16];
    srv.read_exact(&mut buf[..payload::V6.len()]).ok()?;
    Some(Conn { client: client.local_addr().ok()?, server })
}

/// fork + exec + exit of a process of ours (the grandchild of the selftest).
fn spawn_grandchild() -> anyhow::Result<(u32, String)> {
    let exe = std::env::current_exe().context("finding our own executable")?;
    let mut child = std::process::Command::new(&exe)
        .args(["selftest", "--exit-with", &GRANDCHILD_EXIT.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id();
    let status = child.wait()?;
    if status.code() != Some(GRANDCHILD_EXIT) {
        bail!("the grandchild ended with {status}");
    }
    Ok((pid, exe.to_string_lossy().into_owned()))
}

/// On-CPU time on two threads, and short sleeps (context switches), for the
/// scheduler module's timelines and samples.
fn cpu_and_sleeps() -> (u64, u32) {
    let spin = Duration::from_millis(150);
    let worker = std::thread::spawn(move || busy(spin));
    busy(spin);
    let _ = worker.join();
    let sleeps = 20;
    for _ in 0..sleeps {
        std::thread::sleep(Duration::from_millis(1));
    }
    (spin.as_millis() as u64, sleeps)
}

fn busy(d: Duration) {
    let t = Instant::now();
    let mut x = 0u64;
    while t.elapsed() < d {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// A listener with an accept queue of one: the third connection's SYN is
/// dropped and the client retransmits it after the initial RTO (1 s).
fn syn_retransmit(lo: SocketAddr) -> anyhow::Result<Conn> {
    let l = tcp_socket(libc::AF_INET, 0)?;
    let one: libc::c_int = 1;
    // SAFETY: SO_REUSEADDR with an int of the size passed.
    unsafe {
        libc::setsockopt(l.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, (&one as *const i32).cast(), 4)
    };
    let sa = sockaddr_v4(lo)?;
    // SAFETY: bind/listen on our socket with a valid sockaddr_in.
    check(
        unsafe { libc::bind(l.as_raw_fd(), (&sa as *const libc::sockaddr_in).cast(), size_of::<libc::sockaddr_in>() as u32) }
            as isize,
        "bind",
    )?;
    check(unsafe { libc::listen(l.as_raw_fd(), 1) } as isize, "listen")?;
    let server = local_addr(l.as_raw_fd())?;
    // Two fill the queue (the kernel allows backlog + 1), unaccepted.
    let _q1 = TcpStream::connect(server)?;
    let _q2 = TcpStream::connect(server)?;
    let s = tcp_socket(libc::AF_INET, libc::SOCK_NONBLOCK)?;
    let (rc, errno) = connect_v4(s.as_raw_fd(), server)?;
    if rc == 0 || errno != libc::EINPROGRESS {
        bail!("expected the third connect to wait (got rc {rc}, errno {errno})");
    }
    let client = local_addr(s.as_raw_fd())?;
    // The retransmission fires ~1 s after the SYN; wait a little longer.
    std::thread::sleep(Duration::from_millis(1400));
    drop(s);
    Ok(Conn { client, server })
}
