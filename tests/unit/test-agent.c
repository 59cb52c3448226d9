/* Tests omnirun-agent over a socketpair (TAP output).
 *
 *   test-agent [PATH-TO-omnirun-agent-host]
 *
 * The agent runs on the host in its development mode (--serve-fd 3), so
 * exec, files, flow control and error handling are exercised without a VM. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "omnirun/base/proto.h"

#include "tap.h"

#define RECV_TIMEOUT_MS 20000

static const char *agent_path;
static const char *vm_sock; /* --socket: a guest's agent behind QEMU */
static const char *agent_cgroup; /* --cgroup for the agent, or NULL */
static char tmpdir[] = "/tmp/omnirun-test-agent.XXXXXX";
static int afd = -1;
static pid_t apid = -1;
static uint32_t next_id = 1;

static void remove_tmpdir(void)
{
	char cmd[600];

	if (tmpdir[strlen(tmpdir) - 1] == 'X')
		return; /* never created */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	(void)!system(cmd);
}

static _Noreturn void bail(const char *why)
{
	printf("Bail out! %s\n", why);
	if (apid > 0)
		kill(apid, SIGKILL);
	remove_tmpdir();
	exit(1);
}

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- agent process and frames ---- */

static void send_raw(uint8_t type, uint8_t flags, uint32_t id, const void *p, size_t n)
{
	if (omr_frame_send(afd, type, flags, id, p, n) < 0)
		bail("cannot send to the agent");
}

static void send_js(uint8_t type, uint32_t id, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);

	json_decref(o);
	send_raw(type, 0, id, s, strlen(s));
	free(s);
}

static void send_win(uint32_t id, uint32_t n)
{
	uint8_t b[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };

	send_raw(OMR_F_WINDOW, 0, id, b, 4);
}

/* Receives one frame, or returns -ETIMEDOUT / the recv error. */
static int recv_frame(struct omr_frame_hdr *h, uint8_t **p, int timeout_ms)
{
	struct pollfd pfd = { .fd = afd, .events = POLLIN };
	int rc = poll(&pfd, 1, timeout_ms);

	if (rc == 0)
		return -ETIMEDOUT;
	return omr_frame_recv(afd, h, p);
}

static void expect_hello(void);

static void vm_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", vm_sock);
	for (int i = 0; i < 300; i++) {
		afd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(afd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		close(afd);
		afd = -1;
		usleep(100 * 1000);
	}
	if (afd < 0)
		bail("cannot connect to the guest's agent socket");
	expect_hello();
}

static void agent_start(void)
{
	int sv[2];
	char env_file[256];

	if (vm_sock) {
		vm_connect();
		return;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		bail("socketpair");
	snprintf(env_file, sizeof(env_file), "%s/env", tmpdir);
	apid = fork();
	if (apid == 0) {
		dup2(sv[1], 3);
		if (agent_cgroup)
			execl(agent_path, agent_path, "--serve-fd", "3", "--env-file", env_file,
			      "--cgroup", agent_cgroup, (char *)NULL);
		else
			execl(agent_path, agent_path, "--serve-fd", "3", "--env-file", env_file,
			      (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	afd = sv[0];
	expect_hello();
}

/* Waits for HELLO, skipping frames of streams that died before it. */
static void expect_hello(void)
{
	struct omr_frame_hdr h;
	uint8_t *p = NULL;

	/* A guest may still be booting: be patient. */
	for (;;) {
		if (recv_frame(&h, &p, vm_sock ? 180000 : RECV_TIMEOUT_MS) < 0)
			bail("no HELLO from the agent");
		if (h.type == OMR_F_HELLO)
			break;
		free(p);
	}
	json_t *o = json_loads((char *)p, 0, NULL);
	if (vm_sock)
		diag("HELLO %s", (char *)p);
	ok(json_integer_value(json_object_get(o, "version")) == 1 &&
		   !strncmp(json_string_value(json_object_get(o, "agent")), "omnirun-agent", 13) &&
		   json_is_string(json_object_get(o, "kernel")),
	   "HELLO carries version, agent and kernel");
	json_decref(o);
	free(p);
}

/* Closes our end and returns the agent's exit status. */
static int agent_stop(void)
{
	int st = -1;

	close(afd);
	afd = -1;
	if (vm_sock)
		return 0;
	if (waitpid(apid, &st, 0) < 0)
		st = -1;
	apid = -1;
	return st;
}

/* ---- streams ---- */

struct res {
	uint32_t id;
	json_t *end, *replies;
	char *out[4];
	size_t len[4];
	bool eof[4];
	bool done;
	bool manual_window; /* the test grants credit itself */
	uint64_t granted, received;
	/* stdin to send, respecting the agent's credit */
	const uint8_t *in;
	size_t in_len, in_off;
	bool in_eof, in_eof_sent;
	uint64_t in_credit;
	uint8_t in_ch;
};

static void res_init(struct res *r, uint32_t id)
{
	memset(r, 0, sizeof(*r));
	r->id = id;
	r->replies = json_array();
	r->granted = OMR_WINDOW_INIT;
	r->in_credit = OMR_WINDOW_INIT;
	r->in_ch = 0;
}

static void res_free(struct res *r)
{
	json_decref(r->end);
	json_decref(r->replies);
	for (int i = 0; i < 4; i++)
		free(r->out[i]);
	memset(r, 0, sizeof(*r));
}

static void feed_stdin(struct res *r)
{
	while (r->in_off < r->in_len && r->in_credit > 0) {
		size_t n = r->in_len - r->in_off;
		if (n > OMR_DATA_CHUNK)
			n = OMR_DATA_CHUNK;
		if (n > r->in_credit)
			n = (size_t)r->in_credit;
		send_raw(OMR_F_DATA, r->in_ch, r->id, r->in + r->in_off, n);
		r->in_off += n;
		r->in_credit -= n;
	}
	if (r->in_eof && !r->in_eof_sent && r->in_off == r->in_len) {
		send_raw(OMR_F_EOF, r->in_ch, r->id, NULL, 0);
		r->in_eof_sent = true;
	}
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Handles one frame for one of rs; returns false on timeout or loss. */
static bool pump_one(struct res *rs, size_t n, int timeout_ms)
{
	struct omr_frame_hdr h;
	uint8_t *p;
	struct res *r = NULL;
	int rc = recv_frame(&h, &p, timeout_ms);

	if (rc < 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (rs[i].id == h.stream && !rs[i].done)
			r = &rs[i];
	if (!r) {
		free(p);
		return true;
	}
	switch (h.type) {
	case OMR_F_DATA:
		if (h.flags < 4) {
			r->out[h.flags] = realloc(r->out[h.flags], r->len[h.flags] + h.len + 1);
			memcpy(r->out[h.flags] + r->len[h.flags], p, h.len);
			r->len[h.flags] += h.len;
			r->out[h.flags][r->len[h.flags]] = 0;
		}
		r->received += h.len;
		if (!r->manual_window) {
			send_win(r->id, h.len);
			r->granted += h.len;
		}
		break;
	case OMR_F_EOF:
		if (h.flags < 4)
			r->eof[h.flags] = true;
		break;
	case OMR_F_WINDOW:
		if (h.len == 4)
			r->in_credit += get32(p);
		feed_stdin(r);
		break;
	case OMR_F_REPLY:
		json_array_append_new(r->replies, json_loads((char *)p, 0, NULL));
		break;
	case OMR_F_END:
		r->end = json_loads((char *)p, 0, NULL);
		r->done = true;
		break;
	}
	free(p);
	return true;
}

static bool pump(struct res *rs, size_t n)
{
	for (;;) {
		bool all = true;
		for (size_t i = 0; i < n; i++)
			all &= rs[i].done;
		if (all)
			return true;
		if (!pump_one(rs, n, vm_sock ? 120000 : RECV_TIMEOUT_MS)) {
			diag("timeout or connection lost waiting for END");
			return false;
		}
	}
}

/* Sends REQ (o is stolen) and waits for END. */
static void rpc(struct res *r, json_t *o)
{
	res_init(r, next_id++);
	send_js(OMR_F_REQ, r->id, o);
	pump(r, 1);
}

static void rpc_stdin(struct res *r, json_t *o, const void *in, size_t len, uint8_t ch)
{
	res_init(r, next_id++);
	r->in = in;
	r->in_len = len;
	r->in_eof = true;
	r->in_ch = ch;
	send_js(OMR_F_REQ, r->id, o);
	feed_stdin(r);
	pump(r, 1);
}

static const char *end_str(const struct res *r, const char *k)
{
	return json_string_value(json_object_get(r->end, k));
}

static long long end_int(const struct res *r, const char *k)
{
	json_t *v = json_object_get(r->end, k);

	return json_is_integer(v) ? json_integer_value(v) : -9999;
}

static bool is_code(const struct res *r, const char *code)
{
	const char *c = end_str(r, "code");

	if (!c || strcmp(c, code))
		diag("expected code %s, got %s", code, r->end ? json_dumps(r->end, 0) : "nothing");
	return c && !strcmp(c, code);
}

static bool out_is(const struct res *r, int ch, const char *want)
{
	bool same = r->out[ch] ? !strcmp(r->out[ch], want) : !*want;

	if (!same)
		diag("channel %d: got \"%s\", want \"%s\"", ch, r->out[ch] ? r->out[ch] : "", want);
	return same;
}

/* The home directory the agent gives uid (its passwd entry's, "/"
 * without one). */
static const char *home_of(uid_t uid)
{
	struct passwd *pw = getpwuid(uid);

	return pw && pw->pw_dir[0] ? pw->pw_dir : "/";
}

static json_t *sh(const char *cmd)
{
	return json_pack("{s:s,s:s}", "op", "exec", "cmd", cmd);
}

static char *tpath(const char *name)
{
	static char buf[4][512];
	static int k;
	char *b = buf[k++ % 4];

	snprintf(b, 512, "%s/%s", tmpdir, name);
	return b;
}

/* The output of channel ch without its newlines, for a test's name. */
static const char *one_line(const struct res *r, int ch)
{
	static char buf[256];

	snprintf(buf, sizeof(buf), "%s", r->out[ch] ? r->out[ch] : "");
	for (char *p = buf; *p; p++)
		if (*p == '\n')
			*p = *(p + 1) ? ' ' : 0;
	return buf;
}

/* A command that waits up to 5 s until no command cgroup but its own is
 * left in dir, then prints "left:" and what is left. */
static json_t *no_leftover_cgroups(const char *dir)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd),
		 "own=$(sed 's|.*/||' /proc/self/cgroup); "
		 "for i in $(seq 50); do "
		 "  l=$(ls '%s' | grep '^c[0-9]' | grep -vx \"$own\" | tr '\\n' ' '); "
		 "  [ -z \"$l\" ] && break; sleep 0.1; "
		 "done; echo \"left:$l\"",
		 dir);
	return sh(cmd);
}

/* A command that waits up to 5 s for process pid to be gone (or a
 * zombie), then prints "gone" (or "alive"). */
static json_t *gone_check(int pid)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd),
		 "for i in $(seq 50); do grep -q '^State:[^Z]*$' /proc/%d/status 2>/dev/null || "
		 "{ echo gone; exit; }; sleep 0.1; done; echo alive",
		 pid);
	return sh(cmd);
}

/* Checks that a pid read from a command's output was read (> 0), then
 * that the process is gone: an unreadable pid must never pass as gone. */
static void assert_gone(long long pid, const char *desc)
{
	struct res r;

	if (!ok(pid > 0, "%s: its pid was read (%lld)", desc, pid))
		return;
	rpc(&r, gone_check((int)pid));
	is_str(r.out[1], "gone\n", "%s", desc);
	res_free(&r);
}

/* ---- tests ---- */

static void test_basics(void)
{
	struct res r;
	struct omr_frame_hdr h;
	uint8_t *p;

	rpc(&r, json_pack("{s:s}", "op", "ping"));
	ok(json_is_true(json_object_get(r.end, "pong")), "ping answers pong");
	res_free(&r);

	rpc(&r, json_pack("{s:s}", "op", "no_such_op"));
	ok(is_code(&r, "unknown_op"), "unknown op gives unknown_op");
	res_free(&r);

	res_init(&r, next_id++);
	send_raw(OMR_F_REQ, 0, r.id, "{not json", 9);
	pump(&r, 1);
	ok(is_code(&r, "bad_request"), "bad JSON gives bad_request");
	res_free(&r);

	res_init(&r, next_id++);
	send_raw(OMR_F_REQ, 0, r.id, "[1,2]", 5);
	pump(&r, 1);
	ok(is_code(&r, "bad_request"), "a non-object request gives bad_request");
	res_free(&r);

	rpc(&r, json_pack("{s:i}", "nop", 1));
	ok(is_code(&r, "bad_request"), "a request without op gives bad_request");
	res_free(&r);

	res_init(&r, next_id++);
	send_raw(42, 0, r.id, "x", 1);
	pump(&r, 1);
	ok(is_code(&r, "bad_request"), "an unknown frame type gives END bad_request");
	res_free(&r);

	send_raw(OMR_F_REQ, 0, 0, "{\"op\":\"ping\"}", 13);
	ok(recv_frame(&h, &p, RECV_TIMEOUT_MS) == 0 && h.type == OMR_F_END && h.stream == 0 &&
		   strstr((char *)p, "bad_request"),
	   "REQ on stream 0 is refused");
	free(p);

	/* Stray frames for unknown streams are ignored. */
	send_raw(OMR_F_DATA, 0, 999999, "zz", 2);
	send_raw(OMR_F_EOF, 0, 999999, NULL, 0);
	send_win(999999, 5);
	send_raw(OMR_F_SIGNAL, 0, 999999, "{}", 2);
	send_raw(OMR_F_WINDOW, 0, 999999, "abc", 3);
	rpc(&r, json_pack("{s:s}", "op", "ping"));
	ok(json_is_true(json_object_get(r.end, "pong")), "stray frames are ignored");
	res_free(&r);

	rpc(&r, json_pack("{s:s}", "op", "info"));
	ok(end_int(&r, "version") == 1 && end_int(&r, "mem_total_kb") > 0 &&
		   end_int(&r, "nproc") > 0 && end_int(&r, "uptime_ms") > 0 &&
		   json_is_object(json_object_get(r.end, "disk")),
	   "info reports memory, cpus, uptime and disk");
	res_free(&r);
}

static void test_exec(void)
{
	struct res r;
	char buf[600];

	rpc(&r, json_pack("{s:s,s:[s]}", "op", "exec", "argv", "true"));
	ok(end_int(&r, "exit_code") == 0 && json_is_null(json_object_get(r.end, "signal")) &&
		   json_is_false(json_object_get(r.end, "timed_out")) &&
		   json_array_size(r.replies) == 1 &&
		   json_integer_value(json_object_get(json_array_get(r.replies, 0), "pid")) > 0 &&
		   r.eof[1] && r.eof[2],
	   "exec true: REPLY pid, EOF 1 and 2, exit 0");
	res_free(&r);

	rpc(&r, sh("exit 3"));
	is_int(end_int(&r, "exit_code"), 3, "exit code is passed through");
	res_free(&r);

	rpc(&r, sh("echo out; echo err >&2"));
	ok(out_is(&r, 1, "out\n") && out_is(&r, 2, "err\n"), "stdout and stderr are separate");
	res_free(&r);

	rpc(&r, json_pack("{s:s,s:s,s:{s:s}}", "op", "exec", "cmd", "echo \"$FOO|$HOME|$PATH\"",
			  "env", "FOO", "bar baz"));
	/* HOME is the passwd entry's of the uid the command runs as (ours). */
	snprintf(buf, sizeof(buf), "bar baz|%s|%s\n", home_of(geteuid()),
		 "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	is_str(r.out[1], buf, "env is passed, PATH and HOME are set");
	res_free(&r);

	rpc(&r, json_pack("{s:s,s:s,s:s}", "op", "exec", "cmd", "pwd", "cwd", tmpdir));
	snprintf(buf, sizeof(buf), "%s\n", tmpdir);
	ok(out_is(&r, 1, buf), "cwd is honoured");
	res_free(&r);

	rpc(&r, json_pack("{s:s,s:s,s:s}", "op", "exec", "cmd", "pwd", "cwd", "/nonexistent/dir"));
	ok(is_code(&r, "not_found") && json_array_size(r.replies) == 0,
	   "a missing cwd is an error, not a command");
	res_free(&r);

	rpc_stdin(&r, json_pack("{s:s,s:[s],s:b}", "op", "exec", "argv", "cat", "stdin", 1),
		  "hello\nworld\n", 12, 0);
	ok(out_is(&r, 1, "hello\nworld\n") && end_int(&r, "exit_code") == 0, "stdin reaches the command");
	res_free(&r);

	rpc(&r, json_pack("{s:s,s:[s]}", "op", "exec", "argv", "cat"));
	ok(out_is(&r, 1, "") && end_int(&r, "exit_code") == 0, "without stdin the command reads /dev/null");
	res_free(&r);

	uint64_t t0 = ms_now();
	rpc(&r, json_pack("{s:s,s:s,s:i}", "op", "exec", "cmd", "sleep 10 & sleep 10; wait",
			  "timeout_ms", 300));
	ok(json_is_true(json_object_get(r.end, "timed_out")) && end_int(&r, "signal") == 9 &&
		   json_is_null(json_object_get(r.end, "exit_code")) && ms_now() - t0 < 5000,
	   "timeout kills the group and says so (%llu ms)", (unsigned long long)(ms_now() - t0));
	res_free(&r);

	rpc(&r, json_pack("{s:s,s:[s,s]}", "op", "exec", "argv", "no-such-command-xyz", "a"));
	ok(end_int(&r, "exit_code") == 127 &&
		   out_is(&r, 2, "omnirun: no-such-command-xyz: command not found\n"),
	   "a missing command exits 127 with a shell-like message");
	res_free(&r);

	int fd = open(tpath("notexec"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	close(fd);
	rpc(&r, json_pack("{s:s,s:[s]}", "op", "exec", "argv", tpath("notexec")));
	ok(end_int(&r, "exit_code") == 126 && r.out[2] && strstr(r.out[2], "Permission denied"),
	   "a non-executable file exits 126");
	res_free(&r);

	rpc(&r, json_pack("{s:s,s:[]}", "op", "exec", "argv"));
	ok(is_code(&r, "bad_request"), "empty argv is a bad request");
	res_free(&r);

	rpc(&r, json_pack("{s:s,s:[s],s:s}", "op", "exec", "argv", "true", "cmd", "true"));
	ok(is_code(&r, "bad_request"), "argv and cmd together are a bad request");
	res_free(&r);

	json_t *many = json_array();
	for (int i = 0; i < 4097; i++)
		json_array_append_new(many, json_string("x"));
	rpc(&r, json_pack("{s:s,s:o}", "op", "exec", "argv", many));
	ok(is_code(&r, "bad_request"), "more than 4096 arguments are refused");
	res_free(&r);

	rpc(&r, json_pack("{s:s,s:s,s:s}", "op", "exec", "cmd", "true", "user", "no-such-user-q"));
	ok(is_code(&r, "not_found"), "an unknown user is not_found");
	res_free(&r);

	if (geteuid() == 0) {
		rpc(&r, json_pack("{s:s,s:s,s:s}", "op", "exec", "cmd", "id -u; echo $HOME", "user",
				  "nobody"));
		snprintf(buf, sizeof(buf), "65534\n%s\n", home_of(65534));
		is_str(r.out[1], buf, "user switches identity and HOME");
		res_free(&r);
	} else {
		skip("user switch needs root");
	}

	rpc(&r, json_pack("{s:s,s:s,s:b}", "op", "exec", "cmd", "tty; test -t 0 && echo T; echo E >&2",
			  "pty", 1));
	ok(r.out[1] && !strncmp(r.out[1], "/dev/pts/", 9) && strstr(r.out[1], "T\r\n") &&
		   strstr(r.out[1], "E\r\n") && !r.out[2] && end_int(&r, "exit_code") == 0,
	   "pty: a terminal, all output on channel 1");
	res_free(&r);
}

static void test_signals(void)
{
	struct res r;
	bool got_pid = false;

	res_init(&r, next_id++);
	send_js(OMR_F_REQ, r.id, sh("sleep 30"));
	while (!r.done && json_array_size(r.replies) == 0 && pump_one(&r, 1, RECV_TIMEOUT_MS))
		;
	got_pid = json_array_size(r.replies) == 1;
	send_js(OMR_F_SIGNAL, r.id, json_pack("{s:i}", "signal", 15));
	pump(&r, 1);
	ok(got_pid && end_int(&r, "signal") == 15, "SIGNAL {signal:15} reaches the command");
	res_free(&r);

	res_init(&r, next_id++);
	send_js(OMR_F_REQ, r.id, json_pack("{s:s,s:s}", "op", "exec", "cmd", "trap '' TERM; sleep 30"));
	while (!r.done && json_array_size(r.replies) == 0 && pump_one(&r, 1, RECV_TIMEOUT_MS))
		;
	send_js(OMR_F_SIGNAL, r.id, json_object());
	pump(&r, 1);
	ok(end_int(&r, "signal") == 9 && json_is_true(json_object_get(r.end, "cancelled")) &&
		   r.eof[1] && r.eof[2],
	   "SIGNAL {} cancels with SIGKILL");
	res_free(&r);
}

static void test_files(void)
{
	struct res r;
	size_t n = 1536 * 1024 + 77;
	uint8_t *data = malloc(n);
	char name[64];

	srand(7);
	for (size_t i = 0; i < n; i++)
		data[i] = (uint8_t)rand();
	rpc_stdin(&r, json_pack("{s:s,s:s,s:i}", "op", "file_write", "path", tpath("bin"), "mode",
				0600),
		  data, n, OMR_CH_FILE);
	is_int(end_int(&r, "size"), (long long)n, "file_write of 1.5 MiB of binary data");
	res_free(&r);

	rpc(&r, json_pack("{s:s,s:s}", "op", "file_read", "path", tpath("bin")));
	ok(r.len[3] == n && !memcmp(r.out[3], data, n) && r.eof[3] &&
		   end_int(&r, "size") == (long long)n &&
		   json_integer_value(json_object_get(json_array_get(r.replies, 0), "size")) ==
			   (long long)n &&
		   json_integer_value(json_object_get(json_array_get(r.replies, 0), "mode")) == 0600,
	   "file_read returns the same bytes, size and mode");
	res_free(&r);

	rpc(&r, json_pack("{s:s,s:s,s:i,s:i}", "op", "file_read", "path", tpath("bin"), "offset",
			  1000, "length", 5000));
	ok(r.len[3] == 5000 && !memcmp(r.out[3], data + 1000, 5000), "file_read with offset and length");
	res_free(&r);

	/* An interrupted client forwards its SIGINT: a transfer has no
	 * process to give it to, so it stops (credit held back, so the read
	 * is still under way). */
	res_init(&r, next_id++);
	r.manual_window = true;
	send_js(OMR_F_REQ, r.id, json_pack("{s:s,s:s}", "op", "file_read", "path", tpath("bin")));
	while (!r.done && r.received < OMR_WINDOW_INIT && pump_one(&r, 1, RECV_TIMEOUT_MS))
		;
	send_js(OMR_F_SIGNAL, r.id, json_pack("{s:i}", "signal", 2));
	pump(&r, 1);
	ok(is_code(&r, "cancelled") && r.received < n, "SIGNAL 2 stops a file_read under way (%llu of %zu bytes)",
	   (unsigned long long)r.received, n);
	res_free(&r);
	free(data);

	rpc(&r, json_pack("{s:s,s:s}", "op", "file_read", "path", tmpdir));
	ok(is_code(&r, "is_directory"), "file_read of a directory is is_directory");
	res_free(&r);

	rpc(&r, json_pack("{s:s,s:s}", "op", "file_read", "path", tpath("missing")));
	ok(is_code(&r, "not_found"), "file_read of a missing file is not_found");
	res_free(&r);

	rpc(&r, json_pack("{s:s,s:s}", "op", "file_read", "path", "relative/path"));
	ok(is_code(&r, "bad_request"), "relative paths are refused");
	res_free(&r);

	rpc_stdin(&r, json_pack("{s:s,s:s}", "op", "file_write", "path", tpath("no/such/dir/f")),
		  "x", 1, OMR_CH_FILE);
	ok(is_code(&r, "not_found"), "file_write into a missing directory is not_found");
	res_free(&r);

	rpc_stdin(&r, json_pack("{s:s,s:s,s:b}", "op", "file_write", "path", tpath("a/b/c/f"),
				"parents", 1),
		  "deep", 4, OMR_CH_FILE);
	is_int(end_int(&r, "size"), 4, "file_write with parents creates directories");
	res_free(&r);

	/* Cancel mid-write: nothing may be left behind. */
	res_init(&r, next_id++);
	send_js(OMR_F_REQ, r.id, json_pack("{s:s,s:s}", "op", "file_write", "path", tpath("a/cancelled")));
	send_raw(OMR_F_DATA, OMR_CH_FILE, r.id, "partial", 7);
	send_js(OMR_F_SIGNAL, r.id, json_object());
	pump(&r, 1);
	ok(is_code(&r, "cancelled"), "file_write can be cancelled");
	res_free(&r);
	rpc(&r, json_pack("{s:s,s:s}", "op", "list", "path", tpath("a")));
	is_int(end_int(&r, "count"), 1, "a cancelled write leaves no temporary file");
	res_free(&r);

	/* list / stat */
	mkdir(tpath("l"), 0755);
	close(open(tpath("l/file"), O_WRONLY | O_CREAT, 0640));
	mkdir(tpath("l/dir"), 0700);
	symlink("file", tpath("l/link"));
	snprintf(name, sizeof(name), "l/bad\xff\xfename");
	close(open(tpath(name), O_WRONLY | O_CREAT, 0600));
	rpc(&r, json_pack("{s:s,s:s}", "op", "list", "path", tpath("l")));
	{
		bool f = false, d = false, l = false, b = false;
		size_t i, j;
		json_t *batch, *e;
		json_array_foreach(r.replies, i, batch)
		{
			json_array_foreach(json_object_get(batch, "entries"), j, e)
			{
				const char *nm = json_string_value(json_object_get(e, "name"));
				const char *ty = json_string_value(json_object_get(e, "type"));
				f |= !strcmp(nm, "file") && !strcmp(ty, "file") &&
				     json_integer_value(json_object_get(e, "mode")) == 0640;
				d |= !strcmp(nm, "dir") && !strcmp(ty, "dir");
				l |= !strcmp(nm, "link") && !strcmp(ty, "symlink");
				b |= json_object_get(e, "name_b64") &&
				     !strcmp(json_string_value(json_object_get(e, "name_b64")),
					     "YmFk//5uYW1l");
			}
		}
		ok(end_int(&r, "count") == 4 && f && d && l && b,
		   "list gives types and modes; invalid UTF-8 names come with name_b64");
	}
	res_free(&r);

	rpc(&r, json_pack("{s:s,s:s}", "op", "stat", "path", tpath("l/link")));
	ok(!strcmp(end_str(&r, "type"), "symlink") && !strcmp(end_str(&r, "target"), "file") &&
		   !strcmp(end_str(&r, "name"), "link"),
	   "stat does not follow symlinks and gives the target");
	res_free(&r);

	rpc(&r, json_pack("{s:s,s:s}", "op", "stat", "path_b64", "L25vL3N1Y2g="));
	ok(is_code(&r, "not_found"), "path_b64 is accepted (/no/such: not_found)");
	res_free(&r);

	rpc(&r, json_pack("{s:s,s:s}", "op", "list", "path", tpath("l/file")));
	ok(is_code(&r, "not_directory"), "list of a file is not_directory");
	res_free(&r);

	/* mkdir / remove / rename */
	rpc(&r, json_pack("{s:s,s:s,s:b}", "op", "mkdir", "path", tpath("m/n/o"), "parents", 1));
	ok(r.end && json_object_size(r.end) == 0, "mkdir with parents");
	res_free(&r);
	rpc(&r, json_pack("{s:s,s:s}", "op", "mkdir", "path", tpath("m")));
	ok(is_code(&r, "exists"), "mkdir of an existing directory is exists");
	res_free(&r);
	rpc(&r, json_pack("{s:s,s:s,s:s}", "op", "mkdir", "path", tpath("m/mode"), "mode", "0700"));
	{
		struct stat st;
		ok(stat(tpath("m/mode"), &st) == 0 && (st.st_mode & 07777) == 0700,
		   "mkdir honours an octal string mode");
	}
	res_free(&r);
	rpc(&r, json_pack("{s:s,s:s}", "op", "remove", "path", tpath("m")));
	ok(is_code(&r, "not_empty"), "remove of a non-empty directory without recursive fails");
	res_free(&r);
	rpc(&r, json_pack("{s:s,s:s,s:s}", "op", "rename", "from", tpath("m"), "to", tpath("m2")));
	ok(r.end && json_object_size(r.end) == 0 && access(tpath("m2/n/o"), F_OK) == 0, "rename");
	res_free(&r);
	rpc(&r, json_pack("{s:s,s:s,s:b}", "op", "remove", "path", tpath("m2"), "recursive", 1));
	ok(r.end && json_object_size(r.end) == 0 && access(tpath("m2"), F_OK) < 0,
	   "recursive remove");
	res_free(&r);
	rpc(&r, json_pack("{s:s,s:s}", "op", "remove", "path", tpath("m2")));
	ok(is_code(&r, "not_found"), "remove of a missing path is not_found");
	res_free(&r);
}

static void test_env_and_watch(void)
{
	struct res r;

	rpc(&r, json_pack("{s:s,s:{s:s,s:s}}", "op", "env_set", "vars", "SECRET_X", "s3cr3t",
			  "MULTI", "line1\nline2\\x"));
	ok(r.end && json_object_size(r.end) == 0, "env_set");
	res_free(&r);
	rpc(&r, sh("printf '%s|%s' \"$SECRET_X\" \"$MULTI\""));
	is_str(r.out[1], "s3cr3t|line1\nline2\\x", "env_set variables reach commands");
	res_free(&r);
	rpc(&r, json_pack("{s:s,s:s,s:{s:s}}", "op", "exec", "cmd", "echo $SECRET_X", "env",
			  "SECRET_X", "override"));
	is_str(r.out[1], "override\n", "the request env overrides the env file");
	res_free(&r);

	mkdir(tpath("w"), 0755);
	res_init(&r, next_id++);
	send_js(OMR_F_REQ, r.id,
		json_pack("{s:s,s:s,s:b}", "op", "watch", "path", tpath("w"), "recursive", 1));
	while (!r.done && json_array_size(r.replies) < 1 && pump_one(&r, 1, RECV_TIMEOUT_MS))
		;
	mkdir(tpath("w/sub"), 0755);
	usleep(100 * 1000); /* the agent adds a watch for the new directory */
	close(open(tpath("w/sub/new"), O_WRONLY | O_CREAT, 0644));
	bool created = false, subdir = false;
	for (uint64_t end = ms_now() + 5000; !created && ms_now() < end;) {
		if (!pump_one(&r, 1, 500))
			continue;
		size_t i;
		json_t *e;
		json_array_foreach(r.replies, i, e)
		{
			const char *ev = json_string_value(json_object_get(e, "event"));
			const char *p = json_string_value(json_object_get(e, "path"));
			if (ev && p && !strcmp(ev, "create") && !strcmp(p, tpath("w/sub")))
				subdir = json_is_true(json_object_get(e, "dir"));
			if (ev && p && !strcmp(ev, "create") && !strcmp(p, tpath("w/sub/new")))
				created = true;
		}
	}
	send_js(OMR_F_SIGNAL, r.id, json_object());
	pump(&r, 1);
	ok(subdir && created && r.end && json_object_size(r.end) == 0,
	   "watch reports events in new subdirectories and ends on cancel");
	res_free(&r);
}

static void test_background(void)
{
	struct res r, a;
	long long pid;
	bool listed = false;

	rpc(&r, json_pack("{s:s,s:s,s:b}", "op", "exec", "cmd",
			  "echo hi; sleep 0.5; echo bye >&2; exit 4", "background", 1));
	pid = end_int(&r, "pid");
	ok(pid > 0 && json_is_true(json_object_get(r.end, "background")),
	   "background exec answers at once");
	res_free(&r);

	rpc(&r, json_pack("{s:s}", "op", "ps"));
	{
		size_t i;
		json_t *e;
		json_array_foreach(json_object_get(r.end, "processes"), i, e)
			listed |= json_integer_value(json_object_get(e, "pid")) == pid &&
				  json_is_true(json_object_get(e, "running")) &&
				  json_is_true(json_object_get(e, "background")) &&
				  !strcmp(json_string_value(json_object_get(e, "cmd")),
					  "echo hi; sleep 0.5; echo bye >&2; exit 4") &&
				  json_array_size(json_object_get(e, "argv")) == 3;
	}
	ok(listed, "ps lists the running background command");
	res_free(&r);

	rpc(&a, json_pack("{s:s,s:I}", "op", "attach", "pid", (json_int_t)pid));
	ok(out_is(&a, 1, "hi\n") && out_is(&a, 2, "bye\n") && end_int(&a, "exit_code") == 4 &&
		   a.eof[1] && a.eof[2],
	   "attach replays and follows output, then gives the exit status");
	res_free(&a);

	rpc(&r, json_pack("{s:s,s:s,s:b}", "op", "exec", "cmd", "sleep 30", "background", 1));
	pid = end_int(&r, "pid");
	res_free(&r);
	rpc(&r, json_pack("{s:s,s:I}", "op", "kill", "pid", (json_int_t)pid));
	ok(r.end && json_object_size(r.end) == 0, "kill a background command");
	res_free(&r);
	rpc(&a, json_pack("{s:s,s:I}", "op", "attach", "pid", (json_int_t)pid));
	is_int(end_int(&a, "signal"), 15, "its status shows SIGTERM");
	res_free(&a);

	rpc(&r, json_pack("{s:s,s:i}", "op", "kill", "pid", 1));
	ok(is_code(&r, "not_found"), "kill refuses pids the agent did not start");
	res_free(&r);
}

/* 20 MiB through a slow reader: the agent must never exceed the credit. */
static void test_flow_control(void)
{
	const size_t total = 20u << 20;
	struct res r;
	size_t consumed = 0, since_sleep = 0;
	bool pattern = true, over = false;
	char *line = "0123456789abcdef\n";
	size_t pos = 0;

	res_init(&r, next_id++);
	r.manual_window = true;
	send_js(OMR_F_REQ, r.id, sh("yes 0123456789abcdef | head -c 20971520"));
	while (!r.done) {
		if (!pump_one(&r, 1, RECV_TIMEOUT_MS))
			break;
		if (r.received > r.granted)
			over = true;
		/* Consume what arrived, checking content, then grant it back
		 * in small steps with pauses (a slow reader). */
		if (r.len[1] > 0) {
			for (size_t i = 0; i < r.len[1] && pattern; i++, pos++)
				pattern = r.out[1][i] == line[pos % 17];
			consumed += r.len[1];
			since_sleep += r.len[1];
			send_win(r.id, (uint32_t)r.len[1]);
			r.granted += r.len[1];
			free(r.out[1]);
			r.out[1] = NULL;
			r.len[1] = 0;
			if (since_sleep >= (1u << 20)) {
				since_sleep = 0;
				usleep(30 * 1000);
			}
		}
	}
	ok(!over, "the agent never sends beyond the granted credit");
	ok(consumed == total && pattern && end_int(&r, "exit_code") == 0,
	   "20 MiB arrive complete and in order through a slow reader (%zu bytes)", consumed);
	res_free(&r);

	/* A child that never reads stdin: the agent returns no more credit
	 * than the pipe took, so it holds at most one window. */
	static uint8_t junk[4u << 20];
	res_init(&r, next_id++);
	r.in = junk;
	r.in_len = sizeof(junk);
	send_js(OMR_F_REQ, r.id,
		json_pack("{s:s,s:s,s:b}", "op", "exec", "cmd", "sleep 30", "stdin", 1));
	feed_stdin(&r);
	for (uint64_t end = ms_now() + 700; !r.done && ms_now() < end;)
		pump_one(&r, 1, 100);
	size_t sent = r.in_off;
	send_js(OMR_F_SIGNAL, r.id, json_object());
	pump(&r, 1);
	/* One window buffered by the agent plus what the pipe holds. */
	ok(sent <= OMR_WINDOW_INIT + (1u << 20) && sent < sizeof(junk),
	   "stdin to a child that does not read is held to the window (%zu sent)", sent);
	res_free(&r);
}

/* ---- forward ---- */

/* A TCP listener on 127.0.0.1 (the agent runs on the host here, so its
 * loopback is ours).  Returns the fd; *port gets its port. */
static int tcp_listen(int *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		bail("tcp listener");
	*port = ntohs(sa.sin_port);
	return fd;
}

/* A server in a child: reads everything until EOF, then answers "got N\n"
 * followed by the bytes reversed, and closes.  With hold, it reads until
 * EOF and exits 0 if EOF came (the connection was closed). */
static pid_t tcp_server(int lfd, bool hold)
{
	pid_t pid = fork();

	if (pid < 0)
		bail("fork");
	if (pid == 0) {
		int c = accept(lfd, NULL, NULL);
		size_t cap = 4u << 20, n = 0;
		char *b = malloc(cap), hdr[64];
		ssize_t k;

		if (c < 0 || !b)
			_exit(3);
		while ((k = read(c, b + n, cap - n)) > 0)
			n += (size_t)k;
		if (hold)
			_exit(k == 0 ? 0 : 4);
		for (size_t i = 0; i < n / 2; i++) {
			char t = b[i];
			b[i] = b[n - 1 - i];
			b[n - 1 - i] = t;
		}
		k = snprintf(hdr, sizeof(hdr), "got %zu\n", n);
		if (write(c, hdr, (size_t)k) != k)
			_exit(5);
		for (size_t off = 0; off < n;) {
			k = write(c, b + off, n - off);
			if (k <= 0)
				_exit(6);
			off += (size_t)k;
		}
		_exit(0);
	}
	return pid;
}

static json_t *fwd_req(int port)
{
	return json_pack("{s:s, s:i}", "op", "forward", "port", port);
}

static void test_forward(void)
{
	const size_t total = 3u << 20; /* several windows each way */
	uint8_t *in = malloc(total);
	char *want = malloc(total + 64);
	int port, st = -1, lfd = tcp_listen(&port);
	pid_t pid = tcp_server(lfd, false);
	struct res r;
	size_t hl;

	for (size_t i = 0; i < total; i++)
		in[i] = (uint8_t)(i * 7 + i / 251);
	rpc_stdin(&r, fwd_req(port), in, total, OMR_CH_STDIN);
	hl = (size_t)sprintf(want, "got %zu\n", total);
	for (size_t i = 0; i < total; i++)
		want[hl + i] = (char)in[total - 1 - i];
	ok(json_is_true(json_object_get(json_array_get(r.replies, 0), "connected")),
	   "forward: REPLY {connected} once the guest's port accepted");
	ok(r.len[1] == hl + total && !memcmp(r.out[1], want, hl + total) && r.eof[1],
	   "forward: 3 MiB in, the server's answer after our EOF out, then EOF 1 (%zu bytes)",
	   r.len[1]);
	ok(end_int(&r, "bytes_in") == (long long)total &&
	   end_int(&r, "bytes_out") == (long long)(hl + total),
	   "forward: END counts the bytes both ways");
	waitpid(pid, &st, 0);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "forward: the server saw our half-close as EOF");
	res_free(&r);

	/* Cancel: the guest's side sees the connection closed. */
	pid = tcp_server(lfd, true);
	res_init(&r, next_id++);
	send_js(OMR_F_REQ, r.id, fwd_req(port));
	while (!r.done && json_array_size(r.replies) == 0 && pump_one(&r, 1, RECV_TIMEOUT_MS))
		;
	send_raw(OMR_F_DATA, OMR_CH_STDIN, r.id, "abc", 3);
	send_js(OMR_F_SIGNAL, r.id, json_object());
	pump(&r, 1);
	ok(is_code(&r, "cancelled"), "forward: SIGNAL {} ends the stream (cancelled)");
	waitpid(pid, &st, 0);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "forward: a cancel closes the guest's connection");
	res_free(&r);
	close(lfd);

	/* Nobody listens there any more. */
	rpc(&r, fwd_req(port));
	ok(is_code(&r, "connection_refused") && json_array_size(r.replies) == 0,
	   "forward: a closed port is connection_refused, with no REPLY");
	res_free(&r);
	rpc(&r, json_pack("{s:s, s:i}", "op", "forward", "port", 0));
	ok(is_code(&r, "bad_request"), "forward: port 0 is bad_request");
	res_free(&r);
	rpc(&r, json_pack("{s:s, s:i}", "op", "forward", "port", 65536));
	ok(is_code(&r, "bad_request"), "forward: port 65536 is bad_request");
	res_free(&r);
	rpc(&r, json_pack("{s:s}", "op", "forward"));
	ok(is_code(&r, "bad_request"), "forward: a missing port is bad_request");
	res_free(&r);
	free(in);
	free(want);
}

static void test_concurrency(void)
{
	static struct res rs[64];
	bool good = true;
	char cmd[64], want[32];

	for (int i = 0; i < 64; i++) {
		res_init(&rs[i], next_id++);
		snprintf(cmd, sizeof(cmd), "sleep 0.3; echo %d", i);
		send_js(OMR_F_REQ, rs[i].id, sh(cmd));
	}
	good = pump(rs, 64);
	for (int i = 0; i < 64; i++) {
		snprintf(want, sizeof(want), "%d\n", i);
		good &= rs[i].out[1] && !strcmp(rs[i].out[1], want) && end_int(&rs[i], "exit_code") == 0;
		res_free(&rs[i]);
	}
	ok(good, "64 concurrent commands all complete correctly");
}

static void test_connection(void)
{
	struct res r;
	struct omr_frame_hdr h;
	uint8_t hdr[OMR_FRAME_HDR], *p;
	long long pid;
	int st;

	/* Host drop kills foreground commands. */
	agent_start();
	res_init(&r, next_id++);
	send_js(OMR_F_REQ, r.id, sh("sleep 30"));
	while (!r.done && json_array_size(r.replies) == 0 && pump_one(&r, 1, RECV_TIMEOUT_MS))
		;
	pid = json_integer_value(json_object_get(json_array_get(r.replies, 0), "pid"));
	res_free(&r);
	/* A command busy writing when the host goes: its pipe is ready in
	 * the same poll round as the connection's end. */
	res_init(&r, next_id++);
	send_js(OMR_F_REQ, r.id, sh("yes"));
	while (!r.done && r.len[1] < 100000 && pump_one(&r, 1, RECV_TIMEOUT_MS))
		;
	res_free(&r);
	st = agent_stop();
	/* We are a subreaper: the orphaned command comes back to us. */
	int cst = 0;
	pid_t got = 0;
	for (int i = 0; i < 300 && got == 0; i++) {
		got = waitpid((pid_t)pid, &cst, WNOHANG);
		if (got == 0)
			usleep(10 * 1000);
	}
	ok(pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && got == pid && WIFSIGNALED(cst) &&
		   WTERMSIG(cst) == SIGKILL,
	   "when the host goes away the agent kills foreground commands and exits");

	/* Oversized frame: the agent drops the connection. */
	agent_start();
	h = (struct omr_frame_hdr){ .len = OMR_FRAME_MAX + 1, .type = OMR_F_REQ, .stream = 5 };
	omr_frame_hdr_pack(&h, hdr);
	(void)!write(afd, hdr, sizeof(hdr));
	ok(recv_frame(&h, &p, RECV_TIMEOUT_MS) == -EPIPE, "an oversized frame closes the connection");
	st = agent_stop();
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 1, "and the agent exits with status 1");

	/* shutdown in development mode: END {} then exit 0. */
	agent_start();
	rpc(&r, json_pack("{s:s}", "op", "shutdown"));
	ok(r.end && json_object_size(r.end) == 0, "shutdown answers END {}");
	res_free(&r);
	ok(recv_frame(&h, &p, RECV_TIMEOUT_MS) == -EPIPE, "then the agent closes the connection");
	st = agent_stop();
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "and exits 0");
}


/* Every op with fields of the wrong type, and random frames: the agent
 * answers or ignores, never dies. */
static void test_robustness(void)
{
	static const char *const ops[] = { "ping", "info", "exec", "ps", "attach", "kill",
					   "file_read", "file_write", "list", "stat", "mkdir",
					   "remove", "rename", "watch", "env_set", "hello",
					   "forward" };
	static const char *const fields[] = { "argv", "cmd", "env", "cwd", "user", "timeout_ms",
					      "stdin", "pty", "rows", "cols", "background", "pid",
					      "signal", "path", "offset", "length", "mode", "parents",
					      "recursive", "from", "to", "vars", "path_b64",
					      "port" };
	static const char *const junk[] = { "[1,{}]", "{\"a\":null}", "-1", "1e300", "\"\"",
					    "true", "\"\\u00ff\\u0100\"", "18446744073709551617" };
	struct res r;
	bool all_ended = true;
	char buf[256];

	for (size_t o = 0; o < sizeof(ops) / sizeof(ops[0]); o++) {
		for (size_t j = 0; j < sizeof(junk) / sizeof(junk[0]); j++) {
			int n = snprintf(buf, sizeof(buf), "{\"op\":\"%s\"", ops[o]);
			for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
				if ((f + j) % 3 == 0) /* a varying subset of fields */
					n += snprintf(buf + n, sizeof(buf) - (size_t)n, ",\"%s\":%s",
						      fields[f], junk[j]);
			snprintf(buf + n, sizeof(buf) - (size_t)n, "}");
			res_init(&r, next_id++);
			send_raw(OMR_F_REQ, 0, r.id, buf, strlen(buf));
			/* Some of these open streams (watch, list); cancel them. */
			send_js(OMR_F_SIGNAL, r.id, json_object());
			send_raw(OMR_F_EOF, OMR_CH_FILE, r.id, NULL, 0);
			all_ended &= pump(&r, 1);
			res_free(&r);
		}
	}
	ok(all_ended, "every op with wrongly typed fields gets an END");

	srand(11);
	for (int i = 0; i < 3000; i++) {
		uint8_t p[300];
		size_t len = (size_t)rand() % sizeof(p);
		for (size_t k = 0; k < len; k++)
			p[k] = (uint8_t)rand();
		if (i % 5 == 0 && len > 8)
			memcpy(p, "{\"op\":\"", 7);
		send_raw((uint8_t)(rand() % 12), (uint8_t)(rand() % 5),
			 (uint32_t)(rand() % 8) + 100000, p, len);
	}
	/* Drain whatever came back, then check the agent still answers. */
	rpc(&r, json_pack("{s:s}", "op", "ping"));
	ok(json_is_true(json_object_get(r.end, "pong")), "3000 random frames later the agent answers");
	res_free(&r);
}

/* A background command writing more than its 1 MiB ring. */
static void test_ring(void)
{
	struct res r, a;
	long long pid, dropped = -1;

	rpc(&r, json_pack("{s:s,s:s,s:b}", "op", "exec", "cmd",
			  "head -c 3000000 /dev/zero | tr '\\0' y; echo END", "background", 1));
	pid = end_int(&r, "pid");
	res_free(&r);
	usleep(500 * 1000);
	rpc(&a, json_pack("{s:s,s:I}", "op", "attach", "pid", (json_int_t)pid));
	if (json_array_size(a.replies) > 0)
		dropped = json_integer_value(json_object_get(json_array_get(a.replies, 0), "dropped"));
	ok(end_int(&a, "exit_code") == 0 && dropped > 0 && a.len[1] <= (1u << 20) &&
		   a.len[1] + (size_t)dropped == 3000004 && a.len[1] > 4 &&
		   !strcmp(a.out[1] + a.len[1] - 4, "END\n"),
	   "the ring keeps the newest output and counts the dropped bytes (%lld)", dropped);
	res_free(&a);
}

/* A directory bigger than one frame's worth of names. */
static void test_big_list(void)
{
	struct res r;
	char name[300];
	size_t total = 0;

	mkdir(tpath("big"), 0755);
	for (int i = 0; i < 3000; i++) {
		snprintf(name, sizeof(name), "big/%0200d", i);
		close(open(tpath(name), O_WRONLY | O_CREAT, 0644));
	}
	rpc(&r, json_pack("{s:s,s:s}", "op", "list", "path", tpath("big")));
	for (size_t i = 0; i < json_array_size(r.replies); i++)
		total += json_array_size(json_object_get(json_array_get(r.replies, i), "entries"));
	ok(end_int(&r, "count") == 3000 && total == 3000 && json_array_size(r.replies) > 1,
	   "a big directory comes in several batches (%zu)", json_array_size(r.replies));
	res_free(&r);
}

/* --cgroup on the host, where a cgroup v2 hierarchy is writable: each
 * command in a cgroup of its own, killed and removed when it is over. */
/* A background command's daemon (started with &) dies once the command's
 * main process has ended. */
static void background_leftover_killed(const char *desc)
{
	struct res r, a;
	long long pid;

	rpc(&r, json_pack("{s:s,s:s,s:b}", "op", "exec", "cmd",
			  "sleep 1000 >/dev/null 2>&1 & echo $!", "background", 1));
	pid = end_int(&r, "pid");
	res_free(&r);
	rpc(&a, json_pack("{s:s,s:I}", "op", "attach", "pid", (json_int_t)pid));
	pid = a.out[1] ? atoi(a.out[1]) : 0;
	res_free(&a);
	assert_gone(pid, desc);
}

static void test_cgroup_mode(void)
{
	char mnt[256] = "", type[16], dir[512], kill_file[600], line[1024], want[600];
	FILE *f = fopen("/proc/self/mounts", "re");
	struct res r;
	long long pid;
	int n = 0;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%*s %255s %15s", mnt, type) == 2 && !strcmp(type, "cgroup2"))
			break;
		else
			mnt[0] = 0;
	if (f)
		fclose(f);
	snprintf(dir, sizeof(dir), "%s/omnirun-test-agent.%d", mnt, (int)getpid());
	snprintf(kill_file, sizeof(kill_file), "%s/cgroup.kill", dir);
	if (!mnt[0] || mkdir(dir, 0755) < 0 || access(kill_file, W_OK) < 0) {
		rmdir(dir);
		skip("--cgroup mode: no writable cgroup v2 hierarchy with cgroup.kill");
		return;
	}
	agent_cgroup = dir;
	agent_start();

	/* The path as seen from our cgroup namespace: compare its end. */
	snprintf(want, sizeof(want), "/omnirun-test-agent.%d/cN\n", (int)getpid());
	rpc(&r, sh("grep '^0::' /proc/self/cgroup | sed 's/c[0-9][0-9]*$/cN/'"));
	ok(r.out[1] && r.len[1] >= strlen(want) && !strcmp(r.out[1] + r.len[1] - strlen(want), want),
	   "--cgroup: a command runs in a cgroup of its own (%s)", one_line(&r, 1));
	res_free(&r);

	rpc(&r, sh("sleep 1000 >/dev/null 2>&1 & echo $!"));
	pid = r.out[1] ? atoi(r.out[1]) : 0;
	res_free(&r);
	assert_gone(pid, "what a foreground command leaves running is killed at its end");

	/* Leftovers that keep the output busy end with the timeout. */
	uint64_t t0 = ms_now();
	rpc(&r, json_pack("{s:s,s:s,s:i}", "op", "exec", "cmd",
			  "(while :; do echo x; sleep 0.05; done) & exit 0", "timeout_ms", 1000));
	t0 = ms_now() - t0;
	char *js = r.end ? json_dumps(r.end, JSON_COMPACT) : NULL;
	ok(json_is_true(json_object_get(r.end, "timed_out")) && end_int(&r, "exit_code") == 0 &&
		   t0 >= 1000 && t0 < 10000,
	   "the timeout kills what a command left writing to its output (%s)", js ? js : "");
	free(js);
	res_free(&r);

	background_leftover_killed("so is what a background command leaves running");

	rpc(&r, no_leftover_cgroups(dir));
	is_str(r.out[1], "left:\n", "finished commands leave no cgroup behind");
	res_free(&r);

	/* The server's end kills the rest and removes their cgroups. */
	rpc(&r, json_pack("{s:s,s:s,s:b}", "op", "exec", "cmd", "sleep 1000", "background", 1));
	res_free(&r);
	agent_stop();
	agent_cgroup = NULL;
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)))
		n += de->d_name[0] == 'c' && de->d_type == DT_DIR;
	if (d)
		closedir(d);
	ok(n == 0 && rmdir(dir) == 0, "at its exit the agent removes the cgroups it made (%d left)",
	   n);
	if (n) {
		(void)!write(open(kill_file, O_WRONLY | O_CLOEXEC), "1", 1);
		rmdir(dir);
	}
}

/* ---- against a guest (--socket) ---- */

/* One cgroup per command: what a command leaves behind dies with it. */
static void test_vm_cgroups(void)
{
	struct res r, a;
	uint64_t t0 = ms_now();
	long long pid;

	/* The shell exits at once: the bomb it leaves dies with the
	 * command. */
	rpc(&r, json_pack("{s:s,s:s,s:i}", "op", "exec", "cmd", "b() { b | b & }; b",
			  "timeout_ms", 15000));
	ok(r.end && ms_now() - t0 < 40000, "a fork bomb whose shell exits at once ends (%s)",
	   r.end ? json_dumps(r.end, JSON_COMPACT) : "");
	res_free(&r);
	rpc(&r, sh("echo alive"));
	is_str(r.out[1], "alive\n", "after it commands start again");
	res_free(&r);

	/* A bomb still going: pids.max is below threads-max, so commands
	 * still start (this one forks nothing); SIGKILL ends all of it. */
	rpc(&r, json_pack("{s:s,s:s,s:b}", "op", "exec", "cmd", "b() { b | b & }; b; sleep 1000",
			  "background", 1));
	pid = end_int(&r, "pid");
	res_free(&r);
	usleep(3000 * 1000);
	rpc(&r, sh("read n < /sys/fs/cgroup/omnirun-cmds/pids.current; echo \"$n alive\""));
	ok(r.out[1] && strstr(r.out[1], " alive\n"),
	   "while a fork bomb runs, commands start (pids.current %s)", one_line(&r, 1));
	res_free(&r);
	rpc(&r, json_pack("{s:s,s:I,s:i}", "op", "kill", "pid", (json_int_t)pid, "signal", 9));
	rpc(&a, json_pack("{s:s,s:I}", "op", "attach", "pid", (json_int_t)pid));
	ok(r.end && json_object_size(r.end) == 0 && end_int(&a, "signal") == 9,
	   "kill with SIGKILL ends it");
	res_free(&r);
	res_free(&a);

	rpc(&r, json_pack("{s:s,s:s,s:i}", "op", "exec", "cmd",
			  "x=a; while true; do x=\"$x$x\"; done", "timeout_ms", 60000));
	ok(end_int(&r, "signal") == 9 || end_int(&r, "exit_code") > 0,
	   "a shell memory hog fails (%s)", r.end ? json_dumps(r.end, JSON_COMPACT) : "");
	res_free(&r);
	rpc(&r, sh("echo alive"));
	is_str(r.out[1], "alive\n", "after it commands start again");
	res_free(&r);
	rpc(&r, sh("echo memcg $(dmesg | grep -c 'Memory cgroup out of memory') "
		   "global $(dmesg | grep 'Out of memory' | grep -vc 'Memory cgroup')"));
	ok(r.out[1] && strncmp(r.out[1], "memcg 0 ", 8) && strstr(r.out[1], " global 0\n"),
	   "memory hogs meet the cgroup's OOM killer, not the global one (%s)",
	   one_line(&r, 1));
	res_free(&r);
	rpc(&r, no_leftover_cgroups("/sys/fs/cgroup/omnirun-cmds"));
	is_str(r.out[1], "left:\n", "no command cgroup is left behind");
	res_free(&r);

	/* A daemon started with & dies with its foreground command... */
	rpc(&r, sh("sleep 1000 >/dev/null 2>&1 & echo $!"));
	pid = r.out[1] ? atoi(r.out[1]) : 0;
	res_free(&r);
	assert_gone(pid, "what a foreground command leaves running is killed at its end");

	/* ...and with a background one. */
	background_leftover_killed("and so is what a background command leaves running");
}

static void test_vm(void)
{
	struct res r;
	size_t n = 3u << 20;
	uint8_t *data = malloc(n);

	rpc(&r, json_pack("{s:s}", "op", "info"));
	json_t *disk = json_object_get(r.end, "disk");
	ok(!strcmp(json_string_value(json_object_get(disk, "state")), "ready") &&
		   json_integer_value(json_object_get(disk, "size_bytes")) > 0,
	   "the encrypted data disk is ready");
	res_free(&r);

	rpc(&r, sh("grep omnirun-data /proc/mounts | cut -d' ' -f1-3; "
		   "sed 's/c[0-9][0-9]*$/cN/' /proc/self/cgroup; "
		   "cat /proc/self/oom_score_adj; hostname"));
	ok(out_is(&r, 1, "/dev/mapper/omnirun-data /data ext4\n0::/omnirun-cmds/cN\n0\nomr-test\n"),
	   "/data is dm-crypt, commands run in a cgroup of their own with a normal OOM score");
	res_free(&r);
	rpc(&r, sh("cd /sys/fs/cgroup/omnirun-cmds; echo $(grep MemTotal /proc/meminfo) "
		   "memory.max $(cat memory.max) pids.max $(cat pids.max) "
		   "threads-max $(cat /proc/sys/kernel/threads-max)"));
	diag("%s", one_line(&r, 1));
	res_free(&r);
	rpc(&r, sh("stat -f -c %S /data"));
	is_str(r.out[1], "4096\n", "/data has 4 KiB blocks");
	res_free(&r);

	srand(3);
	for (size_t i = 0; i < n; i++)
		data[i] = (uint8_t)rand();
	rpc_stdin(&r, json_pack("{s:s,s:s}", "op", "file_write", "path", "/data/blob"), data, n,
		  OMR_CH_FILE);
	is_int(end_int(&r, "size"), (long long)n, "file_write of 3 MiB to /data");
	res_free(&r);
	rpc(&r, json_pack("{s:s,s:s}", "op", "file_read", "path", "/data/blob"));
	ok(r.len[3] == n && !memcmp(r.out[3], data, n), "file_read gives it back");
	res_free(&r);
	free(data);

	/* awk doubles a string until the cgroup's OOM killer (or malloc)
	 * stops it; either way only the command fails. */
	rpc(&r, json_pack("{s:s,s:s,s:i}", "op", "exec", "cmd",
			  "awk 'BEGIN { s = \"x\"; while (1) s = s s }'", "timeout_ms", 120000));
	ok(end_int(&r, "signal") == 9 || (end_int(&r, "exit_code") > 0 && end_int(&r, "exit_code") != 9999),
	   "a memory hog fails (%s)", r.end ? json_dumps(r.end, JSON_COMPACT) : "");
	res_free(&r);
	rpc(&r, json_pack("{s:s,s:s,s:i}", "op", "exec", "cmd", "f() { f | f & }; f; sleep 5",
			  "timeout_ms", 4000));
	ok(json_is_true(json_object_get(r.end, "timed_out")), "a fork bomb is stopped by its timeout");
	res_free(&r);
	rpc(&r, json_pack("{s:s}", "op", "ping"));
	ok(json_is_true(json_object_get(r.end, "pong")), "the agent survives both");
	res_free(&r);

	/* Reconnect: the background command lives on, HELLO comes again. */
	rpc(&r, json_pack("{s:s,s:s,s:b}", "op", "exec", "cmd", "sleep 60", "background", 1));
	long long pid = end_int(&r, "pid");
	res_free(&r);
	close(afd);
	usleep(300 * 1000);
	vm_connect();
	rpc(&r, json_pack("{s:s}", "op", "ps"));
	bool alive = false;
	for (size_t i = 0; i < json_array_size(json_object_get(r.end, "processes")); i++) {
		json_t *e = json_array_get(json_object_get(r.end, "processes"), i);
		alive |= json_integer_value(json_object_get(e, "pid")) == pid &&
			 json_is_true(json_object_get(e, "running"));
	}
	ok(alive, "after a reconnect the background command is still there");
	res_free(&r);

	rpc(&r, sh("ip addr show lo | grep -q 'inet 127.0.0.1' && echo lo-up"));
	is_str(r.out[1], "lo-up\n", "loopback is up");
	res_free(&r);

	/* The server is a child of PID 1: if it dies, it comes back. */
	res_init(&r, next_id++);
	send_js(OMR_F_REQ, r.id, sh("kill -9 $PPID"));
	expect_hello();
	res_free(&r);
	rpc(&r, json_pack("{s:s}", "op", "ping"));
	ok(json_is_true(json_object_get(r.end, "pong")), "a crashed server is restarted by PID 1");
	res_free(&r);
	rpc(&r, no_leftover_cgroups("/sys/fs/cgroup/omnirun-cmds"));
	is_str(r.out[1], "left:\n", "and removes the cgroups of its predecessor's commands");
	res_free(&r);
}

static void test_vm_shutdown(void)
{
	struct res r;
	struct omr_frame_hdr h;
	uint8_t *p = NULL;

	rpc(&r, json_pack("{s:s}", "op", "shutdown"));
	ok(r.end && json_object_size(r.end) == 0, "shutdown answers END {}");
	res_free(&r);
	ok(recv_frame(&h, &p, 30000) == -EPIPE, "and the guest powers off");
	free(p);
}

/* --socket: one client at a time; a client that goes away loses its
 * foreground commands but not the background ones. */
static void test_socket_mode(void)
{
	struct res r;
	char sock[300];
	long long bg, fg;
	int st;

	snprintf(sock, sizeof(sock), "%s/agent.sock", tmpdir);
	apid = fork();
	if (apid == 0) {
		execl(agent_path, agent_path, "--socket", sock, (char *)NULL);
		_exit(127);
	}
	vm_sock = sock; /* connect like to a guest */
	vm_connect();
	rpc(&r, json_pack("{s:s,s:s,s:b}", "op", "exec", "cmd", "sleep 60", "background", 1));
	bg = end_int(&r, "pid");
	res_free(&r);
	res_init(&r, next_id++);
	send_js(OMR_F_REQ, r.id, sh("sleep 60"));
	while (!r.done && json_array_size(r.replies) == 0 && pump_one(&r, 1, RECV_TIMEOUT_MS))
		;
	fg = json_integer_value(json_object_get(json_array_get(r.replies, 0), "pid"));
	res_free(&r);
	close(afd);
	vm_connect(); /* HELLO again */
	rpc(&r, json_pack("{s:s}", "op", "ps"));
	bool bg_alive = false, fg_listed = false;
	for (size_t i = 0; i < json_array_size(json_object_get(r.end, "processes")); i++) {
		json_t *e = json_array_get(json_object_get(r.end, "processes"), i);
		long long pid = json_integer_value(json_object_get(e, "pid"));
		bg_alive |= pid == bg && json_is_true(json_object_get(e, "running"));
		fg_listed |= pid == fg;
	}
	res_free(&r);
	ok(bg > 0 && fg > 0 && bg_alive && !fg_listed,
	   "after a reconnect background commands live on, foreground ones are gone");
	rpc(&r, json_pack("{s:s}", "op", "shutdown"));
	res_free(&r);
	close(afd);
	afd = -1;
	vm_sock = NULL;
	ok(waitpid(apid, &st, 0) == apid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	   "shutdown ends the socket server");
	apid = -1;
}

int main(int argc, char **argv)
{
	if (argc > 2 && !strcmp(argv[1], "--socket"))
		vm_sock = argv[2];
	agent_path = argc > 1 ? argv[1] : getenv("OMNIRUN_AGENT");
	if (!agent_path)
		agent_path = "build/guest/omnirun-agent-host";
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	alarm(vm_sock ? 900 : 300);
	if (!mkdtemp(tmpdir))
		bail("mkdtemp");
	agent_start();
	test_basics();
	if (vm_sock) {
		test_signals();
		test_background();
		test_flow_control();
		test_concurrency();
		test_vm_cgroups();
		test_vm();
		test_vm_shutdown();
	} else {
		test_exec();
		test_signals();
		test_files();
		test_big_list();
		test_env_and_watch();
		test_background();
		test_ring();
		test_flow_control();
		test_concurrency();
		test_forward();
		test_robustness();
		agent_stop();
		test_cgroup_mode();
		test_connection();
		test_socket_mode();
	}
	remove_tmpdir();
	return done_testing();
}
