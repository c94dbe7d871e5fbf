# keygen: writes the CURVE key folders that --curve DIR reads.
keygen_SRCS := keygen/main.c
keygen_LIBS := transport proto console cli
$(eval $(call add_prog,keygen))
