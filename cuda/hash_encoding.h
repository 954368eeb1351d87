// Multiresolution hash encoding (instant-ngp): the work of one (point, level) pair.
// Mirrors fieldkit/fields/encodings.py::HashEncoding.reference, which is the specification:
// level-major table [levels * table_size, features], dense indexing on the coarse levels,
// instant-ngp's spatial hash on the fine ones, corners ordered c = 4 ix + 2 iy + iz.
#pragma once

#include <cmath>

#include "common.h"

namespace fieldkit {

struct HashGrid {
    const float* resolution;     // [levels]
    const int32_t* multipliers;  // [levels, 3]: dense strides or hash primes
    int64_t levels;
    int64_t features;
    int64_t dense_levels;
    uint32_t table_size;  // a power of two
};

// floor without a libm call (x86-64's baseline has no rounding instruction); exact for the
// grid's coordinates, which lie far inside the int32 range
template <typename scalar_t>
FK_HOST_DEVICE inline scalar_t floor_of(scalar_t value) {
    const scalar_t truncated = static_cast<scalar_t>(static_cast<int32_t>(value));
    return truncated > value ? truncated - 1 : truncated;
}

template <typename scalar_t>
struct Corners {
    uint32_t row[8];        // table rows, level offset included
    scalar_t weight[8];     // trilinear weights
    scalar_t axis[3][2];    // per axis, the weights (1 - f, f) of its two corners
};

template <typename scalar_t>
FK_HOST_DEVICE inline void hash_corners(const scalar_t* point, int64_t level, const HashGrid& grid,
                                        Corners<scalar_t>& out) {
    const scalar_t resolution = static_cast<scalar_t>(grid.resolution[level]);
    uint32_t terms[3][2];
    for (int d = 0; d < 3; ++d) {
        const scalar_t position = point[d] * resolution;
        // a coordinate of exactly 1 belongs to the last cell, not to one past the grid
        scalar_t corner = floor_of(position);
        if (corner > resolution - 1) corner = resolution - 1;
        const scalar_t fraction = position - corner;
        out.axis[d][0] = 1 - fraction;
        out.axis[d][1] = fraction;
        // uint32 products wrap like the int32 ones of the reference: the same low bits
        const uint32_t low = static_cast<uint32_t>(static_cast<int32_t>(corner));
        const uint32_t multiplier = static_cast<uint32_t>(grid.multipliers[level * 3 + d]);
        terms[d][0] = low * multiplier;
        terms[d][1] = (low + 1u) * multiplier;
    }
    const bool dense = level < grid.dense_levels;
    const uint32_t mask = grid.table_size - 1u;
    const uint32_t offset = static_cast<uint32_t>(level) * grid.table_size;
    for (int c = 0; c < 8; ++c) {
        const int ix = c >> 2, iy = (c >> 1) & 1, iz = c & 1;
        const uint32_t key = dense ? terms[0][ix] + terms[1][iy] + terms[2][iz]
                                   : terms[0][ix] ^ terms[1][iy] ^ terms[2][iz];
        // in-range points already give dense keys below table_size; the mask keeps a point
        // outside the unit cube (or NaN) inside its own level instead of reading out of bounds
        out.row[c] = offset + (key & mask);
        out.weight[c] = (out.axis[0][ix] * out.axis[1][iy]) * out.axis[2][iz];
    }
}

// The bodies take the features per level as a template argument (0: read it from the grid at run
// time): with the count known, the compiler unrolls the feature loops, which dominate otherwise.
template <int kFeatures>
FK_HOST_DEVICE inline int64_t feature_count(const HashGrid& grid) {
    return kFeatures > 0 ? kFeatures : grid.features;
}

// features[f] = sum_c weight_c * table[row_c, f]
template <int kFeatures, typename scalar_t>
FK_HOST_DEVICE inline void hash_encode_forward_one(const scalar_t* point, int64_t level, const HashGrid& grid,
                                                   const scalar_t* table, scalar_t* features) {
    const int64_t count = feature_count<kFeatures>(grid);
    Corners<scalar_t> corners;
    hash_corners(point, level, grid, corners);
    for (int64_t f = 0; f < count; ++f) features[f] = 0;
    for (int c = 0; c < 8; ++c) {
        const scalar_t* row = table + static_cast<int64_t>(corners.row[c]) * count;
        for (int64_t f = 0; f < count; ++f) features[f] += corners.weight[c] * row[f];
    }
}

// grad_table[row_c, f] += weight_c * grad[f]
template <int kFeatures, typename scalar_t, typename Add>
FK_HOST_DEVICE inline void hash_encode_backward_table_one(const scalar_t* point, int64_t level, const HashGrid& grid,
                                                          const scalar_t* grad, scalar_t* grad_table, Add add) {
    const int64_t count = feature_count<kFeatures>(grid);
    Corners<scalar_t> corners;
    hash_corners(point, level, grid, corners);
    for (int c = 0; c < 8; ++c) {
        scalar_t* row = grad_table + static_cast<int64_t>(corners.row[c]) * count;
        for (int64_t f = 0; f < count; ++f) add(row + f, corners.weight[c] * grad[f]);
    }
}

// grad_point[d] += resolution * sum_c <grad, table[row_c]> * d weight_c / d fraction_d
// (the cell corner is piecewise constant in the point, so only the fractions carry gradient)
template <int kFeatures, typename scalar_t>
FK_HOST_DEVICE inline void hash_encode_backward_point_one(const scalar_t* point, int64_t level, const HashGrid& grid,
                                                          const scalar_t* table, const scalar_t* grad,
                                                          scalar_t* grad_point) {
    const int64_t count = feature_count<kFeatures>(grid);
    Corners<scalar_t> corners;
    hash_corners(point, level, grid, corners);
    scalar_t by_fraction[3] = {0, 0, 0};
    for (int c = 0; c < 8; ++c) {
        const int ix = c >> 2, iy = (c >> 1) & 1, iz = c & 1;
        const scalar_t* row = table + static_cast<int64_t>(corners.row[c]) * count;
        scalar_t by_weight = 0;
        for (int64_t f = 0; f < count; ++f) by_weight += grad[f] * row[f];
        // d axis_weight / d fraction is -1 for the lower corner and +1 for the upper one
        by_fraction[0] += by_weight * (ix ? 1 : -1) * corners.axis[1][iy] * corners.axis[2][iz];
        by_fraction[1] += by_weight * (iy ? 1 : -1) * corners.axis[0][ix] * corners.axis[2][iz];
        by_fraction[2] += by_weight * (iz ? 1 : -1) * corners.axis[0][ix] * corners.axis[1][iy];
    }
    const scalar_t resolution = static_cast<scalar_t>(grid.resolution[level]);
    for (int d = 0; d < 3; ++d) grad_point[d] += resolution * by_fraction[d];
}

}  // namespace fieldkit
