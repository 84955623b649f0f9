// The program the unwinder's tests sample. It waits for one byte on stdin (the tracer is attached
// by then), makes exactly N openat calls from write_temp_file() through fill_directory(), writes
// "done N" to stdout (the end marker), and waits for stdin to close before it exits, so that its
// mappings are still there when the samples are unwound.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define N 300

static char path[4096];

// noinline and noclone keep the functions as they are named: no inlining into the caller and no
// .constprop/.isra clones.
__attribute__((noinline, noclone)) int write_temp_file(int i)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -1;
	char buf[16];
	int n = snprintf(buf, sizeof buf, "%d\n", i);
	if (write(fd, buf, n) != n) {
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

__attribute__((noinline, noclone)) int fill_directory(int n)
{
	int ok = 0;
	for (int i = 0; i < n; i++)
		if (write_temp_file(i) == 0)
			ok++;
	return ok;
}

int main(int argc, char **argv)
{
	char c;
	if (argc != 2)
		return 2;
	snprintf(path, sizeof path, "%s/opener.tmp", argv[1]);
	if (read(0, &c, 1) != 1)
		return 2;
	int ok = fill_directory(N);
	char msg[32];
	int n = snprintf(msg, sizeof msg, "done %d\n", ok);
	if (write(1, msg, n) != n)
		return 3;
	while (read(0, &c, 1) > 0)
		;
	return ok == N ? 0 : 1;
}
