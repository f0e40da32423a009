/*
 * Replays inputs through a fuzz target without libFuzzer: `target FILE|DIR...` runs every
 * file given (a directory: every regular file in it, in name order). Used by the ordinary
 * builds (gcc, plain and ASan) to run the corpora as regression tests, and to reproduce a
 * crash under a debugger. Flags (arguments starting with '-') are ignored.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"

__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static int run_file(const char *path)
{
        FILE *f = fopen(path, "rb");
        uint8_t *buf = NULL;
        long len;

        if (!f || fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
                fprintf(stderr, "%s: cannot read\n", path);
                if (f)
                        fclose(f);
                return 1;
        }
        buf = malloc(len ? (size_t)len : 1);
        if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
                fprintf(stderr, "%s: cannot read\n", path);
                free(buf);
                fclose(f);
                return 1;
        }
        fclose(f);
        LLVMFuzzerTestOneInput(buf, (size_t)len);
        free(buf);
        return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
        return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv)
{
        unsigned files = 0;
        int bad = 0;

        if (LLVMFuzzerInitialize)
                LLVMFuzzerInitialize(&argc, &argv);
        for (int i = 1; i < argc; i++) {
                struct dirent **ents;
                struct stat st;
                int n;

                if (argv[i][0] == '-')
                        continue;
                if (stat(argv[i], &st) || !S_ISDIR(st.st_mode)) {
                        bad |= run_file(argv[i]);
                        files++;
                        continue;
                }
                n = scandir(argv[i], &ents, NULL, by_name);
                if (n < 0) {
                        perror(argv[i]);
                        return 1;
                }
                for (int k = 0; k < n; k++) {
                        char *path;

                        if (ents[k]->d_name[0] != '.' &&
                            asprintf(&path, "%s/%s", argv[i], ents[k]->d_name) >= 0) {
                                if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                                        bad |= run_file(path);
                                        files++;
                                }
                                free(path);
                        }
                        free(ents[k]);
                }
                free(ents);
        }
        fprintf(stderr, "%s: %u inputs replayed\n", argv[0], files);
        return bad;
}
