// Attention heatmaps: weights [Nout, Nin] as a grid of coloured cells, output symbols down
// the left, input symbols along the top, a colour bar from 0 to the largest weight.
// PNG (libpng; text drawn with a built-in 5x7 bitmap font) and SVG (plain text, <text>
// labels, a <title> tooltip with each cell's value). Both written atomically.
//
// Colours: viridis (perceptually uniform, readable in grey and by colour-blind readers),
// dark purple at 0 to yellow at the maximum. Weights must be finite; values below 0 are
// drawn as 0 and values above vmax as vmax.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attn/core/tensor.h"

namespace attn::io {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb&) const = default;
};

// Viridis at t in [0, 1] (clamped): a degree-6 polynomial fit of matplotlib's table,
// within about 4/255 of it.
Rgb viridis(float t);

struct HeatmapOptions {
  std::string title;                 // above the map (grid: above all panels)
  std::string row_title = "output";  // caption of the rows (drawn vertically at the left)
  std::string col_title = "input";   // caption of the columns (above the column labels)
  int cell = 0;                      // cell size in pixels; 0 = 12 * font_scale, smaller for > 48 cells
  float vmax = 0;                    // top of the colour scale; 0 = the largest weight
  int font_scale = 2;                // each font pixel is font_scale x font_scale pixels
  bool legend = true;                // colour bar with 0 and vmax
};

// Where things land in the picture (pixels; SVG user units are the same numbers).
struct HeatmapGeometry {
  int width = 0, height = 0;
  int cell = 0;
  // Top-left corner of each panel's grid of cells: one panel for a single map; for a grid,
  // heads 0..H-1 then the mean.
  std::vector<int> grid_x, grid_y;
  int bar_x = 0, bar_y = 0, bar_w = 0, bar_h = 0;  // colour bar (bar_w = 0 without legend)
};

// weights: [Nout, Nin] (any dtype, any strides); row_labels: Nout, col_labels: Nin.
// Throws attn::Error naming the function, the argument and the shapes on bad input, and
// naming the path when the file cannot be written.
void write_heatmap_png(const std::string& path, const Tensor& weights,
                       const std::vector<std::string>& row_labels,
                       const std::vector<std::string>& col_labels, const HeatmapOptions& options = {});
void write_heatmap_svg(const std::string& path, const Tensor& weights,
                       const std::vector<std::string>& row_labels,
                       const std::vector<std::string>& col_labels, const HeatmapOptions& options = {});

// Multi-head: weights [H, Nout, Nin] drawn as panels "head 0" .. "head H-1" plus "mean" (the
// average over heads), in a near-square grid, sharing one colour scale and one colour bar.
void write_heatmap_grid_png(const std::string& path, const Tensor& weights,
                            const std::vector<std::string>& row_labels,
                            const std::vector<std::string>& col_labels,
                            const HeatmapOptions& options = {});
void write_heatmap_grid_svg(const std::string& path, const Tensor& weights,
                            const std::vector<std::string>& row_labels,
                            const std::vector<std::string>& col_labels,
                            const HeatmapOptions& options = {});

// The layout the writers above use, for tests and for callers that annotate the picture.
// `heads` = 0 for a single map, H for a grid of H heads plus the mean.
HeatmapGeometry heatmap_geometry(int64_t heads, int64_t n_out, int64_t n_in,
                                 const std::vector<std::string>& row_labels,
                                 const std::vector<std::string>& col_labels,
                                 const HeatmapOptions& options = {});

}  // namespace attn::io
