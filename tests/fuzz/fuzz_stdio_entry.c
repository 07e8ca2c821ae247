/* libFuzzer target: a worker's output through appstackd's entry assembler
 * (supervisor/stdio_entry.c), the part of appstackd that parses what an
 * app writes.
 *
 * The input is cut into pipe packets: each starts with a length byte
 * (low 7 bits: 0..127 bytes, 127 meaning a full 4096-byte packet padded
 * with the following data), then the packet. Checked: no entry is empty or
 * over STDIO_ENTRY_MAX, no priority is outside 0..7, and nothing is lost:
 * every byte fed comes out (less the newlines and "<N>" prefixes the rules
 * remove). Built by `make fuzz` (tests/fuzz/fuzz.mk); replayed on every
 * file of tests/fuzz/corpus/stdio_entry by `make check`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stdio_entry.h"

static size_t emitted;

static void emit(void *ctx, int priority, const char *text, size_t len)
{
    (void)ctx;
    if (len == 0 || len > STDIO_ENTRY_MAX || priority < 0 || priority > 7)
        abort();
    if (text[len - 1] == '\n')
        abort();    /* trailing newlines are removed */
    emitted += len;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static char packet[4096];
    struct stdio_entry e;
    size_t fed = 0;

    emitted = 0;
    stdio_entry_init(&e, 4, emit, NULL);
    while (size > 0) {
        size_t want = data[0] & 0x7f, n;
        data++;
        size--;
        if (want == 127) {
            n = size < sizeof packet ? size : sizeof packet;
            memset(packet, 'x', sizeof packet);
            memcpy(packet, data, n);
            stdio_entry_feed(&e, packet, sizeof packet, true);
            fed += sizeof packet;
        } else {
            n = want < size ? want : size;
            memcpy(packet, data, n);
            stdio_entry_feed(&e, packet, n, false);
            fed += n;
        }
        data += n;
        size -= n;
    }
    stdio_entry_flush(&e);
    if (stdio_entry_pending(&e) || emitted > fed)
        abort();
    stdio_entry_free(&e);
    return 0;
}
