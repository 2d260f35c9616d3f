//! Endpoint label sets, interned and shared by the series that use them, with
//! their label text rendered (escaped, sanitized) once.

use crate::family::IdMap;
use crate::Endpoint;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

/// The label value of folded series.
pub const OVERFLOW: &str = "{overflow}";

/// Label names of the entity families that extra labels must not shadow.
const ENTITY_RESERVED: &[&str] = &[
    "protocol",
    "ip",
    "port",
    "workload_kind",
    "workload_name",
    "container_id",
    "request_content",
    "response_content",
    "is_slow",
    "le",
];

/// The part of an endpoint that makes a metric series.
pub(crate) struct EpLabels {
    hash: u64,
    /// [`Packed`] bytes: the identity.
    packed: Box<[u8]>,
    overflow: bool,
    workload_kind: Box<str>,
    workload_name: Box<str>,
    container_id: Box<str>,
    ip: Box<str>,
    labels: Box<[(Box<str>, Box<str>)]>,
    /// `ip="..",workload_kind="..",workload_name="..",container_id=".."[,extra]`
    pub entity: Box<str>,
    /// The same with `src_` names.
    pub src: Box<str>,
    /// The same with `dst_` names.
    pub dst: Box<str>,
}

/// A borrowed endpoint (with its precomputed hash and, when its label set is
/// interned, the address of that set) or the overflow label set.
///
/// Every series holds its label sets and every label set a series holds is in
/// the table, so an endpoint that is not interned has no series yet, and one
/// that is matches a series' label set exactly when the addresses are equal:
/// the hot path compares pointers, not strings. (Label sets are only freed by
/// [`EpTable::collect`], never while a record is being counted.)
#[derive(Clone, Copy)]
pub(crate) enum EpRef<'a> {
    Ep(&'a Endpoint, u64, Option<*const EpLabels>),
    Overflow,
}

impl<'a> EpRef<'a> {
    /// `e`, hashed and resolved in `table`.
    #[inline]
    pub fn new(e: &'a Endpoint, rs: &RandomState, table: &EpTable) -> Self {
        Packed::with(e, |p| {
            let hash = hash_bytes(rs, p);
            EpRef::Ep(e, hash, table.lookup(p, hash))
        })
    }

    #[inline]
    pub fn hash_into(self, h: &mut impl Hasher) {
        match self {
            EpRef::Ep(_, hash, _) => {
                h.write_u8(1);
                h.write_u64(hash);
            }
            EpRef::Overflow => h.write_u8(2),
        }
    }

    #[inline]
    pub fn matches(self, l: &EpLabels) -> bool {
        match self {
            EpRef::Ep(_, _, interned) => interned.is_some_and(|p| std::ptr::eq(p, l)),
            EpRef::Overflow => l.overflow,
        }
    }
}

impl EpLabels {
    #[inline]
    fn same(&self, packed: &[u8], hash: u64) -> bool {
        !self.overflow && self.hash == hash && *self.packed == *packed
    }
}

/// Inline capacity of [`Packed`]: endpoints with a few Kubernetes labels fit.
const PACK_INLINE: usize = 256;

/// The labelled fields of an endpoint (not its id, name or kind) as one
/// length-prefixed byte string: one hash write and one comparison instead of
/// one per field. On the stack unless the endpoint is unusually large.
struct Packed {
    inline: [u8; PACK_INLINE],
    len: usize,
    heap: Vec<u8>,
}

impl Packed {
    /// Calls `f` with the packed bytes of `e`.
    #[inline]
    fn with<R>(e: &Endpoint, f: impl FnOnce(&[u8]) -> R) -> R {
        let mut p = Packed { inline: [0; PACK_INLINE], len: 0, heap: Vec::new() };
        p.str(&e.workload_kind);
        p.str(&e.workload_name);
        p.str(&e.container_id);
        p.str(&e.ip);
        p.push(&(e.labels.len() as u32).to_le_bytes());
        for (k, v) in &e.labels {
            p.str(k);
            p.str(v);
        }
        f(if p.heap.is_empty() { &p.inline[..p.len] } else { &p.heap })
    }

    #[inline]
    fn str(&mut self, s: &str) {
        self.push(&(s.len() as u32).to_le_bytes());
        self.push(s.as_bytes());
    }

    #[inline]
    fn push(&mut self, b: &[u8]) {
        if self.heap.is_empty() {
            if let Some(dst) = self.inline.get_mut(self.len..self.len + b.len()) {
                dst.copy_from_slice(b);
                self.len += b.len();
                return;
            }
            self.heap.extend_from_slice(&self.inline[..self.len]);
        }
        self.heap.extend_from_slice(b);
    }
}

#[inline]
fn hash_bytes(rs: &RandomState, b: &[u8]) -> u64 {
    let mut h = rs.build_hasher();
    h.write(b);
    h.finish()
}

#[derive(Default)]
pub(crate) struct EpTable {
    map: IdMap<Vec<Arc<EpLabels>>>,
    overflow: Option<Arc<EpLabels>>,
}

impl EpTable {
    #[inline]
    fn lookup(&self, packed: &[u8], hash: u64) -> Option<*const EpLabels> {
        self.map.get(&hash)?.iter().find(|l| l.same(packed, hash)).map(Arc::as_ptr)
    }

    pub fn intern(&mut self, r: EpRef<'_>) -> Arc<EpLabels> {
        match r {
            EpRef::Overflow => self.overflow.get_or_insert_with(|| Arc::new(EpLabels::overflow())).clone(),
            EpRef::Ep(e, hash, _) => Packed::with(e, |packed| {
                let list = self.map.entry(hash).or_default();
                if let Some(l) = list.iter().find(|l| l.same(packed, hash)) {
                    return l.clone();
                }
                let l = Arc::new(EpLabels::new(e, hash, packed.into()));
                list.push(l.clone());
                l
            }),
        }
    }

    /// Forgets label sets no series uses any more.
    pub fn collect(&mut self) {
        self.map.retain(|_, list| {
            list.retain(|l| Arc::strong_count(l) > 1);
            !list.is_empty()
        });
    }

    pub fn len(&self) -> usize {
        self.map.values().map(Vec::len).sum()
    }
}

impl EpLabels {
    fn new(e: &Endpoint, hash: u64, packed: Box<[u8]>) -> Self {
        let mut l = EpLabels {
            hash,
            packed,
            overflow: false,
            workload_kind: e.workload_kind.as_str().into(),
            workload_name: e.workload_name.as_str().into(),
            container_id: e.container_id.as_str().into(),
            ip: e.ip.as_str().into(),
            labels: e.labels.iter().map(|(k, v)| (k.as_str().into(), v.as_str().into())).collect(),
            entity: Box::default(),
            src: Box::default(),
            dst: Box::default(),
        };
        l.render();
        l
    }

    fn overflow() -> Self {
        let o: Box<str> = OVERFLOW.into();
        let mut l = EpLabels {
            hash: 0,
            packed: Box::default(),
            overflow: true,
            workload_kind: o.clone(),
            workload_name: o.clone(),
            container_id: o.clone(),
            ip: o,
            labels: Box::default(),
            entity: Box::default(),
            src: Box::default(),
            dst: Box::default(),
        };
        l.render();
        l
    }

    fn render(&mut self) {
        self.entity = self.fragment("", ENTITY_RESERVED).into();
        // Prefixed names can only collide with the other prefixed names.
        self.src = self.fragment("src_", &[]).into();
        self.dst = self.fragment("dst_", &["dst_port"]).into();
    }

    fn fragment(&self, prefix: &str, reserved: &[&str]) -> String {
        let mut out = String::new();
        let fixed = [
            ("ip", &*self.ip),
            ("workload_kind", &*self.workload_kind),
            ("workload_name", &*self.workload_name),
            ("container_id", &*self.container_id),
        ];
        let mut used: Vec<String> = Vec::new();
        for (k, v) in fixed {
            let name = format!("{prefix}{k}");
            push_label(&mut out, &name, v);
            used.push(name);
        }
        for (k, v) in self.labels.iter() {
            let name = label_name(prefix, k);
            if reserved.contains(&name.as_str()) || used.contains(&name) {
                continue;
            }
            push_label(&mut out, &name, v);
            used.push(name);
        }
        out
    }
}

/// Appends `,name="value"` (no comma when `out` is empty), escaping the value.
pub(crate) fn push_label(out: &mut String, name: &str, value: &str) {
    if !out.is_empty() {
        out.push(',');
    }
    out.push_str(name);
    out.push_str("=\"");
    escape_value(out, value);
    out.push('"');
}

/// Label value escaping of the text exposition format 0.0.4.
pub(crate) fn escape_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A valid Prometheus label name from an arbitrary key: `[a-zA-Z_][a-zA-Z0-9_]*`,
/// not starting with the reserved `__`.
pub(crate) fn label_name(prefix: &str, raw: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + raw.len() + 1);
    s.push_str(prefix);
    for c in raw.chars() {
        s.push(if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' });
    }
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    if s.starts_with("__") {
        s.insert_str(0, "label");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized() {
        assert_eq!(label_name("", "app.kubernetes.io/name"), "app_kubernetes_io_name");
        assert_eq!(label_name("src_", "app.kubernetes.io/name"), "src_app_kubernetes_io_name");
        assert_eq!(label_name("", "9lives"), "_9lives");
        assert_eq!(label_name("", ""), "_");
        assert_eq!(label_name("", "__name__"), "label__name__");
        assert_eq!(label_name("", "ünï"), "_n_");
    }

    #[test]
    fn values_are_escaped() {
        let mut s = String::new();
        escape_value(&mut s, "a\"b\\c\nd\te");
        assert_eq!(s, "a\\\"b\\\\c\\nd\te");
    }

    #[test]
    fn extra_labels_cannot_shadow_fixed_ones() {
        let e = Endpoint {
            ip: "10.0.0.1".into(),
            workload_kind: "deployment".into(),
            labels: vec![
                ("ip".into(), "x".into()),
                ("namespace".into(), "prod".into()),
                ("namespace".into(), "dup".into()),
                ("port".into(), "1".into()),
            ],
            ..Endpoint::default()
        };
        let l = Packed::with(&e, |p| EpLabels::new(&e, 0, p.into()));
        assert_eq!(
            &*l.entity,
            r#"ip="10.0.0.1",workload_kind="deployment",workload_name="",container_id="",namespace="prod""#
        );
        assert_eq!(
            &*l.dst,
            r#"dst_ip="10.0.0.1",dst_workload_kind="deployment",dst_workload_name="",dst_container_id="",dst_namespace="prod""#
        );
        assert!(l.src.contains(r#"src_port="1""#));
    }
}
