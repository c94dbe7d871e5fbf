# console: log lines and progress reporting shared by every stage (libconsole.a).
console_SRCS := console/console.c
$(eval $(call add_lib,console))

test_console_LIBS := console
$(eval $(call add_test,test_console))
