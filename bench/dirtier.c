/* Guest workload for the migration benchmarks: fills MIB MiB with bytes from
 * a xorshift generator, so no page is a zero page, no two pages are alike
 * and no compressor shrinks them (the old fill, a multiplicative hash of
 * each byte's offset, repeated every 2 MiB: lz4 -1 packed it 31 to 1, a
 * gift no real guest gives), then writes one byte
 * in RATE distinct pages per second, round robin, until killed (RATE 0:
 * idle after filling). Prints "dirtier: ready" once the memory is filled. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
	long rate = argc > 2 ? strtol(argv[2], NULL, 10) : 0;
	size_t pages = mib << 8, next = 0;
	uint64_t x = 0x9e3779b97f4a7c15ull, *w = malloc(mib << 20);
	uint8_t *p = (uint8_t *)w;
	struct timespec t;

	if (!w)
		return 1;
	for (size_t i = 0; i < (mib << 20) / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[i] = x;
	}
	printf("dirtier: ready (%zu MiB, %ld pages/s)\n", mib, rate);
	fflush(stdout);
	while (rate == 0)
		pause();
	clock_gettime(CLOCK_MONOTONIC, &t);
	for (;;) {
		/* one 10 ms tick: rate/100 pages (a 1 kHz timer is too costly
		 * for a guest nested under emulation) */
		for (long i = 0; i < rate / 100; i++) {
			p[next << 12]++;
			next = (next + 1) % pages;
		}
		t.tv_nsec += 10000000;
		if (t.tv_nsec >= 1000000000) {
			t.tv_nsec -= 1000000000;
			t.tv_sec++;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
	}
}
