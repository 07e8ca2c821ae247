/* HTTP date formatting and parsing, without locale or strptime. */
#include "httpdate.h"
#include "fmt.h"

#include <stdio.h>
#include <string.h>

static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

void httpdate_format(time_t t, char *out)
{
    struct tm tm;

    struct fmt f = { out, out + HTTPDATE_LEN };

    /* by hand: static files put one in every response */
    gmtime_r(&t, &tm);
    fmt_mem(&f, days[tm.tm_wday % 7], 3);
    fmt_mem(&f, ", ", 2);
    fmt_u64_width(&f, (uint64_t)tm.tm_mday, 2);
    fmt_char(&f, ' ');
    fmt_mem(&f, months[tm.tm_mon % 12], 3);
    fmt_char(&f, ' ');
    fmt_u64_width(&f, (uint64_t)((tm.tm_year + 1900) % 10000), 4);
    fmt_char(&f, ' ');
    fmt_u64_width(&f, (uint64_t)tm.tm_hour, 2);
    fmt_char(&f, ':');
    fmt_u64_width(&f, (uint64_t)tm.tm_min, 2);
    fmt_char(&f, ':');
    fmt_u64_width(&f, (uint64_t)tm.tm_sec, 2);
    fmt_mem(&f, " GMT", 4);
    *f.p = '\0';
}

static bool num(const char *s, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

bool httpdate_parse(const char *s, size_t len, time_t *out)
{
    struct tm tm = { 0 };
    int mon = -1;

    /* "Sun, 06 Nov 1994 08:49:37 GMT" */
    if (len != HTTPDATE_LEN || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' '
        || s[16] != ' ' || s[19] != ':' || s[22] != ':' || memcmp(s + 25, " GMT", 4))
        return false;
    for (int i = 0; i < 12; i++)
        if (!memcmp(s + 8, months[i], 3))
            mon = i;
    if (mon < 0 || !num(s + 5, 2, &tm.tm_mday) || !num(s + 12, 4, &tm.tm_year)
        || !num(s + 17, 2, &tm.tm_hour) || !num(s + 20, 2, &tm.tm_min) || !num(s + 23, 2, &tm.tm_sec))
        return false;
    tm.tm_mon = mon;
    tm.tm_year -= 1900;
    *out = timegm(&tm);
    return *out != (time_t)-1;
}

const char *httpdate_now(time_t now)
{
    static char buf[HTTPDATE_LEN + 1];
    static time_t last = -1;

    if (now != last) {
        httpdate_format(now, buf);
        last = now;
    }
    return buf;
}
