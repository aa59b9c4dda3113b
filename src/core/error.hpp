// The two error channels of moesim: InputError for what a user or a file can cause
// (the CLI turns it into exit code 2 and one line), assertions for bugs.
#pragma once

#include <stdexcept>
#include <string>

namespace moesim {

// Bad input: names the file, the field (a dotted path, may be empty) and what was
// expected, so the message is one line a user can act on.
class InputError : public std::runtime_error {
 public:
  InputError(std::string file, std::string field, std::string what_expected);

  const std::string& file() const { return file_; }
  const std::string& field() const { return field_; }

 private:
  std::string file_;
  std::string field_;
};

}  // namespace moesim
