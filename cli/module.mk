# cli: what every executable's command line shares (libcli.a): number and
# endpoint options whose errors name the flag, the usage-error message, the
# exit codes, and the default endpoints (cli/defaults.h); its unit test.
cli_SRCS := cli/cli.c
$(eval $(call add_lib,cli))

test_cli_LIBS := cli
$(eval $(call add_test,test_cli))
