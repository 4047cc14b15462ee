// SHA-1 (FIPS 180-4), used only to order CMUdict words the way the PyTorch G2P reference
// does (sorted by hashlib.sha1(word).hexdigest()) — not for anything security-related.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace attn::data {

std::array<uint8_t, 20> sha1(std::string_view bytes);
// 40 lowercase hex digits, as Python's hashlib.sha1(b).hexdigest().
std::string sha1_hex(std::string_view bytes);

}  // namespace attn::data
