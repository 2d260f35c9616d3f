//! Flame graph formats: folded stacks (flamegraph.pl, one `a;b;c N` line
//! per stack), pprof (gzipped protobuf, `go tool pprof`), and speedscope's
//! JSON file format.
//!
//! Units: on-CPU profiles count samples (pprof also gives CPU time); off-CPU
//! and combined profiles are time — microseconds in folded output,
//! nanoseconds in pprof and speedscope.

use crate::flame::Profile;
use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message;
use std::io::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Folded,
    Pprof,
    Speedscope,
}

impl Format {
    pub fn from_name(s: &str) -> Option<Format> {
        match s {
            "folded" => Some(Format::Folded),
            "pprof" => Some(Format::Pprof),
            "speedscope" => Some(Format::Speedscope),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Folded => "text/plain; charset=utf-8",
            Format::Pprof => "application/octet-stream",
            Format::Speedscope => "application/json",
        }
    }

    pub fn render(self, p: &Profile) -> Vec<u8> {
        match self {
            Format::Folded => folded(p).into_bytes(),
            Format::Pprof => pprof(p),
            Format::Speedscope => speedscope(p).into_bytes(),
        }
    }
}

fn counts_samples(p: &Profile) -> bool {
    p.kind_name == "oncpu"
}

/// flamegraph.pl input: frames root first, `;`-separated, then the value.
pub fn folded(p: &Profile) -> String {
    let mut out = String::new();
    for (ids, count, ns) in &p.stacks {
        let v = if counts_samples(p) { *count } else { ns / 1000 };
        if v == 0 {
            continue;
        }
        for (i, f) in ids.iter().enumerate() {
            if i > 0 {
                out.push(';');
            }
            out.push_str(&p.frames[*f as usize]);
        }
        out.push(' ');
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

/// The messages of pprof's profile.proto that we fill.
mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
    }
}

/// A gzipped pprof profile: one function and one location per frame name
/// (ids are frame index + 1), samples leaf first as pprof wants.
pub fn pprof(p: &Profile) -> Vec<u8> {
    let mut strings: Vec<String> = vec![String::new()];
    let mut s = |v: &str| {
        strings.push(v.to_string());
        (strings.len() - 1) as i64
    };
    let vt = |t: i64, u: i64| pb::ValueType { r#type: t, unit: u };
    let (sample_type, period_type) = if counts_samples(p) {
        let (samples, count, cpu, ns) = (s("samples"), s("count"), s("cpu"), s("nanoseconds"));
        (vec![vt(samples, count), vt(cpu, ns)], vt(cpu, ns))
    } else {
        let name = if p.kind_name == "offcpu" { "offcpu" } else { "wall" };
        let (t, ns) = (s(name), s("nanoseconds"));
        (vec![vt(t, ns)], vt(t, ns))
    };
    let name_ids: Vec<i64> = p.frames.iter().map(|f| s(f)).collect();
    let function = name_ids
        .iter()
        .enumerate()
        .map(|(i, n)| pb::Function { id: i as u64 + 1, name: *n, system_name: *n })
        .collect();
    let location = (0..p.frames.len())
        .map(|i| pb::Location { id: i as u64 + 1, line: vec![pb::Line { function_id: i as u64 + 1 }] })
        .collect();
    let sample = p
        .stacks
        .iter()
        .map(|(ids, count, ns)| pb::Sample {
            location_id: ids.iter().rev().map(|f| *f as u64 + 1).collect(),
            value: if counts_samples(p) { vec![*count as i64, *ns as i64] } else { vec![*ns as i64] },
        })
        .collect();
    let prof = pb::Profile {
        sample_type,
        sample,
        location,
        function,
        string_table: strings,
        time_nanos: p.start_ns as i64,
        duration_nanos: p.end_ns.saturating_sub(p.start_ns) as i64,
        period_type: Some(period_type),
        period: if counts_samples(p) { p.sample_period_ns as i64 } else { 1 },
    };
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(&prof.encode_to_vec());
    gz.finish().unwrap_or_default()
}

/// speedscope's file format: one "sampled" profile, frames shared, stacks
/// root first, weights in nanoseconds.
pub fn speedscope(p: &Profile) -> String {
    let frames: Vec<serde_json::Value> = p.frames.iter().map(|f| serde_json::json!({ "name": &**f })).collect();
    let samples: Vec<&Vec<u32>> = p.stacks.iter().map(|s| &s.0).collect();
    let weights: Vec<u64> = p.stacks.iter().map(|s| s.2).collect();
    let total: u64 = weights.iter().sum();
    let name = format!("kindling {} profile of pid {}", p.kind_name, p.pid);
    let doc = serde_json::json!({
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": { "frames": frames },
        "profiles": [{
            "type": "sampled",
            "name": name,
            "unit": "nanoseconds",
            "startValue": 0,
            "endValue": total,
            "samples": samples,
            "weights": weights,
        }],
        "name": name,
        "activeProfileIndex": 0,
        "exporter": concat!("kindling ", env!("CARGO_PKG_VERSION")),
    });
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::Arc;

    fn profile(kind: &'static str) -> Profile {
        Profile {
            pid: 1,
            kind_name: kind,
            start_ns: 1,
            end_ns: 2_000_000_001,
            sample_period_ns: 10_101_010,
            frames: ["main", "burn_cpu", "lock;it"].into_iter().map(Arc::from).collect(),
            stacks: vec![(vec![0, 1], 3, 30_303_030), (vec![0, 2], 1, 10_101_010)],
        }
    }

    #[test]
    fn folded_lines() {
        assert_eq!(folded(&profile("oncpu")), "main;burn_cpu 3\nmain;lock;it 1\n");
        assert_eq!(folded(&profile("offcpu")), "main;burn_cpu 30303\nmain;lock;it 10101\n");
    }

    #[test]
    fn pprof_decodes_back() {
        let gz = pprof(&profile("oncpu"));
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut raw).unwrap();
        let p = pb::Profile::decode(&raw[..]).unwrap();
        assert_eq!(p.sample.len(), 2);
        assert_eq!(p.sample[0].value, vec![3, 30_303_030]);
        // Leaf first.
        let leaf = p.sample[0].location_id[0] as usize;
        let f = &p.function[leaf - 1];
        assert_eq!(p.string_table[f.name as usize], "burn_cpu");
        assert_eq!(p.string_table[0], "");
    }

    #[test]
    fn speedscope_shape() {
        let v: serde_json::Value = serde_json::from_str(&speedscope(&profile("offcpu"))).unwrap();
        assert_eq!(v["profiles"][0]["type"], "sampled");
        assert_eq!(v["profiles"][0]["samples"][1], serde_json::json!([0, 2]));
        assert_eq!(v["profiles"][0]["endValue"], 40_404_040u64);
        assert_eq!(v["shared"]["frames"][2]["name"], "lock;it");
    }
}
