/* Framing of the OmniRun protocol; see omnirun/proto.h.  libc only, so the
 * guest agent links it too. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "omnirun/base/io.h"
#include "omnirun/base/proto.h"

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void omr_frame_hdr_pack(const struct omr_frame_hdr *h, uint8_t out[OMR_FRAME_HDR])
{
	put_u32(out, h->len);
	out[4] = h->type;
	out[5] = h->flags;
	out[6] = 0;
	out[7] = 0;
	put_u32(out + 8, h->stream);
}

int omr_frame_hdr_unpack(const uint8_t in[OMR_FRAME_HDR], struct omr_frame_hdr *h)
{
	h->len = get_u32(in);
	h->type = in[4];
	h->flags = in[5];
	h->stream = get_u32(in + 8);
	return h->len > OMR_FRAME_MAX ? -EMSGSIZE : 0;
}

void omr_window_pack(uint32_t credit, uint8_t out[OMR_WINDOW_LEN])
{
	put_u32(out, credit);
}

uint32_t omr_window_unpack(const uint8_t *p, size_t len)
{
	return len == OMR_WINDOW_LEN ? get_u32(p) : 0;
}

int omr_frame_reader_init(struct omr_frame_reader *r)
{
	r->have = 0;
	r->taken = 0;
	r->buf = malloc(OMR_FRAME_HDR + OMR_FRAME_MAX);
	return r->buf ? 0 : -ENOMEM;
}

void omr_frame_reader_free(struct omr_frame_reader *r)
{
	free(r->buf);
	r->buf = NULL;
	r->have = 0;
	r->taken = 0;
}

/* The frame handed out by the last next() stays valid until the reader is
 * used again; only then is it dropped from the buffer. */
static void reader_drop_taken(struct omr_frame_reader *r)
{
	if (r->taken == 0)
		return;
	memmove(r->buf, r->buf + r->taken, r->have - r->taken);
	r->have -= r->taken;
	r->taken = 0;
}

ssize_t omr_frame_reader_fill(struct omr_frame_reader *r, int fd)
{
	size_t room;
	ssize_t n;

	reader_drop_taken(r);
	room = OMR_FRAME_HDR + OMR_FRAME_MAX - r->have;
	if (room == 0)
		return -ENOBUFS; /* a whole frame is buffered: take it first */
	do
		n = read(fd, r->buf + r->have, room);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	r->have += (size_t)n;
	return n;
}

int omr_frame_reader_next(struct omr_frame_reader *r, struct omr_frame_hdr *h,
			  const uint8_t **payload)
{
	size_t total;
	int rc;

	reader_drop_taken(r);
	if (r->have < OMR_FRAME_HDR)
		return 0;
	rc = omr_frame_hdr_unpack(r->buf, h);
	if (rc < 0)
		return rc;
	total = OMR_FRAME_HDR + h->len;
	if (r->have < total)
		return 0;
	*payload = r->buf + OMR_FRAME_HDR;
	r->taken = total;
	return 1;
}

/* Exactly n bytes: -EPIPE at a clean EOF before any, -EPROTO mid-way. */
static int read_all(int fd, uint8_t *p, size_t n)
{
	ssize_t r = omr_read_full(fd, p, n);

	if (r < 0)
		return (int)r;
	if ((size_t)r < n)
		return r == 0 ? -EPIPE : -EPROTO;
	return 0;
}

uint8_t *omr_frame_build(uint8_t type, uint8_t flags, uint32_t stream,
			 const void *payload, size_t len, size_t *out_len)
{
	struct omr_frame_hdr h = { .len = (uint32_t)len, .type = type,
				   .flags = flags, .stream = stream };
	uint8_t *buf;

	if (len > OMR_FRAME_MAX)
		return NULL;
	buf = malloc(OMR_FRAME_HDR + len);
	if (!buf)
		return NULL;
	omr_frame_hdr_pack(&h, buf);
	if (len)
		memcpy(buf + OMR_FRAME_HDR, payload, len);
	*out_len = OMR_FRAME_HDR + len;
	return buf;
}

int omr_frame_send(int fd, uint8_t type, uint8_t flags, uint32_t stream,
		   const void *payload, size_t len)
{
	size_t n;
	uint8_t *buf = omr_frame_build(type, flags, stream, payload, len, &n);
	int rc;

	if (!buf)
		return len > OMR_FRAME_MAX ? -EMSGSIZE : -ENOMEM;
	/* One write per frame keeps frames whole on a socket shared by
	 * threads that each hold their own lock around this call. */
	rc = omr_write_all(fd, buf, n);
	free(buf);
	return rc;
}

int omr_frame_recv(int fd, struct omr_frame_hdr *h, uint8_t **payload)
{
	uint8_t hdr[OMR_FRAME_HDR];
	uint8_t *p;
	int rc;

	*payload = NULL;
	rc = read_all(fd, hdr, sizeof(hdr));
	if (rc < 0)
		return rc;
	rc = omr_frame_hdr_unpack(hdr, h);
	if (rc < 0)
		return rc;
	p = malloc(h->len + 1);
	if (!p)
		return -ENOMEM;
	rc = read_all(fd, p, h->len);
	if (rc < 0) {
		free(p);
		return rc == -EPIPE ? -EPROTO : rc;
	}
	p[h->len] = 0;
	*payload = p;
	return 0;
}

const char *omr_frame_type_name(uint8_t type)
{
	static const char *const names[] = {
		[OMR_F_HELLO] = "HELLO", [OMR_F_REQ] = "REQ",
		[OMR_F_REPLY] = "REPLY", [OMR_F_DATA] = "DATA",
		[OMR_F_EOF] = "EOF", [OMR_F_WINDOW] = "WINDOW",
		[OMR_F_SIGNAL] = "SIGNAL", [OMR_F_END] = "END",
		[OMR_F_RESIZE] = "RESIZE",
	};
	if (type < sizeof(names) / sizeof(names[0]) && names[type])
		return names[type];
	return "UNKNOWN";
}

/* The "code" of an END error, both ways, in one table: the first row of
 * an errno names it; the first row of a code gives its errno back. */
static const struct {
	int e;
	const char *code;
} codes[] = {
	{ ENOENT, "not_found" }, { EISDIR, "is_directory" }, { ENOTDIR, "not_directory" },
	{ EEXIST, "exists" }, { EACCES, "permission_denied" }, { EPERM, "permission_denied" },
	{ EINVAL, "bad_request" }, { ERANGE, "bad_request" }, { EFBIG, "too_large" },
	{ E2BIG, "too_large" }, { EMSGSIZE, "too_large" }, { ENOSPC, "no_space" },
	{ EDQUOT, "no_space" }, { EBUSY, "busy" }, { EAGAIN, "busy" },
	{ ENOTEMPTY, "not_empty" }, { EXDEV, "cross_device" },
	{ ENAMETOOLONG, "name_too_long" }, { ELOOP, "too_many_links" },
	{ EROFS, "read_only" }, { ESRCH, "not_found" }, { ECANCELED, "cancelled" },
	{ ENOMEM, "no_memory" }, { EMFILE, "too_many_files" }, { ENFILE, "too_many_files" },
	{ EUSERS, "limit_reached" }, { ETIMEDOUT, "timeout" }, { ENOTCONN, "not_running" },
	{ ECONNREFUSED, "connection_refused" }, { ECONNRESET, "connection_reset" },
};

const char *omr_proto_code(int errnum)
{
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (codes[i].e == errnum)
			return codes[i].code;
	return "io_error";
}

int omr_proto_errno(const char *code)
{
	for (size_t i = 0; code && i < sizeof(codes) / sizeof(codes[0]); i++)
		if (!strcmp(codes[i].code, code))
			return codes[i].e;
	return EIO;
}
