/* Guest physical memory: one anonymous mapping, 2 MiB-aligned and offered
 * transparent huge pages, holds all guest RAM and is split into KVM slots
 * around the 32-bit PCI hole. Guest addresses become host pointers only
 * through mem_gpa_ptr(), which checks range and overflow. */
#ifndef VMM_MEM_H
#define VMM_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "vmm/log.h"

#define PAGE_SIZE 4096ULL
#define MEM_MAX_REGIONS 2
/* Guest RAM below 4 GiB ends here; [MEM_HOLE_START, 4 GiB) is MMIO. */
#define MEM_HOLE_START 0xC0000000ULL
#define MEM_4G 0x100000000ULL

struct mem_region {
	uint64_t gpa;      /* first guest physical address */
	uint64_t size;     /* bytes, page multiple */
	uint64_t offset;   /* offset of this region in the RAM mapping */
	uint8_t *host;     /* host mapping of the region */
};

/* Immutable after mem_init() but for `dirty`; safe to read from any thread. */
struct guest_mem {
	uint64_t size;          /* total RAM bytes */
	uint8_t *base;          /* host mapping of all RAM */
	int nr_regions;
	struct mem_region regions[MEM_MAX_REGIONS];
	/* Pages the VMM itself wrote (device DMA), one bit per RAM page, set by
	 * mem_mark_dirty() from any thread while `dirty_on` (migration tracking).
	 * Lives as long as the memory, so a device thread never writes a freed
	 * bitmap; the migration code clears and harvests it atomically. */
	uint64_t *dirty;
	_Atomic bool dirty_on;
};

/* Creates SIZE bytes of guest RAM (a page multiple, > 0) and maps
 * it; returns 0 or -errno. */
int mem_init(struct guest_mem *mem, uint64_t size) VMM_MUST_CHECK;
/* Unmaps guest RAM; safe on a zeroed or failed struct. */
void mem_destroy(struct guest_mem *mem);
/* Returns a host pointer for [gpa, gpa+len) if it lies entirely inside one
 * RAM region, NULL otherwise (including on overflow or len == 0). */
void *mem_gpa_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len);
/* Copies LEN bytes from guest memory at GPA into BUF; 0 or -EFAULT. */
int mem_read(const struct guest_mem *mem, uint64_t gpa, void *buf, uint64_t len) VMM_MUST_CHECK;
/* Copies LEN bytes from BUF into guest memory at GPA; 0 or -EFAULT. */
int mem_write(const struct guest_mem *mem, uint64_t gpa, const void *buf, uint64_t len) VMM_MUST_CHECK;
/* Records that the VMM wrote the LEN bytes at host pointer P inside guest RAM
 * (devices call this after writing guest buffers, never before), so a running
 * migration resends those pages. Does nothing when no migration is tracking
 * or the range is not guest RAM. */
void mem_mark_dirty(const struct guest_mem *mem, const void *p, size_t len);
/* Returns the RAM page index of GPA (its offset in the mapping / 4 KiB), or
 * -1 if GPA is not RAM. */
int64_t mem_gpa_page(const struct guest_mem *mem, uint64_t gpa);
/* Returns the GPA of RAM page index PAGE (which must be < size/PAGE_SIZE). */
uint64_t mem_page_gpa(const struct guest_mem *mem, uint64_t page);
/* Returns the end (exclusive) of RAM below the PCI hole. */
uint64_t mem_low_end(const struct guest_mem *mem);

#endif
