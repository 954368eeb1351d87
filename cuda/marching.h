// Occupancy-grid ray marching: the work of one ray. Mirrors fieldkit/render/volume.py's
// `sample_along_rays_reference` (evenly spaced samples in the box's occupied cells) and
// `visible_samples_reference` (early termination once a ray's transmittance falls below epsilon).
// Sample positions come from the grid and the step rule, so these ops have no gradient.
//
// Every float operation is rounded as torch's separate tensor ops round it (no fused
// multiply-add: nvcc would contract `a * b + c`, so the device path uses the _rn intrinsics), so
// the native samples are bit-identical to the reference's.
#pragma once

#include <cmath>
#include <cstdint>

#include "common.h"
#include "volume.h"

namespace fieldkit {

FK_HOST_DEVICE inline float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
FK_HOST_DEVICE inline double mul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
}
FK_HOST_DEVICE inline float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
FK_HOST_DEVICE inline double add_rn(double a, double b) {
#ifdef __CUDA_ARCH__
    return __dadd_rn(a, b);
#else
    return a + b;
#endif
}

template <typename scalar_t>
FK_HOST_DEVICE inline scalar_t larger(scalar_t a, scalar_t b) { return a > b ? a : b; }
template <typename scalar_t>
FK_HOST_DEVICE inline scalar_t smaller(scalar_t a, scalar_t b) { return a < b ? a : b; }

// The occupancy grid as the marcher reads it: its box [2, 3] (min corner, then max corner) and
// one flag per cell, x-major ((x * resolution + y) * resolution + z).
template <typename scalar_t>
struct MarchGrid {
    const scalar_t* aabb;
    const bool* occupied;
    int64_t resolution;
};

// One ray's march: where it enters and leaves the box, its first sample's offset (jitter, in
// steps) and the samples before the exit that it may take at most.
template <typename scalar_t>
struct RaySpan {
    scalar_t near, far, offset;
    int64_t count;
};

// The slab method as `ray_aabb` computes it: entry clamped to 0; exit < entry is a miss.
template <typename scalar_t>
FK_HOST_DEVICE inline RaySpan<scalar_t> ray_span(const scalar_t* origin, const scalar_t* direction, scalar_t offset,
                                                 const MarchGrid<scalar_t>& grid, scalar_t step, int64_t most) {
    const scalar_t tiny = static_cast<scalar_t>(1e-9);
    scalar_t near = 0, far = 0;
    for (int axis = 0; axis < 3; ++axis) {
        const scalar_t safe = (direction[axis] < 0 ? -direction[axis] : direction[axis]) < tiny ? tiny : direction[axis];
        const scalar_t t0 = (grid.aabb[axis] - origin[axis]) / safe, t1 = (grid.aabb[3 + axis] - origin[axis]) / safe;
        const scalar_t enter = smaller(t0, t1), leave = larger(t0, t1);
        near = axis == 0 ? enter : larger(near, enter);
        far = axis == 0 ? leave : smaller(far, leave);
    }
    near = larger(near, static_cast<scalar_t>(0));
    // samples before the exit, one more for rounding (the test on t in `march_ray` decides)
    const scalar_t steps = add_rn(ceil((far - near) / step - offset), static_cast<scalar_t>(1));
    const scalar_t clamped = smaller(larger(steps, static_cast<scalar_t>(0)), static_cast<scalar_t>(most));
    return RaySpan<scalar_t>{near, far, offset, static_cast<int64_t>(clamped)};
}

// Whether `point` lies in the box and in an occupied cell (`OccupancyGrid.is_occupied`).
template <typename scalar_t>
FK_HOST_DEVICE inline bool occupied_at(const scalar_t* point, const MarchGrid<scalar_t>& grid) {
    const scalar_t top = static_cast<scalar_t>(1 - 1e-6);  // rounded as torch rounds its clamp bound
    int64_t index = 0;
    bool inside = true;
    for (int axis = 0; axis < 3; ++axis) {
        const scalar_t unit = (point[axis] - grid.aabb[axis]) / (grid.aabb[3 + axis] - grid.aabb[axis]);
        inside = inside && unit >= 0 && unit < 1;
        const scalar_t clamped = smaller(larger(unit, static_cast<scalar_t>(0)), top);
        index = index * grid.resolution +
                static_cast<int64_t>(mul_rn(clamped, static_cast<scalar_t>(grid.resolution)));
    }
    return inside && grid.occupied[index];
}

// Visits the ray's samples in the box's occupied cells, in order: `emit(step, t, point)`.
// t = near + (step + offset) * step_size, the point origin + t * direction.
template <typename scalar_t, typename Emit>
FK_HOST_DEVICE inline void march_ray(const scalar_t* origin, const scalar_t* direction, const RaySpan<scalar_t>& span,
                                     const MarchGrid<scalar_t>& grid, scalar_t step, Emit& emit) {
    for (int64_t k = 0; k < span.count; ++k) {
        const scalar_t t = add_rn(span.near, mul_rn(add_rn(static_cast<scalar_t>(k), span.offset), step));
        if (!(t < span.far)) break;  // t grows with k: no later sample is before the exit either
        scalar_t point[3];
        for (int axis = 0; axis < 3; ++axis) point[axis] = add_rn(origin[axis], mul_rn(t, direction[axis]));
        if (occupied_at(point, grid)) emit(k, t, point);
    }
}

struct CountSamples {
    int64_t count = 0;
    template <typename scalar_t>
    FK_HOST_DEVICE void operator()(int64_t, scalar_t, const scalar_t*) { ++count; }
};

// Writes one ray's samples into the packed outputs from index `at` on.
template <typename scalar_t>
struct WriteSamples {
    int64_t ray, at;
    int64_t *rays, *steps;
    scalar_t *t, *points;
    FK_HOST_DEVICE void operator()(int64_t k, scalar_t distance, const scalar_t* point) {
        rays[at] = ray;
        steps[at] = k;
        t[at] = distance;
        for (int axis = 0; axis < 3; ++axis) points[3 * at + axis] = point[axis];
        ++at;
    }
};

// The packed outputs of a march, and the step rule both of its passes follow.
template <typename scalar_t>
struct MarchJob {
    const scalar_t *origins, *directions, *offsets;
    MarchGrid<scalar_t> grid;
    scalar_t step;
    int64_t most;
    int64_t *rays, *steps;
    scalar_t *t, *points;
};

// The first pass over one ray: how many samples it keeps.
template <typename scalar_t>
FK_HOST_DEVICE inline int64_t count_ray(const MarchJob<scalar_t>& job, int64_t ray) {
    const scalar_t *origin = job.origins + 3 * ray, *direction = job.directions + 3 * ray;
    CountSamples counter;
    march_ray(origin, direction, ray_span(origin, direction, job.offsets[ray], job.grid, job.step, job.most), job.grid,
              job.step, counter);
    return counter.count;
}

// The second pass over one ray: its samples, from its start in the packed outputs on.
template <typename scalar_t>
FK_HOST_DEVICE inline void fill_ray(const MarchJob<scalar_t>& job, int64_t ray, int64_t start) {
    const scalar_t *origin = job.origins + 3 * ray, *direction = job.directions + 3 * ray;
    WriteSamples<scalar_t> writer{ray, start, job.rays, job.steps, job.t, job.points};
    march_ray(origin, direction, ray_span(origin, direction, job.offsets[ray], job.grid, job.step, job.most), job.grid,
              job.step, writer);
}

// One ray's samples from its cursor up to `segment_end` (in steps): the cursor past them, and
// how many to evaluate (none once the ray is opaque).
template <typename scalar_t>
FK_HOST_DEVICE inline int64_t segment_ray(int64_t cursor, int64_t ray_end, const int64_t* steps, int64_t segment_end,
                                          scalar_t optical_depth, scalar_t opaque, int64_t* next) {
    int64_t end = cursor;
    while (end < ray_end && steps[end] < segment_end) ++end;
    *next = end;
    return optical_depth < opaque ? end - cursor : 0;
}

// Early termination of one ray over one segment of its samples, after their optical depths
// (density * step) were evaluated: a sample is visible while the transmittance before it,
// exp(-optical depth so far), is above `epsilon`. The reference sums the segment's earlier depths
// in double and adds them to the ray's float total; the ray's total then grows in the ray's
// precision, sample by sample, as `index_add_` adds them.
template <typename scalar_t>
FK_HOST_DEVICE inline void visibility_ray(int64_t begin, int64_t end, const scalar_t* depth, scalar_t* optical_depth,
                                          scalar_t epsilon, bool* visible) {
    double running = 0;
    scalar_t total = *optical_depth;
    for (int64_t i = begin; i < end; ++i) {
        const scalar_t before = add_rn(*optical_depth, static_cast<scalar_t>(running));
        visible[i] = exp_of(-before) > epsilon;
        running += depth[i];
        total = add_rn(total, depth[i]);
    }
    *optical_depth = total;
}

}  // namespace fieldkit
