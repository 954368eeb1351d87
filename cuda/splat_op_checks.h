// Argument checks of the splat ops, shared by the CPU and CUDA launchers (host code): a wrong
// shape, dtype or layout is one clear error instead of a wild read. The Python wrappers convert
// what they can first.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "splats.h"

namespace fieldkit {

using at::Tensor;

inline bool same_place(const Tensor& tensor, const Tensor& like) {
    return tensor.is_contiguous() && tensor.scalar_type() == like.scalar_type() && tensor.device() == like.device();
}

inline void check_projection_inputs(const Tensor& means, const Tensor& quaternions, const Tensor& scales,
                                    const Tensor& viewmats, const Tensor& intrinsics) {
    const int64_t count = means.size(0);
    TORCH_CHECK(means.dim() == 2 && means.size(1) == 3 && means.is_contiguous(), "means must be contiguous [N, 3]");
    TORCH_CHECK(quaternions.dim() == 2 && quaternions.size(0) == count && quaternions.size(1) == 4 &&
                    same_place(quaternions, means),
                "quaternions must be contiguous [N, 4] of the means' dtype and device");
    TORCH_CHECK(scales.dim() == 2 && scales.size(0) == count && scales.size(1) == 3 && same_place(scales, means),
                "scales must be contiguous [N, 3] of the means' dtype and device");
    TORCH_CHECK(viewmats.dim() == 3 && viewmats.size(1) == 4 && viewmats.size(2) == 4 && same_place(viewmats, means),
                "viewmats must be contiguous [C, 4, 4] of the means' dtype and device");
    TORCH_CHECK(intrinsics.dim() == 2 && intrinsics.size(0) == viewmats.size(0) && intrinsics.size(1) == 6 &&
                    same_place(intrinsics, means),
                "intrinsics must be contiguous [C, 6] (fx, fy, cx, cy, width, height) of the means' dtype and device");
}

inline void check_projection_grads(const Tensor& means, const Tensor& viewmats, const Tensor& grad_means2d,
                                   const Tensor& grad_conics, const Tensor& grad_depths) {
    const int64_t cameras = viewmats.size(0), count = means.size(0);
    TORCH_CHECK(grad_means2d.sizes() == at::IntArrayRef({cameras, count, 2}) && same_place(grad_means2d, means) &&
                    grad_conics.sizes() == at::IntArrayRef({cameras, count, 3}) && same_place(grad_conics, means) &&
                    grad_depths.sizes() == at::IntArrayRef({cameras, count}) && same_place(grad_depths, means),
                "projection gradients must be contiguous [C, N, 2], [C, N, 3], [C, N] of the means' dtype and device");
}

// The camera `index` of viewmats [C, 4, 4] and intrinsics [C, 6], read on the host.
template <typename scalar_t>
SplatCamera<scalar_t> splat_camera(const Tensor& viewmats, const Tensor& intrinsics, int64_t index) {
    const scalar_t* values = intrinsics.data_ptr<scalar_t>() + 6 * index;
    return SplatCamera<scalar_t>{viewmats.data_ptr<scalar_t>() + 16 * index, values[0], values[1], values[2],
                                 values[3], values[4], values[5]};
}

inline void check_rasterize_inputs(const Tensor& geometry, const Tensor& opacities, const Tensor& features,
                                   const Tensor& depths, const Tensor& radii, int64_t width, int64_t height) {
    TORCH_CHECK(geometry.dim() == 3 && geometry.size(2) == kSplatGeometry && geometry.is_contiguous(),
                "geometry must be contiguous [C, N, 5] (centre x, y, conic a, b, c)");
    const int64_t cameras = geometry.size(0), count = geometry.size(1);
    TORCH_CHECK(cameras * count < (int64_t{1} << 31), "at most 2^31 splats over all cameras");
    TORCH_CHECK(opacities.dim() == 1 && opacities.size(0) == count && same_place(opacities, geometry),
                "opacities must be contiguous [N] of the geometry's dtype and device");
    TORCH_CHECK(features.dim() == 3 && features.size(0) == cameras && features.size(1) == count &&
                    same_place(features, geometry),
                "features must be contiguous [C, N, F] of the geometry's dtype and device");
    TORCH_CHECK(depths.sizes() == at::IntArrayRef({cameras, count}) && same_place(depths, geometry),
                "depths must be contiguous [C, N] of the geometry's dtype and device");
    TORCH_CHECK(radii.sizes() == at::IntArrayRef({cameras, count, 2}) && radii.scalar_type() == at::kInt &&
                    radii.is_contiguous() && radii.device() == geometry.device(),
                "radii must be contiguous int32 [C, N, 2] on the geometry's device");
    TORCH_CHECK(width > 0 && height > 0, "the image must have pixels");
}

inline void check_rasterize_backward(const Tensor& grad_out, const Tensor& geometry, const Tensor& features,
                                     const Tensor& boxes, const Tensor& pair_offsets, const Tensor& pair_splats,
                                     const Tensor& tile_offsets, const Tensor& tile_pairs, int64_t width,
                                     int64_t height) {
    const int64_t cameras = geometry.size(0), count = geometry.size(1);
    const SplatImage image{width, height};
    TORCH_CHECK(grad_out.sizes() == at::IntArrayRef({cameras, height, width, features.size(2) + 1}) &&
                    same_place(grad_out, geometry),
                "grad_out must be contiguous [C, H, W, F + 1] of the geometry's dtype and device");
    TORCH_CHECK(boxes.sizes() == at::IntArrayRef({cameras * count, 4}) && boxes.scalar_type() == at::kInt &&
                    pair_offsets.sizes() == at::IntArrayRef({cameras * count + 1}) &&
                    pair_offsets.scalar_type() == at::kLong &&
                    tile_offsets.sizes() == at::IntArrayRef({cameras * image.tiles() + 1}) &&
                    tile_offsets.scalar_type() == at::kLong && pair_splats.scalar_type() == at::kInt &&
                    tile_pairs.scalar_type() == at::kInt && tile_pairs.size(0) == pair_splats.size(0),
                "the binning must be the forward pass's, for this image size");
}

}  // namespace fieldkit
