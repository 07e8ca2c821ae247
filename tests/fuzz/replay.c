/* A main() for a libFuzzer target without libFuzzer: runs the target once
 * on each file named on the command line (directories: on each file in
 * them), so `make check` replays the seed corpora and the crash
 * reproducers with the project's own compiler and sanitizers. Exits 0
 * when every input ran; a crash aborts like it would under libFuzzer. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char *data = NULL;
    size_t len = 0, cap = 0, n;

    if (!f) {
        fprintf(stdout, "%s: %s\n", path, strerror(errno));
        return 1;
    }
    do {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            if (!(data = realloc(data, cap)))
                abort();
        }
        n = fread(data + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    if (ferror(f)) {
        fprintf(stdout, "%s: read error\n", path);
        fclose(f);
        free(data);
        return 1;
    }
    fclose(f);
    /* Through stdout: the config target points stderr elsewhere. */
    fprintf(stdout, "replaying %s (%zu bytes)\n", path, len);
    fflush(stdout);
    LLVMFuzzerTestOneInput(data, len);
    free(data);
    return 0;
}

static int replay_dir(const char *dir)
{
    struct dirent **names;
    char path[4096];
    int n = scandir(dir, &names, NULL, alphasort), failed = 0;

    if (n < 0) {
        fprintf(stdout, "%s: %s\n", dir, strerror(errno));
        return 1;
    }
    for (int i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.') {
            snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
            failed |= replay_file(path);
        }
        free(names[i]);
    }
    free(names);
    return failed;
}

int main(int argc, char **argv)
{
    struct stat st;
    int failed = 0;

    for (int i = 1; i < argc; i++) {
        if (stat(argv[i], &st) < 0) {
            fprintf(stdout, "%s: %s\n", argv[i], strerror(errno));
            failed = 1;
        } else {
            failed |= S_ISDIR(st.st_mode) ? replay_dir(argv[i]) : replay_file(argv[i]);
        }
    }
    return failed;
}
