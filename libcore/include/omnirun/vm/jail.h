/* The jail every VMM runs in, set up by its monitor before exec, like
 * Firecracker's jailer (DESIGN.md §4, doc/jail.md):
 *
 *   - a uid and gid of its own from [jail] uid_base/uid_count, claimed for
 *     as long as the monitor lives and never given to two live sandboxes;
 *     no supplementary group but /dev/kvm's when KVM is used; every
 *     capability set and the bounding set empty; no_new_privs;
 *   - new mount, pid, ipc, uts, net and cgroup namespaces; root is an
 *     empty read-only tmpfs holding /usr (read-only), the lib links, the
 *     kernel and initrd (read-only) and /dev/kvm under KVM: no /proc,
 *     /sys, /etc, /var, /dev, nor any other sandbox;
 *   - an empty environment, / as working directory, RLIMIT_CORE 0;
 *   - its sockets handed over as fds (QEMU listens on them);
 *   - a cgroup of its own with the sandbox's memory, CPU, pids and I/O
 *     limits (omnirun/vm/cgroup.h);
 *   - the allow-list seccomp filter for its QEMU version, installed just
 *     before exec, under QEMU's own -sandbox.
 *
 * QEMU is the monitor's child (its real wait status reaches the monitor)
 * and PID 2 of its pid namespace; PID 1 is a tiny init: a fork of the
 * monitor, unprivileged, in seccomp strict mode, which only waits for QEMU
 * to exit (QEMU as PID 1 would ignore its own SIGABRT). */
#ifndef OMNIRUN_VM_JAIL_H
#define OMNIRUN_VM_JAIL_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

#include "omnirun/base/err.h"
#include "omnirun/state/config.h"
#include "omnirun/vm/vmm.h"

struct omr_jail;

/* Spawns the QEMU of sandbox s->sandbox_id as s says, in its jail as
 * s->config's [jail] says: listens on s's agent, QMP and bench socket
 * paths and hands them to QEMU as fds; s->console_fd is its stdout and
 * stderr; keep_from[i] becomes fd keep_to[i] (at most 8).  With [jail]
 * enable = false only the cgroup applies.  The backend's spawn
 * (omnirun/vm/vmm.h) calls it.  Returns QEMU's pid with *out set (release
 * it once QEMU is reaped), or < 0 with *err: OMR_E_LIMIT when every uid of
 * the range is taken, OMR_E_UNSUPPORTED when no cgroup is usable and
 * allow_unlimited is off. */
pid_t omr_jail_spawn(const struct omr_vmm_spec *s, const int *keep_from, const int *keep_to,
		     size_t nkeep, struct omr_jail **out, struct omr_err **err);

/* After QEMU was reaped (vmm_status: its wait status, 0 if we killed it):
 * says in the log why QEMU died when the jail knows (a system call outside
 * the seccomp list, which one; the cgroup's OOM killer), removes the
 * cgroup, gives the uid back and frees *j (NULL afterwards).  Returns an
 * end reason ("seccomp", "oom") or NULL. */
const char *omr_jail_release(struct omr_jail **j, int vmm_status);

/* What sbx-doctor shows about the jail: enabled, uid range and how many
 * are free, namespaces, seccomp (list, QEMU version), and a self-test
 * that boots the default template's kernel in the jail (new reference). */
json_t *omr_jail_report(const struct omr_config *c);

#endif
