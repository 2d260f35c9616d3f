//! P1 (nginx+wrk throughput, agent on / agent off) and P2 (agent CPU per
//! 10k req/s): the real `kindling run` against real nginx and wrk.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_secs(8);

pub struct Nginx {
    child: Child,
    pub port: u16,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A temporary directory removed on drop (no extra dependency).
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> std::io::Result<Dir> {
            let p = std::env::temp_dir().join(format!("kindling-bench-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&p)?;
            Ok(Dir(p))
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Nginx {
    fn start() -> anyhow::Result<Nginx> {
        Nginx::start_with(1024, "")
    }

    /// nginx with room for `connections` and `extra` inside the server block.
    pub fn start_with(connections: u32, extra: &str) -> anyhow::Result<Nginx> {
        let dir = tempdir::Dir::new("nginx")?;
        let d = dir.0.display().to_string();
        let port = free_port()?;
        std::fs::create_dir_all(dir.0.join("www"))?;
        std::fs::write(dir.0.join("www/index.html"), "kindling ".repeat(100))?;
        let conf = format!(
            "user root; worker_processes 1; daemon off; pid {d}/n.pid; error_log {d}/e.log;\n\
             worker_rlimit_nofile {nofile};\n\
             events {{ worker_connections {connections}; }}\n\
             http {{ access_log off; keepalive_requests 1000000; client_body_temp_path {d};\n\
             proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
             server {{ listen 127.0.0.1:{port}; root {d}/www; {extra} }} }}\n",
            nofile = connections + 64
        );
        std::fs::write(dir.0.join("n.conf"), conf)?;
        let child = Command::new("nginx")
            .args(["-c", &format!("{d}/n.conf"), "-e", &format!("{d}/e.log")])
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Nginx { child, port, _dir: dir })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master stops its workers too (SIGKILL would orphan them).
        // SAFETY: kill with a valid pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Runs wrk and returns requests per second.
fn wrk(port: u16) -> anyhow::Result<f64> {
    let out = Command::new("wrk")
        .args(["-t1", "-c8", &format!("-d{}s", RUN.as_secs()), &format!("http://127.0.0.1:{port}/index.html")])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:").map(|v| v.trim().parse::<f64>()))
        .ok_or_else(|| anyhow::anyhow!("no Requests/sec in wrk output:\n{text}"))??;
    Ok(rps)
}

/// CPU seconds a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

pub struct Agent {
    pub child: Child,
    pub port: u16,
    _dir: tempdir::Dir,
}

impl Agent {
    pub fn start(bin: &Path) -> anyhow::Result<Agent> {
        Agent::start_with(bin, None)
    }

    /// With a configuration file's text.
    pub fn start_with(bin: &Path, config: Option<&str>) -> anyhow::Result<Agent> {
        let dir = tempdir::Dir::new("agent")?;
        let port = free_port()?;
        let mut cmd = Command::new(bin);
        if let Some(text) = config {
            let path = dir.0.join("kindling.toml");
            std::fs::write(&path, text)?;
            cmd.arg("run").arg("--config").arg(&path);
        } else {
            cmd.arg("run");
        }
        let mut child = cmd
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.0.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        // Ready when the API answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = child.try_wait() {
                anyhow::bail!("kindling run exited early: {st}");
            }
            anyhow::ensure!(Instant::now() < deadline, "kindling run did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Agent { child, port, _dir: dir })
    }
}

impl Agent {
    /// `GET path` on the agent's API: the body.
    pub fn get(&self, path: &str) -> anyhow::Result<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
    }

    /// Sum of `kindling_telemetry_dropped_events_total` over every reason.
    pub fn dropped(&self) -> anyhow::Result<(u64, String)> {
        let m = self.get("/metrics")?;
        let mut total = 0u64;
        let mut reasons = Vec::new();
        for l in m.lines().filter(|l| l.starts_with("kindling_telemetry_dropped_events_total{")) {
            let v: u64 = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) as u64;
            if v > 0 {
                reasons.push(format!("{}={v}", l.split('"').nth(1).unwrap_or("?")));
            }
            total += v;
        }
        Ok((total, reasons.join(" ")))
    }

    /// The agent's resident memory (bytes).
    pub fn rss(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()))
            })
            .unwrap_or(0)
            * 1024
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: kill with a valid pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

pub fn start_nginx() -> anyhow::Result<Nginx> {
    Nginx::start()
}

pub fn kindling_bin() -> PathBuf {
    let me = std::env::current_exe().unwrap_or_default();
    me.with_file_name("kindling")
}

pub fn p1_p2() -> anyhow::Result<()> {
    let bin = kindling_bin();
    anyhow::ensure!(bin.exists(), "{} not built (cargo build --release --bin kindling)", bin.display());
    let nginx = Nginx::start()?;
    wrk(nginx.port)?; // warm-up
    let (mut off, mut on, mut cpu_per_10k) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..2 {
        off.push(wrk(nginx.port)?);
        let agent = Agent::start(&bin)?;
        let before = cpu_seconds(agent.child.id());
        let t0 = Instant::now();
        let rps = wrk(nginx.port)?;
        let cpu = cpu_seconds(agent.child.id()) - before;
        let secs = t0.elapsed().as_secs_f64();
        on.push(rps);
        cpu_per_10k.push(cpu / secs / (rps / 10_000.0));
        drop(agent);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "P1 nginx+wrk throughput: {:.0} req/s agent off, {:.0} req/s agent on; on/off = {:.3} (target >= 0.95)",
        mean(&off),
        mean(&on),
        mean(&on) / mean(&off)
    );
    println!(
        "P2 agent CPU: {:.3} cores per 10k req/s at {:.0} req/s (target <= 0.10)",
        mean(&cpu_per_10k),
        mean(&on)
    );
    Ok(())
}
