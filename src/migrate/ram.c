/* RAM passes for migration: dirty tracking on the source (KVM dirty log plus
 * device writes) and page batches in both directions. A page's dirty bit is
 * cleared in KVM before its contents are copied, so a write that races the
 * copy is caught by the next pass. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <linux/kvm.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include "vmm/ram.h"
#include "vmm/vm.h"
#include "le.h"

#define RAM_BATCH STREAM_PAGES_PER_BATCH
/* An inplace frame's pages are summed, then copied by the socket: 512 KiB
 * of them stay in a core's L2 in between. 1 GiB of random pages over
 * loopback TCP, one stream, against the plain limit: 0.72 at 1024 pages a
 * frame, 0.81 at 128 (medians of 5 and 7 runs), 0.79 at 64, 0.64 at 32. */
#define RAM_BATCH_INPLACE 128u

/* KVM_CLEAR_DIRTY_LOG runs ahead of the frames, over up to this many pages
 * at a time (one stream; with several, over a stream's 2 MiB chunk): a
 * call that re-protects pages ends in a flush of the guest's TLBs, which
 * kicks every running vCPU. Per frame (128 pages) that was 2048 kicks per
 * GiB. A page the guest writes between the clear and its frame (as long as
 * 8 MiB takes to send) goes now and again in the next pass. In the nested
 * sandbox an idle guest's first pass made 64 clears in 15 ms of the
 * thread's CPU instead of 1024 in 66 ms; the pass took as long. */
#define RAM_CLEAR_PAGES 2048u

static int ram_set_logging(struct vm *vm, bool on)
{
	for (int i = 0; i < vm->mem.nr_regions; i++) {
		const struct mem_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region kr = {
			.slot = (uint32_t)i, .guest_phys_addr = r->gpa, .memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)r->host,
			.flags = on ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		};

		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0)
			return -errno;
	}
	return 0;
}

static void ram_enable_manual_protect(struct ram_tracker *t)
{
	int caps = ioctl(t->vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 };

	if (caps <= 0)
		return;
	cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
	if (caps & KVM_DIRTY_LOG_INITIALLY_SET)
		cap.args[0] |= KVM_DIRTY_LOG_INITIALLY_SET;
	t->manual_protect = ioctl(t->vm->vm_fd, KVM_ENABLE_CAP, &cap) == 0;
}

int ram_send_init(struct ram_tracker *t, struct guest_mem *mem)
{
	size_t words;

	memset(t, 0, sizeof(*t));
	t->mem = mem;
	t->npages = mem->size / PAGE_SIZE;
	words = (t->npages + 63) / 64;
	t->dirty = calloc(words, 8);
	t->scratch = calloc(words, 8);
	t->user = mem->dirty;
	t->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	for (int i = 0; i < RAM_MAX_STREAMS; i++)
		stream_buf_init(&t->lanes[i].buf);
	if (!t->dirty || !t->scratch || !t->user) {
		ram_track_stop(t);
		return -ENOMEM;
	}
	memset(t->dirty, 0xFF, words * 8);
	if (t->npages % 64)
		t->dirty[words - 1] = (1ULL << (t->npages % 64)) - 1;
	return 0;
}

int ram_track_start(struct ram_tracker *t, struct vm *vm)
{
	int err = ram_send_init(t, &vm->mem);

	if (err)
		return err;
	t->vm = vm;
	ram_enable_manual_protect(t);
	err = ram_set_logging(vm, true);
	if (err) {
		ram_track_stop(t);
		return err;
	}
	memset(t->user, 0, (t->npages + 63) / 64 * 8);
	atomic_store(&vm->mem.dirty_on, true);
	t->sync_ns = vm_now_ns();
	return 0;
}

void ram_track_stop(struct ram_tracker *t)
{
	if (t->vm) {
		atomic_store(&t->vm->mem.dirty_on, false);
		if (ram_set_logging(t->vm, false))
			vmm_warn("cannot turn dirty logging off");
	}
	free(t->dirty);
	free(t->scratch);
	if (t->pagemap_fd >= 0)
		close(t->pagemap_fd);
	t->pagemap_fd = -1;
	for (int i = 0; i < RAM_MAX_STREAMS; i++) {
		stream_buf_free(&t->lanes[i].buf);
		free(t->lanes[i].iov);
		t->lanes[i].iov = NULL;
	}
	t->dirty = t->scratch = t->user = NULL;
	t->vm = NULL;
	t->mem = NULL;
}

static uint64_t bits_set(const uint64_t *map, uint64_t nbits)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < (nbits + 63) / 64; w++)
		n += (uint64_t)__builtin_popcountll(map[w]);
	return n;
}

uint64_t ram_pending(const struct ram_tracker *t)
{
	return bits_set(t->dirty, t->npages);
}

int64_t ram_sync(struct ram_tracker *t)
{
	struct guest_mem *mem = &t->vm->mem;
	uint64_t now = vm_now_ns(), open_ns = now - t->sync_ns, pending;
	uint64_t late_ns = atomic_exchange(&t->late_us, 0) / t->npages * 1000;

	for (int i = 0; i < mem->nr_regions; i++) {
		const struct mem_region *r = &mem->regions[i];
		uint64_t first = r->offset / PAGE_SIZE, n = r->size / PAGE_SIZE;
		struct kvm_dirty_log log = { .slot = (uint32_t)i, .dirty_bitmap = t->scratch };

		memset(t->scratch, 0, (n + 63) / 64 * 8);
		if (ioctl(t->vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
			return -errno;
		/* Region offsets are 2 MiB-aligned, so words line up. */
		for (uint64_t w = 0; w < (n + 63) / 64; w++)
			t->dirty[first / 64 + w] |= t->scratch[w];
	}
	for (uint64_t w = 0; w < (t->npages + 63) / 64; w++)
		t->dirty[w] |= atomic_exchange_explicit((_Atomic uint64_t *)&t->user[w], 0,
							memory_order_acquire);
	pending = ram_pending(t);
	open_ns = open_ns > late_ns ? open_ns - late_ns : 1;
	t->dirty_rate = pending * 1000000000ULL / open_ns;
	t->sync_ns = now;
	return (int64_t)pending;
}

/* True if RAM page PAGE holds data: present or swapped out, by
 * /proc/self/pagemap (bit 63 present, 62 swapped). A page never touched
 * reads as zeros and is sent as such without being read. The lane reads the
 * entries from PAGE up to the end of the batch (at most a chunk's), after
 * the batch's dirty bits were cleared: an entry read before that could miss
 * a write whose dirty bit the clear then dropped. Without pagemap every page
 * counts as data and the zero test decides. */
static bool ram_page_present(struct ram_lane *l, uint64_t page)
{
	const struct ram_tracker *t = l->t;

	if (t->pagemap_fd < 0)
		return true;
	if (page < l->pm_first || page >= l->pm_first + l->pm_n) {
		uint64_t va = (uint64_t)(uintptr_t)t->mem->base + page * PAGE_SIZE;
		uint64_t n = l->pm_end - page < RAM_CHUNK_PAGES ? l->pm_end - page : RAM_CHUNK_PAGES;

		l->pm_first = page;
		l->pm_n = pread(t->pagemap_fd, l->pm, n * 8, (off_t)(va / PAGE_SIZE * 8)) ==
			  (ssize_t)(n * 8) ? n : 0;
		if (!l->pm_n)
			return true;
	}
	return l->pm[page - l->pm_first] >> 62 != 0;
}

/* Adds the dirty pages of words [w0, w1) to the lane's PAGES frame. */
static int ram_encode(struct ram_lane *l, uint64_t w0, uint64_t w1)
{
	struct ram_tracker *t = l->t;
	struct guest_mem *mem = t->mem;
	int err = 0;

	l->pm_n = 0;
	l->pm_end = w1 * 64;
	if (!l->open) {
		stream_buf_reset(&l->buf);
		err = t->inplace ? stream_pages_begin_inplace(&l->buf, &l->pb)
				 : stream_pages_begin(&l->buf, &l->pb);
		l->open = !err;
		l->niov = 1;
	}
	for (uint64_t w = w0; !err && w < w1; w++) {
		uint64_t bits = t->dirty[w];

		t->dirty[w] = 0;
		while (bits && !err) {
			uint64_t page = w * 64 + (uint64_t)__builtin_ctzll(bits);
			uint64_t gpa = mem_page_gpa(mem, page);
			uint8_t *data = ram_page_present(l, page) ? mem->base + page * PAGE_SIZE
								  : NULL;

			bits &= bits - 1;
			if (!t->inplace) {
				err = stream_pages_add(&l->buf, &l->pb, gpa, data);
				continue;
			}
			err = stream_pages_add_index(&l->buf, &l->pb, gpa, data);
			if (err == 1)
				l->iov[l->niov++] = (struct iovec){ data, PAGE_SIZE };
			err = err < 0 ? err : 0;
		}
	}
	return err;
}

/* Re-protects the dirty pages of words [w0, w1) of slot SLOT before they are
 * copied (manual-protect mode only). */
static int ram_clear(struct ram_tracker *t, int slot, uint64_t w0, uint64_t w1)
{
	const struct mem_region *r = &t->mem->regions[slot];
	uint64_t first = w0 * 64 - r->offset / PAGE_SIZE, n = r->size / PAGE_SIZE;
	struct kvm_clear_dirty_log c = {
		.slot = (uint32_t)slot, .first_page = first,
		.num_pages = (uint32_t)((w1 - w0) * 64 < n - first ? (w1 - w0) * 64 : n - first),
		.dirty_bitmap = &t->dirty[w0],
	};

	if (!t->manual_protect)	/* also without KVM (ram_send_init) */
		return 0;
	if (ioctl(t->vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &c) < 0)
		return -errno;
	atomic_fetch_add(&t->late_us, bits_set(&t->dirty[w0], (w1 - w0) * 64) *
				      ((vm_now_ns() - t->sync_ns) / 1000));
	return 0;
}

/* Sleeps as needed so the lane stays under RATE, its share of max_bandwidth. */
static void ram_throttle(struct ram_lane *l, uint64_t rate)
{
	uint64_t due, now = vm_now_ns();

	if (!rate)
		return;
	due = l->start_ns + l->sent * 1000000000ULL / rate;
	if (due > now) {
		struct timespec ts = { (time_t)((due - now) / 1000000000ULL),
				       (long)((due - now) % 1000000000ULL) };

		nanosleep(&ts, NULL);
	}
}

/* Ends the lane's PAGES frame and sends it. Under max_bandwidth it goes in
 * slices of about a millisecond's worth, each followed by its sleep, so the
 * link carries a steady stream instead of a 4 MiB burst and then silence. */
static int ram_send_batch(struct ram_lane *l)
{
	struct ram_tracker *t = l->t;
	struct ram_stats *st = l->idx ? &l->stats : &t->stats;
	uint64_t rate = t->max_bandwidth / (uint64_t)l->n, pages = l->pb.count, bytes;
	struct iovec *iov = l->iov, rest;
	size_t slice = SIZE_MAX;
	int err;

	if (!l->open)
		return 0;
	l->open = false;
	err = stream_pages_end(&l->buf, &l->pb);
	if (err)
		return err;
	iov[0] = (struct iovec){ l->buf.data, l->buf.len };
	bytes = l->buf.len + (t->inplace ? (uint64_t)l->pb.normal * PAGE_SIZE : 0);
	if (rate) {
		slice = rate / 1000;
		slice = slice < (16 << 10) ? (16 << 10) : slice > (4 << 20) ? (4 << 20) : slice;
	}
	for (int i = 0, j; i < l->niov; i = j) {
		size_t n = 0;

		for (j = i; j < l->niov && n < slice; j++)
			n += iov[j].iov_len;
		rest.iov_len = n > slice ? n - slice : 0;	/* split the last entry */
		rest.iov_base = (uint8_t *)iov[j - 1].iov_base + iov[j - 1].iov_len - rest.iov_len;
		iov[j - 1].iov_len -= rest.iov_len;
		err = chan_sendv(l->c, iov + i, j - i);
		if (err)
			return err;
		if (rest.iov_len)
			iov[--j] = rest;
		n -= rest.iov_len;
		l->sent += n;
		if (l->idx)
			atomic_fetch_add(&t->xsent, n);
		ram_throttle(l, rate);
	}
	st->duplicate += l->pb.zero;
	st->normal += l->pb.normal;
	st->bytes += bytes;
	pages += atomic_fetch_add(&t->done, pages);
	if (!l->idx && t->progress)
		t->progress(t->progress_opaque, t->pass_pages - pages);
	return 0;
}

/* Sends the lane's share of the dirty pages: every chunk C with
 * C % n == idx (all of RAM when n is 1), in frames of about RAM_BATCH pages
 * (RAM_BATCH_INPLACE in place). */
static int ram_lane_pass(struct ram_lane *l)
{
	struct ram_tracker *t = l->t;
	struct guest_mem *mem = t->mem;
	const uint64_t span = RAM_CHUNK_PAGES / 64;	/* words per chunk */
	const uint64_t batch = t->inplace ? RAM_BATCH_INPLACE : RAM_BATCH;

	for (int s = 0; s < mem->nr_regions; s++) {
		uint64_t w = mem->regions[s].offset / PAGE_SIZE / 64;
		uint64_t wend = w + mem->regions[s].size / PAGE_SIZE / 64;
		uint64_t cleared = w;	/* the dirty log is cleared before this word */

		while (w < wend) {
			uint64_t w0, end = wend, count = 0, have = l->open ? l->pb.count : 0;
			int err;

			if (l->n > 1) {		/* region offsets are chunk-aligned */
				if ((w / span) % (uint64_t)l->n != (uint64_t)l->idx) {
					w = (w / span + 1) * span;
					continue;
				}
				end = (w / span + 1) * span < wend ? (w / span + 1) * span : wend;
			}
			while (w < end && !t->dirty[w])
				w++;
			for (w0 = w; w < end && have + count < batch; w++)
				count += (uint64_t)__builtin_popcountll(t->dirty[w]);
			if (!count)
				continue;
			if ((t->cancel && *t->cancel) || atomic_load(&t->stop))
				return -ECANCELED;
			if (w > cleared) {
				uint64_t ahead = w0 + RAM_CLEAR_PAGES / 64 < end ?
						 w0 + RAM_CLEAR_PAGES / 64 : end;
				uint64_t from = w0 > cleared ? w0 : cleared;

				cleared = w > ahead ? w : ahead;
				err = ram_clear(t, s, from, cleared);
				if (err)
					return err;
			}
			err = ram_encode(l, w0, w);
			if (!err && l->pb.count >= batch)
				err = ram_send_batch(l);
			if (err)
				return err;
		}
	}
	return ram_send_batch(l);
}

/* Stops the other lanes of a failed pass: their connections are shut, so
 * a send blocked on a dead peer returns at once. */
static int ram_lane_fail(struct ram_lane *l, int err)
{
	struct ram_tracker *t = l->t;

	l->err = err;
	if (!atomic_exchange(&t->stop, true))
		for (int i = 0; i < l->n; i++)
			if (i != l->idx)
				chan_abort(t->lanes[i].c);
	return err;
}

static void *ram_lane_thread(void *arg)
{
	struct ram_lane *l = arg;
	int err = ram_lane_pass(l);

	if (err)
		ram_lane_fail(l, err);
	return NULL;
}

/* Waits for thread TH while keeping the first connection alive: its peer
 * times out after a quiet c->timeout_ms, and a lane with little to send
 * finishes long before the others. An empty PAGES frame every third of
 * that says the source is still there. */
static void ram_lane_join(struct ram_lane *first, pthread_t th)
{
	for (;;) {
		struct timespec ts;
		int ms = first->c->timeout_ms / 3;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += ms / 1000;
		ts.tv_nsec += (ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (pthread_timedjoin_np(th, NULL, &ts) != ETIMEDOUT)
			return;
		if (atomic_load(&first->t->stop))
			continue;
		stream_buf_reset(&first->buf);
		if (stream_pages_begin(&first->buf, &first->pb) ||
		    stream_pages_end(&first->buf, &first->pb) ||
		    chan_send(first->c, first->buf.data, first->buf.len))
			ram_lane_fail(first, -EPIPE);
	}
}

int ram_send_pass(struct ram_tracker *t, struct chan *const *c, int n)
{
	uint64_t start = vm_now_ns();
	int err = 0, started = 1;

	if (n < 1 || n > RAM_MAX_STREAMS)
		return -EINVAL;
	t->pass_pages = ram_pending(t);
	atomic_store(&t->done, 0);
	atomic_store(&t->stop, false);
	for (int i = 0; i < n; i++) {
		struct ram_lane *l = &t->lanes[i];

		l->t = t;
		l->c = c[i];
		l->idx = i;
		l->n = n;
		l->start_ns = start;
		l->sent = 0;
		l->err = 0;
		l->open = false;
		l->buf.sum = t->sum;
		if (!l->iov)
			l->iov = malloc((1 + STREAM_PAGES_MAX_INPLACE) * sizeof(*l->iov));
		if (!l->iov)
			return -ENOMEM;
		memset(&l->stats, 0, sizeof(l->stats));
	}
	for (; started < n; started++) {
		err = -pthread_create(&t->lanes[started].thread, NULL, ram_lane_thread,
				      &t->lanes[started]);
		if (err) {
			ram_lane_fail(&t->lanes[0], err);
			break;
		}
	}
	if (!err) {
		err = ram_lane_pass(&t->lanes[0]);
		if (err)
			ram_lane_fail(&t->lanes[0], err);
	}
	for (int i = 1; i < started; i++) {
		struct ram_lane *l = &t->lanes[i];

		ram_lane_join(&t->lanes[0], l->thread);
		t->stats.duplicate += l->stats.duplicate;
		t->stats.normal += l->stats.normal;
		t->stats.bytes += l->stats.bytes;
		if (!err || err == -ECANCELED)
			err = l->err ?: err;
	}
	return err ?: t->lanes[0].err;
}

int ram_recv_init_mem(struct ram_receiver *r, struct guest_mem *mem)
{
	r->mem = mem;
	r->pages = mem->size / PAGE_SIZE;
	r->written = calloc((r->pages + 63) / 64, 8);
	r->unverified = calloc((r->pages + 63) / 64, 8);
	r->torn = 0;
	r->idx = 0;
	r->n = 1;
	if (!r->written || !r->unverified) {
		ram_recv_destroy(r);
		return -ENOMEM;
	}
	return 0;
}

int ram_recv_init(struct ram_receiver *r, struct vm *vm)
{
	return ram_recv_init_mem(r, &vm->mem);
}

void ram_recv_destroy(struct ram_receiver *r)
{
	free(r->written);
	free(r->unverified);
	r->written = r->unverified = NULL;
}

void ram_recv_stream(struct ram_receiver *out, const struct ram_receiver *r, int idx, int n)
{
	*out = *r;
	out->torn = 0;
	out->idx = idx;
	out->n = n;
}

uint64_t ram_recv_unverified(const struct ram_receiver *r)
{
	return bits_set(r->unverified, r->pages);
}

/* A page in guest RAM, and one this stream owns. */
static int ram_check_gpa(void *opaque, uint64_t gpa, uint64_t len)
{
	struct ram_receiver *r = opaque;
	int64_t page = mem_gpa_page(r->mem, gpa);

	if (!mem_gpa_ptr(r->mem, gpa, len) || page < 0)
		return -EFAULT;
	return r->n > 1 && ram_stream_of((uint64_t)page, r->n) != r->idx ? -EBADMSG : 0;
}

/* Takes in page PG of a validated batch, whose data (if any) is already at
 * DST, or at pg->data to be copied there. */
static void ram_recv_page(struct ram_receiver *r, const struct stream_page *pg, uint8_t *dst)
{
	uint64_t idx = (uint64_t)mem_gpa_page(r->mem, pg->gpa), bit = 1ULL << (idx % 64);
	bool ok = true;

	if (pg->flags == STREAM_PAGE_NORMAL) {
		if (pg->data)
			memcpy(dst, pg->data, PAGE_SIZE);	/* checked with its frame */
		else
			ok = stream_sum32(dst, PAGE_SIZE) == pg->check;
		r->written[idx / 64] |= bit;
	} else if (r->written[idx / 64] & bit) {
		memset(dst, 0, PAGE_SIZE);   /* fresh RAM is zero: only rewrites */
		r->written[idx / 64] &= ~bit;
	}
	if (ok) {
		r->unverified[idx / 64] &= ~bit;
	} else {
		r->unverified[idx / 64] |= bit;
		r->torn++;
	}
}

int ram_recv_pages(struct ram_receiver *r, const void *payload, size_t len)
{
	struct stream_page_iter it;
	struct stream_page pg;
	int ret = stream_pages_iter_init(&it, payload, len, ram_check_gpa, r);

	if (ret)
		return ret;
	while ((ret = stream_pages_next(&it, &pg)) == 1)
		ram_recv_page(r, &pg, mem_gpa_ptr(r->mem, pg.gpa, PAGE_SIZE));
	return ret;
}

/* An inplace frame: the index into IN and checked, then every page's data
 * straight into guest RAM, then each page checked there. */
static int ram_recv_inplace(struct ram_receiver *r, struct chan *c, const struct stream_frame *f,
			    struct stream_buf *in)
{
	struct iovec iov[STREAM_PAGES_MAX_INPLACE];
	struct stream_page_iter it, pages;
	struct stream_page pg;
	int64_t len;
	int n = 0, ret;

	stream_buf_reset(in);
	ret = stream_buf_reserve(in, STREAM_PAGES_HDR_INPLACE) ?:
	      chan_recv(c, in->data, STREAM_PAGES_HDR_INPLACE);
	if (ret)
		return ret;
	len = stream_pages_index_size(f, le32_load(in->data), le32_load(in->data + 4));
	if (len < 0)
		return (int)len;
	ret = stream_buf_reserve(in, (size_t)len) ?:
	      chan_recv(c, in->data + STREAM_PAGES_HDR_INPLACE,
			(size_t)len - STREAM_PAGES_HDR_INPLACE) ?:
	      stream_pages_index_init(&it, f, in->data, (size_t)len, ram_check_gpa, r);
	if (ret)
		return ret;
	in->len = (size_t)len;
	pages = it;
	while ((ret = stream_pages_next(&it, &pg)) == 1)
		if (pg.flags == STREAM_PAGE_NORMAL)
			iov[n++] = (struct iovec){ mem_gpa_ptr(r->mem, pg.gpa, PAGE_SIZE), PAGE_SIZE };
	ret = ret ?: chan_recvv(c, iov, n);
	if (ret)
		return ret;
	while ((ret = stream_pages_next(&pages, &pg)) == 1)
		ram_recv_page(r, &pg, mem_gpa_ptr(r->mem, pg.gpa, PAGE_SIZE));
	return ret;
}

int ram_recv(struct ram_receiver *r, struct chan *c, const struct stream_frame *f,
	     struct stream_buf *in)
{
	if (f->flags & STREAM_PAGES_INPLACE)
		return ram_recv_inplace(r, c, f, in);
	return chan_recv_payload(c, f, in) ?: ram_recv_pages(r, in->data, in->len);
}
