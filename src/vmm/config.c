/* Config files for `vmm run --config FILE` and the systemd units: parses
 * `key = value` lines into argv words and checks each value with the
 * command-line parser, so errors name the file and line. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vmm/cli.h"
#include "vmm/config.h"

static const struct {
	const char *key;
	bool repeat;
} config_keys[] = {
	{ "kernel", false }, { "initrd", false }, { "cmdline", false }, { "memory", false },
	{ "cpus", false }, { "serial", false }, { "qmp", false }, { "disk", true },
	{ "net", true }, { "incoming", false }, { "user", false }, { "seccomp", false },
	{ "quiet", false },
};

static int config_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
	VMM_PRINTF(4, 5);
static int config_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return ret;
}

static char *config_trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = 0;
	return s;
}

static int config_push(struct config_args *a, const char *word)
{
	if (a->argc >= CONFIG_MAX_WORDS)
		return -E2BIG;
	a->argv[a->argc] = strdup(word);
	if (!a->argv[a->argc])
		return -ENOMEM;
	a->argv[++a->argc] = NULL;
	return 0;
}

/* Runs the command-line parser on "--KEY VALUE" alone so a bad value is
 * reported with its line (the parser splits disk/net values in place). */
static int config_check_value(const char *key, const char *value, char *why, size_t len)
{
	char flag[40], val[CONFIG_MAX_LINE], run[] = "run", vmm[] = "vmm";
	char *argv[] = { vmm, run, flag, val, NULL };
	struct vmm_config *cfg = malloc(sizeof(*cfg));
	int ret;

	if (!cfg)
		return -ENOMEM;
	snprintf(flag, sizeof(flag), "--%s", key);
	snprintf(val, sizeof(val), "%s", value);
	ret = cli_parse(4, argv, cfg, why, len);
	free(cfg);
	return ret;
}

/* Handles one non-comment line: finds the key, checks it, appends words. */
static int config_line(struct config_args *a, char *line, const char *name, int lineno,
		       int *seen, int *counts, char *err, size_t errlen)
{
	char *eq = strchr(line, '='), *key, *val, why[256];
	size_t k, vlen;
	int ret;

	if (!eq)
		return config_fail(err, errlen, -EINVAL, "%s:%d: expected 'key = value', got '%s'",
				   name, lineno, line);
	*eq = 0;
	key = config_trim(line);
	val = config_trim(eq + 1);
	vlen = strlen(val);
	if (vlen >= 2 && val[0] == '"' && val[vlen - 1] == '"') {
		val[vlen - 1] = 0;
		val++;
	}
	for (k = 0; k < ARRAY_SIZE(config_keys); k++)
		if (!strcmp(key, config_keys[k].key))
			break;
	if (k == ARRAY_SIZE(config_keys))
		return config_fail(err, errlen, -EINVAL, "%s:%d: unknown key '%s' (keys: kernel, "
				   "initrd, cmdline, memory, cpus, serial, qmp, disk, net, "
				   "incoming, user, seccomp, quiet)", name, lineno, key);
	if (!*val)
		return config_fail(err, errlen, -EINVAL, "%s:%d: '%s' needs a value", name, lineno,
				   key);
	if (seen[k] && !config_keys[k].repeat)
		return config_fail(err, errlen, -EINVAL, "%s:%d: '%s' was already set on line %d",
				   name, lineno, key, seen[k]);
	seen[k] = lineno;
	if (config_keys[k].repeat && ++counts[k] > (!strcmp(key, "disk") ? CLI_MAX_DISKS : CLI_MAX_NETS))
		return config_fail(err, errlen, -EINVAL, "%s:%d: too many '%s' lines (at most %d)",
				   name, lineno, key, !strcmp(key, "disk") ? CLI_MAX_DISKS : CLI_MAX_NETS);
	if (!strcmp(key, "quiet")) {
		if (strcmp(val, "yes") && strcmp(val, "no"))
			return config_fail(err, errlen, -EINVAL, "%s:%d: quiet: expected yes or no, "
					   "got '%s'", name, lineno, val);
		ret = strcmp(val, "yes") ? 0 : config_push(a, "--quiet");
	} else {
		ret = config_check_value(key, val, why, sizeof(why));
		if (ret == -EINVAL)
			return config_fail(err, errlen, ret, "%s:%d: %s", name, lineno, why);
		if (!ret) {
			char flag[40];

			snprintf(flag, sizeof(flag), "--%s", key);
			ret = config_push(a, flag) ?: config_push(a, val);
		}
	}
	if (ret == -E2BIG)
		return config_fail(err, errlen, ret, "%s:%d: too many settings (at most %d)", name,
				   lineno, CONFIG_MAX_WORDS / 2);
	if (ret)
		return config_fail(err, errlen, ret, "%s:%d: %s", name, lineno, strerror(-ret));
	return 0;
}

int config_parse(const char *text, const char *name, struct config_args *a, char *err,
		 size_t errlen)
{
	int seen[ARRAY_SIZE(config_keys)] = { 0 }, counts[ARRAY_SIZE(config_keys)] = { 0 };
	int lineno = 0;

	a->argc = 0;
	a->argv[0] = NULL;
	while (*text) {
		const char *nl = strchr(text, '\n');
		size_t len = nl ? (size_t)(nl - text) : strlen(text);
		char line[CONFIG_MAX_LINE], *s;
		int ret;

		lineno++;
		if (len >= sizeof(line))
			return config_fail(err, errlen, -EINVAL, "%s:%d: line longer than %d bytes",
					   name, lineno, CONFIG_MAX_LINE - 1);
		memcpy(line, text, len);
		line[len] = 0;
		text += len + (nl ? 1 : 0);
		s = config_trim(line);
		if (!*s || *s == '#')
			continue;
		ret = config_line(a, s, name, lineno, seen, counts, err, errlen);
		if (ret)
			return ret;
	}
	return 0;
}

int config_read(const char *path, struct config_args *a, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *text = NULL;
	size_t cap = 0, len = 0;
	int ret = 0;

	a->argc = 0;
	a->argv[0] = NULL;
	if (!f)
		return config_fail(err, errlen, -errno, "cannot read config %s: %s", path,
				   strerror(errno));
	for (;;) {
		if (len + 4096 + 1 > cap) {
			char *n = cap > (1 << 20) ? NULL : realloc(text, cap = len + 8192);

			if (!n) {
				ret = config_fail(err, errlen, -EFBIG, "config %s is too large", path);
				goto out;
			}
			text = n;
		}
		size_t n = fread(text + len, 1, 4096, f);

		len += n;
		if (n < 4096)
			break;
	}
	if (ferror(f)) {
		ret = config_fail(err, errlen, -EIO, "cannot read config %s", path);
		goto out;
	}
	text[len] = 0;
	if (strlen(text) != len)
		ret = config_fail(err, errlen, -EINVAL, "%s: contains a NUL byte", path);
	else
		ret = config_parse(text, path, a, err, errlen);
out:
	free(text);
	fclose(f);
	return ret;
}

void config_args_free(struct config_args *a)
{
	for (int i = 0; i < a->argc; i++)
		free(a->argv[i]);
	a->argc = 0;
	a->argv[0] = NULL;
}

int config_expand(int argc, char **argv, int *out_argc, char ***out_argv,
		  struct config_args *hold, char *err, size_t errlen)
{
	const char *path = NULL;
	int at = -1, skip = 0, n = 0, ret;
	char **v;

	hold->argc = 0;
	hold->argv[0] = NULL;
	*out_argv = NULL;
	*out_argc = argc;
	if (argc < 2 || strcmp(argv[1], "run"))
		return 0;
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--config") || !strncmp(argv[i], "--config=", 9)) {
			if (path)
				return config_fail(err, errlen, -EINVAL, "--config: given twice");
			at = i;
			skip = argv[i][8] == '=' ? 1 : 2;
			path = skip == 1 ? argv[i] + 9 : (i + 1 < argc ? argv[i + 1] : NULL);
			if (!path || !*path)
				return config_fail(err, errlen, -EINVAL, "option '--config' needs a value");
			i += skip - 1;
		}
	}
	if (!path)
		return 0;
	ret = config_read(path, hold, err, errlen);
	if (ret)
		return ret;
	v = calloc((size_t)(argc + hold->argc + 1), sizeof(*v));
	if (!v)
		return config_fail(err, errlen, -ENOMEM, "out of memory");
	v[n++] = argv[0];
	v[n++] = argv[1];
	for (int i = 0; i < hold->argc; i++)
		v[n++] = hold->argv[i];
	for (int i = 2; i < argc; i++)
		if (i < at || i >= at + skip)
			v[n++] = argv[i];
	v[n] = NULL;
	*out_argc = n;
	*out_argv = v;
	return 0;
}
