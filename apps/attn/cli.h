// Subcommand registry of the `attn` command. Each subcommand lives in its own file
// (cmd_<name>.cpp) and registers itself with a static ATTN_SUBCOMMAND object, so adding a
// subcommand never touches main.cpp. Subcommands only parse arguments and call the library.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace attn::cli {

// Options every subcommand sees (set before the subcommand runs).
struct GlobalOptions {
  bool verbose = false;
  int threads = 0;  // 0 = all cores
};
const GlobalOptions& global_options();

// `setup` declares the subcommand's options on `app` (binding them to state it owns, e.g. a
// shared_ptr it captures) and returns the function that runs the subcommand and returns the
// exit status. attn::Error thrown by the runner becomes "attn <name>: error: <message>" and
// exit status 2.
using Runner = std::function<int()>;
using Setup = std::function<Runner(CLI::App& app)>;

struct Subcommand {
  Subcommand(const char* name, const char* description, Setup setup);
};

struct Registered {
  std::string name;
  std::string description;
  Setup setup;
};
std::vector<Registered>& registry();

// Verbose note on stderr (only with --verbose).
void note(const std::string& message);

}  // namespace attn::cli

#define ATTN_CLI_CONCAT2(a, b) a##b
#define ATTN_CLI_CONCAT(a, b) ATTN_CLI_CONCAT2(a, b)
// ATTN_SUBCOMMAND("attend", "Run attention on .npy files", [](CLI::App& app) { ... return runner; });
#define ATTN_SUBCOMMAND(name, description, setup) \
  static ::attn::cli::Subcommand ATTN_CLI_CONCAT(attn_subcommand_, __LINE__)(name, description, setup)
