#include "attn/autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/op_util.h"

namespace attn::ag {

Tensor random_tensor(const Shape& shape, Rng& rng, double lo, double hi, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype);
  detail::dispatch(dtype, "random_tensor", [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(lo + (hi - lo) * rng.uniform());
  });
  return t;
}

namespace {
double weighted_sum(const Var& out, const Tensor& r) {
  ATTN_CHECK(out.shape() == r.shape(), "gradcheck: f returned shape ", shape_str(out.shape()),
             " on re-evaluation, expected ", shape_str(r.shape()));
  Tensor o = out.value().contiguous();
  const double* po = o.data<double>();
  const double* pr = r.data<double>();
  double s = 0;
  for (int64_t i = 0; i < o.numel(); ++i) s += po[i] * pr[i];
  return s;
}
}  // namespace

GradcheckResult gradcheck(const std::function<Var()>& f, const std::vector<Var>& leaves,
                          const GradcheckOptions& opts) {
  for (const Var& l : leaves)
    ATTN_CHECK(l.defined() && l.dtype() == DType::f64 && l.requires_grad() && l.value().is_contiguous(),
               "gradcheck: leaves must be contiguous f64 Vars with requires_grad");
  for (const Var& l : leaves) l.zero_grad();
  Var out = f();
  ATTN_CHECK(out.dtype() == DType::f64, "gradcheck: f must return an f64 Var, got ", dtype_name(out.dtype()));
  Rng rng(opts.seed);
  Tensor r = random_tensor(out.shape(), rng, -1.0, 1.0, DType::f64);
  out.backward(r);

  GradcheckResult res;
  std::ostringstream rep;
  int reports = 0;
  NoGradGuard ng;
  for (size_t li = 0; li < leaves.size(); ++li) {
    Tensor& x = leaves[li].mutable_value();
    double* px = x.data<double>();
    Tensor g = leaves[li].grad().contiguous();
    const double* pg = g.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double x0 = px[i];
      px[i] = x0 + opts.eps;
      const double fp = weighted_sum(f(), r);
      px[i] = x0 - opts.eps;
      const double fm = weighted_sum(f(), r);
      px[i] = x0;
      const double num = (fp - fm) / (2 * opts.eps);
      const double err = std::abs(num - pg[i]);
      res.max_abs_err = std::max(res.max_abs_err, err);
      ++res.checked;
      if (!(err <= opts.atol + opts.rtol * std::abs(num))) {
        res.ok = false;
        if (reports++ < opts.max_reports)
          rep << "leaf " << li << " " << shape_str(x.shape()) << " element " << i << ": analytic " << pg[i]
              << " numeric " << num << " (|diff| " << err << ")\n";
      }
    }
  }
  if (!res.ok) rep << reports << " mismatches; max |diff| " << res.max_abs_err << "\n";
  res.report = rep.str();
  return res;
}

}  // namespace attn::ag
