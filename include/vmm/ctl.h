/* `vmm ctl`: a QMP client for the command line (one command, or an
 * interactive shell), built on a small blocking client that other
 * subcommands (`vmm migrate`) can reuse: connect + negotiate, execute a
 * command, receive events through a callback. */
#ifndef VMM_CTL_H
#define VMM_CTL_H

#include <json-c/json.h>
#include "vmm/cli.h"

#define CTL_TIMEOUT_MS   60000          /* longest wait for a reply */
#define CTL_LINE_MAX     (16 << 20)     /* longest message accepted */

/* Exit statuses of `vmm ctl`. */
#define CTL_EXIT_OK      0
#define CTL_EXIT_ERROR   1   /* the server answered with an error */
#define CTL_EXIT_USAGE   2   /* bad words or ARGS-JSON */
#define CTL_EXIT_CONN    3   /* cannot connect, or the connection failed */

struct ctl_conn;

/* Called with each event ({"event":..,"data":..,"timestamp":..}) read while
 * waiting for a reply or in ctl_poll_events; EV is freed after the call. */
typedef void (*ctl_event_fn)(void *opaque, struct json_object *ev);

/* Runs `vmm ctl` as described by CFG; returns the process exit status. */
int ctl_main(const struct vmm_config *cfg);
/* Connects to the QMP socket PATH, reads the greeting and negotiates
 * capabilities; 0 or -errno (-EPROTO: not a QMP server). */
int ctl_connect(const char *path, struct ctl_conn **out) VMM_MUST_CHECK;
/* Sets the event callback (NULL: events are dropped). */
void ctl_set_event_fn(struct ctl_conn *c, ctl_event_fn fn, void *opaque);
/* Executes CMD with ARGS (borrowed, NULL for none); on success 0 with *RET
 * the "return" value (caller puts it). On an error reply -EREMOTEIO with
 * *RET the "error" object ({"class","desc"}); other failures -errno. */
int ctl_execute(struct ctl_conn *c, const char *cmd, struct json_object *args,
		struct json_object **ret) VMM_MUST_CHECK;
/* Waits up to TIMEOUT_MS for events and passes them to the callback; 0,
 * or -EPIPE once the server has closed the connection. */
int ctl_poll_events(struct ctl_conn *c, int timeout_ms) VMM_MUST_CHECK;
/* Closes the connection and frees C (NULL is fine). */
void ctl_close(struct ctl_conn *c);

#endif
