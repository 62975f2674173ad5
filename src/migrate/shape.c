/* Guest shape and CPU compatibility for the migration handshake. */
#include <errno.h>
#include <libcpuid/libcpuid.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vmm/device.h"
#include "vmm/shape.h"
#include "vmm/vm.h"

int shape_host_cpu(struct cpu_fingerprint *fp)
{
	struct cpu_raw_data_t raw;
	struct cpu_id_t id;

	memset(fp, 0, sizeof(*fp));
	if (!cpuid_present() || cpuid_get_raw_data(&raw) < 0 || cpu_identify(&raw, &id) < 0)
		return -ENOTSUP;
	snprintf(fp->vendor, sizeof(fp->vendor), "%s", id.vendor_str);
	snprintf(fp->brand, sizeof(fp->brand), "%s", id.brand_str);
	fp->family = id.ext_family;
	fp->model = id.ext_model;
	return 0;
}

int shape_of_vm(struct vm *vm, struct shape *s)
{
	size_t size;

	memset(s, 0, sizeof(*s));
	s->mem_size = vm->mem.size;
	s->nr_vcpus = (uint32_t)vm->nr_vcpus;
	for (int i = 0; i < device_count(vm) && i < SHAPE_MAX_DEVICES; i++) {
		struct device *d = device_get(vm, i);

		snprintf(s->dev_id[i], sizeof(s->dev_id[i]), "%s", d->id);
		snprintf(s->dev_type[i], sizeof(s->dev_type[i]), "%s", d->ops->name);
		s->nr_devices++;
	}
	if (shape_host_cpu(&s->cpu))
		snprintf(s->cpu.vendor, sizeof(s->cpu.vendor), "unknown");
	size = sizeof(*vm->cpuid) + vm->cpuid->nent * sizeof(vm->cpuid->entries[0]);
	s->cpuid = malloc(size);
	if (!s->cpuid)
		return -ENOMEM;
	memcpy(s->cpuid, vm->cpuid, size);
	return 0;
}

void shape_free(struct shape *s)
{
	free(s->cpuid);
	s->cpuid = NULL;
}

int shape_put(struct stream_buf *b, const struct shape *s)
{
	size_t frame;
	int err = stream_frame_begin(b, STREAM_SHAPE, 0, &frame);

	if (err)
		return err;
	stream_buf_put_u64(b, s->mem_size);
	stream_buf_put_u32(b, s->nr_vcpus);
	stream_buf_put_u32(b, s->nr_devices);
	for (uint32_t i = 0; i < s->nr_devices; i++) {
		stream_buf_put_string(b, s->dev_id[i]);
		stream_buf_put_string(b, s->dev_type[i]);
	}
	stream_buf_put_string(b, s->cpu.vendor);
	stream_buf_put_string(b, s->cpu.brand);
	stream_buf_put_u32(b, (uint32_t)s->cpu.family);
	stream_buf_put_u32(b, (uint32_t)s->cpu.model);
	stream_buf_put_u32(b, s->cpuid->nent);
	for (uint32_t i = 0; i < s->cpuid->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &s->cpuid->entries[i];

		stream_buf_put_u32(b, e->function);
		stream_buf_put_u32(b, e->index);
		stream_buf_put_u32(b, e->flags);
		stream_buf_put_u32(b, e->eax);
		stream_buf_put_u32(b, e->ebx);
		stream_buf_put_u32(b, e->ecx);
		stream_buf_put_u32(b, e->edx);
	}
	return stream_frame_end(b, frame);
}

static int shape_parse_cpuid(struct stream_reader *r, struct shape *s)
{
	uint32_t n;
	int err = stream_get_u32(r, &n);

	if (err || n == 0 || n > SHAPE_MAX_CPUID)
		return -EBADMSG;
	s->cpuid = calloc(1, sizeof(*s->cpuid) + n * sizeof(s->cpuid->entries[0]));
	if (!s->cpuid)
		return -ENOMEM;
	s->cpuid->nent = n;
	for (uint32_t i = 0; i < n && !err; i++) {
		struct kvm_cpuid_entry2 *e = &s->cpuid->entries[i];

		err = stream_get_u32(r, &e->function) ?: stream_get_u32(r, &e->index) ?:
		      stream_get_u32(r, &e->flags) ?: stream_get_u32(r, &e->eax) ?:
		      stream_get_u32(r, &e->ebx) ?: stream_get_u32(r, &e->ecx) ?:
		      stream_get_u32(r, &e->edx);
	}
	return err;
}

int shape_parse(struct stream_reader *r, struct shape *s)
{
	uint32_t fam = 0, model = 0;
	int err;

	memset(s, 0, sizeof(*s));
	err = stream_get_u64(r, &s->mem_size) ?: stream_get_u32(r, &s->nr_vcpus) ?:
	      stream_get_u32(r, &s->nr_devices);
	if (!err && s->nr_devices > SHAPE_MAX_DEVICES)
		err = -EBADMSG;
	for (uint32_t i = 0; !err && i < s->nr_devices; i++)
		err = stream_get_string(r, s->dev_id[i], sizeof(s->dev_id[i])) ?:
		      stream_get_string(r, s->dev_type[i], sizeof(s->dev_type[i]));
	if (!err)
		err = stream_get_string(r, s->cpu.vendor, sizeof(s->cpu.vendor)) ?:
		      stream_get_string(r, s->cpu.brand, sizeof(s->cpu.brand)) ?:
		      stream_get_u32(r, &fam) ?: stream_get_u32(r, &model);
	s->cpu.family = (int32_t)fam;
	s->cpu.model = (int32_t)model;
	if (!err)
		err = shape_parse_cpuid(r, s);
	if (!err && stream_reader_remaining(r))
		err = -EBADMSG;
	if (err) {
		shape_free(s);
		return -EBADMSG;
	}
	return 0;
}

static const struct kvm_cpuid_entry2 *shape_leaf(const struct kvm_cpuid2 *c, uint32_t fn,
						 uint32_t idx)
{
	for (uint32_t i = 0; c && i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == idx)
			return &c->entries[i];
	return NULL;
}

/* Feature registers the guest may rely on: every bit it was given must be
 * one the destination's KVM can give too. */
static int shape_check_cpuid(const struct kvm_cpuid2 *guest, const struct kvm_cpuid2 *sup,
			     char *err, size_t errlen)
{
	static const struct { uint32_t fn, idx; int reg; uint32_t ignore; } regs[] = {
		{ 1, 0, 2, (1u << 27) | (1u << 31) },   /* ecx; OSXSAVE, hypervisor */
		{ 1, 0, 3, 0 },                          /* edx */
		{ 7, 0, 1, 0 }, { 7, 0, 2, 0 }, { 7, 0, 3, 0 },
		{ 0x80000001, 0, 2, 0 }, { 0x80000001, 0, 3, 0 },
		{ 0xD, 1, 0, 0 },
	};
	static const char *names[] = { "eax", "ebx", "ecx", "edx" };

	for (size_t i = 0; i < ARRAY_SIZE(regs); i++) {
		const struct kvm_cpuid_entry2 *g = shape_leaf(guest, regs[i].fn, regs[i].idx);
		const struct kvm_cpuid_entry2 *h = shape_leaf(sup, regs[i].fn, regs[i].idx);
		uint32_t gv, hv, missing;

		if (!g)
			continue;
		gv = (&g->eax)[regs[i].reg];
		hv = h ? (&h->eax)[regs[i].reg] : 0;
		missing = gv & ~hv & ~regs[i].ignore;
		if (missing) {
			snprintf(err, errlen, "CPU feature missing here: CPUID.(EAX=0x%x,ECX=%u).%s "
				 "bits 0x%08x", regs[i].fn, regs[i].idx, names[regs[i].reg], missing);
			return -EINVAL;
		}
	}
	return 0;
}

int shape_check(const struct shape *g, const struct shape *h, const struct kvm_cpuid2 *sup,
		char *err, size_t errlen)
{
	if (g->mem_size != h->mem_size) {
		snprintf(err, errlen, "guest has %llu MiB of RAM, destination was started with %llu MiB",
			 (unsigned long long)(g->mem_size >> 20), (unsigned long long)(h->mem_size >> 20));
		return -EINVAL;
	}
	if (g->nr_vcpus != h->nr_vcpus) {
		snprintf(err, errlen, "guest has %u vCPUs, destination was started with %u",
			 g->nr_vcpus, h->nr_vcpus);
		return -EINVAL;
	}
	if (g->nr_devices != h->nr_devices) {
		snprintf(err, errlen, "guest has %u devices, destination has %u", g->nr_devices,
			 h->nr_devices);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < g->nr_devices; i++) {
		if (strcmp(g->dev_id[i], h->dev_id[i]) || strcmp(g->dev_type[i], h->dev_type[i])) {
			snprintf(err, errlen, "device %u is %s (%s) on the source but %s (%s) here", i,
				 g->dev_id[i], g->dev_type[i], h->dev_id[i], h->dev_type[i]);
			return -EINVAL;
		}
	}
	if (strcmp(g->cpu.vendor, h->cpu.vendor) || g->cpu.family != h->cpu.family) {
		snprintf(err, errlen, "CPU mismatch: source is %s family 0x%x, destination %s family 0x%x",
			 g->cpu.vendor, g->cpu.family, h->cpu.vendor, h->cpu.family);
		return -EINVAL;
	}
	return shape_check_cpuid(g->cpuid, sup, err, errlen);
}
