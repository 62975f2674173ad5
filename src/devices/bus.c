/* Port-I/O and MMIO dispatch: a small table of ranges, looked up linearly
 * (there are a handful of devices; the hot ones are served by ioeventfd). */
#include <errno.h>
#include <string.h>
#include "vmm/bus.h"

int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_handler_fn fn,
		 void *opaque, const char *name)
{
	if (len == 0 || base + len < base)
		return -EINVAL;
	for (int i = 0; i < bus->nr; i++) {
		struct bus_range *r = &bus->ranges[i];

		if (base < r->base + r->len && r->base < base + len)
			return -EEXIST;
	}
	if (bus->nr == BUS_MAX_RANGES)
		return -ENOSPC;
	bus->ranges[bus->nr++] = (struct bus_range){ base, len, fn, opaque, name };
	return 0;
}

int bus_unregister(struct bus *bus, uint64_t base)
{
	for (int i = 0; i < bus->nr; i++) {
		if (bus->ranges[i].base != base)
			continue;
		memmove(&bus->ranges[i], &bus->ranges[i + 1],
			(size_t)(bus->nr - i - 1) * sizeof(bus->ranges[0]));
		bus->nr--;
		return 0;
	}
	return -ENOENT;
}

bool bus_dispatch(struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write)
{
	for (int i = 0; i < bus->nr; i++) {
		struct bus_range *r = &bus->ranges[i];

		if (addr < r->base || addr - r->base >= r->len)
			continue;
		r->fn(r->opaque, addr - r->base, data, len, is_write);
		return true;
	}
	if (!is_write)
		memset(data, 0xff, len);
	return false;
}
