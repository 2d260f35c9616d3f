//! PLACEHOLDER (helper "http1" implements it): trace-context extraction.

use crate::TraceContext;

/// The trace context a header carries, if it is one of `traceparent` (W3C),
/// `sw8` (SkyWalking), `Pinpoint-TraceID`, `X-B3-TraceId` or `b3`. The name
/// is matched case-insensitively.
pub fn from_header(name: &str, value: &str) -> Option<TraceContext> {
    let _ = (name, value);
    None
}
