//! Trace-context extraction from request headers.
//!
//! Supported headers (names matched case-insensitively, values trimmed):
//! - `traceparent` (W3C): `version-traceid(32 hex)-spanid(16 hex)-flags`; all-zero ids and
//!   version `ff` are rejected. -> `w3c`, span = the parent span id. Ids are lower-cased.
//! - `sw8` (SkyWalking v3): `sample-traceId-segmentId-spanId-...` with base64 trace and segment
//!   ids. -> `skywalking`, trace = the decoded trace id, span = `<segmentId>-<spanId>`.
//! - `Pinpoint-TraceID`: `agentId^startTime^sequence` -> `pinpoint`, trace = the whole value
//!   (the span travels in a separate `Pinpoint-SpanID` header, see [`span_header`]).
//! - `X-B3-TraceId`: 16 or 32 hex -> `b3` (span in `X-B3-SpanId`, see [`span_header`]).
//! - `b3` (single header): `traceid-spanid[-sampled[-parentspanid]]` -> `b3`. A bare sampling
//!   decision (`0`, `1`, `d`) carries no trace id and gives `None`.

use crate::TraceContext;

/// The trace context a header carries, if it is one of `traceparent` (W3C),
/// `sw8` (SkyWalking), `Pinpoint-TraceID`, `X-B3-TraceId` or `b3`. The name
/// is matched case-insensitively.
pub fn from_header(name: &str, value: &str) -> Option<TraceContext> {
    let name = name.trim();
    let value = value.trim();
    if name.eq_ignore_ascii_case("traceparent") {
        w3c(value)
    } else if name.eq_ignore_ascii_case("sw8") {
        skywalking(value)
    } else if name.eq_ignore_ascii_case("pinpoint-traceid") {
        pinpoint(value)
    } else if name.eq_ignore_ascii_case("x-b3-traceid") {
        b3_multi(value)
    } else if name.eq_ignore_ascii_case("b3") {
        b3_single(value)
    } else {
        None
    }
}

/// The span id a companion header carries for a trace type whose id header
/// has none: `X-B3-SpanId` (for `b3`) and `Pinpoint-SpanID` (for `pinpoint`).
/// Returns the trace type it belongs to and the span id.
pub fn span_header(name: &str, value: &str) -> Option<(&'static str, String)> {
    let value = value.trim();
    let name = name.trim();
    if name.eq_ignore_ascii_case("x-b3-spanid") {
        return (value.len() == 16 && is_nonzero_hex(value)).then(|| ("b3", value.to_ascii_lowercase()));
    }
    if name.eq_ignore_ascii_case("pinpoint-spanid") {
        let digits = value.strip_prefix('-').unwrap_or(value);
        let ok = !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit());
        return ok.then(|| ("pinpoint", value.to_string()));
    }
    None
}

fn ctx(trace_id: String, trace_type: &str, span_id: String) -> TraceContext {
    TraceContext { trace_id, trace_type: trace_type.to_string(), span_id }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Hex and not all zeros (an all-zero id means "no id" in W3C and B3).
fn is_nonzero_hex(s: &str) -> bool {
    is_hex(s) && s.bytes().any(|b| b != b'0')
}

fn w3c(value: &str) -> Option<TraceContext> {
    let mut parts = value.split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    // Version 00 has exactly four fields; later versions may append more.
    if version.len() != 2 || !is_hex(version) || version.eq_ignore_ascii_case("ff") {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if trace.len() != 32 || span.len() != 16 || flags.len() != 2 || !is_hex(flags) {
        return None;
    }
    if !is_nonzero_hex(trace) || !is_nonzero_hex(span) {
        return None;
    }
    Some(ctx(trace.to_ascii_lowercase(), "w3c", span.to_ascii_lowercase()))
}

fn skywalking(value: &str) -> Option<TraceContext> {
    let mut parts = value.split('-');
    let sample = parts.next()?;
    if sample != "0" && sample != "1" {
        return None;
    }
    let trace = decode_id(parts.next()?)?;
    // The segment and span ids identify the parent span; tolerate their
    // absence (trace id alone is still worth linking).
    let span = match (parts.next().and_then(decode_id), parts.next()) {
        (Some(segment), Some(span)) if is_int(span) => format!("{segment}-{span}"),
        _ => String::new(),
    };
    Some(ctx(trace, "skywalking", span))
}

fn is_int(s: &str) -> bool {
    !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A base64 field decoded to a printable ASCII id.
fn decode_id(field: &str) -> Option<String> {
    let bytes = base64_decode(field)?;
    let printable = !bytes.is_empty() && bytes.iter().all(|b| b.is_ascii_graphic());
    if !printable {
        return None;
    }
    String::from_utf8(bytes).ok()
}

fn pinpoint(value: &str) -> Option<TraceContext> {
    let mut parts = value.split('^');
    let agent = parts.next()?;
    let start = parts.next()?;
    let seq = parts.next()?;
    let agent_ok = !agent.is_empty() && agent.len() <= 128 && agent.bytes().all(|b| b.is_ascii_graphic());
    let nums_ok = start.len() <= 20 && seq.len() <= 20 && is_digits(start) && is_digits(seq);
    if !agent_ok || !nums_ok || parts.next().is_some() {
        return None;
    }
    Some(ctx(value.to_string(), "pinpoint", String::new()))
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn b3_trace_id(s: &str) -> Option<String> {
    ((s.len() == 16 || s.len() == 32) && is_nonzero_hex(s)).then(|| s.to_ascii_lowercase())
}

fn b3_multi(value: &str) -> Option<TraceContext> {
    Some(ctx(b3_trace_id(value)?, "b3", String::new()))
}

fn b3_single(value: &str) -> Option<TraceContext> {
    let mut parts = value.split('-');
    let trace = b3_trace_id(parts.next()?)?;
    let span = parts.next()?;
    if span.len() != 16 || !is_nonzero_hex(span) {
        return None;
    }
    if let Some(sampled) = parts.next() {
        if !matches!(sampled, "0" | "1" | "d") {
            return None;
        }
    }
    Some(ctx(trace, "b3", span.to_ascii_lowercase()))
}

/// Standard-alphabet base64, padding optional. `None` on any invalid input.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let data = s.trim_end_matches('=');
    if s.len() - data.len() > 2 || data.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for b in data.bytes() {
        acc = (acc << 6) | u32::from(sextet(b)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn sextet(b: u8) -> Option<u8> {
    Some(match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, value: &str) -> Option<(String, String, String)> {
        from_header(name, value).map(|c| (c.trace_type, c.trace_id, c.span_id))
    }

    fn some(ty: &str, id: &str, span: &str) -> Option<(String, String, String)> {
        Some((ty.to_string(), id.to_string(), span.to_string()))
    }

    #[test]
    fn w3c_traceparent() {
        // The value curl sent in the nginx fixture (and the W3C spec example).
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let want = some("w3c", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
        assert_eq!(t("traceparent", v), want);
        assert_eq!(t("TraceParent", &format!("  {v} ")), want);
        assert_eq!(t("traceparent", &v.to_ascii_uppercase()), want);
        // Future versions may carry more fields.
        let v1 = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert!(t("traceparent", v1).is_some());
    }

    #[test]
    fn w3c_malformed() {
        for v in [
            "",
            "00",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736",
        ] {
            assert_eq!(t("traceparent", v), None, "{v}");
        }
    }

    #[test]
    fn skywalking_sw8() {
        // Trace id "4bf92f3577b34da6a3ce929d0e0e4736", segment "00f067aa0ba902b7", span 3
        // (the value sent with curl in the nginx fixture).
        let v = "1-NGJmOTJmMzU3N2IzNGRhNmEzY2U5MjlkMGUwZTQ3MzY=-MDBmMDY3YWEwYmE5MDJiNw==-3-\
                 c2VydmljZQ==-aW5zdGFuY2U=-L2FwaQ==-MTI3LjAuMC4xOjgwODA=";
        let want = some("skywalking", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7-3");
        assert_eq!(t("sw8", v), want);
        assert_eq!(t("SW8", v), want);
        // A SkyWalking-style id with dots, unpadded base64; only the trace id present.
        let id = "a1b2c3d4.56.16370000000000001";
        let b64 = "YTFiMmMzZDQuNTYuMTYzNzAwMDAwMDAwMDAwMDE";
        assert_eq!(t("sw8", &format!("0-{b64}")), some("skywalking", id, ""));
    }

    #[test]
    fn skywalking_malformed() {
        for v in ["", "1", "2-YWJj-YWJj-1", "1-!!!-YWJj-1", "1--YWJj-1", "1-AA==-YWJj-1", "1-YWJjZ===-x-1"] {
            assert_eq!(t("sw8", v), None, "{v}");
        }
        // A bad segment still gives the trace id, without span.
        assert_eq!(t("sw8", "1-YWJj-%%-1"), some("skywalking", "abc", ""));
    }

    #[test]
    fn pinpoint_trace_id() {
        let v = "myagent^1700000000000^42";
        assert_eq!(t("Pinpoint-TraceID", v), some("pinpoint", v, ""));
        assert_eq!(t("pinpoint-traceid", v), some("pinpoint", v, ""));
        for bad in ["", "myagent", "myagent^17^", "^17^42", "a^b^1", "a^1^2^3", "a b^1^2"] {
            assert_eq!(t("Pinpoint-TraceID", bad), None, "{bad}");
        }
        assert_eq!(
            span_header("Pinpoint-SpanID", "-8372672893489212"),
            Some(("pinpoint", "-8372672893489212".into()))
        );
        assert_eq!(span_header("Pinpoint-SpanID", "12x"), None);
    }

    #[test]
    fn b3_headers() {
        let id = "80f198ee56343ba864fe8b2a57d3eff7";
        assert_eq!(t("X-B3-TraceId", id), some("b3", id, ""));
        assert_eq!(t("x-b3-traceid", "463ac35c9f6413ad"), some("b3", "463ac35c9f6413ad", ""));
        assert_eq!(t("X-B3-TraceId", "463AC35C9F6413AD"), some("b3", "463ac35c9f6413ad", ""));
        let single = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90";
        assert_eq!(t("b3", single), some("b3", id, "e457b5a2e4d86bd1"));
        assert_eq!(
            t("B3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1"),
            some("b3", id, "e457b5a2e4d86bd1")
        );
        assert_eq!(span_header("X-B3-SpanId", "E457B5A2E4D86BD1"), Some(("b3", "e457b5a2e4d86bd1".into())));
    }

    #[test]
    fn b3_malformed() {
        for v in ["", "1", "0", "d", "80f198ee56343ba8640", "0000000000000000", "zz0198ee56343ba8"] {
            assert_eq!(t("X-B3-TraceId", v), None, "{v}");
            assert_eq!(t("b3", v), None, "{v}");
        }
        assert_eq!(t("b3", "80f198ee56343ba864fe8b2a57d3eff7-0000000000000000-1"), None);
        assert_eq!(t("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-x"), None);
        assert_eq!(span_header("X-B3-SpanId", "123"), None);
    }

    #[test]
    fn other_headers_are_ignored() {
        assert_eq!(t("host", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), None);
        assert_eq!(span_header("host", "e457b5a2e4d86bd1"), None);
    }

    #[test]
    fn base64_round_trips() {
        assert_eq!(base64_decode("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(base64_decode("aGVsbG8"), Some(b"hello".to_vec()));
        assert_eq!(base64_decode("aGk="), Some(b"hi".to_vec()));
        assert_eq!(base64_decode(""), Some(vec![]));
        assert_eq!(base64_decode("a"), None);
        assert_eq!(base64_decode("a==="), None);
        assert_eq!(base64_decode("a-b_"), None);
    }
}
