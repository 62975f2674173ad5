/* Least privilege for `vmm run`: once /dev/kvm, taps, disks and sockets are
 * open, drop every capability (and with --user switch to that user), and
 * confine each thread kind to a seccomp allowlist; anything else kills the
 * process with SIGSYS after one line on stderr naming the call.
 *
 * Order: privilege_configure() in main() before any thread exists;
 * privilege_seccomp(kind) first thing in every thread; the control thread
 * calls privilege_drop() then privilege_seccomp(THREAD_CONTROL) when setup
 * is done. A thread's effective filter is its own AND its creator's (seccomp
 * filters are inherited and stack), so a kind that creates threads allows
 * what they need: control allows everything, migration allows what vCPUs
 * need (the destination starts them). */
#ifndef VMM_PRIVILEGE_H
#define VMM_PRIVILEGE_H

#include "vmm/cli.h"
#include "vmm/log.h"

enum thread_kind { THREAD_CONTROL, THREAD_VCPU, THREAD_IO, THREAD_MIGRATION, THREAD_KINDS };

/* Records CFG's --user/--seccomp (resolving the user now, while files can
 * still be read) and installs the SIGSYS reporter; 0 or -errno with a
 * message printed. Without this call the other functions do nothing. */
int privilege_configure(const struct vmm_config *cfg) VMM_MUST_CHECK;
/* Control thread, setup done: hands the QMP socket to the --user, drops all
 * capabilities and bounding set, switches uid/gid; 0 or -errno (printed). */
int privilege_drop(void) VMM_MUST_CHECK;
/* Start of a thread of KIND: drops this thread's capabilities, names it
 * (vmm-vcpu, vmm-io, vmm-mig) and loads KIND's filter; 0 or -errno (printed).
 * Other threads than the control thread cannot go on unconfined, so there a
 * failure aborts the process. Filters are off with --seccomp off and all of
 * this is a no-op before privilege_configure(). */
int privilege_seccomp(enum thread_kind kind);
/* "control", "vcpu", "io", "migration". */
const char *privilege_kind_name(enum thread_kind kind);
/* Builds KIND's filter without loading it and returns the libseccomp
 * context (for tests: seccomp_export_pfc); NULL on error. Free with
 * seccomp_release. */
void *privilege_filter(enum thread_kind kind, int mode);

#endif
