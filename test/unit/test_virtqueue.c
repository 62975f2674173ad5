/* Unit tests for split virtqueues (src/devices/virtqueue.c) on fake guest
 * memory: well-formed chains, every malformed case a hostile guest can build
 * (bad avail index, head out of range, loops, over-long chains, buffers
 * outside RAM or wrapping, readable-after-writable, indirect), used ring and
 * event-idx notification, and the queue state's save/load validation. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "vmm/mem.h"
#include "vmm/stream.h"
#include "vmm/virtqueue.h"
#include "vmm/vmstate.h"

#define QSZ 8
#define DESC 0x1000ULL
#define AVAIL 0x2000ULL
#define USED 0x3000ULL
#define MEM (1ULL << 20)

struct fx {
	struct guest_mem mem;
	struct virtq_state st;
	struct virtq vq;
	struct iovec iov[QSZ];
	struct virtq_elem e;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_int_equal(mem_init(&f->mem, MEM), 0);
	f->st = (struct virtq_state){ .size = QSZ, .enabled = 1, .desc = DESC, .avail = AVAIL,
				      .used = USED, .msix_vector = VIRTIO_NO_VECTOR };
	virtq_init(&f->vq, &f->st, &f->mem);
	assert_int_equal(virtq_start(&f->vq, QSZ), 0);
	f->e.iov = f->iov;
	f->e.iov_cap = QSZ;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	mem_destroy(&f->mem);
	free(f);
	return 0;
}

static void desc(struct fx *f, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		 uint16_t next)
{
	struct virtq_desc d = { addr, len, flags, next };

	assert_int_equal(mem_write(&f->mem, DESC + 16ULL * i, &d, sizeof(d)), 0);
}

static void avail_set(struct fx *f, uint16_t slot, uint16_t head, uint16_t idx)
{
	assert_int_equal(mem_write(&f->mem, AVAIL + 4 + 2ULL * slot, &head, 2), 0);
	assert_int_equal(mem_write(&f->mem, AVAIL + 2, &idx, 2), 0);
}

static void test_good_chain(void **state)
{
	struct fx *f = *state;
	uint32_t id, len;
	uint16_t used_idx;

	assert_int_equal(virtq_pop(&f->vq, &f->e), 0);          /* empty */
	desc(f, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, 1);
	desc(f, 1, 0x20000, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	desc(f, 2, 0x30000, 1, VIRTQ_DESC_F_WRITE, 0);
	avail_set(f, 0, 0, 1);
	assert_int_equal(virtq_pop(&f->vq, &f->e), 1);
	assert_int_equal(f->e.head, 0);
	assert_int_equal(f->e.nr_out, 1);
	assert_int_equal(f->e.nr_in, 2);
	assert_int_equal(f->e.out_len, 16);
	assert_int_equal(f->e.in_len, 513);
	assert_ptr_equal(f->iov[0].iov_base, mem_gpa_ptr(&f->mem, 0x10000, 16));
	assert_int_equal(virtq_pop(&f->vq, &f->e), 0);
	assert_int_equal(virtq_elem_write(&f->e, 510, "abc", 3), 3);
	assert_memory_equal(mem_gpa_ptr(&f->mem, 0x30000, 1), "c", 1);
	virtq_push(&f->vq, 0, 513);
	assert_int_equal(mem_read(&f->mem, USED + 2, &used_idx, 2), 0);
	assert_int_equal(used_idx, 1);
	assert_int_equal(mem_read(&f->mem, USED + 4, &id, 4), 0);
	assert_int_equal(mem_read(&f->mem, USED + 8, &len, 4), 0);
	assert_int_equal(id, 0);
	assert_int_equal(len, 513);
	assert_false(f->vq.broken);
}

static void test_zero_len_skipped(void **state)
{
	struct fx *f = *state;

	desc(f, 3, 0xdeadbeef000ULL, 0, VIRTQ_DESC_F_NEXT, 4);   /* empty: ignored */
	desc(f, 4, 0x10000, 8, 0, 0);
	avail_set(f, 0, 3, 1);
	assert_int_equal(virtq_pop(&f->vq, &f->e), 1);
	assert_int_equal(f->e.nr_out, 1);
	assert_int_equal(f->e.out_len, 8);
}

static void expect_broken(struct fx *f)
{
	assert_int_equal(virtq_pop(&f->vq, &f->e), -EIO);
	assert_true(f->vq.broken);
	assert_int_equal(virtq_pop(&f->vq, &f->e), -EIO);    /* stays broken */
	assert_int_equal(virtq_pending(&f->vq), 0);
}

static void test_bad_avail_idx(void **state)
{
	struct fx *f = *state;

	desc(f, 0, 0x10000, 8, 0, 0);
	avail_set(f, 0, 0, QSZ + 1);                /* more entries than the ring holds */
	expect_broken(f);
}

static void test_head_out_of_range(void **state)
{
	struct fx *f = *state;

	avail_set(f, 0, QSZ, 1);
	expect_broken(f);
}

static void test_next_out_of_range(void **state)
{
	struct fx *f = *state;

	desc(f, 0, 0x10000, 8, VIRTQ_DESC_F_NEXT, 0xffff);
	avail_set(f, 0, 0, 1);
	expect_broken(f);
}

static void test_loop(void **state)
{
	struct fx *f = *state;

	desc(f, 0, 0x10000, 8, VIRTQ_DESC_F_NEXT, 1);
	desc(f, 1, 0x10000, 8, VIRTQ_DESC_F_NEXT, 0);
	avail_set(f, 0, 0, 1);
	expect_broken(f);
}

static void test_self_loop(void **state)
{
	struct fx *f = *state;

	desc(f, 2, 0x10000, 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	avail_set(f, 0, 2, 1);
	expect_broken(f);
}

static void test_outside_ram(void **state)
{
	struct fx *f = *state;

	desc(f, 0, MEM - 4, 8, 0, 0);               /* straddles the end of RAM */
	avail_set(f, 0, 0, 1);
	expect_broken(f);
}

static void test_len_wraps(void **state)
{
	struct fx *f = *state;

	desc(f, 0, 0xfffffffffffff000ULL, 0x2000, 0, 0);   /* addr + len wraps */
	avail_set(f, 0, 0, 1);
	expect_broken(f);
}

static void test_huge_len(void **state)
{
	struct fx *f = *state;

	desc(f, 0, 0x1000, 0xffffffffu, VIRTQ_DESC_F_WRITE, 0);
	avail_set(f, 0, 0, 1);
	expect_broken(f);
}

static void test_read_after_write(void **state)
{
	struct fx *f = *state;

	desc(f, 0, 0x10000, 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	desc(f, 1, 0x20000, 8, 0, 0);
	avail_set(f, 0, 0, 1);
	expect_broken(f);
}

static void test_indirect_refused(void **state)
{
	struct fx *f = *state;

	desc(f, 0, 0x10000, 64, VIRTQ_DESC_F_INDIRECT, 0);
	avail_set(f, 0, 0, 1);
	expect_broken(f);
}

static void test_chain_longer_than_iov(void **state)
{
	struct fx *f = *state;

	for (uint16_t i = 0; i < QSZ; i++)
		desc(f, i, 0x10000 + 0x100ULL * i, 8, i + 1 < QSZ ? VIRTQ_DESC_F_NEXT : 0,
		     (uint16_t)(i + 1));
	avail_set(f, 0, 0, 1);
	f->e.iov_cap = 4;
	expect_broken(f);
}

static void test_full_length_chain_ok(void **state)
{
	struct fx *f = *state;

	for (uint16_t i = 0; i < QSZ; i++)
		desc(f, i, 0x10000 + 0x100ULL * i, 8, i + 1 < QSZ ? VIRTQ_DESC_F_NEXT : 0,
		     (uint16_t)(i + 1));
	avail_set(f, 0, 0, 1);
	assert_int_equal(virtq_pop(&f->vq, &f->e), 1);
	assert_int_equal(f->e.nr_out, QSZ);
}

static void test_start_checks(void **state)
{
	struct fx *f = *state;
	struct virtq_state good = f->st;

	f->st.size = 6;                       /* not a power of two */
	assert_int_equal(virtq_start(&f->vq, QSZ), -EINVAL);
	f->st = good;
	f->st.size = 16;                      /* over the device's maximum */
	assert_int_equal(virtq_start(&f->vq, QSZ), -EINVAL);
	f->st = good;
	f->st.desc = DESC + 8;                /* misaligned */
	assert_int_equal(virtq_start(&f->vq, QSZ), -EINVAL);
	f->st = good;
	f->st.used = MEM - 8;                 /* used ring runs out of RAM */
	assert_int_equal(virtq_start(&f->vq, QSZ), -EINVAL);
	assert_false(f->vq.ready);
	assert_int_equal(virtq_pop(&f->vq, &f->e), 0);  /* not ready: nothing */
	f->st = good;
	f->st.avail = 0xfffffffffffffff0ULL;
	assert_int_equal(virtq_start(&f->vq, QSZ), -EINVAL);
	f->st = good;
	f->st.size = 0;
	assert_int_equal(virtq_start(&f->vq, QSZ), -EINVAL);
	f->st = good;
	assert_int_equal(virtq_start(&f->vq, QSZ), 0);
}

static void test_event_idx(void **state)
{
	struct fx *f = *state;
	uint16_t used_event, avail_event, flags = VIRTQ_AVAIL_F_NO_INTERRUPT;

	/* Without event idx: NO_INTERRUPT suppresses. */
	virtq_push(&f->vq, 0, 0);
	assert_true(virtq_should_notify(&f->vq));
	assert_int_equal(mem_write(&f->mem, AVAIL, &flags, 2), 0);
	virtq_push(&f->vq, 0, 0);
	assert_false(virtq_should_notify(&f->vq));
	/* With event idx: notify only when used passes used_event. */
	f->vq.event_idx = true;
	f->st.signalled_used_valid = false;
	used_event = 4;
	assert_int_equal(mem_write(&f->mem, AVAIL + 4 + 2 * QSZ, &used_event, 2), 0);
	virtq_push(&f->vq, 0, 0);                      /* used_idx 3 */
	assert_true(virtq_should_notify(&f->vq));      /* first time: always */
	virtq_push(&f->vq, 0, 0);                      /* 4: event 4 not yet passed */
	assert_false(virtq_should_notify(&f->vq));
	virtq_push(&f->vq, 0, 0);                      /* 5: passes 4 */
	assert_true(virtq_should_notify(&f->vq));
	virtq_push(&f->vq, 0, 0);
	assert_false(virtq_should_notify(&f->vq));
	/* enable_notify publishes avail_event = last_avail_idx. */
	f->st.last_avail_idx = 7;
	avail_set(f, 0, 0, 7);
	assert_false(virtq_enable_notify(&f->vq));
	assert_int_equal(mem_read(&f->mem, USED + 4 + 8 * QSZ, &avail_event, 2), 0);
	assert_int_equal(avail_event, 7);
	avail_set(f, 7, 0, 8);
	assert_true(virtq_enable_notify(&f->vq));
}

static void test_unpop(void **state)
{
	struct fx *f = *state;

	desc(f, 0, 0x10000, 8, 0, 0);
	avail_set(f, 0, 0, 1);
	assert_int_equal(virtq_pop(&f->vq, &f->e), 1);
	virtq_unpop(&f->vq, 1);
	assert_int_equal(virtq_pending(&f->vq), 1);
	assert_int_equal(virtq_pop(&f->vq, &f->e), 1);
}

static void test_state_roundtrip(void **state)
{
	struct virtq_state a = { .size = 256, .enabled = 1, .msix_vector = 1, .desc = 0x1000,
				 .avail = 0x2000, .used = 0x3000, .last_avail_idx = 700,
				 .used_idx = 690, .signalled_used = 688,
				 .signalled_used_valid = true };
	struct virtq_state b = { 0 }, bad;
	struct stream_buf buf;
	struct stream_reader r;

	stream_buf_init(&buf);
	assert_int_equal(vmstate_save(&virtq_vmstate, &a, &buf), 0);
	stream_reader_init(&r, buf.data, buf.len);
	assert_int_equal(vmstate_load(&virtq_vmstate, &b, &r, 1), 0);
	assert_memory_equal(&a, &b, sizeof(a));
	/* Each invalid state is refused and leaves the target untouched. */
	struct virtq_state cases[] = { a, a, a, a, a };
	cases[0].size = 100;                              /* not a power of two */
	cases[1].enabled = 2;
	cases[2].desc = 0x1008;                           /* misaligned */
	cases[3].last_avail_idx = (uint16_t)(a.used_idx + 257);  /* more in flight than slots */
	cases[4].size = 2048;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		stream_buf_reset(&buf);
		assert_int_equal(vmstate_save(&virtq_vmstate, &cases[i], &buf), 0);
		stream_reader_init(&r, buf.data, buf.len);
		bad = b;
		assert_int_equal(vmstate_load(&virtq_vmstate, &b, &r, 1), -EINVAL);
		assert_memory_equal(&bad, &b, sizeof(b));
	}
	/* Truncated input fails cleanly at every length. */
	stream_buf_reset(&buf);
	assert_int_equal(vmstate_save(&virtq_vmstate, &a, &buf), 0);
	for (size_t n = 0; n < buf.len; n++) {
		stream_reader_init(&r, buf.data, n);
		assert_int_not_equal(vmstate_load(&virtq_vmstate, &b, &r, 1), 0);
	}
	stream_buf_free(&buf);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_good_chain), T(test_zero_len_skipped), T(test_bad_avail_idx),
		T(test_head_out_of_range), T(test_next_out_of_range), T(test_loop),
		T(test_self_loop), T(test_outside_ram), T(test_len_wraps), T(test_huge_len),
		T(test_read_after_write), T(test_indirect_refused),
		T(test_chain_longer_than_iov), T(test_full_length_chain_ok),
		T(test_start_checks), T(test_event_idx), T(test_unpop),
		cmocka_unit_test(test_state_roundtrip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
