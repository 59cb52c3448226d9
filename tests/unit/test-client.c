/* Unit tests for libcore/client (TAP): the checks a client makes before it
 * talks to anyone, the stream's flow control and signal forwarding against
 * a scripted peer, exec against a fake monitor socket, and the create and
 * kill paths that end before a VM would boot.  What needs a real guest is
 * in tests/bats. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "omnirun/base/ids.h"
#include "omnirun/base/proto.h"
#include "omnirun/base/util.h"
#include "omnirun/client/client.h"
#include "omnirun/client/exec.h"
#include "omnirun/client/files.h"
#include "omnirun/client/sandbox.h"
#include "omnirun/client/stream.h"
#include "omnirun/state/config.h"
#include "omnirun/state/record.h"

#include "tap.h"

static char root[] = "/tmp/omr-test-client.XXXXXX";
static struct omr_config *cfg;

static char *path_of(const char *rel)
{
	return omr_strdup_printf("%s/%s", root, rel);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		bail_out("cannot write %s", path);
}

static void load_config(const char *extra)
{
	struct omr_err *err = NULL;
	char *conf = path_of("omnirun.conf");
	char *text = omr_strdup_printf("[vmm]\naccel = tcg\n%s", extra);

	write_text(conf, text);
	setenv("OMNIRUN_CONF", conf, 1);
	omr_config_free(cfg);
	cfg = NULL;
	if (omr_config_load(&cfg, &err) < 0)
		bail_out("config: %s", err->msg);
	free(conf);
	free(text);
}

/* The throwaway tree goes whatever way the test ends (a bail out too);
 * only by the process that made it, never by a forked child. */
static pid_t root_owner;
static void remove_root(void)
{
	if (getpid() == root_owner)
		omr_rm_rf_at(AT_FDCWD, root);
}

static void setup(void)
{
	char *p;

	if (!mkdtemp(root))
		bail_out("mkdtemp: %s", strerror(errno));
	root_owner = getpid();
	atexit(remove_root);
	setenv("OMNIRUN_STATE_DIR", (p = path_of("state")), 1);
	free(p);
	setenv("OMNIRUN_RUN_DIR", (p = path_of("run")), 1);
	free(p);
	/* No monitor to run: create must fail before it would need one. */
	setenv("OMNIRUN_LIBEXEC_DIR", (p = path_of("libexec")), 1);
	free(p);
	load_config("");
	/* A template that loads (its files exist); it is never booted. */
	p = path_of("state/templates/fake");
	omr_mkdir_p(p, 0755, NULL);
	free(p);
	write_text((p = path_of("state/templates/fake/vmlinuz")), "k");
	free(p);
	write_text((p = path_of("state/templates/fake/initrd.img")), "i");
	free(p);
	write_text((p = path_of("state/templates/fake/template.conf")),
		   "kernel=vmlinuz\ninitrd=initrd.img\ncpus=1\nmemory_mb=256\ndisk_mb=64\n");
	free(p);
}

static void make_record(struct omr_sandbox *sb, enum omr_sb_state st, const char *reason)
{
	struct omr_err *err = NULL;
	int fd = omr_state_sandboxes_dir(cfg, 1, &err);

	memset(sb, 0, sizeof(*sb));
	if (fd < 0 || omr_id_new(sb->id, &err) < 0 || mkdirat(fd, sb->id, 0700) < 0)
		bail_out("cannot make a sandbox dir");
	close(fd);
	omr_strlcpy(sb->template_name, "fake", sizeof(sb->template_name));
	sb->state = st;
	sb->created_at = (int64_t)(omr_wall_ms() / 1000);
	if (reason)
		omr_strlcpy(sb->end_reason, reason, sizeof(sb->end_reason));
	if (omr_sandbox_save(cfg, sb, &err) < 0)
		bail_out("save: %s", err->msg);
}

static int count_dirs(void)
{
	char *p = path_of("state/sandboxes");
	int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC), c = 0;

	free(p);
	if (fd >= 0) {
		DIR *d = fdopendir(fd);
		for (struct dirent *de; d && (de = readdir(d));)
			c += omr_id_valid(de->d_name);
		if (d)
			closedir(d);
	}
	return c;
}

/* ---- checks before any connection ---- */

static void test_validate(void)
{
	struct omr_err *err = NULL;
	char *argv[] = { "echo", "hi", NULL }, *env_bad[] = { "NOEQUALS", NULL },
	     *env_empty_key[] = { "=v", NULL };
	struct omr_exec_opts o = { .argv = argv };
	static char *many[4200];
	char *big;

	is_int(omr_exec_validate(&o, &err), 0, "validate: a plain argv");
	o.cmd = "true";
	ok(omr_exec_validate(&o, &err) < 0 && omr_err_kind(err) == OMR_E_USAGE,
	   "validate: argv and a shell line together are a usage error");
	omr_err_free(&err);
	o.cmd = NULL;
	o.env = env_bad;
	ok(omr_exec_validate(&o, &err) < 0 && omr_err_kind(err) == OMR_E_USAGE,
	   "validate: an env entry without = is refused");
	like(err ? err->msg : NULL, "'NOEQUALS' is not K=V", "validate: ... and named");
	omr_err_free(&err);
	o.env = env_empty_key;
	ok(omr_exec_validate(&o, &err) < 0, "validate: an env entry with an empty name is refused");
	omr_err_free(&err);
	o.env = NULL;
	for (int i = 0; i < 4097; i++)
		many[i] = "x";
	o.argv = many;
	ok(omr_exec_validate(&o, &err) < 0 && omr_err_kind(err) == OMR_E_TOO_LARGE,
	   "validate: 4097 arguments are too large");
	omr_err_free(&err);
	many[4096] = NULL;
	is_int(omr_exec_validate(&o, &err), 0, "validate: 4096 arguments are fine");
	big = omr_xmalloc((1u << 20) + 2);
	memset(big, 'a', (1u << 20) + 1);
	big[(1u << 20) + 1] = 0;
	o.argv = NULL;
	o.cmd = big;
	ok(omr_exec_validate(&o, &err) < 0 && omr_err_kind(err) == OMR_E_TOO_LARGE,
	   "validate: a shell line over 1 MiB is too large");
	is_int(omr_err_kind_info(omr_err_kind(err))->exit_code, 5, "validate: ... which exits 5");
	omr_err_free(&err);
	free(big);
}

static void test_status_and_paths(void)
{
	struct omr_exec_result r = { .exit_code = 3 };
	struct omr_err *err = NULL;
	char *longp = omr_xmalloc(5000);

	is_int(omr_exec_status(&r), 3, "status: the exit code");
	r = (struct omr_exec_result){ .exit_code = -1, .signal = 9 };
	is_int(omr_exec_status(&r), 137, "status: 128 + the signal");
	r.timed_out = 1;
	is_int(omr_exec_status(&r), 124, "status: 124 on a timeout, whatever killed it");
	r = (struct omr_exec_result){ .exit_code = -1 };
	is_int(omr_exec_status(&r), 1, "status: no code and no signal is a failure");

	is_int(omr_files_path_check("/data/x", &err), 0, "path: absolute");
	ok(omr_files_path_check("data/x", &err) < 0 && omr_err_kind(err) == OMR_E_USAGE,
	   "path: a relative path is a usage error");
	omr_err_free(&err);
	longp[0] = '/';
	memset(longp + 1, 'a', 4998);
	longp[4999] = 0;
	ok(omr_files_path_check(longp, &err) < 0, "path: longer than 4096 bytes is refused");
	omr_err_free(&err);
	ok(omr_files_path_check(NULL, &err) < 0, "path: none is refused");
	omr_err_free(&err);
	free(longp);
}

static void test_end_parse(void)
{
	struct omr_err *err = NULL;
	json_t *out = NULL;
	const char *e = "{\"error\":\"no such file: /x\",\"code\":\"not_found\"}";

	ok(omr_client_end_parse((const uint8_t *)e, strlen(e), &out, &err) < 0 && !out,
	   "END: an error is an error");
	is_int(omr_err_kind(err), OMR_E_NOT_FOUND, "END: ... of the kind its code names");
	is_int(err ? err->errnum : 0, ENOENT, "END: ... with the errno of its code");
	is_str(err ? err->msg : NULL, "no such file: /x", "END: ... and its message");
	omr_err_free(&err);
	e = "{\"error\":\"full\",\"code\":\"no_space\"}";
	omr_client_end_parse((const uint8_t *)e, strlen(e), &out, &err);
	is_int(omr_err_kind(err), OMR_E_LIMIT, "END: no_space is a limit");
	omr_err_free(&err);
	e = "[1]";
	ok(omr_client_end_parse((const uint8_t *)e, strlen(e), &out, &err) < 0 &&
		   omr_err_kind(err) == OMR_E_FAIL,
	   "END: a payload that is no object is malformed");
	omr_err_free(&err);
	e = "{\"exit_code\":0}";
	ok(omr_client_end_parse((const uint8_t *)e, strlen(e), &out, &err) == 0 &&
		   json_integer_value(json_object_get(out, "exit_code")) == 0 && !err,
	   "END: a result is handed over");
	json_decref(out);
}

/* ---- a scripted peer ---- */

typedef void (*peer_fn)(int fd);

static pid_t peer_start(peer_fn fn, int *fd)
{
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		bail_out("socketpair");
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		alarm(60);
		fn(sv[1]);
		_exit(0);
	}
	close(sv[1]);
	*fd = sv[0];
	return pid;
}

static int peer_end(pid_t pid)
{
	int st = -1;

	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Sends END, then, like a monitor, keeps the connection until the client
 * closes it (its last WINDOW frames may still be on the way). */
static void send_end(int fd, uint32_t sid, const char *json)
{
	struct omr_frame_hdr h;
	uint8_t *p = NULL;

	omr_frame_send(fd, OMR_F_END, 0, sid, json, strlen(json));
	while (omr_frame_recv(fd, &h, &p) == 0) {
		free(p);
		p = NULL;
	}
}

static json_t *recv_req(int fd, uint32_t *sid)
{
	struct omr_frame_hdr h;
	uint8_t *p = NULL;
	json_t *j = NULL;

	if (omr_frame_recv(fd, &h, &p) == 0 && h.type == OMR_F_REQ) {
		j = json_loadb((char *)p, h.len, 0, NULL);
		*sid = h.stream;
	}
	free(p);
	return j;
}

/* 2 MiB on stdout and 3 bytes on stderr, sent only within the credit the
 * client returned: if it returned none, this would stall at 512 KiB. */
#define OUT_BYTES (2u << 20)
static void peer_output(int fd)
{
	uint32_t sid;
	uint64_t credit = OMR_WINDOW_INIT, sent = 0;
	static uint8_t chunk[OMR_DATA_CHUNK];
	json_t *req = recv_req(fd, &sid);

	if (!req)
		_exit(2);
	json_decref(req);
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = (uint8_t)(i * 7);
	while (sent < OUT_BYTES) {
		while (credit >= sizeof(chunk) && sent < OUT_BYTES) {
			omr_frame_send(fd, OMR_F_DATA, OMR_CH_STDOUT, sid, chunk, sizeof(chunk));
			credit -= sizeof(chunk);
			sent += sizeof(chunk);
		}
		if (sent >= OUT_BYTES)
			break;
		struct omr_frame_hdr h;
		uint8_t *p = NULL;
		if (omr_frame_recv(fd, &h, &p) < 0)
			_exit(3);
		if (h.type == OMR_F_WINDOW)
			credit += omr_window_unpack(p, h.len);
		free(p);
	}
	omr_frame_send(fd, OMR_F_DATA, OMR_CH_STDERR, sid, "err", 3);
	omr_frame_send(fd, OMR_F_EOF, OMR_CH_STDOUT, sid, NULL, 0);
	send_end(fd, sid, "{\"exit_code\":0}");
}

/* Reads the client's input granting credit in small steps; fails (exit
 * 4) if the client ever sends beyond it; answers with what it got. */
static void peer_input(int fd)
{
	uint32_t sid;
	uint64_t granted = OMR_WINDOW_INIT, got = 0, sum = 0;
	bool eof = false;
	json_t *req = recv_req(fd, &sid);
	char end[128];

	if (!req)
		_exit(2);
	json_decref(req);
	while (!eof) {
		struct omr_frame_hdr h;
		uint8_t *p = NULL;

		if (omr_frame_recv(fd, &h, &p) < 0)
			_exit(3);
		if (h.type == OMR_F_DATA) {
			got += h.len;
			for (uint32_t i = 0; i < h.len; i++)
				sum += p[i];
			if (got > granted)
				_exit(4);
			/* Give back half of it, later the rest: a slow reader. */
			uint8_t w[OMR_WINDOW_LEN];
			omr_window_pack(h.len, w);
			omr_frame_send(fd, OMR_F_WINDOW, 0, sid, w, sizeof(w));
			granted += h.len;
		} else if (h.type == OMR_F_EOF) {
			eof = true;
		}
		free(p);
	}
	snprintf(end, sizeof(end), "{\"got\":%llu,\"sum\":%llu}", (unsigned long long)got,
		 (unsigned long long)sum);
	send_end(fd, sid, end);
}

static void peer_error(int fd)
{
	uint32_t sid;
	json_t *req = recv_req(fd, &sid);

	json_decref(req);
	send_end(fd, sid, "{\"error\":\"no such file\",\"code\":\"not_found\"}");
}

static void peer_hangup(int fd)
{
	uint32_t sid;
	json_t *req = recv_req(fd, &sid);

	json_decref(req);
	omr_frame_send(fd, OMR_F_DATA, OMR_CH_STDOUT, sid, "partial", 7);
	close(fd);
}

static void peer_silent(int fd)
{
	uint32_t sid;
	json_t *req = recv_req(fd, &sid);

	json_decref(req);
	sleep(10);
}

/* Answers each SIGNAL it gets with a REPLY that names it; ends when the
 * connection does.  The first one also ends the stream if it is TERM. */
static void peer_signals(int fd)
{
	uint32_t sid;
	json_t *req = recv_req(fd, &sid);

	json_decref(req);
	for (;;) {
		struct omr_frame_hdr h;
		uint8_t *p = NULL;
		char buf[64];

		if (omr_frame_recv(fd, &h, &p) < 0)
			_exit(0);
		if (h.type == OMR_F_SIGNAL) {
			json_t *j = json_loadb((char *)p, h.len, 0, NULL);
			int sig = (int)json_integer_value(json_object_get(j, "signal"));
			json_decref(j);
			snprintf(buf, sizeof(buf), "{\"signal_seen\":%d}", sig);
			omr_frame_send(fd, OMR_F_REPLY, 0, sid, buf, strlen(buf));
			if (sig == SIGTERM) {
				snprintf(buf, sizeof(buf), "{\"exit_code\":null,\"signal\":%d}", sig);
				send_end(fd, sid, buf);
			}
		}
		free(p);
	}
}

static int replies_seen[8], nreplies;
static int on_reply(void *user, json_t *reply)
{
	(void)user;
	if (nreplies < 8)
		replies_seen[nreplies++] = (int)json_integer_value(json_object_get(reply, "signal_seen"));
	return 0;
}

/* A child that writes n bytes of a pattern into a pipe; returns the read end. */
static int input_pipe(size_t n, uint64_t *sum, pid_t *writer)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		bail_out("pipe");
	*sum = 0;
	for (size_t i = 0; i < n; i++)
		*sum += (uint8_t)(i * 13);
	*writer = fork();
	if (*writer == 0) {
		static uint8_t buf[65536];
		size_t off = 0;

		close(p[0]);
		while (off < n) {
			size_t k = n - off < sizeof(buf) ? n - off : sizeof(buf);
			for (size_t i = 0; i < k; i++)
				buf[i] = (uint8_t)((off + i) * 13);
			if (omr_write_all(p[1], buf, k) < 0)
				_exit(1);
			off += k;
		}
		_exit(0);
	}
	close(p[1]);
	return p[0];
}

static void test_stream(void)
{
	struct omr_stream s;
	struct omr_err *err = NULL;
	json_t *req = json_pack("{s:s}", "op", "exec");
	int fd, out[2], errp[2];
	pid_t peer;
	uint64_t t0;

	/* Output: routed by channel, credit returned as it is written. */
	peer = peer_start(peer_output, &fd);
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0)
		bail_out("pipe");
	{
		/* Drain stdout in a child so the pipe never fills. */
		pid_t drain = fork();
		if (drain == 0) {
			static uint8_t b[65536];
			uint64_t total = 0;
			bool pattern = true;
			ssize_t n;

			close(out[1]);
			while ((n = read(out[0], b, sizeof(b))) > 0) {
				for (ssize_t i = 0; i < n; i++)
					pattern &= b[i] == (uint8_t)(((total + (uint64_t)i) % OMR_DATA_CHUNK) * 7);
				total += (uint64_t)n;
			}
			_exit(total == OUT_BYTES && pattern ? 0 : 1);
		}
		close(out[0]);
		omr_stream_init(&s, fd, 1);
		s.out_fd[OMR_CH_STDOUT] = out[1];
		s.out_fd[OMR_CH_STDERR] = errp[1];
		s.timeout_ms = 20000;
		is_int(omr_stream_run(&s, req, &err), 0, "stream: 2 MiB of output within the credit");
		if (err)
			diag("%s", err->msg);
		omr_err_free(&err);
		is_int((long long)s.bytes_in, OUT_BYTES + 3, "stream: every byte counted");
		close(out[1]);
		is_int(peer_end(drain), 0, "stream: stdout got all of it, in order");
		char eb[8] = { 0 };
		close(errp[1]);
		(void)!read(errp[0], eb, sizeof(eb) - 1);
		close(errp[0]);
		is_str(eb, "err", "stream: stderr kept apart");
		ok(json_integer_value(json_object_get(s.end, "exit_code")) == 0 &&
			   json_is_integer(json_object_get(s.end, "exit_code")),
		   "stream: the END object is handed over");
		omr_stream_free(&s);
		close(fd);
		is_int(peer_end(peer), 0, "stream: the peer saw its credit come back");
	}

	/* Input: never beyond the credit, EOF at the end. */
	{
		uint64_t sum;
		pid_t writer;
		int in = input_pipe(3u << 20, &sum, &writer);

		peer = peer_start(peer_input, &fd);
		omr_stream_init(&s, fd, 1);
		s.in_fd = in;
		s.timeout_ms = 20000;
		is_int(omr_stream_run(&s, req, &err), 0, "stream: 3 MiB of input sent");
		omr_err_free(&err);
		is_int(json_integer_value(json_object_get(s.end, "got")), 3u << 20,
		       "stream: the peer got every byte");
		is_int(json_integer_value(json_object_get(s.end, "sum")), (long long)sum,
		       "stream: ... the same bytes");
		omr_stream_free(&s);
		close(fd);
		is_int(peer_end(peer), 0, "stream: never beyond the peer's credit, then EOF");
		close(in);
		peer_end(writer);
	}

	/* Errors: END with an error, a lost connection, silence. */
	peer = peer_start(peer_error, &fd);
	omr_stream_init(&s, fd, 1);
	ok(omr_stream_run(&s, req, &err) < 0 && omr_err_kind(err) == OMR_E_NOT_FOUND,
	   "stream: an error END is an error of its kind");
	omr_err_free(&err);
	omr_stream_free(&s);
	close(fd);
	peer_end(peer);

	peer = peer_start(peer_hangup, &fd);
	omr_stream_init(&s, fd, 1);
	ok(omr_stream_run(&s, req, &err) < 0 && omr_err_kind(err) == OMR_E_STATE,
	   "stream: a peer gone without END is a lost connection");
	like(err ? err->msg : NULL, "connection to the sandbox lost", "stream: ... and says so");
	omr_err_free(&err);
	omr_stream_free(&s);
	close(fd);
	peer_end(peer);

	peer = peer_start(peer_silent, &fd);
	omr_stream_init(&s, fd, 1);
	s.timeout_ms = 300;
	t0 = omr_now_ms();
	ok(omr_stream_run(&s, req, &err) < 0 && omr_err_kind(err) == OMR_E_TIMEOUT,
	   "stream: a silent peer times out");
	t0 = omr_now_ms() - t0;
	ok(t0 >= 300 && t0 < 3000, "stream: ... after its timeout (%llu ms)", (unsigned long long)t0);
	omr_err_free(&err);
	omr_stream_free(&s);
	close(fd);
	kill(peer, SIGKILL);
	peer_end(peer);
	json_decref(req);
}

/* SIGINT and SIGTERM go to the peer as SIGNAL; a second SIGINT within 2 s
 * ends the stream here (the user insists). */
static void test_signals(void)
{
	struct omr_stream s;
	struct omr_err *err = NULL;
	json_t *req = json_pack("{s:s}", "op", "exec");
	sigset_t set;
	int fd, sfd;
	pid_t peer, me = getpid();

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);

	/* One TERM: forwarded, and the peer ends the command with it. */
	peer = peer_start(peer_signals, &fd);
	omr_stream_init(&s, fd, 1);
	s.sig_fd = sfd;
	s.on_reply = on_reply;
	s.timeout_ms = 10000;
	nreplies = 0;
	kill(me, SIGTERM);
	is_int(omr_stream_run(&s, req, &err), 0, "signals: the stream ends normally");
	omr_err_free(&err);
	ok(nreplies == 1 && replies_seen[0] == SIGTERM, "signals: SIGTERM was forwarded as SIGNAL 15");
	is_int(json_integer_value(json_object_get(s.end, "signal")), SIGTERM,
	       "signals: the END says how it ended");
	omr_stream_free(&s);
	close(fd);
	peer_end(peer);

	/* SIGINT twice: the first forwarded, the second ends it here. */
	peer = peer_start(peer_signals, &fd);
	omr_stream_init(&s, fd, 1);
	s.sig_fd = sfd;
	s.on_reply = on_reply;
	s.timeout_ms = 10000;
	nreplies = 0;
	{
		pid_t later = fork();
		if (later == 0) {
			usleep(300 * 1000);
			kill(me, SIGINT);
			usleep(300 * 1000);
			kill(me, SIGINT);
			_exit(0);
		}
		int rc = omr_stream_run(&s, req, &err);
		ok(rc < 0 && err && err->errnum == EINTR, "signals: a second SIGINT within 2 s interrupts");
		ok(nreplies == 1 && replies_seen[0] == SIGINT,
		   "signals: ... after the first was forwarded as SIGNAL 2");
		peer_end(later);
	}
	omr_err_free(&err);
	omr_stream_free(&s);
	close(fd);
	peer_end(peer);
	close(sfd);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	json_decref(req);
}

/* ---- against the state and a fake monitor socket ---- */

/* Listens on the sandbox's monitor.sock and answers one exec like a
 * monitor would: checks the request, writes output, ends timed out. */
static void fake_monitor_exec(int lfd)
{
	int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	uint32_t sid;
	json_t *req = c >= 0 ? recv_req(c, &sid) : NULL;
	const char *bad = NULL;

	if (!req)
		_exit(2);
	if (strcmp(json_string_value(json_object_get(req, "op")), "exec"))
		bad = "op";
	else if (json_array_size(json_object_get(req, "argv")) != 2)
		bad = "argv";
	else if (strcmp(json_string_value(json_object_get(json_object_get(req, "env"), "K")), "v=w"))
		bad = "env";
	else if (strcmp(json_string_value(json_object_get(req, "cwd")), "/tmp"))
		bad = "cwd";
	else if (json_integer_value(json_object_get(req, "timeout_ms")) != 7000)
		bad = "timeout_ms";
	else if (!json_is_false(json_object_get(req, "stdin")))
		bad = "stdin";
	if (bad) {
		char e[100];
		snprintf(e, sizeof(e), "{\"error\":\"bad %s\",\"code\":\"bad_request\"}", bad);
		send_end(c, sid, e);
		_exit(5);
	}
	omr_frame_send(c, OMR_F_REPLY, 0, sid, "{\"pid\":77}", 10);
	omr_frame_send(c, OMR_F_DATA, OMR_CH_STDOUT, sid, "hello\n", 6);
	send_end(c, sid, "{\"exit_code\":null,\"signal\":9,\"timed_out\":true,\"duration_ms\":7001}");
	close(c);
}

static int listen_on(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	omr_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0)
		bail_out("cannot listen on %s: %s", path, strerror(errno));
	return fd;
}

static void test_connect_and_exec(void)
{
	struct omr_sandbox stopped, starting, running;
	struct omr_err *err = NULL;
	char *argv[] = { "sleep", "100", NULL }, *env[] = { "K=v=w", NULL };
	struct omr_exec_opts o = { .argv = argv, .env = env, .cwd = "/tmp", .timeout_s = 7,
				   .in_fd = -1, .err_fd = -1, .sig_fd = -1, .tty_fd = -1 };
	struct omr_exec_result r;
	int out[2], lfd, creator;
	pid_t mon;
	char buf[32] = { 0 };

	ok(omr_client_connect(cfg, "sb_aaaaaaaaaa", &err) < 0 && omr_err_kind(err) == OMR_E_NOT_FOUND,
	   "connect: an unknown sandbox is not_found");
	omr_err_free(&err);
	make_record(&stopped, OMR_SB_STOPPED, "idle");
	ok(omr_client_connect(cfg, stopped.id, &err) < 0 && omr_err_kind(err) == OMR_E_STATE,
	   "connect: a stopped sandbox is a state error");
	like(err ? err->msg : NULL, "is not running (stopped: idle)", "connect: ... that says why it stopped");
	is_int(omr_err_kind_info(omr_err_kind(err))->exit_code, 4, "connect: ... exit code 4");
	omr_err_free(&err);
	make_record(&starting, OMR_SB_STARTING, NULL);
	creator = omr_sandbox_creator_hold(cfg, starting.id, NULL);
	ok(omr_client_connect(cfg, starting.id, &err) < 0 && omr_err_kind(err) == OMR_E_STATE,
	   "connect: a sandbox without a socket yet is not running");
	like(err ? err->msg : NULL, "not running (starting)", "connect: ... and says it is starting");
	omr_err_free(&err);
	close(creator);
	ok(omr_client_connect(cfg, starting.id, &err) < 0 && omr_err_kind(err) == OMR_E_STATE,
	   "connect: one whose creator is gone is not running either");
	like(err ? err->msg : NULL, "is lost: its monitor is gone", "connect: ... and says it is lost");
	omr_err_free(&err);

	make_record(&running, OMR_SB_RUNNING, NULL);
	{
		char *dir = omr_sandbox_run_path(cfg, running.id, NULL);
		char *sock = omr_sandbox_run_path(cfg, running.id, "monitor.sock");
		omr_mkdir_p(dir, 0700, NULL);
		lfd = listen_on(sock);
		free(dir);
		free(sock);
	}
	mon = fork();
	if (mon == 0) {
		alarm(30);
		fake_monitor_exec(lfd);
		_exit(0);
	}
	close(lfd);
	if (pipe2(out, O_CLOEXEC) < 0)
		bail_out("pipe");
	o.out_fd = out[1];
	is_int(omr_exec_run(cfg, running.id, &o, &r, &err), 0, "exec: runs against the monitor");
	if (err)
		diag("%s", err->msg);
	omr_err_free(&err);
	close(out[1]);
	(void)!read(out[0], buf, sizeof(buf) - 1);
	close(out[0]);
	is_int(peer_end(mon), 0, "exec: the request carried argv, env, cwd, timeout and no stdin");
	is_str(buf, "hello\n", "exec: output reaches out_fd");
	ok(r.timed_out && r.signal == 9 && r.pid == 77 && r.duration_ms == 7001,
	   "exec: the result is read from END (timed out, signal 9, pid 77)");
	is_int(omr_exec_status(&r), 124, "exec: its status is 124");
}

static void test_create_and_kill(void)
{
	struct omr_create_opts o = { .template_name = "fake" };
	struct omr_sandbox sb, live;
	struct omr_err *err = NULL;
	int before;

	o.template_name = "../x";
	ok(omr_sandbox_create(cfg, &o, &sb, &err) < 0 && omr_err_kind(err) == OMR_E_USAGE,
	   "create: an invalid template name is a usage error");
	omr_err_free(&err);
	o.template_name = "nosuch";
	ok(omr_sandbox_create(cfg, &o, &sb, &err) < 0 && omr_err_kind(err) == OMR_E_NOT_FOUND,
	   "create: an unknown template is not_found");
	is_str(err ? err->msg : NULL, "unknown template 'nosuch'", "create: ... and named");
	omr_err_free(&err);
	o.template_name = "fake";
	o.memory_mb = cfg->max_memory_mb + 1;
	ok(omr_sandbox_create(cfg, &o, &sb, &err) < 0 && omr_err_kind(err) == OMR_E_USAGE,
	   "create: memory over the maximum is a usage error");
	like(err ? err->msg : NULL, "must be between", "create: ... that gives the range");
	omr_err_free(&err);
	o.memory_mb = 0;

	/* The host's limit, from a clean slate, counted from the records under the create lock. */
	{
		char *p = path_of("state/sandboxes");
		omr_rm_rf_at(AT_FDCWD, p);
		free(p);
	}
	load_config("[sandbox]\nmax_sandboxes = 1\n");
	make_record(&live, OMR_SB_RUNNING, NULL);
	before = count_dirs();
	ok(omr_sandbox_create(cfg, &o, &sb, &err) < 0 && omr_err_kind(err) == OMR_E_LIMIT,
	   "create: past max_sandboxes is a limit");
	is_int(omr_err_kind_info(omr_err_kind(err))->exit_code, 5, "create: ... exit code 5");
	like(err ? err->msg : NULL, "sandbox limit (1)", "create: ... that names the limit");
	omr_err_free(&err);
	is_int(count_dirs(), before, "create: a refused create leaves no directory");

	/* Below the limit it gets as far as starting the monitor (there is
	 * none here) and cleans up after itself. */
	live.state = OMR_SB_STOPPED;
	omr_sandbox_save(cfg, &live, NULL);
	ok(omr_sandbox_create(cfg, &o, &sb, &err) < 0 && err, "create: without sbx-monitor it fails");
	like(err ? err->msg : NULL, "sbx-monitor", "create: ... and names it");
	omr_err_free(&err);
	is_int(count_dirs(), before, "create: a failed create leaves no directory");
	load_config("");

	ok(omr_sandbox_kill(cfg, "sb_aaaaaaaaaa", "killed", &err) < 0 &&
		   omr_err_kind(err) == OMR_E_NOT_FOUND,
	   "kill: an unknown id is not_found");
	omr_err_free(&err);
	is_int(omr_sandbox_kill(cfg, live.id, "killed", &err), 0, "kill: a stopped sandbox: nothing to do");
	is_str(omr_sandbox_load(cfg, live.id, &sb, NULL) == 0 ? sb.end_reason : NULL, "",
	       "kill: ... its record is unchanged");

	/* A sandbox still booting: no monitor to ask, so kill reaps it. */
	make_record(&live, OMR_SB_STARTING, NULL);
	is_int(omr_sandbox_kill(cfg, live.id, "killed", &err), 0, "kill: a starting sandbox");
	omr_err_free(&err);
	ok(omr_sandbox_load(cfg, live.id, &sb, NULL) == 0 && sb.state == OMR_SB_STOPPED &&
		   !strcmp(sb.end_reason, "killed"),
	   "kill: ... is stopped, end reason killed");
}

/* A monitor that refuses a connection says why on stream 0 and closes it
 * before the client's request is sent: the client reads why (issue 8:
 * "Broken pipe" is never what a user reads). */
static void test_refused(void)
{
	static const char refusal[] = "{\"error\":\"too many connections to this sandbox (128 served "
				      "and 512 waiting)\",\"code\":\"limit_reached\"}";
	json_t *req = json_pack("{s:s}", "op", "status"), *out = NULL;
	struct omr_err *err = NULL;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		bail_out("socketpair");
	omr_frame_send(sv[1], OMR_F_END, 0, 0, refusal, strlen(refusal));
	close(sv[1]);
	ok(omr_client_call(sv[0], 1, req, 2000, &out, &err) < 0 && !out, "refused: the call fails");
	is_int(omr_err_kind(err), OMR_E_LIMIT, "refused: ... as a limit");
	like(err ? err->msg : NULL, "128 served and 512 waiting", "refused: ... naming the limit");
	ok(err && !strstr(err->msg, "Broken pipe"), "refused: ... never Broken pipe");
	omr_err_free(&err);
	close(sv[0]);

	/* Closed without a word: still no errno text of the socket. */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		bail_out("socketpair");
	close(sv[1]);
	ok(omr_client_call(sv[0], 1, req, 2000, &out, &err) < 0, "closed: the call fails");
	is_str(err ? err->msg : NULL, "the sandbox's monitor closed the connection",
	       "closed: ... saying so");
	omr_err_free(&err);
	close(sv[0]);
	json_decref(req);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	setup();
	test_validate();
	test_status_and_paths();
	test_end_parse();
	test_stream();
	test_signals();
	test_connect_and_exec();
	test_refused();
	test_create_and_kill();
	omr_config_free(cfg);
	omr_rm_rf_at(AT_FDCWD, root);
	return done_testing();
}
