/* libFuzzer target: the worker's reading of Forwarded's for=
 * (worker/forwarded.c).
 *
 * What must hold for every value: no read past it (ASan), an address
 * given back is a valid IPv4 or IPv6 address that fits its buffer, and a
 * port is at most 65535. Built by `make fuzz`; replayed by `make check`. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "forwarded.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char *copy = malloc(size ? size : 1), addr[WK_FWD_ADDR_MAX];
    unsigned char bin[16];
    unsigned port = 70000;

    if (!copy)
        return 0;
    memcpy(copy, data, size);
    if (wk_forwarded_for(copy, size, addr, &port)) {
        if (strlen(addr) >= WK_FWD_ADDR_MAX || port > 65535)
            abort();
        if (inet_pton(AF_INET, addr, bin) != 1 && inet_pton(AF_INET6, addr, bin) != 1)
            abort();
    }
    free(copy);
    return 0;
}
