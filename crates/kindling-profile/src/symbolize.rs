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
}

impl Default for Symbolizer {
    fn default() -> Self {
        Symbolizer::new()
    }
}

impl Symbolizer {
    pub fn new() -> Symbolizer {
        // Names only: no file/line lookups, no inlined functions (faster, smaller).
        let blaze = Blaze::builder().enable_code_info(false).enable_inlined_fns(false).build();
        Symbolizer { blaze, user: HashMap::new(), kernel: HashMap::new(), perf_maps_asked: HashMap::new() }
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
            let src = Source::Process(Process::new(pid.into()));
            let names = resolve(&self.blaze, &src, &missing);
            for (a, n) in missing.iter().zip(names) {
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
        if !ok {
            tracing::debug!("jcmd {pid} Compiler.perfmap failed: Java frames stay unnamed");
        }
        ok
    }
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
    fn own_process_symbols() {
        // Our own test binary has symbols: the address of this function resolves to its name.
        let mut s = Symbolizer::new();
        let addr = own_process_symbols as fn() as usize as u64;
        let names = s.user(std::process::id(), &[addr]);
        assert!(names[0].contains("own_process_symbols"), "{names:?}");
        assert!(!s.refresh_perf_map(std::process::id()));
    }
}
