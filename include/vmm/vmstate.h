/*
 * Declarative description of migratable state: a device keeps its state in a
 * plain struct and describes it with a static const struct vmstate_desc; this
 * module saves it into a migration stream and loads it back, validating all.
 */
#ifndef VMM_VMSTATE_H
#define VMM_VMSTATE_H

/*
 * Wire format (integers little-endian, str = u32 length + bytes):
 *
 *   section  := str name, u32 version, u32 body_len, body[body_len]
 *   body     := field*, { u8 1, section(subsection) }*, u8 0
 *   field    := U8/U16/U32/U64: 1/2/4/8 bytes; BOOL: 1 byte, 0 or 1;
 *               BUFFER: size raw bytes;
 *               ARRAY: n elements of size 1/2/4/8 bytes;
 *               STRUCT / ARRAY_OF_STRUCT: u32 nested version, then n bodies
 *   n        := num, or for variable arrays the value of the count field
 *               (itself a field listed earlier; not repeated on the wire)
 *
 * Fields whose version_id is above the section's version are not on the wire.
 * Subsections are written when needed(opaque) says so (always if needed is
 * NULL), describe the same struct as their parent, and carry their own version.
 * Field names are not on the wire; section and subsection names are.
 *
 * Example:
 *
 *   struct foo_state { uint32_t ctrl; uint16_t nq; struct q_state q[8]; };
 *   static const struct vmstate_desc foo_vmstate = {
 *       .name = "foo", .version_id = 1, .minimum_version_id = 1,
 *       .size = sizeof(struct foo_state), .post_load = foo_post_load,
 *       .fields = (const struct vmstate_field[]){
 *           VMSTATE_U32(struct foo_state, ctrl),
 *           VMSTATE_U16(struct foo_state, nq),
 *           VMSTATE_VARRAY_OF_STRUCT(struct foo_state, q, nq, &q_vmstate),
 *           VMSTATE_END,
 *       },
 *       .subsections = (const struct vmstate_desc *const[]){ &foo_sub, NULL },
 *   };
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/stream.h"

#define VMSTATE_WUR __attribute__((warn_unused_result))
/* Longest section or subsection name accepted. */
#define VMSTATE_NAME_MAX 64

enum vmstate_type {
	VMSTATE_T_END = 0,	/* terminates a field list */
	VMSTATE_T_U8,
	VMSTATE_T_U16,
	VMSTATE_T_U32,
	VMSTATE_T_U64,
	VMSTATE_T_BOOL,
	VMSTATE_T_BUFFER,	/* size raw bytes */
	VMSTATE_T_ARRAY,	/* num elements of size 1/2/4/8 */
	VMSTATE_T_STRUCT,	/* one struct of size bytes described by desc */
	VMSTATE_T_ARRAY_OF_STRUCT, /* num structs of size bytes described by desc */
};

struct vmstate_desc;

struct vmstate_field {
	const char *name;
	size_t offset;		/* in the described struct */
	size_t size;		/* scalar/element/struct size; whole size for BUFFER */
	enum vmstate_type type;
	uint32_t num;		/* element count, or the maximum for a variable array */
	uint32_t version_id;	/* version this field appeared in (0: always) */
	size_t count_offset;	/* variable arrays: offset of the count field */
	size_t count_size;	/* its size in bytes, 0 for a fixed-size array */
	const struct vmstate_desc *desc; /* STRUCT and ARRAY_OF_STRUCT */
};

struct vmstate_desc {
	const char *name;
	uint32_t version_id;		/* version written by save */
	uint32_t minimum_version_id;	/* oldest version load accepts */
	size_t size;			/* sizeof the described struct */
	const struct vmstate_field *fields;	/* ends with VMSTATE_END */
	/* May refuse to save (e.g. -EBUSY); cannot change the state. */
	int (*pre_save)(const void *opaque);
	/*
	 * Validates (and may derive fields of) the freshly loaded copy; returns 0
	 * or -errno to refuse the whole load. Runs on a temporary copy, so it must
	 * not keep the pointer nor touch anything outside the struct.
	 */
	int (*post_load)(void *opaque, uint32_t version_id);
	/* Subsections only: whether to send this one (NULL: always). */
	bool (*needed)(const void *opaque);
	const struct vmstate_desc *const *subsections;	/* NULL-terminated, optional */
};

/*
 * Appends one section for desc/opaque to out (calling pre_save hooks and
 * needed tests); returns 0 or -errno, leaving out as it was on error.
 */
int vmstate_save(const struct vmstate_desc *desc, const void *opaque,
		 struct stream_buf *out) VMSTATE_WUR;

/*
 * Consumes one section from in and, only if it is entirely valid (name, version
 * in [desc->minimum_version_id, version_id], counts <= max, no trailing bytes,
 * every post_load accepts), copies it into opaque; on error opaque and in are
 * unchanged. version_id is the newest version accepted, normally
 * desc->version_id (lower it to refuse newer sections). Fields absent from the
 * stream keep their current values in opaque. Returns 0, -EBADMSG (malformed
 * or truncated), -ENOENT (wrong or unknown section name), -EPROTONOSUPPORT
 * (version), -ERANGE (count over max), -EINVAL (bad desc), -ENOMEM, or
 * post_load's error.
 */
int vmstate_load(const struct vmstate_desc *desc, void *opaque, struct stream_reader *in,
		 uint32_t version_id) VMSTATE_WUR;

/* Reads the next section's name (into name, cap bytes) and version without consuming; returns 0 or -errno. */
int vmstate_peek(const struct stream_reader *in, char *name, size_t cap,
		 uint32_t *version_id) VMSTATE_WUR;

/* Checks that desc and everything it nests is well formed; returns 0 or -EINVAL. */
int vmstate_desc_check(const struct vmstate_desc *desc) VMSTATE_WUR;

/* Describes this thread's last vmstate_save/vmstate_load failure ("" if none). */
const char *vmstate_last_error(void);

/* --- field macros: type-checked against the struct member --- */

/* 0, or a compile error if member f of struct type st is not of type T. */
#define VMSTATE_TYPE_CHECK_(st, f, T)					\
	(0 * sizeof(struct { int vmstate_field_type_mismatch :		\
		__builtin_types_compatible_p(__typeof__(((st *)0)->f), T) ? 1 : -1; }))
#define VMSTATE_MEMBER_SIZE_(st, f)	sizeof(((st *)0)->f)
#define VMSTATE_ELEMS_(st, f)	(VMSTATE_MEMBER_SIZE_(st, f) / sizeof(((st *)0)->f[0]))

#define VMSTATE_SCALAR_(st, f, T, t, v) {				\
	.name = #f, .offset = offsetof(st, f) + VMSTATE_TYPE_CHECK_(st, f, T), \
	.size = sizeof(T), .type = (t), .num = 1, .version_id = (v) }

#define VMSTATE_U8_V(st, f, v)	VMSTATE_SCALAR_(st, f, uint8_t, VMSTATE_T_U8, v)
#define VMSTATE_U16_V(st, f, v)	VMSTATE_SCALAR_(st, f, uint16_t, VMSTATE_T_U16, v)
#define VMSTATE_U32_V(st, f, v)	VMSTATE_SCALAR_(st, f, uint32_t, VMSTATE_T_U32, v)
#define VMSTATE_U64_V(st, f, v)	VMSTATE_SCALAR_(st, f, uint64_t, VMSTATE_T_U64, v)
#define VMSTATE_BOOL_V(st, f, v) VMSTATE_SCALAR_(st, f, bool, VMSTATE_T_BOOL, v)
#define VMSTATE_U8(st, f)	VMSTATE_U8_V(st, f, 0)
#define VMSTATE_U16(st, f)	VMSTATE_U16_V(st, f, 0)
#define VMSTATE_U32(st, f)	VMSTATE_U32_V(st, f, 0)
#define VMSTATE_U64(st, f)	VMSTATE_U64_V(st, f, 0)
#define VMSTATE_BOOL(st, f)	VMSTATE_BOOL_V(st, f, 0)

/* f is a byte array (uint8_t/char [N]) copied raw. */
#define VMSTATE_BUFFER_V(st, f, v) {					\
	.name = #f, .offset = offsetof(st, f), .size = VMSTATE_MEMBER_SIZE_(st, f), \
	.type = VMSTATE_T_BUFFER, .num = 1, .version_id = (v) }
#define VMSTATE_BUFFER(st, f)	VMSTATE_BUFFER_V(st, f, 0)

/* f is an array of T (uint8_t/16/32/64), all elements sent. */
#define VMSTATE_ARRAY_V(st, f, T, v) {					\
	.name = #f, .offset = offsetof(st, f) + VMSTATE_TYPE_CHECK_(st, f[0], T), \
	.size = sizeof(T), .type = VMSTATE_T_ARRAY,			\
	.num = VMSTATE_ELEMS_(st, f), .version_id = (v) }
#define VMSTATE_ARRAY(st, f, T)	VMSTATE_ARRAY_V(st, f, T, 0)

/* f is an array of T; the first cnt elements are sent, cnt <= the array length. */
#define VMSTATE_VARRAY_V(st, f, T, cnt, v) {				\
	.name = #f, .offset = offsetof(st, f) + VMSTATE_TYPE_CHECK_(st, f[0], T), \
	.size = sizeof(T), .type = VMSTATE_T_ARRAY,			\
	.num = VMSTATE_ELEMS_(st, f), .version_id = (v),		\
	.count_offset = offsetof(st, cnt), .count_size = VMSTATE_MEMBER_SIZE_(st, cnt) }
#define VMSTATE_VARRAY(st, f, T, cnt)	VMSTATE_VARRAY_V(st, f, T, cnt, 0)

/* f is a struct described by d (a const struct vmstate_desc *). */
#define VMSTATE_STRUCT_V(st, f, d, v) {					\
	.name = #f, .offset = offsetof(st, f), .size = VMSTATE_MEMBER_SIZE_(st, f), \
	.type = VMSTATE_T_STRUCT, .num = 1, .version_id = (v), .desc = (d) }
#define VMSTATE_STRUCT(st, f, d)	VMSTATE_STRUCT_V(st, f, d, 0)

/* f is an array of structs described by d. */
#define VMSTATE_ARRAY_OF_STRUCT_V(st, f, d, v) {			\
	.name = #f, .offset = offsetof(st, f), .size = sizeof(((st *)0)->f[0]), \
	.type = VMSTATE_T_ARRAY_OF_STRUCT, .num = VMSTATE_ELEMS_(st, f),	\
	.version_id = (v), .desc = (d) }
#define VMSTATE_ARRAY_OF_STRUCT(st, f, d)	VMSTATE_ARRAY_OF_STRUCT_V(st, f, d, 0)

/* f is an array of structs described by d; the first cnt are sent. */
#define VMSTATE_VARRAY_OF_STRUCT_V(st, f, cnt, d, v) {			\
	.name = #f, .offset = offsetof(st, f), .size = sizeof(((st *)0)->f[0]), \
	.type = VMSTATE_T_ARRAY_OF_STRUCT, .num = VMSTATE_ELEMS_(st, f),	\
	.version_id = (v), .desc = (d),					\
	.count_offset = offsetof(st, cnt), .count_size = VMSTATE_MEMBER_SIZE_(st, cnt) }
#define VMSTATE_VARRAY_OF_STRUCT(st, f, cnt, d)	VMSTATE_VARRAY_OF_STRUCT_V(st, f, cnt, d, 0)

#define VMSTATE_END { .name = NULL, .type = VMSTATE_T_END }

#endif /* VMM_VMSTATE_H */
