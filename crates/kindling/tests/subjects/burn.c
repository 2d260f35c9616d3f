/* Burns CPU in burn_cpu() for ~60% of each 100 ms period and sleeps the
 * rest, for the duration given in seconds (argv[1]). Built with frame
 * pointers so the profiler can walk its stacks. Prints "ready" once running. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

volatile unsigned long sink;

__attribute__((noinline)) void burn_cpu(double seconds)
{
	double end = now() + seconds;
	unsigned long x = 1;
	while (now() < end) {
		for (int i = 0; i < 10000; i++)
			x = x * 6364136223846793005UL + 1442695040888963407UL;
		sink = x;
	}
}

__attribute__((noinline)) void rest(double seconds)
{
	struct timespec ts = { 0, (long)(seconds * 1e9) };
	nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
	double total = argc > 1 ? atof(argv[1]) : 5;
	double end = now() + total;
	printf("ready\n");
	fflush(stdout);
	while (now() < end) {
		burn_cpu(0.060);
		rest(0.040);
	}
	return 0;
}
