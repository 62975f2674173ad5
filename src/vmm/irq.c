/* GSI routing table, irqfd and ioeventfd (see irq.h). The table mirrors what
 * KVM holds: every change rewrites it whole with KVM_SET_GSI_ROUTING. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include "vmm/irq.h"

int irq_router_init(struct irq_router *r, int vm_fd)
{
	memset(r, 0, sizeof(*r));
	r->vm_fd = vm_fd;
	pthread_mutex_init(&r->lock, NULL);
	r->buf = calloc(1, sizeof(*r->buf) + IRQ_MAX_ROUTES * sizeof(r->buf->entries[0]));
	if (!r->buf)
		return -ENOMEM;
	/* The same table KVM installs by default (kvm_setup_default_irq_routing). */
	for (uint32_t gsi = 0; gsi < IRQ_LEGACY_GSIS; gsi++) {
		struct kvm_irq_routing_entry *e = &r->entries[r->nr++];

		e->gsi = gsi;
		e->type = KVM_IRQ_ROUTING_IRQCHIP;
		e->u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
		e->u.irqchip.pin = gsi;
		if (gsi >= 16)
			continue;
		e = &r->entries[r->nr++];
		e->gsi = gsi;
		e->type = KVM_IRQ_ROUTING_IRQCHIP;
		e->u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
		e->u.irqchip.pin = gsi % 8;
	}
	r->next_gsi = IRQ_FIRST_MSI_GSI;
	return 0;
}

void irq_router_destroy(struct irq_router *r)
{
	free(r->buf);
	r->buf = NULL;
}

/* Called with lock held. */
static int irq_commit(struct irq_router *r)
{
	if (r->vm_fd < 0)
		return 0;
	r->buf->nr = r->nr;
	r->buf->flags = 0;
	memcpy(r->buf->entries, r->entries, r->nr * sizeof(r->entries[0]));
	return ioctl(r->vm_fd, KVM_SET_GSI_ROUTING, r->buf) < 0 ? -errno : 0;
}

int irq_msi_alloc(struct irq_router *r)
{
	int gsi;

	pthread_mutex_lock(&r->lock);
	gsi = r->next_gsi < IRQ_MAX_ROUTES ? (int)r->next_gsi++ : -ENOSPC;
	pthread_mutex_unlock(&r->lock);
	return gsi;
}

static struct kvm_irq_routing_entry *irq_find_msi(struct irq_router *r, uint32_t gsi)
{
	for (uint32_t i = 0; i < r->nr; i++)
		if (r->entries[i].gsi == gsi && r->entries[i].type == KVM_IRQ_ROUTING_MSI)
			return &r->entries[i];
	return NULL;
}

int irq_msi_route(struct irq_router *r, uint32_t gsi, uint64_t addr, uint32_t data)
{
	struct kvm_irq_routing_entry *e;
	int err;

	if (gsi < IRQ_FIRST_MSI_GSI)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	e = irq_find_msi(r, gsi);
	if (!e && r->nr == IRQ_MAX_ROUTES) {
		pthread_mutex_unlock(&r->lock);
		return -ENOSPC;
	}
	if (!e) {
		e = &r->entries[r->nr++];
		memset(e, 0, sizeof(*e));
		e->gsi = gsi;
		e->type = KVM_IRQ_ROUTING_MSI;
	} else if (e->u.msi.address_lo == (uint32_t)addr &&
		   e->u.msi.address_hi == (uint32_t)(addr >> 32) && e->u.msi.data == data) {
		pthread_mutex_unlock(&r->lock);
		return 0;
	}
	e->u.msi.address_lo = (uint32_t)addr;
	e->u.msi.address_hi = (uint32_t)(addr >> 32);
	e->u.msi.data = data;
	err = irq_commit(r);
	pthread_mutex_unlock(&r->lock);
	return err;
}

int irq_msi_unroute(struct irq_router *r, uint32_t gsi)
{
	struct kvm_irq_routing_entry *e;
	int err = 0;

	pthread_mutex_lock(&r->lock);
	e = irq_find_msi(r, gsi);
	if (e) {
		*e = r->entries[--r->nr];
		err = irq_commit(r);
	}
	pthread_mutex_unlock(&r->lock);
	return err;
}

bool irq_msi_lookup(struct irq_router *r, uint32_t gsi, uint64_t *addr, uint32_t *data)
{
	struct kvm_irq_routing_entry *e;

	pthread_mutex_lock(&r->lock);
	e = irq_find_msi(r, gsi);
	if (e) {
		*addr = e->u.msi.address_lo | (uint64_t)e->u.msi.address_hi << 32;
		*data = e->u.msi.data;
	}
	pthread_mutex_unlock(&r->lock);
	return e != NULL;
}

int irq_irqfd(int vm_fd, int fd, uint32_t gsi, bool assign)
{
	struct kvm_irqfd k = { .fd = (uint32_t)fd, .gsi = gsi,
			       .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN };

	if (vm_fd < 0)
		return 0;
	return ioctl(vm_fd, KVM_IRQFD, &k) < 0 ? -errno : 0;
}

int irq_ioeventfd(int vm_fd, int fd, uint64_t addr, uint32_t len, bool pio, bool assign)
{
	struct kvm_ioeventfd k = { .addr = addr, .len = len, .fd = fd };

	if (vm_fd < 0)
		return 0;
	if (pio)
		k.flags |= KVM_IOEVENTFD_FLAG_PIO;
	if (!assign)
		k.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
	return ioctl(vm_fd, KVM_IOEVENTFD, &k) < 0 ? -errno : 0;
}
