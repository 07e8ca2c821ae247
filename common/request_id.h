/* Request IDs (X-Request-ID, APPSTACK_REQUEST_ID): the proxy gives every
 * request one, or keeps the one a trusted front sent; the worker logs it
 * with every message about the request. */
#ifndef APPSTACK_REQUEST_ID_H
#define APPSTACK_REQUEST_ID_H

#include <stdbool.h>
#include <stddef.h>

#define AS_REQUEST_ID_MAX 64    /* bytes with the NUL: an ID has 1 to 63 characters */
#define AS_REQUEST_ID_NEW_LEN 32

/* An ID we accept from elsewhere: 1 to 63 of A-Z a-z 0-9 and - _ . : + / = @
 * (UUIDs, hex, base64 and the usual load balancer formats), so that it can
 * go into a header and a log field as it is. */
bool as_request_id_valid(const char *v, size_t len);

/* A new ID: 32 lowercase hex digits, unique among the IDs of this process
 * and, with overwhelming probability, of every other one: a random 64-bit
 * prefix drawn once per process and a 64-bit counter through a bijective
 * mix (so IDs do not show how many requests came before). No system call
 * after the first. A process forked from one that made IDs must call
 * as_request_id_reseed() first. */
void as_request_id_new(char out[AS_REQUEST_ID_NEW_LEN + 1]);
void as_request_id_reseed(void);

#endif
