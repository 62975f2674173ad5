/* `vmm ctl`: a blocking QMP client. One command: connect, read the greeting,
 * negotiate, execute, print the "return" (or the error) as pretty JSON and
 * exit 0/1. No command: a shell reading "COMMAND [ARGS-JSON]" lines (or raw
 * {"execute":..} objects) from stdin and printing replies and events. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "vmm/ctl.h"

#define CTL_GREETING_MS 10000

/* Bytes read from a fd, handed out one line at a time. */
struct ctl_lines {
	char *buf;
	size_t len, cap;
};

struct ctl_conn {
	int fd;
	struct ctl_lines in;
	ctl_event_fn event_fn;
	void *event_opaque;
	int next_id;
};

/* Reads once from FD into LB; bytes read, 0 at EOF, or -errno. */
static ssize_t lines_fill(struct ctl_lines *lb, int fd)
{
	ssize_t n;

	if (lb->cap - lb->len < 4096) {
		size_t cap = lb->cap ? lb->cap * 2 : 8192;
		char *p;

		if (cap > CTL_LINE_MAX + 8192)
			return -EMSGSIZE;
		p = realloc(lb->buf, cap);
		if (!p)
			return -ENOMEM;
		lb->buf = p;
		lb->cap = cap;
	}
	do
		n = read(fd, lb->buf + lb->len, lb->cap - lb->len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	lb->len += (size_t)n;
	return n;
}

/* Returns the next complete line (malloc'd, CR/LF stripped) or NULL. With
 * ALL, a final unterminated line counts too (input ended). */
static char *lines_take(struct ctl_lines *lb, bool all)
{
	char *nl = lb->len ? memchr(lb->buf, '\n', lb->len) : NULL;
	size_t n, skip;
	char *line;

	if (!nl && !(all && lb->len))
		return NULL;
	n = nl ? (size_t)(nl - lb->buf) : lb->len;
	skip = nl ? n + 1 : n;
	line = strndup(lb->buf, n);
	memmove(lb->buf, lb->buf + skip, lb->len - skip);
	lb->len -= skip;
	if (line && n && line[n - 1] == '\r')
		line[n - 1] = '\0';
	return line;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Receives one message within TIMEOUT_MS; 0, -ETIMEDOUT, -EPIPE at EOF,
 * -EPROTO for a line that is not a JSON object. */
static int ctl_recv(struct ctl_conn *c, int timeout_ms, struct json_object **out)
{
	struct timespec t0;
	char *line;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!(line = lines_take(&c->in, false))) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		long left = timeout_ms - ms_since(&t0);
		ssize_t n;

		if (left < 0)
			left = 0;
		n = poll(&pfd, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ETIMEDOUT;
		n = lines_fill(&c->in, c->fd);
		if (n <= 0)
			return n == 0 ? -EPIPE : (int)n;
	}
	*out = json_tokener_parse(line);
	free(line);
	if (!json_object_is_type(*out, json_type_object)) {
		json_object_put(*out);
		return -EPROTO;
	}
	return 0;
}

static int ctl_send(struct ctl_conn *c, struct json_object *msg)
{
	size_t len;
	const char *s = json_object_to_json_string_length(msg,
		JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	char *line = malloc(len + 2);
	size_t off = 0;
	int r = 0;

	if (!line)
		return -ENOMEM;
	memcpy(line, s, len);
	memcpy(line + len, "\r\n", 2);
	while (off < len + 2) {
		ssize_t n = send(c->fd, line + off, len + 2 - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		off += (size_t)n;
	}
	free(line);
	return r;
}

static void ctl_event(struct ctl_conn *c, struct json_object *msg)
{
	if (c->event_fn)
		c->event_fn(c->event_opaque, msg);
}

int ctl_execute(struct ctl_conn *c, const char *cmd, struct json_object *args,
		struct json_object **ret)
{
	struct json_object *req = json_object_new_object(), *msg, *v, *id;
	int my_id = ++c->next_id, r;

	*ret = NULL;
	json_object_object_add(req, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(req, "arguments", json_object_get(args));
	json_object_object_add(req, "id", json_object_new_int(my_id));
	r = ctl_send(c, req);
	json_object_put(req);
	while (r == 0 && (r = ctl_recv(c, CTL_TIMEOUT_MS, &msg)) == 0) {
		if (json_object_object_get_ex(msg, "event", NULL)) {
			ctl_event(c, msg);
		} else if (json_object_object_get_ex(msg, "id", &id) &&
			   json_object_get_int(id) != my_id) {
			/* a stale reply: not ours */
		} else if (json_object_object_get_ex(msg, "return", &v)) {
			*ret = json_object_get(v);
			json_object_put(msg);
			return 0;
		} else if (json_object_object_get_ex(msg, "error", &v)) {
			*ret = json_object_get(v);
			json_object_put(msg);
			return -EREMOTEIO;
		}
		json_object_put(msg);
	}
	return r;
}

int ctl_poll_events(struct ctl_conn *c, int timeout_ms)
{
	struct json_object *msg;
	int r;

	while ((r = ctl_recv(c, timeout_ms, &msg)) == 0 || r == -EPROTO) {
		if (r == 0) {
			if (json_object_object_get_ex(msg, "event", NULL))
				ctl_event(c, msg);
			json_object_put(msg);
		}
		timeout_ms = 0;       /* then only what is already there */
	}
	return r == -ETIMEDOUT ? 0 : r;
}

void ctl_set_event_fn(struct ctl_conn *c, ctl_event_fn fn, void *opaque)
{
	c->event_fn = fn;
	c->event_opaque = opaque;
}

void ctl_close(struct ctl_conn *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c->in.buf);
	free(c);
}

static int ctl_handshake(struct ctl_conn *c)
{
	struct json_object *msg, *ret = NULL;
	int r = ctl_recv(c, CTL_GREETING_MS, &msg);

	if (r < 0)
		return r == -EPIPE ? -ECONNRESET : r;
	r = json_object_object_get_ex(msg, "QMP", NULL) ? 0 : -EPROTO;
	json_object_put(msg);
	if (r == 0)
		r = ctl_execute(c, "qmp_capabilities", NULL, &ret);
	if (r == -EREMOTEIO)
		r = -EPROTO;
	json_object_put(ret);
	return r;
}

int ctl_connect(const char *path, struct ctl_conn **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ctl_conn *c;
	int r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		goto err;
	}
	r = ctl_handshake(c);
	if (r < 0)
		goto err;
	*out = c;
	return 0;
err:
	ctl_close(c);
	return r;
}

/* --- the command line ----------------------------------------------------- */

static void ctl_print(FILE *fp, struct json_object *o)
{
	bool empty = (json_object_is_type(o, json_type_object) && !json_object_object_length(o)) ||
		     (json_object_is_type(o, json_type_array) && !json_object_array_length(o));

	if (empty)    /* json-c's pretty printer spreads {} over two lines */
		fprintf(fp, "%s\n", json_object_is_type(o, json_type_object) ? "{}" : "[]");
	else
		fprintf(fp, "%s\n", json_object_to_json_string_ext(o,
		JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
		JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(fp);
}

static void ctl_print_event(void *opaque, struct json_object *ev)
{
	printf("%s\n", json_object_to_json_string_ext(ev,
		JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(stdout);
}

static const char *ctl_err_desc(struct json_object *err, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(err, key, &v) ? json_object_get_string(v) : "?";
}

/* Runs one command and prints its outcome; returns a CTL_EXIT_* status. */
static int ctl_run_one(struct ctl_conn *c, const char *cmd, struct json_object *args,
		       bool shell)
{
	struct json_object *ret;
	int r = ctl_execute(c, cmd, args, &ret);

	if (r == 0) {
		ctl_print(stdout, ret);
	} else if (r == -EREMOTEIO) {
		if (shell)
			printf("error: %s: %s\n", ctl_err_desc(ret, "class"),
			       ctl_err_desc(ret, "desc"));
		else
			ctl_print(stdout, ret);
		fflush(stdout);
		if (!shell)
			fprintf(stderr, "vmm: %s: %s\n", ctl_err_desc(ret, "class"),
				ctl_err_desc(ret, "desc"));
	} else {
		fprintf(stderr, "vmm: %s: %s\n", cmd, strerror(-r));
	}
	json_object_put(ret);
	return r == 0 ? CTL_EXIT_OK : r == -EREMOTEIO ? CTL_EXIT_ERROR : CTL_EXIT_CONN;
}

/* Parses ARGS-JSON (an object); NULL with a message on stderr if it is not. */
static struct json_object *ctl_parse_args(const char *text, bool *ok)
{
	struct json_object *o = json_tokener_parse(text);

	*ok = json_object_is_type(o, json_type_object);
	if (!*ok) {
		fprintf(stderr, "vmm: arguments must be a JSON object, got '%s'\n", text);
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* One shell line: "COMMAND [ARGS-JSON]" or a raw {"execute":..} object. */
static int ctl_shell_line(struct ctl_conn *c, char *line, bool *ending)
{
	struct json_object *args = NULL, *raw = NULL, *v;
	char *cmd = line + strspn(line, " \t"), *rest;
	bool ok = true;
	int r;

	if (!*cmd || *cmd == '#')
		return 0;
	if (*cmd == '{') {
		raw = ctl_parse_args(cmd, &ok);
		if (!ok)
			return 0;
		if (!json_object_object_get_ex(raw, "execute", &v) ||
		    !json_object_is_type(v, json_type_string)) {
			fprintf(stderr, "vmm: a raw request needs \"execute\"\n");
			json_object_put(raw);
			return 0;
		}
		cmd = (char *)json_object_get_string(v);
		json_object_object_get_ex(raw, "arguments", &args);
		args = json_object_get(args);
	} else {
		rest = cmd + strcspn(cmd, " \t");
		if (*rest) {
			*rest++ = '\0';
			rest += strspn(rest, " \t");
			if (*rest && !(args = ctl_parse_args(rest, &ok)))
				return 0;
		}
	}
	*ending = *ending || !strcmp(cmd, "quit") || !strcmp(cmd, "system_reset") ||
		  !strcmp(cmd, "system_powerdown");
	r = ctl_run_one(c, cmd, args, true);
	json_object_put(args);
	json_object_put(raw);
	return r == CTL_EXIT_CONN ? -EPIPE : 0;
}

/* Feeds complete stdin lines to the shell; -EPIPE once the connection died. */
static int ctl_shell_input(struct ctl_conn *c, struct ctl_lines *in, bool eof, bool *ending)
{
	char *line;
	int r = 0;

	while (r == 0 && (line = lines_take(in, eof))) {
		r = ctl_shell_line(c, line, ending);
		free(line);
		if (r == 0)
			r = ctl_poll_events(c, 0);
	}
	return r;
}

static int ctl_shell(struct ctl_conn *c)
{
	struct ctl_lines in = { 0 };
	bool tty = isatty(STDIN_FILENO), ending = false;
	int r = 0;

	ctl_set_event_fn(c, ctl_print_event, NULL);
	while (r == 0) {
		struct pollfd pfd[2] = { { STDIN_FILENO, POLLIN, 0 }, { c->fd, POLLIN, 0 } };
		ssize_t n;

		if (tty) {
			fputs("(vmm) ", stdout);
			fflush(stdout);
		}
		if (poll(pfd, 2, -1) < 0) {
			r = errno == EINTR ? 0 : -errno;
			continue;
		}
		if (pfd[1].revents)
			r = ctl_poll_events(c, 0);
		if (r || !pfd[0].revents)
			continue;
		n = lines_fill(&in, STDIN_FILENO);
		r = ctl_shell_input(c, &in, n <= 0, &ending);
		if (n <= 0)
			break;
	}
	free(in.buf);
	if (r == -EPIPE) {
		fprintf(stderr, "vmm: connection closed by the server\n");
		return ending ? CTL_EXIT_OK : CTL_EXIT_CONN;
	}
	return r ? CTL_EXIT_CONN : CTL_EXIT_OK;
}

int ctl_main(const struct vmm_config *cfg)
{
	struct json_object *args = NULL;
	struct ctl_conn *c;
	bool ok = true;
	int r;

	if (!cfg->qmp || cfg->nr_args > 2) {
		fprintf(stderr, "vmm: usage: vmm ctl --qmp unix:PATH [COMMAND [ARGS-JSON]]\n");
		return CTL_EXIT_USAGE;
	}
	if (cfg->nr_args == 2 && !(args = ctl_parse_args(cfg->args[1], &ok)))
		return CTL_EXIT_USAGE;
	r = ctl_connect(cfg->qmp, &c);
	if (r < 0) {
		fprintf(stderr, "vmm: cannot connect to QMP socket %s: %s\n", cfg->qmp,
			r == -EPROTO ? "not a QMP server" : strerror(-r));
		json_object_put(args);
		return CTL_EXIT_CONN;
	}
	if (cfg->nr_args == 0)
		r = ctl_shell(c);
	else
		r = ctl_run_one(c, cfg->args[0], args, false);
	json_object_put(args);
	ctl_close(c);
	return r;
}
