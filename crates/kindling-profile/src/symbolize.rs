//! Addresses -> function names, with blazesym: ELF symbols and DWARF of the
//! process's mappings (C, C++, Rust, Go binaries), JIT code from the
//! process's perf map (`/tmp/perf-PID.map`, which a JVM writes on
//! `jcmd PID Compiler.perfmap`), and the kernel's symbols (kallsyms).
//!
//! Symbolizing reads the live process's memory maps, so it must happen while
//! the process runs; names are cached per (pid, address) for the life of a
//! [`Symbolizer`].

use blazesym::symbolize::source::{Kernel, Process, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer as Blaze};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Suffix of kernel frames in flame graphs (the flamegraph.pl convention).
pub const KERNEL_SUFFIX: &str = "_[k]";
pub const UNKNOWN: &str = "[unknown]";

pub struct Symbolizer {
    blaze: Blaze,
    user: HashMap<(u32, u64), Arc<str>>,
    kernel: HashMap<u64, Arc<str>>,
    perf_maps_asked: HashMap<u32, Instant>,
    /// JIT code per process, from its perf map: (start, end, name), sorted.
    perf_maps: HashMap<u32, Vec<(u64, u64, Arc<str>)>>,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Symbolizer::new()
    }
}

impl Symbolizer {
    pub fn new() -> Symbolizer {
        Symbolizer {
            blaze: new_blaze(),
            user: HashMap::new(),
            kernel: HashMap::new(),
            perf_maps_asked: HashMap::new(),
            perf_maps: HashMap::new(),
        }
    }

    /// Names for user addresses of `pid`, in order (unknown: `[unknown]`).
    pub fn user(&mut self, pid: u32, addrs: &[u64]) -> Vec<Arc<str>> {
        let missing: Vec<u64> = {
            let mut m: Vec<u64> = addrs.iter().copied().filter(|a| !self.user.contains_key(&(pid, *a))).collect();
            m.sort_unstable();
            m.dedup();
            m
        };
        if !missing.is_empty() {
            // Perf maps are read here, not by blazesym: JDKs write `0x`-prefixed
            // addresses, which its parser refuses (failing the whole batch).
            let mut src = Process::new(pid.into());
            src.perf_map = false;
            let names = resolve(&self.blaze, &Source::Process(src), &missing);
            let jit = self.perf_maps.entry(pid).or_insert_with(|| read_perf_map(pid));
            for (a, n) in missing.iter().zip(names) {
                let n = if &*n == UNKNOWN { jit_name(jit, *a).unwrap_or(n) } else { n };
                self.user.insert((pid, *a), n);
            }
        }
        addrs.iter().map(|a| self.user.get(&(pid, *a)).cloned().unwrap_or_else(|| UNKNOWN.into())).collect()
    }

    /// Resolves a user stack's names now, while the process still runs (they
    /// are cached for later): call as stacks arrive for short-lived processes.
    pub fn prefetch_user(&mut self, pid: u32, leaf_first: &[u64]) {
        let addrs: Vec<u64> = crate::flame::call_sites(leaf_first).collect();
        self.user(pid, &addrs);
    }

    /// Names for kernel addresses, in order, with the `_[k]` suffix.
    pub fn kernel(&mut self, addrs: &[u64]) -> Vec<Arc<str>> {
        let mut missing: Vec<u64> = addrs.iter().copied().filter(|a| !self.kernel.contains_key(a)).collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let src = Source::Kernel(Kernel::default());
            let names = resolve(&self.blaze, &src, &missing);
            for (a, n) in missing.iter().zip(names) {
                self.kernel.insert(*a, format!("{n}{KERNEL_SUFFIX}").into());
            }
        }
        addrs.iter().map(|a| self.kernel.get(a).cloned().unwrap_or_else(|| UNKNOWN.into())).collect()
    }

    /// For a JVM, asks it to write its perf map (JIT-compiled methods) so
    /// Java frames get names; at most every 10 s per process. Other
    /// processes are left alone. Returns whether a map was written.
    pub fn refresh_perf_map(&mut self, pid: u32) -> bool {
        if !is_jvm(pid) {
            return false;
        }
        if self.perf_maps_asked.get(&pid).is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            return false;
        }
        self.perf_maps_asked.insert(pid, Instant::now());
        // Cached names of this process may predate the map.
        self.user.retain(|(p, _), _| *p != pid);
        let ok = ask_jvm_perf_map(pid);
        self.perf_maps.remove(&pid);
        if !ok {
            tracing::debug!("jcmd {pid} Compiler.perfmap failed: Java frames stay unnamed");
        }
        ok
    }
}

/// Names only: no file/line lookups, no inlined functions (faster, smaller).
fn new_blaze() -> Blaze {
    Blaze::builder().enable_code_info(false).enable_inlined_fns(false).build()
}

fn resolve(blaze: &Blaze, src: &Source<'_>, addrs: &[u64]) -> Vec<Arc<str>> {
    match blaze.symbolize(src, Input::AbsAddr(addrs)) {
        Ok(syms) => syms
            .iter()
            .map(|s| match s {
                Symbolized::Sym(sym) => sanitize(&sym.name),
                Symbolized::Unknown(_) => UNKNOWN.into(),
            })
            .collect(),
        Err(e) => {
            tracing::debug!("symbolization failed: {e}");
            addrs.iter().map(|_| Arc::from(UNKNOWN)).collect()
        }
    }
}

/// Frame names go into `;`-separated and line-based formats.
fn sanitize(name: &str) -> Arc<str> {
    if name.contains([';', '\n', '\r']) {
        name.replace(';', ":").replace(['\n', '\r'], " ").into()
    } else {
        name.into()
    }
}

/// `/tmp/perf-PID.map` (as the process sees /tmp): `START SIZE name` lines,
/// hex with or without `0x`.
fn read_perf_map(pid: u32) -> Vec<(u64, u64, Arc<str>)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/root/tmp/perf-{pid}.map"))
        .or_else(|_| std::fs::read_to_string(format!("/tmp/perf-{pid}.map")))
        .unwrap_or_default();
    parse_perf_map(&text)
}

fn parse_perf_map(text: &str) -> Vec<(u64, u64, Arc<str>)> {
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let mut out: Vec<(u64, u64, Arc<str>)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ' ');
            let start = hex(f.next()?)?;
            let size = hex(f.next()?)?;
            Some((start, start.checked_add(size)?, java_name(f.next()?.trim())))
        })
        .collect();
    out.sort_by_key(|e| e.0);
    out
}

/// `long JavaServer.fib(int)` -> `JavaServer.fib`: the method, without its
/// return type and parameters (entries without a signature stay as they are).
fn java_name(raw: &str) -> Arc<str> {
    let head = raw.split('(').next().unwrap_or(raw).trim();
    let name = head.rsplit(' ').next().filter(|n| !n.is_empty()).unwrap_or(raw);
    sanitize(name)
}

fn jit_name(map: &[(u64, u64, Arc<str>)], addr: u64) -> Option<Arc<str>> {
    let i = map.partition_point(|e| e.0 <= addr).checked_sub(1)?;
    let (start, end, name) = &map[i];
    (addr >= *start && addr < *end).then(|| name.clone())
}

fn is_jvm(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.file_name().is_some_and(|n| n == "java"))
        .unwrap_or(false)
}

/// `jcmd PID Compiler.perfmap`, from the JVM's own JDK when there is one
/// next to its `java`, else from PATH; bounded to 20 s.
fn ask_jvm_perf_map(pid: u32) -> bool {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let jcmd = exe
        .as_deref()
        .and_then(Path::parent)
        .map(|d| d.join("jcmd"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "jcmd".into());
    let child = Command::new(jcmd)
        .arg(pid.to_string())
        .arg("Compiler.perfmap")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success() && Path::new(&format!("/tmp/perf-{pid}.map")).exists(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe_for_folded_output() {
        assert_eq!(&*sanitize("a;b\nc"), "a:b c");
        assert_eq!(&*sanitize("std::vector<int>::push_back"), "std::vector<int>::push_back");
    }

    #[test]
    fn perf_maps() {
        let m = parse_perf_map(
            "0x00007f6730ed92c0 0x0000000000000150 long JavaServer.fib(int)\n\
             7f6730ed9500 20 Interpreter\n\
             garbage\n\
             0x00007f6730ed9000 0x10 void JavaServer$Work.handle(com.sun.net.httpserver.HttpExchange)\n",
        );
        assert_eq!(m.len(), 3);
        assert_eq!(jit_name(&m, 0x7f6730ed92c8).as_deref(), Some("JavaServer.fib"));
        assert_eq!(jit_name(&m, 0x7f6730ed9008).as_deref(), Some("JavaServer$Work.handle"));
        assert_eq!(jit_name(&m, 0x7f6730ed9510).as_deref(), Some("Interpreter"));
        assert_eq!(jit_name(&m, 0x7f6730ed9520), None);
        assert_eq!(jit_name(&m, 1), None);
    }

    #[test]
    fn own_process_symbols() {
        // Our own test binary has symbols: the address of this function resolves to its name.
        let mut s = Symbolizer::new();
        let addr = own_process_symbols as fn() as usize as u64;
        let names = s.user(std::process::id(), &[addr]);
        assert!(names[0].contains("own_process_symbols"), "{names:?}");
        assert!(!s.refresh_perf_map(std::process::id()));
    }
}
