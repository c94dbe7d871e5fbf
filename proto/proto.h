/* proto: the pipeline's wire format, the only code that touches msgpack.
 *
 * Every message is one msgpack map whose first three entries are
 *   "fmt": "sslpipe"   format tag
 *   "ver": 1           protocol version (PROTO_VERSION)
 *   "type": "sample" | "viewbatch" | "checkpoint" | "control" | "stats" | "ack" | "have"
 * followed by the fields of that type. proto/PROTOCOL.md is the spec: fields,
 * types, units, limits, sockets, versioning rule.
 *
 * Each type has one encode and one decode function.
 *  - encode appends nothing: it replaces the content of `out` with the message.
 *  - decode validates everything before it allocates anything the sender claims
 *    (declared counts are checked against the bytes present, sizes against the
 *    limits below) and returns 0, or -1 with the reason in the caller's buffer.
 *  - Every function that can fail takes (char *err, size_t errlen) last and
 *    writes the reason there (nothing when err is NULL); PROTO_ERR_MAX bytes
 *    hold any message, such as "viewbatch: samples[3].data is 1200 bytes,
 *    expected 12288 (2 views x 3 x 32 x 32 x float32)".
 *  - Decoded byte payloads (pixels, view data, checkpoint bytes) are BORROWED:
 *    they point into the buffer given to decode and stay valid as long as that
 *    buffer does. Strings are copied, NUL-terminated, into the struct's fixed
 *    arrays. Arrays the decoder allocates are released by the type's _clear.
 */
#ifndef PROTO_PROTO_H
#define PROTO_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_FORMAT  "sslpipe"
#define PROTO_VERSION 1
#define PROTO_ERR_MAX 512   /* room for any error message of proto */

/* Limits enforced by every decoder (and by the encoders, so that a message we
 * send is one we would accept). */
#define PROTO_MAX_MESSAGE_BYTES   (256u << 20)  /* ZMQ_MAXMSGSIZE on every receiving socket */
#define PROTO_MAX_SIDE            16384u        /* pixels, height or width */
#define PROTO_MAX_PIXELS          (64u << 20)   /* height x width of one image or view */
#define PROTO_MAX_CHANNELS        4u
#define PROTO_MAX_VIEWS           16u           /* views per sample in a ViewBatch */
#define PROTO_MAX_BATCH_SAMPLES   4096u         /* samples per ViewBatch */
#define PROTO_MAX_NAME            128u          /* bytes of a name field, with its NUL */
#define PROTO_MAX_TEXT            4096u         /* bytes of a text field, with its NUL */
#define PROTO_MAX_STATS           256u          /* counters in one Stats message */
#define PROTO_MAX_ACK_INDICES     (4096u * 16u) /* dataset indices in one Ack message */
#define PROTO_MAX_HAVE_EPOCHS     4u            /* epochs described by one Have message */
#define PROTO_MAX_HAVE_BYTES      (32u << 20)   /* bytes of one epoch's bitset in a Have (2^28 indices) */
#define PROTO_LABEL_NONE          (-1)          /* an unlabeled sample */
#define PROTO_TARGET_NONE         (-1)          /* a view without a target */
#define PROTO_MAX_TARGET_CLASSES  65536u        /* a ViewBatch's target_classes */
/* Structural limits of the msgpack pre-scan every decoder runs first. */
#define PROTO_MAX_DEPTH           8u            /* nested arrays/maps, the message map included */
#define PROTO_MAX_OBJECTS         (1u << 20)    /* msgpack values in one message, keys included */

typedef enum {
    PROTO_MSG_INVALID = 0,
    PROTO_MSG_SAMPLE,
    PROTO_MSG_VIEWBATCH,
    PROTO_MSG_CHECKPOINT,
    PROTO_MSG_CONTROL,
    PROTO_MSG_STATS,
    PROTO_MSG_ACK,
    PROTO_MSG_HAVE,         /* the last one: proto_read_header loops up to it */
} proto_msg_type_t;

/* An encoded message: owns data[0..len). */
typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} proto_buf_t;

void proto_buf_init(proto_buf_t *b);
void proto_buf_release(proto_buf_t *b);
/* Hands data to the caller (who frees it with free()) and empties b. */
uint8_t *proto_buf_detach(proto_buf_t *b, size_t *len);

/* Makes room for at least `extra` more bytes after len; 0, or -1 when out of memory. */
int proto_buf_reserve(proto_buf_t *b, size_t extra, char *err, size_t errlen);

/* Reads only the header (fmt, ver, type); -1 if it is not one of ours
 * (another format, another version, an unknown type). Cheap: no allocation. */
int proto_peek_type(const void *buf, size_t len, proto_msg_type_t *type, char *err, size_t errlen);
const char *proto_msg_type_name(proto_msg_type_t type);

/* ---- Sample: one decoded image, loader -> augmenter ---- */
typedef struct {
    uint64_t index;         /* position in the dataset (before shuffling) */
    uint32_t epoch;         /* 0-based */
    int32_t label;          /* class id, or PROTO_LABEL_NONE */
    uint32_t height, width, channels;
    const uint8_t *pixels;  /* (H, W, C) uint8, height*width*channels bytes */
} proto_sample_t;

int proto_sample_encode(proto_buf_t *out, const proto_sample_t *s, char *err, size_t errlen);
int proto_sample_decode(proto_sample_t *s, const void *buf, size_t len, char *err, size_t errlen);
/* height * width * channels: the length of pixels in bytes. */
size_t proto_sample_bytes(const proto_sample_t *s);

/* ---- ViewBatch: augmented views of one or more samples, augmenter -> trainer ---- */
typedef enum { PROTO_DTYPE_F32 = 0, PROTO_DTYPE_U8 = 1 } proto_dtype_t;

typedef struct {
    uint64_t index;
    uint32_t epoch;
    int32_t label;
    int32_t target[PROTO_MAX_VIEWS];  /* per view, e.g. rotation class 0-3; -1 when none */
    const void *data;                 /* (K, C, H, W) of dtype, borrowed; float32 is
                                         little-endian. After a decode it points into the
                                         message and is NOT necessarily 4-byte aligned:
                                         memcpy it out, do not cast it to float *. */
} proto_view_sample_t;

typedef struct {
    proto_dtype_t dtype;
    uint32_t views;                   /* K views per sample, 1..PROTO_MAX_VIEWS */
    uint32_t channels, height, width;
    uint32_t n_samples;               /* 1..PROTO_MAX_BATCH_SAMPLES */
    proto_view_sample_t *samples;     /* (n_samples); decode allocates it */
    uint32_t target_classes;          /* optional: N when every target is -1 or in
                                         0..N-1 (the recipe's pretext classes, 4 for
                                         RotNet); 0: not announced (not written) */
} proto_viewbatch_t;

size_t proto_dtype_size(proto_dtype_t dtype);    /* bytes per element, 0 if unknown */
const char *proto_dtype_name(proto_dtype_t dtype); /* "f32" | "u8" (the wire names) */
/* views * channels * height * width * dtype size: the length of one sample's data. */
size_t proto_viewbatch_sample_bytes(const proto_viewbatch_t *vb);
int proto_viewbatch_encode(proto_buf_t *out, const proto_viewbatch_t *vb, char *err, size_t errlen);
int proto_viewbatch_decode(proto_viewbatch_t *vb, const void *buf, size_t len, char *err, size_t errlen);
/* Frees samples after a decode (successful or not) and zeroes vb. Only for a
 * struct filled by decode: an encoder's caller owns its own samples array. Each
 * decode overwrites the struct, so clear it before decoding into it again. */
void proto_viewbatch_clear(proto_viewbatch_t *vb);

/* ---- Checkpoint: a trained model is ready, trainer -> evaluator ---- */
typedef struct {
    uint64_t step;
    uint32_t epoch;
    char method[PROTO_MAX_NAME];  /* "simclr" | "rotnet" */
    char arch[PROTO_MAX_TEXT];    /* network description text */
    char path[PROTO_MAX_TEXT];    /* file path of the checkpoint, or "" */
    const uint8_t *bytes;   /* the checkpoint file's bytes, or NULL */
    size_t n_bytes;               /* at least one of path / bytes is present */
} proto_checkpoint_t;

int proto_checkpoint_encode(proto_buf_t *out, const proto_checkpoint_t *c, char *err, size_t errlen);
int proto_checkpoint_decode(proto_checkpoint_t *c, const void *buf, size_t len, char *err, size_t errlen);

/* ---- Control: stream and lifecycle events ---- */
typedef enum {
    PROTO_CONTROL_STOP = 1,           /* everyone receiving it shuts down */
    PROTO_CONTROL_END_OF_EPOCH = 2,   /* sender finished epoch `epoch`, `count` items */
    PROTO_CONTROL_END_OF_STREAM = 3,  /* sender sends nothing more; `count` items in all */
    PROTO_CONTROL_HEARTBEAT = 4,      /* sender is alive */
} proto_control_kind_t;

typedef struct {
    proto_control_kind_t kind;
    char sender[PROTO_MAX_NAME];  /* "loader@host:pid" */
    uint32_t epoch;
    uint64_t count;
} proto_control_t;

int proto_control_encode(proto_buf_t *out, const proto_control_t *c, char *err, size_t errlen);
int proto_control_decode(proto_control_t *c, const void *buf, size_t len, char *err, size_t errlen);
/* The first bytes of every Control STOP as proto_control_encode writes it
 * (header and kind): the subscription that matches the DEPRECATED
 * single-frame STOP (before topics, PROTO_TOPIC_STOP), kept for one version.
 * It cannot match a STOP whose writer put its fields in another order.
 * Writes at most cap bytes; returns the length, 0 on failure. */
size_t proto_control_stop_prefix(uint8_t *out, size_t cap);
const char *proto_control_kind_name(proto_control_kind_t kind);

/* ---- Topics of the trainer's Control PUB socket (PROTOCOL.md, "Topics") ----
 * Everything published there travels as two frames, [topic, body]: a SUB
 * socket subscribes to the topics it wants (ZeroMQ matches the first frame's
 * prefix; no topic is the prefix of another). The old single-frame form (the
 * body alone) is deprecated: receivers still accept it for one version. */
#define PROTO_TOPIC_STOP          "stop"        /* Control stop */
#define PROTO_TOPIC_HEARTBEAT     "heartbeat"   /* Control heartbeat */
#define PROTO_TOPIC_END_OF_EPOCH  "eoe"         /* Control end_of_epoch */
#define PROTO_TOPIC_END_OF_STREAM "eos"         /* Control end_of_stream */
#define PROTO_TOPIC_ACK           "ack"
#define PROTO_TOPIC_HAVE          "have"
#define PROTO_TOPIC_STATS         "stats"
#define PROTO_MAX_TOPIC           16u           /* bytes of a topic frame a receiver accepts */

/* The topic a Control of this kind travels under; NULL for an invalid kind. */
const char *proto_control_topic(proto_control_kind_t kind);
/* The topic of an Ack, Have or Stats; NULL for the other types (Control:
 * proto_control_topic, by kind). */
const char *proto_type_topic(proto_msg_type_t type);
/* 0 when body (len bytes) is a valid message that travels under `topic` (n
 * bytes, not NUL-terminated); -1 with err filled otherwise (a bad body, or
 * another topic: a receiver drops such a message). */
int proto_topic_check(const void *topic, size_t n, const void *body, size_t len, char *err, size_t errlen);

/* ---- Stats: a stage's counters, for monitoring ---- */
typedef struct {
    char name[PROTO_MAX_NAME];    /* "samples_sent", "skipped_corrupt", ... */
    double value;
} proto_stat_t;

typedef struct {
    char sender[PROTO_MAX_NAME];
    double time;            /* seconds since the Unix epoch when sampled */
    uint32_t n_stats;       /* 0..PROTO_MAX_STATS */
    proto_stat_t *stats;    /* (n_stats); decode allocates it */
} proto_stats_t;

int proto_stats_encode(proto_buf_t *out, const proto_stats_t *st, char *err, size_t errlen);
int proto_stats_decode(proto_stats_t *st, const void *buf, size_t len, char *err, size_t errlen);
/* Same rules as proto_viewbatch_clear. */
void proto_stats_clear(proto_stats_t *st);

/* ---- Ack: samples of an epoch the trainer has trained, trainer -> loader ---- */
typedef struct {
    char sender[PROTO_MAX_NAME];  /* "trainer@host:pid" */
    uint32_t epoch;               /* the epoch of every index below */
    uint32_t n_indices;           /* 1..PROTO_MAX_ACK_INDICES */
    uint64_t *indices;            /* (n_indices) dataset indices; decode allocates it */
} proto_ack_t;

int proto_ack_encode(proto_buf_t *out, const proto_ack_t *a, char *err, size_t errlen);
int proto_ack_decode(proto_ack_t *a, const void *buf, size_t len, char *err, size_t errlen);
/* Same rules as proto_viewbatch_clear. */
void proto_ack_clear(proto_ack_t *a);

/* ---- Have: the samples of its current epochs the trainer's model holds, trainer -> loader ---- */
typedef struct {
    char sender[PROTO_MAX_NAME];  /* "trainer@host:pid" */
    uint32_t epoch;               /* the epoch training is in; every earlier one is complete */
    uint64_t step;                /* optimizer steps done */
    uint32_t n_epochs;            /* 0..PROTO_MAX_HAVE_EPOCHS: done[k] describes epoch + k */
    const uint8_t *done[PROTO_MAX_HAVE_EPOCHS];   /* (done_bytes[k]) bitset over the dataset index:
                                                     bit i%8 of byte i/8 = sample i is done; borrowed
                                                     after a decode (NULL when done_bytes[k] is 0) */
    size_t done_bytes[PROTO_MAX_HAVE_EPOCHS];     /* 0..PROTO_MAX_HAVE_BYTES */
} proto_have_t;

int proto_have_encode(proto_buf_t *out, const proto_have_t *h, char *err, size_t errlen);
int proto_have_decode(proto_have_t *h, const void *buf, size_t len, char *err, size_t errlen);
/* 1 when h says sample `index` of `epoch` is done: epoch is one of those h
 * describes and its bit is set. 0 otherwise (an epoch before h->epoch is
 * complete, but this says 0 for it too: callers look at epochs from h->epoch). */
int proto_have_bit(const proto_have_t *h, uint32_t epoch, uint64_t index);

#endif
