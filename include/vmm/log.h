/* Diagnostics: one-line messages on stderr prefixed with "vmm: ".
 * vmm_die() is only for broken host invariants, never for guest- or
 * network-controlled input. */
#ifndef VMM_LOG_H
#define VMM_LOG_H

#include <stdbool.h>

#define VMM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define VMM_MUST_CHECK __attribute__((warn_unused_result))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Prints "vmm: error: MSG" on stderr. */
void vmm_err(const char *fmt, ...) VMM_PRINTF(1, 2);
/* Prints "vmm: warning: MSG" on stderr. */
void vmm_warn(const char *fmt, ...) VMM_PRINTF(1, 2);
/* Prints "vmm: MSG" on stderr unless quiet mode is set. */
void vmm_info(const char *fmt, ...) VMM_PRINTF(1, 2);
/* Prints "vmm: fatal: MSG" and aborts: broken host invariants only. */
void vmm_die(const char *fmt, ...) VMM_PRINTF(1, 2) __attribute__((noreturn));
/* Silences vmm_info (warnings and errors still print). */
void vmm_log_set_quiet(bool quiet);

#endif
