# transport: ZeroMQ socket setup shared by every stage (libtransport.a): common
# options, the peer watch (watch.c) and CURVE with its ZAP handler (curve.c).
transport_SRCS := transport/transport.c transport/watch.c transport/curve.c
$(eval $(call add_lib,transport))

test_transport_LIBS := transport proto console
$(eval $(call add_test,test_transport))
