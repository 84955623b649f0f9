/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Shared between bpf/export.bpf.c and loader/export.go (via bpf2go): the key of the exporter's
 * one counter map. loader/layout_test.go guards the Go twin's size. */
#ifndef SOCKSCOPE_EXPORT_H
#define SOCKSCOPE_EXPORT_H

/* What a counter counts; arg's meaning depends on it. */
enum counter_kind {
	KIND_TRANSITION = 1, /* arg = from << 8 | to */
	KIND_CONNECT = 2,    /* arg = errno of the outcome, 0 = success */
	KIND_DURATION = 3,   /* arg = histogram bucket (NBUCKETS = above the last bound) */
	KIND_DURATION_SUM = 4, /* nanoseconds, arg = 0 */
	KIND_RETRANSMIT = 5,
	KIND_RESET_SENT = 6,
	KIND_RESET_RECEIVED = 7,
};

#define NBUCKETS 18

struct counter_key {
	__u32 netns;
	__u16 kind;
	__u16 arg;
};

/* Indexes of the per-CPU `lost` array: updates that found a map full. */
enum lost_reason {
	LOST_COUNTERS_FULL = 0,
	LOST_HANDSHAKES_FULL = 1,
	NLOST = 2,
};

#endif
