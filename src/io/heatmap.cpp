// Heatmaps: one layout (a list of rectangles, texts and a colour bar in pixel coordinates)
// drawn by two back ends, a rasteriser for PNG and an SVG writer, so both pictures agree.
#include "attn/io/heatmap.h"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "attn/core/error.h"
#include "attn/io/atomic_file.h"
#include "font5x7.h"

namespace attn::io {

Rgb viridis(float t) {
  // Degree-6 least-squares fit of matplotlib's viridis (Matt Zucker's coefficients, CC0).
  static const double c[7][3] = {
      {0.2777273272234177, 0.005407344544966578, 0.3340998053353061},
      {0.1050930431085774, 1.404613529898575, 1.384590162594685},
      {-0.3308618287255563, 0.214847559468213, 0.09509516302823659},
      {-4.634230498983486, -5.799100973351585, -19.33244095627987},
      {6.228269936347081, 14.17993336680509, 56.69055260068105},
      {4.776384997670288, -13.74514537774601, -65.35303263337234},
      {-5.435455855934631, 4.645852612178535, 26.3124352495832}};
  double x = std::isnan(t) ? 0.0 : std::clamp(static_cast<double>(t), 0.0, 1.0);
  uint8_t out[3];
  for (int k = 0; k < 3; ++k) {
    double v = c[6][k];
    for (int i = 5; i >= 0; --i) v = v * x + c[i][k];
    out[k] = static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 1.0) * 255.0));
  }
  return Rgb{out[0], out[1], out[2]};
}

namespace {

const Rgb kBackground{255, 255, 255};
const Rgb kInk{34, 34, 34};
const Rgb kFrame{96, 96, 96};

enum class Anchor { start, middle, end };

struct Box {
  int x, y, w, h;
  Rgb fill;
  int64_t row = -1, col = -1;  // a cell's position (for the SVG tooltip), -1 otherwise
  float value = 0;
};
struct Label {
  int x, y;  // anchor point; y (horizontal) or x (vertical) is the text's centre line
  std::string text;
  Anchor anchor;
  bool vertical;  // rotated 90 degrees anticlockwise: reads bottom to top
};
struct Scene {
  int width = 0, height = 0, scale = 1;
  std::vector<Box> boxes;
  std::vector<Box> frames;  // 1-pixel outlines just outside the box
  std::vector<Label> labels;
  Box bar{0, 0, 0, 0, {}};  // colour bar (w = 0: none)
};

std::string format_value(float v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3g", static_cast<double>(v));
  return b;
}

int text_len(const std::string& s) { return static_cast<int>(s.size()); }

int max_len(const std::vector<std::string>& v) {
  int m = 0;
  for (const auto& s : v) m = std::max(m, text_len(s));
  return m;
}

// Everything about the layout that does not depend on the weights.
struct Layout {
  int s, cw, ch, pad, margin, gap;
  int cell;
  bool col_vertical;  // some column label is drawn upwards
  int row_step, col_step;  // draw every k-th label when cells are smaller than the font
  int top_title_h, panel_title_h, col_title_h, col_label_h, row_title_w, row_label_w;
  int panel_w, panel_h, grid_dx, grid_dy;  // grid offset inside a panel
  int n_panels, panel_cols, panel_rows;
  int bar_x, bar_y, bar_w, bar_h, tick_w;
  int width, height;
  std::vector<int> panel_x, panel_y;
};

bool label_is_vertical(const std::string& label, const Layout& L) {
  return std::max(0, text_len(label) * L.cw - L.s) > L.cell - 2;
}

Layout make_layout(int64_t heads, int64_t n_out, int64_t n_in, const std::vector<std::string>& rows,
                   const std::vector<std::string>& cols, const HeatmapOptions& o, float vmax) {
  Layout L{};
  L.s = o.font_scale;
  L.cw = detail::kGlyphAdvance * L.s;
  L.ch = detail::kGlyphHeight * L.s;
  L.pad = 2 * L.s;
  L.margin = 4 * L.s;
  L.gap = 8 * L.s;
  int64_t longest = std::max(n_out, n_in);
  L.cell = o.cell > 0 ? o.cell
                      : std::max<int>(2, static_cast<int>(longest > 48 ? 12 * L.s * 48 / longest : 12 * L.s));
  // Column labels that fit their cell are written across, longer ones upwards.
  int col_h = L.ch;
  for (const auto& c : cols) {
    if (label_is_vertical(c, L)) {
      L.col_vertical = true;
      col_h = std::max(col_h, text_len(c) * L.cw);
    }
  }
  L.row_step = std::max(1, (L.ch + L.s + L.cell - 1) / L.cell);
  L.col_step = L.col_vertical ? L.row_step : 1;
  const bool grid = heads > 0;
  L.top_title_h = grid && !o.title.empty() ? L.ch + 2 * L.pad : 0;
  const bool has_panel_title = grid || !o.title.empty();
  L.panel_title_h = has_panel_title ? L.ch + 2 * L.pad : 0;
  L.col_title_h = o.col_title.empty() ? 0 : L.ch + L.pad;
  L.col_label_h = col_h + 2 * L.pad;
  L.row_title_w = o.row_title.empty() ? 0 : L.ch + 2 * L.pad;
  L.row_label_w = max_len(rows) * L.cw + 2 * L.pad;
  L.grid_dx = L.row_title_w + L.row_label_w;
  L.grid_dy = L.panel_title_h + L.col_title_h + L.col_label_h;
  const int grid_w = static_cast<int>(n_in) * L.cell, grid_h = static_cast<int>(n_out) * L.cell;
  L.panel_w = L.grid_dx + std::max(grid_w, 1);
  L.panel_h = L.grid_dy + grid_h;
  L.n_panels = grid ? static_cast<int>(heads) + 1 : 1;
  L.panel_cols = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(L.n_panels))));
  L.panel_rows = (L.n_panels + L.panel_cols - 1) / L.panel_cols;
  for (int p = 0; p < L.n_panels; ++p) {
    L.panel_x.push_back(L.margin + (p % L.panel_cols) * (L.panel_w + L.gap));
    L.panel_y.push_back(L.margin + L.top_title_h + (p / L.panel_cols) * (L.panel_h + L.gap));
  }
  int right = L.margin + L.panel_cols * L.panel_w + (L.panel_cols - 1) * L.gap;
  int bottom = L.margin + L.top_title_h + L.panel_rows * L.panel_h + (L.panel_rows - 1) * L.gap;
  if (o.legend) {
    L.bar_w = 5 * L.s;
    L.bar_x = right + L.gap;
    L.bar_y = L.panel_y[0] + L.grid_dy;
    L.bar_h = std::max(grid_h, 10 * L.ch);
    L.tick_w = std::max({text_len(format_value(vmax)), text_len(format_value(vmax / 2)), 1}) * L.cw;
    right = L.bar_x + L.bar_w + L.pad + L.tick_w;
    bottom = std::max(bottom, L.bar_y + L.bar_h + L.ch / 2 + L.pad);
  }
  L.width = right + L.margin;
  L.height = bottom + L.margin;
  return L;
}

void check_labels(const char* op, const Shape& shape, const std::vector<std::string>& rows,
                  const std::vector<std::string>& cols) {
  const int64_t n_out = shape[shape.size() - 2], n_in = shape[shape.size() - 1];
  ATTN_CHECK(static_cast<int64_t>(rows.size()) == n_out, op, ": row_labels has ", rows.size(),
             " labels but weights ", shape_str(shape), " has ", n_out, " rows");
  ATTN_CHECK(static_cast<int64_t>(cols.size()) == n_in, op, ": col_labels has ", cols.size(),
             " labels but weights ", shape_str(shape), " has ", n_in, " columns");
}

void check_options(const char* op, const HeatmapOptions& o) {
  ATTN_CHECK(o.font_scale >= 1 && o.font_scale <= 8, op, ": font_scale ", o.font_scale,
             " outside 1..8");
  ATTN_CHECK(o.cell >= 0 && o.cell <= 512, op, ": cell ", o.cell, " outside 0..512");
  ATTN_CHECK(std::isfinite(o.vmax) && o.vmax >= 0, op, ": vmax ", o.vmax, " must be finite and >= 0");
}

// Panels of values (row-major [Nout, Nin]) with their titles, from [Nout, Nin] or [H, Nout, Nin].
struct Panels {
  int64_t heads = 0, n_out = 0, n_in = 0;
  std::vector<std::vector<float>> values;
  std::vector<std::string> titles;
  float vmax = 0;
};

Panels read_panels(const char* op, const Tensor& w, bool grid, const HeatmapOptions& o) {
  ATTN_CHECK(w.defined(), op, ": weights is undefined");
  const char* expected = grid ? "[H, Nout, Nin]" : "[Nout, Nin]";
  ATTN_CHECK(w.dim() == (grid ? 3 : 2), op, ": weights has shape ", shape_str(w.shape()),
             "; expected ", expected);
  Panels p;
  p.heads = grid ? w.size(0) : 0;
  p.n_out = w.size(-2);
  p.n_in = w.size(-1);
  ATTN_CHECK(p.n_out > 0 && p.n_in > 0 && (!grid || p.heads > 0), op, ": weights has shape ",
             shape_str(w.shape()), "; every dimension of ", expected, " must be > 0");
  ATTN_CHECK(p.n_out <= 4096 && p.n_in <= 4096 && p.heads <= 64, op, ": weights has shape ",
             shape_str(w.shape()), "; at most 4096 x 4096 cells and 64 heads fit a picture");
  std::vector<float> all = w.to_vector();
  const size_t plane = static_cast<size_t>(p.n_out * p.n_in);
  for (size_t i = 0; i < all.size(); ++i) {
    if (!std::isfinite(all[i])) {
      size_t h = i / plane, r = (i % plane) / static_cast<size_t>(p.n_in), c = i % static_cast<size_t>(p.n_in);
      if (grid) fail(op, ": weights[", h, ", ", r, ", ", c, "] is ", all[i], "; weights must be finite");
      fail(op, ": weights[", r, ", ", c, "] is ", all[i], "; weights must be finite");
    }
  }
  const int64_t n_planes = grid ? p.heads : 1;
  for (int64_t h = 0; h < n_planes; ++h) {
    p.values.emplace_back(all.begin() + static_cast<ptrdiff_t>(h * plane),
                          all.begin() + static_cast<ptrdiff_t>((h + 1) * plane));
    p.titles.push_back(grid ? "head " + std::to_string(h) : o.title);
  }
  if (grid) {
    std::vector<float> mean(plane, 0.0f);
    for (size_t i = 0; i < plane; ++i) {
      double sum = 0;
      for (int64_t h = 0; h < p.heads; ++h) sum += p.values[static_cast<size_t>(h)][i];
      mean[i] = static_cast<float>(sum / static_cast<double>(p.heads));
    }
    p.values.push_back(std::move(mean));
    p.titles.push_back("mean");
  }
  float mx = 0;
  for (const auto& v : p.values) mx = std::max(mx, *std::max_element(v.begin(), v.end()));
  p.vmax = o.vmax > 0 ? o.vmax : (mx > 0 ? mx : 1.0f);
  return p;
}

Scene make_scene(const Panels& p, const std::vector<std::string>& rows,
                 const std::vector<std::string>& cols, const HeatmapOptions& o) {
  const Layout L = make_layout(p.heads, p.n_out, p.n_in, rows, cols, o, p.vmax);
  Scene sc;
  sc.width = L.width;
  sc.height = L.height;
  sc.scale = L.s;
  const bool grid = p.heads > 0;
  if (grid && !o.title.empty()) {
    sc.labels.push_back({L.width / 2, L.margin + L.top_title_h / 2, o.title, Anchor::middle, false});
  }
  for (size_t k = 0; k < p.values.size(); ++k) {
    const int px = L.panel_x[k], py = L.panel_y[k];
    const int gx = px + L.grid_dx, gy = py + L.grid_dy;
    const int gw = static_cast<int>(p.n_in) * L.cell, gh = static_cast<int>(p.n_out) * L.cell;
    if (!p.titles[k].empty()) {
      sc.labels.push_back({gx + gw / 2, py + L.panel_title_h / 2, p.titles[k], Anchor::middle, false});
    }
    if (!o.col_title.empty()) {
      sc.labels.push_back({gx + gw / 2, py + L.panel_title_h + L.col_title_h / 2, o.col_title,
                           Anchor::middle, false});
    }
    if (!o.row_title.empty()) {
      sc.labels.push_back({px + L.row_title_w / 2, gy + gh / 2, o.row_title, Anchor::middle, true});
    }
    for (int64_t j = 0; j < p.n_in; j += L.col_step) {
      const int cx = gx + static_cast<int>(j) * L.cell + L.cell / 2;
      if (label_is_vertical(cols[static_cast<size_t>(j)], L)) {
        sc.labels.push_back({cx, gy - L.pad, cols[static_cast<size_t>(j)], Anchor::start, true});
      } else {
        sc.labels.push_back({cx, gy - L.pad - L.ch / 2, cols[static_cast<size_t>(j)], Anchor::middle, false});
      }
    }
    for (int64_t i = 0; i < p.n_out; i += L.row_step) {
      sc.labels.push_back({gx - L.pad, gy + static_cast<int>(i) * L.cell + L.cell / 2,
                           rows[static_cast<size_t>(i)], Anchor::end, false});
    }
    const auto& v = p.values[k];
    for (int64_t i = 0; i < p.n_out; ++i) {
      for (int64_t j = 0; j < p.n_in; ++j) {
        float w = v[static_cast<size_t>(i * p.n_in + j)];
        sc.boxes.push_back({gx + static_cast<int>(j) * L.cell, gy + static_cast<int>(i) * L.cell, L.cell,
                            L.cell, viridis(w / p.vmax), i, j, w});
      }
    }
    sc.frames.push_back({gx, gy, gw, gh, kFrame});
  }
  if (o.legend) {
    sc.bar = {L.bar_x, L.bar_y, L.bar_w, L.bar_h, {}};
    sc.frames.push_back({L.bar_x, L.bar_y, L.bar_w, L.bar_h, kFrame});
    const int tx = L.bar_x + L.bar_w + L.pad;
    sc.labels.push_back({tx, L.bar_y, format_value(p.vmax), Anchor::start, false});
    sc.labels.push_back({tx, L.bar_y + L.bar_h / 2, format_value(p.vmax / 2), Anchor::start, false});
    sc.labels.push_back({tx, L.bar_y + L.bar_h - 1, "0", Anchor::start, false});
  }
  return sc;
}

// ---- PNG back end

struct Image {
  int w, h;
  std::vector<uint8_t> rgb;
  void fill(int x, int y, int bw, int bh, Rgb c) {
    const int x0 = std::max(0, x), y0 = std::max(0, y);
    const int x1 = std::min(w, x + bw), y1 = std::min(h, y + bh);
    for (int yy = y0; yy < y1; ++yy) {
      for (int xx = x0; xx < x1; ++xx) {
        uint8_t* px = &rgb[(static_cast<size_t>(yy) * static_cast<size_t>(w) + static_cast<size_t>(xx)) * 3];
        px[0] = c.r;
        px[1] = c.g;
        px[2] = c.b;
      }
    }
  }
};

// A label that is a single space would be invisible: PNG draws an open box (the font's
// glyph 0x7f), SVG the symbol U+2423.
bool is_space_label(const std::string& s) { return s == " "; }

void draw_label(Image& img, const Label& l, int s) {
  const int cw = detail::kGlyphAdvance * s, ch = detail::kGlyphHeight * s;
  const int ink = std::max(0, text_len(l.text) * cw - s);
  const int shift = l.anchor == Anchor::start ? 0 : l.anchor == Anchor::middle ? -ink / 2 : -ink;
  for (size_t i = 0; i < l.text.size(); ++i) {
    const uint8_t* g = is_space_label(l.text) ? detail::kOpenBox : detail::glyph(l.text[i]);
    for (int c = 0; c < detail::kGlyphWidth; ++c) {
      for (int r = 0; r < detail::kGlyphHeight; ++r) {
        if (!((g[c] >> r) & 1)) continue;
        const int along = shift + static_cast<int>(i) * cw + c * s;  // along the text
        const int across = r * s - ch / 2;                            // from its centre line
        if (l.vertical) {
          img.fill(l.x + across, l.y - along - s, s, s, kInk);
        } else {
          img.fill(l.x + along, l.y + across, s, s, kInk);
        }
      }
    }
  }
}

std::string encode_png(const Scene& sc, const std::string& path) {
  Image img{sc.width, sc.height, {}};
  img.rgb.assign(static_cast<size_t>(sc.width) * static_cast<size_t>(sc.height) * 3, 255);
  img.fill(0, 0, sc.width, sc.height, kBackground);
  for (const auto& f : sc.frames) img.fill(f.x - 1, f.y - 1, f.w + 2, f.h + 2, f.fill);
  for (const auto& b : sc.boxes) img.fill(b.x, b.y, b.w, b.h, b.fill);
  for (int y = 0; y < sc.bar.h; ++y) {
    const float t = sc.bar.h > 1 ? 1.0f - static_cast<float>(y) / static_cast<float>(sc.bar.h - 1) : 1.0f;
    img.fill(sc.bar.x, sc.bar.y + y, sc.bar.w, 1, viridis(t));
  }
  for (const auto& l : sc.labels) draw_label(img, l, sc.scale);

  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(sc.width);
  image.height = static_cast<png_uint_32>(sc.height);
  image.format = PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  const png_int_32 stride = static_cast<png_int_32>(sc.width * 3);
  if (!png_image_write_to_memory(&image, nullptr, &size, 0, img.rgb.data(), stride, nullptr)) {
    fail("write_heatmap_png: ", path, ": libpng: ", image.message);
  }
  std::string out(size, '\0');
  if (!png_image_write_to_memory(&image, out.data(), &size, 0, img.rgb.data(), stride, nullptr)) {
    fail("write_heatmap_png: ", path, ": libpng: ", image.message);
  }
  out.resize(size);
  return out;
}

// ---- SVG back end

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // Control characters are not allowed in XML 1.0.
        out += (static_cast<unsigned char>(c) < 0x20) ? '?' : c;
    }
  }
  return out;
}

std::string hex(Rgb c) {
  char b[8];
  std::snprintf(b, sizeof b, "#%02x%02x%02x", c.r, c.g, c.b);
  return b;
}

std::string encode_svg(const Scene& sc, const std::vector<std::string>& rows,
                       const std::vector<std::string>& cols) {
  const int s = sc.scale;
  std::string o;
  o += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  o += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(sc.width) + "\" height=\"" +
       std::to_string(sc.height) + "\" viewBox=\"0 0 " + std::to_string(sc.width) + " " +
       std::to_string(sc.height) + "\">\n";
  if (sc.bar.w > 0) {
    o += "<defs><linearGradient id=\"viridis\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">\n";
    for (int k = 0; k <= 32; ++k) {
      const float t = static_cast<float>(k) / 32.0f;
      o += "<stop offset=\"" + format_value(t) + "\" stop-color=\"" + hex(viridis(t)) + "\"/>\n";
    }
    o += "</linearGradient></defs>\n";
  }
  o += "<rect width=\"100%\" height=\"100%\" fill=\"" + hex(kBackground) + "\"/>\n";
  for (const auto& f : sc.frames) {
    o += "<rect x=\"" + std::to_string(f.x) + "\" y=\"" + std::to_string(f.y) + "\" width=\"" +
         std::to_string(f.w) + "\" height=\"" + std::to_string(f.h) + "\" fill=\"none\" stroke=\"" +
         hex(f.fill) + "\" stroke-width=\"2\"/>\n";
  }
  o += "<g shape-rendering=\"crispEdges\">\n";
  for (const auto& b : sc.boxes) {
    o += "<rect x=\"" + std::to_string(b.x) + "\" y=\"" + std::to_string(b.y) + "\" width=\"" +
         std::to_string(b.w) + "\" height=\"" + std::to_string(b.h) + "\" fill=\"" + hex(b.fill) +
         "\"><title>" +
         xml_escape(rows[static_cast<size_t>(b.row)] + " <- " + cols[static_cast<size_t>(b.col)] + ": " +
                    format_value(b.value)) +
         "</title></rect>\n";
  }
  if (sc.bar.w > 0) {
    o += "<rect x=\"" + std::to_string(sc.bar.x) + "\" y=\"" + std::to_string(sc.bar.y) + "\" width=\"" +
         std::to_string(sc.bar.w) + "\" height=\"" + std::to_string(sc.bar.h) +
         "\" fill=\"url(#viridis)\"/>\n";
  }
  o += "</g>\n";
  // Monospace at 10 * scale units: about 6 * scale per character, as in the PNG font.
  o += "<g font-family=\"DejaVu Sans Mono, monospace\" font-size=\"" + std::to_string(10 * s) +
       "\" fill=\"" + hex(kInk) + "\" dominant-baseline=\"central\">\n";
  for (const auto& l : sc.labels) {
    const char* anchor = l.anchor == Anchor::start ? "start" : l.anchor == Anchor::middle ? "middle" : "end";
    if (l.vertical) {
      o += "<text transform=\"translate(" + std::to_string(l.x) + "," + std::to_string(l.y) +
           ") rotate(-90)\" text-anchor=\"" + anchor + "\">";
    } else {
      o += "<text x=\"" + std::to_string(l.x) + "\" y=\"" + std::to_string(l.y) + "\" text-anchor=\"" +
           anchor + "\">";
    }
    o += (is_space_label(l.text) ? std::string("\u2423") : xml_escape(l.text)) + "</text>\n";
  }
  o += "</g>\n</svg>\n";
  return o;
}

void write_any(const char* op, const std::string& path, const Tensor& weights,
               const std::vector<std::string>& rows, const std::vector<std::string>& cols,
               const HeatmapOptions& o, bool grid, bool png) {
  check_options(op, o);
  Panels p = read_panels(op, weights, grid, o);
  check_labels(op, weights.shape(), rows, cols);
  Scene sc = make_scene(p, rows, cols, o);
  ATTN_CHECK(static_cast<int64_t>(sc.width) * sc.height <= (int64_t{1} << 26), op, ": a ", sc.width,
             " x ", sc.height, " picture is too large; use a smaller cell or font_scale");
  try {
    write_file_atomic(path, png ? encode_png(sc, path) : encode_svg(sc, rows, cols));
  } catch (const Error& e) {
    std::string msg = e.what();
    if (msg.find(path) == std::string::npos) fail(op, ": ", path, ": ", msg);
    fail(op, ": ", msg);
  }
}

}  // namespace

HeatmapGeometry heatmap_geometry(int64_t heads, int64_t n_out, int64_t n_in,
                                 const std::vector<std::string>& row_labels,
                                 const std::vector<std::string>& col_labels,
                                 const HeatmapOptions& options) {
  check_options("heatmap_geometry", options);
  const Layout L = make_layout(heads, n_out, n_in, row_labels, col_labels, options,
                               options.vmax > 0 ? options.vmax : 1.0f);
  HeatmapGeometry g;
  g.width = L.width;
  g.height = L.height;
  g.cell = L.cell;
  for (int p = 0; p < L.n_panels; ++p) {
    g.grid_x.push_back(L.panel_x[static_cast<size_t>(p)] + L.grid_dx);
    g.grid_y.push_back(L.panel_y[static_cast<size_t>(p)] + L.grid_dy);
  }
  if (options.legend) {
    g.bar_x = L.bar_x;
    g.bar_y = L.bar_y;
    g.bar_w = L.bar_w;
    g.bar_h = L.bar_h;
  }
  return g;
}

void write_heatmap_png(const std::string& path, const Tensor& weights,
                       const std::vector<std::string>& row_labels,
                       const std::vector<std::string>& col_labels, const HeatmapOptions& options) {
  write_any("write_heatmap_png", path, weights, row_labels, col_labels, options, false, true);
}

void write_heatmap_svg(const std::string& path, const Tensor& weights,
                       const std::vector<std::string>& row_labels,
                       const std::vector<std::string>& col_labels, const HeatmapOptions& options) {
  write_any("write_heatmap_svg", path, weights, row_labels, col_labels, options, false, false);
}

void write_heatmap_grid_png(const std::string& path, const Tensor& weights,
                            const std::vector<std::string>& row_labels,
                            const std::vector<std::string>& col_labels,
                            const HeatmapOptions& options) {
  write_any("write_heatmap_grid_png", path, weights, row_labels, col_labels, options, true, true);
}

void write_heatmap_grid_svg(const std::string& path, const Tensor& weights,
                            const std::vector<std::string>& row_labels,
                            const std::vector<std::string>& col_labels,
                            const HeatmapOptions& options) {
  write_any("write_heatmap_grid_svg", path, weights, row_labels, col_labels, options, true, false);
}

}  // namespace attn::io
