/* `vmm cpu-check`: print this host's CPU fingerprint and KVM CPUID as JSON,
 * or say whether a guest started on one host can run on another. The verdict
 * is shape_check(), the migration handshake's own test; the missing-feature
 * list walks the same registers (keep cpucheck_regs in step with shape.c). */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <libcpuid/libcpuid.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "vmm/cpucheck.h"
#include "vmm/cpuid.h"

#define N32(...) { __VA_ARGS__ }

static const char *const leaf1_ecx[32] = N32("sse3", "pclmulqdq", "dtes64", "monitor",
	"ds_cpl", "vmx", "smx", "est", "tm2", "ssse3", "cnxt_id", "sdbg", "fma", "cx16", "xtpr",
	"pdcm", NULL, "pcid", "dca", "sse4_1", "sse4_2", "x2apic", "movbe", "popcnt",
	"tsc_deadline_timer", "aes", "xsave", "osxsave", "avx", "f16c", "rdrand", "hypervisor");
static const char *const leaf1_edx[32] = N32("fpu", "vme", "de", "pse", "tsc", "msr", "pae",
	"mce", "cx8", "apic", NULL, "sep", "mtrr", "pge", "mca", "cmov", "pat", "pse36", "pn",
	"clflush", NULL, "ds", "acpi", "mmx", "fxsr", "sse", "sse2", "ss", "ht", "tm", "ia64",
	"pbe");
static const char *const leaf7_ebx[32] = N32("fsgsbase", "tsc_adjust", "sgx", "bmi1", "hle",
	"avx2", "fdp_excptn_only", "smep", "bmi2", "erms", "invpcid", "rtm", "pqm",
	"zero_fcs_fds", "mpx", "rdt_a", "avx512f", "avx512dq", "rdseed", "adx", "smap",
	"avx512ifma", "pcommit", "clflushopt", "clwb", "intel_pt", "avx512pf", "avx512er",
	"avx512cd", "sha_ni", "avx512bw", "avx512vl");
static const char *const leaf7_ecx[32] = N32("prefetchwt1", "avx512vbmi", "umip", "pku",
	"ospke", "waitpkg", "avx512_vbmi2", "shstk", "gfni", "vaes", "vpclmulqdq",
	"avx512_vnni", "avx512_bitalg", "tme", "avx512_vpopcntdq", NULL, "la57", NULL, NULL,
	NULL, NULL, NULL, "rdpid", "kl", "bus_lock_detect", "cldemote", NULL, "movdiri",
	"movdir64b", "enqcmd", "sgx_lc", "pks");
static const char *const leaf7_edx[32] = N32(NULL, "sgx_keys", "avx512_4vnniw",
	"avx512_4fmaps", "fsrm", "uintr", NULL, NULL, "avx512_vp2intersect", "srbds_ctrl",
	"md_clear", "rtm_always_abort", NULL, "tsx_force_abort", "serialize", "hybrid",
	"tsxldtrk", NULL, "pconfig", "arch_lbr", "ibt", NULL, "amx_bf16", "avx512_fp16",
	"amx_tile", "amx_int8", "spec_ctrl", "intel_stibp", "flush_l1d", "arch_capabilities",
	"core_capabilities", "spec_ctrl_ssbd");
static const char *const ext1_ecx[32] = N32("lahf_lm", "cmp_legacy", "svm", "extapic",
	"cr8_legacy", "abm", "sse4a", "misalignsse", "3dnowprefetch", "osvw", "ibs", "xop",
	"skinit", "wdt", NULL, "lwp", "fma4", "tce", NULL, "nodeid_msr", NULL, "tbm", "topoext",
	"perfctr_core", "perfctr_nb", NULL, "bpext", "ptsc", "perfctr_llc", "mwaitx", NULL,
	NULL);
static const char *const ext1_edx[32] = N32("fpu", "vme", "de", "pse", "tsc", "msr", "pae",
	"mce", "cx8", "apic", NULL, "syscall", "mtrr", "pge", "mca", "cmov", "pat", "pse36",
	NULL, "mp", "nx", NULL, "mmxext", "mmx", "fxsr", "fxsr_opt", "pdpe1gb", "rdtscp", NULL,
	"lm", "3dnowext", "3dnow");
static const char *const xsave1_eax[32] = N32("xsaveopt", "xsavec", "xgetbv1", "xsaves",
	"xfd");

/* The registers shape_check_cpuid() compares, with the bits it ignores. */
static const struct {
	uint32_t fn, idx;
	int reg;               /* 0 eax .. 3 edx */
	uint32_t ignore;
	const char *const *names;
} cpucheck_regs[] = {
	{ 1, 0, 2, (1u << 27) | (1u << 31), leaf1_ecx },
	{ 1, 0, 3, 0, leaf1_edx },
	{ 7, 0, 1, 0, leaf7_ebx }, { 7, 0, 2, 0, leaf7_ecx }, { 7, 0, 3, 0, leaf7_edx },
	{ 0x80000001, 0, 2, 0, ext1_ecx }, { 0x80000001, 0, 3, 0, ext1_edx },
	{ 0xD, 1, 0, 0, xsave1_eax },
};
static const char *const reg_names[] = { "eax", "ebx", "ecx", "edx" };

static const struct kvm_cpuid_entry2 *cpucheck_leaf(const struct kvm_cpuid2 *c, uint32_t fn,
						    uint32_t idx)
{
	for (uint32_t i = 0; c && i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == idx)
			return &c->entries[i];
	return NULL;
}

static uint32_t cpucheck_reg(const struct kvm_cpuid2 *c, size_t r)
{
	const struct kvm_cpuid_entry2 *e = cpucheck_leaf(c, cpucheck_regs[r].fn,
							 cpucheck_regs[r].idx);

	return e ? (&e->eax)[cpucheck_regs[r].reg] : 0;
}

static void cpucheck_bit_name(size_t r, int bit, char *out, size_t len)
{
	const char *n = cpucheck_regs[r].names[bit];

	if (n)
		snprintf(out, len, "%s", n);
	else
		snprintf(out, len, "cpuid_%x_%u_%s_bit%d", cpucheck_regs[r].fn, cpucheck_regs[r].idx,
			 reg_names[cpucheck_regs[r].reg], bit);
}

/* Appends the names of the bits of each checked register in A (and, when B
 * is given, not in B), skipping ignored bits. */
static int cpucheck_bits(const struct kvm_cpuid2 *a, const struct kvm_cpuid2 *b,
			 char (*names)[40], int max)
{
	int n = 0;

	for (size_t r = 0; r < ARRAY_SIZE(cpucheck_regs); r++) {
		uint32_t v = cpucheck_reg(a, r) & ~cpucheck_regs[r].ignore;

		if (b)
			v &= ~cpucheck_reg(b, r);
		for (int bit = 0; bit < 32; bit++)
			if ((v >> bit) & 1 && n < max)
				cpucheck_bit_name(r, bit, names[n++], 40);
	}
	return n;
}

int cpucheck_feature_names(const struct kvm_cpuid2 *c, char (*names)[40], int max)
{
	return cpucheck_bits(c, NULL, names, max);
}

int cpucheck_compare(const struct cpucheck_host *src, const struct cpucheck_host *dst,
		     struct cpucheck_result *r)
{
	struct shape g = { .cpu = src->cpu, .cpuid = src->cpuid };
	struct shape h = { .cpu = dst->cpu, .cpuid = dst->cpuid };
	int ret;

	memset(r, 0, sizeof(*r));
	if (!src->cpuid || !dst->cpuid)
		return -ENODATA;
	ret = shape_check(&g, &h, dst->cpuid, r->reason, sizeof(r->reason));
	r->nr_missing = cpucheck_bits(src->cpuid, dst->cpuid, r->missing, CPUCHECK_MAX_MISSING);
	r->ok = ret == 0 && r->nr_missing == 0;
	if (!ret && !r->ok)
		snprintf(r->reason, sizeof(r->reason), "CPU features missing on the destination");
	return 0;
}

int cpucheck_probe(struct cpucheck_host *h)
{
	struct cpu_raw_data_t raw;
	struct cpu_id_t id;
	int fd, ret;

	memset(h, 0, sizeof(*h));
	ret = shape_host_cpu(&h->cpu);
	if (ret)
		return ret;
	for (size_t n = strlen(h->cpu.brand); n && h->cpu.brand[n - 1] == ' '; n--)
		h->cpu.brand[n - 1] = 0;
	if (cpuid_get_raw_data(&raw) == 0 && cpu_identify(&raw, &id) == 0)
		for (int f = 0; f < NUM_CPU_FEATURES && h->nr_features < CPUCHECK_MAX_FEATURES; f++)
			if (id.flags[f])
				snprintf(h->features[h->nr_features++], sizeof(h->features[0]), "%s",
					 cpu_feature_str((cpu_feature_t)f));
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		h->cpuid = cpuid_supported(fd);
		close(fd);
	}
	return 0;
}

void cpucheck_host_free(struct cpucheck_host *h)
{
	free(h->cpuid);
	h->cpuid = NULL;
}

static json_object *cpucheck_cpuid_json(const struct kvm_cpuid2 *c)
{
	json_object *kvm = json_object_new_object(), *arr = json_object_new_array();
	json_object *feat = json_object_new_array();
	static char names[CPUCHECK_MAX_FEATURES][40];
	int n = cpucheck_feature_names(c, names, CPUCHECK_MAX_FEATURES);

	for (int i = 0; i < n; i++)
		json_object_array_add(feat, json_object_new_string(names[i]));
	for (uint32_t i = 0; i < c->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &c->entries[i];
		json_object *o = json_object_new_object();

		json_object_object_add(o, "function", json_object_new_int64(e->function));
		json_object_object_add(o, "index", json_object_new_int64(e->index));
		json_object_object_add(o, "flags", json_object_new_int64(e->flags));
		json_object_object_add(o, "eax", json_object_new_int64(e->eax));
		json_object_object_add(o, "ebx", json_object_new_int64(e->ebx));
		json_object_object_add(o, "ecx", json_object_new_int64(e->ecx));
		json_object_object_add(o, "edx", json_object_new_int64(e->edx));
		json_object_array_add(arr, o);
	}
	json_object_object_add(kvm, "features", feat);
	json_object_object_add(kvm, "cpuid", arr);
	return kvm;
}

char *cpucheck_to_json(const struct cpucheck_host *h)
{
	json_object *root = json_object_new_object(), *cpu = json_object_new_object();
	json_object *feat = json_object_new_array();
	char *out;

	json_object_object_add(root, "format", json_object_new_string(CPUCHECK_FORMAT));
	json_object_object_add(cpu, "vendor", json_object_new_string(h->cpu.vendor));
	json_object_object_add(cpu, "brand", json_object_new_string(h->cpu.brand));
	json_object_object_add(cpu, "family", json_object_new_int(h->cpu.family));
	json_object_object_add(cpu, "model", json_object_new_int(h->cpu.model));
	for (int i = 0; i < h->nr_features; i++)
		json_object_array_add(feat, json_object_new_string(h->features[i]));
	json_object_object_add(cpu, "features", feat);
	json_object_object_add(root, "cpu", cpu);
	json_object_object_add(root, "kvm", h->cpuid ? cpucheck_cpuid_json(h->cpuid) : NULL);
	out = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
						    JSON_C_TO_STRING_SPACED |
						    JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
	return out;
}

static int cpucheck_bad(char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "not a vmm cpu-check file: %s", what);
	return -EINVAL;
}

/* A JSON integer in [0, MAX]. */
static bool cpucheck_get_u32(json_object *o, const char *key, int64_t max, uint32_t *out)
{
	json_object *v;
	int64_t n;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		return false;
	n = json_object_get_int64(v);
	if (n < 0 || n > max)
		return false;
	*out = (uint32_t)n;
	return true;
}

static int cpucheck_cpu_from_json(json_object *cpu, struct cpucheck_host *h, char *err,
				  size_t errlen)
{
	json_object *v, *feat;
	uint32_t fam, model;

	if (!json_object_is_type(cpu, json_type_object))
		return cpucheck_bad(err, errlen, "no \"cpu\" object");
	if (!json_object_object_get_ex(cpu, "vendor", &v) || !json_object_is_type(v, json_type_string))
		return cpucheck_bad(err, errlen, "cpu.vendor is not a string");
	snprintf(h->cpu.vendor, sizeof(h->cpu.vendor), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(cpu, "brand", &v) && json_object_is_type(v, json_type_string))
		snprintf(h->cpu.brand, sizeof(h->cpu.brand), "%s", json_object_get_string(v));
	if (!cpucheck_get_u32(cpu, "family", 0xffff, &fam) ||
	    !cpucheck_get_u32(cpu, "model", 0xffff, &model))
		return cpucheck_bad(err, errlen, "cpu.family/cpu.model are not small integers");
	h->cpu.family = (int32_t)fam;
	h->cpu.model = (int32_t)model;
	if (json_object_object_get_ex(cpu, "features", &feat) &&
	    json_object_is_type(feat, json_type_array)) {
		size_t n = json_object_array_length(feat);

		for (size_t i = 0; i < n && h->nr_features < CPUCHECK_MAX_FEATURES; i++) {
			const char *s = json_object_get_string(json_object_array_get_idx(feat, i));

			snprintf(h->features[h->nr_features++], sizeof(h->features[0]), "%s",
				 s ? s : "");
		}
	}
	return 0;
}

static int cpucheck_kvm_from_json(json_object *kvm, struct cpucheck_host *h, char *err,
				  size_t errlen)
{
	json_object *arr;
	size_t n;

	if (!json_object_is_type(kvm, json_type_object) ||
	    !json_object_object_get_ex(kvm, "cpuid", &arr) ||
	    !json_object_is_type(arr, json_type_array))
		return cpucheck_bad(err, errlen, "kvm.cpuid is not an array");
	n = json_object_array_length(arr);
	if (n == 0 || n > CPUCHECK_MAX_CPUID)
		return cpucheck_bad(err, errlen, "kvm.cpuid is empty or too long");
	h->cpuid = calloc(1, sizeof(*h->cpuid) + n * sizeof(h->cpuid->entries[0]));
	if (!h->cpuid)
		return -ENOMEM;
	h->cpuid->nent = (uint32_t)n;
	for (size_t i = 0; i < n; i++) {
		json_object *o = json_object_array_get_idx(arr, i);
		struct kvm_cpuid_entry2 *e = &h->cpuid->entries[i];

		if (!json_object_is_type(o, json_type_object) ||
		    !cpucheck_get_u32(o, "function", UINT32_MAX, &e->function) ||
		    !cpucheck_get_u32(o, "index", UINT32_MAX, &e->index) ||
		    !cpucheck_get_u32(o, "flags", UINT32_MAX, &e->flags) ||
		    !cpucheck_get_u32(o, "eax", UINT32_MAX, &e->eax) ||
		    !cpucheck_get_u32(o, "ebx", UINT32_MAX, &e->ebx) ||
		    !cpucheck_get_u32(o, "ecx", UINT32_MAX, &e->ecx) ||
		    !cpucheck_get_u32(o, "edx", UINT32_MAX, &e->edx)) {
			snprintf(err, errlen, "not a vmm cpu-check file: kvm.cpuid[%zu] needs "
				 "function, index, flags, eax, ebx, ecx, edx as 32-bit integers", i);
			return -EINVAL;
		}
	}
	return 0;
}

int cpucheck_from_json(const char *text, struct cpucheck_host *h, char *err, size_t errlen)
{
	json_tokener *tok = json_tokener_new();
	json_object *root, *v;
	int ret;

	memset(h, 0, sizeof(*h));
	if (!tok)
		return -ENOMEM;
	root = json_tokener_parse_ex(tok, text, (int)strnlen(text, 1 << 24));
	if (!root || json_tokener_get_error(tok) != json_tokener_success) {
		enum json_tokener_error je = json_tokener_get_error(tok);

		snprintf(err, errlen, "not JSON: %s", je == json_tokener_continue ?
			 "truncated" : json_tokener_error_desc(je));
		json_tokener_free(tok);
		json_object_put(root);
		return -EINVAL;
	}
	json_tokener_free(tok);
	if (!json_object_is_type(root, json_type_object) ||
	    !json_object_object_get_ex(root, "format", &v) ||
	    strcmp(json_object_get_string(v) ?: "", CPUCHECK_FORMAT)) {
		ret = cpucheck_bad(err, errlen, "\"format\" is not \"" CPUCHECK_FORMAT "\"");
		goto out;
	}
	ret = cpucheck_cpu_from_json(json_object_object_get(root, "cpu"), h, err, errlen);
	if (!ret && json_object_object_get_ex(root, "kvm", &v) && v)
		ret = cpucheck_kvm_from_json(v, h, err, errlen);
out:
	json_object_put(root);
	if (ret)
		cpucheck_host_free(h);
	return ret;
}

static int cpucheck_load(const char *path, struct cpucheck_host *h)
{
	char err[256], *text = NULL;
	size_t len = 0;
	FILE *f = fopen(path, "re");
	int ret;

	if (!f) {
		fprintf(stderr, "vmm: cannot read %s: %s\n", path, strerror(errno));
		return -errno;
	}
	text = calloc(1, 1 << 20);
	if (text)
		len = fread(text, 1, (1 << 20) - 1, f);
	fclose(f);
	if (!text || len == (1 << 20) - 1) {
		fprintf(stderr, "vmm: %s: too large or out of memory\n", path);
		free(text);
		return -EFBIG;
	}
	ret = cpucheck_from_json(text, h, err, sizeof(err));
	free(text);
	if (ret)
		fprintf(stderr, "vmm: %s: %s\n", path, err);
	return ret;
}

static int cpucheck_report(const struct cpucheck_host *src, const char *src_name,
			   const struct cpucheck_host *dst, const char *dst_name)
{
	struct cpucheck_result r;

	if (cpucheck_compare(src, dst, &r)) {
		fprintf(stderr, "vmm: %s has no KVM CPUID (it was made on a host without "
			"/dev/kvm); cannot tell\n", src->cpuid ? dst_name : src_name);
		return 2;
	}
	if (r.ok) {
		printf("compatible: a guest started on %s (%s family 0x%x) can run on %s (%s "
		       "family 0x%x)\n", src_name, src->cpu.vendor, src->cpu.family, dst_name,
		       dst->cpu.vendor, dst->cpu.family);
		return 0;
	}
	printf("incompatible: the migration handshake on %s would refuse: %s\n", dst_name, r.reason);
	if (r.nr_missing) {
		printf("missing on %s:", dst_name);
		for (int i = 0; i < r.nr_missing; i++)
			printf(" %s", r.missing[i]);
		printf("\n");
	}
	return 1;
}

int cpucheck_main(const struct vmm_config *cfg)
{
	struct cpucheck_host src, dst;
	int status = 2;
	char *json;

	if (cfg->cpu_from ? cpucheck_load(cfg->cpu_from, &src) : cpucheck_probe(&src)) {
		if (!cfg->cpu_from)
			fprintf(stderr, "vmm: cannot identify this host's CPU (libcpuid)\n");
		return 2;
	}
	if (!cfg->cpu_against) {
		if (!src.cpuid)
			fprintf(stderr, "vmm: warning: /dev/kvm cannot be opened: \"kvm\" is null and "
				"this file cannot be checked against\n");
		json = cpucheck_to_json(&src);
		if (json) {
			puts(json);
			status = 0;
		}
		free(json);
		cpucheck_host_free(&src);
		return status;
	}
	if (!cpucheck_load(cfg->cpu_against, &dst)) {
		status = cpucheck_report(&src, cfg->cpu_from ? cfg->cpu_from : "this host", &dst,
					 cfg->cpu_against);
		cpucheck_host_free(&dst);
	}
	cpucheck_host_free(&src);
	return status;
}
