//! Real servers for the root tests, each in its own temporary directory on
//! loopback, stopped when dropped.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
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
    let deadline = Instant::now() + Duration::from_secs(60);
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
        // SIGQUIT is nginx's graceful stop.
        stop_child(&mut self.child, libc::SIGQUIT, Duration::from_secs(5));
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

// ---------------------------------------------------------------------------
// Helpers shared by the servers and their clients.

/// Runs a client to completion; fails the test when it cannot start, does not
/// finish within `timeout` (it is killed) or exits with an error.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Output {
    let out = run(cmd, timeout);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command to completion (any exit status) within `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (is it installed? scripts/install-deps.sh test)"));
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("waiting for a client") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: t_out.join().unwrap(), stderr: t_err.join().unwrap() }
}

pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stops a server child: `signal`, then SIGKILL if it is still there after `grace`.
pub fn stop_child(child: &mut Child, signal: i32, grace: Duration) {
    // SAFETY: kill with our child's pid and a valid signal.
    unsafe { libc::kill(child.id() as i32, signal) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Spawns a server in the foreground, its output in `log`; fails the test if it cannot start.
fn spawn_server(cmd: &mut Command, log: &Path) -> Child {
    let f = std::fs::File::create(log).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e} (scripts/install-deps.sh test installs it)"))
}

/// Fails the test with the server's log when it died during start-up.
fn assert_alive(child: &mut Child, what: &str, log: &Path) {
    if let Ok(Some(st)) = child.try_wait() {
        panic!("{what} exited during start-up ({st}); log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
    }
}

/// Waits until `ready` holds, checking that the server is still running.
fn wait_until(child: &mut Child, what: &str, log: &Path, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        assert_alive(child, what, log);
        if ready() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not ready after {timeout:?}; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

// ---------------------------------------------------------------------------
// Redis

/// redis-server on 127.0.0.1 without persistence, in its own directory.
pub struct Redis {
    _dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("redis.log");
        let child = spawn_server(
            Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--daemonize", "no", "--protected-mode", "no", "--dir"])
                .arg(dir.path()),
            &log,
        );
        let mut r = Redis { _dir: dir, port, child };
        wait_until(&mut r.child, "redis-server", &log, Duration::from_secs(30), || port_open(port));
        r
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = run_ok(
            Command::new("redis-cli").args(["-h", "127.0.0.1", "-p", &self.port.to_string()]).args(args),
            Duration::from_secs(30),
        );
        stdout_of(&out)
    }

    /// `INFO commandstats`: calls per command (`set`, `get`, `config|get`...).
    pub fn command_calls(&self) -> BTreeMap<String, u64> {
        self.cli(&["INFO", "commandstats"])
            .lines()
            .filter_map(|l| {
                let (name, rest) = l.trim().strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
                Some((name.to_string(), calls))
            })
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        stop_child(&mut self.child, libc::SIGTERM, Duration::from_secs(10));
    }
}

// ---------------------------------------------------------------------------
// PostgreSQL

/// The directory of the PostgreSQL server binaries (Debian keeps them out of PATH).
pub fn pg_bin(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(Result::ok).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    // Highest version first, 15 preferred.
    dirs.sort_by_key(|d| std::cmp::Reverse((d.to_string_lossy().contains("/15/"), d.clone())));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.exists()).unwrap_or_else(|| {
        panic!("no /usr/lib/postgresql/*/bin/{name}: install postgresql-15 (scripts/install-deps.sh test)")
    })
}

/// uid and gid of a system user.
fn user_ids(name: &str) -> (u32, u32) {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: getpwnam with a valid C string; the result is read at once.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    assert!(!pw.is_null(), "no `{name}` user (it comes with the postgresql-15 package)");
    // SAFETY: pw is non-null and points to libc's static passwd record.
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

/// A PostgreSQL cluster made by initdb in a temporary directory, run as the
/// `postgres` user, listening on 127.0.0.1 only, with pg_stat_statements.
pub struct Postgres {
    _dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Postgres {
    pub fn start() -> Postgres {
        let (uid, gid) = user_ids("postgres");
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: chown of our own directory to an existing user.
        let c = std::ffi::CString::new(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::chown(c.as_ptr(), uid, gid) }, 0, "chown of the data directory");
        let data = dir.path().join("data");
        run_ok(
            Command::new(pg_bin("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["--auth=trust", "--username=postgres", "-E", "UTF8", "--no-locale", "--no-sync"])
                .current_dir(dir.path())
                .uid(uid)
                .gid(gid),
            Duration::from_secs(180),
        );
        let port = free_port();
        let log = dir.path().join("postgres.log");
        let child = spawn_server(
            Command::new(pg_bin("postgres"))
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", dir.path().display()))
                .args(["-c", "shared_preload_libraries=pg_stat_statements", "-c", "pg_stat_statements.track_utility=on"])
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
                .current_dir(dir.path())
                .uid(uid)
                .gid(gid),
            &log,
        );
        let pg = |port: u16| {
            Command::new(pg_bin("psql"))
                .args(["-X", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres"])
                .args(["-At", "-c", "SELECT 1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let mut server = Postgres { _dir: dir, port, child };
        wait_until(&mut server.child, "postgres", &log, Duration::from_secs(120), || port_open(port) && pg(port));
        server.psql("CREATE EXTENSION pg_stat_statements");
        server
    }

    /// The postmaster (backends are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn env(&self, cmd: &mut Command) {
        cmd.env("PGHOST", "127.0.0.1").env("PGPORT", self.port.to_string()).env("PGUSER", "postgres");
        cmd.env("PGDATABASE", "postgres");
    }

    /// Runs SQL with psql; its unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        let mut cmd = Command::new(pg_bin("psql"));
        self.env(&mut cmd);
        cmd.args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        stdout_of(&run_ok(&mut cmd, Duration::from_secs(60)))
    }

    pub fn pgbench(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(pg_bin("pgbench"));
        self.env(&mut cmd);
        cmd.args(args);
        let out = run_ok(&mut cmd, Duration::from_secs(600));
        stdout_of(&out) + &String::from_utf8_lossy(&out.stderr)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: fast shutdown; SIGQUIT-free since stop_child kills as a last resort.
        stop_child(&mut self.child, libc::SIGINT, Duration::from_secs(30));
    }
}

// ---------------------------------------------------------------------------
// MariaDB

/// MariaDB with a fresh datadir from mysql_install_db, root without a
/// password, listening on 127.0.0.1 only (its socket in the temp dir).
pub struct Mariadb {
    _dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Mariadb {
    pub fn start() -> Mariadb {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let data = d.join("data");
        run_ok(
            Command::new("mysql_install_db")
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .args(["--auth-root-authentication-method=normal", "--user=root", "--skip-test-db"])
                .current_dir(d),
            Duration::from_secs(300),
        );
        let port = free_port();
        let log = d.join("mariadb.log");
        let server = if Path::new("/usr/sbin/mariadbd").exists() { "/usr/sbin/mariadbd" } else { "mysqld" };
        let child = spawn_server(
            Command::new(server)
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--socket={}", d.join("mysqld.sock").display()))
                .arg(format!("--pid-file={}", d.join("mysqld.pid").display()))
                .arg(format!("--log-error={}", log.display()))
                .args(["--bind-address=127.0.0.1", &format!("--port={port}"), "--user=root", "--skip-log-bin"])
                .args(["--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=0"])
                .current_dir(d),
            &d.join("mariadb.out"),
        );
        let mut m = Mariadb { _dir: dir, port, child };
        let probe = |port: u16| {
            Command::new("mysql")
                .args(["--no-defaults", "-h127.0.0.1", &format!("-P{port}"), "-uroot", "-e", "SELECT 1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        wait_until(&mut m.child, "mariadbd", &log, Duration::from_secs(120), || port_open(port) && probe(port));
        m
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Arguments that connect a MariaDB client to this server.
    pub fn client_args(&self) -> Vec<String> {
        vec!["--no-defaults".into(), "-h127.0.0.1".into(), format!("-P{}", self.port), "-uroot".into()]
    }

    /// Runs SQL with the mysql client (batch mode, no column names).
    pub fn sql(&self, sql: &str) -> String {
        let out = run_ok(Command::new("mysql").args(self.client_args()).args(["-N", "-B", "-e", sql]), Duration::from_secs(60));
        stdout_of(&out)
    }

    /// `SHOW GLOBAL STATUS` counters.
    pub fn global_status(&self) -> BTreeMap<String, u64> {
        self.sql("SHOW GLOBAL STATUS")
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once('\t')?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect()
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        stop_child(&mut self.child, libc::SIGTERM, Duration::from_secs(60));
    }
}

// ---------------------------------------------------------------------------
// dnsmasq

/// dnsmasq answering `*.kindling.test` with 10.1.2.3 and NXDOMAIN for other
/// names under `test`, no upstream; in the foreground but forking for TCP
/// queries as it does in production (`--keep-in-foreground`, not `--no-daemon`).
pub struct Dnsmasq {
    _dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

pub const DNS_ANSWER: &str = "10.1.2.3";

impl Dnsmasq {
    pub fn start() -> Dnsmasq {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("dnsmasq.log");
        let child = spawn_server(
            Command::new("dnsmasq")
                .args(["--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--user=root"])
                .args(["--listen-address=127.0.0.1", "--bind-interfaces", &format!("--port={port}")])
                .arg(format!("--address=/kindling.test/{DNS_ANSWER}"))
                .arg("--local=/test/")
                .arg(format!("--pid-file={}", dir.path().join("dnsmasq.pid").display())),
            &log,
        );
        let mut d = Dnsmasq { _dir: dir, port, child };
        wait_until(&mut d.child, "dnsmasq", &log, Duration::from_secs(30), || port_open(port));
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        stop_child(&mut self.child, libc::SIGTERM, Duration::from_secs(10));
    }
}

// ---------------------------------------------------------------------------
// gRPC (python3 grpcio, tests/peers/grpcpeer.py)

/// A python3 that can import grpc: Debian's, with python3-grpcio, else the
/// first python3 on PATH that has it.
pub fn grpc_python() -> &'static str {
    for py in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(py)
            .args(["-c", "import grpc"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return py;
        }
    }
    panic!("no python3 with grpc: apt-get install python3-grpcio (scripts/install-deps.sh test)");
}

/// grpcpeer.py's server: /pkg.Service/{Echo,Missing,Stream} on 127.0.0.1.
pub struct GrpcServer {
    pub port: u16,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl GrpcServer {
    pub fn start() -> GrpcServer {
        let mut child = Command::new(grpc_python())
            .arg(crate::util::peer_script("grpcpeer.py"))
            .arg("server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting grpcpeer.py server");
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("reading the server's port");
        let port = line.trim().strip_prefix("port ").and_then(|p| p.parse().ok());
        let Some(port) = port else {
            let _ = child.kill();
            panic!("grpcpeer.py server did not start (printed {line:?})");
        };
        GrpcServer { port, child, stdin }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        drop(self.stdin.take()); // the server stops when its stdin closes
        stop_child(&mut self.child, 0, Duration::from_secs(10));
    }
}
