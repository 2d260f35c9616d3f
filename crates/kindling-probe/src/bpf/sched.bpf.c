// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The sched module. See crates/kindling-probe/src/sched.rs. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kindling.h"

const volatile __u32 self_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KD_DROP__MAX);
	__type(key, __u32);
	__type(value, __u64);
} drop_counts SEC(".maps");

char LICENSE[] SEC("license") = "Dual BSD/GPL";
