//! P7: a slow request's end -> its trace-profile listed by the API. A real
//! threaded HTTP server (Python's, a stand-in for any thread-per-request
//! server) answers after ~300 ms; each measured request carries its own
//! `traceparent`, and the API is polled for that trace id.

use crate::nginx::{free_port, kindling_bin, Agent};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = r#"
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(0.3)
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(port: u16, trace: Option<&str>) -> anyhow::Result<()> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let tp = trace.map(|t| format!("traceparent: 00-{t}-00f067aa0ba902b7-01\r\n")).unwrap_or_default();
    write!(s, "GET /slow HTTP/1.1\r\nHost: bench\r\n{tp}Connection: close\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    anyhow::ensure!(out.starts_with(b"HTTP/1.0 200") || out.starts_with(b"HTTP/1.1 200"), "bad response");
    Ok(())
}

pub fn p7() -> anyhow::Result<()> {
    let agent = Agent::start_with(&kindling_bin(), Some("[requests.slow_ms]\nhttp = 100\n[traceprof]\nslow = 100\n"))?;
    let port = free_port()?;
    let server = Server(Command::new("python3").args(["-c", SERVER, &port.to_string()]).stdout(Stdio::null()).spawn()?);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the python server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The server is followed from its first request on.
    get(port, None)?;
    std::thread::sleep(Duration::from_secs(2));
    let mut lat: Vec<f64> = Vec::new();
    for i in 0..10u32 {
        let trace = format!("{:032x}", 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_0000u128 + i as u128);
        get(port, Some(&trace))?;
        let done = Instant::now();
        loop {
            let body = agent.get(&format!("/api/v1/profiles?trace_id={trace}"))?;
            if body.contains(&trace) {
                lat.push(done.elapsed().as_secs_f64());
                break;
            }
            anyhow::ensure!(done.elapsed() < Duration::from_secs(30), "request {i}'s profile never showed");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    drop(server);
    lat.sort_by(f64::total_cmp);
    let max = lat[lat.len() - 1];
    println!(
        "P7 slow request end -> trace-profile listed: median {:.2} s, max {:.2} s over {} requests (target <= 5 s: {})",
        lat[lat.len() / 2],
        max,
        lat.len(),
        if max <= 5.0 { "met" } else { "NOT met" }
    );
    Ok(())
}
