/* Guest RAM for migration. Source: dirty tracking through KVM's dirty log
 * (KVM_CLEAR_DIRTY_LOG with manual protect where the host has it) plus the
 * pages devices wrote, and page passes that send what is dirty. Destination:
 * validated page batches written into guest RAM. Page indexes are RAM
 * page numbers (see mem_gpa_page). The page path itself needs only a
 * struct guest_mem (ram_send_init, ram_recv_init_mem), so it runs without KVM. */
#ifndef VMM_RAM_H
#define VMM_RAM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "vmm/chan.h"
#include "vmm/log.h"
#include "vmm/stream.h"

struct guest_mem;
struct vm;

struct ram_stats {
	uint64_t duplicate;       /* zero pages sent as a flag */
	uint64_t normal;          /* pages sent with data */
	uint64_t bytes;           /* stream bytes of page frames */
};

/* multifd-channels: a pass's pages go out over up to this many connections.
 * Each owns whole 2 MiB chunks of RAM (chunk c belongs to stream c % n), so a
 * page always travels the same way and TCP keeps its versions in order. */
#define RAM_MAX_STREAMS 16
#define RAM_CHUNK_PAGES 512

static inline int ram_stream_of(uint64_t page, int n)
{
	return (int)(page / RAM_CHUNK_PAGES % (uint64_t)n);
}

struct ram_tracker;

/* One stream of a pass: its connection, frame buffer and pagemap window. */
struct ram_lane {
	struct ram_tracker *t;
	struct chan *c;
	int idx, n;
	pthread_t thread;
	struct stream_buf buf;
	struct stream_page_batch pb;
	bool open;                /* a PAGES frame is being filled (pb) */
	/* the frame to send: buf, then (inplace) the pages' data in guest RAM */
	struct iovec *iov;
	int niov;
	uint64_t start_ns, sent;  /* this pass, for max_bandwidth */
	struct ram_stats stats;   /* this pass's */
	/* pagemap entries of pages [pm_first, +pm_n), read for the batch being
	 * encoded (it ends before page pm_end), to skip never-touched pages */
	uint64_t pm_first, pm_n, pm_end;
	uint64_t pm[RAM_CHUNK_PAGES];
	int err;
};

/* Sender state; used by the migration thread, and during a pass by one
 * thread per extra stream, each on its own chunks. */
struct ram_tracker {
	struct vm *vm;            /* KVM dirty log in use; NULL after ram_send_init() */
	struct guest_mem *mem;    /* RAM the pages are read from */
	bool manual_protect;      /* KVM_CLEAR_DIRTY_LOG available and enabled */
	uint64_t npages;
	uint64_t *dirty;          /* pages to send */
	uint64_t *scratch;        /* one slot's KVM bitmap */
	uint64_t *user;           /* vm->mem.dirty: device writes */
	int pagemap_fd;           /* /proc/self/pagemap, or -1 */
	uint64_t max_bandwidth;   /* bytes/s, 0 = unlimited */
	bool sum;                 /* PAGES checked by stream_sum32() (STREAM_CAP_SUM) */
	bool inplace;             /* PAGES sent from guest RAM (STREAM_CAP_INPLACE) */
	struct ram_stats stats;   /* all passes; the extra streams' added after each */
	struct ram_lane lanes[RAM_MAX_STREAMS];
	uint64_t pass_pages;      /* pending when the pass began */
	uint64_t sync_ns;         /* when the dirty log was last read (or tracking began) */
	/* for each page re-protected since sync_ns, the us from sync_ns to
	 * that: writes before then did not count */
	_Atomic uint64_t late_us;
	uint64_t dirty_rate;      /* pages/s the guest dirtied, by the last ram_sync() */
	_Atomic uint64_t done;    /* pages of this pass sent, all streams */
	_Atomic uint64_t xsent;   /* bytes the extra streams sent, all passes */
	_Atomic bool stop;        /* a stream failed: the others give up */
	volatile bool *cancel;    /* set by another thread to stop a pass */
	/* called by the first stream after each of its batches with the pages
	 * still to send in this pass */
	void (*progress)(void *opaque, uint64_t left);
	void *progress_opaque;
};

/* Starts dirty tracking on every RAM slot and marks all pages dirty;
 * 0 or -errno. */
int ram_track_start(struct ram_tracker *t, struct vm *vm) VMM_MUST_CHECK;
/* Prepares to send every page of MEM once, with no dirty tracking and no
 * KVM (ram_sync() must not be called); 0 or -ENOMEM. Free with
 * ram_track_stop(). */
int ram_send_init(struct ram_tracker *t, struct guest_mem *mem) VMM_MUST_CHECK;
/* Stops dirty tracking and frees the tracker. */
void ram_track_stop(struct ram_tracker *t);
/* Collects pages dirtied since the last sync into the send set; returns the
 * number of pages now waiting to be sent, or -errno. Sets dirty_rate: those
 * pages over the mean time a page was open to a write that counts, which for
 * a page the pass re-protected began only then (half the first pass, for a
 * guest writing all over its RAM). */
int64_t ram_sync(struct ram_tracker *t);
/* Returns the number of pages waiting to be sent. */
uint64_t ram_pending(const struct ram_tracker *t);
/* Sends every waiting page in PAGES frames over the N connections C[0..N)
 * (C[0] from the calling thread, the others from a thread each; a page goes
 * over C[ram_stream_of(page, N)]); 0 or -errno (-ECANCELED if *cancel was
 * set). A failed stream shuts the others' connections down. */
int ram_send_pass(struct ram_tracker *t, struct chan *const *c, int n) VMM_MUST_CHECK;

/* Destination: written-page map so zero pages only touch RAM when needed,
 * and the map of pages whose data failed its check (torn on the source, or
 * corrupt) until they come again. With several streams each has a copy
 * (ram_recv_stream) sharing the maps; a stream only takes the pages it owns,
 * so no word of them is shared. */
struct ram_receiver {
	struct guest_mem *mem;
	uint64_t *written;
	uint64_t *unverified;
	uint64_t pages;
	uint64_t torn;            /* pages that failed their check, this copy */
	int idx, n;               /* this stream of n (0 of 1 by default) */
};

/* Prepares to receive into VM's RAM; 0 or -ENOMEM. */
int ram_recv_init(struct ram_receiver *r, struct vm *vm) VMM_MUST_CHECK;
/* Same, into MEM (which starts all zero); 0 or -ENOMEM. */
int ram_recv_init_mem(struct ram_receiver *r, struct guest_mem *mem) VMM_MUST_CHECK;
/* Validates a whole PAGES payload, then writes it into guest RAM; 0 or
 * -EBADMSG/-EFAULT (nothing written on a validation error). */
int ram_recv_pages(struct ram_receiver *r, const void *payload, size_t len) VMM_MUST_CHECK;
/* Takes the payload of the PAGES frame F (its header just read) off C into
 * guest RAM: an inplace frame's index through IN and its pages straight into
 * place, others whole through IN; 0, -EBADMSG/-EFAULT for a bad batch
 * (nothing written if its index is bad), or C's error. */
int ram_recv(struct ram_receiver *r, struct chan *c, const struct stream_frame *f,
	     struct stream_buf *in) VMM_MUST_CHECK;
/* Returns the number of pages whose last data failed its check. */
uint64_t ram_recv_unverified(const struct ram_receiver *r);
/* Makes OUT the receiver of stream IDX of N, sharing R's map. */
void ram_recv_stream(struct ram_receiver *out, const struct ram_receiver *r, int idx, int n);
/* Frees the receiver (not the copies). */
void ram_recv_destroy(struct ram_receiver *r);

#endif
