/* The OmniRun wire protocol (DESIGN.md §4).
 *
 * The same framing is spoken host <-> guest agent (over the virtio-serial
 * port "omnirun.0") and client <-> sbx-monitor (over monitor.sock).
 *
 * A frame is a 12-byte header followed by `len` payload bytes:
 *
 *   u32 len      payload length, big endian, <= OMR_FRAME_MAX
 *   u8  type     enum omr_frame_type
 *   u8  flags    per type (channel for DATA/EOF)
 *   u16 rsvd     0 (ignored on receipt)
 *   u32 stream   big endian; 0 is the connection itself
 *
 * Control payloads (HELLO, REQ, REPLY, END, SIGNAL, RESIZE) are one JSON
 * object; DATA payloads are raw bytes; WINDOW carries a u32 big-endian
 * credit increment.
 *
 * Streams: whoever sends a REQ picks a new stream id (non-zero, unique among
 * its open streams).  The peer answers on the same id with zero or more
 * REPLY/DATA/EOF frames and exactly one END, after which the id is free.
 * An unknown type or a malformed payload is answered with END carrying
 * {"error": ..., "code": "bad_request"}; it never ends the connection,
 * except a header whose len exceeds OMR_FRAME_MAX (the stream cannot be
 * resynchronised): that connection is closed.
 *
 * Flow control: per stream and per direction, the sender of DATA may have at
 * most OMR_WINDOW_INIT bytes unacknowledged; the receiver returns credit with
 * WINDOW frames as it consumes the data.  The monitor forwards DATA and
 * WINDOW unchanged, so credit is end to end and no hop buffers more than one
 * window per stream. */
#ifndef OMNIRUN_PROTO_H
#define OMNIRUN_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define OMR_PROTO_VERSION 1
#define OMR_FRAME_HDR 12u
#define OMR_FRAME_MAX (128u * 1024u)       /* largest payload */
#define OMR_DATA_CHUNK (64u * 1024u)       /* DATA payloads we send */
#define OMR_WINDOW_INIT (512u * 1024u)     /* initial credit per stream */
#define OMR_AGENT_PORT "omnirun.0"         /* virtio-serial port name */

enum omr_frame_type {
	OMR_F_HELLO = 1,   /* agent -> host on connect, stream 0: JSON
			      {"version":1,"agent":"omnirun-agent x.y",
			       "kernel":"...","public_key":"..."(later)} */
	OMR_F_REQ = 2,     /* opens a stream: JSON {"op": "...", ...} */
	OMR_F_REPLY = 3,   /* JSON event on an open stream (not final) */
	OMR_F_DATA = 4,    /* raw bytes; flags = channel */
	OMR_F_EOF = 5,     /* no more DATA on channel `flags` */
	OMR_F_WINDOW = 6,  /* u32 BE credit for DATA towards the sender */
	OMR_F_SIGNAL = 7,  /* JSON {"signal": N}; {} means cancel the stream */
	OMR_F_END = 8,     /* final JSON result or {"error","code"} */
	OMR_F_RESIZE = 9,  /* JSON {"rows": R, "cols": C} for a pty */
};

/* Channels of DATA / EOF frames (the flags byte). */
enum omr_channel {
	OMR_CH_STDIN = 0,
	OMR_CH_STDOUT = 1,
	OMR_CH_STDERR = 2,
	OMR_CH_FILE = 3,
};

struct omr_frame_hdr {
	uint32_t len;
	uint8_t type;
	uint8_t flags;
	uint32_t stream;
};

/* Encodes a header into 12 bytes. */
void omr_frame_hdr_pack(const struct omr_frame_hdr *h, uint8_t out[OMR_FRAME_HDR]);
/* Decodes 12 bytes.  Returns 0, or -EMSGSIZE if len > OMR_FRAME_MAX. */
int omr_frame_hdr_unpack(const uint8_t in[OMR_FRAME_HDR], struct omr_frame_hdr *h);

/* Incremental reader for non-blocking fds: feed bytes, take whole frames.
 * Holds at most one frame (header + OMR_FRAME_MAX). */
struct omr_frame_reader {
	uint8_t *buf;     /* OMR_FRAME_HDR + OMR_FRAME_MAX bytes */
	size_t have;      /* bytes buffered */
	size_t taken;     /* size of the frame handed out by the last next() */
};
int omr_frame_reader_init(struct omr_frame_reader *r);
void omr_frame_reader_free(struct omr_frame_reader *r);
/* Reads what fd has (one read(2)).  Returns bytes read (> 0), 0 at EOF,
 * -EAGAIN when nothing is there, -EMSGSIZE on an oversized header, or
 * another -errno. */
ssize_t omr_frame_reader_fill(struct omr_frame_reader *r, int fd);
/* If a whole frame is buffered, fills *h and *payload (valid until the next
 * call) and returns 1; returns 0 if more bytes are needed; -EMSGSIZE on an
 * oversized header. */
int omr_frame_reader_next(struct omr_frame_reader *r, struct omr_frame_hdr *h,
			  const uint8_t **payload);

/* Blocking helpers (for clients and tests).  Return 0 or -errno;
 * omr_frame_recv returns -EPIPE at a clean EOF before a header and fills a
 * malloc'ed payload (NUL-terminated for convenience; len excludes the NUL). */
int omr_frame_send(int fd, uint8_t type, uint8_t flags, uint32_t stream,
		   const void *payload, size_t len);
int omr_frame_recv(int fd, struct omr_frame_hdr *h, uint8_t **payload);

/* A WINDOW frame's payload: a u32 big-endian credit increment.
 * omr_window_unpack returns 0 for a payload that is not 4 bytes. */
#define OMR_WINDOW_LEN 4u
void omr_window_pack(uint32_t credit, uint8_t out[OMR_WINDOW_LEN]);
uint32_t omr_window_unpack(const uint8_t *p, size_t len);

/* Builds a whole frame (header + payload) in a malloc'ed buffer. */
uint8_t *omr_frame_build(uint8_t type, uint8_t flags, uint32_t stream,
			 const void *payload, size_t len, size_t *out_len);

const char *omr_frame_type_name(uint8_t type);

/* The snake_case "code" of an END error for an errno ("not_found"), and
 * back (EIO for a code it does not know). */
const char *omr_proto_code(int errnum);
int omr_proto_errno(const char *code);

#endif
