/* Migration transport: a connected stream socket (TCP or unix) driven by
 * io_uring, with every wait bounded by a timeout, plus whole-frame send and
 * receive on top of stream.h's framing. URIs: tcp:HOST:PORT, unix:PATH. */
#ifndef VMM_CHAN_H
#define VMM_CHAN_H

#include <liburing.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "vmm/log.h"
#include "vmm/stream.h"

#define CHAN_TIMEOUT_MS 30000
/* Connections a listener queues before it accepts: a multifd source
 * connects all its page streams (RAM_MAX_STREAMS) before the destination
 * accepts the first extra one. */
#define CHAN_BACKLOG 16
/* A receive of fewer bytes than this reads up to this many (chan_recv):
 * a frame header plus a full page frame's index */
#define CHAN_AHEAD 4096

/* One end of a migration connection; used by one thread at a time, except
 * chan_abort() which any thread may call. */
struct chan {
	int fd;
	struct io_uring ring;
	bool ring_ok;
	int timeout_ms;             /* bound on any single wait */
	uint64_t sent;              /* bytes sent */
	uint64_t received;          /* bytes received */
	/* what a small receive read past the bytes it wanted, handed out
	 * first by the next ones: a page frame's header, index and the start
	 * of its data come in one read, not three */
	uint8_t ahead[CHAN_AHEAD];
	size_t ahead_off, ahead_len;
};

/* Connects to URI within TIMEOUT_MS; 0 or -errno with a reason in ERR. */
int chan_connect(struct chan *c, const char *uri, int timeout_ms, char *err, size_t errlen)
	VMM_MUST_CHECK;
/* Binds and listens on URI (only the address given); returns the listening
 * fd or -errno with a reason in ERR. */
int chan_listen(const char *uri, char *err, size_t errlen) VMM_MUST_CHECK;
/* Accepts one connection on LFD within TIMEOUT_MS (-1: forever); 0 or -errno. */
int chan_accept(struct chan *c, int lfd, int timeout_ms) VMM_MUST_CHECK;
/* Sends all of IOV[0..N) or fails (-ETIMEDOUT, -EPIPE, ...); IOV's entries
 * are used up (advanced) on the way. */
int chan_sendv(struct chan *c, struct iovec *iov, int n) VMM_MUST_CHECK;
/* Sends LEN bytes of BUF or fails. */
int chan_send(struct chan *c, const void *buf, size_t len) VMM_MUST_CHECK;
/* Caps a TCP connection's pacing rate (0: none), so the kernel spreads the
 * packets; a no-op on other sockets. */
void chan_set_rate(struct chan *c, uint64_t bytes_per_s);
/* Receives exactly LEN bytes; -ECONNRESET on EOF, -ETIMEDOUT when stalled. */
int chan_recv(struct chan *c, void *buf, size_t len) VMM_MUST_CHECK;
/* Receives exactly the bytes IOV[0..N) holds, using its entries up; 0 or
 * -errno as chan_recv(). */
int chan_recvv(struct chan *c, struct iovec *iov, int n) VMM_MUST_CHECK;
/* Receives one frame header, checked, announcing at most MAX payload bytes;
 * 0 or -errno. */
int chan_recv_header(struct chan *c, struct stream_frame *f, uint64_t max) VMM_MUST_CHECK;
/* Receives the payload of the frame F into PAYLOAD (reset first) and checks
 * it; 0 or -errno. */
int chan_recv_payload(struct chan *c, const struct stream_frame *f,
		      struct stream_buf *payload) VMM_MUST_CHECK;
/* Receives one frame whose payload is at most MAX bytes into PAYLOAD
 * (reset first), checking both crcs; 0 or -errno. */
int chan_recv_frame(struct chan *c, struct stream_frame *f, struct stream_buf *payload,
		    uint64_t max) VMM_MUST_CHECK;
/* Shuts the socket down so pending and future operations fail at once. */
void chan_abort(struct chan *c);
/* Closes the connection. */
void chan_close(struct chan *c);

#endif
