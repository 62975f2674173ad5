/* The guest's shape for the migration handshake: memory size, vCPU count,
 * device list, the host CPU fingerprint (libcpuid vendor/family/model) and
 * the CPUID the guest was given. The destination refuses, with a reason,
 * any guest it cannot host before a single page is sent. */
#ifndef VMM_SHAPE_H
#define VMM_SHAPE_H

#include <stddef.h>
#include <stdint.h>
#include "vmm/log.h"
#include "vmm/stream.h"

struct vm;
struct kvm_cpuid2;

#define SHAPE_MAX_DEVICES 32
#define SHAPE_MAX_CPUID 256

struct cpu_fingerprint {
	char vendor[16];
	char brand[64];
	int32_t family;      /* extended family, as the kernel reports it */
	int32_t model;
};

struct shape {
	uint64_t mem_size;
	uint32_t nr_vcpus;
	uint32_t nr_devices;
	char dev_id[SHAPE_MAX_DEVICES][32];
	char dev_type[SHAPE_MAX_DEVICES][32];
	struct cpu_fingerprint cpu;
	struct kvm_cpuid2 *cpuid;   /* owned; the guest's base CPUID */
};

/* Fills FP with this host's CPU identity (libcpuid); 0 or -ENOTSUP. */
int shape_host_cpu(struct cpu_fingerprint *fp) VMM_MUST_CHECK;
/* Describes VM into S (S->cpuid is a copy to free with shape_free). */
int shape_of_vm(struct vm *vm, struct shape *s) VMM_MUST_CHECK;
/* Frees what a shape owns. */
void shape_free(struct shape *s);
/* Appends a SHAPE frame for S; 0 or -errno. */
int shape_put(struct stream_buf *b, const struct shape *s) VMM_MUST_CHECK;
/* Decodes a SHAPE payload into S; 0 or -EBADMSG. */
int shape_parse(struct stream_reader *r, struct shape *s) VMM_MUST_CHECK;
/* Says whether a guest of shape GUEST can run on a host/VM of shape HERE
 * whose KVM supports SUPPORTED: 0, or -EINVAL with the reason in ERR. */
int shape_check(const struct shape *guest, const struct shape *here,
		const struct kvm_cpuid2 *supported, char *err, size_t errlen) VMM_MUST_CHECK;

#endif
