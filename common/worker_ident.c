/* The worker's answer to the proxy's question (worker_ident.h): written by
 * the worker, read by the proxy. */
#include "worker_ident.h"

#include <stdio.h>

size_t as_worker_ident_answer(char *buf, size_t size, uint64_t token, int capacity)
{
    int n = snprintf(buf, size, "HTTP/1.1 100 Continue\r\n" AS_WORKER_FIELD ": %016llx %d\r\n\r\n",
                     (unsigned long long)token, capacity);

    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool as_worker_ident_parse(const char *v, size_t len, uint64_t *token, int *capacity)
{
    uint64_t t = 0;
    int cap = 0;
    size_t k;

    if (len < AS_WORKER_TOKEN_LEN + 2 || v[AS_WORKER_TOKEN_LEN] != ' ')
        return false;
    for (k = 0; k < AS_WORKER_TOKEN_LEN; k++) {
        int d = hexval(v[k]);
        if (d < 0)
            return false;
        t = t << 4 | (uint64_t)d;
    }
    for (k = AS_WORKER_TOKEN_LEN + 1; k < len && v[k] >= '0' && v[k] <= '9' && cap <= AS_WORKER_CAPACITY_MAX; k++)
        cap = cap * 10 + (v[k] - '0');
    if (k != len || cap < 1 || cap > AS_WORKER_CAPACITY_MAX)
        return false;
    *token = t;
    *capacity = cap;
    return true;
}
