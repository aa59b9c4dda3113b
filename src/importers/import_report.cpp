// Rendering of the import report for stderr.
#include "src/importers/import_report.hpp"

namespace moesim::importers {

void print_report(const ImportReport& r, std::ostream& out) {
  auto section = [&](const char* title, const std::vector<std::string>& lines) {
    if (lines.empty()) return;
    out << title << ":\n";
    for (const std::string& l : lines) out << "  " << l << "\n";
  };
  section("mapped", r.mapped);
  section("defaulted", r.defaulted);
  if (!r.ignored.empty()) {
    out << "ignored (" << r.ignored.size() << " keys that do not change the model or are not modelled):\n";
    // Streamed, not concatenated: GCC 12 misreports string building here under
    // -Wrestrict (GCC bug 105329).
    std::size_t column = 0;
    for (std::size_t i = 0; i < r.ignored.size(); ++i) {
      const std::size_t width = r.ignored[i].size() + 2;
      if (column > 0 && column + width > 100) {
        out << "\n";
        column = 0;
      }
      out << (column == 0 ? "  " : " ") << r.ignored[i] << (i + 1 < r.ignored.size() ? "," : "");
      column += width;
    }
    out << "\n";
  }
  section("notes", r.notes);
}

}  // namespace moesim::importers
