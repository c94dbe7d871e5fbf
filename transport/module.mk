# transport: ZeroMQ socket setup shared by every stage (libtransport.a).
transport_SRCS := transport/transport.c
$(eval $(call add_lib,transport))

test_transport_LIBS := transport console
$(eval $(call add_test,test_transport))
