/*
 * Unit tests for the QMP server (src/vmm/qmp.c, qmp_cmd.c) with a fake
 * backend: a real unix socket and epoll loop on a helper thread, clients on
 * the test thread. Greeting, negotiation, every command and error class, id
 * echo, malformed/oversized/flooding/vanishing clients, events, socket file.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cmocka.h>

#include "vmm/loop.h"
#include "vmm/qmp.h"

#define RECV_TIMEOUT_S 5

struct fake {
	struct qmp_server *srv;
	const char *status;
	int stops, conts, quits, powerdowns, resets;
	int powerdown_ret;
};

struct env {
	char dir[64];
	char path[128];
	struct loop loop;
	pthread_t thread;
	struct fake fake;
};

/* One test-side connection with its own line buffer. */
struct tcli {
	int fd;
	char buf[256 * 1024];
	size_t len;
};

/* --- fake backend (runs on the loop thread) --- */

static int fake_stop(void *opaque)
{
	struct fake *f = opaque;

	f->stops++;
	if (!strcmp(f->status, "shutdown"))
		return -ESHUTDOWN;
	if (!strcmp(f->status, "running")) {
		f->status = "paused";
		qmp_server_event(f->srv, "STOP", NULL);
	}
	return 0;
}

static int fake_cont(void *opaque)
{
	struct fake *f = opaque;

	f->conts++;
	if (!strcmp(f->status, "shutdown"))
		return -ESHUTDOWN;
	if (!strcmp(f->status, "paused")) {
		f->status = "running";
		qmp_server_event(f->srv, "RESUME", NULL);
	}
	return 0;
}

static void fake_quit(void *opaque)
{
	struct fake *f = opaque;
	struct json_object *d = json_object_new_object();

	f->quits++;
	json_object_object_add(d, "guest", json_object_new_boolean(false));
	json_object_object_add(d, "reason", json_object_new_string("host-qmp-quit"));
	qmp_server_event(f->srv, "SHUTDOWN", d);
}

static int fake_powerdown(void *opaque)
{
	struct fake *f = opaque;

	f->powerdowns++;
	return f->powerdown_ret;
}

static void fake_reset(void *opaque)
{
	((struct fake *)opaque)->resets++;
}

static const char *fake_status(void *opaque)
{
	return ((struct fake *)opaque)->status;
}

static int fake_cpus(void *opaque, struct qmp_cpu_info *out, int max)
{
	for (int i = 0; i < 2 && i < max; i++)
		out[i] = (struct qmp_cpu_info){ .index = i, .thread_id = 1000 + i };
	return 2;
}

static const struct qmp_backend_ops fake_ops = {
	.stop = fake_stop, .cont = fake_cont, .quit = fake_quit,
	.powerdown = fake_powerdown, .reset = fake_reset,
	.status = fake_status, .cpus = fake_cpus,
};

/* An extra command table, as migration would add: raises any error class. */
static int cmd_test_fail(struct qmp_call *call, struct json_object *args,
			 struct json_object **ret)
{
	struct json_object *v;
	const char *cls;

	json_object_object_get_ex(args, "class", &v);
	cls = json_object_get_string(v);
	if (!strcmp(cls, "DeviceNotActive"))
		return qmp_call_error(call, QMP_ERR_DEVICE_NOT_ACTIVE, "not active");
	if (!strcmp(cls, "DeviceNotFound"))
		return qmp_call_error(call, QMP_ERR_DEVICE_NOT_FOUND, "not found");
	if (!strcmp(cls, "KVMMissingCap"))
		return qmp_call_error(call, QMP_ERR_KVM_MISSING_CAP, "no cap");
	if (!strcmp(cls, "errno"))
		return -ENOSPC;
	*ret = json_object_new_string(call->opaque);
	return 0;
}

static const struct qmp_param test_fail_params[] = {
	{ "class", json_type_string, false },
	{ "n", json_type_double, true },
	{ NULL },
};

static const struct qmp_command test_cmds[] = {
	{ "test-fail", cmd_test_fail, test_fail_params },
};

/* --- fixture --- */

static void *loop_thread(void *opaque)
{
	struct env *e = opaque;

	loop_run(&e->loop);
	return NULL;
}

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	strcpy(e->dir, "/tmp/test_qmp.XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	snprintf(e->path, sizeof(e->path), "%s/qmp.sock", e->dir);
	assert_int_equal(loop_init(&e->loop), 0);
	e->fake.status = "running";
	assert_int_equal(qmp_server_create(&e->fake.srv, &e->loop, e->path, &fake_ops,
					   &e->fake), 0);
	assert_int_equal(qmp_server_add_commands(e->fake.srv, test_cmds,
						 ARRAY_SIZE(test_cmds), "table-opaque"), 0);
	assert_int_equal(pthread_create(&e->thread, NULL, loop_thread, e), 0);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;

	loop_stop(&e->loop);
	pthread_join(e->thread, NULL);
	qmp_server_destroy(e->fake.srv);
	loop_destroy(&e->loop);
	assert_int_equal(access(e->path, F_OK), -1);   /* socket file removed */
	rmdir(e->dir);
	free(e);
	return 0;
}

/* --- client helpers --- */

static struct tcli *tc_open(struct env *e)
{
	struct tcli *c = calloc(1, sizeof(*c));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = RECV_TIMEOUT_S };

	strcpy(sa.sun_path, e->path);
	c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(c->fd >= 0);
	assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return c;
}

static void tc_close(struct tcli *c)
{
	close(c->fd);
	free(c);
}

static void tc_send(struct tcli *c, const char *s)
{
	assert_int_equal(send(c->fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

/* Next raw line including CRLF, or NULL at EOF/timeout. Caller frees. */
static char *tc_line(struct tcli *c)
{
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		ssize_t n;

		if (nl) {
			size_t len = (size_t)(nl - c->buf) + 1;
			char *line = strndup(c->buf, len);

			memmove(c->buf, c->buf + len, c->len - len);
			c->len -= len;
			return line;
		}
		n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (n <= 0)
			return NULL;
		c->len += (size_t)n;
	}
}

static struct json_object *tc_recv(struct tcli *c)
{
	char *line = tc_line(c);
	struct json_object *o;

	assert_non_null(line);
	assert_true(strlen(line) >= 2 && !strcmp(line + strlen(line) - 2, "\r\n"));
	o = json_tokener_parse(line);
	free(line);
	assert_non_null(o);
	return o;
}

/* Value at dotted PATH ("error.class"), NULL if absent. */
static struct json_object *jget(struct json_object *o, const char *path)
{
	char buf[128], *save, *k;

	snprintf(buf, sizeof(buf), "%s", path);
	for (k = strtok_r(buf, ".", &save); k && o; k = strtok_r(NULL, ".", &save))
		if (!json_object_object_get_ex(o, k, &o))
			return NULL;
	return o;
}

static const char *jstr(struct json_object *o, const char *path)
{
	struct json_object *v = jget(o, path);

	return v ? json_object_get_string(v) : "(absent)";
}

/* Sends S and returns the reply (skipping nothing: the next message). */
static struct json_object *tc_cmd(struct tcli *c, const char *s)
{
	tc_send(c, s);
	return tc_recv(c);
}

static void expect_error(struct tcli *c, const char *req, const char *cls, const char *desc)
{
	struct json_object *r = tc_cmd(c, req);

	assert_string_equal(jstr(r, "error.class"), cls);
	if (desc)
		assert_string_equal(jstr(r, "error.desc"), desc);
	json_object_put(r);
}

static void expect_return(struct tcli *c, const char *req)
{
	struct json_object *r = tc_cmd(c, req);

	assert_non_null(jget(r, "return"));
	json_object_put(r);
}

/* Reads the greeting and negotiates. */
static struct tcli *tc_ready(struct env *e)
{
	struct tcli *c = tc_open(e);

	json_object_put(tc_recv(c));
	expect_return(c, "{\"execute\":\"qmp_capabilities\"}\r\n");
	return c;
}

static void expect_event(struct tcli *c, const char *name)
{
	struct json_object *r = tc_recv(c);

	assert_string_equal(jstr(r, "event"), name);
	assert_non_null(jget(r, "timestamp.seconds"));
	assert_non_null(jget(r, "timestamp.microseconds"));
	json_object_put(r);
}

/* --- tests --- */

static void test_greeting(void **state)
{
	struct tcli *c = tc_open(*state);
	struct json_object *g = tc_recv(c);

	assert_true(json_object_is_type(jget(g, "QMP.version.qemu.major"), json_type_int));
	assert_true(json_object_is_type(jget(g, "QMP.version.qemu.minor"), json_type_int));
	assert_true(json_object_is_type(jget(g, "QMP.version.qemu.micro"), json_type_int));
	assert_memory_equal(jstr(g, "QMP.version.package"), "vmm ", 4);
	assert_int_equal(json_object_array_length(jget(g, "QMP.capabilities")), 0);
	json_object_put(g);
	tc_close(c);
}

static void test_negotiation(void **state)
{
	struct tcli *c = tc_open(*state);

	json_object_put(tc_recv(c));
	expect_error(c, "{\"execute\":\"query-status\"}", "CommandNotFound",
		     "Expecting capabilities negotiation with 'qmp_capabilities'");
	expect_error(c, "{\"execute\":\"no-such\"}", "CommandNotFound",
		     "Expecting capabilities negotiation with 'qmp_capabilities'");
	expect_error(c, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]}}",
		     "GenericError", "Capability 'oob' not available");
	expect_return(c, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[]}}");
	expect_error(c, "{\"execute\":\"qmp_capabilities\"}", "CommandNotFound",
		     "Capabilities negotiation is already complete, command ignored");
	expect_return(c, "{\"execute\":\"query-status\"}");
	tc_close(c);
}

static void test_queries(void **state)
{
	struct tcli *c = tc_ready(*state);
	struct json_object *r, *a;
	const char *names[] = { "qmp_capabilities", "query-version", "query-commands",
		"query-status", "stop", "cont", "quit", "system_powerdown", "system_reset",
		"query-cpus-fast", "test-fail" };

	r = tc_cmd(c, "{\"execute\":\"query-version\"}");
	assert_non_null(jget(r, "return.qemu.major"));
	assert_memory_equal(jstr(r, "return.package"), "vmm ", 4);
	json_object_put(r);

	r = tc_cmd(c, "{\"execute\":\"query-commands\"}");
	a = jget(r, "return");
	assert_int_equal(json_object_array_length(a), ARRAY_SIZE(names));
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		bool found = false;

		for (size_t j = 0; j < json_object_array_length(a); j++)
			found |= !strcmp(jstr(json_object_array_get_idx(a, j), "name"), names[i]);
		assert_true(found);
	}
	json_object_put(r);

	r = tc_cmd(c, "{\"execute\":\"query-status\"}");
	assert_true(json_object_get_boolean(jget(r, "return.running")));
	assert_false(json_object_get_boolean(jget(r, "return.singlestep")));
	assert_string_equal(jstr(r, "return.status"), "running");
	json_object_put(r);

	r = tc_cmd(c, "{\"execute\":\"query-cpus-fast\"}");
	a = jget(r, "return");
	assert_int_equal(json_object_array_length(a), 2);
	assert_int_equal(json_object_get_int(jget(json_object_array_get_idx(a, 1), "cpu-index")), 1);
	assert_int_equal(json_object_get_int(jget(json_object_array_get_idx(a, 1), "thread-id")), 1001);
	assert_string_equal(jstr(json_object_array_get_idx(a, 0), "qom-path"),
			    "/machine/unattached/device[0]");
	assert_string_equal(jstr(json_object_array_get_idx(a, 0), "target"), "x86_64");
	json_object_put(r);
	tc_close(c);
}

static void test_stop_cont(void **state)
{
	struct env *e = *state;
	struct tcli *c = tc_ready(e);
	struct json_object *r;

	tc_send(c, "{\"execute\":\"stop\",\"id\":\"s1\"}");
	expect_event(c, "STOP");          /* before the reply, as in QEMU */
	r = tc_recv(c);
	assert_string_equal(jstr(r, "id"), "s1");
	json_object_put(r);
	r = tc_cmd(c, "{\"execute\":\"query-status\"}");
	assert_false(json_object_get_boolean(jget(r, "return.running")));
	assert_string_equal(jstr(r, "return.status"), "paused");
	json_object_put(r);
	expect_return(c, "{\"execute\":\"stop\"}");     /* already paused: no event */
	tc_send(c, "{\"execute\":\"cont\"}");
	expect_event(c, "RESUME");
	json_object_put(tc_recv(c));
	expect_return(c, "{\"execute\":\"cont\"}");
	assert_int_equal(e->fake.stops, 2);
	assert_int_equal(e->fake.conts, 2);
	e->fake.status = "shutdown";
	expect_error(c, "{\"execute\":\"cont\"}", "GenericError",
		     "Resetting the Virtual Machine is required");
	expect_error(c, "{\"execute\":\"stop\"}", "GenericError", NULL);
	tc_close(c);
}

static void test_lifecycle_commands(void **state)
{
	struct env *e = *state;
	struct tcli *c = tc_ready(e);
	struct json_object *r;

	expect_return(c, "{\"execute\":\"system_powerdown\"}");
	assert_int_equal(e->fake.powerdowns, 1);
	e->fake.powerdown_ret = -ENODEV;
	expect_error(c, "{\"execute\":\"system_powerdown\"}", "GenericError", strerror(ENODEV));
	expect_return(c, "{\"execute\":\"system_reset\"}");
	assert_int_equal(e->fake.resets, 1);
	r = tc_cmd(c, "{\"execute\":\"quit\",\"id\":9}");
	/* SHUTDOWN (queued by the command) comes before the reply */
	assert_string_equal(jstr(r, "event"), "SHUTDOWN");
	assert_string_equal(jstr(r, "data.reason"), "host-qmp-quit");
	assert_false(json_object_get_boolean(jget(r, "data.guest")));
	json_object_put(r);
	r = tc_recv(c);
	assert_int_equal(json_object_get_int(jget(r, "id")), 9);
	assert_non_null(jget(r, "return"));
	json_object_put(r);
	assert_int_equal(e->fake.quits, 1);
	tc_close(c);
}

static void test_request_errors(void **state)
{
	struct tcli *c = tc_ready(*state);

	expect_error(c, "[1,2]", "GenericError", "QMP input must be a JSON object");
	expect_error(c, "\"stop\"\n", "GenericError", "QMP input must be a JSON object");
	expect_error(c, "null\n", "GenericError", "QMP input must be a JSON object");
	expect_error(c, "{\"id\":1}", "GenericError", "QMP input lacks member 'execute'");
	expect_error(c, "{\"execute\":1}", "GenericError",
		     "QMP input member 'execute' must be a string");
	expect_error(c, "{\"execute\":\"stop\",\"arguments\":[]}", "GenericError",
		     "QMP input member 'arguments' must be an object");
	expect_error(c, "{\"execute\":\"stop\",\"foo\":1}", "GenericError",
		     "QMP input member 'foo' is unexpected");
	expect_error(c, "{\"exec-oob\":\"stop\"}", "GenericError",
		     "QMP input member 'exec-oob' is unexpected");
	expect_error(c, "{\"execute\":\"no-such\"}", "CommandNotFound",
		     "The command no-such has not been found");
	expect_error(c, "{\"execute\":\"stop\",\"arguments\":{\"x\":1}}", "GenericError",
		     "Parameter 'x' is unexpected");
	expect_error(c, "{\"execute\":\"test-fail\"}", "GenericError",
		     "Parameter 'class' is missing");
	expect_error(c, "{\"execute\":\"test-fail\",\"arguments\":{\"class\":1}}",
		     "GenericError", "Invalid parameter type for 'class', expected: string");
	expect_error(c, "{\"execute\":\"test-fail\",\"arguments\":{\"class\":\"x\",\"n\":\"1\"}}",
		     "GenericError", "Invalid parameter type for 'n', expected: number");
	tc_close(c);
}

static void test_error_classes(void **state)
{
	struct tcli *c = tc_ready(*state);
	struct json_object *r;

	expect_error(c, "{\"execute\":\"test-fail\",\"arguments\":{\"class\":\"DeviceNotActive\"}}",
		     "DeviceNotActive", "not active");
	expect_error(c, "{\"execute\":\"test-fail\",\"arguments\":{\"class\":\"DeviceNotFound\"}}",
		     "DeviceNotFound", "not found");
	expect_error(c, "{\"execute\":\"test-fail\",\"arguments\":{\"class\":\"KVMMissingCap\"}}",
		     "KVMMissingCap", "no cap");
	expect_error(c, "{\"execute\":\"test-fail\",\"arguments\":{\"class\":\"errno\"}}",
		     "GenericError", strerror(ENOSPC));
	/* an added table's handlers get that table's opaque; ints pass as numbers */
	r = tc_cmd(c, "{\"execute\":\"test-fail\",\"arguments\":{\"class\":\"ok\",\"n\":2}}");
	assert_string_equal(jstr(r, "return"), "table-opaque");
	json_object_put(r);
	tc_close(c);
}

static void test_id_echo(void **state)
{
	struct tcli *c = tc_open(*state);
	struct json_object *r;

	json_object_put(tc_recv(c));
	r = tc_cmd(c, "{\"execute\":\"query-status\",\"id\":{\"a\":[1,\"x\"]}}");
	assert_string_equal(jstr(r, "error.class"), "CommandNotFound");
	assert_int_equal(json_object_get_int(json_object_array_get_idx(jget(r, "id.a"), 0)), 1);
	json_object_put(r);
	r = tc_cmd(c, "{\"id\":\"neg\",\"execute\":\"qmp_capabilities\"}");
	assert_string_equal(jstr(r, "id"), "neg");
	assert_non_null(jget(r, "return"));
	json_object_put(r);
	r = tc_cmd(c, "{\"execute\":\"stop\",\"arguments\":{\"bad\":1},\"id\":42}");
	assert_int_equal(json_object_get_int(jget(r, "id")), 42);
	assert_non_null(jget(r, "error"));
	json_object_put(r);
	r = tc_cmd(c, "{\"execute\":\"query-status\",\"id\":null}");
	assert_true(json_object_object_get_ex(r, "id", NULL));
	json_object_put(r);
	r = tc_cmd(c, "{\"execute\":\"query-status\"}");
	assert_false(json_object_object_get_ex(r, "id", NULL));
	json_object_put(r);
	tc_close(c);
}

static void test_malformed(void **state)
{
	struct tcli *c = tc_ready(*state);
	struct json_object *r;

	expect_error(c, "{\"execute\": tru}\r\n", "GenericError", NULL);
	expect_error(c, "}}}\n", "GenericError", NULL);
	r = tc_cmd(c, "{\"execute\":\"query-status\",\"id\":1}\r\n");
	assert_int_equal(json_object_get_int(jget(r, "id")), 1);
	json_object_put(r);
	/* one request split over many writes, two requests in one write */
	tc_send(c, "{\"exec");
	usleep(20000);
	tc_send(c, "ute\":\"query-st");
	usleep(20000);
	r = tc_cmd(c, "atus\",\"id\":2}{\"execute\":\"query-status\",\"id\":3}\r\n");
	assert_int_equal(json_object_get_int(jget(r, "id")), 2);
	json_object_put(r);
	r = tc_recv(c);
	assert_int_equal(json_object_get_int(jget(r, "id")), 3);
	json_object_put(r);
	/* nesting past the parser's depth limit is an error, not a crash */
	{
		char deep[400];

		memset(deep, '[', 300);
		strcpy(deep + 300, "\n");
		expect_error(c, deep, "GenericError", NULL);
	}
	expect_return(c, "{\"execute\":\"query-status\"}");
	tc_close(c);
}

static void test_oversize(void **state)
{
	struct env *e = *state;
	struct tcli *c = tc_ready(e), *other = tc_ready(e);
	size_t n = QMP_MSG_MAX + 4096;
	char *big = malloc(n + 64), *line;
	struct json_object *r;

	strcpy(big, "{\"execute\":\"stop\",\"id\":\"");
	memset(big + strlen(big), 'a', n);
	big[n] = '\0';
	send(c->fd, big, strlen(big), MSG_NOSIGNAL);
	r = tc_recv(c);
	assert_string_equal(jstr(r, "error.class"), "GenericError");
	json_object_put(r);
	line = tc_line(c);
	assert_null(line);                         /* then dropped */
	expect_return(other, "{\"execute\":\"query-status\"}");
	assert_int_equal(e->fake.stops, 0);
	free(big);
	tc_close(c);
	tc_close(other);
}

static void test_flood(void **state)
{
	struct env *e = *state;
	struct tcli *c = tc_ready(e), *other = tc_ready(e);
	const char *req = "{\"execute\":\"query-cpus-fast\"}{\"execute\":\"query-commands\"}";
	bool dropped = false;
	char buf[65536];

	/* never reads: its unread replies pass QMP_OUT_MAX and it is dropped */
	for (int i = 0; i < 100000 && !dropped; i++)
		dropped = send(c->fd, req, strlen(req), MSG_NOSIGNAL) < 0;
	if (!dropped) {
		while (recv(c->fd, buf, sizeof(buf), 0) > 0)
			;
	}
	expect_return(other, "{\"execute\":\"query-status\"}");
	tc_close(c);
	tc_close(other);
}

static void test_two_clients_events(void **state)
{
	struct env *e = *state;
	struct tcli *a = tc_ready(e), *b = tc_ready(e), *raw = tc_open(e);
	struct json_object *r, *d = json_object_new_object();

	json_object_put(tc_recv(raw));           /* greeting; not negotiated */
	json_object_object_add(d, "status", json_object_new_string("active"));
	qmp_server_event(e->fake.srv, "MIGRATION", d);  /* from a foreign thread */
	for (int i = 0; i < 2; i++) {
		r = tc_recv(i ? b : a);
		assert_string_equal(jstr(r, "event"), "MIGRATION");
		assert_string_equal(jstr(r, "data.status"), "active");
		assert_non_null(jget(r, "timestamp.microseconds"));
		json_object_put(r);
	}
	/* stop from A: both see STOP, only A gets the reply */
	tc_send(a, "{\"execute\":\"stop\",\"id\":\"a\"}");
	expect_event(a, "STOP");
	r = tc_recv(a);
	assert_string_equal(jstr(r, "id"), "a");
	json_object_put(r);
	expect_event(b, "STOP");
	r = tc_cmd(b, "{\"execute\":\"query-status\",\"id\":\"b\"}");
	assert_string_equal(jstr(r, "id"), "b");
	assert_string_equal(jstr(r, "return.status"), "paused");
	json_object_put(r);
	/* the unnegotiated client got no events: its next message is the reply */
	r = tc_cmd(raw, "{\"execute\":\"qmp_capabilities\"}");
	assert_non_null(jget(r, "return"));
	json_object_put(r);
	tc_close(a);
	tc_close(b);
	tc_close(raw);
}

static void test_vanishing_client(void **state)
{
	struct env *e = *state;
	struct tcli *watcher = tc_ready(e), *c = tc_ready(e);

	tc_send(c, "{\"execute\":\"stop\"}");
	tc_close(c);                               /* gone before the reply */
	expect_event(watcher, "STOP");
	expect_return(watcher, "{\"execute\":\"query-status\"}");
	for (int i = 0; i < 10; i++) {             /* half-written requests too */
		c = tc_open(e);
		tc_send(c, "{\"execute\":\"qmp_capabilities\"}{\"execute\":\"cont\"");
		tc_close(c);
	}
	expect_return(watcher, "{\"execute\":\"query-status\"}");
	tc_close(watcher);
}

static void test_client_limit(void **state)
{
	struct env *e = *state;
	struct tcli *c[QMP_MAX_CLIENTS], *extra;
	char *line;

	for (int i = 0; i < QMP_MAX_CLIENTS; i++)
		c[i] = tc_ready(e);
	extra = tc_open(e);
	line = tc_line(extra);
	assert_null(line);                         /* closed without a greeting */
	tc_close(extra);
	tc_close(c[0]);
	expect_return(c[1], "{\"execute\":\"query-status\"}");  /* c[0] reaped */
	extra = tc_ready(e);
	tc_close(extra);
	for (int i = 1; i < QMP_MAX_CLIENTS; i++)
		tc_close(c[i]);
}

static void test_socket_file(void **state)
{
	struct env *e = *state;
	struct qmp_server *srv2;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct loop loop2;
	struct stat st;
	char path[160];
	int fd;

	assert_int_equal(stat(e->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(loop_init(&loop2), 0);
	/* live server at the path: refused */
	assert_int_equal(qmp_server_create(&srv2, &loop2, e->path, &fake_ops, &e->fake),
			 -EADDRINUSE);
	/* a regular file is never removed */
	snprintf(path, sizeof(path), "%s/file", e->dir);
	close(open(path, O_CREAT | O_WRONLY, 0600));
	assert_int_equal(qmp_server_create(&srv2, &loop2, path, &fake_ops, &e->fake), -EEXIST);
	unlink(path);
	/* a stale socket (nobody listening) is replaced */
	snprintf(path, sizeof(path), "%s/stale", e->dir);
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_int_equal(qmp_server_create(&srv2, &loop2, path, &fake_ops, &e->fake), 0);
	qmp_server_destroy(srv2);
	assert_int_equal(access(path, F_OK), -1);
	loop_destroy(&loop2);
}

static void test_memory_client(void **state)
{
	struct qmp_server *srv;
	struct qmp_client *c;
	struct fake f = { .status = "running" };
	const char *req = "{\"execute\":\"qmp_capabilities\"}\r\n{\"execute\":\"stop\"}";
	char out[4096];
	size_t n;

	assert_int_equal(qmp_server_create(&srv, NULL, NULL, &fake_ops, &f), 0);
	f.srv = srv;
	assert_int_equal(qmp_server_attach(srv, -1, &c), 0);
	n = qmp_client_drain(c, out, sizeof(out));
	assert_true(n > 0 && !memcmp(out, "{\"QMP\":", 7));
	for (size_t i = 0; req[i]; i++)            /* byte by byte */
		assert_int_equal(qmp_client_feed(c, &req[i], 1), 0);
	n = qmp_client_drain(c, out, sizeof(out) - 1);
	out[n] = '\0';
	assert_non_null(strstr(out, "{\"return\":{}}\r\n{\"event\":\"STOP\""));
	assert_int_equal(f.stops, 1);
	assert_int_equal(qmp_server_add_commands(srv, test_cmds, 1, NULL), 0);
	assert_int_equal(qmp_server_add_commands(srv, test_cmds, 1, NULL), -EEXIST);
	qmp_server_destroy(srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_greeting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_negotiation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_cont, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lifecycle_commands, setup, teardown),
		cmocka_unit_test_setup_teardown(test_request_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_classes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_id_echo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oversize, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flood, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_clients_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vanishing_client, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_file, setup, teardown),
		cmocka_unit_test(test_memory_client),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
