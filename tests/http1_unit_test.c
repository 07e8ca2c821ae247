/* C unit tests of the shared HTTP/1 layer (common/http_date.c,
 * http_reply.c, http_fields.c, http_uri.c): run by tests/test_http1_unit.py.
 *
 *   http1_unit_test [LOCALE...]
 *
 * Every check runs first in the C locale, then again after
 * setlocale(LC_ALL, LOCALE) for each LOCALE named (an app may call
 * setlocale() in a worker: nothing written on the wire may change). For each
 * locale it prints "locale NAME strftime=%a,%b" so that the caller can see
 * the locale really took effect. Prints "ok N" and exits 0, or prints each
 * failed check and exits 1. */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_date.h"
#include "http_fields.h"
#include "http_reply.h"
#include "http_uri.h"

static int checks, failures;
static const char *where = "C";

#define CHECK(cond) check((cond), #cond, __LINE__)

static void check(int ok, const char *what, int line)
{
    checks++;
    if (!ok) {
        failures++;
        fprintf(stderr, "FAIL [%s] line %d: %s\n", where, line, what);
    }
}

static void check_str(const char *got, const char *want, int line)
{
    checks++;
    if (strcmp(got, want) != 0) {
        failures++;
        fprintf(stderr, "FAIL [%s] line %d: got \"%s\", want \"%s\"\n", where, line, got, want);
    }
}

#define CHECK_STR(got, want) check_str((got), (want), __LINE__)

static const struct {
    time_t t;
    const char *http, *clf_utc, *clf_plus1;
} dates[] = {
    { 0, "Thu, 01 Jan 1970 00:00:00 GMT", "01/Jan/1970:00:00:00 +0000", "01/Jan/1970:01:00:00 +0100" },
    { 784111777, "Sun, 06 Nov 1994 08:49:37 GMT", "06/Nov/1994:08:49:37 +0000", "06/Nov/1994:09:49:37 +0100" },
    { 951782400, "Tue, 29 Feb 2000 00:00:00 GMT", "29/Feb/2000:00:00:00 +0000", "29/Feb/2000:01:00:00 +0100" },
    { 1000000000, "Sun, 09 Sep 2001 01:46:40 GMT", "09/Sep/2001:01:46:40 +0000", "09/Sep/2001:02:46:40 +0100" },
    { 1234567890, "Fri, 13 Feb 2009 23:31:30 GMT", "13/Feb/2009:23:31:30 +0000", "14/Feb/2009:00:31:30 +0100" },
    { 1719792000, "Mon, 01 Jul 2024 00:00:00 GMT", "01/Jul/2024:00:00:00 +0000", "01/Jul/2024:01:00:00 +0100" },
    { 1733011199, "Sat, 30 Nov 2024 23:59:59 GMT", "30/Nov/2024:23:59:59 +0000", "01/Dec/2024:00:59:59 +0100" },
    { 2147483648, "Tue, 19 Jan 2038 03:14:08 GMT", "19/Jan/2038:03:14:08 +0000", "19/Jan/2038:04:14:08 +0100" },
    { 1696118400, "Sun, 01 Oct 2023 00:00:00 GMT", "01/Oct/2023:00:00:00 +0000", "01/Oct/2023:01:00:00 +0100" },
    { 1683072000, "Wed, 03 May 2023 00:00:00 GMT", "03/May/2023:00:00:00 +0000", "03/May/2023:01:00:00 +0100" },
    { 1679875200, "Mon, 27 Mar 2023 00:00:00 GMT", "27/Mar/2023:00:00:00 +0000", "27/Mar/2023:01:00:00 +0100" },
    { 1681344000, "Thu, 13 Apr 2023 00:00:00 GMT", "13/Apr/2023:00:00:00 +0000", "13/Apr/2023:01:00:00 +0100" },
    { 1686787200, "Thu, 15 Jun 2023 00:00:00 GMT", "15/Jun/2023:00:00:00 +0000", "15/Jun/2023:01:00:00 +0100" },
    { 1692403200, "Sat, 19 Aug 2023 00:00:00 GMT", "19/Aug/2023:00:00:00 +0000", "19/Aug/2023:01:00:00 +0100" },
    { 1703462400, "Mon, 25 Dec 2023 00:00:00 GMT", "25/Dec/2023:00:00:00 +0000", "25/Dec/2023:01:00:00 +0100" },
};

static void set_tz(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

static void test_dates(void)
{
    char buf[64];
    time_t t;

    for (size_t i = 0; i < sizeof dates / sizeof dates[0]; i++) {
        memset(buf, 'x', sizeof buf);
        as_http_date_format(dates[i].t, buf);
        CHECK_STR(buf, dates[i].http);
        CHECK(strlen(buf) == AS_HTTP_DATE_LEN);
        CHECK(as_http_date_parse(dates[i].http, AS_HTTP_DATE_LEN, &t) && t == dates[i].t);
        set_tz("UTC0");
        as_clf_date_format(dates[i].t, buf);
        CHECK_STR(buf, dates[i].clf_utc);
        CHECK(strlen(buf) == AS_CLF_DATE_LEN);
        set_tz("XYZ-1");    /* POSIX TZ: one hour east of UTC, no tzdata needed */
        as_clf_date_format(dates[i].t, buf);
        CHECK_STR(buf, dates[i].clf_plus1);
    }
    set_tz("ABC+5:30");
    as_clf_date_format(0, buf);
    CHECK_STR(buf, "31/Dec/1969:18:30:00 -0530");
    set_tz("UTC0");

    CHECK_STR(as_http_date_now(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
    CHECK_STR(as_http_date_now(784111778), "Sun, 06 Nov 1994 08:49:38 GMT");

    /* only IMF-fixdate, well-formed, is a date */
    static const char *const bad[] = {
        "Sunday, 06-Nov-94 08:49:37 GMT",   /* RFC 850 */
        "Sun Nov  6 08:49:37 1994",         /* asctime */
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nox 1994 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 6  Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:4a:37 GMT",
        "Sun,06 Nov 1994 08:49:37 GMT ",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(!as_http_date_parse(bad[i], strlen(bad[i]), &t));
    CHECK(!as_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", 28, &t));
}

static void test_reply(void)
{
    const char *date = "Sun, 06 Nov 1994 08:49:37 GMT";
    char buf[AS_HTTP_REPLY_MAX];
    size_t n, len;

    n = as_http_reply(buf, sizeof buf, 400, date, false, false, false, NULL);
    buf[n] = '\0';
    CHECK_STR(buf, "HTTP/1.1 400 Bad Request\r\nServer: appstack\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                   "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\n"
                   "400 Bad Request\n");
    n = as_http_reply(buf, sizeof buf, 404, date, true, false, true, NULL);
    buf[n] = '\0';
    CHECK_STR(buf, "HTTP/1.1 404 Not Found\r\nServer: appstack\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                   "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\n\r\n");
    n = as_http_reply(buf, sizeof buf, 503, date, true, true, false, "Retry-After: 1\r\n");
    buf[n] = '\0';
    CHECK_STR(buf, "HTTP/1.1 503 Service Unavailable\r\nServer: appstack\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                   "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 24\r\nConnection: keep-alive\r\n"
                   "Retry-After: 1\r\n\r\n503 Service Unavailable\n");
    /* every status fits, and the Content-Length is the body's */
    for (int s = 100; s < 600; s++) {
        n = as_http_reply(buf, sizeof buf, s, date, false, true, false, NULL);
        CHECK(n > 0);
        const char *body = memmem(buf, n, "\r\n\r\n", 4), *cl = memmem(buf, n, "Content-Length: ", 16);
        CHECK(body && cl && (size_t)atoi(cl + 16) == n - (size_t)(body + 4 - buf));
    }
    CHECK(as_http_reply(buf, 50, 400, date, false, false, false, NULL) == 0);
    for (int s = 100; s < 600; s++) {
        char body[AS_HTTP_ERROR_BODY_MAX + 1], want[64];
        size_t bl = as_http_error_body(s, body);
        body[bl] = '\0';
        snprintf(want, sizeof want, "%d %s\n", s, as_http_reason(s));
        CHECK(bl < AS_HTTP_ERROR_BODY_MAX);
        CHECK_STR(body, want);
    }
    n = as_http_status_head(buf, sizeof buf, 200, date);
    buf[n] = '\0';
    CHECK_STR(buf, "HTTP/1.1 200 OK\r\nServer: appstack\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
    CHECK(as_http_status_head(buf, 20, 200, date) == 0);

    CHECK_STR(as_http_connection_field(false, false, &len), "Connection: close\r\n");
    CHECK(len == 19);
    CHECK_STR(as_http_connection_field(false, true, &len), "Connection: close\r\n");
    CHECK_STR(as_http_connection_field(true, true, &len), "Connection: keep-alive\r\n");
    CHECK(len == 24);
    CHECK_STR(as_http_connection_field(true, false, &len), "");
    CHECK(len == 0);
    CHECK_STR(as_http_reason(431), "Request Header Fields Too Large");
    CHECK_STR(as_http_reason(599), "Server Error");
}

#define FLAGS(s) as_http_field_flags(s, strlen(s))

static void test_fields(void)
{
    static const char *const hop[] = { "Connection", "keep-alive", "PROXY-CONNECTION", "TE", "Transfer-Encoding",
                                       "Upgrade", "Trailer" };
    static const char *const single[] = { "Host", "content-length", "Content-Type", "Authorization",
                                          "Proxy-Authorization", "If-Modified-Since", "If-Unmodified-Since",
                                          "If-Range", "Range", "Max-Forwards", "Date", "From", "Referer",
                                          "User-Agent" };
    static const char *const not_trailer[] = { "Content-Length", "Transfer-Encoding", "Host", "Trailer",
                                               "Connection", "Keep-Alive", "Upgrade", "TE", "Proxy-Connection",
                                               "Authorization", "Proxy-Authorization", "Cookie", "Expect",
                                               "Max-Forwards" };
    static const char *const plain[] = { "Accept", "X-Connection", "Connectio", "Hosts", "Content-Typ", "",
                                         "Cache-Control", "Vary", "Set-Cookie", "Accept-Encoding", "Via" };

    for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++)
        CHECK(as_http_hop_by_hop(hop[i], strlen(hop[i])) && !(FLAGS(hop[i]) & AS_FIELD_SINGLETON));
    for (size_t i = 0; i < sizeof single / sizeof single[0]; i++)
        CHECK((FLAGS(single[i]) & AS_FIELD_SINGLETON) && !as_http_hop_by_hop(single[i], strlen(single[i])));
    for (size_t i = 0; i < sizeof not_trailer / sizeof not_trailer[0]; i++)
        CHECK(FLAGS(not_trailer[i]) & AS_FIELD_NOT_TRAILER);
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        CHECK(FLAGS(plain[i]) == 0);
    CHECK(!(FLAGS("Content-Type") & AS_FIELD_NOT_TRAILER));
    CHECK(!(FLAGS("User-Agent") & AS_FIELD_NOT_TRAILER));
    CHECK(as_http_hop_by_hop("Connection\0junk", 10));

    CHECK(as_http_token("GET", 3) && as_http_token("-BLARGH", 7) && as_http_token("a!#$%&'*+-.^_`|~9", 17));
    CHECK(!as_http_token("", 0) && !as_http_token("GE T", 4) && !as_http_token("GET:", 4));
    CHECK(!as_http_token("caf\xe9", 4) && !as_http_token("a\"b", 3) && !as_http_token("a(b", 3));
    CHECK(as_http_name_is("HoSt", 4, "host") && !as_http_name_is("Hos", 3, "host"));

    CHECK(as_http_list_has("keep-alive, Close", 17, "close"));
    CHECK(as_http_list_has(" Upgrade ,\tHTTP2-Settings", 25, "http2-settings"));
    CHECK(!as_http_list_has("keep-alive, closed", 18, "close"));
    CHECK(!as_http_list_has("", 0, "close"));

    struct as_http_list l;
    const char *m;
    size_t n, count = 0;
    static const char *const want[] = { "gzip", "", "chunked", "" };

    as_http_list_init(&l, " gzip ,, chunked\t,", 18);
    while (as_http_list_next(&l, &m, &n)) {
        CHECK(count < 4 && n == strlen(want[count]) && !memcmp(m, want[count], n));
        count++;
    }
    CHECK(count == 4);
    as_http_list_init(&l, "", 0);
    CHECK(as_http_list_next(&l, &m, &n) && n == 0 && !as_http_list_next(&l, &m, &n));

    /* From the right, empty members skipped. */
    struct as_http_list_rev r;
    static const char *const back[] = { "10.0.0.2", "192.0.2.1", "203.0.113.9" };

    count = 0;
    as_http_list_rev_init(&r, "203.0.113.9 ,,\t192.0.2.1,10.0.0.2 , ", 36);
    while (as_http_list_prev(&r, &m, &n)) {
        CHECK(count < 3 && n == strlen(back[count]) && !memcmp(m, back[count], n));
        count++;
    }
    CHECK(count == 3);
    as_http_list_rev_init(&r, " , ", 3);
    CHECK(!as_http_list_prev(&r, &m, &n));
    as_http_list_rev_init(&r, "a", 1);
    CHECK(as_http_list_prev(&r, &m, &n) && n == 1 && *m == 'a' && !as_http_list_prev(&r, &m, &n));
}

static void pct(const char *in, const char *want, unsigned want_flags)
{
    char out[256];
    unsigned flags = 99;
    ssize_t n = as_pct_decode(in, strlen(in), out, &flags);

    if (!want) {
        CHECK(n == -1);
        CHECK(!as_pct_valid(in, strlen(in)));
        return;
    }
    CHECK(as_pct_valid(in, strlen(in)));
    CHECK(n >= 0 && (size_t)n == strlen(want) + (want_flags & AS_PCT_NUL ? 1 : 0));
    if (n >= 0 && !(want_flags & AS_PCT_NUL)) {
        out[n] = '\0';
        CHECK_STR(out, want);
    }
    CHECK(flags == want_flags);
}

static void test_uri(void)
{
    char same[] = "/a%20b%2fc";

    pct("/plain/path", "/plain/path", 0);
    pct("/a%20b", "/a b", 0);
    pct("/%c3%A0", "/\xc3\xa0", 0);
    pct("/a%2Fb", "/a/b", AS_PCT_SLASH);
    pct("/a%00", "/a", AS_PCT_NUL);
    pct("%41%42%43", "ABC", 0);
    pct("/100%", NULL, 0);
    pct("/%4", NULL, 0);
    pct("/%zz", NULL, 0);
    pct("/%4g", NULL, 0);
    pct("/%%41", NULL, 0);
    CHECK(as_pct_decode(same, strlen(same), same, NULL) == 6 && !memcmp(same, "/a b/c", 6));

    static const char *const good[] = { "", "example.com", "example.com:8080", "EXAMPLE.com.", "0.0.0.0=5000",
                                        "127.0.0.1:80", "[::1]", "[::1]:8080", "[2001:db8::7]:443",
                                        "[fe80::1%25eth0]", "[v1.fe80::a+en1]", "a_b-c~d", "xn--bcher-kva.example",
                                        "h:", "%41.example" };
    static const char *const bad[] = { ":80", "a b", "a/b", "a@b", "a:b:c", "a:8x", "[::1", "[]", "[::1]x",
                                       "[::1]:a", "\xc3\xa0.example", "a\"b", "a%zz", "[::1%2]", "a?b", "a#b",
                                       "a\\b" };

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        checks++;
        if (!as_http_host_valid(good[i], strlen(good[i]))) {
            failures++;
            fprintf(stderr, "FAIL [%s]: host \"%s\" refused\n", where, good[i]);
        }
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        checks++;
        if (as_http_host_valid(bad[i], strlen(bad[i]))) {
            failures++;
            fprintf(stderr, "FAIL [%s]: host \"%s\" accepted\n", where, bad[i]);
        }
    }
}

static void run_all(void)
{
    test_dates();
    test_reply();
    test_fields();
    test_uri();
}

int main(int argc, char **argv)
{
    run_all();
    for (int i = 1; i < argc; i++) {
        char probe[64];
        struct tm tm;
        time_t t = 784111777;

        if (!setlocale(LC_ALL, argv[i])) {
            fprintf(stderr, "FAIL: locale %s cannot be set\n", argv[i]);
            failures++;
            continue;
        }
        where = argv[i];
        gmtime_r(&t, &tm);
        strftime(probe, sizeof probe, "%a,%b", &tm);
        printf("locale %s strftime=%s\n", argv[i], probe);
        run_all();
    }
    if (failures) {
        printf("%d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("ok %d\n", checks);
    return 0;
}
