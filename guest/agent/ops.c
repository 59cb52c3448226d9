/* Request dispatch and the ops that answer at once. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

static bool poweroff; /* the host asked for a shutdown */

static void op_ping(uint32_t id, json_t *req)
{
	(void)req;
	send_json(OMR_F_END, id, json_pack("{s:b}", "pong", 1));
}

static json_t *hello_json(void)
{
	struct utsname u;

	uname(&u);
	return json_pack("{s:i,s:s,s:s,s:s}", "version", OMR_PROTO_VERSION, "agent",
			 AGENT_VERSION, "kernel", u.release, "disk", agent_cfg.disk_state);
}

static void op_hello(uint32_t id, json_t *req)
{
	(void)req;
	send_json(OMR_F_HELLO, 0, hello_json());
	send_json(OMR_F_END, id, hello_json());
}

/* Value in kB of a /proc/meminfo line, or -1. */
static long long meminfo(const char *text, const char *key)
{
	const char *p = strstr(text, key);
	long long v;

	if (!p || sscanf(p + strlen(key), " %lld", &v) != 1)
		return -1;
	return v;
}

static json_t *disk_json(void)
{
	json_t *d = json_pack("{s:s,s:s}", "state", agent_cfg.disk_state, "path",
			      agent_cfg.data_dir);
	struct statvfs sv;

	if (d && !strcmp(agent_cfg.disk_state, "ready") && statvfs(agent_cfg.data_dir, &sv) == 0) {
		json_object_set_new(d, "size_bytes",
				    json_integer((json_int_t)(sv.f_blocks * sv.f_frsize)));
		json_object_set_new(d, "free_bytes",
				    json_integer((json_int_t)(sv.f_bavail * sv.f_frsize)));
	}
	return d;
}

static void op_info(uint32_t id, json_t *req)
{
	_cleanup_free_ char *mi = NULL;
	struct timespec ts;
	struct utsname u;
	json_t *o;

	(void)req;
	uname(&u);
	clock_gettime(CLOCK_BOOTTIME, &ts);
	if (omr_read_file_at(AT_FDCWD, "/proc/meminfo", 65536, &mi, NULL, NULL) < 0)
		mi = omr_xstrdup("");
	o = json_pack("{s:i,s:s,s:s,s:I,s:I,s:I,s:I,s:o,s:i,s:i}", "version", OMR_PROTO_VERSION,
		      "agent", AGENT_VERSION, "kernel", u.release, "uptime_ms",
		      (json_int_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, "mem_total_kb",
		      (json_int_t)meminfo(mi, "MemTotal:"), "mem_free_kb",
		      (json_int_t)meminfo(mi, "MemFree:"), "mem_available_kb",
		      (json_int_t)meminfo(mi, "MemAvailable:"), "disk", disk_json(), "nproc",
		      (int)sysconf(_SC_NPROCESSORS_ONLN), "processes", (int)procs_count());
	send_json(OMR_F_END, id, o);
}

/* After a restore from a snapshot every clone holds the template's
 * memory: the same hostname, clock, RNG state.  This op makes it
 * itself before the sandbox is reported ready, in this order: host
 * entropy into the RNG and a reseed (RNDADDENTROPY + RNDRESEEDCRNG,
 * microvm has no vmgenid), the hostname, the clock, the NIC's MAC, and
 * only then the encrypted data disk, whose key is drawn after the reseed. */
static void op_identity(uint32_t id, json_t *req)
{
	const char *host = json_string_value(json_object_get(req, "hostname"));
	const char *ent = json_string_value(json_object_get(req, "entropy"));
	const char *disk = json_string_value(json_object_get(req, "disk"));
	json_t *tns = json_object_get(req, "time_ns");
	_cleanup_free_ char *raw = NULL;
	size_t n = 0;

	if (!host || !ent || !json_is_integer(tns) || omr_b64_decode(ent, &raw, &n) < 0 ||
	    n < 32 || n > 512) {
		send_error(id, EINVAL, NULL, "identity needs hostname, entropy (32-512 bytes "
			   "in base64) and time_ns");
		return;
	}
	{
		struct {
			int entropy_count, buf_size;
			unsigned char buf[512];
		} pool = { .entropy_count = (int)n * 8, .buf_size = (int)n };
		_cleanup_close_ int fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);

		memcpy(pool.buf, raw, n);
		explicit_bzero(raw, n);
		if (fd < 0 || ioctl(fd, RNDADDENTROPY, &pool) < 0 ||
		    ioctl(fd, RNDRESEEDCRNG) < 0) {
			int e = errno;
			explicit_bzero(&pool, sizeof(pool));
			send_error(id, e, NULL, "cannot reseed the RNG: %s", strerror(e));
			return;
		}
		explicit_bzero(&pool, sizeof(pool));
	}
	if (sethostname(host, strlen(host)) < 0) {
		send_error(id, errno, NULL, "hostname: %s", strerror(errno));
		return;
	}
	{
		json_int_t ns = json_integer_value(tns);
		struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000),
				       .tv_nsec = (long)(ns % 1000000000) };
		if (clock_settime(CLOCK_REALTIME, &ts) < 0) {
			send_error(id, errno, NULL, "clock: %s", strerror(errno));
			return;
		}
	}
	/* The sandbox's process limit was on its kernel command line in a
	 * cold boot; a clone's command line is the template's. */
	if (json_is_integer(json_object_get(req, "pids")) && agent_cfg.cgroup) {
		json_int_t want = json_integer_value(json_object_get(req, "pids"));
		_cleanup_free_ char *cur = NULL;
		char buf[32];
		if (omr_read_file_at(AT_FDCWD, "/sys/fs/cgroup/omnirun-cmds/pids.max", 64, &cur, NULL, NULL) == 0 &&
		    want > 0 && (!strncmp(cur, "max", 3) || want < atoll(cur))) {
			snprintf(buf, sizeof(buf), "%lld", (long long)want);
			if (file_write_str("/sys/fs/cgroup/omnirun-cmds/pids.max", buf) < 0) {
				send_error(id, errno, NULL, "pids.max: %s", strerror(errno));
				return;
			}
		}
	}
	{
		const char *mac = json_string_value(json_object_get(req, "mac"));
		const char *was = json_string_value(json_object_get(req, "mac_was"));
		int rc;
		if (mac && was && (rc = net_set_mac(was, mac)) < 0) {
			send_error(id, -rc, NULL, "cannot give the NIC its MAC %.32s: %s", mac,
				   strerror(-rc));
			return;
		}
	}
	if (disk)
		disk_setup_dev(disk);
	send_json(OMR_F_END, id, json_pack("{s:s}", "disk", agent_cfg.disk_state));
}

/* {"unix_ms": N}: the guest's wall clock becomes the host's.  A paused
 * VM's clock stood still while its CPUs did (under TCG the guest's TSC
 * is QEMU's virtual clock), so the monitor sends this on every resume.
 * Only as the guest's init: the host build must not set the host's. */
static void op_clock_set(uint32_t id, json_t *req)
{
	struct jerr e = { { 0 } };
	struct timespec ts;
	int64_t ms;

	if (jget_int(req, "unix_ms", 1, INT64_C(1) << 50, 0, &ms, &e) < 0) {
		send_error(id, EINVAL, NULL, "%s", e.msg);
		return;
	}
	if (!agent_cfg.pid1) {
		send_error(id, EPERM, NULL, "the clock is set only by the guest's init");
		return;
	}
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000;
	if (clock_settime(CLOCK_REALTIME, &ts) < 0) {
		send_error(id, errno, NULL, "cannot set the clock: %s", strerror(errno));
		return;
	}
	send_json(OMR_F_END, id, json_pack("{s:I}", "unix_ms", (json_int_t)ms));
}

static void op_shutdown(uint32_t id, json_t *req)
{
	(void)req;
	omr_log(OMR_LOG_INFO, "shutdown requested by the host");
	send_json(OMR_F_END, id, json_object());
	poweroff = true;
	server_request_exit();
}

static const struct op {
	const char *name;
	void (*fn)(uint32_t id, json_t *req);
} ops[] = {
	{ "ping", op_ping },
	{ "hello", op_hello },
	{ "info", op_info },
	{ "shutdown", op_shutdown },
	{ "identity", op_identity },
	{ "clock_set", op_clock_set },
	{ "exec", op_exec },
	{ "ps", op_ps },
	{ "attach", op_attach },
	{ "kill", op_kill },
	{ "file_read", op_file_read },
	{ "file_write", op_file_write },
	{ "list", op_list },
	{ "stat", op_stat },
	{ "mkdir", op_mkdir },
	{ "remove", op_remove },
	{ "rename", op_rename },
	{ "watch", op_watch },
	{ "env_set", op_env_set },
	{ "net_config", op_net_config },
	{ "forward", op_forward },
};

static void ops_dispatch(uint32_t id, json_t *req)
{
	json_t *op = json_object_get(req, "op");
	const char *name;

	if (!json_is_string(op)) {
		send_error(id, EINVAL, NULL, "\"op\" is required and must be a string");
		return;
	}
	name = json_string_value(op);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (!strcmp(ops[i].name, name)) {
			ops[i].fn(id, req);
			return;
		}
	send_error(id, EINVAL, "unknown_op", "unknown op \"%.64s\"", name);
}

static void agent_stop(void)
{
	procs_shutdown();
	if (poweroff && agent_cfg.pid1)
		kill(1, SIGTERM); /* init powers the machine off */
}

const struct server_hooks agent_hooks = {
	.request = ops_dispatch,
	.hello = hello_json,
	.start = procs_init,
	.poll = procs_poll,
	.tick = procs_tick,
	.collect = procs_collect,
	.stop = agent_stop,
};
