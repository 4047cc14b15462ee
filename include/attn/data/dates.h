// A generated task for demos that need no download: a date written in one of many human
// formats ("25 November 2026", "Nov 25, 2026", "25/11/2026", "Wednesday, November 25, 2026",
// ...) -> its ISO form "2026-11-25", character by character.
//
// Every rendering determines its date without knowing the format: the only all-numeric
// formats are DD/MM/YYYY (slashes), DD.MM.YYYY and YYYY.MM.DD (told apart by where the
// four-digit year stands), YYYYMMDD and YYYY-MM-DD; there is no month-first numeric format.
// Names are English; the casing varies (as written, lower, upper).
//
// Split: a (date, format) pair is held out when a hash of it falls under held_out_fraction,
// so train and held-out never share a pair (in any casing), and the split does not depend
// on how many examples are drawn.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <vector>

#include "attn/core/rng.h"
#include "attn/data/vocabulary.h"

namespace attn::data {

struct Date {
  int year = 1970;
  int month = 1;  // 1..12
  int day = 1;    // 1..31
  auto operator<=>(const Date&) const = default;
};

bool is_leap_year(int year);
int days_in_month(int year, int month);
// Days since 1970-01-01 (proleptic Gregorian); and back.
int64_t days_from_civil(const Date& d);
Date civil_from_days(int64_t days);
// 0 = Monday .. 6 = Sunday.
int weekday(const Date& d);
// "2026-11-25". Throws attn::Error for an invalid date or a year outside 1..9999.
std::string to_iso(const Date& d);

enum class DateCase { as_written, lower, upper };

// Number of formats, and a short description of each ("D Month YYYY", ...).
int num_date_formats();
const std::string& date_format_name(int format);
// The date in the format and casing. Throws attn::Error for an invalid date or format.
std::string render_date(const Date& d, int format, DateCase casing = DateCase::as_written);

struct DatesOptions {
  int min_year = 1950;
  int max_year = 2049;
  double held_out_fraction = 0.1;
  uint64_t split_seed = 0x5eed0da7e5ULL;  // fixes the split, independent of sampling seeds
};

struct DateExample {
  std::string source;  // the rendered date
  std::string target;  // ISO form
  Date date;
  int format = 0;
  DateCase casing = DateCase::as_written;
};

class DatesTask {
 public:
  // Throws attn::Error for an empty year range or a fraction outside [0, 1].
  explicit DatesTask(const DatesOptions& options = {});
  const DatesOptions& options() const { return options_; }

  // Whether the pair (date, format) belongs to the held-out part.
  bool is_held_out(const Date& d, int format) const;
  // n examples drawn uniformly (date in range, format, casing) from the train part
  // (held_out = false) or the held-out part; deterministic for the rng's state.
  std::vector<DateExample> sample(int64_t n, bool held_out, Rng& rng) const;

  // Characters of every rendering of the task / of ISO dates ("-0123456789").
  Vocabulary source_vocabulary() const;
  Vocabulary target_vocabulary() const;

 private:
  DatesOptions options_;
  int64_t first_day_ = 0;
  int64_t num_days_ = 0;
};

}  // namespace attn::data
