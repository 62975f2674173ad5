/* vmm entry point: parse the command line and hand over to the subcommand. */
#include <stdio.h>
#include "vmm/cli.h"
#include "vmm/config.h"
#include "vmm/cpucheck.h"
#include "vmm/ctl.h"
#include "vmm/migrate_cli.h"
#include "vmm/privilege.h"
#include "vmm/run.h"

int main(int argc, char **argv)
{
	struct vmm_config cfg;
	char err[512], paths[8192], **xargv;
	struct config_args file;

	if (config_expand(argc, argv, &argc, &xargv, &file, err, sizeof(err))) {
		fprintf(stderr, "vmm: %s\n", err);
		return 2;
	}
	if (cli_parse(argc, xargv ? xargv : argv, &cfg, err, sizeof(err))) {
		fprintf(stderr, "vmm: %s\n", err);
		return 2;
	}
	switch (cfg.cmd) {
	case CLI_HELP:
		cli_usage(cfg.help_topic, stdout);
		return 0;
	case CLI_VERSION:
		printf("vmm %s\n", VMM_VERSION);
		return 0;
	case CLI_RUN:
		if (!(cfg.incoming && !cfg.kernel) &&
		    run_resolve_defaults(&cfg, paths, sizeof(paths), err, sizeof(err))) {
			fprintf(stderr, "vmm: %s\n", err);
			return 2;
		}
		return privilege_configure(&cfg) ? 1 : run_main(&cfg);
	case CLI_CTL:
		return ctl_main(&cfg);
	case CLI_MIGRATE:
		return migrate_cli_main(&cfg);
	case CLI_CPU_CHECK:
		return cpucheck_main(&cfg);
	default:
		fprintf(stderr, "vmm: this command is not available yet\n");
		return 2;
	}
}
