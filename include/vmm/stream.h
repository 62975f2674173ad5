/*
 * Migration stream framing, independent of the transport: the frame format,
 * an in-memory encoder (struct stream_buf), a bounds-checked decoder
 * (struct stream_reader), RAM page batches, crc32c and the zero-page test.
 */
#ifndef VMM_STREAM_H
#define VMM_STREAM_H

/*
 * The whole migration exchange, one TCP connection (or the control channel of
 * several), every message one frame:
 *
 *   source                                              destination
 *     |-- HELLO {magic "VMMMIG\0\1", u32 version, u64 caps} -->|
 *     |<-- ACCEPT {u64 caps in use, u64 token} | REFUSE {str} -|  (REFUSE ends it)
 *     |-- SHAPE {guest shape, opaque here: memory regions, ----->|
 *     |          vcpu count, device list, cpu fingerprint}       |
 *     |<-- ACCEPT {u64 restore, u64 busy} | REFUSE {str reason} |  (before any page)
 *     |        restore: microseconds loading vCPU and in-kernel   |
 *     |        state takes there (0: unknown); busy: microseconds |
 *     |        between SHAPE and ACCEPT there, so the source can  |
 *     |        tell the round trip from the work                  |
 *     |   multifd (both sides have STREAM_CAP_MULTIFD): N-1 more  |
 *     |   connections, each opened by CHANNEL {u64 token, u32 i, |
 *     |   u32 N} (i = 1..N-1), then on this one:                 |
 *     |-- CHANNEL {u64 token, u32 0, u32 N} ------------------->|
 *     |<-- ACCEPT {u64 0}  |  REFUSE {str reason} --------------|
 *     |                                                          |
 *     |   pre-copy, pass = 1, 2, ...  (vCPUs running)           |
 *     |-- PASS_BEGIN {u32 pass} ------------------------------->|
 *     |-- PAGES {batch} ... PAGES {batch} -------------------->|
 *     |-- PASS_END {u32 pass} --------------------------------->|
 *     |   ... repeated until converged                           |
 *     |-- SYNC {} (both have STREAM_CAP_SYNC) ----------------->|
 *     |<-- SYNC {}  once it has taken in this connection's -----|
 *     |             frames before it                             |
 *     |                                                          |
 *     |   final pause (vCPUs stopped)                            |
 *     |-- PASS_BEGIN, PAGES ..., PASS_END (last dirty pages) -->|
 *     |-- DONE {} on each extra connection (multifd) ---------->|
 *     |-- CPU {vmstate section} x vcpu count ----------------->|
 *     |-- DEVICE {vmstate section} x device count ------------>|
 *     |-- DONE {} --------------------------------------------->|
 *     |<-- READY {}  |  FAIL {str reason} ----------------------|  (FAIL: source resumes)
 *     |-- GO {} ----------------------------------------------->|  (source never runs again)
 *     |<-- STARTED {} ------------------------------------------|
 *
 * With multifd, page I of a pass goes over connection ram_stream_of(I, N)
 * (its 2 MiB chunk modulo N; 0 is this one), so each page's versions arrive
 * in order; the extra connections carry only PAGES and their final DONE. An
 * empty PAGES frame on this connection keeps it alive while the others
 * finish a pass.
 *
 * Either side may send CANCEL {str reason} before GO; the source then resumes
 * the guest and the destination discards it. With post-copy, the destination
 * may send PAGE_REQUEST {u64 gpa, u32 npages} after GO and the source answers
 * with PAGES frames.
 *
 * Frame (all integers little-endian):
 *
 *   off  size
 *     0     4  type          enum stream_type, 1..STREAM_TYPE_MAX
 *     4     4  flags         per type, and STREAM_FRAME_SUM for any; a receiver
 *                            rejects flags it does not know
 *     8     8  length        payload bytes that follow the header
 *    16     4  payload crc   crc32c of the payload, or with STREAM_FRAME_SUM its
 *                            stream_sum32() (only to a peer that offered
 *                            STREAM_CAP_SUM)
 *    20     4  header crc    crc32c of bytes 0..19
 *    24     -  payload
 *
 * Payload primitives: uN is N/8 bytes little-endian; str is u32 byte count then
 * that many bytes, no terminator, no NUL inside.
 *
 * PAGES payload: u32 count, then count entries of { u64 gpa | flags } where the
 * low 12 bits are exactly one of STREAM_PAGE_ZERO (nothing follows) or
 * STREAM_PAGE_NORMAL (4096 bytes of page data follow). The count must match the
 * frame length exactly.
 *
 * PAGES with frame flag STREAM_PAGES_INPLACE (only to a peer that offered
 * STREAM_CAP_INPLACE): the index first, then the data, so the receiver can
 * read each page straight into guest RAM and the sender can send it straight
 * from there:
 *
 *   u32 count (at most STREAM_PAGES_MAX_INPLACE), u32 normal (how many of
 *   them are STREAM_PAGE_NORMAL), then count entries of { u64 gpa | flags },
 *   gpas strictly increasing, each STREAM_PAGE_NORMAL one followed by its
 *   u32 page check; then the 4096 bytes of every STREAM_PAGE_NORMAL page in
 *   entry order.
 *
 * The frame's payload check covers this index only. A page's check is the
 * stream_sum32() of its data. The sender computes it before the socket copies
 * the page, and the guest may write the page in between: such a torn page
 * fails its check. The guest's write also dirtied it, so it comes again in a
 * later pass; the receiver keeps the pages that failed and fails the
 * migration if any is left at DONE.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STREAM_MAGIC		"VMMMIG\0\1"
#define STREAM_MAGIC_LEN	8
#define STREAM_VERSION		1u

/* Capability bits carried by HELLO and ACCEPT. */
#define STREAM_CAP_POSTCOPY	(1ull << 0)
#define STREAM_CAP_MULTIFD	(1ull << 1)
/* The destination checks payloads by stream_sum32() when a frame says so. */
#define STREAM_CAP_SUM		(1ull << 2)
/* The destination answers SYNC with SYNC once it has taken in all before. */
#define STREAM_CAP_SYNC		(1ull << 3)
/* The destination takes PAGES frames with STREAM_PAGES_INPLACE. */
#define STREAM_CAP_INPLACE	(1ull << 4)

/* Frame flag for any type: the payload check is stream_sum32(), not crc32c. */
#define STREAM_FRAME_SUM	(1u << 31)

#define STREAM_FRAME_HDR_SIZE	24
/* Suggested payload limits for stream_frame_parse_header(). */
#define STREAM_MAX_CONTROL	(64u * 1024)
#define STREAM_MAX_PAYLOAD	(8u * 1024 * 1024)

#define STREAM_PAGE_SIZE	4096u
#define STREAM_PAGE_FLAG_MASK	0xfffull
#define STREAM_PAGE_ZERO	0x001u
#define STREAM_PAGE_NORMAL	0x002u
/* Bytes one page adds to a PAGES payload, and the fixed batch prefix. */
#define STREAM_PAGE_ENTRY_ZERO	8u
#define STREAM_PAGE_ENTRY_NORMAL (8u + STREAM_PAGE_SIZE)
#define STREAM_PAGES_HDR	4u
/* A batch size that keeps a PAGES frame under STREAM_MAX_PAYLOAD. */
#define STREAM_PAGES_PER_BATCH	1024u
/* PAGES frame flag: index first, then the pages' data (see above). */
#define STREAM_PAGES_INPLACE	(1u << 0)
#define STREAM_PAGES_HDR_INPLACE 8u
#define STREAM_PAGES_MAX_INPLACE 2048u

#define STREAM_REASON_MAX	256

enum stream_type {
	STREAM_HELLO = 1,
	STREAM_ACCEPT = 2,
	STREAM_REFUSE = 3,
	STREAM_SHAPE = 4,
	STREAM_PASS_BEGIN = 5,
	STREAM_PAGES = 6,
	STREAM_PASS_END = 7,
	STREAM_CPU = 8,
	STREAM_DEVICE = 9,
	STREAM_DONE = 10,
	STREAM_READY = 11,
	STREAM_FAIL = 12,
	STREAM_GO = 13,
	STREAM_STARTED = 14,
	STREAM_CANCEL = 15,
	STREAM_PAGE_REQUEST = 16,
	STREAM_CHANNEL = 17,
	STREAM_SYNC = 18,
	STREAM_TYPE_MAX = STREAM_SYNC,
};

#define STREAM_WUR __attribute__((warn_unused_result))

/*
 * Growable output buffer. Every put returns 0 or -ENOMEM and also records the
 * first error in err, so a run of puts may be checked once, at
 * stream_frame_end() or with stream_buf_error(). Not thread-safe.
 */
struct stream_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	int err;
	bool sum;	/* frames end with STREAM_FRAME_SUM and stream_sum32() */
};

/* Bounds-checked view of received bytes; never reads outside [p, p + len). */
struct stream_reader {
	const uint8_t *p;
	size_t len;
	size_t pos;
};

/* A parsed, header-checked frame header. */
struct stream_frame {
	uint32_t type;
	uint32_t flags;
	uint64_t length;
	uint32_t payload_crc;
};

/* Encoder state of one PAGES frame under construction. */
struct stream_page_batch {
	size_t frame;		/* offset of the frame header in the buffer */
	uint32_t count;
	uint32_t zero;		/* pages sent as STREAM_PAGE_ZERO */
	uint32_t normal;	/* pages sent with data */
	bool inplace;		/* STREAM_PAGES_INPLACE: the buffer holds the index */
	uint64_t last_gpa;	/* inplace: the last entry's */
};

/* One page handed out by stream_pages_next(). */
struct stream_page {
	uint64_t gpa;
	uint32_t flags;		/* STREAM_PAGE_ZERO or STREAM_PAGE_NORMAL */
	const void *data;	/* STREAM_PAGE_SIZE bytes, NULL for a zero page and
				 * in an inplace batch */
	uint32_t check;		/* inplace batch: the page's stream_sum32() */
};

/*
 * Decides whether [gpa, gpa + len) may be written on this side (lies wholly in
 * guest RAM); returns 0 if so or a negative errno (-EFAULT is usual) if not.
 */
typedef int (*stream_gpa_check_fn)(void *opaque, uint64_t gpa, uint64_t len);

/* Decoder state of one received PAGES payload, filled by stream_pages_iter_init(). */
struct stream_page_iter {
	struct stream_reader r;
	uint32_t count;
	uint32_t index;
	uint32_t normal;	/* pages with data */
	bool inplace;
};

/* --- crc32c (Castagnoli), zlib-style chaining: start with crc = 0 --- */

/* Returns the crc32c of p[0..len) continued from crc (0 to start), using the
 * SSE4.2 instruction when present and faster than the tables (timed once). */
uint32_t stream_crc32c(uint32_t crc, const void *p, size_t len);
/* Same result as stream_crc32c() computed with tables only; for tests and fallback. */
uint32_t stream_crc32c_sw(uint32_t crc, const void *p, size_t len);
/* Same result computed with the SSE4.2 crc32 instruction; call only if stream_crc32c_hw_available(). */
uint32_t stream_crc32c_hw(uint32_t crc, const void *p, size_t len);
/* Returns true if this CPU has the SSE4.2 crc32 instruction. */
bool stream_crc32c_hw_available(void);

/* --- the fast payload check --- */

/* Returns a 32-bit check of p[0..len): its little-endian 32-bit words (the
 * tail padded with zeros) added into four 64-bit sums by position mod 4, each
 * sum added into a second one after every 16 bytes, and the eight sums and
 * LEN folded by crc32c. A flipped bit changes a first sum, a moved word a
 * second one. Many times cheaper than crc32c where the crc32 instruction is
 * slow or missing, and about as fast where it is not. */
uint32_t stream_sum32(const void *p, size_t len);
/* Same answer from the portable code (stream_sum32() may use AVX2); for tests. */
uint32_t stream_sum32_generic(const void *p, size_t len);
/* Same answer from the AVX2 code, whichever stream_sum32() picked; for tests.
 * Returns false, and leaves *SUM alone, on a CPU without AVX2. */
bool stream_sum32_avx2(const void *p, size_t len, uint32_t *sum);

/* --- zero pages --- */

/* Returns true if the STREAM_PAGE_SIZE bytes at p are all zero (any alignment). */
bool stream_page_is_zero(const void *p);
/* Same answer as stream_page_is_zero() from the portable code; for tests and benchmarks. */
bool stream_page_is_zero_generic(const void *p);

/* --- encoder --- */

/* Initialises an empty buffer; allocates nothing. */
void stream_buf_init(struct stream_buf *b);
/* Frees the buffer's memory and leaves it empty and reusable. */
void stream_buf_free(struct stream_buf *b);
/* Empties the buffer and clears its error, keeping the allocation. */
void stream_buf_reset(struct stream_buf *b);
/* Returns the first error recorded by a put since init/reset, or 0. */
int stream_buf_error(const struct stream_buf *b) STREAM_WUR;
/* Makes room for n more bytes; returns 0 or -ENOMEM (also recorded in err). */
int stream_buf_reserve(struct stream_buf *b, size_t n);
/* Appends one little-endian integer; returns 0 or -ENOMEM (also recorded). */
int stream_buf_put_u8(struct stream_buf *b, uint8_t v);
int stream_buf_put_u16(struct stream_buf *b, uint16_t v);
int stream_buf_put_u32(struct stream_buf *b, uint32_t v);
int stream_buf_put_u64(struct stream_buf *b, uint64_t v);
/* Appends n raw bytes; returns 0 or -ENOMEM (also recorded). */
int stream_buf_put_bytes(struct stream_buf *b, const void *p, size_t n);
/* Appends s as a str (u32 length + bytes); returns 0, -ENOMEM or -EOVERFLOW. */
int stream_buf_put_string(struct stream_buf *b, const char *s);
/* Overwrites 4 bytes already written at off with v; returns 0 or -ERANGE. */
int stream_buf_patch_u32(struct stream_buf *b, size_t off, uint32_t v) STREAM_WUR;

/* Appends a placeholder frame header and stores its offset in *frame; returns 0 or -errno. */
int stream_frame_begin(struct stream_buf *b, uint32_t type, uint32_t flags,
		       size_t *frame) STREAM_WUR;
/* Fills length and both checks of the frame begun at frame (the payload's by
 * stream_sum32() with STREAM_FRAME_SUM if b->sum); returns 0 or the buffer's
 * first error. */
int stream_frame_end(struct stream_buf *b, size_t frame) STREAM_WUR;
/* Appends a whole frame with the given payload; returns 0 or -errno. */
int stream_frame_put(struct stream_buf *b, uint32_t type, const void *payload,
		     size_t len) STREAM_WUR;
/* Writes a frame header for a payload sent separately (e.g. by iovec) into out. */
void stream_frame_header_encode(uint8_t out[STREAM_FRAME_HDR_SIZE], uint32_t type,
				uint32_t flags, uint64_t length, uint32_t payload_crc);

/* --- decoder --- */

/* Initialises a reader over p[0..len). */
void stream_reader_init(struct stream_reader *r, const void *p, size_t len);
/* Returns the number of bytes not yet consumed. */
size_t stream_reader_remaining(const struct stream_reader *r);
/* Each get consumes one little-endian integer; returns 0, or -EBADMSG if truncated (nothing consumed). */
int stream_get_u8(struct stream_reader *r, uint8_t *v) STREAM_WUR;
int stream_get_u16(struct stream_reader *r, uint16_t *v) STREAM_WUR;
int stream_get_u32(struct stream_reader *r, uint32_t *v) STREAM_WUR;
int stream_get_u64(struct stream_reader *r, uint64_t *v) STREAM_WUR;
/* Copies n bytes into dst; returns 0 or -EBADMSG if fewer remain (nothing consumed). */
int stream_get_bytes(struct stream_reader *r, void *dst, size_t n) STREAM_WUR;
/* Points *p at the next n bytes without copying; returns 0 or -EBADMSG. */
int stream_get_ptr(struct stream_reader *r, size_t n, const void **p) STREAM_WUR;
/* Splits off the next n bytes as reader sub; returns 0 or -EBADMSG. */
int stream_get_sub(struct stream_reader *r, size_t n, struct stream_reader *sub) STREAM_WUR;
/*
 * Reads a str into dst as a NUL-terminated string; returns 0, -EBADMSG if
 * truncated or containing NUL, -EOVERFLOW if it needs more than cap bytes.
 * Nothing is consumed on error.
 */
int stream_get_string(struct stream_reader *r, char *dst, size_t cap) STREAM_WUR;

/*
 * Parses and checks the STREAM_FRAME_HDR_SIZE bytes at buf: returns 0, -EBADMSG
 * (short or bad header crc), -EPROTO (unknown type) or -EMSGSIZE (length >
 * max_payload).
 */
int stream_frame_parse_header(const void *buf, size_t len, struct stream_frame *out,
			      uint64_t max_payload) STREAM_WUR;
/* Returns 0 if payload[0..len) is exactly the payload f announces (length and
 * crc), else -EBADMSG; always -EBADMSG for an inplace PAGES frame, whose check
 * covers only its index (stream_pages_index_init()). */
int stream_frame_check_payload(const struct stream_frame *f, const void *payload,
			       size_t len) STREAM_WUR;
/*
 * Takes one whole checked frame off r, setting *f and a reader over its payload;
 * returns 0 or an error of the two functions above, consuming nothing on error.
 */
int stream_frame_next(struct stream_reader *r, struct stream_frame *f, uint64_t max_payload,
		      struct stream_reader *payload) STREAM_WUR;

/* --- messages --- */

/* Appends a HELLO frame with STREAM_MAGIC, STREAM_VERSION and caps; returns 0 or -errno. */
int stream_hello_put(struct stream_buf *b, uint64_t caps) STREAM_WUR;
/* Decodes a HELLO payload; returns 0, -EPROTO (bad magic) or -EBADMSG (bad length). The caller judges the version. */
int stream_hello_parse(struct stream_reader *payload, uint32_t *version,
		       uint64_t *caps) STREAM_WUR;
/* Appends a frame of type whose payload is one u64 (e.g. ACCEPT caps); returns 0 or -errno. */
int stream_u64_put(struct stream_buf *b, uint32_t type, uint64_t v) STREAM_WUR;
/* Appends a frame of type whose payload is one u32 (e.g. PASS_BEGIN pass); returns 0 or -errno. */
int stream_u32_put(struct stream_buf *b, uint32_t type, uint32_t v) STREAM_WUR;
/* Appends a REFUSE/FAIL/CANCEL frame with a reason; returns 0 or -errno. */
int stream_reason_put(struct stream_buf *b, uint32_t type, const char *reason) STREAM_WUR;
/*
 * Decodes a reason payload into out (cap >= 1), truncating to fit and replacing
 * non-printable bytes with '?'; returns 0 or -EBADMSG.
 */
int stream_reason_parse(struct stream_reader *payload, char *out, size_t cap) STREAM_WUR;

/* --- RAM page batches --- */

/* Starts a PAGES frame; returns 0 or -errno. */
int stream_pages_begin(struct stream_buf *b, struct stream_page_batch *pb) STREAM_WUR;
/*
 * Adds the page at page-aligned gpa: as a zero entry if data is NULL or all
 * zero, else with its 4096 bytes copied; returns 0, -EINVAL (misaligned) or -ENOMEM.
 */
int stream_pages_add(struct stream_buf *b, struct stream_page_batch *pb, uint64_t gpa,
		     const void *data) STREAM_WUR;
/* Finishes the PAGES frame (count, length, crcs); returns 0 or the buffer's first error. */
int stream_pages_end(struct stream_buf *b, struct stream_page_batch *pb) STREAM_WUR;
/* Starts a PAGES frame with STREAM_PAGES_INPLACE; b then holds only its header
 * and index, and the caller sends the pages' data after it; 0 or -errno. */
int stream_pages_begin_inplace(struct stream_buf *b, struct stream_page_batch *pb) STREAM_WUR;
/*
 * Adds the index entry of the page at page-aligned gpa (above the last one) to
 * an inplace batch: returns 1 if the 4096 bytes at data must follow the index
 * (in the order added), 0 if it went as a zero page (data NULL or all zero),
 * or -EINVAL (misaligned or out of order), -EOVERFLOW (batch full), -ENOMEM.
 */
int stream_pages_add_index(struct stream_buf *b, struct stream_page_batch *pb, uint64_t gpa,
			   const void *data) STREAM_WUR;

/*
 * Validates a whole PAGES payload before anything is handed out: count matches
 * the length exactly, flags are valid, and check() accepts every page's range.
 * Returns 0, -EBADMSG, or check()'s error.
 */
int stream_pages_iter_init(struct stream_page_iter *it, const void *payload, size_t len,
			   stream_gpa_check_fn check, void *opaque) STREAM_WUR;
/* Bytes of the index of inplace PAGES frame F, from its first two u32s
 * (COUNT, NORMAL); -EBADMSG if count is over STREAM_PAGES_MAX_INPLACE,
 * normal over count, or F's length is not exactly that index and the data
 * of NORMAL pages. */
int64_t stream_pages_index_size(const struct stream_frame *f, uint32_t count, uint32_t normal);
/*
 * Validates the index of inplace PAGES frame F, INDEX[0..len) (len from
 * stream_pages_index_size()): the frame's payload check, the entries and
 * their flags agreeing with the counts, strictly increasing gpas, and check()
 * on every page. Returns 0, -EBADMSG or check()'s error; the entries are then
 * handed out by stream_pages_next().
 */
int stream_pages_index_init(struct stream_page_iter *it, const struct stream_frame *f,
			    const void *index, size_t len, stream_gpa_check_fn check,
			    void *opaque) STREAM_WUR;
/* Hands out the next page of a validated batch: returns 1 (page set), 0 (end) or -EBADMSG. */
int stream_pages_next(struct stream_page_iter *it, struct stream_page *pg) STREAM_WUR;

#endif /* VMM_STREAM_H */
