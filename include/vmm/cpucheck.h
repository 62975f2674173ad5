/* `vmm cpu-check`: this host's CPU fingerprint (libcpuid) and the CPUID its
 * KVM supports, as JSON; and the check of such a file against another, with
 * the comparison the migration handshake uses (shape_check) plus the names
 * of the missing features. */
#ifndef VMM_CPUCHECK_H
#define VMM_CPUCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include "vmm/cli.h"
#include "vmm/log.h"
#include "vmm/shape.h"

#define CPUCHECK_FORMAT "vmm-cpu-check/1"
#define CPUCHECK_MAX_CPUID 4096
#define CPUCHECK_MAX_MISSING 64
#define CPUCHECK_MAX_FEATURES 256

struct cpucheck_host {
	struct cpu_fingerprint cpu;
	int nr_features;                       /* libcpuid feature names */
	char features[CPUCHECK_MAX_FEATURES][24];
	struct kvm_cpuid2 *cpuid;              /* owned; NULL: no KVM on that host */
};

struct cpucheck_result {
	bool ok;
	char reason[256];                      /* shape_check's reason when !ok */
	int nr_missing;
	char missing[CPUCHECK_MAX_MISSING][40];  /* feature names, or cpuid_F_I_REG_bitN */
};

/* Fills H from this host (libcpuid; KVM_GET_SUPPORTED_CPUID if /dev/kvm can
 * be opened, else H->cpuid stays NULL); 0 or -errno. */
int cpucheck_probe(struct cpucheck_host *h) VMM_MUST_CHECK;
/* H as a JSON document (malloc'd string, pretty-printed), or NULL. */
char *cpucheck_to_json(const struct cpucheck_host *h);
/* Parses a cpu-check document into H; 0, or -EINVAL with the reason in ERR. */
int cpucheck_from_json(const char *text, struct cpucheck_host *h, char *err, size_t errlen)
	VMM_MUST_CHECK;
/* Frees what H owns. */
void cpucheck_host_free(struct cpucheck_host *h);
/* Can a guest started on SRC (it sees SRC's KVM CPUID) run on DST? Fills R;
 * 0 (R->ok says the answer) or -ENODATA when either side has no KVM CPUID. */
int cpucheck_compare(const struct cpucheck_host *src, const struct cpucheck_host *dst,
		     struct cpucheck_result *r) VMM_MUST_CHECK;
/* Names of the guest-relevant feature bits set in C (same registers as the
 * handshake checks), appended to NAMES; returns how many were written. */
int cpucheck_feature_names(const struct kvm_cpuid2 *c, char (*names)[40], int max);
/* `vmm cpu-check`: exit status 0 (printed / compatible), 1 (incompatible), 2. */
int cpucheck_main(const struct vmm_config *cfg);

#endif
