/* Little-endian loads and stores for the migration stream's wire format,
 * shared by stream.c and stream_simd.c. gcc turns each into one move. */
#ifndef VMM_MIGRATE_LE_H
#define VMM_MIGRATE_LE_H

#include <stdint.h>

static inline void le_store(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

#define le32_store(p, v) le_store(p, v, 4)
#define le64_store(p, v) le_store(p, v, 8)

static inline uint32_t le32_load(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t le64_load(const uint8_t *p)
{
	return (uint64_t)le32_load(p) | (uint64_t)le32_load(p + 4) << 32;
}

#endif
