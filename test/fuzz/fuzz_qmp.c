/*
 * libFuzzer target for the QMP request parser and dispatcher: the input is
 * fed to an in-memory client (in pieces whose sizes the input picks) of a
 * socketless server with a fake backend. Oracle: every byte the server sends
 * is a CRLF-terminated JSON object, and nothing crashes or leaks.
 * Build and run: test/fuzz/run-fuzz.sh qmp SECONDS
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vmm/qmp.h"

struct fake {
	struct qmp_server *srv;
	const char *status;
};

static int fz_stop(void *o)
{
	struct fake *f = o;

	if (!strcmp(f->status, "running")) {
		f->status = "paused";
		qmp_server_event(f->srv, "STOP", NULL);
	}
	return 0;
}

static int fz_cont(void *o)
{
	struct fake *f = o;

	if (!strcmp(f->status, "paused")) {
		f->status = "running";
		qmp_server_event(f->srv, "RESUME", NULL);
	}
	return 0;
}

static void fz_quit(void *o)
{
	struct fake *f = o;
	struct json_object *d = json_object_new_object();

	json_object_object_add(d, "guest", json_object_new_boolean(0));
	json_object_object_add(d, "reason", json_object_new_string("host-qmp-quit"));
	qmp_server_event(f->srv, "SHUTDOWN", d);
}

static int fz_powerdown(void *o) { return -ENODEV; }
static void fz_reset(void *o) { }
static const char *fz_status(void *o) { return ((struct fake *)o)->status; }

static int fz_cpus(void *o, struct qmp_cpu_info *out, int max)
{
	for (int i = 0; i < 3 && i < max; i++)
		out[i] = (struct qmp_cpu_info){ .index = i, .thread_id = 100 + i };
	return 3;
}

static const struct qmp_backend_ops fz_ops = {
	.stop = fz_stop, .cont = fz_cont, .quit = fz_quit, .powerdown = fz_powerdown,
	.reset = fz_reset, .status = fz_status, .cpus = fz_cpus,
};

/* Checks that OUT[0..LEN) is a sequence of CRLF-terminated JSON objects. */
static void check_output(const char *out, size_t len)
{
	while (len > 0) {
		const char *crlf = memmem(out, len, "\r\n", 2);
		struct json_object *o;
		char *line;
		size_t n;

		if (!crlf) {
			fprintf(stderr, "fuzz_qmp: unterminated output line\n");
			abort();
		}
		n = (size_t)(crlf - out);
		line = strndup(out, n);
		o = line ? json_tokener_parse(line) : NULL;
		free(line);
		if (!json_object_is_type(o, json_type_object)) {
			fprintf(stderr, "fuzz_qmp: output line is not a JSON object\n");
			abort();
		}
		json_object_put(o);
		out += n + 2;
		len -= n + 2;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char out[QMP_OUT_MAX];
	struct fake f = { .status = "running" };
	struct qmp_client *c;
	size_t n, off = 0, piece;
	uint8_t mode;

	if (size < 1)
		return 0;
	mode = data[0];
	if (qmp_server_create(&f.srv, NULL, NULL, &fz_ops, &f) < 0)
		return 0;
	if (qmp_server_attach(f.srv, -1, &c) < 0)
		goto out;
	if ((mode & 1) && qmp_client_feed(c, "{\"execute\":\"qmp_capabilities\"}", 30) < 0)
		goto out;
	piece = (mode >> 1) ? (mode >> 1) : size;   /* 1..127 bytes, or all at once */
	for (off = 1; off < size; off += n) {
		n = size - off < piece ? size - off : piece;
		if (mode & 0x80)
			qmp_server_event(f.srv, "FUZZ", NULL);
		if (qmp_client_feed(c, data + off, n) < 0)
			break;
		check_output(out, qmp_client_drain(c, out, sizeof(out)));
	}
	check_output(out, qmp_client_drain(c, out, sizeof(out)));
out:
	qmp_server_destroy(f.srv);
	return 0;
}
