//! URL path normalisation with bounded cardinality, for endpoint labels.
//!
//! The rule, in order:
//! 1. `*` (server-wide `OPTIONS`) stays `*`. An absolute-form target (`http://host:80/p?q`) is
//!    reduced to its path (`/p`); a target that does not start with `/` gets one.
//! 2. The query (`?...`) and fragment (`#...`) are dropped.
//! 3. The path is split on `/`; empty segments (`//`, trailing `/`) and `.` are dropped.
//! 4. A segment becomes `{id}` when it looks like an identifier: all digits; digits with
//!    separators (`2024-01-31`, `1.5`); a UUID; hex of >= 16 chars; >= 16 chars mixing letters
//!    and digits; base64/url-safe tokens of >= 20 chars with a digit or many capitals; anything
//!    with `@`, `%` or `=` (emails, encoded values); anything longer than 48 chars. A short
//!    file extension is kept: `/img/123.png` -> `/img/{id}.png`. Ordinary words, `v1`,
//!    `app.js`, `user123` are kept.
//! 5. At most [`MAX_SEGMENTS`] segments and about [`MAX_LEN`] bytes are kept; the rest becomes
//!    `/...`. An empty result is `/`.

/// Segments kept before the rest of the path is replaced by `/...`.
pub const MAX_SEGMENTS: usize = 8;
/// Longest normalised path (plus a final `/...`).
pub const MAX_LEN: usize = 128;
/// Segments longer than this are replaced by `{id}`.
const MAX_SEGMENT: usize = 48;

const ID: &str = "{id}";

/// `/users/123/orders?x=1` -> `/users/{id}/orders`: the query dropped, ids,
/// UUIDs, hashes and other high-cardinality segments replaced by placeholders.
pub fn path(raw: &str) -> String {
    let raw = raw.trim();
    if raw == "*" {
        return "*".to_string();
    }
    let p = strip_query(strip_scheme(raw));
    let mut out = String::with_capacity(p.len().min(MAX_LEN) + 8);
    let segments = p.split('/').filter(|s| !s.is_empty() && *s != ".");
    for (count, seg) in segments.enumerate() {
        if count == MAX_SEGMENTS || out.len() + 1 + seg.len().min(MAX_SEGMENT) > MAX_LEN {
            out.push_str("/...");
            break;
        }
        out.push('/');
        push_segment(&mut out, seg);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// `http://host:port/path` -> `/path`; other targets unchanged.
fn strip_scheme(raw: &str) -> &str {
    let Some(i) = raw.find("://") else { return raw };
    // Only a scheme (letters, digits, + - .) may precede "://".
    let scheme_ok = i > 0 && raw[..i].bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok {
        return raw;
    }
    let rest = &raw[i + 3..];
    rest.find(['/', '?', '#']).map_or("", |j| &rest[j..])
}

fn strip_query(p: &str) -> &str {
    p.find(['?', '#']).map_or(p, |i| &p[..i])
}

fn push_segment(out: &mut String, seg: &str) {
    if seg.len() > MAX_SEGMENT {
        out.push_str(ID);
        return;
    }
    if is_id(seg) {
        out.push_str(ID);
        return;
    }
    // `123.png`, `5f3a...e9.json`: judge the stem, keep the extension.
    if let Some((stem, ext)) = seg.rsplit_once('.') {
        let ext_ok = (1..=5).contains(&ext.len()) && ext.bytes().all(|b| b.is_ascii_alphanumeric());
        if ext_ok && !stem.is_empty() && is_id(stem) {
            out.push_str(ID);
            out.push('.');
            out.push_str(ext);
            return;
        }
    }
    out.push_str(seg);
}

/// Does this path segment look like an identifier rather than a word?
pub fn is_id(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.is_empty() {
        return false;
    }
    let (mut digits, mut lower, mut upper, mut hex, mut other) = (0, 0, 0, 0, 0);
    let mut seps = 0;
    for &c in b {
        match c {
            b'0'..=b'9' => digits += 1,
            b'a'..=b'z' => lower += 1,
            b'A'..=b'Z' => upper += 1,
            b'-' | b'_' | b'.' | b',' | b':' | b'+' => seps += 1,
            b'@' | b'%' | b'=' => return true,
            _ => other += 1,
        }
        if c.is_ascii_hexdigit() {
            hex += 1;
        }
    }
    let n = b.len();
    let letters = lower + upper;
    if digits > 0 && letters == 0 && other == 0 {
        // 123, 2024-01-31, 1.5, 10:30
        return true;
    }
    if is_uuid(b) || (n >= 16 && hex == n) {
        return true;
    }
    if other > 0 {
        return false;
    }
    let alnum = digits + letters;
    if n >= 16 && digits > 0 && letters > 0 && alnum * 4 >= n * 3 {
        // Mostly alphanumeric with both: a generated token (a1b2c3d4e5f6g7h8, order_20240131x9).
        return true;
    }
    // Base64 / url-safe tokens: long, with a digit or case changes throughout (unlike
    // camelCase words, where capitals are few).
    n >= 20 && seps <= n / 8 && (digits > 0 || (upper * 4 >= n && lower * 4 >= n))
}

/// 8-4-4-4-12 hex digits.
fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn n(raw: &str, want: &str) {
        assert_eq!(path(raw), want, "input {raw:?}");
    }

    #[test]
    fn ids_are_replaced() {
        n("/users/123", "/users/{id}");
        n("/users/123/orders?x=1", "/users/{id}/orders");
        n("/api/v1/orders/550e8400-e29b-41d4-a716-446655440000", "/api/v1/orders/{id}");
        n("/api/v1/orders/550E8400-E29B-41D4-A716-446655440000/items", "/api/v1/orders/{id}/items");
        n("/blobs/sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "/blobs/{id}");
        n("/commits/9f86d081884c7d659a2feaa0", "/commits/{id}");
        n("/objects/5f2b1c3d4e5f6a7b", "/objects/{id}");
        n("/sessions/a1b2c3d4e5f6g7h8i9", "/sessions/{id}");
        n("/t/eyJhbGciOiJIUzI1NiJ9", "/t/{id}");
        n("/t/AbCdEfGhIjKlMnOpQrStUv", "/t/{id}");
        n("/reports/2024-01-31", "/reports/{id}");
        n("/img/12345.png", "/img/{id}.png");
        n("/u/someone@example.com/inbox", "/u/{id}/inbox");
        n("/search/John%20Smith", "/search/{id}");
        n("/files/0", "/files/{id}");
        n(&format!("/x/{}", "a".repeat(60)), "/x/{id}");
    }

    #[test]
    fn words_are_kept() {
        n("/static/app.js", "/static/app.js");
        n("/v1", "/v1");
        n("/api/v2/users", "/api/v2/users");
        n("/", "/");
        n("/index.html", "/index.html");
        n("/users/user123/profile", "/users/user123/profile");
        n("/health-check", "/health-check");
        n("/internationalization", "/internationalization");
        n("/favicon.ico", "/favicon.ico");
        n("/assets/main.3f2a.css", "/assets/main.3f2a.css");
        n("/.well-known/openid-configuration", "/.well-known/openid-configuration");
        n("/pkg.Service/Method", "/pkg.Service/Method");
        n("/api/getUserProfileSettings", "/api/getUserProfileSettings");
    }

    #[test]
    fn query_fragment_and_slashes() {
        n("", "/");
        n("?a=1", "/");
        n("/a//b///c/", "/a/b/c");
        n("/a/./b", "/a/b");
        n("/page#section", "/page");
        n("/search?q=/users/123", "/search");
        n("users/42", "/users/{id}");
    }

    #[test]
    fn absolute_and_asterisk_forms() {
        n("*", "*");
        n("http://example.com/users/7?x=1", "/users/{id}");
        n("https://example.com:8443", "/");
        n("http://example.com?x=1", "/");
        n("HTTP://example.com/a/b", "/a/b");
        // Not a scheme: kept as a path.
        n("/redirect/http://x", "/redirect/http:/x");
    }

    #[test]
    fn length_and_segments_are_capped() {
        n("/a/b/c/d/e/f/g/h/i/j", "/a/b/c/d/e/f/g/h/...");
        let long = format!("/{}", ["segment"; 30].join("/"));
        let got = path(&long);
        assert!(got.len() <= MAX_LEN + 4, "{got}");
        let words = format!("/{}", ["abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstu"; 5].join("/"));
        let got = path(&words);
        assert!(got.len() <= MAX_LEN + 4 && got.ends_with("/..."), "{got}");
    }

    #[test]
    fn unicode_is_safe() {
        n("/café/ñ", "/café/ñ");
        assert!(path(&"é".repeat(100)).len() <= MAX_LEN + 4);
    }
}
