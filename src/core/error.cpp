// Formats InputError's one-line message: "FILE: field 'FIELD': EXPECTED".
#include "src/core/error.hpp"

#include <utility>

namespace moesim {
namespace {

std::string format(const std::string& file, const std::string& field, const std::string& msg) {
  std::string out = file.empty() ? std::string("<input>") : file;
  out += ": ";
  if (!field.empty()) out += "field '" + field + "': ";
  out += msg;
  // One line, always: a newline in a value would split the message.
  for (char& c : out)
    if (c == '\n' || c == '\r') c = ' ';
  return out;
}

}  // namespace

InputError::InputError(std::string file, std::string field, std::string what_expected)
    : std::runtime_error(format(file, field, what_expected)),
      file_(std::move(file)),
      field_(std::move(field)) {}

}  // namespace moesim
