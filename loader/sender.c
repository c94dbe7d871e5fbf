/* loader/sender: the loader's outgoing messages (sender.h). */
#include "loader/sender.h"

#include <stdio.h>

#include "console/console.h"
#include "transport/transport.h"

int send_sample(sender_t *s, const dataset_t *ds, size_t item, uint32_t epoch, const uint8_t *pixels,
                       uint32_t h, uint32_t w, uint32_t c)
{
    proto_sample_t m = {
        .index = item, .epoch = epoch, .label = dataset_label(ds, item),
        .height = h, .width = w, .channels = c, .pixels = pixels,
    };
    char perr[PROTO_ERR_MAX];
    if (proto_sample_encode(&s->buf, &m, perr, sizeof perr)) {
        console_log("cannot encode item %zu: %s", item, perr);
        return -1;
    }
    return transport_send(s->push, s->buf.data, s->buf.len);
}

int send_control(sender_t *s, proto_control_kind_t kind, uint32_t epoch, uint64_t count)
{
    proto_control_t m = {.kind = kind, .epoch = epoch, .count = count};
    snprintf(m.sender, sizeof m.sender, "%s", s->identity);
    char perr[PROTO_ERR_MAX];
    if (proto_control_encode(&s->buf, &m, perr, sizeof perr)) {
        console_log("cannot encode a control message: %s", perr);
        return -1;
    }
    return transport_send(s->push, s->buf.data, s->buf.len);
}
