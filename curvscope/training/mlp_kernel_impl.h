/* The body of mlp_kernel.c, included once with REAL = float and once with REAL = double. */
#define VL (VBYTES / (int)sizeof(REAL))
#define FN(name) CAT(name, SUFFIX)
#define VEC FN(vec)
#define UVEC FN(uvec)
#define IVEC FN(ivec)

typedef REAL VEC __attribute__((vector_size(VBYTES)));
typedef REAL UVEC __attribute__((vector_size(VBYTES), aligned(sizeof(REAL)), may_alias));
#if IS_FLOAT
typedef int32_t IVEC __attribute__((vector_size(VBYTES)));
#else
typedef int64_t IVEC __attribute__((vector_size(VBYTES)));
#endif

static inline int64_t FN(padded)(int64_t n) { return (n + VL - 1) / VL * VL; }

/* C[r, :] = (init (or 0) + sum_k A[r*sar + k*sac] B[k*ldb + :]) (* S[r, :] where S is given)
 * for an MR x (NV vectors) tile, the accumulators held in registers; B's rows contiguous, A
 * read by broadcasts at any stride (so the same kernel serves A, A^T and their row blocks). */
static inline __attribute__((always_inline)) void FN(tile)(
    const int MR, const int NV, int64_t K, const REAL *A, int64_t sar, int64_t sac,
    const REAL *B, int64_t ldb, REAL *C, int64_t ldc, const REAL *init, const REAL *S)
{
    VEC acc[MR_MAX][NV_MAX];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++)
            acc[r][v] = init ? (VEC)*(const UVEC *)(init + v * VL) : (VEC){0};
    for (int64_t k = 0; k < K; k++) {
        VEC b[NV_MAX];
        for (int v = 0; v < NV; v++) b[v] = *(const UVEC *)(B + k * ldb + v * VL);
        for (int r = 0; r < MR; r++) {
            VEC a = A[r * sar + k * sac] - (VEC){0}; /* a broadcast (x - 0 is x, so no add) */
            for (int v = 0; v < NV; v++) acc[r][v] += a * b[v];
        }
    }
    if (S)
        for (int r = 0; r < MR; r++)
            for (int v = 0; v < NV; v++) acc[r][v] *= *(const UVEC *)(S + r * ldc + v * VL);
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) *(UVEC *)(C + r * ldc + v * VL) = acc[r][v];
}

/* C (M x N, N a multiple of VL) = (init (or 0) + A B) (* S, elementwise, where S is given; S
 * has C's layout), A(i, k) = A[i*sar + k*sac]. */
static void FN(gemm)(int64_t M, int64_t N, int64_t K, const REAL *A, int64_t sar, int64_t sac,
                     const REAL *B, int64_t ldb, REAL *C, int64_t ldc, const REAL *init,
                     const REAL *S)
{
    for (int64_t j0 = 0; j0 < N; j0 += NV_MAX * VL) {
        int nv = (int)((N - j0) / VL);
        if (nv > NV_MAX) nv = NV_MAX;
        const REAL *init_j = init ? init + j0 : 0;
        for (int64_t i0 = 0; i0 < M; i0 += MR_MAX) {
            int mr = M - i0 < MR_MAX ? (int)(M - i0) : MR_MAX;
            const REAL *Ai = A + i0 * sar, *Bj = B + j0;
            REAL *Ci = C + i0 * ldc + j0;
            const REAL *Si = S ? S + i0 * ldc + j0 : 0;
#define TILE_CASE(m, v) \
    case m * 8 + v: FN(tile)(m, v, K, Ai, sar, sac, Bj, ldb, Ci, ldc, init_j, Si); break;
            switch (mr * 8 + nv) {
                TILE_CASE(1, 1) TILE_CASE(2, 1) TILE_CASE(3, 1) TILE_CASE(4, 1)
                TILE_CASE(1, 2) TILE_CASE(2, 2) TILE_CASE(3, 2) TILE_CASE(4, 2)
#if NV_MAX >= 4
                TILE_CASE(1, 3) TILE_CASE(2, 3) TILE_CASE(3, 3) TILE_CASE(4, 3)
                TILE_CASE(1, 4) TILE_CASE(2, 4) TILE_CASE(3, 4) TILE_CASE(4, 4)
#endif
            }
#undef TILE_CASE
        }
    }
}

/* ------------------------------------------------------------ activations, exp */
#if IS_FLOAT
static inline VEC FN(select)(IVEC mask, VEC a, VEC b)
{
    return (VEC)(((IVEC)a & mask) | ((IVEC)b & ~mask));
}

/* 1/x for positive float vectors: AVX-512's 14-bit estimate and one Newton step (within
 * 2 ulp, 5x cheaper than the division it replaces), the division elsewhere. */
static inline VEC FN(reciprocal)(VEC x)
{
#if defined(__AVX512F__) && VBYTES == 64
    VEC r = (VEC)_mm512_rcp14_ps((__m512)x);
    return r * (2.0f - x * r);
#else
    return 1.0f / x;
#endif
}

/* exp(x) for float vectors: Cody-Waite reduction x = n ln2 + r, Cephes' expf polynomial
 * (about 1 ulp), 2^n by the exponent bits; x clamped to [-87.34, 88.38]. */
static inline VEC FN(vexp)(VEC x)
{
    const VEC hi = (VEC){0} + 88.3762626647949f, lo = (VEC){0} - 87.3365447504019f;
    x = FN(select)(x > hi, hi, x);
    x = FN(select)(x < lo, lo, x);
    VEC n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    VEC r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    VEC p = 1.9875691500E-4f * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * (r * r) + r + 1.0f;
    IVEC e = (__builtin_convertvector(n, IVEC) + 127) << 23;
    return p * (VEC)e;
}

#define SIGN_BIT ((IVEC){0} + (int32_t)0x80000000u)

/* a = z Phi(z), d = Phi(z) + z phi(z): the exact GELU and its derivative with one exp,
 * erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7), the formula of torch's own
 * vectorised float erf; exp(-u^2) with u = z/sqrt(2) is also sqrt(2 pi) phi(z). */
static inline void FN(gelu)(VEC z, VEC *a, VEC *d)
{
    IVEC sign = (IVEC)z & SIGN_BIT;
    VEC u = (VEC)((IVEC)z & ~SIGN_BIT) * 0.70710678118654752f;
    VEC t = FN(reciprocal)(0.3275911f * u + 1.0f);
    VEC r = 1.061405429f * t - 1.453152027f;
    r = r * t + 1.421413741f;
    r = r * t - 0.284496736f;
    r = r * t + 0.254829592f;
    VEC e = FN(vexp)(-(u * u));
    VEC erf_abs = 1.0f - t * r * e;
    VEC erf = (VEC)((IVEC)erf_abs ^ sign);
    VEC cdf = 0.5f * erf + 0.5f;
    *a = z * cdf;
    *d = cdf + z * (e * 0.39894228040143268f);
}

/* a = tanh z (Cephes' tanhf: an odd polynomial below |z| = 0.625, (1 - e)/(1 + e) with
 * e = exp(-2|z|) above), d = 1 - a^2. */
static inline void FN(tanh)(VEC z, VEC *a, VEC *d)
{
    IVEC sign = (IVEC)z & SIGN_BIT;
    VEC x = (VEC)((IVEC)z & ~SIGN_BIT);
    VEC e = FN(vexp)(-2.0f * x);
    VEC big = (1.0f - e) / (1.0f + e);
    VEC x2 = x * x;
    VEC p = -5.70498872745E-3f * x2 + 2.06390887954E-2f;
    p = p * x2 - 5.37397155531E-2f;
    p = p * x2 + 1.33314422036E-1f;
    p = p * x2 - 3.33332819422E-1f;
    VEC small = x + x * x2 * p;
    VEC th = FN(select)(x < 0.625f, small, big);
    *a = (VEC)((IVEC)th ^ sign);
    *d = 1.0f - *a * *a;
}

static void FN(activate)(int act, REAL *restrict z, REAL *restrict d, int64_t count)
{ /* in place: z <- phi(z), d <- phi'(z); count a multiple of VL */
    for (int64_t i = 0; i < count; i += VL) {
        VEC zi = *(UVEC *)(z + i), a, g;
        if (act == 0) FN(gelu)(zi, &a, &g);
        else if (act == 2) FN(tanh)(zi, &a, &g);
        else {
            IVEC pos = zi > 0.0f;
            a = FN(select)(pos, zi, (VEC){0});
            g = FN(select)(pos, (VEC){0} + 1.0f, (VEC){0});
        }
        *(UVEC *)(z + i) = a;
        *(UVEC *)(d + i) = g;
    }
}

#undef SIGN_BIT
#else /* double: libm, for the float64 checks */
static void FN(activate)(int act, REAL *restrict z, REAL *restrict d, int64_t count)
{
    for (int64_t i = 0; i < count; i++) {
        REAL x = z[i];
        if (act == 0) {
            REAL cdf = 0.5 * (1.0 + erf(x * 0.70710678118654752));
            z[i] = x * cdf;
            d[i] = cdf + x * (exp(-0.5 * x * x) * 0.39894228040143268);
        } else if (act == 2) {
            REAL a = tanh(x);
            z[i] = a;
            d[i] = 1.0 - a * a;
        } else {
            z[i] = x > 0 ? x : 0.0;
            d[i] = x > 0 ? 1.0 : 0.0;
        }
    }
}
#endif

/* Wt (cols x ldt, ldt >= rows) = W^T for W (rows x cols, row-major), zeros in Wt's columns
 * rows..ldt-1: 8 x 8 blocks by three rounds of two-vector shuffles where the compiler has
 * __builtin_shufflevector, the rest element by element. */
typedef REAL FN(v8) __attribute__((vector_size(8 * sizeof(REAL))));
typedef REAL FN(u8) __attribute__((vector_size(8 * sizeof(REAL)), aligned(sizeof(REAL)), may_alias));
static void FN(transpose)(const REAL *W, int64_t rows, int64_t cols, REAL *Wt, int64_t ldt)
{
    int64_t r0 = 0;
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
    for (; r0 + 8 <= rows; r0 += 8) {
        int64_t c0 = 0;
        for (; c0 + 8 <= cols; c0 += 8) {
            FN(v8) r[8], t[8], u[8];
            for (int i = 0; i < 8; i++) r[i] = *(const FN(u8) *)(W + (r0 + i) * cols + c0);
            for (int i = 0; i < 8; i += 2) {
                t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
                t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
            }
            for (int i = 0; i < 8; i += 4) {
                u[i] = __builtin_shufflevector(t[i], t[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
                u[i + 1] = __builtin_shufflevector(t[i], t[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
                u[i + 2] = __builtin_shufflevector(t[i + 1], t[i + 3], 0, 1, 8, 9, 4, 5, 12, 13);
                u[i + 3] = __builtin_shufflevector(t[i + 1], t[i + 3], 2, 3, 10, 11, 6, 7, 14, 15);
            }
            for (int i = 0; i < 4; i++) {
                *(FN(u8) *)(Wt + (c0 + i) * ldt + r0) =
                    __builtin_shufflevector(u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
                *(FN(u8) *)(Wt + (c0 + i + 4) * ldt + r0) =
                    __builtin_shufflevector(u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
            }
        }
        for (; c0 < cols; c0++)
            for (int64_t i = r0; i < r0 + 8; i++) Wt[c0 * ldt + i] = W[i * cols + c0];
    }
#endif
    for (int64_t c = 0; c < cols; c++) {
        for (int64_t i = r0; i < rows; i++) Wt[c * ldt + i] = W[i * cols + c];
        for (int64_t i = rows; i < ldt; i++) Wt[c * ldt + i] = 0;
    }
}

/* --------------------------------------------------------------------- the step */
/* desc: [L, activation (0 GELU, 1 ReLU, 2 Tanh), has_bias, B, dims[0..L], w_off[0..L-1],
 * b_off[0..L-1]] with dims[0] the input width and dims[L] the classes; model m's W_l is the
 * dims[l+1] x dims[l] row-major block at theta + w_off[l] + m dims[l+1] dims[l], its b_l at
 * theta + b_off[l] + m dims[l+1] (batched.StackedMLP's flat layout). */
typedef struct {
    int64_t L, act, bias, B;
    const int64_t *dims, *w_off, *b_off;
    int64_t P[MAX_LAYERS + 1], Pmax, in_out_max;
} FN(arch);

static FN(arch) FN(read_desc)(const int64_t *desc)
{
    FN(arch) s;
    s.L = desc[0];
    s.act = desc[1];
    s.bias = desc[2];
    s.B = desc[3];
    s.dims = desc + 4;
    s.w_off = s.dims + s.L + 1;
    s.b_off = s.w_off + s.L;
    s.Pmax = 0;
    s.in_out_max = 0;
    for (int64_t l = 0; l <= s.L; l++) {
        s.P[l] = FN(padded)(s.dims[l]);
        if (s.P[l] > s.Pmax) s.Pmax = s.P[l];
    }
    for (int64_t l = 0; l < s.L; l++) {
        int64_t a = s.dims[l] * s.P[l + 1], b = s.dims[l + 1] * s.P[l];
        if (a > s.in_out_max) s.in_out_max = a;
        if (b > s.in_out_max) s.in_out_max = b;
    }
    return s;
}

/* Entries of REAL scratch one call of mlp_step needs for minibatches of n rows. */
int64_t FN(mlp_scratch_size)(const int64_t *desc, int64_t n)
{
    FN(arch) s = FN(read_desc)(desc);
    int64_t size = n * s.P[0] + n * s.P[s.L] + 2 * n * s.Pmax + 3 * s.in_out_max + 2 * s.Pmax;
    for (int64_t l = 1; l < s.L; l++) size += 2 * n * s.P[l];
    return size + 2 * VL * (2 * s.L + 8) + VL; /* alignment of every region */
}

static inline REAL *FN(take)(REAL **cursor, int64_t count)
{
    REAL *p = *cursor;
    *cursor += FN(padded)(count) + VL;
    return p;
}

/* One epoch of every model, model after model so that a model's parameters, momentum and
 * activations stay in the core's caches for all its steps: model m's step t trains on rows
 * rows[m*rows_stride + t*batch + 0..n-1] of X (dims[0] wide, labels y; n = batch but for a
 * shorter last step) with learning rate lrs[t]; loss_sums (may be NULL) gets, step by step,
 * -= sum_i log max(p_{i, y_i}, smallest normal) (batched.StackedMLP.gradients's sum). */
void FN(mlp_epoch)(const int64_t *desc, const REAL *X, const int64_t *y, const int64_t *rows,
                   int64_t rows_stride, int64_t size, int64_t batch, const double *lrs,
                   double momentum, double weight_decay, REAL *theta, REAL *buf,
                   REAL *loss_sums, REAL *scratch)
{
    FN(arch) s = FN(read_desc)(desc);
    const int64_t L = s.L, F = s.dims[0], C = s.dims[L];
    const REAL mu = (REAL)momentum, wd = (REAL)weight_decay;
    const int64_t n_max = batch < size ? batch : size;
    const REAL tiny = IS_FLOAT ? FLT_MIN : DBL_MIN;
    REAL *cursor = (REAL *)(((uintptr_t)scratch + VBYTES - 1) & ~(uintptr_t)(VBYTES - 1));
    REAL *x = FN(take)(&cursor, n_max * s.P[0]);
    REAL *act[MAX_LAYERS], *der[MAX_LAYERS];
    for (int64_t l = 1; l < L; l++) {
        act[l] = FN(take)(&cursor, n_max * s.P[l]);
        der[l] = FN(take)(&cursor, n_max * s.P[l]);
    }
    REAL *logits = FN(take)(&cursor, n_max * s.P[L]);
    REAL *delta_a = FN(take)(&cursor, n_max * s.Pmax), *delta_b = FN(take)(&cursor, n_max * s.Pmax);
    REAL *Wt = FN(take)(&cursor, s.in_out_max), *Wp = FN(take)(&cursor, s.in_out_max);
    REAL *dW = FN(take)(&cursor, s.in_out_max);
    REAL *bias = FN(take)(&cursor, s.Pmax), *db = FN(take)(&cursor, s.Pmax);

    for (int64_t m = 0; m < s.B; m++)
    for (int64_t start = 0, t = 0; start < size; start += batch, t++) {
        const int64_t n = size - start < batch ? size - start : batch;
        const int64_t *r = rows + m * rows_stride + start;
        const REAL rlr = (REAL)lrs[t];
        for (int64_t i = 0; i < n; i++) {
            memcpy(x + i * s.P[0], X + r[i] * F, (size_t)F * sizeof(REAL));
            for (int64_t k = F; k < s.P[0]; k++) x[i * s.P[0] + k] = 0;
        }
        /* forward: z_l = a_{l-1} W_l^T + b_l through W_l^T packed with zero columns */
        const REAL *A = x;
        for (int64_t l = 0; l < L; l++) {
            const int64_t in = s.dims[l], out = s.dims[l + 1], Pin = s.P[l], Pout = s.P[l + 1];
            const REAL *W = theta + s.w_off[l] + m * out * in;
            FN(transpose)(W, out, in, Wt, Pout);
            const REAL *init = 0;
            if (s.bias) {
                const REAL *b = theta + s.b_off[l] + m * out;
                for (int64_t o = 0; o < Pout; o++) bias[o] = o < out ? b[o] : 0;
                init = bias;
            }
            REAL *Z = l + 1 < L ? act[l + 1] : logits;
            FN(gemm)(n, Pout, in, A, Pin, 1, Wt, Pout, Z, Pout, init, 0);
            if (l + 1 < L) FN(activate)((int)s.act, Z, der[l + 1], n * Pout);
            A = Z;
        }
        /* delta_L = (softmax(z_L) - onehot(y)) / n, in place of the logits */
        const int64_t PL = s.P[L];
        REAL log_sum = 0;
        const REAL inv_n = (REAL)1 / (REAL)n;
        for (int64_t i = 0; i < n; i++) {
            REAL *z = logits + i * PL;
            REAL top = z[0], total = 0;
            for (int64_t j = 1; j < C; j++) top = z[j] > top ? z[j] : top;
#if IS_FLOAT
            for (int64_t j = 0; j < PL; j += VL)
                *(UVEC *)(z + j) = FN(vexp)(*(UVEC *)(z + j) - top);
#else
            for (int64_t j = 0; j < C; j++) z[j] = exp(z[j] - top);
#endif
            for (int64_t j = 0; j < C; j++) total += z[j];
            const REAL inv_total = 1 / total;
            for (int64_t j = 0; j < PL; j += VL) *(UVEC *)(z + j) = *(UVEC *)(z + j) * inv_total;
            for (int64_t j = C; j < PL; j++) z[j] = 0;
            const int64_t label = y[r[i]];
            if (loss_sums) {
                REAL p_true = z[label];
                log_sum += IS_FLOAT ? (REAL)logf((float)(p_true > tiny ? p_true : tiny))
                                    : (REAL)log((double)(p_true > tiny ? p_true : tiny));
            }
            z[label] += (REAL)-1;
            for (int64_t j = 0; j < PL; j += VL) *(UVEC *)(z + j) = *(UVEC *)(z + j) * inv_n;
        }
        if (loss_sums) loss_sums[m] -= log_sum;
        /* backward and update, layer by layer from the top */
        REAL *delta = logits, *spare = delta_a;
        for (int64_t l = L - 1; l >= 0; l--) {
            const int64_t in = s.dims[l], out = s.dims[l + 1], Pin = s.P[l], Pout = s.P[l + 1];
            REAL *W = theta + s.w_off[l] + m * out * in;
            REAL *bW = buf + s.w_off[l] + m * out * in;
            const REAL *Aprev = l == 0 ? x : act[l];
            /* dW = delta^T a_{l-1}: out x Pin */
            FN(gemm)(out, Pin, n, delta, 1, Pout, Aprev, Pin, dW, Pin, 0, 0);
            if (s.bias) {
                for (int64_t o = 0; o < Pout; o += VL) {
                    VEC total = (VEC){0};
                    for (int64_t i = 0; i < n; i++) total += *(UVEC *)(delta + i * Pout + o);
                    *(UVEC *)(db + o) = total;
                }
            }
            if (l > 0) { /* delta_{l-1} = (delta W_l) * phi'(z_{l-1}), with the W before the update */
                const REAL *Wsrc = W;
                int64_t ldw = in;
                if (in % VL) {
                    for (int64_t o = 0; o < out; o++)
                        for (int64_t k = 0; k < Pin; k++) Wp[o * Pin + k] = k < in ? W[o * in + k] : 0;
                    Wsrc = Wp;
                    ldw = Pin;
                }
                FN(gemm)(n, Pin, out, delta, Pout, 1, Wsrc, ldw, spare, Pin, 0, der[l]);
            }
            /* g = dW + wd theta, buf = mu buf + g, theta -= lr buf (torch.optim.SGD) */
            for (int64_t o = 0; o < out; o++) {
                REAL *restrict w = W + o * in, *restrict bw = bW + o * in;
                const REAL *restrict gw = dW + o * Pin;
                if (mu != 0) {
                    for (int64_t k = 0; k < in; k++) {
                        REAL gk = gw[k] + wd * w[k];
                        bw[k] = mu * bw[k] + gk;
                        w[k] -= rlr * bw[k];
                    }
                } else {
                    for (int64_t k = 0; k < in; k++) w[k] -= rlr * (gw[k] + wd * w[k]);
                }
            }
            if (s.bias) {
                REAL *b = theta + s.b_off[l] + m * out, *bb = buf + s.b_off[l] + m * out;
                for (int64_t o = 0; o < out; o++) {
                    REAL go = db[o] + wd * b[o];
                    if (mu != 0) {
                        bb[o] = mu * bb[o] + go;
                        go = bb[o];
                    }
                    b[o] -= rlr * go;
                }
            }
            if (l > 0) {
                REAL *next = spare;
                spare = delta == logits ? delta_b : delta;
                delta = next;
            }
        }
    }
}

#undef VL
#undef FN
#undef VEC
#undef UVEC
#undef IVEC
