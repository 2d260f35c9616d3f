//! P3: the cost our programs add to a traced syscall, against the floor of
//! empty programs attached to the same tracepoints.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

const ROUNDS: usize = 5;
const ITERS: usize = 100_000;

/// ns per syscall of a write/read ping-pong over one loopback TCP connection
/// (each iteration is two traced socket syscalls).
fn socket_loop(a: &mut TcpStream, b: &mut TcpStream) -> f64 {
    let msg = [b'x'; 64];
    let mut buf = [0u8; 64];
    let start = Instant::now();
    for _ in 0..ITERS {
        a.write_all(&msg).expect("write");
        b.read_exact(&mut buf).expect("read");
    }
    start.elapsed().as_nanos() as f64 / (2 * ITERS) as f64
}

/// ns per read() of /dev/zero: a hooked syscall on a non-socket fd, which our
/// programs must reject cheaply in the kernel.
fn file_loop(f: &mut std::fs::File) -> f64 {
    let mut buf = [0u8; 64];
    let start = Instant::now();
    for _ in 0..ITERS * 2 {
        f.read_exact(&mut buf).expect("read /dev/zero");
    }
    start.elapsed().as_nanos() as f64 / (2 * ITERS) as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Nothing,
    Empty,
    Kindling,
}

pub fn p3() -> anyhow::Result<()> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let mut a = TcpStream::connect(l.local_addr()?)?;
    let (mut b, _) = l.accept()?;
    a.set_nodelay(true)?;
    let mut zero = std::fs::File::open("/dev/zero")?;
    let events = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));

    let mut sock = [Vec::new(), Vec::new(), Vec::new()];
    let mut file = [Vec::new(), Vec::new(), Vec::new()];
    // Interleave the modes so drift in machine load affects all alike.
    for _ in 0..ROUNDS {
        for (i, mode) in [Mode::Nothing, Mode::Empty, Mode::Kindling].into_iter().enumerate() {
            let handle = match mode {
                Mode::Nothing => None,
                Mode::Empty => Some(kindling_probe::start_empty()?),
                Mode::Kindling => {
                    let ev = events.clone();
                    // Trace everything, this process included: the loop is the workload.
                    let cfg = kindling_probe::ProbeConfig { self_pid: 0, ..Default::default() };
                    Some(kindling_probe::start(cfg, move |_raw| {
                        ev.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    })?)
                }
            };
            // Warm up, then measure.
            socket_loop(&mut a, &mut b);
            sock[i].push(socket_loop(&mut a, &mut b));
            file[i].push(file_loop(&mut zero));
            drop(handle);
        }
    }
    let s: Vec<f64> = sock.into_iter().map(median).collect();
    let f: Vec<f64> = file.into_iter().map(median).collect();
    let added = |v: &[f64], i: usize| (v[i] - v[0]).max(0.0);
    let ratio = |v: &[f64]| if added(v, 1) > 0.0 { added(v, 2) / added(v, 1) } else { f64::NAN };
    println!(
        "P3 socket syscall: {:.0} ns bare, {:.0} ns with empty programs (+{:.0}), {:.0} ns with Kindling (+{:.0}); \
         added cost ours/empty = {:.2} (target <= 1.5)",
        s[0],
        s[1],
        added(&s, 1),
        s[2],
        added(&s, 2),
        ratio(&s)
    );
    println!(
        "P3 non-socket read(): {:.0} ns bare, {:.0} ns empty (+{:.0}), {:.0} ns Kindling (+{:.0}); ours/empty = {:.2}",
        f[0],
        f[1],
        added(&f, 1),
        f[2],
        added(&f, 2),
        ratio(&f)
    );
    println!(
        "     ({} events delivered to the reader during the Kindling runs)",
        events.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}
