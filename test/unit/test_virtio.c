/* Unit tests for the virtio transport and devices on fake guest memory with
 * a fake driver (test/unit/virtio_fake.h), no KVM: feature/status rules,
 * queue setup checks, virtio-blk requests through io_uring (read/write/flush/
 * get-id/discard/write-zeroes, range/size/type/read-only errors, malformed
 * requests -> NEEDS_RESET, pause drains in-flight I/O, image locking),
 * virtio-rng, virtio-net over a datagram socketpair (TX, mergeable RX, no
 * buffers), and each device's state save/load with restore checks. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include "vmm/device.h"
#include "vmm/stream.h"
#include "vmm/virtio_blk.h"
#include "vmm/virtio_net.h"
#include "vmm/virtio_rng.h"
#include "vmm/vmstate.h"
#include "virtio_fake.h"

#define MEMSZ (4ULL << 20)
#define QS 16
#define IMG_SECTORS 2048

struct fx {
	struct guest_mem mem;
	char img[64];
	struct virtio_blk *blk;
};

/* Starts dirty tracking of device writes, as a migration does. */
static void dirty_start(struct fx *f)
{
	memset(f->mem.dirty, 0, MEMSZ / 4096 / 8);
	atomic_store(&f->mem.dirty_on, true);
}

static bool dirty(struct fx *f, uint64_t gpa)
{
	int64_t pg = mem_gpa_page(&f->mem, gpa);

	return pg >= 0 && (f->mem.dirty[pg / 64] >> (pg % 64)) & 1;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct virtio_blk_config bc = { .path = f->img, .serial = "unit-serial", .lock = true };
	int fd;

	assert_int_equal(mem_init(&f->mem, MEMSZ), 0);
	snprintf(f->img, sizeof(f->img), "/tmp/vmm-test-blk.XXXXXX");
	fd = mkstemp(f->img);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, IMG_SECTORS * 512), 0);
	close(fd);
	assert_int_equal(virtio_blk_create(&f->blk, NULL, &f->mem, -1, NULL, &bc), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	virtio_blk_destroy(f->blk);
	unlink(f->img);
	mem_destroy(&f->mem);
	free(f);
	return 0;
}

/* --- transport --- */

static void test_features(void **state)
{
	struct fx *f = *state;
	struct virtio_dev *vd = &f->blk->vd;

	assert_int_equal(fake_rd(vd, 18, 2), 1);                       /* num_queues */
	fake_wr(vd, 0, 1, 4);
	assert_true(fake_rd(vd, 4, 4) & 1);                            /* VERSION_1 offered */
	/* Legacy driver (no VERSION_1): FEATURES_OK refused. */
	fake_wr(vd, 20, 0, 1);
	fake_wr(vd, 20, 3, 1);
	fake_wr(vd, 8, 0, 4);
	fake_wr(vd, 12, 1u << VIRTIO_BLK_F_FLUSH, 4);
	fake_wr(vd, 20, 3 | VIRTIO_STATUS_FEATURES_OK, 1);
	assert_false(fake_rd(vd, 20, 1) & VIRTIO_STATUS_FEATURES_OK);
	/* A feature never offered: refused. */
	fake_wr(vd, 20, 0, 1);
	fake_wr(vd, 8, 1, 4);
	fake_wr(vd, 12, 1 | 1u << 20, 4);
	fake_wr(vd, 20, 3 | VIRTIO_STATUS_FEATURES_OK, 1);
	assert_false(fake_rd(vd, 20, 1) & VIRTIO_STATUS_FEATURES_OK);
	/* DRIVER_OK without FEATURES_OK does not stick; the driver cannot set NEEDS_RESET. */
	fake_wr(vd, 20, 3 | VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_NEEDS_RESET, 1);
	assert_int_equal(fake_rd(vd, 20, 1), 3);
	assert_int_equal(fake_driver_init(vd, 1ULL << VIRTIO_F_RING_EVENT_IDX, 1, QS), 0);
	/* Features are frozen after FEATURES_OK. */
	fake_wr(vd, 8, 0, 4);
	fake_wr(vd, 12, 0, 4);
	assert_int_equal(fake_rd(vd, 12, 4), 1u << VIRTIO_F_RING_EVENT_IDX);
	/* Out-of-range selectors read 0. */
	fake_wr(vd, 0, 7, 4);
	assert_int_equal(fake_rd(vd, 4, 4), 0);
	fake_wr(vd, 22, 5, 2);
	assert_int_equal(fake_rd(vd, 24, 2), 0);
	fake_wr(vd, 28, 1, 2);                                   /* enabling a missing queue */
	assert_false(fake_rd(vd, 20, 1) & VIRTIO_STATUS_NEEDS_RESET);
	/* Vectors beyond the table read back as NO_VECTOR. */
	fake_wr(vd, 16, 9, 2);
	assert_int_equal(fake_rd(vd, 16, 2), VIRTIO_NO_VECTOR);
	fake_wr(vd, 16, 0, 2);
	assert_int_equal(fake_rd(vd, 16, 2), 0);
	/* Reset clears everything. */
	fake_wr(vd, 20, 0, 1);
	assert_int_equal(fake_rd(vd, 20, 1), 0);
	fake_wr(vd, 22, 0, 2);
	assert_int_equal(fake_rd(vd, 28, 2), 0);
}

static void test_queue_setup_checks(void **state)
{
	struct fx *f = *state;
	struct virtio_dev *vd = &f->blk->vd;
	uint8_t d[4];

	/* Rings outside RAM: enabling the queue makes the device NEEDS_RESET. */
	fake_wr(vd, 20, 0, 1);
	fake_wr(vd, 20, 3, 1);
	fake_wr(vd, 8, 1, 4);
	fake_wr(vd, 12, 1, 4);
	fake_wr(vd, 20, 3 | VIRTIO_STATUS_FEATURES_OK, 1);
	fake_wr(vd, 22, 0, 2);
	fake_wr(vd, 32, MEMSZ - 64, 8);
	fake_wr(vd, 40, FAKE_AVAIL(0), 8);
	fake_wr(vd, 48, FAKE_USED(0), 8);
	fake_wr(vd, 28, 1, 2);
	assert_true(fake_rd(vd, 20, 1) & VIRTIO_STATUS_NEEDS_RESET);
	/* Queue registers are fixed once enabled. */
	fake_wr(vd, 24, 4, 2);
	assert_int_equal(fake_rd(vd, 24, 2), VIRTIO_BLK_QUEUE_SIZE);
	/* Bad size (not a power of two). */
	fake_wr(vd, 20, 0, 1);
	fake_wr(vd, 20, 3, 1);
	fake_wr(vd, 8, 1, 4);
	fake_wr(vd, 12, 1, 4);
	fake_wr(vd, 20, 3 | VIRTIO_STATUS_FEATURES_OK, 1);
	fake_wr(vd, 24, 12, 2);
	fake_wr(vd, 32, FAKE_DESC(0), 8);
	fake_wr(vd, 28, 1, 2);
	assert_true(fake_rd(vd, 20, 1) & VIRTIO_STATUS_NEEDS_RESET);
	/* Device config: reads inside work, beyond the end read 0, writes ignored. */
	assert_int_equal(fake_driver_init(vd, 0, 1, QS), 0);
	assert_int_equal(fake_rd(vd, VIRTIO_DEVCFG_OFF, 8), IMG_SECTORS);
	assert_int_equal(fake_rd(vd, VIRTIO_DEVCFG_OFF + 0x100, 4), 0);
	fake_wr(vd, VIRTIO_DEVCFG_OFF, 1, 8);
	assert_int_equal(fake_rd(vd, VIRTIO_DEVCFG_OFF, 8), IMG_SECTORS);
	/* Oversized / unknown accesses are harmless. */
	virtio_bar_access(vd, 0, 0x7ff0, d, 4, true);
	virtio_bar_access(vd, 3, 0, d, 4, false);
	virtio_bar_access(vd, 0, VIRTIO_COMMON_LEN - 2, d, 4, true);
}

/* --- virtio-blk requests --- */

struct req {
	uint16_t head;
	uint64_t hdr, data, status;
};

/* Builds header/data/status descriptors at HEAD (3 descriptors). */
static void blk_req(struct fx *f, uint16_t head, uint32_t type, uint64_t sector, uint32_t len,
		    bool data_write)
{
	struct { uint32_t type, res; uint64_t sector; } h = { type, 0, sector };
	uint64_t base = FAKE_DATA + 0x20000ULL * head;
	uint8_t st = 0xee;

	assert_int_equal(mem_write(&f->mem, base, &h, sizeof(h)), 0);
	assert_int_equal(mem_write(&f->mem, base + 0x1ff00, &st, 1), 0);
	fake_desc(&f->mem, 0, head, base, sizeof(h), VIRTQ_DESC_F_NEXT, (uint16_t)(head + 1));
	if (len) {
		fake_desc(&f->mem, 0, (uint16_t)(head + 1), base + 0x1000, len,
			  VIRTQ_DESC_F_NEXT | (data_write ? VIRTQ_DESC_F_WRITE : 0),
			  (uint16_t)(head + 2));
		fake_desc(&f->mem, 0, (uint16_t)(head + 2), base + 0x1ff00, 1, VIRTQ_DESC_F_WRITE, 0);
	} else {
		fake_desc(&f->mem, 0, (uint16_t)(head + 1), base + 0x1ff00, 1, VIRTQ_DESC_F_WRITE, 0);
	}
	fake_avail_add(&f->mem, 0, QS, head);
}

static uint8_t *blk_data(struct fx *f, uint16_t head)
{
	return mem_gpa_ptr(&f->mem, FAKE_DATA + 0x20000ULL * head + 0x1000, 0x1000);
}

static uint8_t blk_status(struct fx *f, uint16_t head)
{
	return *(uint8_t *)mem_gpa_ptr(&f->mem, FAKE_DATA + 0x20000ULL * head + 0x1ff00, 1);
}

/* Kicks and polls until the used index reaches WANT; returns the last used len. */
static uint32_t blk_run(struct fx *f, uint16_t want)
{
	uint64_t one = 1;
	uint32_t id = 0, len = 0;

	assert_int_equal(write(f->blk->vd.kick_fd[0], &one, 8), 8);
	for (int i = 0; i < 2000 && fake_used_idx(&f->mem, 0) != want; i++) {
		virtio_poll_once(&f->blk->vd);
		if (fake_used_idx(&f->mem, 0) != want)
			usleep(500);
	}
	assert_int_equal(fake_used_idx(&f->mem, 0), want);
	fake_used_elem(&f->mem, 0, QS, (uint16_t)(want - 1), &id, &len);
	return len;
}

static void test_blk_io(void **state)
{
	struct fx *f = *state;
	uint8_t buf[4096], back[4096];
	int fd;

	assert_int_equal(fake_driver_init(&f->blk->vd, 1ULL << VIRTIO_BLK_F_FLUSH |
					  1ULL << VIRTIO_F_RING_EVENT_IDX, 1, QS), 0);
	for (int i = 0; i < 4096; i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	/* write 8 sectors at sector 16 */
	blk_req(f, 0, VIRTIO_BLK_T_OUT, 16, 4096, false);
	memcpy(blk_data(f, 0), buf, 4096);
	assert_int_equal(blk_run(f, 1), 1);
	assert_int_equal(blk_status(f, 0), VIRTIO_BLK_S_OK);
	fd = open(f->img, O_RDONLY);
	assert_int_equal(pread(fd, back, 4096, 16 * 512), 4096);
	close(fd);
	assert_memory_equal(buf, back, 4096);
	/* read it back */
	blk_req(f, 3, VIRTIO_BLK_T_IN, 16, 4096, true);
	memset(blk_data(f, 3), 0, 4096);
	assert_int_equal(blk_run(f, 2), 4097);
	assert_int_equal(blk_status(f, 3), VIRTIO_BLK_S_OK);
	assert_memory_equal(blk_data(f, 3), buf, 4096);
	/* flush */
	blk_req(f, 6, VIRTIO_BLK_T_FLUSH, 0, 0, false);
	assert_int_equal(blk_run(f, 3), 1);
	assert_int_equal(blk_status(f, 6), VIRTIO_BLK_S_OK);
	/* get id */
	blk_req(f, 8, VIRTIO_BLK_T_GET_ID, 0, 20, true);
	assert_int_equal(blk_run(f, 4), 21);
	assert_memory_equal(blk_data(f, 8), "unit-serial", 11);
	/* write zeroes over the data, then read: zeros */
	{
		struct { uint32_t type, res; uint64_t sector; } h = { VIRTIO_BLK_T_WRITE_ZEROES, 0, 0 };
		struct { uint64_t sector; uint32_t num, flags; } seg = { 16, 8, 0 };
		uint64_t base = FAKE_DATA + 0x20000ULL * 11;
		uint8_t zero[4096] = { 0 };

		assert_int_equal(mem_write(&f->mem, base, &h, sizeof(h)), 0);
		assert_int_equal(mem_write(&f->mem, base + 16, &seg, sizeof(seg)), 0);
		fake_desc(&f->mem, 0, 11, base, 32, VIRTQ_DESC_F_NEXT, 12);
		fake_desc(&f->mem, 0, 12, base + 0x1ff00, 1, VIRTQ_DESC_F_WRITE, 0);
		fake_avail_add(&f->mem, 0, QS, 11);
		assert_int_equal(blk_run(f, 5), 1);
		assert_int_equal(blk_status(f, 11), VIRTIO_BLK_S_OK);
		fd = open(f->img, O_RDONLY);
		assert_int_equal(pread(fd, back, 4096, 16 * 512), 4096);
		close(fd);
		assert_memory_equal(back, zero, 4096);
		/* out of range write-zeroes: IOERR */
		seg.sector = IMG_SECTORS - 4;
		assert_int_equal(mem_write(&f->mem, base + 16, &seg, sizeof(seg)), 0);
		fake_avail_add(&f->mem, 0, QS, 11);
		blk_run(f, 6);
		assert_int_equal(blk_status(f, 11), VIRTIO_BLK_S_IOERR);
		/* unknown flags: UNSUPP */
		seg.sector = 0;
		seg.flags = 0x80;
		assert_int_equal(mem_write(&f->mem, base + 16, &seg, sizeof(seg)), 0);
		fake_avail_add(&f->mem, 0, QS, 11);
		blk_run(f, 7);
		assert_int_equal(blk_status(f, 11), VIRTIO_BLK_S_UNSUPP);
	}
	assert_false(fake_rd(&f->blk->vd, 20, 1) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_blk_bad_requests(void **state)
{
	struct fx *f = *state;

	assert_int_equal(fake_driver_init(&f->blk->vd, 0, 1, QS), 0);
	/* read past the end */
	blk_req(f, 0, VIRTIO_BLK_T_IN, IMG_SECTORS - 1, 1024, true);
	blk_run(f, 1);
	assert_int_equal(blk_status(f, 0), VIRTIO_BLK_S_IOERR);
	/* sector so large that sector*512 wraps */
	blk_req(f, 0, VIRTIO_BLK_T_IN, 0x0080000000000000ULL, 512, true);
	blk_run(f, 2);
	assert_int_equal(blk_status(f, 0), VIRTIO_BLK_S_IOERR);
	/* not a whole number of sectors */
	blk_req(f, 0, VIRTIO_BLK_T_OUT, 0, 100, false);
	blk_run(f, 3);
	assert_int_equal(blk_status(f, 0), VIRTIO_BLK_S_IOERR);
	/* unknown type */
	blk_req(f, 0, 0x77, 0, 512, true);
	blk_run(f, 4);
	assert_int_equal(blk_status(f, 0), VIRTIO_BLK_S_UNSUPP);
	/* discard with two segments: unsupported (max_discard_seg is 1) */
	blk_req(f, 0, VIRTIO_BLK_T_DISCARD, 0, 32, false);
	blk_run(f, 5);
	assert_int_equal(blk_status(f, 0), VIRTIO_BLK_S_UNSUPP);
	assert_false(fake_rd(&f->blk->vd, 20, 1) & VIRTIO_STATUS_NEEDS_RESET);
	/* data buffer writable for a write request: the device only reads the
	 * readable part, which is the header alone -> zero-length write, OK */
	/* header too short: not a request at all -> NEEDS_RESET */
	fake_desc(&f->mem, 0, 0, FAKE_DATA, 8, VIRTQ_DESC_F_NEXT, 1);
	fake_desc(&f->mem, 0, 1, FAKE_DATA + 0x100, 1, VIRTQ_DESC_F_WRITE, 0);
	fake_avail_add(&f->mem, 0, QS, 0);
	{
		uint64_t one = 1;

		assert_int_equal(write(f->blk->vd.kick_fd[0], &one, 8), 8);
		virtio_poll_once(&f->blk->vd);
	}
	assert_true(fake_rd(&f->blk->vd, 20, 1) & VIRTIO_STATUS_NEEDS_RESET);
	/* A reset brings it back. */
	assert_int_equal(fake_driver_init(&f->blk->vd, 0, 1, QS), 0);
	assert_false(fake_rd(&f->blk->vd, 20, 1) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_blk_loop_chain(void **state)
{
	struct fx *f = *state;
	uint64_t one = 1;

	assert_int_equal(fake_driver_init(&f->blk->vd, 0, 1, QS), 0);
	fake_desc(&f->mem, 0, 0, FAKE_DATA, 16, VIRTQ_DESC_F_NEXT, 1);
	fake_desc(&f->mem, 0, 1, FAKE_DATA + 0x100, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
	fake_avail_add(&f->mem, 0, QS, 0);
	assert_int_equal(write(f->blk->vd.kick_fd[0], &one, 8), 8);
	virtio_poll_once(&f->blk->vd);
	assert_true(fake_rd(&f->blk->vd, 20, 1) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(fake_used_idx(&f->mem, 0), 0);
}

/* A malformed chain behind good ones: the good ones were already queued to
 * io_uring, so they must still be submitted and complete, and the pause that
 * drains them must return (a fuzzer found it waiting forever). */
static void test_blk_bad_chain_after_io(void **state)
{
	struct fx *f = *state;
	uint64_t one = 1;

	assert_int_equal(fake_driver_init(&f->blk->vd, 0, 1, QS), 0);
	blk_req(f, 0, VIRTIO_BLK_T_OUT, 8, 4096, false);
	fake_desc(&f->mem, 0, 3, FAKE_DATA + 0x80000, 8, VIRTQ_DESC_F_NEXT, 4);
	fake_desc(&f->mem, 0, 4, FAKE_DATA + 0x80100, 1, VIRTQ_DESC_F_WRITE, 0);
	fake_avail_add(&f->mem, 0, QS, 3);
	assert_int_equal(write(f->blk->vd.kick_fd[0], &one, 8), 8);
	pthread_mutex_lock(&f->blk->vd.lock);
	f->blk->vd.ops->queue_notify(&f->blk->vd, 0);
	pthread_mutex_unlock(&f->blk->vd.lock);
	assert_true(fake_rd(&f->blk->vd, 20, 1) & VIRTIO_STATUS_NEEDS_RESET);
	virtio_pause(&f->blk->vd);
	assert_int_equal(f->blk->inflight, 0);
	assert_int_equal(fake_used_idx(&f->mem, 0), 1);
	assert_int_equal(blk_status(f, 0), VIRTIO_BLK_S_OK);
	virtio_resume(&f->blk->vd);
}

/* Every page a device writes (data, status byte, used ring) is marked for a
 * running migration, and pages it only reads are not. */
static void test_dma_marks_dirty(void **state)
{
	struct fx *f = *state;
	struct virtio_rng *rng;
	uint64_t one = 1;

	assert_int_equal(fake_driver_init(&f->blk->vd, 0, 1, QS), 0);
	dirty_start(f);
	blk_req(f, 0, VIRTIO_BLK_T_IN, 0, 4096, true);
	assert_int_equal(blk_run(f, 1), 4097);
	assert_true(dirty(f, FAKE_DATA + 0x1000));              /* data */
	assert_true(dirty(f, FAKE_DATA + 0x1ff00));             /* status */
	assert_true(dirty(f, FAKE_USED(0)));                    /* used ring */
	assert_false(dirty(f, FAKE_DATA));                      /* header: read only */
	assert_false(dirty(f, FAKE_DESC(0)));
	assert_false(dirty(f, FAKE_DATA + 0x2000));
	/* GET_ID writes the serial synchronously */
	dirty_start(f);
	blk_req(f, 3, VIRTIO_BLK_T_GET_ID, 0, 20, true);
	assert_int_equal(blk_run(f, 2), 21);
	assert_true(dirty(f, FAKE_DATA + 0x20000 * 3 + 0x1000));
	/* rng, on fresh rings */
	memset(mem_gpa_ptr(&f->mem, FAKE_RING(0), 0x10000), 0, 0x10000);
	assert_int_equal(virtio_rng_create(&rng, NULL, &f->mem, -1, NULL), 0);
	assert_int_equal(fake_driver_init(&rng->vd, 0, 1, QS), 0);
	dirty_start(f);
	fake_desc(&f->mem, 0, 0, FAKE_DATA + 0x3ff0, 64, VIRTQ_DESC_F_WRITE, 0);
	fake_avail_add(&f->mem, 0, QS, 0);
	assert_int_equal(write(rng->vd.kick_fd[0], &one, 8), 8);
	virtio_poll_once(&rng->vd);
	assert_int_equal(fake_used_idx(&f->mem, 0), 1);
	assert_true(dirty(f, FAKE_DATA + 0x3000) && dirty(f, FAKE_DATA + 0x4000));
	assert_false(dirty(f, FAKE_DATA + 0x5000));
	virtio_rng_destroy(rng);
}

static void test_blk_pause_drains(void **state)
{
	struct fx *f = *state;
	uint64_t one = 1;

	assert_int_equal(fake_driver_init(&f->blk->vd, 0, 1, QS), 0);
	for (uint16_t h = 0; h < 12; h += 3)
		blk_req(f, h, VIRTIO_BLK_T_OUT, h, 4096, false);
	/* Submit without reaping, then pause: all four must be complete. */
	assert_int_equal(write(f->blk->vd.kick_fd[0], &one, 8), 8);
	pthread_mutex_lock(&f->blk->vd.lock);
	f->blk->vd.ops->queue_notify(&f->blk->vd, 0);
	pthread_mutex_unlock(&f->blk->vd.lock);
	virtio_pause(&f->blk->vd);
	assert_int_equal(f->blk->inflight, 0);
	assert_int_equal(fake_used_idx(&f->mem, 0), 4);
	/* While paused, kicks are not processed. */
	blk_req(f, 0, VIRTIO_BLK_T_FLUSH, 0, 0, false);
	assert_int_equal(write(f->blk->vd.kick_fd[0], &one, 8), 8);
	virtio_poll_once(&f->blk->vd);
	assert_int_equal(fake_used_idx(&f->mem, 0), 4);
	virtio_resume(&f->blk->vd);
	virtio_poll_once(&f->blk->vd);
	for (int i = 0; i < 1000 && fake_used_idx(&f->mem, 0) != 5; i++) {
		usleep(500);
		virtio_poll_once(&f->blk->vd);
	}
	assert_int_equal(fake_used_idx(&f->mem, 0), 5);
}

static void test_blk_readonly_and_lock(void **state)
{
	struct fx *f = *state;
	struct virtio_blk *ro = NULL, *second = NULL;
	struct virtio_blk_config bc = { .path = f->img, .readonly = true, .lock = true };
	struct virtio_blk_config rw = { .path = f->img, .lock = true };
	struct fx g = *f;

	/* The image is locked read-write by the fixture: both opens are refused. */
	assert_int_equal(virtio_blk_create(&second, NULL, &f->mem, -1, NULL, &rw), -EWOULDBLOCK);
	assert_int_equal(virtio_blk_create(&ro, NULL, &f->mem, -1, NULL, &bc), -EWOULDBLOCK);
	virtio_blk_unlock(f->blk);
	assert_int_equal(virtio_blk_create(&ro, NULL, &f->mem, -1, NULL, &bc), 0);
	/* Two read-only users may share it; a writer may not join. */
	assert_int_equal(virtio_blk_create(&second, NULL, &f->mem, -1, NULL, &bc), 0);
	virtio_blk_destroy(second);
	assert_int_equal(virtio_blk_lock(f->blk), -EWOULDBLOCK);
	/* A read-only disk offers RO and answers writes with IOERR. */
	fake_wr(&ro->vd, 0, 0, 4);
	assert_true(fake_rd(&ro->vd, 4, 4) & 1u << VIRTIO_BLK_F_RO);
	assert_int_equal(fake_driver_init(&ro->vd, 1ULL << VIRTIO_BLK_F_RO, 1, QS), 0);
	g.blk = ro;
	blk_req(&g, 0, VIRTIO_BLK_T_OUT, 0, 512, false);
	blk_run(&g, 1);
	assert_int_equal(blk_status(&g, 0), VIRTIO_BLK_S_IOERR);
	blk_req(&g, 0, VIRTIO_BLK_T_IN, 0, 512, true);
	blk_run(&g, 2);
	assert_int_equal(blk_status(&g, 0), VIRTIO_BLK_S_OK);
	virtio_blk_destroy(ro);
	assert_int_equal(virtio_blk_lock(f->blk), 0);
}

static void test_blk_state(void **state)
{
	struct fx *f = *state;
	struct virtio_blk_state saved, before;
	struct stream_buf buf;
	struct stream_reader r;

	assert_int_equal(fake_driver_init(&f->blk->vd, 1ULL << VIRTIO_F_RING_EVENT_IDX, 1, QS), 0);
	blk_req(f, 0, VIRTIO_BLK_T_FLUSH, 0, 0, false);
	blk_run(f, 1);
	stream_buf_init(&buf);
	assert_int_equal(vmstate_save(&virtio_blk_vmstate, &f->blk->st, &buf), 0);
	saved = f->blk->st;
	/* Reset the device, then restore: the queue comes back where it was. */
	fake_wr(&f->blk->vd, 20, 0, 1);
	stream_reader_init(&r, buf.data, buf.len);
	assert_int_equal(vmstate_load(&virtio_blk_vmstate, &f->blk->st, &r, 1), 0);
	assert_memory_equal(&saved, &f->blk->st, sizeof(saved));
	assert_int_equal(virtio_blk_device_ops.apply_state(f->blk), 0);
	assert_int_equal(f->blk->st.vio.queues[0].last_avail_idx, 1);
	blk_req(f, 3, VIRTIO_BLK_T_FLUSH, 0, 0, false);
	blk_run(f, 2);
	assert_int_equal(blk_status(f, 3), VIRTIO_BLK_S_OK);
	/* A different disk size is refused by apply_state. */
	f->blk->st.capacity++;
	assert_int_equal(virtio_blk_device_ops.apply_state(f->blk), -EINVAL);
	f->blk->st.capacity--;
	/* Different offered features are refused. */
	f->blk->st.vio.device_features ^= 1ULL << VIRTIO_BLK_F_DISCARD;
	f->blk->st.vio.driver_features = 0;
	assert_int_equal(virtio_blk_device_ops.apply_state(f->blk), -EINVAL);
	f->blk->st = saved;
	/* Rings outside this VM's RAM are refused. */
	f->blk->st.vio.queues[0].used = MEMSZ + 0x1000;
	assert_int_equal(virtio_blk_device_ops.apply_state(f->blk), -EINVAL);
	f->blk->st = saved;
	/* Invalid streams are refused at load and leave the state untouched. */
	struct virtio_blk_state bad[4];
	for (int i = 0; i < 4; i++)
		bad[i] = saved;
	bad[0].vio.driver_features |= 1ULL << 60;                /* never offered */
	bad[1].vio.num_queues = VIRTIO_MAX_QUEUES + 1;
	bad[2].vio.queues[0].msix_vector = 7;                    /* beyond the table */
	bad[3].vio.queues[3].enabled = 1;                        /* queue that does not exist */
	for (int i = 0; i < 4; i++) {
		stream_buf_reset(&buf);
		assert_int_equal(vmstate_save(&virtio_blk_vmstate, &bad[i], &buf), 0);
		stream_reader_init(&r, buf.data, buf.len);
		before = f->blk->st;
		assert_int_not_equal(vmstate_load(&virtio_blk_vmstate, &f->blk->st, &r, 1), 0);
		assert_memory_equal(&before, &f->blk->st, sizeof(before));
	}
	stream_buf_free(&buf);
}

/* --- virtio-rng --- */

static void test_rng(void **state)
{
	struct fx *f = *state;
	struct virtio_rng *rng;
	struct virtio_rng_state saved;
	struct stream_buf buf;
	struct stream_reader r;
	uint8_t zero[64] = { 0 };
	uint32_t id, len;
	uint64_t one = 1;

	assert_int_equal(virtio_rng_create(&rng, NULL, &f->mem, -1, NULL), 0);
	assert_int_equal(fake_driver_init(&rng->vd, 0, 1, QS), 0);
	memset(mem_gpa_ptr(&f->mem, FAKE_DATA, 64), 0, 64);
	fake_desc(&f->mem, 0, 0, FAKE_DATA, 64, VIRTQ_DESC_F_WRITE, 0);
	fake_avail_add(&f->mem, 0, QS, 0);
	/* a device-readable buffer gets nothing */
	fake_desc(&f->mem, 0, 1, FAKE_DATA + 0x1000, 64, 0, 0);
	fake_avail_add(&f->mem, 0, QS, 1);
	assert_int_equal(write(rng->vd.kick_fd[0], &one, 8), 8);
	virtio_poll_once(&rng->vd);
	assert_int_equal(fake_used_idx(&f->mem, 0), 2);
	fake_used_elem(&f->mem, 0, QS, 0, &id, &len);
	assert_int_equal(len, 64);
	assert_memory_not_equal(mem_gpa_ptr(&f->mem, FAKE_DATA, 64), zero, 64);
	fake_used_elem(&f->mem, 0, QS, 1, &id, &len);
	assert_int_equal(len, 0);
	/* state round trip */
	stream_buf_init(&buf);
	assert_int_equal(vmstate_save(&virtio_rng_vmstate, &rng->st, &buf), 0);
	saved = rng->st;
	fake_wr(&rng->vd, 20, 0, 1);
	stream_reader_init(&r, buf.data, buf.len);
	assert_int_equal(vmstate_load(&virtio_rng_vmstate, &rng->st, &r, 1), 0);
	assert_memory_equal(&saved, &rng->st, sizeof(saved));
	assert_int_equal(virtio_rng_device_ops.apply_state(rng), 0);
	stream_buf_free(&buf);
	virtio_rng_destroy(rng);
}

/* --- virtio-net over a datagram socketpair --- */

static void test_net(void **state)
{
	struct fx *f = *state;
	struct virtio_net *net;
	struct virtio_net_state saved;
	struct stream_buf buf;
	struct stream_reader r;
	int sv[2];
	uint8_t pkt[3012], got[4096];
	uint32_t id, len;
	uint16_t nb;
	uint64_t one = 1;

	assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(virtio_net_create_fd(&net, NULL, &f->mem, -1, NULL, sv[0], "tap-unit",
					      NULL), 0);
	/* MAC derived from the name, reported in config space. */
	{
		uint8_t mac[6];

		virtio_net_derive_mac("tap-unit", mac);
		for (int i = 0; i < 6; i++)
			assert_int_equal(fake_rd(&net->vd, VIRTIO_DEVCFG_OFF + (uint32_t)i, 1), mac[i]);
		assert_int_equal(mac[0], 0x52);
		assert_int_equal(fake_rd(&net->vd, VIRTIO_DEVCFG_OFF + 6, 2), VIRTIO_NET_S_LINK_UP);
		assert_int_equal(virtio_net_parse_mac("01:00:00:00:00:01", mac), -EINVAL);
		assert_int_equal(virtio_net_parse_mac("52:54:00:00:00:zz", mac), -EINVAL);
		assert_int_equal(virtio_net_parse_mac("52:54:00:00:00:01", mac), 0);
	}
	assert_int_equal(fake_driver_init(&net->vd, 1ULL << VIRTIO_NET_F_MRG_RXBUF |
					  1ULL << VIRTIO_F_RING_EVENT_IDX, 2, QS), 0);
	/* TX: header + payload in two descriptors -> one datagram. */
	memset(mem_gpa_ptr(&f->mem, FAKE_DATA, 12), 0, 12);
	memcpy(mem_gpa_ptr(&f->mem, FAKE_DATA + 0x100, 5), "hello", 5);
	fake_desc(&f->mem, 1, 0, FAKE_DATA, 12, VIRTQ_DESC_F_NEXT, 1);
	fake_desc(&f->mem, 1, 1, FAKE_DATA + 0x100, 5, 0, 0);
	fake_avail_add(&f->mem, 1, QS, 0);
	/* a TX chain shorter than the header is dropped, not sent */
	fake_desc(&f->mem, 1, 2, FAKE_DATA, 4, 0, 0);
	fake_avail_add(&f->mem, 1, QS, 2);
	assert_int_equal(write(net->vd.kick_fd[1], &one, 8), 8);
	virtio_poll_once(&net->vd);
	assert_int_equal(fake_used_idx(&f->mem, 1), 2);
	assert_int_equal(recv(sv[1], got, sizeof(got), 0), 17);
	assert_memory_equal(got + 12, "hello", 5);
	assert_int_equal(recv(sv[1], got, sizeof(got), 0), -1);
	/* RX without buffers: the packet waits. */
	for (int i = 0; i < (int)sizeof(pkt); i++)
		pkt[i] = (uint8_t)i;
	memset(pkt, 0, 12);
	assert_int_equal(send(sv[1], pkt, sizeof(pkt), 0), (ssize_t)sizeof(pkt));
	virtio_poll_once(&net->vd);
	assert_int_equal(fake_used_idx(&f->mem, 0), 0);
	/* Three 1500-byte buffers: merged, num_buffers = 3. With only the first
	 * posted the packet waits (no spinning), and the device asks to be kicked
	 * when the second arrives (avail_event = 1). */
	for (uint16_t i = 0; i < 3; i++)
		fake_desc(&f->mem, 0, i, FAKE_DATA + 0x10000 + 0x1000ULL * i, 1500,
			  VIRTQ_DESC_F_WRITE, 0);
	fake_avail_add(&f->mem, 0, QS, 0);
	assert_int_equal(write(net->vd.kick_fd[0], &one, 8), 8);
	virtio_poll_once(&net->vd);
	assert_int_equal(fake_used_idx(&f->mem, 0), 0);
	assert_int_equal(*(uint16_t *)mem_gpa_ptr(&f->mem, FAKE_USED(0) + 4 + 8 * QS, 2), 1);
	fake_avail_add(&f->mem, 0, QS, 1);
	fake_avail_add(&f->mem, 0, QS, 2);
	dirty_start(f);
	assert_int_equal(write(net->vd.kick_fd[0], &one, 8), 8);
	virtio_poll_once(&net->vd);
	assert_int_equal(fake_used_idx(&f->mem, 0), 3);
	for (int i = 0; i < 3; i++)     /* each buffer, and the used ring */
		assert_true(dirty(f, FAKE_DATA + 0x10000 + 0x1000ULL * i));
	assert_true(dirty(f, FAKE_USED(0)));
	assert_false(dirty(f, FAKE_DATA + 0x13000));
	fake_used_elem(&f->mem, 0, QS, 0, &id, &len);
	assert_int_equal(len, 1500);
	fake_used_elem(&f->mem, 0, QS, 2, &id, &len);
	assert_int_equal(len, 12);
	assert_int_equal(mem_read(&f->mem, FAKE_DATA + 0x10000 + 10, &nb, 2), 0);
	assert_int_equal(nb, 3);
	assert_memory_equal(mem_gpa_ptr(&f->mem, FAKE_DATA + 0x11000, 1500), pkt + 1500, 1500);
	/* self-announce: a broadcast RARP from the guest's MAC behind a vnet header */
	assert_int_equal(virtio_net_announce(net), 0);
	assert_int_equal(recv(sv[1], got, sizeof(got), 0), 12 + 60);
	assert_memory_equal(got + 12, "\xff\xff\xff\xff\xff\xff", 6);
	assert_memory_equal(got + 18, net->st.mac, 6);
	assert_memory_equal(got + 24, "\x80\x35\x00\x01\x08\x00\x06\x04\x00\x03", 10);
	assert_memory_equal(got + 34, net->st.mac, 6);
	assert_memory_equal(got + 44, net->st.mac, 6);
	/* state round trip keeps the MAC */
	stream_buf_init(&buf);
	assert_int_equal(vmstate_save(&virtio_net_vmstate, &net->st, &buf), 0);
	saved = net->st;
	fake_wr(&net->vd, 20, 0, 1);
	stream_reader_init(&r, buf.data, buf.len);
	assert_int_equal(vmstate_load(&virtio_net_vmstate, &net->st, &r, 1), 0);
	assert_memory_equal(&saved, &net->st, sizeof(saved));
	assert_int_equal(virtio_net_device_ops.apply_state(net), 0);
	/* a multicast MAC in the stream is refused */
	saved.mac[0] |= 1;
	stream_buf_reset(&buf);
	assert_int_equal(vmstate_save(&virtio_net_vmstate, &saved, &buf), 0);
	stream_reader_init(&r, buf.data, buf.len);
	assert_int_equal(vmstate_load(&virtio_net_vmstate, &net->st, &r, 1), -EINVAL);
	stream_buf_free(&buf);
	virtio_net_destroy(net);
	close(sv[1]);
}

/* One virtqueue per vCPU: a request on queue 1 completes into queue 1's used
 * ring and leaves queue 0 alone; the device says how many queues it has. */
static void test_blk_multiqueue(void **state)
{
	struct fx *f = *state;
	struct virtio_blk_config bc = { .path = f->img, .lock = true, .num_queues = 2 };
	struct { uint32_t type, res; uint64_t sector; } h = { VIRTIO_BLK_T_IN, 0, 8 };
	uint64_t one = 1, base = FAKE_DATA;
	uint8_t pattern[4096], st = 0xee;
	uint32_t id = 99, len = 0;
	struct virtio_dev *vd;
	int fd;

	virtio_blk_destroy(f->blk);
	assert_int_equal(virtio_blk_create(&f->blk, NULL, &f->mem, -1, NULL, &bc), 0);
	vd = &f->blk->vd;
	assert_int_equal(fake_rd(vd, 18, 2), 2);                            /* common cfg */
	assert_int_equal(fake_rd(vd, VIRTIO_DEVCFG_OFF + 34, 2), 2);         /* blk config */
	assert_int_equal(fake_driver_init(vd, 1ULL << VIRTIO_BLK_F_MQ, 2, QS), 0);
	for (int i = 0; i < 4096; i++)
		pattern[i] = (uint8_t)(i * 13 + 5);
	fd = open(f->img, O_WRONLY);
	assert_int_equal(pwrite(fd, pattern, sizeof(pattern), 8 * 512), sizeof(pattern));
	close(fd);
	assert_int_equal(mem_write(&f->mem, base, &h, sizeof(h)), 0);
	assert_int_equal(mem_write(&f->mem, base + 0x1ff00, &st, 1), 0);
	fake_desc(&f->mem, 1, 3, base, sizeof(h), VIRTQ_DESC_F_NEXT, 4);
	fake_desc(&f->mem, 1, 4, base + 0x1000, 4096, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 5);
	fake_desc(&f->mem, 1, 5, base + 0x1ff00, 1, VIRTQ_DESC_F_WRITE, 0);
	fake_avail_add(&f->mem, 1, QS, 3);
	assert_int_equal(write(vd->kick_fd[1], &one, 8), 8);
	for (int i = 0; i < 2000 && fake_used_idx(&f->mem, 1) != 1; i++) {
		virtio_poll_once(vd);
		if (fake_used_idx(&f->mem, 1) != 1)
			usleep(500);
	}
	assert_int_equal(fake_used_idx(&f->mem, 1), 1);
	assert_int_equal(fake_used_idx(&f->mem, 0), 0);
	fake_used_elem(&f->mem, 1, QS, 0, &id, &len);
	assert_int_equal(id, 3);
	assert_int_equal(len, 4096 + 1);
	assert_int_equal(blk_status(f, 0), VIRTIO_BLK_S_OK);
	assert_memory_equal(blk_data(f, 0), pattern, sizeof(pattern));
}

/* Adjacent reads or writes in one kick go out as one transfer; each request
 * still completes with its own status and length, and a merged read marks
 * every buffer dirty. */
static void test_blk_merge(void **state)
{
	struct fx *f = *state;
	uint8_t buf[3][4096], back[4096];
	uint32_t id, len;
	int fd;

	assert_int_equal(fake_driver_init(&f->blk->vd, 1ULL << VIRTIO_F_RING_EVENT_IDX, 1, QS), 0);
	for (int w = 0; w < 3; w++) {
		for (int i = 0; i < 4096; i++)
			buf[w][i] = (uint8_t)(i * 11 + w * 101 + 1);
		blk_req(f, (uint16_t)(3 * w), VIRTIO_BLK_T_OUT, 16 + 8 * (uint64_t)w, 4096, false);
		memcpy(blk_data(f, (uint16_t)(3 * w)), buf[w], 4096);
	}
	blk_req(f, 9, VIRTIO_BLK_T_OUT, 100, 4096, false);     /* not adjacent */
	memset(blk_data(f, 9), 0x5a, 4096);
	blk_run(f, 4);
	assert_int_equal(f->blk->nr_merged, 2);
	for (int w = 0; w < 4; w++)
		assert_int_equal(blk_status(f, (uint16_t)(3 * w)), VIRTIO_BLK_S_OK);
	fd = open(f->img, O_RDONLY);
	for (int w = 0; w < 3; w++) {
		assert_int_equal(pread(fd, back, 4096, (16 + 8 * w) * 512), 4096);
		assert_memory_equal(back, buf[w], 4096);
	}
	assert_int_equal(pread(fd, back, 4096, 100 * 512), 4096);
	assert_int_equal(back[4095], 0x5a);
	close(fd);

	dirty_start(f);
	blk_req(f, 0, VIRTIO_BLK_T_IN, 24, 4096, true);
	blk_req(f, 3, VIRTIO_BLK_T_IN, 32, 4096, true);
	memset(blk_data(f, 0), 0, 4096);
	memset(blk_data(f, 3), 0, 4096);
	blk_run(f, 6);
	assert_int_equal(f->blk->nr_merged, 3);
	for (uint16_t u = 4; u < 6; u++) {
		fake_used_elem(&f->mem, 0, QS, u, &id, &len);
		assert_int_equal(len, 4097);
	}
	assert_int_equal(blk_status(f, 0), VIRTIO_BLK_S_OK);
	assert_int_equal(blk_status(f, 3), VIRTIO_BLK_S_OK);
	assert_memory_equal(blk_data(f, 0), buf[1], 4096);
	assert_memory_equal(blk_data(f, 3), buf[2], 4096);
	assert_true(dirty(f, FAKE_DATA + 0x1000));
	assert_true(dirty(f, FAKE_DATA + 0x20000ULL * 3 + 0x1000));
	assert_false(fake_rd(&f->blk->vd, 20, 1) & VIRTIO_STATUS_NEEDS_RESET);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_features), T(test_queue_setup_checks), T(test_blk_io),
		T(test_blk_bad_requests), T(test_blk_loop_chain), T(test_blk_pause_drains),
		T(test_blk_bad_chain_after_io), T(test_blk_multiqueue), T(test_blk_merge),
		T(test_dma_marks_dirty),
		T(test_blk_readonly_and_lock), T(test_blk_state), T(test_rng), T(test_net),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
