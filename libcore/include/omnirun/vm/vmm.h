/* The VMM backend, behind a small ops struct (the way crun puts cgroup
 * managers behind struct libcrun_cgroup_manager): QEMU's microvm machine
 * today, a Firecracker backend beside it later.  The monitor holds one
 * struct omr_vmm per sandbox and calls through its ops only. */
#ifndef OMNIRUN_VMM_H
#define OMNIRUN_VMM_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "omnirun/vm/accel.h"
#include "omnirun/base/err.h"
#include "omnirun/base/spawn.h"

struct omr_config;
struct omr_sandbox;
struct omr_jail;

/* What to run.  Paths are the host's; fds are the caller's. */
struct omr_vmm_spec {
	const char *qemu;          /* binary (PATH lookup if no '/') */
	enum omr_accel accel;
	unsigned tb_size_mb;       /* TCG translation cache */
	unsigned cpus, memory_mb;
	const char *kernel, *initrd;
	const char *cmdline;       /* full kernel command line */
	const char *firmware;      /* -bios: qboot (omr_vmm_firmware), which
				      loads -kernel itself; NULL: QEMU's
				      default, with its option ROMs */
	const char *agent_sock;    /* the VMM listens here for the agent channel */
	const char *qmp_sock;      /* its control socket (QEMU: QMP; it listens) */
	const char *bench_sock;    /* raw port "omnirun.bench" for benchmarks,
				      or NULL */
	int disk_fd;               /* the data disk, open read-write, or -1 */
	const char *rootfs;        /* a template's root image (opened read-only
				      by spawn; QEMU keeps that fd, so a
				      rebuilt template does not disturb it),
				      or NULL */
	int console_fd;            /* the VMM's stdout and stderr (the guest's
				      console), or -1 for ours */
	int tap_fd;                /* the guest NIC's tap, or -1 for no NIC:
				      always an fd, never a name (the VMM
				      may live in a namespace of its own) */
	const char *mac;           /* that NIC's MAC address */
	/* The jail (omnirun/vm/jail.h) and the sandbox it is for: with a
	 * config, spawn jails the VMM as [jail] says; NULL runs it bare. */
	const struct omr_config *config;
	const char *sandbox_id;
	unsigned processes;        /* guest-wide process limit for commands
				      (omnirun.pids=), 0: the agent's own */
	/* Set by the jail, which listens on the sockets itself and hands
	 * them over: fd numbers in the child (0: QEMU binds the path). */
	int agent_fd, qmp_fd, bench_fd;
	unsigned thread_pool_max;  /* QEMU's I/O worker threads, 0: QEMU's
				      default (64) */
	/* Snapshots (vm/snapshot.h).  mem_path: guest RAM in this file
	 * instead of anonymous memory; mem_shared 1 maps it shared (the
	 * template being saved writes into it), 0 read-only and private
	 * (a clone: copy-on-write, the file is never written). */
	const char *mem_path;
	int mem_shared;
	/* 1: anonymous RAM, but as the "mem" backend a restored sandbox's
	 * file has (a fork of one must have its source's RAM layout). */
	int mem_anon_backend;
	/* > 0: start from this device state (QEMU: -incoming fd), without
	 * kernel, initrd or command line.  0 or -1: boot the kernel (fd 0 is
	 * never a state file, so a spec that does not name one boots). */
	int incoming_fd;
	/* The template being saved: a data disk device with no backing of
	 * its own (zeroes) of this size, and a NIC with no peer, so that a
	 * clone's device layout is a cold boot's. */
	unsigned disk_placeholder_mb;
	int nic_placeholder;
};

/* Host usage of a running sandbox; -1 where unknown. */
struct omr_vmm_usage {
	int64_t cpu_ns;            /* CPU time of its cgroup (or of QEMU) */
	int64_t memory_bytes;      /* its cgroup's memory (or QEMU's RSS) */
	int64_t disk_bytes;        /* host blocks its data disk takes */
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
	/* Starts saving the stopped guest whole (memory and devices) into
	 * fd (a file, or a pipe the caller drains); save_wait waits until
	 * the VMM says it is complete. */
	int (*save_start)(struct omr_vmm *vm, int fd, struct omr_err **err);
	int (*save_wait)(struct omr_vmm *vm, struct omr_err **err);
	/* Starts the guest from the state the spawn's incoming_fd holds;
	 * shared: the state left shared RAM out (a template's snapshot). */
	int (*restore)(struct omr_vmm *vm, int shared, struct omr_err **err);
};

/* One VMM instance. */
struct omr_vmm {
	const struct omr_vmm_ops *ops;
	pid_t pid;                 /* the VMM process once spawned, else -1 */
	char *control;             /* its control socket (malloc'ed), or NULL */
	unsigned control_timeout_ms; /* bound on one control command */
	struct omr_jail *jail;     /* its jail while it runs, or NULL */
};

/* QEMU: spawn builds the command line below and starts it with the data
 * disk as fds 3 (read-write) and 4 (read-only) and the console on
 * stdout, in its jail when the spec names a config; pause and resume are
 * QMP "stop" and "cont"; save and restore are QMP migrations to and from
 * a file descriptor (HOSTS.md). */
extern const struct omr_vmm_ops omr_vmm_qemu_ops;

/* The backend called name ("qemu"), or NULL. */
const struct omr_vmm_ops *omr_vmm_ops_find(const char *name);

/* Sets vm up for ops (no process yet). */
void omr_vmm_init(struct omr_vmm *vm, const struct omr_vmm_ops *ops);
/* Once the VMM was reaped (status: its wait status, 0 when we killed
 * it): releases its jail (cgroup, uid) and says why it died when the jail
 * knows ("seccomp", "oom"; the reason is logged), else NULL. */
const char *omr_vmm_reaped(struct omr_vmm *vm, int status);
/* Frees what vm holds (it does not kill the VMM). */
void omr_vmm_release(struct omr_vmm *vm);

/* Calls vm->ops.  Each returns 0 or < 0 with *err. */
int omr_vmm_spawn(struct omr_vmm *vm, const struct omr_vmm_spec *s, struct omr_err **err);
int omr_vmm_pause(struct omr_vmm *vm, struct omr_err **err);
int omr_vmm_resume(struct omr_vmm *vm, struct omr_err **err);
int omr_vmm_save(struct omr_vmm *vm, int fd, struct omr_err **err);  /* start + wait */
int omr_vmm_save_start(struct omr_vmm *vm, int fd, struct omr_err **err);
int omr_vmm_save_wait(struct omr_vmm *vm, struct omr_err **err);
int omr_vmm_restore(struct omr_vmm *vm, int shared, struct omr_err **err);

/* The fds the data disk gets in QEMU (read-write; read-only), and the tap. */
#define OMR_VMM_DISK_FD 3
#define OMR_VMM_DISK_RO_FD 4
#define OMR_VMM_TAP_FD 5
#define OMR_VMM_ROOTFS_FD 6
#define OMR_VMM_INCOMING_FD 7
/* The NIC of a template being snapshotted (no peer); a clone's guest
 * gives its NIC the sandbox's own MAC (the identity op). */
#define OMR_VMM_TEMPLATE_MAC "52:54:00:00:00:01"
#define OMR_STR_(x) #x
#define OMR_STR(x) OMR_STR_(x)

/* The firmware a microvm guest boots with: qboot.rom from the QEMU's
 * own data directory (PREFIX/share/qemu beside PREFIX/bin, the binary's
 * realpath), else /usr/share/qemu/qboot.rom; NULL when there is none.
 * qemu: a path, or a name looked up in PATH.  Debian's 7.2 gives microvm
 * qboot by default, its 10.0 SeaBIOS, which does not load -kernel without
 * option ROMs: naming qboot makes every QEMU boot the same way (and a
 * snapshot's ROM the same).  Returns a malloc'ed path or NULL. */
char *omr_vmm_firmware(const char *qemu);

/* QMP: leave shared RAM out of migration streams (both sides must). */
int omr_vmm_qemu_set_ignore_shared(const char *qmp, unsigned ms, struct omr_err **err);
/* QMP: waits (bounded) for the migration under way to complete. */
int omr_vmm_qemu_wait_migrated(const char *qmp, unsigned ms, struct omr_err **err);

/* Builds QEMU's argv (NULL-terminated, malloc'ed strings; free with
 * omr_argv_free in omnirun/base/spawn.h) for s: the disk, when
 * s->disk_fd >= 0, is OMR_VMM_DISK_FD and OMR_VMM_DISK_RO_FD in the
 * child, the tap (s->tap_fd >= 0) OMR_VMM_TAP_FD behind a virtio-net
 * device, the root image (s->rootfs) OMR_VMM_ROOTFS_FD, read-only.  The
 * disks carry serials the agent finds them by (omnirun-data,
 * omnirun-root): with two, /dev/vdX order is not the host's.  No display, no default devices, seccomp sandbox on. */
char **omr_vmm_argv(const struct omr_vmm_spec *s);

/* QMP, QEMU's control protocol, over the Unix socket at path: connects,
 * negotiates, runs cmd with args (may be NULL) and waits for its answer,
 * skipping events, all within timeout_ms.  *ret (if not NULL) gets the
 * "return" value.  An "error" answer is OMR_E_FAIL with its description.
 * args is taken (json_pack's result can be passed as it is).
 * Returns 0 or < 0 with *err. */
int omr_qmp_command(const char *path, const char *cmd, json_t *args, unsigned timeout_ms,
		    json_t **ret, struct omr_err **err);
/* The same, with fd handed to QEMU first ("getfd" as fdname, on the same
 * connection: commands such as "migrate fd:NAME" find it there). */
int omr_qmp_command_fd(const char *path, const char *fdname, int fd, const char *cmd,
		       json_t *args, unsigned timeout_ms, json_t **ret, struct omr_err **err);

/* The same on an event loop, without blocking it (the monitor pauses and
 * resumes its VMM while it serves): connects at once, then the greeting,
 * negotiation, cmd and its answer come as the loop turns.  done is called
 * exactly once (unless the call is cancelled first): with the "return"
 * value (borrowed) and NULL, or NULL and the error (borrowed; kind
 * timeout after timeout_ms).  Returns the call, or NULL with *err when
 * it could not even connect (done is then never called). */
struct omr_loop;
struct omr_qmp_call;
typedef void (*omr_qmp_done_fn)(void *user, json_t *ret, struct omr_err *err);
struct omr_qmp_call *omr_qmp_call_start(struct omr_loop *l, const char *path, const char *cmd,
					json_t *args, unsigned timeout_ms, omr_qmp_done_fn done,
					void *user, struct omr_err **err);
/* Drops a call that has not finished: done is not called. */
void omr_qmp_call_cancel(struct omr_qmp_call *call);

/* Fills *u for a live sandbox (cgroup counters, QEMU's fds in /proc:
 * needs root or the sandbox's uid).  Never fails: unknowns are -1. */
void omr_vmm_usage(const struct omr_config *c, const struct omr_sandbox *sb,
		   struct omr_vmm_usage *u);

#endif
