/*
 * Unit tests for the ACPI tables (src/vmm/acpi.c), read back from guest RAM
 * the way an OS walks them: RSDP -> XSDT -> FADT/MADT -> DSDT/FACS, with
 * every checksum, the MADT entries for 1, 2 and 64 vCPUs, \_S5, and extra
 * AML inside \_SB with a correctly encoded PkgLength at every size class.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/acpi.h"
#include "vmm/pm.h"

#define MiB (1ULL << 20)

static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static struct guest_mem M;

static int setup(void **state)
{
	return mem_init(&M, 512 * MiB);
}

static int teardown(void **state)
{
	mem_destroy(&M);
	return 0;
}

static uint8_t sum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s = (uint8_t)(s + *p++);
	return s;
}

/* Returns the table at GPA after checking signature, bounds and checksum. */
static const uint8_t *table(uint64_t gpa, const char *sig)
{
	const uint8_t *t;
	uint32_t len;

	assert_true(gpa >= ACPI_RSDP_ADDR && gpa + 36 <= ACPI_AREA_END);
	t = M.base + gpa;
	if (memcmp(t, sig, 4) != 0)
		fail_msg("table at %#llx is '%.4s', want '%s'", (unsigned long long)gpa, t, sig);
	len = rd32(t + 4);
	assert_true(len >= 36 && gpa + len <= ACPI_AREA_END);
	if (sum(t, len) != 0)
		fail_msg("%s checksum does not sum to 0", sig);
	return t;
}

/* Finds the XSDT entry with signature SIG. */
static uint64_t xsdt_find(const uint8_t *xsdt, const char *sig)
{
	uint32_t n = (rd32(xsdt + 4) - 36) / 8;

	for (uint32_t i = 0; i < n; i++) {
		uint64_t a = rd64(xsdt + 36 + 8 * i);

		if (a + 4 <= ACPI_AREA_END && a >= ACPI_RSDP_ADDR && !memcmp(M.base + a, sig, 4))
			return a;
	}
	fail_msg("XSDT has no %s", sig);
	return 0;
}

static const uint8_t *rsdp_xsdt(void)
{
	const uint8_t *r = M.base + ACPI_RSDP_ADDR;

	assert_memory_equal(r, "RSD PTR ", 8);
	assert_int_equal(sum(r, 20), 0);
	assert_int_equal(r[15], 2);
	assert_int_equal(rd32(r + 20), 36);
	assert_int_equal(sum(r, 36), 0);
	return table(rd64(r + 24), "XSDT");
}

/* Walks the MADT and checks it for N vCPUs. */
static void check_madt(const uint8_t *madt, int n)
{
	uint32_t len = rd32(madt + 4), off = 44;
	int lapics = 0, ioapics = 0, isos = 0;
	uint8_t seen[256] = { 0 };

	assert_int_equal(rd32(madt + 36), LAPIC_ADDR);
	assert_int_equal(len, 44 + 8 * n + 12 + 10);
	while (off < len) {
		const uint8_t *e = madt + off;

		assert_true(e[1] >= 2 && off + e[1] <= len);
		switch (e[0]) {
		case 0:
			assert_int_equal(e[1], 8);
			assert_int_equal(e[2], lapics);          /* processor UID */
			assert_int_equal(seen[e[3]]++, 0);       /* unique APIC ID */
			assert_int_equal(rd32(e + 4) & 1, 1);    /* enabled */
			lapics++;
			break;
		case 1:
			assert_int_equal(e[1], 12);
			assert_int_equal(rd32(e + 4), IOAPIC_ADDR);
			assert_int_equal(rd32(e + 8), 0);        /* GSI base */
			assert_int_equal(seen[e[2]]++, 0);       /* ID distinct from CPUs */
			ioapics++;
			break;
		case 2:
			assert_int_equal(e[1], 10);
			assert_int_equal(e[2], 0);               /* ISA */
			assert_int_equal(e[3], PM_SCI_IRQ);
			assert_int_equal(rd32(e + 4), PM_SCI_IRQ);
			assert_int_equal(rd16(e + 8), 0x0D);     /* active high, level */
			isos++;
			break;
		default:
			fail_msg("unexpected MADT entry type %u", e[0]);
		}
		off += e[1];
	}
	assert_int_equal(off, len);
	assert_int_equal(lapics, n);
	assert_int_equal(ioapics, 1);
	assert_int_equal(isos, 1);
}

/* Offset of the 4-byte name WHAT in table T after its header, or 0. */
static size_t find(const uint8_t *t, size_t len, const char *what)
{
	for (size_t i = 36; i + 4 <= len; i++)
		if (!memcmp(t + i, what, 4))
			return i;
	return 0;
}

static void check_all(int n)
{
	const uint8_t *xsdt, *fadt, *madt, *dsdt, *facs;
	uint64_t dsdt_a, facs_a;
	size_t s5;
	struct { uint64_t a; uint32_t len; } t[6];
	int nt = 0;

	memset(M.base + ACPI_RSDP_ADDR, 0xA5, ACPI_AREA_END - ACPI_RSDP_ADDR);
	assert_int_equal(acpi_build(&M, n, NULL), 0);
	xsdt = rsdp_xsdt();
	assert_int_equal(rd32(xsdt + 4), 36 + 2 * 8);
	fadt = table(xsdt_find(xsdt, "FACP"), "FACP");
	madt = table(xsdt_find(xsdt, "APIC"), "APIC");
	check_madt(madt, n);

	/* FADT: DSDT and FACS through both the 32- and 64-bit fields */
	assert_true(rd32(fadt + 4) >= 244);
	dsdt_a = rd64(fadt + 140);
	assert_int_equal(rd32(fadt + 40), dsdt_a);
	facs_a = rd64(fadt + 132);
	assert_int_equal(rd32(fadt + 36), facs_a);
	assert_int_equal(facs_a % 64, 0);
	facs = M.base + facs_a;
	assert_memory_equal(facs, "FACS", 4);
	assert_int_equal(rd32(facs + 4), 64);
	assert_int_equal(rd16(fadt + 46), PM_SCI_IRQ);
	assert_int_equal(rd32(fadt + 56), PM1A_EVT_PORT);
	assert_int_equal(rd32(fadt + 64), PM1A_CNT_PORT);
	assert_int_equal(fadt[88], 4);
	assert_int_equal(fadt[89], 2);
	assert_int_equal(rd32(fadt + 112) & (1u << 10), 1u << 10);   /* RESET_REG_SUP */
	assert_int_equal(rd32(fadt + 112) & (1u << 4), 0);           /* fixed power button */
	assert_int_equal(fadt[116], 1);                              /* reset reg in I/O space */
	assert_int_equal(rd64(fadt + 120), PM_RESET_PORT);
	assert_int_equal(fadt[128], PM_RESET_VALUE);
	assert_int_equal(rd64(fadt + 148 + 4), PM1A_EVT_PORT);
	assert_int_equal(rd64(fadt + 172 + 4), PM1A_CNT_PORT);

	/* DSDT: \_S5 = Package { 5, 5, 0, 0 } */
	dsdt = table(dsdt_a, "DSDT");
	s5 = find(dsdt, rd32(dsdt + 4), "_S5_");
	assert_true(s5 > 36);
	assert_int_equal(dsdt[s5 - 1], 0x08);    /* NameOp */
	assert_int_equal(dsdt[s5 + 4], 0x12);    /* PackageOp */
	assert_int_equal(dsdt[s5 + 7], 0x0A);    /* BytePrefix */
	assert_int_equal(dsdt[s5 + 8], PM_S5_TYP);
	assert_true(find(dsdt, rd32(dsdt + 4), "_SB_") > 0);

	/* no two tables overlap */
	t[nt].a = rd64(M.base + ACPI_RSDP_ADDR + 24);
	t[nt++].len = rd32(xsdt + 4);
	t[nt].a = ACPI_RSDP_ADDR;
	t[nt++].len = 36;
	t[nt].a = (uint64_t)(fadt - M.base);
	t[nt++].len = rd32(fadt + 4);
	t[nt].a = (uint64_t)(madt - M.base);
	t[nt++].len = rd32(madt + 4);
	t[nt].a = dsdt_a;
	t[nt++].len = rd32(dsdt + 4);
	t[nt].a = facs_a;
	t[nt++].len = 64;
	for (int i = 0; i < nt; i++)
		for (int j = i + 1; j < nt; j++)
			if (t[i].a < t[j].a + t[j].len && t[j].a < t[i].a + t[i].len)
				fail_msg("tables %d and %d overlap", i, j);
}

static void test_tables_1(void **state) { check_all(1); }
static void test_tables_2(void **state) { check_all(2); }
static void test_tables_64(void **state) { check_all(64); }

static void test_bad_vcpu_counts(void **state)
{
	struct guest_mem small;

	assert_int_equal(acpi_build(&M, 0, NULL), -EINVAL);
	assert_int_equal(acpi_build(&M, -1, NULL), -EINVAL);
	assert_int_equal(acpi_build(&M, 1000, NULL), -EINVAL);
	assert_int_equal(acpi_build(&M, INT_MIN, NULL), -EINVAL);
	/* RAM that does not reach the BIOS area */
	assert_int_equal(mem_init(&small, 512 * 1024), 0);
	assert_int_equal(acpi_build(&small, 1, NULL), -ENOMEM);
	mem_destroy(&small);
}

/*
 * BUG (src/vmm/acpi.c:177): "44 + 8 * nr_vcpus + 22" overflows int for
 * nr_vcpus >= 2^28, the check passes and acpi_madt() writes far past the
 * BIOS area (SIGSEGV). Fix: test nr_vcpus against a maximum count first.
 * Runs in a child, since a wrong answer scribbles over memory.
 */
static void test_huge_vcpu_count(void **state)
{
	static const int counts[] = { INT_MAX / 8 + 1, 0x20000000, INT_MAX };

	for (size_t i = 0; i < ARRAY_SIZE(counts); i++) {
		int status;
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0) {
			struct guest_mem m;   /* 1 MiB: a runaway MADT faults quickly */

			if (mem_init(&m, 1 * MiB))
				_exit(2);
			_exit(acpi_build(&m, counts[i], NULL) == -EINVAL ? 0 : 1);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail_msg("acpi_build(%d vCPUs) was not refused (child %s %d)", counts[i],
				 WIFSIGNALED(status) ? "killed by signal" : "exit status",
				 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	}
}

/*
 * BUG (src/vmm/acpi.c:177 with 94-95, 100): the only cap on nr_vcpus is the
 * space left for the MADT (407 CPUs), but processor UIDs and APIC IDs are
 * written as uint8_t, so from 256 vCPUs on they wrap and repeat (and the
 * IOAPIC takes ID nr_vcpus, which collides or is 0xFF). Fix: refuse
 * nr_vcpus > 254 (or > CLI_MAX_CPUS), or emit x2APIC entries above 254.
 */
static void test_apic_ids_fit(void **state)
{
	int ret = acpi_build(&M, 256, NULL);

	if (ret == 0)
		check_madt(table(xsdt_find(rsdp_xsdt(), "APIC"), "APIC"), 256);
	else
		assert_int_equal(ret, -EINVAL);
}

/* Decodes an AML PkgLength at P; sets *n to its size in bytes. */
static uint32_t pkglen(const uint8_t *p, unsigned *n)
{
	uint32_t v;

	*n = (p[0] >> 6) + 1u;
	if (*n == 1)
		return p[0] & 0x3F;
	assert_int_equal(p[0] & 0x30, 0);
	v = p[0] & 0x0F;
	for (unsigned i = 1; i < *n; i++)
		v |= (uint32_t)p[i] << (4 + 8 * (i - 1));
	return v;
}

/* Builds with an EXTRA-byte blob; checks it is the tail of \_SB and the
 * scope's PkgLength covers exactly the rest of the DSDT. Returns the
 * PkgLength's size in bytes. */
static unsigned check_extra(size_t extra_len)
{
	uint8_t *aml = malloc(extra_len + 1);
	struct acpi_extra ex = { aml, extra_len };
	const uint8_t *dsdt;
	uint32_t len, plen;
	size_t scope;
	unsigned n;

	for (size_t i = 0; i < extra_len; i++)
		aml[i] = (uint8_t)(0x40 + i % 61);
	assert_int_equal(acpi_build(&M, 2, &ex), 0);
	dsdt = table(rd64(table(xsdt_find(rsdp_xsdt(), "FACP"), "FACP") + 140), "DSDT");
	len = rd32(dsdt + 4);
	/* the scope is the last thing in the DSDT: ScopeOp PkgLength "_SB_" ... */
	scope = 0;
	for (size_t i = 36; i + 6 <= len; i++) {
		unsigned k = (dsdt[i + 1] >> 6) + 1u;

		if (dsdt[i] == 0x10 && i + 1 + k + 4 <= len && !memcmp(dsdt + i + 1 + k, "_SB_", 4)) {
			scope = i;
			break;
		}
	}
	assert_true(scope > 0);
	plen = pkglen(dsdt + scope + 1, &n);
	if (plen != len - (scope + 1))
		fail_msg("extra %zu: PkgLength %u, scope really spans %zu bytes", extra_len, plen,
			 len - (scope + 1));
	/* inside the scope: the pvpanic device, then the extra AML at the end */
	assert_non_null(memmem(dsdt + scope, len - scope - extra_len, "PEVT", 4));
	assert_memory_equal(dsdt + len - extra_len, aml, extra_len);
	assert_true(len - extra_len > scope + 1 + n + 4);
	free(aml);
	return n;
}

static void test_extra_aml(void **state)
{
	/* the body is "_SB_" + 41 bytes of pvpanic device + extra */
	assert_int_equal(check_extra(0), 1);
	assert_int_equal(check_extra(17), 1);      /* body 62: PkgLength 63 */
	assert_int_equal(check_extra(18), 2);      /* body 63: 64 won't fit 6 bits */
	assert_int_equal(check_extra(100), 2);
	assert_int_equal(check_extra(4048), 2);    /* body 4093: 4095 */
	assert_int_equal(check_extra(4049), 3);    /* body 4094: needs 3 bytes */
	assert_int_equal(check_extra(5000), 3);
	assert_int_equal(check_extra(50000), 3);
}

static void test_extra_too_big(void **state)
{
	uint8_t *aml = calloc(1, 128 * 1024);
	struct acpi_extra ex = { aml, 128 * 1024 };

	assert_int_equal(acpi_build(&M, 1, &ex), -E2BIG);
	ex.sb_aml_len = 0;                          /* length 0 with a pointer: nothing */
	assert_int_equal(acpi_build(&M, 1, &ex), 0);
	free(aml);
}

static void test_checksum(void **state)
{
	uint8_t buf[300] = { 0 };

	assert_int_equal(acpi_checksum(buf, 0), 0);
	assert_int_equal(acpi_checksum("\x01\x02\x03", 3), 0xFA);
	memset(buf, 0xFF, 256);
	assert_int_equal(acpi_checksum(buf, 256), 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * i + 3);
	buf[17] = 0;
	buf[17] = acpi_checksum(buf, sizeof(buf));
	assert_int_equal(sum(buf, sizeof(buf)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_checksum),
		cmocka_unit_test(test_tables_1),
		cmocka_unit_test(test_tables_2),
		cmocka_unit_test(test_tables_64),
		cmocka_unit_test(test_bad_vcpu_counts),
		cmocka_unit_test(test_huge_vcpu_count),
		cmocka_unit_test(test_apic_ids_fit),
		cmocka_unit_test(test_extra_aml),
		cmocka_unit_test(test_extra_too_big),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
