/* Interrupt plumbing for in-kernel irqchip devices: the GSI routing table
 * (KVM_SET_GSI_ROUTING replaces the whole table, so we keep it here: the
 * default PIC/IOAPIC routes for GSI 0-23 plus MSI routes we add), irqfd
 * (eventfd -> GSI) and ioeventfd (guest write -> eventfd). With vm_fd < 0 the
 * table is kept but no ioctl is made (unit tests). */
#ifndef VMM_IRQ_H
#define VMM_IRQ_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "vmm/log.h"

#define IRQ_LEGACY_GSIS 24
#define IRQ_MAX_ROUTES 1024
#define IRQ_FIRST_MSI_GSI 24

/* lock guards every field after it. */
struct irq_router {
	int vm_fd;
	pthread_mutex_t lock;
	uint32_t next_gsi;                /* next unused GSI for MSI routes */
	uint32_t nr;                      /* entries in use */
	struct kvm_irq_routing_entry entries[IRQ_MAX_ROUTES];
	struct kvm_irq_routing *buf;      /* ioctl buffer */
};

/* Fills ROUTER with KVM's default routes for GSI 0-23 (IOAPIC pins 0-23, PIC
 * pins for 0-15) without committing; 0 or -ENOMEM. */
int irq_router_init(struct irq_router *router, int vm_fd) VMM_MUST_CHECK;
/* Frees the router's buffer. */
void irq_router_destroy(struct irq_router *router);
/* Reserves a fresh GSI for an MSI route (no route is installed yet); returns
 * the GSI, or -ENOSPC. */
int irq_msi_alloc(struct irq_router *router) VMM_MUST_CHECK;
/* Points GSI (from irq_msi_alloc) at the MSI message ADDR/DATA and commits
 * the whole table to KVM; 0 or -errno. */
int irq_msi_route(struct irq_router *router, uint32_t gsi, uint64_t addr, uint32_t data)
	VMM_MUST_CHECK;
/* Removes the route of GSI (if any) and commits; 0 or -errno. */
int irq_msi_unroute(struct irq_router *router, uint32_t gsi) VMM_MUST_CHECK;
/* Looks up the MSI route of GSI; true if found (ADDR/DATA set). */
bool irq_msi_lookup(struct irq_router *router, uint32_t gsi, uint64_t *addr, uint32_t *data);
/* Binds (ASSIGN) or unbinds eventfd FD to GSI with KVM_IRQFD; 0 or -errno;
 * no-op 0 when vm_fd < 0. */
int irq_irqfd(int vm_fd, int fd, uint32_t gsi, bool assign) VMM_MUST_CHECK;
/* Makes a guest write of LEN bytes (0: any length) at ADDR (PIO when PIO)
 * signal eventfd FD instead of exiting, or removes that binding; 0 or -errno;
 * no-op 0 when vm_fd < 0. */
int irq_ioeventfd(int vm_fd, int fd, uint64_t addr, uint32_t len, bool pio, bool assign)
	VMM_MUST_CHECK;

#endif
