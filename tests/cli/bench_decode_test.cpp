// `attn bench decode` end to end on a tiny model: the JSON line reports both decoders and that
// they gave the same outputs (greedy and beam); bad sizes exit with status 2.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attn/io/atomic_file.h"

namespace attn {
namespace {

namespace fs = std::filesystem;

struct CliRun {
  int status = -1;
  std::string out, err;
};

CliRun run_cli(const std::vector<std::string>& args) {
  const std::string base = (fs::temp_directory_path() / ("attn_bench_decode_" + std::to_string(::getpid()))).string();
  std::string cmd = std::string("OMP_WAIT_POLICY=PASSIVE '") + ATTN_CLI_PATH + "'";
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " >'" + base + ".out' 2>'" + base + ".err'";
  CliRun r;
  const int raw = std::system(cmd.c_str());
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = io::read_file(base + ".out");
  r.err = io::read_file(base + ".err");
  fs::remove(base + ".out");
  fs::remove(base + ".err");
  return r;
}

const std::vector<std::string> kTiny = {"bench",   "decode", "--words",          "5",  "--batch", "2",
                                        "--max-length", "6", "--d-model",        "16", "--heads", "2",
                                        "--encoder-layers", "1", "--decoder-layers", "2",  "--ffn",   "16",
                                        "--threads", "1",    "--json"};

TEST(BenchDecodeCli, GreedyAndBeamReportSameOutputsWithAndWithoutCache) {
  for (const char* beam : {"1", "3"}) {
    std::vector<std::string> args = kTiny;
    args.push_back("--beam");
    args.push_back(beam);
    CliRun r = run_cli(args);
    ASSERT_EQ(r.status, 0) << r.err;
    const nlohmann::json j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j.at("words"), 5);
    EXPECT_EQ(j.at("beam"), std::stoi(beam));
    EXPECT_EQ(j.at("same_outputs"), true);
    EXPECT_GT(j.at("cached_seconds").get<double>(), 0);
    EXPECT_GT(j.at("uncached_seconds").get<double>(), 0);
  }
}

TEST(BenchDecodeCli, BadSizesExitTwo) {
  CliRun r = run_cli({"bench", "decode", "--words", "0"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--words"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace attn
