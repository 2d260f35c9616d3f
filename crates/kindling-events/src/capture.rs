//! The capture file (`kindling capture --record FILE`, `kindling replay FILE`).
//!
//! Layout, version 1 (documented in docs/CAPTURE_FORMAT.md):
//!
//! ```text
//! KINDLING-CAPTURE\n                 magic line
//! {"format_version":1,...}\n         one JSON line: CaptureHeader
//! [u32 little-endian length][MessagePack map of Event]   repeated to EOF
//! ```
//!
//! Events are stored decoded (wall-clock times, payload secrets masked on the
//! way in by `CaptureWriter::write`) and as
//! MessagePack maps with field names, so readers ignore fields they do not know
//! and new fields can be added without breaking old recordings.

use crate::model::Event;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use thiserror::Error;

pub const MAGIC: &[u8] = b"KINDLING-CAPTURE\n";
pub const FORMAT_VERSION: u32 = 1;
/// No single event comes near this; a larger frame means a corrupt file.
const MAX_FRAME: usize = 16 << 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaptureHeader {
    pub format_version: u32,
    /// The kernel wire version the events were decoded from (informative).
    pub wire_version: u32,
    pub created_unix_ns: u64,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub kernel: String,
    #[serde(default)]
    pub snaplen: u32,
    /// The command line that made the recording.
    #[serde(default)]
    pub command: String,
}

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("cannot open capture file {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("not a Kindling capture file (bad magic line)")]
    BadMagic,
    #[error("capture header is not valid: {0}")]
    BadHeader(String),
    #[error("capture format version {found} is not supported (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion { found: u32 },
    #[error("capture file is truncated inside event #{index}")]
    Truncated { index: u64 },
    #[error("event #{index} is corrupt: {reason}")]
    Corrupt { index: u64, reason: String },
    #[error("i/o error on capture file: {0}")]
    Io(#[from] io::Error),
}

pub struct CaptureWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    count: u64,
}

impl CaptureWriter<BufWriter<File>> {
    pub fn create(path: &Path, header: &CaptureHeader) -> Result<Self, CaptureError> {
        let f = File::create(path)
            .map_err(|source| CaptureError::Open { path: path.display().to_string(), source })?;
        CaptureWriter::new(BufWriter::with_capacity(1 << 20, f), header)
    }
}

impl<W: Write> CaptureWriter<W> {
    pub fn new(mut out: W, header: &CaptureHeader) -> Result<Self, CaptureError> {
        out.write_all(MAGIC)?;
        let json = serde_json::to_vec(header).map_err(|e| CaptureError::BadHeader(e.to_string()))?;
        out.write_all(&json)?;
        out.write_all(b"\n")?;
        Ok(CaptureWriter { out, buf: Vec::with_capacity(1024), count: 0 })
    }

    /// Appends one event; secrets in its payload head are masked first, so a
    /// recording never holds them.
    pub fn write(&mut self, ev: &Event) -> Result<(), CaptureError> {
        self.buf.clear();
        let masked;
        let ev = match crate::redact::redacted(ev) {
            Some(m) => {
                masked = m;
                &masked
            }
            None => ev,
        };
        rmp_serde::encode::write_named(&mut self.buf, ev)
            .map_err(|e| CaptureError::Corrupt { index: self.count, reason: e.to_string() })?;
        self.out.write_all(&(self.buf.len() as u32).to_le_bytes())?;
        self.out.write_all(&self.buf)?;
        self.count += 1;
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn finish(mut self) -> Result<W, CaptureError> {
        self.out.flush()?;
        Ok(self.out)
    }
}

pub struct CaptureReader<R: BufRead> {
    input: R,
    header: CaptureHeader,
    index: u64,
    buf: Vec<u8>,
    done: bool,
}

impl CaptureReader<BufReader<File>> {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let f = File::open(path)
            .map_err(|source| CaptureError::Open { path: path.display().to_string(), source })?;
        CaptureReader::new(BufReader::with_capacity(1 << 20, f))
    }
}

impl<R: BufRead> CaptureReader<R> {
    pub fn new(mut input: R) -> Result<Self, CaptureError> {
        let mut magic = vec![0u8; MAGIC.len()];
        input.read_exact(&mut magic).map_err(|_| CaptureError::BadMagic)?;
        if magic != MAGIC {
            return Err(CaptureError::BadMagic);
        }
        let mut line = Vec::new();
        // Bounded: a header line longer than 1 MiB is not ours.
        input.by_ref().take(1 << 20).read_until(b'\n', &mut line)?;
        if line.last() != Some(&b'\n') {
            return Err(CaptureError::BadHeader("missing end of header line".into()));
        }
        let header: CaptureHeader =
            serde_json::from_slice(&line).map_err(|e| CaptureError::BadHeader(e.to_string()))?;
        if header.format_version != FORMAT_VERSION {
            return Err(CaptureError::UnsupportedVersion { found: header.format_version });
        }
        Ok(CaptureReader { input, header, index: 0, buf: Vec::new(), done: false })
    }

    pub fn header(&self) -> &CaptureHeader {
        &self.header
    }

    fn next_event(&mut self) -> Result<Option<Event>, CaptureError> {
        let mut len = [0u8; 4];
        match read_full(&mut self.input, &mut len)? {
            0 => return Ok(None),
            4 => {}
            _ => return Err(CaptureError::Truncated { index: self.index }),
        }
        let n = u32::from_le_bytes(len) as usize;
        if n > MAX_FRAME {
            return Err(CaptureError::Corrupt {
                index: self.index,
                reason: format!("frame of {n} bytes is larger than any event"),
            });
        }
        self.buf.resize(n, 0);
        if read_full(&mut self.input, &mut self.buf)? != n {
            return Err(CaptureError::Truncated { index: self.index });
        }
        let ev = rmp_serde::from_slice(&self.buf)
            .map_err(|e| CaptureError::Corrupt { index: self.index, reason: e.to_string() })?;
        self.index += 1;
        Ok(Some(ev))
    }
}

/// Reads until `buf` is full or EOF; returns how many bytes were read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl<R: BufRead> Iterator for CaptureReader<R> {
    type Item = Result<Event, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_event() {
            Ok(Some(ev)) => Some(Ok(ev)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use proptest::prelude::*;

    fn header() -> CaptureHeader {
        CaptureHeader {
            format_version: FORMAT_VERSION,
            wire_version: 1,
            created_unix_ns: 1,
            hostname: "h".into(),
            kernel: "k".into(),
            snaplen: 512,
            command: "test".into(),
        }
    }

    fn events() -> Vec<Event> {
        vec![
            Event {
                ts_ns: 10,
                pid: 1,
                tid: 2,
                cpu: 0,
                comm: Comm::from("redis-server"),
                body: EventBody::Socket(SocketEvent {
                    op: SocketOp::Send,
                    syscall: Syscall::Writev,
                    fd: 9,
                    sock_id: 77,
                    proto: L4Proto::Udp,
                    src: "[::1]:6379".parse().unwrap(),
                    dst: "[::1]:5000".parse().unwrap(),
                    bytes: 5,
                    latency_ns: 3,
                    ret: 5,
                    msg_index: 0,
                    payload: b"+OK\r\n".to_vec(),
                    role: Role::Unknown,
                }),
            },
            Event {
                ts_ns: 11,
                pid: 1,
                tid: 1,
                cpu: 1,
                comm: Comm::from("x"),
                body: EventBody::ProcessSnapshot(ProcessInfo {
                    ppid: 0,
                    exe: "/bin/x".into(),
                    cmdline: vec!["x".into(), "-y".into()],
                    cgroup: "0::/system.slice/x.service".into(),
                }),
            },
        ]
    }

    #[test]
    fn write_then_read_gives_the_same_events() {
        let mut w = CaptureWriter::new(Vec::new(), &header()).unwrap();
        for e in events() {
            w.write(&e).unwrap();
        }
        let bytes = w.finish().unwrap();
        let r = CaptureReader::new(&bytes[..]).unwrap();
        assert_eq!(r.header(), &header());
        let back: Vec<Event> = r.map(|e| e.unwrap()).collect();
        assert_eq!(back, events());
    }

    #[test]
    fn recordings_never_hold_secrets() {
        let mut ev = events().remove(0);
        if let EventBody::Socket(s) = &mut ev.body {
            s.payload = b"GET / HTTP/1.1\r\nAuthorization: Bearer s3cr3t\r\n\r\n".to_vec();
        }
        let mut w = CaptureWriter::new(Vec::new(), &header()).unwrap();
        w.write(&ev).unwrap();
        let bytes = w.finish().unwrap();
        assert!(!bytes.windows(6).any(|x| x == b"s3cr3t"), "the secret reached the file");
        let back: Vec<Event> = CaptureReader::new(&bytes[..]).unwrap().map(|e| e.unwrap()).collect();
        let p = &back[0].as_socket().unwrap().payload;
        assert_eq!(p, b"GET / HTTP/1.1\r\nAuthorization: *************\r\n\r\n");
    }

    #[test]
    fn truncation_and_bad_magic_are_clear_errors() {
        let mut w = CaptureWriter::new(Vec::new(), &header()).unwrap();
        for e in events() {
            w.write(&e).unwrap();
        }
        let bytes = w.finish().unwrap();
        let cut = &bytes[..bytes.len() - 3];
        let results: Vec<_> = CaptureReader::new(cut).unwrap().collect();
        assert!(matches!(results.last(), Some(Err(CaptureError::Truncated { index: 1 }))));
        assert!(matches!(CaptureReader::new(&b"GARBAGE"[..]), Err(CaptureError::BadMagic)));
        let mut other = MAGIC.to_vec();
        other.extend_from_slice(b"{\"format_version\":99,\"wire_version\":1,\"created_unix_ns\":0}\n");
        assert!(matches!(
            CaptureReader::new(&other[..]),
            Err(CaptureError::UnsupportedVersion { found: 99 })
        ));
    }

    proptest! {
        /// Arbitrary bytes after a valid header never panic the reader.
        #[test]
        fn reader_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut bytes = CaptureWriter::new(Vec::new(), &header()).unwrap().finish().unwrap();
            bytes.extend_from_slice(&tail);
            if let Ok(r) = CaptureReader::new(&bytes[..]) {
                for _ in r {}
            }
        }
    }
}
