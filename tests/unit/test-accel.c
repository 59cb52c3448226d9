/* Unit tests for libcore/vm/accel.c (TAP).  The probe's verdict depends on
 * the host; what is tested is that it is consistent, bounded in time and
 * leaves the process as it found it. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "omnirun/vm/accel.h"
#include "omnirun/state/config.h"
#include "omnirun/base/util.h"

#include "tap.h"

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

static int count_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

static void test_probe(void)
{
	struct sigaction sa = { .sa_handler = on_alarm }, now;
	struct itimerval it = { .it_value = { 30, 0 } }, left;
	struct omr_kvm_probe p;
	sigset_t mask, mask_after;
	int fds = count_fds();
	uint64_t t0;

	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	setitimer(ITIMER_REAL, &it, NULL);
	sigprocmask(SIG_BLOCK, NULL, &mask);

	t0 = omr_now_ms();
	omr_kvm_probe(&p);
	ok(omr_now_ms() - t0 < 3000, "probe returns within 3 s (%llu ms)",
	   (unsigned long long)(omr_now_ms() - t0));
	printf("# present=%d usable=%d loop_ns=%llu reason=%s\n", p.present, p.usable,
	       (unsigned long long)p.loop_ns, p.reason);
	ok(!p.usable || p.present, "usable implies present");
	ok(p.usable ? p.loop_ns > 0 && p.loop_ns < 20000000 && !p.reason[0] : p.reason[0] != 0,
	   "usable has a short loop and no reason; unusable has a reason");
	ok(memchr(p.reason, 0, sizeof(p.reason)) != NULL, "reason is terminated");
	ok(!p.present || access("/dev/kvm", R_OK | W_OK) == 0, "present only when /dev/kvm opens");

	sigaction(SIGALRM, NULL, &now);
	ok(now.sa_handler == on_alarm && (now.sa_flags & SA_RESTART), "SIGALRM disposition restored");
	getitimer(ITIMER_REAL, &left);
	ok(left.it_value.tv_sec > 20, "the process's own itimer is untouched (%lds left)",
	   (long)left.it_value.tv_sec);
	is_int(alarms, 0, "the caller's handler saw no probe signal");
	sigprocmask(SIG_BLOCK, NULL, &mask_after);
	ok(sigismember(&mask_after, SIGALRM) == sigismember(&mask, SIGALRM),
	   "signal mask restored");
	ok(count_fds() == fds, "no fd left open");

	/* With SIGALRM blocked by the caller the probe still cannot hang. */
	sigaddset(&mask, SIGALRM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	t0 = omr_now_ms();
	omr_kvm_probe(&p);
	ok(omr_now_ms() - t0 < 3000, "probe with SIGALRM blocked returns within 3 s");
	sigprocmask(SIG_BLOCK, NULL, &mask_after);
	ok(sigismember(&mask_after, SIGALRM), "SIGALRM still blocked afterwards");
	sigprocmask(SIG_UNBLOCK, &mask, NULL);

	it.it_value.tv_sec = 0;
	setitimer(ITIMER_REAL, &it, NULL);
	signal(SIGALRM, SIG_DFL);
}

static void test_resolve(struct omr_config *c)
{
	struct omr_kvm_probe p;
	struct omr_err *err = NULL;
	enum omr_accel a = OMR_ACCEL_KVM;
	const char *why = "x";
	int r;

	omr_kvm_probe(&p);
	free(c->accel);
	c->accel = omr_xstrdup("tcg");
	r = omr_accel_resolve(c, &a, &why, &err);
	ok(r == 0 && a == OMR_ACCEL_TCG && why == NULL, "accel=tcg resolves to TCG, no why");
	omr_err_free(&err);

	free(c->accel);
	c->accel = omr_xstrdup("auto");
	r = omr_accel_resolve(c, &a, &why, &err);
	if (p.usable)
		ok(r == 0 && a == OMR_ACCEL_KVM, "auto picks the usable KVM");
	else
		ok(r == 0 && a == OMR_ACCEL_TCG && why && *why, "auto falls back to TCG and says why (%s)",
		   why ? why : "?");
	omr_err_free(&err);

	free(c->accel);
	c->accel = omr_xstrdup("kvm");
	r = omr_accel_resolve(c, &a, &why, &err);
	if (p.usable)
		ok(r == 0 && a == OMR_ACCEL_KVM, "accel=kvm with a usable KVM");
	else
		ok(r == -ENODEV && err && err->errnum == ENODEV && strstr(err->msg, "not usable"),
		   "accel=kvm without a usable KVM is an error");
	omr_err_free(&err);

	free(c->accel);
	c->accel = omr_xstrdup("warp");
	r = omr_accel_resolve(c, &a, &why, &err);
	ok(r == -EINVAL && err, "unknown accel is EINVAL");
	omr_err_free(&err);
	r = omr_accel_resolve(c, &a, NULL, &err);
	is_int(r, -EINVAL, "why may be NULL");
	omr_err_free(&err);

	/* The cache in run_dir: written once, reused. */
	char *cache = omr_strdup_printf("%s/kvm-probe", c->run_dir);
	free(c->accel);
	c->accel = omr_xstrdup("auto");
	is_int(access(cache, F_OK), 0, "probe outcome cached in run_dir");
	free(cache);
}

static void test_tsc(struct omr_config *c)
{
	unsigned a = omr_tcg_tsc_khz(c), b = omr_tcg_tsc_khz(c);
	char *cache = omr_strdup_printf("%s/tsc-khz", c->run_dir);

	printf("# tsc %u kHz\n", a);
	ok(a == 0 || (a >= 100000 && a <= 20000000), "TSC frequency plausible or 0");
	ok(a == b, "TSC frequency stable across calls");
	ok(a == 0 || access(cache, F_OK) == 0, "TSC frequency cached in run_dir");
	free(cache);
}

static void test_qemu(struct omr_config *c, const char *dir)
{
	struct omr_err *err = NULL;
	char *path, *v = NULL, *script;
	uint64_t t0;
	int r;

	free(c->qemu);
	c->qemu = omr_xstrdup("/nonexistent/qemu");
	path = omr_qemu_find(c);
	is_str(path, NULL, "missing qemu path is not found");
	free(path);
	free(c->qemu);
	c->qemu = omr_xstrdup("sh");
	path = omr_qemu_find(c);
	ok(path && path[0] == '/' && strstr(path, "/sh"), "name is looked up in PATH (%s)",
	   path ? path : "-");
	free(path);

	script = omr_strdup_printf("%s/fake-qemu", dir);
	FILE *f = fopen(script, "w");
	fputs("#!/bin/sh\necho 'QEMU emulator version 9.9.9'\necho 'Copyright'\n", f);
	fclose(f);
	chmod(script, 0755);
	r = omr_qemu_version(script, &v, &err);
	ok(r == 0 && v && !strcmp(v, "QEMU emulator version 9.9.9"), "version is the first line");
	free(v);
	v = NULL;
	omr_err_free(&err);

	f = fopen(script, "w");
	fputs("#!/bin/sh\nexit 1\n", f);
	fclose(f);
	r = omr_qemu_version(script, &v, &err);
	ok(r < 0 && err, "a failing binary is an error");
	omr_err_free(&err);

	f = fopen(script, "w");
	fputs("#!/bin/sh\nexec sleep 60\n", f);
	fclose(f);
	t0 = omr_now_ms();
	r = omr_qemu_version(script, &v, &err);
	ok(r < 0 && err && omr_now_ms() - t0 < 7000, "a hanging binary times out (%llu ms)",
	   (unsigned long long)(omr_now_ms() - t0));
	omr_err_free(&err);
	free(script);

	r = omr_qemu_version("/nonexistent/qemu", &v, &err);
	ok(r < 0 && err, "a missing binary is an error");
	omr_err_free(&err);
}

int main(void)
{
	char dir[] = "/tmp/omr-test-accel.XXXXXX";
	struct omr_config *c = NULL;
	struct omr_err *err = NULL;

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 99;
	}
	/* Empty config, run_dir in our temp dir: no host state touched. */
	char *conf = omr_strdup_printf("%s/empty.conf", dir);
	close(open(conf, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
	setenv("OMNIRUN_CONF", conf, 1);
	setenv("OMNIRUN_RUN_DIR", dir, 1);
	unsetenv("OMNIRUN_ACCEL");
	free(conf);
	if (omr_config_load(&c, &err) < 0) {
		fprintf(stderr, "config: %s\n", err->msg);
		return 99;
	}

	test_probe();
	test_resolve(c);
	test_tsc(c);
	test_qemu(c, dir);

	omr_config_free(c);
	omr_rm_rf_at(AT_FDCWD, dir);
	return done_testing();
}
