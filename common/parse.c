/* Value parsers shared by the config loader and the command-line tools. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool as_parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    if (!s || !*s || isspace((unsigned char)*s))
        return false;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool as_parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v, mult = 1;

    if (!s || !isdigit((unsigned char)*s))
        return false;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return false;
    switch (tolower((unsigned char)*end)) {
    case '\0': break;
    case 'k': mult = 1ULL << 10; end++; break;
    case 'm': mult = 1ULL << 20; end++; break;
    case 'g': mult = 1ULL << 30; end++; break;
    default: return false;
    }
    if (*end || v > (unsigned long long)SIZE_MAX / mult)
        return false;
    *out = (size_t)(v * mult);
    return true;
}

bool as_parse_duration(const char *s, double *out)
{
    char *end;
    double v, mult = 1;

    if (!s || !(isdigit((unsigned char)*s) || *s == '.'))
        return false;
    errno = 0;
    v = strtod(s, &end);
    if (errno || !isfinite(v) || v < 0)
        return false;
    switch (*end) {
    case '\0': break;
    case 's': end++; break;
    case 'm': mult = 60; end++; break;
    case 'h': mult = 3600; end++; break;
    case 'd': mult = 86400; end++; break;
    default: return false;
    }
    if (*end)
        return false;
    *out = v * mult;
    return true;
}

bool as_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "on", "yes", "true", "1" };
    static const char *const no[] = { "off", "no", "false", "0" };

    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(s, yes[i])) { *out = true; return true; }
        if (!strcasecmp(s, no[i])) { *out = false; return true; }
    }
    return false;
}
