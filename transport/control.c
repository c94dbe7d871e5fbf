/* control.c: the trainer's Control PUB socket, both ways.
 *
 * Down (trainer -> loader, augmenters, evaluator): every message travels as
 * [topic, body] (proto.h, PROTO_TOPIC_*), so that subscribers filter by
 * topic; the old single-frame form is still read for one version.
 *
 * Up (loader, augmenters -> trainer): the trainer binds an XPUB and the
 * others connect an XSUB. An XSUB passes upstream every message that is not a
 * subscription (first byte 0 or 1); an XPUB hands such messages to its reader
 * along with the subscriptions. A Control body starts with a msgpack map
 * byte (0x80-0x8f, 0xde, 0xdf), never 0 or 1, so a beat can never be taken for
 * a subscription. A plain PUB (an older trainer, or a Python one) drops the
 * beats, and a plain SUB cannot send them: both ends stay compatible. */
#include "transport/transport.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "console/console.h"
#include "proto/proto.h"

#define SUBSCRIPTION_MAX 256      /* bytes of a subscription prefix */
#define BEATS_PER_CALL   1024     /* at most this many upstream messages read per call */

int transport_publish(void *pub, const char *topic, const void *body, size_t len)
{
    if (zmq_send(pub, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -1;
    /* the first frame went: ZeroMQ takes the rest of a multipart message */
    return zmq_send(pub, body, len, ZMQ_DONTWAIT) < 0 ? -1 : 0;
}

/* Drops the frames left of a multipart message. */
static void drain_more(void *sock, zmq_msg_t *last)
{
    int more = zmq_msg_more(last);
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0)
            more = 0;
        else
            more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
}

int transport_recv_topic(void *sock, zmq_msg_t *body, char topic[PROTO_MAX_TOPIC + 1], int timeout_ms)
{
    zmq_msg_t first;
    int rc = transport_recv(sock, &first, timeout_ms);
    topic[0] = '\0';
    if (rc <= 0)
        return rc;
    if (!zmq_msg_more(&first)) {
        /* the deprecated single-frame form: the body alone */
        zmq_msg_init(body);
        zmq_msg_move(body, &first);
        zmq_msg_close(&first);
        return 1;
    }
    size_t n = zmq_msg_size(&first);
    int ok = n >= 1 && n <= PROTO_MAX_TOPIC && !memchr(zmq_msg_data(&first), '\0', n);
    if (ok) {
        memcpy(topic, zmq_msg_data(&first), n);
        topic[n] = '\0';
    }
    zmq_msg_close(&first);
    zmq_msg_init(body);
    if (zmq_msg_recv(body, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(body);
        topic[0] = '\0';
        return 0;
    }
    if (zmq_msg_more(body)) {
        ok = 0;   /* [topic, body] only */
        drain_more(sock, body);
    }
    if (!ok) {
        zmq_msg_close(body);
        topic[0] = '\0';
        return 0;
    }
    return 1;
}

int transport_subscribe(void *sub, const void *prefix, size_t n, int on)
{
    int type = 0;
    size_t size = sizeof type;
    if (n > SUBSCRIPTION_MAX || zmq_getsockopt(sub, ZMQ_TYPE, &type, &size) != 0) {
        errno = EINVAL;
        return -1;
    }
    if (type != ZMQ_XSUB)
        return zmq_setsockopt(sub, on ? ZMQ_SUBSCRIBE : ZMQ_UNSUBSCRIBE, prefix, n);
    /* XSUB: a subscription is a message, 1 (or 0 to cancel) and the prefix;
     * the socket keeps it and sends it again on every reconnection */
    unsigned char m[1 + SUBSCRIPTION_MAX];
    m[0] = on ? 1 : 0;
    if (n)
        memcpy(m + 1, prefix, n);
    return zmq_send(sub, m, 1 + n, 0) < 0 ? -1 : 0;
}

int transport_subscribe_stop(void *sub)
{
    uint8_t old[128];
    size_t n = proto_control_stop_prefix(old, sizeof old);
    if (n == 0 || transport_subscribe(sub, PROTO_TOPIC_STOP, strlen(PROTO_TOPIC_STOP), 1) ||
        transport_subscribe(sub, old, n, 1) || transport_subscribe(sub, "", 0, 0)) {
        fprintf(stderr, "transport: cannot narrow a SUB socket to Control STOP: %s\n", zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

int transport_beat(void *xsub, const char *sender, proto_control_kind_t kind)
{
    proto_control_t c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    snprintf(c.sender, sizeof c.sender, "%s", sender);
    proto_buf_t b;
    proto_buf_init(&b);
    int rc = proto_control_encode(&b, &c, NULL, 0) == 0 && zmq_send(xsub, b.data, b.len, ZMQ_DONTWAIT) >= 0 ? 0 : -1;
    proto_buf_release(&b);
    return rc;
}

int transport_hear_beats(void *xpub, liveness_t *l, double now)
{
    int heard = 0;
    for (int i = 0; i < BEATS_PER_CALL; i++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, xpub, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        const uint8_t *d = zmq_msg_data(&m);
        size_t n = zmq_msg_size(&m);
        proto_control_t c;
        /* subscriptions (first byte 0 or 1) and anything but one frame of a
         * Control heartbeat or end_of_stream are not beats */
        if (!zmq_msg_more(&m) && n > 0 && d[0] > 1 && proto_control_decode(&c, d, n, NULL, 0) == 0) {
            if (c.kind == PROTO_CONTROL_HEARTBEAT) {
                liveness_beat(l, c.sender, now);
                heard++;
            } else if (c.kind == PROTO_CONTROL_END_OF_STREAM) {
                liveness_gone(l, c.sender);
                heard++;
            }
        }
        drain_more(xpub, &m);
        zmq_msg_close(&m);
    }
    return heard;
}
