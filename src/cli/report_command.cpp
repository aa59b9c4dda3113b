// `moesim report --out reports/NAME.html INPUT...`: one self-contained HTML page comparing
// the plans and GPUs of `search --json` and `simulate --json` documents, profiles against
// their fits, and `run --compare --json` predictions against measurements, with the same
// tables as NAME.md and NAME.csv (and NAME.*.csv) beside it.
#include <iostream>
#include <memory>
#include <utility>

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
  CLI::App* cmd = app.add_subcommand(
      "report", "Write an HTML page (and Markdown, CSV) comparing plans and GPUs, or predictions with measured runs");
  cmd->add_option("--out", a->out, "the page to write: reports/NAME.html (NAME.md and NAME.csv go beside it)")->required();
  cmd->add_option("inputs", a->inputs,
                  "outputs of `moesim search --json`, `moesim simulate --json` and `moesim run --compare --json`, "
                  "and profiles")
      ->required();
  return {cmd, [a]() {
            const std::string suffix = ".html";
            if (a->out.size() <= suffix.size() || a->out.compare(a->out.size() - suffix.size(), suffix.size(), suffix) != 0)
              throw InputError("--out", "", "expected a path ending in .html, got '" + a->out + "'");
            const std::string stem = a->out.substr(0, a->out.size() - suffix.size());
            // Everything is read and rendered before the first byte is written.
            const Report report = build_report(a->inputs);
            const RenderedReport r = render_report(report, chart_library_dir());
            // NAME.csv always; the other CSVs when their part of the report has rows.
            const std::pair<std::string, const std::string*> files[] = {
                {".md", &r.markdown},
                {".csv", &r.csv},
                {".profiles.csv", &r.profile_csv},
                {".balance.csv", &r.balance_csv},
                {".runs.csv", &r.runs_csv},
                {".run-categories.csv", &r.run_categories_csv},
                {".run-timelines.csv", &r.run_timelines_csv},
                {".run-experts.csv", &r.run_experts_csv}};
            std::string written;
            for (const auto& [ext, text] : files) {
              if (text->empty() && ext != ".md" && ext != ".csv") continue;
              write_file_atomically(stem + ext, *text);
              written += (written.empty() ? "" : ", ") + stem + ext;
            }
            write_file_atomically(a->out, r.html);
            std::size_t rows = 0;
            for (const ReportView& v : report.views) rows += v.rows.size();
            const std::size_t runs = report.runs ? report.runs->rows.size() : 0;
            std::cout << "report: " << report.views.size() + report.profiles.size() + (runs > 0 ? 1 : 0) << " view(s), "
                      << rows << " plan row(s), " << runs << " run(s) written to " << a->out << " (and " << written
                      << ")\n";
            return 0;
          }};
}

}  // namespace moesim::cli
