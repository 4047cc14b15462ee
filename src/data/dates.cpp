#include "attn/data/dates.h"

#include <array>
#include <cctype>
#include <cstdio>

#include "attn/core/error.h"

namespace attn::data {

namespace {

const std::array<const char*, 12> kMonths = {"January", "February", "March",     "April",
                                             "May",     "June",     "July",      "August",
                                             "September", "October", "November", "December"};
const std::array<const char*, 7> kWeekdays = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                              "Friday", "Saturday", "Sunday"};

const std::vector<std::string>& format_names() {
  static const std::vector<std::string> names = {
      "D Month YYYY",          // 25 November 2026
      "Month D, YYYY",         // November 25, 2026
      "Mon D, YYYY",           // Nov 25, 2026
      "D Mon YYYY",            // 25 Nov 2026
      "DD/MM/YYYY",            // 25/11/2026
      "YYYY.MM.DD",            // 2026.11.25
      "DD.MM.YYYY",            // 25.11.2026
      "Weekday, Month D, YYYY",  // Wednesday, November 25, 2026
      "Wkd, D Mon YYYY",       // Wed, 25 Nov 2026
      "Weekday D Month YYYY",  // Wednesday 25 November 2026
      "Month Dth, YYYY",       // November 25th, 2026
      "the Dth of Month YYYY", // the 25th of November 2026
      "YYYYMMDD",              // 20261125
      "YYYY-MM-DD",            // 2026-11-25
  };
  return names;
}

std::string ordinal(int d) {
  const char* suffix = "th";
  if (d % 100 < 11 || d % 100 > 13) {
    if (d % 10 == 1) suffix = "st";
    if (d % 10 == 2) suffix = "nd";
    if (d % 10 == 3) suffix = "rd";
  }
  return std::to_string(d) + suffix;
}

std::string two(int v) {
  char b[8];
  std::snprintf(b, sizeof b, "%02d", v);
  return b;
}

std::string four(int v) {
  char b[8];
  std::snprintf(b, sizeof b, "%04d", v);
  return b;
}

void check_date(const Date& d, const char* op) {
  ATTN_CHECK(d.year >= 1 && d.year <= 9999, op, ": year ", d.year, " outside 1..9999");
  ATTN_CHECK(d.month >= 1 && d.month <= 12, op, ": month ", d.month, " outside 1..12");
  ATTN_CHECK(d.day >= 1 && d.day <= days_in_month(d.year, d.month), op, ": day ", d.day,
             " invalid for ", d.year, "-", two(d.month));
}

}  // namespace

bool is_leap_year(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int days_in_month(int y, int m) {
  static const int kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  ATTN_CHECK(m >= 1 && m <= 12, "days_in_month: month ", m, " outside 1..12");
  return m == 2 && is_leap_year(y) ? 29 : kDays[m - 1];
}

// Howard Hinnant's days_from_civil / civil_from_days (chrono-Compatible Low-Level Date
// Algorithms), eras of 400 years.
int64_t days_from_civil(const Date& d) {
  int64_t y = d.year - (d.month <= 2 ? 1 : 0);
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t mp = (d.month + 9) % 12;
  int64_t doy = (153 * mp + 2) / 5 + d.day - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

Date civil_from_days(int64_t z) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t day = doy - (153 * mp + 2) / 5 + 1;
  int64_t month = mp < 10 ? mp + 3 : mp - 9;
  int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  return Date{static_cast<int>(year), static_cast<int>(month), static_cast<int>(day)};
}

int weekday(const Date& d) {
  int64_t z = days_from_civil(d);  // 1970-01-01 was a Thursday (3)
  return static_cast<int>(((z % 7) + 7 + 3) % 7);
}

std::string to_iso(const Date& d) {
  check_date(d, "to_iso");
  return four(d.year) + "-" + two(d.month) + "-" + two(d.day);
}

int num_date_formats() { return static_cast<int>(format_names().size()); }

const std::string& date_format_name(int format) {
  ATTN_CHECK(format >= 0 && format < num_date_formats(), "date_format_name: format ", format,
             " outside [0, ", num_date_formats(), ")");
  return format_names()[static_cast<size_t>(format)];
}

std::string render_date(const Date& d, int format, DateCase casing) {
  check_date(d, "render_date");
  ATTN_CHECK(format >= 0 && format < num_date_formats(), "render_date: format ", format,
             " outside [0, ", num_date_formats(), ")");
  const std::string month = kMonths[static_cast<size_t>(d.month - 1)];
  const std::string mon = month.substr(0, 3);
  const std::string wday = kWeekdays[static_cast<size_t>(weekday(d))];
  const std::string wd = wday.substr(0, 3);
  const std::string D = std::to_string(d.day), Y = four(d.year);
  std::string s;
  switch (format) {
    case 0: s = D + " " + month + " " + Y; break;
    case 1: s = month + " " + D + ", " + Y; break;
    case 2: s = mon + " " + D + ", " + Y; break;
    case 3: s = D + " " + mon + " " + Y; break;
    case 4: s = two(d.day) + "/" + two(d.month) + "/" + Y; break;
    case 5: s = Y + "." + two(d.month) + "." + two(d.day); break;
    case 6: s = two(d.day) + "." + two(d.month) + "." + Y; break;
    case 7: s = wday + ", " + month + " " + D + ", " + Y; break;
    case 8: s = wd + ", " + D + " " + mon + " " + Y; break;
    case 9: s = wday + " " + D + " " + month + " " + Y; break;
    case 10: s = month + " " + ordinal(d.day) + ", " + Y; break;
    case 11: s = "the " + ordinal(d.day) + " of " + month + " " + Y; break;
    case 12: s = Y + two(d.month) + two(d.day); break;
    case 13: s = to_iso(d); break;
  }
  for (char& c : s) {
    if (casing == DateCase::lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (casing == DateCase::upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return s;
}

DatesTask::DatesTask(const DatesOptions& options) : options_(options) {
  ATTN_CHECK(options.min_year >= 1 && options.max_year <= 9999 && options.min_year <= options.max_year,
             "DatesTask: year range [", options.min_year, ", ", options.max_year,
             "] must be non-empty within 1..9999");
  ATTN_CHECK(options.held_out_fraction >= 0 && options.held_out_fraction <= 1,
             "DatesTask: held_out_fraction ", options.held_out_fraction, " outside [0, 1]");
  first_day_ = days_from_civil(Date{options.min_year, 1, 1});
  num_days_ = days_from_civil(Date{options.max_year, 12, 31}) - first_day_ + 1;
}

bool DatesTask::is_held_out(const Date& d, int format) const {
  uint64_t key = static_cast<uint64_t>(days_from_civil(d) - first_day_) *
                     static_cast<uint64_t>(num_date_formats()) + static_cast<uint64_t>(format);
  return counter_uniform(options_.split_seed, key) < options_.held_out_fraction;
}

std::vector<DateExample> DatesTask::sample(int64_t n, bool held_out, Rng& rng) const {
  ATTN_CHECK(n >= 0, "DatesTask::sample: n must be >= 0, got ", n);
  const double want = held_out ? options_.held_out_fraction : 1.0 - options_.held_out_fraction;
  // Rejection sampling needs the part to be a reasonable share of all pairs.
  ATTN_CHECK(n == 0 || want >= 1e-3, "DatesTask::sample: the ", held_out ? "held-out" : "train",
             " part is (nearly) empty (held_out_fraction ", options_.held_out_fraction, ")");
  std::vector<DateExample> out;
  out.reserve(static_cast<size_t>(n));
  while (static_cast<int64_t>(out.size()) < n) {
    Date d = civil_from_days(first_day_ + static_cast<int64_t>(rng.below(static_cast<uint64_t>(num_days_))));
    int format = static_cast<int>(rng.below(static_cast<uint64_t>(num_date_formats())));
    auto casing = static_cast<DateCase>(rng.below(3));
    if (is_held_out(d, format) != held_out) continue;  // rejection keeps the draw uniform
    out.push_back(DateExample{render_date(d, format, casing), to_iso(d), d, format, casing});
  }
  return out;
}

Vocabulary DatesTask::source_vocabulary() const {
  // Every month, weekday and day-of-month ordinal in every format and casing: the days of
  // a leap year cover them all, and days 1..31 cover all ten digits.
  std::vector<std::string> texts;
  for (int64_t z = days_from_civil(Date{2024, 1, 1}); z <= days_from_civil(Date{2024, 12, 31}); ++z) {
    for (int f = 0; f < num_date_formats(); ++f) {
      for (auto c : {DateCase::as_written, DateCase::lower, DateCase::upper}) {
        texts.push_back(render_date(civil_from_days(z), f, c));
      }
    }
  }
  return Vocabulary::from_chars(texts);
}

Vocabulary DatesTask::target_vocabulary() const { return Vocabulary::from_chars({"-0123456789"}); }

}  // namespace attn::data
