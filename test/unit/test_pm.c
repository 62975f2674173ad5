/*
 * Unit tests for power management and reset (src/devices/pm.c) on a minimal
 * struct vm with no KVM behind it: poweroff via PM1a_CNT, reset via 0xCF9
 * and the i8042, pvpanic, the power button's status/enable/SCI, and the
 * ports pm_init registers on the PIO bus.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/bus.h"
#include "vmm/pm.h"
#include "vmm/vm.h"

#define SLP_TYP(n) ((uint16_t)((n) << 10))

struct fixture {
	struct vm vm;
	struct pm pm;
	int sci_calls;
	int sci_level;
};

static void sci_record(void *opaque, int level)
{
	struct fixture *f = opaque;

	f->sci_calls++;
	f->sci_level = level;
}

/* A zeroed vm with its lock, cond and end eventfd; pm registered on its bus
 * with the SCI line replaced by a recorder. */
static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->vm.kvm_fd = f->vm.vm_fd = -1;
	pthread_mutex_init(&f->vm.lock, NULL);
	pthread_cond_init(&f->vm.cond, NULL);
	f->vm.end_eventfd = eventfd(0, EFD_NONBLOCK);
	if (f->vm.end_eventfd < 0 || pm_init(&f->pm, &f->vm) != 0)
		return -1;
	f->pm.irq = sci_record;
	f->pm.irq_opaque = f;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	close(f->vm.end_eventfd);
	pthread_mutex_destroy(&f->pm.lock);
	pthread_cond_destroy(&f->vm.cond);
	pthread_mutex_destroy(&f->vm.lock);
	free(f);
	return 0;
}

static void io_out(struct fixture *f, uint64_t port, uint32_t v, uint32_t len)
{
	uint8_t d[4];

	memcpy(d, &v, 4);
	assert_true(bus_dispatch(&f->vm.pio, port, d, len, true));
}

static uint32_t io_in(struct fixture *f, uint64_t port, uint32_t len)
{
	uint8_t d[4] = { 0 };
	uint32_t v;

	assert_true(bus_dispatch(&f->vm.pio, port, d, len, false));
	memcpy(&v, d, 4);
	return v;
}

/* True if the end eventfd was signalled (consumes the count). */
static bool end_signalled(struct fixture *f)
{
	uint64_t v = 0;

	return read(f->vm.end_eventfd, &v, sizeof(v)) == sizeof(v) && v > 0;
}

static void test_ports_registered(void **state)
{
	struct fixture *f = *state;
	struct { uint64_t base, len; } want[] = {
		{ PM1A_EVT_PORT, 4 }, { PM1A_CNT_PORT, 2 }, { PM_RESET_PORT, 1 },
		{ PM_I8042_PORT, 1 }, { PM_PVPANIC_PORT, 1 },
	};

	assert_int_equal(f->vm.pio.nr, ARRAY_SIZE(want));
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		assert_int_equal(f->vm.pio.ranges[i].base, want[i].base);
		assert_int_equal(f->vm.pio.ranges[i].len, want[i].len);
		assert_ptr_equal(f->vm.pio.ranges[i].opaque, &f->pm);
	}
	/* a second PM on the same bus collides */
	{
		struct pm other;

		assert_int_equal(pm_init(&other, &f->vm), -EEXIST);
		pthread_mutex_destroy(&other.lock);
	}
	assert_int_equal(vm_ended(&f->vm), VM_END_NONE);
}

static void test_poweroff(void **state)
{
	struct fixture *f = *state;

	io_out(f, PM1A_CNT_PORT, SLP_TYP(PM_S5_TYP) | PM1_SLP_EN, 2);
	assert_int_equal(vm_ended(&f->vm), VM_END_POWEROFF);
	assert_int_equal(f->vm.state, VM_ENDED);
	assert_non_null(strstr(f->vm.end_msg, "powered off"));
	assert_true(end_signalled(f));
	/* SLP_EN reads back as 0, SCI_EN as 1 */
	assert_int_equal(io_in(f, PM1A_CNT_PORT, 2), SLP_TYP(PM_S5_TYP) | PM1_SCI_EN);
}

static void test_other_sleep_states_ignored(void **state)
{
	struct fixture *f = *state;

	for (unsigned typ = 0; typ < 8; typ++) {
		if (typ == PM_S5_TYP)
			continue;
		io_out(f, PM1A_CNT_PORT, SLP_TYP(typ) | PM1_SLP_EN, 2);
		assert_int_equal(vm_ended(&f->vm), VM_END_NONE);
	}
	/* S5 without SLP_EN only sets the type */
	io_out(f, PM1A_CNT_PORT, SLP_TYP(PM_S5_TYP), 2);
	assert_int_equal(vm_ended(&f->vm), VM_END_NONE);
	assert_int_equal(io_in(f, PM1A_CNT_PORT, 2), SLP_TYP(PM_S5_TYP) | PM1_SCI_EN);
	assert_false(end_signalled(f));
	/* a later SLP_EN with S5 powers off */
	io_out(f, PM1A_CNT_PORT, SLP_TYP(PM_S5_TYP) | PM1_SLP_EN, 2);
	assert_int_equal(vm_ended(&f->vm), VM_END_POWEROFF);
}

static void test_reset_cf9(void **state)
{
	struct fixture *f = *state;

	io_out(f, PM_RESET_PORT, 0x02, 1);          /* "system reset" bit alone: no */
	assert_int_equal(vm_ended(&f->vm), VM_END_NONE);
	io_out(f, PM_RESET_PORT, PM_RESET_VALUE, 1);
	assert_int_equal(vm_ended(&f->vm), VM_END_RESET);
	assert_true(end_signalled(f));
	/* first reason wins */
	io_out(f, PM1A_CNT_PORT, SLP_TYP(PM_S5_TYP) | PM1_SLP_EN, 2);
	assert_int_equal(vm_ended(&f->vm), VM_END_RESET);
	assert_false(end_signalled(f));
}

static void test_reset_i8042(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(io_in(f, PM_I8042_PORT, 1), 0);   /* buffers empty */
	io_out(f, PM_I8042_PORT, 0xAA, 1);
	io_out(f, PM_I8042_PORT, 0xFF, 1);
	assert_int_equal(vm_ended(&f->vm), VM_END_NONE);
	io_out(f, PM_I8042_PORT, 0xFE, 1);
	assert_int_equal(vm_ended(&f->vm), VM_END_RESET);
	assert_non_null(strstr(f->vm.end_msg, "i8042"));
}

static void test_pvpanic(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(io_in(f, PM_PVPANIC_PORT, 1), 0x03);   /* capabilities */
	io_out(f, PM_PVPANIC_PORT, 0x02, 1);   /* crash loaded: not a panic */
	io_out(f, PM_PVPANIC_PORT, 0x00, 1);
	assert_int_equal(vm_ended(&f->vm), VM_END_NONE);
	io_out(f, PM_PVPANIC_PORT, 0x01, 1);
	assert_int_equal(vm_ended(&f->vm), VM_END_PANIC);
	assert_int_equal(vm_end_status(vm_ended(&f->vm)), 1);
}

static void test_power_button(void **state)
{
	struct fixture *f = *state;

	/* not enabled: status set, SCI stays low */
	pm_power_button(&f->pm);
	assert_int_equal(io_in(f, PM1A_EVT_PORT, 2), PM1_PWRBTN_STS);
	assert_int_equal(f->sci_level, 0);
	/* enabling it with the status pending raises SCI */
	io_out(f, PM1A_EVT_PORT + 2, PM1_PWRBTN_EN, 2);
	assert_int_equal(io_in(f, PM1A_EVT_PORT + 2, 2), PM1_PWRBTN_EN);
	assert_int_equal(f->sci_level, 1);
	/* writing 0 to status changes nothing; writing 1 clears and drops SCI */
	io_out(f, PM1A_EVT_PORT, 0, 2);
	assert_int_equal(f->sci_level, 1);
	assert_int_equal(io_in(f, PM1A_EVT_PORT, 2), PM1_PWRBTN_STS);
	io_out(f, PM1A_EVT_PORT, PM1_PWRBTN_STS, 2);
	assert_int_equal(io_in(f, PM1A_EVT_PORT, 2), 0);
	assert_int_equal(f->sci_level, 0);
	/* pressed while enabled: SCI at once */
	f->sci_calls = 0;
	pm_power_button(&f->pm);
	assert_true(f->sci_calls >= 1);
	assert_int_equal(f->sci_level, 1);
	/* disabling drops SCI but keeps the status */
	io_out(f, PM1A_EVT_PORT + 2, 0, 2);
	assert_int_equal(f->sci_level, 0);
	assert_int_equal(io_in(f, PM1A_EVT_PORT, 2), PM1_PWRBTN_STS);
	/* the button never ends the VM by itself */
	assert_int_equal(vm_ended(&f->vm), VM_END_NONE);
}

/* A 32-bit write to PM1a_EVT clears status (low half) and sets enable (high). */
static void test_evt_dword_write(void **state)
{
	struct fixture *f = *state;

	pm_power_button(&f->pm);
	io_out(f, PM1A_EVT_PORT, (uint32_t)PM1_PWRBTN_EN << 16, 4);
	assert_int_equal(f->sci_level, 1);
	assert_int_equal(io_in(f, PM1A_EVT_PORT + 2, 2), PM1_PWRBTN_EN);
	io_out(f, PM1A_EVT_PORT, ((uint32_t)PM1_PWRBTN_EN << 16) | PM1_PWRBTN_STS, 4);
	assert_int_equal(f->sci_level, 0);
	assert_int_equal(io_in(f, PM1A_EVT_PORT, 2), 0);
	assert_int_equal(io_in(f, PM1A_EVT_PORT + 2, 2), PM1_PWRBTN_EN);
}

/*
 * BUG (src/devices/pm.c:34-35): a 32-bit read of PM1a_EVT (the FADT gives
 * X_PM1a_EVT_BLK a 32-bit width) returns only the status word; the enable
 * word belongs in bits 16-31, as the 32-bit write path already assumes.
 * Fix: return pm->sts | (uint32_t)pm->en << 16 for PM1A_EVT_PORT.
 */
static void test_evt_dword_read(void **state)
{
	struct fixture *f = *state;

	io_out(f, PM1A_EVT_PORT + 2, PM1_PWRBTN_EN, 2);
	pm_power_button(&f->pm);
	assert_int_equal(io_in(f, PM1A_EVT_PORT, 4),
			 ((uint32_t)PM1_PWRBTN_EN << 16) | PM1_PWRBTN_STS);
}

/* With no VM behind it (vm NULL, irq NULL) pm_pio must not crash. */
static void test_no_vm(void **state)
{
	struct pm pm;
	uint8_t d[4];
	uint16_t v = SLP_TYP(PM_S5_TYP) | PM1_SLP_EN;

	memset(&pm, 0, sizeof(pm));
	pthread_mutex_init(&pm.lock, NULL);
	memcpy(d, &v, 2);
	pm_pio(&pm, PM1A_CNT_PORT, d, 2, true);
	d[0] = PM_RESET_VALUE;
	pm_pio(&pm, PM_RESET_PORT, d, 1, true);
	d[0] = 0xFE;
	pm_pio(&pm, PM_I8042_PORT, d, 1, true);
	d[0] = 1;
	pm_pio(&pm, PM_PVPANIC_PORT, d, 1, true);
	pm_power_button(&pm);
	memset(d, 0, sizeof(d));
	pm_pio(&pm, PM1A_EVT_PORT, d, 2, false);
	assert_int_equal(d[0] | d[1] << 8, PM1_PWRBTN_STS);
	/* unknown port reads all ones, and len is capped at 4 */
	{
		uint8_t w[8] = { 0 };

		pm_pio(&pm, 0x1234, w, 8, false);
		assert_memory_equal(w, "\xFF\xFF\xFF\xFF\0\0\0\0", 8);
	}
	pthread_mutex_destroy(&pm.lock);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_ports_registered),
		T(test_poweroff),
		T(test_other_sleep_states_ignored),
		T(test_reset_cf9),
		T(test_reset_i8042),
		T(test_pvpanic),
		T(test_power_button),
		T(test_evt_dword_write),
		T(test_evt_dword_read),
		cmocka_unit_test(test_no_vm),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
#undef T
}
