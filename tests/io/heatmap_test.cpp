#include "attn/io/heatmap.h"

#include <gtest/gtest.h>
#include <png.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "attn/core/error.h"
#include "attn/io/atomic_file.h"

namespace attn::io {

namespace {

namespace fs = std::filesystem;

struct Png {
  int w = 0, h = 0;
  std::vector<uint8_t> rgb;
  Rgb at(int x, int y) const {
    const uint8_t* p = &rgb[(static_cast<size_t>(y) * static_cast<size_t>(w) + static_cast<size_t>(x)) * 3];
    return Rgb{p[0], p[1], p[2]};
  }
};

// Reads a PNG back with libpng's simplified API, as RGB.
Png read_png(const std::string& path) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  EXPECT_TRUE(png_image_begin_read_from_file(&image, path.c_str())) << image.message;
  image.format = PNG_FORMAT_RGB;
  Png out;
  out.w = static_cast<int>(image.width);
  out.h = static_cast<int>(image.height);
  out.rgb.resize(PNG_IMAGE_SIZE(image));
  EXPECT_TRUE(png_image_finish_read(&image, nullptr, out.rgb.data(), 0, nullptr)) << image.message;
  return out;
}

std::string temp(const std::string& name) {
  return (fs::temp_directory_path() / ("attn_heatmap_test_" + name)).string();
}

// The value of attribute `name` in an XML start tag (minimal: no entities, double quotes).
std::string attr(const std::string& tag, const std::string& name) {
  const size_t p = tag.find(" " + name + "=\"");
  if (p == std::string::npos) return "<missing " + name + ">";
  const size_t b = p + name.size() + 3;
  return tag.substr(b, tag.find('"', b) - b);
}

double luminance(Rgb c) { return 0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b; }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

// A 4 x 5 map with its unique maximum at (2, 3), the rest distinct and smaller.
Tensor sample_weights() {
  std::vector<float> v(20);
  for (int i = 0; i < 20; ++i) v[static_cast<size_t>(i)] = 0.02f * static_cast<float>(i % 7) + 0.01f;
  v[2 * 5 + 3] = 0.9f;
  return Tensor::from_vector(v, {4, 5});
}
const std::vector<std::string> kRows = {"F", "OW", "N", "<eos>"};
const std::vector<std::string> kCols = {"p", "h", "o", "n", "e"};

}  // namespace

TEST(Viridis, EndpointsAndMonotoneLightness) {
  // matplotlib's viridis: (68, 1, 84) at 0, (253, 231, 37) at 1; the fit is within 4/255.
  Rgb lo = viridis(0), hi = viridis(1);
  EXPECT_NEAR(lo.r, 68, 4);
  EXPECT_NEAR(lo.g, 1, 4);
  EXPECT_NEAR(lo.b, 84, 4);
  EXPECT_NEAR(hi.r, 253, 4);
  EXPECT_NEAR(hi.g, 231, 4);
  EXPECT_NEAR(hi.b, 37, 4);
  // Middle (index 128 of 256 is (33, 145, 140)).
  Rgb mid = viridis(128.0f / 255.0f);
  EXPECT_NEAR(mid.r, 33, 4);
  EXPECT_NEAR(mid.g, 145, 4);
  EXPECT_NEAR(mid.b, 140, 4);
  for (int k = 1; k <= 64; ++k) {
    EXPECT_GT(luminance(viridis(k / 64.0f)), luminance(viridis((k - 1) / 64.0f))) << k;
  }
  EXPECT_EQ(viridis(-1.0f), viridis(0.0f));
  EXPECT_EQ(viridis(2.0f), viridis(1.0f));
}

TEST(HeatmapPng, SizeCellsAndLegend) {
  const std::string path = temp("single.png");
  HeatmapOptions o;
  o.vmax = 0.9f;  // the largest weight: same picture as vmax = 0, known to heatmap_geometry
  Tensor w = sample_weights();
  write_heatmap_png(path, w, kRows, kCols, o);
  Png img = read_png(path);
  HeatmapGeometry g = heatmap_geometry(0, 4, 5, kRows, kCols, o);
  ASSERT_EQ(img.w, g.width);
  ASSERT_EQ(img.h, g.height);
  ASSERT_EQ(g.grid_x.size(), 1u);
  EXPECT_EQ(g.cell, 24);
  // The grid and the bar lie inside the picture, the labels to the left and above the grid.
  EXPECT_GE(g.grid_x[0], 5 * 12);  // at least the width of "<eos>"
  EXPECT_GT(g.grid_y[0], 0);
  EXPECT_LE(g.grid_x[0] + 5 * g.cell, g.bar_x);
  EXPECT_LE(g.bar_x + g.bar_w, img.w);
  EXPECT_LE(g.grid_y[0] + 4 * g.cell, img.h);
  // Every cell has its weight's colour, and the brightest cell is the largest weight.
  double best = -1;
  int best_i = -1, best_j = -1;
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 5; ++j) {
      Rgb c = img.at(g.grid_x[0] + j * g.cell + g.cell / 2, g.grid_y[0] + i * g.cell + g.cell / 2);
      EXPECT_EQ(c, viridis(w.get({i, j}) / 0.9f)) << i << "," << j;
      if (luminance(c) > best) {
        best = luminance(c);
        best_i = i;
        best_j = j;
      }
    }
  }
  EXPECT_EQ(best_i, 2);
  EXPECT_EQ(best_j, 3);
  EXPECT_EQ(img.at(g.grid_x[0] + 3 * g.cell + 1, g.grid_y[0] + 2 * g.cell + 1), viridis(1.0f));
  // Colour bar: max at the top, 0 at the bottom.
  EXPECT_EQ(img.at(g.bar_x + g.bar_w / 2, g.bar_y), viridis(1.0f));
  EXPECT_EQ(img.at(g.bar_x + g.bar_w / 2, g.bar_y + g.bar_h - 1), viridis(0.0f));
  // Text is drawn: some dark ink left of the grid (row labels) and above it (column labels).
  auto has_ink = [&](int x0, int y0, int x1, int y1) {
    for (int y = y0; y < y1; ++y) {
      for (int x = x0; x < x1; ++x) {
        if (luminance(img.at(x, y)) < 60 && img.at(x, y).b < 60) return true;
      }
    }
    return false;
  };
  EXPECT_TRUE(has_ink(0, g.grid_y[0], g.grid_x[0] - 1, g.grid_y[0] + g.cell));
  EXPECT_TRUE(has_ink(g.grid_x[0], 0, g.grid_x[0] + g.cell, g.grid_y[0] - 1));
  EXPECT_FALSE(fs::exists(path + ".tmp." + std::to_string(getpid())));
  fs::remove(path);
}

TEST(HeatmapPng, DefaultVmaxIsTheLargestWeight) {
  const std::string path = temp("vmax.png");
  Tensor w = sample_weights();
  write_heatmap_png(path, w, kRows, kCols);
  Png img = read_png(path);
  HeatmapOptions o;
  o.vmax = 0.9f;
  HeatmapGeometry g = heatmap_geometry(0, 4, 5, kRows, kCols, o);
  ASSERT_EQ(img.w, g.width);
  EXPECT_EQ(img.at(g.grid_x[0] + 3 * g.cell + g.cell / 2, g.grid_y[0] + 2 * g.cell + g.cell / 2), viridis(1.0f));
  fs::remove(path);
}

TEST(HeatmapPng, GridOfHeadsWithMean) {
  const std::string path = temp("grid.png");
  // 3 heads of 2 x 3: head h has its weight 1 at (0, h); the mean is 1/3 there.
  std::vector<float> v(3 * 2 * 3, 0.0f);
  for (int h = 0; h < 3; ++h) v[static_cast<size_t>(h * 6 + h)] = 1.0f;
  for (int h = 0; h < 3; ++h) v[static_cast<size_t>(h * 6 + 3 + 2)] = 0.5f;
  Tensor w = Tensor::from_vector(v, {3, 2, 3});
  std::vector<std::string> rows = {"a", "b"}, cols = {"x", "y", "z"};
  HeatmapOptions o;
  o.title = "layer 1";
  o.vmax = 1.0f;
  write_heatmap_grid_png(path, w, rows, cols, o);
  Png img = read_png(path);
  HeatmapGeometry g = heatmap_geometry(3, 2, 3, rows, cols, o);
  ASSERT_EQ(img.w, g.width);
  ASSERT_EQ(img.h, g.height);
  ASSERT_EQ(g.grid_x.size(), 4u);  // 3 heads + mean, 2 x 2 panels
  EXPECT_EQ(g.grid_y[0], g.grid_y[1]);
  EXPECT_GT(g.grid_y[2], g.grid_y[0]);
  auto cell = [&](int p, int i, int j) {
    return img.at(g.grid_x[static_cast<size_t>(p)] + j * g.cell + g.cell / 2,
                  g.grid_y[static_cast<size_t>(p)] + i * g.cell + g.cell / 2);
  };
  for (int p = 0; p < 3; ++p) {
    for (int j = 0; j < 3; ++j) EXPECT_EQ(cell(p, 0, j), viridis(j == p ? 1.0f : 0.0f)) << p << "," << j;
    EXPECT_EQ(cell(p, 1, 2), viridis(0.5f));
  }
  for (int j = 0; j < 3; ++j) EXPECT_EQ(cell(3, 0, j), viridis(1.0f / 3.0f)) << j;
  EXPECT_EQ(cell(3, 1, 2), viridis(0.5f));
  fs::remove(path);
}

TEST(HeatmapSvg, ParsesAndNamesTheBrightestCell) {
  const std::string path = temp("single.svg");
  HeatmapOptions o;
  o.vmax = 0.9f;
  write_heatmap_svg(path, sample_weights(), kRows, kCols, o);
  const std::string svg = read_file(path);
  HeatmapGeometry g = heatmap_geometry(0, 4, 5, kRows, kCols, o);
  ASSERT_EQ(svg.rfind("<?xml", 0), 0u);
  const std::string svg_tag = svg.substr(svg.find("<svg "), svg.find('>', svg.find("<svg ")) - svg.find("<svg "));
  EXPECT_EQ(std::stoi(attr(svg_tag, "width")), g.width);
  EXPECT_EQ(std::stoi(attr(svg_tag, "height")), g.height);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  // One rect with a tooltip per cell; the one in the maximum's colour is (N <- n).
  char hi[8];
  Rgb top = viridis(1.0f);
  std::snprintf(hi, sizeof hi, "#%02x%02x%02x", top.r, top.g, top.b);
  int cells = 0, brightest = 0;
  for (size_t pos = svg.find("<rect "); pos != std::string::npos; pos = svg.find("<rect ", pos + 1)) {
    const std::string tag = svg.substr(pos, svg.find('>', pos) - pos);
    const size_t title = svg.find('>', pos) + 1;
    if (svg.compare(title, 7, "<title>") != 0) continue;
    ++cells;
    if (attr(tag, "fill") == hi) {
      ++brightest;
      EXPECT_EQ(svg.substr(title + 7, svg.find("</title>", title) - title - 7), "N &lt;- n: 0.9");
      EXPECT_EQ(std::stoi(attr(tag, "x")), g.grid_x[0] + 3 * g.cell);
      EXPECT_EQ(std::stoi(attr(tag, "y")), g.grid_y[0] + 2 * g.cell);
    }
  }
  EXPECT_EQ(cells, 20);
  EXPECT_EQ(brightest, 1);
  // Labels are escaped text; the colour bar is a gradient with 0 and the max as ticks.
  EXPECT_NE(svg.find(">&lt;eos&gt;</text>"), std::string::npos);
  EXPECT_NE(svg.find("url(#viridis)"), std::string::npos);
  EXPECT_NE(svg.find(">0.9</text>"), std::string::npos);
  EXPECT_NE(svg.find(">0</text>"), std::string::npos);
  EXPECT_NE(svg.find(">input</text>"), std::string::npos);
  fs::remove(path);
}

TEST(HeatmapSvg, GridHasPanelTitles) {
  const std::string path = temp("grid.svg");
  Tensor w = Tensor::full({2, 3, 3}, 0.25f);
  write_heatmap_grid_svg(path, w, {"a", "b", "c"}, {"x", " ", "&"});
  const std::string svg = read_file(path);
  EXPECT_NE(svg.find(">head 0</text>"), std::string::npos);
  EXPECT_NE(svg.find(">head 1</text>"), std::string::npos);
  EXPECT_NE(svg.find(">mean</text>"), std::string::npos);
  EXPECT_NE(svg.find(">&amp;</text>"), std::string::npos);
  EXPECT_NE(svg.find(">\u2423</text>"), std::string::npos);  // a space label stays visible
  fs::remove(path);
}

TEST(Heatmap, BadInputNamesOpArgumentAndShape) {
  const std::string path = temp("bad.png");
  Tensor w = sample_weights();
  std::string msg = error_of([&] { write_heatmap_png(path, w, {"a"}, kCols); });
  EXPECT_NE(msg.find("write_heatmap_png: row_labels has 1 labels but weights [4, 5] has 4 rows"),
            std::string::npos) << msg;
  msg = error_of([&] { write_heatmap_svg(path, w, kRows, {"a"}); });
  EXPECT_NE(msg.find("write_heatmap_svg: col_labels"), std::string::npos) << msg;
  msg = error_of([&] { write_heatmap_png(path, Tensor::zeros({2, 4, 5}), kRows, kCols); });
  EXPECT_NE(msg.find("weights has shape [2, 4, 5]; expected [Nout, Nin]"), std::string::npos) << msg;
  msg = error_of([&] { write_heatmap_grid_png(path, w, kRows, kCols); });
  EXPECT_NE(msg.find("expected [H, Nout, Nin]"), std::string::npos) << msg;
  Tensor bad = w.clone();
  bad.set({1, 2}, std::nanf(""));
  msg = error_of([&] { write_heatmap_png(path, bad, kRows, kCols); });
  EXPECT_NE(msg.find("weights[1, 2] is nan"), std::string::npos) << msg;
  msg = error_of([&] { write_heatmap_png("/nonexistent-dir/x.png", w, kRows, kCols); });
  EXPECT_NE(msg.find("/nonexistent-dir/x.png"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(path));
}

}  // namespace attn::io
