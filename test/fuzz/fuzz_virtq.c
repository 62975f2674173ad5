/*
 * libFuzzer target for the virtqueue and device request parsing a hostile
 * guest controls: the input picks a device (raw virtqueue, virtio-blk,
 * virtio-rng, virtio-net TX/RX), a queue size and features, then becomes the
 * descriptor table, the avail ring and the request bytes in fake guest RAM.
 * Oracle: nothing crashes, hangs or reads/writes outside guest RAM (ASan,
 * UBSan, plus an explicit check that every popped buffer lies in RAM), and
 * a device never returns more chains than it took (virtio-blk: after a pause
 * it holds none).
 * Build and run: test/fuzz/run-fuzz.sh virtq SECONDS
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "vmm/virtio_blk.h"
#include "vmm/virtio_net.h"
#include "vmm/virtio_rng.h"
#include "../unit/virtio_fake.h"

#define FZ_MEM (2ULL << 20)

static struct guest_mem mem;
static struct virtio_blk *blk;
static struct virtio_rng *rng;
static struct virtio_net *net;
static int net_peer = -1;

static void fz_init(void)
{
	char path[] = "/tmp/vmm-fuzz-virtq.XXXXXX";
	struct virtio_blk_config bc = { .path = path, .serial = "fuzz" };
	int fd, sv[2];

	if (mem_init(&mem, FZ_MEM))
		abort();
	fd = mkstemp(path);
	if (fd < 0 || ftruncate(fd, 1 << 20))
		abort();
	close(fd);
	if (virtio_blk_create(&blk, NULL, &mem, -1, NULL, &bc))
		abort();
	unlink(path);
	if (virtio_rng_create(&rng, NULL, &mem, -1, NULL))
		abort();
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, sv) ||
	    virtio_net_create_fd(&net, NULL, &mem, -1, NULL, sv[0], "fuzz0", NULL))
		abort();
	net_peer = sv[1];
	vmm_log_set_quiet(true);
}

/* Lays the input out as queue Q's rings and the data area. */
static void fz_layout(int q, uint16_t qsize, const uint8_t *d, size_t n)
{
	size_t dlen = 16u * qsize, alen = 4 + 2u * qsize + 2;

	memset(mem_gpa_ptr(&mem, FAKE_RING(q), 0x10000), 0, 0x10000);
	memset(mem_gpa_ptr(&mem, FAKE_DATA, 0x10000), 0, 0x10000);
	memcpy(mem_gpa_ptr(&mem, FAKE_DESC(q), dlen), d, n < dlen ? n : dlen);
	if (n <= dlen)
		return;
	d += dlen, n -= dlen;
	memcpy(mem_gpa_ptr(&mem, FAKE_AVAIL(q), alen), d, n < alen ? n : alen);
	if (n <= alen)
		return;
	d += alen, n -= alen;
	memcpy(mem_gpa_ptr(&mem, FAKE_DATA, 0x10000), d, n < 0x10000 ? n : 0x10000);
}

static void fz_raw(uint16_t qsize, const uint8_t *d, size_t n)
{
	struct virtq_state st = { .size = qsize, .enabled = 1, .desc = FAKE_DESC(0),
				  .avail = FAKE_AVAIL(0), .used = FAKE_USED(0) };
	struct iovec iov[16];
	struct virtq_elem e = { .iov = iov, .iov_cap = 16 };
	struct virtq vq;

	fz_layout(0, qsize, d, n);
	virtq_init(&vq, &st, &mem);
	if (virtq_start(&vq, 16))
		abort();
	for (int i = 0; i < 64 && virtq_pop(&vq, &e) == 1; i++) {
		for (unsigned j = 0; j < (unsigned)e.nr_out + e.nr_in; j++) {
			uint8_t *p = iov[j].iov_base;

			if (p < mem.base || p + iov[j].iov_len > mem.base + mem.size)
				abort();
		}
		virtq_push(&vq, e.head, (uint32_t)e.in_len);
		(void)virtq_should_notify(&vq);
	}
	(void)virtq_enable_notify(&vq);
}

static void fz_device(struct virtio_dev *vd, int q, int nq, uint64_t feats, uint16_t qsize,
		      const uint8_t *d, size_t n)
{
	uint64_t one = 1;
	uint16_t popped, used;

	if (fake_driver_init(vd, feats, nq, qsize))
		return;
	fz_layout(q, qsize, d, n);
	if (write(vd->kick_fd[q], &one, sizeof(one)) < 0)
		abort();
	for (int i = 0; i < 4; i++)
		virtio_poll_once(vd);
	virtio_pause(vd);           /* drains in-flight I/O into the ring */
	/* The device never returns more chains than it took, and after the
	 * pause virtio-blk holds none. (The rings in guest memory are no oracle:
	 * the guest may point read buffers at them.) */
	popped = vd->st->queues[q].last_avail_idx;
	used = vd->st->queues[q].used_idx;
	if ((uint16_t)(popped - used) > qsize)
		abort();
	if (vd == &blk->vd && popped != used && !(fake_rd(vd, 20, 1) & VIRTIO_STATUS_NEEDS_RESET))
		abort();
	virtio_resume(vd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint16_t qsize;
	uint64_t feats;
	uint8_t pkt[2048];

	if (!blk)
		fz_init();
	if (size < 4)
		return 0;
	qsize = (uint16_t)(1u << (data[1] % 5));          /* 1..16 */
	feats = (data[2] & 1 ? 1ULL << VIRTIO_F_RING_EVENT_IDX : 0);
	switch (data[0] % 5) {
	case 0:
		fz_raw(qsize, data + 4, size - 4);
		break;
	case 1:
		fz_device(&blk->vd, 0, 1, feats | (data[2] & 2 ? 1ULL << VIRTIO_BLK_F_FLUSH : 0) |
			  1ULL << VIRTIO_BLK_F_DISCARD | 1ULL << VIRTIO_BLK_F_WRITE_ZEROES,
			  qsize, data + 4, size - 4);
		break;
	case 2:
		fz_device(&rng->vd, 0, 1, feats, qsize, data + 4, size - 4);
		break;
	case 3:   /* net TX */
		fz_device(&net->vd, 1, 2, feats | (data[2] & 2 ? 1ULL << VIRTIO_NET_F_MRG_RXBUF : 0),
			  qsize, data + 4, size - 4);
		while (recv(net_peer, pkt, sizeof(pkt), 0) > 0)
			;
		break;
	case 4:   /* net RX: a packet waits for the guest's buffers */
		memset(pkt, 0, sizeof(pkt));
		if (send(net_peer, pkt, 12 + (data[3] % 8) * 200, 0) < 0)
			break;
		fz_device(&net->vd, 0, 2, feats | (data[2] & 2 ? 1ULL << VIRTIO_NET_F_MRG_RXBUF : 0),
			  qsize, data + 4, size - 4);
		break;
	}
	return 0;
}
