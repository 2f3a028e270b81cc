/*
 * Explicit Euler loops of the nonlinear DI controllers, one sample at a time, with no per-step
 * interpreter overhead. Loaded through ctypes by dilightning/inversion/native.py; the PyTorch loops
 * in dynamics.py and chains.py are the reference these kernels must reproduce.
 *
 * Matrices are dense and row-major. Nonlinearity codes: 0 linear, 1 tanh, 2 relu, 3 sigmoid.
 * Every function is compiled twice, for double (suffix _f64) and float (suffix _f32).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEFINE_KERNELS(T, SUFFIX, TANH, EXP)                                                         \
    static T apply_##SUFFIX(int code, T x) {                                                        \
        switch (code) {                                                                             \
        case 1: return TANH(x);                                                                     \
        case 2: return x > 0 ? x : (T)0;                                                            \
        case 3: return (T)1 / ((T)1 + EXP(-x));                                                     \
        default: return x;                                                                          \
        }                                                                                           \
    }                                                                                               \
                                                                                                    \
    /* y = beta * y + scale * M x, with M of shape rows x cols. */                                  \
    static void gemv_##SUFFIX(int rows, int cols, const T *M, const T *x, T beta, T scale, T *y) {  \
        for (int i = 0; i < rows; ++i) {                                                            \
            T sum = 0;                                                                              \
            const T *row = M + (size_t)i * cols;                                                    \
            for (int j = 0; j < cols; ++j) sum += row[j] * x[j];                                    \
            y[i] = beta * y[i] + scale * sum;                                                       \
        }                                                                                           \
    }                                                                                               \
                                                                                                    \
    /* Eqs. 5 and 14: state += dt(-state + B u), then u += dt(-alpha u + W g(state) - delta). */    \
    int di_standard_##SUFFIX(int batch, int d_l, int d_prev, const T *W, const T *B, const T *delta,\
                             T alpha, T dt, int steps, int code, T *out) {                          \
        T *u = calloc((size_t)d_l, sizeof(T));                                                      \
        T *g = malloc((size_t)d_prev * sizeof(T));                                                  \
        if (!u || !g) { free(u); free(g); return 1; }                                               \
        for (int n = 0; n < batch; ++n) {                                                           \
            T *state = out + (size_t)n * d_prev;                                                    \
            const T *target = delta + (size_t)n * d_l;                                              \
            memset(state, 0, (size_t)d_prev * sizeof(T));                                           \
            memset(u, 0, (size_t)d_l * sizeof(T));                                                  \
            for (int t = 0; t < steps; ++t) {                                                       \
                gemv_##SUFFIX(d_prev, d_l, B, u, (T)1 - dt, dt, state);                             \
                for (int j = 0; j < d_prev; ++j) g[j] = apply_##SUFFIX(code, state[j]);             \
                gemv_##SUFFIX(d_l, d_prev, W, g, (T)1 - dt * alpha, dt, u);                         \
                for (int i = 0; i < d_l; ++i) u[i] -= dt * target[i];                               \
            }                                                                                       \
        }                                                                                           \
        free(u); free(g);                                                                           \
        return 0;                                                                                   \
    }                                                                                               \
                                                                                                    \
    /* Eqs. S1-S2: state += dt(-alpha state + B (readout - delta)), readout += dt(-readout + W g). */\
    int di_expanding_##SUFFIX(int batch, int d_l, int d_prev, const T *W, const T *B,               \
                              const T *delta, T alpha, T dt, int steps, int code, T *out) {         \
        T *readout = calloc((size_t)d_l, sizeof(T));                                                \
        T *error = malloc((size_t)d_l * sizeof(T));                                                 \
        T *g = malloc((size_t)d_prev * sizeof(T));                                                  \
        if (!readout || !error || !g) { free(readout); free(error); free(g); return 1; }            \
        for (int n = 0; n < batch; ++n) {                                                           \
            T *state = out + (size_t)n * d_prev;                                                    \
            const T *target = delta + (size_t)n * d_l;                                              \
            memset(state, 0, (size_t)d_prev * sizeof(T));                                           \
            memset(readout, 0, (size_t)d_l * sizeof(T));                                            \
            for (int t = 0; t < steps; ++t) {                                                       \
                for (int i = 0; i < d_l; ++i) error[i] = readout[i] - target[i];                    \
                gemv_##SUFFIX(d_prev, d_l, B, error, (T)1 - dt * alpha, dt, state);                 \
                for (int j = 0; j < d_prev; ++j) g[j] = apply_##SUFFIX(code, state[j]);             \
                gemv_##SUFFIX(d_l, d_prev, W, g, (T)1 - dt, dt, readout);                           \
            }                                                                                       \
        }                                                                                           \
        free(readout); free(error); free(g);                                                        \
        return 0;                                                                                   \
    }                                                                                               \
                                                                                                    \
    /* Eqs. S3-S5 (or S12-S14 when slopes is not NULL) for k = layers hidden layers.              */\
    /* sizes: d_1 ... d_k, d_L. weights[j]: W_{j+2}, shape sizes[j+1] x sizes[j].                 */\
    /* slopes[j]: g'(a_{j+1}) for every sample (batch x sizes[j]) or NULL entries for none.       */\
    /* outs[j]: batch x sizes[j].                                                                 */\
    int single_loop_##SUFFIX(int batch, int layers, const int *sizes, const T *const *weights,      \
                             const T *B, const T *delta, T alpha, T dt, int steps, const int *codes,\
                             const T *const *slopes, T *const *outs) {                              \
        int widest = 0;                                                                             \
        for (int j = 0; j <= layers; ++j) widest = sizes[j] > widest ? sizes[j] : widest;           \
        int d_out = sizes[layers];                                                                  \
        T *u = calloc((size_t)d_out, sizeof(T));                                                    \
        T *g = malloc((size_t)widest * sizeof(T));                                                  \
        if (!u || !g) { free(u); free(g); return 1; }                                               \
        for (int n = 0; n < batch; ++n) {                                                           \
            const T *target = delta + (size_t)n * d_out;                                            \
            for (int j = 0; j < layers; ++j) memset(outs[j] + (size_t)n * sizes[j], 0,              \
                                                    (size_t)sizes[j] * sizeof(T));                  \
            memset(u, 0, (size_t)d_out * sizeof(T));                                                \
            for (int t = 0; t < steps; ++t) {                                                       \
                gemv_##SUFFIX(sizes[0], d_out, B, u, (T)1 - dt, dt, outs[0] + (size_t)n * sizes[0]);\
                for (int j = 0; j < layers; ++j) {                                                  \
                    const T *state = outs[j] + (size_t)n * sizes[j];                                \
                    if (slopes && slopes[j]) {                                                      \
                        const T *slope = slopes[j] + (size_t)n * sizes[j];                          \
                        for (int i = 0; i < sizes[j]; ++i) g[i] = state[i] / slope[i];              \
                    } else {                                                                        \
                        for (int i = 0; i < sizes[j]; ++i) g[i] = apply_##SUFFIX(codes[j], state[i]);\
                    }                                                                               \
                    if (j + 1 < layers) {                                                           \
                        gemv_##SUFFIX(sizes[j + 1], sizes[j], weights[j], g, (T)1 - dt, dt,         \
                                      outs[j + 1] + (size_t)n * sizes[j + 1]);                      \
                    } else {                                                                        \
                        gemv_##SUFFIX(d_out, sizes[j], weights[j], g, (T)1 - dt * alpha, dt, u);    \
                        for (int i = 0; i < d_out; ++i) u[i] -= dt * target[i];                     \
                    }                                                                               \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
        free(u); free(g);                                                                           \
        return 0;                                                                                   \
    }

DEFINE_KERNELS(double, f64, tanh, exp)
DEFINE_KERNELS(float, f32, tanhf, expf)
