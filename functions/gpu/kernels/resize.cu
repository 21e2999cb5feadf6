// imgpipe kernels: ICC matrix-shaper -> sRGB, EXIF orientation (an affine source map), box pre-shrink, u8 -> premultiplied f32, separable Lanczos3 passes with
// host-computed weights, f32 -> u8 (round half up, clamp). The arithmetic and its order are those of
// imgpipe_core::kernel::resize_reference, the CPU reference; compile with --fmad=false so no
// multiply-add is fused and results match it bit for bit. The same file compiles as C through
// kernels/host_shim.c, which runs these very kernels on the CPU in tests.
#ifndef KERNEL
#define KERNEL extern "C" __global__
#define IMGPIPE_MIN(a, b) min(a, b)
#endif

KERNEL void box_shrink(const unsigned char* src, int sw, int sh, int channels,
                       unsigned char* dst, int dw, int dh, int fx, int fy) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dw || y >= dh) return;
    int x0 = x * fx, y0 = y * fy;
    int x1 = IMGPIPE_MIN(x0 + fx, sw), y1 = IMGPIPE_MIN(y0 + fy, sh);
    unsigned int count = (unsigned int)((x1 - x0) * (y1 - y0));
    for (int c = 0; c < channels; c++) {
        unsigned int sum = 0;
        for (int sy = y0; sy < y1; sy++)
            for (int sx = x0; sx < x1; sx++)
                sum += src[(sy * sw + sx) * channels + c];
        dst[(y * dw + x) * channels + c] = (unsigned char)((sum + count / 2) / count);
    }
}

KERNEL void to_float(const unsigned char* src, float* dst, int pixels, int channels) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= pixels) return;
    for (int c = 0; c < channels; c++) dst[i * channels + c] = (float)src[i * channels + c];
    if (channels == 4) {
        float alpha = dst[i * 4 + 3] / 255.0f;
        for (int c = 0; c < 3; c++) dst[i * 4 + c] *= alpha;
    }
}

KERNEL void resample_rows(const float* src, int sw, int h, int channels, const unsigned int* starts,
                          const float* weights, int taps, float* dst, int dw) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dw || y >= h) return;
    int first = (int)starts[x];
    int n = IMGPIPE_MIN(taps, sw - first);
    for (int c = 0; c < channels; c++) {
        float sum = 0.0f;
        for (int t = 0; t < n; t++) {
            float product = weights[x * taps + t] * src[(y * sw + first + t) * channels + c];
            sum += product;
        }
        dst[(y * dw + x) * channels + c] = sum;
    }
}

KERNEL void resample_columns(const float* src, int w, int sh, int channels, const unsigned int* starts,
                             const float* weights, int taps, float* dst, int dh) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= w || y >= dh) return;
    int first = (int)starts[y];
    int n = IMGPIPE_MIN(taps, sh - first);
    for (int c = 0; c < channels; c++) {
        float sum = 0.0f;
        for (int t = 0; t < n; t++) {
            float product = weights[y * taps + t] * src[((first + t) * w + x) * channels + c];
            sum += product;
        }
        dst[(y * w + x) * channels + c] = sum;
    }
}

KERNEL void to_u8(const float* src, unsigned char* dst, int pixels, int channels) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= pixels) return;
    float v[4];
    for (int c = 0; c < channels; c++) v[c] = src[i * channels + c];
    if (channels == 4) {
        float alpha = fminf(fmaxf(v[3], 0.0f), 255.0f) / 255.0f;
        for (int c = 0; c < 3; c++) v[c] = alpha > 0.0f ? v[c] / alpha : 0.0f;
    }
    for (int c = 0; c < channels; c++) {
        float r = floorf(v[c] + 0.5f);
        dst[i * channels + c] = (unsigned char)fminf(fmaxf(r, 0.0f), 255.0f);
    }
}

// EXIF orientation: destination pixel (x, y) of the dw x dh upright image copies source pixel
// origin + x * step_x + y * step_y (imgpipe_core::orient::SourceMap, computed on the host).
KERNEL void orient(const unsigned char* src, unsigned char* dst, int dw, int dh, int channels,
                   long long origin, long long step_x, long long step_y) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dw || y >= dh) return;
    long long from = (origin + (long long)x * step_x + (long long)y * step_y) * channels;
    long long to = ((long long)y * dw + x) * channels;
    for (int c = 0; c < channels; c++) dst[to + c] = src[from + c];
}

// ICC matrix-shaper profile -> sRGB, in place: per-channel linearisation tables (256 entries each),
// a 3x3 matrix (each row as three products summed left to right), clamp to [0, 1], then the sRGB
// gamma table at floor(v * (bins - 1) + 0.5). Alpha is untouched. The CPU reference is
// imgpipe_core::colour::MatrixShaper::apply.
KERNEL void to_srgb(unsigned char* pixels, int count, int channels, const float* linearize,
                    const float* matrix, const unsigned short* gamma, int bins) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    unsigned char* px = pixels + (long long)i * channels;
    float r = linearize[px[0]];
    float g = linearize[256 + px[1]];
    float b = linearize[512 + px[2]];
    float scale = (float)(bins - 1);
    unsigned char out[3];
    for (int c = 0; c < 3; c++) {
        float p0 = matrix[c * 3] * r;
        float p1 = matrix[c * 3 + 1] * g;
        float p2 = matrix[c * 3 + 2] * b;
        float v = p0 + p1;
        v = v + p2;
        v = fminf(fmaxf(v, 0.0f), 1.0f);
        int index = (int)floorf(v * scale + 0.5f);
        out[c] = (unsigned char)gamma[index];
    }
    for (int c = 0; c < 3; c++) px[c] = out[c];
}
