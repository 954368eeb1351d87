// The fieldkit op schemas and their CPU launchers: OpenMP loops over the per-element bodies in
// the headers. Registered with TORCH_LIBRARY, so no Python headers are needed and the ops are
// reached as torch.ops.fieldkit.*; cuda_ops.cu registers the CUDA launchers of the same schemas.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "hash_encoding.h"
#include "op_checks.h"
#include "volume.h"

namespace fieldkit {
namespace {

using at::Tensor;

// points per block: a block's outputs and gradients stay in cache while every level visits them
constexpr int64_t kBlock = 2048;
// points per unit of level-major work: long enough runs within one level's slice of the table
constexpr int64_t kChunk = 16384;

// torch's thread count, so that torch.set_num_threads governs these loops as well
int threads() { return std::max(1, at::get_num_threads()); }

// The loops live in templates rather than inside AT_DISPATCH's lambda: a #pragma within a macro
// argument is not reliably applied.
// Between point-major [N, L, F] and level-major [L, N, F]. torch's strided copy manages this
// several times slower than these loops, which write one side sequentially.
template <int kFeatures, typename scalar_t>
void transpose_levels(const scalar_t* from, scalar_t* to, const HashGrid& grid, int64_t count, bool to_level_major) {
    const int64_t features = feature_count<kFeatures>(grid), width = grid.levels * features;
    const int64_t blocks = (count + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) num_threads(threads()) if (blocks > 1)
    for (int64_t block = 0; block < blocks; ++block) {
        const int64_t end = std::min(count, (block + 1) * kBlock);
        for (int64_t level = 0; level < grid.levels; ++level)
            for (int64_t n = block * kBlock; n < end; ++n) {
                scalar_t* point_major = const_cast<scalar_t*>(to_level_major ? from : to) + n * width + level * features;
                scalar_t* level_major = const_cast<scalar_t*>(to_level_major ? to : from) + (level * count + n) * features;
                for (int64_t f = 0; f < features; ++f)
                    if (to_level_major) level_major[f] = point_major[f];
                    else point_major[f] = level_major[f];
            }
    }
}

// Level-major output [L, N, F]: a thread works through one level's slice of the table (1 MB at
// instant-ngp's sizes, an L2's worth) for many points before it moves on, instead of touching
// every level's slice for every point; the caller transposes the result.
template <int kFeatures, typename scalar_t>
void hash_forward_loop(const scalar_t* x, const scalar_t* table, const HashGrid& grid, int64_t count, scalar_t* y) {
    const int64_t chunks = (count + kChunk - 1) / kChunk;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(threads()) if (count > kBlock)
    for (int64_t level = 0; level < grid.levels; ++level)
        for (int64_t chunk = 0; chunk < chunks; ++chunk) {
            scalar_t* level_out = y + level * count * grid.features;
            const int64_t end = std::min(count, (chunk + 1) * kChunk);
            for (int64_t n = chunk * kChunk; n < end; ++n)
                hash_encode_forward_one<kFeatures>(x + 3 * n, level, grid, table, level_out + n * grid.features);
        }
}

// Table gradients go level by level to the threads: a thread owns whole levels of the table, so
// the scatter needs no atomics and its sums come out in the same order on every run. Levels are
// handed out dynamically: dense coarse levels cost less than hashed fine ones, and on a shared
// machine a thread that loses its core should not hold the others up. `grad` is
// level-major [L, N, F] here, so that a level reads its gradients contiguously.
template <int kFeatures, typename scalar_t>
void hash_table_grad_loop(const scalar_t* x, const scalar_t* grad, const HashGrid& grid, int64_t count,
                          scalar_t* grad_table) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads()) if (count > kBlock)
    for (int64_t level = 0; level < grid.levels; ++level) {
        const scalar_t* level_grad = grad + level * count * grid.features;
        for (int64_t n = 0; n < count; ++n)
            hash_encode_backward_table_one<kFeatures>(x + 3 * n, level, grid, level_grad + n * grid.features,
                                                      grad_table, PlainAdd{});
    }
}

template <int kFeatures, typename scalar_t>
void hash_point_grad_loop(const scalar_t* x, const scalar_t* table, const scalar_t* grad, const HashGrid& grid,
                          int64_t count, scalar_t* grad_points) {
    const int64_t width = grid.levels * grid.features, blocks = (count + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) num_threads(threads()) if (blocks > 1)
    for (int64_t block = 0; block < blocks; ++block) {
        const int64_t end = std::min(count, (block + 1) * kBlock);
        for (int64_t level = 0; level < grid.levels; ++level)
            for (int64_t n = block * kBlock; n < end; ++n)
                hash_encode_backward_point_one<kFeatures>(x + 3 * n, level, grid, table,
                                                          grad + n * width + level * grid.features,
                                                          grad_points + 3 * n);
    }
}

Tensor hash_encode_forward_cpu(const Tensor& points, const Tensor& table, const Tensor& resolution,
                               const Tensor& multipliers, int64_t dense_levels, int64_t log2_table_size) {
    check_hash_inputs(points, table, resolution, multipliers, log2_table_size);
    const HashGrid grid = hash_grid(table, resolution, multipliers, dense_levels, log2_table_size);
    const int64_t count = points.size(0);
    Tensor level_major = at::empty({grid.levels, count, grid.features}, points.options());
    Tensor out = at::empty({count, grid.levels * grid.features}, points.options());
    AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "hash_encode_forward_cpu", [&] {
        FK_DISPATCH_FEATURES(grid.features, {
            hash_forward_loop<kFeatures>(points.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(), grid, count,
                                         level_major.data_ptr<scalar_t>());
            transpose_levels<kFeatures>(level_major.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), grid, count, false);
        });
    });
    return out;
}

std::tuple<Tensor, Tensor> hash_encode_backward_cpu(const Tensor& grad_out, const Tensor& points, const Tensor& table,
                                                    const Tensor& resolution, const Tensor& multipliers,
                                                    int64_t dense_levels, int64_t log2_table_size, bool table_grad,
                                                    bool points_grad) {
    check_hash_inputs(points, table, resolution, multipliers, log2_table_size);
    const HashGrid grid = hash_grid(table, resolution, multipliers, dense_levels, log2_table_size);
    const int64_t count = points.size(0);
    check_hash_grad(grad_out, points, grid);
    Tensor grad_table = table_grad ? at::zeros_like(table) : Tensor();
    Tensor grad_points = points_grad ? at::zeros_like(points) : Tensor();
    // level-major gradients for the table's scatter: one transposing copy, then contiguous reads
    const Tensor level_major = table_grad ? at::empty({grid.levels, count, grid.features}, grad_out.options()) : Tensor();
    AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "hash_encode_backward_cpu", [&] {
        if (table_grad)
            FK_DISPATCH_FEATURES(grid.features, {
                transpose_levels<kFeatures>(grad_out.data_ptr<scalar_t>(), level_major.data_ptr<scalar_t>(), grid,
                                            count, true);
                hash_table_grad_loop<kFeatures>(points.data_ptr<scalar_t>(), level_major.data_ptr<scalar_t>(), grid,
                                                count, grad_table.data_ptr<scalar_t>());
            });
        if (points_grad)
            FK_DISPATCH_FEATURES(grid.features, hash_point_grad_loop<kFeatures>(points.data_ptr<scalar_t>(),
                                 table.data_ptr<scalar_t>(), grad_out.data_ptr<scalar_t>(), grid, count,
                                 grad_points.data_ptr<scalar_t>()));
    });
    return {grad_table, grad_points};
}

template <typename scalar_t>
void composite_forward_loop(const scalar_t* log_density, const scalar_t* rgb, const scalar_t* t,
                            const int64_t* starts, int64_t rays, scalar_t step, scalar_t* weights,
                            scalar_t* accumulated) {
#pragma omp parallel for schedule(static) num_threads(threads()) if (rays > 256)
    for (int64_t ray = 0; ray < rays; ++ray)
        composite_forward_ray(starts[ray], starts[ray + 1], log_density, rgb, t, step, weights, accumulated + 5 * ray);
}

template <typename scalar_t>
void composite_backward_loop(const scalar_t* grad_accumulated, const scalar_t* log_density, const scalar_t* rgb,
                             const scalar_t* t, const int64_t* starts, int64_t rays, scalar_t step,
                             scalar_t* grad_log_density, scalar_t* grad_rgb, scalar_t* grad_t) {
#pragma omp parallel for schedule(static) num_threads(threads()) if (rays > 256)
    for (int64_t ray = 0; ray < rays; ++ray)
        composite_backward_ray(starts[ray], starts[ray + 1], log_density, rgb, t, step, grad_accumulated + 5 * ray,
                               grad_log_density, grad_rgb, grad_t);
}

// Returns the per-sample weights [M] and, per ray, [alpha, r, g, b, depth sum] [R, 5].
std::tuple<Tensor, Tensor> composite_forward_cpu(const Tensor& log_density, const Tensor& rgb, const Tensor& t,
                                                 const Tensor& ray_starts, double step) {
    check_composite_inputs(log_density, rgb, t, ray_starts);
    const int64_t rays = ray_starts.size(0) - 1;
    Tensor weights = at::empty_like(log_density);
    Tensor accumulated = at::empty({rays, 5}, log_density.options());
    AT_DISPATCH_FLOATING_TYPES(log_density.scalar_type(), "composite_forward_cpu", [&] {
        composite_forward_loop(log_density.data_ptr<scalar_t>(), rgb.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(),
                               ray_starts.data_ptr<int64_t>(), rays, static_cast<scalar_t>(step),
                               weights.data_ptr<scalar_t>(), accumulated.data_ptr<scalar_t>());
    });
    return {weights, accumulated};
}

std::tuple<Tensor, Tensor, Tensor> composite_backward_cpu(const Tensor& grad_accumulated, const Tensor& log_density,
                                                          const Tensor& rgb, const Tensor& t, const Tensor& ray_starts,
                                                          double step, bool t_grad) {
    check_composite_inputs(log_density, rgb, t, ray_starts);
    const int64_t rays = ray_starts.size(0) - 1;
    check_composite_grad(grad_accumulated, log_density, rays);
    Tensor grad_log_density = at::empty_like(log_density), grad_rgb = at::empty_like(rgb);
    Tensor grad_t = t_grad ? at::empty_like(t) : Tensor();
    AT_DISPATCH_FLOATING_TYPES(log_density.scalar_type(), "composite_backward_cpu", [&] {
        composite_backward_loop(grad_accumulated.data_ptr<scalar_t>(), log_density.data_ptr<scalar_t>(),
                                rgb.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(), ray_starts.data_ptr<int64_t>(), rays,
                                static_cast<scalar_t>(step), grad_log_density.data_ptr<scalar_t>(),
                                grad_rgb.data_ptr<scalar_t>(), t_grad ? grad_t.data_ptr<scalar_t>() : nullptr);
    });
    return {grad_log_density, grad_rgb, grad_t};
}

}  // namespace

TORCH_LIBRARY(fieldkit, m) {
    m.def("hash_encode_forward(Tensor points, Tensor table, Tensor resolution, Tensor multipliers, int dense_levels, "
          "int log2_table_size) -> Tensor");
    m.def("hash_encode_backward(Tensor grad_out, Tensor points, Tensor table, Tensor resolution, Tensor multipliers, "
          "int dense_levels, int log2_table_size, bool table_grad, bool points_grad) -> (Tensor, Tensor)");
    m.def("composite_forward(Tensor log_density, Tensor rgb, Tensor t, Tensor ray_starts, float step) "
          "-> (Tensor, Tensor)");
    m.def("composite_backward(Tensor grad_accumulated, Tensor log_density, Tensor rgb, Tensor t, Tensor ray_starts, "
          "float step, bool t_grad) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(fieldkit, CPU, m) {
    m.impl("hash_encode_forward", &hash_encode_forward_cpu);
    m.impl("hash_encode_backward", &hash_encode_backward_cpu);
    m.impl("composite_forward", &composite_forward_cpu);
    m.impl("composite_backward", &composite_backward_cpu);
}

}  // namespace fieldkit

// -- occupancy-grid ray marching (marching.h): two passes over the rays, a count and then a fill
// at each ray's offset, so the packed samples come out sorted by ray and then by distance --------
#include "marching_checks.h"

namespace fieldkit {
namespace {

// Exclusive prefix sum of `counts` [R] into `starts` [R + 1]; serial, as it is cheap next to a march.
int64_t exclusive_sum(const int64_t* counts, int64_t rays, int64_t* starts) {
    starts[0] = 0;
    for (int64_t ray = 0; ray < rays; ++ray) starts[ray + 1] = starts[ray] + counts[ray];
    return starts[rays];
}

// counts [R] when `starts` is null (the first pass), else the samples at each ray's start
template <typename scalar_t>
void march_loop(const MarchJob<scalar_t>& job, int64_t rays, const int64_t* starts, int64_t* counts) {
#pragma omp parallel for schedule(dynamic, 64) num_threads(threads()) if (rays > 256)
    for (int64_t ray = 0; ray < rays; ++ray)
        if (starts == nullptr) counts[ray] = count_ray(job, ray);
        else fill_ray(job, ray, starts[ray]);
}

// -> ray_starts [R + 1], rays [M], steps [M], t [M], points [M, 3]
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> occupancy_march_cpu(
    const Tensor& origins, const Tensor& directions, const Tensor& offsets, const Tensor& aabb,
    const Tensor& occupied, int64_t resolution, double step, int64_t most) {
    check_march_inputs(origins, directions, offsets, aabb, occupied, resolution, most);
    const int64_t rays = origins.size(0);
    const auto longs = origins.options().dtype(at::kLong);
    Tensor counts = at::empty({rays}, longs), starts = at::empty({rays + 1}, longs);
    Tensor ray_of, steps, t, points;
    AT_DISPATCH_FLOATING_TYPES(origins.scalar_type(), "occupancy_march_cpu", [&] {
        MarchJob<scalar_t> job{origins.data_ptr<scalar_t>(), directions.data_ptr<scalar_t>(),
                               offsets.data_ptr<scalar_t>(),
                               MarchGrid<scalar_t>{aabb.data_ptr<scalar_t>(), occupied.data_ptr<bool>(), resolution},
                               static_cast<scalar_t>(step), most, nullptr, nullptr, nullptr, nullptr};
        march_loop(job, rays, nullptr, counts.data_ptr<int64_t>());
        const int64_t total = exclusive_sum(counts.data_ptr<int64_t>(), rays, starts.data_ptr<int64_t>());
        ray_of = at::empty({total}, longs);
        steps = at::empty({total}, longs);
        t = at::empty({total}, origins.options());
        points = at::empty({total, 3}, origins.options());
        job.rays = ray_of.data_ptr<int64_t>();
        job.steps = steps.data_ptr<int64_t>();
        job.t = t.data_ptr<scalar_t>();
        job.points = points.data_ptr<scalar_t>();
        march_loop(job, rays, starts.data_ptr<int64_t>(), nullptr);
    });
    return {starts, ray_of, steps, t, points};
}

// The loops live in templates, not in AT_DISPATCH's lambda (see above): a ray's samples from its
// cursor up to the segment's end, counted only while the ray is not yet opaque.
template <typename scalar_t>
void segment_count_loop(const int64_t* ray_starts, const int64_t* steps, const int64_t* cursor,
                        const scalar_t* optical_depth, int64_t rays, int64_t segment_end, scalar_t opaque,
                        int64_t* counts, int64_t* next) {
#pragma omp parallel for schedule(static) num_threads(threads()) if (rays > 1024)
    for (int64_t ray = 0; ray < rays; ++ray)
        counts[ray] = segment_ray(cursor[ray], ray_starts[ray + 1], steps, segment_end, optical_depth[ray], opaque,
                                  next + ray);
}

template <typename scalar_t>
void visibility_loop(const int64_t* segment_starts, const scalar_t* depth, int64_t rays, scalar_t epsilon,
                     scalar_t* optical_depth, bool* visible) {
#pragma omp parallel for schedule(static) num_threads(threads()) if (rays > 1024)
    for (int64_t ray = 0; ray < rays; ++ray)
        visibility_ray(segment_starts[ray], segment_starts[ray + 1], depth, optical_depth + ray, epsilon, visible);
}

// The samples of one segment of the march (steps before `segment_end`) of the rays not yet
// opaque: -> segment_starts [R + 1], their indices [K] into the packed samples, and each ray's
// cursor past the segment [R].
std::tuple<Tensor, Tensor, Tensor> march_segment_cpu(const Tensor& ray_starts, const Tensor& steps, const Tensor& cursor,
                                                     const Tensor& optical_depth, int64_t segment_end,
                                                     double opaque_depth) {
    check_segment_inputs(ray_starts, steps, cursor, optical_depth);
    const int64_t rays = ray_starts.size(0) - 1;
    const auto longs = ray_starts.options();
    Tensor counts = at::empty({rays}, longs), starts = at::empty({rays + 1}, longs), next = at::empty({rays}, longs);
    const int64_t *from = cursor.data_ptr<int64_t>();
    int64_t* count = counts.data_ptr<int64_t>();
    AT_DISPATCH_FLOATING_TYPES(optical_depth.scalar_type(), "march_segment_cpu", [&] {
        segment_count_loop(ray_starts.data_ptr<int64_t>(), steps.data_ptr<int64_t>(), from,
                           optical_depth.data_ptr<scalar_t>(), rays, segment_end, static_cast<scalar_t>(opaque_depth),
                           count, next.data_ptr<int64_t>());
    });
    const int64_t total = exclusive_sum(count, rays, starts.data_ptr<int64_t>());
    Tensor index = at::empty({total}, longs);
    int64_t *into = index.data_ptr<int64_t>(), *start = starts.data_ptr<int64_t>();
#pragma omp parallel for schedule(static) num_threads(threads()) if (rays > 1024)
    for (int64_t ray = 0; ray < rays; ++ray)
        for (int64_t i = 0; i < count[ray]; ++i) into[start[ray] + i] = from[ray] + i;
    return {starts, index, next};
}

// Which samples of a segment light still reaches, given their optical depths [K]:
// -> visible [K] and each ray's optical depth after the segment [R].
std::tuple<Tensor, Tensor> march_visibility_cpu(const Tensor& segment_starts, const Tensor& depth,
                                                const Tensor& optical_depth, double epsilon) {
    check_visibility_inputs(segment_starts, depth, optical_depth);
    const int64_t rays = optical_depth.size(0);
    Tensor visible = at::empty({depth.size(0)}, depth.options().dtype(at::kBool));
    Tensor after = optical_depth.clone();
    AT_DISPATCH_FLOATING_TYPES(depth.scalar_type(), "march_visibility_cpu", [&] {
        visibility_loop(segment_starts.data_ptr<int64_t>(), depth.data_ptr<scalar_t>(), rays,
                        static_cast<scalar_t>(epsilon), after.data_ptr<scalar_t>(), visible.data_ptr<bool>());
    });
    return {visible, after};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fieldkit, m) {
    m.def("occupancy_march(Tensor origins, Tensor directions, Tensor offsets, Tensor aabb, Tensor occupied, "
          "int resolution, float step, int most) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
    m.def("march_segment(Tensor ray_starts, Tensor steps, Tensor cursor, Tensor optical_depth, int segment_end, "
          "float opaque_depth) -> (Tensor, Tensor, Tensor)");
    m.def("march_visibility(Tensor segment_starts, Tensor depth, Tensor optical_depth, float epsilon) "
          "-> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(fieldkit, CPU, m) {
    m.impl("occupancy_march", &occupancy_march_cpu);
    m.impl("march_segment", &march_segment_cpu);
    m.impl("march_visibility", &march_visibility_cpu);
}

}  // namespace fieldkit
