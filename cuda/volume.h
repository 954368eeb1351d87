// Front-to-back compositing of one ray's packed samples: the work of one ray.
// Mirrors fieldkit/render/volume.py::composite_reference (the specification): optical depth
// exp(log_density) * step, transmittance exp(-optical depth before the sample), weight
// transmittance * (1 - exp(-optical depth)), and per ray [alpha, rgb (3), depth sum].
#pragma once

#include <cmath>

#include "common.h"

namespace fieldkit {

// exp in the sample's own precision: float's expf is several times cheaper than double's exp
FK_HOST_DEVICE inline float exp_of(float value) { return expf(value); }
FK_HOST_DEVICE inline double exp_of(double value) { return exp(value); }

// the reference's truncated exponential: exp(x) forward, exp(min(x, 15)) as its derivative
constexpr double kGradientExponentCap = 15.0;

template <typename scalar_t>
FK_HOST_DEVICE inline void composite_forward_ray(int64_t begin, int64_t end, const scalar_t* log_density,
                                                 const scalar_t* rgb, const scalar_t* t, scalar_t step,
                                                 scalar_t* weights, scalar_t* accumulated) {
    // sums in double: a ray's running optical depth and totals stay exact to float precision
    double before = 0, alpha = 0, colour[3] = {0, 0, 0}, depth = 0;
    for (int64_t i = begin; i < end; ++i) {
        const scalar_t optical = exp_of(log_density[i]) * step;
        const scalar_t transmittance = exp_of(-static_cast<scalar_t>(before));
        const scalar_t weight = transmittance * (1 - exp_of(-optical));
        weights[i] = weight;
        alpha += weight;
        for (int k = 0; k < 3; ++k) colour[k] += weight * rgb[3 * i + k];
        depth += weight * t[i];
        before += optical;
    }
    accumulated[0] = static_cast<scalar_t>(alpha);
    for (int k = 0; k < 3; ++k) accumulated[1 + k] = static_cast<scalar_t>(colour[k]);
    accumulated[4] = static_cast<scalar_t>(depth);
}

// With v_i = g_alpha + <g_rgb, rgb_i> + g_depth t_i the loss is sum_i w_i v_i, and
// d/d optical_k = T_k exp(-optical_k) v_k - sum_{i > k} w_i v_i. The suffix sum is the total
// less the prefix, both in double, so that one pass after the total suffices.
template <typename scalar_t>
FK_HOST_DEVICE inline void composite_backward_ray(int64_t begin, int64_t end, const scalar_t* log_density,
                                                  const scalar_t* rgb, const scalar_t* t, scalar_t step,
                                                  const scalar_t* grad_accumulated, scalar_t* grad_log_density,
                                                  scalar_t* grad_rgb, scalar_t* grad_t) {
    const scalar_t g_alpha = grad_accumulated[0], g_depth = grad_accumulated[4];
    const scalar_t* g_rgb = grad_accumulated + 1;
    double total = 0, before = 0;
    for (int64_t i = begin; i < end; ++i) {
        const scalar_t optical = exp_of(log_density[i]) * step;
        const scalar_t weight = exp_of(-static_cast<scalar_t>(before)) *
                                (1 - exp_of(-optical));
        const double value = g_alpha + g_rgb[0] * rgb[3 * i] + g_rgb[1] * rgb[3 * i + 1] +
                             g_rgb[2] * rgb[3 * i + 2] + g_depth * t[i];
        total += weight * value;
        before += optical;
    }
    double prefix = 0;
    before = 0;
    for (int64_t i = begin; i < end; ++i) {
        const scalar_t optical = exp_of(log_density[i]) * step;
        const scalar_t transmittance = exp_of(-static_cast<scalar_t>(before));
        const scalar_t through = exp_of(-optical);
        const scalar_t weight = transmittance * (1 - through);
        const double value = g_alpha + g_rgb[0] * rgb[3 * i] + g_rgb[1] * rgb[3 * i + 1] +
                             g_rgb[2] * rgb[3 * i + 2] + g_depth * t[i];
        prefix += weight * value;
        const double by_optical = transmittance * through * value - (total - prefix);
        const scalar_t capped = log_density[i] < kGradientExponentCap ? log_density[i]
                                                                       : static_cast<scalar_t>(kGradientExponentCap);
        if (grad_log_density) grad_log_density[i] = static_cast<scalar_t>(by_optical * step * exp_of(capped));
        if (grad_rgb)
            for (int k = 0; k < 3; ++k) grad_rgb[3 * i + k] = weight * g_rgb[k];
        if (grad_t) grad_t[i] = weight * g_depth;
        before += optical;
    }
}

}  // namespace fieldkit
