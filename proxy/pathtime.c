/* How long a worker takes for the requests of one path, learned from the
 * answers (pathtime.h). */
#include "pathtime.h"

#include <math.h>

#define SLOTS 4096          /* a power of two; a path that collides replaces the other */

static struct {
    uint64_t hash;
    float seconds;
} table[SLOTS];

uint64_t pathtime_key(const char *method, const char *target, size_t len)
{
    uint64_t h = 1469598103934665603ull;    /* FNV-1a */

    for (; *method; method++)
        h = (h ^ (unsigned char)*method) * 1099511628211ull;
    for (size_t i = 0; i < len && target[i] != '?'; i++)
        h = (h ^ (unsigned char)target[i]) * 1099511628211ull;
    return h | 1;           /* 0 marks an empty slot */
}

double pathtime_expect(uint64_t key)
{
    unsigned i = (unsigned)key & (SLOTS - 1);

    return table[i].hash == key ? table[i].seconds : INFINITY;
}

/* Up fast, down slowly: a path that is sometimes slow counts as slow for a
 * while, so that few requests queue behind it; but one answer slowed down
 * by a busy machine (a worker not scheduled for 50 ms) does not make a
 * short path slow. */
void pathtime_learn(uint64_t key, double seconds)
{
    unsigned i = (unsigned)key & (SLOTS - 1);

    if (seconds < 0)
        seconds = 0;
    if (table[i].hash != key) {
        table[i].hash = key;
        table[i].seconds = (float)seconds;
        return;
    }
    table[i].seconds += (float)((seconds - table[i].seconds) / (seconds > table[i].seconds ? 4 : 16));
}
