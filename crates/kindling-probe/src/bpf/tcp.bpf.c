// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The tcp module: TCP health per connection, from BTF tracepoints only
 * (tcp_retransmit_skb, tcp_send_reset, tcp_receive_reset, tcp_probe,
 * inet_sock_set_state, kfree_skb). Events are kd_tcp_event (kindling.h).
 *
 * These hooks run mostly in softirq context, on behalf of no particular
 * process: user space attributes them to connections by socket identity
 * (sock_id, the struct sock pointer, shared with the sockets module) and by
 * address.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "kindling.h"

#define AF_INET 2
#define AF_INET6 10
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

const volatile __u32 self_tgid = 0;
/* Packet-drop events per CPU per second; beyond it only per-reason totals. */
const volatile __u32 drop_events_per_sec = 2000;
/* The retransmit tracepoint has an `err` argument (6.x later kernels trace
 * failed attempts too); set by the loader from the tracepoint's format. */
const volatile bool retransmit_has_err = false;
/* At most one RTT sample per connection per this many ns. */
const volatile __u64 rtt_interval_ns = 1000000000ULL;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KD_DROP__MAX);
	__type(key, __u32);
	__type(value, __u64);
} drop_counts SEC(".maps");

/* Exact count of dropped packets per kernel drop reason (events are rate-limited). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} drop_totals SEC(".maps");

struct conn_times {
	__u64 syn_ts; /* SYN sent */
	__u64 est_ts; /* established */
};

/* Per connection: when its handshake started and when it was established. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct conn_times);
} conn_times SEC(".maps");

/* Per connection: when its RTT was last sampled. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} rtt_last SEC(".maps");

struct rate {
	__u64 window;
	__u32 count;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rate);
} drop_rate SEC(".maps");

/* Gives the wire struct BTF so libbpf-cargo generates its Rust type. */
struct kd_tcp_event _kd_tcp_event = {};

static __always_inline void count_drop(__u32 reason)
{
	__u64 *v = bpf_map_lookup_elem(&drop_counts, &reason);
	if (v)
		*v += 1;
}

static __always_inline struct kd_tcp_event *reserve(__u32 kind)
{
	struct kd_tcp_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(KD_DROP_RINGBUF_FULL);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	__u64 id = bpf_get_current_pid_tgid();
	e->hdr.ts_ns = bpf_ktime_get_ns();
	e->hdr.kind = kind;
	e->hdr.tgid = id >> 32;
	e->hdr.tid = (__u32)id;
	e->hdr.cpu = bpf_get_smp_processor_id();
	bpf_get_current_comm(&e->hdr.comm, sizeof(e->hdr.comm));
	e->proto = IPPROTO_TCP;
	return e;
}

static __always_inline void submit(struct kd_tcp_event *e)
{
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

/* The socket's own addresses: local end as s, peer as d. */
static __always_inline void sk_tuple(const struct sock *sk, struct kd_tcp_event *e)
{
	e->sock_id = (__u64)sk;
	e->family = sk->__sk_common.skc_family;
	e->sport = sk->__sk_common.skc_num;
	/* An aborted socket is unhashed (local port 0) before its reset is
	 * traced; the inet socket still holds the port. */
	if (!e->sport)
		e->sport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	e->dport = bpf_ntohs(sk->__sk_common.skc_dport);
	e->state = sk->__sk_common.skc_state;
	if (e->family == AF_INET) {
		__u32 s = sk->__sk_common.skc_rcv_saddr;
		__u32 d = sk->__sk_common.skc_daddr;
		__builtin_memcpy(e->saddr, &s, 4);
		__builtin_memcpy(e->daddr, &d, 4);
	} else {
		BPF_CORE_READ_INTO(&e->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
}

/* A packet's addresses from its headers: sender as s. Returns false for
 * anything but TCP or UDP over IPv4/IPv6. */
static __always_inline bool skb_tuple(const struct sk_buff *skb, struct kd_tcp_event *e)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 th = BPF_CORE_READ(skb, transport_header);
	__u16 proto = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	__u8 l4;
	if (proto == ETH_P_IP) {
		struct iphdr ip = {};
		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return false;
		if (ip.version != 4)
			return false;
		l4 = ip.protocol;
		e->family = AF_INET;
		__builtin_memcpy(e->saddr, &ip.saddr, 4);
		__builtin_memcpy(e->daddr, &ip.daddr, 4);
		if (th == (__u16)~0U || th <= nh)
			th = nh + ip.ihl * 4;
	} else if (proto == ETH_P_IPV6) {
		struct ipv6hdr ip6 = {};
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return false;
		l4 = ip6.nexthdr;
		e->family = AF_INET6;
		__builtin_memcpy(e->saddr, &ip6.saddr, 16);
		__builtin_memcpy(e->daddr, &ip6.daddr, 16);
		if (th == (__u16)~0U || th <= nh)
			th = nh + sizeof(struct ipv6hdr);
	} else {
		return false;
	}
	if (l4 != IPPROTO_TCP && l4 != IPPROTO_UDP)
		return false;
	__u16 ports[2] = {};
	if (bpf_probe_read_kernel(&ports, sizeof(ports), head + th))
		return false;
	e->proto = l4;
	e->sport = bpf_ntohs(ports[0]);
	e->dport = bpf_ntohs(ports[1]);
	return true;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(kd_tcp_retransmit, const struct sock *sk, const struct sk_buff *skb)
{
	/* Count what went out, as the kernel's RetransSegs does. */
	if (retransmit_has_err && (int)ctx[2] != 0)
		return 0;
	struct kd_tcp_event *e = reserve(KD_EV_TCP_RETRANSMIT);
	if (!e)
		return 0;
	sk_tuple(sk, e);
	/* A retransmitted skb can carry several segments (TSO), as the kernel counts them. */
	struct tcp_skb_cb *tcb = (struct tcp_skb_cb *)&skb->cb[0];
	__u16 segs = BPF_CORE_READ(tcb, tcp_gso_segs);
	e->a = segs ? segs : 1;
	submit(e);
	return 0;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(kd_tcp_send_reset, const struct sock *sk, const struct sk_buff *skb)
{
	struct kd_tcp_event *e = reserve(KD_EV_TCP_RESET);
	if (!e)
		return 0;
	e->flags = 1;
	if (sk) {
		sk_tuple(sk, e);
	} else if (!skb || !skb_tuple(skb, e)) {
		bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
		return 0;
	} else {
		/* No socket (a SYN to a closed port): the packet that caused the
		 * reset came from the peer; report our end first. */
		struct kd_tcp_event t = *e;
		__builtin_memcpy(e->saddr, t.daddr, 16);
		__builtin_memcpy(e->daddr, t.saddr, 16);
		e->sport = t.dport;
		e->dport = t.sport;
	}
	submit(e);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(kd_tcp_receive_reset, struct sock *sk)
{
	struct kd_tcp_event *e = reserve(KD_EV_TCP_RESET);
	if (!e)
		return 0;
	sk_tuple(sk, e);
	e->flags = 0;
	submit(e);
	return 0;
}

SEC("tp_btf/tcp_probe")
int BPF_PROG(kd_tcp_probe, struct sock *sk, struct sk_buff *skb)
{
	/* Every ACK of every connection lands here: sample at most once a second. */
	__u64 key = (__u64)sk;
	__u64 now = bpf_ktime_get_ns();
	__u64 *last = bpf_map_lookup_elem(&rtt_last, &key);
	if (last && now - *last < rtt_interval_ns)
		return 0;
	if (bpf_map_update_elem(&rtt_last, &key, &now, BPF_ANY))
		count_drop(KD_DROP_TCP_MAP_FULL);
	struct kd_tcp_event *e = reserve(KD_EV_TCP_RTT);
	if (!e)
		return 0;
	sk_tuple(sk, e);
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	e->a = BPF_CORE_READ(tp, srtt_us) >> 3;
	e->b = BPF_CORE_READ(tp, mdev_us) >> 2;
	e->c = BPF_CORE_READ(tp, snd_cwnd);
	e->d = BPF_CORE_READ(tp, total_retrans);
	submit(e);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(kd_tcp_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u64 key = (__u64)sk;
	__u64 now = bpf_ktime_get_ns();
	if (newstate == TCP_SYN_SENT) {
		struct conn_times t = { .syn_ts = now };
		if (bpf_map_update_elem(&conn_times, &key, &t, BPF_ANY))
			count_drop(KD_DROP_TCP_MAP_FULL);
		return 0;
	}
	struct conn_times *t = bpf_map_lookup_elem(&conn_times, &key);
	if (oldstate == TCP_SYN_SENT) {
		/* The end of our connection attempt. */
		struct kd_tcp_event *e = reserve(KD_EV_TCP_CONNECT);
		if (e) {
			sk_tuple(sk, e);
			e->state = oldstate;
			if (newstate == TCP_ESTABLISHED) {
				e->a = 0;
			} else {
				int err = BPF_CORE_READ(sk, sk_err);
				e->a = err > 0 ? err : 111;
			}
			e->c = t && t->syn_ts ? now - t->syn_ts : 0;
			submit(e);
		}
	}
	if (newstate == TCP_ESTABLISHED) {
		struct conn_times n = { .syn_ts = t ? t->syn_ts : 0, .est_ts = now };
		if (bpf_map_update_elem(&conn_times, &key, &n, BPF_ANY))
			count_drop(KD_DROP_TCP_MAP_FULL);
		return 0;
	}
	if (newstate != TCP_CLOSE)
		return 0;
	if (oldstate != TCP_SYN_SENT && oldstate != TCP_LISTEN && oldstate != TCP_CLOSE) {
		/* A connection that was established ends: its summary. */
		struct kd_tcp_event *e = reserve(KD_EV_TCP_CLOSE);
		if (e) {
			sk_tuple(sk, e);
			e->state = oldstate;
			struct tcp_sock *tp = (struct tcp_sock *)sk;
			e->a = BPF_CORE_READ(tp, total_retrans);
			e->b = BPF_CORE_READ(tp, srtt_us) >> 3;
			e->c = BPF_CORE_READ(tp, bytes_acked);
			e->d = BPF_CORE_READ(tp, bytes_received);
			e->e = t && t->est_ts ? now - t->est_ts : 0;
			submit(e);
		}
	}
	bpf_map_delete_elem(&conn_times, &key);
	bpf_map_delete_elem(&rtt_last, &key);
	return 0;
}

/* Whether this CPU may still emit a packet-drop event in the current second. */
static __always_inline bool drop_event_allowed(void)
{
	__u32 zero = 0;
	struct rate *r = bpf_map_lookup_elem(&drop_rate, &zero);
	if (!r)
		return false;
	__u64 window = bpf_ktime_get_ns() / 1000000000ULL;
	if (r->window != window) {
		r->window = window;
		r->count = 0;
	}
	if (r->count >= drop_events_per_sec)
		return false;
	r->count++;
	return true;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(kd_kfree_skb, struct sk_buff *skb, void *location)
{
	/* The drop reason argument exists since 5.17. */
	__u32 reason = 0;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_NOT_SPECIFIED))
		reason = (__u32)ctx[2];
	/* 0/1: not a drop (consumed). */
	if (reason <= 1)
		return 0;
	struct kd_tcp_event probe = {};
	if (!skb_tuple(skb, &probe))
		return 0;
	__u32 k = reason & 255;
	__u64 *total = bpf_map_lookup_elem(&drop_totals, &k);
	if (total)
		*total += 1;
	if (!drop_event_allowed()) {
		count_drop(KD_DROP_TCP_RATE_LIMITED);
		return 0;
	}
	struct kd_tcp_event *e = reserve(KD_EV_TCP_DROP);
	if (!e)
		return 0;
	__builtin_memcpy(e->saddr, probe.saddr, 16);
	__builtin_memcpy(e->daddr, probe.daddr, 16);
	e->sport = probe.sport;
	e->dport = probe.dport;
	e->family = probe.family;
	e->proto = probe.proto;
	e->sock_id = (__u64)BPF_CORE_READ(skb, sk);
	e->a = reason;
	submit(e);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
