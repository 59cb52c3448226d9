/* Unit tests for the VMM backend interface (libcore/vm/vmm.c, qmp.c):
 * the ops table, QMP against a scripted server, and pause/resume against
 * a real QEMU process that runs no guest (-M none).  TAP. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "omnirun/base/spawn.h"
#include "omnirun/base/util.h"
#include "omnirun/base/loop.h"
#include "omnirun/vm/vmm.h"

#include "tap.h"

static char dir[] = "/tmp/omr-test-vmm.XXXXXX";

static int listen_at(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0)
		return -1;
	return fd;
}

/* A QMP server in a child: greets, then answers each line it reads with
 * the next of answers (NULL: stays silent), an event before each. */
static pid_t fake_qmp(const char *path, const char *const *answers)
{
	int lfd = listen_at(path);
	pid_t pid = fork();

	if (pid != 0) {
		close(lfd);
		return pid;
	}
	int fd = accept(lfd, NULL, NULL);
	char buf[4096];
	dprintf(fd, "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n");
	for (int i = 0; answers[i]; i++) {
		if (read(fd, buf, sizeof(buf)) <= 0)
			_exit(0);
		dprintf(fd, "{\"event\": \"NOISE\", \"timestamp\": {}}\r\n%s\r\n", answers[i]);
	}
	sleep(5);
	_exit(0);
}

static void reap(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void test_ops(void)
{
	struct omr_vmm vm;
	struct omr_err *err = NULL;

	ok(omr_vmm_ops_find("qemu") == &omr_vmm_qemu_ops && omr_vmm_ops_find("nope") == NULL &&
		   omr_vmm_ops_find(NULL) == NULL,
	   "ops: qemu is found by name, nothing else");
	omr_vmm_init(&vm, &omr_vmm_qemu_ops);
	ok(vm.pid == -1 && !vm.control, "ops: a fresh instance has no process");
	ok(omr_vmm_save(&vm, 1, &err) < 0 && omr_err_kind(err) == OMR_E_STATE,
	   "qemu: saving a VM that does not run is a state error");
	omr_err_free(&err);
	ok(omr_vmm_restore(&vm, 0, &err) < 0 && omr_err_kind(err) == OMR_E_STATE,
	   "qemu: restoring into a VM that does not run is a state error");
	omr_err_free(&err);
	ok(omr_vmm_pause(&vm, &err) < 0 && omr_err_kind(err) == OMR_E_STATE,
	   "qemu: pausing a VM that does not run is a state error");
	omr_err_free(&err);
	omr_vmm_release(&vm);
}

static void test_argv(void)
{
	struct omr_vmm_spec s = { .incoming_fd = -1, .qemu = "qemu", .accel = OMR_ACCEL_TCG, .tb_size_mb = 32, .cpus = 1,
				  .memory_mb = 256, .kernel = "k", .initrd = "i", .cmdline = "c",
				  .agent_sock = "/a", .qmp_sock = "/q", .disk_fd = 17, .console_fd = -1,
				  .tap_fd = 9, .mac = "52:54:00:01:02:03" };
	char **argv = omr_vmm_argv(&s);
	int fd3 = 0, fd4 = 0, sandbox = 0, tap = 0, nic = 0;

	for (char **a = argv; *a; a++) {
		fd3 |= !strcmp(*a, "fd=3,set=1");
		fd4 |= !strcmp(*a, "fd=4,set=1");
		sandbox |= !strncmp(*a, "on,obsolete=deny", 16);
		tap |= !strcmp(*a, "tap,id=net0,fd=5");
		nic |= !strcmp(*a, "virtio-net-device,netdev=net0,mac=52:54:00:01:02:03");
	}
	ok(fd3 && fd4, "argv: the disk is fds 3 and 4 in QEMU, whatever our fd number");
	ok(tap && nic, "argv: the tap is fd 5 in QEMU, never a name, behind virtio-net");
	ok(sandbox, "argv: -sandbox on");
	omr_argv_free(argv);
	s.tap_fd = -1;
	argv = omr_vmm_argv(&s);
	nic = 0;
	for (char **a = argv; *a; a++)
		nic |= !strcmp(*a, "-netdev");
	ok(!nic, "argv: no tap, no network device");
	omr_argv_free(argv);

	/* A spec that names no state (incoming_fd left 0, as the jail's
	 * self-test did) boots its kernel: it must not wait for a state. */
	s.incoming_fd = 0;
	argv = omr_vmm_argv(&s);
	{
		int kernel = 0, defer = 0;
		for (char **a = argv; *a; a++) {
			kernel |= !strcmp(*a, "-kernel");
			defer |= !strcmp(*a, "-incoming");
		}
		ok(kernel && !defer, "argv: incoming_fd 0 is a cold boot, not -incoming");
	}
	omr_argv_free(argv);
	s.incoming_fd = -1;

	/* A clone: the template's RAM read-only and private, no kernel,
	 * the state through -incoming defer (then migrate-incoming fd:7). */
	s.mem_path = "/t/ram";
	s.incoming_fd = 8;
	argv = omr_vmm_argv(&s);
	{
		int ram = 0, kernel = 0, defer = 0, backend = 0;
		for (char **a = argv; *a; a++) {
			ram |= !strcmp(*a, "memory-backend-file,id=mem,size=256M,mem-path=/t/ram,"
					   "readonly=on,rom=off,share=off");
			kernel |= !strcmp(*a, "-kernel") || !strcmp(*a, "-append");
			defer |= !strcmp(*a, "defer");
			backend |= strstr(*a, "microvm,") && strstr(*a, ",memory-backend=mem");
		}
		ok(ram && backend && defer && !kernel,
		   "argv: a clone maps the RAM file read-only, private, and loads no kernel");
	}
	omr_argv_free(argv);
	/* The template being saved: shared RAM, a placeholder disk and NIC
	 * so that a clone's devices are a cold boot's. */
	s.mem_shared = 1;
	s.incoming_fd = -1;
	s.disk_fd = -1;
	s.disk_placeholder_mb = 512;
	s.nic_placeholder = 1;
	argv = omr_vmm_argv(&s);
	{
		int ram = 0, disk = 0, nic2 = 0, kernel = 0;
		for (char **a = argv; *a; a++) {
			ram |= strstr(*a, "mem-path=/t/ram,share=on") != NULL;
			disk |= !strcmp(*a, "driver=null-co,node-name=data,size=536870912,read-zeroes=on");
			nic2 |= !strncmp(*a, "virtio-net-device,mac=", 22);
			kernel |= !strcmp(*a, "-kernel");
		}
		ok(ram && disk && nic2 && kernel,
		   "argv: the template maps its RAM shared, with a placeholder disk and NIC");
	}
	omr_argv_free(argv);
}

/* The firmware: -bios when the spec names one (qboot loads -kernel with
 * no option ROMs); QEMU's own default, with its option ROMs, when not. */
static void test_argv_firmware(void)
{
	struct omr_vmm_spec s = { .incoming_fd = -1, .qemu = "qemu", .accel = OMR_ACCEL_TCG,
				  .tb_size_mb = 32, .cpus = 1, .memory_mb = 256, .kernel = "k",
				  .initrd = "i", .cmdline = "c", .agent_sock = "/a",
				  .qmp_sock = "/q", .disk_fd = -1, .console_fd = -1,
				  .tap_fd = -1, .firmware = "/fw/qboot.rom" };
	char **argv = omr_vmm_argv(&s);
	int bios = 0, noroms = 0, nbios = 0;

	for (char **a = argv; *a; a++) {
		bios |= !strcmp(*a, "-bios") && a[1] && !strcmp(a[1], "/fw/qboot.rom");
		nbios += !strcmp(*a, "-bios");
		noroms |= !strncmp(*a, "microvm,x-option-roms=off,", 26);
	}
	ok(bios && nbios == 1 && noroms,
	   "argv: -bios names the firmware, once, with no option ROMs");
	omr_argv_free(argv);
	/* A clone loads no kernel but boots the same ROM (its size is in the
	 * saved state). */
	s.mem_path = "/t/ram";
	s.incoming_fd = 8;
	argv = omr_vmm_argv(&s);
	bios = 0;
	for (char **a = argv; *a; a++)
		bios |= !strcmp(*a, "-bios") && a[1] && !strcmp(a[1], "/fw/qboot.rom");
	ok(bios, "argv: a clone names the same firmware");
	omr_argv_free(argv);
	s.firmware = NULL;
	argv = omr_vmm_argv(&s);
	nbios = noroms = 0;
	for (char **a = argv; *a; a++) {
		nbios += !strcmp(*a, "-bios");
		noroms |= strstr(*a, "x-option-roms") != NULL;
	}
	ok(nbios == 0 && !noroms, "argv: no firmware named: QEMU's default, option ROMs on");
	omr_argv_free(argv);
}

static void put_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	if (fd >= 0) {
		if (write(fd, text, strlen(text)) < 0)
			diag("write %s: %s", path, strerror(errno));
		close(fd);
	}
}

/* qboot.rom from the binary's own prefix (its realpath's), else the
 * system's data dir, else none. */
static void test_firmware_find(void)
{
	char *bin = omr_strdup_printf("%s/opt/usr/bin", dir);
	char *share = omr_strdup_printf("%s/opt/usr/share/qemu", dir);
	char *qemu = omr_strdup_printf("%s/qemu-system-x86_64", bin);
	char *rom = omr_strdup_printf("%s/qboot.rom", share);
	char *link = omr_strdup_printf("%s/qemu-link", dir);
	char *got;
	struct stat st;
	const char *sys = stat("/usr/share/qemu/qboot.rom", &st) == 0 && S_ISREG(st.st_mode)
		? "/usr/share/qemu/qboot.rom" : NULL;
	struct omr_err *err = NULL;

	if (!ok(omr_mkdir_p(bin, 0755, &err) == 0 && omr_mkdir_p(share, 0755, &err) == 0,
		"firmware: a fake QEMU prefix")) {
		omr_err_free(&err);
		goto out;
	}
	put_file(qemu, "#!/bin/sh\n", 0755);
	put_file(rom, "qboot", 0644);
	if (symlink(qemu, link) < 0)
		diag("symlink: %s", strerror(errno));
	got = omr_vmm_firmware(qemu);
	is_str(got, rom, "firmware: PREFIX/share/qemu/qboot.rom beside PREFIX/bin");
	free(got);
	got = omr_vmm_firmware(link);
	is_str(got, rom, "firmware: found from the binary's realpath, not a link to it");
	free(got);
	unlink(rom);
	got = omr_vmm_firmware(qemu);
	is_str(got, sys, "firmware: none in the prefix: the system's qboot.rom (or none)");
	free(got);
	got = omr_vmm_firmware("/nonexistent/bin/qemu");
	is_str(got, sys, "firmware: no such QEMU: the system's qboot.rom (or none)");
	free(got);
out:
	free(bin);
	free(share);
	free(qemu);
	free(rom);
	free(link);
}

static void test_qmp_fake(void)
{
	static const char *const good[] = { "{\"return\": {}}", "{\"return\": {\"status\": \"paused\"}}",
					    NULL };
	static const char *const bad[] = { "{\"return\": {}}",
					   "{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}}",
					   NULL };
	static const char *const silent[] = { "{\"return\": {}}", NULL };
	char *path = omr_strdup_printf("%s/qmp.sock", dir);
	struct omr_err *err = NULL;
	json_t *ret = NULL;
	uint64_t t0;
	pid_t pid;

	pid = fake_qmp(path, good);
	ok(omr_qmp_command(path, "query-status", NULL, 2000, &ret, &err) == 0 &&
		   !strcmp(json_string_value(json_object_get(ret, "status")) ?: "", "paused"),
	   "qmp: greeting, capabilities, command; events skipped");
	json_decref(ret);
	omr_err_free(&err);
	reap(pid);

	pid = fake_qmp(path, bad);
	ok(omr_qmp_command(path, "stop", NULL, 2000, NULL, &err) < 0 && err &&
		   strstr(err->msg, "nope") && omr_err_kind(err) == OMR_E_FAIL,
	   "qmp: an error answer is an error with its description");
	omr_err_free(&err);
	reap(pid);

	pid = fake_qmp(path, silent);
	t0 = omr_now_ms();
	ok(omr_qmp_command(path, "stop", NULL, 300, NULL, &err) < 0 &&
		   omr_err_kind(err) == OMR_E_TIMEOUT && omr_now_ms() - t0 < 2000,
	   "qmp: a silent VMM is a timeout within the bound");
	omr_err_free(&err);
	reap(pid);

	ok(omr_qmp_command(path, "stop", NULL, 300, NULL, &err) < 0 && omr_err_kind(err) == OMR_E_STATE,
	   "qmp: nobody listening is a state error");
	omr_err_free(&err);
	free(path);
}

/* omr_qmp_call_start: the same exchanges on an event loop. */
struct async_result {
	struct omr_loop *loop;
	int calls;
	char *status;          /* "status" of the return, or NULL */
	enum omr_err_kind kind;
	char *msg;
};

static void async_done(void *user, json_t *ret, struct omr_err *e)
{
	struct async_result *r = user;

	r->calls++;
	if (ret)
		r->status = omr_xstrdup(json_string_value(json_object_get(ret, "status")) ?: "");
	if (e) {
		r->kind = omr_err_kind(e);
		r->msg = omr_xstrdup(e->msg);
	}
	omr_loop_quit(r->loop, 0);
}

static void async_guard(void *user)
{
	omr_loop_quit(user, 1);
}

/* Runs one call against the fake QMP (answers, or none listening) and
 * fills *r; returns 0 when done was called before a 3 s guard. */
static int async_call(const char *path, const char *const *answers, unsigned timeout_ms,
		      struct async_result *r)
{
	struct omr_err *err = NULL;
	struct omr_qmp_call *k;
	pid_t pid = answers ? fake_qmp(path, answers) : -1;
	uint64_t guard;
	int rc;

	memset(r, 0, sizeof(*r));
	r->loop = omr_loop_new(NULL);
	k = omr_qmp_call_start(r->loop, path, "stop", NULL, timeout_ms, async_done, r, &err);
	if (!k) {
		r->kind = omr_err_kind(err);
		r->msg = omr_xstrdup(err->msg);
		omr_err_free(&err);
		rc = -1;
	} else {
		guard = omr_loop_add_timer(r->loop, 3000, async_guard, r->loop);
		rc = omr_loop_run(r->loop);
		omr_loop_cancel_timer(r->loop, guard);
	}
	omr_loop_free(r->loop);
	if (pid > 0)
		reap(pid);
	return rc;
}

static void async_free(struct async_result *r)
{
	free(r->status);
	free(r->msg);
}

static void test_qmp_async(void)
{
	static const char *const good[] = { "{\"return\": {}}", "{\"return\": {\"status\": \"paused\"}}",
					    NULL };
	static const char *const bad[] = { "{\"return\": {}}",
					   "{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}}",
					   NULL };
	static const char *const silent[] = { "{\"return\": {}}", NULL };
	char *path = omr_strdup_printf("%s/qmp.sock", dir);
	struct async_result r;
	uint64_t t0;

	ok(async_call(path, good, 2000, &r) == 0 && r.calls == 1 && r.status &&
	   !strcmp(r.status, "paused") && !r.msg,
	   "qmp on a loop: greeting, capabilities, command, its return");
	async_free(&r);
	ok(async_call(path, bad, 2000, &r) == 0 && r.calls == 1 && !r.status && r.msg &&
	   strstr(r.msg, "nope") && r.kind == OMR_E_FAIL,
	   "qmp on a loop: an error answer is an error with its description");
	async_free(&r);
	t0 = omr_now_ms();
	ok(async_call(path, silent, 300, &r) == 0 && r.calls == 1 && r.kind == OMR_E_TIMEOUT &&
	   omr_now_ms() - t0 < 2000, "qmp on a loop: a silent VMM is a timeout within the bound");
	async_free(&r);
	ok(async_call(path, NULL, 300, &r) < 0 && r.calls == 0 && r.kind == OMR_E_STATE,
	   "qmp on a loop: nobody listening fails at once, done is never called");
	async_free(&r);
	free(path);
}

static const char *qmp_status(const char *path, json_t **hold)
{
	*hold = NULL;
	if (omr_qmp_command(path, "query-status", NULL, 5000, hold, NULL) < 0)
		return "?";
	return json_string_value(json_object_get(*hold, "status")) ?: "?";
}

/* A real QEMU without a guest: QMP and its run state are all we need. */
static void test_qemu_pause_resume(void)
{
	char *qemu = omr_find_program("qemu-system-x86_64", NULL);
	char *path = omr_strdup_printf("%s/real.sock", dir);
	char *qmp = omr_strdup_printf("unix:%s,server=on,wait=off", path);
	char *argv[] = { qemu, "-M", "none", "-S", "-nodefaults", "-display", "none", "-qmp", qmp, NULL };
	struct omr_vmm vm;
	struct omr_err *err = NULL;
	json_t *h1, *h2, *h3;
	int up = 0;

	if (!qemu) {
		skip("no qemu-system-x86_64");
		goto out;
	}
	omr_vmm_init(&vm, &omr_vmm_qemu_ops);
	vm.pid = omr_spawn(argv, -1, NULL, NULL, 0, NULL);
	vm.control = omr_xstrdup(path);
	for (int i = 0; i < 200 && !up; i++) {
		up = access(path, F_OK) == 0;
		usleep(20000);
	}
	ok(vm.pid > 0 && up, "qemu -M none started");
	is_str(qmp_status(path, &h1), "prelaunch", "qemu: starts stopped (-S)");
	ok(omr_vmm_resume(&vm, &err) == 0 && !strcmp(qmp_status(path, &h2), "running"),
	   "qemu: resume (QMP cont) runs it");
	omr_err_free(&err);
	ok(omr_vmm_pause(&vm, &err) == 0 && !strcmp(qmp_status(path, &h3), "paused"),
	   "qemu: pause (QMP stop) stops it");
	omr_err_free(&err);
	json_decref(h1);
	json_decref(h2);
	json_decref(h3);
	ok(omr_vmm_resume(&vm, &err) == 0 && !strcmp(qmp_status(path, &h1), "running"),
	   "qemu: and resume again");
	json_decref(h1);
	omr_err_free(&err);
	reap(vm.pid);
	omr_vmm_release(&vm);
out:
	free(qemu);
	free(path);
	free(qmp);
}

int main(void)
{
	if (!mkdtemp(dir))
		return 1;
	test_ops();
	test_argv();
	test_argv_firmware();
	test_firmware_find();
	test_qmp_fake();
	test_qmp_async();
	test_qemu_pause_resume();
	omr_rm_rf_at(AT_FDCWD, dir);
	return done_testing();
}
