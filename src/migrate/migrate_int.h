/* Internals shared by the migration controller, source and destination. */
#ifndef VMM_MIGRATE_INT_H
#define VMM_MIGRATE_INT_H

#include "vmm/chan.h"
#include "vmm/cpustate.h"
#include "vmm/migrate.h"
#include "vmm/ram.h"
#include "vmm/stream.h"

#define MIG_CONNECT_TIMEOUT_MS 10000
#define MIG_READY_TIMEOUT_MS 60000
#define MIG_ANNOUNCE_ROUNDS 5      /* self-announce RARPs after an incoming migration */

/* lock guards params, info, cancel, handoff, busy and chan.fd's lifetime;
 * the thread's own work (chan I/O, RAM passes) runs unlocked. */
struct migrate {
	struct vm *vm;
	pthread_mutex_t lock;
	struct migrate_params params;
	struct migrate_info info;
	struct migrate_listener listener;
	pthread_t thread;
	bool joinable;              /* a thread was started and not yet joined */
	bool busy;                  /* a migration is in progress */
	volatile bool cancel;
	bool handoff;               /* GO is being sent: cancel refused */
	struct chan chan;
	struct chan xchan[RAM_MAX_STREAMS - 1];   /* multifd: streams 1..nxchan */
	int nxchan;
	int listen_fd;
	char uri[256];
	uint64_t start_ns;
	/* MSRs a vCPU save carries, read in migrate_new(): a vCPU ioctl waits
	 * until that vCPU leaves KVM_RUN, which an idle guest may never do */
	uint32_t msrs[CPU_MAX_MSRS];
	int nmsrs;
};

/* Sets status (and the error text for FAILED) and tells the listener. */
void mig_set_status(struct migrate *m, enum migrate_status st, const char *error);
/* Shuts every connection down (lock held). */
void mig_abort_chans(struct migrate *m);
/* Closes the extra streams (lock held). */
void mig_close_xchans(struct migrate *m);
/* Sends the frames accumulated in B over C and resets it; 0 or -errno. */
int mig_flush_to(struct chan *c, struct stream_buf *b) VMM_MUST_CHECK;
/* Sends the frames accumulated in B and resets it; 0 or -errno. */
int mig_flush(struct migrate *m, struct stream_buf *b) VMM_MUST_CHECK;
/* Receives one control frame (payload <= STREAM_MAX_CONTROL). */
int mig_recv_ctl(struct migrate *m, struct stream_frame *f, struct stream_buf *payload)
	VMM_MUST_CHECK;
/* The source side; runs as the migration thread. */
void *mig_source_thread(void *arg);
/* The destination side; runs as the migration thread. */
void *mig_dest_thread(void *arg);

#endif
