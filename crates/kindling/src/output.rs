//! How events are printed: JSON lines (the contract) or one readable line each.

use kindling_events::json::{escape_payload, to_json_line};
use kindling_events::model::*;
use std::io::{self, Write};

pub struct Printer<W: Write> {
    out: W,
    json: bool,
    payload: bool,
}

impl<W: Write> Printer<W> {
    pub fn new(out: W, json: bool, payload: bool) -> Self {
        Printer { out, json, payload }
    }

    pub fn print(&mut self, ev: &Event) -> io::Result<()> {
        if self.json {
            writeln!(self.out, "{}", to_json_line(ev, self.payload))
        } else {
            writeln!(self.out, "{}", text_line(ev, self.payload))
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn clock(ts_ns: u64) -> String {
    let secs = ts_ns / 1_000_000_000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02}.{:06}", (ts_ns % 1_000_000_000) / 1000)
}

/// `12:00:01.123456 nginx 812/812 recv read tcp 127.0.0.1:80 <- 127.0.0.1:40000 server fd=6 bytes=78 lat=14us ret=78`
pub fn text_line(ev: &Event, payload: bool) -> String {
    let head = format!("{} {} {}/{} {}", clock(ev.ts_ns), ev.comm, ev.pid, ev.tid, ev.kind());
    match &ev.body {
        EventBody::Socket(s) => {
            let arrow = if s.op == SocketOp::Recv || s.op == SocketOp::Accept { "<-" } else { "->" };
            let mut line = format!(
                "{head} {} {} {} {arrow} {} {} fd={} bytes={} lat={}us ret={}",
                s.syscall.name(),
                s.proto.name(),
                s.src,
                s.dst,
                s.role.name(),
                s.fd,
                s.bytes,
                s.latency_ns / 1000,
                s.ret
            );
            if payload && !s.payload.is_empty() {
                line.push_str(" payload=\"");
                line.push_str(&escape_payload(&s.payload));
                line.push('"');
            }
            line
        }
        EventBody::Exec(e) => format!("{head} ppid={} {} [{}]", e.ppid, e.filename, e.args.join(" ")),
        EventBody::Exit(e) => format!("{head} code={} process_gone={}", e.exit_code, e.group_dead),
        EventBody::Fork(f) => format!("{head} child={}", f.child_pid),
        EventBody::Rename(r) => format!("{head} -> {}", r.new_comm),
        EventBody::ProcessSnapshot(p) => format!("{head} ppid={} {} [{}]", p.ppid, p.exe, p.cmdline.join(" ")),
        EventBody::SocketSnapshot(s) => {
            format!("{head} {} {} -> {} fd={} state={}", s.proto.name(), s.src, s.dst, s.fd, s.state)
        }
        // Module events: their JSON fields as key=value.
        EventBody::Tcp(_) | EventBody::Sched(_) => {
            let j = kindling_events::json::JsonEvent::new(ev, false);
            let mut line = head;
            if let (Some(src), Some(dst)) = (&j.src, &j.dst) {
                line.push_str(&format!(" {src} -> {dst}"));
            }
            if let Some(l) = j.latency_ns {
                line.push_str(&format!(" lat={}us", l / 1000));
            }
            for (k, v) in &j.extra {
                line.push_str(&format!(" {k}={}", v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())));
            }
            line
        }
    }
}

/// How request records are printed: JSON lines (the contract) or one line each.
pub struct RequestPrinter<W: Write> {
    out: W,
    json: bool,
}

impl<W: Write> RequestPrinter<W> {
    pub fn new(out: W, json: bool) -> Self {
        RequestPrinter { out, json }
    }

    pub fn print(&mut self, r: &kindling_requests::RequestRecord) -> io::Result<()> {
        if self.json {
            let line = serde_json::to_string(r).map_err(io::Error::other)?;
            writeln!(self.out, "{line}")
        } else {
            writeln!(self.out, "{}", request_line(r))
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// `12:00:01.123456 server http GET /users/{id} 200 12.345ms 127.0.0.1:40000 -> 127.0.0.1:8080 nginx[812]`
pub fn request_line(r: &kindling_requests::RequestRecord) -> String {
    let mut flags = String::new();
    if r.is_error {
        flags.push_str(" ERROR");
    }
    if r.is_slow {
        flags.push_str(" SLOW");
    }
    let mut line = format!(
        "{} {} {} {} {} {} {:.3}ms {} -> {} {}[{}]{flags}",
        clock(r.end_ts_ns),
        r.side.name(),
        r.protocol.name(),
        if r.method.is_empty() { "-" } else { &r.method },
        if r.endpoint.is_empty() { "-" } else { &r.endpoint },
        if r.status.is_empty() { "-" } else { &r.status },
        r.duration_ns as f64 / 1e6,
        r.src,
        r.dst,
        r.comm,
        r.pid
    );
    if !r.trace_id.is_empty() {
        line.push_str(&format!(" trace={}:{}", r.trace_type, r.trace_id));
    }
    line
}
