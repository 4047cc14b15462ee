#include "attn/data/dates.h"

#include <gtest/gtest.h>

#include <optional>
#include <set>

#include "attn/core/error.h"

namespace attn::data {

namespace {

// An independent reader of the rendered dates: patterns that know nothing of the format
// numbers. parse_all() returns every date any pattern reads from the text, so a rendering
// is unambiguous when exactly one comes back.
const char* kMonthNames[] = {"january", "february", "march",     "april",   "may",      "june",
                             "july",    "august",   "september", "october", "november", "december"};
const char* kDayNames[] = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
int month_of(const std::string& name, bool full) {
  for (int m = 0; m < 12; ++m) {
    std::string n = kMonthNames[m];
    if (lower(name) == (full ? n : n.substr(0, 3))) return m + 1;
  }
  return 0;
}
int weekday_of(const std::string& name, bool full) {
  for (int d = 0; d < 7; ++d) {
    std::string n = kDayNames[d];
    if (lower(name) == (full ? n : n.substr(0, 3))) return d;
  }
  return -1;
}
std::string suffix_for(int d) {
  if (d % 100 >= 11 && d % 100 <= 13) return "th";
  return d % 10 == 1 ? "st" : d % 10 == 2 ? "nd" : d % 10 == 3 ? "rd" : "th";
}
// Sakamoto's weekday (0 = Sunday), converted to 0 = Monday: independent of the library's.
int sakamoto_monday0(int y, int m, int d) {
  static const int t[] = {0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4};
  if (m < 3) y -= 1;
  int w = (y + y / 4 - y / 100 + y / 400 + t[m - 1] + d) % 7;
  return (w + 6) % 7;
}
bool valid(int y, int m, int d) {
  static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m < 1 || m > 12 || d < 1) return false;
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return d <= days[m - 1] + (m == 2 && leap ? 1 : 0);
}

// A tiny pattern matcher (std::regex trips a GCC 12 warning under the sanitizers):
// '1' day in 1-2 digits, '2' day in 2 digits, '3' month in 2 digits, '4' year in 4 digits,
// '5' month name (full or 3 letters), '6' weekday name (full or 3 letters), '7' a 2-letter
// ordinal suffix; any other character matches itself, ignoring case.
struct Fields {
  int y = 0, m = 0, d = 0, wd = -1;
  std::string suffix;
};

bool match(const std::string& pat, const std::string& text, Fields& f) {
  size_t i = 0;
  auto digits = [&](size_t lo, size_t hi, int& out) {
    size_t j = i;
    while (j < text.size() && j - i < hi && std::isdigit(static_cast<unsigned char>(text[j]))) ++j;
    if (j - i < lo) return false;
    out = std::stoi(text.substr(i, j - i));
    i = j;
    return true;
  };
  auto letters = [&](std::string& out) {
    size_t j = i;
    while (j < text.size() && std::isalpha(static_cast<unsigned char>(text[j]))) ++j;
    if (j == i) return false;
    out = lower(text.substr(i, j - i));
    i = j;
    return true;
  };
  for (char c : pat) {
    std::string w;
    switch (c) {
      case '1': if (!digits(1, 2, f.d)) return false; break;
      case '2': if (!digits(2, 2, f.d)) return false; break;
      case '3': if (!digits(2, 2, f.m)) return false; break;
      case '4': if (!digits(4, 4, f.y)) return false; break;
      case '5':
        if (!letters(w)) return false;
        f.m = month_of(w, true) ? month_of(w, true) : month_of(w, false);
        if (!f.m) return false;
        break;
      case '6':
        if (!letters(w)) return false;
        f.wd = weekday_of(w, true) >= 0 ? weekday_of(w, true) : weekday_of(w, false);
        if (f.wd < 0) return false;
        break;
      case '7':
        if (!letters(w) || w.size() != 2) return false;
        f.suffix = w;
        break;
      default:
        if (i >= text.size() || std::tolower(static_cast<unsigned char>(text[i])) != c) return false;
        ++i;
    }
  }
  return i == text.size();
}

std::set<Date> parse_all(const std::string& text) {
  static const char* kPatterns[] = {"1 5 4",     "5 1, 4",    "2/3/4",  "4.3.2",
                                    "2.3.4",     "432",       "4-3-2",  "6, 5 1, 4",
                                    "6, 1 5 4",  "6 1 5 4",   "5 17, 4", "the 17 of 5 4"};
  std::set<Date> out;
  for (const char* pat : kPatterns) {
    Fields f;
    if (!match(pat, text, f) || !valid(f.y, f.m, f.d)) continue;
    if (f.wd >= 0 && f.wd != sakamoto_monday0(f.y, f.m, f.d)) continue;
    if (!f.suffix.empty() && f.suffix != suffix_for(f.d)) continue;
    out.insert(Date{f.y, f.m, f.d});
  }
  return out;
}

}  // namespace

TEST(Dates, Calendar) {
  EXPECT_EQ(days_from_civil(Date{1970, 1, 1}), 0);
  EXPECT_EQ(days_from_civil(Date{2000, 3, 1}), 11017);
  EXPECT_EQ(weekday(Date{2026, 11, 25}), 2);  // a Wednesday
  EXPECT_TRUE(is_leap_year(2000));
  EXPECT_FALSE(is_leap_year(1900));
  EXPECT_EQ(days_in_month(2024, 2), 29);
  EXPECT_EQ(days_in_month(2023, 2), 28);
  for (int64_t z = days_from_civil(Date{1899, 12, 1}); z < days_from_civil(Date{2101, 2, 1}); ++z) {
    Date d = civil_from_days(z);
    ASSERT_TRUE(valid(d.year, d.month, d.day)) << z;
    ASSERT_EQ(days_from_civil(d), z);
    ASSERT_EQ(weekday(d), sakamoto_monday0(d.year, d.month, d.day)) << to_iso(d);
  }
}

TEST(Dates, KnownRenderings) {
  Date d{2026, 11, 25};
  EXPECT_EQ(render_date(d, 0), "25 November 2026");
  EXPECT_EQ(render_date(d, 2), "Nov 25, 2026");
  EXPECT_EQ(render_date(d, 4), "25/11/2026");
  EXPECT_EQ(render_date(d, 5), "2026.11.25");
  EXPECT_EQ(render_date(d, 7, DateCase::lower), "wednesday, november 25, 2026");
  EXPECT_EQ(render_date(Date{2021, 3, 2}, 8, DateCase::upper), "TUE, 2 MAR 2021");
  EXPECT_EQ(render_date(Date{2011, 5, 11}, 11), "the 11th of May 2011");
  EXPECT_EQ(render_date(Date{2011, 5, 22}, 10), "May 22nd, 2011");
  EXPECT_EQ(to_iso(Date{987, 6, 5}), "0987-06-05");
}

// Every rendering of many dates, in every format and casing, reads back to its own date
// and to no other one: the format never has to be known.
TEST(Dates, EveryRenderingParsesBackUnambiguously) {
  Rng rng(7);
  std::vector<Date> dates = {{2026, 11, 25}, {2000, 2, 29}, {1950, 1, 1}, {2049, 12, 31},
                             {2001, 1, 2},   {2012, 12, 11}, {1999, 3, 13}};
  const int64_t first = days_from_civil(Date{1950, 1, 1}), last = days_from_civil(Date{2049, 12, 31});
  for (int i = 0; i < 60; ++i) {
    dates.push_back(civil_from_days(first + static_cast<int64_t>(rng.below(static_cast<uint64_t>(last - first + 1)))));
  }
  for (const Date& d : dates) {
    for (int f = 0; f < num_date_formats(); ++f) {
      for (auto c : {DateCase::as_written, DateCase::lower, DateCase::upper}) {
        std::string s = render_date(d, f, c);
        auto got = parse_all(s);
        ASSERT_EQ(got.size(), 1u) << "'" << s << "' (" << date_format_name(f) << ") reads as "
                                  << got.size() << " dates";
        EXPECT_EQ(*got.begin(), d) << s;
      }
    }
  }
}

TEST(Dates, BadDatesThrow) {
  EXPECT_THROW(render_date(Date{2023, 2, 29}, 0), Error);
  EXPECT_THROW(render_date(Date{2023, 13, 1}, 0), Error);
  EXPECT_THROW(render_date(Date{2023, 1, 1}, num_date_formats()), Error);
  try {
    to_iso(Date{2023, 4, 31});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("day 31 invalid for 2023-04"), std::string::npos) << e.what();
  }
  EXPECT_THROW(DatesTask(DatesOptions{2000, 1999}), Error);
  EXPECT_THROW(DatesTask(DatesOptions{1950, 2049, 1.5}), Error);
}

TEST(Dates, SamplingIsDeterministic) {
  DatesTask task;
  Rng a(42), b(42), c(43);
  auto xa = task.sample(200, false, a), xb = task.sample(200, false, b), xc = task.sample(200, false, c);
  ASSERT_EQ(xa.size(), 200u);
  ASSERT_EQ(xb.size(), 200u);
  int same_as_c = 0;
  for (size_t i = 0; i < xa.size(); ++i) {
    EXPECT_EQ(xa[i].source, xb[i].source);
    EXPECT_EQ(xa[i].target, xb[i].target);
    same_as_c += xa[i].source == xc[i].source;
    EXPECT_EQ(xa[i].target, to_iso(xa[i].date));
    EXPECT_EQ(xa[i].source, render_date(xa[i].date, xa[i].format, xa[i].casing));
  }
  EXPECT_LT(same_as_c, 10);
  // A second draw continues the stream instead of repeating it.
  auto xa2 = task.sample(200, false, a);
  int repeats = 0;
  for (size_t i = 0; i < xa.size(); ++i) repeats += xa[i].source == xa2[i].source;
  EXPECT_LT(repeats, 10);
}

TEST(Dates, TrainAndHeldOutNeverShareAPair) {
  DatesTask task;
  Rng rng(1);
  auto train = task.sample(4000, false, rng);
  auto held = task.sample(1000, true, rng);
  std::set<std::pair<Date, int>> train_pairs;
  for (const auto& e : train) {
    EXPECT_FALSE(task.is_held_out(e.date, e.format));
    train_pairs.insert({e.date, e.format});
  }
  std::set<int> formats;
  for (const auto& e : held) {
    EXPECT_TRUE(task.is_held_out(e.date, e.format));
    EXPECT_EQ(train_pairs.count({e.date, e.format}), 0u) << e.source;
    formats.insert(e.format);
  }
  EXPECT_EQ(static_cast<int>(formats.size()), num_date_formats());
  // The held-out share of all pairs of one year is near the requested 10%.
  int n = 0, h = 0;
  for (int64_t z = days_from_civil(Date{2030, 1, 1}); z <= days_from_civil(Date{2030, 12, 31}); ++z) {
    for (int f = 0; f < num_date_formats(); ++f, ++n) h += task.is_held_out(civil_from_days(z), f);
  }
  EXPECT_GT(h, n * 0.08);
  EXPECT_LT(h, n * 0.12);
}

TEST(Dates, VocabulariesCoverTheTask) {
  DatesTask task;
  Vocabulary src = task.source_vocabulary(), tgt = task.target_vocabulary();
  EXPECT_EQ(tgt.size(), 3 + 11);
  EXPECT_TRUE(src.contains("W") && src.contains("w") && src.contains("/") && src.contains(","));
  Rng rng(3);
  for (const auto& e : task.sample(500, false, rng)) {
    EXPECT_EQ(src.decode_chars(src.encode_chars(e.source)), e.source);
    EXPECT_EQ(tgt.decode_chars(tgt.encode_chars(e.target)), e.target);
  }
}

}  // namespace attn::data
