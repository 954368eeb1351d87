// CUDA launchers of the fieldkit ops: one thread per element, the same bodies as cpu_ops.cpp,
// which defines the schemas (this library is loaded after it). Table gradients are scattered
// with atomic adds here, where the CPU launcher gives each thread whole levels instead.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>

#include "hash_encoding.h"
#include "op_checks.h"
#include "volume.h"

namespace fieldkit {
namespace {

constexpr int kThreads = 256;

struct AtomicAdd {
    template <typename T>
    FK_HOST_DEVICE void operator()(T* target, T value) const {
#ifdef __CUDA_ARCH__
        atomicAdd(target, value);
#else
        *target += value;  // never launched on the host; present so the host pass compiles
#endif
    }
};

inline unsigned int blocks_for(int64_t elements) {
    return static_cast<unsigned int>((elements + kThreads - 1) / kThreads);
}

// Threads are level-major (i = level * N + n): the threads of a warp read one level's slice.
template <int kFeatures, typename scalar_t>
__global__ void hash_forward_kernel(const scalar_t* x, const scalar_t* table, HashGrid grid, int64_t count,
                                    scalar_t* out) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= count * grid.levels) return;
    const int64_t level = i / count, n = i - level * count;
    hash_encode_forward_one<kFeatures>(x + 3 * n, level, grid, table,
                                       out + n * grid.levels * grid.features + level * grid.features);
}

template <int kFeatures, typename scalar_t>
__global__ void hash_table_grad_kernel(const scalar_t* x, const scalar_t* grad, HashGrid grid, int64_t count,
                                       scalar_t* grad_table) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= count * grid.levels) return;
    const int64_t level = i / count, n = i - level * count;
    hash_encode_backward_table_one<kFeatures>(x + 3 * n, level, grid,
                                              grad + n * grid.levels * grid.features + level * grid.features,
                                              grad_table, AtomicAdd{});
}

// One thread per point sums its levels, so the point gradients need no atomics.
template <int kFeatures, typename scalar_t>
__global__ void hash_point_grad_kernel(const scalar_t* x, const scalar_t* table, const scalar_t* grad, HashGrid grid,
                                       int64_t count, scalar_t* grad_points) {
    const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (n >= count) return;
    for (int64_t level = 0; level < grid.levels; ++level)
        hash_encode_backward_point_one<kFeatures>(x + 3 * n, level, grid, table,
                                                  grad + n * grid.levels * grid.features + level * grid.features,
                                                  grad_points + 3 * n);
}

template <typename scalar_t>
__global__ void composite_forward_kernel(const scalar_t* log_density, const scalar_t* rgb, const scalar_t* t,
                                         const int64_t* starts, int64_t rays, scalar_t step, scalar_t* weights,
                                         scalar_t* accumulated) {
    const int64_t ray = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (ray >= rays) return;
    composite_forward_ray(starts[ray], starts[ray + 1], log_density, rgb, t, step, weights, accumulated + 5 * ray);
}

template <typename scalar_t>
__global__ void composite_backward_kernel(const scalar_t* grad_accumulated, const scalar_t* log_density,
                                          const scalar_t* rgb, const scalar_t* t, const int64_t* starts, int64_t rays,
                                          scalar_t step, scalar_t* grad_log_density, scalar_t* grad_rgb,
                                          scalar_t* grad_t) {
    const int64_t ray = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (ray >= rays) return;
    composite_backward_ray(starts[ray], starts[ray + 1], log_density, rgb, t, step, grad_accumulated + 5 * ray,
                           grad_log_density, grad_rgb, grad_t);
}

Tensor hash_encode_forward_cuda(const Tensor& points, const Tensor& table, const Tensor& resolution,
                                const Tensor& multipliers, int64_t dense_levels, int64_t log2_table_size) {
    check_hash_inputs(points, table, resolution, multipliers, log2_table_size);
    const c10::cuda::CUDAGuard guard(points.device());
    const HashGrid grid = hash_grid(table, resolution, multipliers, dense_levels, log2_table_size);
    const int64_t count = points.size(0);
    Tensor out = at::empty({count, grid.levels * grid.features}, points.options());
    if (count == 0) return out;
    const auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "hash_encode_forward_cuda", [&] {
        FK_DISPATCH_FEATURES(grid.features, {
            hash_forward_kernel<kFeatures, scalar_t><<<blocks_for(count * grid.levels), kThreads, 0, stream>>>(
                points.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(), grid, count, out.data_ptr<scalar_t>());
        });
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return out;
}

std::tuple<Tensor, Tensor> hash_encode_backward_cuda(const Tensor& grad_out, const Tensor& points, const Tensor& table,
                                                     const Tensor& resolution, const Tensor& multipliers,
                                                     int64_t dense_levels, int64_t log2_table_size, bool table_grad,
                                                     bool points_grad) {
    check_hash_inputs(points, table, resolution, multipliers, log2_table_size);
    const c10::cuda::CUDAGuard guard(points.device());
    const HashGrid grid = hash_grid(table, resolution, multipliers, dense_levels, log2_table_size);
    const int64_t count = points.size(0);
    check_hash_grad(grad_out, points, grid);
    Tensor grad_table = table_grad ? at::zeros_like(table) : Tensor();
    Tensor grad_points = points_grad ? at::zeros_like(points) : Tensor();
    if (count == 0) return {grad_table, grad_points};
    const auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "hash_encode_backward_cuda", [&] {
        FK_DISPATCH_FEATURES(grid.features, {
            if (table_grad)
                hash_table_grad_kernel<kFeatures, scalar_t><<<blocks_for(count * grid.levels), kThreads, 0, stream>>>(
                    points.data_ptr<scalar_t>(), grad_out.data_ptr<scalar_t>(), grid, count,
                    grad_table.data_ptr<scalar_t>());
            if (points_grad)
                hash_point_grad_kernel<kFeatures, scalar_t><<<blocks_for(count), kThreads, 0, stream>>>(
                    points.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(), grad_out.data_ptr<scalar_t>(), grid,
                    count, grad_points.data_ptr<scalar_t>());
        });
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return {grad_table, grad_points};
}

std::tuple<Tensor, Tensor> composite_forward_cuda(const Tensor& log_density, const Tensor& rgb, const Tensor& t,
                                                  const Tensor& ray_starts, double step) {
    check_composite_inputs(log_density, rgb, t, ray_starts);
    const c10::cuda::CUDAGuard guard(log_density.device());
    const int64_t rays = ray_starts.size(0) - 1;
    Tensor weights = at::empty_like(log_density);
    Tensor accumulated = at::empty({rays, 5}, log_density.options());
    if (rays == 0) return {weights, accumulated};
    const auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(log_density.scalar_type(), "composite_forward_cuda", [&] {
        composite_forward_kernel<scalar_t><<<blocks_for(rays), kThreads, 0, stream>>>(
            log_density.data_ptr<scalar_t>(), rgb.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(),
            ray_starts.data_ptr<int64_t>(), rays, static_cast<scalar_t>(step), weights.data_ptr<scalar_t>(),
            accumulated.data_ptr<scalar_t>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return {weights, accumulated};
}

std::tuple<Tensor, Tensor, Tensor> composite_backward_cuda(const Tensor& grad_accumulated, const Tensor& log_density,
                                                           const Tensor& rgb, const Tensor& t,
                                                           const Tensor& ray_starts, double step, bool t_grad) {
    check_composite_inputs(log_density, rgb, t, ray_starts);
    const c10::cuda::CUDAGuard guard(log_density.device());
    const int64_t rays = ray_starts.size(0) - 1;
    check_composite_grad(grad_accumulated, log_density, rays);
    Tensor grad_log_density = at::empty_like(log_density), grad_rgb = at::empty_like(rgb);
    Tensor grad_t = t_grad ? at::empty_like(t) : Tensor();
    if (rays == 0) return {grad_log_density, grad_rgb, grad_t};
    const auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(log_density.scalar_type(), "composite_backward_cuda", [&] {
        composite_backward_kernel<scalar_t><<<blocks_for(rays), kThreads, 0, stream>>>(
            grad_accumulated.data_ptr<scalar_t>(), log_density.data_ptr<scalar_t>(), rgb.data_ptr<scalar_t>(),
            t.data_ptr<scalar_t>(), ray_starts.data_ptr<int64_t>(), rays, static_cast<scalar_t>(step),
            grad_log_density.data_ptr<scalar_t>(), grad_rgb.data_ptr<scalar_t>(),
            t_grad ? grad_t.data_ptr<scalar_t>() : nullptr);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return {grad_log_density, grad_rgb, grad_t};
}

}  // namespace

TORCH_LIBRARY_IMPL(fieldkit, CUDA, m) {
    m.impl("hash_encode_forward", &hash_encode_forward_cuda);
    m.impl("hash_encode_backward", &hash_encode_backward_cuda);
    m.impl("composite_forward", &composite_forward_cuda);
    m.impl("composite_backward", &composite_backward_cuda);
}

}  // namespace fieldkit

// -- occupancy-grid ray marching (marching.h): one thread per ray, two passes (count, then fill at
// each ray's start from a prefix sum), as in cpu_ops.cpp ---------------------------------------
#include <ATen/ops/cumsum.h>
#include <ATen/ops/zeros.h>

#include "marching_checks.h"
#include "marching_kernels.cuh"

namespace fieldkit {
namespace {

// starts [R + 1] from counts [R]: a zero, then the inclusive sum; -> the total (one device sync)
int64_t starts_from_counts(const Tensor& counts, Tensor& starts) {
    starts = at::zeros({counts.size(0) + 1}, counts.options());
    if (counts.size(0) > 0) starts.narrow(0, 1, counts.size(0)).copy_(at::cumsum(counts, 0));
    return starts[counts.size(0)].item<int64_t>();
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> occupancy_march_cuda(
    const Tensor& origins, const Tensor& directions, const Tensor& offsets, const Tensor& aabb,
    const Tensor& occupied, int64_t resolution, double step, int64_t most) {
    check_march_inputs(origins, directions, offsets, aabb, occupied, resolution, most);
    const c10::cuda::CUDAGuard guard(origins.device());
    const int64_t rays = origins.size(0);
    const auto longs = origins.options().dtype(at::kLong);
    Tensor counts = at::zeros({rays}, longs), starts, ray_of, steps, t, points;
    const auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(origins.scalar_type(), "occupancy_march_cuda", [&] {
        MarchJob<scalar_t> job{origins.data_ptr<scalar_t>(), directions.data_ptr<scalar_t>(),
                               offsets.data_ptr<scalar_t>(),
                               MarchGrid<scalar_t>{aabb.data_ptr<scalar_t>(), occupied.data_ptr<bool>(), resolution},
                               static_cast<scalar_t>(step), most, nullptr, nullptr, nullptr, nullptr};
        if (rays > 0) march_count_kernel<scalar_t><<<blocks_for(rays), kThreads, 0, stream>>>(
            job, rays, counts.data_ptr<int64_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        const int64_t total = starts_from_counts(counts, starts);
        ray_of = at::empty({total}, longs);
        steps = at::empty({total}, longs);
        t = at::empty({total}, origins.options());
        points = at::empty({total, 3}, origins.options());
        job.rays = ray_of.data_ptr<int64_t>();
        job.steps = steps.data_ptr<int64_t>();
        job.t = t.data_ptr<scalar_t>();
        job.points = points.data_ptr<scalar_t>();
        if (total > 0) march_fill_kernel<scalar_t><<<blocks_for(rays), kThreads, 0, stream>>>(
            job, rays, starts.data_ptr<int64_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    return {starts, ray_of, steps, t, points};
}

std::tuple<Tensor, Tensor, Tensor> march_segment_cuda(const Tensor& ray_starts, const Tensor& steps,
                                                      const Tensor& cursor, const Tensor& optical_depth,
                                                      int64_t segment_end, double opaque_depth) {
    check_segment_inputs(ray_starts, steps, cursor, optical_depth);
    const c10::cuda::CUDAGuard guard(ray_starts.device());
    const int64_t rays = ray_starts.size(0) - 1;
    Tensor counts = at::zeros({rays}, ray_starts.options()), next = cursor.clone(), starts;
    const auto stream = at::cuda::getCurrentCUDAStream();
    if (rays > 0)
        AT_DISPATCH_FLOATING_TYPES(optical_depth.scalar_type(), "march_segment_cuda", [&] {
            segment_count_kernel<scalar_t><<<blocks_for(rays), kThreads, 0, stream>>>(
                ray_starts.data_ptr<int64_t>(), steps.data_ptr<int64_t>(), cursor.data_ptr<int64_t>(),
                optical_depth.data_ptr<scalar_t>(), rays, segment_end, static_cast<scalar_t>(opaque_depth),
                counts.data_ptr<int64_t>(), next.data_ptr<int64_t>());
        });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    Tensor index = at::empty({starts_from_counts(counts, starts)}, ray_starts.options());
    if (index.numel() > 0)
        segment_fill_kernel<><<<blocks_for(rays), kThreads, 0, stream>>>(
            cursor.data_ptr<int64_t>(), starts.data_ptr<int64_t>(), rays, index.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return {starts, index, next};
}

std::tuple<Tensor, Tensor> march_visibility_cuda(const Tensor& segment_starts, const Tensor& depth,
                                                 const Tensor& optical_depth, double epsilon) {
    check_visibility_inputs(segment_starts, depth, optical_depth);
    const c10::cuda::CUDAGuard guard(depth.device());
    const int64_t rays = optical_depth.size(0);
    Tensor visible = at::empty({depth.size(0)}, depth.options().dtype(at::kBool));
    Tensor after = optical_depth.clone();
    const auto stream = at::cuda::getCurrentCUDAStream();
    if (rays > 0)
        AT_DISPATCH_FLOATING_TYPES(depth.scalar_type(), "march_visibility_cuda", [&] {
            visibility_kernel<scalar_t><<<blocks_for(rays), kThreads, 0, stream>>>(
                segment_starts.data_ptr<int64_t>(), depth.data_ptr<scalar_t>(), rays, static_cast<scalar_t>(epsilon),
                after.data_ptr<scalar_t>(), visible.data_ptr<bool>());
        });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return {visible, after};
}

}  // namespace

TORCH_LIBRARY_IMPL(fieldkit, CUDA, m) {
    m.impl("occupancy_march", &occupancy_march_cuda);
    m.impl("march_segment", &march_segment_cuda);
    m.impl("march_visibility", &march_visibility_cuda);
}

}  // namespace fieldkit
