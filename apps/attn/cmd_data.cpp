// `attn cmudict` and `attn dates`: look at the data sets (counts, split, samples).
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "attn/core/rng.h"
#include "attn/data/cmudict.h"
#include "attn/data/dates.h"
#include "attn/io/atomic_file.h"
#include "cli.h"

namespace attn::cli {

namespace {

std::string join_lines(const std::vector<std::string>& words) {
  std::string s;
  for (const auto& w : words) s += w + "\n";
  return s;
}

struct CmudictArgs {
  std::string path;
  bool keep_stress = false;
  bool strict = false;
  bool json = false;
  std::string out_dir;
  int64_t n_test = 12000;
  int64_t n_dev = 3000;
};

int run_cmudict(const CmudictArgs& a) {
  data::CmudictOptions o;
  o.keep_stress = a.keep_stress;
  o.strict = a.strict;
  data::Cmudict d = data::Cmudict::read(a.path, o);
  data::CmudictSplit s = data::split_words(d, a.n_test, a.n_dev);
  auto prons = [&](const std::vector<std::string>& ws) {
    int64_t n = 0;
    for (const auto& w : ws) n += static_cast<int64_t>(d.entry(w).pronunciations.size());
    return n;
  };
  const auto& st = d.stats();
  nlohmann::ordered_json j;
  j["file"] = a.path;
  j["lines"] = st.lines;
  j["kept_lines"] = st.kept_lines;
  j["skipped_nonascii"] = st.skipped_nonascii;
  j["skipped_pattern"] = st.skipped_pattern;
  j["malformed"] = st.malformed;
  if (st.malformed) j["first_malformed"] = st.first_malformed;
  j["dup_prons_after_destress"] = st.dup_after_destress;
  j["words"] = d.num_words();
  j["prons"] = d.num_pronunciations();
  j["test_words"] = s.test.size();
  j["test_prons"] = prons(s.test);
  j["dev_words"] = s.dev.size();
  j["dev_prons"] = prons(s.dev);
  j["train_words"] = s.train.size();
  j["train_prons"] = prons(s.train);
  data::Vocabulary chars = d.char_vocabulary(), phones = d.phoneme_vocabulary();
  j["n_chars"] = chars.size() - chars.num_specials();
  j["n_phonemes"] = phones.size() - phones.num_specials();
  if (!a.out_dir.empty()) {
    std::filesystem::create_directories(a.out_dir);
    io::write_file_atomic(a.out_dir + "/test.txt", join_lines(s.test));
    io::write_file_atomic(a.out_dir + "/dev.txt", join_lines(s.dev));
    io::write_file_atomic(a.out_dir + "/train.txt", join_lines(s.train));
    std::string lexicon;
    for (const auto& e : d.entries()) {
      for (const auto& p : e.pronunciations) {
        lexicon += e.word + "\t";
        for (size_t i = 0; i < p.size(); ++i) lexicon += (i ? " " : "") + p[i];
        lexicon += "\n";
      }
    }
    io::write_file_atomic(a.out_dir + "/lexicon.tsv", lexicon);
    chars.save(a.out_dir + "/chars.json");
    phones.save(a.out_dir + "/phonemes.json");
    j["out_dir"] = a.out_dir;
  }
  if (a.json) {
    std::cout << j.dump(1) << "\n";
  } else {
    for (const auto& [k, v] : j.items()) std::cout << k << ": " << (v.is_string() ? v.get<std::string>() : v.dump()) << "\n";
  }
  return 0;
}

ATTN_SUBCOMMAND("cmudict", "Read CMUdict (dict.txt or .tsv): filtering counts and the train/dev/test split",
                [](CLI::App& app) -> Runner {
                  auto a = std::make_shared<CmudictArgs>();
                  app.add_option("path", a->path, "dict.txt or cmudict.tsv (scripts/fetch-data)")->required();
                  app.add_flag("--keep-stress", a->keep_stress, "Keep stress digits on phonemes");
                  app.add_flag("--strict", a->strict, "Fail on the first malformed line");
                  app.add_flag("--json", a->json, "Print the counts as JSON");
                  app.add_option("--test-words", a->n_test, "Words in the test split (first by SHA-1)")
                      ->check(CLI::NonNegativeNumber);
                  app.add_option("--dev-words", a->n_dev, "Words in the dev split (next by SHA-1)")
                      ->check(CLI::NonNegativeNumber);
                  app.add_option("--out-dir", a->out_dir,
                                 "Write test.txt, dev.txt, train.txt (one word a line), lexicon.tsv (filtered word<TAB>phonemes, file order) and the vocabularies here");
                  return [a] { return run_cmudict(*a); };
                });

struct DatesArgs {
  int64_t n = 10;
  uint64_t seed = 1;
  bool held_out = false;
};

ATTN_SUBCOMMAND("dates", "Print examples of the generated dates task (source<TAB>ISO target)",
                [](CLI::App& app) -> Runner {
                  auto a = std::make_shared<DatesArgs>();
                  app.add_option("-n,--count", a->n, "How many examples")->check(CLI::NonNegativeNumber);
                  app.add_option("--seed", a->seed, "Sampling seed");
                  app.add_flag("--held-out", a->held_out, "Draw from the held-out (date, format) pairs");
                  return [a] {
                    data::DatesTask task;
                    Rng rng(a->seed);
                    for (const auto& e : task.sample(a->n, a->held_out, rng)) {
                      std::cout << e.source << "\t" << e.target << "\n";
                    }
                    return 0;
                  };
                });

}  // namespace

}  // namespace attn::cli
