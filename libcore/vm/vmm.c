/* The QEMU backend of omnirun/vm/vmm.h: its command line, its spawning
 * (in its jail, omnirun/vm/jail.h), pause and resume over QMP; the ops
 * dispatch; host usage. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/proto.h"
#include "omnirun/base/util.h"
#include "omnirun/state/record.h"
#include "omnirun/vm/cgroup.h"
#include "omnirun/vm/jail.h"
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

/* Adds opt (unless NULL) and then val, which it frees. */
static void addf2(struct argv_buf *a, const char *opt, char *val_owned)
{
	if (opt)
		add(a, opt);
	add(a, val_owned);
	free(val_owned);
}

/* A listening socket chardev: QEMU's own at path, or one handed over as
 * fd (the jail's QEMU cannot see the host's filesystem). */
static char *chardev(const char *id, const char *path, int fd)
{
	if (fd > 0)
		return omr_strdup_printf("socket,id=%s,fd=%d,server=on,wait=off", id, fd);
	return omr_strdup_printf("socket,id=%s,path=%s,server=on,wait=off", id, path);
}

#define QBOOT "qboot.rom"
#define QEMU_DATADIR "/usr/share/qemu"

static int is_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *omr_vmm_firmware(const char *qemu)
{
	const char *name = qemu && *qemu ? qemu : "qemu-system-x86_64";
	_cleanup_free_ char *real = omr_program_realpath(omr_find_program(name, NULL));
	char *slash = real ? strrchr(real, '/') : NULL;

	/* PREFIX/bin/qemu-system-x86_64: PREFIX/share/qemu/qboot.rom, where
	 * the binary looks for its own data (an /opt install too; the jail
	 * binds that prefix). */
	if (slash && slash - real >= 4 && !strncmp(slash - 4, "/bin", 4)) {
		slash[-4] = 0;
		_cleanup_free_ char *rom = omr_strdup_printf("%s/share/qemu/" QBOOT, real);
		if (is_file(rom))
			return omr_steal_ptr(rom);
	}
	return is_file(QEMU_DATADIR "/" QBOOT) ? omr_xstrdup(QEMU_DATADIR "/" QBOOT) : NULL;
}

char **omr_vmm_argv(const struct omr_vmm_spec *s)
{
	struct argv_buf a = { 0 };

	add(&a, s->qemu);
	/* microvm: no PCI; no option ROMs when qboot is the firmware (it
	 * loads -kernel itself; SeaBIOS needs linuxboot's ROM for that).  The
	 * legacy PIT/PIC/RTC are needed for TSC calibration under TCG
	 * (HOSTS.md). */
	/* dump-guest-core=off: guest memory (keys, page cache) never lands in
	 * a core file; mem-merge=off: KSM cannot be a side channel between
	 * sandboxes.  memory-backend: RAM in a file (snapshots). */
	addf2(&a, "-M", omr_strdup_printf("microvm,%sisa-serial=on,rtc=on,pit=on,"
					   "pic=on,dump-guest-core=off,mem-merge=off%s",
					   s->firmware ? "x-option-roms=off," : "",
					   s->mem_path || s->mem_anon_backend ? ",memory-backend=mem" : ""));
	if (s->firmware) {
		add(&a, "-bios");
		add(&a, s->firmware);
	}
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
	if (s->mem_path) {
		/* A clone opens the template's RAM read-only and maps it
		 * private: its writes are copy-on-write in its own memory,
		 * and a compromised QEMU cannot change what other clones
		 * read (QEMU >= 8.2; 7.2's readonly=on hangs the guest). */
		addf2(&a, "-object",
		      omr_strdup_printf("memory-backend-file,id=mem,size=%uM,mem-path=%s,%s",
					s->memory_mb, s->mem_path,
					s->mem_shared ? "share=on" : "readonly=on,rom=off,share=off"));
	} else if (s->mem_anon_backend) {
		addf2(&a, "-object", omr_strdup_printf("memory-backend-ram,id=mem,size=%uM",
							s->memory_mb));
	}
	add(&a, "-nodefaults");
	add(&a, "-no-user-config");
	add(&a, "-display");
	add(&a, "none");
	add(&a, "-no-reboot");
	/* The console goes to QEMU's stdout, which the monitor caps. */
	add(&a, "-serial");
	add(&a, "stdio");
	if (s->incoming_fd <= 0) {
		add(&a, "-kernel");
		add(&a, s->kernel);
		add(&a, "-initrd");
		add(&a, s->initrd);
		add(&a, "-append");
		if (s->processes)
			addf2(&a, NULL, omr_strdup_printf("%s omnirun.pids=%u", s->cmdline,
							  s->processes));
		else
			add(&a, s->cmdline);
	} else {
		/* The guest's memory is the template's, its devices' state in
		 * the fd: no kernel to load (it would cost 14 MiB per VM).
		 * Deferred: the capability that leaves shared RAM out must be
		 * set first (restore, below); without -S the guest runs as
		 * soon as the state is in.  (Its process limit is in the
		 * template's memory: a clone's is the template's.) */
		add(&a, "-incoming");
		add(&a, "defer");
	}
	if (s->thread_pool_max) {
		/* QEMU's I/O pool grows to 64 threads by default: bounded so
		 * that the cgroup's pids limit stays meaningful. */
		add(&a, "-object");
		addf2(&a, NULL, omr_strdup_printf("main-loop,id=main-loop,thread-pool-min=0,"
						  "thread-pool-max=%u", s->thread_pool_max));
	}
	add(&a, "-device");
	add(&a, "virtio-serial-device");
	addf2(&a, "-chardev", chardev("agent", s->agent_sock, s->agent_fd));
	add(&a, "-device");
	add(&a, "virtserialport,chardev=agent,name=" OMR_AGENT_PORT);
	if (s->bench_sock || s->bench_fd > 0) {
		/* A second port with no protocol: the floor bench/exec
		 * measures the protocol against. */
		addf2(&a, "-chardev", chardev("bench", s->bench_sock, s->bench_fd));
		add(&a, "-device");
		add(&a, "virtserialport,chardev=bench,name=omnirun.bench");
	}
	/* QEMU's getrandom(): no /dev/urandom to open (a jail has no /dev). */
	add(&a, "-object");
	add(&a, "rng-builtin,id=rng0");
	add(&a, "-device");
	add(&a, "virtio-rng-device,rng=rng0");
	if (s->disk_fd >= 0) {
		/* The disk is an unlinked file handed over by fd: nothing on
		 * the host names it, and it is gone with the last fd.  No
		 * locking: it would want a second, read-only fd. */
		addf2(&a, "-add-fd", omr_strdup_printf("fd=%d,set=1", OMR_VMM_DISK_FD));
		addf2(&a, "-add-fd", omr_strdup_printf("fd=%d,set=1", OMR_VMM_DISK_RO_FD));
		add(&a, "-drive");
		/* The disk is sparse: when the host's filesystem fills up, the
		 * guest gets I/O errors instead of the VM being paused. */
		add(&a, "if=none,id=data,file=/dev/fdset/1,format=raw,file.locking=off,"
			"cache=writeback,discard=unmap,werror=report,rerror=report");
		add(&a, "-device");
		add(&a, "virtio-blk-device,drive=data,serial=omnirun-data");
	} else if (s->disk_placeholder_mb) {
		addf2(&a, "-blockdev", omr_strdup_printf("driver=null-co,node-name=data,size=%llu,"
							 "read-zeroes=on",
							 (unsigned long long)s->disk_placeholder_mb << 20));
		add(&a, "-device");
		add(&a, "virtio-blk-device,drive=data,serial=omnirun-data");
	}
	if (s->rootfs) {
		/* Shared by every sandbox of the template: read-only. */
		addf2(&a, "-add-fd", omr_strdup_printf("fd=%d,set=2", OMR_VMM_ROOTFS_FD));
		add(&a, "-drive");
		add(&a, "if=none,id=root,file=/dev/fdset/2,format=raw,read-only=on,file.locking=off,"
			"cache=writeback");
		add(&a, "-device");
		add(&a, "virtio-blk-device,drive=root,serial=omnirun-root");
	}
	if (s->tap_fd >= 0) {
		/* The tap arrives as an fd; its offloads (vnet_hdr) are
		 * probed on it. */
		addf2(&a, "-netdev", omr_strdup_printf("tap,id=net0,fd=%d", OMR_VMM_TAP_FD));
		addf2(&a, "-device", omr_strdup_printf("virtio-net-device,netdev=net0,mac=%s",
							   s->mac ? s->mac : "52:54:00:12:34:56"));
	} else if (s->nic_placeholder) {
		add(&a, "-device");
		add(&a, "virtio-net-device,mac=" OMR_VMM_TEMPLATE_MAC);
	}
	if (s->qmp_fd > 0) {
		addf2(&a, "-chardev", chardev("qmp", NULL, s->qmp_fd));
		add(&a, "-mon");
		add(&a, "chardev=qmp,mode=control");
	} else {
		addf2(&a, "-qmp", omr_strdup_printf("unix:%s,server=on,wait=off", s->qmp_sock));
	}
	add(&a, "-sandbox");
	add(&a, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
	return a.v;
}

/* --- the QEMU backend --- */

static int qemu_spawn(struct omr_vmm *vm, const struct omr_vmm_spec *s, struct omr_err **err)
{
	_cleanup_close_ int ro = -1, root = -1;
	int keep_from[5], keep_to[5];
	size_t nkeep = 0;
	char **argv;
	pid_t pid;

	if (s->disk_fd >= 0) {
		/* QEMU's block layer also opens the disk read-only at times,
		 * and an fdset hands out only fds of the matching access mode. */
		_cleanup_free_ char *self = omr_strdup_printf("/proc/self/fd/%d", s->disk_fd);
		ro = open(self, O_RDONLY | O_CLOEXEC);
		if (ro < 0)
			return omr_err_set(err, OMR_E_FAIL, errno, "cannot reopen the data disk");
		keep_from[nkeep] = s->disk_fd;
		keep_to[nkeep++] = OMR_VMM_DISK_FD;
		keep_from[nkeep] = ro;
		keep_to[nkeep++] = OMR_VMM_DISK_RO_FD;
	}
	if (s->tap_fd >= 0) {
		keep_from[nkeep] = s->tap_fd;
		keep_to[nkeep++] = OMR_VMM_TAP_FD;
	}
	if (s->rootfs) {
		root = open(s->rootfs, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (root < 0)
			return omr_err_set(err, omr_err_kind_missing(errno), errno, "cannot open %s",
					   s->rootfs);
		keep_from[nkeep] = root;
		keep_to[nkeep++] = OMR_VMM_ROOTFS_FD;
	}
	if (s->incoming_fd > 0) {
		keep_from[nkeep] = s->incoming_fd;
		keep_to[nkeep++] = OMR_VMM_INCOMING_FD;
	}
	if (s->config) {
		pid = omr_jail_spawn(s, keep_from, keep_to, nkeep, &vm->jail, err);
	} else {
		argv = omr_vmm_argv(s);
		pid = omr_spawn(argv, s->console_fd, keep_from, keep_to, nkeep, err);
		omr_argv_free(argv);
	}
	if (pid < 0)
		return -1;
	vm->pid = pid;
	free(vm->control);
	vm->control = s->qmp_sock ? omr_xstrdup(s->qmp_sock) : NULL;
	return 0;
}

static int qemu_qmp(struct omr_vmm *vm, const char *cmd, const char *what, struct omr_err **err)
{
	if (vm->pid <= 0 || !vm->control)
		return omr_err_setx(err, OMR_E_STATE, ESRCH, "cannot %s the VM: it is not running", what);
	if (omr_qmp_command(vm->control, cmd, NULL, vm->control_timeout_ms, NULL, err) < 0)
		return omr_err_wrap(err, "cannot %s the VM", what);
	return 0;
}

static int qemu_pause(struct omr_vmm *vm, struct omr_err **err)
{
	return qemu_qmp(vm, "stop", "pause", err);
}

static int qemu_resume(struct omr_vmm *vm, struct omr_err **err)
{
	return qemu_qmp(vm, "cont", "resume", err);
}

/* A whole guest (memory and devices) is saved by migrating it into a
 * file descriptor.  QMP's "migrate" returns at once; its status says
 * when the stream is complete.  Bounded: a stuck migration is cancelled
 * and fails. */
#define SAVE_TIMEOUT_MS 120000

static int migrate_set_ignore_shared(const char *qmp, int on, unsigned ms, struct omr_err **err)
{
	return omr_qmp_command(qmp, "migrate-set-capabilities",
			       json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability",
					 "x-ignore-shared", "state", on), ms, NULL, err);
}

int omr_vmm_qemu_wait_migrated(const char *qmp, unsigned ms, struct omr_err **err)
{
	uint64_t end = omr_now_ms() + SAVE_TIMEOUT_MS;

	for (;;) {
		json_t *ret = NULL;
		const char *st;
		int done, failed;

		if (omr_qmp_command(qmp, "query-migrate", NULL, ms, &ret, err) < 0)
			return -1;
		st = json_string_value(json_object_get(ret, "status"));
		done = st && !strcmp(st, "completed");
		/* No status: no migration under way at all. */
		failed = !st || !strcmp(st, "failed") || !strcmp(st, "cancelled");
		if (failed) {
			const char *why = json_string_value(json_object_get(ret, "error-desc"));
			omr_err_setx(err, OMR_E_FAIL, EIO, "the VM's state could not be saved: %s",
				     why ? why : st ? st : "no migration under way");
		}
		json_decref(ret);
		if (done)
			return 0;
		if (failed)
			return -1;
		if (omr_now_ms() > end) {
			omr_qmp_command(qmp, "migrate_cancel", NULL, ms, NULL, NULL);
			return omr_err_setx(err, OMR_E_TIMEOUT, ETIMEDOUT,
					    "saving the VM's state took over %u s", SAVE_TIMEOUT_MS / 1000);
		}
		usleep(2000);
	}
}

/* The guest is stopped (the caller did): all of it, RAM included, starts
 * streaming into fd.  A restored sandbox's QEMU left shared RAM out when
 * it came in; here nothing is left out. */
static int qemu_save_start(struct omr_vmm *vm, int fd, struct omr_err **err)
{
	if (vm->pid <= 0 || !vm->control)
		return omr_err_setx(err, OMR_E_STATE, ESRCH, "cannot save the VM: it is not running");
	if (migrate_set_ignore_shared(vm->control, 0, vm->control_timeout_ms, err) < 0 ||
	    omr_qmp_command_fd(vm->control, "omr-save", fd, "migrate",
			       json_pack("{s:s}", "uri", "fd:omr-save"), vm->control_timeout_ms,
			       NULL, err) < 0)
		return omr_err_wrap(err, "cannot save the VM");
	return 0;
}

static int qemu_save_wait(struct omr_vmm *vm, struct omr_err **err)
{
	if (omr_vmm_qemu_wait_migrated(vm->control, vm->control_timeout_ms, err) < 0)
		return omr_err_wrap(err, "cannot save the VM");
	return 0;
}

/* QEMU makes its QMP socket as it starts: wait for it (bounded). */
static int qmp_wait(const char *path, unsigned ms, struct omr_err **err)
{
	uint64_t end = omr_now_ms() + ms;

	for (;;) {
		struct omr_err *e = NULL;
		if (omr_qmp_command(path, "query-status", NULL, ms, NULL, &e) == 0)
			return 0;
		if (omr_now_ms() >= end) {
			if (err && !*err)
				*err = e;
			else
				omr_err_free(&e);
			return omr_err_wrap(err, "QEMU's control socket never answered");
		}
		omr_err_free(&e);
		usleep(2000);
	}
}

int omr_vmm_qemu_set_ignore_shared(const char *qmp, unsigned ms, struct omr_err **err)
{
	return migrate_set_ignore_shared(qmp, 1, ms, err);
}

/* The saved guest was stopped, so the restored one stays paused once its
 * state is in (no autostart): wait for that, bounded, then run it. */
static int qemu_wait_paused_cont(struct omr_vmm *vm, struct omr_err **err)
{
	uint64_t end = omr_now_ms() + vm->control_timeout_ms;

	for (;;) {
		json_t *ret = NULL;
		const char *st;
		int paused, running;

		if (omr_qmp_command(vm->control, "query-status", NULL, vm->control_timeout_ms, &ret,
				    err) < 0)
			return omr_err_wrap(err, "cannot restore the snapshot");
		st = json_string_value(json_object_get(ret, "status"));
		paused = st && (!strcmp(st, "paused") || !strcmp(st, "postmigrate"));
		running = st && !strcmp(st, "running");
		if (!paused && !running && st && strcmp(st, "inmigrate")) {
			omr_err_setx(err, OMR_E_BOOT, EIO, "restoring the snapshot left the VM %s", st);
			json_decref(ret);
			return -1;
		}
		json_decref(ret);
		if (running)
			return 0;
		if (paused)
			return qemu_qmp(vm, "cont", "start the restored", err);
		if (omr_now_ms() > end)
			return omr_err_setx(err, OMR_E_TIMEOUT, ETIMEDOUT,
					    "the snapshot's state did not load in time");
		usleep(1000);
	}
}

/* The VMM was spawned with incoming_fd (-incoming defer): the state comes
 * from the fd, shared RAM left out of it when it was saved so (a
 * template's snapshot) or not (a fork's); the guest runs once it is in. */
static int qemu_restore(struct omr_vmm *vm, int shared, struct omr_err **err)
{
	if (vm->pid <= 0 || !vm->control)
		return omr_err_setx(err, OMR_E_STATE, ESRCH, "cannot restore: the VM is not running");
	if (qmp_wait(vm->control, vm->control_timeout_ms, err) < 0 ||
	    migrate_set_ignore_shared(vm->control, shared, vm->control_timeout_ms, err) < 0 ||
	    omr_qmp_command(vm->control, "migrate-incoming",
			    json_pack("{s:s}", "uri", "fd:" OMR_STR(OMR_VMM_INCOMING_FD)),
			    vm->control_timeout_ms, NULL, err) < 0)
		return omr_err_wrap(err, "cannot restore the %s", shared ? "snapshot" : "saved state");
	return qemu_wait_paused_cont(vm, err);
}

const struct omr_vmm_ops omr_vmm_qemu_ops = {
	.name = "qemu",
	.spawn = qemu_spawn,
	.pause = qemu_pause,
	.resume = qemu_resume,
	.save_start = qemu_save_start,
	.save_wait = qemu_save_wait,
	.restore = qemu_restore,
};

/* --- dispatch --- */

const struct omr_vmm_ops *omr_vmm_ops_find(const char *name)
{
	static const struct omr_vmm_ops *const all[] = { &omr_vmm_qemu_ops };

	for (size_t i = 0; name && i < OMR_ARRAY_SIZE(all); i++)
		if (!strcmp(all[i]->name, name))
			return all[i];
	return NULL;
}

/* QMP answers within milliseconds; a VMM that does not is stuck. */
#define VMM_CONTROL_TIMEOUT_MS 5000

void omr_vmm_init(struct omr_vmm *vm, const struct omr_vmm_ops *ops)
{
	*vm = (struct omr_vmm){ .ops = ops, .pid = -1, .control_timeout_ms = VMM_CONTROL_TIMEOUT_MS };
}

const char *omr_vmm_reaped(struct omr_vmm *vm, int status)
{
	return omr_jail_release(&vm->jail, status);
}

void omr_vmm_release(struct omr_vmm *vm)
{
	omr_jail_release(&vm->jail, 0);
	free(vm->control);
	vm->control = NULL;
}

int omr_vmm_spawn(struct omr_vmm *vm, const struct omr_vmm_spec *s, struct omr_err **err)
{
	return vm->ops->spawn(vm, s, err);
}

int omr_vmm_pause(struct omr_vmm *vm, struct omr_err **err)
{
	return vm->ops->pause(vm, err);
}

int omr_vmm_resume(struct omr_vmm *vm, struct omr_err **err)
{
	return vm->ops->resume(vm, err);
}

int omr_vmm_save(struct omr_vmm *vm, int fd, struct omr_err **err)
{
	if (vm->ops->save_start(vm, fd, err) < 0)
		return -1;
	return vm->ops->save_wait(vm, err);
}

int omr_vmm_save_start(struct omr_vmm *vm, int fd, struct omr_err **err)
{
	return vm->ops->save_start(vm, fd, err);
}

int omr_vmm_save_wait(struct omr_vmm *vm, struct omr_err **err)
{
	return vm->ops->save_wait(vm, err);
}

int omr_vmm_restore(struct omr_vmm *vm, int shared, struct omr_err **err)
{
	return vm->ops->restore(vm, shared, err);
}

/* --- host usage --- */

/* The data disk is the file QEMU holds that has no name (O_TMPFILE or
 * unlinked); it is open twice (read-write and read-only). */
static int64_t disk_bytes(pid_t pid)
{
	_cleanup_free_ char *dir = omr_strdup_printf("/proc/%d/fd", (int)pid);
	DIR *d = opendir(dir);
	struct dirent *de;
	dev_t dev = 0;
	ino_t ino = 0;
	int64_t total = -1;

	while (d && (de = readdir(d))) {
		struct stat st;
		if (de->d_name[0] == '.' || fstatat(dirfd(d), de->d_name, &st, 0) < 0 ||
		    !S_ISREG(st.st_mode) || st.st_nlink != 0 || (st.st_dev == dev && st.st_ino == ino))
			continue;
		dev = st.st_dev;
		ino = st.st_ino;
		total = (total < 0 ? 0 : total) + (int64_t)st.st_blocks * 512;
	}
	if (d)
		closedir(d);
	return total;
}

/* Without a cgroup: QEMU's own CPU time and resident memory. */
static void proc_usage(pid_t pid, struct omr_vmm_usage *u)
{
	_cleanup_free_ char *stat = omr_strdup_printf("/proc/%d/stat", (int)pid);
	_cleanup_free_ char *status = omr_strdup_printf("/proc/%d/status", (int)pid);
	_cleanup_free_ char *text = NULL;
	unsigned long long ut, st;
	long hz = sysconf(_SC_CLK_TCK);
	char *p;

	if (omr_read_file_at(AT_FDCWD, stat, 4096, &text, NULL, NULL) == 0 &&
	    (p = strrchr(text, ')')) &&
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2 &&
	    hz > 0)
		u->cpu_ns = (int64_t)((ut + st) * (1000000000ull / (unsigned long long)hz));
	free(text);
	text = NULL;
	if (omr_read_file_at(AT_FDCWD, status, 65536, &text, NULL, NULL) == 0 &&
	    (p = strstr(text, "\nVmRSS:")))
		u->memory_bytes = strtoll(p + 7, NULL, 10) * 1024;
}

void omr_vmm_usage(const struct omr_config *c, const struct omr_sandbox *sb,
		   struct omr_vmm_usage *u)
{
	u->cpu_ns = u->memory_bytes = u->disk_bytes = -1;
	if (sb->state == OMR_SB_STOPPED)
		return;
	if (omr_cgroup_usage(c, sb->id, &u->cpu_ns, &u->memory_bytes) < 0 && sb->vmm_pid > 0)
		proc_usage(sb->vmm_pid, u);
	if (sb->vmm_pid > 0)
		u->disk_bytes = disk_bytes(sb->vmm_pid);
}
