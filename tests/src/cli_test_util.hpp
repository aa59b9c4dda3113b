// Running the moesim binary from a test as a user would: one command line, its exit code,
// stdout and stderr.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

namespace moesim::testing {

struct Outcome {
  int code = -1;
  std::string out;
  std::string err;
};

// Runs a shell command line, capturing stdout and stderr.
inline Outcome run_command(const std::string& command) {
  // ctest runs each test in its own process, side by side: one stderr file per process and call.
  static int calls = 0;
  const std::string err_file =
      ::testing::TempDir() + "moesim_cli_stderr." + std::to_string(::getpid()) + "." + std::to_string(calls++) + ".txt";
  const std::string cmd = command + " 2>" + err_file;
  Outcome r;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) r.out.append(buf, n);
  const int status = ::pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream e(err_file);
  std::stringstream ss;
  ss << e.rdbuf();
  r.err = ss.str();
  std::remove(err_file.c_str());
  return r;
}

}  // namespace moesim::testing
