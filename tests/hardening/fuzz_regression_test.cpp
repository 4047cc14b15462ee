// Inputs found by the fuzzers (fuzz/) that once escaped as something other than attn::Error.
#include <gtest/gtest.h>

#include <string>

#include "attn/core/error.h"
#include "attn/data/vocabulary.h"

namespace attn {
namespace {

// fuzz_vocabulary crash-2ad1c54b: a non-string "format" made nlohmann throw type_error.
TEST(FuzzRegression, VocabularyJsonWithWrongTypesThrowsAttnError) {
  for (const std::string text : {R"({"format":["8pad>", " "]})", R"({"format": 1})",
                                 R"({"format": "attn-vocabulary", "version": "1"})",
                                 R"({"format": "attn-vocabulary", "version": 1.5})"}) {
    SCOPED_TRACE(text);
    try {
      data::Vocabulary::from_json(text, "v.json");
      FAIL() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("v.json"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace attn
