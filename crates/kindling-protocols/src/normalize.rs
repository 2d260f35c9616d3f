//! PLACEHOLDER (helper "http1" implements it): URL path normalisation.

/// `/users/123/orders?x=1` -> `/users/{id}/orders`: the query dropped, ids,
/// UUIDs, hashes and other high-cardinality segments replaced by placeholders.
pub fn path(raw: &str) -> String {
    raw.split('?').next().unwrap_or("").to_string()
}
