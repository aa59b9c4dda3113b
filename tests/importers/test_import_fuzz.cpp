// Mutation fuzz of the importers: every fixture, mutated thousands of ways
// (deterministically), imports or fails with an InputError: never another exception, a
// crash or a hang. Run under -DMOESIM_SANITIZE=ON to catch undefined behaviour too;
// MOESIM_FUZZ_ITERATIONS=N runs N mutations per fixture instead of 400.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <random>

#include "src/core/error.hpp"
#include "src/importers/python_literal.hpp"
#include "src/importers/shell_script.hpp"
#include "tests/importers/import_test_util.hpp"

namespace moesim::importers {
namespace {

// Characters that matter to some parser: quotes, brackets, escapes, separators, digits.
const std::string kSpecial = "'\"\\{}[]()<>:=,;$`#|&-+.eE0123456789\n\t x_@*";

std::string mutate(const std::string& text, std::mt19937_64& rng) {
  std::string s = text;
  const int edits = 1 + static_cast<int>(rng() % 8);
  for (int i = 0; i < edits; ++i) {
    const std::size_t n = s.size();
    const std::size_t at = n ? static_cast<std::size_t>(rng() % n) : 0;
    switch (rng() % 7) {
      case 0:  // replace a byte
        if (n) s[at] = static_cast<char>(rng() % 256);
        break;
      case 1:  // replace with a special character
        if (n) s[at] = kSpecial[rng() % kSpecial.size()];
        break;
      case 2:  // insert a special character
        s.insert(at, 1, kSpecial[rng() % kSpecial.size()]);
        break;
      case 3:  // delete a run
        if (n) s.erase(at, 1 + rng() % 16);
        break;
      case 4:  // truncate
        s.resize(at);
        break;
      case 5: {  // duplicate a run
        if (!n) break;
        const std::size_t len = 1 + rng() % 64;
        s.insert(at, s.substr(at, len));
        break;
      }
      default: {  // swap two bytes
        if (n < 2) break;
        std::swap(s[at], s[static_cast<std::size_t>(rng() % n)]);
      }
    }
  }
  return s;
}

void expect_clean(const std::string& text, const ImportOptions& o, const std::string& what) {
  try {
    import_text(text, "fuzz.input", o);
  } catch (const InputError&) {
    // expected for most mutations
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": " << e.what() << "\n--- input ---\n" << text.substr(0, 2000);
  }
}

int iterations() {
  const char* env = std::getenv("MOESIM_FUZZ_ITERATIONS");
  const int n = env ? std::atoi(env) : 0;
  return n > 0 ? n : 400;
}

struct Fixture {
  const char* name;
  const char* format;
  std::vector<std::string> set;
};

TEST(ImportFuzz, MutatedFixturesFailCleanly) {
  const Fixture fixtures[] = {
      {"fairseq-moe-15b.dict.txt", "fairseq", {"vocab=50264"}},
      {"fairseq-moe-15b.eval-cfg.txt", "fairseq", {"vocab=50264"}},
      {"fairseq-moe-4.1b.train.sh", "fairseq", {}},
      {"pai-gpt3-0.35b-moe64.config.ini", "ft", {}},
      {"pai-gpt3-0.35b-moe64.args.txt", "megatron", {}},
      {"mixtral-8x7b.megatron.sh", "megatron", {}},
      {"mixtral-8x7b-v0.1.config.json", "hf", {}},
      {"qwen1.5-moe-a2.7b.config.json", "hf", {}},
      {"deepseek-v3.config.json", "hf", {}},
  };
  std::mt19937_64 rng(20240601);
  for (const Fixture& f : fixtures) {
    const std::string text = testing::read_text(testing::fixture(f.name));
    for (int i = 0, n = iterations(); i < n; ++i) {
      const std::string mutated = mutate(text, rng);
      ImportOptions given;
      given.format = f.format;
      given.set = f.set;
      expect_clean(mutated, given, std::string(f.name) + " as " + f.format);
      ImportOptions detected;
      detected.set = f.set;
      expect_clean(mutated, detected, std::string(f.name) + " detected");
    }
  }
}

TEST(ImportFuzz, RandomBytesToEveryParser) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 3000; ++i) {
    std::string s(rng() % 200, '\0');
    for (char& c : s) c = rng() % 3 ? kSpecial[rng() % kSpecial.size()] : static_cast<char>(rng() % 256);
    try {
      parse_python_literal(s, "r");
    } catch (const InputError&) {
    }
    try {
      read_shell_script(s, "r", nullptr);
    } catch (const InputError&) {
    }
    for (const char* format : {"fairseq", "ft", "megatron", "hf", ""}) {
      ImportOptions o;
      o.format = format;
      expect_clean(s, o, std::string("random bytes as ") + format);
    }
  }
}

TEST(ImportFuzz, PathologicalInputs) {
  ImportOptions o;
  o.format = "fairseq";
  expect_clean(std::string(1 << 20, '['), o, "deep brackets");
  expect_clean("{'a': " + std::string(1 << 16, '(') , o, "deep tuples");
  o.format = "megatron";
  expect_clean("--x " + std::string(1 << 16, '$'), o, "dollars");
  expect_clean("A=${B:-${C:-${D:-${E:-${F:-${G:-${H:-${I:-${J:-${K:-${L:-${M:-${N:-${O:-${P:-${Q:-${R:-${S:-${T:-"
               "${U:-${V:-${W:-${X:-${Y:-${Z:-${AA:-${AB:-${AC:-${AD:-${AE:-${AF:-${AG:-${AH:-${AI:-1}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}\n"
               "--num-layers $A",
               o, "nested defaults");
  expect_clean("--x $((" + std::string(5000, '(') + "1" + std::string(5000, ')') + "))", o, "deep arithmetic");
  o.format = "ft";
  expect_clean("[gpt]\n" + std::string(100000, ' ') + "x = 1\n", o, "long line");
}

}  // namespace
}  // namespace moesim::importers
