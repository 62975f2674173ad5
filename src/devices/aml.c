/* The ACPI root bridge \_SB.PCI0 as raw AML, placed in the DSDT's \_SB scope:
 * with ACPI on, Linux only scans PCI buses that a PNP0A03/PNP0A08 device
 * declares. Its _CRS gives bus 0, the 0xCF8 config ports, an I/O window and
 * the 32-bit MMIO window below the IOAPIC. No _PRT: devices use MSI-X. */
#include <errno.h>
#include <string.h>
#include "vmm/pci.h"

struct aml {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static void aml_bytes(struct aml *a, const void *b, size_t n)
{
	if (a->len + n > a->cap) {
		a->err = -ENOSPC;
		return;
	}
	memcpy(a->p + a->len, b, n);
	a->len += n;
}

static void aml_u8(struct aml *a, uint8_t v) { aml_bytes(a, &v, 1); }
static void aml_le(struct aml *a, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		aml_u8(a, (uint8_t)(v >> (8 * i)));
}

/* Integer with the smallest encoding. */
static void aml_int(struct aml *a, uint64_t v)
{
	if (v == 0)
		aml_u8(a, 0x00);
	else if (v == 1)
		aml_u8(a, 0x01);
	else if (v <= 0xff)
		aml_u8(a, 0x0a), aml_le(a, v, 1);
	else if (v <= 0xffff)
		aml_u8(a, 0x0b), aml_le(a, v, 2);
	else if (v <= 0xffffffffu)
		aml_u8(a, 0x0c), aml_le(a, v, 4);
	else
		aml_u8(a, 0x0e), aml_le(a, v, 8);
}

/* Compressed EISA id ("PNP0A03") as a DWord constant. */
static void aml_eisaid(struct aml *a, const char *id)
{
	uint32_t v = (uint32_t)((id[0] - 0x40) << 26 | (id[1] - 0x40) << 21 | (id[2] - 0x40) << 16);
	static const char hex[] = "0123456789ABCDEF";

	for (int i = 0; i < 4; i++)
		v |= (uint32_t)(strchr(hex, id[3 + i]) - hex) << (12 - 4 * i);
	aml_u8(a, 0x0c);
	aml_le(a, __builtin_bswap32(v), 4);
}

static void aml_name(struct aml *a, const char *seg)
{
	aml_u8(a, 0x08);           /* NameOp */
	aml_bytes(a, seg, 4);
}

/* PkgLength for a body of N bytes (the encoding counts itself). */
static void aml_pkglen(struct aml *a, size_t n)
{
	if (n + 1 < 0x40) {
		aml_u8(a, (uint8_t)(n + 1));
	} else if (n + 2 < 0x1000) {
		n += 2;
		aml_u8(a, (uint8_t)(0x40 | (n & 0xf)));
		aml_u8(a, (uint8_t)(n >> 4));
	} else {
		n += 3;
		aml_u8(a, (uint8_t)(0x80 | (n & 0xf)));
		aml_u8(a, (uint8_t)(n >> 4));
		aml_u8(a, (uint8_t)(n >> 12));
	}
}

/* Address space descriptor (Word 0x88 / DWord 0x87 / QWord 0x8A), producer,
 * MinFixed MaxFixed, positive decode. */
static void aml_addr_space(struct aml *a, uint8_t tag, int w, uint8_t rtype, uint8_t tflags,
			   uint64_t min, uint64_t max)
{
	aml_u8(a, tag);
	aml_le(a, 3 + 5 * (uint64_t)w, 2);
	aml_u8(a, rtype);
	aml_u8(a, 0x0c);
	aml_u8(a, tflags);
	aml_le(a, 0, w);                /* granularity */
	aml_le(a, min, w);
	aml_le(a, max, w);
	aml_le(a, 0, w);                /* translation */
	aml_le(a, max - min + 1, w);
}

static void aml_crs(struct aml *a)
{
	uint8_t rt[160];
	struct aml r = { rt, 0, sizeof(rt), 0 };

	aml_addr_space(&r, 0x88, 2, 2, 0, 0, 0);                   /* bus 0-0 */
	aml_u8(&r, 0x47);                                          /* IO(Decode16, CF8, CF8, 1, 8) */
	aml_u8(&r, 1);
	aml_le(&r, PCI_CF8_PORT, 2);
	aml_le(&r, PCI_CF8_PORT, 2);
	aml_u8(&r, 1);
	aml_u8(&r, 8);
	aml_addr_space(&r, 0x88, 2, 1, 3, PCI_IO_WIN_BASE, PCI_IO_WIN_END);
	aml_addr_space(&r, 0x87, 4, 0, 1, PCI_MMIO_BASE, PCI_MMIO_END - 1);
	aml_u8(&r, 0x79);                                          /* end tag */
	aml_u8(&r, 0);
	if (r.err) {
		a->err = r.err;
		return;
	}
	aml_name(a, "_CRS");
	aml_u8(a, 0x11);                   /* BufferOp */
	{
		uint8_t sz[16];
		struct aml s = { sz, 0, sizeof(sz), 0 };

		aml_int(&s, r.len);
		aml_pkglen(a, s.len + r.len);
		aml_bytes(a, sz, s.len);
	}
	aml_bytes(a, rt, r.len);
}

int pci_aml_root_bridge(uint8_t *buf, size_t cap)
{
	uint8_t body[512];
	struct aml b = { body, 0, sizeof(body), 0 };
	struct aml out = { buf, 0, cap, 0 };

	aml_bytes(&b, "PCI0", 4);
	aml_name(&b, "_HID");
	aml_eisaid(&b, "PNP0A08");
	aml_name(&b, "_CID");
	aml_eisaid(&b, "PNP0A03");
	aml_name(&b, "_SEG");
	aml_int(&b, 0);
	aml_name(&b, "_UID");
	aml_int(&b, 0);
	aml_name(&b, "_BBN");
	aml_int(&b, 0);
	aml_crs(&b);
	if (b.err)
		return b.err;
	aml_u8(&out, 0x5b);               /* DeviceOp */
	aml_u8(&out, 0x82);
	aml_pkglen(&out, b.len);
	aml_bytes(&out, body, b.len);
	return out.err ? out.err : (int)out.len;
}
