//! Secrets are masked in payload heads wherever bytes leave the agent: before
//! a recording is written, before a payload is printed, and in the strings
//! parsers extract (a request's `detail`, error messages). The hot analysis
//! path reads raw heads and keeps nothing of them. Masking keeps lengths
//! (bytes become `*`), so offsets and byte counts stay true.
//!
//! Covered: HTTP credential headers (Authorization, Proxy-Authorization, Cookie,
//! Set-Cookie, X-Api-Key, X-Auth-Token), `password=`/`token=`-style form, query
//! and JSON fields, the PostgreSQL PasswordMessage, the MySQL handshake
//! response's auth data, and Redis `AUTH` arguments.

const MASK: u8 = b'*';

const SECRET_HEADERS: &[&[u8]] = &[
    b"authorization",
    b"proxy-authorization",
    b"cookie",
    b"set-cookie",
    b"x-api-key",
    b"x-auth-token",
];

const SECRET_KEYS: &[&[u8]] = &[
    b"password",
    b"passwd",
    b"pwd",
    b"secret",
    b"token",
    b"access_token",
    b"refresh_token",
    b"api_key",
    b"apikey",
    b"client_secret",
];

/// A copy of `ev` with its payload masked, if masking changed anything.
pub fn redacted(ev: &crate::model::Event) -> Option<crate::model::Event> {
    let crate::model::EventBody::Socket(s) = &ev.body else { return None };
    if s.payload.is_empty() {
        return None;
    }
    let mut p = s.payload.clone();
    redact_payload(&mut p);
    if p == s.payload {
        return None;
    }
    let mut out = ev.clone();
    if let crate::model::EventBody::Socket(s) = &mut out.body {
        s.payload = p;
    }
    Some(out)
}

/// Masks secrets in a string (a URL, an SQL text) in place.
pub fn redact_string(s: &mut String) {
    let mut b = std::mem::take(s).into_bytes();
    redact_payload(&mut b);
    // Masking only writes ASCII '*' over whole ASCII-delimited values, but a
    // value may have held a multi-byte character: re-validate.
    *s = String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
}

/// Masks every secret this module knows in place.
pub fn redact_payload(p: &mut [u8]) {
    if p.is_empty() {
        return;
    }
    redact_pg_password(p);
    redact_mysql_auth(p);
    redact_redis_auth(p);
    redact_http_headers(p);
    redact_key_values(p);
}

fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

fn redact_http_headers(p: &mut [u8]) {
    let mut start = 0;
    while start < p.len() {
        let end = memchr::memchr(b'\n', &p[start..]).map_or(p.len(), |i| start + i);
        let line = &p[start..end];
        // Header names are short: a colon further in is not a header.
        let window = &line[..line.len().min(32)];
        if let Some(colon) = memchr::memchr(b':', window) {
            let name = &line[..colon];
            if SECRET_HEADERS.iter().any(|h| eq_ignore_case(name, h)) {
                let mut v = start + colon + 1;
                while v < end && p[v] == b' ' {
                    v += 1;
                }
                let mut stop = end;
                if stop > v && p[stop - 1] == b'\r' {
                    stop -= 1;
                }
                p[v..stop].fill(MASK);
            }
        }
        start = end + 1;
    }
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// `password=...` (forms, query strings) and `"password": "..."` (JSON).
fn redact_key_values(p: &mut [u8]) {
    let mut i = 0;
    while i < p.len() {
        // Jump to the next separator (SIMD): bodies are mostly without them.
        match memchr::memchr2(b'=', b':', &p[i..]) {
            Some(off) => i += off,
            None => return,
        }
        // The key ends just before the separator, maybe behind a closing quote.
        let mut kend = i;
        let quoted = kend > 0 && p[kend - 1] == b'"';
        if quoted {
            kend -= 1;
        }
        let mut kstart = kend;
        while kstart > 0 && is_key_byte(p[kstart - 1]) {
            kstart -= 1;
        }
        let key = &p[kstart..kend];
        if key.is_empty() || !SECRET_KEYS.iter().any(|k| eq_ignore_case(key, k)) {
            i += 1;
            continue;
        }
        let mut v = i + 1;
        while v < p.len() && p[v] == b' ' {
            v += 1;
        }
        let in_quotes = v < p.len() && p[v] == b'"';
        if in_quotes {
            v += 1;
        }
        let mut e = v;
        while e < p.len() {
            let b = p[e];
            let stop = if in_quotes {
                b == b'"'
            } else {
                matches!(b, b'&' | b' ' | b'\r' | b'\n' | b',' | b'}' | b';' | b'"')
            };
            if stop {
                break;
            }
            e += 1;
        }
        p[v..e].fill(MASK);
        i = e.max(i + 1);
    }
}

/// PostgreSQL frontend PasswordMessage: 'p', int32 length, password, NUL.
fn redact_pg_password(p: &mut [u8]) {
    if p.len() < 6 || p[0] != b'p' {
        return;
    }
    let len = u32::from_be_bytes([p[1], p[2], p[3], p[4]]) as usize;
    if len + 1 == p.len() && len >= 5 {
        p[5..].fill(MASK);
    }
}

/// MySQL HandshakeResponse41: the 23 zero filler bytes are its signature.
fn redact_mysql_auth(p: &mut [u8]) {
    const CLIENT_PROTOCOL_41: u32 = 0x200;
    const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
    const CLIENT_PLUGIN_AUTH_LENENC: u32 = 0x20_0000;
    if p.len() < 38 || p[3] != 1 {
        return;
    }
    let caps = u32::from_le_bytes([p[4], p[5], p[6], p[7]]);
    if caps & CLIENT_PROTOCOL_41 == 0 || p[13..36].iter().any(|&b| b != 0) {
        return;
    }
    let Some(nul) = p[36..].iter().position(|&b| b == 0) else { return };
    let at = 36 + nul + 1;
    if at >= p.len() {
        return;
    }
    if caps & (CLIENT_PLUGIN_AUTH_LENENC | CLIENT_SECURE_CONNECTION) != 0 {
        let n = p[at] as usize;
        let end = (at + 1 + n).min(p.len());
        p[at + 1..end].fill(MASK);
    } else if let Some(z) = p[at..].iter().position(|&b| b == 0) {
        p[at..at + z].fill(MASK);
    }
}

/// Redis `AUTH [user] password`, as RESP array or inline command.
fn redact_redis_auth(p: &mut [u8]) {
    let head = &p[..p.len().min(24)];
    if p[0] == b'*' {
        // *N\r\n$4\r\nAUTH\r\n then bulk strings: mask every non-length line.
        let Some(pos) = find_ignore_case(head, b"\r\nAUTH\r\n") else { return };
        let mut line = pos + 8;
        while line < p.len() {
            let end = p[line..].iter().position(|&b| b == b'\r').map_or(p.len(), |i| line + i);
            if p[line] != b'$' && p[line] != b'*' {
                p[line..end].fill(MASK);
            }
            line = end + 2;
        }
    } else if p.len() > 5 && eq_ignore_case(&p[..5], b"AUTH ") {
        let end = p.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(p.len());
        p[5..end].fill(MASK);
    }
}

fn find_ignore_case(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| eq_ignore_case(w, needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn red(s: &[u8]) -> Vec<u8> {
        let mut v = s.to_vec();
        redact_payload(&mut v);
        v
    }

    #[test]
    fn http_credential_headers_are_masked() {
        let out = red(b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer abc.def\r\nCOOKIE: sid=1\r\n\r\n");
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("Authorization: **************\r\n"), "{s}");
        assert!(s.contains("COOKIE: *****\r\n"), "{s}");
        assert!(s.contains("Host: a\r\n"));
    }

    #[test]
    fn form_query_and_json_secrets_are_masked() {
        let s = String::from_utf8(red(b"GET /login?user=bob&password=hunter2&x=1 HTTP/1.1")).unwrap();
        assert_eq!(s, "GET /login?user=bob&password=*******&x=1 HTTP/1.1");
        let s = String::from_utf8(red(br#"{"user":"bob","password": "p4ss","n":1}"#)).unwrap();
        assert_eq!(s, r#"{"user":"bob","password": "****","n":1}"#);
    }

    #[test]
    fn postgres_password_message_is_masked() {
        let mut msg = vec![b'p'];
        msg.extend_from_slice(&(4u32 + 8).to_be_bytes());
        msg.extend_from_slice(b"secret7\0");
        let out = red(&msg);
        assert_eq!(&out[5..], b"********");
    }

    #[test]
    fn mysql_auth_response_is_masked() {
        let mut body = Vec::new();
        body.extend_from_slice(&(0x200u32 | 0x8000).to_le_bytes());
        body.extend_from_slice(&16777216u32.to_le_bytes());
        body.push(33);
        body.extend_from_slice(&[0u8; 23]);
        body.extend_from_slice(b"root\0");
        body.push(4);
        body.extend_from_slice(b"\x01\x02\x03\x04");
        body.extend_from_slice(b"mysql_native_password\0");
        let mut pkt = (body.len() as u32).to_le_bytes()[..3].to_vec();
        pkt.push(1);
        pkt.extend_from_slice(&body);
        let out = red(&pkt);
        let s = String::from_utf8_lossy(&out);
        assert!(s.contains("root\0\x04****mysql_native_password"), "{s:?}");
    }

    #[test]
    fn redis_auth_is_masked() {
        let out = red(b"*2\r\n$4\r\nAUTH\r\n$6\r\nfoobar\r\n");
        assert_eq!(out, b"*2\r\n$4\r\nAUTH\r\n$6\r\n******\r\n");
        assert_eq!(red(b"AUTH s3cret\r\n"), b"AUTH ******\r\n");
    }

    #[test]
    fn ordinary_payloads_are_untouched() {
        let p = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(red(p), p);
        let q = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
        assert_eq!(red(q), q);
    }
}
