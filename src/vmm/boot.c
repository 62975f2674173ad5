/* x86-64 Linux boot protocol (Documentation/x86/boot.rst): bzImage or ELF64
 * kernel, initrd, boot_params with e820 and command line, page tables and a
 * GDT, and the boot vCPU's registers for the 64-bit entry point. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <elf.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "vmm/boot.h"

/* Offsets into boot_params and its embedded setup header. */
#define BP_EXT_RAMDISK_IMAGE 0x0C0
#define BP_EXT_RAMDISK_SIZE  0x0C4
#define BP_EXT_CMD_LINE_PTR  0x0C8
#define BP_E820_ENTRIES      0x1E8
#define BP_HDR               0x1F1
#define BP_SETUP_SECTS       0x1F1
#define BP_VID_MODE          0x1FA
#define BP_BOOT_FLAG         0x1FE
#define BP_HEADER            0x202
#define BP_VERSION           0x206
#define BP_TYPE_OF_LOADER    0x210
#define BP_LOADFLAGS         0x211
#define BP_RAMDISK_IMAGE     0x218
#define BP_RAMDISK_SIZE      0x21C
#define BP_HEAP_END_PTR      0x224
#define BP_CMD_LINE_PTR      0x228
#define BP_INITRD_ADDR_MAX   0x22C
#define BP_XLOADFLAGS        0x236
#define BP_CMDLINE_SIZE      0x238
#define BP_PREF_ADDRESS      0x258
#define BP_INIT_SIZE         0x260
#define BP_HDR_END           0x268
#define BP_E820_TABLE        0x2D0

#define LOADED_HIGH   0x01
#define CAN_USE_HEAP  0x80
#define XLF_KERNEL_64 0x01
#define BOOT_STACK    0x8FF0ULL

static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

int boot_parse_bzimage(const uint8_t *img, size_t len, struct bzimage_hdr *h, char *err,
		       size_t errlen)
{
	unsigned sects;

	memset(h, 0, sizeof(*h));
	if (len < BP_HDR_END || get16(img + BP_BOOT_FLAG) != 0xAA55 ||
	    memcmp(img + BP_HEADER, "HdrS", 4) != 0) {
		snprintf(err, errlen, "not a Linux bzImage (no boot header)");
		return -ENOEXEC;
	}
	h->version = get16(img + BP_VERSION);
	if (h->version < 0x020C) {
		snprintf(err, errlen, "boot protocol %u.%02u is too old (need 2.12)",
			 h->version >> 8, h->version & 0xFF);
		return -ENOEXEC;
	}
	h->xloadflags = get16(img + BP_XLOADFLAGS);
	if (!(h->xloadflags & XLF_KERNEL_64)) {
		snprintf(err, errlen, "kernel has no 64-bit entry point");
		return -ENOEXEC;
	}
	sects = img[BP_SETUP_SECTS] ? img[BP_SETUP_SECTS] : 4;
	h->setup_size = (sects + 1) * 512;
	if (h->setup_size >= len) {
		snprintf(err, errlen, "bzImage truncated (setup is %u bytes, file %zu)",
			 h->setup_size, len);
		return -ENOEXEC;
	}
	h->loadflags = img[BP_LOADFLAGS];
	h->initrd_max = get32(img + BP_INITRD_ADDR_MAX);
	h->cmdline_max = get32(img + BP_CMDLINE_SIZE);
	h->pref_address = get64(img + BP_PREF_ADDRESS);
	h->init_size = get32(img + BP_INIT_SIZE);
	return 0;
}

int boot_build_e820(const struct guest_mem *mem, struct boot_e820 *t, int max)
{
	uint64_t low = mem_low_end(mem);
	int n = 0;

	if (max < 4)
		return 0;
	t[n++] = (struct boot_e820){ 0, BOOT_EBDA_START, E820_RAM };
	t[n++] = (struct boot_e820){ BOOT_EBDA_START, BOOT_HIMEM_START - BOOT_EBDA_START,
				     E820_RESERVED };
	if (low > BOOT_HIMEM_START)
		t[n++] = (struct boot_e820){ BOOT_HIMEM_START, low - BOOT_HIMEM_START, E820_RAM };
	if (mem->nr_regions > 1)
		t[n++] = (struct boot_e820){ mem->regions[1].gpa, mem->regions[1].size, E820_RAM };
	return n;
}

int boot_setup_tables(const struct guest_mem *mem)
{
	static const uint64_t gdt[] = {
		0, 0,
		0x00AF9B000000FFFFULL,   /* 0x10: 64-bit code */
		0x00CF93000000FFFFULL,   /* 0x18: data */
		0x00808B0000000067ULL,   /* 0x20: TSS */
	};
	uint64_t *pml4 = mem_gpa_ptr(mem, BOOT_PML4_ADDR, PAGE_SIZE);
	uint64_t *pdpt = mem_gpa_ptr(mem, BOOT_PDPT_ADDR, PAGE_SIZE);
	uint64_t *pd = mem_gpa_ptr(mem, BOOT_PD_ADDR, 4 * PAGE_SIZE);

	if (!pml4 || !pdpt || !pd || mem_write(mem, BOOT_GDT_ADDR, gdt, sizeof(gdt)))
		return -ENOMEM;
	memset(pml4, 0, PAGE_SIZE);
	memset(pdpt, 0, PAGE_SIZE);
	pml4[0] = BOOT_PDPT_ADDR | 0x03;
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (BOOT_PD_ADDR + i * PAGE_SIZE) | 0x03;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | 0x83;    /* present, writable, 2 MiB */
	return 0;
}

static int boot_read_file(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	size_t done = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = -EIO;

	*buf = NULL;
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s is not a regular file", path);
		ret = -EINVAL;
		goto out;
	}
	*len = (size_t)st.st_size;
	*buf = malloc(*len ? *len : 1);
	if (!*buf) {
		ret = -ENOMEM;
		goto out;
	}
	while (done < *len) {
		ssize_t n = read(fd, *buf + done, *len - done);

		if (n <= 0) {
			snprintf(err, errlen, "cannot read %s", path);
			goto out;
		}
		done += (size_t)n;
	}
	ret = 0;
out:
	if (ret) {
		free(*buf);
		*buf = NULL;
	}
	close(fd);
	return ret;
}

/* Loads an ELF64 x86-64 executable's PT_LOAD segments at their physical
 * addresses; sets *entry. Returns 1 if IMG is not ELF, 0 or -errno. */
static int boot_load_elf(const struct guest_mem *mem, const uint8_t *img, size_t len,
			 uint64_t *entry, uint64_t *end, char *err, size_t errlen)
{
	const Elf64_Ehdr *eh = (const void *)img;

	if (len < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
		return 1;
	if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_machine != EM_X86_64 ||
	    eh->e_type != ET_EXEC || eh->e_phentsize != sizeof(Elf64_Phdr) ||
	    eh->e_phoff > len || (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > len - eh->e_phoff) {
		snprintf(err, errlen, "ELF kernel is not an x86-64 executable");
		return -ENOEXEC;
	}
	*entry = eh->e_entry;
	for (int i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = (const void *)(img + eh->e_phoff + i * sizeof(*ph));
		uint8_t *dst;

		if (ph->p_type != PT_LOAD)
			continue;
		dst = mem_gpa_ptr(mem, ph->p_paddr, ph->p_memsz);
		if (!dst || ph->p_filesz > ph->p_memsz || ph->p_offset > len ||
		    ph->p_filesz > len - ph->p_offset || ph->p_paddr < BOOT_HIMEM_START) {
			snprintf(err, errlen, "ELF segment %d does not fit guest RAM", i);
			return -ENOEXEC;
		}
		memcpy(dst, img + ph->p_offset, ph->p_filesz);
		if (ph->p_paddr + ph->p_memsz > *end)
			*end = ph->p_paddr + ph->p_memsz;
		memset(dst + ph->p_filesz, 0, ph->p_memsz - ph->p_filesz);
		if (*entry >= ph->p_vaddr && *entry - ph->p_vaddr < ph->p_memsz)
			*entry = *entry - ph->p_vaddr + ph->p_paddr;
	}
	return 0;
}

int boot_probe(const char *kernel, char *err, size_t errlen)
{
	struct bzimage_hdr h;
	uint8_t *img;
	size_t len;
	int ret = boot_read_file(kernel, &img, &len, err, errlen);

	if (ret)
		return ret;
	if (len >= SELFMAG && !memcmp(img, ELFMAG, SELFMAG)) {
		const Elf64_Ehdr *eh = (const void *)img;

		ret = len >= sizeof(*eh) && eh->e_ident[EI_CLASS] == ELFCLASS64 &&
		      eh->e_machine == EM_X86_64 ? 0 : -ENOEXEC;
		if (ret)
			snprintf(err, errlen, "%s: ELF file is not an x86-64 kernel", kernel);
	} else {
		char why[200];

		ret = boot_parse_bzimage(img, len, &h, why, sizeof(why));
		if (ret)
			snprintf(err, errlen, "%s: %s", kernel, why);
	}
	free(img);
	return ret;
}

/* Places the initrd as high as allowed below 4 GiB, above the kernel's
 * decompression area; fills its address and size into boot_params BP. */
static int boot_place_initrd(const struct guest_mem *mem, uint8_t *bp, const char *path,
			     uint64_t max, uint64_t kernel_end, char *err, size_t errlen)
{
	uint8_t *buf;
	size_t len;
	uint64_t top = mem_low_end(mem), addr;
	int ret = boot_read_file(path, &buf, &len, err, errlen);

	if (ret)
		return ret;
	if (max && max + 1 < top)
		top = max + 1;
	addr = (top - len) & ~(PAGE_SIZE - 1);
	if (len == 0 || len > top || addr < kernel_end) {
		snprintf(err, errlen, "initrd %s (%zu bytes) does not fit in guest RAM", path, len);
		ret = -ENOMEM;
	} else if (mem_write(mem, addr, buf, len)) {
		ret = -ENOMEM;
	} else {
		put32(bp + BP_RAMDISK_IMAGE, (uint32_t)addr);
		put32(bp + BP_RAMDISK_SIZE, (uint32_t)len);
	}
	free(buf);
	return ret;
}

/* Copies a bzImage's setup header and protected-mode part into place. */
static int boot_load_bzimage(const struct guest_mem *mem, uint8_t *bp, const uint8_t *img,
			     size_t len, const struct bzimage_hdr *h, uint64_t *kernel_end,
			     char *err, size_t errlen)
{
	size_t hdr_len = (size_t)BP_HEADER + img[0x201] - BP_HDR;
	uint64_t payload = len - h->setup_size;

	if (hdr_len > BP_HDR_END - BP_HDR)
		hdr_len = BP_HDR_END - BP_HDR;
	memcpy(bp + BP_HDR, img + BP_HDR, hdr_len);
	if (mem_write(mem, BOOT_KERNEL_ADDR, img + h->setup_size, payload)) {
		snprintf(err, errlen, "kernel (%" PRIu64 " bytes) does not fit guest RAM", payload);
		return -ENOMEM;
	}
	bp[BP_TYPE_OF_LOADER] = 0xFF;
	bp[BP_LOADFLAGS] |= CAN_USE_HEAP | LOADED_HIGH;
	put16(bp + BP_HEAP_END_PTR, 0xFE00);
	put16(bp + BP_VID_MODE, 0xFFFF);
	*kernel_end = BOOT_KERNEL_ADDR + payload;
	if (h->pref_address + h->init_size > *kernel_end)
		*kernel_end = h->pref_address + h->init_size;
	if (*kernel_end > mem_low_end(mem)) {
		snprintf(err, errlen, "kernel needs %" PRIu64 " MiB of RAM to decompress",
			 (*kernel_end >> 20) + 1);
		return -ENOMEM;
	}
	return 0;
}

int boot_load(const struct guest_mem *mem, const char *kernel, const char *initrd,
	      const char *cmdline, struct boot_info *out, char *err, size_t errlen)
{
	uint8_t *bp = mem_gpa_ptr(mem, BOOT_PARAMS_ADDR, PAGE_SIZE);
	struct boot_e820 e820[BOOT_E820_MAX];
	struct bzimage_hdr h = { 0 };
	uint64_t kernel_end = 0, initrd_max = 0xFFFFFFFF;
	size_t len, clen = cmdline ? strlen(cmdline) : 0;
	uint8_t *img;
	int ret, n;

	if (!bp || mem_low_end(mem) < (16ULL << 20)) {
		snprintf(err, errlen, "guest RAM too small to boot");
		return -ENOMEM;
	}
	ret = boot_read_file(kernel, &img, &len, err, errlen);
	if (ret)
		return ret;
	memset(bp, 0, PAGE_SIZE);
	ret = boot_load_elf(mem, img, len, &out->entry, &kernel_end, err, errlen);
	if (ret == 1) {
		ret = boot_parse_bzimage(img, len, &h, err, errlen);
		if (!ret)
			ret = boot_load_bzimage(mem, bp, img, len, &h, &kernel_end, err, errlen);
		out->entry = BOOT_KERNEL_ADDR + 0x200;
		initrd_max = h.initrd_max;
	}
	free(img);
	if (ret)
		goto fail;
	if (h.cmdline_max && clen > h.cmdline_max) {
		snprintf(err, errlen, "command line is %zu bytes, kernel takes %u", clen,
			 h.cmdline_max);
		ret = -E2BIG;
		goto fail;
	}
	if (clen >= BOOT_CMDLINE_MAX || mem_write(mem, BOOT_CMDLINE_ADDR, cmdline ? cmdline : "",
						   clen + 1)) {
		snprintf(err, errlen, "command line longer than %d bytes", BOOT_CMDLINE_MAX - 1);
		ret = -E2BIG;
		goto fail;
	}
	put32(bp + BP_CMD_LINE_PTR, (uint32_t)BOOT_CMDLINE_ADDR);
	if (initrd) {
		ret = boot_place_initrd(mem, bp, initrd, initrd_max, kernel_end, err, errlen);
		if (ret)
			goto fail;
	}
	n = boot_build_e820(mem, e820, BOOT_E820_MAX);
	bp[BP_E820_ENTRIES] = (uint8_t)n;
	memcpy(bp + BP_E820_TABLE, e820, (size_t)n * sizeof(e820[0]));
	ret = boot_setup_tables(mem);
	if (ret) {
		snprintf(err, errlen, "cannot write page tables");
		goto fail;
	}
	out->boot_params = BOOT_PARAMS_ADDR;
	return 0;
fail:
	return ret;
}

static void boot_seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code)
{
	*s = (struct kvm_segment){
		.base = 0, .limit = 0xFFFFFFFF, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .db = code ? 0 : 1, .s = 1, .l = code ? 1 : 0, .g = 1,
	};
}

int boot_setup_vcpu(int fd, const struct boot_info *info)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = { 0 };
	struct kvm_fpu fpu = { .fcw = 0x37F, .mxcsr = 0x1F80 };

	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	boot_seg(&sregs.cs, 0x10, 0xB, true);
	boot_seg(&sregs.ds, 0x18, 0x3, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.tr = (struct kvm_segment){ .selector = 0x20, .limit = 0x67, .type = 0xB,
					 .present = 1 };
	sregs.gdt.base = BOOT_GDT_ADDR;
	sregs.gdt.limit = 5 * 8 - 1;
	sregs.cr3 = BOOT_PML4_ADDR;
	sregs.cr4 |= 0x20;                  /* PAE */
	sregs.cr0 |= 0x80000001;            /* PG, PE */
	sregs.efer |= 0x500;                /* LME, LMA */
	if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	regs.rflags = 2;
	regs.rip = info->entry;
	regs.rsi = info->boot_params;
	regs.rsp = regs.rbp = BOOT_STACK;
	if (ioctl(fd, KVM_SET_REGS, &regs) < 0 || ioctl(fd, KVM_SET_FPU, &fpu) < 0)
		return -errno;
	return 0;
}
