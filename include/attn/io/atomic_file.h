// Writing files so that a crash never leaves a partial file under the final name:
// write to "<path>.tmp.<pid>", fsync, rename over <path>, fsync the directory.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace attn::io {

// The whole content at once.
void write_file_atomic(const std::string& path, const void* data, size_t bytes);
void write_file_atomic(const std::string& path, const std::string& content);

// Streaming form: `fill` appends bytes through the `append` callback it receives; if it
// throws, the temporary file is removed and the previous file at `path` is untouched.
void write_file_atomic_stream(
    const std::string& path,
    const std::function<void(const std::function<void(const void*, size_t)>& append)>& fill);

// Reads a whole file; throws attn::Error naming the path on failure.
std::string read_file(const std::string& path);

}  // namespace attn::io
