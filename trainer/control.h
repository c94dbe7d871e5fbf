/* trainer/control: the trainer's side of the Control socket, an XPUB it
 * binds. Down it go a HEARTBEAT (with the epoch training is in), a Have and
 * the trainer's Stats every second, an Ack after each step naming the
 * samples it trained, and STOP at the end, each as [topic, body] (proto.h
 * PROTO_TOPIC_*). Up it come the beats of the loader and the augmenters
 * (once a second): one silent for TRANSPORT_SILENT_S is logged as stopped or
 * hung, and again when it is back.
 *
 * Nothing here waits: a message that cannot go now is dropped (a lost Ack
 * only makes the loader send the sample again). Every function accepts a
 * NULL control (--control none) and then publishes nothing.
 */
#ifndef TRAINER_CONTROL_H
#define TRAINER_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"
#include "trainer/feed.h"

typedef struct control control_t;

/* Binds the XPUB on endpoint; sender names the trainer in every message.
 * NULL when it cannot (logged). */
control_t *control_new(const char *endpoint, const char *sender);
void control_destroy(control_t **self_p);

/* Reads the beats that came meanwhile and logs who fell silent or is back. */
void control_hear(control_t *c, double now);

/* A Control message of `kind` (HEARTBEAT, STOP) for the epoch training is in. */
void control_publish(control_t *c, proto_control_kind_t kind, uint32_t epoch, long step);

/* STOP, repeated a few times apart: PUB/SUB may lose the first ones. */
void control_stop(control_t *c, uint32_t epoch, long step);

/* What the model holds of the current epochs (a Have), so that a loader
 * sends again what a trainer acknowledged and then lost by dying before its
 * next checkpoint. Nothing before the first epoch is known. */
void control_publish_have(control_t *c, feed_t *feed, long step);

/* The trainer's Stats, the n name/value pairs of stats. */
void control_publish_stats(control_t *c, proto_stat_t *stats, size_t n);

/* Acks for the n samples (epoch[i], index[i]): one message per epoch (and
 * per PROTO_MAX_ACK_INDICES). */
void control_publish_acks(control_t *c, const uint32_t *epoch, const uint64_t *index, size_t n);

/* Acknowledges the copies that the receive thread dropped; takes them from
 * the feed even without a control socket. */
void control_ack_duplicates(control_t *c, feed_t *feed);

#endif
