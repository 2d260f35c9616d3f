//! Start-up checks: clear one-line errors with the right exit codes, and
//! tracefs mounted by the agent itself when nobody mounted it.

use crate::util::*;
use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(kindling()).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn without_privileges_exit_1_with_one_line() {
    require_root();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
        .arg(kindling())
        .args(["capture", "--duration", "1s"])
        .output()
        .expect("setpriv (util-linux)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("needs root") && err.contains("CAP_BPF"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [&["capture", "--duration", "5x"][..], &["capture", "--bogus"], &["nonsense"], &["capture", "--port", "70000"]] {
        let (code, err) = run(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("error:"), "{args:?}: {err}");
    }
    let (code, _) = run(&["--help"]);
    assert_eq!(code, 0);
}

#[test]
fn replay_of_a_missing_or_bad_file_is_one_line() {
    let (code, err) = run(&["replay", "/nonexistent/x.kcap"]);
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("cannot open capture file"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.kcap");
    std::fs::write(&p, b"not a capture").unwrap();
    let (code, err) = run(&["replay", p.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("not a Kindling capture file"), "{err}");
}

/// tracefs is not mounted at boot on some kernels: capture mounts it itself.
#[test]
fn tracefs_is_mounted_when_missing() {
    require_root();
    let mounted = || std::path::Path::new("/sys/kernel/tracing/events").is_dir();
    if mounted() {
        let st = Command::new("umount").arg("/sys/kernel/tracing").status().unwrap();
        assert!(st.success(), "could not unmount tracefs to set up the test");
    }
    assert!(!mounted(), "tracefs still mounted (debugfs?)");
    let (code, err) = run(&["capture", "--duration", "200ms", "--port", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(mounted(), "kindling did not mount tracefs");
}
