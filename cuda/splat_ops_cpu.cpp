// The Gaussian splat ops' schemas and their CPU launchers (OpenMP), over the bodies in splats.h.
//
// Projection runs one thread per splat over every camera, so its gradients need no atomics.
// Rasterization bins each splat's visible pixel box (the torch path's pixel-splat pairs) into
// 16 px tiles, sorts each tile's splats front to back, and gives whole tiles to threads. Within a
// tile the work is splat-major: each splat visits only the pixels of its box, against per-pixel
// transmittances kept in the tile's own buffers, so pixels outside a footprint cost nothing (a
// GPU-style pixel-major loop would test every splat of the tile at every pixel). Each pair of a
// splat and a tile owns one gradient slot, summed per splat afterwards in a fixed order: no atomics,
// and the same sums on every run whatever the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <numeric>
#include <tuple>
#include <vector>

#include "splat_op_checks.h"
#include "splats.h"

namespace fieldkit {
namespace {

using at::Tensor;

int threads() { return std::max(1, at::get_num_threads()); }

template <typename scalar_t>
void project_forward_loop(const Tensor& means, const Tensor& quaternions, const Tensor& scales, const Tensor& viewmats,
                          const Tensor& intrinsics, Tensor& means2d, Tensor& conics, Tensor& depths, Tensor& radii) {
    const int64_t cameras = viewmats.size(0), count = means.size(0);
    const scalar_t *mean = means.data_ptr<scalar_t>(), *quaternion = quaternions.data_ptr<scalar_t>(),
                   *scale = scales.data_ptr<scalar_t>();
    scalar_t *mean2d = means2d.data_ptr<scalar_t>(), *conic = conics.data_ptr<scalar_t>(),
             *depth = depths.data_ptr<scalar_t>();
    int32_t* radius = radii.data_ptr<int32_t>();
    for (int64_t camera = 0; camera < cameras; ++camera) {
        const SplatCamera<scalar_t> view = splat_camera<scalar_t>(viewmats, intrinsics, camera);
#pragma omp parallel for schedule(static) num_threads(threads()) if (count > 1024)
        for (int64_t n = 0; n < count; ++n) {
            const int64_t i = camera * count + n;
            project_splat(mean + 3 * n, quaternion + 4 * n, scale + 3 * n, view, mean2d + 2 * i, conic + 3 * i,
                          depth + i, radius + 2 * i);
        }
    }
}

std::tuple<Tensor, Tensor, Tensor, Tensor> splat_project_forward_cpu(const Tensor& means, const Tensor& quaternions,
                                                                     const Tensor& scales, const Tensor& viewmats,
                                                                     const Tensor& intrinsics) {
    check_projection_inputs(means, quaternions, scales, viewmats, intrinsics);
    const int64_t cameras = viewmats.size(0), count = means.size(0);
    Tensor means2d = at::empty({cameras, count, 2}, means.options());
    Tensor conics = at::empty({cameras, count, 3}, means.options());
    Tensor depths = at::empty({cameras, count}, means.options());
    Tensor radii = at::empty({cameras, count, 2}, means.options().dtype(at::kInt));
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "splat_project_forward_cpu", [&] {
        project_forward_loop<scalar_t>(means, quaternions, scales, viewmats, intrinsics, means2d, conics, depths,
                                       radii);
    });
    return {means2d, conics, depths, radii};
}

template <typename scalar_t>
void project_backward_loop(const Tensor& means, const Tensor& quaternions, const Tensor& scales, const Tensor& viewmats,
                           const Tensor& intrinsics, const Tensor& grad_means2d, const Tensor& grad_conics,
                           const Tensor& grad_depths, Tensor& grad_means, Tensor& grad_quaternions,
                           Tensor& grad_scales) {
    const int64_t cameras = viewmats.size(0), count = means.size(0);
    std::vector<SplatCamera<scalar_t>> views;
    for (int64_t camera = 0; camera < cameras; ++camera)
        views.push_back(splat_camera<scalar_t>(viewmats, intrinsics, camera));
    const scalar_t *mean = means.data_ptr<scalar_t>(), *quaternion = quaternions.data_ptr<scalar_t>(),
                   *scale = scales.data_ptr<scalar_t>(), *g_mean2d = grad_means2d.data_ptr<scalar_t>(),
                   *g_conic = grad_conics.data_ptr<scalar_t>(), *g_depth = grad_depths.data_ptr<scalar_t>();
    scalar_t *g_mean = grad_means.data_ptr<scalar_t>(), *g_quaternion = grad_quaternions.data_ptr<scalar_t>(),
             *g_scale = grad_scales.data_ptr<scalar_t>();
#pragma omp parallel for schedule(static) num_threads(threads()) if (count > 1024)
    for (int64_t n = 0; n < count; ++n)
        for (int64_t camera = 0; camera < cameras; ++camera) {
            const int64_t i = camera * count + n;
            project_splat_backward(mean + 3 * n, quaternion + 4 * n, scale + 3 * n, views[camera], g_mean2d + 2 * i,
                                   g_conic + 3 * i, g_depth[i], g_mean + 3 * n, g_quaternion + 4 * n, g_scale + 3 * n);
        }
}

std::tuple<Tensor, Tensor, Tensor> splat_project_backward_cpu(const Tensor& means, const Tensor& quaternions,
                                                              const Tensor& scales, const Tensor& viewmats,
                                                              const Tensor& intrinsics, const Tensor& grad_means2d,
                                                              const Tensor& grad_conics, const Tensor& grad_depths) {
    check_projection_inputs(means, quaternions, scales, viewmats, intrinsics);
    check_projection_grads(means, viewmats, grad_means2d, grad_conics, grad_depths);
    Tensor grad_means = at::zeros(means.sizes(), means.options());
    Tensor grad_quaternions = at::zeros(quaternions.sizes(), means.options());
    Tensor grad_scales = at::zeros(scales.sizes(), means.options());
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "splat_project_backward_cpu", [&] {
        project_backward_loop<scalar_t>(means, quaternions, scales, viewmats, intrinsics, grad_means2d, grad_conics,
                                        grad_depths, grad_means, grad_quaternions, grad_scales);
    });
    return {grad_means, grad_quaternions, grad_scales};
}

// -- rasterization -------------------------------------------------------------------------------

// Tiles and the order of their splats, built once by the forward pass and saved for the backward.
struct Binning {
    Tensor boxes;         // [C * N, 4] int32 visible pixel box: x0, y0, x1, y1 (half-open)
    Tensor pair_offsets;  // [C * N + 1] int64 a splat's pairs (with the tiles its box touches) are contiguous
    Tensor pair_splats;   // [I] int32 the splat (c * N + n) of each pair
    Tensor tile_offsets;  // [C * T + 1] int64 a tile's entries in tile_pairs
    Tensor tile_pairs;    // [I] int32 pairs grouped by tile, front to back within a tile
};

template <typename scalar_t>
Binning bin_splats(const Tensor& geometry, const Tensor& opacities, const Tensor& depths, const Tensor& radii,
                   const SplatImage& image) {
    const int64_t cameras = geometry.size(0), count = geometry.size(1), splats = cameras * count;
    const auto int_options = geometry.options().dtype(at::kInt), long_options = geometry.options().dtype(at::kLong);
    Binning binning;
    binning.boxes = at::empty({splats, 4}, int_options);
    binning.pair_offsets = at::empty({splats + 1}, long_options);
    const scalar_t *table = geometry.data_ptr<scalar_t>(), *opacity = opacities.data_ptr<scalar_t>();
    const int32_t* radius = radii.data_ptr<int32_t>();
    int32_t* boxes = binning.boxes.data_ptr<int32_t>();
    int64_t* pair_offsets = binning.pair_offsets.data_ptr<int64_t>();
#pragma omp parallel for schedule(static) num_threads(threads()) if (splats > 4096)
    for (int64_t i = 0; i < splats; ++i) {
        splat_box(table + kSplatGeometry * i, opacity[i % count], radius + 2 * i, image, boxes + 4 * i);
        pair_offsets[i + 1] = tile_span(boxes + 4 * i);
    }
    pair_offsets[0] = 0;
    std::partial_sum(pair_offsets, pair_offsets + splats + 1, pair_offsets);
    const int64_t pairs = pair_offsets[splats], tiles_per_image = image.tiles();
    binning.pair_splats = at::empty({pairs}, int_options);
    Tensor pair_tiles = at::empty({pairs}, int_options);
    int32_t *pair_splats = binning.pair_splats.data_ptr<int32_t>(), *pair_tile = pair_tiles.data_ptr<int32_t>();
#pragma omp parallel for schedule(static) num_threads(threads()) if (splats > 4096)
    for (int64_t i = 0; i < splats; ++i) {
        const int32_t* box = boxes + 4 * i;
        int64_t at = pair_offsets[i];
        if (box[2] <= box[0]) continue;
        for (int64_t ty = box[1] / kSplatTile; ty <= (box[3] - 1) / kSplatTile; ++ty)
            for (int64_t tx = box[0] / kSplatTile; tx <= (box[2] - 1) / kSplatTile; ++tx, ++at) {
                pair_splats[at] = static_cast<int32_t>(i);
                pair_tile[at] = static_cast<int32_t>(i / count * tiles_per_image + ty * image.tiles_x() + tx);
            }
    }
    // a counting sort by tile keeps each tile's pairs in splat order; the depth sort follows
    const int64_t tiles = cameras * tiles_per_image;
    binning.tile_offsets = at::zeros({tiles + 1}, long_options);
    binning.tile_pairs = at::empty({pairs}, int_options);
    int64_t* tile_offsets = binning.tile_offsets.data_ptr<int64_t>();
    int32_t* tile_pairs = binning.tile_pairs.data_ptr<int32_t>();
    for (int64_t p = 0; p < pairs; ++p) ++tile_offsets[pair_tile[p] + 1];
    std::partial_sum(tile_offsets, tile_offsets + tiles + 1, tile_offsets);
    std::vector<int64_t> cursor(tile_offsets, tile_offsets + tiles);
    for (int64_t p = 0; p < pairs; ++p) tile_pairs[cursor[pair_tile[p]]++] = static_cast<int32_t>(p);
    const scalar_t* depth = depths.data_ptr<scalar_t>();
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads()) if (tiles > 1)
    for (int64_t tile = 0; tile < tiles; ++tile)
        std::sort(tile_pairs + tile_offsets[tile], tile_pairs + tile_offsets[tile + 1], [&](int32_t a, int32_t b) {
            const scalar_t depth_a = depth[pair_splats[a]], depth_b = depth[pair_splats[b]];
            return depth_a < depth_b || (depth_a == depth_b && pair_splats[a] < pair_splats[b]);
        });
    return binning;
}

// Walks one tile's pairs front to back: every pixel of each splat's box within the tile that is
// still accumulating. `visit(pixel, pair, transmittance)` sees each pair that contributes, before
// the pixel's transmittance moves past it; `done_with(entry)` follows each splat's pixels.
template <typename scalar_t, typename Visit, typename Done>
void walk_tile(int64_t tile, const Binning& binning, const scalar_t* table, const scalar_t* opacity, int64_t count,
               const SplatImage& image, double* transmittance, uint8_t* stopped, Visit&& visit, Done&& done_with) {
    const int64_t *tile_offsets = binning.tile_offsets.data_ptr<int64_t>();
    const int32_t* tile_pairs = binning.tile_pairs.data_ptr<int32_t>();
    const int32_t *pair_splats = binning.pair_splats.data_ptr<int32_t>(), *boxes = binning.boxes.data_ptr<int32_t>();
    const int64_t local = tile % image.tiles(), tile_x0 = local % image.tiles_x() * kSplatTile,
                  tile_y0 = local / image.tiles_x() * kSplatTile;
    const int64_t tile_x1 = std::min<int64_t>(tile_x0 + kSplatTile, image.width),
                  tile_y1 = std::min<int64_t>(tile_y0 + kSplatTile, image.height);
    int64_t live = (tile_x1 - tile_x0) * (tile_y1 - tile_y0);
    std::fill(transmittance, transmittance + kSplatTile * kSplatTile, 1.0);
    std::fill(stopped, stopped + kSplatTile * kSplatTile, 0);
    for (int64_t entry = tile_offsets[tile]; entry < tile_offsets[tile + 1] && live > 0; ++entry) {
        const int64_t splat = pair_splats[tile_pairs[entry]];
        const scalar_t* row = table + kSplatGeometry * splat;
        const scalar_t splat_opacity = opacity[splat % count];
        const int32_t* box = boxes + 4 * splat;
        const int64_t x0 = std::max<int64_t>(box[0], tile_x0), x1 = std::min<int64_t>(box[2], tile_x1);
        const int64_t y0 = std::max<int64_t>(box[1], tile_y0), y1 = std::min<int64_t>(box[3], tile_y1);
        for (int64_t y = y0; y < y1; ++y)
            for (int64_t x = x0; x < x1; ++x) {
                const int64_t pixel = (y - tile_y0) * kSplatTile + (x - tile_x0);
                if (stopped[pixel]) continue;
                const SplatPair<scalar_t> pair = splat_pair(row, splat_opacity, static_cast<scalar_t>(x + 0.5),
                                                            static_cast<scalar_t>(y + 0.5));
                if (pair.alpha == 0) continue;
                const double after = transmittance[pixel] * (1 - static_cast<double>(pair.alpha));
                if (after < kSplatTransmittanceEpsilon) {
                    stopped[pixel] = 1, --live;
                    continue;
                }
                visit(splat, y * image.width + x, pixel, pair, transmittance[pixel]);
                transmittance[pixel] = after;
            }
        done_with(entry);
    }
}

template <typename scalar_t>
void rasterize_forward_loop(const Binning& binning, const Tensor& geometry, const Tensor& opacities,
                            const Tensor& features, const SplatImage& image, Tensor& out) {
    const int64_t cameras = geometry.size(0), count = geometry.size(1), width = features.size(2);
    const int64_t tiles = cameras * image.tiles(), pixels = image.width * image.height;
    const scalar_t *table = geometry.data_ptr<scalar_t>(), *opacity = opacities.data_ptr<scalar_t>(),
                   *feature = features.data_ptr<scalar_t>();
    scalar_t* output = out.data_ptr<scalar_t>();
#pragma omp parallel num_threads(threads()) if (tiles > 1)
    {
        std::vector<double> transmittance(kSplatTile * kSplatTile), sums(kSplatTile * kSplatTile * (width + 1));
        std::vector<uint8_t> stopped(kSplatTile * kSplatTile);
#pragma omp for schedule(dynamic, 1)
        for (int64_t tile = 0; tile < tiles; ++tile) {
            std::fill(sums.begin(), sums.end(), 0.0);
            walk_tile<scalar_t>(
                tile, binning, table, opacity, count, image, transmittance.data(), stopped.data(),
                [&](int64_t splat, int64_t, int64_t pixel, const SplatPair<scalar_t>& pair, double before) {
                    const double weight = pair.alpha * before;
                    double* sum = sums.data() + pixel * (width + 1);
                    for (int64_t f = 0; f < width; ++f) sum[f] += weight * feature[splat * width + f];
                    sum[width] += weight;
                },
                [](int64_t) {});
            const int64_t camera = tile / image.tiles(), local = tile % image.tiles();
            const int64_t x0 = local % image.tiles_x() * kSplatTile, y0 = local / image.tiles_x() * kSplatTile;
            for (int64_t y = y0; y < std::min<int64_t>(y0 + kSplatTile, image.height); ++y)
                for (int64_t x = x0; x < std::min<int64_t>(x0 + kSplatTile, image.width); ++x) {
                    const double* sum = sums.data() + ((y - y0) * kSplatTile + (x - x0)) * (width + 1);
                    scalar_t* target = output + (camera * pixels + y * image.width + x) * (width + 1);
                    for (int64_t f = 0; f <= width; ++f) target[f] = static_cast<scalar_t>(sum[f]);
                }
        }
    }
}

// Returns the image [C, H, W, F + 1] (weighted features, then alpha) and the binning the backward reads.
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> splat_rasterize_forward_cpu(
    const Tensor& geometry, const Tensor& opacities, const Tensor& features, const Tensor& depths, const Tensor& radii,
    int64_t width, int64_t height) {
    check_rasterize_inputs(geometry, opacities, features, depths, radii, width, height);
    const SplatImage image{width, height};
    Tensor out = at::empty({geometry.size(0), height, width, features.size(2) + 1}, geometry.options());
    Binning binning;
    AT_DISPATCH_FLOATING_TYPES(geometry.scalar_type(), "splat_rasterize_forward_cpu", [&] {
        binning = bin_splats<scalar_t>(geometry, opacities, depths, radii, image);
        rasterize_forward_loop<scalar_t>(binning, geometry, opacities, features, image, out);
    });
    return {out, binning.boxes, binning.pair_offsets, binning.pair_splats, binning.tile_offsets, binning.tile_pairs};
}

// Per pixel, with v_i = <g, f_i> + g_alpha and w_i = alpha_i T_i, the loss is sum_i w_i v_i, and
// d/d alpha_k = T_k v_k - (sum_{i > k} w_i v_i) / (1 - alpha_k). A first walk sums w_i v_i per pixel
// in double; the second takes the prefix and writes each pair's gradients into its slot.
template <typename scalar_t>
void rasterize_backward_loop(const Binning& binning, const Tensor& grad_out, const Tensor& geometry,
                             const Tensor& opacities, const Tensor& features, const SplatImage& image,
                             Tensor& pair_grads) {
    const int64_t cameras = geometry.size(0), count = geometry.size(1), width = features.size(2);
    const int64_t tiles = cameras * image.tiles(), pixels = image.width * image.height, stride = pair_grads.size(1);
    const scalar_t *table = geometry.data_ptr<scalar_t>(), *opacity = opacities.data_ptr<scalar_t>(),
                   *feature = features.data_ptr<scalar_t>(), *grad = grad_out.data_ptr<scalar_t>();
    const int32_t* tile_pairs = binning.tile_pairs.data_ptr<int32_t>();
    scalar_t* slots = pair_grads.data_ptr<scalar_t>();
#pragma omp parallel num_threads(threads()) if (tiles > 1)
    {
        std::vector<double> transmittance(kSplatTile * kSplatTile), total(kSplatTile * kSplatTile),
            prefix(kSplatTile * kSplatTile), slot(stride);
        std::vector<uint8_t> stopped(kSplatTile * kSplatTile);
#pragma omp for schedule(dynamic, 1)
        for (int64_t tile = 0; tile < tiles; ++tile) {
            const int64_t camera = tile / image.tiles();
            const scalar_t* grad_image = grad + camera * pixels * (width + 1);
            auto value = [&](int64_t splat, int64_t image_pixel) {
                const scalar_t* g = grad_image + image_pixel * (width + 1);
                double v = g[width];
                for (int64_t f = 0; f < width; ++f) v += static_cast<double>(g[f]) * feature[splat * width + f];
                return v;
            };
            std::fill(total.begin(), total.end(), 0.0);
            walk_tile<scalar_t>(
                tile, binning, table, opacity, count, image, transmittance.data(), stopped.data(),
                [&](int64_t splat, int64_t image_pixel, int64_t pixel, const SplatPair<scalar_t>& pair, double before) {
                    total[pixel] += pair.alpha * before * value(splat, image_pixel);
                },
                [](int64_t) {});
            std::fill(prefix.begin(), prefix.end(), 0.0);
            std::fill(slot.begin(), slot.end(), 0.0);
            walk_tile<scalar_t>(
                tile, binning, table, opacity, count, image, transmittance.data(), stopped.data(),
                [&](int64_t splat, int64_t image_pixel, int64_t pixel, const SplatPair<scalar_t>& pair, double before) {
                    const double weight = pair.alpha * before, v = value(splat, image_pixel);
                    prefix[pixel] += weight * v;
                    const scalar_t* g = grad_image + image_pixel * (width + 1);
                    for (int64_t f = 0; f < width; ++f) slot[kSplatGeometry + 1 + f] += weight * g[f];
                    if (pair.alpha < static_cast<scalar_t>(kSplatAlphaMax)) {  // a clamped alpha has no gradient
                        const double grad_alpha = before * v - (total[pixel] - prefix[pixel]) / (1 - pair.alpha);
                        splat_pair_backward(table + kSplatGeometry * splat, pair, grad_alpha, slot.data(),
                                            slot.data() + kSplatGeometry);
                    }
                },
                [&](int64_t entry) {
                    scalar_t* target = slots + tile_pairs[entry] * stride;
                    for (int64_t k = 0; k < stride; ++k) target[k] = static_cast<scalar_t>(slot[k]);
                    std::fill(slot.begin(), slot.end(), 0.0);
                });
        }
    }
}

// Each splat's gradients: the sum of its pairs' slots, in tile order.
template <typename scalar_t>
void sum_pair_grads(const Tensor& pair_grads, const Tensor& pair_offsets, Tensor& grad_geometry, Tensor& grad_opacities,
                    Tensor& grad_features) {
    const int64_t splats = pair_offsets.size(0) - 1, stride = pair_grads.size(1), feature_count = grad_features.size(2);
    const scalar_t* slots = pair_grads.data_ptr<scalar_t>();
    const int64_t* offsets = pair_offsets.data_ptr<int64_t>();
    scalar_t *g_geometry = grad_geometry.data_ptr<scalar_t>(), *g_opacity = grad_opacities.data_ptr<scalar_t>(),
             *g_feature = grad_features.data_ptr<scalar_t>();
#pragma omp parallel num_threads(threads()) if (splats > 4096)
    {
        std::vector<double> sum(stride);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < splats; ++i) {
            std::fill(sum.begin(), sum.end(), 0.0);
            for (int64_t p = offsets[i]; p < offsets[i + 1]; ++p)
                for (int64_t k = 0; k < stride; ++k) sum[k] += slots[p * stride + k];
            for (int64_t k = 0; k < kSplatGeometry; ++k)
                g_geometry[kSplatGeometry * i + k] = static_cast<scalar_t>(sum[k]);
            g_opacity[i] = static_cast<scalar_t>(sum[kSplatGeometry]);
            for (int64_t f = 0; f < feature_count; ++f)
                g_feature[i * feature_count + f] = static_cast<scalar_t>(sum[kSplatGeometry + 1 + f]);
        }
    }
}

// Gradients of the splat table [C, N, 5], the opacities per camera [C, N] and the features [C, N, F].
std::tuple<Tensor, Tensor, Tensor> splat_rasterize_backward_cpu(
    const Tensor& grad_out, const Tensor& geometry, const Tensor& opacities, const Tensor& features,
    const Tensor& boxes, const Tensor& pair_offsets, const Tensor& pair_splats, const Tensor& tile_offsets,
    const Tensor& tile_pairs, int64_t width, int64_t height) {
    check_rasterize_backward(grad_out, geometry, features, boxes, pair_offsets, pair_splats, tile_offsets, tile_pairs,
                             width, height);
    const SplatImage image{width, height};
    const int64_t cameras = geometry.size(0), count = geometry.size(1), feature_count = features.size(2);
    const int64_t stride = kSplatGeometry + 1 + feature_count;
    const Binning binning{boxes, pair_offsets, pair_splats, tile_offsets, tile_pairs};
    // pairs that no live pixel reached keep zero slots
    Tensor pair_grads = at::zeros({pair_splats.size(0), stride}, geometry.options());
    Tensor grad_geometry = at::empty(geometry.sizes(), geometry.options());
    Tensor grad_opacities = at::empty({cameras, count}, geometry.options());
    Tensor grad_features = at::empty(features.sizes(), geometry.options());
    AT_DISPATCH_FLOATING_TYPES(geometry.scalar_type(), "splat_rasterize_backward_cpu", [&] {
        rasterize_backward_loop<scalar_t>(binning, grad_out, geometry, opacities, features, image, pair_grads);
        sum_pair_grads<scalar_t>(pair_grads, pair_offsets, grad_geometry, grad_opacities, grad_features);
    });
    return {grad_geometry, grad_opacities, grad_features};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fieldkit, m) {
    m.def("splat_project_forward(Tensor means, Tensor quaternions, Tensor scales, Tensor viewmats, Tensor intrinsics) "
          "-> (Tensor, Tensor, Tensor, Tensor)");
    m.def("splat_project_backward(Tensor means, Tensor quaternions, Tensor scales, Tensor viewmats, "
          "Tensor intrinsics, Tensor grad_means2d, Tensor grad_conics, Tensor grad_depths) "
          "-> (Tensor, Tensor, Tensor)");
    m.def("splat_rasterize_forward(Tensor geometry, Tensor opacities, Tensor features, Tensor depths, Tensor radii, "
          "int width, int height) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
    m.def("splat_rasterize_backward(Tensor grad_out, Tensor geometry, Tensor opacities, Tensor features, Tensor boxes, "
          "Tensor pair_offsets, Tensor pair_splats, Tensor tile_offsets, Tensor tile_pairs, int width, int height) "
          "-> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(fieldkit, CPU, m) {
    m.impl("splat_project_forward", &splat_project_forward_cpu);
    m.impl("splat_project_backward", &splat_project_backward_cpu);
    m.impl("splat_rasterize_forward", &splat_rasterize_forward_cpu);
    m.impl("splat_rasterize_backward", &splat_rasterize_backward_cpu);
}

}  // namespace fieldkit
