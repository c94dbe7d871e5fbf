/* evaluator/webtext: what a self-contained web page needs to carry text and
 * files: base64 (RFC 4648, standard alphabet, with padding) for data: URIs,
 * and HTML escaping for text that comes from files (JSON strings, paths).
 */
#ifndef EVALUATOR_WEBTEXT_H
#define EVALUATOR_WEBTEXT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Characters of the base64 text of n bytes (padding included, no NUL). */
size_t eval_base64_len(size_t n);

/* Writes the base64 text of in[0..n) to out (eval_base64_len(n) characters,
 * then a NUL: out holds eval_base64_len(n) + 1). */
void eval_base64_encode(char *out, const uint8_t *in, size_t n);

/* Writes s to f with & < > " ' replaced by their character references, so
 * that it reads as text in element content and in quoted attribute values.
 * NULL writes nothing. */
void eval_html_escape(FILE *f, const char *s);

#endif
