# transport: ZeroMQ socket setup shared by every stage (libtransport.a): common
# options, the peer watch (watch.c), CURVE with its ZAP handler (curve.c), the
# Control socket's topics and beats (control.c) and who is silent (liveness.c).
transport_SRCS := transport/transport.c transport/watch.c transport/curve.c transport/control.c transport/liveness.c
$(eval $(call add_lib,transport))

test_transport_LIBS := transport proto console
$(eval $(call add_test,test_transport))
