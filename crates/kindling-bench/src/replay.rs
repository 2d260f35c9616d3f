//! P4: events analysed per second on one core — a recording of real
//! nginx+wrk traffic (made here, as root) replayed through the full analysis
//! pipeline: roles, protocol detection and parsing, pairing, workloads,
//! aggregation. Decoding the file is timed separately.

use kindling_events::capture::CaptureReader;
use kindling_events::model::Event;
use kindling_pipeline::{Pipeline, PipelineConfig};
use kindling_workloads::NoLookup;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn p4() -> anyhow::Result<()> {
    let bin = crate::nginx::kindling_bin();
    let file = std::env::temp_dir().join(format!("kindling-p4-{}.kcap", std::process::id()));
    let nginx = crate::nginx::start_nginx()?;
    let mut rec = Command::new(&bin)
        .args(["requests", "--port", &nginx.port.to_string(), "--record"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("wrk")
        .args(["-t1", "-c8", "-d3s", &format!("http://127.0.0.1:{}/index.html", nginx.port)])
        .output()?;
    // SAFETY: kill with a valid pid.
    unsafe { libc::kill(rec.id() as i32, libc::SIGINT) };
    rec.wait()?;
    drop(nginx);

    let t0 = Instant::now();
    let events: Vec<Event> = CaptureReader::open(&file)?.collect::<Result<_, _>>()?;
    let decode = t0.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&file);
    anyhow::ensure!(events.len() > 10_000, "recording has only {} events", events.len());

    let mut best = f64::MAX;
    let mut requests = 0;
    for _ in 0..3 {
        let mut evs = events.clone();
        let mut p = Pipeline::new(PipelineConfig::default(), Box::new(NoLookup));
        let t = Instant::now();
        let mut n = 0;
        for ev in evs.iter_mut() {
            n += p.process(ev).len();
        }
        n += p.finish().len();
        best = best.min(t.elapsed().as_secs_f64());
        requests = n;
    }
    println!(
        "P4 replay: {:.2} M events/s analysed on one core ({} events -> {} requests, {:.0} ns/event; \
         reading the file: {:.2} M events/s) (target >= 1.0 M/s)",
        events.len() as f64 / best / 1e6,
        events.len(),
        requests,
        best * 1e9 / events.len() as f64,
        events.len() as f64 / decode / 1e6
    );
    Ok(())
}
