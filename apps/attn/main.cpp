// attn — the command-line tool. Parses the global flags, picks the subcommand and turns any
// error into one readable line and exit status 2.
#include <cstdio>
#include <exception>
#include <iostream>
#include <map>

#include "attn/core/error.h"
#include "attn/core/threading.h"
#include "cli.h"

namespace attn::cli {

namespace {
GlobalOptions g_options;
}

const GlobalOptions& global_options() { return g_options; }

std::vector<Registered>& registry() {
  static std::vector<Registered> r;
  return r;
}

Subcommand::Subcommand(const char* name, const char* description, Setup setup) {
  registry().push_back({name, description, std::move(setup)});
}

void note(const std::string& message) {
  if (g_options.verbose) std::fprintf(stderr, "attn: note: %s\n", message.c_str());
}

std::string version_string();  // version.cpp

namespace {
// Error messages are printed as exactly one line.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}
}  // namespace

}  // namespace attn::cli

int main(int argc, char** argv) {
  using namespace attn::cli;
  CLI::App app{"attn — attention mechanisms on the CPU: kernels, models, training, pictures", "attn"};
  app.require_subcommand(0, 1);
  // Global flags may also follow the subcommand ("attn attend ... --threads 1"); inherited by
  // the subcommands added below.
  app.fallthrough();
  app.set_version_flag("--version", [] { return version_string(); });
  app.add_flag("-v,--verbose", g_options.verbose, "Print notes (conversions, choices made) on stderr");
  app.add_option("--threads", g_options.threads, "Threads for kernels and the BLAS (0 = all cores)")
      ->check(CLI::NonNegativeNumber);

  std::map<CLI::App*, Runner> runners;
  for (auto& r : registry()) {
    CLI::App* sub = app.add_subcommand(r.name, r.description);
    runners[sub] = r.setup(*sub);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // Name the subcommand when the error is in its arguments.
    for (auto& [sub, run] : runners) {
      if (sub->parsed()) {
        std::fprintf(stderr, "attn %s: error: %s (see attn %s --help)\n", sub->get_name().c_str(),
                     one_line(e.what()).c_str(), sub->get_name().c_str());
        return 2;
      }
    }
    std::fprintf(stderr, "attn: error: %s (see attn --help)\n", one_line(e.what()).c_str());
    return 2;
  }

  for (auto& [sub, run] : runners) {
    if (!sub->parsed()) continue;
    try {
      attn::set_num_threads(g_options.threads);
      return run();
    } catch (const attn::Error& e) {
      std::fprintf(stderr, "attn %s: error: %s\n", sub->get_name().c_str(), one_line(e.what()).c_str());
      return 2;
    } catch (const std::bad_alloc&) {
      std::fprintf(stderr, "attn %s: error: out of memory\n", sub->get_name().c_str());
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "attn %s: error: %s\n", sub->get_name().c_str(), one_line(e.what()).c_str());
      return 2;
    }
  }
  std::cout << app.help();
  return 0;
}
