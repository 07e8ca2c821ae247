/* Request IDs (request_id.h). */
#include "request_id.h"

#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static struct {
    bool seeded;
    uint64_t prefix, key, counter;
} rid;

bool as_request_id_valid(const char *v, size_t len)
{
    if (len == 0 || len >= AS_REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-_.:+/=@", c))
            || c == '\0')
            return false;
    }
    return true;
}

/* splitmix64's finaliser: a bijection of 64-bit values. */
static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void as_request_id_reseed(void)
{
    uint64_t r[2];

    if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        /* No entropy yet (early boot): time and pid still differ between
         * processes, which is all uniqueness needs. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r[0] = mix((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
        r[1] = mix(r[0] ^ (uint64_t)getpid());
    }
    rid.prefix = r[0];
    rid.key = r[1];
    rid.counter = 0;
    rid.seeded = true;
}

static void hex64(uint64_t v, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = digits[v & 15];
}

void as_request_id_new(char out[AS_REQUEST_ID_NEW_LEN + 1])
{
    if (!rid.seeded)
        as_request_id_reseed();
    hex64(rid.prefix, out);
    hex64(mix(rid.counter++ ^ rid.key), out + 16);
    out[AS_REQUEST_ID_NEW_LEN] = '\0';
}
