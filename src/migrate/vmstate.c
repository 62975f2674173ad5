/*
 * Saves and loads state described by struct vmstate_desc tables (wire format
 * in include/vmm/vmstate.h). Loads go into a temporary copy that replaces the
 * live struct only when the whole section, post_load checks included, is good.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/vmstate.h"

#define VMSTATE_MAX_DEPTH	16
#define VMSTATE_MAX_SUBSECTIONS	64
#define SUBSECTION_MARK		1
#define BODY_END_MARK		0

static __thread char last_error[192];

const char *vmstate_last_error(void)
{
	return last_error;
}

/* Records the first failure of the current call (innermost wins); returns err. */
static int fail(int err, const struct vmstate_desc *d, const char *field, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (last_error[0])
		return err;
	n = snprintf(last_error, sizeof(last_error), "%s%s%s: ", d ? d->name : "?",
		     field ? "." : "", field ? field : "");
	if (n < 0 || (size_t)n >= sizeof(last_error))
		return err;
	va_start(ap, fmt);
	vsnprintf(last_error + n, sizeof(last_error) - (size_t)n, fmt, ap);
	va_end(ap);
	return err;
}

/* --- description checks --- */

static bool is_pow2_size(size_t s)
{
	return s == 1 || s == 2 || s == 4 || s == 8;
}

static size_t scalar_size(enum vmstate_type t)
{
	switch (t) {
	case VMSTATE_T_U8: return 1;
	case VMSTATE_T_U16: return 2;
	case VMSTATE_T_U32: return 4;
	case VMSTATE_T_U64: return 8;
	case VMSTATE_T_BOOL: return sizeof(bool);
	default: return 0;
	}
}

static bool is_array(const struct vmstate_field *f)
{
	return f->type == VMSTATE_T_ARRAY || f->type == VMSTATE_T_ARRAY_OF_STRUCT;
}

static int check_desc(const struct vmstate_desc *d, size_t size, int depth);

/* The count field of variable array f must be an earlier unsigned scalar of d. */
static int check_count(const struct vmstate_desc *d, const struct vmstate_field *f)
{
	const struct vmstate_field *c;

	if (!is_array(f) || !is_pow2_size(f->count_size))
		return -EINVAL;
	for (c = d->fields; c < f; c++)
		if (c->offset == f->count_offset && c->size == f->count_size &&
		    c->type >= VMSTATE_T_U8 && c->type <= VMSTATE_T_U64 &&
		    c->version_id <= f->version_id)
			return 0;
	return -EINVAL;
}

static int check_field(const struct vmstate_desc *d, const struct vmstate_field *f,
		       size_t size, int depth)
{
	size_t total = f->size;

	if (!f->name || f->version_id > d->version_id || f->size == 0)
		return -EINVAL;
	switch (f->type) {
	case VMSTATE_T_U8: case VMSTATE_T_U16: case VMSTATE_T_U32:
	case VMSTATE_T_U64: case VMSTATE_T_BOOL:
		if (f->size != scalar_size(f->type))
			return -EINVAL;
		break;
	case VMSTATE_T_BUFFER:
		break;
	case VMSTATE_T_ARRAY:
	case VMSTATE_T_ARRAY_OF_STRUCT:
		if (f->num == 0 || f->size > SIZE_MAX / f->num)
			return -EINVAL;
		if (f->type == VMSTATE_T_ARRAY && !is_pow2_size(f->size))
			return -EINVAL;
		total = f->size * f->num;
		/* fall through */
	case VMSTATE_T_STRUCT:
		if (f->type != VMSTATE_T_ARRAY &&
		    (!f->desc || f->desc->size != f->size ||
		     check_desc(f->desc, f->size, depth + 1)))
			return -EINVAL;
		break;
	default:
		return -EINVAL;
	}
	if (f->offset > size || total > size - f->offset)
		return -EINVAL;
	if (f->count_size &&
	    (f->count_offset > size || f->count_size > size - f->count_offset ||
	     check_count(d, f)))
		return -EINVAL;
	return 0;
}

/* size: of the struct the fields index (a subsection's parent's). */
static int check_desc(const struct vmstate_desc *d, size_t size, int depth)
{
	const struct vmstate_field *f;
	size_t nlen, i, j;
	int ret;

	if (depth > VMSTATE_MAX_DEPTH || !d || !d->name || !d->fields || size == 0)
		return fail(-EINVAL, d, NULL, "malformed description");
	nlen = strlen(d->name);
	if (nlen == 0 || nlen > VMSTATE_NAME_MAX || d->minimum_version_id > d->version_id)
		return fail(-EINVAL, d, NULL, "bad name or versions in description");
	for (f = d->fields; f->type != VMSTATE_T_END; f++) {
		ret = check_field(d, f, size, depth);
		if (ret)
			return fail(ret, d, f->name, "malformed field description");
	}
	for (i = 0; d->subsections && d->subsections[i]; i++) {
		const struct vmstate_desc *s = d->subsections[i];

		if (i >= VMSTATE_MAX_SUBSECTIONS || (s->size && s->size != size))
			return fail(-EINVAL, d, NULL, "bad subsection list");
		for (j = 0; j < i; j++)
			if (!strcmp(d->subsections[j]->name, s->name))
				return fail(-EINVAL, d, s->name, "duplicate subsection");
		ret = check_desc(s, size, depth + 1);
		if (ret)
			return ret;
	}
	return 0;
}

int vmstate_desc_check(const struct vmstate_desc *desc)
{
	last_error[0] = '\0';
	return check_desc(desc, desc ? desc->size : 0, 0);
}

/* --- host memory helpers (host byte order, any alignment) --- */

static uint64_t host_get(const uint8_t *p, size_t size)
{
	uint8_t v8;
	uint16_t v16;
	uint32_t v32;
	uint64_t v64;

	switch (size) {
	case 1: memcpy(&v8, p, 1); return v8;
	case 2: memcpy(&v16, p, 2); return v16;
	case 4: memcpy(&v32, p, 4); return v32;
	default: memcpy(&v64, p, 8); return v64;
	}
}

static void host_set(uint8_t *p, size_t size, uint64_t v)
{
	uint8_t v8 = (uint8_t)v;
	uint16_t v16 = (uint16_t)v;
	uint32_t v32 = (uint32_t)v;

	switch (size) {
	case 1: memcpy(p, &v8, 1); break;
	case 2: memcpy(p, &v16, 2); break;
	case 4: memcpy(p, &v32, 4); break;
	default: memcpy(p, &v, 8); break;
	}
}

static int put_uint(struct stream_buf *b, uint64_t v, size_t size)
{
	switch (size) {
	case 1: return stream_buf_put_u8(b, (uint8_t)v);
	case 2: return stream_buf_put_u16(b, (uint16_t)v);
	case 4: return stream_buf_put_u32(b, (uint32_t)v);
	default: return stream_buf_put_u64(b, v);
	}
}

static int get_uint(struct stream_reader *r, uint64_t *v, size_t size)
{
	uint8_t v8;
	uint16_t v16;
	uint32_t v32;
	int ret;

	switch (size) {
	case 1: ret = stream_get_u8(r, &v8); *v = v8; return ret;
	case 2: ret = stream_get_u16(r, &v16); *v = v16; return ret;
	case 4: ret = stream_get_u32(r, &v32); *v = v32; return ret;
	default: return stream_get_u64(r, v);
	}
}

/* Element count of f in the struct at base (the count field's value, or num). */
static uint64_t field_count(const struct vmstate_field *f, const uint8_t *base)
{
	if (!is_array(f))
		return 1;
	return f->count_size ? host_get(base + f->count_offset, f->count_size) : f->num;
}

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HOST_IS_LE 1
#else
#define HOST_IS_LE 0
#endif

/* --- save --- */

static int save_section(const struct vmstate_desc *d, const uint8_t *base,
			struct stream_buf *out);

static int save_body(const struct vmstate_desc *d, const uint8_t *base,
		     struct stream_buf *out);

static int save_field(const struct vmstate_desc *d, const struct vmstate_field *f,
		      const uint8_t *base, struct stream_buf *out)
{
	const uint8_t *p = base + f->offset;
	uint64_t n = field_count(f, base), i;
	int ret;

	if (n > f->num && is_array(f))
		return fail(-EINVAL, d, f->name, "count %llu over max %u",
			    (unsigned long long)n, f->num);
	switch (f->type) {
	case VMSTATE_T_BOOL:
		return stream_buf_put_u8(out, *(const bool *)p ? 1 : 0);
	case VMSTATE_T_BUFFER:
		return stream_buf_put_bytes(out, p, f->size);
	case VMSTATE_T_ARRAY:
		if (HOST_IS_LE || f->size == 1)
			return stream_buf_put_bytes(out, p, n * f->size);
		for (i = 0; i < n; i++)
			put_uint(out, host_get(p + i * f->size, f->size), f->size);
		return stream_buf_error(out);
	case VMSTATE_T_STRUCT:
	case VMSTATE_T_ARRAY_OF_STRUCT:
		stream_buf_put_u32(out, f->desc->version_id);
		for (i = 0; i < n; i++) {
			ret = save_body(f->desc, p + i * f->size, out);
			if (ret)
				return ret;
		}
		return stream_buf_error(out);
	default:
		return put_uint(out, host_get(p, f->size), f->size);
	}
}

static int save_body(const struct vmstate_desc *d, const uint8_t *base,
		     struct stream_buf *out)
{
	const struct vmstate_field *f;
	int ret;

	if (d->pre_save) {
		ret = d->pre_save(base);
		if (ret)
			return fail(ret < 0 ? ret : -EINVAL, d, NULL, "pre_save refused: %s",
				    strerror(ret < 0 ? -ret : EINVAL));
	}
	for (f = d->fields; f->type != VMSTATE_T_END; f++) {
		if (f->version_id > d->version_id)
			continue;
		ret = save_field(d, f, base, out);
		if (ret)
			return ret;
	}
	for (size_t i = 0; d->subsections && d->subsections[i]; i++) {
		const struct vmstate_desc *s = d->subsections[i];

		if (s->needed && !s->needed(base))
			continue;
		stream_buf_put_u8(out, SUBSECTION_MARK);
		ret = save_section(s, base, out);
		if (ret)
			return ret;
	}
	return stream_buf_put_u8(out, BODY_END_MARK);
}

static int save_section(const struct vmstate_desc *d, const uint8_t *base,
			struct stream_buf *out)
{
	size_t len_off;
	size_t body_len;
	int ret;

	stream_buf_put_string(out, d->name);
	stream_buf_put_u32(out, d->version_id);
	len_off = out->len;
	stream_buf_put_u32(out, 0);
	ret = save_body(d, base, out);
	if (ret)
		return ret;
	if (stream_buf_error(out))
		return stream_buf_error(out);
	body_len = out->len - len_off - 4;
	if (body_len > UINT32_MAX)
		return fail(-EOVERFLOW, d, NULL, "section too large");
	return stream_buf_patch_u32(out, len_off, (uint32_t)body_len);
}

int vmstate_save(const struct vmstate_desc *desc, const void *opaque, struct stream_buf *out)
{
	size_t start = out->len;
	int ret;

	ret = vmstate_desc_check(desc);
	if (ret)
		return ret;
	if (stream_buf_error(out))
		return stream_buf_error(out);
	ret = save_section(desc, opaque, out);
	if (ret == 0)
		return 0;
	if (ret == -ENOMEM)
		fail(ret, desc, NULL, "out of memory");
	out->len = start;
	out->err = 0;
	return ret;
}

/* --- load --- */

static int load_body(const struct vmstate_desc *d, uint8_t *base, struct stream_reader *r,
		     uint32_t version);

static int load_structs(const struct vmstate_field *f, uint8_t *p, uint64_t n,
			struct stream_reader *r)
{
	const struct vmstate_desc *nd = f->desc;
	uint32_t v;
	int ret;

	if (stream_get_u32(r, &v))
		return fail(-EBADMSG, nd, NULL, "truncated");
	if (v < nd->minimum_version_id || v > nd->version_id)
		return fail(-EPROTONOSUPPORT, nd, NULL, "version %u not in [%u, %u]", v,
			    nd->minimum_version_id, nd->version_id);
	for (uint64_t i = 0; i < n; i++) {
		ret = load_body(nd, p + i * f->size, r, v);
		if (ret)
			return ret;
	}
	return 0;
}

static int load_field(const struct vmstate_desc *d, const struct vmstate_field *f,
		      uint8_t *base, struct stream_reader *r)
{
	uint8_t *p = base + f->offset;
	uint64_t n = field_count(f, base), v, i;
	uint8_t b;

	if (n > f->num && is_array(f))
		return fail(-ERANGE, d, f->name, "count %llu over max %u",
			    (unsigned long long)n, f->num);
	switch (f->type) {
	case VMSTATE_T_BOOL:
		if (stream_get_u8(r, &b))
			break;
		if (b > 1)
			return fail(-EBADMSG, d, f->name, "bool is %u", b);
		*(bool *)p = b;
		return 0;
	case VMSTATE_T_BUFFER:
		if (stream_get_bytes(r, p, f->size))
			break;
		return 0;
	case VMSTATE_T_ARRAY:
		if (HOST_IS_LE || f->size == 1) {
			if (stream_get_bytes(r, p, n * f->size))
				break;
			return 0;
		}
		for (i = 0; i < n; i++) {
			if (get_uint(r, &v, f->size))
				return fail(-EBADMSG, d, f->name, "truncated");
			host_set(p + i * f->size, f->size, v);
		}
		return 0;
	case VMSTATE_T_STRUCT:
	case VMSTATE_T_ARRAY_OF_STRUCT:
		return load_structs(f, p, n, r);
	default:
		if (get_uint(r, &v, f->size))
			break;
		host_set(p, f->size, v);
		return 0;
	}
	return fail(-EBADMSG, d, f->name, "truncated");
}

static int load_section(const struct vmstate_desc *d, uint8_t *base, struct stream_reader *r,
			uint32_t max_version);

/* Loads the subsection that starts at r (after its mark); seen tracks duplicates. */
static int load_subsection(const struct vmstate_desc *d, uint8_t *base,
			   struct stream_reader *r, uint64_t *seen)
{
	struct stream_reader t = *r;
	const void *name;
	uint32_t nlen;
	size_t i;

	if (stream_get_u32(&t, &nlen) || stream_get_ptr(&t, nlen, &name))
		return fail(-EBADMSG, d, NULL, "truncated subsection");
	for (i = 0; d->subsections && d->subsections[i]; i++) {
		const struct vmstate_desc *s = d->subsections[i];

		if (strlen(s->name) != nlen || memcmp(s->name, name, nlen))
			continue;
		if (*seen & (1ull << i))
			return fail(-EBADMSG, d, s->name, "subsection repeated");
		*seen |= 1ull << i;
		return load_section(s, base, r, s->version_id);
	}
	return fail(-ENOENT, d, NULL, "unknown subsection '%.*s'",
		    (int)(nlen < VMSTATE_NAME_MAX ? nlen : VMSTATE_NAME_MAX), (const char *)name);
}

static int load_body(const struct vmstate_desc *d, uint8_t *base, struct stream_reader *r,
		     uint32_t version)
{
	const struct vmstate_field *f;
	uint64_t seen = 0;
	uint8_t mark;
	int ret;

	for (f = d->fields; f->type != VMSTATE_T_END; f++) {
		if (f->version_id > version)
			continue;
		ret = load_field(d, f, base, r);
		if (ret)
			return ret;
	}
	for (;;) {
		if (stream_get_u8(r, &mark))
			return fail(-EBADMSG, d, NULL, "truncated");
		if (mark == BODY_END_MARK)
			break;
		if (mark != SUBSECTION_MARK)
			return fail(-EBADMSG, d, NULL, "bad mark %u", mark);
		ret = load_subsection(d, base, r, &seen);
		if (ret)
			return ret;
	}
	if (d->post_load) {
		ret = d->post_load(base, version);
		if (ret)
			return fail(ret < 0 ? ret : -EINVAL, d, NULL, "post_load refused: %s",
				    strerror(ret < 0 ? -ret : EINVAL));
	}
	return 0;
}

static int load_section(const struct vmstate_desc *d, uint8_t *base, struct stream_reader *r,
			uint32_t max_version)
{
	struct stream_reader body;
	const void *name;
	uint32_t nlen, version, body_len;
	int ret;

	if (stream_get_u32(r, &nlen) || stream_get_ptr(r, nlen, &name))
		return fail(-EBADMSG, d, NULL, "truncated section header");
	if (strlen(d->name) != nlen || memcmp(d->name, name, nlen))
		return fail(-ENOENT, d, NULL, "section is '%.*s'",
			    (int)(nlen < VMSTATE_NAME_MAX ? nlen : VMSTATE_NAME_MAX),
			    (const char *)name);
	if (stream_get_u32(r, &version) || stream_get_u32(r, &body_len))
		return fail(-EBADMSG, d, NULL, "truncated section header");
	if (version < d->minimum_version_id || version > max_version)
		return fail(-EPROTONOSUPPORT, d, NULL, "version %u not in [%u, %u]", version,
			    d->minimum_version_id, max_version);
	if (stream_get_sub(r, body_len, &body))
		return fail(-EBADMSG, d, NULL, "truncated section");
	ret = load_body(d, base, &body, version);
	if (ret)
		return ret;
	if (stream_reader_remaining(&body))
		return fail(-EBADMSG, d, NULL, "%zu trailing bytes",
			    stream_reader_remaining(&body));
	return 0;
}

int vmstate_load(const struct vmstate_desc *desc, void *opaque, struct stream_reader *in,
		 uint32_t version_id)
{
	struct stream_reader t = *in;
	uint8_t *tmp;
	int ret;

	ret = vmstate_desc_check(desc);
	if (ret)
		return ret;
	if (version_id < desc->minimum_version_id || version_id > desc->version_id)
		return fail(-EINVAL, desc, NULL, "cannot accept version %u", version_id);
	tmp = malloc(desc->size);
	if (!tmp)
		return fail(-ENOMEM, desc, NULL, "out of memory");
	memcpy(tmp, opaque, desc->size);
	ret = load_section(desc, tmp, &t, version_id);
	if (ret)
		goto out_free;
	memcpy(opaque, tmp, desc->size);
	*in = t;
out_free:
	free(tmp);
	return ret;
}

int vmstate_peek(const struct stream_reader *in, char *name, size_t cap, uint32_t *version_id)
{
	struct stream_reader t = *in;
	int ret;

	ret = stream_get_string(&t, name, cap);
	if (ret)
		return ret;
	return stream_get_u32(&t, version_id);
}
