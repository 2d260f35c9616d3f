#![allow(dead_code)]

use kindling_aggregate::Endpoint;
use kindling_protocols::Protocol;
use kindling_requests::{Breakdown, RequestRecord, Side, TcpDuring};
use std::collections::{BTreeMap, HashMap, HashSet};

pub const SEC: u64 = 1_000_000_000;
pub const MS: u64 = 1_000_000;

pub fn rec(side: Side, endpoint: &str, status: &str, duration_ns: u64, end_ts_ns: u64) -> RequestRecord {
    RequestRecord {
        start_ts_ns: end_ts_ns.saturating_sub(duration_ns),
        end_ts_ns,
        protocol: Protocol::Http,
        side,
        pid: 100,
        tid: 100,
        response_tid: 100,
        comm: "python3".into(),
        src: "10.0.0.1:40000".parse().unwrap(),
        dst: "10.0.0.2:8080".parse().unwrap(),
        method: "GET".into(),
        endpoint: endpoint.into(),
        detail: endpoint.into(),
        status: status.into(),
        is_error: status.starts_with('5'),
        is_slow: false,
        error: String::new(),
        duration_ns,
        breakdown: Breakdown::default(),
        request_bytes: 100,
        response_bytes: 1000,
        trace_id: String::new(),
        trace_type: String::new(),
        sock_id: 1,
        tcp: TcpDuring::default(),
    }
}

pub fn ep(node_id: &str, ip: &str) -> Endpoint {
    let (kind, name) = node_id.split_once(':').unwrap_or(("external", node_id));
    Endpoint {
        node_id: node_id.into(),
        name: name.into(),
        kind: kind.into(),
        workload_kind: kind.into(),
        workload_name: name.into(),
        container_id: String::new(),
        ip: ip.into(),
        labels: Vec::new(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A strict reader of text exposition 0.0.4 as produced here: checks the
/// grammar, escapes, HELP/TYPE before samples, contiguous families, no
/// duplicate series, and histogram invariants. Panics with the bad line.
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    pub types: HashMap<String, String>,
}

fn valid_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    let ok_rest = |c: char| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':');
    matches!(chars.next(), Some(c) if ok_first(c)) && chars.all(ok_rest)
}

fn parse_labels(s: &str, line: &str) -> (BTreeMap<String, String>, usize) {
    // s starts after '{'; returns labels and the bytes consumed including '}'.
    let b = s.as_bytes();
    let mut i = 0;
    let mut labels = BTreeMap::new();
    loop {
        if b.get(i) == Some(&b'}') {
            return (labels, i + 1);
        }
        let eq = s[i..].find('=').unwrap_or_else(|| panic!("no '=' in labels: {line}")) + i;
        let name = &s[i..eq];
        assert!(valid_name(name, false), "bad label name {name:?}: {line}");
        assert!(!name.starts_with("__"), "reserved label name {name:?}: {line}");
        assert_eq!(b.get(eq + 1), Some(&b'"'), "label value not quoted: {line}");
        let mut j = eq + 2;
        let mut v = String::new();
        loop {
            let c = s[j..].chars().next().unwrap_or_else(|| panic!("unterminated value: {line}"));
            match c {
                '"' => break,
                '\\' => {
                    let e = s[j + 1..].chars().next().unwrap_or_else(|| panic!("dangling escape: {line}"));
                    match e {
                        '\\' => v.push('\\'),
                        '"' => v.push('"'),
                        'n' => v.push('\n'),
                        _ => panic!("bad escape \\{e}: {line}"),
                    }
                    j += 1 + e.len_utf8();
                }
                '\n' => panic!("raw newline in value: {line}"),
                c => {
                    v.push(c);
                    j += c.len_utf8();
                }
            }
        }
        assert!(labels.insert(name.to_string(), v).is_none(), "duplicate label {name}: {line}");
        i = j + 1;
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => {}
            _ => panic!("expected ',' or '}}' after label: {line}"),
        }
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

impl Exposition {
    pub fn parse(text: &str) -> Exposition {
        let mut x = Exposition::default();
        let mut help: HashSet<String> = HashSet::new();
        let mut done: HashSet<String> = HashSet::new();
        let mut current: Option<String> = None;
        let mut seen: HashSet<(String, BTreeMap<String, String>)> = HashSet::new();
        assert!(text.is_empty() || text.ends_with('\n'), "exposition must end with a newline");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _) = rest.split_once(' ').unwrap_or((rest, ""));
                assert!(valid_name(name, true), "bad name in HELP: {line}");
                assert!(help.insert(name.to_string()), "second HELP for {name}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').unwrap_or_else(|| panic!("TYPE without type: {line}"));
                assert!(matches!(ty, "counter" | "gauge" | "histogram" | "summary" | "untyped"), "{line}");
                assert!(!x.types.contains_key(name), "second TYPE for {name}");
                assert!(!done.contains(name), "TYPE after samples of {name}");
                x.types.insert(name.to_string(), ty.to_string());
                if let Some(c) = current.take() {
                    done.insert(c);
                }
                current = Some(name.to_string());
                continue;
            }
            assert!(!line.starts_with('#'), "unknown comment: {line}");
            assert!(!line.is_empty(), "empty line");
            let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line}"));
            let name = &line[..name_end];
            assert!(valid_name(name, true), "bad metric name: {line}");
            let (labels, rest) = if line[name_end..].starts_with('{') {
                let (l, used) = parse_labels(&line[name_end + 1..], line);
                (l, &line[name_end + 1 + used..])
            } else {
                (BTreeMap::new(), &line[name_end..])
            };
            let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("no space before value: {line}"));
            assert!(!value.contains(' '), "timestamps are not expected: {line}");
            let value = parse_value(value).unwrap_or_else(|| panic!("bad value: {line}"));
            let family = x.family_of(name).unwrap_or_else(|| panic!("sample without TYPE: {line}"));
            assert_eq!(current.as_deref(), Some(family.as_str()), "family not contiguous: {line}");
            if x.types[&family] == "counter" {
                assert!(name.ends_with("_total"), "counter without _total: {line}");
                assert!(value >= 0.0, "negative counter: {line}");
            }
            assert!(seen.insert((name.to_string(), labels.clone())), "duplicate series: {line}");
            x.samples.push(Sample { name: name.to_string(), labels, value });
        }
        for name in x.types.keys() {
            assert!(help.contains(name), "no HELP for {name}");
        }
        x.check_histograms();
        x
    }

    fn family_of(&self, name: &str) -> Option<String> {
        if self.types.contains_key(name) {
            return Some(name.to_string());
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if self.types.get(base).map(String::as_str) == Some("histogram") {
                    return Some(base.to_string());
                }
            }
        }
        None
    }

    fn check_histograms(&self) {
        for (fam, ty) in &self.types {
            if ty != "histogram" {
                continue;
            }
            let mut buckets: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
            for s in self.samples.iter().filter(|s| s.name == format!("{fam}_bucket")) {
                let mut l = s.labels.clone();
                let le = l.remove("le").unwrap_or_else(|| panic!("bucket without le: {s:?}"));
                let le = parse_value(&le).unwrap_or_else(|| panic!("bad le: {s:?}"));
                buckets.entry(l).or_default().push((le, s.value));
            }
            for (labels, b) in &buckets {
                for w in b.windows(2) {
                    assert!(w[1].0 > w[0].0, "le not increasing in {fam} {labels:?}");
                    assert!(w[1].1 >= w[0].1, "buckets not cumulative in {fam} {labels:?}");
                }
                let last = b.last().unwrap();
                assert_eq!(last.0, f64::INFINITY, "no +Inf bucket in {fam} {labels:?}");
                let count = self.get(&format!("{fam}_count"), labels).expect("no _count");
                assert_eq!(count, last.1, "_count != +Inf bucket in {fam} {labels:?}");
                assert!(self.get(&format!("{fam}_sum"), labels).is_some(), "no _sum in {fam} {labels:?}");
            }
        }
    }

    pub fn get(&self, name: &str, labels: &BTreeMap<String, String>) -> Option<f64> {
        self.samples.iter().find(|s| s.name == name && &s.labels == labels).map(|s| s.value)
    }

    pub fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    pub fn sum(&self, name: &str) -> f64 {
        self.series(name).iter().map(|s| s.value).sum()
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Deterministic pseudo-random numbers (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
