#include "cli/cli_args.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"

void cli_bad_option(const char *cmd, char **argv)
{
	const char *arg = argv[optind - 1];
	/* getopt_long() sets optopt for an option it knows; with '=' in it, the option takes no value. */
	if (optopt && strchr(arg, '='))
		fprintf(stderr, "vmon: option '%.*s' takes no value (see vmon %s --help)\n", (int)(strchr(arg, '=') - arg),
			arg, cmd);
	else if (optopt)
		fprintf(stderr, "vmon: option '%s' needs a value (see vmon %s --help)\n", arg, cmd);
	else
		fprintf(stderr, "vmon: unknown option '%s' (see vmon %s --help)\n", arg, cmd);
}

int cli_dir_operand(const char *cmd, const char *usage, int argc, char **argv, const char **dir)
{
	if (optind >= argc) {
		fprintf(stderr, "vmon: no snapshot directory given: %s (see vmon %s --help)\n", usage, cmd);
		return -EINVAL;
	}
	if (optind + 1 < argc) {
		fprintf(stderr, "vmon: unexpected argument '%s' (see vmon %s --help)\n", argv[optind + 1], cmd);
		return -EINVAL;
	}
	*dir = argv[optind];
	return 0;
}

int cli_check_log_level(const char *value)
{
	if (log_parse_level(value) >= 0)
		return 0;
	fprintf(stderr, "vmon: --log-level takes error, warn, info or debug, not '%s'\n", value);
	return -EINVAL;
}

void cli_set_str(char **field, const char *value)
{
	free(*field);
	*field = strdup(value);
}
