/* QMP transport: the unix socket, clients with bounded output buffers, the
 * incremental json-c request framing (size cap, resync after bad JSON), the
 * cross-thread event queue and the server's lifetime. Requests go to
 * qmp_cmd.c; nothing here knows about KVM. Protocol: include/vmm/qmp.h. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include "vmm/loop.h"
#include "vmm/qmp.h"
#include "qmp_int.h"

#define QMP_READ_CHUNK   4096
#define QMP_READS_PER_CB 16        /* bound work per wakeup (fairness) */
#define QMP_FLUSH_MS     1000      /* destroy: time to flush clients */
#define QMP_JSON_DEPTH   64

static void client_drop(struct qmp_client *c);

void *qmp_server_opaque(struct qmp_server *srv)
{
	return srv->opaque;
}

/* --- output --------------------------------------------------------------- */

static void client_want_out(struct qmp_client *c, bool want)
{
	if (c->want_out == want || c->fd < 0)
		return;
	if (loop_mod(c->srv->loop, c->fd, EPOLLIN | (want ? EPOLLOUT : 0)) < 0) {
		client_drop(c);
		return;
	}
	c->want_out = want;
}

/* Writes what the socket takes now; never blocks. */
static void client_flush(struct qmp_client *c)
{
	while (!c->dead && c->fd >= 0 && c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			client_want_out(c, true);
			return;
		}
		if (n <= 0) {
			client_drop(c);
			return;
		}
		c->out_off += (size_t)n;
	}
	if (c->out_off == c->out_len) {
		c->out_off = c->out_len = 0;
		if (!c->dead)
			client_want_out(c, false);
	}
}

/* Queues LEN bytes plus CRLF; drops a client that lets QMP_OUT_MAX pile up. */
static void client_write(struct qmp_client *c, const char *s, size_t len)
{
	size_t need;

	if (c->dead)
		return;
	if (c->out_off > 0) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	need = c->out_len + len + 2;
	if (need > QMP_OUT_MAX) {
		vmm_warn("qmp: dropping a client that does not read its replies");
		client_drop(c);
		return;
	}
	if (need > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		char *p;

		while (cap < need)
			cap *= 2;
		p = realloc(c->out, cap);
		if (!p) {
			client_drop(c);
			return;
		}
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, s, len);
	memcpy(c->out + c->out_len + len, "\r\n", 2);
	c->out_len += len + 2;
	client_flush(c);
}

void qmp_client_send(struct qmp_client *c, struct json_object *obj)
{
	size_t len;
	const char *s = json_object_to_json_string_length(obj,
		JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);

	if (s)
		client_write(c, s, len);
	else
		client_drop(c);
}

size_t qmp_client_drain(struct qmp_client *c, char *buf, size_t len)
{
	size_t n = c->out_len - c->out_off;

	if (n > len)
		n = len;
	memcpy(buf, c->out + c->out_off, n);
	c->out_off += n;
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	return n;
}

/* --- events --------------------------------------------------------------- */

void qmp_server_event(struct qmp_server *srv, const char *name, struct json_object *data)
{
	struct qmp_event *ev = calloc(1, sizeof(*ev));
	uint64_t one = 1;
	bool queued = false;

	if (ev && (ev->name = strdup(name))) {
		ev->data = data;
		clock_gettime(CLOCK_REALTIME, &ev->ts);
		pthread_mutex_lock(&srv->lock);
		if (srv->nr_events < QMP_EVENT_QUEUE_MAX) {
			*srv->events_tail = ev;
			srv->events_tail = &ev->next;
			srv->nr_events++;
			queued = true;
		}
		pthread_mutex_unlock(&srv->lock);
	}
	if (!queued) {
		json_object_put(data);
		if (ev)
			free(ev->name);
		free(ev);
		return;
	}
	if (srv->event_fd >= 0 && write(srv->event_fd, &one, sizeof(one)) < 0) {
		/* counter full: the loop is already being woken */
	}
}

static struct json_object *event_obj(struct qmp_event *ev)
{
	struct json_object *o = json_object_new_object(), *ts = json_object_new_object();

	json_object_object_add(o, "event", json_object_new_string(ev->name));
	if (ev->data) {
		json_object_object_add(o, "data", ev->data);
		ev->data = NULL;
	}
	json_object_object_add(ts, "seconds", json_object_new_int64(ev->ts.tv_sec));
	json_object_object_add(ts, "microseconds",
			       json_object_new_int64(ev->ts.tv_nsec / 1000));
	json_object_object_add(o, "timestamp", ts);
	return o;
}

void qmp_deliver_events(struct qmp_server *srv)
{
	struct qmp_event *ev, *next;

	pthread_mutex_lock(&srv->lock);
	ev = srv->events;
	srv->events = NULL;
	srv->events_tail = &srv->events;
	srv->nr_events = 0;
	pthread_mutex_unlock(&srv->lock);

	for (; ev; ev = next) {
		struct json_object *o = event_obj(ev);
		struct qmp_client *c;

		for (c = srv->clients; c; c = c->next)
			if (c->negotiated && !c->dead)
				qmp_client_send(c, o);
		json_object_put(o);
		next = ev->next;
		free(ev->name);
		free(ev);
	}
}

/* --- input ---------------------------------------------------------------- */

static size_t skip_space(const char *buf, size_t len)
{
	size_t i = 0;

	while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' ||
			   buf[i] == '\n'))
		i++;
	return i;
}

static void client_error(struct qmp_client *c, const char *fmt, ...) VMM_PRINTF(2, 3);
static void client_error(struct qmp_client *c, const char *fmt, ...)
{
	struct json_object *o = json_object_new_object(), *e = json_object_new_object();
	char desc[QMP_DESC_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(desc, sizeof(desc), fmt, ap);
	va_end(ap);
	json_object_object_add(e, "class", json_object_new_string("GenericError"));
	json_object_object_add(e, "desc", json_object_new_string(desc));
	json_object_object_add(o, "error", e);
	qmp_client_send(c, o);
	json_object_put(o);
}

/* Feeds one step of BUF to the tokener; returns the bytes consumed. */
static size_t client_parse(struct qmp_client *c, const char *buf, size_t len)
{
	size_t room = QMP_MSG_MAX + 1 - c->msg_bytes, used;
	bool fresh = c->msg_bytes == 0;
	struct json_object *obj;
	enum json_tokener_error err;

	if (len > room)
		len = room;
	obj = json_tokener_parse_ex(c->tok, buf, (int)len);
	err = json_tokener_get_error(c->tok);
	used = json_tokener_get_parse_end(c->tok);
	if (err == json_tokener_continue) {
		c->msg_bytes += len;
		if (c->msg_bytes > QMP_MSG_MAX) {
			client_error(c, "JSON parse error, message exceeds %d bytes", QMP_MSG_MAX);
			client_drop(c);
		}
		return len;
	}
	json_tokener_reset(c->tok);
	c->msg_bytes = 0;
	if (err != json_tokener_success) {
		client_error(c, "JSON parse error, %s", json_tokener_error_desc(err));
		c->discarding = true;
		return used;
	}
	qmp_client_request(c, obj);
	json_object_put(obj);
	/* a number ends at the delimiter after it, which it does not consume */
	return used || !fresh ? used : 1;
}

int qmp_client_feed(struct qmp_client *c, const void *data, size_t len)
{
	const char *buf = data;

	while (len > 0 && !c->dead) {
		size_t n;

		if (c->discarding) {
			const char *nl = memchr(buf, '\n', len);

			if (!nl)
				return 0;
			c->discarding = false;
			n = (size_t)(nl - buf) + 1;
		} else if (c->msg_bytes == 0 && (n = skip_space(buf, len)) > 0) {
			/* whitespace between requests is free */
		} else {
			n = client_parse(c, buf, len);
		}
		buf += n;
		len -= n;
	}
	return c->dead ? -EPIPE : 0;
}

/* --- clients and the socket ----------------------------------------------- */

static void client_drop(struct qmp_client *c)
{
	if (c->dead)
		return;
	c->dead = true;
	if (c->fd >= 0) {
		loop_del(c->srv->loop, c->fd);
		close(c->fd);
		c->fd = -1;
	}
}

static void client_free(struct qmp_client *c)
{
	if (c->tok)
		json_tokener_free(c->tok);
	free(c->out);
	free(c);
}

/* Frees dropped clients; only at the end of a loop callback. */
static void server_reap(struct qmp_server *srv)
{
	struct qmp_client **pp = &srv->clients;

	while (*pp) {
		struct qmp_client *c = *pp;

		if (c->dead && !c->mem) {
			*pp = c->next;
			srv->nr_clients--;
			client_free(c);
		} else {
			pp = &c->next;
		}
	}
}

static void client_read(struct qmp_client *c)
{
	char buf[QMP_READ_CHUNK];

	for (int i = 0; i < QMP_READS_PER_CB && !c->dead; i++) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			client_drop(c);     /* EOF or error: whatever was read ran */
			return;
		}
		if (qmp_client_feed(c, buf, (size_t)n) < 0)
			return;
	}
}

static void client_cb(void *opaque, int fd, uint32_t events)
{
	struct qmp_client *c = opaque;
	struct qmp_server *srv = c->srv;

	if (events & EPOLLOUT)
		client_flush(c);
	if (!c->dead && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		client_read(c);
	server_reap(srv);
}

int qmp_server_attach(struct qmp_server *srv, int fd, struct qmp_client **out)
{
	struct qmp_client *c = calloc(1, sizeof(*c));
	struct json_object *greeting, *qmp;

	if (!c || !(c->tok = json_tokener_new_ex(QMP_JSON_DEPTH)))
		goto fail;
	c->srv = srv;
	c->fd = fd;
	c->mem = fd < 0;
	if (fd >= 0 && loop_add(srv->loop, fd, EPOLLIN, client_cb, c) < 0)
		goto fail;
	c->next = srv->clients;
	srv->clients = c;
	srv->nr_clients++;
	greeting = json_object_new_object();
	qmp = json_object_new_object();
	json_object_object_add(qmp, "version", qmp_version_obj());
	json_object_object_add(qmp, "capabilities", json_object_new_array());
	json_object_object_add(greeting, "QMP", qmp);
	qmp_client_send(c, greeting);
	json_object_put(greeting);
	if (out)
		*out = c;
	return 0;
fail:
	if (c)
		client_free(c);
	if (fd >= 0)
		close(fd);
	return -ENOMEM;
}

static void accept_cb(void *opaque, int lfd, uint32_t events)
{
	struct qmp_server *srv = opaque;

	for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				vmm_warn("qmp: accept: %s", strerror(errno));
			break;
		}
		if (srv->nr_clients >= QMP_MAX_CLIENTS) {
			vmm_warn("qmp: refusing client: %d already connected",
				 QMP_MAX_CLIENTS);
			close(fd);
			continue;
		}
		if (qmp_server_attach(srv, fd, NULL) < 0)
			vmm_warn("qmp: out of memory for a new client");
	}
	server_reap(srv);
}

static void event_cb(void *opaque, int fd, uint32_t events)
{
	struct qmp_server *srv = opaque;
	uint64_t n;

	if (read(fd, &n, sizeof(n)) < 0) {
		/* EAGAIN: another wakeup already drained it */
	}
	qmp_deliver_events(srv);
	server_reap(srv);
}

/* Replaces a stale socket file at SA's path; refuses a live one. */
static int remove_stale(const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, r, err;

	if (lstat(sa->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	err = errno;
	close(fd);
	if (r == 0 || err == EAGAIN)
		return -EADDRINUSE;
	if (err != ECONNREFUSED && err != ENOENT)
		return -err;
	if (unlink(sa->sun_path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

static int server_listen(struct qmp_server *srv, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	r = remove_stale(&sa);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	old = umask(0177);     /* the socket is born 0600: no window for others */
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0) {
		r = -errno;
		goto err_close;
	}
	srv->path = strdup(path);
	if (!srv->path || chmod(path, 0600) < 0 || stat(path, &srv->path_st) < 0 ||
	    listen(fd, QMP_MAX_CLIENTS) < 0) {
		r = srv->path ? -errno : -ENOMEM;
		goto err_unlink;
	}
	srv->listen_fd = fd;
	r = loop_add(srv->loop, fd, EPOLLIN, accept_cb, srv);
	if (r < 0) {
		srv->listen_fd = -1;
		goto err_unlink;
	}
	return 0;
err_unlink:
	unlink(path);
	free(srv->path);
	srv->path = NULL;
err_close:
	close(fd);
	return r;
}

int qmp_server_create(struct qmp_server **out, struct loop *loop, const char *path,
		      const struct qmp_backend_ops *ops, void *opaque)
{
	struct qmp_server *srv = calloc(1, sizeof(*srv));
	int r;

	if (!srv)
		return -ENOMEM;
	srv->loop = loop;
	srv->ops = ops;
	srv->opaque = opaque;
	srv->listen_fd = srv->event_fd = -1;
	srv->tables[0] = (struct qmp_table){ qmp_builtin_cmds, qmp_nr_builtin_cmds, opaque };
	srv->nr_tables = 1;
	srv->events_tail = &srv->events;
	pthread_mutex_init(&srv->lock, NULL);
	if (loop) {
		srv->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (srv->event_fd < 0) {
			r = -errno;
			goto err;
		}
		r = loop_add(loop, srv->event_fd, EPOLLIN, event_cb, srv);
		if (r < 0)
			goto err;
		if (path && (r = server_listen(srv, path)) < 0)
			goto err;
	}
	*out = srv;
	return 0;
err:
	srv->ops = NULL;       /* no release: the caller still owns OPAQUE */
	qmp_server_destroy(srv);
	return r;
}

/* Gives every client up to QMP_FLUSH_MS in total to take its output. */
static void server_flush_all(struct qmp_server *srv)
{
	struct timespec t0, now;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (struct qmp_client *c = srv->clients; c; c = c->next) {
		while (!c->dead && c->fd >= 0 && c->out_off < c->out_len) {
			struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
			long ms;

			clock_gettime(CLOCK_MONOTONIC, &now);
			ms = QMP_FLUSH_MS - ((now.tv_sec - t0.tv_sec) * 1000 +
					     (now.tv_nsec - t0.tv_nsec) / 1000000);
			if (ms <= 0 || poll(&pfd, 1, (int)ms) <= 0)
				return;
			client_flush(c);
		}
	}
}

void qmp_server_destroy(struct qmp_server *srv)
{
	if (!srv)
		return;
	qmp_deliver_events(srv);
	server_flush_all(srv);
	while (srv->clients) {
		struct qmp_client *c = srv->clients;

		srv->clients = c->next;
		client_drop(c);
		client_free(c);
	}
	if (srv->listen_fd >= 0) {
		loop_del(srv->loop, srv->listen_fd);
		close(srv->listen_fd);
	}
	if (srv->path) {
		struct stat st;

		/* only the file we created, not a successor's */
		if (stat(srv->path, &st) == 0 && st.st_ino == srv->path_st.st_ino &&
		    st.st_dev == srv->path_st.st_dev)
			unlink(srv->path);
		free(srv->path);
	}
	if (srv->event_fd >= 0) {
		loop_del(srv->loop, srv->event_fd);
		close(srv->event_fd);
	}
	if (srv->ops && srv->ops->release)
		srv->ops->release(srv->opaque);
	pthread_mutex_destroy(&srv->lock);
	free(srv);
}
