/* One-line diagnostics on stderr, prefixed with "vmm: ". */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "vmm/log.h"

static bool log_quiet;

static void log_v(const char *level, const char *fmt, va_list ap)
{
	char buf[1024];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	fprintf(stderr, "vmm: %s%s\n", level, buf);
}

void vmm_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_v("error: ", fmt, ap);
	va_end(ap);
}

void vmm_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_v("warning: ", fmt, ap);
	va_end(ap);
}

void vmm_info(const char *fmt, ...)
{
	va_list ap;

	if (log_quiet)
		return;
	va_start(ap, fmt);
	log_v("", fmt, ap);
	va_end(ap);
}

void vmm_die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_v("fatal: ", fmt, ap);
	va_end(ap);
	abort();
}

void vmm_log_set_quiet(bool quiet)
{
	log_quiet = quiet;
}
