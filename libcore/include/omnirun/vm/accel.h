/* Choosing the accelerator: KVM when it really runs guests at native speed,
 * else TCG (HOSTS.md: some hosts expose a paravirtual /dev/kvm that
 * emulates every instruction). */
#ifndef OMNIRUN_ACCEL_H
#define OMNIRUN_ACCEL_H

#include <stdint.h>

#include "omnirun/state/config.h"
#include "omnirun/base/err.h"

enum omr_accel { OMR_ACCEL_TCG = 0, OMR_ACCEL_KVM = 1 };

struct omr_kvm_probe {
	int present;        /* /dev/kvm opens */
	int usable;         /* the self-test guest ran at native speed */
	uint64_t loop_ns;   /* time the self-test loop took (0 if it never ran) */
	char reason[160];   /* why it is not usable, for sbx-doctor */
};

/* Runs a tiny KVM guest (a counted loop then HLT) with a hard time limit.
 * Never fails: the outcome is in *out. */
void omr_kvm_probe(struct omr_kvm_probe *out);

/* Resolves config accel (auto|kvm|tcg) to what QEMU will use.  "kvm" when
 * KVM is not usable is an error; "auto" falls back to TCG.  *why (static or
 * NULL) says why auto chose TCG. */
int omr_accel_resolve(const struct omr_config *c, enum omr_accel *out,
		      const char **why, struct omr_err **err);
/* The same with the outcome of a probe the caller has just run (NULL: the
 * cached one, as omr_accel_resolve); *why then points into *probe. */
int omr_accel_resolve_with(const struct omr_config *c, const struct omr_kvm_probe *probe,
			   enum omr_accel *out, const char **why, struct omr_err **err);

/* The host's TSC frequency in kHz, measured against CLOCK_MONOTONIC_RAW
 * (30 ms, then cached for this boot in $run_dir), or 0 when the host's TSC
 * is not constant.  Under TCG the guest's TSC runs at this rate: a TCG
 * guest should get "tsc_early_khz=N" on its kernel command line, because
 * without it the guest's PIT calibration often fails and the boot hangs. */
unsigned omr_tcg_tsc_khz(const struct omr_config *c);


/* Runs "QEMU --version" (5 s limit, output bounded, child reaped) and
 * returns its first line in *out (malloc'ed).  Returns 0 or < 0. */
int omr_qemu_version(const char *qemu, char **out, struct omr_err **err);

#endif
