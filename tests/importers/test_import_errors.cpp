// One failing case per kind of bad input, per importer: each is an InputError naming
// the file and the field (or the line / byte) at fault.
#include <gtest/gtest.h>

#include "src/core/error.hpp"
#include "tests/importers/import_test_util.hpp"

namespace moesim::importers {
namespace {

struct Case {
  const char* format;  // "" = detect
  const char* text;
  std::vector<std::string> set;
  const char* field;
  const char* message;  // a part of the expected message
};

const Case kCases[] = {
    // fairseq
    {"fairseq", "{'decoder_layers': 'twelve'}", {"vocab=10"}, "decoder_layers", "expected an integer"},
    {"fairseq", "{'decoder_layers': 2, 'decoder_embed_dim': 64", {}, "", "unterminated dict"},
    {"fairseq",
     "{'decoder_layers': 2, 'decoder_embed_dim': 64, 'decoder_ffn_embed_dim': 256, 'decoder_attention_heads': 3, "
     "'tokens_per_sample': 128}",
     {"vocab=10"}, "decoder_attention_heads", "divisor of decoder_embed_dim"},
    {"fairseq",
     "{'decoder_layers': 2, 'decoder_embed_dim': 64, 'decoder_ffn_embed_dim': 256, 'decoder_attention_heads': 4, "
     "'tokens_per_sample': 128, 'activation_fn': 'swish'}",
     {"vocab=10"}, "activation_fn", "expected gelu"},
    {"fairseq",
     "{'decoder_layers': 2, 'decoder_embed_dim': 64, 'decoder_ffn_embed_dim': 256, 'decoder_attention_heads': 4, "
     "'tokens_per_sample': 128, 'moe_freq': 2, 'moe_expert_count': 0}",
     {"vocab=10"}, "moe_expert_count", "at least 1 expert"},
    {"fairseq", "[1, 2]", {}, "", "expected a fairseq cfg dict"},
    // FasterTransformer
    {"ft", "[gpt]\nhead_num = 16\n", {}, "gpt.size_per_head", "required setting is missing"},
    {"ft", "[gpt]\nhead_num = 16\nthis line is junk\n", {}, "line 3", "expected 'key = value'"},
    {"ft", "head_num = 16\n", {}, "line 1", "[section] header"},
    {"ft", "[model]\nx = 1\n", {}, "gpt", "found sections: model"},
    {"ft",
     "[gpt]\nhead_num=2\nsize_per_head=4\ninter_size=32\nnum_layer=4\nmax_pos_seq_len=16\nvocab_size=10\n"
     "[structure]\ngpt_with_moe=1\nexpert_num=4\nmoe_layers=[1, 9]\n",
     {}, "structure.moe_layers", "layer indices in [0, 3]"},
    {"ft", "[gpt]\nhead_num = 16\nhead_num = 8\n", {}, "gpt.head_num", "given twice"},
    // Megatron
    {"megatron", "num_layers:abc\nhidden_size:64\nnum_attention_heads:4\n", {}, "num_layers", "expected an integer"},
    {"megatron", "num_layers:2\nnum_attention_heads:4\nseq_length:8\n", {}, "hidden_size", "required setting is missing"},
    {"megatron", "num_layers:2\nhidden_size:64\nnum_attention_heads:4\nseq_length:8\npadded_vocab_size:10\nnum_experts:[4, 8]\n",
     {}, "num_experts", "same expert count"},
    {"megatron",
     "num_layers:2\nhidden_size:64\nnum_attention_heads:4\nseq_length:8\npadded_vocab_size:10\nnum_experts:4\n"
     "moe_layer_freq:([0]+[1]*5)\n",
     {}, "moe_layer_freq", "one entry per layer (2)"},
    {"megatron",
     "num_layers:2\nhidden_size:64\nnum_attention_heads:4\nseq_length:8\npadded_vocab_size:10\nnum_experts:4\n"
     "world_size:6\ntensor_model_parallel_size:4\n",
     {}, "world_size", "multiple of tp * pp * cp (4)"},
    {"megatron",
     "num_layers:2\nhidden_size:64\nnum_attention_heads:4\nseq_length:8\npadded_vocab_size:10\nnum_experts:4\n"
     "data_parallel_size:2\nexpert_model_parallel_size:4\n",
     {}, "ep", "divisor of dp"},
    {"megatron", "python pretrain_gpt.py --num-layers 'unterminated\n", {}, "line 1", "unterminated single quote"},
    // HF
    {"hf", "{\"model_type\": \"mixtral\", \"num_hidden_layers\": \"32\"}", {}, "num_hidden_layers", "expected an integer"},
    {"hf", "{\"model_type\": \"mixtral\", ", {}, "", "not valid JSON"},
    {"hf",
     "{\"model_type\": \"mixtral\", \"num_hidden_layers\": 2, \"hidden_size\": 64, \"num_attention_heads\": 4, "
     "\"vocab_size\": 10, \"max_position_embeddings\": 16, \"intermediate_size\": 32, \"num_local_experts\": 2, "
     "\"num_experts_per_tok\": 3}",
     {}, "num_experts_per_tok", "expected an integer in [1, 2]"},
    {"hf",
     "{\"model_type\": \"olmoe\", \"num_hidden_layers\": 2, \"hidden_size\": 64, \"num_attention_heads\": 4, "
     "\"vocab_size\": 10, \"max_position_embeddings\": 16, \"intermediate_size\": 32, \"hidden_act\": \"gelu\"}",
     {}, "hidden_act", "expected \"silu\""},
    {"hf", "{\"architectures\": [\"BertModel\"]}", {}, "model_type", "supported families"},
    // Detection and --set
    {"", "just some words\nnothing more\n", {}, "", "could not tell the format"},
    {"", "{\"a\": 1}", {}, "", "could not tell the format"},
    {"fairseq", "{}", {"vocab"}, "vocab", "expected key=value"},
    {"fairseq", "{}", {"vocab=x"}, "decoder_layers", "required setting is missing"},
};

TEST(ImportErrors, EachNamesTheFileAndTheField) {
  for (const Case& c : kCases) {
    ImportOptions o;
    o.format = c.format;
    o.set = c.set;
    try {
      import_text(c.text, "bad.input", o);
      ADD_FAILURE() << "no error for: " << c.text;
    } catch (const InputError& e) {
      const std::string what = e.what();
      if (e.file() != "--set") {
        EXPECT_EQ(e.file(), "bad.input") << what;
      }
      EXPECT_EQ(e.field(), c.field) << c.text << "\n -> " << what;
      EXPECT_NE(what.find(c.message), std::string::npos) << c.text << "\n -> " << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
    }
  }
}

TEST(ImportErrors, SetValuesAreTyped) {
  ImportOptions o;
  o.set = {"vocab=lots"};
  try {
    import_file(testing::fixture("fairseq-moe-15b.dict.txt"), o);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), "--set");
    EXPECT_EQ(e.field(), "vocab");
    EXPECT_NE(std::string(e.what()).find("expected an integer"), std::string::npos);
  }
}

TEST(ImportErrors, MissingAndUnreadableFiles) {
  ImportOptions o;
  EXPECT_THROW(import_file("/nonexistent/config.json", o), InputError);
  EXPECT_THROW(import_file(MOESIM_SOURCE_DIR, o), InputError);  // a directory
}

}  // namespace
}  // namespace moesim::importers
