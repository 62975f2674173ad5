/* Guest RAM: a memfd mapped once, split into KVM regions around the 32-bit
 * PCI hole, and the single bounds-checked way to turn a GPA into a pointer. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "vmm/mem.h"

int mem_init(struct guest_mem *mem, uint64_t size)
{
	uint64_t low;
	int err;

	memset(mem, 0, sizeof(*mem));
	mem->fd = -1;
	if (size == 0 || size % PAGE_SIZE)
		return -EINVAL;
	mem->fd = memfd_create("vmm-guest-ram", MFD_CLOEXEC);
	if (mem->fd < 0)
		return -errno;
	if (ftruncate(mem->fd, (off_t)size) < 0)
		goto fail_errno;
	mem->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
			 mem->fd, 0);
	if (mem->base == MAP_FAILED) {
		mem->base = NULL;
		goto fail_errno;
	}
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

fail_errno:
	err = -errno;
	mem_destroy(mem);
	return err;
}

void mem_destroy(struct guest_mem *mem)
{
	if (mem->base)
		munmap(mem->base, mem->size);
	if (mem->fd >= 0)
		close(mem->fd);
	free(mem->dirty);
	memset(mem, 0, sizeof(*mem));
	mem->fd = -1;
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
