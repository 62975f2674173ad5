/* PCI: one host bridge (bus 0 only, config mechanism #1 at 0xCF8/0xCFC),
 * type-0 devices with 32-bit memory BARs the guest may move at run time,
 * capability lists, MSI-X (table and PBA inside a BAR, delivered through a KVM
 * irqfd per vector), and the ACPI root-bridge AML that makes Linux find the
 * bus. The bus owns one MMIO range for the whole window [PCI_MMIO_BASE,
 * PCI_MMIO_END) and dispatches BAR accesses itself, under its own lock.
 *
 * Locks: bus->lock guards cf8 and the BAR map; each dev->lock guards its
 * state (config space, MSI-X table, PBA). Order: bus->lock, then dev->lock,
 * then nothing else (handlers run with neither held). */
#ifndef VMM_PCI_H
#define VMM_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "vmm/log.h"

struct irq_router;
struct bus;
struct vmstate_desc;

#define PCI_MMIO_BASE 0xC0000000ULL     /* MEM_HOLE_START */
#define PCI_MMIO_END  0xFEC00000ULL     /* IOAPIC */
#define PCI_IO_WIN_BASE 0xD000u         /* I/O window advertised in _CRS */
#define PCI_IO_WIN_END  0xFFFFu
#define PCI_CF8_PORT 0xCF8
#define PCI_CFC_PORT 0xCFC
#define PCI_CFG_SIZE 256
#define PCI_MAX_SLOTS 32
#define PCI_NUM_BARS 6
#define PCI_MSIX_MAX 64
#define PCI_CAP_START 0x40

/* Config space offsets and bits used here. */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_COMMAND_IO 0x1
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_COMMAND_INTX_DISABLE 0x400
#define PCI_STATUS 0x06
#define PCI_STATUS_CAP_LIST 0x10
#define PCI_REVISION_ID 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_HEADER_TYPE 0x0E
#define PCI_BAR0 0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2C
#define PCI_SUBSYSTEM_ID 0x2E
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3C
#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_MSIX 0x11
#define PCI_MSIX_FLAGS_ENABLE 0x8000
#define PCI_MSIX_FLAGS_MASKALL 0x4000
#define PCI_MSIX_ENTRY_SIZE 16
#define PCI_MSIX_ENTRY_CTRL_MASKBIT 1u

/* A BAR access at OFF inside BAR (LEN 1/2/4/8; DATA little-endian). Runs on
 * a vCPU thread with no PCI lock held. */
typedef void (*pci_bar_fn)(void *opaque, int bar, uint64_t off, uint8_t *data, uint32_t len,
			   bool is_write);
/* BAR is now decoded at ADDR (0: no longer decoded; OLD was the previous
 * address or 0). Runs with the bus and device locks held: may only do quick
 * things like (un)registering ioeventfds. */
typedef void (*pci_map_fn)(void *opaque, int bar, uint64_t old, uint64_t addr);

struct pci_msix_entry {
	uint32_t addr_lo;
	uint32_t addr_hi;
	uint32_t data;
	uint32_t ctrl;
};

/* Migratable part of a device: config space bytes and the MSI-X table/PBA. */
struct pci_dev_state {
	uint8_t cfg[PCI_CFG_SIZE];
	uint16_t msix_nr;                  /* table entries (fixed per device) */
	uint64_t msix_pba;                 /* pending bits */
	struct pci_msix_entry msix[PCI_MSIX_MAX];
};
extern const struct vmstate_desc pci_dev_vmstate;

struct pci_bar {
	uint64_t size;                     /* power of two >= 16; 0: unused */
	pci_bar_fn fn;
	void *opaque;
	uint64_t mapped;                   /* decoded address, 0 if none (bus->lock) */
};

struct pci_dev {
	struct pci_bus *bus;
	int slot;
	pthread_mutex_t lock;              /* guards st */
	struct pci_dev_state *st;          /* own_st, or storage the device keeps in its own state struct */
	struct pci_dev_state own_st;
	uint8_t wmask[PCI_CFG_SIZE];       /* guest-writable bits; immutable */
	uint8_t ro_cfg[PCI_CFG_SIZE];      /* config space as built; immutable */
	uint16_t msix_nr_built;            /* vector count as built */
	struct pci_bar bars[PCI_NUM_BARS];
	pci_map_fn map;
	void *map_opaque;
	uint8_t next_cap;                  /* where the next capability goes */
	uint8_t last_cap;                  /* offset of the last one (0: none) */
	/* MSI-X, fixed at pci_msix_init */
	uint8_t msix_cap;                  /* 0: no MSI-X */
	int msix_bar;
	uint32_t msix_table_off, msix_pba_off;
	struct irq_router *router;
	int vm_fd;
	int msix_gsi[PCI_MSIX_MAX];
	int msix_fd[PCI_MSIX_MAX];          /* eventfd bound to msix_gsi by irqfd */
};

struct pci_bus {
	pthread_mutex_t lock;              /* guards cf8 and bars[].mapped of all devs */
	uint32_t cf8;
	struct pci_dev *slots[PCI_MAX_SLOTS];
	uint64_t next_mmio;                /* initial BAR placement (setup only) */
	struct pci_dev host;               /* 00.0 host bridge */
};

/* Sets up BUS with the host bridge in slot 0; 0 or -errno. */
int pci_bus_init(struct pci_bus *bus) VMM_MUST_CHECK;
/* Registers the config ports and the MMIO window on the VM's buses. */
int pci_bus_attach(struct pci_bus *bus, struct bus *pio, struct bus *mmio) VMM_MUST_CHECK;
/* Port-I/O handler for 0xCF8 (offset 0) and 0xCFC-0xCFF (registered as two
 * ranges with opaque = bus; offsets are relative to 0xCF8). */
void pci_cfg_pio(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write);
void pci_data_pio(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write);
/* MMIO window handler (offset relative to PCI_MMIO_BASE). */
void pci_mmio(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write);

/* Initialises DEV's identity (type-0 header) before pci_add_dev; its
 * state lives in ST (NULL: inside DEV). */
void pci_dev_init(struct pci_dev *dev, struct pci_dev_state *st, uint16_t vendor, uint16_t device, uint32_t class_code,
		  uint8_t revision, uint16_t subsys_vendor, uint16_t subsys_id);
/* Declares memory BAR (32-bit, non-prefetchable) of SIZE (power of two) with
 * handler FN; the bus gives it an initial address at pci_add_dev. */
int pci_dev_set_bar(struct pci_dev *dev, int bar, uint64_t size, pci_bar_fn fn, void *opaque)
	VMM_MUST_CHECK;
/* Appends a capability (DATA[0] = id; next pointer filled in) of LEN bytes;
 * WMASK (may be NULL) gives its guest-writable bits. Returns its offset or
 * -ENOSPC. */
int pci_dev_add_cap(struct pci_dev *dev, const void *data, size_t len, const uint8_t *wmask)
	VMM_MUST_CHECK;
/* Adds an MSI-X capability of NR vectors with table at TABLE_OFF and PBA at
 * PBA_OFF inside BAR; allocates one GSI + eventfd + irqfd per vector.
 * VM_FD < 0: no KVM (unit tests). 0 or -errno. */
int pci_msix_init(struct pci_dev *dev, int nr, int bar, uint32_t table_off, uint32_t pba_off,
		  struct irq_router *router, int vm_fd) VMM_MUST_CHECK;
/* Records DEV's config space as built (the read-only bits restore checks
 * against); pci_add_dev does it too. */
void pci_dev_seal(struct pci_dev *dev);
/* Places DEV in a free slot, assigns BAR addresses, enables memory decoding
 * as firmware would, and calls MAP for each BAR; 0 or -ENOSPC. */
int pci_add_dev(struct pci_bus *bus, struct pci_dev *dev, pci_map_fn map, void *map_opaque)
	VMM_MUST_CHECK;

/* Config space access to DEV as the guest does it (OFF+LEN within 256). */
void pci_dev_cfg_read(struct pci_dev *dev, uint32_t off, uint8_t *data, uint32_t len);
void pci_dev_cfg_write(struct pci_dev *dev, uint32_t off, const uint8_t *data, uint32_t len);
/* Handles an access to DEV's MSI-X table or PBA inside BAR at OFF; returns
 * false if OFF is outside both (the caller handles it). */
bool pci_msix_access(struct pci_dev *dev, int bar, uint64_t off, uint8_t *data, uint32_t len,
		     bool is_write);
/* Raises MSI-X vector VEC (or records it pending while masked); a vector
 * out of range or MSI-X disabled drops it. Any thread. */
void pci_msix_notify(struct pci_dev *dev, uint16_t vec);
/* Whether MSI-X is enabled by the guest. */
bool pci_msix_enabled(struct pci_dev *dev);
/* Puts the MSI-X table back to its reset state (all masked) and clears PBA. */
void pci_msix_reset(struct pci_dev *dev);
/* After DEV's state was loaded: checks it against the device's fixed shape
 * (ids, BAR sizes, vector count), re-applies BAR mappings and MSI routes;
 * 0 or -EINVAL. */
int pci_dev_apply_state(struct pci_dev *dev) VMM_MUST_CHECK;

/* Writes the \_SB.PCI0 root bridge AML (for acpi_extra) into BUF; returns
 * its length, or -ENOSPC. */
int pci_aml_root_bridge(uint8_t *buf, size_t cap) VMM_MUST_CHECK;

#endif
