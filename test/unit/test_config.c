/*
 * Unit tests for config files (src/vmm/config.c): every key round-trips
 * through cli_parse, comments/blank lines/quotes, each error names its line,
 * --config expansion and overriding; plus the --user/--seccomp/cpu-check
 * command-line options the host features added.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/cli.h"
#include "vmm/config.h"

static struct config_args A;
static struct vmm_config C;
static char E[512];

/* Parses TEXT and then the resulting words as `vmm run WORDS`. */
static int parse_run(const char *text)
{
	char *argv[CONFIG_MAX_WORDS + 4] = { "vmm", "run" };
	int ret;

	config_args_free(&A);
	E[0] = 0;
	ret = config_parse(text, "t.conf", &A, E, sizeof(E));
	if (ret)
		return ret;
	for (int i = 0; i < A.argc; i++)
		argv[2 + i] = A.argv[i];
	return cli_parse(A.argc + 2, argv, &C, E, sizeof(E));
}

#define assert_config_fails(text, needle)                                     \
	do {                                                                  \
		assert_int_equal(parse_run(text), -EINVAL);                   \
		if (!strstr(E, (needle)))                                     \
			fail_msg("error '%s' does not mention '%s'", E, (needle)); \
	} while (0)

static void test_every_key(void **state)
{
	assert_int_equal(parse_run(
		"# web1\n"
		"kernel = /boot/vmlinuz\n"
		"initrd=/boot/initrd.img\n"
		"cmdline = console=ttyS0 root=/dev/vda rw\n"
		"memory = 1G\n"
		"cpus = 2\n"
		"serial = file:/var/log/vmm/web1.log\n"
		"qmp = unix:/run/vmm/web1.qmp\n"
		"disk = /var/lib/vmm/web1.img,serial=web1\n"
		"disk = /var/lib/vmm/data.img,readonly=on\n"
		"net = tap=tap0,mac=52:54:00:12:34:56\n"
		"net = tap=tap1\n"
		"incoming = tcp:10.0.0.2:4444\n"
		"user = vmm\n"
		"seccomp = log\n"
		"quiet = yes\n"), 0);
	assert_int_equal(C.cmd, CLI_RUN);
	assert_string_equal(C.kernel, "/boot/vmlinuz");
	assert_string_equal(C.initrd, "/boot/initrd.img");
	assert_string_equal(C.cmdline, "console=ttyS0 root=/dev/vda rw");
	assert_int_equal(C.mem_size, 1ULL << 30);
	assert_int_equal(C.cpus, 2);
	assert_int_equal(C.serial, SERIAL_FILE);
	assert_string_equal(C.serial_path, "/var/log/vmm/web1.log");
	assert_string_equal(C.qmp, "/run/vmm/web1.qmp");
	assert_int_equal(C.nr_disks, 2);
	assert_string_equal(C.disks[0].path, "/var/lib/vmm/web1.img");
	assert_string_equal(C.disks[0].serial, "web1");
	assert_true(C.disks[1].readonly);
	assert_int_equal(C.nr_nets, 2);
	assert_string_equal(C.nets[0].tap, "tap0");
	assert_string_equal(C.nets[0].mac, "52:54:00:12:34:56");
	assert_string_equal(C.nets[1].tap, "tap1");
	assert_string_equal(C.incoming, "tcp:10.0.0.2:4444");
	assert_string_equal(C.user, "vmm");
	assert_int_equal(C.seccomp, SECCOMP_LOG);
	assert_true(C.quiet);
}

static void test_syntax(void **state)
{
	/* Comments, blank lines, CRLF-ish trailing space, tabs, quotes. */
	assert_int_equal(parse_run("\n   \n\t# comment = not a key\n  cpus\t=\t3  \r\n"
				   "cmdline = \"  two  spaces  \"\nquiet = no"), 0);
	assert_int_equal(C.cpus, 3);
	assert_string_equal(C.cmdline, "  two  spaces  ");
	assert_false(C.quiet);
	assert_int_equal(A.argc, 4);   /* quiet = no adds nothing */
	/* '=' inside the value is kept. */
	assert_int_equal(parse_run("cmdline = a=b c=d"), 0);
	assert_string_equal(C.cmdline, "a=b c=d");
	/* Empty file: plain defaults. */
	assert_int_equal(parse_run(""), 0);
	assert_int_equal(A.argc, 0);
	assert_int_equal(C.seccomp, SECCOMP_ON);
	assert_null(C.user);
}

static void test_errors_name_the_line(void **state)
{
	assert_config_fails("cpus = 1\n\nfrobs = 2\n", "t.conf:3: unknown key 'frobs'");
	assert_config_fails("# x\nkernel /boot/vmlinuz\n", "t.conf:2: expected 'key = value'");
	assert_config_fails("kernel =   \n", "t.conf:1: 'kernel' needs a value");
	assert_config_fails("memory = 1G\ncpus = 1\nmemory = 2G\n",
			    "t.conf:3: 'memory' was already set on line 1");
	assert_config_fails("\nmemory = lots\n", "t.conf:2: --memory:");
	assert_config_fails("cpus = 0\n", "t.conf:1: --cpus:");
	assert_config_fails("serial = tty\n", "t.conf:1: --serial:");
	assert_config_fails("disk = /a.img,bogus=1\n", "t.conf:1: --disk: unknown option");
	assert_config_fails("net = mac=52:54:00:00:00:01\n", "t.conf:1: --net: missing tap=");
	assert_config_fails("qmp = tcp:1.2.3.4:5\n", "t.conf:1: --qmp:");
	assert_config_fails("seccomp = maybe\n", "t.conf:1: --seccomp: expected on, off or log");
	assert_config_fails("quiet = true\n", "t.conf:1: quiet: expected yes or no");
	assert_config_fails("config = /etc/other.conf\n", "unknown key 'config'");
	assert_config_fails("= 3\n", "t.conf:1: unknown key ''");
}

static void test_limits(void **state)
{
	char *text = malloc(CONFIG_MAX_LINE + 64), *p;

	assert_non_null(text);
	p = text + sprintf(text, "cpus = 1\ncmdline = ");
	memset(p, 'x', CONFIG_MAX_LINE);
	p[CONFIG_MAX_LINE] = 0;
	assert_config_fails(text, "t.conf:2: line longer than");
	/* More disks than the CLI allows. */
	p = text;
	for (int i = 0; i <= CLI_MAX_DISKS; i++)
		p += sprintf(p, "disk = /d%d.img\n", i);
	assert_config_fails(text, "t.conf:9: too many 'disk' lines (at most 8)");
	free(text);
}

static char *write_tmp(const char *text)
{
	static char path[64];
	int fd;

	snprintf(path, sizeof(path), "/tmp/vmm-test-config.XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void test_expand(void **state)
{
	char *path = write_tmp("memory = 1G\ncpus = 2\ndisk = /a.img\n");
	char opt[128], *argv[] = { "vmm", "run", "--cpus", "4", "--config", path, "--disk",
				   "/b.img", NULL };
	struct config_args hold;
	char **xargv;
	int xargc;

	assert_int_equal(config_expand(8, argv, &xargc, &xargv, &hold, E, sizeof(E)), 0);
	assert_non_null(xargv);
	assert_int_equal(xargc, 2 + 6 + 4);
	assert_string_equal(xargv[2], "--memory");
	assert_int_equal(cli_parse(xargc, xargv, &C, E, sizeof(E)), 0);
	assert_int_equal(C.mem_size, 1ULL << 30);
	assert_int_equal(C.cpus, 4);             /* the command line wins */
	assert_int_equal(C.nr_disks, 2);         /* disks add up */
	assert_string_equal(C.disks[0].path, "/a.img");
	assert_string_equal(C.disks[1].path, "/b.img");
	free(xargv);
	config_args_free(&hold);

	/* --config=FILE form. */
	snprintf(opt, sizeof(opt), "--config=%s", path);
	char *argv2[] = { "vmm", "run", opt, NULL };
	assert_int_equal(config_expand(3, argv2, &xargc, &xargv, &hold, E, sizeof(E)), 0);
	assert_int_equal(xargc, 8);
	free(xargv);
	config_args_free(&hold);

	/* Given twice, missing value, missing file, bad file. */
	char *argv3[] = { "vmm", "run", "--config", path, "--config", path, NULL };
	assert_int_equal(config_expand(6, argv3, &xargc, &xargv, &hold, E, sizeof(E)), -EINVAL);
	assert_non_null(strstr(E, "given twice"));
	char *argv4[] = { "vmm", "run", "--config", NULL };
	assert_int_equal(config_expand(3, argv4, &xargc, &xargv, &hold, E, sizeof(E)), -EINVAL);
	unlink(path);
	char *argv5[] = { "vmm", "run", "--config", path, NULL };
	assert_int_equal(config_expand(4, argv5, &xargc, &xargv, &hold, E, sizeof(E)), -ENOENT);
	assert_non_null(strstr(E, "cannot read config"));
	path = write_tmp("cpus = 1\ncpus = 2\n");
	char *argv6[] = { "vmm", "run", "--config", path, NULL };
	assert_int_equal(config_expand(4, argv6, &xargc, &xargv, &hold, E, sizeof(E)), -EINVAL);
	assert_non_null(strstr(E, ":2: 'cpus' was already set on line 1"));
	config_args_free(&hold);
	unlink(path);

	/* Other commands pass through untouched. */
	char *argv7[] = { "vmm", "ctl", "--config", "x", NULL };
	assert_int_equal(config_expand(4, argv7, &xargc, &xargv, &hold, E, sizeof(E)), 0);
	assert_null(xargv);
	assert_int_equal(xargc, 4);
}

static void test_cli_host_options(void **state)
{
	char *a1[] = { "vmm", "run", "--user", "vmm", "--seccomp", "off", NULL };
	char *a2[] = { "vmm", "run", "--seccomp=bogus", NULL };
	char *a3[] = { "vmm", "cpu-check", NULL };
	char *a4[] = { "vmm", "cpu-check", "--against", "b.json", "--from", "a.json", NULL };
	char *a5[] = { "vmm", "cpu-check", "--from", "a.json", NULL };
	char *a6[] = { "vmm", "cpu-check", "--against", NULL };
	char *a7[] = { "vmm", "cpu-check", "extra", NULL };
	char *a8[] = { "vmm", "cpu-check", "--help", NULL };

	assert_int_equal(cli_parse(6, a1, &C, E, sizeof(E)), 0);
	assert_string_equal(C.user, "vmm");
	assert_int_equal(C.seccomp, SECCOMP_OFF);
	assert_int_equal(cli_parse(3, a2, &C, E, sizeof(E)), -EINVAL);
	assert_int_equal(cli_parse(2, a3, &C, E, sizeof(E)), 0);
	assert_int_equal(C.cmd, CLI_CPU_CHECK);
	assert_null(C.cpu_against);
	assert_int_equal(cli_parse(6, a4, &C, E, sizeof(E)), 0);
	assert_string_equal(C.cpu_against, "b.json");
	assert_string_equal(C.cpu_from, "a.json");
	assert_int_equal(cli_parse(4, a5, &C, E, sizeof(E)), -EINVAL);
	assert_non_null(strstr(E, "--from needs --against"));
	assert_int_equal(cli_parse(3, a6, &C, E, sizeof(E)), -EINVAL);
	assert_int_equal(cli_parse(3, a7, &C, E, sizeof(E)), -EINVAL);
	assert_int_equal(cli_parse(3, a8, &C, E, sizeof(E)), 0);
	assert_int_equal(C.cmd, CLI_HELP);
	assert_string_equal(C.help_topic, "cpu-check");
}

static int teardown(void **state)
{
	config_args_free(&A);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_every_key, teardown),
		cmocka_unit_test_teardown(test_syntax, teardown),
		cmocka_unit_test_teardown(test_errors_name_the_line, teardown),
		cmocka_unit_test_teardown(test_limits, teardown),
		cmocka_unit_test(test_expand),
		cmocka_unit_test(test_cli_host_options),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
