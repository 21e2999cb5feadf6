// Runs kernels/resize.cu on the CPU: CUDA's thread indices become loop variables, one "thread" at a
// time. Used only by the tests of imgpipe-gpu, to check the kernel source against the Rust reference
// on machines without a GPU. Compiled with -ffp-contract=off, like NVRTC's --fmad=false.
#include <math.h>

typedef struct { int x, y, z; } dim3_t;
static dim3_t blockIdx, threadIdx, blockDim;
static int imgpipe_min(int a, int b) { return a < b ? a : b; }
#define KERNEL static
#define IMGPIPE_MIN(a, b) imgpipe_min(a, b)
#include "resize.cu"

#define BLOCK 16
#define LAUNCH_2D(width, height, call)                                                   \
    blockDim.x = BLOCK; blockDim.y = BLOCK;                                              \
    for (blockIdx.y = 0; blockIdx.y * BLOCK < (height); blockIdx.y++)                    \
        for (blockIdx.x = 0; blockIdx.x * BLOCK < (width); blockIdx.x++)                 \
            for (threadIdx.y = 0; threadIdx.y < BLOCK; threadIdx.y++)                    \
                for (threadIdx.x = 0; threadIdx.x < BLOCK; threadIdx.x++) { call; }
#define LAUNCH_1D(count, call)                                                           \
    blockDim.x = 256; blockDim.y = 1; blockIdx.y = 0; threadIdx.y = 0;                   \
    for (blockIdx.x = 0; blockIdx.x * 256 < (count); blockIdx.x++)                       \
        for (threadIdx.x = 0; threadIdx.x < 256; threadIdx.x++) { call; }

void imgpipe_host_box_shrink(const unsigned char* src, int sw, int sh, int ch, unsigned char* dst,
                             int dw, int dh, int fx, int fy) {
    LAUNCH_2D(dw, dh, box_shrink(src, sw, sh, ch, dst, dw, dh, fx, fy));
}
void imgpipe_host_to_float(const unsigned char* src, float* dst, int pixels, int ch) {
    LAUNCH_1D(pixels, to_float(src, dst, pixels, ch));
}
void imgpipe_host_resample_rows(const float* src, int sw, int h, int ch, const unsigned int* starts,
                                const float* weights, int taps, float* dst, int dw) {
    LAUNCH_2D(dw, h, resample_rows(src, sw, h, ch, starts, weights, taps, dst, dw));
}
void imgpipe_host_resample_columns(const float* src, int w, int sh, int ch, const unsigned int* starts,
                                   const float* weights, int taps, float* dst, int dh) {
    LAUNCH_2D(w, dh, resample_columns(src, w, sh, ch, starts, weights, taps, dst, dh));
}
void imgpipe_host_to_u8(const float* src, unsigned char* dst, int pixels, int ch) {
    LAUNCH_1D(pixels, to_u8(src, dst, pixels, ch));
}
void imgpipe_host_orient(const unsigned char* src, unsigned char* dst, int dw, int dh, int ch,
                         long long origin, long long step_x, long long step_y) {
    LAUNCH_2D(dw, dh, orient(src, dst, dw, dh, ch, origin, step_x, step_y));
}
void imgpipe_host_to_srgb(unsigned char* pixels, int count, int ch, const float* linearize,
                          const float* matrix, const unsigned short* gamma, int bins) {
    LAUNCH_1D(count, to_srgb(pixels, count, ch, linearize, matrix, gamma, bins));
}
