//! Issue 2: the capture core against real traffic with exact ground truth.

use crate::util::*;
use serde_json::Value;
use std::process::Command;

const N: usize = 1000;

fn req_size(i: usize) -> u64 {
    100 + (i % 50) as u64
}
fn resp_size(i: usize) -> u64 {
    200 + (i % 70) as u64
}

/// The syscalls each msgpeer API uses for (receive, send).
fn syscalls(api: &str, udp: bool) -> (&'static str, &'static str) {
    match api {
        "send" => ("recvfrom", "sendto"),
        "rw" => ("read", "write"),
        "vec" => ("readv", "writev"),
        "msg" => ("recvmsg", "sendmsg"),
        _ => unreachable!("{udp}"),
    }
}

/// N request/response exchanges between two msgpeer processes; the capture
/// filtered by the server's pid must show exactly N receives and N sends on
/// that socket, with exact byte totals, the right 5-tuple and the server role.
fn exchange(proto: &str, family: &str, api: &str) {
    require_root();
    let n = N.to_string();
    let server = Peer::spawn(&["server", "--proto", proto, "--family", family, "--api", api, "-n", &n]);
    let port: u16 = server.expect_line("port ").parse().expect("port");
    let spid = server.pid();
    let cap = Capture::start(&["--json", "--pid", &spid.to_string()]);
    let client = Peer::spawn(&[
        "client", "--proto", proto, "--family", family, "--api", api, "-n", &n, "--port", &port.to_string(),
    ]);
    client.expect_line("done");
    client.wait_ok();
    server.wait_ok();
    let got = cap.stop();
    got.assert_nothing_dropped();

    let on_port = |e: &&Value| port_of(e["src"].as_str().unwrap_or("")) == port;
    let recvs: Vec<&Value> = got.of_kind(spid, &["recv"]).filter(on_port).collect();
    let sends: Vec<&Value> = got.of_kind(spid, &["send"]).filter(on_port).collect();
    let what = format!("{proto}/ipv{family}/{api}");
    assert_eq!(recvs.len(), N, "{what}: receives");
    assert_eq!(sends.len(), N, "{what}: sends");
    let rbytes: u64 = recvs.iter().map(|e| e["bytes"].as_u64().unwrap()).sum();
    let sbytes: u64 = sends.iter().map(|e| e["bytes"].as_u64().unwrap()).sum();
    assert_eq!(rbytes, (0..N).map(req_size).sum::<u64>(), "{what}: received bytes");
    assert_eq!(sbytes, (0..N).map(resp_size).sum::<u64>(), "{what}: sent bytes");

    let (rsys, ssys) = syscalls(api, proto == "udp");
    let host = if family == "6" { "[::1]" } else { "127.0.0.1" };
    let client_port = port_of(recvs[0]["dst"].as_str().unwrap());
    assert_ne!(client_port, 0, "{what}: peer port");
    for (evs, sys) in [(&recvs, rsys), (&sends, ssys)] {
        for e in evs.iter() {
            assert_eq!(e["syscall"], sys, "{what}: {e}");
            assert_eq!(e["proto"], proto, "{what}: {e}");
            assert_eq!(e["family"], format!("ipv{family}"), "{what}: {e}");
            assert_eq!(e["role"], "server", "{what}: {e}");
            assert_eq!(e["src"], format!("{host}:{port}"), "{what}: {e}");
            assert_eq!(e["dst"], format!("{host}:{client_port}"), "{what}: {e}");
            assert_eq!(e["tid"].as_u64(), Some(spid as u64), "{what}: single-threaded peer");
            assert_eq!(e["ret"].as_u64(), e["bytes"].as_u64(), "{what}: {e}");
        }
    }
    // The server was already blocked in its first receive (UDP) or accept
    // (TCP) when capture started: that one syscall has no known start.
    let unknown_start = recvs.iter().chain(&sends).filter(|e| e["latency_ns"] == 0).count();
    assert!(unknown_start <= 1, "{what}: {unknown_start} events without latency");
    if unknown_start == 1 {
        assert_eq!(recvs[0]["latency_ns"], 0, "{what}: only the in-flight first receive lacks latency");
    }
    if proto == "tcp" {
        let accepts: Vec<&Value> = got.of_kind(spid, &["accept"]).collect();
        assert_eq!(accepts.len(), 1, "{what}: one accepted connection");
        assert_eq!(accepts[0]["dst"], format!("{host}:{client_port}"));
        assert_eq!(accepts[0]["role"], "server");
    }
}

#[test]
fn tcp_ipv4_send_recv() {
    exchange("tcp", "4", "send");
}

#[test]
fn tcp_ipv6_send_recv() {
    exchange("tcp", "6", "send");
}

#[test]
fn tcp_ipv4_read_write() {
    exchange("tcp", "4", "rw");
}

#[test]
fn tcp_ipv4_writev_readv() {
    exchange("tcp", "4", "vec");
}

#[test]
fn tcp_ipv6_writev_readv() {
    exchange("tcp", "6", "vec");
}

#[test]
fn tcp_ipv4_sendmsg_recvmsg() {
    exchange("tcp", "4", "msg");
}

#[test]
fn tcp_ipv6_sendmsg_recvmsg() {
    exchange("tcp", "6", "msg");
}

#[test]
fn udp_ipv4_sendto_recvfrom() {
    exchange("udp", "4", "send");
}

#[test]
fn udp_ipv6_sendto_recvfrom() {
    exchange("udp", "6", "send");
}

#[test]
fn udp_ipv4_sendmsg_recvmsg() {
    exchange("udp", "4", "msg");
}

#[test]
fn udp_ipv6_sendmsg_recvmsg() {
    exchange("udp", "6", "msg");
}

/// A connection opened before the agent started: the snapshot from /proc
/// gives it its tuple and roles on both ends.
#[test]
fn connection_opened_before_capture() {
    require_root();
    let n = "200";
    let server = Peer::spawn(&["server", "--proto", "tcp", "--family", "4", "--api", "send", "-n", n]);
    let port: u16 = server.expect_line("port ").parse().unwrap();
    let mut client = Peer::spawn(&["client", "--port", &port.to_string(), "-n", n, "--wait"]);
    let cport: u16 = client.expect_line("connected ").parse().unwrap();
    let (spid, cpid) = (server.pid(), client.pid());
    let cap = Capture::start(&["--json", "--pid", &spid.to_string(), "--pid", &cpid.to_string()]);
    client.say("go");
    client.expect_line("done");
    client.wait_ok();
    server.wait_ok();
    let got = cap.stop();
    got.assert_nothing_dropped();

    let snaps: Vec<&Value> = got.of_kind(spid, &["socket_snapshot"]).collect();
    assert!(
        snaps.iter().any(|e| e["src"] == format!("127.0.0.1:{port}") && e["dst"] == format!("127.0.0.1:{cport}")),
        "server's connection in the snapshot: {snaps:?}"
    );
    let srv: Vec<&Value> = got.of_kind(spid, &["recv", "send"]).collect();
    let cli: Vec<&Value> = got.of_kind(cpid, &["recv", "send"]).collect();
    assert_eq!(srv.len(), 400, "server sends + receives");
    assert_eq!(cli.len(), 400, "client sends + receives");
    for e in &srv {
        assert_eq!(e["role"], "server", "{e}");
        assert_eq!(e["src"], format!("127.0.0.1:{port}"));
        assert_eq!(e["dst"], format!("127.0.0.1:{cport}"));
    }
    for e in &cli {
        assert_eq!(e["role"], "client", "{e}");
        assert_eq!(e["src"], format!("127.0.0.1:{cport}"));
        assert_eq!(e["dst"], format!("127.0.0.1:{port}"));
    }
}

const CONNECTS: &str = r#"
import errno, select, socket, sys
closed, listening = int(sys.argv[1]), int(sys.argv[2])
srv = socket.socket(); srv.bind(("127.0.0.1", listening)); srv.listen(8)
# blocking connect to a closed port
s = socket.socket()
try:
    s.connect(("127.0.0.1", closed)); sys.exit("connect to a closed port succeeded")
except ConnectionRefusedError:
    pass
s.close()
# non-blocking connects: one that succeeds, one that is refused
for port, want in ((listening, 0), (closed, errno.ECONNREFUSED)):
    s = socket.socket(); s.setblocking(False)
    rc = s.connect_ex(("127.0.0.1", port))
    assert rc in (0, errno.EINPROGRESS), rc
    select.select([], [s], [], 5)
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    assert err == want, (port, err)
    s.close()
print("ok")
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn connect_results_blocking_and_non_blocking() {
    require_root();
    let (closed, listening) = (free_port(), free_port());
    let cap = Capture::start(&["--json", "--port", &closed.to_string(), "--port", &listening.to_string()]);
    let out = Command::new("python3")
        .args(["-c", CONNECTS, &closed.to_string(), &listening.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = cap.stop();
    let to = |port: u16| format!("127.0.0.1:{port}");
    let connects: Vec<&Value> = got.events.iter().filter(|e| e["kind"] == "connect" && e["comm"] == "python3").collect();
    let dones: Vec<&Value> = got.events.iter().filter(|e| e["kind"] == "connect_done").collect();
    // Blocking connect to a closed port: ECONNREFUSED from the syscall.
    assert!(
        connects.iter().any(|e| e["dst"] == to(closed) && e["ret"] == -111),
        "blocking refused connect: {connects:?}"
    );
    // Non-blocking: EINPROGRESS, then the handshake's outcome.
    let nb: Vec<&&Value> = connects.iter().filter(|e| e["ret"] == -115).collect();
    assert_eq!(nb.len(), 2, "two non-blocking connects: {connects:?}");
    let ok = dones.iter().find(|e| e["dst"] == to(listening)).expect("completion of the good connect");
    assert_eq!(ok["ret"], 0);
    assert_eq!(ok["role"], "client");
    assert!(ok["latency_ns"].as_u64().unwrap() > 0);
    let refused = dones.iter().find(|e| e["dst"] == to(closed)).expect("completion of the refused connect");
    assert_eq!(refused["ret"], -111);
    for d in &dones {
        assert_eq!(d["syscall"], "connect");
        assert_eq!(d["comm"], "python3");
    }
}

/// Everything printed live comes back identical from the recording.
#[test]
fn record_then_replay_is_identical() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cap.kcap");
    let server = Peer::spawn(&["server", "--proto", "tcp", "--family", "6", "--api", "vec", "-n", "100"]);
    let port = server.expect_line("port ");
    let spid = server.pid().to_string();
    let cap = Capture::start(&["--json", "--payload", "--pid", &spid, "--record", file.to_str().unwrap()]);
    let client = Peer::spawn(&["client", "--family", "6", "--api", "vec", "-n", "100", "--port", &port]);
    client.expect_line("done");
    client.wait_ok();
    server.wait_ok();
    let live = cap.stop();
    assert!(live.events.len() >= 200, "captured {} events", live.events.len());
    let out = Command::new(kindling()).args(["replay", "--events", "--json", "--payload"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let replayed: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(replayed, live.events);
}
