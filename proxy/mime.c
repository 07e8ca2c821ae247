/* Extension -> type table: open addressing, filled once at start-up, so a
 * lookup is one hash and a compare or two. */
#include "mime.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xalloc.h"

#define DEFAULT_TYPE "application/octet-stream"
#define MAX_EXT 32

struct entry {
    char *ext;
    const char *type;
};

static struct {
    struct entry *tab;
    size_t cap, n;
} mt;

static uint32_t hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)tolower((unsigned char)s[i])) * 16777619u;
    return h;
}

static void grow(void);

/* Returns whether EXT was new (and TYPE is now referenced). */
static bool put(const char *ext, size_t n, const char *type)
{
    size_t i;

    if ((mt.n + 1) * 2 > mt.cap)
        grow();
    for (i = hash(ext, n) & (mt.cap - 1); mt.tab[i].ext; i = (i + 1) & (mt.cap - 1))
        if (strlen(mt.tab[i].ext) == n && !strncasecmp(mt.tab[i].ext, ext, n))
            return false;       /* first mention wins, as in mime.types readers */
    mt.tab[i].ext = strndup(ext, n);
    mt.tab[i].type = type;
    if (!mt.tab[i].ext)
        as_out_of_memory();
    for (char *p = mt.tab[i].ext; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    mt.n++;
    return true;
}

static void grow(void)
{
    struct entry *old = mt.tab;
    size_t oldcap = mt.cap;

    mt.cap = mt.cap ? mt.cap * 2 : 1024;
    mt.tab = as_xcalloc(mt.cap, sizeof *mt.tab);
    mt.n = 0;
    for (size_t i = 0; i < oldcap; i++) {
        if (old[i].ext) {
            put(old[i].ext, strlen(old[i].ext), old[i].type);
            free(old[i].ext);
        }
    }
    free(old);
}

static const char *intern(const char *type)
{
    return as_xstrdup(type);
}

static void parse_line(char *line)
{
    char *save, *type = strtok_r(line, " \t\r\n", &save), *ext;
    char *stored;
    bool used = false;

    if (!type || type[0] == '#')
        return;
    stored = (char *)intern(type);
    while ((ext = strtok_r(NULL, " \t\r\n", &save))) {
        if (ext[0] == '#')
            break;
        used |= put(ext, strlen(ext), stored);
    }
    if (!used)
        free(stored);
}

size_t mime_load(const char *path)
{
    FILE *f = fopen(path, "re");
    char *line = NULL;
    size_t cap = 0;

    /* Types a web site needs even on a host without mime.types. */
    static const char *const builtin[][2] = {
        { "html", "text/html" }, { "css", "text/css" }, { "js", "text/javascript" },
        { "json", "application/json" }, { "png", "image/png" }, { "svg", "image/svg+xml" },
        { "woff2", "font/woff2" }, { "txt", "text/plain" },
    };
    if (f) {
        while (getline(&line, &cap, f) >= 0)
            parse_line(line);
        free(line);
        fclose(f);
    }
    for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++)
        put(builtin[i][0], strlen(builtin[i][0]), builtin[i][1]);
    return mt.n;
}

const char *mime_type(const char *name, size_t len)
{
    const char *dot = NULL;
    size_t n, i;

    for (size_t k = len; k > 0; k--) {
        if (name[k - 1] == '.') {
            dot = name + k;
            break;
        }
        if (name[k - 1] == '/')
            break;
    }
    if (!dot || !mt.cap)
        return DEFAULT_TYPE;
    n = (size_t)(name + len - dot);
    if (n == 0 || n > MAX_EXT)
        return DEFAULT_TYPE;
    for (i = hash(dot, n) & (mt.cap - 1); mt.tab[i].ext; i = (i + 1) & (mt.cap - 1))
        if (!strncasecmp(mt.tab[i].ext, dot, n) && mt.tab[i].ext[n] == '\0')
            return mt.tab[i].type;
    return DEFAULT_TYPE;
}

bool mime_compressible(const char *type)
{
    return !strncmp(type, "text/", 5) || strstr(type, "javascript") || strstr(type, "json")
        || strstr(type, "xml") || !strcmp(type, "image/svg+xml") || !strcmp(type, "application/wasm");
}
