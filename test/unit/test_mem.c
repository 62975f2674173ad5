/*
 * Unit tests for guest RAM (src/vmm/mem.c): the 2 MiB-aligned mapping, the region split
 * at the 32-bit PCI hole, and mem_gpa_ptr's range and overflow checks at
 * every edge (last byte, one past, len 0, wrap-around, the hole itself).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/mem.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

static void test_init_small(void **state)
{
	struct guest_mem m;

	assert_int_equal(mem_init(&m, 64 * MiB), 0);
	assert_non_null(m.base);
	assert_int_equal(m.size, 64 * MiB);
	assert_int_equal(m.nr_regions, 1);
	assert_int_equal(m.regions[0].gpa, 0);
	assert_int_equal(m.regions[0].size, 64 * MiB);
	assert_int_equal(m.regions[0].offset, 0);
	assert_ptr_equal(m.regions[0].host, m.base);
	assert_int_equal(mem_low_end(&m), 64 * MiB);
	/* RAM starts zeroed */
	assert_int_equal(m.base[0], 0);
	assert_int_equal(m.base[64 * MiB - 1], 0);
	mem_destroy(&m);
	assert_null(m.base);
	assert_int_equal(m.nr_regions, 0);
	mem_destroy(&m);   /* twice is harmless */
}

static void test_init_invalid(void **state)
{
	struct guest_mem m;

	memset(&m, 0x5A, sizeof(m));
	assert_int_equal(mem_init(&m, 0), -EINVAL);
	assert_null(m.base);
	assert_int_equal(mem_init(&m, PAGE_SIZE + 1), -EINVAL);
	assert_int_equal(mem_init(&m, 64 * MiB - 512), -EINVAL);
	mem_destroy(&m);   /* safe on a failed struct */
	assert_int_equal(mem_init(&m, PAGE_SIZE), 0);
	assert_int_equal(m.nr_regions, 1);
	mem_destroy(&m);
}

/* RAM starts on a 2 MiB boundary whatever its size, so the host and KVM
 * can map it with huge pages (guest and host addresses congruent mod 2 MiB),
 * and all of it is usable. */
static void test_aligned(void **state)
{
	const uint64_t sizes[] = { PAGE_SIZE, 2 * MiB + PAGE_SIZE, 64 * MiB - PAGE_SIZE, 66 * MiB };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct guest_mem m;

		assert_int_equal(mem_init(&m, sizes[i]), 0);
		assert_int_equal((uintptr_t)m.base % (2 * MiB), 0);
		m.base[0] = 1;
		m.base[sizes[i] - 1] = 2;
		assert_int_equal(*(uint8_t *)mem_gpa_ptr(&m, sizes[i] - 1, 1), 2);
		mem_destroy(&m);
	}
}

static void test_exactly_hole(void **state)
{
	struct guest_mem m;

	assert_int_equal(mem_init(&m, MEM_HOLE_START), 0);
	assert_int_equal(m.nr_regions, 1);
	assert_int_equal(mem_low_end(&m), MEM_HOLE_START);
	assert_non_null(mem_gpa_ptr(&m, MEM_HOLE_START - 1, 1));
	assert_null(mem_gpa_ptr(&m, MEM_HOLE_START, 1));
	assert_null(mem_gpa_ptr(&m, MEM_4G, 1));
	mem_destroy(&m);
}

/* 5 GiB: [0, 3G) at offset 0 and [4G, 6G) at offset 3G; pages untouched. */
static void test_split_at_hole(void **state)
{
	struct guest_mem m;
	uint64_t size = 5 * GiB;
	uint8_t *p;

	assert_int_equal(mem_init(&m, size), 0);
	assert_int_equal(m.nr_regions, 2);
	assert_int_equal(m.regions[0].gpa, 0);
	assert_int_equal(m.regions[0].size, MEM_HOLE_START);
	assert_int_equal(m.regions[1].gpa, MEM_4G);
	assert_int_equal(m.regions[1].size, size - MEM_HOLE_START);
	assert_int_equal(m.regions[1].offset, MEM_HOLE_START);
	assert_ptr_equal(m.regions[1].host, m.base + MEM_HOLE_START);
	assert_int_equal(mem_low_end(&m), MEM_HOLE_START);

	/* low region edges */
	assert_ptr_equal(mem_gpa_ptr(&m, MEM_HOLE_START - 1, 1), m.base + MEM_HOLE_START - 1);
	assert_null(mem_gpa_ptr(&m, MEM_HOLE_START - 1, 2));
	/* in the hole */
	assert_null(mem_gpa_ptr(&m, MEM_HOLE_START, 1));
	assert_null(mem_gpa_ptr(&m, 0xFEC00000ULL, 4));
	assert_null(mem_gpa_ptr(&m, MEM_4G - 1, 1));
	/* spanning the hole, from either side */
	assert_null(mem_gpa_ptr(&m, MEM_HOLE_START - 4096, 8192));
	assert_null(mem_gpa_ptr(&m, MEM_HOLE_START - 1, MEM_4G - MEM_HOLE_START + 2));
	assert_null(mem_gpa_ptr(&m, MEM_4G - 1, 2));
	/* high region: first byte maps to RAM offset 3G, last byte, one past */
	p = mem_gpa_ptr(&m, MEM_4G, 1);
	assert_ptr_equal(p, m.base + MEM_HOLE_START);
	assert_ptr_equal(mem_gpa_ptr(&m, MEM_4G + 2 * GiB - 1, 1), m.base + size - 1);
	assert_ptr_equal(mem_gpa_ptr(&m, MEM_4G, 2 * GiB), m.base + MEM_HOLE_START);
	assert_null(mem_gpa_ptr(&m, MEM_4G, 2 * GiB + 1));
	assert_null(mem_gpa_ptr(&m, MEM_4G + 2 * GiB, 1));
	assert_null(mem_gpa_ptr(&m, MEM_4G + 2 * GiB - 1, UINT64_MAX));
	/* write through GPA 4G and see it at RAM offset 3G */
	*p = 0x42;
	assert_int_equal(m.base[MEM_HOLE_START], 0x42);
	mem_destroy(&m);
}

static void test_gpa_ptr_bounds(void **state)
{
	struct guest_mem m;
	uint64_t size = 16 * MiB;

	assert_int_equal(mem_init(&m, size), 0);
	assert_ptr_equal(mem_gpa_ptr(&m, 0, 1), m.base);
	assert_ptr_equal(mem_gpa_ptr(&m, 0, size), m.base);
	assert_null(mem_gpa_ptr(&m, 0, size + 1));
	assert_ptr_equal(mem_gpa_ptr(&m, size - 1, 1), m.base + size - 1);
	assert_ptr_equal(mem_gpa_ptr(&m, size - 8, 8), m.base + size - 8);
	assert_null(mem_gpa_ptr(&m, size - 8, 9));
	assert_null(mem_gpa_ptr(&m, size, 1));
	assert_null(mem_gpa_ptr(&m, size, 0));
	/* len 0 is refused even inside RAM */
	assert_null(mem_gpa_ptr(&m, 0, 0));
	assert_null(mem_gpa_ptr(&m, 4096, 0));
	/* wrap-around: gpa + len overflows 64 bits */
	assert_null(mem_gpa_ptr(&m, 4096, UINT64_MAX));
	assert_null(mem_gpa_ptr(&m, 1, UINT64_MAX));
	assert_null(mem_gpa_ptr(&m, UINT64_MAX, 1));
	assert_null(mem_gpa_ptr(&m, UINT64_MAX, 2));
	assert_null(mem_gpa_ptr(&m, UINT64_MAX - 4095, 4096));
	assert_null(mem_gpa_ptr(&m, 0, UINT64_MAX));
	mem_destroy(&m);
}

static void test_read_write(void **state)
{
	struct guest_mem m;
	uint8_t in[256], out[256];
	uint64_t size = 16 * MiB;

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 13 + 1);
	assert_int_equal(mem_init(&m, size), 0);
	assert_int_equal(mem_write(&m, size - sizeof(in), in, sizeof(in)), 0);
	assert_memory_equal(m.base + size - sizeof(in), in, sizeof(in));
	memset(out, 0, sizeof(out));
	assert_int_equal(mem_read(&m, size - sizeof(in), out, sizeof(out)), 0);
	assert_memory_equal(out, in, sizeof(in));

	/* one byte past the end: nothing is written or read */
	memset(out, 0xEE, sizeof(out));
	assert_int_equal(mem_write(&m, size - sizeof(in) + 1, in, sizeof(in)), -EFAULT);
	assert_int_equal(m.base[size - sizeof(in)], in[0]);
	assert_int_equal(mem_read(&m, size - sizeof(in) + 1, out, sizeof(out)), -EFAULT);
	assert_int_equal(out[0], 0xEE);
	assert_int_equal(mem_read(&m, UINT64_MAX - 1, out, 4), -EFAULT);
	assert_int_equal(mem_write(&m, UINT64_MAX - 1, in, 4), -EFAULT);
	assert_int_equal(mem_read(&m, 0, out, 0), -EFAULT);
	mem_destroy(&m);
}

static void test_read_write_across_hole(void **state)
{
	struct guest_mem m;
	uint8_t buf[16] = "0123456789abcdef";

	assert_int_equal(mem_init(&m, 4 * GiB), 0);
	assert_int_equal(m.nr_regions, 2);
	assert_int_equal(m.regions[1].size, 1 * GiB);
	assert_int_equal(mem_write(&m, MEM_HOLE_START - 8, buf, sizeof(buf)), -EFAULT);
	assert_int_equal(mem_write(&m, MEM_HOLE_START, buf, sizeof(buf)), -EFAULT);
	assert_int_equal(mem_read(&m, MEM_4G - 8, buf, sizeof(buf)), -EFAULT);
	assert_int_equal(mem_write(&m, MEM_4G + GiB - 16, buf, sizeof(buf)), 0);
	assert_memory_equal(m.base + 4 * GiB - 16, buf, sizeof(buf));
	assert_int_equal(mem_write(&m, MEM_4G + GiB - 15, buf, sizeof(buf)), -EFAULT);
	mem_destroy(&m);
}

/* mem_mark_dirty: host pointers inside RAM set their memfd pages' bits,
 * anything outside RAM (or no tracking) is ignored. */
static void test_mark_dirty(void **state)
{
	struct guest_mem m;
	uint64_t *bm;
	uint8_t outside[16];

	assert_int_equal(mem_init(&m, 64 * 4096), 0);
	bm = m.dirty;
	mem_mark_dirty(&m, m.base, 1);                  /* not tracking: no effect */
	assert_int_equal(bm[0], 0);
	m.dirty_on = true;
	mem_mark_dirty(&m, m.base + 4095, 2);           /* straddles pages 0 and 1 */
	assert_int_equal(bm[0], 0x3);
	mem_mark_dirty(&m, m.base + 63 * 4096, 4096);   /* last page */
	assert_int_equal(bm[0], 0x3 | 1ULL << 63);
	mem_mark_dirty(&m, m.base + 63 * 4096, 4097);   /* runs past the end: ignored */
	mem_mark_dirty(&m, outside, sizeof(outside));
	mem_mark_dirty(&m, m.base + 5 * 4096, 0);
	assert_int_equal(bm[0], 0x3 | 1ULL << 63);
	mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_small),
		cmocka_unit_test(test_init_invalid),
		cmocka_unit_test(test_aligned),
		cmocka_unit_test(test_exactly_hole),
		cmocka_unit_test(test_split_at_hole),
		cmocka_unit_test(test_gpa_ptr_bounds),
		cmocka_unit_test(test_read_write),
		cmocka_unit_test(test_read_write_across_hole),
		cmocka_unit_test(test_mark_dirty),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
