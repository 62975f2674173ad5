/* The floor under a migration's total time on this host: MIB MiB (default
 * 256) of non-zero bytes moved by plain blocking send() and recv() of 4 MiB
 * buffers over a unix stream socket, the kind bench/migrate.sh migrates
 * over, a thread at each end. No migration can move its bytes faster over
 * the same socket: it copies them in and out of the kernel as this does, and
 * does more besides. Prints "sockfloor: N MiB in T ms, R MiB/s".
 *
 * By default both ends reuse one 4 MiB buffer, which stays in cache. With
 * --fresh, the sender reads MIB MiB of distinct memory, written beforehand,
 * and the receiver writes into MIB MiB that no one has touched yet, both
 * mapped by mem_init() as vmm maps guest RAM, as a migration's destination
 * receives: the kernel zero-fills each page on first touch.
 *
 * usage: sockfloor [--fresh] [MIB] */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "vmm/mem.h"

#define CHUNK (4u << 20)

struct end {
	int fd;
	uint8_t *buf;
	uint64_t total, span;	/* span: the buffer's size, reused round */
	int err;
};

static void *receiver(void *opaque)
{
	struct end *e = opaque;
	uint64_t got = 0;

	while (got < e->total) {
		uint64_t at = got % e->span;
		ssize_t n = recv(e->fd, e->buf + at, e->span - at < CHUNK ? e->span - at : CHUNK, 0);

		if (n <= 0) {
			e->err = n < 0 ? errno : ECONNRESET;
			break;
		}
		got += (uint64_t)n;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	bool fresh = argc > 1 && strcmp(argv[1], "--fresh") == 0;
	char *end = NULL;
	unsigned long mib = argc > 1 + fresh ? strtoul(argv[1 + fresh], &end, 10) : 256;
	uint64_t total = (uint64_t)mib << 20, span = fresh ? total : CHUNK, x = 0x9e3779b97f4a7c15ull;
	struct guest_mem from, to;
	struct end rx;
	struct timespec t0, t1;
	pthread_t thr;
	uint8_t *src;
	int sv[2], ret;
	double ms;

	if (argc > 2 + fresh || (end && *end) || mib == 0 || mib > (1ul << 20)) {
		fprintf(stderr, "usage: sockfloor [--fresh] [MIB, 1-1048576]\n");
		return 2;
	}
	ret = mem_init(&from, span) ?: mem_init(&to, span);
	if (ret) {
		fprintf(stderr, "sockfloor: cannot map the RAM: %s\n", strerror(-ret));
		return 1;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("sockfloor");
		return 1;
	}
	src = from.base;
	rx = (struct end){ sv[1], to.base, total, span, 0 };
	for (uint64_t i = 0; i < span / 8; i++) {	/* xorshift: no zero pages */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		((uint64_t *)src)[i] = x;
	}
	if (!fresh)
		memset(rx.buf, 1, span);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (pthread_create(&thr, NULL, receiver, &rx)) {
		fprintf(stderr, "sockfloor: cannot start the receiver\n");
		return 1;
	}
	for (uint64_t off = 0; off < total;) {
		uint64_t at = off % span, want = span - at < CHUNK ? span - at : CHUNK;
		ssize_t n = send(sv[0], src + at, (size_t)(want < total - off ? want : total - off),
				 MSG_NOSIGNAL);

		if (n <= 0) {
			perror("sockfloor: send");
			return 1;
		}
		off += (uint64_t)n;
	}
	pthread_join(thr, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (rx.err) {
		fprintf(stderr, "sockfloor: recv: %s\n", strerror(rx.err));
		return 1;
	}
	ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	printf("sockfloor: %lu MiB in %.0f ms, %.0f MiB/s%s\n", mib, ms, (double)mib * 1e3 / ms,
	       fresh ? " (distinct source RAM into fresh RAM)" : "");
	return 0;
}
