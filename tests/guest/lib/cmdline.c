#include "cmdline.h"

#include "str.h"

static bool is_space(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

const char *cmdline_find(const char *cmdline, const char *key, size_t *len)
{
        size_t klen = str_len(key);
        const char *found = NULL;
        const char *p = cmdline;

        while (*p) {
                const char *word;
                size_t wlen = 0;

                while (is_space(*p))
                        p++;
                word = p;
                while (*p && !is_space(*p))
                        p++;
                wlen = (size_t)(p - word);
                if (wlen < klen || memcmp(word, key, klen) != 0)
                        continue;
                if (wlen == klen) {
                        found = word + wlen;
                        *len = 0;
                } else if (word[klen] == '=') {
                        found = word + klen + 1;
                        *len = wlen - klen - 1;
                }
        }
        return found;
}
