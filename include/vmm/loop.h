/* The main thread's event loop (epoll): serial input, the QMP socket and
 * its clients, migration sockets and the VM-ended eventfd all register here.
 * Callbacks run on the loop thread only; loop_add/loop_del are for that
 * thread too, loop_stop() may be called from any thread. */
#ifndef VMM_LOOP_H
#define VMM_LOOP_H

#include <stdint.h>
#include "vmm/log.h"

/* Called with the ready epoll EVENTS for FD. */
typedef void (*loop_fn)(void *opaque, int fd, uint32_t events);

struct loop_watch;

struct loop {
	int epfd;
	int stop_fd;               /* eventfd that wakes loop_run to stop */
	volatile int stopping;
	struct loop_watch *watches; /* list of registered fds */
};

/* Creates the loop; 0 or -errno. */
int loop_init(struct loop *loop) VMM_MUST_CHECK;
/* Closes the loop's own fds (not the watched ones). */
void loop_destroy(struct loop *loop);
/* Watches FD for EVENTS (EPOLLIN, ...); 0 or -errno. */
int loop_add(struct loop *loop, int fd, uint32_t events, loop_fn fn, void *opaque)
	VMM_MUST_CHECK;
/* Changes the events watched on FD; 0 or -errno. */
int loop_mod(struct loop *loop, int fd, uint32_t events) VMM_MUST_CHECK;
/* Stops watching FD (does not close it); safe inside a callback. */
void loop_del(struct loop *loop, int fd);
/* Runs callbacks until loop_stop(); returns 0 or -errno. */
int loop_run(struct loop *loop);
/* Makes loop_run return soon; safe from any thread. */
void loop_stop(struct loop *loop);

#endif
