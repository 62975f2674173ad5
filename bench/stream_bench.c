/* Stream throughput without KVM: the real page sender (ram_send_pass over
 * chans) and receiver (chan_recv_header + ram_recv, pages in place) move guest
 * RAM over loopback TCP, for several page mixes and numbers of page streams
 * (multifd-channels, --streams): with N streams the pass goes over N
 * connections, sent by ram_send_pass's own threads and received on one
 * thread each, the extra streams ending with DONE as src_final() ends them.
 * Each (mix, streams) run is compared with the loopback limit measured in the
 * same run: plain blocking send()/recv() of the same number of non-zero bytes
 * in large buffers over ONE connection, whatever the number of streams, so
 * the ratio says what N streams gain over the single connection a one-stream
 * migration is bound by. With N > 1 the limit over N such connections in
 * parallel is printed too (limitN, ratioN), to tell what the streams cost
 * from what the host's loopback allows. Each vmm run's CPU time (both ends,
 * all threads) per GiB is printed too, against the N-connection limit run's:
 * where both ends share the cores, the CPU a path spends per byte is the
 * speed it gives up. Zero pages are also compared with memset/memcpy/read
 * speed. Prints ratios, not verdicts. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include "vmm/chan.h"
#include "vmm/mem.h"
#include "vmm/ram.h"
#include "vmm/stream.h"

#define BENCH_CHUNK (4u << 20)         /* baseline send()/recv() size */
#define BENCH_MEMSPEED (256u << 20)    /* buffer for the memory speed test */
#define MIB (1024.0 * 1024.0)

enum mix { MIX_RANDOM, MIX_PATTERN, MIX_MIXED, MIX_ZERO, MIX_HOLE, MIX_COUNT };

static const char *const mix_names[MIX_COUNT] = { "random", "pattern", "mixed", "zero", "hole" };
static const char *const mix_help[MIX_COUNT] = {
	"every page random bytes",
	"one non-zero page repeated",
	"1/2 zero, 1/4 random, 1/4 pattern, by page",
	"every page written with zeros",
	"never-touched RAM (holes)",
};

/* One vmm run: the sender's counters and when the receivers were done. */
struct run {
	struct guest_mem *src;
	bool fresh_dst;          /* leave the destination RAM unpopulated */
	int n;                   /* page streams (connections) */
	uint64_t t0, t1;         /* sender start, last receiver done (ns) */
	double c0, cpu;          /* process CPU time at t0, and used by t1 (ms) */
	struct ram_stats stats;
	uint64_t wire;           /* bytes sent on all the connections */
};

/* The receiving end of one page stream. */
struct rx {
	struct chan c;
	struct ram_receiver r;   /* stream r.idx of r.n, sharing one written map */
	pthread_t th;
	uint64_t t1;             /* done (ns) */
	int ret;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* CPU time all threads of this process used so far, the exited ones too (ms). */
static double cpu_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static double mibs(uint64_t bytes, uint64_t ns)
{
	return ns ? (double)bytes / MIB / ((double)ns / 1e9) : 0;
}

/* xorshift64: fast, non-zero, not compressible by anything in the path. */
static void fill_random(uint8_t *p, size_t len, uint64_t seed)
{
	uint64_t x = seed | 1;

	for (size_t i = 0; i + 8 <= len; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
}

static void fill_mix(struct guest_mem *m, enum mix mix)
{
	uint64_t pages = m->size / PAGE_SIZE;
	uint8_t pat[PAGE_SIZE];

	if (mix == MIX_HOLE)
		return;
	fill_random(pat, sizeof(pat), 0x9e3779b97f4a7c15ULL);
	for (uint64_t i = 0; i < pages; i++) {
		uint8_t *p = m->base + i * PAGE_SIZE;
		unsigned sel = (unsigned)((i * 2654435761ULL) >> 7) & 3;

		if (mix == MIX_ZERO || (mix == MIX_MIXED && sel < 2))
			memset(p, 0, PAGE_SIZE);
		else if (mix == MIX_RANDOM || (mix == MIX_MIXED && sel == 2))
			fill_random(p, PAGE_SIZE, i * 0x100000001b3ULL + 7);
		else
			memcpy(p, pat, PAGE_SIZE);
	}
}

/* Listening socket on 127.0.0.1, ephemeral port; returns the fd or -errno. */
static int listen_loopback(uint16_t *port)
{
	char err[128];
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int lfd = chan_listen("tcp:127.0.0.1:0", err, sizeof(err));

	if (lfd < 0) {
		fprintf(stderr, "stream-bench: %s\n", err);
		return lfd;
	}
	if (getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0) {
		close(lfd);
		return -errno;
	}
	*port = ntohs(sa.sin_port);
	return lfd;
}

/* --- the vmm path --- */

/* Receives one stream like dst_lane_thread(): pages until DONE, or for
 * stream 0 PASS_BEGIN, pages, PASS_END. On error it shuts its connection
 * down, so the sender fails and shuts the other streams down in turn. */
static void *vmm_receiver(void *opaque)
{
	struct rx *x = opaque;
	uint32_t end = x->r.idx ? STREAM_DONE : STREAM_PASS_END;
	struct stream_buf in;
	int ret = 0;

	stream_buf_init(&in);
	while (!ret) {
		struct stream_frame f;

		ret = chan_recv_header(&x->c, &f, STREAM_MAX_PAYLOAD);
		if (!ret && f.type == STREAM_PAGES) {
			ret = ram_recv(&x->r, &x->c, &f, &in);
			continue;
		}
		ret = ret ?: chan_recv_payload(&x->c, &f, &in);
		if (ret || f.type == end)
			break;
		if (x->r.idx || f.type != STREAM_PASS_BEGIN)
			ret = -EPROTO;
	}
	if (!ret && x->r.torn)
		ret = -EBADMSG;		/* nothing writes the source's RAM here */
	x->t1 = now_ns();
	x->ret = ret;
	if (ret)
		chan_abort(&x->c);
	stream_buf_free(&in);
	return NULL;
}

/* PASS_BEGIN, one full pass, PASS_END on C[0]: what src_pass() sends for
 * pass 1; then DONE on each extra stream, as src_final() ends them. */
static int vmm_send(struct run *run, struct chan *const *c)
{
	struct ram_tracker t;
	struct stream_buf b;
	int ret = ram_send_init(&t, run->src);

	if (ret)
		return ret;
	/* as between two vmm that both offer STREAM_CAP_SUM and _INPLACE */
	t.sum = true;
	t.inplace = true;
	stream_buf_init(&b);
	run->t0 = now_ns();
	run->c0 = cpu_ms();
	ret = stream_u32_put(&b, STREAM_PASS_BEGIN, 1) ?: chan_send(c[0], b.data, b.len);
	if (!ret)
		ret = ram_send_pass(&t, c, run->n);
	stream_buf_reset(&b);
	if (!ret)
		ret = stream_u32_put(&b, STREAM_PASS_END, 1) ?: chan_send(c[0], b.data, b.len);
	for (int i = 1; !ret && i < run->n; i++) {
		stream_buf_reset(&b);
		ret = stream_frame_put(&b, STREAM_DONE, NULL, 0) ?: chan_send(c[i], b.data, b.len);
	}
	run->stats = t.stats;
	run->wire = 0;
	for (int i = 0; i < run->n; i++)
		run->wire += c[i]->sent;
	stream_buf_free(&b);
	ram_track_stop(&t);
	return ret;
}

/* Faults every page of M in (zero-filled), as the baseline's receive buffer
 * is: on a host that backs guest memory lazily (this sandbox), the first
 * write to a fresh page costs more than the whole stream path. */
static void populate(struct guest_mem *m)
{
	if (madvise(m->base, m->size, MADV_POPULATE_WRITE) == 0)
		return;
	for (uint64_t off = 0; off < m->size; off += PAGE_SIZE)
		((volatile uint8_t *)m->base)[off] = 0;
}

/* Compares two guest RAMs; 0 if equal, else -EIO. */
static int same_contents(const struct guest_mem *a, const struct guest_mem *b)
{
	return a->size == b->size && memcmp(a->base, b->base, a->size) == 0 ? 0 : -EIO;
}

/* One transfer of SRC over run->n streams into fresh destination RAM,
 * checked afterwards. */
static int vmm_run(struct run *run)
{
	struct chan sc[RAM_MAX_STREAMS], *cp[RAM_MAX_STREAMS];
	struct rx rx[RAM_MAX_STREAMS];
	struct ram_receiver r;
	struct guest_mem dst;
	char err[128], uri[64];
	uint16_t port;
	int lfd, conns = 0, started = 0, ret = mem_init(&dst, run->src->size);

	if (ret)
		return ret;
	if (!run->fresh_dst)
		populate(&dst);
	ret = ram_recv_init_mem(&r, &dst);
	if (ret)
		goto out_mem;
	lfd = listen_loopback(&port);
	if (lfd < 0) {
		ret = lfd;
		goto out_recv;
	}
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", port);
	/* each connection accepted right after its connect, so that rx[i] is the
	 * other end of sc[i] and knows which stream it receives */
	for (; conns < run->n; conns++) {
		ret = chan_connect(&sc[conns], uri, 10000, err, sizeof(err));
		if (ret) {
			fprintf(stderr, "stream-bench: %s\n", err);
			break;
		}
		ret = chan_accept(&rx[conns].c, lfd, 10000);
		if (ret) {
			chan_close(&sc[conns]);
			break;
		}
		cp[conns] = &sc[conns];
		ram_recv_stream(&rx[conns].r, &r, conns, run->n);
	}
	close(lfd);
	for (; !ret && started < conns; started += !ret)
		ret = -pthread_create(&rx[started].th, NULL, vmm_receiver, &rx[started]);
	if (!ret)
		ret = vmm_send(run, cp);
	for (int i = 0; ret && i < conns; i++)
		chan_abort(&sc[i]);	/* the receivers see the end at once */
	run->t1 = 0;
	for (int i = 0; i < started; i++) {
		pthread_join(rx[i].th, NULL);
		ret = ret ?: rx[i].ret;
		run->t1 = rx[i].t1 > run->t1 ? rx[i].t1 : run->t1;
	}
	run->cpu = cpu_ms() - run->c0;
	for (int i = 0; i < conns; i++) {
		chan_close(&sc[i]);
		chan_close(&rx[i].c);
	}
	if (!ret && same_contents(run->src, &dst)) {
		fprintf(stderr, "stream-bench: destination RAM differs from the source\n");
		ret = -EIO;
	}
out_recv:
	ram_recv_destroy(&r);
out_mem:
	mem_destroy(&dst);
	return ret;
}

/* --- the limit: plain blocking send()/recv() in large buffers --- */

/* One connection of plain_run(), or rawchan_run()'s receiving side. */
struct plain {
	int lfd;                 /* rawchan_run(): the listening socket */
	int fd, rfd;             /* plain_run(): the sending and receiving end */
	const uint8_t *src;      /* plain_run(): the bytes this connection carries */
	uint64_t total;
	uint64_t t1;             /* receiver done (ns) */
	int ret;                 /* the receiver's */
	bool short_send;         /* the sender's error */
	bool rx_on, tx_on;       /* threads started */
	pthread_t rx, tx;
};

static void *plain_receiver(void *opaque)
{
	struct plain *p = opaque;
	uint8_t *buf = malloc(BENCH_CHUNK);
	uint64_t got = 0;

	if (!buf) {
		p->ret = -ENOMEM;
		shutdown(p->rfd, SHUT_RDWR);
		return NULL;
	}
	memset(buf, 1, BENCH_CHUNK);
	while (got < p->total) {
		ssize_t n = recv(p->rfd, buf, BENCH_CHUNK, 0);

		if (n <= 0) {
			p->ret = n < 0 ? -errno : -ECONNRESET;
			break;
		}
		got += (uint64_t)n;
	}
	p->t1 = now_ns();
	free(buf);
	return NULL;
}

static void *plain_sender(void *opaque)
{
	struct plain *p = opaque;
	uint64_t off = 0;

	while (off < p->total) {
		size_t n = p->total - off < BENCH_CHUNK ? (size_t)(p->total - off) : BENCH_CHUNK;
		ssize_t s = send(p->fd, p->src + off, n, MSG_NOSIGNAL);

		if (s <= 0)
			break;
		off += (uint64_t)s;
	}
	p->short_send = off < p->total;
	if (p->short_send)	/* the receiver would wait for the rest */
		shutdown(p->fd, SHUT_RDWR);
	return NULL;
}

/* Sends the SIZE bytes at SRC (non-zero) over N plain TCP connections in
 * parallel, a thread at each end of each, connection i carrying the i-th
 * Nth of them; returns MiB/s or a negative number on error, and (if CPU is
 * not NULL) the CPU time both ends used in ms. */
static double plain_run(const uint8_t *src, uint64_t size, int n, double *cpu)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct plain p[RAM_MAX_STREAMS];
	uint64_t t0, t1 = 0;
	double c0;
	uint16_t port;
	int lfd = listen_loopback(&port), conns = 0;
	bool bad = lfd < 0;

	sa.sin_port = htons(port);
	/* each connection accepted right after its connect: p[i] holds both ends */
	for (; !bad && conns < n; conns++) {
		struct plain *q = &p[conns];

		*q = (struct plain){ .src = src + size * (uint64_t)conns / (uint64_t)n, .rfd = -1,
				     .total = size * (uint64_t)(conns + 1) / (uint64_t)n -
					      size * (uint64_t)conns / (uint64_t)n };
		q->fd = socket(AF_INET, SOCK_STREAM, 0);
		if (q->fd >= 0 && connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			q->rfd = accept(lfd, NULL, NULL);
		bad = q->rfd < 0;
	}
	if (lfd >= 0)
		close(lfd);
	for (int i = 0; !bad && i < conns; i++)
		bad = !(p[i].rx_on = !pthread_create(&p[i].rx, NULL, plain_receiver, &p[i]));
	t0 = now_ns();
	c0 = cpu_ms();
	for (int i = 0; !bad && i < conns; i++)
		bad = !(p[i].tx_on = !pthread_create(&p[i].tx, NULL, plain_sender, &p[i]));
	for (int i = 0; i < conns; i++) {
		if (bad && p[i].fd >= 0)	/* let the started threads end */
			shutdown(p[i].fd, SHUT_RDWR);
		if (p[i].tx_on)
			pthread_join(p[i].tx, NULL);
		if (p[i].rx_on)
			pthread_join(p[i].rx, NULL);
		bad |= p[i].short_send || p[i].ret;
		t1 = p[i].t1 > t1 ? p[i].t1 : t1;
		if (p[i].fd >= 0)
			close(p[i].fd);
		if (p[i].rfd >= 0)
			close(p[i].rfd);
	}
	if (cpu)
		*cpu = cpu_ms() - c0;
	return bad ? -1 : mibs(size, t1 - t0);
}

/* --- the transport alone: chan_send()/chan_recv() (io_uring) in large buffers --- */

static void *rawchan_receiver(void *opaque)
{
	struct plain *p = opaque;
	uint8_t *buf = malloc(BENCH_CHUNK);
	struct chan c;
	int ret = buf ? chan_accept(&c, p->lfd, 10000) : -ENOMEM;

	for (uint64_t got = 0; !ret && got < p->total; got += BENCH_CHUNK)
		ret = chan_recv(&c, buf, p->total - got < BENCH_CHUNK ? p->total - got : BENCH_CHUNK);
	p->t1 = now_ns();
	p->ret = ret;
	if (buf)
		chan_close(&c);
	free(buf);
	return NULL;
}

/* Like plain_run() through the project's chan; MiB/s or negative on error. */
static double rawchan_run(const uint8_t *src, uint64_t size)
{
	struct plain p = { .total = size };
	char err[128], uri[64];
	uint16_t port;
	uint64_t t0 = 0;
	pthread_t th;
	struct chan c;
	int ret;

	p.lfd = listen_loopback(&port);
	if (p.lfd < 0 || pthread_create(&th, NULL, rawchan_receiver, &p)) {
		if (p.lfd >= 0)
			close(p.lfd);
		return -1;
	}
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", port);
	ret = chan_connect(&c, uri, 10000, err, sizeof(err));
	if (!ret) {
		t0 = now_ns();
		for (uint64_t off = 0; !ret && off < size; off += BENCH_CHUNK)
			ret = chan_send(&c, src + off,
					size - off < BENCH_CHUNK ? size - off : BENCH_CHUNK);
		if (ret)
			chan_abort(&c);
	}
	pthread_join(th, NULL);
	chan_close(&c);
	close(p.lfd);
	return ret || p.ret ? -1 : mibs(size, p.t1 - t0);
}

/* memcpy() of SRC into fresh guest RAM, as the receiver writes it: the
 * fastest the destination can fill fresh guest RAM; MiB/s or -1. */
static double fresh_write_speed(const uint8_t *src, uint64_t size)
{
	struct guest_mem m;
	uint64_t t0 = now_ns();
	int ret = mem_init(&m, size);

	if (!ret)
		memcpy(m.base, src, size);
	t0 = now_ns() - t0;
	mem_destroy(&m);
	return ret ? -1 : mibs(size, t0);
}

/* --- memory speed --- */

struct memspeed {
	double set, copy, read;    /* MiB/s */
};

static void memspeed_measure(struct memspeed *m, int reps)
{
	uint8_t *a = mmap(NULL, BENCH_MEMSPEED, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	uint8_t *b = mmap(NULL, BENCH_MEMSPEED, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	memset(m, 0, sizeof(*m));
	if (a == MAP_FAILED || b == MAP_FAILED)
		goto out;
	memset(a, 1, BENCH_MEMSPEED);
	memset(b, 2, BENCH_MEMSPEED);
	for (int r = 0; r < reps; r++) {
		volatile uint64_t sink;
		uint64_t acc = 0, t = now_ns();
		double v;

		memset(a, r + 3, BENCH_MEMSPEED);
		v = mibs(BENCH_MEMSPEED, now_ns() - t);
		m->set = v > m->set ? v : m->set;
		t = now_ns();
		memcpy(b, a, BENCH_MEMSPEED);
		v = mibs(BENCH_MEMSPEED, now_ns() - t);
		m->copy = v > m->copy ? v : m->copy;
		t = now_ns();
		for (size_t i = 0; i < BENCH_MEMSPEED / 8; i += 4) {
			const uint64_t *q = (const uint64_t *)b + i;

			acc |= q[0] | q[1] | q[2] | q[3];
		}
		sink = acc;
		(void)sink;
		v = mibs(BENCH_MEMSPEED, now_ns() - t);
		m->read = v > m->read ? v : m->read;
	}
out:
	if (a != MAP_FAILED)
		munmap(a, BENCH_MEMSPEED);
	if (b != MAP_FAILED)
		munmap(b, BENCH_MEMSPEED);
}

/* --- driver --- */

struct opts {
	uint64_t size;
	int reps;
	bool fresh_dst;
	bool want[MIX_COUNT];
	int streams[RAM_MAX_STREAMS], nstreams;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: stream-bench [--size N[M|G]] [--reps N] [--mix NAME,...] [--streams N,...]\n"
		   "                    [--fresh-dst]\n"
		   "  --size       guest RAM moved per run (default 2G)\n"
		   "  --streams    page streams (connections) to run each mix with, 1..%d\n"
		   "               (default 1,2,4)\n"
		   "  --reps       runs per measurement, medians printed (default 3)\n"
		   "  --fresh-dst  receive into unpopulated RAM (default: populated first)\n"
		   "  --mix        any of:", RAM_MAX_STREAMS);
	for (int i = 0; i < MIX_COUNT; i++)
		fprintf(f, "\n               %-8s %s", mix_names[i], mix_help[i]);
	fprintf(f, "\n               (default: all)\n");
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	if (end == s)
		return -EINVAL;
	if (*end == 'G' || *end == 'g')
		v <<= 30, end++;
	else if (*end == 'M' || *end == 'm' || !*end)
		v <<= 20, end += !!*end;
	if (*end || !v || v % PAGE_SIZE)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_mixes(char *s, bool *want)
{
	for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
		int i;

		for (i = 0; i < MIX_COUNT && strcmp(tok, mix_names[i]); i++)
			;
		if (i == MIX_COUNT)
			return -EINVAL;
		want[i] = true;
	}
	return 0;
}

static int parse_streams(char *s, struct opts *o)
{
	o->nstreams = 0;
	for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
		char *end;
		long v = strtol(tok, &end, 10);

		if (end == tok || *end || v < 1 || v > RAM_MAX_STREAMS ||
		    o->nstreams == RAM_MAX_STREAMS)
			return -EINVAL;
		o->streams[o->nstreams++] = (int)v;
	}
	return o->nstreams ? 0 : -EINVAL;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "size", required_argument, NULL, 's' }, { "reps", required_argument, NULL, 'r' },
		{ "mix", required_argument, NULL, 'm' }, { "help", no_argument, NULL, 'h' },
		{ "fresh-dst", no_argument, NULL, 'f' }, { "streams", required_argument, NULL, 'n' },
		{ 0 },
	};
	bool any = false;
	int c;

	*o = (struct opts){ .size = 2ULL << 30, .reps = 3, .streams = { 1, 2, 4 }, .nstreams = 3 };
	while ((c = getopt_long(argc, argv, "s:r:m:hfn:", lo, NULL)) != -1) {
		o->fresh_dst |= c == 'f';
		if (c == 'f' || (c == 's' && !parse_size(optarg, &o->size)))
			continue;
		if (c == 'r' && (o->reps = atoi(optarg)) > 0)
			continue;
		if (c == 'm' && !parse_mixes(optarg, o->want))
			continue;
		if (c == 'n' && !parse_streams(optarg, o))
			continue;
		usage(c == 'h' ? stdout : stderr);
		return c == 'h' ? 1 : -EINVAL;
	}
	for (int i = 0; i < MIX_COUNT; i++)
		any |= o->want[i];
	for (int i = 0; i < MIX_COUNT && !any; i++)
		o->want[i] = true;
	return optind < argc ? -EINVAL : 0;
}

static double median(double *v, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
			double t = v[j];

			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* REPS runs of the vmm path on SRC over N streams, each right after one of
 * the limit (from LIMIT_SRC, non-zero bytes) over one connection and, with
 * N > 1, over N, so that drift hits all alike; prints medians and the
 * medians of the per-run ratios. */
static int bench_mix(enum mix mix, int n, struct guest_mem *src, const uint8_t *limit_src,
		     const struct opts *o, const struct memspeed *ms)
{
	double vmm[o->reps], wire[o->reps], limit[o->reps], ratio[o->reps];
	double limitn[o->reps], ration[o->reps], cpu[o->reps], cpur[o->reps], v;
	double gib = (double)src->size / (1 << 30);
	struct run run = { .src = src, .fresh_dst = o->fresh_dst, .n = n };

	for (int r = 0; r < o->reps; r++) {
		double c = 0, cn = 0;
		double l = plain_run(limit_src, src->size, 1, &c);
		double ln = n > 1 ? plain_run(limit_src, src->size, n, &cn) : l;
		int ret = vmm_run(&run);

		if (l < 0 || ln < 0 || ret) {
			fprintf(stderr, "stream-bench: %s, %d streams: %s\n", mix_names[mix], n,
				ret ? strerror(-ret) : "loopback baseline failed");
			return -1;
		}
		limit[r] = l;
		limitn[r] = ln;
		vmm[r] = mibs(src->size, run.t1 - run.t0);
		wire[r] = mibs(run.wire, run.t1 - run.t0);
		ratio[r] = vmm[r] / l;
		ration[r] = vmm[r] / ln;
		cpu[r] = run.cpu / gib;
		cpur[r] = run.cpu / (n > 1 ? cn : c);
	}
	v = median(vmm, o->reps);
	printf("%-8s %7d %8llu %8llu %10.0f %10.0f %11.0f %7.2f %12.0f %7.2f %11.0f %9.2f",
	       mix_names[mix], n, (unsigned long long)run.stats.duplicate,
	       (unsigned long long)run.stats.normal, v, median(wire, o->reps),
	       median(limit, o->reps), median(ratio, o->reps), median(limitn, o->reps),
	       median(ration, o->reps), median(cpu, o->reps), median(cpur, o->reps));
	if (mix == MIX_ZERO || mix == MIX_HOLE)
		printf("   vs memset %.2f memcpy %.2f read %.2f", v / ms->set, v / ms->copy,
		       v / ms->read);
	printf("\n");
	fflush(stdout);
	return 0;
}

/* Prints what the mixes are compared with: memory speed, the transport
 * alone against the limit, and (with --fresh-dst) fresh-memory write speed. */
static int print_context(const struct opts *o, const struct memspeed *ms, const uint8_t *rnd)
{
	double chan[o->reps], limit[o->reps], ratio[o->reps];

	printf("stream-bench: %llu MiB of guest RAM over loopback TCP, %d runs each, medians; "
	       "page streams (multifd-channels)", (unsigned long long)(o->size >> 20), o->reps);
	for (int i = 0; i < o->nstreams; i++)
		printf("%c%d", i ? ',' : ' ', o->streams[i]);
	printf("; destination RAM %s\n",
	       o->fresh_dst ? "fresh (allocated during the run)" : "populated first");
	printf("memory: memset %.0f MiB/s, memcpy %.0f MiB/s, read %.0f MiB/s\n",
	       ms->set, ms->copy, ms->read);
	if (o->fresh_dst)
		printf("fresh RAM: memcpy of the random bytes %.0f MiB/s\n",
		       fresh_write_speed(rnd, o->size));
	for (int r = 0; r < o->reps; r++) {
		limit[r] = plain_run(rnd, o->size, 1, NULL);
		chan[r] = rawchan_run(rnd, o->size);
		if (limit[r] < 0 || chan[r] < 0) {
			fprintf(stderr, "stream-bench: loopback transfer failed\n");
			return -1;
		}
		ratio[r] = chan[r] / limit[r];
	}
	printf("limit: plain send()/recv() of random bytes in %u MiB buffers over one "
	       "connection %.0f MiB/s (measured again next to each vmm run below, the "
	       "denominator of every ratio)\n", BENCH_CHUNK >> 20,
	       median(limit, o->reps));
	printf("transport: chan_send()/chan_recv() (io_uring) of the same, no framing "
	       "%.0f MiB/s, ratio %.2f\n", median(chan, o->reps), median(ratio, o->reps));
	printf("%-8s %7s %8s %8s %10s %10s %11s %7s %12s %7s %11s %9s\n", "mix", "streams",
	       "zero", "normal", "vmm MiB/s", "wire MiB/s", "limit MiB/s", "ratio",
	       "limitN MiB/s", "ratioN", "CPU ms/GiB", "CPU ratio");
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	struct guest_mem rnd, other;
	struct memspeed ms;
	struct opts o;
	int ret = parse_opts(argc, argv, &o), fails = 0;

	if (ret)
		return ret > 0 ? 0 : 2;
	memspeed_measure(&ms, o.reps);
	if (mem_init(&rnd, o.size)) {
		fprintf(stderr, "stream-bench: cannot create %llu MiB of guest RAM\n",
			(unsigned long long)(o.size >> 20));
		return 1;
	}
	fill_mix(&rnd, MIX_RANDOM);
	if (print_context(&o, &ms, rnd.base)) {
		mem_destroy(&rnd);
		return 1;
	}
	for (int m = 0; m < MIX_COUNT; m++) {
		struct guest_mem *src = &rnd;

		if (!o.want[m])
			continue;
		if (m != MIX_RANDOM) {
			if (mem_init(&other, o.size)) {
				fails++;
				continue;
			}
			fill_mix(&other, (enum mix)m);
			src = &other;
		}
		for (int i = 0; i < o.nstreams; i++)
			fails += bench_mix((enum mix)m, o.streams[i], src, rnd.base, &o, &ms) != 0;
		if (src == &other)
			mem_destroy(&other);
	}
	printf("(vmm: guest RAM moved per second over all streams; wire: stream bytes per "
	       "second; ratio: vmm / limit over one connection; limitN: the limit over as "
	       "many parallel connections as streams; ratioN: vmm / limitN; CPU ms/GiB: "
	       "CPU time both ends of vmm's run used per GiB of guest RAM, all threads; "
	       "CPU ratio: vmm's / the limitN run's, which sends as many bytes as there is guest RAM; ratios "
	       "are medians of the per-run ones)\n");
	mem_destroy(&rnd);
	return fails ? 1 : 0;
}
