//! The `capture --json` view: one flat JSON object per event, field names as
//! in the product contract (`ts_ns`, `kind`, `syscall`, `pid`, `tid`, `comm`,
//! `fd`, `proto`, `family`, `src`, `dst`, `role`, `bytes`, `latency_ns`, `ret`).

use crate::model::*;
use serde::Serialize;

#[derive(Serialize)]
pub struct JsonEvent<'a> {
    pub ts_ns: u64,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscall: Option<&'static str>,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proto: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ret: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sock_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_len: Option<usize>,
    /// The payload head with non-printable bytes escaped (only with `--payload`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_dead: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_comm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<u8>,
    /// Fields of module events (tcp, sched), flattened into the object.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl<'a> JsonEvent<'a> {
    pub fn new(ev: &'a Event, with_payload: bool) -> JsonEvent<'a> {
        let mut j = JsonEvent {
            ts_ns: ev.ts_ns,
            kind: ev.kind(),
            syscall: None,
            pid: ev.pid,
            tid: ev.tid,
            comm: ev.comm.to_string_lossy(),
            fd: None,
            proto: None,
            family: None,
            src: None,
            dst: None,
            role: None,
            bytes: None,
            latency_ns: None,
            ret: None,
            sock_id: None,
            msg_index: None,
            payload_len: None,
            payload: None,
            ppid: None,
            filename: None,
            args: None,
            exit_code: None,
            group_dead: None,
            child_pid: None,
            new_comm: None,
            exe: None,
            cgroup: None,
            state: None,
            extra: serde_json::Map::new(),
        };
        match &ev.body {
            EventBody::Socket(s) => {
                j.syscall = Some(s.syscall.name());
                j.fd = Some(s.fd);
                j.proto = Some(s.proto.name());
                j.family = Some(s.family());
                j.src = Some(format_addr(&s.src));
                j.dst = Some(format_addr(&s.dst));
                j.role = Some(s.role.name());
                j.bytes = Some(s.bytes);
                j.latency_ns = Some(s.latency_ns);
                j.ret = Some(s.ret);
                j.sock_id = Some(s.sock_id);
                if matches!(s.syscall, Syscall::Sendmmsg | Syscall::Recvmmsg) {
                    j.msg_index = Some(s.msg_index);
                }
                j.payload_len = Some(s.payload.len());
                if with_payload {
                    let mut p = s.payload.clone();
                    crate::redact::redact_payload(&mut p);
                    j.payload = Some(escape_payload(&p));
                }
            }
            EventBody::Exec(e) => {
                j.ppid = Some(e.ppid);
                j.filename = Some(&e.filename);
                j.args = Some(&e.args);
            }
            EventBody::Exit(e) => {
                j.exit_code = Some(e.exit_code);
                j.group_dead = Some(e.group_dead);
            }
            EventBody::Fork(f) => j.child_pid = Some(f.child_pid),
            EventBody::Rename(r) => j.new_comm = Some(r.new_comm.to_string_lossy()),
            EventBody::ProcessSnapshot(p) => {
                j.ppid = Some(p.ppid);
                j.exe = Some(&p.exe);
                j.args = Some(&p.cmdline);
                j.cgroup = Some(&p.cgroup);
            }
            EventBody::Tcp(t) => t.json_fields(&mut j),
            EventBody::Sched(t) => t.json_fields(&mut j),
            EventBody::SocketSnapshot(s) => {
                j.fd = Some(s.fd);
                j.proto = Some(s.proto.name());
                j.family = Some(s.family());
                j.src = Some(format_addr(&s.src));
                j.dst = Some(format_addr(&s.dst));
                j.state = Some(s.state);
            }
        }
        j
    }
}

/// Printable ASCII as is, everything else as `\xNN`.
pub fn escape_payload(p: &[u8]) -> String {
    let mut s = String::with_capacity(p.len());
    for &b in p {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

/// One event as a JSON line (no trailing newline).
pub fn to_json_line(ev: &Event, with_payload: bool) -> String {
    serde_json::to_string(&JsonEvent::new(ev, with_payload)).unwrap_or_else(|e| {
        // Serializing plain data cannot fail; keep the line valid JSON anyway.
        format!("{{\"error\":{:?}}}", e.to_string())
    })
}
