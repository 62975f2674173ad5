/* PCI host bridge and type-0 devices: config mechanism #1, BAR sizing and
 * moves, capability lists, MSI-X through KVM irqfds, and the BAR dispatch
 * inside the one MMIO window the bus owns (see pci.h for the locking). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "vmm/bus.h"
#include "vmm/irq.h"
#include "vmm/pci.h"
#include "vmm/vmstate.h"

static const struct vmstate_desc pci_msix_entry_vmstate = {
	.name = "pci-msix-entry", .version_id = 1, .minimum_version_id = 1,
	.size = sizeof(struct pci_msix_entry),
	.fields = (const struct vmstate_field[]){
		VMSTATE_U32(struct pci_msix_entry, addr_lo),
		VMSTATE_U32(struct pci_msix_entry, addr_hi),
		VMSTATE_U32(struct pci_msix_entry, data),
		VMSTATE_U32(struct pci_msix_entry, ctrl),
		VMSTATE_END,
	},
};

static int pci_dev_post_load(void *opaque, uint32_t version)
{
	struct pci_dev_state *s = opaque;

	if (s->cfg[PCI_HEADER_TYPE] != 0 || s->msix_nr > PCI_MSIX_MAX)
		return -EINVAL;
	if (s->msix_nr < 64 && (s->msix_pba >> s->msix_nr))
		return -EINVAL;
	return 0;
}

const struct vmstate_desc pci_dev_vmstate = {
	.name = "pci-dev", .version_id = 1, .minimum_version_id = 1,
	.size = sizeof(struct pci_dev_state), .post_load = pci_dev_post_load,
	.fields = (const struct vmstate_field[]){
		VMSTATE_BUFFER(struct pci_dev_state, cfg),
		VMSTATE_U16(struct pci_dev_state, msix_nr),
		VMSTATE_U64(struct pci_dev_state, msix_pba),
		VMSTATE_VARRAY_OF_STRUCT(struct pci_dev_state, msix, msix_nr,
					 &pci_msix_entry_vmstate),
		VMSTATE_END,
	},
};

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return get16(p) | (uint32_t)get16(p + 2) << 16; }

void pci_dev_init(struct pci_dev *dev, struct pci_dev_state *st, uint16_t vendor,
		  uint16_t device, uint32_t class_code, uint8_t revision, uint16_t subsys_vendor,
		  uint16_t subsys_id)
{
	uint8_t *c;

	memset(dev, 0, sizeof(*dev));
	dev->st = st ? st : &dev->own_st;
	memset(dev->st, 0, sizeof(*dev->st));
	c = dev->st->cfg;
	pthread_mutex_init(&dev->lock, NULL);
	dev->slot = -1;
	dev->vm_fd = -1;
	dev->next_cap = PCI_CAP_START;
	for (int i = 0; i < PCI_MSIX_MAX; i++)
		dev->msix_fd[i] = dev->msix_gsi[i] = -1;
	put16(c + PCI_VENDOR_ID, vendor);
	put16(c + PCI_DEVICE_ID, device);
	c[PCI_REVISION_ID] = revision;
	c[PCI_CLASS_PROG] = (uint8_t)class_code;
	put16(c + PCI_CLASS_PROG + 1, (uint16_t)(class_code >> 8));
	put16(c + PCI_SUBSYSTEM_VENDOR_ID, subsys_vendor);
	put16(c + PCI_SUBSYSTEM_ID, subsys_id);
	put16(dev->wmask + PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MEMORY |
	      PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
	dev->wmask[PCI_INTERRUPT_LINE] = 0xff;
}

int pci_dev_set_bar(struct pci_dev *dev, int bar, uint64_t size, pci_bar_fn fn, void *opaque)
{
	if (bar < 0 || bar >= PCI_NUM_BARS || size < 16 || size > (1ULL << 31) ||
	    (size & (size - 1)))
		return -EINVAL;
	dev->bars[bar] = (struct pci_bar){ .size = size, .fn = fn, .opaque = opaque };
	put32(dev->wmask + PCI_BAR0 + 4 * bar, ~(uint32_t)(size - 1));
	return 0;
}

int pci_dev_add_cap(struct pci_dev *dev, const void *data, size_t len, const uint8_t *wmask)
{
	unsigned off = dev->next_cap;

	if (len < 2 || off + len > PCI_CFG_SIZE)
		return -ENOSPC;
	memcpy(dev->st->cfg + off, data, len);
	dev->st->cfg[off + 1] = 0;
	if (wmask)
		memcpy(dev->wmask + off, wmask, len);
	dev->wmask[off] = dev->wmask[off + 1] = 0;
	if (dev->last_cap)
		dev->st->cfg[dev->last_cap + 1] = (uint8_t)off;
	else
		dev->st->cfg[PCI_CAPABILITY_LIST] = (uint8_t)off;
	put16(dev->st->cfg + PCI_STATUS, get16(dev->st->cfg + PCI_STATUS) | PCI_STATUS_CAP_LIST);
	dev->last_cap = (uint8_t)off;
	dev->next_cap = (uint8_t)((off + len + 3) & ~3u);
	return (int)off;
}

int pci_msix_init(struct pci_dev *dev, int nr, int bar, uint32_t table_off, uint32_t pba_off,
		  struct irq_router *router, int vm_fd)
{
	uint8_t cap[12] = { PCI_CAP_ID_MSIX }, wm[12] = { 0 };
	int off, err;

	if (nr < 1 || nr > PCI_MSIX_MAX || bar < 0 || bar >= PCI_NUM_BARS ||
	    (table_off & 7) || (pba_off & 7) ||
	    table_off + (uint64_t)nr * PCI_MSIX_ENTRY_SIZE > dev->bars[bar].size ||
	    pba_off + 8 > dev->bars[bar].size)
		return -EINVAL;
	put16(cap + 2, (uint16_t)(nr - 1));
	put32(cap + 4, table_off | (uint32_t)bar);
	put32(cap + 8, pba_off | (uint32_t)bar);
	wm[3] = (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL) >> 8;
	off = pci_dev_add_cap(dev, cap, sizeof(cap), wm);
	if (off < 0)
		return off;
	dev->msix_cap = (uint8_t)off;
	dev->msix_bar = bar;
	dev->msix_table_off = table_off;
	dev->msix_pba_off = pba_off;
	dev->router = router;
	dev->vm_fd = vm_fd;
	dev->st->msix_nr = (uint16_t)nr;
	pci_msix_reset(dev);
	for (int i = 0; i < nr; i++) {
		dev->msix_fd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (dev->msix_fd[i] < 0)
			return -errno;
		if (!router)
			continue;
		dev->msix_gsi[i] = irq_msi_alloc(router);
		if (dev->msix_gsi[i] < 0)
			return dev->msix_gsi[i];
		err = irq_irqfd(vm_fd, dev->msix_fd[i], (uint32_t)dev->msix_gsi[i], true);
		if (err)
			return err;
	}
	return 0;
}

void pci_msix_reset(struct pci_dev *dev)
{
	pthread_mutex_lock(&dev->lock);
	for (int i = 0; i < dev->st->msix_nr; i++)
		dev->st->msix[i] = (struct pci_msix_entry){ .ctrl = PCI_MSIX_ENTRY_CTRL_MASKBIT };
	dev->st->msix_pba = 0;
	if (dev->msix_cap)
		dev->st->cfg[dev->msix_cap + 3] &= (uint8_t)~((PCI_MSIX_FLAGS_ENABLE |
							     PCI_MSIX_FLAGS_MASKALL) >> 8);
	pthread_mutex_unlock(&dev->lock);
}

/* dev->lock held. */
static bool pci_msix_masked(struct pci_dev *dev, int vec)
{
	uint16_t ctl = get16(dev->st->cfg + dev->msix_cap + 2);

	return !(ctl & PCI_MSIX_FLAGS_ENABLE) || (ctl & PCI_MSIX_FLAGS_MASKALL) ||
	       (dev->st->msix[vec].ctrl & PCI_MSIX_ENTRY_CTRL_MASKBIT);
}

/* dev->lock held: route VEC to its current message and fire it. */
static void pci_msix_fire(struct pci_dev *dev, int vec)
{
	struct pci_msix_entry *e = &dev->st->msix[vec];
	uint64_t one = 1;

	if (dev->router && dev->msix_gsi[vec] >= 0 &&
	    irq_msi_route(dev->router, (uint32_t)dev->msix_gsi[vec],
			  e->addr_lo | (uint64_t)e->addr_hi << 32, e->data))
		return;
	if (write(dev->msix_fd[vec], &one, sizeof(one)) < 0) {
		/* counter saturated: an interrupt is pending anyway */
	}
}

/* dev->lock held: deliver whatever became unmasked. */
static void pci_msix_flush_pending(struct pci_dev *dev)
{
	for (int i = 0; i < dev->st->msix_nr; i++) {
		if (!(dev->st->msix_pba & (1ULL << i)) || pci_msix_masked(dev, i))
			continue;
		dev->st->msix_pba &= ~(1ULL << i);
		pci_msix_fire(dev, i);
	}
}

void pci_msix_notify(struct pci_dev *dev, uint16_t vec)
{
	pthread_mutex_lock(&dev->lock);
	if (!dev->msix_cap || vec >= dev->st->msix_nr ||
	    !(get16(dev->st->cfg + dev->msix_cap + 2) & PCI_MSIX_FLAGS_ENABLE))
		goto out;
	if (pci_msix_masked(dev, vec))
		dev->st->msix_pba |= 1ULL << vec;
	else
		pci_msix_fire(dev, vec);
out:
	pthread_mutex_unlock(&dev->lock);
}

bool pci_msix_enabled(struct pci_dev *dev)
{
	bool on;

	pthread_mutex_lock(&dev->lock);
	on = dev->msix_cap && (get16(dev->st->cfg + dev->msix_cap + 2) & PCI_MSIX_FLAGS_ENABLE);
	pthread_mutex_unlock(&dev->lock);
	return on;
}

bool pci_msix_access(struct pci_dev *dev, int bar, uint64_t off, uint8_t *data, uint32_t len,
		     bool is_write)
{
	uint64_t tend = dev->msix_table_off + (uint64_t)dev->st->msix_nr * PCI_MSIX_ENTRY_SIZE;

	if (!dev->msix_cap || bar != dev->msix_bar)
		return false;
	if (off >= dev->msix_pba_off && off < dev->msix_pba_off + 8) {
		if (!is_write) {
			uint64_t v, pos = off - dev->msix_pba_off;

			pthread_mutex_lock(&dev->lock);
			v = dev->st->msix_pba;
			pthread_mutex_unlock(&dev->lock);
			for (uint32_t i = 0; i < len; i++)
				data[i] = pos + i < 8 ? (uint8_t)(v >> (8 * (pos + i))) : 0;
		}
		return true;   /* PBA is read-only */
	}
	if (off < dev->msix_table_off || off >= tend)
		return false;
	off -= dev->msix_table_off;
	/* Only aligned dword/qword accesses are defined; others read 0 / are dropped. */
	if ((len != 4 && len != 8) || (off & (len - 1))) {
		if (!is_write)
			memset(data, 0, len);
		return true;
	}
	pthread_mutex_lock(&dev->lock);
	for (uint32_t done = 0; done < len; done += 4) {
		int vec = (int)((off + done) / PCI_MSIX_ENTRY_SIZE);
		uint32_t *w = (uint32_t *)&dev->st->msix[vec] + ((off + done) % 16) / 4;

		if (!is_write) {
			put32(data + done, *w);
			continue;
		}
		bool was_masked = pci_msix_masked(dev, vec);
		uint32_t v = get32(data + done);

		if (w == &dev->st->msix[vec].ctrl)
			v &= PCI_MSIX_ENTRY_CTRL_MASKBIT;
		*w = v;
		if (!pci_msix_masked(dev, vec) && w != &dev->st->msix[vec].ctrl && dev->router &&
		    dev->msix_gsi[vec] >= 0) {
			/* message changed while live: re-route now */
			struct pci_msix_entry *e = &dev->st->msix[vec];

			(void)!irq_msi_route(dev->router, (uint32_t)dev->msix_gsi[vec],
					     e->addr_lo | (uint64_t)e->addr_hi << 32, e->data);
		}
		if (was_masked && !pci_msix_masked(dev, vec))
			pci_msix_flush_pending(dev);
	}
	pthread_mutex_unlock(&dev->lock);
	return true;
}

/* bus->lock and dev->lock held: recomputes where each BAR is decoded. */
static void pci_dev_update_bars(struct pci_dev *dev)
{
	bool mem_on = get16(dev->st->cfg + PCI_COMMAND) & PCI_COMMAND_MEMORY;

	for (int i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &dev->bars[i];
		uint64_t addr = get32(dev->st->cfg + PCI_BAR0 + 4 * i) & ~0xfULL, old = b->mapped;

		if (!b->size)
			continue;
		if (!mem_on || addr < PCI_MMIO_BASE || addr + b->size > PCI_MMIO_END ||
		    (addr & (b->size - 1)))
			addr = 0;
		if (addr == old)
			continue;
		b->mapped = addr;
		if (dev->map)
			dev->map(dev->map_opaque, i, old, addr);
	}
}

static void pci_dev_cfg_write_locked(struct pci_dev *dev, uint32_t off, const uint8_t *data,
				     uint32_t len)
{
	bool was_masked_all = true, bars = false;

	if (dev->msix_cap)
		was_masked_all = !(get16(dev->st->cfg + dev->msix_cap + 2) & PCI_MSIX_FLAGS_ENABLE) ||
				 (get16(dev->st->cfg + dev->msix_cap + 2) & PCI_MSIX_FLAGS_MASKALL);
	for (uint32_t i = 0; i < len && off + i < PCI_CFG_SIZE; i++) {
		uint8_t m = dev->wmask[off + i];

		dev->st->cfg[off + i] = (uint8_t)((dev->st->cfg[off + i] & ~m) | (data[i] & m));
		if ((off + i >= PCI_COMMAND && off + i < PCI_COMMAND + 2) ||
		    (off + i >= PCI_BAR0 && off + i < PCI_BAR0 + 4 * PCI_NUM_BARS))
			bars = true;
	}
	if (bars)
		pci_dev_update_bars(dev);
	if (dev->msix_cap && was_masked_all)
		pci_msix_flush_pending(dev);
}

void pci_dev_cfg_read(struct pci_dev *dev, uint32_t off, uint8_t *data, uint32_t len)
{
	pthread_mutex_lock(&dev->lock);
	for (uint32_t i = 0; i < len; i++)
		data[i] = off + i < PCI_CFG_SIZE ? dev->st->cfg[off + i] : 0xff;
	pthread_mutex_unlock(&dev->lock);
}

void pci_dev_cfg_write(struct pci_dev *dev, uint32_t off, const uint8_t *data, uint32_t len)
{
	if (dev->bus)
		pthread_mutex_lock(&dev->bus->lock);
	pthread_mutex_lock(&dev->lock);
	pci_dev_cfg_write_locked(dev, off, data, len);
	pthread_mutex_unlock(&dev->lock);
	if (dev->bus)
		pthread_mutex_unlock(&dev->bus->lock);
}

int pci_bus_init(struct pci_bus *bus)
{
	memset(bus, 0, sizeof(*bus));
	pthread_mutex_init(&bus->lock, NULL);
	bus->next_mmio = PCI_MMIO_BASE;
	/* Red Hat's generic PCIe host bridge ids: no Linux quirks attached. */
	pci_dev_init(&bus->host, NULL, 0x1b36, 0x0008, 0x060000, 0, 0x1af4, 0x1100);
	return pci_add_dev(bus, &bus->host, NULL, NULL);
}

int pci_bus_attach(struct pci_bus *bus, struct bus *pio, struct bus *mmio)
{
	/* 0xCF9 (reset control) belongs to the PM device: two ranges around it. */
	int err = bus_register(pio, PCI_CF8_PORT, 1, pci_cfg_pio, bus, "pci-cf8");

	if (!err)
		err = bus_register(pio, PCI_CFC_PORT, 4, pci_data_pio, bus, "pci-cfc");
	if (!err)
		err = bus_register(mmio, PCI_MMIO_BASE, PCI_MMIO_END - PCI_MMIO_BASE, pci_mmio, bus,
				   "pci-mmio");
	return err;
}

int pci_add_dev(struct pci_bus *bus, struct pci_dev *dev, pci_map_fn map, void *map_opaque)
{
	int slot = -1;

	for (int i = 0; i < PCI_MAX_SLOTS && slot < 0; i++)
		if (!bus->slots[i])
			slot = i;
	if (slot < 0)
		return -ENOSPC;
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		uint64_t sz = dev->bars[i].size, a;

		if (!sz)
			continue;
		a = (bus->next_mmio + sz - 1) & ~(sz - 1);
		if (a + sz > PCI_MMIO_END)
			return -ENOSPC;
		bus->next_mmio = a + sz;
		put32(dev->st->cfg + PCI_BAR0 + 4 * i, (uint32_t)a);
	}
	pci_dev_seal(dev);
	dev->bus = bus;
	dev->slot = slot;
	dev->map = map;
	dev->map_opaque = map_opaque;
	bus->slots[slot] = dev;
	pthread_mutex_lock(&bus->lock);
	pthread_mutex_lock(&dev->lock);
	put16(dev->st->cfg + PCI_COMMAND, get16(dev->st->cfg + PCI_COMMAND) | PCI_COMMAND_MEMORY);
	pci_dev_update_bars(dev);
	pthread_mutex_unlock(&dev->lock);
	pthread_mutex_unlock(&bus->lock);
	return 0;
}

void pci_dev_seal(struct pci_dev *dev)
{
	memcpy(dev->ro_cfg, dev->st->cfg, sizeof(dev->ro_cfg));
	dev->msix_nr_built = dev->st->msix_nr;
}

int pci_dev_apply_state(struct pci_dev *dev)
{
	const uint8_t *c = dev->st->cfg;
	int err = 0;

	if (dev->bus)
		pthread_mutex_lock(&dev->bus->lock);
	pthread_mutex_lock(&dev->lock);
	/* Read-only bits must match the device as built here. */
	for (int i = 0; i < PCI_CFG_SIZE && !err; i++)
		if ((c[i] & ~dev->wmask[i]) != (dev->ro_cfg[i] & ~dev->wmask[i]))
			err = -EINVAL;
	if (!err && dev->st->msix_nr != dev->msix_nr_built)
		err = -EINVAL;
	if (!err) {
		pci_dev_update_bars(dev);
		for (int i = 0; i < dev->st->msix_nr; i++)
			if (!pci_msix_masked(dev, i) && dev->router && dev->msix_gsi[i] >= 0)
				(void)!irq_msi_route(dev->router, (uint32_t)dev->msix_gsi[i],
						     dev->st->msix[i].addr_lo |
						     (uint64_t)dev->st->msix[i].addr_hi << 32,
						     dev->st->msix[i].data);
	}
	pthread_mutex_unlock(&dev->lock);
	if (dev->bus)
		pthread_mutex_unlock(&dev->bus->lock);
	return err;
}

/* --- config mechanism #1 --- */

static struct pci_dev *pci_cf8_dev(struct pci_bus *bus, uint32_t cf8)
{
	if (!(cf8 & 0x80000000u) || ((cf8 >> 16) & 0xff) || ((cf8 >> 8) & 7))
		return NULL;
	return bus->slots[(cf8 >> 11) & 0x1f];
}

void pci_cfg_pio(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_bus *bus = opaque;

	if (len != 4) {          /* byte/word accesses at 0xCF8 are not CONFIG_ADDRESS */
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&bus->lock);
	if (is_write)
		bus->cf8 = get32(data) & 0x80fffffcu;
	else
		put32(data, bus->cf8);
	pthread_mutex_unlock(&bus->lock);
}

void pci_data_pio(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_bus *bus = opaque;
	struct pci_dev *dev;
	uint32_t reg;

	if (off + len > 4) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&bus->lock);
	dev = pci_cf8_dev(bus, bus->cf8);
	reg = (bus->cf8 & 0xfc) + (uint32_t)off;
	if (!dev) {
		if (!is_write)
			memset(data, 0xff, len);
	} else if (is_write) {
		pthread_mutex_lock(&dev->lock);
		pci_dev_cfg_write_locked(dev, reg, data, len);
		pthread_mutex_unlock(&dev->lock);
	} else {
		pci_dev_cfg_read(dev, reg, data, len);
	}
	pthread_mutex_unlock(&bus->lock);
}

void pci_mmio(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_bus *bus = opaque;
	uint64_t addr = PCI_MMIO_BASE + off;
	pci_bar_fn fn = NULL;
	void *fn_opaque = NULL;
	int bar = -1;

	pthread_mutex_lock(&bus->lock);
	for (int s = 0; s < PCI_MAX_SLOTS && !fn; s++) {
		struct pci_dev *d = bus->slots[s];

		for (int i = 0; d && i < PCI_NUM_BARS; i++) {
			struct pci_bar *b = &d->bars[i];

			if (b->mapped && addr >= b->mapped && addr - b->mapped < b->size &&
			    addr - b->mapped + len <= b->size) {
				fn = b->fn;
				fn_opaque = b->opaque;
				bar = i;
				off = addr - b->mapped;
				break;
			}
		}
	}
	pthread_mutex_unlock(&bus->lock);
	if (fn)
		fn(fn_opaque, bar, off, data, len, is_write);
	else if (!is_write)
		memset(data, 0xff, len);
}
