/* vigild: the command line. Everything else is in daemon.c. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "isolate.h"
#include "log.h"

/* Set by CMake from the install prefix: <sysconfdir>/vigil/vigil.yaml. */
#ifndef VIGIL_DEFAULT_CONFIG
#define VIGIL_DEFAULT_CONFIG "/etc/vigil/vigil.yaml"
#endif

static void usage(FILE *out)
{
    fprintf(out, "usage: vigild [-c FILE] [--check | --reload] [-l LEVEL]\n"
                 "  -c, --config FILE   the config file (default " VIGIL_DEFAULT_CONFIG ")\n"
                 "      --check         check the config and its plugins, print every error as\n"
                 "                      FILE:LINE:COL: message, exit 0 if valid, 1 if not\n"
                 "      --reload        have the running vigild (its pid_file) reload the config\n"
                 "  -l, --log-level L   error, warn, info (default) or debug\n"
                 "  -V, --version       print the version\n"
                 "  -h, --help          this text\n");
}

int main(int argc, char **argv)
{
    /* The hidden mode of an isolated source's plugin host (isolate.h). */
    if (argc > 1 && strcmp(argv[1], VIGIL_PLUGIN_HOST_FLAG) == 0) {
        return vigil_plugin_host_main(argc, argv);
    }
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, 'k'},
        {"reload", no_argument, NULL, 'r'},
        {"log-level", required_argument, NULL, 'l'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config = VIGIL_DEFAULT_CONFIG;
    int check = 0, reload = 0;
    int c;
    while ((c = getopt_long(argc, argv, "c:l:Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'k':
            check = 1;
            break;
        case 'r':
            reload = 1;
            break;
        case 'l': {
            enum vigil_log_level level;
            if (vigil_log_parse_level(optarg, &level) != 0) {
                fprintf(stderr, "vigild: unknown log level '%s' (error, warn, info, debug)\n",
                        optarg);
                return 2;
            }
            vigil_log_set_level(level);
            break;
        }
        case 'V':
            printf("vigild %s (plugin ABI %d)\n", VIGIL_VERSION, VIGIL_PLUGIN_ABI);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vigild: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (check && reload) {
        fprintf(stderr, "vigild: --check and --reload do not go together\n");
        return 2;
    }
    return check    ? vigil_daemon_check(config)
           : reload ? vigil_daemon_reload(config)
                    : vigil_daemon_run(config);
}
