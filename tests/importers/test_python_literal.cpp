// The Python-literal parser: values as repr() prints them, and errors with byte offsets.
#include "src/importers/python_literal.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "src/core/error.hpp"
#include "tests/importers/import_test_util.hpp"

namespace moesim::importers {
namespace {

nlohmann::json parse(const std::string& text) { return parse_python_literal(text, "t.txt"); }

TEST(PythonLiteral, Scalars) {
  EXPECT_EQ(parse("12"), 12);
  EXPECT_EQ(parse("-3"), -3);
  EXPECT_EQ(parse("+4"), 4);
  EXPECT_EQ(parse("1_000"), 1000);
  EXPECT_EQ(parse("0x1F"), 31);
  EXPECT_EQ(parse("0o17"), 15);
  EXPECT_EQ(parse("0b101"), 5);
  EXPECT_EQ(parse("9223372036854775807"), INT64_MAX);
  EXPECT_EQ(parse("-9223372036854775808"), INT64_MIN);
  EXPECT_TRUE(parse("18446744073709551615").is_number_unsigned());
  EXPECT_TRUE(parse("123456789012345678901234567890").is_number_float());
  EXPECT_DOUBLE_EQ(parse("1e-05").get<double>(), 1e-05);
  EXPECT_DOUBLE_EQ(parse("-1.0").get<double>(), -1.0);
  EXPECT_DOUBLE_EQ(parse(".5").get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(parse("4.0").get<double>(), 4.0);
  EXPECT_DOUBLE_EQ(parse("2E+3").get<double>(), 2000.0);
  EXPECT_TRUE(std::isinf(parse("inf").get<double>()));
  EXPECT_TRUE(std::isinf(parse("-inf").get<double>()));
  EXPECT_EQ(parse("True"), true);
  EXPECT_EQ(parse("False"), false);
  EXPECT_TRUE(parse("None").is_null());
  EXPECT_EQ(parse("  7 \n"), 7);
}

TEST(PythonLiteral, StringsAndEscapes) {
  EXPECT_EQ(parse("'abc'"), "abc");
  EXPECT_EQ(parse("\"a'b\""), "a'b");
  EXPECT_EQ(parse(R"('it\'s')"), "it's");
  EXPECT_EQ(parse(R"('a\nb\tc\\d')"), "a\nb\tc\\d");
  EXPECT_EQ(parse(R"('\x41\101\u00e9')"), "AA\xc3\xa9");
  EXPECT_EQ(parse(R"('\U0001F600')"), "\xF0\x9F\x98\x80");
  EXPECT_EQ(parse(R"('\q')"), "\\q");  // unknown escapes stay, as in Python
  EXPECT_EQ(parse(R"(r'\n')"), "\\n");
  EXPECT_EQ(parse(R"(b'x')"), "x");
  EXPECT_EQ(parse("'''multi\nline'''"), "multi\nline");
  EXPECT_EQ(parse(R"('\ud800')"), "\xEF\xBF\xBD");  // a lone surrogate cannot be UTF-8
  // fairseq prints a list of tuples as a string: it stays one string.
  EXPECT_EQ(parse("'[(1, 64), (2, 128)]'"), "[(1, 64), (2, 128)]");
}

TEST(PythonLiteral, Containers) {
  const nlohmann::json v = parse("{'a': [1, (2, 3), {'b': None}], 'c': (), 'd': {}, 1: 'one', 'e': [1,],}");
  EXPECT_EQ(v["a"][0], 1);
  EXPECT_EQ(v["a"][1], nlohmann::json::array({2, 3}));
  EXPECT_TRUE(v["a"][2]["b"].is_null());
  EXPECT_EQ(v["c"], nlohmann::json::array());
  EXPECT_EQ(v["d"], nlohmann::json::object());
  EXPECT_EQ(v["1"], "one");  // non-string keys become their repr
  EXPECT_EQ(v["e"], nlohmann::json::array({1}));
  EXPECT_EQ(parse("{'k': 1, 'k': 2}")["k"], 2);  // the later duplicate wins, as in Python
}

TEST(PythonLiteral, SeedDictOfFairseq) {
  const nlohmann::json v = parse(testing::read_text(testing::fixture("fairseq-moe-15b.dict.txt")));
  ASSERT_TRUE(v.is_object());
  EXPECT_EQ(v["_name"], "transformer_lm_gpt");
  EXPECT_EQ(v["moe_expert_count"], 512);
  EXPECT_EQ(v["moe_top1_expert"], false);
  EXPECT_TRUE(v["moe_expert_ffn_dim"].is_null());
  EXPECT_DOUBLE_EQ(v["moe_eval_capacity_token_fraction"].get<double>(), 0.05);
  EXPECT_EQ(v["character_filters"], "[(1, 64), (2, 128), (3, 192), (4, 256), (5, 256), (6, 256), (7, 256)]");
  EXPECT_EQ(v.size(), 68u);  // as Python's ast.literal_eval counts them
}

// Each bad input names the byte where parsing stopped.
TEST(PythonLiteral, ErrorsNameTheByteOffset) {
  struct Case {
    const char* text;
    const char* expected;
  };
  const Case cases[] = {
      {"{'a': }", "unexpected character '}' at byte 6"},
      {"{'a' 1}", "expected ':' after a dict key at byte 5"},
      {"[1, 2", "unterminated sequence (expected ']') at byte 5"},
      {"'abc", "unterminated string at byte 0"},
      {"abc", "unexpected name 'abc' at byte 0"},
      {"1 2", "unexpected text after the value at byte 2"},
      {"", "expected a value, got the end of the text at byte 0"},
      {"{1: 2,, }", "unexpected character ',' at byte 6"},
      {"1j", "complex numbers are not supported at byte 1"},
      {"'a\nb'", "newline inside a string at byte 2"},
      {R"('\x4')", "bad hexadecimal escape in a string at byte 4"},
      {"0x", "bad integer literal at byte 0"},
      {"1e", "bad number literal at byte 0"},
      {"-", "expected a number at byte 0"},
  };
  for (const Case& c : cases) {
    try {
      parse(c.text);
      ADD_FAILURE() << "no error for " << c.text;
    } catch (const InputError& e) {
      EXPECT_EQ(e.file(), "t.txt");
      EXPECT_NE(std::string(e.what()).find(c.expected), std::string::npos) << c.text << " -> " << e.what();
    }
  }
}

TEST(PythonLiteral, OffsetsCountFromTheEnclosingFile) {
  try {
    parse_python_literal("[1, ?]", "f", 100);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("at byte 104"), std::string::npos) << e.what();
  }
}

TEST(PythonLiteral, NestingIsBounded) {
  const std::string ok = std::string(kMaxLiteralDepth, '[') + std::string(kMaxLiteralDepth, ']');
  EXPECT_NO_THROW(parse(ok));
  const std::string deep(100000, '[');
  try {
    parse(deep);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("nesting deeper than"), std::string::npos) << e.what();
  }
}

TEST(PythonLiteral, PrefixParseAndFallback) {
  std::size_t pos = 4;
  EXPECT_EQ(parse_python_literal_at("x = [1, 2] # tail", pos, "f"), nlohmann::json::array({1, 2}));
  EXPECT_EQ(pos, 10u);
  EXPECT_EQ(python_value_or_string("[64]"), nlohmann::json::array({64}));
  EXPECT_EQ(python_value_or_string("98,2,0"), "98,2,0");
  EXPECT_EQ(python_value_or_string("torch.float16"), "torch.float16");
  EXPECT_EQ(python_value_or_string("None"), nullptr);
}

}  // namespace
}  // namespace moesim::importers
