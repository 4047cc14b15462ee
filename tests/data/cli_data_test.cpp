// The `attn cmudict` and `attn dates` subcommands, run as a user would.
#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace {

struct CliResult {
  int status;
  std::string out;
};

CliResult run(const std::string& args) {
  std::string cmd = std::string(ATTN_CLI_PATH) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

}  // namespace

TEST(CliData, CmudictJsonCounts) {
  CliResult r = run(std::string("cmudict --json --test-words 3 --dev-words 2 ") + ATTN_SOURCE_DIR + "/tests/data/testdata/cmudict_sample.txt");
  ASSERT_EQ(r.status, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["lines"], 26);
  EXPECT_EQ(j["kept_lines"], 14);
  EXPECT_EQ(j["malformed"], 2);
  EXPECT_EQ(j["words"], 10);
  EXPECT_EQ(j["prons"], 12);
  EXPECT_EQ(j["test_words"], 3);
  EXPECT_EQ(j["dev_words"], 2);
  EXPECT_EQ(j["train_words"], 5);
}

TEST(CliData, CmudictMissingFileIsOneLineError) {
  CliResult r = run("cmudict /nonexistent/dict.txt");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.out.rfind("attn cmudict: error: cmudict: cannot read /nonexistent/dict.txt", 0), 0u) << r.out;
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << r.out;
}

TEST(CliData, DatesPrintsSourceTabIso) {
  CliResult a = run("dates -n 5 --seed 4"), b = run("dates -n 5 --seed 4");
  ASSERT_EQ(a.status, 0) << a.out;
  EXPECT_EQ(a.out, b.out);
  int lines = 0;
  size_t pos = 0;
  while (pos < a.out.size()) {
    size_t nl = a.out.find('\n', pos);
    std::string line = a.out.substr(pos, nl - pos);
    size_t tab = line.find('\t');
    ASSERT_NE(tab, std::string::npos) << line;
    EXPECT_EQ(line.size() - tab - 1, 10u) << line;  // YYYY-MM-DD
    pos = nl + 1;
    ++lines;
  }
  EXPECT_EQ(lines, 5);
}
