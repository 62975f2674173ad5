/* Host configuration files (/etc/vmm/NAME.conf): one `key = value` per line,
 * each key a `vmm run` flag. A file is turned into argv words for cli_parse,
 * so the file and the command line accept exactly the same values.
 *
 *   # comment                     blank lines and lines starting with # are skipped
 *   kernel = /boot/vmlinuz-6.1.0-18-amd64
 *   cmdline = console=ttyS0 root=/dev/vda   (the rest of the line, trimmed)
 *   cmdline = "  spaces kept  "             (double quotes keep edge spaces)
 *   disk = /var/lib/vmm/web1.img,serial=web1   (disk and net may repeat)
 *
 * Keys: kernel initrd cmdline memory cpus serial qmp disk net incoming user
 * seccomp quiet (quiet = yes|no). Other keys, a missing '=', an empty value,
 * a key given twice (except disk/net) and bad values are errors naming the
 * file and line. */
#ifndef VMM_CONFIG_H
#define VMM_CONFIG_H

#include <stddef.h>
#include "vmm/log.h"

#define CONFIG_MAX_LINE 4096
#define CONFIG_MAX_WORDS 128

struct config_args {
	int argc;                 /* words in argv (flags and values) */
	char *argv[CONFIG_MAX_WORDS + 1];   /* malloc'd strings, NULL-terminated */
};

/* Parses the text of a config file (NAME is used in messages) into ARGS as
 * "--key" "value" words; 0, or -EINVAL/-E2BIG/-ENOMEM with "NAME:LINE: why"
 * in ERR. ARGS must be freed with config_args_free either way. */
int config_parse(const char *text, const char *name, struct config_args *args, char *err,
		 size_t errlen) VMM_MUST_CHECK;
/* Reads PATH and parses it like config_parse; -errno if it cannot be read. */
int config_read(const char *path, struct config_args *args, char *err, size_t errlen)
	VMM_MUST_CHECK;
/* Frees the words of ARGS. */
void config_args_free(struct config_args *args);
/* For `vmm run ... --config FILE ...`: builds in *OUT_ARGV (malloc'd; its
 * strings live in HOLD and ARGV) "vmm run FILE-WORDS... OTHER-ARGS..." so
 * flags given on the command line override the file (disk/net add up).
 * Any other argv is passed through unchanged (*OUT_ARGV = NULL). 0, or
 * -errno with the reason in ERR. */
int config_expand(int argc, char **argv, int *out_argc, char ***out_argv,
		  struct config_args *hold, char *err, size_t errlen) VMM_MUST_CHECK;

#endif
