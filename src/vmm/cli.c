/* Command-line parsing for every vmm subcommand. Parsing never exits and
 * never prints: errors come back as one line naming the bad flag or value,
 * and main() decides what to print. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vmm/cli.h"

static int cli_fail(char *err, size_t errlen, const char *fmt, ...) VMM_PRINTF(3, 4);
static int cli_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

int cli_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	case '\0': break;
	default: return -EINVAL;
	}
	if (*end == 'i' || *end == 'b' || *end == 'B')
		end += (*end == 'i' && (end[1] == 'B')) ? 2 : 1;
	if (*end)
		return -EINVAL;
	if (shift && v > (~0ULL >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

static int cli_parse_int(const char *s, int min, int max, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

static int cli_serial(struct vmm_config *c, const char *v, char *err, size_t errlen)
{
	if (!strcmp(v, "stdio")) {
		c->serial = SERIAL_STDIO;
	} else if (!strcmp(v, "none")) {
		c->serial = SERIAL_NONE;
	} else if (!strncmp(v, "file:", 5) && v[5]) {
		c->serial = SERIAL_FILE;
		c->serial_path = v + 5;
	} else {
		return cli_fail(err, errlen, "--serial: expected stdio, none or file:PATH, got '%s'", v);
	}
	return 0;
}

/* Splits "path,key=val,key=val" in place (the string is the caller's argv). */
static int cli_disk(struct vmm_config *c, char *v, char *err, size_t errlen)
{
	struct cli_disk *d;
	char *opt;

	if (c->nr_disks == CLI_MAX_DISKS)
		return cli_fail(err, errlen, "--disk: at most %d disks", CLI_MAX_DISKS);
	d = &c->disks[c->nr_disks];
	*d = (struct cli_disk){ .path = strsep(&v, ",") };
	if (!*d->path)
		return cli_fail(err, errlen, "--disk: missing image path");
	while ((opt = strsep(&v, ","))) {
		if (!strcmp(opt, "readonly=on") || !strcmp(opt, "readonly"))
			d->readonly = true;
		else if (!strcmp(opt, "readonly=off"))
			d->readonly = false;
		else if (!strcmp(opt, "direct=on"))
			d->direct = true;
		else if (!strcmp(opt, "direct=off"))
			d->direct = false;
		else if (!strncmp(opt, "serial=", 7) && strlen(opt + 7) <= 20)
			d->serial = opt + 7;
		else
			return cli_fail(err, errlen, "--disk: unknown option '%s'", opt);
	}
	c->nr_disks++;
	return 0;
}

/* A unicast MAC written as six pairs of hex digits separated by colons. */
static bool cli_mac_ok(const char *m)
{
	if (strlen(m) != 17)
		return false;
	for (int i = 0; i < 17; i++)
		if (i % 3 == 2 ? m[i] != ':' : !isxdigit((unsigned char)m[i]))
			return false;
	return !(strtoul(m, NULL, 16) & 1);
}

static int cli_net(struct vmm_config *c, char *v, char *err, size_t errlen)
{
	struct cli_net *n;
	char *opt;

	if (c->nr_nets == CLI_MAX_NETS)
		return cli_fail(err, errlen, "--net: at most %d interfaces", CLI_MAX_NETS);
	n = &c->nets[c->nr_nets];
	*n = (struct cli_net){ 0 };
	while ((opt = strsep(&v, ","))) {
		if (!strncmp(opt, "tap=", 4) && opt[4] && strlen(opt + 4) < 16)
			n->tap = opt + 4;
		else if (!strncmp(opt, "mac=", 4) && cli_mac_ok(opt + 4))
			n->mac = opt + 4;
		else
			return cli_fail(err, errlen, "--net: bad option '%s' (want tap=NAME[,mac=MAC])",
					opt);
	}
	if (!n->tap)
		return cli_fail(err, errlen, "--net: missing tap=NAME");
	c->nr_nets++;
	return 0;
}

static const char *cli_strip_unix(const char *v)
{
	return strncmp(v, "unix:", 5) == 0 ? v + 5 : v;
}

/* Applies one "--name value" option of `vmm run`. */
static int cli_run_opt(struct vmm_config *c, const char *name, char *v, char *err, size_t errlen)
{
	if (!strcmp(name, "kernel")) {
		c->kernel = v;
	} else if (!strcmp(name, "initrd")) {
		c->initrd = v;
	} else if (!strcmp(name, "cmdline")) {
		c->cmdline = v;
	} else if (!strcmp(name, "memory")) {
		if (cli_parse_size(v, &c->mem_size) || c->mem_size < CLI_MIN_MEM ||
		    c->mem_size > CLI_MAX_MEM || c->mem_size % (1 << 20))
			return cli_fail(err, errlen,
					"--memory: '%s' is not a size from 16M to 1T in whole MiB", v);
	} else if (!strcmp(name, "cpus")) {
		if (cli_parse_int(v, 1, CLI_MAX_CPUS, &c->cpus))
			return cli_fail(err, errlen, "--cpus: '%s' is not a number from 1 to %d", v,
					CLI_MAX_CPUS);
	} else if (!strcmp(name, "serial")) {
		return cli_serial(c, v, err, errlen);
	} else if (!strcmp(name, "qmp")) {
		c->qmp = cli_strip_unix(v);
		if (!*c->qmp || (strchr(v, ':') && strncmp(v, "unix:", 5)))
			return cli_fail(err, errlen, "--qmp: expected unix:PATH, got '%s'", v);
	} else if (!strcmp(name, "disk")) {
		return cli_disk(c, v, err, errlen);
	} else if (!strcmp(name, "net")) {
		return cli_net(c, v, err, errlen);
	} else if (!strcmp(name, "incoming")) {
		c->incoming = v;
	} else if (!strcmp(name, "config")) {
		c->config = v;
	} else if (!strcmp(name, "user")) {
		c->user = v;
	} else if (!strcmp(name, "seccomp")) {
		if (strcmp(v, "on") && strcmp(v, "off") && strcmp(v, "log"))
			return cli_fail(err, errlen, "--seccomp: expected on, off or log, got '%s'", v);
		c->seccomp = !strcmp(v, "on") ? SECCOMP_ON : !strcmp(v, "off") ? SECCOMP_OFF : SECCOMP_LOG;
	} else {
		return cli_fail(err, errlen, "unknown option '--%s' for 'vmm run' (see vmm run --help)",
				name);
	}
	return 0;
}

static int cli_run_args(struct vmm_config *c, int argc, char **argv, char *err, size_t errlen)
{
	for (int i = 0; i < argc; i++) {
		char *a = argv[i], *eq, name[32], *val;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			c->cmd = CLI_HELP;
			c->help_topic = "run";
			return 0;
		}
		if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
			c->quiet = true;
			continue;
		}
		if (strncmp(a, "--", 2) != 0)
			return cli_fail(err, errlen, "unexpected argument '%s' for 'vmm run'", a);
		eq = strchr(a, '=');
		snprintf(name, sizeof(name), "%.*s", (int)(eq ? eq - a - 2 : (long)strlen(a + 2)), a + 2);
		if (eq) {
			val = eq + 1;
		} else if (i + 1 < argc) {
			val = argv[++i];
		} else {
			return cli_fail(err, errlen, "option '--%s' needs a value", name);
		}
		int ret = cli_run_opt(c, name, val, err, errlen);

		if (ret)
			return ret;
	}
	return 0;
}

/* `vmm ctl|migrate --qmp PATH WORDS...`: the QMP path plus positional words;
 * options other than --qmp are left in the words for the subcommand. */
static int cli_client_args(struct vmm_config *c, int argc, char **argv, char *err,
			   size_t errlen)
{
	const char *cmd = c->cmd == CLI_CTL ? "ctl" : "migrate";

	c->args = argv;
	c->nr_args = 0;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			c->cmd = CLI_HELP;
			c->help_topic = cmd;
			return 0;
		}
		if (!strcmp(argv[i], "--qmp") || !strncmp(argv[i], "--qmp=", 6)) {
			const char *v = argv[i][5] == '=' ? argv[i] + 6 : (i + 1 < argc ? argv[++i] : NULL);

			if (!v || !*v)
				return cli_fail(err, errlen, "option '--qmp' needs a value");
			c->qmp = cli_strip_unix(v);
			if (!*c->qmp)
				return cli_fail(err, errlen, "option '--qmp' needs a socket path");
			continue;
		}
		c->args[c->nr_args++] = argv[i];
	}
	if (!c->qmp)
		return cli_fail(err, errlen, "'vmm %s' needs --qmp unix:PATH", cmd);
	return 0;
}

/* `vmm cpu-check [--against FILE] [--from FILE]`. */
static int cli_cpu_check_args(struct vmm_config *c, int argc, char **argv, char *err,
			      size_t errlen)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], **dst;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			c->cmd = CLI_HELP;
			c->help_topic = "cpu-check";
			return 0;
		}
		if (!strcmp(a, "--against"))
			dst = &c->cpu_against;
		else if (!strcmp(a, "--from"))
			dst = &c->cpu_from;
		else
			return cli_fail(err, errlen, "unexpected argument '%s' for 'vmm cpu-check'", a);
		if (i + 1 >= argc || !*argv[i + 1])
			return cli_fail(err, errlen, "option '%s' needs a file", a);
		*dst = argv[++i];
	}
	if (c->cpu_from && !c->cpu_against)
		return cli_fail(err, errlen, "--from needs --against");
	return 0;
}

int cli_parse(int argc, char **argv, struct vmm_config *c, char *err, size_t errlen)
{
	const char *sub;

	*c = (struct vmm_config){ .cmd = CLI_NONE, .mem_size = 512ULL << 20, .cpus = 1,
				  .serial = SERIAL_STDIO };
	if (argc < 2)
		return cli_fail(err, errlen, "missing command (try 'vmm --help')");
	sub = argv[1];
	if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
		c->cmd = CLI_HELP;
		c->help_topic = argc > 2 ? argv[2] : NULL;
		return 0;
	}
	if (!strcmp(sub, "--version") || !strcmp(sub, "-V") || !strcmp(sub, "version")) {
		c->cmd = CLI_VERSION;
		return 0;
	}
	if (!strcmp(sub, "run")) {
		c->cmd = CLI_RUN;
		return cli_run_args(c, argc - 2, argv + 2, err, errlen);
	}
	if (!strcmp(sub, "cpu-check")) {
		c->cmd = CLI_CPU_CHECK;
		return cli_cpu_check_args(c, argc - 2, argv + 2, err, errlen);
	}
	if (!strcmp(sub, "ctl") || !strcmp(sub, "migrate")) {
		c->cmd = !strcmp(sub, "ctl") ? CLI_CTL : CLI_MIGRATE;
		return cli_client_args(c, argc - 2, argv + 2, err, errlen);
	}
	return cli_fail(err, errlen, "unknown command '%s' (try 'vmm --help')", sub);
}

static const char usage_main[] =
	"usage: vmm COMMAND [OPTIONS]\n"
	"\n"
	"A small KVM virtual machine monitor with live migration.\n"
	"\n"
	"commands:\n"
	"  run        boot a guest (the default guest if no --kernel is given)\n"
	"  ctl        send a QMP command to a running vmm\n"
	"  migrate    live-migrate a running guest to another vmm\n"
	"  cpu-check  print this host's CPU fingerprint, or check it against another's\n"
	"  help CMD   show the options of CMD\n"
	"\n"
	"  vmm --version    print the version\n";

static const char usage_run[] =
	"usage: vmm run [OPTIONS]\n"
	"\n"
	"  --kernel PATH       bzImage or ELF64 kernel (default: newest /boot/vmlinuz-*)\n"
	"  --initrd PATH       initial ramdisk (default with no --kernel: the vmm guest)\n"
	"  --cmdline STR       kernel command line (default: console=ttyS0)\n"
	"  --memory SIZE       guest RAM, e.g. 512M or 2G (default 512M)\n"
	"  --cpus N            number of vCPUs, 1-64 (default 1)\n"
	"  --serial MODE       stdio | file:PATH | none (default stdio; Ctrl-A x quits)\n"
	"  --qmp unix:PATH     QMP control socket\n"
	"  --disk PATH[,readonly=on][,serial=ID][,direct=on]\n"
	"                      virtio block device (repeatable; direct=on: O_DIRECT)\n"
	"  --net tap=NAME[,mac=MAC]                virtio network device (repeatable)\n"
	"  --incoming URI      wait for an incoming migration (tcp:HOST:PORT, unix:PATH, defer)\n"
	"  --quiet             no informational messages\n"
	"  --config FILE       read options from FILE (key = value lines, see docs/hosts.md);\n"
	"                      options on the command line override it\n"
	"  --user NAME         run as user NAME once the devices and sockets are open\n"
	"  --seccomp MODE      on | off | log: per-thread system call allowlists (default on)\n"
	"\n"
	"Exit status: 0 when the guest powers off or reboots, 1 on a guest panic or an\n"
	"error, 2 on a usage error.\n";

static const char usage_ctl[] =
	"usage: vmm ctl --qmp unix:PATH [COMMAND [ARGS-JSON]]\n"
	"\n"
	"Sends one QMP command and prints the reply as JSON (exit 1 on an error reply).\n"
	"With no COMMAND, reads commands from standard input.\n";

static const char usage_migrate[] =
	"usage: vmm migrate --qmp unix:PATH URI [--downtime-limit MS] [--max-bandwidth RATE]\n"
	"                   [--multifd-channels N]\n"
	"\n"
	"Live-migrates the guest behind PATH to the vmm listening at URI (tcp:HOST:PORT\n"
	"or unix:PATH), showing progress; exit 0 only when the migration completed.\n"
	"--multifd-channels N sends the pages over N connections (1-16, default 1).\n";

static const char usage_cpu_check[] =
	"usage: vmm cpu-check [--against FILE [--from FILE2]]\n"
	"\n"
	"Without options, prints this host's CPU fingerprint (libcpuid) and the CPUID\n"
	"KVM supports here as JSON. With --against FILE (that output from another host),\n"
	"says whether a guest started here can migrate to that host and lists the missing\n"
	"features; --from FILE2 compares FILE2's host instead of this one.\n"
	"Exit status: 0 compatible (or printed), 1 incompatible, 2 error.\n";

void cli_usage(const char *topic, void *fp)
{
	const char *text = usage_main;

	if (topic && !strcmp(topic, "run"))
		text = usage_run;
	else if (topic && !strcmp(topic, "ctl"))
		text = usage_ctl;
	else if (topic && !strcmp(topic, "migrate"))
		text = usage_migrate;
	else if (topic && !strcmp(topic, "cpu-check"))
		text = usage_cpu_check;
	fputs(text, fp);
}
