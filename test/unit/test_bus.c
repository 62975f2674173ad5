/*
 * Unit tests for I/O dispatch (src/devices/bus.c): registration with overlap
 * and capacity checks, unregistering, offsets handed to handlers, and the
 * all-ones answer to reads nobody claims.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/bus.h"

/* Records the last access and answers reads with a per-device pattern. */
struct rec {
	int calls;
	uint64_t offset;
	uint32_t len;
	bool is_write;
	uint8_t wdata[8];
	uint8_t fill;
};

static void rec_fn(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct rec *r = opaque;

	r->calls++;
	r->offset = offset;
	r->len = len;
	r->is_write = is_write;
	if (is_write)
		memcpy(r->wdata, data, len);
	else
		memset(data, r->fill, len);
}

static void test_register_overlap(void **state)
{
	struct bus b = { 0 };
	struct rec r = { 0 };

	assert_int_equal(bus_register(&b, 0x3F8, 8, rec_fn, &r, "com1"), 0);
	assert_int_equal(b.nr, 1);
	assert_string_equal(b.ranges[0].name, "com1");
	/* any overlap: same start, inside, straddling either end, covering */
	assert_int_equal(bus_register(&b, 0x3F8, 8, rec_fn, &r, "dup"), -EEXIST);
	assert_int_equal(bus_register(&b, 0x3FA, 1, rec_fn, &r, "in"), -EEXIST);
	assert_int_equal(bus_register(&b, 0x3F0, 9, rec_fn, &r, "lo"), -EEXIST);
	assert_int_equal(bus_register(&b, 0x3FF, 4, rec_fn, &r, "hi"), -EEXIST);
	assert_int_equal(bus_register(&b, 0x300, 0x200, rec_fn, &r, "cover"), -EEXIST);
	/* touching is fine */
	assert_int_equal(bus_register(&b, 0x3F0, 8, rec_fn, &r, "below"), 0);
	assert_int_equal(bus_register(&b, 0x400, 1, rec_fn, &r, "above"), 0);
	assert_int_equal(b.nr, 3);
	/* empty or wrapping ranges */
	assert_int_equal(bus_register(&b, 0x1000, 0, rec_fn, &r, "empty"), -EINVAL);
	assert_int_equal(bus_register(&b, UINT64_MAX - 1, 4, rec_fn, &r, "wrap"), -EINVAL);
	assert_int_equal(b.nr, 3);
}

static void test_full(void **state)
{
	struct bus b = { 0 };
	struct rec r = { 0 };

	for (int i = 0; i < BUS_MAX_RANGES; i++)
		assert_int_equal(bus_register(&b, 0x1000 + 0x10 * (uint64_t)i, 0x10, rec_fn, &r, "x"),
				 0);
	assert_int_equal(b.nr, BUS_MAX_RANGES);
	assert_int_equal(bus_register(&b, 0x9000, 1, rec_fn, &r, "one-too-many"), -ENOSPC);
	/* overlap is still reported as overlap on a full bus */
	assert_int_equal(bus_register(&b, 0x1000, 1, rec_fn, &r, "dup"), -EEXIST);
	assert_int_equal(bus_unregister(&b, 0x1000 + 0x10 * 5), 0);
	assert_int_equal(bus_register(&b, 0x9000, 1, rec_fn, &r, "now-fits"), 0);
}

static void test_unregister(void **state)
{
	struct bus b = { 0 };
	struct rec r1 = { .fill = 0x11 }, r2 = { .fill = 0x22 }, r3 = { .fill = 0x33 };
	uint8_t d[4];

	assert_int_equal(bus_register(&b, 0x10, 4, rec_fn, &r1, "a"), 0);
	assert_int_equal(bus_register(&b, 0x20, 4, rec_fn, &r2, "b"), 0);
	assert_int_equal(bus_register(&b, 0x30, 4, rec_fn, &r3, "c"), 0);
	assert_int_equal(bus_unregister(&b, 0x22), -ENOENT);   /* not a base */
	assert_int_equal(bus_unregister(&b, 0x40), -ENOENT);
	assert_int_equal(bus_unregister(&b, 0x20), 0);
	assert_int_equal(b.nr, 2);
	assert_int_equal(bus_unregister(&b, 0x20), -ENOENT);
	/* the others still dispatch, the removed one no longer does */
	assert_true(bus_dispatch(&b, 0x10, d, 1, false));
	assert_int_equal(d[0], 0x11);
	assert_true(bus_dispatch(&b, 0x33, d, 1, false));
	assert_int_equal(d[0], 0x33);
	assert_false(bus_dispatch(&b, 0x21, d, 1, false));
	assert_int_equal(r2.calls, 0);
	/* the freed range can be registered again */
	assert_int_equal(bus_register(&b, 0x20, 4, rec_fn, &r2, "b2"), 0);
	assert_true(bus_dispatch(&b, 0x23, d, 1, false));
	assert_int_equal(d[0], 0x22);
	assert_int_equal(r2.offset, 3);
}

static void test_dispatch_offsets(void **state)
{
	struct bus b = { 0 };
	struct rec pio = { .fill = 0xA5 }, mmio = { .fill = 0x5A };
	uint8_t d[8];
	uint32_t v = 0xDEADBEEF;

	assert_int_equal(bus_register(&b, 0x600, 4, rec_fn, &pio, "pm"), 0);
	assert_int_equal(bus_register(&b, 0xFEC00000ULL, 0x1000, rec_fn, &mmio, "ioapic"), 0);

	memcpy(d, &v, 4);
	assert_true(bus_dispatch(&b, 0x602, d, 2, true));
	assert_int_equal(pio.calls, 1);
	assert_int_equal(pio.offset, 2);
	assert_int_equal(pio.len, 2);
	assert_true(pio.is_write);
	assert_memory_equal(pio.wdata, "\xEF\xBE", 2);

	memset(d, 0, sizeof(d));
	assert_true(bus_dispatch(&b, 0xFEC00010ULL, d, 4, false));
	assert_int_equal(mmio.offset, 0x10);
	assert_int_equal(mmio.len, 4);
	assert_false(mmio.is_write);
	assert_memory_equal(d, "\x5A\x5A\x5A\x5A\0\0\0\0", 8);

	/* last byte of each range, and one past */
	assert_true(bus_dispatch(&b, 0x603, d, 1, false));
	assert_int_equal(pio.offset, 3);
	assert_true(bus_dispatch(&b, 0xFEC00FFFULL, d, 1, false));
	assert_int_equal(mmio.offset, 0xFFF);
	assert_int_equal(pio.calls, 2);
	assert_int_equal(mmio.calls, 2);
	assert_false(bus_dispatch(&b, 0x604, d, 1, false));
	assert_false(bus_dispatch(&b, 0x5FF, d, 1, false));
	assert_false(bus_dispatch(&b, 0xFEC01000ULL, d, 4, false));
	assert_int_equal(pio.calls, 2);
	assert_int_equal(mmio.calls, 2);
}

static void test_unhandled(void **state)
{
	struct bus b = { 0 };
	struct rec r = { .fill = 0 };
	uint8_t d[8];

	memset(d, 0, sizeof(d));
	assert_false(bus_dispatch(&b, 0x80, d, 1, false));
	assert_memory_equal(d, "\xFF\0\0\0\0\0\0\0", 8);
	memset(d, 0, sizeof(d));
	assert_false(bus_dispatch(&b, 0x80, d, 4, false));
	assert_memory_equal(d, "\xFF\xFF\xFF\xFF\0\0\0\0", 8);
	memset(d, 0, sizeof(d));
	assert_false(bus_dispatch(&b, 0xD0000000ULL, d, 8, false));
	assert_memory_equal(d, "\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF", 8);
	/* unhandled writes are dropped and leave DATA alone */
	memcpy(d, "\x01\x02\x03\x04", 4);
	assert_int_equal(bus_register(&b, 0x70, 2, rec_fn, &r, "rtc"), 0);
	assert_false(bus_dispatch(&b, 0x80, d, 4, true));
	assert_memory_equal(d, "\x01\x02\x03\x04", 4);
	assert_int_equal(r.calls, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_register_overlap),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_unregister),
		cmocka_unit_test(test_dispatch_offsets),
		cmocka_unit_test(test_unhandled),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
