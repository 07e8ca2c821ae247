/* Accept-Encoding (RFC 9110 12.5.3) with q-values: which of the content
 * codings the proxy can send a client prefers. Pure (no I/O, no globals),
 * so it is fuzzed on its own (tests/fuzz/fuzz_accept_enc.c). */
#ifndef APPSTACK_PROXY_ACCEPT_ENC_H
#define APPSTACK_PROXY_ACCEPT_ENC_H

#include <stddef.h>

enum { AE_IDENTITY = 0, AE_GZIP = 1, AE_BR = 2 };

/* The coding to use among ALLOWED (a mask of 1 << AE_GZIP, 1 << AE_BR)
 * for a request whose Accept-Encoding value is V (LEN bytes; V NULL: no
 * such field). The highest q wins, brotli on a tie (it is smaller); a coding
 * with q=0, or not named while "*" is not either, is never chosen, and
 * neither is one the client ranks below "identity". AE_IDENTITY: none. */
int ae_choose(const char *v, size_t len, unsigned allowed);

#endif
