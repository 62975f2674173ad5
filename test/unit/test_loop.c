/*
 * Unit tests for the epoll main loop (src/vmm/loop.c): add/mod/del with
 * pipes and eventfds, deleting watches from inside callbacks (one's own, and
 * another's whose event is in the same batch), and loop_stop from another
 * thread.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/loop.h"

struct ctx;

/* One watched fd and what its callback does. */
struct watch {
	struct ctx *ctx;
	int fd;
	int calls;
	uint32_t last_events;
	int del_fd;        /* >= 0: loop_del this fd from the callback */
	bool drain;        /* read the eventfd counter */
	bool stop;         /* loop_stop after this many calls ... */
	int stop_after;
};

struct ctx {
	struct loop loop;
	int order[64];     /* fds in callback order */
	int n;
};

static void on_event(void *opaque, int fd, uint32_t events)
{
	struct watch *w = opaque;
	struct ctx *c = w->ctx;
	uint64_t v;

	assert_int_equal(fd, w->fd);
	w->calls++;
	w->last_events = events;
	if (c->n < (int)ARRAY_SIZE(c->order))
		c->order[c->n++] = fd;
	if (w->drain && read(fd, &v, sizeof(v)) < 0)
		fail_msg("read: %s", strerror(errno));
	if (w->del_fd >= 0)
		loop_del(&c->loop, w->del_fd);
	if (w->stop && w->calls >= w->stop_after)
		loop_stop(&c->loop);
}

static int new_eventfd(uint64_t initial)
{
	int fd = eventfd(0, EFD_NONBLOCK);

	assert_true(fd >= 0);
	if (initial)
		assert_int_equal(write(fd, &initial, sizeof(initial)), sizeof(initial));
	return fd;
}

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));

	if (!c || loop_init(&c->loop) != 0)
		return -1;
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;

	loop_destroy(&c->loop);
	assert_int_equal(c->loop.epfd, -1);
	free(c);
	return 0;
}

/* Runs the loop with a stopper eventfd that fires after the others. */
static void run_one_batch(struct ctx *c)
{
	struct watch stopper = { c, new_eventfd(1), 0, 0, -1, true, true, 1 };

	assert_int_equal(loop_add(&c->loop, stopper.fd, EPOLLIN, on_event, &stopper), 0);
	assert_int_equal(loop_run(&c->loop), 0);
	assert_int_equal(stopper.calls, 1);
	loop_del(&c->loop, stopper.fd);
	close(stopper.fd);
}

static void test_add_dispatch(void **state)
{
	struct ctx *c = *state;
	int p[2];
	struct watch wp, we;
	uint64_t one = 1;
	char ch;

	assert_int_equal(pipe(p), 0);
	wp = (struct watch){ c, p[0], 0, 0, -1, false, false, 0 };
	we = (struct watch){ c, new_eventfd(0), 0, 0, -1, true, false, 0 };
	assert_int_equal(loop_add(&c->loop, p[0], EPOLLIN, on_event, &wp), 0);
	assert_int_equal(loop_add(&c->loop, we.fd, EPOLLIN, on_event, &we), 0);
	/* same fd twice is refused */
	assert_int_equal(loop_add(&c->loop, p[0], EPOLLIN, on_event, &wp), -EEXIST);
	assert_int_equal(loop_add(&c->loop, -1, EPOLLIN, on_event, &wp), -EBADF);

	assert_int_equal(write(p[1], "x", 1), 1);
	run_one_batch(c);
	assert_int_equal(wp.calls, 1);
	assert_true(wp.last_events & EPOLLIN);
	assert_int_equal(we.calls, 0);            /* eventfd not signalled */

	/* the pipe stays readable (level-triggered) */
	run_one_batch(c);
	assert_int_equal(wp.calls, 2);
	assert_int_equal(read(p[0], &ch, 1), 1);
	assert_int_equal(write(we.fd, &one, sizeof(one)), sizeof(one));
	run_one_batch(c);
	assert_int_equal(wp.calls, 2);
	assert_int_equal(we.calls, 1);

	/* hang-up is reported */
	close(p[1]);
	run_one_batch(c);
	assert_int_equal(wp.calls, 3);
	assert_true(wp.last_events & EPOLLHUP);
	loop_del(&c->loop, p[0]);
	loop_del(&c->loop, we.fd);
	close(p[0]);
	close(we.fd);
}

static void test_mod_del(void **state)
{
	struct ctx *c = *state;
	int p[2];
	struct watch w;

	assert_int_equal(pipe(p), 0);
	w = (struct watch){ c, p[1], 0, 0, -1, false, false, 0 };
	/* the write end is always writable: watch for input first (never) */
	assert_int_equal(loop_add(&c->loop, p[1], EPOLLIN, on_event, &w), 0);
	run_one_batch(c);
	assert_int_equal(w.calls, 0);
	assert_int_equal(loop_mod(&c->loop, p[1], EPOLLOUT), 0);
	run_one_batch(c);
	assert_int_equal(w.calls, 1);
	assert_true(w.last_events & EPOLLOUT);
	assert_int_equal(loop_mod(&c->loop, p[1], EPOLLIN), 0);
	run_one_batch(c);
	assert_int_equal(w.calls, 1);
	assert_int_equal(loop_mod(&c->loop, p[1], EPOLLOUT), 0);
	loop_del(&c->loop, p[1]);
	run_one_batch(c);
	assert_int_equal(w.calls, 1);
	/* deleted: mod and a second del have nothing to act on */
	assert_int_equal(loop_mod(&c->loop, p[1], EPOLLOUT), -ENOENT);
	loop_del(&c->loop, p[1]);
	assert_int_equal(loop_mod(&c->loop, 12345, EPOLLIN), -ENOENT);
	/* and the fd can be added again */
	assert_int_equal(loop_add(&c->loop, p[1], EPOLLOUT, on_event, &w), 0);
	run_one_batch(c);
	assert_int_equal(w.calls, 2);
	loop_del(&c->loop, p[1]);
	close(p[0]);
	close(p[1]);
}

/* A callback deleting its own watch is called once, then never again. */
static void test_del_self_in_callback(void **state)
{
	struct ctx *c = *state;
	struct watch w = { c, new_eventfd(1), 0, 0, -1, false, false, 0 };

	w.del_fd = w.fd;     /* never drained: would fire forever if not deleted */
	assert_int_equal(loop_add(&c->loop, w.fd, EPOLLIN, on_event, &w), 0);
	run_one_batch(c);
	run_one_batch(c);
	assert_int_equal(w.calls, 1);
	close(w.fd);
}

/*
 * A and B are both ready in the same epoll batch; whichever runs first
 * deletes the other, which must then not be called (its watch is freed only
 * after the batch, so no use-after-free either). Its fd is still readable,
 * so re-adding it proves the event was skipped, not consumed.
 */
static void test_del_other_same_batch(void **state)
{
	struct ctx *c = *state;
	struct watch a = { c, new_eventfd(1), 0, 0, -1, true, false, 0 };
	struct watch b = { c, new_eventfd(1), 0, 0, -1, true, false, 0 };
	struct watch *first, *second;

	a.del_fd = b.fd;
	b.del_fd = a.fd;
	assert_int_equal(loop_add(&c->loop, a.fd, EPOLLIN, on_event, &a), 0);
	assert_int_equal(loop_add(&c->loop, b.fd, EPOLLIN, on_event, &b), 0);
	run_one_batch(c);
	assert_int_equal(a.calls + b.calls, 1);
	first = a.calls ? &a : &b;
	second = a.calls ? &b : &a;
	run_one_batch(c);                 /* first drained, second deleted */
	assert_int_equal(first->calls, 1);
	assert_int_equal(second->calls, 0);
	assert_int_equal(loop_mod(&c->loop, second->fd, EPOLLIN), -ENOENT);

	second->del_fd = -1;
	assert_int_equal(loop_add(&c->loop, second->fd, EPOLLIN, on_event, second), 0);
	run_one_batch(c);
	assert_int_equal(second->calls, 1);
	assert_int_equal(first->calls, 1);
	loop_del(&c->loop, a.fd);
	loop_del(&c->loop, b.fd);
	close(a.fd);
	close(b.fd);
}

static void on_del_self(void *opaque, int fd, uint32_t events)
{
	struct watch *w = opaque;

	w->calls++;
	loop_del(&w->ctx->loop, fd);
}

/* Deleting a watch and adding a new one for the same fd: the new watch gets
 * the events with its own callback and opaque. */
static void test_del_then_readd(void **state)
{
	struct ctx *c = *state;
	struct watch w = { c, new_eventfd(1), 0, 0, -1, false, false, 0 };
	struct watch w2 = { c, w.fd, 0, 0, -1, true, false, 0 };

	assert_int_equal(loop_add(&c->loop, w.fd, EPOLLIN, on_del_self, &w), 0);
	run_one_batch(c);
	assert_int_equal(w.calls, 1);
	assert_int_equal(loop_add(&c->loop, w.fd, EPOLLIN, on_event, &w2), 0);
	run_one_batch(c);
	assert_int_equal(w.calls, 1);
	assert_int_equal(w2.calls, 1);
	loop_del(&c->loop, w.fd);
	close(w.fd);
}

struct stopper_arg {
	struct loop *loop;
	int delay_ms;
};

static void *stop_thread(void *p)
{
	struct stopper_arg *a = p;
	struct timespec ts = { 0, a->delay_ms * 1000000L };

	nanosleep(&ts, NULL);
	loop_stop(a->loop);
	return NULL;
}

static void test_stop_from_thread(void **state)
{
	struct ctx *c = *state;
	struct stopper_arg a = { &c->loop, 50 };
	pthread_t t;
	struct timespec t0, t1;

	for (int round = 0; round < 3; round++) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		assert_int_equal(pthread_create(&t, NULL, stop_thread, &a), 0);
		assert_int_equal(loop_run(&c->loop), 0);       /* blocks until stopped */
		clock_gettime(CLOCK_MONOTONIC, &t1);
		pthread_join(t, NULL);
		assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 >= 40);
		assert_int_equal(c->loop.stopping, 0);        /* ready to run again */
	}
	/* a stop requested before loop_run makes it return without blocking */
	loop_stop(&c->loop);
	assert_int_equal(loop_run(&c->loop), 0);
}

/* loop_stop from a callback ends loop_run after the current batch. */
static void test_stop_in_callback(void **state)
{
	struct ctx *c = *state;
	struct watch w = { c, new_eventfd(1), 0, 0, -1, false, true, 3 };

	assert_int_equal(loop_add(&c->loop, w.fd, EPOLLIN, on_event, &w), 0);
	assert_int_equal(loop_run(&c->loop), 0);
	assert_int_equal(w.calls, 3);
	loop_del(&c->loop, w.fd);
	close(w.fd);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_add_dispatch),
		T(test_mod_del),
		T(test_del_self_in_callback),
		T(test_del_other_same_batch),
		T(test_del_then_readd),
		T(test_stop_from_thread),
		T(test_stop_in_callback),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
#undef T
}
