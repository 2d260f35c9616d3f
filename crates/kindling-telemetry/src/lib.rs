//! Self-telemetry. Stages register named counters once at start-up and bump
//! them on the hot path (one relaxed atomic add); `/metrics` renders them all.
//! Drops are counters with a `reason` label, so nothing is lost silently.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonically increasing value (or one mirrored from elsewhere with `set`).
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// For totals kept elsewhere (the kernel's drop map): mirror them here.
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (queue depth, table size).
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

struct Family {
    help: &'static str,
    kind: Kind,
    series: BTreeMap<Vec<(&'static str, String)>, Arc<AtomicU64>>,
}

/// The registry. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Telemetry {
    families: Arc<Mutex<BTreeMap<&'static str, Family>>>,
}

pub const EVENTS_TOTAL: &str = "kindling_telemetry_events_total";
pub const DROPPED_TOTAL: &str = "kindling_telemetry_dropped_events_total";

impl Telemetry {
    pub fn new() -> Telemetry {
        Telemetry::default()
    }

    fn series(&self, name: &'static str, help: &'static str, kind: Kind, labels: &[(&'static str, &str)]) -> Arc<AtomicU64> {
        let mut fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let fam = fams.entry(name).or_insert_with(|| Family { help, kind, series: BTreeMap::new() });
        let key: Vec<(&'static str, String)> = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        fam.series.entry(key).or_default().clone()
    }

    /// The counter `name{labels}`, created on first use; the same one after.
    pub fn counter(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        Counter(self.series(name, help, Kind::Counter, labels))
    }

    pub fn gauge(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        Gauge(self.series(name, help, Kind::Gauge, labels))
    }

    /// `kindling_telemetry_events_total{kind}`.
    pub fn events(&self, kind: &str) -> Counter {
        self.counter(EVENTS_TOTAL, "Events received from the kernel, by kind.", &[("kind", kind)])
    }

    /// `kindling_telemetry_dropped_events_total{reason}`.
    pub fn dropped(&self, reason: &str) -> Counter {
        self.counter(DROPPED_TOTAL, "Events lost, by the reason they were lost.", &[("reason", reason)])
    }

    /// The current value of `name{labels}`, if registered.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        let fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let fam = fams.get(name)?;
        fam.series
            .iter()
            .find(|(k, _)| k.len() == labels.len() && k.iter().zip(labels).all(|(a, b)| a.0 == b.0 && a.1 == b.1))
            .map(|(_, v)| v.load(Ordering::Relaxed))
    }

    /// All series of one family as (labels, value).
    pub fn family(&self, name: &str) -> Vec<(Vec<(String, String)>, u64)> {
        let fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        fams.get(name)
            .map(|f| {
                f.series
                    .iter()
                    .map(|(k, v)| {
                        (k.iter().map(|(a, b)| (a.to_string(), b.clone())).collect(), v.load(Ordering::Relaxed))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Prometheus text exposition of every family, plus the agent's own CPU and memory.
    pub fn render(&self, out: &mut String) {
        let fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        for (name, fam) in fams.iter() {
            let ty = match fam.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# HELP {name} {}", fam.help);
            let _ = writeln!(out, "# TYPE {name} {ty}");
            for (labels, v) in &fam.series {
                out.push_str(name);
                write_labels(out, labels.iter().map(|(k, v)| (*k, v.as_str())));
                let _ = writeln!(out, " {}", v.load(Ordering::Relaxed));
            }
        }
        drop(fams);
        render_process(out);
    }
}

/// `{k="v",...}` with Prometheus escaping; nothing for no labels.
pub fn write_labels<'a>(out: &mut String, labels: impl Iterator<Item = (&'a str, &'a str)>) {
    let mut first = true;
    for (k, v) in labels {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    if !first {
        out.push('}');
    }
}

/// The agent's CPU seconds and resident memory, from /proc/self.
fn render_process(out: &mut String) {
    let page = 4096u64;
    let ticks = 100f64;
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        if let Some(rss) = statm.split_whitespace().nth(1).and_then(|s| s.parse::<u64>().ok()) {
            let _ = writeln!(out, "# HELP kindling_telemetry_agent_memory_used_bytes Resident memory of the agent.");
            let _ = writeln!(out, "# TYPE kindling_telemetry_agent_memory_used_bytes gauge");
            let _ = writeln!(out, "kindling_telemetry_agent_memory_used_bytes {}", rss * page);
        }
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            // fields 14 and 15 of stat (utime, stime) are 11 and 12 after the comm
            let cpu = f.get(11).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
                + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
            let _ = writeln!(out, "# HELP kindling_telemetry_agent_cpu_seconds_total CPU time used by the agent.");
            let _ = writeln!(out, "# TYPE kindling_telemetry_agent_cpu_seconds_total counter");
            let _ = writeln!(out, "kindling_telemetry_agent_cpu_seconds_total {}", cpu as f64 / ticks);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_shared_and_rendered() {
        let t = Telemetry::new();
        let a = t.dropped("queue_full");
        let b = t.dropped("queue_full");
        a.inc();
        b.add(2);
        t.events("recv").inc();
        assert_eq!(t.value(DROPPED_TOTAL, &[("reason", "queue_full")]), Some(3));
        let mut s = String::new();
        t.render(&mut s);
        assert!(s.contains("# TYPE kindling_telemetry_dropped_events_total counter"));
        assert!(s.contains("kindling_telemetry_dropped_events_total{reason=\"queue_full\"} 3"));
        assert!(s.contains("kindling_telemetry_events_total{kind=\"recv\"} 1"));
        assert!(s.contains("kindling_telemetry_agent_memory_used_bytes "));
    }

    #[test]
    fn labels_are_escaped() {
        let mut s = String::new();
        write_labels(&mut s, [("a", "x\"y\\z\n")].into_iter());
        assert_eq!(s, "{a=\"x\\\"y\\\\z\\n\"}");
    }
}
