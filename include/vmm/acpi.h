/* ACPI tables (RSDP, XSDT, FADT, FACS, DSDT, MADT) so the stock kernel finds
 * the CPUs, the IOAPIC and the power-management registers (poweroff, reset,
 * power button). The RSDP sits at ACPI_RSDP_ADDR in the BIOS area that Linux
 * scans. */
#ifndef VMM_ACPI_H
#define VMM_ACPI_H

#include <stddef.h>
#include <stdint.h>
#include "vmm/log.h"
#include "vmm/mem.h"

#define ACPI_RSDP_ADDR 0xE0000ULL
#define ACPI_AREA_END  0x100000ULL
#define IOAPIC_ADDR    0xFEC00000ULL
#define LAPIC_ADDR     0xFEE00000ULL
#define ACPI_MAX_CPUS  254

/* Extra AML appended inside the DSDT's \_SB scope (e.g. a PCI root bridge);
 * may be NULL/0. */
struct acpi_extra {
	const uint8_t *sb_aml;
	size_t sb_aml_len;
};

/* Writes all tables for NR_VCPUS CPUs into MEM; 0 or -errno. */
int acpi_build(const struct guest_mem *mem, int nr_vcpus, const struct acpi_extra *extra)
	VMM_MUST_CHECK;
/* Returns the ACPI checksum byte that makes BUF[0..LEN) sum to zero. */
uint8_t acpi_checksum(const void *buf, size_t len);

#endif
