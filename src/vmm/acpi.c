/* ACPI tables for the guest: RSDP -> XSDT -> {FADT -> (FACS, DSDT), MADT}.
 * The FADT is a full (not hardware-reduced) one so the power button works as
 * a fixed feature; the DSDT carries \_S5 for poweroff and a pvpanic device. */
#include <errno.h>
#include <string.h>
#include "vmm/acpi.h"
#include "vmm/pm.h"

#define XSDT_ADDR (ACPI_RSDP_ADDR + 0x40)
#define FADT_ADDR (ACPI_RSDP_ADDR + 0x100)
#define FACS_ADDR (ACPI_RSDP_ADDR + 0x240)
#define MADT_ADDR (ACPI_RSDP_ADDR + 0x300)
#define DSDT_ADDR (ACPI_RSDP_ADDR + 0x1000)
#define FADT_LEN 276
#define MADT_MAX (ACPI_RSDP_ADDR + 0x1000 - MADT_ADDR)
#define DSDT_MAX (ACPI_AREA_END - DSDT_ADDR - 0x10000)

uint8_t acpi_checksum(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint8_t sum = 0;

	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + p[i]);
	return (uint8_t)-sum;
}

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* Fills a 36-byte system description header; length and checksum later. */
static void acpi_header(uint8_t *t, const char *sig, uint8_t rev)
{
	memcpy(t, sig, 4);
	t[8] = rev;
	memcpy(t + 10, "VMMVMM", 6);
	memcpy(t + 16, "VMMTABLE", 8);
	put32(t + 24, 1);
	memcpy(t + 28, "VMM ", 4);
	put32(t + 32, 1);
}

static void acpi_finish(uint8_t *t, uint32_t len)
{
	put32(t + 4, len);
	t[9] = 0;
	t[9] = acpi_checksum(t, len);
}

/* Generic address structure for an I/O port register. */
static void acpi_gas_io(uint8_t *p, uint8_t bits, uint8_t access, uint64_t port)
{
	p[0] = 1;
	p[1] = bits;
	p[2] = 0;
	p[3] = access;
	put64(p + 4, port);
}

static void acpi_fadt(uint8_t *t)
{
	acpi_header(t, "FACP", 6);
	put32(t + 36, (uint32_t)FACS_ADDR);
	put32(t + 40, (uint32_t)DSDT_ADDR);
	put16(t + 46, PM_SCI_IRQ);
	put32(t + 56, PM1A_EVT_PORT);
	put32(t + 64, PM1A_CNT_PORT);
	t[88] = 4;                     /* PM1_EVT_LEN */
	t[89] = 2;                     /* PM1_CNT_LEN */
	put16(t + 109, (1 << 2) | (1 << 5));   /* no VGA, no CMOS RTC, no 8042 */
	put32(t + 112, (1 << 0) | (1 << 2) | (1 << 5) | (1 << 10));
	acpi_gas_io(t + 116, 8, 1, PM_RESET_PORT);
	t[128] = PM_RESET_VALUE;
	t[131] = 1;                    /* FADT minor version 6.1 */
	put64(t + 132, FACS_ADDR);
	put64(t + 140, DSDT_ADDR);
	acpi_gas_io(t + 148, 32, 2, PM1A_EVT_PORT);
	acpi_gas_io(t + 172, 16, 2, PM1A_CNT_PORT);
	memcpy(t + 268, "VMMVMM\0\0", 8);
	acpi_finish(t, FADT_LEN);
}

static uint32_t acpi_madt(uint8_t *t, int nr_vcpus)
{
	uint32_t off = 44;

	acpi_header(t, "APIC", 4);
	put32(t + 36, (uint32_t)LAPIC_ADDR);
	put32(t + 40, 1);              /* PCAT_COMPAT: dual 8259s present */
	for (int i = 0; i < nr_vcpus; i++, off += 8) {
		t[off] = 0;
		t[off + 1] = 8;
		t[off + 2] = (uint8_t)i;
		t[off + 3] = (uint8_t)i;
		put32(t + off + 4, 1);
	}
	t[off] = 1;                    /* IOAPIC, id after the CPUs */
	t[off + 1] = 12;
	t[off + 2] = (uint8_t)nr_vcpus;
	put32(t + off + 4, (uint32_t)IOAPIC_ADDR);
	put32(t + off + 8, 0);
	off += 12;
	t[off] = 2;                    /* SCI: level triggered, active high */
	t[off + 1] = 10;
	t[off + 3] = PM_SCI_IRQ;
	put32(t + off + 4, PM_SCI_IRQ);
	put16(t + off + 8, 0x0D);
	off += 10;
	acpi_finish(t, off);
	return off;
}

/* Writes an AML PkgLength for a body of LEN bytes; returns bytes written. */
static size_t aml_pkglen(uint8_t *p, size_t len)
{
	size_t n = len + 1 < 0x40 ? 1 : len + 2 < 0x1000 ? 2 : len + 3 < 0x100000 ? 3 : 4;
	size_t total = len + n;

	if (n == 1) {
		p[0] = (uint8_t)total;
		return 1;
	}
	p[0] = (uint8_t)(((n - 1) << 6) | (total & 0x0F));
	for (size_t i = 1; i < n; i++)
		p[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	return n;
}

static const uint8_t aml_s5[] = {
	0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0A, PM_S5_TYP, 0x0A, PM_S5_TYP,
	0x00, 0x00,
};

/* Device(PEVT) { Name(_HID, "QEMU0001") Name(_CRS, IO(0x505, 1)) } */
static const uint8_t aml_pvpanic[] = {
	0x5B, 0x82, 0x27, 'P', 'E', 'V', 'T',
	0x08, '_', 'H', 'I', 'D', 0x0D, 'Q', 'E', 'M', 'U', '0', '0', '0', '1', 0x00,
	0x08, '_', 'C', 'R', 'S', 0x11, 0x0D, 0x0A, 0x0A,
	0x47, 0x01, 0x05, 0x05, 0x05, 0x05, 0x01, 0x01, 0x79, 0x00,
};

static int acpi_dsdt(uint8_t *t, size_t max, const struct acpi_extra *extra, uint32_t *len)
{
	size_t extra_len = extra ? extra->sb_aml_len : 0;
	size_t body = 4 + sizeof(aml_pvpanic) + extra_len;
	size_t off = 36;

	if (36 + sizeof(aml_s5) + 1 + 4 + body + 4 > max)
		return -E2BIG;
	acpi_header(t, "DSDT", 2);
	memcpy(t + off, aml_s5, sizeof(aml_s5));
	off += sizeof(aml_s5);
	t[off++] = 0x10;               /* Scope(\_SB) */
	off += aml_pkglen(t + off, body);
	memcpy(t + off, "_SB_", 4);
	off += 4;
	memcpy(t + off, aml_pvpanic, sizeof(aml_pvpanic));
	off += sizeof(aml_pvpanic);
	if (extra_len)
		memcpy(t + off, extra->sb_aml, extra_len);
	off += extra_len;
	acpi_finish(t, (uint32_t)off);
	*len = (uint32_t)off;
	return 0;
}

int acpi_build(const struct guest_mem *mem, int nr_vcpus, const struct acpi_extra *extra)
{
	uint8_t *area = mem_gpa_ptr(mem, ACPI_RSDP_ADDR, ACPI_AREA_END - ACPI_RSDP_ADDR);
	uint8_t *rsdp, *xsdt, *facs;
	uint32_t dsdt_len;
	int err;

	if (!area)
		return -ENOMEM;
	/* xAPIC IDs are 8 bits and the IOAPIC takes the ID after the CPUs. */
	if (nr_vcpus < 1 || nr_vcpus > ACPI_MAX_CPUS)
		return -EINVAL;
	memset(area, 0, ACPI_AREA_END - ACPI_RSDP_ADDR);
	err = acpi_dsdt(area + (DSDT_ADDR - ACPI_RSDP_ADDR), DSDT_MAX, extra, &dsdt_len);
	if (err)
		return err;
	facs = area + (FACS_ADDR - ACPI_RSDP_ADDR);
	memcpy(facs, "FACS", 4);
	put32(facs + 4, 64);
	facs[32] = 2;
	acpi_fadt(area + (FADT_ADDR - ACPI_RSDP_ADDR));
	acpi_madt(area + (MADT_ADDR - ACPI_RSDP_ADDR), nr_vcpus);

	xsdt = area + (XSDT_ADDR - ACPI_RSDP_ADDR);
	acpi_header(xsdt, "XSDT", 1);
	put64(xsdt + 36, FADT_ADDR);
	put64(xsdt + 44, MADT_ADDR);
	acpi_finish(xsdt, 52);

	rsdp = area;
	memcpy(rsdp, "RSD PTR ", 8);
	memcpy(rsdp + 9, "VMMVMM", 6);
	rsdp[15] = 2;
	put32(rsdp + 20, 36);
	put64(rsdp + 24, XSDT_ADDR);
	rsdp[8] = acpi_checksum(rsdp, 20);
	rsdp[32] = acpi_checksum(rsdp, 36);
	return 0;
}
