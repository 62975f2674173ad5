/* Service manager notifications (the sd_notify datagram protocol): a
 * service of Type=notify is "started" once it sends READY=1 to the socket
 * named by $NOTIFY_SOCKET. Without that variable every call does nothing. */
#ifndef VMM_NOTIFY_H
#define VMM_NOTIFY_H

/* Sends STATE (newline-separated assignments, e.g. "READY=1\nSTATUS=running")
 * to $NOTIFY_SOCKET (a path, or @name for the abstract namespace); 1 if sent,
 * 0 if there is no such variable, or -errno. */
int notify_send(const char *state);
/* READY=1 plus a STATUS= line with MSG (may be NULL). */
int notify_ready(const char *msg);
/* STOPPING=1: the guest ended or a stop was requested; shutdown follows. */
int notify_stopping(void);

#endif
