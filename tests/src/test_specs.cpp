#include <gtest/gtest.h>
#include "src/model/model_json.hpp"
TEST(Placeholder, Loads) { SUCCEED(); }
