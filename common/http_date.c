/* HTTP and access-log dates without locale, printf or strptime (see
 * http_date.h). Every response carries one, so the formatting is by hand. */
#include "http_date.h"

#include <string.h>

static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

/* V as WIDTH decimal digits (leading zeros); returns the end. */
static char *digits(char *p, long v, int width)
{
    for (int i = width - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
    return p + width;
}

/* "HH:MM:SS" */
static char *clock_time(char *p, const struct tm *tm)
{
    p = digits(p, tm->tm_hour, 2);
    *p++ = ':';
    p = digits(p, tm->tm_min, 2);
    *p++ = ':';
    return digits(p, tm->tm_sec, 2);
}

void as_http_date_format(time_t t, char *out)
{
    struct tm tm;
    char *p = out;

    gmtime_r(&t, &tm);
    memcpy(p, days[tm.tm_wday % 7], 3);
    p[3] = ',';
    p[4] = ' ';
    p = digits(p + 5, tm.tm_mday, 2);
    *p++ = ' ';
    memcpy(p, months[tm.tm_mon % 12], 3);
    p[3] = ' ';
    p = digits(p + 4, (tm.tm_year + 1900) % 10000, 4);
    *p++ = ' ';
    p = clock_time(p, &tm);
    memcpy(p, " GMT", 5);
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

bool as_http_date_parse(const char *s, size_t len, time_t *out)
{
    struct tm tm = { 0 };
    int mon = -1, wday = -1;

    /* "Sun, 06 Nov 1994 08:49:37 GMT" */
    if (len != AS_HTTP_DATE_LEN || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' ||
        s[16] != ' ' || s[19] != ':' || s[22] != ':' || memcmp(s + 25, " GMT", 4))
        return false;
    for (int i = 0; i < 12; i++)
        if (!memcmp(s + 8, months[i], 3))
            mon = i;
    for (int i = 0; i < 7; i++)
        if (!memcmp(s, days[i], 3))
            wday = i;
    if (mon < 0 || wday < 0 || !num(s + 5, 2, &tm.tm_mday) || !num(s + 12, 4, &tm.tm_year) ||
        !num(s + 17, 2, &tm.tm_hour) || !num(s + 20, 2, &tm.tm_min) || !num(s + 23, 2, &tm.tm_sec))
        return false;
    if (tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return false;
    tm.tm_mon = mon;
    tm.tm_year -= 1900;
    *out = timegm(&tm);
    return *out != (time_t)-1;
}

const char *as_http_date_now(time_t now)
{
    static char buf[AS_HTTP_DATE_LEN + 1];
    static time_t last = -1;

    if (now != last) {
        as_http_date_format(now, buf);
        last = now;
    }
    return buf;
}

void as_clf_date_format(time_t t, char *out)
{
    struct tm tm;
    char *p = out;
    long off;

    localtime_r(&t, &tm);
    off = tm.tm_gmtoff / 60;
    p = digits(p, tm.tm_mday, 2);
    *p++ = '/';
    memcpy(p, months[tm.tm_mon % 12], 3);
    p[3] = '/';
    p = digits(p + 4, (tm.tm_year + 1900) % 10000, 4);
    *p++ = ':';
    p = clock_time(p, &tm);
    *p++ = ' ';
    *p++ = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    p = digits(p, off / 60 % 100, 2);
    p = digits(p, off % 60, 2);
    *p = '\0';
}
