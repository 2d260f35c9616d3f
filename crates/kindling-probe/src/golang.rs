//! What goroutine following needs from a Go executable: where the runtime's
//! scheduling functions are (file offsets for uprobes), where `runtime.g`
//! keeps the goroutine id (DWARF), and the names of the wait reasons
//! (`runtime.waitReasonStrings`, which changes between Go versions).
//!
//! Only executables built by Go >= 1.17 for amd64 qualify: the probes read
//! arguments and the current g from registers (the register ABI). Anything
//! else is [`GoError`]: the process is simply not followed at goroutine level.

use object::{Object, ObjectSection, ObjectSymbol};
use std::borrow::Cow;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum GoError {
    #[error("not a Go executable")]
    NotGo,
    #[error("reading {0}: {1}")]
    Io(String, std::io::Error),
    #[error("bad ELF: {0}")]
    Elf(String),
    #[error("Go {0} is not supported (goroutines need Go >= 1.17 on amd64)")]
    Unsupported(String),
    #[error("no symbol {0} (stripped?)")]
    NoSymbol(&'static str),
    #[error("no DWARF for runtime.g.goid (built with -w?)")]
    NoGoid,
}

/// The runtime parameters of one Go executable.
#[derive(Clone, Debug, PartialEq)]
pub struct GoRuntime {
    /// `go1.19.8`, from `.go.buildinfo`.
    pub version: String,
    /// File offsets of `runtime.execute`, `runtime.gopark`, `runtime.goexit1`.
    pub execute: u64,
    pub gopark: u64,
    pub goexit1: Option<u64>,
    /// File offsets of where goroutines become runnable: `runtime.ready`,
    /// `runtime.injectglist` (needs `schedlink_offset`), `runtime.exitsyscall0`.
    pub ready: Option<u64>,
    pub injectglist: Option<u64>,
    pub exitsyscall0: Option<u64>,
    /// `internal/poll.runtime_pollWait`: the fd a netpoller wait is for.
    pub poll_wait: Option<u64>,
    /// `offsetof(runtime.pollDesc, fd)` (0: unknown).
    pub pd_fd_offset: u32,
    /// `offsetof(runtime.g, goid)`.
    pub goid_offset: u32,
    /// `offsetof(runtime.g, schedlink)` (0: unknown).
    pub schedlink_offset: u32,
    /// `runtime.waitReasonStrings`, or a Go 1.19 table when unreadable.
    pub wait_reasons: Vec<String>,
}

/// Executables larger than this are not read (memory is bounded).
const MAX_EXE_BYTES: u64 = 1 << 30;

/// Inspects the executable at `path` (e.g. /proc/PID/exe).
pub fn inspect(path: &Path) -> Result<GoRuntime, GoError> {
    let io = |e| GoError::Io(path.display().to_string(), e);
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_EXE_BYTES {
        return Err(GoError::Elf(format!("{len} bytes is too large")));
    }
    let data = std::fs::read(path).map_err(io)?;
    inspect_bytes(&data)
}

pub fn inspect_bytes(data: &[u8]) -> Result<GoRuntime, GoError> {
    let file = object::File::parse(data).map_err(|e| GoError::Elf(e.to_string()))?;
    if file.architecture() != object::Architecture::X86_64 {
        return Err(GoError::Unsupported(format!("on {:?}", file.architecture())));
    }
    let info = file.section_by_name(".go.buildinfo").ok_or(GoError::NotGo)?;
    let info = info.data().map_err(|e| GoError::Elf(e.to_string()))?;
    let version = build_version(&file, info).unwrap_or_default();
    if !version_ok(&version) {
        return Err(GoError::Unsupported(if version.is_empty() { "(unknown version)".into() } else { version }));
    }
    let sym = |name: &'static str| file.symbols().find(|s| s.name() == Ok(name));
    let offset = |name: &'static str| -> Result<u64, GoError> {
        let s = sym(name).ok_or(GoError::NoSymbol(name))?;
        file_offset(&file, s.address()).ok_or(GoError::NoSymbol(name))
    };
    let execute = offset("runtime.execute")?;
    let gopark = offset("runtime.gopark")?;
    let goexit1 = offset("runtime.goexit1").ok();
    let (ready, injectglist, exitsyscall0) =
        (offset("runtime.ready").ok(), offset("runtime.injectglist").ok(), offset("runtime.exitsyscall0").ok());
    let poll_wait = offset("internal/poll.runtime_pollWait").ok();
    let m = struct_members(&file, &[("runtime.g", &["goid", "schedlink"]), ("runtime.pollDesc", &["fd"])]);
    let goid_offset = m[0][0].ok_or(GoError::NoGoid)?;
    let schedlink_offset = m[0][1].unwrap_or(0);
    let pd_fd_offset = m[1][0].unwrap_or(0);
    let wait_reasons = sym("runtime.waitReasonStrings")
        .and_then(|s| wait_reasons(&file, s.address(), s.size()))
        .unwrap_or_else(|| kindling_events::sched::GO119_WAIT_REASONS.iter().map(|s| s.to_string()).collect());
    Ok(GoRuntime {
        version,
        execute,
        gopark,
        goexit1,
        ready,
        injectglist,
        exitsyscall0,
        poll_wait,
        pd_fd_offset,
        goid_offset,
        schedlink_offset,
        wait_reasons,
    })
}

/// Go >= 1.17 (register ABI); development builds are assumed recent.
fn version_ok(v: &str) -> bool {
    let Some(rest) = v.strip_prefix("go1.") else { return v.starts_with("devel") };
    let minor: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    minor.parse::<u32>().is_ok_and(|m| m >= 17)
}

/// The Go version in `.go.buildinfo`: inline since Go 1.18 (flag bit 2), a
/// pointer to a string header before.
fn build_version(file: &object::File<'_>, info: &[u8]) -> Option<String> {
    if info.len() < 32 || &info[..14] != b"\xff Go buildinf:" {
        return None;
    }
    let (ptr_size, flags) = (info[14] as usize, info[15]);
    if flags & 2 != 0 {
        let (len, n) = uvarint(&info[32..])?;
        let start = 32 + n;
        let bytes = info.get(start..start.checked_add(usize::try_from(len).ok()?)?)?;
        return String::from_utf8(bytes.to_vec()).ok();
    }
    if ptr_size != 8 {
        return None;
    }
    let hdr = u64::from_le_bytes(info.get(16..24)?.try_into().ok()?);
    read_go_string(file, hdr)
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().take(10).enumerate() {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Bytes at a virtual address, from the section holding them.
fn read_vaddr<'d>(file: &object::File<'d>, addr: u64, len: u64) -> Option<&'d [u8]> {
    file.sections().find_map(|s| {
        let end = s.address().checked_add(s.size())?;
        if addr < s.address() || addr.checked_add(len)? > end {
            return None;
        }
        let data = s.data().ok()?;
        let off = usize::try_from(addr - s.address()).ok()?;
        data.get(off..off.checked_add(usize::try_from(len).ok()?)?)
    })
}

/// A Go string header (ptr, len) at `addr`, and its bytes.
fn read_go_string(file: &object::File<'_>, addr: u64) -> Option<String> {
    let h = read_vaddr(file, addr, 16)?;
    let ptr = u64::from_le_bytes(h[..8].try_into().ok()?);
    let len = u64::from_le_bytes(h[8..16].try_into().ok()?);
    if len > 4096 {
        return None;
    }
    if len == 0 {
        return Some(String::new());
    }
    String::from_utf8(read_vaddr(file, ptr, len)?.to_vec()).ok()
}

/// `[N]string` at `addr`: pointers into .rodata, absolute in non-PIE
/// executables (PIE ones need relocations: None, the caller falls back).
fn wait_reasons(file: &object::File<'_>, addr: u64, size: u64) -> Option<Vec<String>> {
    if size == 0 || !size.is_multiple_of(16) || size > 256 * 16 {
        return None;
    }
    (0..size / 16).map(|i| read_go_string(file, addr + i * 16)).collect()
}

/// Where the bytes of virtual address `addr` are in the file (for uprobes).
fn file_offset(file: &object::File<'_>, addr: u64) -> Option<u64> {
    file.sections().find_map(|s| {
        let (off, size) = s.file_range()?;
        let delta = addr.checked_sub(s.address())?;
        (delta < size).then_some(off + delta)
    })
}

/// `DW_AT_data_member_location` of members of structures (by name), from
/// the top-level types of the binary's compile units.
type Members<'a> = &'a [(&'a str, &'a [&'a str])];

fn struct_members(file: &object::File<'_>, want: Members<'_>) -> Vec<Vec<Option<u32>>> {
    let mut out: Vec<Vec<Option<u32>>> = want.iter().map(|(_, names)| vec![None; names.len()]).collect();
    struct_members_into(file, want, &mut out);
    out
}

fn struct_members_into(file: &object::File<'_>, want: Members<'_>, out: &mut [Vec<Option<u32>>]) -> Option<()> {
    let mut found = vec![false; want.len()];
    let load = |id: gimli::SectionId| -> Result<Cow<'_, [u8]>, gimli::Error> {
        Ok(file.section_by_name(id.name()).and_then(|s| s.uncompressed_data().ok()).unwrap_or(Cow::Borrowed(&[])))
    };
    let sections = gimli::DwarfSections::load(load).ok()?;
    let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, gimli::LittleEndian));
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Ok(unit) = dwarf.unit(header) else { continue };
        let Ok(mut tree) = unit.entries_tree(None) else { continue };
        let Ok(root) = tree.root() else { continue };
        let mut children = root.children();
        while let Ok(Some(node)) = children.next() {
            let e = node.entry();
            if e.tag() != gimli::DW_TAG_structure_type {
                continue;
            }
            let Some(k) = (0..want.len()).find(|k| !found[*k] && has_name(&dwarf, &unit, e, want[*k].0)) else {
                continue;
            };
            found[k] = true;
            let names = want[k].1;
            let mut members = node.children();
            while let Ok(Some(m)) = members.next() {
                let m = m.entry();
                if m.tag() != gimli::DW_TAG_member {
                    continue;
                }
                for (i, name) in names.iter().enumerate() {
                    if has_name(&dwarf, &unit, m, name) {
                        let loc = m.attr_value(gimli::DW_AT_data_member_location);
                        out[k][i] = loc.and_then(|l| l.udata_value()).and_then(|v| u32::try_from(v).ok());
                    }
                }
            }
            if found.iter().all(|f| *f) {
                return Some(());
            }
        }
    }
    None
}

fn has_name<R: gimli::Reader>(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    e: &gimli::DebuggingInformationEntry<R>,
    want: &str,
) -> bool {
    let Some(v) = e.attr_value(gimli::DW_AT_name) else { return false };
    let Ok(s) = dwarf.attr_string(unit, v) else { return false };
    s.to_slice().is_ok_and(|b| &b[..] == want.as_bytes())
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(version_ok("go1.19.8"));
        assert!(version_ok("go1.17"));
        assert!(version_ok("go1.22rc1"));
        assert!(!version_ok("go1.16.15"));
        assert!(!version_ok("go1.9"));
        assert!(!version_ok(""));
        assert!(version_ok("devel go1.23-abc"));
    }

    #[test]
    fn varints() {
        assert_eq!(uvarint(&[8]), Some((8, 1)));
        assert_eq!(uvarint(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(uvarint(&[0x80]), None);
    }

    #[test]
    fn odd_files_are_errors_not_panics() {
        assert!(matches!(inspect_bytes(b""), Err(GoError::Elf(_))));
        assert!(matches!(inspect_bytes(&[0x7f, b'E', b'L', b'F', 2, 1, 1]), Err(GoError::Elf(_))));
        // This test binary is Rust: not Go.
        let me = std::env::current_exe().unwrap();
        assert!(matches!(inspect(&me), Err(GoError::NotGo)));
        assert!(matches!(inspect(Path::new("/nonexistent/x")), Err(GoError::Io(..))));
    }

    /// With Go installed, a freshly built program is inspected like the runtime does.
    #[test]
    fn a_real_go_binary() {
        let Ok(goroot) = std::process::Command::new("go").args(["env", "GOROOT"]).output() else { return };
        if !goroot.status.success() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("kd-golang-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("main.go"), "package main\nimport \"fmt\"\nfunc main() { fmt.Println(1) }\n").unwrap();
        let out = std::process::Command::new("go")
            .args(["build", "-o", "prog", "main.go"])
            .current_dir(&dir)
            .env("GO111MODULE", "off")
            .status()
            .unwrap();
        assert!(out.success());
        let rt = inspect(&dir.join("prog")).unwrap();
        assert!(rt.version.starts_with("go1."), "{rt:?}");
        assert!(rt.execute > 0 && rt.gopark > 0 && rt.goexit1.is_some());
        assert!(rt.goid_offset > 0 && rt.goid_offset < 1024);
        assert!(rt.schedlink_offset > 0 && rt.schedlink_offset < 1024 && rt.schedlink_offset != rt.goid_offset);
        assert!(rt.ready.is_some() && rt.injectglist.is_some() && rt.exitsyscall0.is_some());
        assert!(rt.poll_wait.is_some() && rt.pd_fd_offset > 0, "{rt:?}");
        assert!(rt.wait_reasons.iter().any(|r| r == "IO wait"));
        assert!(rt.wait_reasons.iter().any(|r| r == "semacquire"));
        // Stripped of DWARF: not followed.
        let out = std::process::Command::new("go")
            .args(["build", "-ldflags=-w", "-o", "prog-w", "main.go"])
            .current_dir(&dir)
            .env("GO111MODULE", "off")
            .status()
            .unwrap();
        assert!(out.success());
        assert!(matches!(inspect(&dir.join("prog-w")), Err(GoError::NoGoid)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
