// The benchmark's process with 100 libraries: it dlopens DIR/lib0.so ... lib99.so, waits for its
// start byte, calls lib_N_open() in each (one openat each, from inside the library), writes
// "done 100", and waits for stdin to close.
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>

#define NLIBS 100

int main(int argc, char **argv)
{
	int (*fn[NLIBS])(const char *);
	char path[4096], name[32];
	if (argc != 2)
		return 2;
	for (int i = 0; i < NLIBS; i++) {
		snprintf(path, sizeof path, "%s/lib%d.so", argv[1], i);
		void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		if (!h) {
			fprintf(stderr, "%s\n", dlerror());
			return 2;
		}
		snprintf(name, sizeof name, "lib_%d_open", i);
		fn[i] = (int (*)(const char *))dlsym(h, name);
		if (!fn[i])
			return 2;
	}
	char c;
	if (read(0, &c, 1) != 1)
		return 2;
	int ok = 0;
	for (int i = 0; i < NLIBS; i++)
		if (fn[i](argv[1]) >= 0)
			ok++;
	char msg[32];
	int n = snprintf(msg, sizeof msg, "done %d\n", ok);
	if (write(1, msg, n) != n)
		return 3;
	while (read(0, &c, 1) > 0)
		;
	return 0;
}
