/* One momentum-SGD step of B small MLPs, model after model, for curvscope's batched trainer.
 *
 * The math is batched.py's (see curvscope/training/native.py for the whole story):
 *   z_l = a_{l-1} W_l^T + b_l,  a_l = phi(z_l);   delta_L = (softmax(z_L) - onehot(y)) / n,
 *   dW_l = delta_l^T a_{l-1},  db_l = sum_i delta_{l,i},  delta_{l-1} = (delta_l W_l) * phi'(z_{l-1}),
 *   g = dW + wd * theta,  buf = momentum * buf + g,  theta = theta - lr * buf.
 * Each model's whole step (forward, backward, update) runs while its activations sit in the
 * core's own caches, instead of one batched operation over all models at a time streaming
 * every intermediate through the shared cache.
 *
 * Compiled at run time by native.py with the host's C compiler, twice: REAL = float (vector
 * polynomials for exp/erf/tanh) and REAL = double (libm's exp/erf/tanh, for the float64
 * checks). Everything is plain C with GCC/Clang vector extensions; no library but libm.
 * Row-major throughout; rows of activations and deltas are padded with zeros to a multiple
 * of the vector length, which keeps every inner loop on whole vectors. A model's arithmetic
 * depends only on its own data and the architecture, never on its place in the batch.
 */
#include <float.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_LAYERS 9

#if defined(__AVX512F__)
#define VBYTES 64
#define NV_MAX 4
#elif defined(__AVX__)
#define VBYTES 32
#define NV_MAX 2
#else
#define VBYTES 16
#define NV_MAX 2
#endif
#define MR_MAX 4

/* ---------------------------------------------------------------- type-generic part */
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

#define REAL float
#define SUFFIX _f32
#define IS_FLOAT 1
#include "mlp_kernel_impl.h"
#undef REAL
#undef SUFFIX
#undef IS_FLOAT

#define REAL double
#define SUFFIX _f64
#define IS_FLOAT 0
#include "mlp_kernel_impl.h"
