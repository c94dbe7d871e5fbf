/* topic.c: the topic frame of the trainer's Control PUB socket. Each message
 * published there travels as two ZeroMQ frames, [topic, body]: a short
 * ASCII topic naming what the body is, so that a SUB socket can choose what
 * it receives by topic (ZeroMQ filters on the first frame) whatever order a
 * MessagePack writer puts the body's fields in. */
#include <string.h>

#include "proto/proto_internal.h"

static const char *const control_topics[] = {
    [PROTO_CONTROL_STOP] = PROTO_TOPIC_STOP,
    [PROTO_CONTROL_END_OF_EPOCH] = PROTO_TOPIC_END_OF_EPOCH,
    [PROTO_CONTROL_END_OF_STREAM] = PROTO_TOPIC_END_OF_STREAM,
    [PROTO_CONTROL_HEARTBEAT] = PROTO_TOPIC_HEARTBEAT,
};
#define N_CONTROL_TOPICS (sizeof control_topics / sizeof control_topics[0])

const char *proto_control_topic(proto_control_kind_t kind)
{
    return (unsigned)kind < N_CONTROL_TOPICS ? control_topics[kind] : NULL;
}

const char *proto_type_topic(proto_msg_type_t type)
{
    switch (type) {
    case PROTO_MSG_ACK: return PROTO_TOPIC_ACK;
    case PROTO_MSG_HAVE: return PROTO_TOPIC_HAVE;
    case PROTO_MSG_STATS: return PROTO_TOPIC_STATS;
    default: return NULL;
    }
}

int proto_topic_check(const void *topic, size_t n, const void *body, size_t len, char *err, size_t errlen)
{
    proto_msg_type_t type;
    if (proto_peek_type(body, len, &type, err, errlen))
        return -1;
    const char *want = proto_type_topic(type);
    if (type == PROTO_MSG_CONTROL) {
        proto_control_t c;
        if (proto_control_decode(&c, body, len, err, errlen))
            return -1;
        want = proto_control_topic(c.kind);
    }
    if (!want)
        return proto_fail(err, errlen, "topic: a %s message has no topic on the Control PUB socket",
                          proto_msg_type_name(type));
    if (n != strlen(want) || memcmp(topic, want, n) != 0) {
        char q[PROTO_QUOTE_BYTES];
        return proto_fail(err, errlen, "topic: a %s message travels under topic \"%s\", not \"%s\"",
                          proto_msg_type_name(type), want, proto_quote(topic, n, q));
    }
    return 0;
}
