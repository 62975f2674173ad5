/* Migration transport over io_uring: exact sends and receives with a bounded
 * wait each, so a dead or stalled peer turns into an error, never a hang. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "vmm/chan.h"

#define CHAN_SOCKBUF (4 << 20)

struct chan_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	int family;
};

static int chan_parse(const char *uri, struct chan_addr *a, char *err, size_t errlen)
{
	memset(a, 0, sizeof(*a));
	if (!strncmp(uri, "unix:", 5)) {
		struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;

		if (!uri[5] || strlen(uri + 5) >= sizeof(un->sun_path)) {
			snprintf(err, errlen, "bad unix socket path in '%s'", uri);
			return -EINVAL;
		}
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, uri + 5);
		a->len = sizeof(*un);
		a->family = AF_UNIX;
		return 0;
	}
	if (!strncmp(uri, "tcp:", 4)) {
		char host[256];
		const char *port = strrchr(uri + 4, ':');
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
		size_t hl;
		int rc;

		if (!port || !port[1] || (hl = (size_t)(port - (uri + 4))) >= sizeof(host)) {
			snprintf(err, errlen, "expected tcp:HOST:PORT, got '%s'", uri);
			return -EINVAL;
		}
		memcpy(host, uri + 4, hl);
		host[hl] = 0;
		if (host[0] == '[' && hl > 1 && host[hl - 1] == ']') {
			memmove(host, host + 1, hl - 2);
			host[hl - 2] = 0;
		}
		rc = getaddrinfo(host[0] ? host : NULL, port + 1, &hints, &res);
		if (rc) {
			snprintf(err, errlen, "cannot resolve '%s': %s", uri, gai_strerror(rc));
			return -EINVAL;
		}
		memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
		a->len = res->ai_addrlen;
		a->family = res->ai_family;
		freeaddrinfo(res);
		return 0;
	}
	snprintf(err, errlen, "unsupported migration URI '%s' (want tcp:HOST:PORT or unix:PATH)",
		 uri);
	return -EINVAL;
}

static int chan_setup(struct chan *c, int fd, int timeout_ms)
{
	int one = 1, buf = CHAN_SOCKBUF, err;

	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->timeout_ms = timeout_ms > 0 ? timeout_ms : CHAN_TIMEOUT_MS;
	/* Tests shorten the stall timeout; operators may too. */
	if (getenv("VMM_MIGRATE_TIMEOUT_MS") && atoi(getenv("VMM_MIGRATE_TIMEOUT_MS")) > 0)
		c->timeout_ms = atoi(getenv("VMM_MIGRATE_TIMEOUT_MS"));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	err = io_uring_queue_init(8, &c->ring, 0);
	if (err < 0)
		return err;
	c->ring_ok = true;
	return 0;
}

int chan_connect(struct chan *c, const char *uri, int timeout_ms, char *err, size_t errlen)
{
	struct chan_addr a;
	struct pollfd p;
	int fd, ret, soerr = 0;
	socklen_t sl = sizeof(soerr);

	c->fd = -1;
	c->ring_ok = false;
	ret = chan_parse(uri, &a, err, errlen);
	if (ret)
		return ret;
	fd = socket(a.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a.ss, a.len) < 0 && errno != EINPROGRESS) {
		ret = -errno;
		goto fail;
	}
	p = (struct pollfd){ .fd = fd, .events = POLLOUT };
	ret = poll(&p, 1, timeout_ms);
	if (ret == 0) {
		ret = -ETIMEDOUT;
		goto fail;
	}
	if (ret < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
		ret = soerr ? -soerr : -errno;
		goto fail;
	}
	ret = chan_setup(c, fd, timeout_ms);
	if (ret) {
		close(fd);
		c->fd = -1;
		snprintf(err, errlen, "io_uring setup failed: %s", strerror(-ret));
	}
	return ret;
fail:
	snprintf(err, errlen, "cannot connect to %s: %s", uri, strerror(-ret));
	close(fd);
	return ret;
}

int chan_listen(const char *uri, char *err, size_t errlen)
{
	struct chan_addr a;
	int fd, one = 1, ret = chan_parse(uri, &a, err, errlen);

	if (ret)
		return ret;
	fd = socket(a.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (a.family == AF_UNIX)
		unlink(((struct sockaddr_un *)&a.ss)->sun_path);
	if (bind(fd, (struct sockaddr *)&a.ss, a.len) < 0 || listen(fd, CHAN_BACKLOG) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot listen on %s: %s", uri, strerror(errno));
		close(fd);
		return ret;
	}
	return fd;
}

int chan_accept(struct chan *c, int lfd, int timeout_ms)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	int fd, ret;

	c->fd = -1;
	c->ring_ok = false;
	ret = poll(&p, 1, timeout_ms);
	if (ret == 0)
		return -ETIMEDOUT;
	if (ret < 0)
		return -errno;
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = chan_setup(c, fd, CHAN_TIMEOUT_MS);
	if (ret) {
		close(fd);
		c->fd = -1;
	}
	return ret;
}

/* Submits the op in SQE linked to a timeout and waits for both completions;
 * returns the op's result (bytes or -errno), -ETIMEDOUT if the timer won. */
static int chan_run(struct chan *c, struct io_uring_sqe *sqe)
{
	struct __kernel_timespec ts = {
		.tv_sec = c->timeout_ms / 1000, .tv_nsec = (c->timeout_ms % 1000) * 1000000LL,
	};
	struct io_uring_sqe *t;
	int res = -EIO, ret;
	bool timed_out = false;

	io_uring_sqe_set_data64(sqe, 1);
	sqe->flags |= IOSQE_IO_LINK;
	t = io_uring_get_sqe(&c->ring);
	if (!t)
		return -EBUSY;
	io_uring_prep_link_timeout(t, &ts, 0);
	io_uring_sqe_set_data64(t, 2);
	ret = io_uring_submit(&c->ring);
	if (ret < 0)
		return ret;
	for (int done = 0; done < 2;) {
		struct io_uring_cqe *cqe;

		ret = io_uring_wait_cqe(&c->ring, &cqe);
		if (ret == -EINTR)
			continue;
		if (ret < 0)
			return ret;
		if (io_uring_cqe_get_data64(cqe) == 1)
			res = cqe->res;
		else if (cqe->res == -ETIME)
			timed_out = true;
		io_uring_cqe_seen(&c->ring, cqe);
		done++;
	}
	if (timed_out && (res == -ECANCELED || res == -EINTR))
		return -ETIMEDOUT;
	return res;
}

/* One sendmsg (SEND, with FLAGS) or recvmsg of MSG; the bytes it moved (at
 * least one, counted) or -errno (-EPIPE or -ECONNRESET when the peer is
 * gone). */
static int chan_op(struct chan *c, struct msghdr *msg, bool send, int flags)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&c->ring);
	int res;

	if (!sqe)
		return -EBUSY;
	if (send)
		io_uring_prep_sendmsg(sqe, c->fd, msg, flags);
	else
		io_uring_prep_recvmsg(sqe, c->fd, msg, flags);
	res = chan_run(c, sqe);
	if (res == 0)
		return send ? -EPIPE : -ECONNRESET;
	if (res > 0)
		*(send ? &c->sent : &c->received) += (uint64_t)res;
	return res;
}

/* Sends (SEND) or receives all of IOV[0..N), advancing its entries as bytes
 * move; 0 or -errno (-EPIPE or -ECONNRESET when the peer is gone). */
static int chan_xfer(struct chan *c, struct iovec *iov, int n, bool send)
{
	struct msghdr msg = { 0 };
	int idx = 0;

	for (;;) {
		int res;

		while (idx < n && iov[idx].iov_len == 0)
			idx++;
		if (idx == n)
			return 0;
		msg.msg_iov = iov + idx;
		msg.msg_iovlen = (size_t)(n - idx < UIO_MAXIOV ? n - idx : UIO_MAXIOV);
		res = chan_op(c, &msg, send, send ? MSG_NOSIGNAL : MSG_WAITALL);
		if (res < 0)
			return res;
		for (size_t left = (size_t)res; left; idx++) {
			if (left < iov[idx].iov_len) {
				iov[idx].iov_base = (uint8_t *)iov[idx].iov_base + left;
				iov[idx].iov_len -= left;
				break;
			}
			left -= iov[idx].iov_len;
			iov[idx].iov_len = 0;
		}
	}
}

int chan_sendv(struct chan *c, struct iovec *iov, int n)
{
	return chan_xfer(c, iov, n, true);
}

int chan_send(struct chan *c, const void *buf, size_t len)
{
	struct iovec iov = { (void *)buf, len };

	return chan_xfer(c, &iov, 1, true);
}

/* Moves read-ahead bytes into IOV[0..N), using its entries up; returns the
 * bytes IOV still wants. */
static size_t chan_take_ahead(struct chan *c, struct iovec *iov, int n)
{
	size_t want = 0;

	for (int i = 0; i < n; i++) {
		size_t k = c->ahead_len < iov[i].iov_len ? c->ahead_len : iov[i].iov_len;

		memcpy(iov[i].iov_base, c->ahead + c->ahead_off, k);
		iov[i].iov_base = (uint8_t *)iov[i].iov_base + k;
		iov[i].iov_len -= k;
		c->ahead_off += k;
		c->ahead_len -= k;
		want += iov[i].iov_len;
	}
	return want;
}

/* Reads into the empty read-ahead buffer until it holds WANT bytes, each
 * read taking what the socket has, up to the buffer's end; 0 or -errno. */
static int chan_fill_ahead(struct chan *c, size_t want)
{
	struct iovec iov;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	c->ahead_off = 0;	/* chan_take_ahead() emptied it */
	while (c->ahead_len < want) {
		int res;

		iov = (struct iovec){ c->ahead + c->ahead_len, sizeof(c->ahead) - c->ahead_len };
		res = chan_op(c, &msg, false, 0);
		if (res < 0)
			return res;
		c->ahead_len += (size_t)res;
	}
	return 0;
}

int chan_recvv(struct chan *c, struct iovec *iov, int n)
{
	size_t want = chan_take_ahead(c, iov, n);
	int ret;

	if (want == 0)
		return 0;
	if (want >= sizeof(c->ahead))
		return chan_xfer(c, iov, n, false);
	ret = chan_fill_ahead(c, want);
	if (!ret)
		chan_take_ahead(c, iov, n);
	return ret;
}

int chan_recv(struct chan *c, void *buf, size_t len)
{
	struct iovec iov = { buf, len };

	return chan_recvv(c, &iov, 1);
}

int chan_recv_header(struct chan *c, struct stream_frame *f, uint64_t max)
{
	uint8_t hdr[STREAM_FRAME_HDR_SIZE];
	int ret = chan_recv(c, hdr, sizeof(hdr));

	return ret ?: stream_frame_parse_header(hdr, sizeof(hdr), f, max);
}

int chan_recv_payload(struct chan *c, const struct stream_frame *f, struct stream_buf *payload)
{
	int ret;

	stream_buf_reset(payload);
	ret = stream_buf_reserve(payload, f->length);
	if (ret)
		return ret;
	ret = chan_recv(c, payload->data, f->length);
	if (ret)
		return ret;
	payload->len = f->length;
	return stream_frame_check_payload(f, payload->data, payload->len);
}

int chan_recv_frame(struct chan *c, struct stream_frame *f, struct stream_buf *payload,
		    uint64_t max)
{
	return chan_recv_header(c, f, max) ?: chan_recv_payload(c, f, payload);
}

void chan_set_rate(struct chan *c, uint64_t bytes_per_s)
{
	uint64_t rate = bytes_per_s ? bytes_per_s : UINT64_MAX;

	/* TCP then spaces its packets evenly; other sockets refuse the option */
	(void)!setsockopt(c->fd, SOL_SOCKET, SO_MAX_PACING_RATE, &rate, sizeof(rate));
}

void chan_abort(struct chan *c)
{
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
}

void chan_close(struct chan *c)
{
	if (c->ring_ok)
		io_uring_queue_exit(&c->ring);
	if (c->fd >= 0)
		close(c->fd);
	c->ring_ok = false;
	c->fd = -1;
}
