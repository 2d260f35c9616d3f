//! Compile-time proof that the pure decoder (`kindling_events::wire`) reads
//! the same layout the C header defines: the offsets below come from the
//! Rust types libbpf-cargo generates from `kindling.h`'s BTF. Change one side
//! without the other and this crate does not build.

use crate::skel::types;
use kindling_events::wire::{exec, exit, fork, header, rename, sock};
use std::mem::{offset_of, size_of};

macro_rules! same {
    ($ty:ident . $field:ident == $konst:expr) => {
        const _: () = assert!(offset_of!(types::$ty, $field) == $konst);
    };
}

const _: () = assert!(size_of::<types::kd_header>() == header::SIZE);
same!(kd_header.ts_ns == header::TS_NS);
same!(kd_header.kind == header::KIND);
same!(kd_header.tgid == header::TGID);
same!(kd_header.tid == header::TID);
same!(kd_header.cpu == header::CPU);
same!(kd_header.comm == header::COMM);

const _: () = assert!(size_of::<types::kd_sock_event>() == sock::SIZE);
same!(kd_sock_event.latency_ns == sock::LATENCY_NS);
same!(kd_sock_event.ret == sock::RET);
same!(kd_sock_event.sock_id == sock::SOCK_ID);
same!(kd_sock_event.fd == sock::FD);
same!(kd_sock_event.syscall == sock::SYSCALL);
same!(kd_sock_event.family == sock::FAMILY);
same!(kd_sock_event.proto == sock::PROTO);
same!(kd_sock_event.saddr == sock::SADDR);
same!(kd_sock_event.daddr == sock::DADDR);
same!(kd_sock_event.sport == sock::SPORT);
same!(kd_sock_event.dport == sock::DPORT);
same!(kd_sock_event.msg_index == sock::MSG_INDEX);
same!(kd_sock_event.bytes == sock::BYTES);
same!(kd_sock_event.payload_len == sock::PAYLOAD_LEN);
same!(kd_sock_event.payload == sock::SIZE);

const _: () = assert!(size_of::<types::kd_exec_event>() == exec::SIZE);
same!(kd_exec_event.ppid == exec::PPID);
same!(kd_exec_event.filename_len == exec::FILENAME_LEN);
same!(kd_exec_event.args_len == exec::ARGS_LEN);
same!(kd_exec_event.filename == exec::FILENAME);
same!(kd_exec_event.args == exec::ARGS);

const _: () = assert!(size_of::<types::kd_exit_event>() == exit::SIZE);
same!(kd_exit_event.exit_code == exit::EXIT_CODE);
same!(kd_exit_event.group_dead == exit::GROUP_DEAD);

const _: () = assert!(size_of::<types::kd_fork_event>() == fork::SIZE);
same!(kd_fork_event.child_tgid == fork::CHILD_TGID);
same!(kd_fork_event.child_tid == fork::CHILD_TID);

const _: () = assert!(size_of::<types::kd_rename_event>() == rename::SIZE);
same!(kd_rename_event.newcomm == rename::NEWCOMM);

/// The tcp module's record (`kd_tcp_event`, decoded by `kindling_events::tcp`).
mod tcp {
    use crate::tcp_skel::types;
    use kindling_events::tcp::layout;
    use std::mem::{offset_of, size_of};

    macro_rules! same {
        ($ty:ident . $field:ident == $konst:expr) => {
            const _: () = assert!(offset_of!(types::$ty, $field) == $konst);
        };
    }

    const _: () = assert!(size_of::<types::kd_tcp_event>() == layout::SIZE);
    same!(kd_tcp_event.sock_id == layout::SOCK_ID);
    same!(kd_tcp_event.saddr == layout::SADDR);
    same!(kd_tcp_event.daddr == layout::DADDR);
    same!(kd_tcp_event.sport == layout::SPORT);
    same!(kd_tcp_event.dport == layout::DPORT);
    same!(kd_tcp_event.family == layout::FAMILY);
    same!(kd_tcp_event.proto == layout::PROTO);
    same!(kd_tcp_event.state == layout::STATE);
    same!(kd_tcp_event.flags == layout::FLAGS);
    same!(kd_tcp_event.a == layout::A);
    same!(kd_tcp_event.b == layout::B);
    same!(kd_tcp_event.c == layout::C);
    same!(kd_tcp_event.d == layout::D);
    same!(kd_tcp_event.e == layout::E);
}
