// Shared by every kernel body: the same source compiles as host code (the CPU launchers, g++)
// and as host + device code (the CUDA launchers, nvcc).
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define FK_HOST_DEVICE __host__ __device__
#else
#define FK_HOST_DEVICE
#endif

// Runs `statement` with `constexpr int kFeatures` set to `features` where it is a common count
// (instant-ngp uses 2), so that the bodies' feature loops unroll; 0 (read at run time) otherwise.
#define FK_DISPATCH_FEATURES(features, ...)                          \
    switch (features) {                                              \
        case 1: { constexpr int kFeatures = 1; __VA_ARGS__; } break; \
        case 2: { constexpr int kFeatures = 2; __VA_ARGS__; } break; \
        case 4: { constexpr int kFeatures = 4; __VA_ARGS__; } break; \
        case 8: { constexpr int kFeatures = 8; __VA_ARGS__; } break; \
        default: { constexpr int kFeatures = 0; __VA_ARGS__; } break; \
    }

namespace fieldkit {

// The CPU launchers give each output element to one thread, so a plain add is race-free there;
// the CUDA launchers pass an atomic add instead.
struct PlainAdd {
    template <typename T>
    FK_HOST_DEVICE void operator()(T* target, T value) const { *target += value; }
};

}  // namespace fieldkit
