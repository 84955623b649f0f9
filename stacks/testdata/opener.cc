// The C++ twin of opener.c: the openat calls come from a member function of a class in a
// namespace, through a template, so that the frames' names must be demangled to be read.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace sockscope_test {

class TempWriter {
public:
	explicit TempWriter(std::string dir) : path_(dir + "/opener-cc.tmp") {}
	__attribute__((noinline)) int WriteTempFile(int i);

private:
	std::string path_;
};

int TempWriter::WriteTempFile(int i)
{
	int fd = open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -1;
	std::string s = std::to_string(i);
	ssize_t n = write(fd, s.data(), s.size());
	close(fd);
	return n == ssize_t(s.size()) ? 0 : -1;
}

template <typename W>
__attribute__((noinline)) int FillDirectory(W &w, int n)
{
	int ok = 0;
	for (int i = 0; i < n; i++)
		if (w.WriteTempFile(i) == 0)
			ok++;
	return ok;
}

} // namespace sockscope_test

int main(int argc, char **argv)
{
	char c;
	if (argc != 2 || read(0, &c, 1) != 1)
		return 2;
	sockscope_test::TempWriter w(argv[1]);
	int ok = sockscope_test::FillDirectory(w, 100);
	char msg[32];
	int n = std::snprintf(msg, sizeof msg, "done %d\n", ok);
	if (write(1, msg, n) != n)
		return 3;
	while (read(0, &c, 1) > 0)
		;
	return ok == 100 ? 0 : 1;
}
