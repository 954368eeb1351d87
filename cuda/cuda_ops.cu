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
