/* A thread blocks on a mutex another thread holds for HOLD_MS (argv[1],
 * default 300), ROUNDS times (argv[2], default 3). Prints "ready", then for
 * each round "waiting <tid>" when the waiter is about to lock and "held <ms>"
 * with the measured wait. Frame pointers on (-fno-omit-frame-pointer). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t start;
static double waited_ms;

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

__attribute__((noinline)) void wait_for_lock(void)
{
	double t = now_ms();
	pthread_mutex_lock(&mu);
	waited_ms = now_ms() - t;
	pthread_mutex_unlock(&mu);
}

static void *waiter(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&start);
	printf("waiting %ld\n", (long)syscall(SYS_gettid));
	fflush(stdout);
	wait_for_lock();
	return NULL;
}

int main(int argc, char **argv)
{
	int hold_ms = argc > 1 ? atoi(argv[1]) : 300;
	int rounds = argc > 2 ? atoi(argv[2]) : 3;
	printf("ready\n");
	fflush(stdout);
	/* The profiler attaches while we wait for a line on stdin. */
	char line[64];
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	for (int r = 0; r < rounds; r++) {
		pthread_t t;
		pthread_barrier_init(&start, NULL, 2);
		pthread_mutex_lock(&mu);
		pthread_create(&t, NULL, waiter, NULL);
		pthread_barrier_wait(&start);
		usleep(hold_ms * 1000);
		pthread_mutex_unlock(&mu);
		pthread_join(t, NULL);
		pthread_barrier_destroy(&start);
		printf("held %.1f\n", waited_ms);
		fflush(stdout);
		usleep(50 * 1000);
	}
	return 0;
}
