/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Counting into a map whose keys the programs make, one definition for every such map. */
#ifndef SOCKSCOPE_COUNT_H
#define SOCKSCOPE_COUNT_H

/* insert_or_find makes key's element (from zero) when it does not exist yet, and returns it. Two
 * CPUs may make the same new key at once: the insert of the one that loses fails with -EEXIST,
 * and the lookup after it finds the winner's element, so both calls count. NULL only when the
 * map is full (or Go deleted the key meanwhile). */
static __always_inline void *insert_or_find(void *map, void *key, void *zero)
{
	bpf_map_update_elem(map, key, zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, key);
}

#endif
