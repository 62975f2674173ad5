/*
 * Migration stream framing: growable encoder, bounds-checked decoder, frame
 * header/crc handling, HELLO/reason messages and RAM page batches (crc32c and
 * the zero-page test are in stream_simd.c).
 * Everything read here may come from the network: no input can crash it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/stream.h"
#include "le.h"


/* --- encoder --- */

void stream_buf_init(struct stream_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void stream_buf_free(struct stream_buf *b)
{
	free(b->data);
	stream_buf_init(b);
}

void stream_buf_reset(struct stream_buf *b)
{
	b->len = 0;
	b->err = 0;
}

int stream_buf_error(const struct stream_buf *b)
{
	return b->err;
}

int stream_buf_reserve(struct stream_buf *b, size_t n)
{
	size_t cap;
	uint8_t *p;

	if (b->err)
		return b->err;
	if (n <= b->cap - b->len)
		return 0;
	if (n > SIZE_MAX / 2 - b->len)
		goto nomem;
	cap = b->cap ? b->cap : 256;
	while (cap - b->len < n)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p)
		goto nomem;
	b->data = p;
	b->cap = cap;
	return 0;
nomem:
	b->err = -ENOMEM;
	return b->err;
}

/* Returns a pointer to n fresh bytes at the end of b, or NULL (error recorded). */
static uint8_t *buf_grow(struct stream_buf *b, size_t n)
{
	uint8_t *p;

	if (stream_buf_reserve(b, n))
		return NULL;
	p = b->data + b->len;
	b->len += n;
	return p;
}

static int buf_put_le(struct stream_buf *b, uint64_t v, int n)
{
	uint8_t *p = buf_grow(b, (size_t)n);

	if (!p)
		return b->err;
	le_store(p, v, n);
	return 0;
}

int stream_buf_put_u8(struct stream_buf *b, uint8_t v)
{
	return buf_put_le(b, v, 1);
}

int stream_buf_put_u16(struct stream_buf *b, uint16_t v)
{
	return buf_put_le(b, v, 2);
}

int stream_buf_put_u32(struct stream_buf *b, uint32_t v)
{
	return buf_put_le(b, v, 4);
}

int stream_buf_put_u64(struct stream_buf *b, uint64_t v)
{
	return buf_put_le(b, v, 8);
}

int stream_buf_put_bytes(struct stream_buf *b, const void *src, size_t n)
{
	uint8_t *p = buf_grow(b, n);

	if (!p)
		return b->err;
	if (n)
		memcpy(p, src, n);
	return 0;
}

int stream_buf_put_string(struct stream_buf *b, const char *s)
{
	size_t n = strlen(s);

	if (n > UINT32_MAX) {
		if (!b->err)
			b->err = -EOVERFLOW;
		return -EOVERFLOW;
	}
	if (stream_buf_put_u32(b, (uint32_t)n))
		return b->err;
	return stream_buf_put_bytes(b, s, n);
}

int stream_buf_patch_u32(struct stream_buf *b, size_t off, uint32_t v)
{
	if (off > b->len || b->len - off < 4)
		return -ERANGE;
	le32_store(b->data + off, v);
	return 0;
}

/* --- frames --- */

/* A payload's check: stream_sum32() for frames flagged STREAM_FRAME_SUM,
 * crc32c for the rest. */
static uint32_t payload_check(bool sum, const void *payload, size_t len)
{
	return sum ? stream_sum32(payload, len) : stream_crc32c(0, payload, len);
}

void stream_frame_header_encode(uint8_t out[STREAM_FRAME_HDR_SIZE], uint32_t type,
				uint32_t flags, uint64_t length, uint32_t payload_crc)
{
	le32_store(out, type);
	le32_store(out + 4, flags);
	le64_store(out + 8, length);
	le32_store(out + 16, payload_crc);
	le32_store(out + 20, stream_crc32c(0, out, 20));
}

int stream_frame_begin(struct stream_buf *b, uint32_t type, uint32_t flags, size_t *frame)
{
	uint8_t *p;

	*frame = b->len;
	p = buf_grow(b, STREAM_FRAME_HDR_SIZE);
	if (!p)
		return b->err;
	/* type and flags now; length and crcs at stream_frame_end() */
	memset(p, 0, STREAM_FRAME_HDR_SIZE);
	le32_store(p, type);
	le32_store(p + 4, flags);
	return 0;
}

int stream_frame_end(struct stream_buf *b, size_t frame)
{
	const uint8_t *payload;
	uint8_t *hdr;
	uint64_t len;

	if (b->err)
		return b->err;
	if (frame > b->len || b->len - frame < STREAM_FRAME_HDR_SIZE)
		return -EINVAL;
	hdr = b->data + frame;
	payload = hdr + STREAM_FRAME_HDR_SIZE;
	len = b->len - frame - STREAM_FRAME_HDR_SIZE;
	stream_frame_header_encode(hdr, le32_load(hdr),
				   le32_load(hdr + 4) | (b->sum ? STREAM_FRAME_SUM : 0), len,
				   payload_check(b->sum, payload, len));
	return 0;
}

int stream_frame_put(struct stream_buf *b, uint32_t type, const void *payload, size_t len)
{
	size_t frame;
	int ret;

	ret = stream_frame_begin(b, type, 0, &frame);
	if (ret)
		return ret;
	stream_buf_put_bytes(b, payload, len);
	return stream_frame_end(b, frame);
}

/* --- decoder --- */

void stream_reader_init(struct stream_reader *r, const void *p, size_t len)
{
	r->p = p;
	r->len = len;
	r->pos = 0;
}

size_t stream_reader_remaining(const struct stream_reader *r)
{
	return r->len - r->pos;
}

int stream_get_ptr(struct stream_reader *r, size_t n, const void **p)
{
	if (n > stream_reader_remaining(r))
		return -EBADMSG;
	*p = r->p + r->pos;
	r->pos += n;
	return 0;
}

/* Consumes an n-byte little-endian integer; returns 0 or -EBADMSG. */
static int get_le(struct stream_reader *r, uint64_t *v, int n)
{
	const uint8_t *p;
	uint64_t x = 0;

	if (stream_get_ptr(r, (size_t)n, (const void **)&p))
		return -EBADMSG;
	for (int i = n - 1; i >= 0; i--)
		x = x << 8 | p[i];
	*v = x;
	return 0;
}

#define STREAM_GET_FN(bits)						\
int stream_get_u##bits(struct stream_reader *r, uint##bits##_t *v)	\
{									\
	uint64_t x;							\
									\
	if (get_le(r, &x, bits / 8))					\
		return -EBADMSG;					\
	*v = (uint##bits##_t)x;						\
	return 0;							\
}
STREAM_GET_FN(8)
STREAM_GET_FN(16)
STREAM_GET_FN(32)
STREAM_GET_FN(64)

int stream_get_bytes(struct stream_reader *r, void *dst, size_t n)
{
	const void *p;

	if (stream_get_ptr(r, n, &p))
		return -EBADMSG;
	if (n)
		memcpy(dst, p, n);
	return 0;
}

int stream_get_sub(struct stream_reader *r, size_t n, struct stream_reader *sub)
{
	const void *p;

	if (stream_get_ptr(r, n, &p))
		return -EBADMSG;
	stream_reader_init(sub, p, n);
	return 0;
}

int stream_get_string(struct stream_reader *r, char *dst, size_t cap)
{
	struct stream_reader t = *r;
	const void *p;
	uint32_t n;

	if (stream_get_u32(&t, &n) || stream_get_ptr(&t, n, &p))
		return -EBADMSG;
	if (memchr(p, 0, n))
		return -EBADMSG;
	if (cap == 0 || n > cap - 1)
		return -EOVERFLOW;
	memcpy(dst, p, n);
	dst[n] = '\0';
	*r = t;
	return 0;
}

int stream_frame_parse_header(const void *buf, size_t len, struct stream_frame *out,
			      uint64_t max_payload)
{
	const uint8_t *p = buf;
	uint32_t type;
	uint64_t length;

	if (len < STREAM_FRAME_HDR_SIZE)
		return -EBADMSG;
	if (stream_crc32c(0, p, 20) != le32_load(p + 20))
		return -EBADMSG;
	type = le32_load(p);
	if (type < STREAM_HELLO || type > STREAM_TYPE_MAX)
		return -EPROTO;
	/* STREAM_PAGES_INPLACE is the only flag of a type's own */
	if (le32_load(p + 4) &
	    ~(STREAM_FRAME_SUM | (type == STREAM_PAGES ? STREAM_PAGES_INPLACE : 0)))
		return -EPROTO;
	length = le64_load(p + 8);
	if (length > max_payload)
		return -EMSGSIZE;
	out->type = type;
	out->flags = le32_load(p + 4);
	out->length = length;
	out->payload_crc = le32_load(p + 16);
	return 0;
}

int stream_frame_check_payload(const struct stream_frame *f, const void *payload, size_t len)
{
	if (len != f->length || (f->flags & STREAM_PAGES_INPLACE))
		return -EBADMSG;
	if (payload_check(f->flags & STREAM_FRAME_SUM, payload, len) != f->payload_crc)
		return -EBADMSG;
	return 0;
}

int stream_frame_next(struct stream_reader *r, struct stream_frame *f, uint64_t max_payload,
		      struct stream_reader *payload)
{
	struct stream_reader t = *r;
	struct stream_frame hdr;
	const void *h;
	int ret;

	if (stream_get_ptr(&t, STREAM_FRAME_HDR_SIZE, &h))
		return -EBADMSG;
	ret = stream_frame_parse_header(h, STREAM_FRAME_HDR_SIZE, &hdr, max_payload);
	if (ret)
		return ret;
	if (hdr.length > stream_reader_remaining(&t))
		return -EBADMSG;
	if (stream_get_sub(&t, (size_t)hdr.length, payload))
		return -EBADMSG;
	ret = stream_frame_check_payload(&hdr, payload->p, payload->len);
	if (ret)
		return ret;
	*f = hdr;
	*r = t;
	return 0;
}

/* --- messages --- */

int stream_hello_put(struct stream_buf *b, uint64_t caps)
{
	size_t frame;
	int ret;

	ret = stream_frame_begin(b, STREAM_HELLO, 0, &frame);
	if (ret)
		return ret;
	stream_buf_put_bytes(b, STREAM_MAGIC, STREAM_MAGIC_LEN);
	stream_buf_put_u32(b, STREAM_VERSION);
	stream_buf_put_u64(b, caps);
	return stream_frame_end(b, frame);
}

int stream_hello_parse(struct stream_reader *payload, uint32_t *version, uint64_t *caps)
{
	struct stream_reader t = *payload;
	const void *magic;
	uint32_t v;
	uint64_t c;

	if (stream_reader_remaining(&t) != STREAM_MAGIC_LEN + 4 + 8)
		return -EBADMSG;
	if (stream_get_ptr(&t, STREAM_MAGIC_LEN, &magic) || stream_get_u32(&t, &v) ||
	    stream_get_u64(&t, &c))
		return -EBADMSG;
	if (memcmp(magic, STREAM_MAGIC, STREAM_MAGIC_LEN))
		return -EPROTO;
	*version = v;
	*caps = c;
	*payload = t;
	return 0;
}

int stream_u64_put(struct stream_buf *b, uint32_t type, uint64_t v)
{
	uint8_t p[8];

	le64_store(p, v);
	return stream_frame_put(b, type, p, sizeof(p));
}

int stream_u32_put(struct stream_buf *b, uint32_t type, uint32_t v)
{
	uint8_t p[4];

	le32_store(p, v);
	return stream_frame_put(b, type, p, sizeof(p));
}

int stream_reason_put(struct stream_buf *b, uint32_t type, const char *reason)
{
	size_t frame;
	int ret;

	ret = stream_frame_begin(b, type, 0, &frame);
	if (ret)
		return ret;
	stream_buf_put_string(b, reason);
	return stream_frame_end(b, frame);
}

int stream_reason_parse(struct stream_reader *payload, char *out, size_t cap)
{
	struct stream_reader t = *payload;
	const uint8_t *p;
	uint32_t n;
	size_t i, keep;

	if (cap == 0)
		return -EINVAL;
	if (stream_get_u32(&t, &n) || stream_get_ptr(&t, n, (const void **)&p))
		return -EBADMSG;
	if (stream_reader_remaining(&t))
		return -EBADMSG;
	keep = n < cap - 1 ? n : cap - 1;
	for (i = 0; i < keep; i++)
		out[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
	out[keep] = '\0';
	*payload = t;
	return 0;
}

/* --- RAM page batches --- */

int stream_pages_begin(struct stream_buf *b, struct stream_page_batch *pb)
{
	int ret;

	memset(pb, 0, sizeof(*pb));
	ret = stream_frame_begin(b, STREAM_PAGES, 0, &pb->frame);
	if (ret)
		return ret;
	return stream_buf_put_u32(b, 0);	/* count, patched at the end */
}

int stream_pages_add(struct stream_buf *b, struct stream_page_batch *pb, uint64_t gpa,
		     const void *data)
{
	uint8_t *p;

	if ((gpa & STREAM_PAGE_FLAG_MASK) || pb->inplace)
		return -EINVAL;
	if (pb->count == UINT32_MAX)
		return -EOVERFLOW;
	if (!data || stream_page_is_zero(data)) {
		if (stream_buf_put_u64(b, gpa | STREAM_PAGE_ZERO))
			return b->err;
		pb->zero++;
	} else {
		p = buf_grow(b, STREAM_PAGE_ENTRY_NORMAL);
		if (!p)
			return b->err;
		le64_store(p, gpa | STREAM_PAGE_NORMAL);
		memcpy(p + 8, data, STREAM_PAGE_SIZE);
		pb->normal++;
	}
	pb->count++;
	return 0;
}

int stream_pages_end(struct stream_buf *b, struct stream_page_batch *pb)
{
	const uint8_t *index;
	size_t len;
	int ret;

	if (b->err)
		return b->err;
	ret = stream_buf_patch_u32(b, pb->frame + STREAM_FRAME_HDR_SIZE, pb->count);
	if (ret)
		return ret;
	if (!pb->inplace)
		return stream_frame_end(b, pb->frame);
	ret = stream_buf_patch_u32(b, pb->frame + STREAM_FRAME_HDR_SIZE + 4, pb->normal);
	if (ret)
		return ret;
	/* the check covers the index; the length counts the data sent after it */
	index = b->data + pb->frame + STREAM_FRAME_HDR_SIZE;
	len = b->len - pb->frame - STREAM_FRAME_HDR_SIZE;
	stream_frame_header_encode(b->data + pb->frame, STREAM_PAGES,
				   STREAM_PAGES_INPLACE | (b->sum ? STREAM_FRAME_SUM : 0),
				   len + (uint64_t)pb->normal * STREAM_PAGE_SIZE,
				   payload_check(b->sum, index, len));
	return 0;
}

int stream_pages_begin_inplace(struct stream_buf *b, struct stream_page_batch *pb)
{
	int ret;

	memset(pb, 0, sizeof(*pb));
	pb->inplace = true;
	ret = stream_frame_begin(b, STREAM_PAGES, STREAM_PAGES_INPLACE, &pb->frame);
	if (ret)
		return ret;
	stream_buf_put_u32(b, 0);		/* count and normal, patched at the end */
	return stream_buf_put_u32(b, 0);
}

int stream_pages_add_index(struct stream_buf *b, struct stream_page_batch *pb, uint64_t gpa,
			   const void *data)
{
	bool zero = !data || stream_page_is_zero(data);

	if ((gpa & STREAM_PAGE_FLAG_MASK) || !pb->inplace || (pb->count && gpa <= pb->last_gpa))
		return -EINVAL;
	if (pb->count == STREAM_PAGES_MAX_INPLACE)
		return -EOVERFLOW;
	stream_buf_put_u64(b, gpa | (zero ? STREAM_PAGE_ZERO : STREAM_PAGE_NORMAL));
	if (!zero)
		stream_buf_put_u32(b, stream_sum32(data, STREAM_PAGE_SIZE));
	if (b->err)
		return b->err;
	pb->count++;
	pb->last_gpa = gpa;
	if (zero)
		pb->zero++;
	else
		pb->normal++;
	return !zero;
}

/* Decodes one entry at it->r; returns 0 with *pg set, or -EBADMSG. A
 * normal page's entry in an inplace index has a check instead of data. */
static int pages_entry(struct stream_reader *r, bool inplace, struct stream_page *pg)
{
	uint64_t v;
	uint32_t flags, check = 0;
	const void *data = NULL;

	if (stream_get_u64(r, &v))
		return -EBADMSG;
	flags = (uint32_t)(v & STREAM_PAGE_FLAG_MASK);
	if (flags == STREAM_PAGE_NORMAL) {
		if (inplace ? stream_get_u32(r, &check) : stream_get_ptr(r, STREAM_PAGE_SIZE, &data))
			return -EBADMSG;
	} else if (flags != STREAM_PAGE_ZERO) {
		return -EBADMSG;	/* unknown flag, or a misaligned gpa */
	}
	pg->gpa = v & ~STREAM_PAGE_FLAG_MASK;
	pg->flags = flags;
	pg->data = data;
	pg->check = check;
	return 0;
}

int64_t stream_pages_index_size(const struct stream_frame *f, uint32_t count, uint32_t normal)
{
	/* the counts, a u64 entry per page, a u32 check per normal page */
	uint64_t len = STREAM_PAGES_HDR_INPLACE + (uint64_t)count * 8 + (uint64_t)normal * 4;

	if (count > STREAM_PAGES_MAX_INPLACE || normal > count ||
	    f->length != len + (uint64_t)normal * STREAM_PAGE_SIZE)
		return -EBADMSG;
	return (int64_t)len;
}

int stream_pages_index_init(struct stream_page_iter *it, const struct stream_frame *f,
			    const void *index, size_t len, stream_gpa_check_fn check,
			    void *opaque)
{
	struct stream_reader r;
	struct stream_page pg;
	uint64_t last = 0;
	uint32_t count, normal;
	int ret;

	stream_reader_init(&r, index, len);
	if (!(f->flags & STREAM_PAGES_INPLACE) || stream_get_u32(&r, &count) ||
	    stream_get_u32(&r, &normal) ||
	    stream_pages_index_size(f, count, normal) != (int64_t)len ||
	    payload_check(f->flags & STREAM_FRAME_SUM, index, len) != f->payload_crc)
		return -EBADMSG;
	it->r = r;
	for (uint32_t i = 0; i < count; i++) {
		ret = pages_entry(&r, true, &pg);
		if (ret)
			return ret;
		if (i && pg.gpa <= last)
			return -EBADMSG;
		last = pg.gpa;
		ret = check(opaque, pg.gpa, STREAM_PAGE_SIZE);
		if (ret)
			return ret < 0 ? ret : -EFAULT;
	}
	if (stream_reader_remaining(&r))
		return -EBADMSG;	/* fewer normal pages than it says */
	it->count = count;
	it->index = 0;
	it->normal = normal;
	it->inplace = true;
	return 0;
}

int stream_pages_iter_init(struct stream_page_iter *it, const void *payload, size_t len,
			   stream_gpa_check_fn check, void *opaque)
{
	struct stream_reader r;
	struct stream_page pg;
	uint32_t count, i;
	int ret;

	stream_reader_init(&r, payload, len);
	if (stream_get_u32(&r, &count))
		return -EBADMSG;
	if (count > stream_reader_remaining(&r) / STREAM_PAGE_ENTRY_ZERO)
		return -EBADMSG;
	it->r = r;
	it->normal = 0;
	for (i = 0; i < count; i++) {
		ret = pages_entry(&r, false, &pg);
		if (ret)
			return ret;
		ret = check(opaque, pg.gpa, STREAM_PAGE_SIZE);
		if (ret)
			return ret < 0 ? ret : -EFAULT;
		it->normal += pg.flags == STREAM_PAGE_NORMAL;
	}
	if (stream_reader_remaining(&r))
		return -EBADMSG;	/* trailing bytes: count disagrees with length */
	it->count = count;
	it->index = 0;
	it->inplace = false;
	return 0;
}

int stream_pages_next(struct stream_page_iter *it, struct stream_page *pg)
{
	int ret;

	if (it->index >= it->count)
		return 0;
	ret = pages_entry(&it->r, it->inplace, pg);
	if (ret)
		return ret;
	it->index++;
	return 1;
}
