/* queue: how many Samples the loader's PUSH socket may queue for each
 * augmenter connection.
 *
 * ZeroMQ bounds a queue in messages (ZMQ_SNDHWM, per connection) and cannot
 * say how many bytes it holds. The loader bounds it in bytes as well
 * (--queue-mb): before binding, it decodes a few items spread over the
 * dataset and takes the largest Sample among them as the size of every
 * Sample; the high-water mark is then the number of such Samples that fit
 * in the budget, at least 1 and at most --hwm. So 1,000 queued 224x224
 * photos (150 KB each) fit in 256 MB, while 1,000 full-size photos (0.5 MB
 * each, 0.5 GB) become 512. Datasets of one image size (IDX, CIFAR) are
 * bounded exactly; folders of mixed sizes within a factor of the sizes
 * probed (--max-side caps them).
 */
#ifndef LOADER_QUEUE_H
#define LOADER_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "dataset/dataset.h"

#define QUEUE_PROBES         8      /* items decoded to learn the size of a Sample */
#define QUEUE_SAMPLE_HEADER  128    /* bytes of a Sample message besides its pixels (at most) */

/* Messages of sample_bytes each that fit in queue_bytes: at least 1, at most
 * max_hwm. sample_bytes 0 (unknown) gives max_hwm. */
int queue_hwm(uint64_t queue_bytes, uint64_t sample_bytes, int max_hwm);

/* The largest Sample message among up to QUEUE_PROBES of items[0..n)
 * (spread evenly), decoded with opts; 0 when none could be read. Reads on
 * the calling thread (which then calls dataset_thread_done before it ends). */
uint64_t queue_probe_sample_bytes(const dataset_t *ds, const dataset_decode_opts_t *opts, const size_t *items,
                                  size_t n);

#endif
