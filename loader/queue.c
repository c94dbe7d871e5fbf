/* queue: the PUSH socket's high-water mark from a byte budget. */
#include "loader/queue.h"

int queue_hwm(uint64_t queue_bytes, uint64_t sample_bytes, int max_hwm)
{
    if (sample_bytes == 0)
        return max_hwm;
    uint64_t n = queue_bytes / sample_bytes;
    if (n < 1)
        return 1;
    return n < (uint64_t)max_hwm ? (int)n : max_hwm;
}

uint64_t queue_probe_sample_bytes(const dataset_t *ds, const dataset_decode_opts_t *opts, const size_t *items,
                                  size_t n)
{
    dataset_image_t img;
    dataset_error_t err;
    uint64_t largest = 0;
    size_t probes = n < QUEUE_PROBES ? n : QUEUE_PROBES;
    dataset_image_init(&img);
    for (size_t k = 0; k < probes; k++) {
        size_t item = items[k * n / probes];
        if (dataset_read(ds, item, opts, &img, &err))
            continue;   /* the loader reports it when it reads it for real */
        uint64_t bytes = (uint64_t)img.height * img.width * img.channels + QUEUE_SAMPLE_HEADER;
        if (bytes > largest)
            largest = bytes;
    }
    dataset_image_release(&img);
    return largest;
}
