// A one-line progress bar redrawn in place on stderr when stderr is a terminal; silent
// otherwise, so logs and pipes never see it.
#pragma once

#include <unistd.h>

#include <iostream>
#include <string>

namespace moesim::cli {

struct ProgressBar {
  bool on = isatty(2) != 0;
  void operator()(long long done, long long total, const std::string& what) const {
    if (!on) return;
    const long long width = 30, filled = total > 0 ? width * done / total : width;
    std::cerr << "\r[" << std::string(static_cast<std::size_t>(filled), '#')
              << std::string(static_cast<std::size_t>(width - filled), ' ') << "] " << done << "/" << total << " "
              << what.substr(0, 60) << "\033[K" << std::flush;
    if (done == total) std::cerr << "\n";
  }
};

}  // namespace moesim::cli
