/* `vmm migrate`: drives a live migration over a running vmm's QMP socket,
 * with a progress line on a terminal and a summary at the end. Ctrl-C asks
 * the source to cancel (the guest keeps running there). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "vmm/ctl.h"
#include "vmm/migrate_cli.h"

#define MIGCLI_POLL_MS 250

static volatile sig_atomic_t migcli_interrupted;

static void migcli_on_sigint(int sig)
{
	(void)sig;
	migcli_interrupted = 1;
}

static int64_t jint(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : 0;
}

static const char *jstr(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : "";
}

struct migcli_opts {
	const char *uri;
	struct json_object *params;   /* migrate-set-parameters arguments */
};

static int migcli_parse(const struct vmm_config *cfg, struct migcli_opts *o)
{
	o->uri = NULL;
	o->params = json_object_new_object();
	for (int i = 0; i < cfg->nr_args; i++) {
		const char *a = cfg->args[i], *v = i + 1 < cfg->nr_args ? cfg->args[i + 1] : NULL;
		uint64_t n;

		if (!strcmp(a, "--downtime-limit") || !strcmp(a, "--max-bandwidth") ||
		    !strcmp(a, "--multifd-channels")) {
			if (!v || cli_parse_size(v, &n)) {
				fprintf(stderr, "vmm migrate: %s needs a number, got '%s'\n", a, v ? v : "");
				return -EINVAL;
			}
			json_object_object_add(o->params, a + 2, json_object_new_int64((int64_t)n));
			i++;
		} else if (a[0] == '-' || o->uri) {
			fprintf(stderr, "vmm migrate: unexpected argument '%s' (see vmm migrate --help)\n", a);
			return -EINVAL;
		} else {
			o->uri = a;
		}
	}
	if (!o->uri) {
		fprintf(stderr, "vmm migrate: missing destination URI (tcp:HOST:PORT or unix:PATH)\n");
		return -EINVAL;
	}
	return 0;
}

static void migcli_progress(struct json_object *info, bool tty)
{
	struct json_object *ram = json_object_object_get(info, "ram");
	static int64_t last_pass = -1;
	int64_t pass = jint(info, "x-pass");
	double mbps = 0;

	if (!ram)
		return;
	mbps = json_object_get_double(json_object_object_get(ram, "mbps"));
	if (!tty && pass == last_pass)
		return;
	last_pass = pass;
	printf("%spass %lld  remaining %.1f MiB  %.1f MiB/s  dirty %lld pages/s  expected downtime %lld ms%s",
	       tty ? "\r\033[K" : "", (long long)pass, jint(ram, "remaining") / 1048576.0,
	       mbps / 8.388608, (long long)jint(ram, "dirty-pages-rate"),
	       (long long)jint(info, "expected-downtime"), tty ? "" : "\n");
	fflush(stdout);
}

static void migcli_summary(struct json_object *info)
{
	struct json_object *ram = json_object_object_get(info, "ram");
	struct json_object *b = json_object_object_get(info, "x-downtime-breakdown");

	printf("completed: total %.2f s, downtime %lld ms (final RAM %lld, vCPU %lld, devices %lld, "
	       "handoff %lld), setup %lld ms, %.1f MiB sent in %lld passes (%lld zero pages)\n",
	       jint(info, "total-time") / 1000.0, (long long)jint(info, "downtime"),
	       (long long)jint(b, "ram"), (long long)jint(b, "vcpu"), (long long)jint(b, "device"),
	       (long long)jint(b, "handoff"), (long long)jint(info, "setup-time"),
	       jint(ram, "transferred") / 1048576.0, (long long)jint(info, "x-pass"),
	       (long long)jint(ram, "duplicate"));
}

/* Polls query-migrate until the migration is over; returns its status. */
static int migcli_watch(struct ctl_conn *c, bool tty, struct json_object **final)
{
	bool cancel_sent = false;

	for (;;) {
		struct json_object *info = NULL;
		const char *st;
		int ret;

		if (migcli_interrupted && !cancel_sent) {
			struct json_object *r = NULL;

			cancel_sent = true;
			fprintf(stderr, "\nvmm migrate: cancelling (the guest keeps running)\n");
			if (ctl_execute(c, "migrate_cancel", NULL, &r))
				fprintf(stderr, "vmm migrate: %s\n", jstr(r, "desc"));
			json_object_put(r);
		}
		ret = ctl_execute(c, "query-migrate", NULL, &info);
		if (ret) {
			json_object_put(info);
			return ret;
		}
		st = jstr(info, "status");
		if (!strcmp(st, "completed") || !strcmp(st, "failed") || !strcmp(st, "cancelled")) {
			*final = info;
			return 0;
		}
		migcli_progress(info, tty);
		json_object_put(info);
		usleep(MIGCLI_POLL_MS * 1000);
	}
}

int migrate_cli_main(const struct vmm_config *cfg)
{
	struct migcli_opts o;
	struct ctl_conn *c = NULL;
	struct json_object *args, *r = NULL, *info = NULL;
	bool tty = isatty(STDOUT_FILENO);
	int status = 1, ret;

	if (migcli_parse(cfg, &o))
		goto out;
	ret = ctl_connect(cfg->qmp, &c);
	if (ret) {
		fprintf(stderr, "vmm migrate: cannot connect to %s: %s\n", cfg->qmp, strerror(-ret));
		goto out;
	}
	if (json_object_object_length(o.params) &&
	    ctl_execute(c, "migrate-set-parameters", o.params, &r)) {
		fprintf(stderr, "vmm migrate: %s\n", jstr(r, "desc"));
		goto out;
	}
	json_object_put(r);
	r = NULL;
	args = json_object_new_object();
	json_object_object_add(args, "uri", json_object_new_string(o.uri));
	ret = ctl_execute(c, "migrate", args, &r);
	json_object_put(args);
	if (ret) {
		fprintf(stderr, "vmm migrate: %s\n", ret == -EREMOTEIO ? jstr(r, "desc") : strerror(-ret));
		goto out;
	}
	signal(SIGINT, migcli_on_sigint);
	ret = migcli_watch(c, tty, &info);
	if (tty)
		printf("\r\033[K");
	if (ret) {
		fprintf(stderr, "vmm migrate: lost the QMP connection: %s\n", strerror(-ret));
	} else if (!strcmp(jstr(info, "status"), "completed")) {
		migcli_summary(info);
		status = 0;
	} else {
		fprintf(stderr, "vmm migrate: %s: %s\n", jstr(info, "status"), jstr(info, "error-desc"));
	}
out:
	json_object_put(info);
	json_object_put(r);
	json_object_put(o.params);
	ctl_close(c);
	return status;
}
