/* QEMU microvm command line and process spawning; see omnirun/vmm.h. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/proto.h"
#include "omnirun/base/util.h"
#include "omnirun/vm/vmm.h"

#define SPAWN_KEEP_MAX 16

struct argv_buf {
	char **v;
	size_t n, cap;
};

static void add(struct argv_buf *a, const char *s)
{
	if (a->n + 2 > a->cap) {
		a->cap = a->cap ? a->cap * 2 : 32;
		a->v = omr_xrealloc(a->v, a->cap * sizeof(char *));
	}
	a->v[a->n++] = omr_xstrdup(s);
	a->v[a->n] = NULL;
}

static void addf2(struct argv_buf *a, const char *opt, char *val_owned)
{
	add(a, opt);
	add(a, val_owned);
	free(val_owned);
}

char **omr_vmm_argv(const struct omr_vmm_spec *s)
{
	struct argv_buf a = { 0 };

	add(&a, s->qemu);
	/* microvm: no PCI, no firmware ROMs; the legacy PIT/PIC/RTC are
	 * needed for TSC calibration under TCG (HOSTS.md). */
	add(&a, "-M");
	add(&a, "microvm,x-option-roms=off,isa-serial=on,rtc=on,pit=on,pic=on");
	if (s->accel == OMR_ACCEL_KVM) {
		add(&a, "-accel");
		add(&a, "kvm");
		add(&a, "-cpu");
		add(&a, "host");
	} else {
		addf2(&a, "-accel", omr_strdup_printf("tcg,tb-size=%u", s->tb_size_mb));
		add(&a, "-cpu");
		add(&a, "max");
	}
	addf2(&a, "-smp", omr_strdup_printf("%u", s->cpus));
	addf2(&a, "-m", omr_strdup_printf("%u", s->memory_mb));
	add(&a, "-nodefaults");
	add(&a, "-no-user-config");
	add(&a, "-display");
	add(&a, "none");
	add(&a, "-no-reboot");
	/* The console goes to QEMU's stdout, which the monitor caps. */
	add(&a, "-serial");
	add(&a, "stdio");
	add(&a, "-kernel");
	add(&a, s->kernel);
	add(&a, "-initrd");
	add(&a, s->initrd);
	add(&a, "-append");
	add(&a, s->cmdline);
	add(&a, "-device");
	add(&a, "virtio-serial-device");
	addf2(&a, "-chardev",
	      omr_strdup_printf("socket,id=agent,path=%s,server=on,wait=off", s->agent_sock));
	add(&a, "-device");
	add(&a, "virtserialport,chardev=agent,name=" OMR_AGENT_PORT);
	if (s->bench_sock) {
		/* A second port with no protocol: the floor bench/exec
		 * measures the protocol against. */
		addf2(&a, "-chardev",
		      omr_strdup_printf("socket,id=bench,path=%s,server=on,wait=off", s->bench_sock));
		add(&a, "-device");
		add(&a, "virtserialport,chardev=bench,name=omnirun.bench");
	}
	add(&a, "-object");
	add(&a, "rng-random,id=rng0,filename=/dev/urandom");
	add(&a, "-device");
	add(&a, "virtio-rng-device,rng=rng0");
	if (s->disk_fd >= 0) {
		/* The disk is an unlinked file handed over by fd: nothing on
		 * the host names it, and it is gone with the last fd.  No
		 * locking: it would want a second, read-only fd. */
		addf2(&a, "-add-fd", omr_strdup_printf("fd=%d,set=1", s->disk_fd));
		addf2(&a, "-add-fd", omr_strdup_printf("fd=%d,set=1", s->disk_fd + 1));
		add(&a, "-drive");
		/* The disk is sparse: when the host's filesystem fills up, the
		 * guest gets I/O errors instead of the VM being paused. */
		add(&a, "if=none,id=data,file=/dev/fdset/1,format=raw,file.locking=off,"
			"cache=writeback,discard=unmap,werror=report,rerror=report");
		add(&a, "-device");
		add(&a, "virtio-blk-device,drive=data");
	}
	addf2(&a, "-qmp", omr_strdup_printf("unix:%s,server=on,wait=off", s->qmp_sock));
	add(&a, "-sandbox");
	add(&a, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
	return a.v;
}
