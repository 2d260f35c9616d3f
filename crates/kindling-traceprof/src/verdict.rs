//! The triage verdict: the request's critical path summed by state, and one
//! line that routes it — "72% waiting on postgresql 10.1.0.5:5432 `SELECT
//! ...`; 20% on-CPU in `OrderService.price`".

use crate::doc::{Downstream, Verdict};
use crate::path::Segment;
use kindling_events::sched::OffCpuReason;
use kindling_profile::State;

/// What the summary can name besides the time split.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    pub top_function: Option<String>,
    pub slowest_downstream: Option<Downstream>,
    /// The peer or file the longest `net` / `file` wait was on.
    pub net_target: Option<String>,
    pub file_target: Option<String>,
    /// The thread that held the longest lock wait (its name).
    pub lock_holder: Option<String>,
}

/// Parts under this share of the request are left out of the summary.
const SUMMARY_MIN_SHARE: f64 = 0.05;
/// The summary names at most this many parts.
const SUMMARY_PARTS: usize = 3;
/// SQL and URLs are cut in the summary (the full text is in `downstream`).
const SUMMARY_DETAIL_CHARS: usize = 80;

pub fn verdict(path: &[Segment], duration_ns: u64, ev: Evidence) -> Verdict {
    let mut v = Verdict::default();
    for s in path {
        let d = s.duration_ns();
        match s.state {
            State::OnCpu => v.oncpu_ns += d,
            State::Off(r) => *slot(&mut v, r) += d,
        }
    }
    v.summary = summary(&v, duration_ns, &ev);
    v.top_function = ev.top_function;
    v.slowest_downstream = ev.slowest_downstream;
    v
}

fn slot(v: &mut Verdict, r: OffCpuReason) -> &mut u64 {
    match r {
        OffCpuReason::Net => &mut v.net_ns,
        OffCpuReason::File => &mut v.file_ns,
        OffCpuReason::Lock => &mut v.lock_ns,
        OffCpuReason::Epoll => &mut v.epoll_ns,
        OffCpuReason::Sleep => &mut v.sleep_ns,
        OffCpuReason::Runqueue => &mut v.runqueue_ns,
        OffCpuReason::Other => &mut v.other_ns,
    }
}

fn summary(v: &Verdict, duration_ns: u64, ev: &Evidence) -> String {
    let total = duration_ns.max(1) as f64;
    let net = match (&ev.slowest_downstream, &ev.net_target) {
        (Some(d), _) => format!("waiting on {} {} `{}`", d.protocol, d.peer, cut(&d.detail)),
        (None, Some(t)) => format!("waiting on the network ({t})"),
        _ => "waiting on the network".to_string(),
    };
    let oncpu = match &ev.top_function {
        Some(f) => format!("on-CPU in `{f}`"),
        None => "on-CPU".to_string(),
    };
    let lock = match &ev.lock_holder {
        Some(h) => format!("waiting on a lock (held by {h})"),
        None => "waiting on a lock".to_string(),
    };
    let file = match &ev.file_target {
        Some(f) => format!("file I/O on {f}"),
        None => "file I/O".to_string(),
    };
    let mut parts: Vec<(u64, String)> = vec![
        (v.oncpu_ns, oncpu),
        (v.net_ns, net),
        (v.file_ns, file),
        (v.lock_ns, lock),
        (v.epoll_ns, "idle in epoll (event loop)".to_string()),
        (v.sleep_ns, "sleeping".to_string()),
        (v.runqueue_ns, "waiting for a CPU (run queue: CPU starvation)".to_string()),
        (v.other_ns, "off-CPU, other".to_string()),
    ];
    parts.sort_by_key(|p| std::cmp::Reverse(p.0));
    let named: Vec<String> = parts
        .into_iter()
        .filter(|(ns, _)| *ns as f64 / total >= SUMMARY_MIN_SHARE)
        .take(SUMMARY_PARTS)
        .map(|(ns, text)| format!("{:.0}% {text}", 100.0 * ns as f64 / total))
        .collect();
    if named.is_empty() {
        return "no thread activity recorded for this request".to_string();
    }
    named.join("; ")
}

fn cut(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() <= SUMMARY_DETAIL_CHARS {
        return s;
    }
    let mut out: String = s.chars().take(SUMMARY_DETAIL_CHARS - 3).collect();
    out.push_str("...");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(start: u64, end: u64, state: State) -> Segment {
        Segment { tid: 1, start_ns: start, end_ns: end, state, slice: None }
    }

    #[test]
    fn shares_and_summary_name_the_evidence() {
        let path = vec![
            s(0, 200, State::OnCpu),
            s(200, 920, State::Off(OffCpuReason::Net)),
            s(920, 1000, State::Off(OffCpuReason::Lock)),
        ];
        let ev = Evidence {
            top_function: Some("OrderService.price".into()),
            slowest_downstream: Some(Downstream {
                protocol: "postgresql".into(),
                peer: "10.1.0.5:5432".into(),
                detail: "SELECT *\n  FROM orders WHERE id = $1".into(),
                duration_ns: 700,
            }),
            ..Default::default()
        };
        let v = verdict(&path, 1000, ev);
        assert_eq!((v.oncpu_ns, v.net_ns, v.lock_ns), (200, 720, 80));
        assert_eq!(
            v.summary,
            "72% waiting on postgresql 10.1.0.5:5432 `SELECT * FROM orders WHERE id = $1`; \
             20% on-CPU in `OrderService.price`; 8% waiting on a lock"
        );
    }

    #[test]
    fn small_parts_are_left_out_and_empty_paths_say_so() {
        let path = vec![s(0, 990, State::OnCpu), s(990, 1000, State::Off(OffCpuReason::Runqueue))];
        assert_eq!(verdict(&path, 1000, Evidence::default()).summary, "99% on-CPU");
        assert!(verdict(&[], 1000, Evidence::default()).summary.starts_with("no thread activity"));
        let long = "x".repeat(500);
        assert_eq!(cut(&long).chars().count(), SUMMARY_DETAIL_CHARS);
    }
}
