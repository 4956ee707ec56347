/*
 * The suite's workload process, built statically into a one-file image.
 *
 *   busyloop spin [SECONDS [IDLE]]   burn one CPU (forever, or for SECONDS of wall
 *                                    time, then idle IDLE seconds before exiting)
 *   busyloop burn CPU_SECONDS        burn one CPU until the process has used
 *                                    CPU_SECONDS of CPU time, then exit: a known
 *                                    amount of work, however busy the node
 *   busyloop sleep                   use no CPU until stopped
 *
 * Under a CPU limit the spinning process uses exactly its quota, which gives
 * the test an expected rate. The idle tail keeps a finished Job's cgroup (and
 * its final counter) on the node for a few agent cycles. SIGTERM ends it at
 * once, so pods stop quickly.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;

static void on_stop(int signal_number) {
    (void)signal_number;
    stopping = 1;
}

static double now_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static double cpu_seconds(void) {
    struct timespec used;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &used);
    return (double)used.tv_sec + (double)used.tv_nsec / 1e9;
}

static int burn(double seconds) {
    volatile unsigned long counter = 0;
    while (!stopping && cpu_seconds() < seconds) {
        for (int i = 0; i < 100000; i++) {
            counter++;
        }
    }
    return 0;
}

static int spin(double seconds, double idle) {
    double end = seconds > 0 ? now_seconds() + seconds : 0;
    volatile unsigned long counter = 0;
    while (!stopping) {
        for (int i = 0; i < 1000000; i++) {
            counter++;
        }
        if (end > 0 && now_seconds() >= end) {
            break;
        }
    }
    double idle_end = now_seconds() + idle;
    while (!stopping && now_seconds() < idle_end) {
        usleep(100000);
    }
    return 0;
}

int main(int argc, char **argv) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_stop;
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    if (argc >= 2 && strcmp(argv[1], "spin") == 0) {
        return spin(argc >= 3 ? atof(argv[2]) : 0, argc >= 4 ? atof(argv[3]) : 0);
    }
    if (argc == 3 && strcmp(argv[1], "burn") == 0) {
        return burn(atof(argv[2]));
    }
    if (argc == 2 && strcmp(argv[1], "sleep") == 0) {
        while (!stopping) {
            pause();
        }
        return 0;
    }
    fprintf(stderr, "usage: busyloop spin [SECONDS [IDLE]] | busyloop burn CPU_SECONDS | busyloop sleep\n");
    return 2;
}
