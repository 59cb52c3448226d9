/* Choosing the accelerator; see omnirun/accel.h.
 *
 * The KVM self-test: a one-vCPU VM with 64 KiB of memory runs, in real
 * mode, "mov ecx, N; 1: dec ecx; jnz 1b; hlt".  Natively that is tens of
 * microseconds; on a nested paravirtual KVM (HOSTS.md) every instruction is
 * emulated and the loop takes hundreds of milliseconds, which is where a
 * Linux guest would be slower than TCG.  A one-shot timer aimed at this
 * thread interrupts KVM_RUN (EINTR) so the probe never hangs. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "omnirun/vm/accel.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/util.h"
#include "omnirun/vm/vmm.h"

#define GUEST_MEM      (64 * 1024)
#define GUEST_CODE     0x1000
#define LOOP_COUNT     100000
#define NATIVE_MAX_NS  (20ull * 1000 * 1000)    /* "well under" is ~0.1 ms */
#define GUARD_NS       (200ull * 1000 * 1000)
#define PROBE_SIGNAL   SIGALRM

static const unsigned char guest_code[] = {
	0x66, 0xb9, LOOP_COUNT & 0xff, (LOOP_COUNT >> 8) & 0xff,
	(LOOP_COUNT >> 16) & 0xff, (LOOP_COUNT >> 24) & 0xff,  /* mov ecx, N */
	0x66, 0x49,                                            /* 1: dec ecx */
	0x75, 0xfc,                                            /* jnz 1b */
	0xf4,                                                  /* hlt */
};

static volatile sig_atomic_t probe_fired;

static void probe_alarm(int sig)
{
	(void)sig;
	probe_fired = 1;  /* being delivered is the point: KVM_RUN sees EINTR */
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

__attribute__((format(printf, 2, 3)))
static void why(struct omr_kvm_probe *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->reason, sizeof(p->reason), fmt, ap);
	va_end(ap);
}

static int ioctl_retry(int fd, unsigned long req, unsigned long arg)
{
	int r;

	do
		r = ioctl(fd, req, arg);
	while (r < 0 && errno == EINTR);
	return r;
}

/* Runs the vCPU under the guard timer.  Returns 0 when it reached HLT. */
static int run_guarded(struct omr_kvm_probe *p, int vcpu, struct kvm_run *run)
{
	struct sigaction sa = { .sa_handler = probe_alarm }, old_sa;
	struct sigevent sev = { 0 };
	struct itimerspec its = { 0 };
	sigset_t unblock, old_mask;
	timer_t timer;
	uint64_t t0;
	int rc = -1, r = 0, e = 0;

	/* No SA_RESTART: the ioctl must come back with EINTR. */
	sigemptyset(&sa.sa_mask);
	if (sigaction(PROBE_SIGNAL, &sa, &old_sa) < 0) {
		why(p, "cannot install the probe's signal handler: %s", strerror(errno));
		return -1;
	}
	/* Aimed at this thread, so other threads' signal handling is untouched
	 * and the process's own itimers are not disturbed. */
	sev.sigev_notify = SIGEV_THREAD_ID;
	sev.sigev_signo = PROBE_SIGNAL;
	sev._sigev_un._tid = gettid();
	if (timer_create(CLOCK_MONOTONIC, &sev, &timer) < 0) {
		why(p, "cannot create the probe's timer: %s", strerror(errno));
		sigaction(PROBE_SIGNAL, &old_sa, NULL);
		return -1;
	}
	sigemptyset(&unblock);
	sigaddset(&unblock, PROBE_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &unblock, &old_mask);

	probe_fired = 0;
	its.it_value.tv_sec = GUARD_NS / 1000000000ull;
	its.it_value.tv_nsec = GUARD_NS % 1000000000ull;
	t0 = mono_ns();
	if (timer_settime(timer, 0, &its, NULL) < 0) {
		why(p, "cannot arm the probe's timer: %s", strerror(errno));
		goto out;
	}
	for (;;) {
		r = ioctl(vcpu, KVM_RUN, 0);
		e = errno;
		if (r == 0 || e != EINTR || probe_fired)
			break;
		/* Some other signal: the guard timer still bounds the retry. */
	}
	p->loop_ns = mono_ns() - t0;
	if (r < 0 && e == EINTR) {
		why(p, "self-test guest did not finish within %llu ms (native: well under 1 ms)",
		    (unsigned long long)(GUARD_NS / 1000000));
	} else if (r < 0) {
		why(p, "KVM_RUN failed: %s", strerror(e));
	} else if (run->exit_reason != KVM_EXIT_HLT) {
		why(p, "self-test guest stopped with KVM exit reason %u instead of HLT",
		    run->exit_reason);
	} else {
		rc = 0;
	}
out:
	/* Disarm before restoring: a late expiry is then delivered to our
	 * handler while still unblocked, never to the caller's. */
	timer_delete(timer);
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	sigaction(PROBE_SIGNAL, &old_sa, NULL);
	return rc;
}

static void probe_vm(struct omr_kvm_probe *p, int kvm)
{
	_cleanup_close_ int vm = -1, vcpu = -1;
	struct kvm_userspace_memory_region region = { 0 };
	struct kvm_sregs sregs;
	struct kvm_regs regs = { 0 };
	struct kvm_run *run = MAP_FAILED;
	void *mem = MAP_FAILED;
	int run_size;

	vm = ioctl_retry(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) {
		why(p, "KVM_CREATE_VM failed: %s", strerror(errno));
		return;
	}
	mem = mmap(NULL, GUEST_MEM, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED) {
		why(p, "cannot map guest memory: %s", strerror(errno));
		return;
	}
	memcpy((char *)mem + GUEST_CODE, guest_code, sizeof(guest_code));
	region.slot = 0;
	region.guest_phys_addr = 0;
	region.memory_size = GUEST_MEM;
	region.userspace_addr = (uintptr_t)mem;
	if (ioctl_retry(vm, KVM_SET_USER_MEMORY_REGION, (unsigned long)&region) < 0) {
		why(p, "KVM_SET_USER_MEMORY_REGION failed: %s", strerror(errno));
		goto out;
	}
	vcpu = ioctl_retry(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0) {
		why(p, "KVM_CREATE_VCPU failed: %s", strerror(errno));
		goto out;
	}
	run_size = ioctl_retry(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (int)sizeof(*run)) {
		why(p, "KVM_GET_VCPU_MMAP_SIZE failed: %s", strerror(errno));
		goto out;
	}
	run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED) {
		why(p, "cannot map the vCPU state: %s", strerror(errno));
		goto out;
	}
	/* Real mode, flat from address 0: CS base 0, IP at the code. */
	if (ioctl_retry(vcpu, KVM_GET_SREGS, (unsigned long)&sregs) < 0) {
		why(p, "KVM_GET_SREGS failed: %s", strerror(errno));
		goto out;
	}
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl_retry(vcpu, KVM_SET_SREGS, (unsigned long)&sregs) < 0) {
		why(p, "KVM_SET_SREGS failed: %s", strerror(errno));
		goto out;
	}
	regs.rip = GUEST_CODE;
	regs.rflags = 0x2;  /* bit 1 is reserved and must be set */
	if (ioctl_retry(vcpu, KVM_SET_REGS, (unsigned long)&regs) < 0) {
		why(p, "KVM_SET_REGS failed: %s", strerror(errno));
		goto out;
	}
	if (run_guarded(p, vcpu, run) < 0)
		goto out;
	if (p->loop_ns >= NATIVE_MAX_NS) {
		why(p, "self-test loop took %.1f ms (native: well under 1 ms)",
		    (double)p->loop_ns / 1e6);
		goto out;
	}
	p->usable = 1;
	p->reason[0] = 0;
out:
	if (run != MAP_FAILED)
		munmap(run, (size_t)run_size);
	munmap(mem, GUEST_MEM);
}

void omr_kvm_probe(struct omr_kvm_probe *out)
{
	_cleanup_close_ int kvm = -1;
	int version;

	memset(out, 0, sizeof(*out));
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		why(out, "cannot open /dev/kvm: %s", strerror(errno));
		return;
	}
	out->present = 1;
	version = ioctl_retry(kvm, KVM_GET_API_VERSION, 0);
	if (version != KVM_API_VERSION) {
		why(out, "unexpected KVM API version %d", version);
		return;
	}
	probe_vm(out, kvm);
	if (!out->usable && access("/sys/module/kvm_pvm", F_OK) == 0) {
		size_t n = strlen(out->reason);
		snprintf(out->reason + n, sizeof(out->reason) - n,
			 "; paravirtual KVM (kvm_pvm) emulates unmodified guests");
	}
}

/* The probe costs a VM creation and, where KVM is slow, most of the guard
 * time; sbx-create runs it on every start.  So its outcome is kept in
 * $run_dir/kvm-probe for the rest of the boot (tmpfs, boot id checked) and
 * an hour at most, and only while /dev/kvm is the same node. */
#define CACHE_NAME   "kvm-probe"
#define CACHE_MAX_S  3600

static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;
static int probe_done;
static struct omr_kvm_probe probe_cached;  /* reason: static for *why */

static char *cache_key_text;
static pthread_once_t cache_key_once = PTHREAD_ONCE_INIT;

static void cache_key_init(void)
{
	_cleanup_free_ char *boot = NULL;
	struct stat st;
	char *nl;

	if (omr_read_file_at(AT_FDCWD, "/proc/sys/kernel/random/boot_id", 64, &boot, NULL,
			     NULL) < 0)
		return;
	if ((nl = strchr(boot, '\n')))
		*nl = 0;
	if (stat("/dev/kvm", &st) < 0)
		cache_key_text = omr_strdup_printf("%s none", boot);
	else
		cache_key_text = omr_strdup_printf("%s %llu:%llu:%lld", boot,
						   (unsigned long long)st.st_ino,
						   (unsigned long long)st.st_rdev,
						   (long long)st.st_ctime);
}

/* What the cached files are valid for: this boot and this /dev/kvm (as
 * of the first call), or NULL. */
static const char *cache_key(void)
{
	pthread_once(&cache_key_once, cache_key_init);
	return cache_key_text;
}

/* Reads cache file name in dfd into text (the lines after "key=KEY").
 * Returns 0 only when the file is ours, fresh and made for this key. */
static int cache_read(int dfd, const char *name, const char *key, char *text, size_t size)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	size_t klen = strlen(key);
	ssize_t n;

	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	/* It steers the accelerator: trust only our own, unshared file. */
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_uid != geteuid() ||
	    (st.st_mode & (S_IWGRP | S_IWOTH)) || time(NULL) - st.st_mtime > CACHE_MAX_S ||
	    st.st_mtime > time(NULL))
		return -1;
	n = omr_read_full(fd, text, size - 1);
	if (n <= 0 || (size_t)n == size - 1)
		return -1;
	text[n] = 0;
	if (strncmp(text, "key=", 4) || strncmp(text + 4, key, klen) || text[4 + klen] != '\n')
		return -1;
	memmove(text, text + 5 + klen, (size_t)n - 5 - klen + 1);
	return 0;
}

static void cache_write(int dfd, const char *name, const char *key, const char *body)
{
	_cleanup_free_ char *text = omr_strdup_printf("key=%s\n%s", key, body);
	struct omr_err *e = NULL;

	/* A run_dir we cannot write only costs the next caller a probe. */
	omr_write_file_atomic_at(dfd, name, text, strlen(text), 0644, &e);
	omr_err_free(&e);
}

static int probe_parse(char *text, struct omr_kvm_probe *p)
{
	char *line, *save = NULL;
	unsigned got = 0;

	memset(p, 0, sizeof(*p));
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned long long v;
		if (sscanf(line, "present=%llu", &v) == 1) {
			p->present = v != 0;
		} else if (sscanf(line, "usable=%llu", &v) == 1) {
			p->usable = v != 0;
			got = 1;
		} else if (sscanf(line, "loop_ns=%llu", &v) == 1) {
			p->loop_ns = v;
		} else if (!strncmp(line, "reason=", 7)) {
			snprintf(p->reason, sizeof(p->reason), "%s", line + 7);
		}
	}
	return got ? 0 : -1;
}

static int open_run_dir(const struct omr_config *c)
{
	return c->run_dir ? open(c->run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
}

static const struct omr_kvm_probe *probe_once(const struct omr_config *c)
{
	const char *key;
	_cleanup_close_ int dfd = -1;
	char text[512];

	pthread_mutex_lock(&probe_lock);
	if (probe_done)
		goto out;
	key = cache_key();
	dfd = open_run_dir(c);
	if (key && dfd >= 0 && cache_read(dfd, CACHE_NAME, key, text, sizeof(text)) == 0 &&
	    probe_parse(text, &probe_cached) == 0)
		goto done;
	omr_kvm_probe(&probe_cached);
	if (key && dfd >= 0) {
		snprintf(text, sizeof(text), "present=%d\nusable=%d\nloop_ns=%llu\nreason=%s\n",
			 probe_cached.present, probe_cached.usable,
			 (unsigned long long)probe_cached.loop_ns, probe_cached.reason);
		cache_write(dfd, CACHE_NAME, key, text);
	}
done:
	probe_done = 1;
out:
	pthread_mutex_unlock(&probe_lock);
	return &probe_cached;
}

int omr_accel_resolve(const struct omr_config *c, enum omr_accel *out,
		      const char **why_out, struct omr_err **err)
{
	return omr_accel_resolve_with(c, NULL, out, why_out, err);
}

int omr_accel_resolve_with(const struct omr_config *c, const struct omr_kvm_probe *probe,
			   enum omr_accel *out, const char **why_out, struct omr_err **err)
{
	const char *accel = c->accel ? c->accel : "auto";

	if (why_out)
		*why_out = NULL;
	if (!strcmp(accel, "tcg")) {
		*out = OMR_ACCEL_TCG;
		return 0;
	}
	if (strcmp(accel, "kvm") && strcmp(accel, "auto"))
		return omr_err_set(err, OMR_E_USAGE, EINVAL, "vmm.accel must be auto, kvm or tcg, not '%s'",
				   accel);
	const struct omr_kvm_probe *p = probe ? probe : probe_once(c);
	if (p->usable) {
		*out = OMR_ACCEL_KVM;
		return 0;
	}
	if (!strcmp(accel, "kvm")) {
		return omr_err_setx(err, OMR_E_FAIL, ENODEV, "vmm.accel is kvm but KVM is not usable: %s",
				    p->reason);
	}
	*out = OMR_ACCEL_TCG;
	if (why_out)
		*why_out = p->reason;
	return 0;
}

/* ---- TSC frequency for TCG guests ----------------------------------------
 *
 * Under TCG the guest's RDTSC returns the host's TSC.  The guest kernel
 * cannot get its frequency from CPUID there and calibrates against the PIT;
 * under TCG that calibration often fails when the host is busy, the kernel
 * marks the TSC unstable and the boot hangs (measured: 6 of 25 boots, 2 of 3
 * on a loaded host).  tsc_early_khz= skips the calibration: 0 hangs in 35. */
#define TSC_CACHE_NAME "tsc-khz"

static uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static int host_tsc_constant(void)
{
	_cleanup_free_ char *info = NULL;
	char *flags;

	if (omr_read_file_at(AT_FDCWD, "/proc/cpuinfo", 1 << 20, &info, NULL, NULL) < 0)
		return 0;
	flags = strstr(info, "\nflags");
	if (!flags)
		return 0;
	*strchrnul(flags + 1, '\n') = 0;
	return strstr(flags, " constant_tsc") && strstr(flags, " nonstop_tsc");
}

/* TSC ticks against CLOCK_MONOTONIC_RAW over ms milliseconds, in kHz. */
static unsigned tsc_sample(unsigned ms)
{
	struct timespec a, b, nap = { 0, (long)ms * 1000000 };
	uint64_t t0, t1, ns;

	clock_gettime(CLOCK_MONOTONIC_RAW, &a);
	t0 = rdtsc();
	while (nanosleep(&nap, &nap) < 0 && errno == EINTR)
		;
	t1 = rdtsc();
	clock_gettime(CLOCK_MONOTONIC_RAW, &b);
	ns = (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000ull + (uint64_t)b.tv_nsec -
	     (uint64_t)a.tv_nsec;
	return ns ? (unsigned)((t1 - t0) * 1000000ull / ns) : 0;
}

/* Measured, not read from /proc/cpuinfo: "cpu MHz" is the current core
 * clock, which frequency scaling moves away from the TSC rate. */
static unsigned measure_tsc_khz(void)
{
	unsigned s[3], t;

	if (!host_tsc_constant())
		return 0;
	for (int i = 0; i < 3; i++)
		s[i] = tsc_sample(10);
	/* The median of three shrugs off one preempted sample. */
	if (s[0] > s[1]) { t = s[0]; s[0] = s[1]; s[1] = t; }
	if (s[1] > s[2]) { t = s[1]; s[1] = s[2]; s[2] = t; }
	if (s[0] > s[1]) { t = s[0]; s[0] = s[1]; s[1] = t; }
	return s[1] >= 100000 && s[1] <= 20000000 ? s[1] : 0;
}

static pthread_mutex_t tsc_lock = PTHREAD_MUTEX_INITIALIZER;
static int tsc_done;
static unsigned tsc_cached;

unsigned omr_tcg_tsc_khz(const struct omr_config *c)
{
	const char *key;
	_cleanup_close_ int dfd = -1;
	char text[256];
	unsigned v;

	pthread_mutex_lock(&tsc_lock);
	if (tsc_done)
		goto out;
	key = cache_key();
	dfd = open_run_dir(c);
	if (key && dfd >= 0 && cache_read(dfd, TSC_CACHE_NAME, key, text, sizeof(text)) == 0 &&
	    sscanf(text, "tsc_khz=%u", &v) == 1) {
		tsc_cached = v;
	} else {
		tsc_cached = measure_tsc_khz();
		if (key && dfd >= 0) {
			snprintf(text, sizeof(text), "tsc_khz=%u\n", tsc_cached);
			cache_write(dfd, TSC_CACHE_NAME, key, text);
		}
	}
	tsc_done = 1;
out:
	pthread_mutex_unlock(&tsc_lock);
	return tsc_cached;
}

/* ---- QEMU --------------------------------------------------------------- */

#define VERSION_TIMEOUT_MS 5000
#define VERSION_OUT_MAX    4096

struct bounded_buf {
	char *buf;
	size_t have, cap;
};

/* Keeps the first cap bytes; enough once it has them. */
static int bounded_sink(void *user, const char *buf, size_t n)
{
	struct bounded_buf *b = user;
	size_t take = n < b->cap - b->have ? n : b->cap - b->have;

	memcpy(b->buf + b->have, buf, take);
	b->have += take;
	return b->have == b->cap;
}

int omr_qemu_version(const char *qemu, char **out, struct omr_err **err)
{
	char *argv[] = { (char *)qemu, (char *)"--version", NULL };
	_cleanup_close_ int rd = -1, wr = -1;
	char buf[VERSION_OUT_MAX + 1];
	struct bounded_buf b = { .buf = buf, .cap = VERSION_OUT_MAX };
	/* Enough at VERSION_OUT_MAX: the first line is what we want. */
	const struct omr_capture_opts co = {
		.timeout_ms = VERSION_TIMEOUT_MS, .sink = bounded_sink, .user = &b,
	};
	int fds[2], status = 0, timed_out;
	pid_t pid;
	char *nl;

	if (pipe2(fds, O_CLOEXEC) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot create pipe");
	rd = fds[0];
	wr = fds[1];
	pid = omr_spawn(argv, wr, NULL, NULL, 0, err);
	if (pid < 0)
		return (int)pid;
	omr_closep(&wr);
	timed_out = omr_capture(pid, rd, &co, &status) == -ETIMEDOUT;
	buf[b.have] = 0;
	if (timed_out)
		return omr_err_set(err, OMR_E_TIMEOUT, ETIMEDOUT, "%s --version did not answer", qemu);
	if (b.have == 0 || (WIFEXITED(status) && WEXITSTATUS(status) != 0))
		return omr_err_set(err, OMR_E_FAIL, 0, "%s --version failed", qemu);
	nl = strchr(buf, '\n');
	if (nl)
		*nl = 0;
	*out = omr_xstrdup(buf);
	return 0;
}
