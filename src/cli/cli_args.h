/* Command-line parsing shared by the subcommands (run, restore, clone, receive). */
#ifndef VMON_CLI_CLI_ARGS_H
#define VMON_CLI_CLI_ARGS_H

/*
 * After getopt_long() returned '?': says on stderr what was wrong with the option it stopped at
 * (a value missing, a value given to an option that takes none, or an unknown option), pointing
 * at `vmon CMD --help`.
 */
void cli_bad_option(const char *cmd, char **argv);

/* Replaces the string in *field with a copy of value (a configuration field set from the command line). */
void cli_set_str(char **field, const char *value);

/* --log-level VALUE: 0 if it names a level, else -EINVAL with a message. */
int cli_check_log_level(const char *value);

/*
 * The single operand DIR after the options (optind): 0 and *dir, or -EINVAL with a message
 * (usage is the command's synopsis, e.g. "vmon clone DIR --count N").
 */
int cli_dir_operand(const char *cmd, const char *usage, int argc, char **argv, const char **dir);

#endif
