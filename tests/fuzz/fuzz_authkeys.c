/* libFuzzer target for the authorized_keys parser (pipeline/curve/keys.c): a
 * central reads that file on start and on SIGHUP. Whatever it accepts must
 * parse the same again and answer lookups; what it refuses must say
 * FILE:LINE:COL and leave the caller's list untouched.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "keys.h"
#include "vigil/plugin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vigil_authkeys *ak = NULL;
    char err[512];
    int rc = vigil_authkeys_parse("fuzz", (const char *)data, size, &ak, err, sizeof err);
    if (rc != 0) {
        CHECK(!ak);
        CHECK(rc == VIGIL_ECONFIG || rc == VIGIL_ETOOBIG || rc == -ENOMEM);
        CHECK(strncmp(err, "fuzz:", 5) == 0);
        return 0;
    }
    CHECK(ak);
    size_t n = vigil_authkeys_count(ak);
    CHECK(n <= VIGIL_AUTHKEYS_MAX && n <= size / VIGIL_KEY_Z85_LEN);
    struct vigil_authkeys *again = NULL;
    CHECK(vigil_authkeys_parse("fuzz", (const char *)data, size, &again, err, sizeof err) == 0);
    CHECK(vigil_authkeys_count(again) == n);
    /* Every key as text at the start of a line must be found with a name. */
    for (size_t s = 0; s + VIGIL_KEY_Z85_LEN <= size;) {
        char z85[VIGIL_KEY_Z85_SIZE];
        memcpy(z85, data + s, VIGIL_KEY_Z85_LEN);
        z85[VIGIL_KEY_Z85_LEN] = '\0';
        uint8_t key[VIGIL_KEY_BIN_LEN];
        if (strlen(z85) == VIGIL_KEY_Z85_LEN && vigil_key_z85_decode(z85, key) == 0 &&
            (s + VIGIL_KEY_Z85_LEN == size || data[s + VIGIL_KEY_Z85_LEN] == ' ' ||
             data[s + VIGIL_KEY_Z85_LEN] == '\n')) {
            const char *name = vigil_authkeys_find(ak, key);
            CHECK(name && name[0] && strlen(name) <= VIGIL_AUTHKEY_NAME_MAX);
            CHECK(vigil_authkeys_find_z85(again, z85) == vigil_authkeys_find(again, key));
        }
        const uint8_t *nl = memchr(data + s, '\n', size - s);
        if (!nl) {
            break;
        }
        s = (size_t)(nl - data) + 1;
    }
    if (size >= VIGIL_KEY_BIN_LEN) {
        (void)vigil_authkeys_find(ak, data);
    }
    vigil_authkeys_free(again);
    vigil_authkeys_free(ak);
    return 0;
}
