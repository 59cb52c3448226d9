/* envd's routes on the E2B listener (envd.c, doc/e2b.md): E2B's in-sandbox
 * daemon, answered by the shim for the sandbox an E2b-Sandbox-Id header
 * names, over the Connect protocol with JSON messages. */
#ifndef OMNIRUN_ENVD_INTERNAL_H
#define OMNIRUN_ENVD_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include "api-internal.h"

/* The envd version advertised: E2B's SDKs switch features on by it.
 * 0.5.7 gets stdin closing and octet-stream uploads asked for, and makes
 * the SDK refuse what needs a later envd (file metadata, watch entries)
 * before it calls. */
#define OMR_ENVD_VERSION "0.5.7"
/* envd's port, which the SDK names in E2b-Sandbox-Port on its calls;
 * another port there is a server of the guest's (expose.c). */
#define OMR_ENVD_PORT 49983

/* A Connect envelope: a flag byte (OMR_CONNECT_END_STREAM on a stream's
 * last message) and the message's length, 4 bytes big-endian. */
#define OMR_CONNECT_END_STREAM 0x02
void omr_connect_envelope(uint8_t hdr[5], uint8_t flags, size_t len);
/* Reads the header of the envelope at p (n bytes).  Returns 0 or -1 when
 * there are fewer than 5 bytes. */
int omr_connect_envelope_parse(const uint8_t *p, size_t n, uint8_t *flags, uint32_t *len);

/* Appends msg (stolen) in an envelope to the buffer *pend of *len bytes. */
void omr_connect_push(uint8_t **pend, size_t *len, uint8_t flags, json_t *msg);
/* How often a quiet stream sends a keepalive: what the SDK asks for
 * (50 s), sooner when the connection's idle timeout is shorter. */
int omr_envd_keepalive_ms(struct omr_api_req *r);

static inline void omr_envd_close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

enum MHD_Result omr_envd_health(struct omr_api_req *r);
enum MHD_Result omr_envd_files_get(struct omr_api_req *r);
enum MHD_Result omr_envd_files_put_begin(struct omr_api_req *r);
enum MHD_Result omr_envd_files_put_end(struct omr_api_req *r);
void omr_envd_files_put_abort(struct omr_api_req *r);
enum MHD_Result omr_envd_start(struct omr_api_req *r);
enum MHD_Result omr_envd_connect(struct omr_api_req *r);
enum MHD_Result omr_envd_list(struct omr_api_req *r);
enum MHD_Result omr_envd_signal(struct omr_api_req *r);
enum MHD_Result omr_envd_send_input(struct omr_api_req *r);
enum MHD_Result omr_envd_close_stdin(struct omr_api_req *r);
enum MHD_Result omr_envd_stat(struct omr_api_req *r);
enum MHD_Result omr_envd_listdir(struct omr_api_req *r);
enum MHD_Result omr_envd_mkdir(struct omr_api_req *r);
enum MHD_Result omr_envd_move(struct omr_api_req *r);
enum MHD_Result omr_envd_remove(struct omr_api_req *r);
enum MHD_Result omr_envd_watch(struct omr_api_req *r);

#endif
