/* The floor under a migration's total time on this host: MIB MiB (default
 * 256) of non-zero bytes moved by plain blocking send() and recv() of 4 MiB
 * buffers over a unix stream socket, the kind bench/migrate.sh migrates
 * over, a thread at each end. No migration can move its bytes faster over
 * the same socket: it copies them in and out of the kernel as this does, and
 * does more besides. Prints "sockfloor: N MiB in T ms, R MiB/s".
 *
 * usage: sockfloor [MIB] */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (4u << 20)

struct end {
	int fd;
	uint64_t total;
	int err;
};

static void *receiver(void *opaque)
{
	struct end *e = opaque;
	uint8_t *buf = malloc(CHUNK);
	uint64_t got = 0;

	if (!buf) {
		e->err = ENOMEM;
		return NULL;
	}
	memset(buf, 1, CHUNK);
	while (got < e->total) {
		ssize_t n = recv(e->fd, buf, CHUNK, 0);

		if (n <= 0) {
			e->err = n < 0 ? errno : ECONNRESET;
			break;
		}
		got += (uint64_t)n;
	}
	free(buf);
	return NULL;
}

int main(int argc, char **argv)
{
	char *end = NULL;
	unsigned long mib = argc > 1 ? strtoul(argv[1], &end, 10) : 256;
	struct end rx = { 0 };
	struct timespec t0, t1;
	pthread_t thr;
	uint8_t *src;
	int sv[2];
	double ms;

	if (argc > 2 || (end && *end) || mib == 0 || mib > (1ul << 20)) {
		fprintf(stderr, "usage: sockfloor [MIB, 1-1048576]\n");
		return 2;
	}
	src = malloc(CHUNK);
	if (!src || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("sockfloor");
		return 1;
	}
	for (size_t i = 0; i < CHUNK; i++)
		src[i] = (uint8_t)(i * 2654435761u >> 13) | 1;
	rx = (struct end){ sv[1], (uint64_t)mib << 20, 0 };
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (pthread_create(&thr, NULL, receiver, &rx)) {
		fprintf(stderr, "sockfloor: cannot start the receiver\n");
		return 1;
	}
	for (uint64_t off = 0; off < rx.total;) {
		uint64_t want = CHUNK - off % CHUNK < rx.total - off ? CHUNK - off % CHUNK
								     : rx.total - off;
		ssize_t n = send(sv[0], src + off % CHUNK, (size_t)want, MSG_NOSIGNAL);

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
	printf("sockfloor: %lu MiB in %.0f ms, %.0f MiB/s\n", mib, ms, (double)mib * 1e3 / ms);
	return 0;
}
