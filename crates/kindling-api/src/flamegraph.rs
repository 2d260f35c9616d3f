//! `GET /api/v1/flamegraph?pid=&seconds=&type=oncpu|offcpu|both&format=folded|pprof|speedscope`:
//! a flame graph of one process over the last `seconds`.
//!
//! If the agent already follows the process (and has for that long), the
//! answer comes from the timelines at once; otherwise the process is
//! followed from now on (the analysis thread tells the kernel within a
//! fraction of a second) and the answer comes after `seconds`. Symbolizing
//! runs off the async worker, without the pipeline lock.

use crate::params::ParamError;
use crate::ApiState;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kindling_profile::{Format, Profile, ProfileType, RawProfile, Symbolizer};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Longest window one request may ask for.
pub const MAX_SECONDS: u64 = 300;
/// Extra wait after the window: events reach the timelines through the ring
/// buffer and the analysis thread's batches.
const SETTLE: Duration = Duration::from_millis(700);
/// How long the kernel may take to start following a process (the analysis
/// loop pushes changes every half second).
const APPLY_WAIT: Duration = Duration::from_secs(3);

/// A validated request.
#[derive(Debug, PartialEq, Eq)]
pub struct FlameQuery {
    pub pid: u32,
    pub seconds: u64,
    pub kind: ProfileType,
    pub format: Format,
}

/// Parses and validates the query parameters.
pub fn flame_query(q: &HashMap<String, String>) -> Result<FlameQuery, ParamError> {
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let pid = match get("pid") {
        Some(v) => v.parse::<u32>().ok().filter(|p| *p > 0).ok_or_else(|| ParamError::new("pid", v, "a process id"))?,
        None => return Err(ParamError::new("pid", "", "a process id (required)")),
    };
    let seconds = match get("seconds") {
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=MAX_SECONDS).contains(s))
            .ok_or_else(|| ParamError::new("seconds", v, "a number of seconds from 1 to 300"))?,
        None => 10,
    };
    let (kind, format) = kind_and_format(q, ProfileType::OnCpu)?;
    Ok(FlameQuery { pid, seconds, kind, format })
}

/// `type=oncpu|offcpu|both` (default `default_kind`) and
/// `format=folded|pprof|speedscope` (default folded) of any flame graph route.
pub fn kind_and_format(
    q: &HashMap<String, String>,
    default_kind: ProfileType,
) -> Result<(ProfileType, Format), ParamError> {
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let kind = match get("type") {
        Some(v) => ProfileType::from_name(v).ok_or_else(|| ParamError::new("type", v, "oncpu, offcpu or both"))?,
        None => default_kind,
    };
    let format = match get("format") {
        Some(v) => Format::from_name(v).ok_or_else(|| ParamError::new("format", v, "folded, pprof or speedscope"))?,
        None => Format::Folded,
    };
    Ok((kind, format))
}

fn now_ns() -> u64 {
    kindling_store::now_ns()
}

fn error(code: StatusCode, msg: String) -> Response {
    (code, axum::Json(serde_json::json!({ "error": msg }))).into_response()
}

pub async fn flamegraph(State(s): State<Arc<ApiState>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let fq = match flame_query(&q) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    if !std::path::Path::new(&format!("/proc/{}", fq.pid)).exists() {
        return error(StatusCode::NOT_FOUND, format!("no process {}", fq.pid));
    }
    let window = Duration::from_secs(fq.seconds);
    let asked = now_ns();
    // Follow the process at least until this window is over; answer from
    // what is there if it was already followed for the whole window.
    let covered = {
        let mut p = crate::lock(&s.pipeline);
        let until = asked + (window + SETTLE + APPLY_WAIT + Duration::from_secs(2)).as_nanos() as u64;
        if !p.profiling_mut().interest.want_until(fq.pid, until) {
            return error(StatusCode::SERVICE_UNAVAILABLE, "too many processes are being profiled".into());
        }
        let pr = p.profiling();
        pr.interest.is_applied(fq.pid)
            && pr.timelines.since(fq.pid).is_some_and(|since| since + window.as_nanos() as u64 <= asked)
    };
    let (t0, t1) = if covered {
        (asked - window.as_nanos() as u64, asked)
    } else {
        // The window starts once the kernel follows the process.
        let deadline = tokio::time::Instant::now() + APPLY_WAIT;
        while !crate::lock(&s.pipeline).profiling().interest.is_applied(fq.pid) {
            if tokio::time::Instant::now() >= deadline {
                return error(StatusCode::SERVICE_UNAVAILABLE, "the profiler did not start following the process".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let start = now_ns();
        tokio::time::sleep(window + SETTLE).await;
        (start, start + window.as_nanos() as u64)
    };
    let raw = {
        let p = crate::lock(&s.pipeline);
        let pr = p.profiling();
        RawProfile::collect(&pr.timelines, fq.pid, t0, t1, fq.kind, pr.sample_period_ns)
    };
    let format = fq.format;
    let rendered = tokio::task::spawn_blocking(move || {
        let mut sym = Symbolizer::new();
        format.render(&Profile::symbolize(&raw, &mut sym))
    })
    .await;
    match rendered {
        Ok(bytes) => ([(header::CONTENT_TYPE, format.content_type())], bytes).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("rendering the flame graph failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parameters() {
        let v = flame_query(&q(&[("pid", "42")])).unwrap();
        assert_eq!(v, FlameQuery { pid: 42, seconds: 10, kind: ProfileType::OnCpu, format: Format::Folded });
        let v = flame_query(&q(&[("pid", "7"), ("seconds", "3"), ("type", "offcpu"), ("format", "pprof")])).unwrap();
        assert_eq!((v.seconds, v.kind, v.format), (3, ProfileType::OffCpu, Format::Pprof));
        for bad in [
            q(&[]),
            q(&[("pid", "x")]),
            q(&[("pid", "0")]),
            q(&[("pid", "1"), ("seconds", "0")]),
            q(&[("pid", "1"), ("seconds", "301")]),
            q(&[("pid", "1"), ("type", "cpu")]),
            q(&[("pid", "1"), ("format", "svg")]),
        ] {
            assert!(flame_query(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(flame_query(&q(&[("pid", "1"), ("type", "cpu")])).unwrap_err().param, "type");
    }
}
