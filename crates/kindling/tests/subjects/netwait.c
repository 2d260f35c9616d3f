/* Connects to HOST:PORT (argv[1], argv[2]) and, ROUNDS times (argv[3],
 * default 3), sends "ping\n" and blocks in recv() until the (slow) peer
 * answers. Prints "ready" after connecting (then waits for a line on stdin),
 * "local <port>" and "got <ms>" per round. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

__attribute__((noinline)) long wait_for_peer(int fd, char *buf, size_t n)
{
	return recv(fd, buf, n, 0);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	int rounds = argc > 3 ? atoi(argv[3]) : 3;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	inet_pton(AF_INET, argv[1], &a.sin_addr);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("connect");
		return 1;
	}
	struct sockaddr_in l;
	socklen_t ll = sizeof(l);
	getsockname(fd, (struct sockaddr *)&l, &ll);
	printf("ready\nlocal %d\n", ntohs(l.sin_port));
	fflush(stdout);
	char line[64];
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	for (int r = 0; r < rounds; r++) {
		char buf[256];
		double t = now_ms();
		if (send(fd, "ping\n", 5, 0) != 5)
			return 1;
		if (wait_for_peer(fd, buf, sizeof(buf)) <= 0)
			return 1;
		printf("got %.1f\n", now_ms() - t);
		fflush(stdout);
	}
	close(fd);
	return 0;
}
