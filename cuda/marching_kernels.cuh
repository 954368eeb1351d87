// The CUDA kernels of the ray-marching ops: one thread per ray over marching.h's bodies. Apart from
// cuda_ops.cu's launchers, so that tests/test_native_marching.py can compile the device code with
// nvcc where torch has no CUDA (no ATen CUDA headers are needed here).
#pragma once

#include <cstdint>

#include "marching.h"

namespace fieldkit {

template <typename scalar_t>
__global__ void march_count_kernel(MarchJob<scalar_t> job, int64_t rays, int64_t* counts) {
    const int64_t ray = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (ray < rays) counts[ray] = count_ray(job, ray);
}

template <typename scalar_t>
__global__ void march_fill_kernel(MarchJob<scalar_t> job, int64_t rays, const int64_t* starts) {
    const int64_t ray = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (ray < rays) fill_ray(job, ray, starts[ray]);
}

template <typename scalar_t>
__global__ void segment_count_kernel(const int64_t* ray_starts, const int64_t* steps, const int64_t* cursor,
                                     const scalar_t* optical_depth, int64_t rays, int64_t segment_end,
                                     scalar_t opaque, int64_t* counts, int64_t* next) {
    const int64_t ray = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (ray < rays)
        counts[ray] = segment_ray(cursor[ray], ray_starts[ray + 1], steps, segment_end, optical_depth[ray], opaque,
                                  next + ray);
}

template <typename = void>  // a template, so that the header defines no symbol of its own
__global__ void segment_fill_kernel(const int64_t* cursor, const int64_t* starts, int64_t rays, int64_t* index) {
    const int64_t ray = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (ray >= rays) return;
    for (int64_t i = 0; i < starts[ray + 1] - starts[ray]; ++i) index[starts[ray] + i] = cursor[ray] + i;
}

template <typename scalar_t>
__global__ void visibility_kernel(const int64_t* segment_starts, const scalar_t* depth, int64_t rays,
                                  scalar_t epsilon, scalar_t* optical_depth, bool* visible) {
    const int64_t ray = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (ray < rays)
        visibility_ray(segment_starts[ray], segment_starts[ray + 1], depth, optical_depth + ray, epsilon, visible);
}

}  // namespace fieldkit
