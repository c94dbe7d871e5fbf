/* error: the augment library's last-error message (read with aug_error()). */
#ifndef AUGMENTER_ERROR_H
#define AUGMENTER_ERROR_H

/* Formats the message of the last error of this thread. */
void aug_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
