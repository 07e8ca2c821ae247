/* A chunk-size line, byte by byte (see http_chunk.h):
 *
 *   chunk-size [ chunk-ext ] CRLF
 *   chunk-ext     = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 *   chunk-ext-val = token / quoted-string
 *
 * Extensions are checked and dropped: none is understood (RFC 9112 7.1.1
 * says to ignore those). BWS only stands before something, so "5 \r\n" and
 * "5;a \r\n" are refused, as are a size with a sign, "0x" or OWS before it. */
#include "http_chunk.h"

#include "http_fields.h"

enum {
    S_SIZE0,        /* before the first digit */
    S_SIZE,
    S_SIZE_BWS,     /* BWS after the size: ";" must follow */
    S_NAME0,        /* after ";" */
    S_NAME,
    S_NAME_BWS,     /* BWS after a name: "=" or ";" must follow */
    S_VALUE0,       /* after "=" */
    S_TOKEN,
    S_QUOTED,
    S_QUOTED_PAIR,
    S_QUOTED_END,   /* after the closing quote */
    S_VALUE_BWS,    /* BWS after a value: ";" must follow */
    S_CR,
};

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int ws(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* qdtext (RFC 9110 5.6.4): HTAB, SP, VCHAR but '"' and '\', obs-text. */
static int qdtext(unsigned char c)
{
    return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e) ||
           c >= 0x80;
}

/* After a name or a value: the next extension, the end of the line, or
 * BWS (then NEXT_BWS). */
static int after_item(unsigned char c, int next_bws)
{
    if (c == ';')
        return S_NAME0;
    if (c == '\r')
        return S_CR;
    if (ws(c))
        return next_bws;
    return -1;
}

enum as_chunk_step as_chunk_byte(int *state, uint64_t *size, unsigned char c)
{
    int s = *state, v;

    switch (s) {
    case S_SIZE0:
    case S_SIZE:
        if ((v = hexval(c)) >= 0) {
            /* below 2^63: no honest body is that long, and the size plus
             * its CRLF must not wrap */
            if (*size >> 59)
                return AS_CHUNK_HUGE;
            *size = *size * 16 + (uint64_t)v;
            s = S_SIZE;
        } else {
            s = s == S_SIZE ? after_item(c, S_SIZE_BWS) : -1;
        }
        break;
    case S_SIZE_BWS:
    case S_VALUE_BWS:
        s = ws(c) ? s : c == ';' ? S_NAME0 : -1;
        break;
    case S_NAME0:
        s = ws(c) ? S_NAME0 : as_http_tchar(c) ? S_NAME : -1;
        break;
    case S_NAME:
        s = as_http_tchar(c) ? S_NAME : c == '=' ? S_VALUE0 : after_item(c, S_NAME_BWS);
        break;
    case S_NAME_BWS:
        s = ws(c) ? S_NAME_BWS : c == '=' ? S_VALUE0 : c == ';' ? S_NAME0 : -1;
        break;
    case S_VALUE0:
        s = ws(c) ? S_VALUE0 : c == '"' ? S_QUOTED : as_http_tchar(c) ? S_TOKEN : -1;
        break;
    case S_TOKEN:
        s = as_http_tchar(c) ? S_TOKEN : after_item(c, S_VALUE_BWS);
        break;
    case S_QUOTED:
        s = c == '"' ? S_QUOTED_END : c == '\\' ? S_QUOTED_PAIR : qdtext(c) ? S_QUOTED : -1;
        break;
    case S_QUOTED_PAIR:
        s = c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f) ? S_QUOTED : -1;
        break;
    case S_QUOTED_END:
        s = after_item(c, S_VALUE_BWS);
        break;
    case S_CR:
        if (c == '\n')
            return AS_CHUNK_END;
        s = -1;
        break;
    default:
        s = -1;
    }
    if (s < 0)
        return AS_CHUNK_BAD;
    *state = s;
    return AS_CHUNK_MORE;
}
