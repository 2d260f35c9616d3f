//! Real servers for the root tests, each in its own temporary directory on
//! loopback, stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nginx {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Nginx {
    /// nginx with two workers serving `www/` and logging, per request, the
    /// connection serial number, request length, bytes sent and status.
    /// `extra` is added inside the server block.
    pub fn start(extra: &str) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display();
        std::fs::create_dir_all(dir.path().join("www")).unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        std::fs::write(dir.path().join("www/index.html"), "<html>".to_string() + &"kindling ".repeat(100) + "</html>\n").unwrap();
        let conf = format!(
            "user root;\nworker_processes 2;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  log_format kd '$connection $request_length $bytes_sent $status $remote_port $request';\n\
               access_log {d}/access.log kd;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n\
               fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n\
               keepalive_requests 1000000;\n\
               server {{\n    listen 127.0.0.1:{port};\n    root {d}/www;\n    {extra}\n  }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .args(["-c", &format!("{d}/nginx.conf"), "-e", &format!("{d}/error.log")])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning nginx (apt-get install nginx)");
        wait_for_port(port);
        Nginx { dir, port, child }
    }

    /// The master's pid (workers are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn access_log(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    /// Access-log lines: (connection serial, request length, bytes sent, status).
    pub fn log_entries(&self) -> Vec<(u64, u64, u64, u16)> {
        read_log(&self.access_log())
    }
}

fn read_log(p: &Path) -> Vec<(u64, u64, u64, u16)> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .collect()
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: kill with a valid pid; SIGQUIT is nginx's graceful stop.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGQUIT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// wrk's own count of completed requests (`N requests in ...`).
pub fn wrk_requests(output: &str) -> u64 {
    output
        .lines()
        .find_map(|l| {
            let l = l.trim();
            let (n, rest) = l.split_once(' ')?;
            rest.starts_with("requests in").then(|| n.parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no request count in wrk output:\n{output}"))
}
