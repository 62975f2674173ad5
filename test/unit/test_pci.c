/* Unit tests for the PCI bus (src/devices/pci.c, aml.c): config mechanism #1,
 * BAR sizing and moves (with the map callback and MMIO dispatch following),
 * memory decode, the capability list, MSI-X table/PBA/masking and delivery
 * through the vector's eventfd, the root bridge AML, and the device state's
 * save/load with restore-time checks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "vmm/pci.h"
#include "vmm/stream.h"
#include "vmm/vmstate.h"

struct fx {
	struct pci_bus bus;
	struct pci_dev dev;
	int maps;
	uint64_t mapped_at;
	int bar_hits;
	uint64_t last_off;
};

static void fx_map(void *opaque, int bar, uint64_t old, uint64_t addr)
{
	struct fx *f = opaque;

	f->maps++;
	f->mapped_at = addr;
}

static void fx_bar(void *opaque, int bar, uint64_t off, uint8_t *data, uint32_t len, bool w)
{
	struct fx *f = opaque;

	if (pci_msix_access(&f->dev, bar, off, data, len, w))
		return;
	f->bar_hits++;
	f->last_off = off;
	if (!w)
		memset(data, 0x5a, len);
}

static void cfg_addr(struct fx *f, int slot, int reg)
{
	uint32_t v = 0x80000000u | (uint32_t)slot << 11 | (uint32_t)reg;

	pci_cfg_pio(&f->bus, 0, (uint8_t *)&v, 4, true);
}

static uint32_t cfg_rd(struct fx *f, int slot, int reg, uint32_t len)
{
	uint32_t v = 0;

	cfg_addr(f, slot, reg & ~3);
	pci_data_pio(&f->bus, (uint64_t)(reg & 3), (uint8_t *)&v, len, false);
	return v;
}

static void cfg_wr(struct fx *f, int slot, int reg, uint32_t v, uint32_t len)
{
	cfg_addr(f, slot, reg & ~3);
	pci_data_pio(&f->bus, (uint64_t)(reg & 3), (uint8_t *)&v, len, true);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_int_equal(pci_bus_init(&f->bus), 0);
	pci_dev_init(&f->dev, NULL, 0x1af4, 0x1042, 0x018000, 1, 0x1af4, 0x1042);
	assert_int_equal(pci_dev_set_bar(&f->dev, 0, 0x8000, fx_bar, f), 0);
	assert_int_equal(pci_msix_init(&f->dev, 4, 0, 0x4000, 0x5000, NULL, -1), 0);
	assert_int_equal(pci_add_dev(&f->bus, &f->dev, fx_map, f), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	for (int i = 0; i < PCI_MSIX_MAX; i++)
		if (f->dev.msix_fd[i] >= 0)
			close(f->dev.msix_fd[i]);
	free(f);
	return 0;
}

static void test_config_mechanism(void **state)
{
	struct fx *f = *state;
	uint32_t v;

	assert_int_equal(cfg_rd(f, 0, 0, 4), 0x00081b36);          /* host bridge */
	assert_int_equal(cfg_rd(f, 0, 0x0a, 2), 0x0600);            /* class: host bridge */
	assert_int_equal(cfg_rd(f, 1, 0, 4), 0x10421af4);
	assert_int_equal(cfg_rd(f, 1, 2, 2), 0x1042);               /* sub-dword read */
	assert_int_equal(cfg_rd(f, 7, 0, 4), 0xffffffffu);          /* empty slot */
	/* Function != 0 and bus != 0 do not exist. */
	v = 0x80000000u | 1u << 11 | 1u << 8;
	pci_cfg_pio(&f->bus, 0, (uint8_t *)&v, 4, true);
	pci_data_pio(&f->bus, 0, (uint8_t *)&v, 4, false);
	assert_int_equal(v, 0xffffffffu);
	v = 0x80010000u;
	pci_cfg_pio(&f->bus, 0, (uint8_t *)&v, 4, true);
	pci_data_pio(&f->bus, 0, (uint8_t *)&v, 4, false);
	assert_int_equal(v, 0xffffffffu);
	/* Disabled CONFIG_ADDRESS: nothing. */
	v = 0;
	pci_cfg_pio(&f->bus, 0, (uint8_t *)&v, 4, true);
	pci_data_pio(&f->bus, 0, (uint8_t *)&v, 4, false);
	assert_int_equal(v, 0xffffffffu);
	/* CONFIG_ADDRESS reads back (low bits masked). */
	v = 0x80000807u;
	pci_cfg_pio(&f->bus, 0, (uint8_t *)&v, 4, true);
	v = 0;
	pci_cfg_pio(&f->bus, 0, (uint8_t *)&v, 4, false);
	assert_int_equal(v, 0x80000804u);
	/* Read-only registers ignore writes. */
	cfg_wr(f, 1, 0, 0x12345678, 4);
	assert_int_equal(cfg_rd(f, 1, 0, 4), 0x10421af4);
	/* Capability list: status bit, pointer, chain ends at the MSI-X cap. */
	assert_true(cfg_rd(f, 1, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	assert_int_equal(cfg_rd(f, 1, PCI_CAPABILITY_LIST, 1), PCI_CAP_START);
	assert_int_equal(cfg_rd(f, 1, PCI_CAP_START, 1), PCI_CAP_ID_MSIX);
	assert_int_equal(cfg_rd(f, 1, PCI_CAP_START + 1, 1), 0);
}

static void test_bar_sizing_and_move(void **state)
{
	struct fx *f = *state;
	uint32_t bar0 = cfg_rd(f, 1, PCI_BAR0, 4);
	uint8_t d[4];

	assert_int_equal(bar0, (uint32_t)PCI_MMIO_BASE);            /* placed like firmware */
	assert_int_equal(f->mapped_at, PCI_MMIO_BASE);
	assert_true(cfg_rd(f, 1, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY);
	/* Dispatch reaches the BAR handler with the BAR-relative offset. */
	pci_mmio(&f->bus, 0x10, d, 4, false);
	assert_int_equal(f->bar_hits, 1);
	assert_int_equal(f->last_off, 0x10);
	/* Sizing with decode off, as Linux does. */
	cfg_wr(f, 1, PCI_COMMAND, 0, 2);
	assert_int_equal(f->mapped_at, 0);
	cfg_wr(f, 1, PCI_BAR0, 0xffffffffu, 4);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0, 4), 0xffff8000u);   /* size 32 KiB, mem32 */
	cfg_wr(f, 1, PCI_BAR0, 0xd0000000u, 4);
	assert_int_equal(f->mapped_at, 0);                            /* decode still off */
	pci_mmio(&f->bus, 0x10, d, 4, false);
	assert_int_equal(f->bar_hits, 1);
	assert_memory_equal(d, "\xff\xff\xff\xff", 4);
	cfg_wr(f, 1, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	assert_int_equal(f->mapped_at, 0xd0000000u);
	pci_mmio(&f->bus, 0xd0000000u - PCI_MMIO_BASE + 0x20, d, 4, false);
	assert_int_equal(f->bar_hits, 2);
	assert_int_equal(f->last_off, 0x20);
	/* Old place is gone; an access straddling the BAR end is not dispatched. */
	pci_mmio(&f->bus, 0x10, d, 4, false);
	assert_int_equal(f->bar_hits, 2);
	pci_mmio(&f->bus, 0xd0000000u - PCI_MMIO_BASE + 0x7ffe, d, 4, false);
	assert_int_equal(f->bar_hits, 2);
	/* A BAR outside the window is not decoded. */
	cfg_wr(f, 1, PCI_BAR0, 0x10000000u, 4);
	assert_int_equal(f->mapped_at, 0);
	/* Unused BARs read 0 and stay 0. */
	cfg_wr(f, 1, PCI_BAR0 + 4, 0xffffffffu, 4);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0 + 4, 4), 0);
	assert_int_equal(cfg_rd(f, 1, 0x30, 4), 0);                  /* no ROM */
}

static uint64_t fd_count(int fd)
{
	uint64_t v = 0;

	return read(fd, &v, sizeof(v)) == sizeof(v) ? v : 0;
}

static void msix_wr(struct fx *f, uint32_t off, uint32_t v)
{
	uint8_t d[4];

	memcpy(d, &v, 4);
	fx_bar(f, 0, off, d, 4, true);
}

static uint32_t msix_rd(struct fx *f, uint32_t off, uint32_t len)
{
	uint8_t d[8] = { 0 };
	uint32_t v;

	fx_bar(f, 0, off, d, len, false);
	memcpy(&v, d, 4);
	return v;
}

static void test_msix(void **state)
{
	struct fx *f = *state;
	int cap = PCI_CAP_START;

	assert_int_equal(cfg_rd(f, 1, cap + 2, 2) & 0x7ff, 3);        /* 4 vectors */
	assert_int_equal(cfg_rd(f, 1, cap + 4, 4), 0x4000);           /* table in BAR0 */
	assert_int_equal(cfg_rd(f, 1, cap + 8, 4), 0x5000);
	assert_int_equal(msix_rd(f, 0x4000 + 12, 4), 1);              /* masked at reset */
	/* Disabled: notifications are dropped. */
	pci_msix_notify(&f->dev, 1);
	assert_int_equal(fd_count(f->dev.msix_fd[1]), 0);
	assert_int_equal(msix_rd(f, 0x5000, 4), 0);
	cfg_wr(f, 1, cap + 2, PCI_MSIX_FLAGS_ENABLE, 2);
	assert_true(pci_msix_enabled(&f->dev));
	/* Program vector 1 while masked: pending bit, no interrupt. */
	msix_wr(f, 0x4010, 0xfee00000u);
	msix_wr(f, 0x4014, 0);
	msix_wr(f, 0x4018, 0x41);
	assert_int_equal(msix_rd(f, 0x4018, 4), 0x41);
	pci_msix_notify(&f->dev, 1);
	assert_int_equal(fd_count(f->dev.msix_fd[1]), 0);
	assert_int_equal(msix_rd(f, 0x5000, 4), 2);
	/* Unmask: the pending interrupt is delivered and PBA cleared. */
	msix_wr(f, 0x401c, 0);
	assert_int_equal(fd_count(f->dev.msix_fd[1]), 1);
	assert_int_equal(msix_rd(f, 0x5000, 4), 0);
	pci_msix_notify(&f->dev, 1);
	assert_int_equal(fd_count(f->dev.msix_fd[1]), 1);
	/* Function mask holds everything, unmasking the function delivers. */
	cfg_wr(f, 1, cap + 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL, 2);
	pci_msix_notify(&f->dev, 1);
	assert_int_equal(fd_count(f->dev.msix_fd[1]), 0);
	cfg_wr(f, 1, cap + 2, PCI_MSIX_FLAGS_ENABLE, 2);
	assert_int_equal(fd_count(f->dev.msix_fd[1]), 1);
	/* Out-of-range vector, odd-sized and misaligned accesses, PBA writes: ignored. */
	pci_msix_notify(&f->dev, 4);
	pci_msix_notify(&f->dev, 0xffff);
	msix_wr(f, 0x5000, 0xffffffffu);
	assert_int_equal(msix_rd(f, 0x5000, 4), 0);
	assert_int_equal(msix_rd(f, 0x4011, 2) & 0xffff, 0);
	{
		uint8_t d[2] = { 1, 2 };

		fx_bar(f, 0, 0x4000, d, 2, true);
		assert_int_equal(msix_rd(f, 0x4000, 4), 0);
	}
	/* The ctrl word keeps only the mask bit. */
	msix_wr(f, 0x402c, 0xfffffffeu);
	assert_int_equal(msix_rd(f, 0x402c, 4), 0);
	/* Beyond the table (vector 4) is not MSI-X: the device handler sees it. */
	f->bar_hits = 0;
	msix_rd(f, 0x4040, 4);
	assert_int_equal(f->bar_hits, 1);
}

static void test_state_roundtrip(void **state)
{
	struct fx *f = *state;
	struct pci_dev_state saved;
	struct stream_buf buf;
	struct stream_reader r;

	cfg_wr(f, 1, PCI_BAR0, 0xe0000000u, 4);
	msix_wr(f, 0x4020, 0xfee01000u);
	msix_wr(f, 0x4028, 0x55);
	stream_buf_init(&buf);
	assert_int_equal(vmstate_save(&pci_dev_vmstate, f->dev.st, &buf), 0);
	saved = *f->dev.st;
	cfg_wr(f, 1, PCI_BAR0, 0xc8000000u, 4);
	msix_wr(f, 0x4028, 0x66);
	stream_reader_init(&r, buf.data, buf.len);
	assert_int_equal(vmstate_load(&pci_dev_vmstate, f->dev.st, &r, 1), 0);
	assert_memory_equal(&saved, f->dev.st, sizeof(saved));
	assert_int_equal(pci_dev_apply_state(&f->dev), 0);
	assert_int_equal(f->mapped_at, 0xe0000000u);                  /* BAR mapping rebuilt */
	assert_int_equal(msix_rd(f, 0x4028, 4), 0x55);
	/* A stream from a different device (read-only bits differ) is refused. */
	f->dev.st->cfg[PCI_DEVICE_ID] ^= 1;
	assert_int_equal(pci_dev_apply_state(&f->dev), -EINVAL);
	f->dev.st->cfg[PCI_DEVICE_ID] ^= 1;
	f->dev.st->msix_nr = 3;
	assert_int_equal(pci_dev_apply_state(&f->dev), -EINVAL);
	f->dev.st->msix_nr = 4;
	/* Pending bits beyond the table are refused at load. */
	saved.msix_pba = 1ULL << 10;
	stream_buf_reset(&buf);
	assert_int_equal(vmstate_save(&pci_dev_vmstate, &saved, &buf), 0);
	stream_reader_init(&r, buf.data, buf.len);
	assert_int_equal(vmstate_load(&pci_dev_vmstate, f->dev.st, &r, 1), -EINVAL);
	stream_buf_free(&buf);
}

static void test_aml(void **state)
{
	uint8_t buf[512], small[16];
	int n = pci_aml_root_bridge(buf, sizeof(buf));
	static const uint8_t pnp0a08[] = { 0x0c, 0x41, 0xd0, 0x0a, 0x08 };
	static const uint8_t pnp0a03[] = { 0x0c, 0x41, 0xd0, 0x0a, 0x03 };
	static const uint8_t mmio_min[] = { 0x00, 0x00, 0x00, 0xc0, 0xff, 0xff, 0xbf, 0xfe };

	assert_true(n > 0);
	assert_int_equal(buf[0], 0x5b);          /* DeviceOp */
	assert_int_equal(buf[1], 0x82);
	/* Two-byte PkgLength covers the rest exactly. */
	assert_int_equal(buf[2] >> 6, 1);
	assert_int_equal((buf[2] & 0xf) | buf[3] << 4, n - 2);
	assert_memory_equal(buf + 4, "PCI0", 4);
	assert_non_null(memmem(buf, (size_t)n, "_HID", 4));
	assert_non_null(memmem(buf, (size_t)n, pnp0a08, sizeof(pnp0a08)));
	assert_non_null(memmem(buf, (size_t)n, pnp0a03, sizeof(pnp0a03)));
	assert_non_null(memmem(buf, (size_t)n, "_CRS", 4));
	assert_non_null(memmem(buf, (size_t)n, "_BBN", 4));
	assert_non_null(memmem(buf, (size_t)n, mmio_min, sizeof(mmio_min)));
	assert_memory_equal(buf + n - 2, "\x79\x00", 2);   /* resource template end */
	assert_int_equal(pci_aml_root_bridge(small, sizeof(small)), -ENOSPC);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_config_mechanism), T(test_bar_sizing_and_move), T(test_msix),
		T(test_state_roundtrip), cmocka_unit_test(test_aml),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
