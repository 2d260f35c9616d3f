//! Compiles the BPF programs with clang against the committed vmlinux.h
//! (CO-RE: one object for every kernel with BTF) and generates their Rust
//! skeletons: one object per module (kindling = sockets and processes, tcp,
//! sched), all sharing the wire header kindling.h. `bench_empty.bpf.c` has the same hooks with empty bodies: the
//! floor that `make bench` compares our programs against.

use libbpf_cargo::SkeletonBuilder;
use std::env;
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for name in ["kindling", "tcp", "sched", "bench_empty"] {
        let src = format!("src/bpf/{name}.bpf.c");
        let mut extra = vec!["-Isrc/bpf".to_string(), "-Wall".to_string()];
        if env::var_os("CARGO_FEATURE_BROKEN_PROGRAM").is_some() && name == "kindling" {
            extra.push("-DKD_BROKEN_PROGRAM".to_string());
        }
        SkeletonBuilder::new()
            .source(&src)
            .clang_args(extra)
            .build_and_generate(out.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {src} failed: {e:#}"));
        println!("cargo:rerun-if-changed={src}");
    }
    println!("cargo:rerun-if-changed=src/bpf/kindling.h");
    println!("cargo:rerun-if-changed=src/bpf/vmlinux.h");
}
