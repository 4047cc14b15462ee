#include "attn/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "attn/core/error.h"

namespace attn::io {

namespace {

std::string dir_of(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

class TempFile {
 public:
  explicit TempFile(const std::string& path) : final_(path) {
    tmp_ = path + ".tmp." + std::to_string(::getpid());
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0)
      fail("cannot write '", path, "': ", std::strerror(errno), " (does the directory exist and is it writable?)");
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  void append(const void* data, size_t bytes) {
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
      ssize_t n = ::write(fd_, p, bytes);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("cannot write '", final_, "': ", std::strerror(errno), "; the previous file is untouched");
      }
      p += n;
      bytes -= static_cast<size_t>(n);
    }
  }
  void commit() {
    if (::fsync(fd_) != 0)
      fail("cannot write '", final_, "': fsync failed: ", std::strerror(errno));
    if (::close(fd_) != 0) {
      fd_ = -1;
      fail("cannot write '", final_, "': close failed: ", std::strerror(errno));
    }
    fd_ = -1;
    if (::rename(tmp_.c_str(), final_.c_str()) != 0)
      fail("cannot write '", final_, "': rename failed: ", std::strerror(errno));
    committed_ = true;
    int dfd = ::open(dir_of(final_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
  }

 private:
  std::string final_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

void write_file_atomic_stream(
    const std::string& path,
    const std::function<void(const std::function<void(const void*, size_t)>& append)>& fill) {
  TempFile f(path);
  fill([&](const void* d, size_t n) { f.append(d, n); });
  f.commit();
}

void write_file_atomic(const std::string& path, const void* data, size_t bytes) {
  write_file_atomic_stream(path, [&](const auto& append) { append(data, bytes); });
}

void write_file_atomic(const std::string& path, const std::string& content) {
  write_file_atomic(path, content.data(), content.size());
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read '", path, "': ", std::strerror(errno), " (check the path)");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("cannot read '", path, "': read error");
  return ss.str();
}

}  // namespace attn::io
