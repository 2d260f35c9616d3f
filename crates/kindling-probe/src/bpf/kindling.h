/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The kernel -> user wire format of Kindling.
 *
 * Every record on the ring buffer starts with `struct kd_header`; `kind` says
 * which struct follows. All integers are little-endian (the host's), laid out
 * with natural alignment. IP addresses are raw network-order bytes (IPv4 in
 * the first 4 bytes); ports are host order.
 *
 * The Rust decoder (crates/kindling-events/src/wire.rs) reads these layouts by
 * offset; crates/kindling-probe checks at compile time that its offsets match
 * the types libbpf-cargo generates from this header, so the two cannot drift.
 * Bump KD_WIRE_VERSION on any layout change.
 */
#ifndef __KINDLING_H
#define __KINDLING_H

#define KD_WIRE_VERSION 1

#define KD_COMM_LEN 16
/* Largest payload head one event carries (the snaplen is configurable up to this). */
#define KD_MAX_PAYLOAD 4096
#define KD_EXEC_FILENAME_LEN 256
#define KD_EXEC_ARGS_LEN 512
/* At most this many messages of one sendmmsg/recvmmsg become events. */
#define KD_MAX_MMSG 8
/* At most this many iovec entries are walked to fill a payload head (the walk
 * stops once the head is full): with bpf_loop, and without it (older kernels). */
#define KD_MAX_IOV 256
#define KD_MAX_IOV_UNROLLED 8

enum kd_event_kind {
	KD_EV_SOCK = 1,         /* a socket syscall: kd_sock_event */
	KD_EV_CONNECT_DONE = 2, /* a non-blocking connect finished: kd_sock_event */
	KD_EV_EXEC = 3,         /* kd_exec_event */
	KD_EV_EXIT = 4,         /* a thread exited: kd_exit_event */
	KD_EV_FORK = 5,         /* a new process: kd_fork_event */
	KD_EV_RENAME = 6,       /* a thread renamed itself: kd_rename_event */
	/* 20-39: the tcp module (tcp.bpf.c, crates/kindling-events/src/tcp.rs), kd_tcp_event */
	KD_EV_TCP_RETRANSMIT = 20, /* a: segments */
	KD_EV_TCP_RESET = 21,      /* flags: 1 sent, 0 received */
	KD_EV_TCP_RTT = 22,        /* a: srtt_us, b: rttvar_us, c: snd_cwnd, d: total_retrans */
	KD_EV_TCP_DROP = 23,       /* a: skb drop reason; addresses from the packet */
	KD_EV_TCP_CONNECT = 24,    /* a: 0 or errno, c: SYN sent -> outcome ns */
	KD_EV_TCP_CLOSE = 25,      /* a: total_retrans, b: srtt_us, c: bytes_acked, d: bytes_received, e: lifetime ns */
	/* 40-59: the sched module (sched.bpf.c, crates/kindling-events/src/sched.rs) */
	KD_EV_SCHED_SLICE = 40,  /* a thread of interest ran again: kd_sched_slice */
	KD_EV_SCHED_SAMPLE = 41, /* an on-CPU sample of a thread of interest: kd_sched_sample */
	KD_EV_SCHED_STACK = 42,  /* a stack seen for the first time (this generation): kd_sched_stack */
	KD_EV_SCHED_FILE = 43,   /* the file a thread blocked on: kd_sched_file */
	KD_EV_SCHED_USTACK_TOP = 44, /* registers and top of the user stack of a blocked thread: kd_sched_ustack_top */
	KD_EV_SCHED_GO_RUN = 45,  /* a Go thread starts running a goroutine (runtime.execute): kd_sched_go */
	KD_EV_SCHED_GO_PARK = 46, /* the running goroutine parks (runtime.gopark): kd_sched_go */
	KD_EV_SCHED_GO_EXIT = 47, /* the running goroutine ends (runtime.goexit1): kd_sched_go */
	KD_EV_SCHED_GO_RUNNABLE = 48, /* a goroutine becomes runnable (runtime.ready, injectglist, exitsyscall0): kd_sched_go */
};

/* Which syscall a kd_sock_event came from. */
enum kd_syscall {
	KD_SYS_READ = 1,
	KD_SYS_WRITE = 2,
	KD_SYS_READV = 3,
	KD_SYS_WRITEV = 4,
	KD_SYS_SENDTO = 5,
	KD_SYS_RECVFROM = 6,
	KD_SYS_SENDMSG = 7,
	KD_SYS_RECVMSG = 8,
	KD_SYS_SENDMMSG = 9,
	KD_SYS_RECVMMSG = 10,
	KD_SYS_SENDFILE = 11,
	KD_SYS_CONNECT = 12,
	KD_SYS_ACCEPT = 13,
	KD_SYS_ACCEPT4 = 14,
	KD_SYS_CLOSE = 15,
};

/* Why the kernel side could not deliver an event (index into drop_counts). */
enum kd_drop_reason {
	KD_DROP_RINGBUF_FULL = 0,     /* bpf_ringbuf_output failed */
	KD_DROP_INFLIGHT_FULL = 1,    /* no room to remember a syscall between enter and exit */
	KD_DROP_CONNECT_FULL = 2,     /* no room to remember a non-blocking connect */
	KD_DROP_PID_FILTER_FULL = 3,  /* a child of a filtered process could not be followed */
	KD_DROP_MMSG_TRUNCATED = 4,   /* messages of a sendmmsg/recvmmsg beyond KD_MAX_MMSG */
	/* 5-9: the tcp module; 10-19: the sched module (names in wire.rs DROP_REASONS) */
	KD_DROP_TCP_RATE_LIMITED = 5, /* packet-drop events beyond the per-CPU rate (totals stay exact) */
	KD_DROP_TCP_MAP_FULL = 6,     /* no room to remember a connection's start or RTT sample time */
	KD_DROP_SCHED_RINGBUF_FULL = 10, /* a sched record did not fit in the sched ring buffer */
	KD_DROP_SCHED_THREAD_MAP_FULL = 11, /* no room to follow one more thread of interest */
	KD_DROP_SCHED_STACK_LOST = 12, /* a stack could not be read or delivered (the event keeps no stack) */
	KD_DROP_SCHED_BUSY = 13,       /* a map was busy (a sample interrupted a switch on the same CPU) */
	KD_DROP_SCHED_GO_PARAMS = 14,  /* a Go runtime probe fired in a process without its parameters */
	KD_DROP_SCHED_GO_UNREADABLE = 15, /* a Go runtime probe could not read the goroutine's id */
	KD_DROP_SCHED_GO_INJECT_TRUNCATED = 16, /* goroutines readied at once beyond KD_GO_INJECT_MAX (their readiness is not reported) */
	KD_DROP__MAX = 20,
};

struct kd_header {
	__u64 ts_ns;  /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u32 kind;   /* enum kd_event_kind */
	__u32 tgid;   /* process id */
	__u32 tid;    /* thread id */
	__u32 cpu;
	char comm[KD_COMM_LEN];
};

struct kd_sock_event {
	struct kd_header hdr;
	__u64 latency_ns; /* syscall enter -> exit (connect_done: connect() enter -> handshake end) */
	__s64 ret;        /* syscall return value; negative errno on failure */
	__u64 sock_id;    /* identity of the kernel socket (stable while it lives) */
	__s32 fd;
	__u16 syscall;    /* enum kd_syscall */
	__u8 family;      /* AF_INET (2) or AF_INET6 (10) */
	__u8 proto;       /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u8 saddr[16];   /* local address */
	__u8 daddr[16];   /* peer address */
	__u16 sport;      /* local port */
	__u16 dport;      /* peer port */
	__u32 msg_index;  /* message index within sendmmsg/recvmmsg, else 0 */
	__u32 bytes;      /* bytes moved by this event (a message of an mmsg call, else ret) */
	__u32 payload_len;/* bytes of payload head that follow this struct */
	__u8 payload[0];
};

struct kd_exec_event {
	struct kd_header hdr;
	__u32 ppid;
	__u32 filename_len;
	__u32 args_len;   /* argv as NUL-separated strings, truncated to KD_EXEC_ARGS_LEN */
	__u32 _pad;
	char filename[KD_EXEC_FILENAME_LEN];
	char args[KD_EXEC_ARGS_LEN];
};

struct kd_exit_event {
	struct kd_header hdr;
	__s32 exit_code;  /* wait status as the parent would see it */
	__u32 group_dead; /* 1 when the whole process is gone */
};

struct kd_fork_event {
	struct kd_header hdr;
	__u32 child_tgid;
	__u32 child_tid;
};

/* A TCP health event; a..e mean what the kind above says. For every kind but
 * DROP the addresses are the socket's (s = local end); for DROP they are the
 * packet's (s = its sender). */
struct kd_tcp_event {
	struct kd_header hdr;
	__u64 sock_id; /* struct sock *, joins with kd_sock_event.sock_id (0: none) */
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 family;
	__u8 proto;    /* IPPROTO_TCP or IPPROTO_UDP (drops) */
	__u8 state;    /* TCP state when it happened */
	__u8 flags;
	__u32 a;
	__u32 b;
	__u64 c;
	__u64 d;
	__u64 e;
};

struct kd_rename_event {
	struct kd_header hdr;
	char newcomm[KD_COMM_LEN];
};

/* --- the sched module ---------------------------------------------------
 * Per-thread timelines: one kd_sched_slice each time a thread of interest is
 * switched in, covering its previous turn on the CPU and the time off it:
 *
 *   oncpu_start ........ offcpu_start ........ wake_ts ........ hdr.ts_ns
 *   |  on-CPU            |  blocked (reason)    |  run queue     | running again
 *
 * wake_ts is 0 when the thread was preempted (runnable all along: the whole
 * off-CPU time is run queue); oncpu_start is 0 when unknown (first sight).
 * Stacks are referred to by a 64-bit hash of their frames; a stack's frames
 * travel once per generation in a kd_sched_stack that precedes every record
 * referring to it. */
#define KD_SCHED_MAX_FRAMES 127
#define KD_SCHED_PATH_PARTS 12
#define KD_SCHED_PATH_PART_LEN 48

/* What the file descriptor a blocked syscall waits on is. */
enum kd_fd_kind {
	KD_FD_NONE = 0,   /* no fd argument, or not open */
	KD_FD_SOCKET = 1, /* a socket: for inet ones family/proto/addresses filled, else family only */
	KD_FD_FILE = 2,   /* a regular file or block device (path in a kd_sched_file) */
	KD_FD_OTHER = 3,  /* a pipe, character device, eventfd, ... */
};

#define KD_SLICE_PREEMPTED 1 /* runnable when switched out (no blocking) */
#define KD_SLICE_IN_SYSCALL 2 /* `syscall` and its arguments are valid */
#define KD_SLICE_STACKS_REUSED 4 /* blocked where it blocked last time: the stacks are that time's */

struct kd_sched_slice {
	struct kd_header hdr; /* ts_ns: switched in; tgid/tid/comm: the thread */
	__u64 oncpu_start;    /* switched in the previous time (0: unknown) */
	__u64 offcpu_start;   /* switched out */
	__u64 wake_ts;        /* woken (0: preempted, never blocked) */
	__u64 kstack;         /* kernel stack at switch-out (0: none) */
	__u64 ustack;         /* user stack at switch-out (0: none) */
	__u64 sock_id;        /* struct sock * of a socket fd */
	__s64 syscall;        /* the syscall blocked in (x86-64 number; -1: none) */
	__u64 arg1;           /* its second argument (futex op, poll timeout, ...) */
	__s32 fd;             /* its fd argument, if any (-1: none) */
	__u32 waker_tid;      /* the thread that woke it (0: unknown) */
	__u32 waker_tgid;
	__u8 flags;           /* KD_SLICE_* */
	__u8 fd_kind;         /* enum kd_fd_kind */
	__u8 family;          /* sockets: AF_INET/AF_INET6 */
	__u8 proto;           /* sockets: IPPROTO_TCP/UDP */
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u32 _pad;
};

struct kd_sched_sample {
	struct kd_header hdr;
	__u64 kstack;
	__u64 ustack;
};

struct kd_sched_stack {
	struct kd_header hdr;
	__u64 id;        /* the hash the other records refer to */
	__u32 nr_frames;
	__u32 kernel;    /* 1: kernel addresses, 0: user addresses of hdr.tgid */
	__u64 frames[KD_SCHED_MAX_FRAMES]; /* only nr_frames are sent */
};

struct kd_sched_file {
	struct kd_header hdr; /* the blocked thread; ts_ns: when it blocked */
	__u64 offcpu_start;   /* joins with kd_sched_slice.offcpu_start */
	__u32 nr_parts;       /* path components, leaf first */
	__u32 truncated;      /* 1: more components above the ones sent */
	char parts[KD_SCHED_PATH_PARTS * KD_SCHED_PATH_PART_LEN]; /* NUL-terminated, KD_SCHED_PATH_PART_LEN apart */
};

/* The user registers and the top of the user stack of a thread that blocked
 * in a syscall, sent just before its switch-out is recorded: the frame-pointer
 * walk misses the frames of code built without frame pointers (libc's syscall
 * wrappers, pthread_mutex_lock...) and the first caller above them; user space
 * recovers them with the binaries' unwind tables (.eh_frame). */
#define KD_SCHED_USTACK_TOP 512

struct kd_sched_ustack_top {
	struct kd_header hdr; /* ts_ns: when it blocked */
	__u64 offcpu_start;   /* joins with kd_sched_slice.offcpu_start */
	__u64 ip;
	__u64 sp;
	__u64 bp;
	__u32 len;            /* bytes of stack copied from sp */
	__u32 _pad;
	__u8 data[KD_SCHED_USTACK_TOP];
};

/* Goroutine scheduling in followed Go processes (uprobes on the runtime):
 * which goroutine a thread runs from when, and when and why it parks. */
struct kd_sched_go {
	struct kd_header hdr; /* ts_ns: the call; tgid/tid: the thread */
	__u64 goid;           /* the goroutine (runtime.g.goid) */
	__u64 ustack;         /* GO_PARK: user stack hash at gopark (0: none) */
	__u32 reason;         /* GO_PARK: runtime.waitReason (an index into runtime.waitReasonStrings) */
	__s32 fd;             /* GO_PARK in "IO wait": the fd it polls (-1: none) */
	__u64 sock_id;        /* ... and when that is a socket, as in kd_sched_slice */
	__u8 fd_kind;         /* enum kd_fd_kind */
	__u8 family;
	__u8 proto;
	__u8 _pad;
	__u16 sport;
	__u16 dport;
	__u8 saddr[16];
	__u8 daddr[16];
};

#endif /* __KINDLING_H */
