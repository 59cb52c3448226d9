/* Unit tests for the framing (libcore/base/proto.c), TAP.
 *
 *   test-proto [FIXTURES-DIR]
 *
 * The byte streams come from fixture files (tests/unit/fixtures/proto,
 * README there): every pass/ stream must decode into exactly the frames
 * it lists and end cleanly, every fail/ stream must end in its error, the
 * same through the incremental reader (fed whole and one byte at a time)
 * and through the blocking omr_frame_recv. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "omnirun/base/err.h"
#include "omnirun/base/proto.h"

#include "tap.h"

#define MAX_FRAMES 16

struct want_frame {
	struct omr_frame_hdr h;
	size_t off;        /* where its payload starts in the stream */
	long long credit;  /* expected omr_window_unpack, -1: not checked */
};

struct fixture {
	const char *name;
	uint8_t *bytes;
	size_t len, cap;
	struct want_frame want[MAX_FRAMES];
	size_t nwant;
	int error;         /* 0, -EMSGSIZE, or 1 for "truncated" */
	size_t hdr_offs[MAX_FRAMES]; /* payload offsets of each hdr line */
	size_t nhdr;
	bool malformed;    /* an error or a refused WINDOW credit */
};

/* What one decoder saw. */
struct seen {
	struct omr_frame_hdr h[MAX_FRAMES];
	uint8_t *payload[MAX_FRAMES];
	size_t n;
	int end;           /* 0 clean EOF, -EMSGSIZE, 1 truncated, else -errno */
};

__attribute__((format(printf, 1, 2))) static char *xasprintf(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		bail_out("out of memory");
	va_end(ap);
	return s;
}

static void seen_free(struct seen *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->payload[i]);
	memset(s, 0, sizeof(*s));
}

static void append(struct fixture *f, const void *p, size_t n)
{
	if (f->len + n > f->cap) {
		f->cap = (f->len + n) * 2;
		f->bytes = realloc(f->bytes, f->cap);
		if (!f->bytes)
			bail_out("out of memory");
	}
	memcpy(f->bytes + f->len, p, n);
	f->len += n;
}

static int type_of(const char *s)
{
	for (int t = 0; t < 256; t++)
		if (!strcmp(omr_frame_type_name((uint8_t)t), s))
			return t;
	return (int)strtol(s, NULL, 0);
}

static unsigned long long num(const char *s)
{
	return strtoull(s, NULL, 0);
}

/* Parses one fixture; returns 0, or -1 with a diagnostic. */
static int fixture_load(const char *path, struct fixture *f)
{
	FILE *fp = fopen(path, "re");
	char *line = NULL, *a[6];
	size_t cap = 0;
	int lineno = 0, rc = 0;

	if (!fp) {
		diag("cannot open %s", path);
		return -1;
	}
	while (rc == 0 && getline(&line, &cap, fp) > 0) {
		char *p = line, *rest;
		int n = 0;

		lineno++;
		line[strcspn(line, "\n")] = 0;
		if (!strncmp(line, "text ", 5)) {
			append(f, line + 5, strlen(line + 5));
			continue;
		}
		if (line[0] == '#' || !line[0])
			continue;
		while (n < 6 && (a[n] = strtok_r(n ? NULL : p, " \t", &rest)))
			n++;
		if (!strcmp(a[0], "hdr") && n == 6) {
			struct omr_frame_hdr h = { .len = (uint32_t)num(a[1]),
						   .type = (uint8_t)num(a[2]),
						   .flags = (uint8_t)num(a[3]),
						   .stream = (uint32_t)num(a[5]) };
			uint8_t b[OMR_FRAME_HDR];

			omr_frame_hdr_pack(&h, b);
			b[6] = (uint8_t)(num(a[4]) >> 8); /* reserved: pack writes 0 */
			b[7] = (uint8_t)num(a[4]);
			append(f, b, sizeof(b));
			if (f->nhdr < MAX_FRAMES)
				f->hdr_offs[f->nhdr++] = f->len;
		} else if (!strcmp(a[0], "hex")) {
			for (int i = 1; i < n; i++) {
				uint8_t b = (uint8_t)strtoul(a[i], NULL, 16);
				append(f, &b, 1);
			}
			/* strtok stopped at 6 fields: the rest of the line */
			for (char *t; (t = strtok_r(NULL, " \t", &rest));) {
				uint8_t b = (uint8_t)strtoul(t, NULL, 16);
				append(f, &b, 1);
			}
		} else if (!strcmp(a[0], "fill") && n == 3) {
			uint8_t b = (uint8_t)num(a[2]);
			for (unsigned long long i = 0; i < num(a[1]); i++)
				append(f, &b, 1);
		} else if (!strcmp(a[0], "expect") && n == 5 && f->nwant < MAX_FRAMES) {
			struct want_frame *w = &f->want[f->nwant];

			w->h = (struct omr_frame_hdr){ .type = (uint8_t)type_of(a[1]),
						       .flags = (uint8_t)num(a[2]),
						       .stream = (uint32_t)num(a[3]),
						       .len = (uint32_t)num(a[4]) };
			w->credit = -1;
			f->nwant++;
		} else if (!strcmp(a[0], "window") && n == 2 && f->nwant > 0) {
			f->want[f->nwant - 1].credit = (long long)num(a[1]);
			f->malformed |= num(a[1]) == 0;
		} else if (!strcmp(a[0], "error") && n == 2) {
			f->error = !strcmp(a[1], "EMSGSIZE") ? -EMSGSIZE :
				   !strcmp(a[1], "truncated") ? 1 : 0;
			f->malformed = true;
			if (!f->error) {
				diag("%s:%d: unknown error '%s'", path, lineno, a[1]);
				rc = -1;
			}
		} else {
			diag("%s:%d: cannot parse '%s'", path, lineno, a[0]);
			rc = -1;
		}
	}
	free(line);
	fclose(fp);
	/* The expected frames' payloads are the bytes after their headers,
	 * in order. */
	for (size_t i = 0; i < f->nwant; i++)
		f->want[i].off = i < f->nhdr ? f->hdr_offs[i] : 0;
	return rc;
}

static void seen_add(struct seen *s, const struct omr_frame_hdr *h, const uint8_t *p)
{
	if (s->n >= MAX_FRAMES)
		return;
	s->h[s->n] = *h;
	s->payload[s->n] = malloc(h->len + 1);
	if (!s->payload[s->n])
		bail_out("out of memory");
	if (h->len)
		memcpy(s->payload[s->n], p, h->len);
	s->n++;
}

/* Writes the stream into a pipe from a child, chunk bytes per write (0:
 * all at once), so the reader sees it arrive in pieces. */
static int feed(const struct fixture *f, size_t chunk, pid_t *pid)
{
	int p[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0)
		bail_out("socketpair: %s", strerror(errno));
	*pid = fork();
	if (*pid < 0)
		bail_out("fork: %s", strerror(errno));
	if (*pid == 0) {
		size_t off = 0;

		close(p[0]);
		while (off < f->len) {
			size_t n = chunk && f->len - off > chunk ? chunk : f->len - off;
			ssize_t w = write(p[1], f->bytes + off, n);

			if (w <= 0)
				_exit(1);
			off += (size_t)w;
		}
		_exit(0);
	}
	close(p[1]);
	return p[0];
}

static void reap(pid_t pid)
{
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

/* Decodes with the incremental reader, as the monitor and agent do. */
static void decode_reader(const struct fixture *f, size_t chunk, struct seen *s)
{
	struct omr_frame_reader r;
	struct omr_frame_hdr h;
	const uint8_t *p;
	pid_t pid;
	int fd = feed(f, chunk, &pid), rc;

	if (omr_frame_reader_init(&r) < 0)
		bail_out("reader init");
	for (;;) {
		while ((rc = omr_frame_reader_next(&r, &h, &p)) == 1)
			seen_add(s, &h, p);
		if (rc < 0) {
			s->end = rc;
			break;
		}
		ssize_t n = omr_frame_reader_fill(&r, fd);
		if (n == 0) {
			/* EOF: bytes left over are a frame cut short. */
			s->end = r.have > r.taken ? 1 : 0;
			break;
		}
		if (n < 0 && n != -EAGAIN) {
			s->end = (int)n;
			break;
		}
	}
	omr_frame_reader_free(&r);
	close(fd);
	reap(pid);
}

/* Decodes with the blocking omr_frame_recv, as the clients do. */
static void decode_recv(const struct fixture *f, struct seen *s)
{
	struct omr_frame_hdr h;
	uint8_t *p;
	pid_t pid;
	int fd = feed(f, 0, &pid), rc;

	while ((rc = omr_frame_recv(fd, &h, &p)) == 0) {
		seen_add(s, &h, p);
		free(p);
	}
	/* -EPIPE: a clean end between frames; -EPROTO: cut inside one. */
	s->end = rc == -EPIPE ? 0 : rc == -EPROTO ? 1 : rc;
	close(fd);
	reap(pid);
}

static const char *end_name(int e)
{
	return e == 0 ? "clean end" : e == 1 ? "truncated" : e == -EMSGSIZE ? "EMSGSIZE" : "other error";
}

static void check(const struct fixture *f, const char *how, const struct seen *s)
{
	bool frames = s->n == f->nwant;

	for (size_t i = 0; frames && i < f->nwant; i++) {
		const struct want_frame *w = &f->want[i];
		const struct omr_frame_hdr *h = &s->h[i];

		uint32_t credit = omr_window_unpack(s->payload[i], h->len);

		frames = h->type == w->h.type && h->flags == w->h.flags &&
			 h->stream == w->h.stream && h->len == w->h.len &&
			 w->off + h->len <= f->len &&
			 !memcmp(s->payload[i], f->bytes + w->off, h->len) &&
			 (w->credit < 0 || credit == (uint32_t)w->credit);
		if (!frames)
			diag("frame %zu: got %s flags %u stream %u len %u credit %u, expected %s "
			     "flags %u stream %u len %u credit %lld (-1: any)",
			     i, omr_frame_type_name(h->type), h->flags, h->stream, h->len, credit,
			     omr_frame_type_name(w->h.type), w->h.flags, w->h.stream, w->h.len,
			     w->credit);
	}
	if (!frames && s->n != f->nwant)
		diag("got %zu frames, expected %zu", s->n, f->nwant);
	ok(frames, "%s (%s): the frames listed, in order, with their payloads", f->name, how);
	is_str(end_name(s->end), end_name(f->error), "%s (%s): how the stream ends", f->name, how);
}

static void run_fixture(const char *dir, const char *kind, const char *file)
{
	char *path = xasprintf("%s/%s/%s", dir, kind, file);
	char *name = xasprintf("%s/%s", kind, file);
	struct fixture f = { 0 };
	struct seen s = { 0 };

	f.name = name;
	if (!ok(fixture_load(path, &f) == 0, "%s: fixture parses", name))
		goto out;
	if (!strcmp(kind, "pass"))
		ok(!f.malformed && f.nwant > 0, "%s: a pass fixture expects frames and no error", name);
	else
		ok(f.malformed, "%s: a fail fixture names its error or a refused credit", name);

	decode_reader(&f, 0, &s);
	check(&f, "reader, one write", &s);
	seen_free(&s);
	/* One byte at a time on big streams is slow and proves nothing more
	 * than 7 bytes at a time (headers and payloads split anywhere). */
	decode_reader(&f, f.len > 4096 ? 4093 : 1, &s);
	check(&f, "reader, small writes", &s);
	seen_free(&s);
	decode_recv(&f, &s);
	check(&f, "omr_frame_recv", &s);
	seen_free(&s);
out:
	free(f.bytes);
	free(path);
	free(name);
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_fixture(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return n > 7 && !strcmp(d->d_name + n - 7, ".frames");
}

static void test_fixtures(const char *dir)
{
	static const char *const kinds[] = { "pass", "fail" };

	for (size_t k = 0; k < 2; k++) {
		char *sub = xasprintf("%s/%s", dir, kinds[k]);
		struct dirent **list = NULL;
		int n = scandir(sub, &list, is_fixture, by_name);

		ok(n > 0, "fixtures found in %s (%d)", sub, n);
		free(sub);
		if (n <= 0)
			continue;
		for (int i = 0; i < n; i++) {
			run_fixture(dir, kinds[k], list[i]->d_name);
			free(list[i]);
		}
		free(list);
	}
}

static void test_header(void)
{
	struct omr_frame_hdr h = { .len = 0x01020304, .type = 0xfe, .flags = 0x7f,
				   .stream = 0xdeadbeef }, back;
	uint8_t b[OMR_FRAME_HDR];
	static const uint8_t want[OMR_FRAME_HDR] = { 1, 2, 3, 4, 0xfe, 0x7f, 0, 0,
						     0xde, 0xad, 0xbe, 0xef };

	omr_frame_hdr_pack(&h, b);
	is_mem(b, sizeof(b), want, sizeof(want), "header: big endian, reserved bytes zero");
	is_int(omr_frame_hdr_unpack(b, &back), -EMSGSIZE, "header: a length over the maximum");
	h.len = OMR_FRAME_MAX;
	omr_frame_hdr_pack(&h, b);
	ok(omr_frame_hdr_unpack(b, &back) == 0 && back.len == h.len && back.type == h.type &&
		   back.flags == h.flags && back.stream == h.stream,
	   "header: pack and unpack round trip at the maximum length");
}

static void test_build_send(void)
{
	size_t n = 0;
	uint8_t *big = calloc(1, OMR_FRAME_MAX + 1), *fr;
	int sv[2];

	ok(omr_frame_build(OMR_F_DATA, 1, 1, big, OMR_FRAME_MAX + 1, &n) == NULL,
	   "build: a payload over the maximum is refused");
	fr = omr_frame_build(OMR_F_DATA, 1, 1, big, OMR_FRAME_MAX, &n);
	is_int((long long)n, OMR_FRAME_HDR + OMR_FRAME_MAX, "build: a maximal frame");
	free(fr);
	fr = omr_frame_build(OMR_F_EOF, 2, 9, NULL, 0, &n);
	is_int((long long)n, OMR_FRAME_HDR, "build: an empty payload is a bare header");
	free(fr);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		bail_out("socketpair");
	is_int(omr_frame_send(sv[0], OMR_F_DATA, 1, 1, big, OMR_FRAME_MAX + 1), -EMSGSIZE,
	       "send: over the maximum is EMSGSIZE and writes nothing");
	close(sv[0]);
	{
		struct omr_frame_hdr h;
		uint8_t *p = NULL;
		is_int(omr_frame_recv(sv[1], &h, &p), -EPIPE, "recv: nothing was sent");
		free(p);
	}
	close(sv[1]);
	free(big);
}

static void test_window(void)
{
	uint8_t b[OMR_WINDOW_LEN];

	omr_window_pack(0x00080000, b);
	is_int(omr_window_unpack(b, sizeof(b)), 0x00080000, "window: round trip");
	is_int(omr_window_unpack(b, 3), 0, "window: 3 bytes give no credit");
	is_int(omr_window_unpack(NULL, 0), 0, "window: an empty payload gives no credit");
}

static void test_names_and_codes(void)
{
	is_str(omr_frame_type_name(OMR_F_RESIZE), "RESIZE", "type name: RESIZE");
	is_str(omr_frame_type_name(0), "UNKNOWN", "type name: 0 is unknown");
	is_str(omr_frame_type_name(200), "UNKNOWN", "type name: 200 is unknown");
	is_str(omr_proto_code(ENOENT), "not_found", "code: ENOENT");
	is_str(omr_proto_code(12345), "io_error", "code: an errno without a row");
	is_int(omr_proto_errno("no_space"), ENOSPC, "code back: no_space");
	is_int(omr_proto_errno("what"), EIO, "code back: unknown is EIO");
	is_int(omr_proto_errno(NULL), EIO, "code back: NULL is EIO");
	/* Every code maps back to an errno that maps to the same code. */
	{
		static const int errs[] = { ENOENT, EISDIR, ENOTDIR, EEXIST, EACCES, EINVAL,
					    EFBIG, ENOSPC, EBUSY, ENOTEMPTY, ECANCELED,
					    ETIMEDOUT, ENOTCONN, EUSERS };
		bool same = true;

		for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
			const char *c = omr_proto_code(errs[i]);
			if (strcmp(omr_proto_code(omr_proto_errno(c)), c)) {
				diag("%s does not round trip", c);
				same = false;
			}
		}
		ok(same, "code: every code round trips through its errno");
	}
	/* The kind table: names, exit codes, HTTP statuses. */
	is_str(omr_err_kind_info(OMR_E_NOT_FOUND)->name, "not_found", "kind: not_found's name");
	is_int(omr_err_kind_info(OMR_E_LIMIT)->exit_code, 5, "kind: limit exits 5");
	is_int(omr_err_kind_info(OMR_E_BOOT)->exit_code, 6, "kind: boot exits 6");
	is_int(omr_err_kind_info(OMR_E_USAGE)->http_status, 400, "kind: usage is HTTP 400");
	is_int(omr_err_kind_info((enum omr_err_kind)99)->exit_code, 1,
	       "kind: out of range is a plain failure");
	for (int k = 0; k < OMR_E_KIND_COUNT; k++)
		is_int(omr_err_kind_from_code(omr_err_kind_info((enum omr_err_kind)k)->name), k,
		       "kind from code: %s names its kind", omr_err_kind_info((enum omr_err_kind)k)->name);
	is_int(omr_err_kind_from_code("no_space"), OMR_E_LIMIT, "kind from code: no_space is a limit");
	is_int(omr_err_kind_from_code("no_such_code"), OMR_E_FAIL, "kind from code: unknown");
}

int main(int argc, char **argv)
{
	const char *src = getenv("OMNIRUN_SRC");
	char *dir = argc > 1 ? xasprintf("%s", argv[1]) :
			       xasprintf("%s/tests/unit/fixtures/proto", src ? src : ".");

	test_header();
	test_build_send();
	test_window();
	test_names_and_codes();
	test_fixtures(dir);
	free(dir);
	return done_testing();
}
