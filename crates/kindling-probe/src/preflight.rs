//! Start-up checks: everything the BPF programs need, each failure a
//! one-line reason that names what is missing.

use std::ffi::CString;
use std::fs;
use std::path::Path;
use thiserror::Error;

/// The oldest kernel the programs are written for (BPF ring buffer, tp_btf).
pub const MIN_KERNEL: (u32, u32) = (5, 8);
pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PreflightError {
    #[error("kindling needs root, or the CAP_BPF and CAP_PERFMON capabilities (this process has neither)")]
    Privileges,
    #[error("the kernel exposes no BTF at {BTF_PATH}: it needs CONFIG_DEBUG_INFO_BTF=y for CO-RE BPF")]
    NoBtf,
    #[error("kernel {release} is older than {}.{}, the minimum (BPF ring buffer and BTF tracepoints)", MIN_KERNEL.0, MIN_KERNEL.1)]
    KernelTooOld { release: String },
    #[error("cannot read the kernel release: {0}")]
    Uname(String),
    #[error("tracefs is not mounted and mounting it at {TRACEFS} failed: {0}")]
    Tracefs(String),
    #[error("tracepoint {0} is missing (is the kernel built with CONFIG_FTRACE_SYSCALLS?)")]
    MissingTracepoint(String),
}

/// What the checks found out about the running kernel.
#[derive(Clone, Debug)]
pub struct KernelInfo {
    pub release: String,
    pub version: (u32, u32, u32),
    /// Where tracepoint definitions live (tracefs root).
    pub tracefs: String,
}

/// The checks every module needs, in order; the first failure is the answer.
pub fn check_base() -> Result<KernelInfo, PreflightError> {
    check_privileges()?;
    if !Path::new(BTF_PATH).exists() {
        return Err(PreflightError::NoBtf);
    }
    let release = kernel_release()?;
    let version = parse_version(&release);
    if (version.0, version.1) < MIN_KERNEL {
        return Err(PreflightError::KernelTooOld { release });
    }
    let tracefs = ensure_tracefs()?;
    raise_memlock();
    Ok(KernelInfo { release, version, tracefs })
}

/// Every tracepoint a module attaches to (`group/name`) exists.
pub fn check_tracepoints(kernel: &KernelInfo, required: &[&str]) -> Result<(), PreflightError> {
    for tp in required {
        let (group, name) = tp.split_once('/').unwrap_or(("", tp));
        if !Path::new(&format!("{}/events/{group}/{name}", kernel.tracefs)).exists() {
            return Err(PreflightError::MissingTracepoint(format!("{group}:{name}")));
        }
    }
    Ok(())
}

fn check_privileges() -> Result<(), PreflightError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    let caps = effective_caps().unwrap_or(0);
    let has = |c: u32| caps & (1u64 << c) != 0;
    if (has(CAP_BPF) && has(CAP_PERFMON)) || has(CAP_SYS_ADMIN) {
        Ok(())
    } else {
        Err(PreflightError::Privileges)
    }
}

fn effective_caps() -> Option<u64> {
    let s = fs::read_to_string("/proc/self/status").ok()?;
    let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

pub fn kernel_release() -> Result<String, PreflightError> {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .map_err(|e| PreflightError::Uname(e.to_string()))
}

/// "6.1.0-27-amd64" -> (6, 1, 0)
pub fn parse_version(release: &str) -> (u32, u32, u32) {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// libbpf attaches tracepoints by name through tracefs; mount it if nobody has.
pub fn ensure_tracefs() -> Result<String, PreflightError> {
    for root in [TRACEFS, DEBUGFS_TRACING] {
        if Path::new(&format!("{root}/events")).is_dir() {
            return Ok(root.to_string());
        }
    }
    let target = CString::new(TRACEFS).expect("no NUL in constant");
    let fstype = CString::new("tracefs").expect("no NUL in constant");
    let source = CString::new("nodev").expect("no NUL in constant");
    // SAFETY: all pointers are valid NUL-terminated strings for the call's duration.
    let rc = unsafe {
        libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null())
    };
    if rc != 0 {
        return Err(PreflightError::Tracefs(std::io::Error::last_os_error().to_string()));
    }
    tracing::info!("mounted tracefs at {TRACEFS}");
    Ok(TRACEFS.to_string())
}

/// Kernels >= 5.11 charge BPF memory to the cgroup and ignore RLIMIT_MEMLOCK;
/// older ones need it raised. Failing to raise it is not fatal here: if the
/// limit matters, the load itself fails with a clear error.
fn raise_memlock() {
    let lim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: `lim` is a valid rlimit for the duration of the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK; relying on memcg accounting");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("6.1.0-27-amd64"), (6, 1, 0));
        assert_eq!(parse_version("5.8.18"), (5, 8, 18));
        assert_eq!(parse_version("6.18.44-fc-v669"), (6, 18, 44));
        assert_eq!(parse_version("garbage"), (0, 0, 0));
    }

    #[test]
    fn errors_are_one_line() {
        for e in [
            PreflightError::Privileges,
            PreflightError::NoBtf,
            PreflightError::KernelTooOld { release: "4.19.0".into() },
            PreflightError::Tracefs("Operation not permitted".into()),
            PreflightError::MissingTracepoint("syscalls:sys_enter_read".into()),
        ] {
            let s = e.to_string();
            assert!(!s.contains('\n') && !s.is_empty(), "{s}");
        }
    }
}
