/* vigild as a whole: load and check the config, load the plugins, start the
 * bus, sinks and sources in that order, report vigil.self, and on SIGTERM or
 * SIGINT stop them in the reverse order without losing what is in flight.
 */
#ifndef VIGIL_DAEMON_H
#define VIGIL_DAEMON_H

/* `vigild --check`: checks the config and every plugin instance (loading the
 * plugin, checking its keys, running its init and fini), prints every error
 * as FILE:LINE:COL: message on stderr. Returns the exit status: 0 valid, 1 not. */
int vigil_daemon_check(const char *config_path);

/* Runs the daemon until SIGTERM/SIGINT; SIGHUP reloads the config. Returns the exit status: 0 after
 * a clean stop, 1 when it could not start. Call from main() before any other thread exists (it sets
 * the signal mask that every thread inherits). */
int vigil_daemon_run(const char *config_path);

/* `vigild --reload`: sends SIGHUP to the daemon whose pid the config's
 * pid_file holds (it then reloads that config; docs/reload.md). Returns the
 * exit status: 0 sent, 1 not. */
int vigil_daemon_reload(const char *config_path);

#endif
