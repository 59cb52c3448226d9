/* Byte strings in JSON (doc/protocol.md, "Bytes").
 *
 * Arguments, environment and paths are bytes on Unix; a JSON string holds
 * only UTF-8.  So a field F that carries bytes holds their text (each
 * byte that is not part of well-formed UTF-8 shown as U+FFFD), and when
 * the bytes are not UTF-8, a twin F_b64 holds them exactly, in base64.
 * A reader takes F_b64 when it is there, else F.  An array field (argv)
 * has an array twin: F_b64 holds every element, in order.  The strings
 * are C strings: no NUL byte. */
#ifndef OMNIRUN_BASE_JSON_H
#define OMNIRUN_BASE_JSON_H

#include <jansson.h>
#include <stddef.h>

/* A JSON string of n bytes, ill-formed bytes as U+FFFD: for messages and
 * display.  NULL only when jansson is out of memory. */
json_t *omr_json_text(const char *s, size_t n);

/* Sets o[key] to the text of s and, if s is not UTF-8, o[key_b64]. */
void omr_json_set_bytes(json_t *o, const char *key, const char *s);
/* The bytes of o[key_b64], else of o[key], in *out (malloc'ed).  Returns
 * 1, 0 when neither is there (or both are null), or -EINVAL when the one
 * taken is not a string, not base64, or holds a NUL byte. */
int omr_json_get_bytes(json_t *o, const char *key, char **out);

/* Sets o[key] to an array of the texts of v (NULL-terminated) and, if
 * one of them is not UTF-8, o[key_b64] to an array of all of them. */
void omr_json_set_bytes_array(json_t *o, const char *key, char *const *v);
/* The elements of o[key_b64], else of o[key], as a NULL-terminated
 * vector of malloc'ed strings (free with omr_argv_free).  Returns 1, 0
 * when neither is there (or null), -E2BIG past max elements, -EINVAL
 * when the one taken is not an array of strings (base64 for key_b64)
 * without NUL bytes. */
int omr_json_get_bytes_array(json_t *o, const char *key, size_t max, char ***out);

#endif
