// CUDA launchers of the splat ops, over the same bodies as splat_ops_cpu.cpp, which defines the
// schemas (this library is loaded after it). The layout of the work is gsplat's: one thread per
// splat and camera for the projection; a key sort of (tile, depth) for the binning; one block per
// 16 px tile and one thread per pixel for compositing, each thread walking the tile's splats front
// to back; gradients scattered with atomic adds. The binning tensors have the CPU launcher's
// meaning, so either backward reads what its forward saved.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/bitwise_right_shift.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "splat_op_checks.h"
#include "splats.h"

namespace fieldkit {
namespace {

constexpr int kThreads = 256;

inline unsigned int blocks_for(int64_t elements) {
    return static_cast<unsigned int>((elements + kThreads - 1) / kThreads);
}

template <typename scalar_t>
__global__ void project_forward_kernel(const scalar_t* means, const scalar_t* quaternions, const scalar_t* scales,
                                       const scalar_t* viewmats, const scalar_t* intrinsics, int64_t cameras,
                                       int64_t count, scalar_t* means2d, scalar_t* conics, scalar_t* depths,
                                       int32_t* radii) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= cameras * count) return;
    const int64_t camera = i / count, n = i - camera * count;
    const scalar_t* k = intrinsics + 6 * camera;
    const SplatCamera<scalar_t> view{viewmats + 16 * camera, k[0], k[1], k[2], k[3], k[4], k[5]};
    project_splat(means + 3 * n, quaternions + 4 * n, scales + 3 * n, view, means2d + 2 * i, conics + 3 * i,
                  depths + i, radii + 2 * i);
}

// one thread per splat sums its cameras, so the projection's gradients need no atomics
template <typename scalar_t>
__global__ void project_backward_kernel(const scalar_t* means, const scalar_t* quaternions, const scalar_t* scales,
                                        const scalar_t* viewmats, const scalar_t* intrinsics, int64_t cameras,
                                        int64_t count, const scalar_t* grad_means2d, const scalar_t* grad_conics,
                                        const scalar_t* grad_depths, scalar_t* grad_means, scalar_t* grad_quaternions,
                                        scalar_t* grad_scales) {
    const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (n >= count) return;
    for (int64_t camera = 0; camera < cameras; ++camera) {
        const int64_t i = camera * count + n;
        const scalar_t* k = intrinsics + 6 * camera;
        const SplatCamera<scalar_t> view{viewmats + 16 * camera, k[0], k[1], k[2], k[3], k[4], k[5]};
        project_splat_backward(means + 3 * n, quaternions + 4 * n, scales + 3 * n, view, grad_means2d + 2 * i,
                               grad_conics + 3 * i, grad_depths[i], grad_means + 3 * n, grad_quaternions + 4 * n,
                               grad_scales + 3 * n);
    }
}

std::tuple<Tensor, Tensor, Tensor, Tensor> splat_project_forward_cuda(const Tensor& means, const Tensor& quaternions,
                                                                      const Tensor& scales, const Tensor& viewmats,
                                                                      const Tensor& intrinsics) {
    check_projection_inputs(means, quaternions, scales, viewmats, intrinsics);
    const c10::cuda::CUDAGuard guard(means.device());
    const int64_t cameras = viewmats.size(0), count = means.size(0);
    Tensor means2d = at::empty({cameras, count, 2}, means.options());
    Tensor conics = at::empty({cameras, count, 3}, means.options());
    Tensor depths = at::empty({cameras, count}, means.options());
    Tensor radii = at::empty({cameras, count, 2}, means.options().dtype(at::kInt));
    if (cameras * count == 0) return {means2d, conics, depths, radii};
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "splat_project_forward_cuda", [&] {
        project_forward_kernel<scalar_t><<<blocks_for(cameras * count), kThreads, 0, stream>>>(
            means.data_ptr<scalar_t>(), quaternions.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(),
            viewmats.data_ptr<scalar_t>(), intrinsics.data_ptr<scalar_t>(), cameras, count,
            means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(), depths.data_ptr<scalar_t>(),
            radii.data_ptr<int32_t>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return {means2d, conics, depths, radii};
}

std::tuple<Tensor, Tensor, Tensor> splat_project_backward_cuda(const Tensor& means, const Tensor& quaternions,
                                                               const Tensor& scales, const Tensor& viewmats,
                                                               const Tensor& intrinsics, const Tensor& grad_means2d,
                                                               const Tensor& grad_conics, const Tensor& grad_depths) {
    check_projection_inputs(means, quaternions, scales, viewmats, intrinsics);
    check_projection_grads(means, viewmats, grad_means2d, grad_conics, grad_depths);
    const c10::cuda::CUDAGuard guard(means.device());
    const int64_t cameras = viewmats.size(0), count = means.size(0);
    Tensor grad_means = at::zeros(means.sizes(), means.options());
    Tensor grad_quaternions = at::zeros(quaternions.sizes(), means.options());
    Tensor grad_scales = at::zeros(scales.sizes(), means.options());
    if (count == 0) return {grad_means, grad_quaternions, grad_scales};
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "splat_project_backward_cuda", [&] {
        project_backward_kernel<scalar_t><<<blocks_for(count), kThreads, 0, stream>>>(
            means.data_ptr<scalar_t>(), quaternions.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(),
            viewmats.data_ptr<scalar_t>(), intrinsics.data_ptr<scalar_t>(), cameras, count,
            grad_means2d.data_ptr<scalar_t>(), grad_conics.data_ptr<scalar_t>(), grad_depths.data_ptr<scalar_t>(),
            grad_means.data_ptr<scalar_t>(), grad_quaternions.data_ptr<scalar_t>(), grad_scales.data_ptr<scalar_t>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return {grad_means, grad_quaternions, grad_scales};
}

// -- rasterization -------------------------------------------------------------------------------

template <typename scalar_t>
__global__ void box_kernel(const scalar_t* geometry, const scalar_t* opacities, const int32_t* radii, int64_t splats,
                           int64_t count, SplatImage image, int32_t* boxes, int64_t* tile_counts) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= splats) return;
    splat_box(geometry + kSplatGeometry * i, opacities[i % count], radii + 2 * i, image, boxes + 4 * i);
    tile_counts[i] = tile_span(boxes + 4 * i);
}

// Each pair's key: the tile in the high 32 bits, the depth's float bits below (positive floats
// order as their bits do); a stable sort of the keys then keeps equal depths in splat order.
template <typename scalar_t>
__global__ void pair_kernel(const int32_t* boxes, const int64_t* pair_offsets, const scalar_t* depths, int64_t splats,
                            int64_t count, SplatImage image, int32_t* pair_splats, int64_t* keys) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= splats) return;
    const int32_t* box = boxes + 4 * i;
    if (box[2] <= box[0]) return;
    const float depth = static_cast<float>(depths[i]);
    const int64_t depth_bits = static_cast<int64_t>(__float_as_uint(depth));
    int64_t at = pair_offsets[i];
    for (int64_t ty = box[1] / kSplatTile; ty <= (box[3] - 1) / kSplatTile; ++ty)
        for (int64_t tx = box[0] / kSplatTile; tx <= (box[2] - 1) / kSplatTile; ++tx, ++at) {
            pair_splats[at] = static_cast<int32_t>(i);
            keys[at] = ((i / count * image.tiles() + ty * image.tiles_x() + tx) << 32) | depth_bits;
        }
}

// One pixel's walk through its tile's pairs, front to back (the CPU launcher's walk_tile, for one
// pixel): `visit(splat, pair, transmittance)` sees each contributing pair.
template <typename scalar_t, typename Visit>
__device__ void walk_pixel(int64_t tile, int64_t x, int64_t y, const int64_t* tile_offsets, const int32_t* tile_pairs,
                           const int32_t* pair_splats, const int32_t* boxes, const scalar_t* geometry,
                           const scalar_t* opacities, int64_t count, Visit&& visit) {
    scalar_t transmittance = 1;
    for (int64_t entry = tile_offsets[tile]; entry < tile_offsets[tile + 1]; ++entry) {
        const int64_t splat = pair_splats[tile_pairs[entry]];
        const int32_t* box = boxes + 4 * splat;
        if (x < box[0] || x >= box[2] || y < box[1] || y >= box[3]) continue;
        const SplatPair<scalar_t> pair = splat_pair(geometry + kSplatGeometry * splat, opacities[splat % count],
                                                    static_cast<scalar_t>(x + 0.5), static_cast<scalar_t>(y + 0.5));
        if (pair.alpha == 0) continue;
        const scalar_t after = transmittance * (1 - pair.alpha);
        if (after < static_cast<scalar_t>(kSplatTransmittanceEpsilon)) return;
        visit(splat, pair, transmittance);
        transmittance = after;
    }
}

struct PixelOfTile {
    int64_t tile, camera, x, y;
    bool inside;
};

__device__ inline PixelOfTile pixel_of_tile(const SplatImage& image) {
    PixelOfTile p;
    p.tile = blockIdx.x;
    p.camera = p.tile / image.tiles();
    const int64_t local = p.tile % image.tiles();
    p.x = local % image.tiles_x() * kSplatTile + threadIdx.x % kSplatTile;
    p.y = local / image.tiles_x() * kSplatTile + threadIdx.x / kSplatTile;
    p.inside = p.x < image.width && p.y < image.height;
    return p;
}

template <typename scalar_t>
__global__ void rasterize_forward_kernel(const int64_t* tile_offsets, const int32_t* tile_pairs,
                                         const int32_t* pair_splats, const int32_t* boxes, const scalar_t* geometry,
                                         const scalar_t* opacities, const scalar_t* features, int64_t count,
                                         int64_t feature_count, SplatImage image, scalar_t* out) {
    const PixelOfTile p = pixel_of_tile(image);
    if (!p.inside) return;
    scalar_t* target = out + ((p.camera * image.height + p.y) * image.width + p.x) * (feature_count + 1);
    walk_pixel(p.tile, p.x, p.y, tile_offsets, tile_pairs, pair_splats, boxes, geometry, opacities, count,
               [&](int64_t splat, const SplatPair<scalar_t>& pair, scalar_t before) {
                   const scalar_t weight = pair.alpha * before;
                   for (int64_t f = 0; f < feature_count; ++f)
                       target[f] += weight * features[splat * feature_count + f];
                   target[feature_count] += weight;
               });
}

template <typename scalar_t>
__global__ void rasterize_backward_kernel(const int64_t* tile_offsets, const int32_t* tile_pairs,
                                          const int32_t* pair_splats, const int32_t* boxes, const scalar_t* geometry,
                                          const scalar_t* opacities, const scalar_t* features, const scalar_t* grad_out,
                                          int64_t count, int64_t feature_count, SplatImage image,
                                          scalar_t* grad_geometry, scalar_t* grad_opacities, scalar_t* grad_features) {
    const PixelOfTile p = pixel_of_tile(image);
    if (!p.inside) return;
    const scalar_t* g = grad_out + ((p.camera * image.height + p.y) * image.width + p.x) * (feature_count + 1);
    auto value = [&](int64_t splat) {
        scalar_t v = g[feature_count];
        for (int64_t f = 0; f < feature_count; ++f) v += g[f] * features[splat * feature_count + f];
        return v;
    };
    scalar_t total = 0, prefix = 0;
    walk_pixel(p.tile, p.x, p.y, tile_offsets, tile_pairs, pair_splats, boxes, geometry, opacities, count,
               [&](int64_t splat, const SplatPair<scalar_t>& pair, scalar_t before) {
                   total += pair.alpha * before * value(splat);
               });
    walk_pixel(p.tile, p.x, p.y, tile_offsets, tile_pairs, pair_splats, boxes, geometry, opacities, count,
               [&](int64_t splat, const SplatPair<scalar_t>& pair, scalar_t before) {
                   const scalar_t weight = pair.alpha * before, v = value(splat);
                   prefix += weight * v;
                   for (int64_t f = 0; f < feature_count; ++f)
                       atomicAdd(grad_features + splat * feature_count + f, weight * g[f]);
                   if (pair.alpha < static_cast<scalar_t>(kSplatAlphaMax)) {
                       const scalar_t grad_alpha = before * v - (total - prefix) / (1 - pair.alpha);
                       scalar_t grad_geometry_pair[kSplatGeometry] = {0, 0, 0, 0, 0}, grad_opacity = 0;
                       splat_pair_backward(geometry + kSplatGeometry * splat, pair, grad_alpha, grad_geometry_pair,
                                           &grad_opacity);
                       for (int k = 0; k < kSplatGeometry; ++k)
                           atomicAdd(grad_geometry + kSplatGeometry * splat + k, grad_geometry_pair[k]);
                       atomicAdd(grad_opacities + splat, grad_opacity);
                   }
               });
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> splat_rasterize_forward_cuda(
    const Tensor& geometry, const Tensor& opacities, const Tensor& features, const Tensor& depths, const Tensor& radii,
    int64_t width, int64_t height) {
    check_rasterize_inputs(geometry, opacities, features, depths, radii, width, height);
    const c10::cuda::CUDAGuard guard(geometry.device());
    const SplatImage image{width, height};
    const int64_t cameras = geometry.size(0), count = geometry.size(1), splats = cameras * count;
    const int64_t tiles = cameras * image.tiles(), feature_count = features.size(2);
    const auto int_options = geometry.options().dtype(at::kInt), long_options = geometry.options().dtype(at::kLong);
    const auto stream = c10::cuda::getCurrentCUDAStream();
    Tensor boxes = at::empty({splats, 4}, int_options);
    Tensor tile_counts = at::empty({splats}, long_options);
    Tensor out = at::zeros({cameras, height, width, feature_count + 1}, geometry.options());
    AT_DISPATCH_FLOATING_TYPES(geometry.scalar_type(), "splat_rasterize_boxes_cuda", [&] {
        if (splats > 0)
            box_kernel<scalar_t><<<blocks_for(splats), kThreads, 0, stream>>>(
                geometry.data_ptr<scalar_t>(), opacities.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(), splats,
                count, image, boxes.data_ptr<int32_t>(), tile_counts.data_ptr<int64_t>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    Tensor pair_offsets = at::cat({at::zeros({1}, long_options), at::cumsum(tile_counts, 0)});
    const int64_t pairs = pair_offsets[splats].item<int64_t>();
    Tensor pair_splats = at::empty({pairs}, int_options);
    Tensor keys = at::empty({pairs}, long_options);
    AT_DISPATCH_FLOATING_TYPES(geometry.scalar_type(), "splat_rasterize_pairs_cuda", [&] {
        if (splats > 0)
            pair_kernel<scalar_t><<<blocks_for(splats), kThreads, 0, stream>>>(
                boxes.data_ptr<int32_t>(), pair_offsets.data_ptr<int64_t>(), depths.data_ptr<scalar_t>(), splats,
                count, image, pair_splats.data_ptr<int32_t>(), keys.data_ptr<int64_t>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const auto sorted = at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
    Tensor tile_pairs = std::get<1>(sorted).to(at::kInt);
    Tensor tile_offsets = at::searchsorted(at::bitwise_right_shift(std::get<0>(sorted), 32),
                                           at::arange(tiles + 1, long_options));
    AT_DISPATCH_FLOATING_TYPES(geometry.scalar_type(), "splat_rasterize_forward_cuda", [&] {
        rasterize_forward_kernel<scalar_t><<<tiles, kSplatTile * kSplatTile, 0, stream>>>(
            tile_offsets.data_ptr<int64_t>(), tile_pairs.data_ptr<int32_t>(), pair_splats.data_ptr<int32_t>(),
            boxes.data_ptr<int32_t>(), geometry.data_ptr<scalar_t>(), opacities.data_ptr<scalar_t>(),
            features.data_ptr<scalar_t>(), count, feature_count, image, out.data_ptr<scalar_t>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return {out, boxes, pair_offsets, pair_splats, tile_offsets, tile_pairs};
}

std::tuple<Tensor, Tensor, Tensor> splat_rasterize_backward_cuda(
    const Tensor& grad_out, const Tensor& geometry, const Tensor& opacities, const Tensor& features,
    const Tensor& boxes, const Tensor& pair_offsets, const Tensor& pair_splats, const Tensor& tile_offsets,
    const Tensor& tile_pairs, int64_t width, int64_t height) {
    check_rasterize_backward(grad_out, geometry, features, boxes, pair_offsets, pair_splats, tile_offsets, tile_pairs,
                             width, height);
    const c10::cuda::CUDAGuard guard(geometry.device());
    const SplatImage image{width, height};
    const int64_t cameras = geometry.size(0), count = geometry.size(1), tiles = cameras * image.tiles();
    Tensor grad_geometry = at::zeros(geometry.sizes(), geometry.options());
    Tensor grad_opacities = at::zeros({cameras, count}, geometry.options());
    Tensor grad_features = at::zeros(features.sizes(), geometry.options());
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(geometry.scalar_type(), "splat_rasterize_backward_cuda", [&] {
        rasterize_backward_kernel<scalar_t><<<tiles, kSplatTile * kSplatTile, 0, stream>>>(
            tile_offsets.data_ptr<int64_t>(), tile_pairs.data_ptr<int32_t>(), pair_splats.data_ptr<int32_t>(),
            boxes.data_ptr<int32_t>(), geometry.data_ptr<scalar_t>(), opacities.data_ptr<scalar_t>(),
            features.data_ptr<scalar_t>(), grad_out.data_ptr<scalar_t>(), count, features.size(2), image,
            grad_geometry.data_ptr<scalar_t>(), grad_opacities.data_ptr<scalar_t>(),
            grad_features.data_ptr<scalar_t>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return {grad_geometry, grad_opacities, grad_features};
}

}  // namespace

TORCH_LIBRARY_IMPL(fieldkit, CUDA, m) {
    m.impl("splat_project_forward", &splat_project_forward_cuda);
    m.impl("splat_project_backward", &splat_project_backward_cuda);
    m.impl("splat_rasterize_forward", &splat_rasterize_forward_cuda);
    m.impl("splat_rasterize_backward", &splat_rasterize_backward_cuda);
}

}  // namespace fieldkit
