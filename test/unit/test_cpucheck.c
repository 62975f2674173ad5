/*
 * Unit tests for `vmm cpu-check` (src/vmm/cpucheck.c) with synthetic hosts:
 * JSON round trip, the verdict for identical hosts, a missing feature (named),
 * several missing features, vendor/family mismatches, ignored bits, a leaf the
 * destination lacks, hosts without KVM, and malformed files.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/cpucheck.h"

/* A Zen-like host: leaf 1, 7.0, 0xD.1, 0x80000001. */
static void host_init(struct cpucheck_host *h, const char *vendor, int family)
{
	static const struct kvm_cpuid_entry2 base[] = {
		{ .function = 0, .eax = 0x10 },
		{ .function = 1, .eax = 0x00a00f11, .ecx = 0x7ed8320b, .edx = 0x178bfbff },
		{ .function = 7, .index = 0, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
		  .ebx = 0x219c97a9, .ecx = 0x0040068c, .edx = 0x00000010 },
		{ .function = 0xD, .index = 1, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
		  .eax = 0x0000000f },
		{ .function = 0x80000001, .ecx = 0x75c237ff, .edx = 0x2fd3fbff },
	};

	memset(h, 0, sizeof(*h));
	snprintf(h->cpu.vendor, sizeof(h->cpu.vendor), "%s", vendor);
	snprintf(h->cpu.brand, sizeof(h->cpu.brand), "Synthetic %s", vendor);
	h->cpu.family = family;
	h->cpu.model = 1;
	h->nr_features = 2;
	strcpy(h->features[0], "sse2");
	strcpy(h->features[1], "avx2");
	h->cpuid = calloc(1, sizeof(*h->cpuid) + sizeof(base));
	assert_non_null(h->cpuid);
	h->cpuid->nent = ARRAY_SIZE(base);
	memcpy(h->cpuid->entries, base, sizeof(base));
}

static struct kvm_cpuid_entry2 *leaf(struct cpucheck_host *h, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < h->cpuid->nent; i++)
		if (h->cpuid->entries[i].function == fn && h->cpuid->entries[i].index == idx)
			return &h->cpuid->entries[i];
	fail_msg("no leaf 0x%x.%u", fn, idx);
	return NULL;
}

static bool has_missing(const struct cpucheck_result *r, const char *name)
{
	for (int i = 0; i < r->nr_missing; i++)
		if (!strcmp(r->missing[i], name))
			return true;
	return false;
}

static struct cpucheck_host S, D;
static struct cpucheck_result R;

static int teardown(void **state)
{
	cpucheck_host_free(&S);
	cpucheck_host_free(&D);
	return 0;
}

static void test_identical(void **state)
{
	host_init(&S, "AuthenticAMD", 0x19);
	host_init(&D, "AuthenticAMD", 0x19);
	D.cpu.model = 0x61;   /* model may differ */
	assert_int_equal(cpucheck_compare(&S, &D, &R), 0);
	assert_true(R.ok);
	assert_int_equal(R.nr_missing, 0);
}

static void test_one_missing(void **state)
{
	host_init(&S, "AuthenticAMD", 0x19);
	host_init(&D, "AuthenticAMD", 0x19);
	leaf(&D, 7, 0)->ebx &= ~(1u << 5);   /* avx2 */
	assert_int_equal(cpucheck_compare(&S, &D, &R), 0);
	assert_false(R.ok);
	assert_int_equal(R.nr_missing, 1);
	assert_string_equal(R.missing[0], "avx2");
	assert_non_null(strstr(R.reason, "EAX=0x7"));   /* shape_check's own words */
	/* The other direction is fine: D's features are a subset of S's. */
	assert_int_equal(cpucheck_compare(&D, &S, &R), 0);
	assert_true(R.ok);
}

static void test_several_missing(void **state)
{
	host_init(&S, "AuthenticAMD", 0x19);
	host_init(&D, "AuthenticAMD", 0x19);
	leaf(&D, 1, 0)->ecx &= ~((1u << 20) | (1u << 28));   /* sse4_2, avx */
	leaf(&D, 0x80000001, 0)->edx &= ~(1u << 26);          /* pdpe1gb */
	leaf(&D, 0xD, 1)->eax &= ~(1u << 3);                  /* xsaves */
	leaf(&D, 7, 0)->ecx &= ~(1u << 22);                   /* rdpid */
	assert_int_equal(cpucheck_compare(&S, &D, &R), 0);
	assert_false(R.ok);
	assert_int_equal(R.nr_missing, 5);
	assert_true(has_missing(&R, "sse4_2"));
	assert_true(has_missing(&R, "avx"));
	assert_true(has_missing(&R, "pdpe1gb"));
	assert_true(has_missing(&R, "xsaves"));
	assert_true(has_missing(&R, "rdpid"));
}

static void test_unnamed_and_ignored_bits(void **state)
{
	host_init(&S, "AuthenticAMD", 0x19);
	host_init(&D, "AuthenticAMD", 0x19);
	/* OSXSAVE and the hypervisor bit are per-VM, never a reason to refuse. */
	leaf(&S, 1, 0)->ecx |= (1u << 27) | (1u << 31);
	leaf(&D, 1, 0)->ecx &= ~((1u << 27) | (1u << 31));
	assert_int_equal(cpucheck_compare(&S, &D, &R), 0);
	assert_true(R.ok);
	/* A bit without a name is named by its position. */
	leaf(&S, 7, 0)->ecx |= 1u << 17;
	leaf(&D, 7, 0)->ecx &= ~(1u << 17);
	assert_int_equal(cpucheck_compare(&S, &D, &R), 0);
	assert_false(R.ok);
	assert_true(has_missing(&R, "cpuid_7_0_ecx_bit17"));
}

static void test_missing_leaf(void **state)
{
	host_init(&S, "AuthenticAMD", 0x19);
	host_init(&D, "AuthenticAMD", 0x19);
	D.cpuid->nent = 3;   /* drop 0xD.1 and 0x80000001 */
	assert_int_equal(cpucheck_compare(&S, &D, &R), 0);
	assert_false(R.ok);
	assert_true(has_missing(&R, "lm"));
	assert_true(has_missing(&R, "xsaveopt"));
	assert_true(has_missing(&R, "nx"));
}

static void test_vendor_family(void **state)
{
	host_init(&S, "AuthenticAMD", 0x19);
	host_init(&D, "GenuineIntel", 0x6);
	assert_int_equal(cpucheck_compare(&S, &D, &R), 0);
	assert_false(R.ok);
	assert_non_null(strstr(R.reason, "CPU mismatch"));
	assert_int_equal(R.nr_missing, 0);   /* same bits, other vendor */
	strcpy(D.cpu.vendor, "AuthenticAMD");
	D.cpu.family = 0x1a;
	assert_int_equal(cpucheck_compare(&S, &D, &R), 0);
	assert_false(R.ok);
	assert_non_null(strstr(R.reason, "family 0x19"));
}

static void test_no_kvm(void **state)
{
	host_init(&S, "AuthenticAMD", 0x19);
	host_init(&D, "AuthenticAMD", 0x19);
	free(D.cpuid);
	D.cpuid = NULL;
	assert_int_equal(cpucheck_compare(&S, &D, &R), -ENODATA);
	assert_int_equal(cpucheck_compare(&D, &S, &R), -ENODATA);
}

static void test_json_round_trip(void **state)
{
	char *json;

	host_init(&S, "AuthenticAMD", 0x19);
	leaf(&S, 1, 0)->edx = 0xffffffffu;   /* full 32-bit values survive */
	json = cpucheck_to_json(&S);
	assert_non_null(json);
	assert_non_null(strstr(json, "\"format\": \"vmm-cpu-check/1\""));
	assert_non_null(strstr(json, "\"avx2\""));
	assert_int_equal(cpucheck_from_json(json, &D, R.reason, sizeof(R.reason)), 0);
	assert_string_equal(D.cpu.vendor, "AuthenticAMD");
	assert_string_equal(D.cpu.brand, "Synthetic AuthenticAMD");
	assert_int_equal(D.cpu.family, 0x19);
	assert_int_equal(D.nr_features, 2);
	assert_int_equal(D.cpuid->nent, S.cpuid->nent);
	assert_memory_equal(D.cpuid->entries, S.cpuid->entries,
			    S.cpuid->nent * sizeof(S.cpuid->entries[0]));
	free(json);
	cpucheck_host_free(&D);
	/* No KVM: "kvm": null and back. */
	free(S.cpuid);
	S.cpuid = NULL;
	json = cpucheck_to_json(&S);
	assert_non_null(strstr(json, "\"kvm\": null"));
	assert_int_equal(cpucheck_from_json(json, &D, R.reason, sizeof(R.reason)), 0);
	assert_null(D.cpuid);
	free(json);
}

static void test_json_bad(void **state)
{
	static const struct { const char *text, *needle; } bad[] = {
		{ "", "not JSON" },
		{ "{\"format\":", "not JSON" },
		{ "[1,2]", "format" },
		{ "{\"format\":\"other/1\"}", "format" },
		{ "{\"format\":\"vmm-cpu-check/1\"}", "cpu" },
		{ "{\"format\":\"vmm-cpu-check/1\",\"cpu\":{\"vendor\":1}}", "vendor" },
		{ "{\"format\":\"vmm-cpu-check/1\",\"cpu\":{\"vendor\":\"x\",\"family\":-1,"
		  "\"model\":0}}", "family" },
		{ "{\"format\":\"vmm-cpu-check/1\",\"cpu\":{\"vendor\":\"x\",\"family\":1,"
		  "\"model\":0},\"kvm\":{\"cpuid\":[]}}", "empty" },
		{ "{\"format\":\"vmm-cpu-check/1\",\"cpu\":{\"vendor\":\"x\",\"family\":1,"
		  "\"model\":0},\"kvm\":{\"cpuid\":[{\"function\":1}]}}", "kvm.cpuid[0]" },
		{ "{\"format\":\"vmm-cpu-check/1\",\"cpu\":{\"vendor\":\"x\",\"family\":1,"
		  "\"model\":0},\"kvm\":{\"cpuid\":[{\"function\":1,\"index\":0,\"flags\":0,"
		  "\"eax\":4294967296,\"ebx\":0,\"ecx\":0,\"edx\":0}]}}", "32-bit" },
		{ "{\"format\":\"vmm-cpu-check/1\",\"cpu\":{\"vendor\":\"x\",\"family\":1,"
		  "\"model\":0},\"kvm\":7}", "kvm.cpuid" },
	};
	char err[256];

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		err[0] = 0;
		assert_int_equal(cpucheck_from_json(bad[i].text, &D, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i].needle))
			fail_msg("case %zu: '%s' does not mention '%s'", i, err, bad[i].needle);
		assert_null(D.cpuid);
	}
}

/* The real host (libcpuid only; KVM if present) survives a round trip. */
static void test_probe(void **state)
{
	char *json, err[256];

	if (cpucheck_probe(&S)) {
		print_message("libcpuid cannot identify this CPU; skipped\n");
		return;
	}
	assert_true(S.cpu.vendor[0] != 0);
	json = cpucheck_to_json(&S);
	assert_non_null(json);
	assert_int_equal(cpucheck_from_json(json, &D, err, sizeof(err)), 0);
	assert_string_equal(D.cpu.vendor, S.cpu.vendor);
	assert_int_equal(D.cpu.family, S.cpu.family);
	assert_int_equal(D.nr_features, S.nr_features);
	if (S.cpuid) {
		assert_int_equal(cpucheck_compare(&S, &D, &R), 0);
		assert_true(R.ok);
	}
	free(json);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_identical, teardown),
		cmocka_unit_test_teardown(test_one_missing, teardown),
		cmocka_unit_test_teardown(test_several_missing, teardown),
		cmocka_unit_test_teardown(test_unnamed_and_ignored_bits, teardown),
		cmocka_unit_test_teardown(test_missing_leaf, teardown),
		cmocka_unit_test_teardown(test_vendor_family, teardown),
		cmocka_unit_test_teardown(test_no_kvm, teardown),
		cmocka_unit_test_teardown(test_json_round_trip, teardown),
		cmocka_unit_test_teardown(test_json_bad, teardown),
		cmocka_unit_test_teardown(test_probe, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
