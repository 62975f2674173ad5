/* I/O dispatch: devices register handlers for port-I/O or MMIO ranges with an
 * opaque pointer; vCPU exits are routed here. Registration happens before the
 * vCPUs start, so lookups need no lock; handlers do their own locking. */
#ifndef VMM_BUS_H
#define VMM_BUS_H

#include <stdbool.h>
#include <stdint.h>
#include "vmm/log.h"

#define BUS_MAX_RANGES 64

enum bus_space { BUS_PIO, BUS_MMIO };

/* Handles an access at ADDR-base OFFSET of LEN (1, 2, 4 or 8) bytes. For a
 * read, fills DATA; for a write, DATA holds the value (little-endian). */
typedef void (*bus_handler_fn)(void *opaque, uint64_t offset, uint8_t *data,
			       uint32_t len, bool is_write);

struct bus_range {
	uint64_t base;
	uint64_t len;
	bus_handler_fn fn;
	void *opaque;
	const char *name;
};

struct bus {
	int nr;
	struct bus_range ranges[BUS_MAX_RANGES];
};

/* Registers [base, base+len) on BUS; -EEXIST on overlap, -ENOSPC when full. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len,
		 bus_handler_fn fn, void *opaque, const char *name) VMM_MUST_CHECK;
/* Removes the range starting at BASE; -ENOENT if none. */
int bus_unregister(struct bus *bus, uint64_t base);
/* Routes an access; returns true if a handler took it. An unhandled read
 * returns all ones in DATA, an unhandled write is dropped. */
bool bus_dispatch(struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len,
		  bool is_write);

#endif
