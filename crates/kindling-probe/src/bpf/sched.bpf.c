// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The sched module: per-thread on/off-CPU timelines and on-CPU samples with
 * kernel and user stacks, for the processes user space names in `sched_pids`.
 * See crates/kindling-probe/src/sched.rs and the wire structs in kindling.h.
 *
 * - tp_btf/sched_switch: at switch-out, a thread of interest's state (why it
 *   left: preempted, or blocked in which syscall on which fd) and its stacks
 *   go into `threads`; at switch-in one kd_sched_slice reports the whole
 *   cycle (on-CPU, blocked, run queue). No per-syscall hook: the syscall a
 *   blocked task is in and its arguments are in its saved user registers.
 * - tp_btf/sched_wakeup(_new): when a blocked thread became runnable, and by whom.
 * - perf_event: on-CPU samples (the loader opens one software CPU-clock event
 *   per CPU at the configured frequency).
 *
 * Stacks are deduplicated here: a stack is hashed, and its frames are sent
 * (kd_sched_stack) only the first time this generation; records carry the
 * hash. User space bumps the generation when it forgets stacks.
 *
 * An idle box pays one array lookup per context switch: nothing is looked at
 * while no pid is of interest (`ctl.npids` = 0).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "kindling.h"

#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define S_IFREG 0100000
#define S_IFBLK 0060000
#define EBUSY 16

const volatile __u32 self_tgid = 0;
/* Wake the reader only when this much data is waiting; it polls on a timer otherwise. */
const volatile __u64 wakeup_bytes = 256 * 1024;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KD_DROP__MAX);
	__type(key, __u32);
	__type(value, __u64);
} drop_counts SEC(".maps");

/* Processes whose threads are followed (user space keeps it up to date). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} sched_pids SEC(".maps");

/* Written by user space: how many pids are of interest (0: do nothing), and
 * the stack generation (a new one makes every stack be sent again). */
struct sched_ctl {
	__u32 npids;
	__u32 stack_gen;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sched_ctl);
} ctl SEC(".maps");

/* Where a thread last blocked, to reuse its stacks when it blocks again in
 * the same place (a loop around read(), a worker waiting on its queue): the
 * stack walks are most of a switch's cost. Same syscall, same user registers
 * and the same first return address, in the same stack generation. */
struct block_site {
	__s64 nr;
	__u64 ip;
	__u64 sp;
	__u64 bp;
	__u64 ret;
	__u64 kstack;
	__u64 ustack;
	__u32 gen;
	__u32 valid;
};

/* Per followed thread: the slice being built (s.hdr.tgid: its process). */
struct thread_state {
	struct kd_sched_slice s;
	struct block_site last;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct thread_state);
} threads SEC(".maps");

/* Stacks already sent, by hash -> the generation they were sent in. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, __u64);
	__type(value, __u32);
} stacks_seen SEC(".maps");

/* Room for a stack record: slot 0 for the switch and wakeup programs, slot 1
 * for samples, which run in NMI context and may interrupt them, slot 2 for
 * the Go runtime uprobes (process context: a switch may run while they do). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, struct kd_sched_stack);
} stack_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kd_sched_file);
} file_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kd_sched_ustack_top);
} top_scratch SEC(".maps");

/* Send the top of the user stack of blocked threads (off: frame pointers only). */
const volatile bool send_stack_top = true;
/* Reuse a thread's stacks when it blocks again at the same site (struct block_site). */
const volatile bool reuse_stacks = true;

/* BTF for the wire structs (libbpf-cargo generates Rust types from it). */
struct kd_sched_slice _kd_sched_slice = {};
struct kd_sched_sample _kd_sched_sample = {};
struct kd_sched_stack _kd_sched_stack = {};
struct kd_sched_file _kd_sched_file = {};
struct kd_sched_ustack_top _kd_sched_ustack_top = {};
struct kd_sched_go _kd_sched_go = {};

static __always_inline void count_drop(__u32 reason)
{
	__u64 *v = bpf_map_lookup_elem(&drop_counts, &reason);
	if (v)
		*v += 1;
}

static __always_inline __u64 wakeup_flag(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP
									       : BPF_RB_NO_WAKEUP;
}

static __always_inline struct sched_ctl *get_ctl(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&ctl, &zero);
}

static __always_inline bool tgid_wanted(__u32 tgid)
{
	if (tgid == self_tgid || tgid == 0)
		return false;
	return bpf_map_lookup_elem(&sched_pids, &tgid) != NULL;
}

static __always_inline void fill_header(struct kd_header *h, __u32 kind, __u64 ts)
{
	__u64 id = bpf_get_current_pid_tgid();
	h->ts_ns = ts;
	h->kind = kind;
	h->tgid = id >> 32;
	h->tid = (__u32)id;
	h->cpu = bpf_get_smp_processor_id();
	bpf_get_current_comm(&h->comm, sizeof(h->comm));
}

static __always_inline __u64 stack_finish(struct kd_sched_stack *s, __u32 nr, bool user, __u32 gen);

/* The current task's stack (user or kernel) as a hash; its frames are sent
 * first if this generation has not seen it. 0: no stack. */
static __always_inline __u64 stack_id(void *ctx, bool user, __u32 slot, __u32 gen)
{
	struct kd_sched_stack *s = bpf_map_lookup_elem(&stack_scratch, &slot);
	if (!s)
		return 0;
	long n = bpf_get_stack(ctx, s->frames, sizeof(s->frames), user ? BPF_F_USER_STACK : 0);
	if (n <= 0)
		return 0;
	return stack_finish(s, n / 8, user, gen);
}

/* The hash of the `nr` frames in `s`; the frames are sent first if this
 * generation has not seen them. */
static __always_inline __u64 stack_finish(struct kd_sched_stack *s, __u32 nr, bool user, __u32 gen)
{
	__u64 h = 0xcbf29ce484222325ULL ^ (user ? 0x5555 : 0xaaaa);
	for (__u32 i = 0; i < KD_SCHED_MAX_FRAMES; i++) {
		if (i >= nr)
			break;
		h ^= s->frames[i];
		h *= 0x100000001b3ULL;
		h ^= h >> 29;
	}
	if (!h)
		h = 1;
	__u32 *seen = bpf_map_lookup_elem(&stacks_seen, &h);
	if (seen && *seen == gen)
		return h;
	fill_header(&s->hdr, KD_EV_SCHED_STACK, bpf_ktime_get_ns());
	s->id = h;
	s->nr_frames = nr;
	s->kernel = !user;
	__u64 size = offsetof(struct kd_sched_stack, frames) + (__u64)nr * 8;
	if (size > sizeof(*s))
		size = sizeof(*s);
	/* Output before marking it seen: another CPU that finds it seen emits its
	 * reference after this record, so user space always has the frames first. */
	if (bpf_ringbuf_output(&events, s, size, wakeup_flag())) {
		count_drop(KD_DROP_SCHED_STACK_LOST);
		return 0;
	}
	bpf_map_update_elem(&stacks_seen, &h, &gen, BPF_ANY);
	return h;
}

/* Does this syscall (x86-64 numbers) take the fd it may block on as its first argument? */
static __always_inline bool fd_syscall(long nr)
{
	switch (nr) {
	case 0: case 1: case 16: case 17: case 18: case 19: case 20: /* read write ioctl pread pwrite readv writev */
	case 40: case 42: case 43: case 44: case 45: case 46: case 47: case 48: /* sendfile connect accept sendto recvfrom sendmsg recvmsg shutdown */
	case 72: case 73: case 74: case 75: case 77: /* fcntl flock fsync fdatasync ftruncate */
	case 217: case 275: case 277: case 285: case 288: /* getdents64 splice sync_file_range fallocate accept4 */
	case 295: case 296: case 299: case 307: case 326: case 327: case 328: /* preadv pwritev recvmmsg sendmmsg copy_file_range preadv2 pwritev2 */
		return true;
	}
	return false;
}

/* The file path of a blocked thread's fd, leaf component first, as a
 * kd_sched_file record (mount points crossed up to the root). */
static __always_inline void emit_file(struct file *f, struct kd_sched_slice *st, __u64 now)
{
	__u32 zero = 0;
	struct kd_sched_file *e = bpf_map_lookup_elem(&file_scratch, &zero);
	if (!e)
		return;
	fill_header(&e->hdr, KD_EV_SCHED_FILE, now);
	e->offcpu_start = st->offcpu_start;
	e->truncated = 0;
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
	struct vfsmount *vm = BPF_CORE_READ(f, f_path.mnt);
	struct mount *mnt = container_of(vm, struct mount, mnt);
	__u32 n = 0;
	for (__u32 i = 0; i < KD_SCHED_PATH_PARTS + 4; i++) {
		struct dentry *mroot = BPF_CORE_READ(mnt, mnt.mnt_root);
		struct dentry *parent = BPF_CORE_READ(d, d_parent);
		if (d == mroot || d == parent) {
			/* The root of a mount: continue from where it is mounted. */
			struct mount *mp = BPF_CORE_READ(mnt, mnt_parent);
			if (mp == mnt || !mp)
				break;
			d = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = mp;
			continue;
		}
		if (n >= KD_SCHED_PATH_PARTS) {
			e->truncated = 1;
			break;
		}
		const unsigned char *name = BPF_CORE_READ(d, d_name.name);
		if (bpf_probe_read_kernel_str(&e->parts[n * KD_SCHED_PATH_PART_LEN], KD_SCHED_PATH_PART_LEN, name) < 0)
			break;
		n++;
		d = parent;
	}
	e->nr_parts = n;
	if (bpf_ringbuf_output(&events, e, sizeof(*e), wakeup_flag()))
		count_drop(KD_DROP_SCHED_RINGBUF_FULL);
}

/* What a blocked task's fd is: for an inet socket its addresses, for a file its path. */
static __always_inline void classify_fd(struct task_struct *t, int fd, struct kd_sched_slice *st, __u64 now,
					bool with_path)
{
	st->fd_kind = KD_FD_NONE;
	if (fd < 0)
		return;
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	if (!fdt || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	st->fd_kind = KD_FD_OTHER;
	if ((mode & S_IFMT) == S_IFREG || (mode & S_IFMT) == S_IFBLK) {
		st->fd_kind = KD_FD_FILE;
		if (with_path)
			emit_file(f, st, now);
		return;
	}
	if ((mode & S_IFMT) != S_IFSOCK)
		return;
	st->fd_kind = KD_FD_SOCKET;
	struct socket *sock = (struct socket *)BPF_CORE_READ(f, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return;
	__u16 fam = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u16 proto = BPF_CORE_READ(sk, sk_protocol);
	st->family = fam;
	if ((fam != AF_INET && fam != AF_INET6) || (proto != IPPROTO_TCP && proto != IPPROTO_UDP))
		return;
	st->proto = proto;
	st->sock_id = (__u64)sk;
	st->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	st->dport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (fam == AF_INET) {
		__u32 s = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(st->saddr, &s, 4);
		__builtin_memcpy(st->daddr, &d, 4);
	} else {
		BPF_CORE_READ_INTO(&st->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&st->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
}

/* Registers and top of the user stack of the current (blocked) task. */
static __always_inline void emit_stack_top(struct pt_regs *regs, struct kd_sched_slice *st, __u64 now)
{
	__u32 zero = 0;
	struct kd_sched_ustack_top *e = bpf_map_lookup_elem(&top_scratch, &zero);
	if (!e)
		return;
	fill_header(&e->hdr, KD_EV_SCHED_USTACK_TOP, now);
	e->offcpu_start = st->offcpu_start;
	e->ip = BPF_CORE_READ(regs, ip);
	e->sp = BPF_CORE_READ(regs, sp);
	e->bp = BPF_CORE_READ(regs, bp);
	e->_pad = 0;
	e->len = KD_SCHED_USTACK_TOP;
	if (bpf_probe_read_user(e->data, KD_SCHED_USTACK_TOP, (void *)e->sp)) {
		/* Near the top of the stack mapping: take what fits in its page. */
		__u64 room = 4096 - (e->sp & 4095);
		room &= KD_SCHED_USTACK_TOP - 1;
		if (!room || bpf_probe_read_user(e->data, room, (void *)e->sp))
			return;
		e->len = room;
	}
	if (bpf_ringbuf_output(&events, e, sizeof(*e), wakeup_flag()))
		count_drop(KD_DROP_SCHED_RINGBUF_FULL);
}

static __always_inline void switch_out(void *ctx, struct task_struct *prev, bool runnable, __u64 now,
				       __u32 gen)
{
	__u32 tgid = prev->tgid;
	if (!tgid_wanted(tgid))
		return;
	__u32 tid = prev->pid;
	struct thread_state *ts = bpf_map_lookup_elem(&threads, &tid);
	if (!ts) {
		struct thread_state fresh = {};
		fresh.s.hdr.tgid = tgid;
		if (bpf_map_update_elem(&threads, &tid, &fresh, BPF_NOEXIST)) {
			count_drop(KD_DROP_SCHED_THREAD_MAP_FULL);
			return;
		}
		ts = bpf_map_lookup_elem(&threads, &tid);
		if (!ts)
			return;
	}
	struct kd_sched_slice *st = &ts->s;
	st->offcpu_start = now;
	st->wake_ts = 0;
	st->waker_tid = 0;
	st->waker_tgid = 0;
	st->sock_id = 0;
	st->fd = -1;
	st->syscall = -1;
	st->arg1 = 0;
	st->fd_kind = KD_FD_NONE;
	st->family = 0;
	st->proto = 0;
	__builtin_memset(st->saddr, 0, sizeof(st->saddr));
	__builtin_memset(st->daddr, 0, sizeof(st->daddr));
	st->sport = 0;
	st->dport = 0;
	st->flags = runnable ? KD_SLICE_PREEMPTED : 0;
	st->kstack = 0;
	st->ustack = 0;
	/* prev is still the current task here: its stacks are the ones read. */
	if (runnable || !bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs)) {
		st->kstack = stack_id(ctx, false, 0, gen);
		st->ustack = stack_id(ctx, true, 0, gen);
		return;
	}
	/* bpf_task_pt_regs is 5.15+: older kernels get slices without the syscall
	 * the thread blocked in (the call is then dead code, never verified). */
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(prev);
	long nr = regs ? BPF_CORE_READ(regs, orig_ax) : -1;
	if (nr < 0) {
		st->kstack = stack_id(ctx, false, 0, gen);
		st->ustack = stack_id(ctx, true, 0, gen);
		return;
	}
	st->syscall = nr;
	st->flags |= KD_SLICE_IN_SYSCALL;
	struct block_site here = { .nr = nr, .gen = gen, .valid = 1 };
	here.ip = BPF_CORE_READ(regs, ip);
	here.sp = BPF_CORE_READ(regs, sp);
	here.bp = BPF_CORE_READ(regs, bp);
	bpf_probe_read_user(&here.ret, sizeof(here.ret), (void *)(here.bp + 8));
	struct block_site *last = &ts->last;
	if (reuse_stacks && last->valid && last->gen == gen && last->nr == nr && last->ip == here.ip &&
	    last->sp == here.sp && last->bp == here.bp && last->ret == here.ret) {
		st->kstack = last->kstack;
		st->ustack = last->ustack;
		st->flags |= KD_SLICE_STACKS_REUSED;
	} else {
		st->kstack = stack_id(ctx, false, 0, gen);
		st->ustack = stack_id(ctx, true, 0, gen);
		here.kstack = st->kstack;
		here.ustack = st->ustack;
		*last = here;
		if (send_stack_top && st->ustack)
			emit_stack_top(regs, st, now);
	}
	st->arg1 = BPF_CORE_READ(regs, si);
	if (fd_syscall(nr)) {
		st->fd = (int)BPF_CORE_READ(regs, di);
		classify_fd(prev, st->fd, st, now, true);
	}
}

static __always_inline void switch_in(struct task_struct *next, __u64 now)
{
	__u32 tid = next->pid;
	__u32 tgid = next->tgid;
	/* Most switches are of threads not followed: one lookup decides. Entries
	 * of processes no longer followed are removed by user space
	 * (forget_threads) and at thread exit. */
	if (!tgid_wanted(tgid))
		return;
	struct thread_state *ts = bpf_map_lookup_elem(&threads, &tid);
	if (!ts) {
		/* First sight of a thread of interest: its turn on the CPU starts now. */
		struct thread_state fresh = {};
		fresh.s.hdr.tgid = tgid;
		fresh.s.oncpu_start = now;
		if (bpf_map_update_elem(&threads, &tid, &fresh, BPF_NOEXIST))
			count_drop(KD_DROP_SCHED_THREAD_MAP_FULL);
		return;
	}
	struct kd_sched_slice *st = &ts->s;
	if (st->offcpu_start) {
		struct kd_sched_slice *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (!e) {
			count_drop(KD_DROP_SCHED_RINGBUF_FULL);
		} else {
			*e = *st;
			e->hdr.ts_ns = now;
			e->hdr.kind = KD_EV_SCHED_SLICE;
			e->hdr.tgid = tgid;
			e->hdr.tid = tid;
			e->hdr.cpu = bpf_get_smp_processor_id();
			bpf_probe_read_kernel(&e->hdr.comm, sizeof(e->hdr.comm), next->comm);
			e->_pad = 0;
			bpf_ringbuf_submit(e, wakeup_flag());
		}
	}
	st->oncpu_start = now;
	st->offcpu_start = 0;
}

/* sched_switch has its prev_state argument since 5.18 (reading it earlier is
 * rejected: "invalid bpf_context access"); before, the state is the task's
 * own field, named `state` before 5.14. The version is a load-time constant,
 * so the verifier never sees the other branch. */
extern __u32 LINUX_KERNEL_VERSION __kconfig;

struct task_struct___pre514 {
	long state;
} __attribute__((preserve_access_index));

static __always_inline unsigned int prev_state_of(unsigned long long *ctx, struct task_struct *prev)
{
	if (LINUX_KERNEL_VERSION >= KERNEL_VERSION(5, 18, 0))
		return (unsigned int)ctx[3];
	if (bpf_core_field_exists(prev->__state))
		return BPF_CORE_READ(prev, __state);
	return BPF_CORE_READ((struct task_struct___pre514 *)prev, state);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(kd_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct sched_ctl *c = get_ctl();
	if (!c || !c->npids)
		return 0;
	unsigned int prev_state = prev_state_of(ctx, prev);
	__u64 now = bpf_ktime_get_ns();
	/* Runnable when it left (preempted or yielding): waiting for a CPU, not for an event. */
	switch_out(ctx, prev, preempt || prev_state == 0, now, c->stack_gen);
	switch_in(next, now);
	return 0;
}

static __always_inline void on_wakeup(struct task_struct *p, bool new_task)
{
	struct sched_ctl *c = get_ctl();
	if (!c || !c->npids)
		return;
	__u32 tid = p->pid;
	__u64 now = bpf_ktime_get_ns();
	struct thread_state *ts = bpf_map_lookup_elem(&threads, &tid);
	if (!ts) {
		if (!new_task || !tgid_wanted(p->tgid))
			return;
		/* A new thread: it waits in the run queue from now until it first runs. */
		struct thread_state fresh = {};
		fresh.s.hdr.tgid = p->tgid;
		fresh.s.offcpu_start = now;
		fresh.s.wake_ts = now;
		fresh.s.syscall = -1;
		fresh.s.fd = -1;
		__u64 id = bpf_get_current_pid_tgid();
		fresh.s.waker_tid = (__u32)id;
		fresh.s.waker_tgid = id >> 32;
		if (bpf_map_update_elem(&threads, &tid, &fresh, BPF_NOEXIST))
			count_drop(KD_DROP_SCHED_THREAD_MAP_FULL);
		return;
	}
	struct kd_sched_slice *st = &ts->s;
	if (!st->offcpu_start || st->wake_ts || (st->flags & KD_SLICE_PREEMPTED))
		return;
	__u64 id = bpf_get_current_pid_tgid();
	st->wake_ts = now;
	st->waker_tid = (__u32)id;
	st->waker_tgid = id >> 32;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(kd_sched_wakeup, struct task_struct *p)
{
	on_wakeup(p, false);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(kd_sched_wakeup_new, struct task_struct *p)
{
	on_wakeup(p, true);
	return 0;
}

/* A thread of interest exits: its last turn on the CPU (running now) would
 * never be reported by a switch-in, so it is reported here, as a slice whose
 * off-CPU part is empty. Then its state goes. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(kd_sched_exit, struct task_struct *p)
{
	__u32 tid = p->pid;
	struct thread_state *ts = bpf_map_lookup_elem(&threads, &tid);
	if (!ts)
		return 0;
	struct kd_sched_slice *st = &ts->s;
	if (st->oncpu_start && !st->offcpu_start && tgid_wanted(p->tgid)) {
		__u64 now = bpf_ktime_get_ns();
		struct kd_sched_slice *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (!e) {
			count_drop(KD_DROP_SCHED_RINGBUF_FULL);
		} else {
			*e = *st;
			e->hdr.ts_ns = now;
			e->hdr.kind = KD_EV_SCHED_SLICE;
			e->hdr.tgid = p->tgid;
			e->hdr.tid = tid;
			e->hdr.cpu = bpf_get_smp_processor_id();
			bpf_probe_read_kernel(&e->hdr.comm, sizeof(e->hdr.comm), p->comm);
			e->offcpu_start = now;
			e->wake_ts = 0;
			e->kstack = 0;
			e->ustack = 0;
			e->syscall = -1;
			e->fd = -1;
			e->flags = 0;
			e->fd_kind = KD_FD_NONE;
			e->_pad = 0;
			bpf_ringbuf_submit(e, wakeup_flag());
		}
	}
	bpf_map_delete_elem(&threads, &tid);
	return 0;
}

SEC("perf_event")
int kd_sched_sample(struct bpf_perf_event_data *ctx)
{
	struct sched_ctl *c = get_ctl();
	if (!c || !c->npids)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	if (!tgid_wanted(id >> 32))
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 k = stack_id(ctx, false, 1, c->stack_gen);
	__u64 u = stack_id(ctx, true, 1, c->stack_gen);
	struct kd_sched_sample *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(KD_DROP_SCHED_RINGBUF_FULL);
		return 0;
	}
	fill_header(&e->hdr, KD_EV_SCHED_SAMPLE, now);
	e->kstack = k;
	e->ustack = u;
	bpf_ringbuf_submit(e, wakeup_flag());
	return 0;
}

/* --- Go goroutines ------------------------------------------------------
 * User space attaches these to runtime.execute, runtime.gopark and
 * runtime.goexit1 of each followed Go executable, per process, and fills
 * `go_params` first. Register ABI (Go >= 1.17, amd64): arguments in AX, BX,
 * CX, ...; R14 always holds the running goroutine's g. So the goroutine is
 * read from the registers, exactly, with no per-thread state to keep. */
struct go_params {
	__u32 goid_off;       /* offsetof(runtime.g, goid), from the binary's DWARF */
	__u32 schedlink_off;  /* offsetof(runtime.g, schedlink) (0: unknown) */
	__u32 pd_fd_off;      /* offsetof(runtime.pollDesc, fd) (0: unknown) */
	__u32 io_wait_reason; /* the waitReason of "IO wait" (0: unknown) */
};

/* The fd a goroutine is about to wait on in the netpoller, by thread (set
 * by internal/poll.runtime_pollWait, taken by the gopark that follows). */
struct go_pollwait {
	__u64 goid;
	__s64 fd;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct go_pollwait);
} go_polls SEC(".maps");

/* Room to classify a polled fd (classify_fd fills a slice's socket fields). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kd_sched_slice);
} go_fd_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct go_params);
} go_params SEC(".maps");

/* The user stack at a function's entry (a uprobe): the frame-pointer walk
 * starts from the caller's frame pointer, which skips the caller itself; its
 * return address is at [sp], put back in as the second frame. */
static __always_inline __u64 entry_stack_id(struct pt_regs *ctx, __u32 gen)
{
	__u32 slot = 2;
	struct kd_sched_stack *s = bpf_map_lookup_elem(&stack_scratch, &slot);
	if (!s)
		return 0;
	long n = bpf_get_stack(ctx, &s->frames[1], sizeof(s->frames) - 8, BPF_F_USER_STACK);
	if (n <= 0)
		return 0;
	s->frames[0] = s->frames[1];
	if (bpf_probe_read_user(&s->frames[1], 8, (void *)ctx->sp) || !s->frames[1])
		s->frames[1] = s->frames[0];
	return stack_finish(s, n / 8 + 1, true, gen);
}

static __always_inline struct go_params *go_params_of_current(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!tgid_wanted(tgid))
		return NULL;
	struct go_params *gp = bpf_map_lookup_elem(&go_params, &tgid);
	if (!gp)
		count_drop(KD_DROP_SCHED_GO_PARAMS);
	return gp;
}

static __always_inline void go_event(struct pt_regs *ctx, __u32 kind, __u64 g, __u32 reason, bool stack)
{
	struct go_params *gp = go_params_of_current();
	if (!gp)
		return;
	__u64 goid = 0;
	if (!g || bpf_probe_read_user(&goid, sizeof(goid), (void *)(g + gp->goid_off))) {
		count_drop(KD_DROP_SCHED_GO_UNREADABLE);
		return;
	}
	__u64 ustack = 0;
	if (stack) {
		struct sched_ctl *c = get_ctl();
		if (c)
			ustack = entry_stack_id(ctx, c->stack_gen);
	}
	/* A netpoller wait: what the fd polled is (its socket's addresses). */
	struct kd_sched_slice *fdc = NULL;
	__s32 fd = -1;
	if (kind == KD_EV_SCHED_GO_PARK && gp->io_wait_reason && reason == gp->io_wait_reason) {
		__u32 tid = (__u32)bpf_get_current_pid_tgid(), zero = 0;
		struct go_pollwait *pw = bpf_map_lookup_elem(&go_polls, &tid);
		fdc = bpf_map_lookup_elem(&go_fd_scratch, &zero);
		if (pw && fdc && pw->goid == goid && pw->fd >= 0 && pw->fd < 0x7fffffff) {
			fd = (__s32)pw->fd;
			__builtin_memset(fdc, 0, sizeof(*fdc));
			classify_fd((struct task_struct *)bpf_get_current_task(), fd, fdc, 0, false);
		} else {
			fdc = NULL;
		}
		if (pw)
			bpf_map_delete_elem(&go_polls, &tid);
	}
	struct kd_sched_go *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(KD_DROP_SCHED_RINGBUF_FULL);
		return;
	}
	fill_header(&e->hdr, kind, bpf_ktime_get_ns());
	e->goid = goid;
	e->ustack = ustack;
	e->reason = reason;
	e->fd = fd;
	e->sock_id = 0;
	e->fd_kind = KD_FD_NONE;
	e->family = 0;
	e->proto = 0;
	e->_pad = 0;
	e->sport = 0;
	e->dport = 0;
	__builtin_memset(e->saddr, 0, sizeof(e->saddr));
	__builtin_memset(e->daddr, 0, sizeof(e->daddr));
	if (fdc) {
		e->sock_id = fdc->sock_id;
		e->fd_kind = fdc->fd_kind;
		e->family = fdc->family;
		e->proto = fdc->proto;
		e->sport = fdc->sport;
		e->dport = fdc->dport;
		__builtin_memcpy(e->saddr, fdc->saddr, sizeof(e->saddr));
		__builtin_memcpy(e->daddr, fdc->daddr, sizeof(e->daddr));
	}
	bpf_ringbuf_submit(e, wakeup_flag());
}

/* func poll_runtime_pollWait(pd *pollDesc, mode int) (linked as
 * internal/poll.runtime_pollWait): the running goroutine (R14) is about to
 * wait for pd's fd; the gopark that follows on this thread reports it. */
SEC("uprobe")
int BPF_KPROBE(kd_go_pollwait)
{
	struct go_params *gp = go_params_of_current();
	if (!gp || !gp->pd_fd_off || !ctx->r14 || !ctx->ax)
		return 0;
	struct go_pollwait v = { .fd = -1 };
	if (bpf_probe_read_user(&v.goid, sizeof(v.goid), (void *)(ctx->r14 + gp->goid_off)) ||
	    bpf_probe_read_user(&v.fd, sizeof(v.fd), (void *)(ctx->ax + gp->pd_fd_off)))
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	bpf_map_update_elem(&go_polls, &tid, &v, BPF_ANY);
	return 0;
}

/* func execute(gp *g, inheritTime bool): gp (AX) starts running on this thread. */
SEC("uprobe")
int BPF_KPROBE(kd_go_execute)
{
	go_event(ctx, KD_EV_SCHED_GO_RUN, ctx->ax, 0, false);
	return 0;
}

/* func gopark(unlockf, lock, reason waitReason, ...): the running goroutine
 * (R14) parks; reason in CX (a uint8). Its stack is the goroutine's own. */
SEC("uprobe")
int BPF_KPROBE(kd_go_park)
{
	go_event(ctx, KD_EV_SCHED_GO_PARK, ctx->r14, (__u8)ctx->cx, true);
	return 0;
}

/* gp (AX) becomes runnable. Attached to func ready(gp *g, traceskip int,
 * next bool) (leaves its wait: mutexes, channels, timers... not the
 * netpoller: injectglist) and to func exitsyscall0(gp *g) (via mcall: back
 * from a syscall with no P, gp goes to the global run queue). */
SEC("uprobe")
int BPF_KPROBE(kd_go_ready)
{
	go_event(ctx, KD_EV_SCHED_GO_RUNNABLE, ctx->ax, 0, false);
	return 0;
}

/* Goroutines readied together (by the netpoller) enter the run queues here. */
#define KD_GO_INJECT_MAX 32

/* func injectglist(glist *gList): a list linked by g.schedlink (AX: &list). */
SEC("uprobe")
int BPF_KPROBE(kd_go_injectglist)
{
	struct go_params *gp = go_params_of_current();
	if (!gp || !gp->schedlink_off)
		return 0;
	__u32 goid_off = gp->goid_off, link_off = gp->schedlink_off;
	__u64 g = 0;
	if (bpf_probe_read_user(&g, sizeof(g), (void *)ctx->ax))
		return 0;
	for (int i = 0; i < KD_GO_INJECT_MAX && g; i++) {
		__u64 goid = 0;
		if (bpf_probe_read_user(&goid, sizeof(goid), (void *)(g + goid_off))) {
			count_drop(KD_DROP_SCHED_GO_UNREADABLE);
			return 0;
		}
		struct kd_sched_go *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (!e) {
			count_drop(KD_DROP_SCHED_RINGBUF_FULL);
		} else {
			__builtin_memset(e, 0, sizeof(*e));
			fill_header(&e->hdr, KD_EV_SCHED_GO_RUNNABLE, bpf_ktime_get_ns());
			e->goid = goid;
			e->fd = -1;
			bpf_ringbuf_submit(e, wakeup_flag());
		}
		if (bpf_probe_read_user(&g, sizeof(g), (void *)(g + link_off)))
			return 0;
	}
	/* Longer lists: the rest stay parked until they run (counted). */
	if (g)
		count_drop(KD_DROP_SCHED_GO_INJECT_TRUNCATED);
	return 0;
}

/* func goexit1(): the running goroutine (R14) ends. */
SEC("uprobe")
int BPF_KPROBE(kd_go_exit)
{
	go_event(ctx, KD_EV_SCHED_GO_EXIT, ctx->r14, 0, false);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
