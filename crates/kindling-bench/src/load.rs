//! P5 (agent memory with 10k open connections and 1k endpoints) and P6 (no
//! lost events at 20k req/s sustained, and losses counted above that): the
//! real `kindling run` against nginx driven by a paced keep-alive client.

use crate::nginx::{kindling_bin, Agent, Nginx};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One keep-alive GET; reads the whole response (nginx sends Content-Length).
fn get(conn: &mut BufReader<TcpStream>, path: &str) -> anyhow::Result<()> {
    // One write: several small ones wait on Nagle and delayed ACKs.
    conn.get_mut().write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes())?;
    let mut len = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        anyhow::ensure!(conn.read_line(&mut line)? > 0, "server closed the connection");
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse()?;
        }
    }
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body)?;
    Ok(())
}

/// `rate` requests per second for `secs` over `conns` paced connections;
/// returns the rate achieved.
fn paced_load(port: u16, rate: u64, secs: u64, conns: u64) -> anyhow::Result<f64> {
    let per_conn = Duration::from_nanos(1_000_000_000 * conns / rate);
    let start = Instant::now();
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            std::thread::spawn(move || -> anyhow::Result<u64> {
                let mut c = BufReader::new(TcpStream::connect(("127.0.0.1", port))?);
                c.get_ref().set_nodelay(true)?;
                let end = Instant::now() + Duration::from_secs(secs);
                let mut next = Instant::now();
                let mut n = 0;
                while next < end {
                    get(&mut c, "/index.html")?;
                    n += 1;
                    next += per_conn;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.join().map_err(|_| anyhow::anyhow!("load thread panicked"))??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

pub fn p6() -> anyhow::Result<()> {
    let nginx = Nginx::start_with(1024, "")?;
    let agent = Agent::start(&kindling_bin())?;
    let rate = paced_load(nginx.port, 20_000, 10, 8)?;
    std::thread::sleep(Duration::from_secs(2));
    let (dropped, reasons) = agent.dropped()?;
    println!(
        "P6 sustained load: {rate:.0} req/s for 10 s through nginx, both ends traced: {dropped} events lost (target 0){}",
        if reasons.is_empty() { String::new() } else { format!(" [{reasons}]") }
    );
    // Above the target: saturate, and show that any loss is counted.
    let out = std::process::Command::new("wrk")
        .args(["-t2", "-c32", "-d8s", &format!("http://127.0.0.1:{}/index.html", nginx.port)])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text.lines().find_map(|l| l.trim().strip_prefix("Requests/sec:")).unwrap_or("?").trim().to_string();
    std::thread::sleep(Duration::from_secs(2));
    let (after, reasons) = agent.dropped()?;
    println!(
        "P6 saturated: wrk at {rps} req/s: {} more events lost, each counted by reason{}",
        after - dropped,
        if reasons.is_empty() { String::new() } else { format!(" [{reasons}]") }
    );
    Ok(())
}

/// 1000 distinct endpoint names (letters only, so they are not normalised
/// away as ids).
fn endpoint(i: usize) -> String {
    let mut s = String::from("/ep/");
    let mut n = i;
    for _ in 0..3 {
        s.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
    }
    s
}

pub fn p5() -> anyhow::Result<()> {
    const CONNS: usize = 10_000;
    const ENDPOINTS: usize = 1_000;
    raise_nofile(CONNS as u64 + 1_000)?;
    // nginx closes idle keep-alive connections once fewer than 1/16 of its
    // connection slots are free: leave more than that free.
    let nginx = Nginx::start_with(CONNS as u32 / 15 * 16 + 512, "keepalive_timeout 600s; location /ep/ { return 200 \"ok\\n\"; }")?;
    let agent = Agent::start_with(&kindling_bin(), std::env::var("P5_CONFIG").ok().as_deref())?;
    let idle_rss = agent.rss();
    let mut conns = Vec::with_capacity(CONNS);
    // Every connection makes a request as soon as it is open (so a burst of
    // connects never overflows the listen backlog); together they cover the
    // 1000 endpoints, three times.
    let started = Instant::now();
    for i in 0..CONNS {
        let mut c = BufReader::new(TcpStream::connect(("127.0.0.1", nginx.port))?);
        c.get_ref().set_nodelay(true)?;
        get(&mut c, &endpoint(i % ENDPOINTS))?;
        conns.push(c);
    }
    let opened = Instant::now();
    eprintln!("  p5: {CONNS} connections open in {:.1} s", opened.duration_since(started).as_secs_f64());
    for round in 1..3 {
        for (i, c) in conns.iter_mut().enumerate() {
            get(c, &endpoint((i + round) % ENDPOINTS))?;
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    let rss = agent.rss();
    let (dropped, reasons) = agent.dropped()?;
    println!(
        "P5 memory: agent RSS {:.1} MiB with {CONNS} open connections (both ends traced) and {ENDPOINTS} endpoints \
         (idle {:.1} MiB; {dropped} events lost [{reasons}]) (target <= 128 MiB)",
        rss as f64 / 1048576.0,
        idle_rss as f64 / 1048576.0
    );
    if let Ok(m) = agent.get("/metrics") {
        for l in m.lines().filter(|l| l.starts_with("kindling_telemetry_") && !l.contains("dropped")) {
            eprintln!("  p5: {l}");
        }
    }
    drop(conns);
    Ok(())
}

/// Raises the soft open-file limit to at least `n` (within the hard limit:
/// containers often deny raising that even to root).
fn raise_nofile(n: u64) -> anyhow::Result<()> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid pointers to an rlimit for the calls' duration.
    anyhow::ensure!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0, "cannot read the open-file limit");
    anyhow::ensure!(lim.rlim_max >= n, "the open-file hard limit {} is below the {n} this section needs", lim.rlim_max);
    lim.rlim_cur = lim.rlim_cur.max(n);
    // SAFETY: as above.
    anyhow::ensure!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0, "cannot raise the open-file limit to {n}");
    Ok(())
}
