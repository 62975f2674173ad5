/* Live migration, both ends. The source runs iterative pre-copy in its own
 * thread (passes of dirty pages while the guest runs), then pauses the guest
 * and sends the last pages, vCPU, in-kernel and device state. The exchange is
 * drawn in stream.h. Until the destination says READY and the source says
 * GO, the source can always resume its guest: a failed or cancelled
 * migration loses nothing. After GO the guest never runs on the source. */
#ifndef VMM_MIGRATE_H
#define VMM_MIGRATE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "vmm/log.h"

struct vm;

/* QEMU's MigrationStatus names, in migrate_status_name(). */
enum migrate_status {
	MIG_NONE, MIG_SETUP, MIG_ACTIVE, MIG_DEVICE, MIG_COMPLETED, MIG_FAILED,
	MIG_CANCELLING, MIG_CANCELLED,
};

struct migrate_params {
	uint64_t downtime_limit_ms;   /* default 100 */
	uint64_t max_bandwidth;       /* bytes/s, 0 = unlimited */
	uint32_t max_passes;          /* iteration cap, default 30 */
	bool switchover_on_stall;     /* switch over when not converging (default) */
	uint32_t multifd_channels;    /* parallel page streams (connections), 1-16, default 1 */
	bool auto_converge;           /* throttle vCPUs when not converging (default) */
	uint32_t max_cpu_throttle;    /* auto-converge's ceiling in %, 1-99, default 99 */
};

struct migrate_info {
	enum migrate_status status;
	char error[256];
	uint64_t setup_ms, total_ms, downtime_ms, expected_downtime_ms;
	/* downtime broken down: final RAM, vCPU+KVM state, device state, handoff */
	uint64_t down_ram_ms, down_cpu_ms, down_dev_ms, down_handoff_ms;
	/* destination: loading vCPU and in-kernel state, rehearsed at the
	 * handshake (what the source's model is told) and for real */
	uint64_t restore_rehearsed_us, restore_us;
	uint32_t pass;
	uint32_t throttle_pct;        /* auto-converge's current vCPU throttle */
	uint64_t transferred, remaining, total, duplicate, normal, normal_bytes;
	uint64_t dirty_sync_count, dirty_pages_rate, pages_per_second;
	double mbps;
};

/* Called from the migration thread, without locks held; must not block. */
struct migrate_listener {
	void (*status)(void *opaque, enum migrate_status st);
	void (*pass)(void *opaque, uint32_t pass);
	void *opaque;
};

struct migrate;

/* Auto-converge's test of a pass: slow if it set no new low (NEW_LOW false)
 * or the guest dirtied more than half the bytes it sent (QEMU's
 * throttle-trigger-threshold of 50%). */
bool migrate_pass_slow(uint64_t dirty_bytes, uint64_t sent_bytes, bool new_low);

/* Whether auto-converge steps the throttle up after pass PASS, the
 * SLOW-th slow pass in a row, with the vCPUs throttled THROTTLE% so far:
 * after two slow passes in a row; after a slow first pass, which sent all
 * of RAM and so measured the guest over the longest time a pass takes; and
 * once throttled, after every slow pass. */
bool migrate_throttle_now(uint32_t pass, int slow, uint32_t throttle);

/* Whether one more pass pays once the rest already fits the downtime limit:
 * sending PAGES at BW bytes/s while the guest dirties DIRTY_PPS pages/s
 * leaves at most half of them, and takes at least a tenth off EXPECTED_NS,
 * the downtime of switching over now. A pass of a few hundred pages costs
 * milliseconds of total time; in the pause they would be milliseconds the
 * guest's users wait. */
bool migrate_settle_pass(uint64_t pages, double dirty_pps, double bw, uint64_t expected_ns);

/* Auto-converge's next vCPU throttle (%), at throttle CUR, with DIRTY_BPS
 * bytes/s dirtied, BW bytes/s sent, REST bytes left to send and room for
 * FIT bytes in the pause: as much as makes each pass leave at most
 * (FIT/REST)^(1/3) of what it sent, so the rest fits after three more
 * passes (the guest's writes taken to scale with the time it may run);
 * after a slow pass (SLOW) at least 20, or 10 more than CUR; at most MAX.
 * CUR if nothing calls for more. */
uint32_t migrate_next_throttle(uint32_t cur, bool slow, double dirty_bps, double bw,
			       double rest, double fit, uint32_t max);

/* Creates the migration controller of VM, whose vCPUs exist and do not run
 * yet (it reads vCPU 0's MSR list now); NULL on failure, with a message. */
struct migrate *migrate_new(struct vm *vm);
/* Cancels any migration, waits for its thread and frees M. */
void migrate_free(struct migrate *m);
/* Sets who hears about status changes and passes (before any start). */
void migrate_set_listener(struct migrate *m, const struct migrate_listener *l);
/* Returns QEMU's name for a status ("setup", "active", ...). */
const char *migrate_status_name(enum migrate_status st);
/* Copies the current parameters into P. */
void migrate_get_params(struct migrate *m, struct migrate_params *p);
/* Replaces the parameters (used by the next and the running migration);
 * 0 or -EINVAL with ERR set for out-of-range values. */
int migrate_set_params(struct migrate *m, const struct migrate_params *p, char *err,
		       size_t errlen) VMM_MUST_CHECK;
/* Starts migrating the guest to URI in the background; 0, -EBUSY if one is
 * running, -EINVAL (bad URI, guest not running) with ERR set. */
int migrate_start(struct migrate *m, const char *uri, char *err, size_t errlen)
	VMM_MUST_CHECK;
/* Asks a running outgoing migration to stop; the guest keeps running here.
 * 0, or -EPERM once the handoff has begun, -ENOENT if none is running. */
int migrate_cancel(struct migrate *m) VMM_MUST_CHECK;
/* Snapshot of the current or last migration. */
void migrate_query(struct migrate *m, struct migrate_info *out);
/* Destination: listens on URI now (errors at once, in ERR) and receives one
 * incoming guest in the background; when it is complete the guest starts
 * here, on failure the VM ends with the reason. */
int migrate_incoming(struct migrate *m, const char *uri, char *err, size_t errlen)
	VMM_MUST_CHECK;

#endif
