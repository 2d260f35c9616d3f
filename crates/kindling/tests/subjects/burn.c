/* Burns CPU in burn_cpu() for ~60% of each 100 ms period and sleeps the
 * rest, for SECONDS (argv[1], default 3). Built with frame pointers so the
 * profiler can walk its stacks. Prints "ready", waits for a line on stdin
 * (the profiler attaches meanwhile), runs, then prints its own accounting:
 * "cpu_ms <process CPU time> sleep_ms <time in nanosleep> wall_ms <run time>". */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

volatile unsigned long sink;

__attribute__((noinline)) void burn_cpu(double ms)
{
	double end = now(CLOCK_MONOTONIC) + ms;
	unsigned long x = 1;
	while (now(CLOCK_MONOTONIC) < end) {
		for (int i = 0; i < 10000; i++)
			x = x * 6364136223846793005UL + 1442695040888963407UL;
		sink = x;
	}
}

__attribute__((noinline)) void rest(double ms)
{
	struct timespec ts = { 0, (long)(ms * 1e6) };
	nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
	double total = (argc > 1 ? atof(argv[1]) : 3) * 1e3;
	printf("ready\n");
	fflush(stdout);
	char line[64];
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	double start = now(CLOCK_MONOTONIC), cpu0 = now(CLOCK_PROCESS_CPUTIME_ID), slept = 0;
	while (now(CLOCK_MONOTONIC) - start < total) {
		burn_cpu(60);
		double t = now(CLOCK_MONOTONIC);
		rest(40);
		slept += now(CLOCK_MONOTONIC) - t;
	}
	printf("cpu_ms %.1f sleep_ms %.1f wall_ms %.1f\n", now(CLOCK_PROCESS_CPUTIME_ID) - cpu0, slept,
	       now(CLOCK_MONOTONIC) - start);
	fflush(stdout);
	/* Stay until told, so the profiler names our frames while we run. */
	fgets(line, sizeof(line), stdin);
	return 0;
}
