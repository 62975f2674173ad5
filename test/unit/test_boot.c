/*
 * Unit tests for the x86-64 boot protocol (src/vmm/boot.c): bzImage header
 * checks on synthetic headers, the e820 map, page tables and GDT, and
 * boot_load with a synthetic bzImage, the host's real /boot/vmlinuz-*, an
 * initrd, hand-built ELF64 kernels and the failure paths.
 */
#include <elf.h>
#include <errno.h>
#include <glob.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/boot.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)
#define IMG_LEN (64 * 1024)

static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static uint8_t img[IMG_LEN];
static char err[256];

/* A bootable-looking 64 KiB bzImage: setup_sects 7 (4 KiB of setup), then a
 * recognisable payload. Decompression needs 16 MiB + 4 MiB. */
static void make_bzimage(uint16_t version, uint16_t xlf)
{
	memset(img, 0, sizeof(img));
	img[0x1F1] = 7;
	wr16(img + 0x1FE, 0xAA55);
	img[0x201] = 0x66;                 /* header ends at 0x202 + 0x66 = 0x268 */
	memcpy(img + 0x202, "HdrS", 4);
	wr16(img + 0x206, version);
	img[0x211] = 0x01;                 /* LOADED_HIGH */
	wr32(img + 0x22C, 0x7FFFFFFF);     /* initrd_addr_max */
	wr16(img + 0x236, xlf);
	wr32(img + 0x238, 2047);           /* cmdline_size */
	wr64(img + 0x258, 0x1000000);      /* pref_address */
	wr32(img + 0x260, 0x400000);       /* init_size */
	for (size_t i = 4096; i < sizeof(img); i++)
		img[i] = (uint8_t)(i * 31 + 7);
}

/* Writes DATA to an already unlinked temp file and returns its
 * /proc/self/fd path, so a failing test leaves nothing behind on disk. */
static char *write_temp(const void *data, size_t len)
{
	char tmpl[] = "/tmp/vmm-test-boot-XXXXXX", *path;
	int fd = mkstemp(tmpl);

	assert_true(fd >= 0);
	unlink(tmpl);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_true(asprintf(&path, "/proc/self/fd/%d", fd) > 0);
	return path;
}

static void drop_temp(char *path)
{
	close(atoi(path + strlen("/proc/self/fd/")));
	free(path);
}

/* --- boot_parse_bzimage --- */

static void test_parse_good(void **state)
{
	struct bzimage_hdr h;

	make_bzimage(0x020F, 0x7F);
	assert_int_equal(boot_parse_bzimage(img, sizeof(img), &h, err, sizeof(err)), 0);
	assert_int_equal(h.setup_size, 8 * 512);
	assert_int_equal(h.version, 0x020F);
	assert_int_equal(h.initrd_max, 0x7FFFFFFF);
	assert_int_equal(h.cmdline_max, 2047);
	assert_int_equal(h.pref_address, 0x1000000);
	assert_int_equal(h.init_size, 0x400000);
	assert_int_equal(h.loadflags, 0x01);
	assert_int_equal(h.xloadflags, 0x7F);
	/* setup_sects 0 means 4 */
	img[0x1F1] = 0;
	assert_int_equal(boot_parse_bzimage(img, sizeof(img), &h, err, sizeof(err)), 0);
	assert_int_equal(h.setup_size, 5 * 512);
	/* exactly 2.12 is enough */
	make_bzimage(0x020C, 0x01);
	assert_int_equal(boot_parse_bzimage(img, sizeof(img), &h, err, sizeof(err)), 0);
}

static void expect_noexec(size_t len, const char *needle)
{
	struct bzimage_hdr h;

	err[0] = 0;
	assert_int_equal(boot_parse_bzimage(img, len, &h, err, sizeof(err)), -ENOEXEC);
	if (!strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_parse_refused(void **state)
{
	make_bzimage(0x020F, 0x7F);
	img[0x1FE] = 0;
	expect_noexec(sizeof(img), "bzImage");
	make_bzimage(0x020F, 0x7F);
	memcpy(img + 0x202, "HdrT", 4);
	expect_noexec(sizeof(img), "bzImage");
	make_bzimage(0x020B, 0x7F);
	expect_noexec(sizeof(img), "2.11");
	make_bzimage(0x0200, 0x7F);
	expect_noexec(sizeof(img), "too old");
	make_bzimage(0x020F, 0x7E);            /* no XLF_KERNEL_64 */
	expect_noexec(sizeof(img), "64-bit");
	/* truncated: shorter than the header, or no byte after the setup */
	make_bzimage(0x020F, 0x7F);
	expect_noexec(0x267, "bzImage");
	expect_noexec(0x268, "truncated");
	expect_noexec(8 * 512, "truncated");
	img[0x1F1] = 0xFF;                     /* 128 KiB of setup in a 64 KiB file */
	expect_noexec(sizeof(img), "truncated");
}

/* --- e820, page tables --- */

static void test_e820_512m(void **state)
{
	struct guest_mem m;
	struct boot_e820 t[BOOT_E820_MAX];

	assert_int_equal(mem_init(&m, 512 * MiB), 0);
	assert_int_equal(boot_build_e820(&m, t, BOOT_E820_MAX), 3);
	assert_int_equal(t[0].addr, 0);
	assert_int_equal(t[0].size, BOOT_EBDA_START);
	assert_int_equal(t[0].type, E820_RAM);
	assert_int_equal(t[1].addr, BOOT_EBDA_START);
	assert_int_equal(t[1].addr + t[1].size, 0x100000);
	assert_int_equal(t[1].type, E820_RESERVED);
	assert_int_equal(t[2].addr, 0x100000);
	assert_int_equal(t[2].addr + t[2].size, 512 * MiB);
	assert_int_equal(t[2].type, E820_RAM);
	assert_int_equal(sizeof(t[0]), 20);    /* the boot_params layout */
	assert_int_equal(boot_build_e820(&m, t, 3), 0);   /* table too small */
	mem_destroy(&m);
}

static void test_e820_5g(void **state)
{
	struct guest_mem m;
	struct boot_e820 t[BOOT_E820_MAX];
	uint64_t ram = 0;

	assert_int_equal(mem_init(&m, 5 * GiB), 0);
	assert_int_equal(boot_build_e820(&m, t, BOOT_E820_MAX), 4);
	assert_int_equal(t[1].type, E820_RESERVED);
	assert_int_equal(t[2].addr, 0x100000);
	assert_int_equal(t[2].addr + t[2].size, MEM_HOLE_START);
	assert_int_equal(t[3].addr, MEM_4G);
	assert_int_equal(t[3].size, 2 * GiB);
	assert_int_equal(t[3].type, E820_RAM);
	for (int i = 0; i < 4; i++)
		if (t[i].type == E820_RAM)
			ram += t[i].size;
	/* all RAM but the reserved EBDA/BIOS area */
	assert_int_equal(ram, 5 * GiB - (0x100000 - BOOT_EBDA_START));
	mem_destroy(&m);
}

static void test_setup_tables(void **state)
{
	struct guest_mem m;
	uint64_t *pml4, *pdpt, *pd;

	assert_int_equal(mem_init(&m, 64 * MiB), 0);
	memset(m.base, 0xFF, 0x10000);         /* stale data must be cleared */
	assert_int_equal(boot_setup_tables(&m), 0);
	pml4 = (uint64_t *)(m.base + BOOT_PML4_ADDR);
	pdpt = (uint64_t *)(m.base + BOOT_PDPT_ADDR);
	pd = (uint64_t *)(m.base + BOOT_PD_ADDR);
	assert_int_equal(pml4[0], BOOT_PDPT_ADDR | 3);
	for (int i = 1; i < 512; i++)
		assert_int_equal(pml4[i], 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pdpt[i], (BOOT_PD_ADDR + 0x1000 * (uint64_t)i) | 3);
	for (int i = 4; i < 512; i++)
		assert_int_equal(pdpt[i], 0);
	assert_int_equal(pd[0], 0x83);
	assert_int_equal(pd[1], 0x200083);
	assert_int_equal(pd[512], 0x40000083);     /* 1 GiB, second directory */
	assert_int_equal(pd[2047], 0xFFE00083);    /* last 2 MiB below 4 GiB */
	/* GDT: null, null, 64-bit code at 0x10, data at 0x18, TSS at 0x20 */
	assert_int_equal(rd64(m.base + 0x500), 0);
	assert_int_equal(rd64(m.base + 0x510), 0x00AF9B000000FFFFULL);
	assert_int_equal(rd64(m.base + 0x518), 0x00CF93000000FFFFULL);
	assert_int_equal(rd64(m.base + 0x520) & 0xFFFF, 0x67);
	mem_destroy(&m);

	assert_int_equal(mem_init(&m, 0x9000), 0);   /* no room for the PML4 */
	assert_int_equal(boot_setup_tables(&m), -ENOMEM);
	mem_destroy(&m);
}

/* --- boot_load --- */

static void test_load_not_a_kernel(void **state)
{
	struct guest_mem m;
	struct boot_info bi;

	assert_int_equal(mem_init(&m, 512 * MiB), 0);
	assert_int_equal(boot_load(&m, "/etc/passwd", NULL, "", &bi, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "bzImage"));
	assert_true(boot_load(&m, "/nonexistent/vmlinuz-x", NULL, "", &bi, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "/nonexistent/vmlinuz-x"));
	assert_int_equal(boot_load(&m, "/tmp", NULL, "", &bi, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "/tmp"));
	mem_destroy(&m);

	assert_int_equal(mem_init(&m, 8 * MiB), 0);
	assert_int_equal(boot_load(&m, "/etc/passwd", NULL, "", &bi, err, sizeof(err)), -ENOMEM);
	mem_destroy(&m);
}

static void test_load_synthetic_bzimage(void **state)
{
	struct guest_mem m;
	struct boot_info bi = { 0 };
	char *path;
	const uint8_t *bp;

	make_bzimage(0x020F, 0x7F);
	path = write_temp(img, sizeof(img));
	assert_int_equal(mem_init(&m, 64 * MiB), 0);
	memset(m.base + BOOT_PARAMS_ADDR, 0xEE, 4096);
	assert_int_equal(boot_load(&m, path, NULL, "hello", &bi, err, sizeof(err)), 0);
	bp = m.base + BOOT_PARAMS_ADDR;
	assert_int_equal(bi.entry, 0x100200);
	assert_int_equal(bi.boot_params, BOOT_PARAMS_ADDR);
	/* protected-mode part at 1 MiB */
	assert_memory_equal(m.base + 0x100000, img + 4096, sizeof(img) - 4096);
	/* setup header copied, then the loader's fields */
	assert_memory_equal(bp + 0x202, "HdrS", 4);
	assert_int_equal(rd16(bp + 0x206), 0x020F);
	assert_int_equal(rd32(bp + 0x260), 0x400000);
	assert_int_equal(bp[0x210], 0xFF);
	assert_int_equal(bp[0x211], 0x81);              /* LOADED_HIGH | CAN_USE_HEAP */
	assert_int_equal(rd16(bp + 0x224), 0xFE00);
	assert_int_equal(rd16(bp + 0x1FA), 0xFFFF);
	assert_int_equal(rd32(bp + 0x228), BOOT_CMDLINE_ADDR);
	assert_string_equal((char *)m.base + BOOT_CMDLINE_ADDR, "hello");
	assert_int_equal(rd32(bp + 0x218), 0);          /* no initrd */
	assert_int_equal(bp[0x1E8], 3);
	assert_int_equal(rd64(bp + 0x2D0 + 2 * 20 + 8), 63 * MiB);   /* e820[2].size */
	/* fields outside what the loader writes are zeroed */
	assert_int_equal(bp[0x100], 0);
	assert_int_equal(rd64(m.base + 0x510), 0x00AF9B000000FFFFULL);

	/* too long for the kernel's cmdline_size (2047) */
	{
		char *line = malloc(3001);

		memset(line, 'a', 3000);
		line[3000] = 0;
		assert_int_equal(boot_load(&m, path, NULL, line, &bi, err, sizeof(err)), -E2BIG);
		line[2047] = 0;
		assert_int_equal(boot_load(&m, path, NULL, line, &bi, err, sizeof(err)), 0);
		free(line);
	}
	mem_destroy(&m);

	/* 16 MiB + 4 MiB init_size does not fit in 16 MiB of RAM */
	assert_int_equal(mem_init(&m, 16 * MiB), 0);
	assert_int_equal(boot_load(&m, path, NULL, "", &bi, err, sizeof(err)), -ENOMEM);
	assert_non_null(strstr(err, "MiB"));
	mem_destroy(&m);
	drop_temp(path);
}

static void test_load_initrd_limits(void **state)
{
	struct guest_mem m;
	struct boot_info bi;
	char *kpath, *ipath;
	uint8_t *rd = malloc(12 * MiB);
	uint32_t addr;

	for (size_t i = 0; i < 12 * MiB; i++)
		rd[i] = (uint8_t)(i ^ (i >> 9));
	make_bzimage(0x020F, 0x7F);
	wr32(img + 0x22C, 0x0FFFFFFF);          /* initrd must end below 256 MiB */
	kpath = write_temp(img, sizeof(img));
	ipath = write_temp(rd, 12 * MiB);
	assert_int_equal(mem_init(&m, 512 * MiB), 0);
	assert_int_equal(boot_load(&m, kpath, ipath, "", &bi, err, sizeof(err)), 0);
	addr = rd32(m.base + BOOT_PARAMS_ADDR + 0x218);
	assert_int_equal(rd32(m.base + BOOT_PARAMS_ADDR + 0x21C), 12 * MiB);
	assert_int_equal(addr % 4096, 0);
	assert_true(addr + 12 * MiB <= 256 * MiB);
	assert_true(addr >= 256 * MiB - 12 * MiB - 4096);   /* as high as allowed */
	assert_memory_equal(m.base + addr, rd, 12 * MiB);
	mem_destroy(&m);

	/* 31 MiB RAM: the kernel needs up to 20 MiB; a 12 MiB initrd would have
	 * to start at 19 MiB, inside the decompression area */
	assert_int_equal(mem_init(&m, 31 * MiB), 0);
	assert_int_equal(boot_load(&m, kpath, ipath, "", &bi, err, sizeof(err)), -ENOMEM);
	assert_non_null(strstr(err, "initrd"));
	mem_destroy(&m);
	drop_temp(ipath);

	/* a missing initrd is named */
	assert_int_equal(mem_init(&m, 64 * MiB), 0);
	assert_true(boot_load(&m, kpath, "/nonexistent/initrd.img", "", &bi, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "/nonexistent/initrd.img"));
	mem_destroy(&m);
	drop_temp(kpath);
	free(rd);
}

static char *host_kernel(void)
{
	glob_t g;
	char *path = NULL;

	if (glob("/boot/vmlinuz-*", 0, NULL, &g) == 0 && g.gl_pathc > 0)
		path = strdup(g.gl_pathv[g.gl_pathc - 1]);
	globfree(&g);
	return path;
}

static void test_load_host_kernel(void **state)
{
	static const char cmdline[] = "console=ttyS0 root=/dev/vda panic=-1";
	char *kernel = host_kernel(), *ipath;
	struct guest_mem m;
	struct boot_info bi = { 0 };
	struct bzimage_hdr h;
	uint8_t *file, *rd, *bp;
	size_t flen;
	FILE *fp;
	uint32_t addr, rd_len = 300 * 1024 + 123;

	if (!kernel)
		skip();
	fp = fopen(kernel, "rb");
	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	flen = (size_t)ftell(fp);
	rewind(fp);
	file = malloc(flen);
	assert_int_equal(fread(file, 1, flen, fp), flen);
	fclose(fp);
	assert_int_equal(boot_parse_bzimage(file, flen, &h, err, sizeof(err)), 0);

	rd = malloc(rd_len);
	for (uint32_t i = 0; i < rd_len; i++)
		rd[i] = (uint8_t)(i * 7 + (i >> 12));
	ipath = write_temp(rd, rd_len);
	assert_int_equal(mem_init(&m, 512 * MiB), 0);
	if (boot_load(&m, kernel, ipath, cmdline, &bi, err, sizeof(err)) != 0)
		fail_msg("boot_load(%s): %s", kernel, err);
	bp = m.base + BOOT_PARAMS_ADDR;
	assert_int_equal(bi.entry, 0x100200);
	assert_int_equal(bi.boot_params, BOOT_PARAMS_ADDR);
	assert_int_equal(bp[0x210], 0xFF);
	assert_true(bp[0x211] & 0x01);
	assert_memory_equal(bp + 0x202, "HdrS", 4);
	assert_int_equal(rd16(bp + 0x206), h.version);
	assert_int_equal(rd32(bp + 0x228), 0x20000);
	assert_string_equal((char *)m.base + 0x20000, cmdline);
	assert_int_equal(bp[0x1E8], 3);
	assert_int_equal(rd32(bp + 0x2D0 + 2 * 20 + 16), E820_RAM);
	/* kernel payload at 1 MiB */
	assert_memory_equal(m.base + 0x100000, file + h.setup_size, 4096);
	assert_memory_equal(m.base + 0x100000 + (flen - h.setup_size) - 4096,
			    file + flen - 4096, 4096);
	/* initrd: page aligned, in RAM, above the decompressed kernel */
	addr = rd32(bp + 0x218);
	assert_int_equal(rd32(bp + 0x21C), rd_len);
	assert_int_equal(addr % 4096, 0);
	assert_true(addr >= h.pref_address + h.init_size);
	assert_true((uint64_t)addr + rd_len <= 512 * MiB);
	assert_true((uint64_t)addr + rd_len - 1 <= h.initrd_max);
	assert_memory_equal(m.base + addr, rd, rd_len);

	mem_destroy(&m);
	drop_temp(ipath);
	free(rd);
	free(file);
	free(kernel);
}

/* --- ELF64 kernels --- */

#define ELF_VADDR 0xFFFFFFFF80200000ULL
#define ELF_CODE 64

/* Ehdr + one PT_LOAD Phdr + ELF_CODE bytes of "code" at offset 0x100. */
static size_t make_elf(uint8_t *buf, uint64_t paddr, uint64_t memsz)
{
	Elf64_Ehdr *eh = (Elf64_Ehdr *)buf;
	Elf64_Phdr *ph = (Elf64_Phdr *)(buf + sizeof(*eh));

	memset(buf, 0, 0x100 + ELF_CODE);
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = ELF_VADDR + 0x10;
	eh->e_phoff = sizeof(*eh);
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = 1;
	ph->p_type = PT_LOAD;
	ph->p_flags = PF_R | PF_X;
	ph->p_offset = 0x100;
	ph->p_vaddr = ELF_VADDR;
	ph->p_paddr = paddr;
	ph->p_filesz = ELF_CODE;
	ph->p_memsz = memsz;
	for (int i = 0; i < ELF_CODE; i++)
		buf[0x100 + i] = (uint8_t)(0x90 + i);
	return 0x100 + ELF_CODE;
}

static int load_elf(struct guest_mem *m, const uint8_t *buf, size_t len, const char *initrd,
		    struct boot_info *bi)
{
	char *path = write_temp(buf, len);
	int ret = boot_load(m, path, initrd, "console=ttyS0", bi, err, sizeof(err));

	drop_temp(path);
	return ret;
}

static void test_load_elf(void **state)
{
	uint8_t buf[0x200];
	size_t len = make_elf(buf, 0x200000, 0x1000);
	struct guest_mem m;
	struct boot_info bi = { 0 };

	assert_int_equal(mem_init(&m, 64 * MiB), 0);
	memset(m.base + 0x200000, 0xCC, 0x2000);
	assert_int_equal(load_elf(&m, buf, len, NULL, &bi), 0);
	assert_int_equal(bi.entry, 0x200010);             /* virtual -> physical */
	assert_int_equal(bi.boot_params, BOOT_PARAMS_ADDR);
	assert_memory_equal(m.base + 0x200000, buf + 0x100, ELF_CODE);
	for (size_t i = ELF_CODE; i < 0x1000; i++)        /* bss zeroed ... */
		assert_int_equal(m.base[0x200000 + i], 0);
	assert_int_equal(m.base[0x201000], 0xCC);         /* ... and no further */
	assert_string_equal((char *)m.base + BOOT_CMDLINE_ADDR, "console=ttyS0");
	assert_int_equal(m.base[BOOT_PARAMS_ADDR + 0x1E8], 3);
	assert_int_equal(rd64(m.base + 0x510), 0x00AF9B000000FFFFULL);
	mem_destroy(&m);
}

enum elf_break { EB_NONE, EB_OFFSET, EB_PHNUM, EB_MACHINE, EB_CLASS };

static void test_load_elf_refused(void **state)
{
	static const struct {
		uint64_t paddr, memsz;
		enum elf_break brk;
		const char *why;
	} bad[] = {
		{ 64 * MiB, 0x1000, EB_NONE, "segment 0" },          /* just past RAM */
		{ 64 * MiB - 0x800, 0x1000, EB_NONE, "segment" },    /* straddles the end */
		{ 0x1000, 0x1000, EB_NONE, "segment" },              /* below 1 MiB */
		{ UINT64_MAX - 0x7FF, 0x1000, EB_NONE, "segment" },  /* wraps */
		{ 0x200000, 0x10, EB_NONE, "segment" },              /* filesz > memsz */
		{ 0x200000, 0x1000, EB_OFFSET, "segment" },          /* data past EOF */
		{ 0x200000, 0x1000, EB_PHNUM, "x86-64" },            /* table past EOF */
		{ 0x200000, 0x1000, EB_MACHINE, "x86-64" },
		{ 0x200000, 0x1000, EB_CLASS, "x86-64" },
	};
	uint8_t buf[0x200];
	size_t len;
	struct guest_mem m;
	struct boot_info bi;

	assert_int_equal(mem_init(&m, 64 * MiB), 0);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		len = make_elf(buf, bad[i].paddr, bad[i].memsz);
		if (bad[i].brk == EB_OFFSET)
			((Elf64_Phdr *)(buf + sizeof(Elf64_Ehdr)))->p_offset = 0x180;
		else if (bad[i].brk == EB_PHNUM)
			((Elf64_Ehdr *)buf)->e_phnum = 100;
		else if (bad[i].brk == EB_MACHINE)
			((Elf64_Ehdr *)buf)->e_machine = EM_386;
		else if (bad[i].brk == EB_CLASS)
			buf[EI_CLASS] = ELFCLASS32;
		err[0] = 0;
		if (load_elf(&m, buf, len, NULL, &bi) != -ENOEXEC || !strstr(err, bad[i].why))
			fail_msg("bad ELF #%zu accepted or wrong reason: '%s'", i, err);
	}
	len = make_elf(buf, 0x200000, 0x1000);             /* ELF: up to 4095 bytes */
	{
		char *path = write_temp(buf, len);
		char line[BOOT_CMDLINE_MAX + 1];

		memset(line, 'y', sizeof(line));
		line[BOOT_CMDLINE_MAX] = 0;
		assert_int_equal(boot_load(&m, path, NULL, line, &bi, err, sizeof(err)), -E2BIG);
		line[BOOT_CMDLINE_MAX - 1] = 0;
		assert_int_equal(boot_load(&m, path, NULL, line, &bi, err, sizeof(err)), 0);
		assert_int_equal(strlen((char *)m.base + BOOT_CMDLINE_ADDR), BOOT_CMDLINE_MAX - 1);
		drop_temp(path);
	}
	mem_destroy(&m);
}

/*
 * BUG (src/vmm/boot.c:313-320 with 338): for an ELF kernel kernel_end stays
 * 0, so boot_place_initrd's "addr < kernel_end" guard never fires and an
 * initrd that does not fit above the kernel is written over its segments.
 * Fix: have boot_load_elf report the highest p_paddr + p_memsz as kernel_end.
 */
static void test_load_elf_initrd_overlap(void **state)
{
	uint8_t buf[0x200];
	size_t len = make_elf(buf, 0x200000, 0x100000);    /* [2 MiB, 3 MiB) */
	uint8_t *rd = calloc(1, 14 * MiB);
	char *ipath = write_temp(rd, 14 * MiB);
	struct guest_mem m;
	struct boot_info bi;
	uint32_t addr = 0;
	bool intact = false;
	int ret;

	free(rd);
	assert_int_equal(mem_init(&m, 16 * MiB), 0);
	ret = load_elf(&m, buf, len, ipath, &bi);
	if (ret == 0) {
		addr = rd32(m.base + BOOT_PARAMS_ADDR + 0x218);
		intact = !memcmp(m.base + 0x200000, buf + 0x100, ELF_CODE);
	}
	mem_destroy(&m);
	drop_temp(ipath);
	if (ret == 0) {
		if (addr < 0x300000 || !intact)
			fail_msg("initrd placed at %#x over the ELF kernel at [0x200000, 0x300000)%s",
				 addr, intact ? "" : " and overwrote it");
	} else {
		assert_int_equal(ret, -ENOMEM);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_refused),
		cmocka_unit_test(test_e820_512m),
		cmocka_unit_test(test_e820_5g),
		cmocka_unit_test(test_setup_tables),
		cmocka_unit_test(test_load_not_a_kernel),
		cmocka_unit_test(test_load_synthetic_bzimage),
		cmocka_unit_test(test_load_initrd_limits),
		cmocka_unit_test(test_load_host_kernel),
		cmocka_unit_test(test_load_elf),
		cmocka_unit_test(test_load_elf_refused),
		cmocka_unit_test(test_load_elf_initrd_overlap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
