/* libFuzzer target: the proxy's Accept-Encoding parser (proxy/accept_enc.c).
 *
 * What must hold for every value: the answer is one of the codings
 * offered (never one outside ALLOWED), it does not read past the value
 * (ASan), and it is the same with a value's copy in a buffer of exactly
 * its size; with nothing allowed it is always identity. The first byte
 * picks the allowed set. Built by `make fuzz`; replayed by `make check`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "accept_enc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned allowed;
    char *copy;
    int a, b;

    if (size < 1)
        return 0;
    allowed = (unsigned)(data[0] & 3) << 1;     /* bits 1 (gzip) and 2 (br) */
    data++;
    size--;
    copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    a = ae_choose(copy, size, allowed);
    b = ae_choose(copy, size, allowed);
    if (a != b)
        abort();
    if (a != AE_IDENTITY && !(allowed & (1u << a)))
        abort();
    if (ae_choose(copy, size, 0) != AE_IDENTITY)
        abort();
    free(copy);
    return 0;
}
