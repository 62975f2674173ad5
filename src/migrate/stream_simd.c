/*
 * The migration stream's hot loops: crc32c (slicing-by-8 in software, the
 * SSE4.2 instruction on three lanes when the CPU has it and it is faster),
 * the payload sum, and the zero-page test (AVX2 when present), picked at run
 * time.
 */
#include <pthread.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "vmm/stream.h"
#include "le.h"

/* --- crc32c: slicing-by-8 tables; the SSE4.2 crc32 instruction when present,
 * on three interleaved lanes (its latency is three times its issue rate)
 * combined with "append N zero bytes" tables --- */

#define CRC32C_POLY 0x82f63b78u	/* Castagnoli, reflected */
/* Lane lengths of the hardware path: long blocks, then short ones. */
#define CRC_LONG 8192u
#define CRC_SHORT 256u

static uint32_t crc_table[8][256];
/* crc_shift_*[k][b]: the register (b << 8k) after CRC_LONG / CRC_SHORT zero bytes */
static uint32_t crc_shift_long[4][256], crc_shift_short[4][256];
static pthread_once_t crc_table_once = PTHREAD_ONCE_INIT;

/* Fills T so that crc_shift(T, r) is register r after LEN zero bytes. */
static void crc_shift_build(uint32_t t[4][256], size_t len)
{
	uint32_t bit[32];

	for (int i = 0; i < 32; i++) {
		uint32_t c = 1u << i;

		for (size_t n = 0; n < len; n++)
			c = (c >> 8) ^ crc_table[0][c & 0xff];
		bit[i] = c;
	}
	for (int k = 0; k < 4; k++)
		for (uint32_t b = 0; b < 256; b++) {
			uint32_t v = 0;

			for (int i = 0; i < 8; i++)
				if (b & (1u << i))
					v ^= bit[8 * k + i];
			t[k][b] = v;
		}
}

static void crc_table_build(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1)));
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^
					  crc_table[0][crc_table[t - 1][i] & 0xff];
	crc_shift_build(crc_shift_long, CRC_LONG);
	crc_shift_build(crc_shift_short, CRC_SHORT);
}

uint32_t stream_crc32c_sw(uint32_t crc, const void *p, size_t len)
{
	const uint8_t *b = p;
	uint32_t c = ~crc;

	pthread_once(&crc_table_once, crc_table_build);
	for (; len >= 8; b += 8, len -= 8) {
		uint32_t lo = c ^ le32_load(b), hi = le32_load(b + 4);

		c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
		    crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
		    crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
		    crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
	}
	while (len--)
		c = (c >> 8) ^ crc_table[0][(c ^ *b++) & 0xff];
	return ~c;
}

#if defined(__x86_64__)
static uint32_t crc_shift(const uint32_t t[4][256], uint32_t c)
{
	return t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^ t[2][(c >> 16) & 0xff] ^ t[3][c >> 24];
}

/* Runs register C over 3 * LANE bytes at *B as three lanes, advancing *B. */
__attribute__((target("sse4.2")))
static uint64_t crc_hw_3lanes(uint64_t c, const uint8_t **b, size_t lane,
			      const uint32_t shift[4][256])
{
	const uint8_t *p = *b, *end = p + lane;
	uint64_t c1 = 0, c2 = 0, v0, v1, v2;

	for (; p < end; p += 8) {
		memcpy(&v0, p, 8);
		memcpy(&v1, p + lane, 8);
		memcpy(&v2, p + 2 * lane, 8);
		c = _mm_crc32_u64(c, v0);
		c1 = _mm_crc32_u64(c1, v1);
		c2 = _mm_crc32_u64(c2, v2);
	}
	*b += 3 * lane;
	c = crc_shift(shift, (uint32_t)c) ^ c1;
	return crc_shift(shift, (uint32_t)c) ^ c2;
}

__attribute__((target("sse4.2")))
uint32_t stream_crc32c_hw(uint32_t crc, const void *p, size_t len)
{
	const uint8_t *b = p, *end = b + len;
	uint64_t c = ~crc;
	uint64_t v;

	pthread_once(&crc_table_once, crc_table_build);
	while ((size_t)(end - b) >= 3 * CRC_LONG)
		c = crc_hw_3lanes(c, &b, CRC_LONG, crc_shift_long);
	while ((size_t)(end - b) >= 3 * CRC_SHORT)
		c = crc_hw_3lanes(c, &b, CRC_SHORT, crc_shift_short);
	for (; end - b >= 8; b += 8) {
		memcpy(&v, b, 8);
		c = _mm_crc32_u64(c, v);
	}
	while (b < end)
		c = _mm_crc32_u8((uint32_t)c, *b++);
	return ~(uint32_t)c;
}

bool stream_crc32c_hw_available(void)
{
	return __builtin_cpu_supports("sse4.2");
}
#else
uint32_t stream_crc32c_hw(uint32_t crc, const void *p, size_t len)
{
	return stream_crc32c_sw(crc, p, len);
}

bool stream_crc32c_hw_available(void)
{
	return false;
}
#endif

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);
static crc_fn crc_impl;

/* Nanoseconds FN takes over the LEN bytes at BUF, best of three. */
static uint64_t crc_time(crc_fn fn, const uint8_t *buf, size_t len)
{
	uint64_t best = UINT64_MAX;
	volatile uint32_t sink;

	for (int i = 0; i < 3; i++) {
		struct timespec a, b;
		uint64_t ns;

		clock_gettime(CLOCK_MONOTONIC, &a);
		sink = fn(0, buf, len);
		clock_gettime(CLOCK_MONOTONIC, &b);
		ns = (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000ULL + (uint64_t)b.tv_nsec -
		     (uint64_t)a.tv_nsec;
		best = ns < best ? ns : best;
	}
	(void)sink;
	return best;
}

/* The crc32 instruction is the fast path on real CPUs (7x the tables here),
 * but an emulated CPU may offer it and run it slower than the tables (4x
 * slower under QEMU's TCG), so the first call times both on 16 KiB. */
static crc_fn crc_pick(void)
{
	uint8_t buf[16384];

	if (!stream_crc32c_hw_available())
		return stream_crc32c_sw;
	memset(buf, 0xA5, sizeof(buf));
	return crc_time(stream_crc32c_hw, buf, sizeof(buf)) <=
	       crc_time(stream_crc32c_sw, buf, sizeof(buf)) ? stream_crc32c_hw : stream_crc32c_sw;
}

uint32_t stream_crc32c(uint32_t crc, const void *p, size_t len)
{
	crc_fn fn = __atomic_load_n(&crc_impl, __ATOMIC_RELAXED);

	if (!fn) {
		fn = crc_pick();
		__atomic_store_n(&crc_impl, fn, __ATOMIC_RELAXED);
	}
	return fn(crc, p, len);
}

/* --- the payload sum: plain 64-bit loads and adds, 12-21 GB/s on the build
 * hosts, depending on how the loop happens to be aligned (the crc32
 * instruction on three lanes: 15-18 GB/s), 4 GB/s under QEMU's TCG (crc32c:
 * 0.6 GB/s); the same sums four to a 256-bit register with AVX2, 25-29 GB/s.
 * gcc's own SSE2 version of the plain loop ran at 0.8 GB/s under TCG, so the
 * first call times both, like crc32c --- */

/* Four 64-bit sums of the 32-bit words by position mod 4, and four sums of
 * those taken after every 16 bytes; named fields, not arrays, so gcc keeps
 * them in registers (with arrays the loop ran at a fifth of the speed). */
struct sum_state {
	uint64_t a0, a1, a2, a3, s0, s1, s2, s3;
};

static inline void sum_block(struct sum_state *st, const uint8_t *b)
{
	uint64_t w0 = le64_load(b), w1 = le64_load(b + 8);

	st->a0 += (uint32_t)w0;
	st->a1 += w0 >> 32;
	st->a2 += (uint32_t)w1;
	st->a3 += w1 >> 32;
	st->s0 += st->a0;
	st->s1 += st->a1;
	st->s2 += st->a2;
	st->s3 += st->a3;
}

/* Adds the whole 16-byte blocks of B[0..len) to the sums. */
__attribute__((optimize("no-tree-vectorize")))
static void sum_blocks(struct sum_state *st, const uint8_t *b, size_t len)
{
	for (size_t i = 0; i < len / 16; i++)
		sum_block(st, b + 16 * i);
}

/* Pads the tail with zeros and folds the eight sums and LEN by crc32c. */
static uint32_t sum_finish(struct sum_state *st, const uint8_t *b, size_t len)
{
	uint8_t fold[72], tail[16] = { 0 };

	if (len % 16) {
		memcpy(tail, b + len / 16 * 16, len % 16);
		sum_block(st, tail);
	}
	const uint64_t v[9] = { st->a0, st->a1, st->a2, st->a3, st->s0, st->s1, st->s2, st->s3,
				len };

	for (int j = 0; j < 9; j++)
		le64_store(fold + 8 * j, v[j]);
	return stream_crc32c(0, fold, sizeof(fold));
}

uint32_t stream_sum32_generic(const void *p, size_t len)
{
	struct sum_state st = { 0 };

	sum_blocks(&st, p, len);
	return sum_finish(&st, p, len);
}

/* The sum implementations, typed as crc_fn so crc_time() can time them;
 * SEED is unused (0). */
static uint32_t sum32_plain(uint32_t seed, const void *p, size_t len)
{
	(void)seed;
	return stream_sum32_generic(p, len);
}

#if defined(__x86_64__)
/* AVX2: 32 bytes (two 16-byte blocks) per load, split into the low and the
 * high word of each 64-bit lane by a mask and a shift rather than widened by
 * vpmovzxdq, whose one shuffle port capped the loop at 27 GB/s (now 46 GB/s).
 * A lane sums one word position of the even blocks or of the odd ones; the
 * running sums SL/SH count each 32-byte chunk, so for M chunks an even block
 * j weighs 2(M - j/2) and an odd one 1 less, and each position's s comes out
 * as 2(S_even + S_odd) - A_odd. */
__attribute__((target("avx2")))
static uint32_t sum32_avx2(uint32_t seed, const void *p, size_t len)
{
	const uint8_t *b = p;
	const __m256i lo32 = _mm256_set1_epi64x(0xffffffff);
	__m256i al = _mm256_setzero_si256(), ah = al, sl = al, sh = al;
	uint64_t A[4], H[4], S[4], T[4];
	struct sum_state st;
	size_t i;

	(void)seed;
	for (i = 0; i + 64 <= len; i += 64) {
		for (int k = 0; k < 64; k += 32) {
			__m256i v = _mm256_loadu_si256((const __m256i *)(b + i + k));

			al = _mm256_add_epi64(al, _mm256_and_si256(v, lo32));
			ah = _mm256_add_epi64(ah, _mm256_srli_epi64(v, 32));
			sl = _mm256_add_epi64(sl, al);
			sh = _mm256_add_epi64(sh, ah);
		}
	}
	_mm256_storeu_si256((__m256i *)A, al);
	_mm256_storeu_si256((__m256i *)H, ah);
	_mm256_storeu_si256((__m256i *)S, sl);
	_mm256_storeu_si256((__m256i *)T, sh);
	/* lanes: words 0 and 2 of the even blocks, then of the odd ones (A, S);
	 * words 1 and 3 likewise (H, T) */
	st = (struct sum_state){
		.a0 = A[0] + A[2], .a1 = H[0] + H[2], .a2 = A[1] + A[3], .a3 = H[1] + H[3],
		.s0 = 2 * (S[0] + S[2]) - A[2], .s1 = 2 * (T[0] + T[2]) - H[2],
		.s2 = 2 * (S[1] + S[3]) - A[3], .s3 = 2 * (T[1] + T[3]) - H[3],
	};
	sum_blocks(&st, b + i, len - i);
	return sum_finish(&st, b, len);
}
#endif

bool stream_sum32_avx2(const void *p, size_t len, uint32_t *sum)
{
#if defined(__x86_64__)
	if (__builtin_cpu_supports("avx2")) {
		*sum = sum32_avx2(0, p, len);
		return true;
	}
#endif
	(void)p, (void)len, (void)sum;
	return false;
}

static crc_fn sum_impl;

static crc_fn sum_pick(void)
{
#if defined(__x86_64__)
	uint8_t buf[16384];

	if (__builtin_cpu_supports("avx2")) {
		memset(buf, 0xA5, sizeof(buf));
		return crc_time(sum32_avx2, buf, sizeof(buf)) <=
		       crc_time(sum32_plain, buf, sizeof(buf)) ? sum32_avx2 : sum32_plain;
	}
#endif
	return sum32_plain;
}

uint32_t stream_sum32(const void *p, size_t len)
{
	crc_fn fn = __atomic_load_n(&sum_impl, __ATOMIC_RELAXED);

	if (!fn) {
		fn = sum_pick();
		__atomic_store_n(&sum_impl, fn, __ATOMIC_RELAXED);
	}
	return fn(0, p, len);
}

/* --- zero pages: OR-reduce 64/128-byte chunks, leave at the first non-zero one;
 * gcc vectorises the generic loop with SSE2, AVX2 is picked at run time --- */

bool stream_page_is_zero_generic(const void *p)
{
	const uint8_t *b = p;

	for (size_t off = 0; off < STREAM_PAGE_SIZE; off += 64) {
		uint64_t w[8], acc = 0;

		memcpy(w, b + off, sizeof(w));
		for (int i = 0; i < 8; i++)
			acc |= w[i];
		if (acc)
			return false;
	}
	return true;
}

#if defined(__x86_64__)
__attribute__((target("avx2")))
static bool page_is_zero_avx2(const void *p)
{
	const __m256i *v = p;

	for (size_t i = 0; i < STREAM_PAGE_SIZE / 32; i += 4) {
		__m256i a = _mm256_or_si256(_mm256_loadu_si256(v + i),
					    _mm256_loadu_si256(v + i + 1));
		__m256i c = _mm256_or_si256(_mm256_loadu_si256(v + i + 2),
					    _mm256_loadu_si256(v + i + 3));

		a = _mm256_or_si256(a, c);
		if (!_mm256_testz_si256(a, a))
			return false;
	}
	return true;
}
#endif

typedef bool (*zero_fn)(const void *);
static zero_fn zero_impl;

#if defined(__x86_64__)
/* The zero pages among the LEN bytes at P, by the AVX2 test or the generic one. */
static uint32_t zero_count(const void *p, size_t len, bool avx2)
{
	uint32_t n = 0;

	for (size_t off = 0; off < len; off += STREAM_PAGE_SIZE)
		n += avx2 ? page_is_zero_avx2((const uint8_t *)p + off)
			  : stream_page_is_zero_generic((const uint8_t *)p + off);
	return n;
}

/* zero_count() typed as crc_fn for crc_time(); SEED is unused. */
static uint32_t zero_count_avx2(uint32_t seed, const void *p, size_t len)
{
	(void)seed;
	return zero_count(p, len, true);
}

static uint32_t zero_count_generic(uint32_t seed, const void *p, size_t len)
{
	(void)seed;
	return zero_count(p, len, false);
}
#endif

/* AVX2 where it is faster on a whole zero page: an emulated CPU may offer
 * it and run it slower than SSE2, as with the sum. */
static zero_fn page_is_zero_pick(void)
{
#if defined(__x86_64__)
	static const uint8_t zero[4 * STREAM_PAGE_SIZE];

	if (__builtin_cpu_supports("avx2") &&
	    crc_time(zero_count_avx2, zero, sizeof(zero)) <=
	    crc_time(zero_count_generic, zero, sizeof(zero)))
		return page_is_zero_avx2;
#endif
	return stream_page_is_zero_generic;
}

bool stream_page_is_zero(const void *p)
{
	zero_fn fn = __atomic_load_n(&zero_impl, __ATOMIC_RELAXED);

	if (!fn) {
		fn = page_is_zero_pick();
		__atomic_store_n(&zero_impl, fn, __ATOMIC_RELAXED);
	}
	return fn(p);
}
