//! Queries for the API and the UI, on a read-only connection of their own.

use crate::feed::MINUTE_NS;
use crate::{schema, sqlite_err, StoreError};
use kindling_aggregate::{Edge, Node, Point, Topology};
use kindling_protocols::Protocol;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct Reader {
    conn: Mutex<Connection>,
    path: PathBuf,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// Newest first.
    #[default]
    Recent,
    /// Longest first.
    Slowest,
}

/// Filters of the stored requests; every field optional.
#[derive(Clone, Debug, Default)]
pub struct RequestFilter {
    pub protocol: Option<String>,
    pub side: Option<String>,
    pub slow: Option<bool>,
    pub error: Option<bool>,
    /// A part of the endpoint (case-insensitive).
    pub endpoint: Option<String>,
    pub trace_id: Option<String>,
    /// The edge's client node.
    pub src: Option<String>,
    /// The edge's server node.
    pub dst: Option<String>,
    /// Either end.
    pub node: Option<String>,
    /// Only requests that ended at or after / before this time.
    pub since_ns: Option<u64>,
    pub until_ns: Option<u64>,
    pub order: Order,
    pub limit: usize,
}

#[derive(Clone, Debug, Default)]
pub struct ProfileFilter {
    pub trace_id: Option<String>,
    pub endpoint: Option<String>,
    pub kept_because: Option<String>,
    pub since_ns: Option<u64>,
    pub limit: usize,
}

/// An entry of `/api/v1/profiles`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProfileSummary {
    pub id: String,
    pub trace_id: String,
    pub endpoint: String,
    pub duration_ns: u64,
    pub kept_because: String,
    pub start_ts_ns: u64,
}

/// Sizes of what is stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Contents {
    pub requests: u64,
    pub edge_minutes: u64,
    pub profiles: u64,
    /// The oldest and newest rollup minutes (0 when none).
    pub first_minute_ns: u64,
    pub last_minute_ns: u64,
}

fn i(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

fn u(v: i64) -> u64 {
    v.max(0) as u64
}

/// `%part%` for LIKE, with the pattern characters of `part` escaped.
fn like(part: &str) -> String {
    let mut s = String::with_capacity(part.len() + 2);
    s.push('%');
    for c in part.chars() {
        if matches!(c, '%' | '_' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('%');
    s
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader, StoreError> {
        Ok(Reader { conn: Mutex::new(schema::open_reader(path)?), path: path.to_path_buf() })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&conn).map_err(sqlite_err(&self.path))
    }

    /// Stored request records (the `/api/v1/requests` shape) with `id`,
    /// `src_node` and `dst_node` added.
    pub fn requests(&self, f: &RequestFilter) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut cond: Vec<&str> = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        let mut add = |c: &'static str, v: Value| {
            cond.push(c);
            args.push(v);
        };
        if let Some(p) = &f.protocol {
            add("protocol = ?", Value::Text(p.clone()));
        }
        if let Some(s) = &f.side {
            add("side = ?", Value::Text(s.clone()));
        }
        if let Some(b) = f.slow {
            add("is_slow = ?", Value::Integer(b.into()));
        }
        if let Some(b) = f.error {
            add("is_error = ?", Value::Integer(b.into()));
        }
        if let Some(e) = &f.endpoint {
            add("endpoint LIKE ? ESCAPE '\\'", Value::Text(like(e)));
        }
        if let Some(t) = &f.trace_id {
            add("trace_id = ?", Value::Text(t.clone()));
        }
        if let Some(s) = &f.src {
            add("src_node = ?", Value::Text(s.clone()));
        }
        if let Some(d) = &f.dst {
            add("dst_node = ?", Value::Text(d.clone()));
        }
        if let Some(n) = &f.node {
            cond.push("(src_node = ? OR dst_node = ?)");
            args.push(Value::Text(n.clone()));
            args.push(Value::Text(n.clone()));
        }
        if let Some(t) = f.since_ns {
            cond.push("end_ts_ns >= ?");
            args.push(Value::Integer(i(t)));
        }
        if let Some(t) = f.until_ns {
            cond.push("end_ts_ns <= ?");
            args.push(Value::Integer(i(t)));
        }
        let mut sql = String::from("SELECT id, src_node, dst_node, record FROM requests");
        if !cond.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&cond.join(" AND "));
        }
        sql.push_str(match f.order {
            Order::Recent => " ORDER BY end_ts_ns DESC, id DESC",
            Order::Slowest => " ORDER BY duration_ns DESC, id DESC",
        });
        sql.push_str(&format!(" LIMIT {}", f.limit.clamp(1, 10_000)));
        self.with(|c| {
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(params_from_iter(args), |r| {
                let (id, src, dst, rec): (i64, String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
                let mut v: serde_json::Value = serde_json::from_str(&rec).unwrap_or(serde_json::Value::Null);
                if let Some(o) = v.as_object_mut() {
                    o.insert("id".into(), id.into());
                    o.insert("src_node".into(), src.into());
                    o.insert("dst_node".into(), dst.into());
                }
                Ok(v)
            })?;
            rows.filter(|v| !matches!(v, Ok(serde_json::Value::Null))).collect()
        })
    }

    /// One stored request by its `id`.
    pub fn request(&self, id: i64) -> Result<Option<serde_json::Value>, StoreError> {
        self.with(|c| {
            c.query_row("SELECT src_node, dst_node, record FROM requests WHERE id = ?1", params![id], |r| {
                let (src, dst, rec): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
                let mut v: serde_json::Value = serde_json::from_str(&rec).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("id".into(), id.into());
                    o.insert("src_node".into(), src.into());
                    o.insert("dst_node".into(), dst.into());
                }
                Ok(v)
            })
            .optional()
        })
    }

    /// Steps of `step_ns` (whole minutes, at least one) from `from_ns` to
    /// `to_ns`, oldest first, each summing the minutes in it (p99: the
    /// highest minute's). Steps without data have zero counts.
    fn steps(rows: Vec<(u64, u64, u64, u64, Option<f64>)>, from_ns: u64, to_ns: u64, step_ns: u64) -> Vec<Point> {
        let step = step_ns.div_ceil(MINUTE_NS).max(1) * MINUTE_NS;
        let (first, last) = (from_ns / step, to_ns / step);
        let mut out: Vec<Point> = (first..=last)
            .map(|g| Point { ts_ns: g * step, requests: 0, errors: 0, slow: 0, p99_ms: None })
            .collect();
        for (ts, req, err, slow, p99) in rows {
            let Some(p) = (ts / step).checked_sub(first).and_then(|k| out.get_mut(k as usize)) else { continue };
            p.requests += req;
            p.errors += err;
            p.slow += slow;
            if req > 0 {
                p.p99_ms = match (p.p99_ms, p99) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        out
    }

    /// An edge's per-minute history (all protocols and ports of the pair
    /// when they are not given).
    #[allow(clippy::too_many_arguments)]
    pub fn edge_series(
        &self,
        src: &str,
        dst: &str,
        protocol: Option<&str>,
        dst_port: Option<u16>,
        from_ns: u64,
        to_ns: u64,
        step_ns: u64,
    ) -> Result<Vec<Point>, StoreError> {
        let rows = self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT ts_ns, requests, errors, slow, p99_ms FROM edge_minutes
                 WHERE src = ?1 AND dst = ?2 AND ts_ns >= ?3 AND ts_ns <= ?4
                   AND (?5 IS NULL OR protocol = ?5) AND (?6 IS NULL OR dst_port = ?6)",
            )?;
            let rows = st.query_map(params![src, dst, i(from_ns), i(to_ns), protocol, dst_port], |r| {
                Ok((u(r.get(0)?), u(r.get(1)?), u(r.get(2)?), u(r.get(3)?), r.get::<_, Option<f64>>(4)?))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(Self::steps(rows, from_ns, to_ns, step_ns))
    }

    /// A node's per-minute history of the calls it served (`inbound`) or made (`outbound`).
    pub fn node_series(
        &self,
        node: &str,
        direction: &str,
        from_ns: u64,
        to_ns: u64,
        step_ns: u64,
    ) -> Result<Vec<Point>, StoreError> {
        let rows = self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT ts_ns, requests, errors, slow, p99_ms FROM node_minutes
                 WHERE node = ?1 AND direction = ?2 AND ts_ns >= ?3 AND ts_ns <= ?4",
            )?;
            let rows = st.query_map(params![node, direction, i(from_ns), i(to_ns)], |r| {
                Ok((u(r.get(0)?), u(r.get(1)?), u(r.get(2)?), u(r.get(3)?), r.get::<_, Option<f64>>(4)?))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(Self::steps(rows, from_ns, to_ns, step_ns))
    }

    /// The service map over the minutes from `from_ns` to `to_ns`, from the
    /// rollups. Counts and bytes are exact sums; `avg_ms` and `p50_ms` are
    /// request-weighted means of the minutes', `p95_ms`, `p99_ms` and
    /// `max_ms` the highest minute's (an upper bound).
    pub fn topology(&self, from_ns: u64, to_ns: u64) -> Result<Topology, StoreError> {
        type Row = (String, String, String, u16, [i64; 5], [f64; 5], [Option<f64>; 5]);
        let rows: Vec<Row> = self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT src, dst, protocol, dst_port, requests, errors, slow, bytes_sent, bytes_received,
                        avg_ms, p50_ms, p95_ms, p99_ms, max_ms, retransmits, rtt_ms, resets, drops, connect_failures
                 FROM edge_minutes WHERE ts_ns >= ?1 AND ts_ns <= ?2",
            )?;
            let rows = st.query_map(params![i(from_ns), i(to_ns)], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    [r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?],
                    [r.get(9)?, r.get(10)?, r.get(11)?, r.get(12)?, r.get(13)?],
                    [
                        r.get::<_, Option<i64>>(14)?.map(|v| v as f64),
                        r.get(15)?,
                        r.get::<_, Option<i64>>(16)?.map(|v| v as f64),
                        r.get::<_, Option<i64>>(17)?.map(|v| v as f64),
                        r.get::<_, Option<i64>>(18)?.map(|v| v as f64),
                    ],
                ))
            })?;
            rows.collect()
        })?;
        let window_s = ((to_ns.saturating_sub(from_ns)) as f64 / 1e9).max(1.0);
        // (src, dst, protocol, port) -> (edge, sum and count of the minutes' RTTs)
        type Acc = (Edge, f64, u32);
        let mut edges: BTreeMap<(String, String, String, u16), Acc> = BTreeMap::new();
        for (src, dst, proto, port, n, f, tcp) in rows {
            let key = (src.clone(), dst.clone(), proto.clone(), port);
            let (e, rtt_sum, rtt_n) = edges.entry(key).or_insert_with(|| {
                let mut e = Edge::empty(&src, &dst, port);
                e.protocol = Protocol::from_name(&proto).unwrap_or(Protocol::Tcp);
                (e, 0.0, 0)
            });
            let req = u(n[0]);
            let total = e.requests + req;
            if total > 0 {
                let w = req as f64 / total as f64;
                e.avg_ms += (f[0] - e.avg_ms) * w;
                e.p50_ms += (f[1] - e.p50_ms) * w;
            }
            e.requests = total;
            e.errors += u(n[1]);
            e.slow += u(n[2]);
            e.bytes_sent += u(n[3]);
            e.bytes_received += u(n[4]);
            if req > 0 {
                e.p95_ms = e.p95_ms.max(f[2]);
                e.p99_ms = e.p99_ms.max(f[3]);
                e.max_ms = e.max_ms.max(f[4]);
            }
            let sum = |a: Option<u64>, b: Option<f64>| match (a, b) {
                (a, Some(b)) => Some(a.unwrap_or(0) + b as u64),
                (a, None) => a,
            };
            e.retransmits = sum(e.retransmits, tcp[0]);
            if let Some(r) = tcp[1] {
                *rtt_sum += r;
                *rtt_n += 1;
            }
            e.resets = sum(e.resets, tcp[2]);
            e.drops = sum(e.drops, tcp[3]);
            e.connect_failures = sum(e.connect_failures, tcp[4]);
        }
        let mut ids = BTreeSet::new();
        let edges: Vec<Edge> = edges
            .into_values()
            .map(|(mut e, rtt_sum, rtt_n)| {
                if rtt_n > 0 {
                    e.rtt_ms = Some(rtt_sum / rtt_n as f64);
                }
                e.error_rate = if e.requests > 0 { e.errors as f64 / e.requests as f64 } else { 0.0 };
                e.rps = e.requests as f64 / window_s;
                ids.insert(e.src.clone());
                ids.insert(e.dst.clone());
                e
            })
            .collect();
        let nodes = self.nodes(&ids)?;
        Ok(Topology { window_s, nodes, edges })
    }

    /// The stored display fields of these nodes (a bare node when unknown).
    fn nodes(&self, ids: &BTreeSet<String>) -> Result<Vec<Node>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached("SELECT node FROM nodes WHERE id = ?1")?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let json: Option<String> = st.query_row(params![id], |r| r.get(0)).optional()?;
                let node = json.and_then(|j| serde_json::from_str::<Node>(&j).ok()).unwrap_or_else(|| Node {
                    id: id.clone(),
                    name: id.split_once(':').map(|(_, n)| n).unwrap_or(id).to_string(),
                    kind: id.split_once(':').map(|(k, _)| k).unwrap_or("").to_string(),
                    ..Node::default()
                });
                out.push(node);
            }
            Ok(out)
        })
    }

    /// Kept trace-profiles, newest first.
    pub fn profiles(&self, f: &ProfileFilter) -> Result<Vec<ProfileSummary>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, trace_id, endpoint, duration_ns, kept_because, start_ts_ns FROM profiles
                 WHERE (?1 IS NULL OR trace_id = ?1) AND (?2 IS NULL OR endpoint = ?2)
                   AND (?3 IS NULL OR kept_because = ?3) AND (?4 IS NULL OR start_ts_ns >= ?4)
                 ORDER BY start_ts_ns DESC, id DESC LIMIT ?5",
            )?;
            let rows = st.query_map(
                params![f.trace_id, f.endpoint, f.kept_because, f.since_ns.map(i), f.limit.clamp(1, 10_000) as i64],
                |r| {
                    Ok(ProfileSummary {
                        id: r.get(0)?,
                        trace_id: r.get(1)?,
                        endpoint: r.get(2)?,
                        duration_ns: u(r.get(3)?),
                        kept_because: r.get(4)?,
                        start_ts_ns: u(r.get(5)?),
                    })
                },
            )?;
            rows.collect()
        })
    }

    /// One kept trace-profile, as it was given.
    pub fn profile(&self, id: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let json: Option<String> =
            self.with(|c| c.query_row("SELECT profile FROM profiles WHERE id = ?1", params![id], |r| r.get(0)).optional())?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    pub fn contents(&self) -> Result<Contents, StoreError> {
        self.with(|c| {
            let count = |t: &str| c.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get::<_, i64>(0)).map(u);
            let (lo, hi): (Option<i64>, Option<i64>) =
                c.query_row("SELECT MIN(ts_ns), MAX(ts_ns) FROM edge_minutes", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(Contents {
                requests: count("requests")?,
                edge_minutes: count("edge_minutes")?,
                profiles: count("profiles")?,
                first_minute_ns: lo.map(u).unwrap_or(0),
                last_minute_ns: hi.map(u).unwrap_or(0),
            })
        })
    }

    /// `PRAGMA integrity_check` ("ok" when sound).
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        self.with(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0)))
    }
}

