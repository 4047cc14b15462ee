// attn::Error — the one exception type thrown at the library's API boundary.
//
// Messages name the operation, the argument and, where shapes are involved, both the
// shape received and the shape expected, e.g.
//   "attention: k has shape [2, 4, 7, 16] but q has head dim 32; expected k [B, Hkv, Nk, 32]"
// The command line prints what() as one line and exits with status 2.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace attn {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

// Throws attn::Error with the streamed arguments concatenated.
template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(detail::concat(std::forward<Args>(args)...));
}

}  // namespace attn

// Argument check at an API boundary: ATTN_CHECK(cond, "op: x has ", shape_str(x), ...).
#define ATTN_CHECK(cond, ...)          \
  do {                                 \
    if (!(cond)) ::attn::fail(__VA_ARGS__); \
  } while (0)
