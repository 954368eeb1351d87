// Argument checks shared by the CPU and CUDA launchers (host code): a wrong shape, dtype or layout
// is one clear error instead of a wild read. The Python wrappers already convert what they can.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "hash_encoding.h"

namespace fieldkit {

using at::Tensor;

inline void check_hash_inputs(const Tensor& points, const Tensor& table, const Tensor& resolution,
                              const Tensor& multipliers, int64_t log2_table_size) {
    TORCH_CHECK(points.dim() == 2 && points.size(1) == 3 && points.is_contiguous(), "points must be contiguous [N, 3]");
    TORCH_CHECK(table.dim() == 2 && table.is_contiguous() && table.scalar_type() == points.scalar_type() &&
                    table.device() == points.device(),
                "table must be contiguous [levels * table_size, F] of the points' dtype and device");
    TORCH_CHECK(resolution.scalar_type() == at::kFloat && multipliers.scalar_type() == at::kInt &&
                    resolution.is_contiguous() && multipliers.is_contiguous() && resolution.dim() == 1 &&
                    multipliers.dim() == 2 && multipliers.size(0) == resolution.size(0) && multipliers.size(1) == 3 &&
                    resolution.device() == points.device() && multipliers.device() == points.device(),
                "resolution must be float32 [L], multipliers int32 [L, 3], on the points' device");
    TORCH_CHECK(log2_table_size >= 0 && log2_table_size < 31 &&
                    table.size(0) == (resolution.size(0) << log2_table_size),
                "table rows must be levels * 2^log2_table_size");
}

inline HashGrid hash_grid(const Tensor& table, const Tensor& resolution, const Tensor& multipliers,
                          int64_t dense_levels, int64_t log2_table_size) {
    return HashGrid{resolution.data_ptr<float>(), multipliers.data_ptr<int32_t>(), resolution.size(0),
                    table.size(1), dense_levels, static_cast<uint32_t>(1) << log2_table_size};
}

inline void check_hash_grad(const Tensor& grad_out, const Tensor& points, const HashGrid& grid) {
    TORCH_CHECK(grad_out.is_contiguous() && grad_out.dim() == 2 && grad_out.size(0) == points.size(0) &&
                    grad_out.size(1) == grid.levels * grid.features && grad_out.scalar_type() == points.scalar_type() &&
                    grad_out.device() == points.device(),
                "grad_out must be contiguous [N, L * F] of the points' dtype and device");
}

inline void check_composite_inputs(const Tensor& log_density, const Tensor& rgb, const Tensor& t, const Tensor& ray_starts) {
    const int64_t count = log_density.size(0);
    TORCH_CHECK(log_density.dim() == 1 && log_density.is_contiguous(), "log_density must be contiguous [M]");
    TORCH_CHECK(rgb.dim() == 2 && rgb.size(0) == count && rgb.size(1) == 3 && rgb.is_contiguous() &&
                    rgb.scalar_type() == log_density.scalar_type(),
                "rgb must be contiguous [M, 3] of log_density's dtype");
    TORCH_CHECK(t.dim() == 1 && t.size(0) == count && t.is_contiguous() && t.scalar_type() == log_density.scalar_type(),
                "t must be contiguous [M] of log_density's dtype");
    TORCH_CHECK(ray_starts.dim() == 1 && ray_starts.size(0) >= 1 && ray_starts.scalar_type() == at::kLong &&
                    ray_starts.is_contiguous(),
                "ray_starts must be contiguous int64 [R + 1]");
    TORCH_CHECK(rgb.device() == log_density.device() && t.device() == log_density.device() &&
                    ray_starts.device() == log_density.device(),
                "compositing inputs must share one device");
}

inline void check_composite_grad(const Tensor& grad_accumulated, const Tensor& log_density, int64_t rays) {
    TORCH_CHECK(grad_accumulated.is_contiguous() && grad_accumulated.dim() == 2 && grad_accumulated.size(0) == rays &&
                    grad_accumulated.size(1) == 5 && grad_accumulated.scalar_type() == log_density.scalar_type() &&
                    grad_accumulated.device() == log_density.device(),
                "grad_accumulated must be contiguous [R, 5] of log_density's dtype and device");
}

}  // namespace fieldkit
