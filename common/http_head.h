/* Header-section storage and checks for http_parse.c (private). */
#ifndef APPSTACK_HTTP_HEAD_H
#define APPSTACK_HTTP_HEAD_H

#include "http_parse.h"

/* Installs the callbacks that copy the request line and headers. */
void as_http_head_settings(llhttp_settings_t *s);

/* The section is complete: sets the public fields of R and checks them.
 * Returns 0, or the status to answer with r->error set. */
int as_http_head_finish(struct as_http_request *r);

#endif
