//! Recovering the user frames a frame-pointer walk misses.
//!
//! The kernel walks user stacks by frame pointer. Code built without frame
//! pointers — libc's syscall wrappers, `pthread_mutex_lock`, most of a
//! distribution's libraries — breaks that chain right where a blocked thread
//! is: the walk gives the syscall's instruction, then skips to the caller of
//! the first function that keeps a frame pointer, losing everything between.
//!
//! For threads that block, the sched module also sends the registers and the
//! top 512 bytes of the user stack. Here those are unwound with the
//! binaries' call-frame information (`.eh_frame`, via gimli) one frame at a
//! time until a return address matches one the frame-pointer walk found; the
//! rest of that walk is then kept as is. When anything is missing (no unwind
//! table, a frame bigger than the copied stack), the frame-pointer stack stays.
//!
//! x86-64 only. Reads /proc/PID/maps and the mapped files, so it runs live
//! (not in replay); everything is cached and bounded.

use gimli::{BaseAddresses, CfaRule, EhFrame, EhFrameHdr, EndianSlice, LittleEndian, RegisterRule, UnwindContext, UnwindSection, X86_64};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frames recovered at most above the leaf before giving up.
const MAX_STEPS: usize = 8;
const MAX_FILES: usize = 256;
/// Unwind tables kept in memory at most (bytes, all files together).
const MAX_TABLE_BYTES: usize = 64 << 20;
const MAX_PROCS: usize = 256;

/// A thread's registers and stack bytes at the moment it blocked.
pub struct StackTop<'a> {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    pub data: &'a [u8],
}

impl StackTop<'_> {
    fn read(&self, addr: u64) -> Option<u64> {
        let off = addr.checked_sub(self.sp)? as usize;
        let b = self.data.get(off..off.checked_add(8)?)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }
}

struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    path: String,
}

/// What unwinding needs from one ELF file.
struct ElfUnwind {
    eh_frame: Vec<u8>,
    eh_frame_addr: u64,
    eh_frame_hdr: Vec<u8>,
    eh_frame_hdr_addr: u64,
    text_addr: u64,
    /// PT_LOAD segments: (file offset, vaddr, file size).
    loads: Vec<(u64, u64, u64)>,
}

impl ElfUnwind {
    /// File offset -> the address the unwind tables use.
    fn vaddr(&self, file_off: u64) -> Option<u64> {
        self.loads.iter().find(|(o, _, sz)| file_off >= *o && file_off < o + sz).map(|(o, v, _)| file_off - o + v)
    }
}

#[derive(Default)]
pub struct Unwinder {
    maps: HashMap<u32, (Instant, Arc<Vec<Mapping>>)>,
    files: HashMap<String, Option<Arc<ElfUnwind>>>,
    table_bytes: usize,
    /// Stacks the unwind tables extended.
    pub repaired: u64,
    /// Stacks left as the frame-pointer walk gave them.
    pub kept: u64,
}

impl Unwinder {
    pub fn new() -> Unwinder {
        Unwinder::default()
    }

    /// The user stack of `pid` with the frames between the leaf and the
    /// frame-pointer walk's first return address recovered, leaf first; None
    /// when the frame-pointer stack `fp` (leaf first) cannot be improved.
    pub fn repair(&mut self, pid: u32, fp: &[u64], top: &StackTop<'_>) -> Option<Vec<u64>> {
        let r = self.walk(pid, fp, top);
        match &r {
            Some(_) => self.repaired += 1,
            None => self.kept += 1,
        }
        r
    }

    fn walk(&mut self, pid: u32, fp: &[u64], top: &StackTop<'_>) -> Option<Vec<u64>> {
        if fp.first() != Some(&top.ip) {
            return None;
        }
        let (mut ip, mut sp, mut bp) = (top.ip, top.sp, top.bp);
        let mut out = vec![ip];
        for step in 0..MAX_STEPS {
            // Return addresses point after their call: look up the call itself.
            let lookup = if step == 0 { ip } else { ip - 1 };
            let (cfa_reg, cfa_off, ra_off, bp_off) = self.rule(pid, lookup)?;
            let base = match cfa_reg {
                r if r == X86_64::RSP => sp,
                r if r == X86_64::RBP => bp,
                _ => return None,
            };
            let cfa = base.checked_add_signed(cfa_off)?;
            let ra = top.read(cfa.checked_add_signed(ra_off)?)?;
            if let Some(off) = bp_off {
                bp = top.read(cfa.checked_add_signed(off)?)?;
            }
            if ra == 0 {
                return None;
            }
            if let Some(k) = fp.iter().skip(1).position(|r| *r == ra) {
                if out.len() == 1 {
                    return None; // nothing was missing
                }
                out.extend_from_slice(&fp[1 + k..]);
                return Some(out);
            }
            out.push(ra);
            (ip, sp) = (ra, cfa);
        }
        None
    }

    /// The CFA rule (register, offset), where the return address is (offset
    /// from the CFA) and where the caller's RBP was saved, for an address.
    fn rule(&mut self, pid: u32, addr: u64) -> Option<(gimli::Register, i64, i64, Option<i64>)> {
        let (file_off, path) = self.locate(pid, addr)?;
        let elf = self.elf(pid, &path)?;
        let vaddr = elf.vaddr(file_off)?;
        let eh = EhFrame::new(&elf.eh_frame, LittleEndian);
        let bases = BaseAddresses::default()
            .set_eh_frame(elf.eh_frame_addr)
            .set_eh_frame_hdr(elf.eh_frame_hdr_addr)
            .set_text(elf.text_addr);
        let mut ctx = UnwindContext::new();
        let row = if elf.eh_frame_hdr.is_empty() {
            eh.unwind_info_for_address(&bases, &mut ctx, vaddr, EhFrame::cie_from_offset).ok()?
        } else {
            let hdr = EhFrameHdr::new(&elf.eh_frame_hdr, LittleEndian).parse(&bases, 8).ok()?;
            let table = hdr.table()?;
            table.unwind_info_for_address(&eh, &bases, &mut ctx, vaddr, EhFrame::cie_from_offset).ok()?
        };
        let (reg, off) = match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } => (*register, *offset),
            CfaRule::Expression(_) => return None,
        };
        let ra = match row.register(X86_64::RA) {
            Some(RegisterRule::Offset(n)) => n,
            _ => return None,
        };
        let bp = match row.register(X86_64::RBP) {
            Some(RegisterRule::Offset(n)) => Some(n),
            _ => None,
        };
        Some((reg, off, ra, bp))
    }

    /// Which file maps `addr` in `pid`, and at what file offset.
    fn locate(&mut self, pid: u32, addr: u64) -> Option<(u64, String)> {
        let find = |maps: &[Mapping]| {
            maps.iter().find(|m| addr >= m.start && addr < m.end).map(|m| (addr - m.start + m.offset, m.path.clone()))
        };
        if let Some((_, maps)) = self.maps.get(&pid) {
            if let Some(hit) = find(maps) {
                return Some(hit);
            }
        }
        // Unknown address: the process may have mapped something since (at most once a second).
        if self.maps.get(&pid).is_some_and(|(t, _)| t.elapsed() < Duration::from_secs(1)) {
            return None;
        }
        if self.maps.len() >= MAX_PROCS {
            self.maps.clear();
        }
        let maps = Arc::new(read_maps(pid));
        let hit = find(&maps);
        self.maps.insert(pid, (Instant::now(), maps));
        hit
    }

    fn elf(&mut self, pid: u32, path: &str) -> Option<Arc<ElfUnwind>> {
        if let Some(e) = self.files.get(path) {
            return e.clone();
        }
        if self.files.len() >= MAX_FILES || self.table_bytes >= MAX_TABLE_BYTES {
            self.files.clear();
            self.table_bytes = 0;
        }
        // Through the process's root, so containers' files are the right ones.
        let data = std::fs::read(format!("/proc/{pid}/root{path}")).or_else(|_| std::fs::read(path)).ok();
        let e = data.as_deref().and_then(parse_elf).map(Arc::new);
        self.table_bytes += e.as_ref().map_or(0, |e| e.eh_frame.len() + e.eh_frame_hdr.len());
        self.files.insert(path.to_string(), e.clone());
        e
    }
}

fn read_maps(pid: u32) -> Vec<Mapping> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    text.lines().filter_map(parse_maps_line).collect()
}

/// `start-end perms offset dev inode path`, executable file mappings only.
fn parse_maps_line(line: &str) -> Option<Mapping> {
    let mut f = line.split_whitespace();
    let (range, perms, offset) = (f.next()?, f.next()?, f.next()?);
    let (_dev, _inode) = (f.next()?, f.next()?);
    let path = f.collect::<Vec<_>>().join(" ");
    if !perms.contains('x') || !path.starts_with('/') {
        return None;
    }
    let (s, e) = range.split_once('-')?;
    Some(Mapping {
        start: u64::from_str_radix(s, 16).ok()?,
        end: u64::from_str_radix(e, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        path,
    })
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// The few parts of a little-endian ELF64 file unwinding needs: PT_LOAD
/// segments and the .eh_frame, .eh_frame_hdr and .text sections.
fn parse_elf(b: &[u8]) -> Option<ElfUnwind> {
    if b.get(..4)? != b"\x7fELF" || *b.get(4)? != 2 || *b.get(5)? != 1 {
        return None;
    }
    let phoff = u64_at(b, 0x20)? as usize;
    let shoff = u64_at(b, 0x28)? as usize;
    let phentsize = u16_at(b, 0x36)? as usize;
    let phnum = u16_at(b, 0x38)? as usize;
    let shentsize = u16_at(b, 0x3a)? as usize;
    let shnum = u16_at(b, 0x3c)? as usize;
    let shstrndx = u16_at(b, 0x3e)? as usize;
    let mut loads = Vec::new();
    for i in 0..phnum.min(256) {
        let p = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(b, p)? == 1 {
            loads.push((u64_at(b, p + 8)?, u64_at(b, p + 16)?, u64_at(b, p + 32)?));
        }
    }
    let sh = |i: usize| -> Option<(u32, u64, u64, u64)> {
        let s = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((u32_at(b, s)?, u64_at(b, s + 16)?, u64_at(b, s + 24)?, u64_at(b, s + 32)?))
    };
    let (_, _, stroff, strsize) = sh(shstrndx)?;
    let name = |n: u32| -> Option<&[u8]> {
        let start = (stroff as usize).checked_add(n as usize)?;
        let tab = b.get(start..(stroff as usize).checked_add(strsize as usize)?)?;
        Some(&tab[..tab.iter().position(|&c| c == 0)?])
    };
    let mut out = ElfUnwind {
        eh_frame: Vec::new(),
        eh_frame_addr: 0,
        eh_frame_hdr: Vec::new(),
        eh_frame_hdr_addr: 0,
        text_addr: 0,
        loads,
    };
    for i in 0..shnum.min(4096) {
        let Some((n, addr, off, size)) = sh(i) else { continue };
        let data = || b.get(off as usize..(off as usize).checked_add(size as usize)?).map(<[u8]>::to_vec);
        match name(n) {
            Some(b".eh_frame") => {
                out.eh_frame = data()?;
                out.eh_frame_addr = addr;
            }
            Some(b".eh_frame_hdr") => {
                out.eh_frame_hdr = data().unwrap_or_default();
                out.eh_frame_hdr_addr = addr;
            }
            Some(b".text") => out.text_addr = addr,
            _ => {}
        }
    }
    (!out.eh_frame.is_empty()).then_some(out)
}

// Keep the reader type in one place (gimli's generic parameter).
#[allow(dead_code)]
type Reader<'a> = EndianSlice<'a, LittleEndian>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines() {
        let m = parse_maps_line("7f1c2a000000-7f1c2a028000 r-xp 00028000 08:01 1234 /usr/lib/x86_64-linux-gnu/libc.so.6")
            .unwrap();
        assert_eq!((m.start, m.end, m.offset), (0x7f1c2a000000, 0x7f1c2a028000, 0x28000));
        assert_eq!(m.path, "/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert!(parse_maps_line("7f1c2a000000-7f1c2a028000 rw-p 00000000 00:00 0 [heap]").is_none());
        assert!(parse_maps_line("garbage").is_none());
    }

    #[test]
    fn our_own_binary_has_unwind_tables() {
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let e = parse_elf(&exe).expect("eh_frame in the test binary");
        assert!(!e.loads.is_empty());
        assert!(parse_elf(b"not an elf").is_none());
        assert!(parse_elf(&exe[..64]).is_none());
    }

    #[test]
    fn reads_stay_in_the_copied_window() {
        let data: Vec<u8> = (0..64u8).collect();
        let t = StackTop { ip: 1, sp: 1000, bp: 0, data: &data };
        assert_eq!(t.read(1000), Some(u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7])));
        assert_eq!(t.read(1056), Some(u64::from_le_bytes([56, 57, 58, 59, 60, 61, 62, 63])));
        assert_eq!(t.read(1057), None);
        assert_eq!(t.read(999), None);
    }
}
