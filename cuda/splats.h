// Gaussian splats (3DGS): the EWA projection of one splat into one camera, and the alpha of one
// pixel-splat pair, each with its backward pass. Mirrors fieldkit/render/splats.py::project and
// fieldkit/render/splat_composite.py (the specification): OpenCV camera axes, a 0.3 px^2 low-pass,
// the Jacobian's x/z and y/z clamped to the view widened by 30%, radii at 3.33 sigma, alpha clamped
// to 0.99 and skipped below 1/255, a pixel stopping before the splat that takes its transmittance
// below 1e-4. The launchers decide the order of the work; these bodies are the math.
#pragma once

#include <cmath>

#include "common.h"

namespace fieldkit {

constexpr double kSplatNearPlane = 0.01;
constexpr double kSplatLowPass = 0.3;
constexpr double kSplatSigmaExtent = 3.33;
constexpr double kSplatFovMargin = 0.3;
constexpr double kSplatAlphaMax = 0.99;
constexpr double kSplatAlphaMin = 1.0 / 255.0;
constexpr double kSplatTransmittanceEpsilon = 1e-4;  // fieldkit.render.volume.TRANSMITTANCE_EPSILON
constexpr int kSplatTile = 16;                       // pixels along a tile's side
// the splat table's layout per camera: centre x, y; conic a, b, c (a x^2 + 2 b x y + c y^2)
constexpr int kSplatGeometry = 5;

// an image's size and its tiles
struct SplatImage {
    int64_t width, height;
    FK_HOST_DEVICE int64_t tiles_x() const { return (width + kSplatTile - 1) / kSplatTile; }
    FK_HOST_DEVICE int64_t tiles_y() const { return (height + kSplatTile - 1) / kSplatTile; }
    FK_HOST_DEVICE int64_t tiles() const { return tiles_x() * tiles_y(); }
};

// a camera as the projection reads it: world-to-camera rows (OpenCV axes) and pinhole intrinsics
template <typename scalar_t>
struct SplatCamera {
    const scalar_t* view;  // [4, 4] row-major world-to-camera
    scalar_t fx, fy, cx, cy, width, height;
};

FK_HOST_DEVICE inline float exp_splat(float value) { return expf(value); }
FK_HOST_DEVICE inline double exp_splat(double value) { return exp(value); }
FK_HOST_DEVICE inline float sqrt_splat(float value) { return sqrtf(value); }
FK_HOST_DEVICE inline double sqrt_splat(double value) { return sqrt(value); }
FK_HOST_DEVICE inline float log_splat(float value) { return logf(value); }
FK_HOST_DEVICE inline double log_splat(double value) { return log(value); }
template <typename T>
FK_HOST_DEVICE inline T min_of(T a, T b) { return a < b ? a : b; }
template <typename T>
FK_HOST_DEVICE inline T max_of(T a, T b) { return a > b ? a : b; }

// R(q) of a unit wxyz quaternion, row-major
template <typename scalar_t>
FK_HOST_DEVICE inline void quaternion_rotation(const scalar_t* q, scalar_t* r) {
    const scalar_t w = q[0], x = q[1], y = q[2], z = q[3];
    r[0] = 1 - 2 * (y * y + z * z), r[1] = 2 * (x * y - w * z), r[2] = 2 * (x * z + w * y);
    r[3] = 2 * (x * y + w * z), r[4] = 1 - 2 * (x * x + z * z), r[5] = 2 * (y * z - w * x);
    r[6] = 2 * (x * z - w * y), r[7] = 2 * (y * z + w * x), r[8] = 1 - 2 * (x * x + y * y);
}

// torch.nn.functional.normalize's q / max(|q|, 1e-12); returns the divisor
template <typename scalar_t>
FK_HOST_DEVICE inline scalar_t normalize_quaternion(const scalar_t* q, scalar_t* unit) {
    const scalar_t norm = sqrt_splat(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    const scalar_t divisor = max_of(norm, static_cast<scalar_t>(1e-12));
    for (int k = 0; k < 4; ++k) unit[k] = q[k] / divisor;
    return divisor;
}

// The intermediate values of one splat in one camera, shared by the forward and backward passes.
template <typename scalar_t>
struct SplatView {
    scalar_t unit[4], rotation[9], m[9];  // unit quaternion, R, M = R diag(scales)
    scalar_t cam[3], covariance[9];       // camera-space mean and covariance W M M^T W^T
    scalar_t z, u, v;                     // the safe depth and the clamped x/z, y/z
    bool in_front, u_free, v_free;        // u_free: x/z inside its clamp (its gradient passes)
    scalar_t jacobian[6];                 // [2, 3] d(pixel)/d(camera point)
    scalar_t a, b, c, determinant;        // the low-passed 2D covariance [[a, b], [b, c]]
    bool determinant_free;
};

template <typename scalar_t>
FK_HOST_DEVICE inline void splat_view(const scalar_t* mean, const scalar_t* quaternion, const scalar_t* scale,
                                      const SplatCamera<scalar_t>& camera, SplatView<scalar_t>& s) {
    normalize_quaternion(quaternion, s.unit);
    quaternion_rotation(s.unit, s.rotation);
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) s.m[3 * i + j] = s.rotation[3 * i + j] * scale[j];
    const scalar_t* w = camera.view;
    scalar_t wm[9];  // W M
    for (int i = 0; i < 3; ++i) {
        s.cam[i] = w[4 * i] * mean[0] + w[4 * i + 1] * mean[1] + w[4 * i + 2] * mean[2] + w[4 * i + 3];
        for (int j = 0; j < 3; ++j)
            wm[3 * i + j] = w[4 * i] * s.m[j] + w[4 * i + 1] * s.m[3 + j] + w[4 * i + 2] * s.m[6 + j];
    }
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
            s.covariance[3 * i + j] =
                wm[3 * i] * wm[3 * j] + wm[3 * i + 1] * wm[3 * j + 1] + wm[3 * i + 2] * wm[3 * j + 2];
    s.in_front = s.cam[2] > static_cast<scalar_t>(kSplatNearPlane);
    s.z = s.in_front ? s.cam[2] : static_cast<scalar_t>(1);
    const scalar_t half_margin = static_cast<scalar_t>(kSplatFovMargin) * static_cast<scalar_t>(0.5);
    const scalar_t margin_x = half_margin * camera.width / camera.fx, margin_y = half_margin * camera.height / camera.fy;
    const scalar_t low_x = -camera.cx / camera.fx - margin_x, high_x = (camera.width - camera.cx) / camera.fx + margin_x;
    const scalar_t low_y = -camera.cy / camera.fy - margin_y;
    const scalar_t high_y = (camera.height - camera.cy) / camera.fy + margin_y;
    const scalar_t x = s.cam[0] / s.z, y = s.cam[1] / s.z;
    s.u = min_of(max_of(x, low_x), high_x);
    s.v = min_of(max_of(y, low_y), high_y);
    s.u_free = x >= low_x && x <= high_x;  // torch.clamp passes the gradient at the bounds too
    s.v_free = y >= low_y && y <= high_y;
    s.jacobian[0] = camera.fx / s.z, s.jacobian[1] = 0, s.jacobian[2] = -camera.fx * s.u / s.z;
    s.jacobian[3] = 0, s.jacobian[4] = camera.fy / s.z, s.jacobian[5] = -camera.fy * s.v / s.z;
    scalar_t jc[6];  // J Sigma_cam
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j)
            jc[3 * i + j] = s.jacobian[3 * i] * s.covariance[j] + s.jacobian[3 * i + 1] * s.covariance[3 + j] +
                            s.jacobian[3 * i + 2] * s.covariance[6 + j];
    const scalar_t* jac = s.jacobian;
    s.a = jc[0] * jac[0] + jc[1] * jac[1] + jc[2] * jac[2] + static_cast<scalar_t>(kSplatLowPass);
    s.b = jc[0] * jac[3] + jc[1] * jac[4] + jc[2] * jac[5];
    s.c = jc[3] * jac[3] + jc[4] * jac[4] + jc[5] * jac[5] + static_cast<scalar_t>(kSplatLowPass);
    const scalar_t determinant = s.a * s.c - s.b * s.b;
    s.determinant_free = determinant >= static_cast<scalar_t>(1e-10);
    s.determinant = s.determinant_free ? determinant : static_cast<scalar_t>(1e-10);
}

// Forward: the centre in pixels, the conic, the depth and the radii (0 when culled).
template <typename scalar_t>
FK_HOST_DEVICE inline void project_splat(const scalar_t* mean, const scalar_t* quaternion, const scalar_t* scale,
                                         const SplatCamera<scalar_t>& camera, scalar_t* mean2d, scalar_t* conic,
                                         scalar_t* depth, int32_t* radii) {
    SplatView<scalar_t> s;
    splat_view(mean, quaternion, scale, camera, s);
    conic[0] = s.c / s.determinant, conic[1] = -s.b / s.determinant, conic[2] = s.a / s.determinant;
    mean2d[0] = camera.fx * s.cam[0] / s.z + camera.cx;
    mean2d[1] = camera.fy * s.cam[1] / s.z + camera.cy;
    *depth = s.cam[2];
    const scalar_t radius[2] = {ceil(static_cast<scalar_t>(kSplatSigmaExtent) * sqrt_splat(s.a)),
                                ceil(static_cast<scalar_t>(kSplatSigmaExtent) * sqrt_splat(s.c))};
    const scalar_t size[2] = {camera.width, camera.height};
    bool on_screen = true;
    for (int k = 0; k < 2; ++k) on_screen = on_screen && mean2d[k] + radius[k] > 0 && mean2d[k] - radius[k] < size[k];
    for (int k = 0; k < 2; ++k) radii[k] = s.in_front && on_screen ? static_cast<int32_t>(radius[k]) : 0;
}

// Backward: adds d(loss)/d(mean, quaternion, scale) of one camera's outputs to the three
// gradients. Culled splats get the gradient of their (unused) values too, as in torch.
template <typename scalar_t>
FK_HOST_DEVICE inline void project_splat_backward(const scalar_t* mean, const scalar_t* quaternion,
                                                  const scalar_t* scale, const SplatCamera<scalar_t>& camera,
                                                  const scalar_t* grad_mean2d, const scalar_t* grad_conic,
                                                  scalar_t grad_depth, scalar_t* grad_mean, scalar_t* grad_quaternion,
                                                  scalar_t* grad_scale) {
    SplatView<scalar_t> s;
    splat_view(mean, quaternion, scale, camera, s);
    const scalar_t det = s.determinant;
    // conic = (c, -b, a) / det
    scalar_t ga = grad_conic[2] / det, gb = -grad_conic[1] / det, gc = grad_conic[0] / det;
    if (s.determinant_free) {
        const scalar_t by_det = -(grad_conic[0] * s.c - grad_conic[1] * s.b + grad_conic[2] * s.a) / (det * det);
        ga += by_det * s.c, gc += by_det * s.a, gb += by_det * -2 * s.b;
    }
    // the 2D covariance's gradient, symmetrised (b is its upper off-diagonal entry)
    const scalar_t g2[4] = {ga, gb / 2, gb / 2, gc};
    const scalar_t* j = s.jacobian;
    // d/dSigma_cam = J^T G J;  d/dJ = 2 G J Sigma_cam
    scalar_t gj_half[6];  // G J  [2, 3]
    for (int i = 0; i < 2; ++i)
        for (int k = 0; k < 3; ++k) gj_half[3 * i + k] = g2[2 * i] * j[k] + g2[2 * i + 1] * j[3 + k];
    scalar_t g_cov_cam[9];
    for (int r = 0; r < 3; ++r)
        for (int k = 0; k < 3; ++k) g_cov_cam[3 * r + k] = j[r] * gj_half[k] + j[3 + r] * gj_half[3 + k];
    scalar_t g_jac[6];
    for (int i = 0; i < 2; ++i)
        for (int k = 0; k < 3; ++k)
            g_jac[3 * i + k] = 2 * (gj_half[3 * i] * s.covariance[k] + gj_half[3 * i + 1] * s.covariance[3 + k] +
                                    gj_half[3 * i + 2] * s.covariance[6 + k]);
    const scalar_t z = s.z, z2 = z * z;
    scalar_t g_z = -camera.fx / z2 * g_jac[0] + camera.fx * s.u / z2 * g_jac[2] - camera.fy / z2 * g_jac[4] +
                   camera.fy * s.v / z2 * g_jac[5];
    const scalar_t g_u = -camera.fx / z * g_jac[2], g_v = -camera.fy / z * g_jac[5];
    scalar_t g_cam[3] = {0, 0, 0};
    if (s.u_free) g_cam[0] += g_u / z, g_z -= g_u * s.cam[0] / z2;
    if (s.v_free) g_cam[1] += g_v / z, g_z -= g_v * s.cam[1] / z2;
    g_cam[0] += grad_mean2d[0] * camera.fx / z, g_z -= grad_mean2d[0] * camera.fx * s.cam[0] / z2;
    g_cam[1] += grad_mean2d[1] * camera.fy / z, g_z -= grad_mean2d[1] * camera.fy * s.cam[1] / z2;
    g_cam[2] = grad_depth + (s.in_front ? g_z : static_cast<scalar_t>(0));
    const scalar_t* w = camera.view;
    for (int k = 0; k < 3; ++k) grad_mean[k] += w[k] * g_cam[0] + w[4 + k] * g_cam[1] + w[8 + k] * g_cam[2];
    // Sigma_cam = W Sigma W^T -> dSigma = W^T G W; Sigma = M M^T -> dM = (dSigma + dSigma^T) M
    scalar_t gw[9], g_cov[9];  // G W, then W^T G W
    for (int r = 0; r < 3; ++r)
        for (int k = 0; k < 3; ++k)
            gw[3 * r + k] = g_cov_cam[3 * r] * w[k] + g_cov_cam[3 * r + 1] * w[4 + k] + g_cov_cam[3 * r + 2] * w[8 + k];
    for (int r = 0; r < 3; ++r)
        for (int k = 0; k < 3; ++k) g_cov[3 * r + k] = w[r] * gw[k] + w[4 + r] * gw[3 + k] + w[8 + r] * gw[6 + k];
    scalar_t g_rotation[9];
    for (int r = 0; r < 3; ++r)
        for (int k = 0; k < 3; ++k) {
            scalar_t g_m = 0;
            for (int t = 0; t < 3; ++t) g_m += (g_cov[3 * r + t] + g_cov[3 * t + r]) * s.m[3 * t + k];
            g_rotation[3 * r + k] = g_m * scale[k];
            grad_scale[k] += g_m * s.rotation[3 * r + k];
        }
    const scalar_t* g = g_rotation;
    const scalar_t qw = s.unit[0], qx = s.unit[1], qy = s.unit[2], qz = s.unit[3];
    const scalar_t g_unit[4] = {
        2 * (-qz * g[1] + qy * g[2] + qz * g[3] - qx * g[5] - qy * g[6] + qx * g[7]),
        2 * (qy * g[1] + qz * g[2] + qy * g[3] - 2 * qx * g[4] - qw * g[5] + qz * g[6] + qw * g[7] - 2 * qx * g[8]),
        2 * (-2 * qy * g[0] + qx * g[1] + qw * g[2] + qx * g[3] + qz * g[5] - qw * g[6] + qz * g[7] - 2 * qy * g[8]),
        2 * (-2 * qz * g[0] - qw * g[1] + qx * g[2] + qw * g[3] - 2 * qz * g[4] + qy * g[5] + qx * g[6] + qy * g[7])};
    // unit = q / max(|q|, eps): the tangential part over the norm, or a plain division at eps
    scalar_t unit[4];
    const scalar_t divisor = normalize_quaternion(quaternion, unit);
    const bool at_epsilon = divisor <= static_cast<scalar_t>(1e-12);
    const scalar_t along =
        at_epsilon ? 0 : unit[0] * g_unit[0] + unit[1] * g_unit[1] + unit[2] * g_unit[2] + unit[3] * g_unit[3];
    for (int k = 0; k < 4; ++k) grad_quaternion[k] += (g_unit[k] - unit[k] * along) / divisor;
}

// How far along x and y from its centre a splat's alpha stays at or above 1/255 (the torch path's
// `_visible_extent`): 0 where culled or too faint to reach the threshold anywhere.
template <typename scalar_t>
FK_HOST_DEVICE inline void splat_extent(const scalar_t* conic, scalar_t opacity, const int32_t* radii,
                                        scalar_t* extent) {
    const scalar_t determinant = max_of(conic[0] * conic[2] - conic[1] * conic[1], static_cast<scalar_t>(1e-20));
    const scalar_t reach = max_of(2 * log_splat(opacity * static_cast<scalar_t>(255)), static_cast<scalar_t>(0));
    const bool visible = radii[0] > 0 && radii[1] > 0 && reach > 0;
    extent[0] = visible ? sqrt_splat(conic[2] / determinant * reach) + static_cast<scalar_t>(1e-3) : 0;
    extent[1] = visible ? sqrt_splat(conic[0] / determinant * reach) + static_cast<scalar_t>(1e-3) : 0;
}

// The pixels [low, high) along one axis whose centres (+0.5) lie within `extent` of `centre`.
template <typename scalar_t>
FK_HOST_DEVICE inline void splat_pixel_range(scalar_t centre, scalar_t extent, int64_t limit, int64_t* low,
                                             int64_t* high) {
    const scalar_t from = ceil(centre - extent - static_cast<scalar_t>(0.5));
    const scalar_t to = floor(centre + extent - static_cast<scalar_t>(0.5));
    *low = static_cast<int64_t>(min_of(max_of(from, static_cast<scalar_t>(0)), static_cast<scalar_t>(limit)));
    *high = static_cast<int64_t>(min_of(max_of(to, static_cast<scalar_t>(-1)) + 1, static_cast<scalar_t>(limit)));
    if (extent <= 0 || *high < *low) *high = *low;
}

// The visible pixel box [x0, y0, x1, y1) of one splat row (centre x, y, conic a, b, c) in an image;
// empty (x1 = x0) where culled or too faint.
template <typename scalar_t>
FK_HOST_DEVICE inline void splat_box(const scalar_t* row, scalar_t opacity, const int32_t* radii,
                                     const SplatImage& image, int32_t* box) {
    const scalar_t conic[3] = {row[2], row[3], row[4]};
    scalar_t extent[2];
    splat_extent(conic, opacity, radii, extent);
    int64_t x0, x1, y0, y1;
    splat_pixel_range(row[0], extent[0], image.width, &x0, &x1);
    splat_pixel_range(row[1], extent[1], image.height, &y0, &y1);
    if (x1 <= x0 || y1 <= y0) x1 = x0, y1 = y0;
    box[0] = static_cast<int32_t>(x0), box[1] = static_cast<int32_t>(y0);
    box[2] = static_cast<int32_t>(x1), box[3] = static_cast<int32_t>(y1);
}

// How many tiles a pixel box [x0, y0, x1, y1) touches (0 for an empty box).
FK_HOST_DEVICE inline int64_t tile_span(const int32_t* box) {
    if (box[2] <= box[0]) return 0;
    return ((box[2] - 1) / kSplatTile - box[0] / kSplatTile + 1) * ((box[3] - 1) / kSplatTile - box[1] / kSplatTile + 1);
}

// One pixel-splat pair: alpha (0 where skipped), with what the backward pass needs.
template <typename scalar_t>
struct SplatPair {
    scalar_t alpha, dx, dy, falloff;
};

template <typename scalar_t>
FK_HOST_DEVICE inline SplatPair<scalar_t> splat_pair(const scalar_t* geometry, scalar_t opacity, scalar_t pixel_x,
                                                     scalar_t pixel_y) {
    SplatPair<scalar_t> pair;
    pair.dx = pixel_x - geometry[0];
    pair.dy = pixel_y - geometry[1];
    const scalar_t sigma =
        static_cast<scalar_t>(0.5) * (geometry[2] * pair.dx * pair.dx + geometry[4] * pair.dy * pair.dy) +
        geometry[3] * pair.dx * pair.dy;
    pair.falloff = exp_splat(-sigma);
    const scalar_t alpha = min_of(opacity * pair.falloff, static_cast<scalar_t>(kSplatAlphaMax));
    pair.alpha = sigma >= 0 && alpha >= static_cast<scalar_t>(kSplatAlphaMin) ? alpha : static_cast<scalar_t>(0);
    return pair;
}

// Adds d(loss)/d(centre x, y, conic a, b, c) to grad_geometry[5] and d/d(opacity) to *grad_opacity,
// given d(loss)/d(alpha) of a pair that is neither skipped nor clamped.
template <typename scalar_t, typename acc_t>
FK_HOST_DEVICE inline void splat_pair_backward(const scalar_t* geometry, const SplatPair<scalar_t>& pair,
                                               acc_t grad_alpha, acc_t* grad_geometry, acc_t* grad_opacity) {
    const acc_t grad_sigma = -pair.alpha * grad_alpha;
    grad_geometry[0] -= grad_sigma * (geometry[2] * pair.dx + geometry[3] * pair.dy);
    grad_geometry[1] -= grad_sigma * (geometry[3] * pair.dx + geometry[4] * pair.dy);
    grad_geometry[2] += static_cast<acc_t>(0.5) * grad_sigma * pair.dx * pair.dx;
    grad_geometry[3] += grad_sigma * pair.dx * pair.dy;
    grad_geometry[4] += static_cast<acc_t>(0.5) * grad_sigma * pair.dy * pair.dy;
    *grad_opacity += pair.falloff * grad_alpha;
}

}  // namespace fieldkit
