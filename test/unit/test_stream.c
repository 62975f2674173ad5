/*
 * Unit tests for the migration stream framing (src/migrate/stream.c): frames
 * against annotated expected bytes, every truncation and every flipped byte of
 * a valid stream, size/type/GPA validation, crc32c, the payload sum and the
 * zero-page test.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/stream.h"

#define GUEST_RAM_END	(1024 * 1024ull)

/* Accepts pages wholly inside [0, GUEST_RAM_END); counts its calls. */
static int ram_check(void *opaque, uint64_t gpa, uint64_t len)
{
	unsigned *calls = opaque;

	if (calls)
		(*calls)++;
	if (gpa >= GUEST_RAM_END || len > GUEST_RAM_END - gpa)
		return -EFAULT;
	return 0;
}

static void fill_page(uint8_t *p, unsigned seed)
{
	for (unsigned i = 0; i < STREAM_PAGE_SIZE; i++)
		p[i] = (uint8_t)(i * 7 + seed);
}

/* Hand-built header with a valid header crc (payload crc as given). */
static void make_header(uint8_t *h, uint32_t type, uint64_t length, uint32_t pcrc)
{
	stream_frame_header_encode(h, type, 0, length, pcrc);
}

/* --- crc32c --- */

static void test_crc32c_known(void **state)
{
	uint8_t buf[32];

	assert_int_equal(stream_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(stream_crc32c_sw(0, "123456789", 9), 0xE3069283u);
	if (stream_crc32c_hw_available())
		assert_int_equal(stream_crc32c_hw(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(stream_crc32c(0, "", 0), 0);
	/* RFC 3720 B.4 vectors */
	memset(buf, 0, sizeof(buf));
	assert_int_equal(stream_crc32c(0, buf, 32), 0x8A9136AAu);
	memset(buf, 0xff, sizeof(buf));
	assert_int_equal(stream_crc32c(0, buf, 32), 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	assert_int_equal(stream_crc32c_sw(0, buf, 32), 0x46DD794Eu);
	/* chaining */
	assert_int_equal(stream_crc32c(stream_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}

static void test_crc32c_hw_matches_sw(void **state)
{
	enum { N = 5000 };
	uint8_t *buf = malloc(N + 8);
	uint32_t seed = 12345;

	assert_non_null(buf);
	if (!stream_crc32c_hw_available()) {
		free(buf);
		skip();
	}
	for (int i = 0; i < N + 8; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (uint8_t)(seed >> 16);
	}
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len < 300; len++)
			assert_int_equal(stream_crc32c_hw(0, buf + off, len),
					 stream_crc32c_sw(0, buf + off, len));
	assert_int_equal(stream_crc32c_hw(0x1234, buf, N), stream_crc32c_sw(0x1234, buf, N));
	free(buf);
}

/* The hardware path splits long inputs into three lanes of 8 KiB, then of
 * 256 bytes, and joins them; every split point must give the table result. */
static void test_crc32c_hw_lanes(void **state)
{
	enum { N = 3 * 8192 * 2 + 3 * 256 + 100 };
	static const size_t lens[] = {
		767, 768, 769, 3 * 256 * 2, 3 * 8192 - 1, 3 * 8192, 3 * 8192 + 1,
		3 * 8192 + 3 * 256 + 7, 3 * 8192 * 2, N - 8,
	};
	uint8_t *buf = malloc(N);
	uint32_t seed = 777;

	assert_non_null(buf);
	if (!stream_crc32c_hw_available()) {
		free(buf);
		skip();
	}
	for (int i = 0; i < N; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (uint8_t)(seed >> 16);
	}
	for (size_t off = 0; off < 8; off += 3)
		for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
			assert_int_equal(stream_crc32c_hw(0xabcd, buf + off, lens[i]),
					 stream_crc32c_sw(0xabcd, buf + off, lens[i]));
	/* chained calls split anywhere give the one-call result */
	assert_int_equal(stream_crc32c_hw(stream_crc32c_hw(0, buf, 30000), buf + 30000, N - 30000),
			 stream_crc32c_sw(0, buf, N));
	free(buf);
}

/* --- expected bytes --- */

static void test_hello_bytes(void **state)
{
	static const uint8_t expected[] = {
		/* header */
		0x01, 0x00, 0x00, 0x00,				/* type = HELLO */
		0x00, 0x00, 0x00, 0x00,				/* flags = 0 */
		0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,	/* length = 20 */
		0x51, 0x2a, 0x9f, 0x7a,				/* payload crc32c */
		0x5e, 0x87, 0x90, 0x67,				/* header crc32c */
		/* payload */
		'V', 'M', 'M', 'M', 'I', 'G', 0x00, 0x01,	/* magic */
		0x01, 0x00, 0x00, 0x00,				/* stream version 1 */
		0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,	/* caps POSTCOPY|MULTIFD */
	};
	struct stream_buf b;
	struct stream_reader r, pl;
	struct stream_frame f;
	uint32_t version;
	uint64_t caps;

	stream_buf_init(&b);
	assert_int_equal(stream_hello_put(&b, STREAM_CAP_POSTCOPY | STREAM_CAP_MULTIFD), 0);
	assert_int_equal(b.len, sizeof(expected));
	assert_memory_equal(b.data, expected, sizeof(expected));

	stream_reader_init(&r, b.data, b.len);
	assert_int_equal(stream_frame_next(&r, &f, STREAM_MAX_CONTROL, &pl), 0);
	assert_int_equal(f.type, STREAM_HELLO);
	assert_int_equal(stream_hello_parse(&pl, &version, &caps), 0);
	assert_int_equal(version, STREAM_VERSION);
	assert_int_equal(caps, 3);
	assert_int_equal(stream_reader_remaining(&r), 0);
	stream_buf_free(&b);
}

static void test_pages_bytes(void **state)
{
	static const uint8_t expected[] = {
		/* header */
		0x06, 0x00, 0x00, 0x00,				/* type = PAGES */
		0x00, 0x00, 0x00, 0x00,				/* flags = 0 */
		0x14, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,	/* length = 4116 */
		0xf2, 0xfa, 0x0f, 0xd2,				/* payload crc32c */
		0x88, 0xc4, 0x18, 0x89,				/* header crc32c */
		/* payload */
		0x02, 0x00, 0x00, 0x00,				/* count = 2 */
		0x01, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,	/* gpa 0x1000 | ZERO */
		0x02, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,	/* gpa 0x2000 | NORMAL */
		/* 4096 bytes of page data follow */
	};
	static uint8_t zero[STREAM_PAGE_SIZE];
	static uint8_t page[STREAM_PAGE_SIZE];
	struct stream_page_batch pb;
	struct stream_buf b;

	fill_page(page, 1);
	stream_buf_init(&b);
	assert_int_equal(stream_pages_begin(&b, &pb), 0);
	assert_int_equal(stream_pages_add(&b, &pb, 0x1000, zero), 0);
	assert_int_equal(stream_pages_add(&b, &pb, 0x2000, page), 0);
	assert_int_equal(stream_pages_end(&b, &pb), 0);
	assert_int_equal(pb.count, 2);
	assert_int_equal(pb.zero, 1);
	assert_int_equal(pb.normal, 1);
	assert_int_equal(b.len, sizeof(expected) + STREAM_PAGE_SIZE);
	assert_memory_equal(b.data, expected, sizeof(expected));
	assert_memory_equal(b.data + sizeof(expected), page, STREAM_PAGE_SIZE);
	stream_buf_free(&b);
}

/* --- a whole valid stream, then every truncation and every flipped byte --- */

#define SAMPLE_FRAMES 9

/* Builds HELLO, ACCEPT, SHAPE, PASS_BEGIN, PAGES, PASS_END, REFUSE-style FAIL, DONE, GO. */
static void build_sample(struct stream_buf *b)
{
	static uint8_t page[STREAM_PAGE_SIZE];
	struct stream_page_batch pb;

	fill_page(page, 3);
	stream_buf_init(b);
	assert_int_equal(stream_hello_put(b, STREAM_CAP_POSTCOPY), 0);
	assert_int_equal(stream_u64_put(b, STREAM_ACCEPT, 0), 0);
	assert_int_equal(stream_frame_put(b, STREAM_SHAPE, "shape", 5), 0);
	assert_int_equal(stream_u32_put(b, STREAM_PASS_BEGIN, 1), 0);
	assert_int_equal(stream_pages_begin(b, &pb), 0);
	assert_int_equal(stream_pages_add(b, &pb, 0x0, NULL), 0);
	assert_int_equal(stream_pages_add(b, &pb, 0x3000, page), 0);
	assert_int_equal(stream_pages_add(b, &pb, 0x5000, NULL), 0);
	assert_int_equal(stream_pages_end(b, &pb), 0);
	assert_int_equal(stream_u32_put(b, STREAM_PASS_END, 1), 0);
	assert_int_equal(stream_reason_put(b, STREAM_FAIL, "no"), 0);
	assert_int_equal(stream_frame_put(b, STREAM_DONE, NULL, 0), 0);
	assert_int_equal(stream_frame_put(b, STREAM_GO, NULL, 0), 0);
}

/* Decodes one frame's payload with its type's decoder; returns 0 or -errno. */
static int decode_payload(const struct stream_frame *f, struct stream_reader *pl)
{
	struct stream_page_iter it;
	struct stream_page pg;
	char reason[STREAM_REASON_MAX];
	uint32_t v32;
	uint64_t v64;
	int ret;

	switch (f->type) {
	case STREAM_HELLO:
		return stream_hello_parse(pl, &v32, &v64);
	case STREAM_FAIL:
		return stream_reason_parse(pl, reason, sizeof(reason));
	case STREAM_PAGES:
		ret = stream_pages_iter_init(&it, pl->p, pl->len, ram_check, NULL);
		if (ret)
			return ret;
		while ((ret = stream_pages_next(&it, &pg)) > 0)
			if (pg.data)
				v32 = ((const uint8_t *)pg.data)[STREAM_PAGE_SIZE - 1];
		return ret;
	default:
		return 0;
	}
}

/* Parses frames from p[0..len) until an error; returns frames parsed, *err the stop reason. */
static int parse_all(const uint8_t *p, size_t len, int *err)
{
	struct stream_reader r, pl;
	struct stream_frame f;
	int n = 0;

	stream_reader_init(&r, p, len);
	*err = 0;
	while (stream_reader_remaining(&r)) {
		*err = stream_frame_next(&r, &f, STREAM_MAX_PAYLOAD, &pl);
		if (*err)
			break;
		*err = decode_payload(&f, &pl);
		if (*err)
			break;
		n++;
	}
	return n;
}

static void test_every_truncation(void **state)
{
	struct stream_buf b;
	size_t ends[SAMPLE_FRAMES + 1];
	struct stream_reader r, pl;
	struct stream_frame f;
	int err, n, whole = 0;

	build_sample(&b);
	assert_int_equal(parse_all(b.data, b.len, &err), SAMPLE_FRAMES);
	assert_int_equal(err, 0);
	stream_reader_init(&r, b.data, b.len);
	for (int i = 0; i < SAMPLE_FRAMES; i++) {
		assert_int_equal(stream_frame_next(&r, &f, STREAM_MAX_PAYLOAD, &pl), 0);
		ends[i] = r.pos;
	}
	ends[SAMPLE_FRAMES] = SIZE_MAX;
	for (size_t len = 0; len < b.len; len++) {
		/* exact-size copy so ASan/valgrind see any read past the end */
		uint8_t *cut = malloc(len ? len : 1);

		assert_non_null(cut);
		memcpy(cut, b.data, len);
		while (len >= ends[whole])
			whole++;
		n = parse_all(cut, len, &err);
		/* frames wholly inside the prefix parse, the cut one fails */
		assert_int_equal(n, whole);
		if (whole == 0 ? len != 0 : len != ends[whole - 1])
			assert_int_equal(err, -EBADMSG);
		else
			assert_int_equal(err, 0);	/* cut on a frame boundary */
		free(cut);
	}
	stream_buf_free(&b);
}

static void test_every_payload_truncation(void **state)
{
	struct stream_buf b;
	struct stream_reader r, pl;
	struct stream_frame f;

	build_sample(&b);
	stream_reader_init(&r, b.data, b.len);
	while (stream_reader_remaining(&r)) {
		assert_int_equal(stream_frame_next(&r, &f, STREAM_MAX_PAYLOAD, &pl), 0);
		if (f.type != STREAM_HELLO && f.type != STREAM_FAIL && f.type != STREAM_PAGES)
			continue;
		for (size_t len = 0; len < pl.len; len++) {
			uint8_t *cut = malloc(len ? len : 1);
			struct stream_reader t;

			assert_non_null(cut);
			memcpy(cut, pl.p, len);
			stream_reader_init(&t, cut, len);
			assert_int_equal(decode_payload(&f, &t), -EBADMSG);
			free(cut);
		}
	}
	stream_buf_free(&b);
}

static void test_every_flipped_byte(void **state)
{
	static const uint8_t flips[] = { 0x01, 0x80, 0xff };
	struct stream_buf b;
	int err;

	build_sample(&b);
	for (size_t i = 0; i < b.len; i++) {
		for (size_t k = 0; k < sizeof(flips); k++) {
			b.data[i] ^= flips[k];
			assert_true(parse_all(b.data, b.len, &err) < SAMPLE_FRAMES);
			assert_true(err < 0);
			b.data[i] ^= flips[k];
		}
	}
	assert_int_equal(parse_all(b.data, b.len, &err), SAMPLE_FRAMES);
	stream_buf_free(&b);
}

/* --- header validation --- */

static void test_oversize_and_type(void **state)
{
	uint8_t h[STREAM_FRAME_HDR_SIZE];
	struct stream_frame f;
	struct stream_reader r, pl;

	make_header(h, STREAM_PAGES, STREAM_MAX_PAYLOAD + 1ull, 0);
	assert_int_equal(stream_frame_parse_header(h, sizeof(h), &f, STREAM_MAX_PAYLOAD),
			 -EMSGSIZE);
	make_header(h, STREAM_PAGES, UINT64_MAX, 0);
	assert_int_equal(stream_frame_parse_header(h, sizeof(h), &f, STREAM_MAX_PAYLOAD),
			 -EMSGSIZE);
	make_header(h, STREAM_SHAPE, 100, 0);
	assert_int_equal(stream_frame_parse_header(h, sizeof(h), &f, 99), -EMSGSIZE);
	assert_int_equal(stream_frame_parse_header(h, sizeof(h), &f, 100), 0);
	assert_int_equal(f.length, 100);
	/* announced length within the limit but beyond the received bytes */
	stream_reader_init(&r, h, sizeof(h));
	assert_int_equal(stream_frame_next(&r, &f, STREAM_MAX_PAYLOAD, &pl), -EBADMSG);
	assert_int_equal(r.pos, 0);

	make_header(h, 0, 0, 0);
	assert_int_equal(stream_frame_parse_header(h, sizeof(h), &f, 1), -EPROTO);
	make_header(h, STREAM_TYPE_MAX + 1, 0, 0);
	assert_int_equal(stream_frame_parse_header(h, sizeof(h), &f, 1), -EPROTO);
	make_header(h, STREAM_TYPE_MAX, 0, 0);
	assert_int_equal(stream_frame_parse_header(h, sizeof(h), &f, 1), 0);
	assert_int_equal(stream_frame_parse_header(h, sizeof(h) - 1, &f, 1), -EBADMSG);
	/* payload length mismatch */
	make_header(h, STREAM_GO, 0, 0);
	assert_int_equal(stream_frame_parse_header(h, sizeof(h), &f, 1), 0);
	assert_int_equal(stream_frame_check_payload(&f, "", 0), 0);
	assert_int_equal(stream_frame_check_payload(&f, "x", 1), -EBADMSG);
}

/* --- the payload sum --- */

/* stream_sum32() as its header describes it, a word at a time. */
static uint32_t sum32_ref(const uint8_t *p, size_t len)
{
	uint64_t a[4] = { 0 }, s[4] = { 0 }, v[9];
	uint8_t fold[72];

	for (size_t i = 0; i < (len + 15) / 16 * 4; i++) {
		uint32_t w = 0;

		for (size_t k = 0; k < 4; k++)
			if (4 * i + k < len)
				w |= (uint32_t)p[4 * i + k] << (8 * k);
		a[i % 4] += w;
		if (i % 4 == 3)
			for (int j = 0; j < 4; j++)
				s[j] += a[j];
	}
	for (int j = 0; j < 4; j++) {
		v[j] = a[j];
		v[4 + j] = s[j];
	}
	v[8] = len;
	for (int j = 0; j < 9; j++)
		for (int k = 0; k < 8; k++)
			fold[8 * j + k] = (uint8_t)(v[j] >> (8 * k));
	return stream_crc32c(0, fold, sizeof(fold));
}

static void test_sum32(void **state)
{
	enum { N = 64 << 10 };
	static const size_t lens[] = { 0, 1, 3, 15, 16, 17, 31, 63, 64, 65, 127, 4096, 4108,
				       N - 1, N };
	uint8_t *buf = malloc(N);
	uint32_t seed = 4242, ref;

	(void)state;
	assert_non_null(buf);
	for (int i = 0; i < N; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (uint8_t)(seed >> 16);
	}
	/* the wire format: pinned, so a change to it cannot pass unnoticed */
	assert_int_equal(stream_sum32("123456789", 9), 0x9B79604Eu);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		uint32_t avx2;

		assert_int_equal(stream_sum32(buf, lens[i]), sum32_ref(buf, lens[i]));
		assert_int_equal(stream_sum32_generic(buf, lens[i]), sum32_ref(buf, lens[i]));
		if (stream_sum32_avx2(buf + 1, lens[i] - (lens[i] > 0), &avx2))
			assert_int_equal(avx2, sum32_ref(buf + 1, lens[i] - (lens[i] > 0)));
		if (stream_sum32_avx2(buf, lens[i], &avx2))
			assert_int_equal(avx2, sum32_ref(buf, lens[i]));
	}
	assert_int_equal(stream_sum32(buf + 3, 1000), sum32_ref(buf + 3, 1000));
	assert_int_equal(stream_sum32_generic(buf + 3, 1000), sum32_ref(buf + 3, 1000));
	/* a zero byte more is another payload */
	memset(buf + 100, 0, 1);
	assert_int_not_equal(stream_sum32(buf, 100), stream_sum32(buf, 101));
	/* every single flipped bit of 2000 is seen */
	ref = stream_sum32(buf, N);
	for (int i = 0; i < 2000; i++) {
		size_t pos;
		uint8_t bit;

		seed = seed * 1103515245u + 12345u;
		pos = (seed >> 8) % N;
		bit = (uint8_t)(1u << (seed % 8));
		buf[pos] ^= bit;
		assert_int_not_equal(stream_sum32(buf, N), ref);
		buf[pos] ^= bit;
	}
	/* two different words swapped, in one lane and across lanes */
	for (size_t other = 16; other <= 20; other += 4) {
		uint32_t w0, w1;

		memcpy(&w0, buf, 4);
		memcpy(&w1, buf + other, 4);
		assert_int_not_equal(w0, w1);
		memcpy(buf, &w1, 4);
		memcpy(buf + other, &w0, 4);
		assert_int_not_equal(stream_sum32(buf, N), ref);
		memcpy(buf, &w0, 4);
		memcpy(buf + other, &w1, 4);
	}
	assert_int_equal(stream_sum32(buf, N), ref);
	free(buf);
}

/* A buffer with sum set ends its frames with STREAM_FRAME_SUM and
 * stream_sum32(); the reader checks whichever the frame names and refuses
 * flags it does not know. */
static void test_frame_sum(void **state)
{
	static const char payload[] = "state of a device, 37 bytes long....";
	struct stream_buf b;
	struct stream_reader r, pl;
	struct stream_frame f;
	uint8_t h[STREAM_FRAME_HDR_SIZE];

	(void)state;
	for (int sum = 0; sum < 2; sum++) {
		stream_buf_init(&b);
		b.sum = sum;
		assert_int_equal(stream_frame_put(&b, STREAM_DEVICE, payload, sizeof(payload)), 0);
		assert_int_equal(stream_frame_parse_header(b.data, b.len, &f, STREAM_MAX_PAYLOAD), 0);
		assert_int_equal(f.flags, sum ? STREAM_FRAME_SUM : 0);
		assert_int_equal(f.payload_crc, sum ? stream_sum32(payload, sizeof(payload)) :
						      stream_crc32c(0, payload, sizeof(payload)));
		stream_reader_init(&r, b.data, b.len);
		assert_int_equal(stream_frame_next(&r, &f, STREAM_MAX_PAYLOAD, &pl), 0);
		assert_int_equal(pl.len, sizeof(payload));
		b.data[STREAM_FRAME_HDR_SIZE + 5] ^= 0x10;
		stream_reader_init(&r, b.data, b.len);
		assert_int_equal(stream_frame_next(&r, &f, STREAM_MAX_PAYLOAD, &pl), -EBADMSG);
		stream_buf_free(&b);
	}
	/* the same payload check under the other method's name fails */
	stream_frame_header_encode(h, STREAM_DEVICE, STREAM_FRAME_SUM, sizeof(payload),
				   stream_crc32c(0, payload, sizeof(payload)));
	assert_int_equal(stream_frame_parse_header(h, sizeof(h), &f, STREAM_MAX_PAYLOAD), 0);
	assert_int_equal(stream_frame_check_payload(&f, payload, sizeof(payload)), -EBADMSG);
	/* unknown flags */
	stream_frame_header_encode(h, STREAM_DEVICE, 1, 0, 0);
	assert_int_equal(stream_frame_parse_header(h, sizeof(h), &f, STREAM_MAX_PAYLOAD), -EPROTO);
	stream_frame_header_encode(h, STREAM_DEVICE, STREAM_FRAME_SUM | (1u << 30), 0, 0);
	assert_int_equal(stream_frame_parse_header(h, sizeof(h), &f, STREAM_MAX_PAYLOAD), -EPROTO);
}

static void test_hello_reason_errors(void **state)
{
	uint8_t p[20];
	struct stream_reader r, pl;
	struct stream_buf b;
	struct stream_frame f;
	char out[8];
	uint32_t v;
	uint64_t caps;

	memcpy(p, "VMMMIG\0\2", 8);		/* wrong magic */
	memset(p + 8, 0, 12);
	stream_reader_init(&r, p, sizeof(p));
	assert_int_equal(stream_hello_parse(&r, &v, &caps), -EPROTO);
	memcpy(p, STREAM_MAGIC, 8);
	stream_reader_init(&r, p, sizeof(p) - 1);
	assert_int_equal(stream_hello_parse(&r, &v, &caps), -EBADMSG);

	/* reasons are truncated to fit and made printable */
	stream_buf_init(&b);
	assert_int_equal(stream_reason_put(&b, STREAM_REFUSE, "bad\x1b[2Jcpu family"), 0);
	stream_reader_init(&r, b.data, b.len);
	assert_int_equal(stream_frame_next(&r, &f, STREAM_MAX_CONTROL, &pl), 0);
	assert_int_equal(stream_reason_parse(&pl, out, sizeof(out)), 0);
	assert_string_equal(out, "bad?[2J");
	stream_buf_free(&b);
}

static void test_get_string(void **state)
{
	static const uint8_t ok[] = { 3, 0, 0, 0, 'a', 'b', 'c' };
	static const uint8_t nul[] = { 3, 0, 0, 0, 'a', 0, 'c' };
	static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 'a' };
	struct stream_reader r;
	char s[4];

	stream_reader_init(&r, ok, sizeof(ok));
	assert_int_equal(stream_get_string(&r, s, 3), -EOVERFLOW);
	assert_int_equal(r.pos, 0);
	assert_int_equal(stream_get_string(&r, s, 4), 0);
	assert_string_equal(s, "abc");
	stream_reader_init(&r, nul, sizeof(nul));
	assert_int_equal(stream_get_string(&r, s, 4), -EBADMSG);
	stream_reader_init(&r, huge, sizeof(huge));
	assert_int_equal(stream_get_string(&r, s, 4), -EBADMSG);
	assert_int_equal(r.pos, 0);
}

/* --- page batches --- */

/* Builds a PAGES payload from raw entries: count, then each u64 (data after NORMAL ones). */
static size_t raw_batch(uint8_t *out, uint32_t count, const uint64_t *ent, size_t n)
{
	size_t off = 4;

	memcpy(out, &count, 4);
	for (size_t i = 0; i < n; i++) {
		memcpy(out + off, &ent[i], 8);
		off += 8;
		if ((ent[i] & STREAM_PAGE_FLAG_MASK) == STREAM_PAGE_NORMAL) {
			fill_page(out + off, (unsigned)i);
			off += STREAM_PAGE_SIZE;
		}
	}
	return off;
}

static void test_pages_validation(void **state)
{
	static uint8_t buf[4 + 3 * (8 + STREAM_PAGE_SIZE) + 8];
	struct stream_page_iter it;
	struct stream_buf b;
	struct stream_page_batch pb;
	unsigned calls = 0;
	uint64_t e[3];
	size_t len;

	/* good: one of each */
	e[0] = 0x1000 | STREAM_PAGE_ZERO;
	e[1] = 0x2000 | STREAM_PAGE_NORMAL;
	len = raw_batch(buf, 2, e, 2);
	assert_int_equal(stream_pages_iter_init(&it, buf, len, ram_check, &calls), 0);
	assert_int_equal(calls, 2);
	/* count says more / fewer entries than the length holds */
	assert_int_equal(stream_pages_iter_init(&it, buf, raw_batch(buf, 3, e, 2), ram_check,
						NULL), -EBADMSG);
	assert_int_equal(stream_pages_iter_init(&it, buf, raw_batch(buf, 1, e, 2), ram_check,
						NULL), -EBADMSG);
	assert_int_equal(stream_pages_iter_init(&it, buf, raw_batch(buf, UINT32_MAX, e, 2),
						ram_check, NULL), -EBADMSG);
	/* misaligned gpa (shows up as unknown flag bits), both flags, no flag */
	e[1] = 0x2010 | STREAM_PAGE_NORMAL;
	assert_int_equal(stream_pages_iter_init(&it, buf, raw_batch(buf, 2, e, 2), ram_check,
						NULL), -EBADMSG);
	e[1] = 0x2000 | STREAM_PAGE_NORMAL | STREAM_PAGE_ZERO;
	assert_int_equal(stream_pages_iter_init(&it, buf, raw_batch(buf, 2, e, 2), ram_check,
						NULL), -EBADMSG);
	e[1] = 0x2000;
	assert_int_equal(stream_pages_iter_init(&it, buf, raw_batch(buf, 2, e, 2), ram_check,
						NULL), -EBADMSG);
	/* out of guest RAM: last page is refused, so the batch is refused whole */
	e[1] = 0x2000 | STREAM_PAGE_NORMAL;
	e[2] = GUEST_RAM_END | STREAM_PAGE_NORMAL;
	assert_int_equal(stream_pages_iter_init(&it, buf, raw_batch(buf, 3, e, 3), ram_check,
						NULL), -EFAULT);
	e[2] = 0xfffffffffffff000ull | STREAM_PAGE_ZERO;
	assert_int_equal(stream_pages_iter_init(&it, buf, raw_batch(buf, 3, e, 3), ram_check,
						NULL), -EFAULT);
	/* the encoder refuses a misaligned gpa */
	stream_buf_init(&b);
	assert_int_equal(stream_pages_begin(&b, &pb), 0);
	assert_int_equal(stream_pages_add(&b, &pb, 0x1001, NULL), -EINVAL);
	assert_int_equal(stream_pages_end(&b, &pb), 0);
	stream_buf_free(&b);
}

static void test_pages_round_trip(void **state)
{
	enum { N = 64 };
	static uint8_t pages[N][STREAM_PAGE_SIZE];
	struct stream_page_batch pb;
	struct stream_page_iter it;
	struct stream_page pg;
	struct stream_reader r, pl;
	struct stream_frame f;
	struct stream_buf b;
	unsigned i = 0;

	memset(pages, 0, sizeof(pages));
	for (i = 0; i < N; i++)
		if (i % 3)
			pages[i][(i * 131) % STREAM_PAGE_SIZE] = (uint8_t)(i | 1);
	stream_buf_init(&b);
	assert_int_equal(stream_pages_begin(&b, &pb), 0);
	for (i = 0; i < N; i++)
		assert_int_equal(stream_pages_add(&b, &pb, i * 2ull * STREAM_PAGE_SIZE, pages[i]), 0);
	assert_int_equal(stream_pages_end(&b, &pb), 0);
	assert_int_equal(pb.zero + pb.normal, N);
	assert_int_equal(pb.zero, (N + 2) / 3);

	stream_reader_init(&r, b.data, b.len);
	assert_int_equal(stream_frame_next(&r, &f, STREAM_MAX_PAYLOAD, &pl), 0);
	assert_int_equal(f.type, STREAM_PAGES);
	assert_int_equal(stream_pages_iter_init(&it, pl.p, pl.len, ram_check, NULL), 0);
	for (i = 0; stream_pages_next(&it, &pg) == 1; i++) {
		assert_int_equal(pg.gpa, i * 2ull * STREAM_PAGE_SIZE);
		if (i % 3) {
			assert_int_equal(pg.flags, STREAM_PAGE_NORMAL);
			assert_memory_equal(pg.data, pages[i], STREAM_PAGE_SIZE);
		} else {
			assert_int_equal(pg.flags, STREAM_PAGE_ZERO);
			assert_null(pg.data);
		}
	}
	assert_int_equal(i, N);
	stream_buf_free(&b);
}

/* STREAM_PAGES_INPLACE: the header and index bytes, the index checks, and
 * every way an index can be wrong. */
static void test_pages_inplace(void **state)
{
	static uint8_t page[STREAM_PAGE_SIZE], page2[STREAM_PAGE_SIZE];
	uint8_t idx[8 + 3 * 8 + 2 * 4], hdr[STREAM_FRAME_HDR_SIZE];
	struct stream_page_batch pb;
	struct stream_page_iter it;
	struct stream_page pg;
	struct stream_frame f;
	struct stream_buf b;
	const uint8_t *index;
	unsigned calls = 0;
	uint32_t sum1, sum2;

	fill_page(page, 1);
	fill_page(page2, 2);
	sum1 = stream_sum32(page, STREAM_PAGE_SIZE);
	sum2 = stream_sum32(page2, STREAM_PAGE_SIZE);
	stream_buf_init(&b);
	assert_int_equal(stream_pages_begin_inplace(&b, &pb), 0);
	assert_int_equal(stream_pages_add(&b, &pb, 0x1000, page), -EINVAL);
	assert_int_equal(stream_pages_add_index(&b, &pb, 0x1000, NULL), 0);
	assert_int_equal(stream_pages_add_index(&b, &pb, 0x2000, page), 1);
	assert_int_equal(stream_pages_add_index(&b, &pb, 0x2000, page2), -EINVAL);
	assert_int_equal(stream_pages_add_index(&b, &pb, 0x3001, page2), -EINVAL);
	assert_int_equal(stream_pages_add_index(&b, &pb, 0x3000, page2), 1);
	assert_int_equal(stream_pages_end(&b, &pb), 0);
	assert_int_equal(pb.zero, 1);
	assert_int_equal(pb.normal, 2);
	/* the buffer holds the header and the index; the data goes after it */
	assert_int_equal(b.len, STREAM_FRAME_HDR_SIZE + sizeof(idx));
	assert_int_equal(stream_frame_parse_header(b.data, STREAM_FRAME_HDR_SIZE, &f,
						   STREAM_MAX_PAYLOAD), 0);
	assert_int_equal(f.type, STREAM_PAGES);
	assert_int_equal(f.flags, STREAM_PAGES_INPLACE);
	assert_int_equal(f.length, sizeof(idx) + 2 * STREAM_PAGE_SIZE);
	index = b.data + STREAM_FRAME_HDR_SIZE;
	assert_int_equal(f.payload_crc, stream_crc32c(0, index, sizeof(idx)));
	{
		const uint8_t expected[] = {
			3, 0, 0, 0,  2, 0, 0, 0,			/* count, normal */
			0x01, 0x10, 0, 0, 0, 0, 0, 0,			/* 0x1000 | ZERO */
			0x02, 0x20, 0, 0, 0, 0, 0, 0,			/* 0x2000 | NORMAL */
			(uint8_t)sum1, (uint8_t)(sum1 >> 8), (uint8_t)(sum1 >> 16),
			(uint8_t)(sum1 >> 24),				/* its check */
			0x02, 0x30, 0, 0, 0, 0, 0, 0,			/* 0x3000 | NORMAL */
			(uint8_t)sum2, (uint8_t)(sum2 >> 8), (uint8_t)(sum2 >> 16),
			(uint8_t)(sum2 >> 24),
		};

		assert_int_equal(sizeof(expected), sizeof(idx));
		assert_memory_equal(index, expected, sizeof(expected));
	}

	assert_int_equal(stream_pages_index_size(&f, 3, 2), sizeof(idx));
	assert_int_equal(stream_pages_index_init(&it, &f, index, sizeof(idx), ram_check, &calls), 0);
	assert_int_equal(calls, 3);
	assert_int_equal(it.normal, 2);
	assert_int_equal(stream_pages_next(&it, &pg), 1);
	assert_true(pg.gpa == 0x1000 && pg.flags == STREAM_PAGE_ZERO && !pg.data);
	assert_int_equal(stream_pages_next(&it, &pg), 1);
	assert_true(pg.gpa == 0x2000 && pg.flags == STREAM_PAGE_NORMAL && !pg.data);
	assert_int_equal(pg.check, sum1);
	assert_int_equal(stream_pages_next(&it, &pg), 1);
	assert_int_equal(pg.check, sum2);
	assert_int_equal(stream_pages_next(&it, &pg), 0);

	/* every flipped byte of the index is caught by its check */
	memcpy(idx, index, sizeof(idx));
	for (size_t i = 0; i < sizeof(idx); i++) {
		idx[i] ^= 0x40;
		assert_int_equal(stream_pages_index_init(&it, &f, idx, sizeof(idx), ram_check,
							 NULL), -EBADMSG);
		idx[i] ^= 0x40;
	}
	/* counts that do not add up to the frame's length, or over the limits */
	assert_int_equal(stream_pages_index_size(&f, 3, 1), -EBADMSG);
	assert_int_equal(stream_pages_index_size(&f, 1, 2), -EBADMSG);
	assert_int_equal(stream_pages_index_init(&it, &f, idx, sizeof(idx) - 1, ram_check, NULL),
			 -EBADMSG);
	f.length = STREAM_PAGES_HDR_INPLACE + (STREAM_PAGES_MAX_INPLACE + 1) * 8ull;
	assert_int_equal(stream_pages_index_size(&f, STREAM_PAGES_MAX_INPLACE + 1, 0), -EBADMSG);
	f.length = sizeof(idx) + 2 * STREAM_PAGE_SIZE;
	/* well-checked indexes that are still wrong: a page out of order, a
	 * zero page where a normal one was counted, a page outside guest RAM */
	idx[28 + 1] = 0x20;		/* third entry (at 28): 0x2000 again */
	f.payload_crc = stream_crc32c(0, idx, sizeof(idx));
	assert_int_equal(stream_pages_index_init(&it, &f, idx, sizeof(idx), ram_check, NULL),
			 -EBADMSG);
	memcpy(idx, index, sizeof(idx));
	idx[8 + 8] = 0x01;		/* second entry ZERO: its check is read as an entry */
	f.payload_crc = stream_crc32c(0, idx, sizeof(idx));
	assert_int_equal(stream_pages_index_init(&it, &f, idx, sizeof(idx), ram_check, NULL),
			 -EBADMSG);
	memcpy(idx, index, sizeof(idx));
	idx[28 + 2] = 0x10;		/* third entry: 1 MiB + 0x3000, past GUEST_RAM_END */
	f.payload_crc = stream_crc32c(0, idx, sizeof(idx));
	assert_int_equal(stream_pages_index_init(&it, &f, idx, sizeof(idx), ram_check, NULL),
			 -EFAULT);
	/* a reader of whole frames refuses it: its check covers the index only */
	{
		struct stream_reader r, pl;

		assert_int_equal(stream_buf_put_bytes(&b, page, STREAM_PAGE_SIZE), 0);
		assert_int_equal(stream_buf_put_bytes(&b, page2, STREAM_PAGE_SIZE), 0);
		stream_reader_init(&r, b.data, b.len);
		assert_int_equal(stream_frame_next(&r, &f, STREAM_MAX_PAYLOAD, &pl), -EBADMSG);
	}
	/* the flag belongs to PAGES only */
	stream_frame_header_encode(hdr, STREAM_DEVICE, STREAM_PAGES_INPLACE, 0, 0);
	assert_int_equal(stream_frame_parse_header(hdr, sizeof(hdr), &f, STREAM_MAX_PAYLOAD),
			 -EPROTO);
	stream_buf_free(&b);
}

/* --- zero pages --- */

static void test_zero_page(void **state)
{
	static const size_t offs[] = { 0, 1, 7, 63, 64, 100, 2047, 2048, 4032, 4094, 4095 };
	uint8_t *mem = aligned_alloc(4096, 2 * STREAM_PAGE_SIZE);

	assert_non_null(mem);
	memset(mem, 0, 2 * STREAM_PAGE_SIZE);
	for (size_t shift = 0; shift < 2; shift++) {	/* aligned, then misaligned by 1 */
		uint8_t *p = mem + shift;

		assert_true(stream_page_is_zero(p));
		assert_true(stream_page_is_zero_generic(p));
		for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
			for (unsigned v = 1; v < 256; v <<= 1) {
				p[offs[i]] = (uint8_t)v;
				assert_false(stream_page_is_zero(p));
				assert_false(stream_page_is_zero_generic(p));
				p[offs[i]] = 0;
			}
		}
		/* a byte just past the page does not count */
		p[STREAM_PAGE_SIZE] = 1;
		assert_true(stream_page_is_zero(p));
		assert_true(stream_page_is_zero_generic(p));
		p[STREAM_PAGE_SIZE] = 0;
	}
	free(mem);
}

static void test_buf_basics(void **state)
{
	struct stream_buf b;
	size_t frame;

	stream_buf_init(&b);
	assert_int_equal(stream_buf_put_u16(&b, 0x1234), 0);
	assert_int_equal(stream_buf_patch_u32(&b, 0, 1), -ERANGE);
	assert_int_equal(stream_frame_end(&b, 1), -EINVAL);
	for (int i = 0; i < 10000; i++)
		assert_int_equal(stream_buf_put_u64(&b, (uint64_t)i), 0);
	assert_int_equal(b.len, 2 + 80000);
	assert_int_equal(b.data[0], 0x34);
	assert_int_equal(b.data[1], 0x12);
	stream_buf_reset(&b);
	assert_int_equal(stream_frame_begin(&b, STREAM_DONE, 0, &frame), 0);
	assert_int_equal(stream_frame_end(&b, frame), 0);
	assert_int_equal(b.len, STREAM_FRAME_HDR_SIZE);
	stream_buf_free(&b);
	assert_null(b.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c_known),
		cmocka_unit_test(test_crc32c_hw_matches_sw),
		cmocka_unit_test(test_crc32c_hw_lanes),
		cmocka_unit_test(test_sum32),
		cmocka_unit_test(test_frame_sum),
		cmocka_unit_test(test_hello_bytes),
		cmocka_unit_test(test_pages_bytes),
		cmocka_unit_test(test_every_truncation),
		cmocka_unit_test(test_every_payload_truncation),
		cmocka_unit_test(test_every_flipped_byte),
		cmocka_unit_test(test_oversize_and_type),
		cmocka_unit_test(test_hello_reason_errors),
		cmocka_unit_test(test_get_string),
		cmocka_unit_test(test_pages_validation),
		cmocka_unit_test(test_pages_round_trip),
		cmocka_unit_test(test_pages_inplace),
		cmocka_unit_test(test_zero_page),
		cmocka_unit_test(test_buf_basics),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
