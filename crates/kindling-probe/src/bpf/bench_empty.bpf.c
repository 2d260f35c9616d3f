// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The same syscall hooks as kindling.bpf.c with empty bodies. `make bench`
 * measures the cost the hook itself adds (the floor) with this object, so the
 * ratio "our programs / empty programs" shows what our code costs (target P3).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define EMPTY(name)                                                        \
	SEC("tracepoint/syscalls/sys_enter_" #name)                        \
	int empty_enter_##name(void *ctx) { return 0; }                    \
	SEC("tracepoint/syscalls/sys_exit_" #name)                         \
	int empty_exit_##name(void *ctx) { return 0; }

EMPTY(read)
EMPTY(write)
EMPTY(readv)
EMPTY(writev)
EMPTY(sendto)
EMPTY(recvfrom)
EMPTY(sendmsg)
EMPTY(recvmsg)
EMPTY(sendmmsg)
EMPTY(recvmmsg)
EMPTY(sendfile64)
EMPTY(connect)
EMPTY(accept)
EMPTY(accept4)

SEC("tracepoint/syscalls/sys_enter_close")
int empty_enter_close(void *ctx) { return 0; }

char LICENSE[] SEC("license") = "Dual BSD/GPL";
