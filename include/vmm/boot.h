/* x86-64 Linux boot protocol: loads a bzImage (or an ELF64 kernel such as
 * the in-tree test guest) and its initrd into guest RAM, builds boot_params
 * with the e820 map and command line, identity-mapped page tables and a GDT,
 * and puts the boot vCPU straight into 64-bit mode at the kernel's entry.
 *
 * Guest physical layout below 1 MiB:
 *   0x0500 GDT   0x7000 boot_params   0x9000 PML4   0xA000 PDPT
 *   0xB000-0xEFFF page directories (4 GiB of 2 MiB pages)
 *   0x20000 command line   0x9FC00-0xFFFFF reserved (EBDA, ACPI at 0xE0000)
 *   0x100000 kernel; the initrd sits as high as it may below 4 GiB. */
#ifndef VMM_BOOT_H
#define VMM_BOOT_H

#include <stddef.h>
#include <stdint.h>
#include "vmm/log.h"
#include "vmm/mem.h"

#define BOOT_GDT_ADDR     0x500ULL
#define BOOT_PARAMS_ADDR  0x7000ULL
#define BOOT_PML4_ADDR    0x9000ULL
#define BOOT_PDPT_ADDR    0xA000ULL
#define BOOT_PD_ADDR      0xB000ULL
#define BOOT_CMDLINE_ADDR 0x20000ULL
#define BOOT_CMDLINE_MAX  4096
#define BOOT_EBDA_START   0x9FC00ULL
#define BOOT_HIMEM_START  0x100000ULL
#define BOOT_KERNEL_ADDR  0x100000ULL

#define BOOT_E820_MAX 8
#define E820_RAM 1
#define E820_RESERVED 2

struct boot_e820 {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));

/* What the boot vCPU needs to start the loaded kernel. */
struct boot_info {
	uint64_t entry;        /* 64-bit entry point (guest physical) */
	uint64_t boot_params;  /* GPA of boot_params, passed in RSI */
};

/* Facts read from a bzImage setup header. */
struct bzimage_hdr {
	uint32_t setup_size;     /* bytes before the protected-mode kernel */
	uint16_t version;        /* boot protocol version */
	uint32_t initrd_max;     /* highest address the initrd may end at */
	uint32_t cmdline_max;    /* longest command line, without NUL */
	uint64_t pref_address;
	uint32_t init_size;
	uint8_t loadflags;
	uint16_t xloadflags;
};

/* Parses and checks a bzImage header in the first LEN bytes of IMAGE:
 * 0, or -ENOEXEC with a reason in ERR if it is not a bootable 64-bit
 * bzImage (boot protocol >= 2.12 with a 64-bit entry). */
int boot_parse_bzimage(const uint8_t *image, size_t len, struct bzimage_hdr *out,
		       char *err, size_t errlen) VMM_MUST_CHECK;
/* Fills TABLE with the e820 map of MEM; returns the entry count. */
int boot_build_e820(const struct guest_mem *mem, struct boot_e820 *table, int max);
/* Writes identity-mapped page tables for the first 4 GiB and the GDT. */
int boot_setup_tables(const struct guest_mem *mem) VMM_MUST_CHECK;
/* Checks that KERNEL is a file vmm can boot (bzImage or ELF64 x86-64)
 * before any VM exists; 0, or -errno with a reason naming the file in ERR. */
int boot_probe(const char *kernel, char *err, size_t errlen) VMM_MUST_CHECK;
/* Loads KERNEL (bzImage or ELF64), optional INITRD and CMDLINE into MEM and
 * builds boot_params; 0 or -errno with a one-line reason in ERR. */
int boot_load(const struct guest_mem *mem, const char *kernel, const char *initrd,
	      const char *cmdline, struct boot_info *out, char *err, size_t errlen)
	VMM_MUST_CHECK;
/* Puts vCPU fd VCPU_FD into 64-bit mode at INFO's entry; 0 or -errno. */
int boot_setup_vcpu(int vcpu_fd, const struct boot_info *info) VMM_MUST_CHECK;

#endif
