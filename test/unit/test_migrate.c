/*
 * Unit tests for the migration pieces that need no KVM: the io_uring channel
 * over a socketpair (exact frames, EOF, stall timeout, corrupt frames), the
 * destination's page receiver against a memfd guest RAM (bad GPAs refused
 * before anything is written, zero pages, write order), the page sender
 * without KVM end to end, the guest-shape handshake checks,
 * and save/load round trips of the serial and PM device state.
 */
#include <errno.h>
#include <pthread.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/chan.h"
#include "vmm/cpustate.h"
#include "vmm/migrate.h"
#include "vmm/pm.h"
#include "vmm/ram.h"
#include "vmm/serial.h"
#include "vmm/shape.h"
#include "vmm/vm.h"
#include "vmm/vmstate.h"

/* Two connected channels over a socketpair. */
static void chan_pair(struct chan *a, struct chan *b, int timeout_ms)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	memset(a, 0, sizeof(*a));
	memset(b, 0, sizeof(*b));
	a->fd = sv[0];
	b->fd = sv[1];
	assert_int_equal(io_uring_queue_init(8, &a->ring, 0), 0);
	assert_int_equal(io_uring_queue_init(8, &b->ring, 0), 0);
	a->ring_ok = b->ring_ok = true;
	a->timeout_ms = b->timeout_ms = timeout_ms;
}

static void test_chan_frames(void **state)
{
	struct chan a, b;
	struct stream_buf out, in;
	struct stream_frame f;

	chan_pair(&a, &b, 2000);
	stream_buf_init(&out);
	stream_buf_init(&in);
	assert_int_equal(stream_u32_put(&out, STREAM_PASS_BEGIN, 7), 0);
	assert_int_equal(stream_frame_put(&out, STREAM_DONE, NULL, 0), 0);
	assert_int_equal(chan_send(&a, out.data, out.len), 0);
	assert_int_equal(chan_recv_frame(&b, &f, &in, STREAM_MAX_CONTROL), 0);
	assert_int_equal(f.type, STREAM_PASS_BEGIN);
	assert_int_equal(in.len, 4);
	assert_int_equal(in.data[0], 7);
	assert_int_equal(chan_recv_frame(&b, &f, &in, STREAM_MAX_CONTROL), 0);
	assert_int_equal(f.type, STREAM_DONE);
	assert_int_equal(a.sent, out.len);
	assert_int_equal(b.received, out.len);
	/* A corrupted payload byte is caught by the crc. */
	stream_buf_reset(&out);
	assert_int_equal(stream_u32_put(&out, STREAM_PASS_END, 9), 0);
	out.data[STREAM_FRAME_HDR_SIZE] ^= 1;
	assert_int_equal(chan_send(&a, out.data, out.len), 0);
	assert_int_equal(chan_recv_frame(&b, &f, &in, STREAM_MAX_CONTROL), -EBADMSG);
	stream_buf_free(&out);
	stream_buf_free(&in);
	chan_close(&a);
	chan_close(&b);
}

/* Small receives read ahead: a header and an index come in one read, the
 * page data after them partly from that read and the rest straight from
 * the socket, every byte in order. */
static void test_chan_read_ahead(void **state)
{
	enum { HDR = 10, INDEX = 100, DATA = 65536, TAIL = 5, ALL = HDR + INDEX + DATA + TAIL };
	static uint8_t out[ALL], data[DATA];
	uint8_t small[INDEX];
	struct iovec iov[16];
	struct chan a, b;

	(void)state;
	for (size_t i = 0; i < ALL; i++)
		out[i] = (uint8_t)(i * 2654435761u >> 11);
	chan_pair(&a, &b, 2000);
	assert_int_equal(chan_send(&a, out, ALL), 0);
	assert_int_equal(chan_recv(&b, small, HDR), 0);
	assert_memory_equal(small, out, HDR);
	assert_int_equal(b.received, CHAN_AHEAD);	/* one read, as far as it goes */
	assert_int_equal(chan_recv(&b, small, INDEX), 0);
	assert_memory_equal(small, out + HDR, INDEX);
	assert_int_equal(b.received, CHAN_AHEAD);	/* no read at all */
	for (int i = 0; i < 16; i++)
		iov[i] = (struct iovec){ data + i * 4096, 4096 };
	assert_int_equal(chan_recvv(&b, iov, 16), 0);
	assert_memory_equal(data, out + HDR + INDEX, DATA);
	assert_int_equal(chan_recv(&b, small, TAIL), 0);
	assert_memory_equal(small, out + HDR + INDEX + DATA, TAIL);
	assert_int_equal(b.received, ALL);
	chan_close(&a);
	assert_int_equal(chan_recv(&b, small, 1), -ECONNRESET);
	chan_close(&b);
}

static void test_chan_eof_and_stall(void **state)
{
	struct chan a, b;
	uint8_t buf[64];

	chan_pair(&a, &b, 300);
	assert_int_equal(chan_recv(&b, buf, sizeof(buf)), -ETIMEDOUT);
	assert_int_equal(chan_send(&a, "abc", 3), 0);
	chan_close(&a);
	/* Three bytes arrive, then the peer is gone: a truncated stream. */
	assert_int_equal(chan_recv(&b, buf, sizeof(buf)), -ECONNRESET);
	assert_int_equal(chan_send(&b, buf, sizeof(buf)), -EPIPE);
	chan_close(&b);
}

static void test_chan_uri(void **state)
{
	char err[256];
	struct chan c;

	assert_int_equal(chan_listen("ftp:x", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unsupported"));
	assert_int_equal(chan_listen("tcp:127.0.0.1", err, sizeof(err)), -EINVAL);
	assert_int_equal(chan_connect(&c, "unix:/nonexistent/sock", 500, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "cannot connect"));
}

/* A listener queues as many connections as a source has page streams
 * before the destination accepts any of them (non-blocking connects on a
 * full unix backlog fail at once with EAGAIN). */
static void test_chan_backlog(void **state)
{
	char err[256], uri[64], path[48];
	struct chan c[RAM_MAX_STREAMS];
	int lfd;

	snprintf(path, sizeof(path), "/tmp/vmm-test-backlog.%d", (int)getpid());
	snprintf(uri, sizeof(uri), "unix:%s", path);
	unlink(path);
	lfd = chan_listen(uri, err, sizeof(err));
	assert_true(lfd >= 0);
	for (int i = 0; i < RAM_MAX_STREAMS; i++)
		assert_int_equal(chan_connect(&c[i], uri, 2000, err, sizeof(err)), 0);
	for (int i = 0; i < RAM_MAX_STREAMS; i++) {
		struct chan a;

		assert_int_equal(chan_accept(&a, lfd, 2000), 0);
		chan_close(&a);
		chan_close(&c[i]);
	}
	close(lfd);
	unlink(path);
}

/* A PAGES payload (without the frame header) with the given pages. */
static void make_pages(struct stream_buf *b, const uint64_t *gpas, const void *const *data,
		       int n)
{
	struct stream_page_batch pb;

	stream_buf_reset(b);
	assert_int_equal(stream_pages_begin(b, &pb), 0);
	for (int i = 0; i < n; i++)
		assert_int_equal(stream_pages_add(b, &pb, gpas[i], data[i]), 0);
	assert_int_equal(stream_pages_end(b, &pb), 0);
}

static void test_ram_receive(void **state)
{
	static uint8_t page[4096];
	struct vm vm = { 0 };
	struct ram_receiver r;
	struct stream_buf b;
	uint8_t *ram;
	const void *data[2] = { page, page };
	uint64_t good[2] = { 0x10000, 0x20000 };
	uint64_t bad[2] = { 0x30000, 64ULL << 20 };   /* second is past RAM */

	assert_int_equal(mem_init(&vm.mem, 64ULL << 20), 0);
	ram = vm.mem.base;
	assert_int_equal(ram_recv_init(&r, &vm), 0);
	stream_buf_init(&b);
	memset(page, 0xAB, sizeof(page));
	make_pages(&b, good, data, 2);
	assert_int_equal(ram_recv_pages(&r, b.data + STREAM_FRAME_HDR_SIZE,
					b.len - STREAM_FRAME_HDR_SIZE), 0);
	assert_int_equal(ram[0x10000], 0xAB);
	assert_int_equal(ram[0x20FFF], 0xAB);
	/* One bad GPA in a batch: refused before the good page is written. */
	make_pages(&b, bad, data, 2);
	assert_int_equal(ram_recv_pages(&r, b.data + STREAM_FRAME_HDR_SIZE,
					b.len - STREAM_FRAME_HDR_SIZE), -EFAULT);
	assert_int_equal(ram[0x30000], 0);
	/* A zero page clears a page that had data. */
	data[0] = NULL;
	make_pages(&b, good, data, 1);
	assert_int_equal(ram_recv_pages(&r, b.data + STREAM_FRAME_HDR_SIZE,
					b.len - STREAM_FRAME_HDR_SIZE), 0);
	assert_int_equal(ram[0x10000], 0);
	assert_int_equal(ram[0x20000], 0xAB);
	/* Truncated payload. */
	assert_int_not_equal(ram_recv_pages(&r, b.data + STREAM_FRAME_HDR_SIZE, 7), 0);
	stream_buf_free(&b);
	ram_recv_destroy(&r);
	mem_destroy(&vm.mem);
}

/* Writes gathered into runs: order inside a batch, runs longer than one
 * pwritev(), and memfd-contiguous pages on both sides of the PCI hole. */
static void test_ram_receive_runs(void **state)
{
	enum { N = 600 };
	static uint8_t pages[N][4096];
	static uint64_t gpas[N + 4];
	static const void *data[N + 4];
	const uint64_t low = MEM_HOLE_START;
	struct guest_mem mem;
	struct ram_receiver r;
	struct stream_buf b;
	int n = 0;

	assert_int_equal(mem_init(&mem, low + (8ULL << 20)), 0);
	assert_int_equal(ram_recv_init_mem(&r, &mem), 0);
	stream_buf_init(&b);
	for (int i = 0; i < N; i++) {
		memset(pages[i], i % 255 + 1, 4096);
		gpas[n] = low - 300 * 4096ULL + (uint64_t)i * 4096;
		if (gpas[n] >= low)
			gpas[n] += MEM_4G - low;   /* the same memfd page, above the hole */
		data[n++] = pages[i];
	}
	gpas[n] = 0x5000, data[n++] = pages[1];   /* normal, then zero: ends zero */
	gpas[n] = 0x5000, data[n++] = NULL;
	gpas[n] = 0x7000, data[n++] = pages[2];   /* normal twice: the last wins */
	gpas[n] = 0x7000, data[n++] = pages[3];
	make_pages(&b, gpas, data, n);
	assert_int_equal(ram_recv_pages(&r, b.data + STREAM_FRAME_HDR_SIZE,
					b.len - STREAM_FRAME_HDR_SIZE), 0);
	for (int i = 0; i < N; i++) {
		const uint8_t *p = mem.base + low - 300 * 4096ULL + (uint64_t)i * 4096;

		assert_int_equal(p[0], i % 255 + 1);
		assert_int_equal(p[4095], i % 255 + 1);
	}
	assert_int_equal(mem.base[0x5000], 0);
	assert_int_equal(mem.base[0x7000], 4);
	assert_int_equal(mem.base[0x8000], 0);
	stream_buf_free(&b);
	ram_recv_destroy(&r);
	mem_destroy(&mem);
}

static bool ram_equal(const struct guest_mem *a, const struct guest_mem *b)
{
	return a->size == b->size && memcmp(a->base, b->base, a->size) == 0;
}

struct send_ctx {
	struct ram_tracker *t;
	struct chan *c;
	int ret;
};

static void *send_thread(void *opaque)
{
	struct send_ctx *x = opaque;

	x->ret = ram_send_pass(x->t, &x->c, 1);
	return NULL;
}

/* Runs one pass of T from A while B receives it into R; returns frames seen. */
static int pass_over(struct ram_tracker *t, struct ram_receiver *r, struct chan *a,
		     struct chan *b, uint64_t pages)
{
	struct send_ctx x = { t, a, 0 };
	struct stream_buf in;
	struct stream_frame f;
	pthread_t th;
	int frames = 0;

	stream_buf_init(&in);
	assert_int_equal(pthread_create(&th, NULL, send_thread, &x), 0);
	for (uint64_t got = 0; got < pages; frames++) {
		assert_int_equal(chan_recv_header(b, &f, STREAM_MAX_PAYLOAD), 0);
		assert_int_equal(f.type, STREAM_PAGES);
		assert_int_equal(!!(f.flags & STREAM_PAGES_INPLACE), t->inplace);
		assert_int_equal(ram_recv(r, b, &f, &in), 0);
		got += in.data[0] | (uint32_t)in.data[1] << 8 | (uint32_t)in.data[2] << 16;
	}
	pthread_join(th, NULL);
	assert_int_equal(x.ret, 0);
	assert_int_equal(ram_recv_unverified(r), 0);
	stream_buf_free(&in);
	return frames;
}

struct recv_ctx {
	struct chan *c;
	struct ram_receiver r;
	uint64_t pages;
	int ret;
};

/* Receives one stream's PAGES until DONE. */
static void *recv_thread(void *opaque)
{
	struct recv_ctx *x = opaque;
	struct stream_buf in;
	struct stream_frame f;

	stream_buf_init(&in);
	for (;;) {
		x->ret = chan_recv_header(x->c, &f, STREAM_MAX_PAYLOAD);
		if (x->ret || f.type == STREAM_DONE)
			break;
		x->ret = ram_recv(&x->r, x->c, &f, &in);
		if (x->ret)
			break;
		/* the index or the whole payload: both start with the count */
		x->pages += in.data[0] | (uint32_t)in.data[1] << 8 | (uint32_t)in.data[2] << 16;
	}
	stream_buf_free(&in);
	return NULL;
}

/* multifd: three streams, each with the 2 MiB chunks it owns (chunk % 3),
 * arrive whole (checked by stream_sum32, as between two vmm of this
 * version); a receiver refuses a page of another stream; a dead stream
 * fails the pass at once instead of leaving the others blocked. */
static void test_ram_send_streams(void **state)
{
	const uint64_t size = 16ULL << 20, npages = size / 4096;
	struct guest_mem src, dst;
	struct ram_tracker t;
	struct ram_receiver r;
	struct chan a[3], b[3];
	struct chan *cs[3] = { &a[0], &a[1], &a[2] };
	struct recv_ctx x[3];
	pthread_t th[3];
	struct stream_buf out;
	struct stream_page_batch pb;
	uint64_t t0;

	assert_int_equal(mem_init(&src, size), 0);
	assert_int_equal(mem_init(&dst, size), 0);
	for (uint64_t i = 0; i < npages; i++)
		memset(src.base + i * 4096, i % 5 ? (int)(i % 251) + 1 : 0, 4096);
	assert_int_equal(ram_send_init(&t, &src), 0);
	t.sum = true;
	t.inplace = true;
	assert_int_equal(ram_recv_init_mem(&r, &dst), 0);
	stream_buf_init(&out);
	for (int k = 0; k < 3; k++) {
		chan_pair(&a[k], &b[k], 5000);
		x[k] = (struct recv_ctx){ .c = &b[k] };
		ram_recv_stream(&x[k].r, &r, k, 3);
		assert_int_equal(pthread_create(&th[k], NULL, recv_thread, &x[k]), 0);
	}
	assert_int_equal(ram_send_pass(&t, cs, 3), 0);
	for (int k = 0; k < 3; k++) {
		assert_int_equal(stream_frame_put(&out, STREAM_DONE, NULL, 0), 0);
		assert_int_equal(chan_send(&a[k], out.data, out.len), 0);
		stream_buf_reset(&out);
		pthread_join(th[k], NULL);
		assert_int_equal(x[k].ret, 0);
	}
	/* 8 chunks of 512 pages: 0 3 6 | 1 4 7 | 2 5 */
	assert_int_equal(x[0].pages, 3 * 512);
	assert_int_equal(x[1].pages, 3 * 512);
	assert_int_equal(x[2].pages, 2 * 512);
	assert_int_equal(ram_pending(&t), 0);
	assert_int_equal(ram_recv_unverified(&r), 0);
	assert_int_equal(t.stats.normal + t.stats.duplicate, npages);
	assert_int_equal(t.stats.duplicate, (npages + 4) / 5);
	assert_true(ram_equal(&src, &dst));

	/* page 512 is chunk 1's: stream 0 must not take it */
	assert_int_equal(stream_pages_begin(&out, &pb), 0);
	assert_int_equal(stream_pages_add(&out, &pb, 512 * 4096, src.base + 512 * 4096), 0);
	assert_int_equal(stream_pages_end(&out, &pb), 0);
	assert_int_equal(ram_recv_pages(&x[0].r, out.data + STREAM_FRAME_HDR_SIZE,
					out.len - STREAM_FRAME_HDR_SIZE), -EBADMSG);
	assert_int_equal(ram_recv_pages(&x[1].r, out.data + STREAM_FRAME_HDR_SIZE,
					out.len - STREAM_FRAME_HDR_SIZE), 0);

	/* stream 2's peer is gone: the pass fails, though streams 0 and 1 are
	 * blocked on peers that never read, long before their 30 s timeout */
	for (int k = 0; k < 3; k++) {
		chan_close(&b[k]);
		chan_close(&a[k]);
		chan_pair(&a[k], &b[k], 30000);
	}
	chan_close(&b[2]);
	memset(t.dirty, 0xff, npages / 8);
	t0 = vm_now_ns();
	assert_true(ram_send_pass(&t, cs, 3) < 0);
	assert_true(vm_now_ns() - t0 < 10000000000ULL);
	for (int k = 0; k < 3; k++) {
		chan_close(&a[k]);
		chan_close(&b[k]);
	}
	stream_buf_free(&out);
	ram_track_stop(&t);
	ram_recv_destroy(&r);
	mem_destroy(&src);
	mem_destroy(&dst);
}

/* max-bandwidth paces the stream: 4 MiB at 20 MB/s arrives over ~200 ms, a
 * slice at a time, not in one burst followed by a pause. Lower bounds only:
 * a slow machine can be later, never earlier. */
static void ram_send_paced(bool inplace)
{
	const uint64_t size = 4ULL << 20;
	static uint8_t sink[1 << 16];
	struct guest_mem src;
	struct ram_tracker t;
	struct chan a, b;
	struct send_ctx x = { &t, &a, 0 };
	uint64_t t0, first_mib = 0, got = 0;
	pthread_t th;

	assert_int_equal(mem_init(&src, size), 0);
	memset(src.base, 0x33, size);
	chan_pair(&a, &b, 5000);
	assert_int_equal(ram_send_init(&t, &src), 0);
	t.max_bandwidth = 20000000;
	t.inplace = inplace;
	t0 = vm_now_ns();
	assert_int_equal(pthread_create(&th, NULL, send_thread, &x), 0);
	while (got < size) {
		ssize_t n = recv(b.fd, sink, sizeof(sink), 0);

		assert_true(n > 0);
		got += (uint64_t)n;
		if (!first_mib && got >= (1 << 20))
			first_mib = vm_now_ns() - t0;
	}
	pthread_join(th, NULL);
	assert_int_equal(x.ret, 0);
	assert_true(first_mib >= 40000000);              /* 1 MiB at 20 MB/s: 52 ms */
	assert_true(vm_now_ns() - t0 >= 190000000);      /* 4 MiB: 210 ms */
	ram_track_stop(&t);
	chan_close(&a);
	chan_close(&b);
	mem_destroy(&src);
}

static void test_ram_send_paced(void **state)
{
	ram_send_paced(false);
	ram_send_paced(true);
}

/* True if no page of [P, P + LEN) is mapped (never touched, not even read). */
static bool untouched(const uint8_t *p, size_t len)
{
	unsigned char vec[1024];

	assert_true(len / 4096 <= sizeof(vec));
	assert_int_equal(mincore((void *)p, len, vec), 0);
	for (size_t i = 0; i < len / 4096; i++)
		if (vec[i] & 1)
			return false;
	return true;
}

/* The page sender without KVM (ram_send_init): data and zero pages arrive
 * as they are; pages never touched are sent as zero without being read and
 * left alone at the destination; one written after a pass that found it
 * untouched is read by the next pass. */
static void ram_send_roundtrip(bool inplace)
{
	const uint64_t size = 16ULL << 20, npages = size / 4096, hole = npages - 1024;
	const uint64_t normal = (hole + 6) / 7;
	struct guest_mem src, dst;
	struct ram_tracker t;
	struct ram_receiver r;
	struct chan a, b;

	assert_int_equal(mem_init(&src, size), 0);
	assert_int_equal(mem_init(&dst, size), 0);
	for (uint64_t i = 0; i < hole; i++)
		if (i % 7 == 0)
			memset(src.base + i * 4096, (int)(i % 251) + 1, 4096);
		else if (i % 7 == 1)
			memset(src.base + i * 4096, 0, 4096);  /* written, but zero */
	/* pages from `hole` on (4 MiB, 2 MiB-aligned): never touched */
	chan_pair(&a, &b, 5000);
	assert_int_equal(ram_send_init(&t, &src), 0);
	t.inplace = inplace;
	assert_int_equal(ram_recv_init_mem(&r, &dst), 0);
	assert_int_equal(ram_pending(&t), npages);
	assert_true(pass_over(&t, &r, &a, &b, npages) > 1);
	assert_int_equal(ram_pending(&t), 0);
	assert_int_equal(t.stats.normal, normal);
	assert_int_equal(t.stats.duplicate, npages - normal);
	assert_true(untouched(src.base + hole * 4096, size - hole * 4096));
	assert_true(untouched(dst.base + hole * 4096, size - hole * 4096));
	assert_true(ram_equal(&src, &dst));
	/* page hole+10 is sent untouched (zero); then hole+11 gets data, and
	 * the next pass must read it, not trust what the last one learnt */
	t.dirty[(hole + 10) / 64] |= 1ULL << ((hole + 10) % 64);
	assert_int_equal(pass_over(&t, &r, &a, &b, 1), 1);
	memset(src.base + (hole + 11) * 4096, 0x5A, 4096);
	t.dirty[(hole + 11) / 64] |= 1ULL << ((hole + 11) % 64);
	assert_int_equal(pass_over(&t, &r, &a, &b, 1), 1);
	assert_int_equal(dst.base[(hole + 11) * 4096 + 100], 0x5A);
	assert_int_equal(t.stats.normal, normal + 1);
	ram_track_stop(&t);
	ram_recv_destroy(&r);
	chan_close(&a);
	chan_close(&b);
	mem_destroy(&src);
	mem_destroy(&dst);
}

static void test_ram_send_roundtrip(void **state)
{
	ram_send_roundtrip(false);
	ram_send_roundtrip(true);	/* as between two vmm of this version */
}

/* Sends the inplace PAGES frame in B (header and index) and the data of its
 * pages at DATA[0..N) over A. */
static void send_inplace(struct chan *a, const struct stream_buf *b, uint8_t *const *data, int n)
{
	struct iovec iov[8] = { { b->data, b->len } };

	assert_true(n < 8);
	for (int i = 0; i < n; i++)
		iov[1 + i] = (struct iovec){ data[i], 4096 };
	assert_int_equal(chan_sendv(a, iov, 1 + n), 0);
}

/* A page the guest writes between its check and the socket's copy (torn)
 * lands, is known to be unverified, and is verified when it comes again;
 * a bad index is refused before any page is written. */
static void test_ram_inplace_torn(void **state)
{
	struct guest_mem src, dst;
	struct ram_receiver r;
	struct stream_page_batch pb;
	struct stream_frame f;
	struct stream_buf b, in;
	struct chan a, c;
	uint8_t *p[3];

	assert_int_equal(mem_init(&src, 1 << 20), 0);
	assert_int_equal(mem_init(&dst, 1 << 20), 0);
	assert_int_equal(ram_recv_init_mem(&r, &dst), 0);
	for (int i = 0; i < 3; i++) {
		p[i] = src.base + (i + 1) * 4096;
		memset(p[i], 0x10 + i, 4096);
	}
	chan_pair(&a, &c, 5000);
	stream_buf_init(&b);
	stream_buf_init(&in);
	/* pages 1-3; page 2 changes after its check was taken */
	assert_int_equal(stream_pages_begin_inplace(&b, &pb), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(stream_pages_add_index(&b, &pb, (i + 1) * 4096, p[i]), 1);
	assert_int_equal(stream_pages_end(&b, &pb), 0);
	p[1][100] = 0x77;
	send_inplace(&a, &b, p, 3);
	assert_int_equal(chan_recv_header(&c, &f, STREAM_MAX_PAYLOAD), 0);
	assert_int_equal(ram_recv(&r, &c, &f, &in), 0);
	assert_int_equal(memcmp(src.base, dst.base, 4 * 4096), 0);
	assert_int_equal(ram_recv_unverified(&r), 1);
	assert_int_equal(r.torn, 1);
	/* page 2 again: now it checks out */
	stream_buf_reset(&b);
	assert_int_equal(stream_pages_begin_inplace(&b, &pb), 0);
	assert_int_equal(stream_pages_add_index(&b, &pb, 2 * 4096, p[1]), 1);
	assert_int_equal(stream_pages_end(&b, &pb), 0);
	send_inplace(&a, &b, &p[1], 1);
	assert_int_equal(chan_recv_header(&c, &f, STREAM_MAX_PAYLOAD), 0);
	assert_int_equal(ram_recv(&r, &c, &f, &in), 0);
	assert_int_equal(ram_recv_unverified(&r), 0);
	/* a flipped bit in the index: refused, and no page written */
	memset(p[2], 0x99, 4096);
	stream_buf_reset(&b);
	assert_int_equal(stream_pages_begin_inplace(&b, &pb), 0);
	assert_int_equal(stream_pages_add_index(&b, &pb, 3 * 4096, p[2]), 1);
	assert_int_equal(stream_pages_end(&b, &pb), 0);
	b.data[STREAM_FRAME_HDR_SIZE + 5] ^= 0x01;
	send_inplace(&a, &b, &p[2], 1);
	assert_int_equal(chan_recv_header(&c, &f, STREAM_MAX_PAYLOAD), 0);
	assert_int_equal(ram_recv(&r, &c, &f, &in), -EBADMSG);
	assert_int_equal(dst.base[3 * 4096], 0x12);
	/* a truncated stream: the connection's error */
	chan_close(&c);
	chan_close(&a);
	chan_pair(&a, &c, 5000);
	b.data[STREAM_FRAME_HDR_SIZE + 5] ^= 0x01;
	assert_int_equal(chan_send(&a, b.data, b.len), 0);
	chan_close(&a);
	assert_int_equal(chan_recv_header(&c, &f, STREAM_MAX_PAYLOAD), 0);
	assert_int_equal(ram_recv(&r, &c, &f, &in), -ECONNRESET);
	stream_buf_free(&b);
	stream_buf_free(&in);
	chan_close(&c);
	ram_recv_destroy(&r);
	mem_destroy(&src);
	mem_destroy(&dst);
}

static struct kvm_cpuid2 *cpuid_one(uint32_t ecx7)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + sizeof(c->entries[0]));

	c->nent = 1;
	c->entries[0] = (struct kvm_cpuid_entry2){ .function = 7, .index = 0, .ecx = ecx7 };
	return c;
}

static void test_shape_check(void **state)
{
	struct shape g = { .mem_size = 512 << 20, .nr_vcpus = 2, .nr_devices = 1 };
	struct shape h;
	struct stream_buf b;
	struct stream_reader rd;
	struct shape parsed;
	char err[256];
	struct kvm_cpuid2 *sup = cpuid_one(0x5);

	strcpy(g.dev_id[0], "serial0");
	strcpy(g.dev_type[0], "serial");
	strcpy(g.cpu.vendor, "AuthenticAMD");
	g.cpu.family = 0x19;
	g.cpuid = cpuid_one(0x1);
	h = g;
	assert_int_equal(shape_check(&g, &h, sup, err, sizeof(err)), 0);
	h.mem_size = 256 << 20;
	assert_int_equal(shape_check(&g, &h, sup, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "512 MiB"));
	h = g;
	h.nr_vcpus = 4;
	assert_int_equal(shape_check(&g, &h, sup, err, sizeof(err)), -EINVAL);
	h = g;
	strcpy(h.dev_id[0], "serial1");
	assert_int_equal(shape_check(&g, &h, sup, err, sizeof(err)), -EINVAL);
	h = g;
	strcpy(h.cpu.vendor, "GenuineIntel");
	assert_int_equal(shape_check(&g, &h, sup, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "CPU mismatch"));
	h = g;
	h.cpu.family = 0x17;
	assert_int_equal(shape_check(&g, &h, sup, err, sizeof(err)), -EINVAL);
	/* A feature bit the destination's KVM lacks. */
	g.cpuid->entries[0].ecx = 0x8;
	assert_int_equal(shape_check(&g, &g, sup, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "0x00000008"));
	/* Encode and decode; every truncation fails. */
	stream_buf_init(&b);
	assert_int_equal(shape_put(&b, &g), 0);
	stream_reader_init(&rd, b.data + STREAM_FRAME_HDR_SIZE, b.len - STREAM_FRAME_HDR_SIZE);
	assert_int_equal(shape_parse(&rd, &parsed), 0);
	assert_int_equal(parsed.mem_size, g.mem_size);
	assert_string_equal(parsed.dev_id[0], "serial0");
	assert_int_equal(parsed.cpuid->entries[0].ecx, 0x8);
	shape_free(&parsed);
	for (size_t n = 0; n < b.len - STREAM_FRAME_HDR_SIZE; n++) {
		stream_reader_init(&rd, b.data + STREAM_FRAME_HDR_SIZE, n);
		assert_int_equal(shape_parse(&rd, &parsed), -EBADMSG);
	}
	stream_buf_free(&b);
	free(g.cpuid);
	free(sup);
}

static void no_irq(void *opaque, int level)
{
	(void)opaque;
	(void)level;
}

static void uart_write(struct serial *s, unsigned off, uint8_t v)
{
	serial_pio(s, off, &v, 1, true);
}

/* Saves DEV's state, loads it into TO's, applies it; returns load's result. */
static int round_trip(const struct device_ops *ops, void *from, void *to, bool corrupt_len)
{
	struct stream_buf b;
	struct stream_reader r;
	int ret;

	stream_buf_init(&b);
	assert_int_equal(ops->sync_state(from), 0);
	assert_int_equal(vmstate_save(ops->vmsd, ops->state(from), &b), 0);
	if (corrupt_len)
		b.data[b.len - 1 - 64 - 1] = 0xFF;   /* high byte of serial rx_len */
	stream_reader_init(&r, b.data, b.len);
	ret = vmstate_load(ops->vmsd, ops->state(to), &r, ops->vmsd->version_id);
	if (!ret)
		assert_int_equal(ops->apply_state(to), 0);
	stream_buf_free(&b);
	return ret;
}

static void test_serial_state(void **state)
{
	struct serial a, b;
	uint8_t v;

	serial_init(&a, -1, no_irq, NULL);
	serial_init(&b, -1, no_irq, NULL);
	uart_write(&a, 3, 0x83);        /* DLAB */
	uart_write(&a, 0, 0x01);        /* divisor 1 */
	uart_write(&a, 3, 0x03);        /* 8N1 */
	uart_write(&a, 1, 0x05);        /* IER */
	uart_write(&a, 7, 0x5A);        /* scratch */
	assert_int_equal(serial_input(&a, (const uint8_t *)"hi", 2), 2);
	assert_int_equal(round_trip(&serial_device_ops, &a, &b, false), 0);
	serial_pio(&b, 7, &v, 1, false);
	assert_int_equal(v, 0x5A);
	serial_pio(&b, 1, &v, 1, false);
	assert_int_equal(v, 0x05);
	serial_pio(&b, 0, &v, 1, false);
	assert_int_equal(v, 'h');
	serial_pio(&b, 0, &v, 1, false);
	assert_int_equal(v, 'i');
	/* A FIFO length beyond the FIFO is refused and changes nothing. */
	serial_init(&b, -1, no_irq, NULL);
	assert_int_not_equal(round_trip(&serial_device_ops, &a, &b, true), 0);
	serial_pio(&b, 7, &v, 1, false);
	assert_int_equal(v, 0);
	serial_destroy(&a);
	serial_destroy(&b);
}

static void test_pm_state(void **state)
{
	struct pm a = { 0 }, b = { 0 };
	uint16_t en = PM1_PWRBTN_EN;

	pthread_mutex_init(&a.lock, NULL);
	pthread_mutex_init(&b.lock, NULL);
	a.irq = b.irq = no_irq;
	pm_pio(&a, PM1A_EVT_PORT + 2, (uint8_t *)&en, 2, true);
	pm_power_button(&a);
	assert_int_equal(round_trip(&pm_device_ops, &a, &b, false), 0);
	assert_int_equal(b.sts & PM1_PWRBTN_STS, PM1_PWRBTN_STS);
	assert_int_equal(b.en, PM1_PWRBTN_EN);
}

/* Fills N bytes at P with a pattern that differs per byte and per SEED. */
static void fill(void *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		((uint8_t *)p)[i] = (uint8_t)(i * 31 + seed);
}

/* Saves A with DESC, loads into B (zeroed first); returns vmstate_load's
 * result. With CUT, the stream is cut short by that many bytes. */
static int state_trip(const struct vmstate_desc *desc, const void *a, void *b, size_t cut)
{
	struct stream_buf buf;
	struct stream_reader r;
	int ret;

	stream_buf_init(&buf);
	assert_int_equal(vmstate_save(desc, a, &buf), 0);
	assert_true(buf.len > cut);
	memset(b, 0, desc->size);
	stream_reader_init(&r, buf.data, buf.len - cut);
	ret = vmstate_load(desc, b, &r, desc->version_id);
	stream_buf_free(&buf);
	return ret;
}

/* Every part of the vCPU state survives the stream byte for byte: mp_state,
 * regs, sregs, XSAVE, XCRs, debug regs, LAPIC, events and the MSR list;
 * truncated streams and out-of-range counts are refused. */
static void test_cpu_state(void **state)
{
	struct cpu_state *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));

	fill(&a->regs, sizeof(a->regs), 1);
	fill(&a->sregs, sizeof(a->sregs), 2);
	fill(&a->xsave, sizeof(a->xsave), 3);
	fill(&a->xcrs, sizeof(a->xcrs), 4);
	fill(&a->debugregs, sizeof(a->debugregs), 5);
	fill(&a->lapic, sizeof(a->lapic), 6);
	fill(&a->events, sizeof(a->events), 7);
	a->mp.mp_state = KVM_MP_STATE_HALTED;
	a->xcrs.nr_xcrs = 1;
	a->nmsrs = 37;
	for (uint32_t i = 0; i < a->nmsrs; i++) {
		a->msr_index[i] = 0xc0000080 + i;
		a->msr_data[i] = 0x0123456789abcdefULL ^ ((uint64_t)i << 40);
	}
	assert_int_equal(state_trip(&cpu_state_vmsd, a, b, 0), 0);
	assert_memory_equal(a, b, sizeof(*a));
	for (size_t cut = 1; cut < 64; cut += 7)
		assert_int_not_equal(state_trip(&cpu_state_vmsd, a, b, cut), 0);
	a->mp.mp_state = 99;
	assert_int_not_equal(state_trip(&cpu_state_vmsd, a, b, 0), 0);
	a->mp.mp_state = KVM_MP_STATE_RUNNABLE;
	a->xcrs.nr_xcrs = KVM_MAX_XCRS + 1;
	assert_int_not_equal(state_trip(&cpu_state_vmsd, a, b, 0), 0);
	free(a);
	free(b);
}

/* The VM-wide KVM state: PIC, IOAPIC, PIT, kvmclock and TSC rate. */
static void test_vm_kvm_state(void **state)
{
	struct vm_kvm_state a = { 0 }, b;

	fill(&a, offsetof(struct vm_kvm_state, clock_ns), 3);
	a.clock_ns = 0x1122334455667788ULL;
	a.tsc_khz = 2994000;
	assert_int_equal(state_trip(&vm_kvm_state_vmsd, &a, &b, 0), 0);
	assert_memory_equal(&a, &b, sizeof(a));
	assert_int_not_equal(state_trip(&vm_kvm_state_vmsd, &a, &b, 5), 0);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void *unthrottle_later(void *arg)
{
	usleep(50000);
	vm_set_throttle(arg, 0);
	return NULL;
}

/* A pass is slow when it set no new low or the guest dirtied more than half
 * of what it sent. */
static void test_pass_slow(void **state)
{
	(void)state;
	/* the 20k-pages/s bench guest: 195 MB dirtied while 241 MB went */
	assert_true(migrate_pass_slow(195000000, 241000000, true));
	assert_false(migrate_pass_slow(120000000, 241000000, true));
	assert_false(migrate_pass_slow(120500000, 241000000, true));
	assert_true(migrate_pass_slow(120500001, 241000000, true));
	/* no new low is slow whatever the rates */
	assert_true(migrate_pass_slow(0, 241000000, false));
}

/* When auto-converge throttles: a slow first pass, two slow passes in a
 * row, or any slow pass once throttled; never after a pass that was not
 * slow. */
static void test_throttle_now(void **state)
{
	(void)state;
	assert_true(migrate_throttle_now(1, 1, 0));
	assert_false(migrate_throttle_now(2, 1, 0));	/* pass 1 was not slow */
	assert_true(migrate_throttle_now(3, 2, 0));
	assert_true(migrate_throttle_now(4, 1, 20));
	assert_false(migrate_throttle_now(1, 0, 0));
	assert_false(migrate_throttle_now(5, 0, 20));
}

/* One more pass once the rest fits the limit: only if it leaves at most
 * half the pages and takes a tenth off the expected downtime. */
static void test_settle_pass(void **state)
{
	(void)state;
	/* the idle bench guest: 92 pages at 36 MB/s (10.5 ms), 11 pages/s
	 * dirtied, 42 ms expected: yes; with one page left: no */
	assert_true(migrate_settle_pass(92, 11, 36e6, 42000000));
	assert_false(migrate_settle_pass(1, 11, 36e6, 31000000));
	/* the 20k bench guest, throttled: 800 pages take 60 ms at 55 MB/s, in
	 * which it dirties 14000/s x 60 ms = 836 more: no */
	assert_false(migrate_settle_pass(800, 14000, 55e6, 90000000));
	/* leaving exactly half is enough; 4104 bytes a page at 4104 kB/s */
	assert_true(migrate_settle_pass(1000, 500, 4104000, 100000000));
	assert_false(migrate_settle_pass(1000, 501, 4104000, 100000000));
	/* saving under a tenth of the expected downtime: no */
	assert_false(migrate_settle_pass(10, 0, 4104000, 100000001));
	assert_true(migrate_settle_pass(10, 0, 4104000, 100000000));
	/* no bandwidth measured yet, or nothing left: no */
	assert_false(migrate_settle_pass(92, 11, 0, 42000000));
	assert_false(migrate_settle_pass(0, 0, 36e6, 42000000));
}

/* Auto-converge: 20, +10 after a slow pass, or what makes the rest fit
 * within three more passes; capped; never down. */
static void test_next_throttle(void **state)
{
	static const struct {
		uint32_t cur;
		bool slow;
		double dirty, bw, rest, fit;
		uint32_t max, want;
	} c[] = {
		/* nothing to project (the rest fits, or nothing ever would): steps */
		{ 0, true, 10e6, 100e6, 1e6, 4e6, 99, 20 },
		{ 20, true, 10e6, 100e6, 1e6, 4e6, 99, 30 },
		{ 20, false, 10e6, 100e6, 1e6, 4e6, 99, 20 },
		{ 0, false, 40e6, 50e6, 200e6, 0, 99, 0 },
		/* 200 MB left, room for 4: each pass may leave cbrt(0.02) = 0.271
		 * of the last, so 40 MB/s dirtied against 50 sent needs 66% off */
		{ 0, false, 40e6, 50e6, 200e6, 4e6, 99, 67 },
		{ 0, true, 40e6, 50e6, 200e6, 4e6, 99, 67 },
		/* the same guest seen at 50%: 20 MB/s dirtied is 40 unthrottled */
		{ 50, false, 20e6, 50e6, 200e6, 4e6, 99, 67 },
		/* already enough: stays; a guest that keeps up with three passes: 0 */
		{ 70, false, 12e6, 50e6, 200e6, 4e6, 99, 70 },
		{ 0, false, 10e6, 50e6, 200e6, 4e6, 99, 0 },
		/* the ceiling holds; no bandwidth measured yet: steps only */
		{ 0, false, 1e9, 10e6, 200e6, 4e6, 60, 60 },
		{ 90, true, 1e9, 10e6, 200e6, 4e6, 99, 99 },
		{ 30, true, 1e9, 0, 200e6, 4e6, 99, 40 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		assert_int_equal(migrate_next_throttle(c[i].cur, c[i].slow, c[i].dirty, c[i].bw,
						       c[i].rest, c[i].fit, c[i].max),
				 c[i].want);
}

/* A kicked vCPU sleeps PCT/(100-PCT) of the time it ran, at most 1 s, and
 * wakes as soon as the throttle is lifted. */
static void test_throttle(void **state)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	pthread_condattr_t ca;
	pthread_t t;
	uint64_t since = 0, t0;

	(void)state;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&vm->cond, &ca);
	vm->requested = VM_RUNNING;

	vm_vcpu_throttle(vm, &since);           /* off: no sleep, no accounting */
	assert_int_equal(since, 0);
	vm_set_throttle(vm, 150);
	assert_int_equal(vm->throttle_pct, 99);  /* clamped */
	vm_set_throttle(vm, 50);
	vm_vcpu_throttle(vm, &since);           /* first kick starts the clock */
	assert_true(since > 0);
	since -= 40000000;                      /* it ran 40 ms: 50% sleeps 40 ms */
	t0 = now_ms();
	vm_vcpu_throttle(vm, &since);
	assert_in_range(now_ms() - t0, 35, 900);

	vm_set_throttle(vm, 99);                /* 99% of 100 ms: capped at 1 s ... */
	since -= 100000000;
	t0 = now_ms();
	vm_vcpu_throttle(vm, &since);
	assert_in_range(now_ms() - t0, 900, 1500);
	since -= 100000000;                     /* ... and lifting it wakes the vCPU */
	assert_int_equal(pthread_create(&t, NULL, unthrottle_later, vm), 0);
	t0 = now_ms();
	vm_vcpu_throttle(vm, &since);
	assert_in_range(now_ms() - t0, 40, 700);
	pthread_join(t, NULL);
	pthread_cond_destroy(&vm->cond);
	pthread_condattr_destroy(&ca);
	free(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chan_frames),
		cmocka_unit_test(test_chan_read_ahead),
		cmocka_unit_test(test_chan_eof_and_stall),
		cmocka_unit_test(test_chan_uri),
		cmocka_unit_test(test_chan_backlog),
		cmocka_unit_test(test_ram_receive),
		cmocka_unit_test(test_ram_receive_runs),
		cmocka_unit_test(test_ram_send_roundtrip),
		cmocka_unit_test(test_ram_send_streams),
		cmocka_unit_test(test_ram_inplace_torn),
		cmocka_unit_test(test_shape_check),
		cmocka_unit_test(test_serial_state),
		cmocka_unit_test(test_pm_state),
		cmocka_unit_test(test_cpu_state),
		cmocka_unit_test(test_vm_kvm_state),
		cmocka_unit_test(test_throttle),
		cmocka_unit_test(test_pass_slow),
		cmocka_unit_test(test_throttle_now),
		cmocka_unit_test(test_next_throttle),
		cmocka_unit_test(test_settle_pass),
		cmocka_unit_test(test_ram_send_paced),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
