//! nginx serving wrk: the capture's connections and bytes equal nginx's own
//! access log, and the request count equals wrk's.

use crate::servers::*;
use crate::util::*;
use serde_json::Value;
use std::collections::HashSet;
use std::process::Command;

#[test]
fn nginx_wrk_bytes_and_connections_match_access_log() {
    require_root();
    let nginx = Nginx::start("location / { }");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nginx.kcap");
    let cap = Capture::start(&["--quiet", "--pid", &nginx.pid().to_string(), "--record", file.to_str().unwrap()]);
    let out = Command::new("wrk")
        .args(["-t2", "-c10", "-d5s", &format!("http://127.0.0.1:{}/index.html", nginx.port)])
        .output()
        .expect("running wrk (apt-get install wrk)");
    assert!(out.status.success());
    let wrk_out = String::from_utf8_lossy(&out.stdout).to_string();
    let got = cap.stop();
    got.assert_nothing_dropped();
    nginx_flush(&nginx);

    let log = nginx.log_entries();
    let wrk_n = wrk_requests(&wrk_out);
    assert!(wrk_n > 1000, "wrk made only {wrk_n} requests");
    // wrk counts responses it read; requests still in flight when it stops are
    // answered and logged by nginx but not counted by wrk (at most one per connection).
    assert!((log.len() as u64) >= wrk_n && (log.len() as u64) <= wrk_n + 10, "log {} vs wrk {wrk_n}", log.len());

    let out = Command::new(kindling()).args(["replay", "--events", "--json"]).arg(&file).output().unwrap();
    assert!(out.status.success());
    let events: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let on_nginx = |e: &&Value| port_of(e["src"].as_str().unwrap_or("")) == nginx.port && e["comm"] == "nginx";
    let accepted: HashSet<u64> =
        events.iter().filter(|e| e["kind"] == "accept").filter(on_nginx).map(|e| e["sock_id"].as_u64().unwrap()).collect();
    let recvs: Vec<&Value> = events.iter().filter(|e| e["kind"] == "recv").filter(on_nginx).collect();
    let sends: Vec<&Value> = events.iter().filter(|e| e["kind"] == "send").filter(on_nginx).collect();
    let recv: u64 = recvs.iter().map(|e| e["bytes"].as_u64().unwrap()).sum();
    let sent: u64 = sends.iter().map(|e| e["bytes"].as_u64().unwrap()).sum();
    // Connections that carried requests; wrk may open one more at the very end
    // that never sends anything (it is accepted, but nginx logs nothing for it).
    let with_requests: HashSet<u64> =
        recvs.iter().filter(|e| e["bytes"].as_u64() > Some(0)).map(|e| e["sock_id"].as_u64().unwrap()).collect();
    let conns: HashSet<u64> = log.iter().map(|e| e.0).collect();
    assert_eq!(with_requests.len(), conns.len(), "connections with requests vs access log");
    assert!(with_requests.is_subset(&accepted), "every such connection was seen accepted");
    assert!(accepted.len() <= conns.len() + 2, "accepted {} vs logged {}", accepted.len(), conns.len());
    assert_eq!(recv, log.iter().map(|e| e.1).sum::<u64>(), "request bytes vs $request_length");
    if sent != log.iter().map(|e| e.2).sum::<u64>() {
        std::fs::copy(&file, "/tmp/nginx-fail.kcap").ok();
        std::fs::copy(nginx.access_log(), "/tmp/nginx-fail.access").ok();
    }
    assert_eq!(sent, log.iter().map(|e| e.2).sum::<u64>(), "response bytes vs $bytes_sent");
    // Every byte nginx moved was seen from the server side.
    let not_server: Vec<&Value> = events
        .iter()
        .filter(on_nginx)
        .filter(|e| ["accept", "recv", "send", "close"].iter().any(|k| e["kind"] == *k))
        .filter(|e| e["role"] != "server")
        .collect();
    assert!(not_server.is_empty(), "events without the server role: {:?}", &not_server[..not_server.len().min(5)]);
}

/// nginx writes its access log through a buffer only when configured so; ours
/// is unbuffered, but give the workers a moment to finish the last lines.
fn nginx_flush(_n: &Nginx) {
    std::thread::sleep(std::time::Duration::from_millis(300));
}
