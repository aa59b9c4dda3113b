// `moesim report --out reports/NAME.html INPUT...`: one self-contained HTML page comparing
// the plans and GPUs of `search --json` and `simulate --json` documents, with the same
// tables as NAME.md and NAME.csv beside it.
#include <iostream>
#include <memory>

#include "src/cli/commands.hpp"
#include "src/core/atomic_file.hpp"
#include "src/core/error.hpp"
#include "src/report/render.hpp"

namespace moesim::cli {

namespace {
struct ReportArgs {
  std::string out;
  std::vector<std::string> inputs;
};
}  // namespace

Command add_report(CLI::App& app) {
  auto a = std::make_shared<ReportArgs>();
  CLI::App* cmd = app.add_subcommand("report", "Write an HTML page (and Markdown, CSV) comparing plans and GPUs");
  cmd->add_option("--out", a->out, "the page to write: reports/NAME.html (NAME.md and NAME.csv go beside it)")->required();
  cmd->add_option("inputs", a->inputs, "outputs of `moesim search --json` and `moesim simulate --json`, and profiles")
      ->required();
  return {cmd, [a]() {
            const std::string suffix = ".html";
            if (a->out.size() <= suffix.size() || a->out.compare(a->out.size() - suffix.size(), suffix.size(), suffix) != 0)
              throw InputError("--out", "", "expected a path ending in .html, got '" + a->out + "'");
            const std::string stem = a->out.substr(0, a->out.size() - suffix.size());
            // Everything is read and rendered before the first byte is written.
            const Report report = build_report(a->inputs);
            const RenderedReport r = render_report(report, chart_library_dir());
            write_file_atomically(stem + ".md", r.markdown);
            write_file_atomically(stem + ".csv", r.csv);
            if (!r.profile_csv.empty()) write_file_atomically(stem + ".profiles.csv", r.profile_csv);
            if (!r.balance_csv.empty()) write_file_atomically(stem + ".balance.csv", r.balance_csv);
            write_file_atomically(a->out, r.html);
            std::size_t rows = 0;
            for (const ReportView& v : report.views) rows += v.rows.size();
            std::cout << "report: " << report.views.size() + report.profiles.size() << " view(s), " << rows
                      << " plan row(s) written to " << a->out << " (and " << stem << ".md, " << stem << ".csv"
                      << (r.profile_csv.empty() ? "" : ", " + stem + ".profiles.csv")
                      << (r.balance_csv.empty() ? "" : ", " + stem + ".balance.csv") << ")\n";
            return 0;
          }};
}

}  // namespace moesim::cli
