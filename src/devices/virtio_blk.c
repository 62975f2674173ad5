/* virtio-blk (device id 2) on io_uring: parses and checks each request
 * (header, direction, sector range, size, type), submits it to io_uring and
 * completes it into the used ring when the CQE arrives on the I/O thread.
 * Reads or writes that continue one another in one kick go out as a single
 * readv/writev, as the guest splits a large transfer at seg_max segments.
 * Malformed chains break the queue (NEEDS_RESET); bad requests get
 * IOERR/UNSUPP. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/epoll.h>
#include "vmm/mem.h"
#include "vmm/device.h"
#include "vmm/virtio_blk.h"
#include "vmm/vmstate.h"

struct virtio_blk_req {
	struct virtio_blk_req *next_free;
	struct virtq_elem e;
	uint8_t *status;
	uint32_t type;
	uint16_t q;                /* the virtqueue it came from */
	uint32_t in_len;           /* bytes reported as written to the guest */
	uint64_t off;              /* file offset of what is left */
	struct iovec *data;        /* data segments still to do */
	int nr_data;
	uint64_t left;             /* bytes still to transfer */
	struct virtio_blk_req *merged;  /* requests whose data rides on this one's I/O */
	struct iovec *miov;        /* the joined segments once merged (IOV_MAX) */
	struct iovec iov[VIRTIO_BLK_QUEUE_SIZE];
};

/* A merged transfer stays well below the 2 GiB a CQE can report. */
#define BLK_MERGE_MAX (32ULL << 20)

static int blk_post_load(void *opaque, uint32_t version)
{
	return 0;   /* capacity is checked against the image in apply_state */
}

const struct vmstate_desc virtio_blk_vmstate = {
	.name = "virtio-blk", .version_id = 1, .minimum_version_id = 1,
	.size = sizeof(struct virtio_blk_state), .post_load = blk_post_load,
	.fields = (const struct vmstate_field[]){
		VMSTATE_STRUCT(struct virtio_blk_state, vio, &virtio_vmstate),
		VMSTATE_U64(struct virtio_blk_state, capacity),
		VMSTATE_END,
	},
};

/* --- config space --- */

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void blk_config_read(struct virtio_dev *vd, uint32_t off, uint8_t *data, uint32_t len)
{
	struct virtio_blk *blk = vd->priv;
	uint8_t c[VIRTIO_BLK_CONFIG_LEN] = { 0 };

	put_le(c + 0, blk->capacity, 8);
	put_le(c + 12, VIRTIO_BLK_SEG_MAX, 4);
	put_le(c + 20, VIRTIO_BLK_SECTOR, 4);
	put_le(c + 34, (uint64_t)vd->st->num_queues, 2);    /* num_queues */
	put_le(c + 36, VIRTIO_BLK_MAX_DISCARD_SECTORS, 4);    /* max_discard_sectors */
	put_le(c + 40, 1, 4);                                 /* max_discard_seg */
	put_le(c + 44, 1, 4);                                 /* discard_sector_alignment */
	put_le(c + 48, VIRTIO_BLK_MAX_DISCARD_SECTORS, 4);    /* max_write_zeroes_sectors */
	put_le(c + 52, 1, 4);                                 /* max_write_zeroes_seg */
	c[56] = 1;                                            /* write_zeroes_may_unmap */
	memcpy(data, c + off, len);
}

/* --- requests --- */

static struct virtio_blk_req *blk_req_get(struct virtio_blk *blk)
{
	struct virtio_blk_req *r = blk->free_list;

	if (r)
		blk->free_list = r->next_free;
	return r;
}

static void blk_req_put(struct virtio_blk *blk, struct virtio_blk_req *r)
{
	r->next_free = blk->free_list;
	blk->free_list = r;
}

/* Writes the status byte, returns the chain and frees the request, and
 * the same for the requests merged into it; the queue's interrupt waits
 * for blk_notify(). */
static void blk_complete(struct virtio_blk *blk, struct virtio_blk_req *r, uint8_t status)
{
	while (r) {
		struct virtio_blk_req *next = r->merged;

		*r->status = status;
		mem_mark_dirty(blk->vd.mem, r->status, 1);
		if (status != VIRTIO_BLK_S_OK)
			blk->nr_errors++;
		virtq_push(&blk->vd.vqs[r->q], r->e.head, r->in_len + 1);
		blk->pushed |= 1u << r->q;
		free(r->miov);
		r->miov = NULL;
		r->merged = NULL;
		blk_req_put(blk, r);
		r = next;
	}
}

/* Interrupts the queues blk_complete() pushed to. */
static void blk_notify(struct virtio_blk *blk)
{
	for (int q = 0; blk->pushed; q++) {
		if (blk->pushed & 1u << q)
			virtio_notify_queue(&blk->vd, q);
		blk->pushed &= ~(1u << q);
	}
}

/* Drops N bytes from the front of the data segments. */
static void blk_iov_advance(struct virtio_blk_req *r, uint64_t n)
{
	while (n && r->nr_data) {
		if (n < r->data[0].iov_len) {
			r->data[0].iov_base = (uint8_t *)r->data[0].iov_base + n;
			r->data[0].iov_len -= n;
			return;
		}
		n -= r->data[0].iov_len;
		r->data++;
		r->nr_data--;
	}
}

static struct io_uring_sqe *blk_sqe(struct virtio_blk *blk)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&blk->ring);

	if (!sqe) {
		io_uring_submit(&blk->ring);
		sqe = io_uring_get_sqe(&blk->ring);
	}
	return sqe;
}

/* Queues the next step of R; false if no SQE could be had. */
static bool blk_submit(struct virtio_blk *blk, struct virtio_blk_req *r, const uint64_t *seg)
{
	struct io_uring_sqe *sqe = blk_sqe(blk);

	if (!sqe)
		return false;
	switch (r->type) {
	case VIRTIO_BLK_T_IN:
		io_uring_prep_readv(sqe, blk->fd, r->data, (unsigned)r->nr_data, r->off);
		break;
	case VIRTIO_BLK_T_OUT:
		io_uring_prep_writev(sqe, blk->fd, r->data, (unsigned)r->nr_data, r->off);
		break;
	case VIRTIO_BLK_T_FLUSH:
		io_uring_prep_fsync(sqe, blk->fd, IORING_FSYNC_DATASYNC);
		break;
	case VIRTIO_BLK_T_DISCARD:
		io_uring_prep_fallocate(sqe, blk->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					r->off, r->left);
		break;
	case VIRTIO_BLK_T_WRITE_ZEROES:
		io_uring_prep_fallocate(sqe, blk->fd, (seg && (seg[1] >> 32) & 1) ?
					FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE :
					FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
					r->off, r->left);
		break;
	}
	io_uring_sqe_set_data(sqe, r);
	blk->inflight++;
	return true;
}

/* Joins R's data onto LEAD's transfer if R continues it: same direction,
 * the next byte of the disk, and room in one iovec array. */
static bool blk_merge(struct virtio_blk *blk, struct virtio_blk_req *lead, struct virtio_blk_req *r)
{
	int n = lead->nr_data + r->nr_data;

	if (r->type != lead->type || r->off != lead->off + lead->left || n > IOV_MAX ||
	    lead->left + r->left > BLK_MERGE_MAX)
		return false;
	if (!lead->miov) {
		lead->miov = malloc(IOV_MAX * sizeof(*lead->miov));
		if (!lead->miov)
			return false;
		memcpy(lead->miov, lead->data, (size_t)lead->nr_data * sizeof(*lead->data));
		lead->data = lead->miov;
	}
	memcpy(lead->data + lead->nr_data, r->data, (size_t)r->nr_data * sizeof(*r->data));
	lead->nr_data = n;
	lead->left += r->left;
	r->merged = lead->merged;
	lead->merged = r;
	blk->nr_merged++;
	return true;
}

/* Submits R, or fails it if no SQE could be had. */
static void blk_start(struct virtio_blk *blk, struct virtio_blk_req *r, const uint64_t *seg,
		      bool *submitted)
{
	if (blk_submit(blk, r, seg))
		*submitted = true;
	else
		blk_complete(blk, r, VIRTIO_BLK_S_IOERR);
}

/* Checks [sector, sector + bytes/512) against the disk. */
static bool blk_range_ok(struct virtio_blk *blk, uint64_t sector, uint64_t bytes)
{
	uint64_t n = bytes / VIRTIO_BLK_SECTOR;

	return sector <= blk->capacity && n <= blk->capacity - sector;
}

/* Parses one popped chain; returns a status to complete with now, or -1 if
 * the request went to io_uring, or -2 if the chain is unusable. */
static int blk_parse(struct virtio_blk *blk, struct virtio_blk_req *r, uint64_t *seg)
{
	struct virtq_elem *e = &r->e;
	struct { uint32_t type, reserved; uint64_t sector; } hdr;
	struct iovec *last;

	if (e->nr_in == 0 || e->out_len < sizeof(hdr))
		return -2;          /* no status byte or no header: not a request */
	if (virtq_elem_read(e, 0, &hdr, sizeof(hdr)) != sizeof(hdr))
		return -2;
	last = &e->iov[e->nr_out + e->nr_in - 1];
	r->status = (uint8_t *)last->iov_base + last->iov_len - 1;
	r->type = hdr.type;
	r->in_len = 0;
	switch (hdr.type) {
	case VIRTIO_BLK_T_IN:
		r->data = &e->iov[e->nr_out];
		r->nr_data = e->nr_in;
		if (--last->iov_len == 0)
			r->nr_data--;
		r->left = e->in_len - 1;
		break;
	case VIRTIO_BLK_T_OUT:
		if (blk->readonly)
			return VIRTIO_BLK_S_IOERR;
		r->data = e->iov;
		r->nr_data = e->nr_out;
		r->left = e->out_len - sizeof(hdr);
		blk_iov_advance(r, sizeof(hdr));
		break;
	case VIRTIO_BLK_T_FLUSH:
		return blk->readonly ? VIRTIO_BLK_S_OK : -1;
	case VIRTIO_BLK_T_GET_ID: {
		size_t n = e->in_len - 1 < VIRTIO_BLK_ID_BYTES ? e->in_len - 1 : VIRTIO_BLK_ID_BYTES;

		r->in_len = (uint32_t)virtq_elem_write(e, 0, blk->serial, n);
		virtq_written(&blk->vd.vqs[r->q], e->iov + e->nr_out, e->nr_in, r->in_len);
		return VIRTIO_BLK_S_OK;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (blk->readonly)
			return VIRTIO_BLK_S_IOERR;
		/* exactly one segment {le64 sector, le32 num_sectors, le32 flags} */
		if (e->out_len != sizeof(hdr) + 16 ||
		    virtq_elem_read(e, sizeof(hdr), seg, 16) != 16)
			return VIRTIO_BLK_S_UNSUPP;
		if ((uint32_t)seg[1] > VIRTIO_BLK_MAX_DISCARD_SECTORS ||
		    (seg[1] >> 32) & ~(hdr.type == VIRTIO_BLK_T_WRITE_ZEROES ? 1ULL : 0ULL))
			return VIRTIO_BLK_S_UNSUPP;
		if (!blk_range_ok(blk, seg[0], (uint64_t)(uint32_t)seg[1] * VIRTIO_BLK_SECTOR))
			return VIRTIO_BLK_S_IOERR;
		r->off = seg[0] * VIRTIO_BLK_SECTOR;
		r->left = (uint64_t)(uint32_t)seg[1] * VIRTIO_BLK_SECTOR;
		return r->left ? -1 : VIRTIO_BLK_S_OK;
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
	/* IN / OUT */
	if (r->left % VIRTIO_BLK_SECTOR || !blk_range_ok(blk, hdr.sector, r->left))
		return VIRTIO_BLK_S_IOERR;
	if (r->left > 0xffffffffULL - 1)
		return VIRTIO_BLK_S_IOERR;
	r->off = hdr.sector * VIRTIO_BLK_SECTOR;
	if (hdr.type == VIRTIO_BLK_T_IN)
		r->in_len = (uint32_t)r->left;
	return r->left ? -1 : VIRTIO_BLK_S_OK;
}

/* Takes queue Q's new requests to io_uring (or answers them) while there are
 * free request slots; with none left, marks the device starved and leaves
 * the queue's notifications off until blk_rescan(). */
static void blk_pop_queue(struct virtio_blk *blk, int q)
{
	struct virtio_dev *vd = &blk->vd;
	struct virtq *vq = &vd->vqs[q];
	bool submitted = false, bad = false;

	do {
		struct virtio_blk_req *lead = NULL;   /* a read or write still open to merging */

		virtq_disable_notify(vq);
		for (;;) {
			struct virtio_blk_req *r = blk_req_get(blk);
			uint64_t seg[2] = { 0, 0 };
			int ret;

			if (!r) {
				blk->starved = true;
				break;
			}
			r->e.iov = r->iov;
			r->e.iov_cap = VIRTIO_BLK_QUEUE_SIZE;
			r->q = (uint16_t)q;
			ret = virtq_pop(vq, &r->e);
			if (ret != 1) {
				blk_req_put(blk, r);
				break;
			}
			blk->nr_reqs++;
			ret = blk_parse(blk, r, seg);
			if (ret == -2) {
				blk_req_put(blk, r);
				virtio_set_needs_reset(vd, "virtio-blk request without header or status");
				bad = true; /* what was queued before still goes out */
				break;
			}
			if (ret >= 0) {
				blk_complete(blk, r, (uint8_t)ret);
				continue;
			}
			if (lead && blk_merge(blk, lead, r))
				continue;
			if (lead)
				blk_start(blk, lead, NULL, &submitted);
			lead = NULL;
			if (r->type == VIRTIO_BLK_T_IN || r->type == VIRTIO_BLK_T_OUT)
				lead = r;
			else
				blk_start(blk, r, seg, &submitted);
		}
		if (lead)
			blk_start(blk, lead, NULL, &submitted);
	} while (!bad && !vq->broken && blk->free_list && virtq_enable_notify(vq));
	if (vq->broken)
		virtio_set_needs_reset(vd, "malformed virtqueue");
	if (submitted)
		io_uring_submit(&blk->ring);
}

static void blk_reap(struct virtio_blk *blk);

/* Once requests are free again, looks at every queue left alone for want of
 * them; what the kernel has finished meanwhile frees more. */
static void blk_rescan(struct virtio_blk *blk)
{
	while (blk->starved && blk->free_list) {
		blk->starved = false;
		for (int q = 0; q < blk->vd.st->num_queues; q++)
			if (virtio_queue_live(&blk->vd, q))
				blk_pop_queue(blk, q);
		blk_reap(blk);
	}
}

static void blk_queue_notify(struct virtio_dev *vd, int q)
{
	struct virtio_blk *blk = vd->priv;

	blk_pop_queue(blk, q);
	/* Reads from the page cache, and I/O the kernel finished while we were
	 * in the submit call, are done already: answer now rather than after
	 * another trip through epoll. */
	blk_reap(blk);
	blk_rescan(blk);
	blk_notify(blk);
}

/* Handles one CQE. */
static void blk_cqe(struct virtio_blk *blk, struct io_uring_cqe *cqe)
{
	struct virtio_blk_req *r = io_uring_cqe_get_data(cqe);
	int res = cqe->res;

	blk->inflight--;
	if (r->type == VIRTIO_BLK_T_IN && res > 0)   /* before the segments advance */
		virtq_written(&blk->vd.vqs[r->q], r->data, (unsigned)r->nr_data, (size_t)res);
	if ((r->type == VIRTIO_BLK_T_IN || r->type == VIRTIO_BLK_T_OUT) && res > 0 &&
	    (uint64_t)res < r->left) {
		/* short transfer: continue where it stopped */
		r->left -= (uint64_t)res;
		r->off += (uint64_t)res;
		blk_iov_advance(r, (uint64_t)res);
		if (blk_submit(blk, r, NULL)) {
			io_uring_submit(&blk->ring);
			return;
		}
		res = -EIO;
	}
	if (r->type == VIRTIO_BLK_T_DISCARD && res < 0)
		res = 0;   /* discard is a hint */
	if (r->type == VIRTIO_BLK_T_IN && res == 0 && r->left)
		res = -EIO;
	blk_complete(blk, r, res < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
}

static void blk_reap(struct virtio_blk *blk)
{
	struct io_uring_cqe *cqe;

	while (io_uring_peek_cqe(&blk->ring, &cqe) == 0) {
		blk_cqe(blk, cqe);
		io_uring_cqe_seen(&blk->ring, cqe);
	}
}

static void blk_fd_event(struct virtio_dev *vd, int i, uint32_t events)
{
	struct virtio_blk *blk = vd->priv;

	blk_reap(blk);
	blk_rescan(blk);
	blk_notify(blk);
}

static void blk_drain(struct virtio_dev *vd)
{
	struct virtio_blk *blk = vd->priv;

	/* Anything queued but not yet submitted goes out first: waiting on a
	 * CQE for an unsubmitted SQE would never return. */
	if (blk->inflight && io_uring_submit(&blk->ring) < 0)
		vmm_warn("virtio-blk %s: cannot submit queued I/O", blk->path);
	while (blk->inflight) {
		struct io_uring_cqe *cqe;
		int err = io_uring_wait_cqe(&blk->ring, &cqe);

		if (err == -EINTR || err == -EAGAIN)
			continue;   /* a signal: the I/O is still in flight */
		if (err) {
			vmm_err("virtio-blk %s: waiting for I/O failed: %s", blk->path, strerror(-err));
			break;
		}
		blk_cqe(blk, cqe);
		io_uring_cqe_seen(&blk->ring, cqe);
	}
	for (int q = 0; q < vd->st->num_queues; q++)
		if (!vd->vqs[q].ready)
			blk->pushed &= ~(1u << q);
	blk_notify(blk);
}

static const struct virtio_dev_ops blk_vops = {
	.name = "virtio-blk",
	.config_read = blk_config_read,
	.queue_notify = blk_queue_notify,
	.fd_event = blk_fd_event,
	.drain = blk_drain,
};

/* --- setup --- */

int virtio_blk_lock(struct virtio_blk *blk)
{
	if (blk->locked)
		return 0;
	if (flock(blk->fd, (blk->readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		int err = -errno;

		if (errno == EWOULDBLOCK)
			vmm_err("disk %s is locked by another process (is another vmm using it?)",
				blk->path);
		else
			vmm_err("cannot lock disk %s: %s", blk->path, strerror(errno));
		return err;
	}
	blk->locked = true;
	return 0;
}

void virtio_blk_unlock(struct virtio_blk *blk)
{
	if (blk->locked && flock(blk->fd, LOCK_UN) == 0)
		blk->locked = false;
}

static int blk_open(struct virtio_blk *blk, const struct virtio_blk_config *cfg)
{
	struct stat sb;
	uint64_t bytes;
	int flags = (cfg->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (cfg->direct ? O_DIRECT : 0);

	blk->fd = open(cfg->path, flags);
	if (blk->fd < 0) {
		int err = -errno;

		vmm_err("cannot open disk %s: %s", cfg->path, strerror(errno));
		return err;
	}
	if (fstat(blk->fd, &sb) < 0)
		return -errno;
	if (S_ISBLK(sb.st_mode)) {
		if (ioctl(blk->fd, BLKGETSIZE64, &bytes) < 0)
			return -errno;
	} else if (S_ISREG(sb.st_mode)) {
		bytes = (uint64_t)sb.st_size;
	} else {
		vmm_err("disk %s is neither a file nor a block device", cfg->path);
		return -EINVAL;
	}
	blk->capacity = bytes / VIRTIO_BLK_SECTOR;
	if (!blk->capacity)
		vmm_warn("disk %s is smaller than one sector", cfg->path);
	return cfg->lock ? virtio_blk_lock(blk) : 0;
}

int virtio_blk_create(struct virtio_blk **out, struct vm *vm, const struct guest_mem *mem,
		      int vm_fd, struct irq_router *router, const struct virtio_blk_config *cfg)
{
	struct virtio_blk *blk = calloc(1, sizeof(*blk));
	uint64_t feat = 1ULL << VIRTIO_BLK_F_SEG_MAX | 1ULL << VIRTIO_BLK_F_BLK_SIZE |
			1ULL << VIRTIO_BLK_F_FLUSH | 1ULL << VIRTIO_BLK_F_MQ;
	int nq = cfg->num_queues < 1 ? 1 :
		 cfg->num_queues > VIRTIO_MAX_QUEUES ? VIRTIO_MAX_QUEUES : cfg->num_queues;
	int err;

	if (!blk)
		return -ENOMEM;
	blk->fd = -1;
	blk->readonly = cfg->readonly;
	snprintf(blk->path, sizeof(blk->path), "%s", cfg->path);
	if (cfg->serial)
		memcpy(blk->serial, cfg->serial, strnlen(cfg->serial, sizeof(blk->serial)));
	err = blk_open(blk, cfg);
	if (err)
		goto fail;
	feat |= cfg->readonly ? 1ULL << VIRTIO_BLK_F_RO :
		1ULL << VIRTIO_BLK_F_DISCARD | 1ULL << VIRTIO_BLK_F_WRITE_ZEROES;
	blk->reqs = calloc(VIRTIO_BLK_QUEUE_SIZE, sizeof(*blk->reqs));
	err = -ENOMEM;
	if (!blk->reqs)
		goto fail;
	for (int i = VIRTIO_BLK_QUEUE_SIZE - 1; i >= 0; i--)
		blk_req_put(blk, &blk->reqs[i]);
	err = io_uring_queue_init(VIRTIO_BLK_QUEUE_SIZE, &blk->ring, 0);
	if (err) {
		vmm_err("cannot set up io_uring for %s: %s", cfg->path, strerror(-err));
		goto fail;
	}
	blk->ring_ok = true;
	err = virtio_init(&blk->vd, vm, mem, vm_fd, router, &blk_vops, blk, &blk->st.vio,
			  VIRTIO_BLK_ID, 0x018000, nq, VIRTIO_BLK_QUEUE_SIZE, feat,
			  VIRTIO_BLK_CONFIG_LEN);
	if (!err)
		/* the ring's own fd is readable while it holds completions */
		err = virtio_add_fd(&blk->vd, blk->ring.ring_fd, EPOLLIN) < 0 ? -ENOSPC : 0;
	if (err) {
		vmm_err("cannot set up virtio-blk for %s: %s", cfg->path, strerror(-err));
		goto fail;
	}
	blk->st.capacity = blk->capacity;
	*out = blk;
	return 0;
fail:
	if (blk->ring_ok)
		io_uring_queue_exit(&blk->ring);
	if (blk->fd >= 0)
		close(blk->fd);
	free(blk->reqs);
	free(blk);
	return err;
}

void virtio_blk_destroy(struct virtio_blk *blk)
{
	if (!blk)
		return;
	virtio_stop(&blk->vd);
	pthread_mutex_lock(&blk->vd.lock);
	blk_drain(&blk->vd);
	pthread_mutex_unlock(&blk->vd.lock);
	io_uring_queue_exit(&blk->ring);
	close(blk->fd);
	free(blk->reqs);
	free(blk);
}

/* --- registry glue --- */

static void *blk_state(void *opaque)
{
	return &((struct virtio_blk *)opaque)->st;
}

static int blk_apply(void *opaque)
{
	struct virtio_blk *blk = opaque;

	if (blk->st.capacity != blk->capacity) {
		vmm_err("virtio-blk %s: migrated disk has %llu sectors, this one %llu", blk->path,
			(unsigned long long)blk->st.capacity, (unsigned long long)blk->capacity);
		return -EINVAL;
	}
	return virtio_apply_state(&blk->vd);
}

static void blk_pause(void *opaque)
{
	virtio_pause(&((struct virtio_blk *)opaque)->vd);
}

static void blk_resume(void *opaque)
{
	virtio_resume(&((struct virtio_blk *)opaque)->vd);
}

const struct device_ops virtio_blk_device_ops = {
	.name = "virtio-blk",
	.vmsd = &virtio_blk_vmstate,
	.state = blk_state,
	.apply_state = blk_apply,
	.pause = blk_pause,
	.resume = blk_resume,
};
