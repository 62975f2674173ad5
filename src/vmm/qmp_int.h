/* Private to the QMP module (qmp.c: transport, framing, events; qmp_cmd.c:
 * requests, dispatcher and built-in commands): the server and client structs and the
 * few functions the two files share. Not for other modules: use vmm/qmp.h. */
#ifndef VMM_QMP_INT_H
#define VMM_QMP_INT_H

#include <pthread.h>
#include <time.h>
#include <sys/stat.h>
#include "vmm/qmp.h"

struct qmp_table {
	const struct qmp_command *cmds;
	size_t n;
	void *opaque;
};

struct qmp_event {
	struct qmp_event *next;
	char *name;
	struct json_object *data;
	struct timespec ts;
};

/* Owned by the loop thread. */
struct qmp_client {
	struct qmp_server *srv;
	struct qmp_client *next;
	int fd;                  /* -1: in-memory or dropped */
	bool mem;                /* in-memory: freed only with the server */
	bool negotiated;
	bool dead;               /* dropped; freed by server_reap() */
	bool discarding;         /* skipping to '\n' after a parse error */
	bool want_out;           /* EPOLLOUT registered */
	struct json_tokener *tok;
	size_t msg_bytes;        /* bytes of the request being parsed */
	char *out;
	size_t out_off, out_len, out_cap;
};

struct qmp_server {
	struct loop *loop;
	char *path;              /* socket file we created, or NULL */
	struct stat path_st;
	int listen_fd;
	int event_fd;
	const struct qmp_backend_ops *ops;
	void *opaque;
	struct qmp_table tables[1 + QMP_MAX_TABLES];
	int nr_tables;
	struct qmp_client *clients;
	int nr_clients;
	/* lock guards events, events_tail, nr_events (filled by any thread). */
	pthread_mutex_t lock;
	struct qmp_event *events;
	struct qmp_event **events_tail;
	int nr_events;
};

/* Built-in commands (qmp_cmd.c); always table 0. */
extern const struct qmp_command qmp_builtin_cmds[];
extern const size_t qmp_nr_builtin_cmds;

/* Returns {"qemu":{"major",..},"package":"vmm X.Y.Z"} (qmp_cmd.c). */
struct json_object *qmp_version_obj(void);
/* Answers request REQ from C (qmp_cmd.c). */
void qmp_client_request(struct qmp_client *c, struct json_object *req);
/* Queues OBJ as one line for C, dropping C on overflow (qmp.c). */
void qmp_client_send(struct qmp_client *c, struct json_object *obj);
/* Sends every queued event to every negotiated client; loop thread (qmp.c). */
void qmp_deliver_events(struct qmp_server *srv);

#endif
