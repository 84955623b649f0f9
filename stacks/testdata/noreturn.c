// A call that is the last instruction of its function: check_file() calls open_and_leave(), which
// never returns (it leaves with longjmp), so GCC ends check_file with the call and its return
// address is the first byte after check_file, in whatever follows. An unwinder must look up the
// caller at the return address minus one, inside the call, or it names and unwinds the wrong
// function. 100 openat calls.
#include <fcntl.h>
#include <setjmp.h>
#include <stdio.h>
#include <unistd.h>

static jmp_buf env;
static char path[4096];

__attribute__((noinline, noclone, noreturn)) void open_and_leave(const char *p)
{
	int fd = open(p, O_RDONLY);
	if (fd >= 0)
		close(fd);
	longjmp(env, 1);
}

__attribute__((noinline, noclone)) void check_file(const char *p)
{
	open_and_leave(p);
}

__attribute__((noinline, noclone)) int next_function(int i)
{
	return i * 3 + 1;
}

int main(int argc, char **argv)
{
	char c;
	if (argc != 2 || read(0, &c, 1) != 1)
		return 2;
	snprintf(path, sizeof path, "%s", argv[1]);
	volatile int n = 0;
	while (n < 100) {
		if (setjmp(env) == 0)
			check_file(path);
		n = next_function(n) - 2 * n;
	}
	char msg[32];
	int len = snprintf(msg, sizeof msg, "done %d\n", (int)n);
	if (write(1, msg, len) != len)
		return 3;
	while (read(0, &c, 1) > 0)
		;
	return 0;
}
