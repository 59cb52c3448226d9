/* Background output: a ring of records [u8 channel][u32 length][bytes].
 *
 * It starts small and doubles up to RING_MAX; all rings together stay
 * under RING_BUDGET so many chatty background jobs cannot eat the guest's
 * memory.  When full, the oldest records are dropped and counted.
 * Positions are absolute (they only grow), so a reader left behind by
 * dropped records notices and learns how many data bytes it lost. */
#include <stdlib.h>
#include <string.h>

#include "agent.h"

#define REC_HDR 5u
#define RING_MIN (64u * 1024u)
#define RING_BUDGET (32u * 1024u * 1024u)

struct ring {
	uint8_t *buf;
	size_t cap;
	size_t start;       /* index in buf of the byte at position head */
	uint64_t head, tail;
	uint64_t head_data; /* data bytes dropped before head */
};

static size_t budget_used;

struct ring *ring_new(void)
{
	return calloc(1, sizeof(struct ring));
}

void ring_free(struct ring *r)
{
	if (!r)
		return;
	budget_used -= r->cap;
	free(r->buf);
	free(r);
}

uint64_t ring_dropped(const struct ring *r)
{
	return r->head_data;
}

static void copy_out(const struct ring *r, uint64_t pos, uint8_t *dst, size_t n)
{
	size_t i = (r->start + (size_t)(pos - r->head)) % r->cap;
	size_t k = r->cap - i < n ? r->cap - i : n;

	memcpy(dst, r->buf + i, k);
	memcpy(dst + k, r->buf, n - k);
}

static void copy_in(struct ring *r, const uint8_t *src, size_t n)
{
	size_t i = (r->start + (size_t)(r->tail - r->head)) % r->cap;
	size_t k = r->cap - i < n ? r->cap - i : n;

	memcpy(r->buf + i, src, k);
	memcpy(r->buf, src + k, n - k);
	r->tail += n;
}

static uint32_t rec_len(const struct ring *r, uint64_t pos, uint8_t *ch)
{
	uint8_t h[REC_HDR];

	copy_out(r, pos, h, REC_HDR);
	if (ch)
		*ch = h[0];
	return (uint32_t)h[1] << 24 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 8 | h[4];
}

/* Grows to at least need bytes if the caps allow; linearises the data. */
static void grow(struct ring *r, size_t need)
{
	size_t cap = r->cap ? r->cap : RING_MIN, used = (size_t)(r->tail - r->head);
	uint8_t *nb;

	while (cap < need && cap < RING_MAX)
		cap *= 2;
	if (cap <= r->cap || budget_used - r->cap + cap > RING_BUDGET)
		return;
	nb = malloc(cap);
	if (!nb)
		return;
	if (used)
		copy_out(r, r->head, nb, used);
	budget_used += cap - r->cap;
	free(r->buf);
	r->buf = nb;
	r->cap = cap;
	r->start = 0;
}

void ring_append(struct ring *r, uint8_t ch, const uint8_t *p, size_t n)
{
	uint8_t h[REC_HDR] = { ch, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
			       (uint8_t)n };
	size_t need = REC_HDR + n;

	if (n == 0)
		return;
	if ((size_t)(r->tail - r->head) + need > r->cap)
		grow(r, (size_t)(r->tail - r->head) + need);
	if (need > r->cap) {
		/* No room at all (budget exhausted): the record is lost. */
		r->head_data += n;
		return;
	}
	while ((size_t)(r->tail - r->head) + need > r->cap) {
		uint32_t l = rec_len(r, r->head, NULL);
		r->start = (r->start + REC_HDR + l) % r->cap;
		r->head += REC_HDR + l;
		r->head_data += l;
	}
	copy_in(r, h, REC_HDR);
	copy_in(r, p, n);
}

void ring_cursor_start(const struct ring *r, struct ring_cursor *c)
{
	c->pos = r->head;
	c->off = 0;
	c->data = r->head_data;
}

bool ring_at_end(const struct ring *r, const struct ring_cursor *c)
{
	return c->pos >= r->tail;
}

size_t ring_read(const struct ring *r, struct ring_cursor *c, uint8_t *dst, size_t max,
		 uint8_t *ch, uint64_t *lost)
{
	uint32_t l;
	size_t k;

	*lost = 0;
	if (c->pos < r->head) {
		*lost = r->head_data - c->data;
		ring_cursor_start(r, c);
	}
	if (c->pos >= r->tail || max == 0)
		return 0;
	l = rec_len(r, c->pos, ch);
	k = l - c->off < max ? l - c->off : max;
	copy_out(r, c->pos + REC_HDR + c->off, dst, k);
	c->off += (uint32_t)k;
	c->data += k;
	if (c->off == l) {
		c->pos += REC_HDR + l;
		c->off = 0;
	}
	return k;
}
