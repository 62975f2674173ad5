/*
 * Unit tests for the declarative state engine (src/migrate/vmstate.c): a sample
 * device with a nested struct, variable arrays and a subsection; expected bytes;
 * truncated, corrupted, wrong-version and invalid input leave the target untouched.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/stream.h"
#include "vmm/vmstate.h"

/* --- a sample device --- */

struct sample_timer {
	uint64_t deadline;
	uint32_t period;
};

struct sample_queue {
	uint16_t size;
	uint16_t last_avail;
	uint64_t desc_addr;
	bool ready;
};

struct sample_dev {
	uint32_t status;
	uint8_t isr;
	bool enabled;
	uint64_t features;
	uint8_t mac[6];
	uint32_t regs[4];
	struct sample_timer timer;
	uint16_t nq;
	struct sample_queue q[4];
	uint8_t nhist;
	uint16_t hist[8];
	uint32_t added_v2;
	/* subsection "sample/msix", sent when msix_vectors != 0 */
	uint16_t msix_vectors;
	uint64_t msix_table[4];
};

static int queue_post_load(void *opaque, uint32_t version_id)
{
	const struct sample_queue *q = opaque;

	if (q->size & (q->size - 1))
		return -EINVAL;		/* not a power of two */
	if (q->ready && q->size == 0)
		return -EINVAL;
	return 0;
}

static int sample_post_load(void *opaque, uint32_t version_id)
{
	const struct sample_dev *d = opaque;

	return d->isr > 3 ? -EINVAL : 0;
}

static bool msix_needed(const void *opaque)
{
	return ((const struct sample_dev *)opaque)->msix_vectors != 0;
}

static const struct vmstate_desc timer_vmstate = {
	.name = "sample_timer", .version_id = 1, .minimum_version_id = 1,
	.size = sizeof(struct sample_timer),
	.fields = (const struct vmstate_field[]){
		VMSTATE_U64(struct sample_timer, deadline),
		VMSTATE_U32(struct sample_timer, period),
		VMSTATE_END,
	},
};

static const struct vmstate_desc queue_vmstate = {
	.name = "sample_queue", .version_id = 1, .minimum_version_id = 1,
	.size = sizeof(struct sample_queue), .post_load = queue_post_load,
	.fields = (const struct vmstate_field[]){
		VMSTATE_U16(struct sample_queue, size),
		VMSTATE_U16(struct sample_queue, last_avail),
		VMSTATE_U64(struct sample_queue, desc_addr),
		VMSTATE_BOOL(struct sample_queue, ready),
		VMSTATE_END,
	},
};

static const struct vmstate_desc msix_vmstate = {
	.name = "sample/msix", .version_id = 1, .minimum_version_id = 1,
	.size = sizeof(struct sample_dev), .needed = msix_needed,
	.fields = (const struct vmstate_field[]){
		VMSTATE_U16(struct sample_dev, msix_vectors),
		VMSTATE_ARRAY(struct sample_dev, msix_table, uint64_t),
		VMSTATE_END,
	},
};

#define SAMPLE_FIELDS_V1						\
	VMSTATE_U32(struct sample_dev, status),				\
	VMSTATE_U8(struct sample_dev, isr),				\
	VMSTATE_BOOL(struct sample_dev, enabled),			\
	VMSTATE_U64(struct sample_dev, features),			\
	VMSTATE_BUFFER(struct sample_dev, mac),				\
	VMSTATE_ARRAY(struct sample_dev, regs, uint32_t),		\
	VMSTATE_STRUCT(struct sample_dev, timer, &timer_vmstate),	\
	VMSTATE_U16(struct sample_dev, nq),				\
	VMSTATE_VARRAY_OF_STRUCT(struct sample_dev, q, nq, &queue_vmstate), \
	VMSTATE_U8(struct sample_dev, nhist),				\
	VMSTATE_VARRAY(struct sample_dev, hist, uint16_t, nhist)

static const struct vmstate_desc sample_vmstate = {
	.name = "sample", .version_id = 2, .minimum_version_id = 1,
	.size = sizeof(struct sample_dev), .post_load = sample_post_load,
	.fields = (const struct vmstate_field[]){
		SAMPLE_FIELDS_V1,
		VMSTATE_U32_V(struct sample_dev, added_v2, 2),
		VMSTATE_END,
	},
	.subsections = (const struct vmstate_desc *const[]){ &msix_vmstate, NULL },
};

/* What an older build (version 1, no subsection) would send. */
static const struct vmstate_desc sample_v1_vmstate = {
	.name = "sample", .version_id = 1, .minimum_version_id = 1,
	.size = sizeof(struct sample_dev),
	.fields = (const struct vmstate_field[]){ SAMPLE_FIELDS_V1, VMSTATE_END },
};

/* A newer build that sends a subsection this one does not know. */
static const struct vmstate_desc bogus_vmstate = {
	.name = "sample/bogus", .version_id = 1, .minimum_version_id = 1,
	.size = sizeof(struct sample_dev),
	.fields = (const struct vmstate_field[]){
		VMSTATE_U32(struct sample_dev, added_v2),
		VMSTATE_END,
	},
};

static const struct vmstate_desc sample_newer_vmstate = {
	.name = "sample", .version_id = 2, .minimum_version_id = 1,
	.size = sizeof(struct sample_dev),
	.fields = (const struct vmstate_field[]){
		SAMPLE_FIELDS_V1,
		VMSTATE_U32_V(struct sample_dev, added_v2, 2),
		VMSTATE_END,
	},
	.subsections = (const struct vmstate_desc *const[]){
		&msix_vmstate, &bogus_vmstate, NULL
	},
};

static void sample_fill(struct sample_dev *d)
{
	memset(d, 0, sizeof(*d));
	d->status = 0x0f;
	d->isr = 1;
	d->enabled = true;
	d->features = 0x100000031ull;
	memcpy(d->mac, "\x52\x54\x00\x12\x34\x56", 6);
	for (int i = 0; i < 4; i++)
		d->regs[i] = 0x1000u * (uint32_t)i + 7;
	d->timer.deadline = 123456789012ull;
	d->timer.period = 1000;
	d->nq = 2;
	/* field by field, so padding stays zero for memcmp */
	d->q[0].size = 256;
	d->q[0].last_avail = 17;
	d->q[0].desc_addr = 0x10000;
	d->q[0].ready = true;
	d->q[1].size = 128;
	d->q[1].last_avail = 3;
	d->q[1].desc_addr = 0x20000;
	d->nhist = 3;
	d->hist[0] = 1;
	d->hist[1] = 2;
	d->hist[2] = 0xffff;
	d->added_v2 = 0xdeadbeef;
	d->msix_vectors = 3;
	for (int i = 0; i < 4; i++)
		d->msix_table[i] = 0xfee00000ull + (uint64_t)i;
}

/* A destination-side device as it is after reset, with recognisable values. */
static void sample_reset(struct sample_dev *d)
{
	memset(d, 0, sizeof(*d));
	d->added_v2 = 42;
	d->msix_vectors = 0;
	d->msix_table[0] = 7;
}

static void save_ok(const struct vmstate_desc *desc, const void *s, struct stream_buf *b)
{
	stream_buf_init(b);
	assert_int_equal(vmstate_save(desc, s, b), 0);
}

/* Loads b into a reset device and checks the result and that failures change nothing. */
static int load_into_reset(const uint8_t *p, size_t len, struct sample_dev *out)
{
	struct sample_dev snap;
	struct stream_reader r;
	int ret;

	sample_reset(out);
	snap = *out;
	stream_reader_init(&r, p, len);
	ret = vmstate_load(&sample_vmstate, out, &r, sample_vmstate.version_id);
	if (ret) {
		assert_memory_equal(out, &snap, sizeof(snap));
		assert_int_equal(r.pos, 0);
	} else {
		assert_int_equal(r.pos, len);
	}
	return ret;
}

/* --- tests --- */

static void test_round_trip(void **state)
{
	struct sample_dev src, dst;
	struct stream_buf b;

	sample_fill(&src);
	save_ok(&sample_vmstate, &src, &b);
	assert_int_equal(load_into_reset(b.data, b.len, &dst), 0);
	assert_memory_equal(&src, &dst, sizeof(src));
	stream_buf_free(&b);

	/* subsection not needed: not sent, and its fields keep the reset values */
	src.msix_vectors = 0;
	save_ok(&sample_vmstate, &src, &b);
	assert_int_equal(load_into_reset(b.data, b.len, &dst), 0);
	assert_int_equal(dst.msix_table[0], 7);
	assert_int_equal(dst.added_v2, 0xdeadbeef);
	assert_int_equal(dst.nq, 2);
	assert_int_equal(dst.q[1].desc_addr, 0x20000);
	stream_buf_free(&b);
}

struct tiny_inner {
	uint16_t x;
};

struct tiny {
	uint8_t a;
	uint16_t b;
	uint32_t c;
	bool d;
	uint64_t e;
	uint8_t mac[3];
	uint16_t arr[2];
	uint8_t n;
	struct tiny_inner in[3];
	uint32_t extra;
};

static bool tiny_extra_needed(const void *opaque)
{
	return ((const struct tiny *)opaque)->extra != 0;
}

static const struct vmstate_desc tiny_inner_vmstate = {
	.name = "tiny_inner", .version_id = 1, .minimum_version_id = 1,
	.size = sizeof(struct tiny_inner),
	.fields = (const struct vmstate_field[]){
		VMSTATE_U16(struct tiny_inner, x),
		VMSTATE_END,
	},
};

static const struct vmstate_desc tiny_extra_vmstate = {
	.name = "tiny/extra", .version_id = 1, .minimum_version_id = 1,
	.needed = tiny_extra_needed,
	.fields = (const struct vmstate_field[]){
		VMSTATE_U32(struct tiny, extra),
		VMSTATE_END,
	},
};

static const struct vmstate_desc tiny_vmstate = {
	.name = "tiny", .version_id = 1, .minimum_version_id = 1,
	.size = sizeof(struct tiny),
	.fields = (const struct vmstate_field[]){
		VMSTATE_U8(struct tiny, a),
		VMSTATE_U16(struct tiny, b),
		VMSTATE_U32(struct tiny, c),
		VMSTATE_BOOL(struct tiny, d),
		VMSTATE_U64(struct tiny, e),
		VMSTATE_BUFFER(struct tiny, mac),
		VMSTATE_ARRAY(struct tiny, arr, uint16_t),
		VMSTATE_U8(struct tiny, n),
		VMSTATE_VARRAY_OF_STRUCT(struct tiny, in, n, &tiny_inner_vmstate),
		VMSTATE_END,
	},
	.subsections = (const struct vmstate_desc *const[]){ &tiny_extra_vmstate, NULL },
};

static const uint8_t tiny_expected[] = {
	0x04, 0x00, 0x00, 0x00, 't', 'i', 'n', 'y',	/* section name "tiny" */
	0x01, 0x00, 0x00, 0x00,				/* version 1 */
	0x3f, 0x00, 0x00, 0x00,				/* body length 63 */
	0x11,						/* a */
	0x33, 0x22,					/* b */
	0x77, 0x66, 0x55, 0x44,				/* c */
	0x01,						/* d = true */
	0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,	/* e */
	0xaa, 0xbb, 0xcc,				/* mac, raw */
	0x02, 0x01, 0x04, 0x03,				/* arr[0], arr[1] */
	0x02,						/* n = 2 */
	0x01, 0x00, 0x00, 0x00,				/* in: tiny_inner version 1 */
	0x66, 0x55, 0x00,				/* in[0].x, end of body */
	0x88, 0x77, 0x00,				/* in[1].x, end of body */
	0x01,						/* subsection follows */
	0x0a, 0x00, 0x00, 0x00,				/* name "tiny/extra" */
	't', 'i', 'n', 'y', '/', 'e', 'x', 't', 'r', 'a',
	0x01, 0x00, 0x00, 0x00,				/* version 1 */
	0x05, 0x00, 0x00, 0x00,				/* body length 5 */
	0xcc, 0xbb, 0xaa, 0x99,				/* extra */
	0x00,						/* end of subsection body */
	0x00,						/* end of body */
};

static void tiny_fill(struct tiny *t)
{
	memset(t, 0, sizeof(*t));
	*t = (struct tiny){ .a = 0x11, .b = 0x2233, .c = 0x44556677, .d = true,
			    .e = 0x0102030405060708ull, .mac = { 0xaa, 0xbb, 0xcc },
			    .arr = { 0x0102, 0x0304 }, .n = 2,
			    .in = { { 0x5566 }, { 0x7788 }, { 0x99 } }, .extra = 0x99aabbcc };
}

static void test_expected_bytes(void **state)
{
	struct tiny t, back;
	struct stream_buf b;
	struct stream_reader r;
	char name[VMSTATE_NAME_MAX + 1];
	uint32_t version;

	tiny_fill(&t);
	save_ok(&tiny_vmstate, &t, &b);
	assert_int_equal(b.len, sizeof(tiny_expected));
	assert_memory_equal(b.data, tiny_expected, sizeof(tiny_expected));

	stream_reader_init(&r, b.data, b.len);
	assert_int_equal(vmstate_peek(&r, name, sizeof(name), &version), 0);
	assert_string_equal(name, "tiny");
	assert_int_equal(version, 1);
	memset(&back, 0, sizeof(back));
	assert_int_equal(vmstate_load(&tiny_vmstate, &back, &r, 1), 0);
	assert_int_equal(stream_reader_remaining(&r), 0);
	assert_int_equal(back.in[1].x, 0x7788);
	assert_int_equal(back.in[2].x, 0);	/* beyond n: not sent */
	assert_int_equal(back.extra, 0x99aabbcc);
	assert_true(back.d);
	stream_buf_free(&b);
}

static void test_every_truncation(void **state)
{
	struct sample_dev src, dst;
	struct stream_buf b, inner;
	size_t hdr = 4 + strlen("sample") + 4;	/* name + version; body length next */

	sample_fill(&src);
	save_ok(&sample_vmstate, &src, &b);
	/* cut the byte stream anywhere */
	for (size_t len = 0; len < b.len; len++) {
		uint8_t *cut = malloc(len ? len : 1);

		assert_non_null(cut);
		memcpy(cut, b.data, len);
		assert_int_equal(load_into_reset(cut, len, &dst), -EBADMSG);
		free(cut);
	}
	/* cut the body anywhere but keep the section length consistent */
	for (size_t blen = 0; blen < b.len - hdr - 4; blen++) {
		stream_buf_init(&inner);
		stream_buf_put_bytes(&inner, b.data, hdr);
		stream_buf_put_u32(&inner, (uint32_t)blen);
		stream_buf_put_bytes(&inner, b.data + hdr + 4, blen);
		assert_int_equal(stream_buf_error(&inner), 0);
		assert_int_equal(load_into_reset(inner.data, inner.len, &dst), -EBADMSG);
		stream_buf_free(&inner);
	}
	stream_buf_free(&b);
}

static void test_versions(void **state)
{
	struct sample_dev src, dst;
	struct stream_buf b;
	struct stream_reader r;
	size_t ver_off = 4 + strlen("sample");

	sample_fill(&src);
	/* an older sender's version 1: accepted, v2 field keeps its reset value */
	save_ok(&sample_v1_vmstate, &src, &b);
	assert_int_equal(load_into_reset(b.data, b.len, &dst), 0);
	assert_int_equal(dst.added_v2, 42);
	assert_int_equal(dst.timer.period, 1000);
	stream_buf_free(&b);

	save_ok(&sample_vmstate, &src, &b);
	/* the caller may refuse newer sections */
	stream_reader_init(&r, b.data, b.len);
	assert_int_equal(vmstate_load(&sample_vmstate, &dst, &r, 1), -EPROTONOSUPPORT);
	assert_int_equal(vmstate_load(&sample_vmstate, &dst, &r, 3), -EINVAL);
	/* versions above ours and below the minimum */
	b.data[ver_off] = 3;
	assert_int_equal(load_into_reset(b.data, b.len, &dst), -EPROTONOSUPPORT);
	b.data[ver_off] = 0;
	assert_int_equal(load_into_reset(b.data, b.len, &dst), -EPROTONOSUPPORT);
	b.data[ver_off] = 2;
	/* nested struct version: timer's u32 version follows the fixed fields */
	size_t timer_ver = ver_off + 4 + 4 + 4 + 1 + 1 + 8 + 6 + 16;
	assert_int_equal(b.data[timer_ver], 1);
	b.data[timer_ver] = 2;
	assert_int_equal(load_into_reset(b.data, b.len, &dst), -EPROTONOSUPPORT);
	b.data[timer_ver] = 1;
	assert_int_equal(load_into_reset(b.data, b.len, &dst), 0);
	/* wrong section name */
	b.data[4] = 'S';
	assert_int_equal(load_into_reset(b.data, b.len, &dst), -ENOENT);
	stream_buf_free(&b);
}

static void test_post_load_rejects(void **state)
{
	struct sample_dev src, dst;
	struct stream_buf b;

	sample_fill(&src);
	src.q[1].size = 100;		/* not a power of two */
	save_ok(&sample_vmstate, &src, &b);
	assert_int_equal(load_into_reset(b.data, b.len, &dst), -EINVAL);
	assert_non_null(strstr(vmstate_last_error(), "sample_queue"));
	stream_buf_free(&b);

	sample_fill(&src);
	src.isr = 9;			/* device-level check */
	save_ok(&sample_vmstate, &src, &b);
	assert_int_equal(load_into_reset(b.data, b.len, &dst), -EINVAL);
	stream_buf_free(&b);
}

static void test_unknown_and_repeated_subsection(void **state)
{
	struct sample_dev src, dst;
	struct stream_buf b, twice;
	size_t end;

	sample_fill(&src);
	save_ok(&sample_newer_vmstate, &src, &b);
	assert_int_equal(load_into_reset(b.data, b.len, &dst), -ENOENT);
	assert_non_null(strstr(vmstate_last_error(), "sample/bogus"));
	stream_buf_free(&b);

	/* the msix subsection twice: splice a copy in before the final end mark */
	save_ok(&sample_vmstate, &src, &b);
	end = b.len - 1;
	stream_buf_init(&twice);
	stream_buf_put_bytes(&twice, b.data, end);
	stream_buf_put_u8(&twice, 1);
	assert_int_equal(vmstate_save(&msix_vmstate, &src, &twice), 0);
	stream_buf_put_u8(&twice, 0);
	assert_int_equal(stream_buf_patch_u32(&twice, 4 + strlen("sample") + 4,
					      (uint32_t)(twice.len - 18)), 0);
	assert_int_equal(load_into_reset(twice.data, twice.len, &dst), -EBADMSG);
	stream_buf_free(&twice);
	stream_buf_free(&b);
}

/* A small struct for count checks: u8 n, u32 v[4], u16 m, tiny_inner q[2]. */
struct counted {
	uint8_t n;
	uint32_t v[4];
	uint16_t m;
	struct tiny_inner q[2];
};

static const struct vmstate_desc counted_vmstate = {
	.name = "cnt", .version_id = 1, .minimum_version_id = 1,
	.size = sizeof(struct counted),
	.fields = (const struct vmstate_field[]){
		VMSTATE_U8(struct counted, n),
		VMSTATE_VARRAY(struct counted, v, uint32_t, n),
		VMSTATE_U16(struct counted, m),
		VMSTATE_VARRAY_OF_STRUCT(struct counted, q, m, &tiny_inner_vmstate),
		VMSTATE_END,
	},
};

static void test_count_over_max(void **state)
{
	struct counted c, dst, snap;
	struct stream_buf b;
	struct stream_reader r;
	const size_t n_off = 4 + 3 + 4 + 4;	/* after "cnt", version, length */
	const size_t m_off = n_off + 1 + 16;

	memset(&c, 0, sizeof(c));	/* padding too: compared with memcmp */
	c.n = 4;
	for (int i = 0; i < 4; i++)
		c.v[i] = (uint32_t)i + 1;
	c.m = 2;
	c.q[0].x = 5;
	c.q[1].x = 6;
	save_ok(&counted_vmstate, &c, &b);
	memset(&dst, 0, sizeof(dst));
	snap = dst;
	b.data[n_off] = 5;
	stream_reader_init(&r, b.data, b.len);
	assert_int_equal(vmstate_load(&counted_vmstate, &dst, &r, 1), -ERANGE);
	assert_memory_equal(&dst, &snap, sizeof(dst));
	b.data[n_off] = 4;
	b.data[m_off] = 3;
	assert_int_equal(vmstate_load(&counted_vmstate, &dst, &r, 1), -ERANGE);
	b.data[m_off + 1] = 0x80;	/* m = 0x8003 */
	assert_int_equal(vmstate_load(&counted_vmstate, &dst, &r, 1), -ERANGE);
	assert_memory_equal(&dst, &snap, sizeof(dst));
	b.data[m_off] = 2;
	b.data[m_off + 1] = 0;
	assert_int_equal(vmstate_load(&counted_vmstate, &dst, &r, 1), 0);
	assert_memory_equal(&dst, &c, sizeof(dst));
	stream_buf_free(&b);

	/* saving more than the max is a host bug: refused, buffer untouched */
	c.n = 5;
	stream_buf_init(&b);
	stream_buf_put_u8(&b, 0xee);
	assert_int_equal(vmstate_save(&counted_vmstate, &c, &b), -EINVAL);
	assert_int_equal(b.len, 1);
	assert_int_equal(stream_buf_error(&b), 0);
	stream_buf_free(&b);
}

static void test_malformed_body(void **state)
{
	struct sample_dev src, dst;
	struct stream_buf b, t;
	size_t hdr = 4 + strlen("sample") + 4;
	size_t enabled_off = hdr + 4 + 4 + 1;

	sample_fill(&src);
	save_ok(&sample_vmstate, &src, &b);
	/* bool that is neither 0 nor 1 */
	b.data[enabled_off] = 2;
	assert_int_equal(load_into_reset(b.data, b.len, &dst), -EBADMSG);
	b.data[enabled_off] = 1;
	/* a bad mark where the subsection list goes */
	b.data[b.len - 1] = 7;
	assert_int_equal(load_into_reset(b.data, b.len, &dst), -EBADMSG);
	b.data[b.len - 1] = 0;
	/* a trailing byte inside the section */
	stream_buf_init(&t);
	stream_buf_put_bytes(&t, b.data, b.len);
	stream_buf_put_u8(&t, 0);
	assert_int_equal(stream_buf_patch_u32(&t, hdr, (uint32_t)(b.len - hdr - 4 + 1)), 0);
	assert_int_equal(load_into_reset(t.data, t.len, &dst), -EBADMSG);
	stream_buf_free(&t);
	stream_buf_free(&b);
}

static void test_flipped_bytes(void **state)
{
	struct sample_dev src, dst;
	struct stream_buf b;
	int ok = 0, bad = 0;

	sample_fill(&src);
	save_ok(&sample_vmstate, &src, &b);
	for (size_t i = 0; i < b.len; i++) {
		for (unsigned x = 1; x < 256; x <<= 1) {
			b.data[i] ^= (uint8_t)x;
			if (load_into_reset(b.data, b.len, &dst))
				bad++;	/* load_into_reset checked dst is untouched */
			else
				ok++;	/* a plausible value: the frame crc catches these */
			b.data[i] ^= (uint8_t)x;
		}
	}
	assert_true(bad > 0 && ok > 0);
	stream_buf_free(&b);
}

static int refuse_save(const void *opaque)
{
	return -EBUSY;
}

static void test_pre_save_and_bad_desc(void **state)
{
	struct sample_dev src;
	struct stream_buf b;
	struct vmstate_desc d = sample_vmstate;
	const struct vmstate_field bad_order[] = {
		VMSTATE_VARRAY(struct sample_dev, hist, uint16_t, nhist),
		VMSTATE_U8(struct sample_dev, nhist),
		VMSTATE_END,
	};
	const struct vmstate_field bad_extent[] = {
		{ .name = "x", .offset = sizeof(struct sample_dev) - 2, .size = 4,
		  .type = VMSTATE_T_U32 },
		VMSTATE_END,
	};

	sample_fill(&src);
	d.pre_save = refuse_save;
	stream_buf_init(&b);
	assert_int_equal(vmstate_save(&d, &src, &b), -EBUSY);
	assert_int_equal(b.len, 0);
	assert_int_equal(vmstate_desc_check(&sample_vmstate), 0);
	assert_int_equal(vmstate_desc_check(&tiny_vmstate), 0);
	d = sample_vmstate;
	d.fields = bad_order;
	assert_int_equal(vmstate_desc_check(&d), -EINVAL);
	assert_int_equal(vmstate_save(&d, &src, &b), -EINVAL);
	d.fields = bad_extent;
	assert_int_equal(vmstate_desc_check(&d), -EINVAL);
	d = sample_vmstate;
	d.minimum_version_id = 3;
	assert_int_equal(vmstate_desc_check(&d), -EINVAL);
	stream_buf_free(&b);
}

static void test_sections_back_to_back(void **state)
{
	struct sample_dev a, a2;
	struct tiny t, t2;
	struct stream_buf b;
	struct stream_reader r;

	sample_fill(&a);
	tiny_fill(&t);
	save_ok(&sample_vmstate, &a, &b);
	assert_int_equal(vmstate_save(&tiny_vmstate, &t, &b), 0);
	stream_reader_init(&r, b.data, b.len);
	sample_reset(&a2);
	memset(&t2, 0, sizeof(t2));
	/* wrong order: the first section is not "tiny", nothing consumed */
	assert_int_equal(vmstate_load(&tiny_vmstate, &t2, &r, 1), -ENOENT);
	assert_int_equal(r.pos, 0);
	assert_int_equal(vmstate_load(&sample_vmstate, &a2, &r, 2), 0);
	assert_int_equal(vmstate_load(&tiny_vmstate, &t2, &r, 1), 0);
	assert_int_equal(stream_reader_remaining(&r), 0);
	assert_memory_equal(&a, &a2, sizeof(a));
	assert_int_equal(t2.e, t.e);
	stream_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_expected_bytes),
		cmocka_unit_test(test_every_truncation),
		cmocka_unit_test(test_versions),
		cmocka_unit_test(test_post_load_rejects),
		cmocka_unit_test(test_unknown_and_repeated_subsection),
		cmocka_unit_test(test_count_over_max),
		cmocka_unit_test(test_malformed_body),
		cmocka_unit_test(test_flipped_bytes),
		cmocka_unit_test(test_pre_save_and_bad_desc),
		cmocka_unit_test(test_sections_back_to_back),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
