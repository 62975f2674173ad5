/* The main thread's epoll loop. Watches are kept in a list so a callback can
 * delete any watch (its own included) while events are being delivered. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "vmm/loop.h"

struct loop_watch {
	int fd;
	loop_fn fn;
	void *opaque;
	bool dead;
	struct loop_watch *next;
};

int loop_init(struct loop *loop)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

	loop->watches = NULL;
	loop->stopping = 0;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0)
		return -errno;
	loop->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (loop->stop_fd < 0 || epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->stop_fd, &ev) < 0) {
		int err = -errno;

		loop_destroy(loop);
		return err;
	}
	return 0;
}

void loop_destroy(struct loop *loop)
{
	struct loop_watch *w = loop->watches, *next;

	for (; w; w = next) {
		next = w->next;
		free(w);
	}
	loop->watches = NULL;
	if (loop->stop_fd >= 0)
		close(loop->stop_fd);
	if (loop->epfd >= 0)
		close(loop->epfd);
	loop->stop_fd = loop->epfd = -1;
}

int loop_add(struct loop *loop, int fd, uint32_t events, loop_fn fn, void *opaque)
{
	struct loop_watch *w = calloc(1, sizeof(*w));
	struct epoll_event ev = { .events = events };

	if (!w)
		return -ENOMEM;
	*w = (struct loop_watch){ fd, fn, opaque, false, loop->watches };
	ev.data.ptr = w;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = -errno;

		free(w);
		return err;
	}
	loop->watches = w;
	return 0;
}

static struct loop_watch *loop_find(struct loop *loop, int fd)
{
	for (struct loop_watch *w = loop->watches; w; w = w->next)
		if (w->fd == fd && !w->dead)
			return w;
	return NULL;
}

int loop_mod(struct loop *loop, int fd, uint32_t events)
{
	struct loop_watch *w = loop_find(loop, fd);
	struct epoll_event ev = { .events = events };

	if (!w)
		return -ENOENT;
	ev.data.ptr = w;
	return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

void loop_del(struct loop *loop, int fd)
{
	struct loop_watch *w = loop_find(loop, fd);

	if (!w)
		return;
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
	w->dead = true;   /* freed after the current batch of events */
}

static void loop_reap(struct loop *loop)
{
	struct loop_watch **pp = &loop->watches;

	while (*pp) {
		struct loop_watch *w = *pp;

		if (w->dead) {
			*pp = w->next;
			free(w);
		} else {
			pp = &w->next;
		}
	}
}

int loop_run(struct loop *loop)
{
	struct epoll_event evs[32];

	while (!loop->stopping) {
		int n = epoll_wait(loop->epfd, evs, ARRAY_SIZE(evs), -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n; i++) {
			struct loop_watch *w = evs[i].data.ptr;

			if (!w) {
				uint64_t v;

				if (read(loop->stop_fd, &v, sizeof(v)) < 0)
					continue;
				continue;
			}
			if (!w->dead)
				w->fn(w->opaque, w->fd, evs[i].events);
		}
		loop_reap(loop);
	}
	loop->stopping = 0;
	return 0;
}

void loop_stop(struct loop *loop)
{
	uint64_t one = 1;

	loop->stopping = 1;
	if (write(loop->stop_fd, &one, sizeof(one)) < 0)
		return;
}
