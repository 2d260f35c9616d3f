//! `kindling run`: the agent. At this stage it captures continuously, keeps
//! the socket table, and serves its health and self-telemetry over HTTP.

use crate::cli::RunArgs;
use crate::config::Config;
use crate::source::{self, SourceOptions};
use anyhow::Context;
use axum::{http::header, response::IntoResponse, routing::get, Router};
use crossbeam_channel::RecvTimeoutError;
use kindling_sockets::SocketTable;
use kindling_telemetry::Telemetry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(l) = args.listen {
        cfg.api.listen = l;
    }
    if let Some(d) = args.data_dir {
        cfg.storage.data_dir = d;
    }
    std::fs::create_dir_all(&cfg.storage.data_dir)
        .with_context(|| format!("creating data dir {}", cfg.storage.data_dir.display()))?;

    let telemetry = Telemetry::new();
    let opts = SourceOptions {
        pids: cfg.capture.pids.clone(),
        ports: cfg.capture.ports.clone(),
        snaplen: cfg.capture.snaplen,
    };
    let src = source::start(&opts, &telemetry)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(cfg.api.listen))
        .with_context(|| format!("cannot listen on {}", cfg.api.listen))?;
    tracing::info!("listening on http://{}", cfg.api.listen);
    eprintln!("kindling: agent running, API on http://{}", cfg.api.listen);

    let stop = Arc::new(AtomicBool::new(false));
    let analysis = {
        let stop = stop.clone();
        let telemetry = telemetry.clone();
        std::thread::Builder::new().name("kindling-analysis".into()).spawn(move || {
            let mut table = SocketTable::default();
            let sockets = telemetry.gauge("kindling_telemetry_socket_table_size", "Sockets the agent tracks.", &[]);
            let overflow = telemetry.dropped("socket_table_full");
            for ev in src.snapshot {
                let mut ev = ev;
                table.observe(&mut ev);
            }
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                match src.events.recv_timeout(Duration::from_millis(200)) {
                    Ok(mut ev) => table.observe(&mut ev),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                if last.elapsed() >= Duration::from_secs(1) {
                    source::publish_kernel_drops(&src.probe, &telemetry);
                    sockets.set(table.len() as u64);
                    overflow.set(table.overflow);
                    last = Instant::now();
                }
            }
            let _ = src.probe.stop();
        })?
    };

    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let t = telemetry.clone();
                async move {
                    let mut s = String::new();
                    t.render(&mut s);
                    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s).into_response()
                }
            }),
        );
    rt.block_on(async {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
                }
            })
            .await
    })?;
    stop.store(true, Ordering::SeqCst);
    let _ = analysis.join();
    Ok(())
}
