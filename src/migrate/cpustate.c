/* vCPU and VM-level KVM state for migration. Save order: mp_state, regs,
 * sregs, xsave, xcrs, debugregs, lapic, MSRs, events. Restore order: regs,
 * sregs, xsave, xcrs, lapic, MSRs (after the LAPIC, so the TSC-deadline
 * MSR sticks), mp_state, events, debugregs. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include "vmm/cpustate.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"
#include "vmm/vmstate.h"

#define KVM_MP_STATE_MAX 9

static int cpu_state_post_load(void *opaque, uint32_t version_id)
{
	const struct cpu_state *s = opaque;

	if (s->nmsrs > CPU_MAX_MSRS || s->mp.mp_state > KVM_MP_STATE_MAX ||
	    s->xcrs.nr_xcrs > KVM_MAX_XCRS)
		return -EINVAL;
	return 0;
}

const struct vmstate_desc cpu_state_vmsd = {
	.name = "cpu", .version_id = 1, .minimum_version_id = 1,
	.size = sizeof(struct cpu_state), .post_load = cpu_state_post_load,
	.fields = (const struct vmstate_field[]){
		VMSTATE_BUFFER(struct cpu_state, mp),
		VMSTATE_BUFFER(struct cpu_state, regs),
		VMSTATE_BUFFER(struct cpu_state, sregs),
		VMSTATE_BUFFER(struct cpu_state, xsave),
		VMSTATE_BUFFER(struct cpu_state, xcrs),
		VMSTATE_BUFFER(struct cpu_state, debugregs),
		VMSTATE_BUFFER(struct cpu_state, lapic),
		VMSTATE_BUFFER(struct cpu_state, events),
		VMSTATE_U32(struct cpu_state, nmsrs),
		VMSTATE_VARRAY(struct cpu_state, msr_index, uint32_t, nmsrs),
		VMSTATE_VARRAY(struct cpu_state, msr_data, uint64_t, nmsrs),
		VMSTATE_END,
	},
};

const struct vmstate_desc vm_kvm_state_vmsd = {
	.name = "kvm-vm", .version_id = 1, .minimum_version_id = 1,
	.size = sizeof(struct vm_kvm_state),
	.fields = (const struct vmstate_field[]){
		VMSTATE_BUFFER(struct vm_kvm_state, pic_master),
		VMSTATE_BUFFER(struct vm_kvm_state, pic_slave),
		VMSTATE_BUFFER(struct vm_kvm_state, ioapic),
		VMSTATE_BUFFER(struct vm_kvm_state, pit),
		VMSTATE_U64(struct vm_kvm_state, clock_ns),
		VMSTATE_U32(struct vm_kvm_state, tsc_khz),
		VMSTATE_END,
	},
};

/* struct kvm_msrs with room for N entries. */
static struct kvm_msrs *msrs_alloc(size_t n)
{
	struct kvm_msrs *m = calloc(1, sizeof(*m) + n * sizeof(m->entries[0]));

	if (m)
		m->nmsrs = (uint32_t)n;
	return m;
}

int cpustate_msr_list(struct vm *vm, uint32_t *idx)
{
	struct kvm_msr_list *list = calloc(1, sizeof(*list) + 1024 * sizeof(uint32_t));
	struct kvm_msrs *one = msrs_alloc(1);
	int n = 0, fd = vm->vcpus[0]->fd;

	if (!list || !one) {
		n = -ENOMEM;
		goto out;
	}
	list->nmsrs = 1024;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		n = -errno;
		goto out;
	}
	for (uint32_t i = 0; i < list->nmsrs && n < CPU_MAX_MSRS; i++) {
		one->nmsrs = 1;
		one->entries[0].index = list->indices[i];
		if (ioctl(fd, KVM_GET_MSRS, one) == 1)
			idx[n++] = list->indices[i];
	}
out:
	free(list);
	free(one);
	return n;
}

static int cpustate_get_msrs(int fd, const uint32_t *idx, int n, struct cpu_state *s)
{
	struct kvm_msrs *m = msrs_alloc((size_t)n);
	int ret;

	if (!m)
		return -ENOMEM;
	for (int i = 0; i < n; i++)
		m->entries[i].index = idx[i];
	ret = ioctl(fd, KVM_GET_MSRS, m);
	if (ret == n) {
		s->nmsrs = (uint32_t)n;
		for (int i = 0; i < n; i++) {
			s->msr_index[i] = m->entries[i].index;
			s->msr_data[i] = m->entries[i].data;
		}
		ret = 0;
	} else {
		ret = ret < 0 ? -errno : -EIO;
	}
	free(m);
	return ret;
}

int cpustate_save(struct vcpu *v, const uint32_t *msrs, int nmsrs, struct cpu_state *s)
{
	int fd = v->fd;

	memset(s, 0, sizeof(*s));
	if (ioctl(fd, KVM_GET_MP_STATE, &s->mp) < 0 || ioctl(fd, KVM_GET_REGS, &s->regs) < 0 ||
	    ioctl(fd, KVM_GET_SREGS, &s->sregs) < 0 || ioctl(fd, KVM_GET_XSAVE, &s->xsave) < 0 ||
	    ioctl(fd, KVM_GET_XCRS, &s->xcrs) < 0 ||
	    ioctl(fd, KVM_GET_DEBUGREGS, &s->debugregs) < 0 ||
	    ioctl(fd, KVM_GET_LAPIC, &s->lapic) < 0)
		return -errno;
	if (cpustate_get_msrs(fd, msrs, nmsrs, s))
		return -EIO;
	if (ioctl(fd, KVM_GET_VCPU_EVENTS, &s->events) < 0)
		return -errno;
	return 0;
}

/* Sets every MSR; one that KVM refuses is named in ERR. */
static int cpustate_set_msrs(int fd, const struct cpu_state *s, char *err, size_t errlen)
{
	struct kvm_msrs *m = msrs_alloc(s->nmsrs);
	int ret;

	if (!m)
		return -ENOMEM;
	for (uint32_t i = 0; i < s->nmsrs; i++) {
		m->entries[i].index = s->msr_index[i];
		m->entries[i].data = s->msr_data[i];
	}
	ret = ioctl(fd, KVM_SET_MSRS, m);
	if (ret >= 0 && (uint32_t)ret < s->nmsrs) {
		snprintf(err, errlen, "KVM refused MSR 0x%x = 0x%llx", s->msr_index[ret],
			 (unsigned long long)s->msr_data[ret]);
		ret = -EINVAL;
	} else if (ret < 0) {
		ret = -errno;
		snprintf(err, errlen, "KVM_SET_MSRS failed: %s", strerror(errno));
	} else {
		ret = 0;
	}
	free(m);
	return ret;
}

int cpustate_load(struct vcpu *v, const struct cpu_state *s, char *err, size_t errlen)
{
	struct kvm_vcpu_events ev = s->events;
	int fd = v->fd;
	const char *what;

	ev.flags = (s->events.flags & (KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM)) |
		   KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
	if ((what = "regs", ioctl(fd, KVM_SET_REGS, &s->regs) < 0) ||
	    (what = "sregs", ioctl(fd, KVM_SET_SREGS, &s->sregs) < 0) ||
	    (what = "xsave", ioctl(fd, KVM_SET_XSAVE, &s->xsave) < 0) ||
	    (what = "xcrs", ioctl(fd, KVM_SET_XCRS, &s->xcrs) < 0) ||
	    (what = "lapic", ioctl(fd, KVM_SET_LAPIC, &s->lapic) < 0))
		goto fail;
	if (cpustate_set_msrs(fd, s, err, errlen))
		return -EINVAL;
	if ((what = "mp_state", ioctl(fd, KVM_SET_MP_STATE, &s->mp) < 0) ||
	    (what = "vcpu events", ioctl(fd, KVM_SET_VCPU_EVENTS, &ev) < 0) ||
	    (what = "debug registers", ioctl(fd, KVM_SET_DEBUGREGS, &s->debugregs) < 0))
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "vCPU %d: KVM refused the %s: %s", v->id, what, strerror(errno));
	return -EINVAL;
}

int vmstate_kvm_save(struct vm *vm, struct vm_kvm_state *s)
{
	int khz;

	memset(s, 0, sizeof(*s));
	s->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	s->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	s->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &s->pic_master) < 0 ||
	    ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &s->pic_slave) < 0 ||
	    ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &s->ioapic) < 0 ||
	    ioctl(vm->vm_fd, KVM_GET_PIT2, &s->pit) < 0)
		return -errno;
	s->clock_ns = vm->clock_ns;
	khz = ioctl(vm->vcpus[0]->fd, KVM_GET_TSC_KHZ, 0);
	s->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
	return 0;
}

int vmstate_kvm_load(struct vm *vm, const struct vm_kvm_state *s, char *err, size_t errlen)
{
	struct kvm_irqchip chips[3] = { s->pic_master, s->pic_slave, s->ioapic };
	struct kvm_pit_state2 pit = s->pit;
	int khz = ioctl(vm->vcpus[0]->fd, KVM_GET_TSC_KHZ, 0);

	chips[0].chip_id = KVM_IRQCHIP_PIC_MASTER;
	chips[1].chip_id = KVM_IRQCHIP_PIC_SLAVE;
	chips[2].chip_id = KVM_IRQCHIP_IOAPIC;
	for (int i = 0; i < 3; i++) {
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chips[i]) < 0) {
			snprintf(err, errlen, "KVM refused irqchip %d state: %s", i, strerror(errno));
			return -EINVAL;
		}
	}
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0) {
		snprintf(err, errlen, "KVM refused the PIT state: %s", strerror(errno));
		return -EINVAL;
	}
	if (s->tsc_khz && khz > 0 && (uint32_t)khz != s->tsc_khz) {
		for (int i = 0; i < vm->nr_vcpus; i++) {
			if (ioctl(vm->vcpus[i]->fd, KVM_SET_TSC_KHZ, s->tsc_khz) < 0) {
				snprintf(err, errlen, "cannot run the guest TSC at %u kHz (host %d kHz)",
					 s->tsc_khz, khz);
				return -EINVAL;
			}
		}
	}
	vm->clock_ns = s->clock_ns;
	return 0;
}
