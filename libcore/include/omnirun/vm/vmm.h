/* The VMM backend, behind a small ops struct (the way crun puts cgroup
 * managers behind struct libcrun_cgroup_manager): QEMU's microvm machine
 * today, a Firecracker backend beside it later.  The monitor holds one
 * struct omr_vmm per sandbox and calls through its ops only. */
#ifndef OMNIRUN_VMM_H
#define OMNIRUN_VMM_H

#include <jansson.h>
#include <sys/types.h>

#include "omnirun/vm/accel.h"
#include "omnirun/base/err.h"
#include "omnirun/base/spawn.h"

/* What to run.  Paths are the host's; fds are the caller's. */
struct omr_vmm_spec {
	const char *qemu;          /* binary (PATH lookup if no '/') */
	enum omr_accel accel;
	unsigned tb_size_mb;       /* TCG translation cache */
	unsigned cpus, memory_mb;
	const char *kernel, *initrd;
	const char *cmdline;       /* full kernel command line */
	const char *agent_sock;    /* the VMM listens here for the agent channel */
	const char *qmp_sock;      /* its control socket (QEMU: QMP; it listens) */
	const char *bench_sock;    /* raw port "omnirun.bench" for benchmarks,
				      or NULL */
	int disk_fd;               /* the data disk, open read-write, or -1 */
	int console_fd;            /* the VMM's stdout and stderr (the guest's
				      console), or -1 for ours */
	int tap_fd;                /* the guest NIC's tap, or -1 for no NIC:
				      always an fd, never a name (the VMM
				      may live in a namespace of its own) */
	const char *mac;           /* that NIC's MAC address */
};

struct omr_vmm;

struct omr_vmm_ops {
	const char *name;
	/* Starts the VMM for s as our child; sets vm->pid.  Returns 0 or < 0
	 * with *err. */
	int (*spawn)(struct omr_vmm *vm, const struct omr_vmm_spec *s, struct omr_err **err);
	/* Stops and restarts the guest's CPUs (the process stays). */
	int (*pause)(struct omr_vmm *vm, struct omr_err **err);
	int (*resume)(struct omr_vmm *vm, struct omr_err **err);
	/* Saves the paused guest's device state to path / starts from one. */
	int (*snapshot)(struct omr_vmm *vm, const char *path, struct omr_err **err);
	int (*restore)(struct omr_vmm *vm, const char *path, struct omr_err **err);
};

/* One VMM instance. */
struct omr_vmm {
	const struct omr_vmm_ops *ops;
	pid_t pid;                 /* the VMM process once spawned, else -1 */
	char *control;             /* its control socket (malloc'ed), or NULL */
	unsigned control_timeout_ms; /* bound on one control command */
};

/* QEMU: spawn builds the command line below and starts it with the data
 * disk as fds 3 (read-write) and 4 (read-only) and the console on
 * stdout; pause and resume are QMP "stop" and "cont"; snapshot and
 * restore answer OMR_E_UNSUPPORTED for now (they will be QMP migrate to
 * a file descriptor, see HOSTS.md). */
extern const struct omr_vmm_ops omr_vmm_qemu_ops;

/* The backend called name ("qemu"), or NULL. */
const struct omr_vmm_ops *omr_vmm_ops_find(const char *name);

/* Sets vm up for ops (no process yet). */
void omr_vmm_init(struct omr_vmm *vm, const struct omr_vmm_ops *ops);
/* Frees what vm holds (it does not kill the VMM). */
void omr_vmm_release(struct omr_vmm *vm);

/* Calls vm->ops.  Each returns 0 or < 0 with *err. */
int omr_vmm_spawn(struct omr_vmm *vm, const struct omr_vmm_spec *s, struct omr_err **err);
int omr_vmm_pause(struct omr_vmm *vm, struct omr_err **err);
int omr_vmm_resume(struct omr_vmm *vm, struct omr_err **err);
int omr_vmm_snapshot(struct omr_vmm *vm, const char *path, struct omr_err **err);
int omr_vmm_restore(struct omr_vmm *vm, const char *path, struct omr_err **err);

/* The fds the data disk gets in QEMU (read-write; read-only), and the tap. */
#define OMR_VMM_DISK_FD 3
#define OMR_VMM_DISK_RO_FD 4
#define OMR_VMM_TAP_FD 5

/* Builds QEMU's argv (NULL-terminated, malloc'ed strings; free with
 * omr_argv_free in omnirun/base/spawn.h) for s: the disk, when
 * s->disk_fd >= 0, is OMR_VMM_DISK_FD and OMR_VMM_DISK_RO_FD in the
 * child, the tap (s->tap_fd >= 0) OMR_VMM_TAP_FD behind a virtio-net
 * device.  No display, no default devices, seccomp sandbox on. */
char **omr_vmm_argv(const struct omr_vmm_spec *s);

/* QMP, QEMU's control protocol, over the Unix socket at path: connects,
 * negotiates, runs cmd with args (may be NULL) and waits for its answer,
 * skipping events, all within timeout_ms.  *ret (if not NULL) gets the
 * "return" value.  An "error" answer is OMR_E_FAIL with its description.
 * Returns 0 or < 0 with *err. */
int omr_qmp_command(const char *path, const char *cmd, json_t *args, unsigned timeout_ms,
		    json_t **ret, struct omr_err **err);

#endif
