// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Kindling's kernel side: socket syscalls with payload heads, non-blocking
 * connect completion, and process lifecycle.
 *
 * Hooks are tracepoints and BTF tracepoints only (no kprobes, no fentry), so
 * the object loads on hardened kernels with CONFIG_KPROBES=n.
 *
 * Non-socket file descriptors are filtered here, at syscall entry, by looking
 * the fd up in the task's fd table: a read() of a file never leaves the kernel.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "kindling.h"

#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EAGAIN 11
#define EINPROGRESS 115
/* Kernel-internal restart codes: never seen by user space, so never reported. */
#define ERESTARTSYS 512
#define ERESTART_RESTARTBLOCK 516

/* Tunables, set by the loader before the object is loaded. */
const volatile __u32 self_tgid = 0;
const volatile __u32 snaplen = 512;
const volatile bool filter_pids = false;
const volatile bool filter_ports = false;
/* Wake the reader only when this much data is waiting; it polls on a timer otherwise. */
const volatile __u64 wakeup_bytes = 256 * 1024;
/* Keep in-flight syscalls in task-local storage (no hash-bucket locks) when the
 * kernel allows it from tracepoint programs; else in the `inflight` hash map. */
const volatile bool use_task_storage = false;

/* Set by user space while `adopted` holds entries: otherwise exits never look
 * there, so the common path pays nothing for it. */
__u32 adopted_active = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KD_DROP__MAX);
	__type(key, __u32);
	__type(value, __u64);
} drop_counts SEC(".maps");

/* Processes to trace when filter_pids is set; children are added on fork. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u8);
} pid_filter SEC(".maps");

/* Ports of interest when filter_ports is set (either end of the socket). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} port_filter SEC(".maps");

/* A connection's addresses. */
struct tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
};

/* What we know about a socket, cached by its inode number so the common case
 * (a connection we have seen before) costs one map lookup instead of a chain
 * of kernel reads. Once a connection has both ports its tuple cannot change
 * (`stable`), and the cached copy also survives a reset that clears the
 * socket's own fields before the syscall that raced with it returns. */
struct sock_info {
	struct tuple t;
	__u64 sk;
	__u64 ino;
	__u8 family; /* 0: not a TCP/UDP socket (cached so we stop looking) */
	__u8 proto;
	__u8 stable;
	__u8 _pad[5];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct sock_info);
} sock_cache SEC(".maps");

/* A socket syscall between its enter and its exit, per thread. User space also
 * writes entries (has_info = 0) for syscalls already blocked when we attached,
 * read from /proc/PID/task/TID/syscall. */
struct inflight {
	struct sock_info si;
	__u64 ts;    /* 0: start unknown */
	__u64 buf;   /* buffer, iovec array, msghdr or mmsghdr array */
	__u64 addr;  /* user sockaddr (connect, sendto, recvfrom) */
	__u64 count; /* iovcnt or vlen */
	__s32 fd;
	__u16 syscall;
	__u8 has_info;
	__u8 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct inflight);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct inflight);
} inflight_ts SEC(".maps");

/* Syscalls already blocked when we attached, by thread id (see struct inflight). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct inflight);
} adopted SEC(".maps");

/* A non-blocking connect waiting for its handshake, keyed by struct sock *. */
struct pending_connect {
	__u64 ts;
	__u32 tgid;
	__u32 tid;
	__s32 fd;
	__u32 _pad;
	char comm[KD_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct pending_connect);
} pending_connects SEC(".maps");

/* Room to build a socket event with a payload head; twice the maximum so that
 * variable offsets and sizes, each masked, provably stay inside. */
struct sock_scratch {
	struct kd_sock_event ev;
	__u8 payload[KD_MAX_PAYLOAD * 2];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sock_scratch);
} sock_scratch SEC(".maps");

/* Force BTF for the wire structs so libbpf-cargo generates Rust types for them;
 * crates/kindling-probe checks the decoder's offsets against those types. */
struct kd_sock_event _kd_sock_event = {};
struct kd_exec_event _kd_exec_event = {};
struct kd_exit_event _kd_exit_event = {};
struct kd_fork_event _kd_fork_event = {};
struct kd_rename_event _kd_rename_event = {};

static __always_inline void count_drop(__u32 reason)
{
	__u64 *v = bpf_map_lookup_elem(&drop_counts, &reason);
	if (v)
		*v += 1;
}

static __always_inline void count_drops(__u32 reason, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&drop_counts, &reason);
	if (v)
		*v += n;
}

static __always_inline __u64 wakeup_flag(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP
									       : BPF_RB_NO_WAKEUP;
}

static __always_inline void submit(void *data, __u64 size)
{
	if (bpf_ringbuf_output(&events, data, size, wakeup_flag()))
		count_drop(KD_DROP_RINGBUF_FULL);
}

static __always_inline bool pid_wanted(__u32 tgid)
{
	if (tgid == self_tgid)
		return false;
	if (filter_pids && !bpf_map_lookup_elem(&pid_filter, &tgid))
		return false;
	return true;
}

static __always_inline bool port_wanted(__u16 sport, __u16 dport)
{
	if (!filter_ports)
		return true;
	__u32 k = sport;
	__u8 *v = bpf_map_lookup_elem(&port_filter, &k);
	if (v && *v)
		return true;
	k = dport;
	v = bpf_map_lookup_elem(&port_filter, &k);
	return v && *v;
}

static __always_inline void fill_header(struct kd_header *h, __u32 kind)
{
	__u64 id = bpf_get_current_pid_tgid();
	h->ts_ns = bpf_ktime_get_ns();
	h->kind = kind;
	h->tgid = id >> 32;
	h->tid = (__u32)id;
	h->cpu = bpf_get_smp_processor_id();
	bpf_get_current_comm(&h->comm, sizeof(h->comm));
}

/* Turns a plain kernel pointer into a BTF one, so its fields load directly
 * instead of through helper calls (kernel 6.2+; weak: absent elsewhere). */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

/* fd -> struct file * of the current task (NULL if none). Kernels with
 * bpf_get_current_task_btf (5.11+) walk task->files->fdt with direct BTF loads,
 * which are much cheaper than helper reads; older ones use CO-RE reads. */
static __always_inline struct file *fd_file(int fd)
{
	if (fd < 0)
		return NULL;
	struct file **fds;
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)) {
		struct task_struct *t = bpf_get_current_task_btf();
		struct fdtable *fdt = t->files->fdt;
		if ((unsigned int)fd >= fdt->max_fds)
			return NULL;
		fds = fdt->fd;
	} else {
		struct task_struct *t = (struct task_struct *)bpf_get_current_task();
		struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
		if (!fdt || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
			return NULL;
		fds = BPF_CORE_READ(fdt, fd);
	}
	struct file *f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]))
		return NULL;
	return f;
}

/* The inode number of a socket file (0 if `f` is not a socket). */
static __always_inline __u64 socket_ino(struct file *f)
{
	struct inode *inode;
	umode_t mode;
	__u64 ino;
	if (bpf_rdonly_cast) {
		struct file *bf = bpf_rdonly_cast(f, bpf_core_type_id_kernel(struct file));
		inode = bf->f_inode;
		if (!inode)
			return 0;
		mode = inode->i_mode;
		ino = inode->i_ino;
	} else {
		inode = BPF_CORE_READ(f, f_inode);
		if (!inode)
			return 0;
		mode = BPF_CORE_READ(inode, i_mode);
		ino = BPF_CORE_READ(inode, i_ino);
	}
	return (mode & S_IFMT) == S_IFSOCK ? ino : 0;
}

static __always_inline void read_tuple(struct sock *sk, __u8 family, struct tuple *t)
{
	t->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	t->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		__u32 s = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memset(t->saddr, 0, 16);
		__builtin_memset(t->daddr, 0, 16);
		__builtin_memcpy(t->saddr, &s, 4);
		__builtin_memcpy(t->daddr, &d, 4);
	} else {
		BPF_CORE_READ_INTO(&t->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&t->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
}

/* Re-reads the tuple of a socket that was not connected yet. */
static __always_inline void refresh_tuple(struct sock_info *si)
{
	read_tuple((struct sock *)si->sk, si->family, &si->t);
	si->stable = si->t.sport && si->t.dport;
}

/* What fd is, if a TCP or UDP socket: from the cache, else from the kernel
 * (and then cached, non-inet sockets included so they are rejected fast). */
static __always_inline bool fd_sock_info(int fd, struct sock_info *out)
{
	struct file *f = fd_file(fd);
	if (!f)
		return false;
	__u64 ino = socket_ino(f);
	if (!ino)
		return false;
	struct sock_info *cached = bpf_map_lookup_elem(&sock_cache, &ino);
	if (cached) {
		*out = *cached;
		return out->family != 0;
	}
	__builtin_memset(out, 0, sizeof(*out));
	out->ino = ino;
	struct socket *sock = (struct socket *)BPF_CORE_READ(f, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (sk) {
		__u16 fam = BPF_CORE_READ(sk, __sk_common.skc_family);
		__u16 p = BPF_CORE_READ(sk, sk_protocol);
		if ((fam == AF_INET || fam == AF_INET6) && (p == IPPROTO_TCP || p == IPPROTO_UDP)) {
			out->sk = (__u64)sk;
			out->family = fam;
			out->proto = p;
			refresh_tuple(out);
		}
	}
	bpf_map_update_elem(&sock_cache, &ino, out, BPF_ANY);
	return out->family != 0;
}

static __always_inline void set_tuple(struct kd_sock_event *e, struct tuple *t)
{
	__builtin_memcpy(e->saddr, t->saddr, 16);
	__builtin_memcpy(e->daddr, t->daddr, 16);
	e->sport = t->sport;
	e->dport = t->dport;
}

/* A peer address from a user sockaddr (sendto/recvfrom/msg_name/connect). */
static __always_inline void read_user_peer(const void *uaddr, struct kd_sock_event *e)
{
	if (!uaddr)
		return;
	__u16 fam = 0;
	if (bpf_probe_read_user(&fam, sizeof(fam), uaddr))
		return;
	if (fam == AF_INET) {
		struct sockaddr_in sa = {};
		if (bpf_probe_read_user(&sa, sizeof(sa), uaddr))
			return;
		__builtin_memset(e->daddr, 0, sizeof(e->daddr));
		if (e->family == AF_INET6) {
			/* v4 peer of a v6 socket: keep the v4-mapped form of the socket */
			e->daddr[10] = 0xff;
			e->daddr[11] = 0xff;
			__builtin_memcpy(&e->daddr[12], &sa.sin_addr.s_addr, 4);
		} else {
			__builtin_memcpy(e->daddr, &sa.sin_addr.s_addr, 4);
		}
		e->dport = bpf_ntohs(sa.sin_port);
	} else if (fam == AF_INET6) {
		struct sockaddr_in6 sa6 = {};
		if (bpf_probe_read_user(&sa6, sizeof(sa6), uaddr))
			return;
		__builtin_memcpy(e->daddr, &sa6.sin6_addr.in6_u.u6_addr8, 16);
		e->dport = bpf_ntohs(sa6.sin6_port);
	}
}

/* Copies up to `avail` bytes of user memory into the payload at `off`,
 * never past the snaplen. Returns the bytes copied. */
static __always_inline __u32 copy_payload(__u8 *payload, __u32 off, const void *src, __u64 avail)
{
	__u32 cap = snaplen > KD_MAX_PAYLOAD ? KD_MAX_PAYLOAD : snaplen;
	if (off >= cap || !src)
		return 0;
	__u64 n = avail;
	if (n > cap - off)
		n = cap - off;
	off &= KD_MAX_PAYLOAD - 1;
	n &= 2 * KD_MAX_PAYLOAD - 1;
	if (n > KD_MAX_PAYLOAD)
		n = KD_MAX_PAYLOAD;
	if (bpf_probe_read_user(payload + off, n, src))
		return 0;
	return n;
}

/* Payload head from an iovec array; `total` is what the syscall moved. The
 * walk stops as soon as the head is full. */
struct iov_walk {
	const struct iovec *iov;
	__u64 iovcnt;
	__u64 total;
	__u32 off;
};

static __always_inline struct sock_scratch *scratch(void);

/* One iovec: the body of both walks below. Returns 1 to stop. */
static __always_inline int iov_step(__u32 i, struct iov_walk *w, __u8 *payload)
{
	__u32 cap = snaplen > KD_MAX_PAYLOAD ? KD_MAX_PAYLOAD : snaplen;
	if (i >= w->iovcnt || w->total == 0 || w->off >= cap)
		return 1;
	struct iovec v = {};
	if (bpf_probe_read_user(&v, sizeof(v), &w->iov[i]))
		return 1;
	__u64 n = v.iov_len < w->total ? v.iov_len : w->total;
	w->off += copy_payload(payload, w->off, v.iov_base, n);
	w->total -= n;
	return 0;
}

static long iov_loop_cb(__u32 i, void *ctx)
{
	struct sock_scratch *s = scratch();
	if (!s)
		return 1;
	return iov_step(i, (struct iov_walk *)ctx, s->payload);
}

static __always_inline __u32 copy_iov(__u8 *payload, const struct iovec *iov, __u64 iovcnt,
				      __u64 total, bool loop)
{
	struct iov_walk w = { .iov = iov, .iovcnt = iovcnt, .total = total, .off = 0 };
	/* bpf_loop (5.17+) verifies the body once, so many iovecs cost nothing at
	 * load time; gRPC writes one iovec per header field (25 for a first call).
	 * Older kernels walk the first few, unrolled: the verifier's CFG check
	 * (which sees this branch even where it is dead) rejects a loop whose
	 * back edge is a helper call's fall-through on some kernels ("back-edge
	 * from insn", seen on 6.1 for sendmmsg). `loop` is a constant: the
	 * _noloop programs below have no reference to the callback at all. */
	if (loop && bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_loop)) {
		bpf_loop(KD_MAX_IOV, iov_loop_cb, &w, 0);
	} else {
#pragma unroll
		for (int i = 0; i < KD_MAX_IOV_UNROLLED; i++) {
			if (iov_step(i, &w, payload))
				break;
		}
	}
	return w.off;
}

static __always_inline struct sock_scratch *scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&sock_scratch, &zero);
}

static __always_inline void emit_sock(struct kd_sock_event *e, __u32 payload_len)
{
	e->payload_len = payload_len;
	submit(e, sizeof(*e) + (payload_len & (2 * KD_MAX_PAYLOAD - 1)));
}

/* Remembers the current thread's socket syscall until its exit. */
static __always_inline void inflight_put(__u32 tid, struct inflight *a)
{
	if (use_task_storage) {
		struct inflight *slot = bpf_task_storage_get(&inflight_ts, bpf_get_current_task_btf(), 0,
							     BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (slot)
			*slot = *a;
		else
			count_drop(KD_DROP_INFLIGHT_FULL);
	} else if (bpf_map_update_elem(&inflight, &tid, a, BPF_ANY)) {
		count_drop(KD_DROP_INFLIGHT_FULL);
	}
}

/* Where a remembered syscall lives, so it can be released after use. */
enum inflight_src { IN_TASK = 1, IN_HASH = 2, IN_ADOPTED = 3 };

/* The current thread's remembered syscall, if any; used in place (no copy
 * on the 512-byte stack) and released with inflight_release(). */
static __always_inline struct inflight *inflight_find(__u32 tid, int *src)
{
	if (use_task_storage) {
		struct inflight *slot = bpf_task_storage_get(&inflight_ts, bpf_get_current_task_btf(), 0, 0);
		if (slot && slot->syscall) {
			*src = IN_TASK;
			return slot;
		}
	} else {
		struct inflight *p = bpf_map_lookup_elem(&inflight, &tid);
		if (p) {
			*src = IN_HASH;
			return p;
		}
	}
	if (!adopted_active)
		return NULL;
	*src = IN_ADOPTED;
	return bpf_map_lookup_elem(&adopted, &tid);
}

static __always_inline void inflight_release(__u32 tid, struct inflight *a, int src)
{
	if (src == IN_TASK)
		a->syscall = 0;
	else if (src == IN_HASH)
		bpf_map_delete_elem(&inflight, &tid);
	else
		bpf_map_delete_elem(&adopted, &tid);
}

static __always_inline int sock_enter(__u16 sys, int fd, __u64 buf, __u64 addr, __u64 count)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	if (!pid_wanted(id >> 32))
		return 0;
	struct inflight a = {};
	if (!fd_sock_info(fd, &a.si))
		return 0;
	a.has_info = 1;
	a.ts = bpf_ktime_get_ns();
	a.buf = buf;
	a.addr = addr;
	a.count = count;
	a.fd = fd;
	a.syscall = sys;
	inflight_put(tid, &a);
	return 0;
}

/* Fills the common part of a socket event from the remembered syscall. */
static __always_inline struct kd_sock_event *start_sock_event(struct sock_scratch *s,
							      struct inflight *a, long ret,
							      __u32 kind)
{
	struct kd_sock_event *e = &s->ev;
	fill_header(&e->hdr, kind);
	e->latency_ns = a->ts ? e->hdr.ts_ns - a->ts : 0;
	e->ret = ret;
	e->sock_id = a->si.sk;
	e->fd = a->fd;
	e->syscall = a->syscall;
	e->family = a->si.family;
	e->proto = a->si.proto;
	e->msg_index = 0;
	e->bytes = 0;
	e->payload_len = 0;
	set_tuple(e, &a->si.t);
	return e;
}

static __always_inline bool is_hidden_error(long ret)
{
	return ret == -EAGAIN || (ret <= -ERESTARTSYS && ret >= -ERESTART_RESTARTBLOCK);
}

/* One event per message of a sendmmsg/recvmmsg. */
static __always_inline void emit_mmsg(struct sock_scratch *s, struct inflight *a, long ret, bool loop)
{
	struct mmsghdr *vec = (struct mmsghdr *)a->buf;
	for (int i = 0; i < KD_MAX_MMSG; i++) {
		if (i >= ret)
			break;
		struct mmsghdr m = {};
		if (bpf_probe_read_user(&m, sizeof(m), &vec[i]))
			break;
		struct kd_sock_event *e = start_sock_event(s, a, ret, KD_EV_SOCK);
		e->msg_index = i;
		e->bytes = m.msg_len;
		if (a->si.proto == IPPROTO_UDP)
			read_user_peer(m.msg_hdr.msg_name, e);
		if (!port_wanted(e->sport, e->dport))
			continue;
		__u32 len = 0;
		if (m.msg_hdr.msg_iovlen > 0)
			len = copy_iov(s->payload, m.msg_hdr.msg_iov, 1, m.msg_len, loop);
		emit_sock(e, len);
	}
	if (ret > KD_MAX_MMSG)
		count_drops(KD_DROP_MMSG_TRUNCATED, ret - KD_MAX_MMSG);
}

/* Builds and submits the event(s) of a socket syscall that just returned. */
static __always_inline void sock_exit_emit(struct inflight *a, __u16 sys, long ret, bool loop)
{
	/* Written by user space for a syscall in flight at attach: resolve now. */
	if (!a->has_info && !fd_sock_info(a->fd, &a->si))
		return;
	struct sock_scratch *s = scratch();
	if (!s)
		return;

	if (sys == KD_SYS_ACCEPT || sys == KD_SYS_ACCEPT4) {
		/* The new connection's socket replaces the listener's. */
		if (ret < 0 || !fd_sock_info(ret, &a->si))
			return;
		a->fd = ret;
	} else if (sys == KD_SYS_CONNECT) {
		/* connect() sets the local end: remember the connected tuple. */
		refresh_tuple(&a->si);
		if (a->si.stable)
			bpf_map_update_elem(&sock_cache, &a->si.ino, &a->si, BPF_ANY);
	} else if (!a->si.stable) {
		/* Unconnected (UDP) or not yet bound: read the ends as they are now. */
		refresh_tuple(&a->si);
	}

	if (sys == KD_SYS_SENDMMSG || sys == KD_SYS_RECVMMSG) {
		if (ret > 0)
			emit_mmsg(s, a, ret, loop);
		return;
	}

	struct kd_sock_event *e = start_sock_event(s, a, ret, KD_EV_SOCK);
	e->bytes = ret > 0 ? ret : 0;
	__u32 len = 0;
	bool done_now = false;
	long done_ret = 0;

	switch (sys) {
	case KD_SYS_READ:
	case KD_SYS_WRITE:
		if (ret > 0)
			len = copy_payload(s->payload, 0, (const void *)a->buf, ret);
		break;
	case KD_SYS_SENDTO:
	case KD_SYS_RECVFROM:
		if (a->si.proto == IPPROTO_UDP)
			read_user_peer((const void *)a->addr, e);
		if (ret > 0)
			len = copy_payload(s->payload, 0, (const void *)a->buf, ret);
		break;
	case KD_SYS_READV:
	case KD_SYS_WRITEV:
		if (ret > 0)
			len = copy_iov(s->payload, (const struct iovec *)a->buf, a->count, ret, loop);
		break;
	case KD_SYS_SENDMSG:
	case KD_SYS_RECVMSG: {
		struct user_msghdr m = {};
		if (bpf_probe_read_user(&m, sizeof(m), (const void *)a->buf))
			break;
		if (a->si.proto == IPPROTO_UDP)
			read_user_peer(m.msg_name, e);
		if (ret > 0)
			len = copy_iov(s->payload, m.msg_iov, m.msg_iovlen, ret, loop);
		break;
	}
	case KD_SYS_CONNECT:
		/* The target is what the caller asked for, even when the connect failed. */
		read_user_peer((const void *)a->addr, e);
		e->bytes = 0;
		if (ret == -EINPROGRESS && a->si.proto == IPPROTO_TCP) {
			struct pending_connect pc = {
				.ts = a->ts,
				.tgid = e->hdr.tgid,
				.tid = e->hdr.tid,
				.fd = a->fd,
			};
			__builtin_memcpy(pc.comm, e->hdr.comm, KD_COMM_LEN);
			if (bpf_map_update_elem(&pending_connects, &a->si.sk, &pc, BPF_ANY)) {
				count_drop(KD_DROP_CONNECT_FULL);
				break;
			}
			/* On loopback the handshake can finish before connect() returns:
			 * if the socket already left SYN_SENT and the state hook has not
			 * claimed the entry, report the completion ourselves. */
			struct sock *sk = (struct sock *)a->si.sk;
			__u8 state = BPF_CORE_READ(sk, __sk_common.skc_state);
			if (state != TCP_SYN_SENT &&
			    bpf_map_delete_elem(&pending_connects, &a->si.sk) == 0) {
				done_now = true;
				int err = BPF_CORE_READ(sk, sk_err);
				done_ret = state == TCP_ESTABLISHED ? 0 : (err ? -err : -1);
			}
		}
		break;
	case KD_SYS_ACCEPT:
	case KD_SYS_ACCEPT4:
		e->bytes = 0;
		break;
	default:
		break;
	}
	if (!port_wanted(e->sport, e->dport))
		return;
	emit_sock(e, len);
	if (done_now) {
		e->hdr.kind = KD_EV_CONNECT_DONE;
		e->ret = done_ret;
		emit_sock(e, 0);
	}
	return;
}


static __always_inline int sock_exit(__u16 sys, long ret, bool loop)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	int src = 0;
	struct inflight *a = inflight_find(tid, &src);
	if (!a)
		return 0;
	if (a->syscall == sys && !is_hidden_error(ret))
		sock_exit_emit(a, sys, ret, loop);
	inflight_release(tid, a, src);
	return 0;
}

#define SOCK_HOOKS(name, SYS, FD, BUF, ADDR, COUNT)                                              \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                              \
	int kd_enter_##name(struct trace_event_raw_sys_enter *ctx)                               \
	{                                                                                        \
		return sock_enter(SYS, (int)ctx->args[FD], BUF, ADDR, COUNT);                     \
	}                                                                                        \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                               \
	int kd_exit_##name(struct trace_event_raw_sys_exit *ctx)                                 \
	{                                                                                        \
		return sock_exit(SYS, ctx->ret, true);                                            \
	}

SOCK_HOOKS(read, KD_SYS_READ, 0, ctx->args[1], 0, 0)
SOCK_HOOKS(write, KD_SYS_WRITE, 0, ctx->args[1], 0, 0)
SOCK_HOOKS(readv, KD_SYS_READV, 0, ctx->args[1], 0, ctx->args[2])
SOCK_HOOKS(writev, KD_SYS_WRITEV, 0, ctx->args[1], 0, ctx->args[2])
SOCK_HOOKS(sendto, KD_SYS_SENDTO, 0, ctx->args[1], ctx->args[4], 0)
SOCK_HOOKS(recvfrom, KD_SYS_RECVFROM, 0, ctx->args[1], ctx->args[4], 0)
SOCK_HOOKS(sendmsg, KD_SYS_SENDMSG, 0, ctx->args[1], 0, 0)
SOCK_HOOKS(recvmsg, KD_SYS_RECVMSG, 0, ctx->args[1], 0, 0)
SOCK_HOOKS(sendmmsg, KD_SYS_SENDMMSG, 0, ctx->args[1], 0, ctx->args[2])
SOCK_HOOKS(recvmmsg, KD_SYS_RECVMMSG, 0, ctx->args[1], 0, ctx->args[2])
SOCK_HOOKS(sendfile64, KD_SYS_SENDFILE, 0, 0, 0, 0)
SOCK_HOOKS(connect, KD_SYS_CONNECT, 0, 0, ctx->args[1], 0)
SOCK_HOOKS(accept, KD_SYS_ACCEPT, 0, 0, 0, 0)
SOCK_HOOKS(accept4, KD_SYS_ACCEPT4, 0, 0, 0, 0)

/* The exits that walk iovecs, once more without bpf_loop: kernels before 5.13
 * reject any program that merely refers to a bpf_loop callback ("number of
 * funcs in func_info doesn't match number of subprogs"), even in a branch
 * CO-RE made dead. The loader (sockets.rs) loads one variant of each pair,
 * by whether the kernel has bpf_loop (5.17+). */
#define SOCK_EXIT_NOLOOP(name, SYS)                                                              \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                               \
	int kd_exit_##name##_noloop(struct trace_event_raw_sys_exit *ctx)                        \
	{                                                                                        \
		return sock_exit(SYS, ctx->ret, false);                                           \
	}

SOCK_EXIT_NOLOOP(readv, KD_SYS_READV)
SOCK_EXIT_NOLOOP(writev, KD_SYS_WRITEV)
SOCK_EXIT_NOLOOP(sendmsg, KD_SYS_SENDMSG)
SOCK_EXIT_NOLOOP(recvmsg, KD_SYS_RECVMSG)
SOCK_EXIT_NOLOOP(sendmmsg, KD_SYS_SENDMMSG)
SOCK_EXIT_NOLOOP(recvmmsg, KD_SYS_RECVMMSG)

/* close() is reported at entry, while the fd still names the socket. */
SEC("tracepoint/syscalls/sys_enter_close")
int kd_enter_close(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!pid_wanted(id >> 32))
		return 0;
	struct inflight a = {};
	a.fd = (int)ctx->args[0];
	a.syscall = KD_SYS_CLOSE;
	if (!fd_sock_info(a.fd, &a.si))
		return 0;
	struct sock_scratch *s = scratch();
	if (!s)
		return 0;
	struct kd_sock_event *e = start_sock_event(s, &a, 0, KD_EV_SOCK);
	e->latency_ns = 0;
	if (!port_wanted(e->sport, e->dport))
		return 0;
	emit_sock(e, 0);
	return 0;
}

/* The end of a non-blocking TCP connect: SYN_SENT -> ESTABLISHED or CLOSE. */
SEC("tracepoint/sock/inet_sock_set_state")
int kd_sock_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol != IPPROTO_TCP || ctx->oldstate != TCP_SYN_SENT)
		return 0;
	__u64 key = (__u64)ctx->skaddr;
	struct pending_connect *p = bpf_map_lookup_elem(&pending_connects, &key);
	if (!p)
		return 0;
	struct pending_connect pc = *p;
	bpf_map_delete_elem(&pending_connects, &key);
	struct sock_scratch *s = scratch();
	if (!s)
		return 0;
	struct kd_sock_event *e = &s->ev;
	__builtin_memset(e, 0, sizeof(*e));
	e->hdr.ts_ns = bpf_ktime_get_ns();
	e->hdr.kind = KD_EV_CONNECT_DONE;
	e->hdr.tgid = pc.tgid;
	e->hdr.tid = pc.tid;
	e->hdr.cpu = bpf_get_smp_processor_id();
	__builtin_memcpy(e->hdr.comm, pc.comm, KD_COMM_LEN);
	e->latency_ns = e->hdr.ts_ns - pc.ts;
	if (ctx->newstate == TCP_ESTABLISHED) {
		e->ret = 0;
	} else {
		struct sock *sk = (struct sock *)ctx->skaddr;
		int err = BPF_CORE_READ(sk, sk_err);
		e->ret = err ? -err : -1;
	}
	e->sock_id = key;
	e->fd = pc.fd;
	e->syscall = KD_SYS_CONNECT;
	e->family = ctx->family;
	e->proto = IPPROTO_TCP;
	struct tuple t = {};
	read_tuple((struct sock *)ctx->skaddr, ctx->family, &t);
	set_tuple(e, &t);
	if (!port_wanted(e->sport, e->dport))
		return 0;
	emit_sock(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(kd_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = p->tgid;
	if (!pid_wanted(tgid))
		return 0;
	struct kd_exec_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(KD_DROP_RINGBUF_FULL);
		return 0;
	}
	fill_header(&e->hdr, KD_EV_EXEC);
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	e->_pad = 0;
	long n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename));
	e->filename_len = n > 0 ? n - 1 : 0;
	unsigned long start = BPF_CORE_READ(p, mm, arg_start);
	unsigned long end = BPF_CORE_READ(p, mm, arg_end);
	__u64 len = end > start ? end - start : 0;
	if (len > KD_EXEC_ARGS_LEN)
		len = KD_EXEC_ARGS_LEN;
	if (bpf_probe_read_user(e->args, len & (2 * KD_EXEC_ARGS_LEN - 1), (void *)start))
		len = 0;
	e->args_len = len;
	bpf_ringbuf_submit(e, wakeup_flag());
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(kd_exit, struct task_struct *p)
{
	__u32 tid = p->pid;
	__u32 tgid = p->tgid;
	/* A thread that dies inside a socket syscall never reaches its exit hook
	 * (task storage goes away with the task by itself). */
	if (!use_task_storage)
		bpf_map_delete_elem(&inflight, &tid);
	if (!pid_wanted(tgid))
		return 0;
	bool group_dead = BPF_CORE_READ(p, signal, live.counter) == 0;
	struct kd_exit_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(KD_DROP_RINGBUF_FULL);
		return 0;
	}
	fill_header(&e->hdr, KD_EV_EXIT);
	e->exit_code = p->exit_code;
	e->group_dead = group_dead;
	bpf_ringbuf_submit(e, wakeup_flag());
	if (group_dead && filter_pids)
		bpf_map_delete_elem(&pid_filter, &tgid);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(kd_fork, struct task_struct *parent, struct task_struct *child)
{
	/* Threads share their process's filter entry; only new processes matter. */
	if (child->pid != child->tgid)
		return 0;
	__u32 ptgid = parent->tgid;
	if (!pid_wanted(ptgid))
		return 0;
	__u32 ctgid = child->tgid;
	if (filter_pids) {
		__u8 one = 1;
		if (bpf_map_update_elem(&pid_filter, &ctgid, &one, BPF_ANY))
			count_drop(KD_DROP_PID_FILTER_FULL);
	}
	struct kd_fork_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(KD_DROP_RINGBUF_FULL);
		return 0;
	}
	fill_header(&e->hdr, KD_EV_FORK);
	e->child_tgid = ctgid;
	e->child_tid = child->pid;
	bpf_ringbuf_submit(e, wakeup_flag());
	return 0;
}

SEC("tp_btf/task_rename")
int BPF_PROG(kd_rename, struct task_struct *task, const char *comm)
{
	if (!pid_wanted(task->tgid))
		return 0;
	struct kd_rename_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(KD_DROP_RINGBUF_FULL);
		return 0;
	}
	fill_header(&e->hdr, KD_EV_RENAME);
	e->hdr.tgid = task->tgid;
	e->hdr.tid = task->pid;
	__builtin_memset(e->newcomm, 0, sizeof(e->newcomm));
	bpf_probe_read_kernel_str(e->newcomm, sizeof(e->newcomm), comm);
	bpf_ringbuf_submit(e, wakeup_flag());
	return 0;
}

#ifdef KD_BROKEN_PROGRAM
/* Test-only (cargo feature `broken-program`): a program every verifier
 * rejects, so the kernel matrix is shown to fail, quoting the verifier. */
SEC("tracepoint/syscalls/sys_enter_getpid")
int kd_broken(void *ctx)
{
	/* A load through a number that is not a pointer. */
	return *(volatile int *)(long)bpf_get_prandom_u32();
}
#endif

char LICENSE[] SEC("license") = "Dual BSD/GPL";
