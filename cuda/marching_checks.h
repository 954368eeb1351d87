// Argument checks of the ray-marching ops, shared by the CPU and CUDA launchers (host code).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "marching.h"

namespace fieldkit {

inline void check_march_inputs(const at::Tensor& origins, const at::Tensor& directions, const at::Tensor& offsets,
                               const at::Tensor& aabb, const at::Tensor& occupied, int64_t resolution, int64_t most) {
    TORCH_CHECK(origins.dim() == 2 && origins.size(1) == 3 && origins.is_contiguous(), "origins must be contiguous [R, 3]");
    TORCH_CHECK(directions.sizes() == origins.sizes() && directions.is_contiguous() &&
                    directions.scalar_type() == origins.scalar_type(),
                "directions must be contiguous [R, 3] of the origins' dtype");
    TORCH_CHECK(offsets.dim() == 1 && offsets.size(0) == origins.size(0) && offsets.is_contiguous() &&
                    offsets.scalar_type() == origins.scalar_type(),
                "offsets must be contiguous [R] of the origins' dtype");
    TORCH_CHECK(aabb.numel() == 6 && aabb.is_contiguous() && aabb.scalar_type() == origins.scalar_type(),
                "aabb must be contiguous [2, 3] of the origins' dtype");
    TORCH_CHECK(resolution > 0 && occupied.numel() == resolution * resolution * resolution &&
                    occupied.scalar_type() == at::kBool && occupied.is_contiguous(),
                "occupied must be contiguous bool [resolution^3]");
    TORCH_CHECK(most >= 0, "most must be >= 0");
    TORCH_CHECK(directions.device() == origins.device() && offsets.device() == origins.device() &&
                    aabb.device() == origins.device() && occupied.device() == origins.device(),
                "ray-marching inputs must share one device");
}

inline void check_segment_inputs(const at::Tensor& ray_starts, const at::Tensor& steps, const at::Tensor& cursor,
                                 const at::Tensor& optical_depth) {
    const int64_t rays = ray_starts.size(0) - 1;
    TORCH_CHECK(ray_starts.dim() == 1 && rays >= 0 && ray_starts.scalar_type() == at::kLong && ray_starts.is_contiguous(),
                "ray_starts must be contiguous int64 [R + 1]");
    TORCH_CHECK(steps.dim() == 1 && steps.scalar_type() == at::kLong && steps.is_contiguous(),
                "steps must be contiguous int64 [M]");
    TORCH_CHECK(cursor.dim() == 1 && cursor.size(0) == rays && cursor.scalar_type() == at::kLong && cursor.is_contiguous(),
                "cursor must be contiguous int64 [R]");
    TORCH_CHECK(optical_depth.dim() == 1 && optical_depth.size(0) == rays && optical_depth.is_contiguous(),
                "optical_depth must be contiguous [R]");
    TORCH_CHECK(steps.device() == ray_starts.device() && cursor.device() == ray_starts.device() &&
                    optical_depth.device() == ray_starts.device(),
                "ray-marching inputs must share one device");
}

inline void check_visibility_inputs(const at::Tensor& segment_starts, const at::Tensor& depth,
                                    const at::Tensor& optical_depth) {
    TORCH_CHECK(segment_starts.dim() == 1 && segment_starts.size(0) == optical_depth.size(0) + 1 &&
                    segment_starts.scalar_type() == at::kLong && segment_starts.is_contiguous(),
                "segment_starts must be contiguous int64 [R + 1]");
    TORCH_CHECK(depth.dim() == 1 && depth.is_contiguous() && depth.scalar_type() == optical_depth.scalar_type() &&
                    optical_depth.dim() == 1 && optical_depth.is_contiguous(),
                "depth [K] and optical_depth [R] must be contiguous, of one dtype");
    TORCH_CHECK(depth.device() == optical_depth.device() && segment_starts.device() == optical_depth.device(),
                "ray-marching inputs must share one device");
}

}  // namespace fieldkit
