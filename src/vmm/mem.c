/* Guest RAM: one anonymous mapping (huge pages where the host has them),
 * split into KVM regions around the 32-bit PCI hole, and the single
 * bounds-checked way to turn a GPA into a pointer. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "vmm/mem.h"

/* Maps SIZE bytes of anonymous memory at a 2 MiB boundary (huge pages, in
 * the host and in KVM's EPT, need guest and host addresses congruent modulo
 * 2 MiB); NULL with errno set. */
static uint8_t *mem_map_aligned(uint64_t size)
{
	const uint64_t align = 2ULL << 20;
	uint8_t *p = mmap(NULL, size + align, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t *a;

	if (p == MAP_FAILED)
		return NULL;
	a = (uint8_t *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
	if (a > p)
		munmap(p, (size_t)(a - p));
	munmap(a + size, (size_t)(p + align - a));
	return a;
}

int mem_init(struct guest_mem *mem, uint64_t size)
{
	uint64_t low;

	memset(mem, 0, sizeof(*mem));
	if (size == 0 || size % PAGE_SIZE)
		return -EINVAL;
	mem->base = mem_map_aligned(size);
	if (!mem->base)
		return -errno;
	/* Transparent huge pages where the host allows them (THP "madvise" or
	 * "always"): shorter guest page walks, and one fault per 2 MiB when a
	 * migration fills fresh RAM. */
	madvise(mem->base, size, MADV_HUGEPAGE);
	madvise(mem->base, size, MADV_MERGEABLE);
	mem->size = size;
	low = size < MEM_HOLE_START ? size : MEM_HOLE_START;
	mem->regions[0] = (struct mem_region){ 0, low, 0, mem->base };
	mem->nr_regions = 1;
	if (size > low) {
		mem->regions[1] = (struct mem_region){ MEM_4G, size - low, low, mem->base + low };
		mem->nr_regions = 2;
	}
	mem->dirty = calloc((size / PAGE_SIZE + 63) / 64, 8);
	if (!mem->dirty) {
		mem_destroy(mem);
		return -ENOMEM;
	}
	return 0;
}

void mem_destroy(struct guest_mem *mem)
{
	if (mem->base)
		munmap(mem->base, mem->size);
	free(mem->dirty);
	memset(mem, 0, sizeof(*mem));
}

void *mem_gpa_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	for (int i = 0; i < mem->nr_regions; i++) {
		const struct mem_region *r = &mem->regions[i];

		if (gpa < r->gpa || len == 0)
			continue;
		if (gpa - r->gpa >= r->size || len > r->size - (gpa - r->gpa))
			continue;
		return r->host + (gpa - r->gpa);
	}
	return NULL;
}

int mem_read(const struct guest_mem *mem, uint64_t gpa, void *buf, uint64_t len)
{
	void *p = mem_gpa_ptr(mem, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(buf, p, len);
	return 0;
}

int mem_write(const struct guest_mem *mem, uint64_t gpa, const void *buf, uint64_t len)
{
	void *p = mem_gpa_ptr(mem, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(p, buf, len);
	return 0;
}

uint64_t mem_low_end(const struct guest_mem *mem)
{
	return mem->nr_regions ? mem->regions[0].size : 0;
}

int64_t mem_gpa_page(const struct guest_mem *mem, uint64_t gpa)
{
	for (int i = 0; i < mem->nr_regions; i++) {
		const struct mem_region *r = &mem->regions[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->size)
			return (int64_t)((r->offset + (gpa - r->gpa)) / PAGE_SIZE);
	}
	return -1;
}

uint64_t mem_page_gpa(const struct guest_mem *mem, uint64_t page)
{
	uint64_t off = page * PAGE_SIZE;

	for (int i = mem->nr_regions - 1; i >= 0; i--)
		if (off >= mem->regions[i].offset)
			return mem->regions[i].gpa + (off - mem->regions[i].offset);
	return off;
}

void mem_mark_dirty(const struct guest_mem *mem, const void *p, size_t len)
{
	uint64_t *bm = mem->dirty;
	uintptr_t base = (uintptr_t)mem->base, a = (uintptr_t)p;

	if (!atomic_load_explicit(&mem->dirty_on, memory_order_acquire) || len == 0 ||
	    a < base || a - base >= mem->size || len > mem->size - (a - base))
		return;
	for (uint64_t pg = (a - base) / PAGE_SIZE; pg <= (a - base + len - 1) / PAGE_SIZE; pg++)
		__atomic_fetch_or(&bm[pg / 64], 1ULL << (pg % 64), __ATOMIC_RELEASE);
}
