// Writing an output file whole or not at all: a temporary file beside it, then rename.
#pragma once

#include <string>
#include <string_view>

namespace moesim {

// Writes `contents` to `path` atomically; throws InputError naming the path when the
// directory is missing or not writable. A partial file is never left at `path`.
void write_file_atomically(const std::string& path, std::string_view contents);

}  // namespace moesim
