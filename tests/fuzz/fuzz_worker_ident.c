/* libFuzzer target: the proxy's reading of a worker's Appstack-Worker
 * answer (common/worker_ident.c). Any bytes: no crash; a value that parses
 * written again by the worker's side reads back the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "worker_ident.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char answer[AS_WORKER_ANSWER_MAX];
    const char *field = AS_WORKER_FIELD ": ", *v;
    uint64_t token, again;
    int capacity, cap2;
    size_t n;

    if (!as_worker_ident_parse((const char *)data, size, &token, &capacity))
        return 0;
    n = as_worker_ident_answer(answer, sizeof answer, token, capacity);
    if (!n)
        abort();
    v = strstr(answer, field);
    if (!v)
        abort();
    v += strlen(field);
    if (!as_worker_ident_parse(v, (size_t)(answer + n - 4 - v), &again, &cap2) || again != token || cap2 != capacity)
        abort();
    return 0;
}
