//! `kindling run`: the agent. Capture -> analysis pipeline -> HTTP API.
//!
//! Threads: the ring-buffer reader (kindling-probe) decodes into a bounded
//! queue; the analysis thread drains it in batches into the pipeline (under a
//! mutex the API handlers take briefly) and feeds the store, whose writer
//! thread commits in batches; a small tokio runtime serves HTTP and the UI.

use crate::cli::RunArgs;
use crate::config::Config;
use crate::source::{self, SourceOptions};
use anyhow::Context;
use crossbeam_channel::RecvTimeoutError;
use kindling_api::ApiState;
use kindling_pipeline::{Pipeline, PipelineStats};
use kindling_telemetry::Telemetry;
use kindling_workloads::ProcFsLookup;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Reads one figure out of a stats snapshot (for publishing it as a metric).
type StatFn<S> = fn(&S) -> u64;

/// Events processed per lock of the pipeline: long enough to amortise the
/// lock, short enough that API calls never wait long.
const BATCH: usize = 512;

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
        sched: Some(cfg.sched()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Bind first: a port in use is a one-line error before any probe loads.
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(cfg.api.listen))
        .with_context(|| format!("cannot listen on {}", cfg.api.listen))?;
    let store = Arc::new(kindling_store::Store::open(cfg.store())?);
    let src = source::start(&opts, &telemetry)?;
    let mut p = Pipeline::new(cfg.pipeline(), Box::new(ProcFsLookup::default()));
    p.register_listener(cfg.api.listen, std::process::id());
    *p.profiling_mut() = cfg.profiling();
    p.profiling_mut().timelines.enable_unwinding();
    p.track_edges(true);
    let pipeline = Arc::new(Mutex::new(p));
    eprintln!("kindling: agent running, API on http://{}", cfg.api.listen);

    let stop = Arc::new(AtomicBool::new(false));
    let analysis = {
        let (stop, telemetry, pipeline, store) = (stop.clone(), telemetry.clone(), pipeline.clone(), store.clone());
        std::thread::Builder::new()
            .name("kindling-analysis".into())
            .spawn(move || analysis_loop(src, pipeline, telemetry, stop, store))?
    };

    let state = Arc::new(ApiState { pipeline, telemetry, store: Some(store) });
    let app = kindling_api::router(state);
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
    analysis.join().map_err(|_| anyhow::anyhow!("analysis thread panicked"))??;
    Ok(())
}

fn analysis_loop(
    src: source::LiveSource,
    pipeline: Arc<Mutex<Pipeline>>,
    telemetry: Telemetry,
    stop: Arc<AtomicBool>,
    store: Arc<kindling_store::Store>,
) -> anyhow::Result<()> {
    let lock = || pipeline.lock().unwrap_or_else(|e| e.into_inner());
    let mut feed = store.feed();
    // Hands the records the pipeline just completed to the store (sampled there).
    let to_store = |p: &Pipeline, feed: &mut kindling_store::Feed| {
        for (r, client, server) in p.emitted_edges() {
            feed.record(r, client, server);
        }
    };
    {
        let mut p = lock();
        for mut ev in src.snapshot {
            p.process(&mut ev);
            to_store(&p, &mut feed);
        }
    }
    let publish = Published::new(&telemetry);
    let store_published = StorePublished::new(&telemetry);
    let traceprof_published = TraceprofPublished::new(&telemetry);
    // Trace-profiles are symbolized on this thread (the symbolizer is not Send).
    let mut symbolizer = kindling_profile::Symbolizer::new();
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match src.events.recv_timeout(Duration::from_millis(200)) {
            Ok(mut first) => {
                let mut p = lock();
                p.process(&mut first);
                to_store(&p, &mut feed);
                for mut ev in src.events.try_iter().take(BATCH) {
                    p.process(&mut ev);
                    to_store(&p, &mut feed);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last.elapsed() >= Duration::from_millis(500) {
            let stats = {
                let mut p = lock();
                let now = source::now_ns();
                p.tick(now);
                to_store(&p, &mut feed);
                feed.tick(p.aggregator(), now);
                p.build_profiles(&mut symbolizer);
                store_profiles(&mut p, &store);
                traceprof_published.update(&p.traceprof_stats());
                p.stats()
            };
            crate::profile::sync_agent(&src.probe, &mut lock(), &telemetry);
            source::publish_kernel_drops(&src.probe, &telemetry);
            publish.update(&stats);
            store_published.update(&store.stats());
            last = Instant::now();
        }
    }
    src.probe.stop()?;
    Ok(())
}

/// Kept trace-profiles go to the store; displaced ones leave it.
fn store_profiles(p: &mut Pipeline, store: &kindling_store::Store) {
    let h = store.handle();
    for a in p.take_profile_actions() {
        match a {
            kindling_traceprof::Action::Store { profile, json } => {
                h.profile_row(kindling_store::ProfileRow {
                    id: profile.id,
                    start_ts_ns: profile.request.start_ts_ns,
                    trace_id: profile.trace_id,
                    endpoint: profile.request.endpoint,
                    duration_ns: profile.request.duration_ns,
                    kept_because: profile.kept_because,
                    profile: json,
                });
            }
            kindling_traceprof::Action::Remove(id) => {
                h.remove_profile(&id);
            }
        }
    }
}

/// Trace-profiling's choices as self-telemetry: every server request that
/// keeps no profile is counted under why (`kindling_telemetry_traceprof_not_kept_total{reason}`);
/// downstream records forgotten early are a loss (`dropped_events_total`).
struct TraceprofPublished {
    offered: kindling_telemetry::Counter,
    built: kindling_telemetry::Counter,
    removed: kindling_telemetry::Counter,
    downstream_evicted: kindling_telemetry::Counter,
    not_kept: Vec<(kindling_telemetry::Counter, StatFn<kindling_traceprof::TraceProfStats>)>,
}

impl TraceprofPublished {
    fn new(t: &Telemetry) -> TraceprofPublished {
        let reasons: Vec<(&str, StatFn<kindling_traceprof::TraceProfStats>)> = vec![
            ("not_selected", |s| s.sampler.not_selected),
            ("displaced", |s| s.sampler.displaced),
            ("keys_full", |s| s.sampler.keys_full),
            ("late", |s| s.sampler.late),
            ("not_followed", |s| s.not_followed),
            ("over_budget", |s| s.over_budget),
        ];
        TraceprofPublished {
            offered: t.counter(
                "kindling_telemetry_traceprof_offered_total",
                "Server requests considered for a trace-profile.",
                &[],
            ),
            built: t.counter("kindling_telemetry_traceprof_profiles_total", "Trace-profiles built and stored.", &[]),
            removed: t.counter(
                "kindling_telemetry_traceprof_removed_total",
                "Stored trace-profiles removed because a later request of their window displaced them.",
                &[],
            ),
            downstream_evicted: t.dropped("traceprof_downstream_evicted"),
            not_kept: reasons
                .into_iter()
                .map(|(r, f)| {
                    let c = t.counter(
                        "kindling_telemetry_traceprof_not_kept_total",
                        "Server requests without a trace-profile, by why (sampling, following, budget).",
                        &[("reason", r)],
                    );
                    (c, f)
                })
                .collect(),
        }
    }

    fn update(&self, s: &kindling_traceprof::TraceProfStats) {
        self.offered.set(s.sampler.offered + s.not_followed);
        self.built.set(s.built);
        self.removed.set(s.removed);
        self.downstream_evicted.set(s.downstream_evicted);
        for (c, f) in &self.not_kept {
            c.set(f(s));
        }
    }
}

/// The store's size and losses as self-telemetry.
struct StorePublished {
    queue_full: kindling_telemetry::Counter,
    write_errors: kindling_telemetry::Counter,
    sampled_out: kindling_telemetry::Counter,
    written: kindling_telemetry::Counter,
    size: kindling_telemetry::Gauge,
}

impl StorePublished {
    fn new(t: &Telemetry) -> StorePublished {
        StorePublished {
            queue_full: t.dropped("store_queue_full"),
            write_errors: t.dropped("store_write_error"),
            sampled_out: t.counter(
                "kindling_telemetry_store_sampled_out_total",
                "Request records not stored by sampling (they count in the rollups).",
                &[],
            ),
            written: t.counter("kindling_telemetry_store_rows_written_total", "Rows committed to the store.", &[]),
            size: t.gauge("kindling_telemetry_store_size_bytes", "Size of the store on disk (database and log).", &[]),
        }
    }

    fn update(&self, s: &kindling_store::StoreStats) {
        self.queue_full.set(s.queue_full);
        self.write_errors.set(s.write_errors);
        self.sampled_out.set(s.sampled_out);
        self.written.set(s.written);
        self.size.set(s.size_bytes);
    }
}

/// The pipeline's sizes and losses as self-telemetry.
struct Published {
    requests: kindling_telemetry::Counter,
    connections: kindling_telemetry::Gauge,
    sockets: kindling_telemetry::Gauge,
    series_overflow: kindling_telemetry::Counter,
    drops: Vec<(kindling_telemetry::Counter, StatFn<PipelineStats>)>,
}

impl Published {
    fn new(t: &Telemetry) -> Published {
        let drops: Vec<(&str, StatFn<PipelineStats>)> = vec![
            ("socket_table_full", |s| s.socket_table_full),
            ("parser_gave_up", |s| s.parser_gave_up),
            ("response_without_request", |s| s.responses_without_request),
            ("pending_requests_full", |s| s.pending_requests_full),
            ("connection_table_full", |s| s.connection_table_full),
            ("address_index_full", |s| s.address_index_full),
        ];
        Published {
            requests: t.counter("kindling_telemetry_requests_total", "Request records produced.", &[]),
            connections: t.gauge("kindling_telemetry_connections", "Connections being tracked.", &[]),
            sockets: t.gauge("kindling_telemetry_sockets", "Sockets in the socket table.", &[]),
            series_overflow: t.counter(
                "kindling_telemetry_series_overflow_total",
                "Request records folded into overflow series to bound metric cardinality.",
                &[],
            ),
            drops: drops.into_iter().map(|(r, f)| (t.dropped(r), f)).collect(),
        }
    }

    fn update(&self, s: &PipelineStats) {
        self.requests.set(s.requests);
        self.connections.set(s.connections as u64);
        self.sockets.set(s.sockets as u64);
        self.series_overflow.set(s.series_overflow);
        for (c, f) in &self.drops {
            c.set(f(s));
        }
    }
}
