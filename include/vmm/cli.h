/* Command line: `vmm run`, `vmm ctl`, `vmm migrate`, `vmm --help/--version`.
 * Parsing fills a plain config struct and never exits; errors come back as
 * one line naming the bad flag or value. */
#ifndef VMM_CLI_H
#define VMM_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "vmm/log.h"

#define CLI_MAX_DISKS 8
#define CLI_MAX_NETS 4
#define CLI_MAX_CPUS 64
#define CLI_MIN_MEM (16ULL << 20)
#define CLI_MAX_MEM (1ULL << 40)

enum cli_cmd { CLI_NONE, CLI_HELP, CLI_VERSION, CLI_RUN, CLI_CTL, CLI_MIGRATE, CLI_CPU_CHECK };
enum seccomp_mode { SECCOMP_ON, SECCOMP_OFF, SECCOMP_LOG };
enum serial_mode { SERIAL_STDIO, SERIAL_FILE, SERIAL_NONE };

struct cli_disk {
	const char *path;
	bool readonly;
	bool direct;       /* O_DIRECT: bypass the host page cache */
	const char *serial;
};

struct cli_net {
	const char *tap;
	const char *mac;   /* NULL: derived */
};

struct vmm_config {
	enum cli_cmd cmd;
	const char *help_topic;        /* CLI_HELP: "run", "ctl", ... or NULL */
	/* run */
	const char *kernel;            /* NULL: default guest */
	const char *initrd;
	const char *cmdline;
	uint64_t mem_size;
	int cpus;
	enum serial_mode serial;
	const char *serial_path;
	const char *qmp;               /* unix socket path, "unix:" stripped */
	const char *incoming;          /* URI or NULL */
	int nr_disks;
	struct cli_disk disks[CLI_MAX_DISKS];
	int nr_nets;
	struct cli_net nets[CLI_MAX_NETS];
	bool quiet;
	const char *config;            /* --config FILE (main() expands it) */
	const char *user;              /* --user NAME: run as NAME after setup */
	enum seccomp_mode seccomp;     /* --seccomp on|off|log */
	/* cpu-check */
	const char *cpu_against;       /* --against FILE or NULL */
	const char *cpu_from;          /* --from FILE: compare FILE, not this host */
	/* ctl / migrate: remaining positional words */
	int nr_args;
	char **args;
};

/* Parses ARGV into CFG (pointers into ARGV, which must outlive CFG); 0, or
 * -EINVAL with a one-line message in ERR. */
int cli_parse(int argc, char **argv, struct vmm_config *cfg, char *err, size_t errlen)
	VMM_MUST_CHECK;
/* Parses "512M", "1G", "1048576", "64K" into bytes; 0 or -EINVAL/-ERANGE. */
int cli_parse_size(const char *s, uint64_t *out) VMM_MUST_CHECK;
/* Prints usage for TOPIC (NULL: overview) to FP. */
void cli_usage(const char *topic, void *fp);

#endif
