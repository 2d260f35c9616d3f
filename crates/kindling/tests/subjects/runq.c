/* Two CPU-bound threads pinned to CPU 0 for SECONDS (argv[1], default 2),
 * plus a third pinned there too that sleeps 5 ms in a loop: the kernel must
 * queue them. Prints "ready" (then waits for a line on stdin), and at the
 * end "spin <tid> <cpu_ms>" per spinner and "sleeper <tid> <wakeups>". */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double seconds = 2;
static volatile unsigned long sink;

static double now(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void pin(void)
{
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(0, &s);
	pthread_setaffinity_np(pthread_self(), sizeof(s), &s);
}

__attribute__((noinline)) void spin(void)
{
	double end = now(CLOCK_MONOTONIC) + seconds;
	unsigned long x = 1;
	while (now(CLOCK_MONOTONIC) < end) {
		for (int i = 0; i < 10000; i++)
			x = x * 6364136223846793005UL + 1;
		sink = x;
	}
}

static void *spinner(void *arg)
{
	(void)arg;
	pin();
	spin();
	printf("spin %ld %.0f\n", (long)syscall(SYS_gettid), now(CLOCK_THREAD_CPUTIME_ID) * 1e3);
	fflush(stdout);
	return NULL;
}

static void *sleeper(void *arg)
{
	(void)arg;
	pin();
	double end = now(CLOCK_MONOTONIC) + seconds;
	long n = 0;
	while (now(CLOCK_MONOTONIC) < end) {
		usleep(5000);
		n++;
	}
	printf("sleeper %ld %ld\n", (long)syscall(SYS_gettid), n);
	fflush(stdout);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		seconds = atof(argv[1]);
	printf("ready\n");
	fflush(stdout);
	char line[64];
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	pthread_t t[3];
	pthread_create(&t[0], NULL, spinner, NULL);
	pthread_create(&t[1], NULL, spinner, NULL);
	pthread_create(&t[2], NULL, sleeper, NULL);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	return 0;
}
