/* cli.c — placeholder */
typedef int lr__cli_placeholder;
