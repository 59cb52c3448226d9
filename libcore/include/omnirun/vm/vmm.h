/* The VMM backend: QEMU's microvm machine.  One small interface so that a
 * Firecracker backend can sit beside it later. */
#ifndef OMNIRUN_VMM_H
#define OMNIRUN_VMM_H

#include <sys/types.h>

#include "omnirun/vm/accel.h"
#include "omnirun/base/err.h"
#include "omnirun/base/spawn.h"

struct omr_vmm_spec {
	const char *qemu;          /* binary (PATH lookup if no '/') */
	enum omr_accel accel;
	unsigned tb_size_mb;       /* TCG translation cache */
	unsigned cpus, memory_mb;
	const char *kernel, *initrd;
	const char *cmdline;       /* full kernel command line */
	const char *agent_sock;    /* QEMU listens here for the agent channel */
	const char *qmp_sock;      /* QMP socket (QEMU listens) */
	const char *bench_sock;    /* raw port "omnirun.bench" for benchmarks,
				      or NULL */
	int disk_fd;               /* fd number in the child for the data
				      disk (read-write; disk_fd + 1 is the
				      same file read-only), or -1 for none */
};

/* Builds QEMU's argv (NULL-terminated, malloc'ed strings; free with
 * omr_argv_free in omnirun/base/spawn.h).  No display, no default devices, no network, seccomp
 * sandbox on. */
char **omr_vmm_argv(const struct omr_vmm_spec *s);

#endif
