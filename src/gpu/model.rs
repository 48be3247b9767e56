//! The GRU on the GPU: parameters kept on the device, forward and backward of
//! the whole layer stack, each recorded into one command encoder and
//! submitted once.
//!
//! ```text
//! Forward, per layer l (both directions together):
//!   1. gemm:          gi = X_l · W_ihᵀ + b_ih, all T steps at once      (T·B, D·3H)
//!   2. forward steps: T dispatches of the fused step                   hs, out, gates
//!   3. dropout (training, between layers): X_{l+1} = out · mask / (1 - p)
//! The tape keeps X_l, hs and gates of every layer.
//!
//! Backward, per layer from the top:
//!   1. backward steps: T + 1 dispatches                                dG_i, dG_h, dL/dh0
//!   2. gemm:  dW_ih = dG_iᵀ · X_l, dW_hh = dG_hᵀ · H_prev, dX_l = dG_i · W_ih
//!   3. sum_rows: db_ih, db_hh (column sums of dG_i, dG_h)
//!   4. dropout of dX_l with the forward's mask, which is dL/d(out) of layer l-1.
//! ```

use ndarray::{Array1, Array2, Array3, ArrayView3};

use crate::config::GruConfig;
use crate::cpu::GruGrads;
use crate::error::{elements, GruError, Result};
use crate::gpu::context::{GpuContext, PooledBuffer};
use crate::gpu::context::{Products, WINDOW_BYTES};
use crate::gpu::kernels::{
    seq_private_fits, Chunked, Gemm, RowSum, StepShape, StepWindows, SEQ_HMAX,
};
use crate::gpu::recorder::Recorder;
use crate::params::{DirParams, GruParams};

/// The parameters of one layer, both directions stacked, on the device.
#[derive(Debug)]
struct LayerParams {
    /// `(D·3H, I_l)`
    w_ih: PooledBuffer,
    /// `(D·3H)`
    b_ih: Option<PooledBuffer>,
    /// `(D, 3H, H)`
    w_hh: PooledBuffer,
    /// `(D, H, 3H)`: `W_hh` transposed, for the forward step.
    w_hh_t: PooledBuffer,
    /// `(D·3H)`
    b_hh: Option<PooledBuffer>,
    /// The weights in the chunked layout of the window kernels, where they are used.
    win: Option<LayerWindows>,
}

/// A layer's weights in the chunked layout (see `Chunked`), derived from the dense ones.
#[derive(Debug)]
struct LayerWindows {
    /// `W_ih` as `(D·3H, I_l)`: the input projections.
    w_ih: PooledBuffer,
    /// `W_ihᵀ` as `(I_l, D·3H)`: the gradient of the input.
    w_ih_t: PooledBuffer,
    /// `W_hh` as `(3H, H)` per direction: the forward recurrent product.
    w_hh: PooledBuffer,
    /// `W_hhᵀ` as `(H, 3H)` per direction: the backward recurrent product.
    w_hh_t: PooledBuffer,
}

/// The chunked layouts of a layer's weights (offsets 0; per direction for `W_hh`).
struct WindowLayouts {
    w_ih: Chunked,
    w_ih_t: Chunked,
    w_hh: Chunked,
    w_hh_t: Chunked,
}

fn window_layouts(cfg: &GruConfig, layer: usize) -> WindowLayouts {
    let (nd, h, i_l) = (
        cfg.num_directions(),
        cfg.hidden_size,
        cfg.layer_input_size(layer),
    );
    WindowLayouts {
        w_ih: Chunked::new(nd * 3 * h, i_l, 0),
        w_ih_t: Chunked::new(i_l, nd * 3 * h, 0),
        w_hh: Chunked::new(3 * h, h, 0),
        w_hh_t: Chunked::new(h, 3 * h, 0),
    }
}

/// What the forward leaves on the device for the backward: per layer its
/// input, the hidden states and the gates of every step.
#[derive(Debug)]
pub struct GpuTape {
    model_id: u64,
    t_len: usize,
    batch: usize,
    dropout: Option<(u32, f32)>,
    layers: Vec<LayerTape>,
}

#[derive(Debug)]
struct LayerTape {
    /// `(T·B, I_l)`, sequence-first.
    xin: PooledBuffer,
    /// `(D, T+1, B, H)`
    hs: PooledBuffer,
    /// `(D, T, B, 4, H)`
    gates: PooledBuffer,
}

impl GpuTape {
    /// `(T, B)` of the forward that made it.
    pub fn dims(&self) -> (usize, usize) {
        (self.t_len, self.batch)
    }
}

/// The result of [`GpuGru::forward_buffers`]: device buffers the caller owns.
#[derive(Debug)]
///
/// The buffers come from the context's pool and go back to it when dropped
/// (`PooledBuffer::into_inner` keeps one); `.buffer()` is the `wgpu::Buffer`,
/// `.len()` the floats of data at its start (the buffer may be longer).
pub struct GpuForward {
    /// `output`, in the layout of the configuration.
    pub output: PooledBuffer,
    /// `h_n`, `(L·D, B, H)`.
    pub h_n: PooledBuffer,
    pub tape: GpuTape,
}

/// The gradients of one layer's parameters on the device, in the layout of
/// [`GpuGru`]'s own parameters (both directions stacked).
#[derive(Debug)]
pub struct GpuLayerGrads {
    /// `(D·3H, I_l)`
    pub w_ih: PooledBuffer,
    /// `(D, 3H, H)`
    pub w_hh: PooledBuffer,
    /// `(D·3H)`, where the GRU has biases
    pub b_ih: Option<PooledBuffer>,
    /// `(D·3H)`, where the GRU has biases
    pub b_hh: Option<PooledBuffer>,
}

impl GpuLayerGrads {
    /// The gradients in the order of the layer's parameters: `w_ih`, `w_hh`, `b_ih`, `b_hh`.
    pub fn tensors(&self) -> Vec<&PooledBuffer> {
        [
            Some(&self.w_ih),
            Some(&self.w_hh),
            self.b_ih.as_ref(),
            self.b_hh.as_ref(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// The result of [`GpuGru::backward_buffers`].
#[derive(Debug)]
pub struct GpuBackward {
    /// `dL/dx`, in the layout of `x`.
    pub grad_x: PooledBuffer,
    /// `dL/dh0`, `(L·D, B, H)`.
    pub grad_h0: PooledBuffer,
    /// Per layer.
    pub grads: Vec<GpuLayerGrads>,
}

/// What the last forward or backward call did on the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct CallStats {
    /// Compute dispatches recorded.
    pub dispatches: u32,
    /// Queue submissions.
    pub submissions: u32,
    /// The device's own time for the call in milliseconds, from timestamp
    /// queries, where timing is on and the adapter offers them.
    pub gpu_ms: Option<f64>,
}

/// How the time loop of a layer runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recurrence {
    /// Choose per layer by the measured rule (see the README).
    #[default]
    Auto,
    /// One dispatch for all T steps (the `sequence` kernels); H <= 256.
    Persistent,
    /// One dispatch per step (the `step` kernels), or a window product and a
    /// step on the window path.
    PerStep,
}

/// A GRU whose parameters live on the GPU.
pub struct GpuGru {
    ctx: GpuContext,
    config: GruConfig,
    id: u64,
    layers: Vec<LayerParams>,
    timing: std::sync::atomic::AtomicBool,
    stats: std::sync::Mutex<CallStats>,
    recurrence: std::sync::Mutex<Recurrence>,
}

impl std::fmt::Debug for GpuGru {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuGru")
            .field("config", &self.config)
            .field("id", &self.id)
            .finish()
    }
}

/// Forward's device-side results before they are handed out.
pub(crate) struct ForwardOut {
    output: PooledBuffer,
    h_n: PooledBuffer,
    tape: GpuTape,
}

pub(crate) struct BackwardOut {
    pub(crate) grad_x: PooledBuffer,
    pub(crate) grad_h0: PooledBuffer,
    pub(crate) grads: Vec<[Option<PooledBuffer>; 4]>,
}

/// The rule: whether the persistent kernels run the time loop of hidden size
/// `h`. On CPU adapters (llvmpipe) the per-step window path was faster at
/// every shape measured (BENCHMARKS.md: workgroup-memory and private-array
/// loads cost there what storage loads cost), so never. On GPUs, which this
/// project could not measure, the persistent kernels wherever they fit
/// (`h <= 256`): they save a dispatch and a barrier per step, which is most of
/// the time of a step at these sizes.
fn auto_persistent(cpu: bool, h: usize) -> bool {
    !cpu && h <= SEQ_HMAX
}

fn stack<'a>(parts: impl Iterator<Item = std::borrow::Cow<'a, [f32]>>) -> Vec<f32> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&p);
    }
    out
}

/// The values of `a` in logical (row-major) order: its own memory where it is
/// in standard layout, else a copy.
fn std_slice<D: ndarray::Dimension>(
    a: &ndarray::ArrayBase<ndarray::OwnedRepr<f32>, D>,
) -> std::borrow::Cow<'_, [f32]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().copied().collect()),
    }
}

impl GpuGru {
    /// Uploads `params` to the device of `ctx`.
    pub fn new(ctx: &GpuContext, params: &GruParams<f32>) -> Result<Self> {
        params.config().validate()?;
        params.check()?;
        let mut m = GpuGru {
            ctx: ctx.clone(),
            config: params.config().clone(),
            id: ctx.next_id(),
            layers: Vec::new(),
            timing: false.into(),
            stats: Default::default(),
            recurrence: Default::default(),
        };
        m.set_params(params)?;
        Ok(m)
    }

    pub fn config(&self) -> &GruConfig {
        &self.config
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Times every forward and backward call on the device with timestamp
    /// queries (where the adapter has them); the call then waits for the
    /// device to finish. See [`last_call_stats`](Self::last_call_stats).
    pub fn set_timing(&self, on: bool) {
        self.timing.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Dispatches, submissions and device time of the last forward or backward call.
    pub fn last_call_stats(&self) -> CallStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forces the persistent or the per-step time loop (or goes back to the
    /// automatic choice). The persistent kernels take hidden sizes up to 256:
    /// forcing them on a larger one makes every call fail with an error.
    pub fn set_recurrence(&self, r: Recurrence) {
        *self.recurrence.lock().unwrap_or_else(|p| p.into_inner()) = r;
    }

    /// Whether the time loop runs persistent: the setting, or the rule (see
    /// `auto_persistent`).
    pub fn persistent(&self) -> Result<bool> {
        let h = self.config.hidden_size;
        match *self.recurrence.lock().unwrap_or_else(|p| p.into_inner()) {
            Recurrence::Persistent if h > SEQ_HMAX => Err(GruError::InvalidConfig(format!(
                "the persistent kernels take hidden sizes up to {SEQ_HMAX}; this GRU has {h}"
            ))),
            Recurrence::Persistent => Ok(true),
            Recurrence::PerStep => Ok(false),
            Recurrence::Auto => Ok(auto_persistent(self.ctx.is_cpu(), h)),
        }
    }

    pub(crate) fn recorder(&self) -> Recorder<'_> {
        Recorder::new(
            &self.ctx,
            self.timing.load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Submits a call's recording, once, and keeps its statistics.
    pub(crate) fn finish(&self, rec: Recorder) -> Result<()> {
        let dispatches = rec.dispatches;
        let gpu_ms = rec.submit()?;
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = CallStats {
            dispatches,
            submissions: 1,
            gpu_ms,
        };
        Ok(())
    }

    /// Replaces the parameters (of the same configuration).
    pub fn set_params(&mut self, params: &GruParams<f32>) -> Result<()> {
        if params.config() != &self.config {
            return Err(GruError::InvalidConfig(format!(
                "parameters of {:?} given to a model of {:?}",
                params.config(),
                self.config
            )));
        }
        params.check()?;
        let ctx = self.ctx.clone();
        ctx.scoped(|| {
            let cfg = &self.config;
            let (nd, h) = (cfg.num_directions(), cfg.hidden_size);
            let mut layers = Vec::with_capacity(cfg.num_layers);
            let mut rec = Recorder::new(&ctx, false);
            for l in 0..cfg.num_layers {
                let dirs = (0..nd)
                    .map(|d| params.dir(l, d))
                    .collect::<Result<Vec<&DirParams<f32>>>>()?;
                let w_ih = ctx.upload(
                    "weight_ih",
                    &stack(dirs.iter().map(|p| std_slice(&p.weight_ih))),
                )?;
                let w_hh = ctx.upload(
                    "weight_hh",
                    &stack(dirs.iter().map(|p| std_slice(&p.weight_hh))),
                )?;
                let bias = |f: fn(&DirParams<f32>) -> &Option<Array1<f32>>,
                            what: &str|
                 -> Result<Option<PooledBuffer>> {
                    if !cfg.bias {
                        return Ok(None);
                    }
                    let v = stack(
                        dirs.iter()
                            .map(|p| std_slice(f(p).as_ref().expect("config has bias"))),
                    );
                    ctx.upload(what, &v).map(Some)
                };
                let b_ih = bias(|p| &p.bias_ih, "bias_ih")?;
                let b_hh = bias(|p| &p.bias_hh, "bias_hh")?;
                let w_hh_t = ctx.storage("weight_hh transposed", nd * 3 * h * h)?;
                let win = if ctx.products() == Products::Windows {
                    let lay = window_layouts(cfg, l);
                    Some(LayerWindows {
                        w_ih: ctx.storage("weight_ih chunked", lay.w_ih.len())?,
                        w_ih_t: ctx.storage("weight_ih transposed, chunked", lay.w_ih_t.len())?,
                        w_hh: ctx.storage("weight_hh chunked", nd * lay.w_hh.len())?,
                        w_hh_t: ctx
                            .storage("weight_hh transposed, chunked", nd * lay.w_hh_t.len())?,
                    })
                } else {
                    None
                };
                layers.push(LayerParams {
                    w_ih,
                    b_ih,
                    w_hh,
                    w_hh_t,
                    b_hh,
                    win,
                });
            }
            self.layers = layers;
            self.record_derived(&mut rec)?;
            rec.submit()?;
            Ok(())
        })
    }

    /// Records the copies of the weights that the kernels read besides the
    /// weights themselves: `W_hhᵀ`, and on the window path the chunked
    /// layouts. After the weights change on the device (an optimiser step),
    /// these are recorded again.
    pub(crate) fn record_derived(&self, rec: &mut Recorder) -> Result<()> {
        let cfg = &self.config;
        let k = &self.ctx.inner.kernels;
        let (nd, h) = (cfg.num_directions(), cfg.hidden_size);
        for (l, lp) in self.layers.iter().enumerate() {
            let i_l = cfg.layer_input_size(l);
            k.transpose(rec, lp.w_hh.buffer(), lp.w_hh_t.buffer(), nd, 3 * h, h)?;
            let Some(win) = &lp.win else { continue };
            let lay = window_layouts(cfg, l);
            // W_ih (D·3H, I_l) row-major: element (r, k) at r·I_l + k; its transpose (k, r).
            k.chunk(
                rec,
                lp.w_ih.buffer(),
                0,
                i_l,
                1,
                0,
                win.w_ih.buffer(),
                &lay.w_ih,
                0,
                1,
            )?;
            k.chunk(
                rec,
                lp.w_ih.buffer(),
                0,
                1,
                i_l,
                0,
                win.w_ih_t.buffer(),
                &lay.w_ih_t,
                0,
                1,
            )?;
            // W_hh (D, 3H, H): per direction (r, k) at r·H + k; the transpose (j, k) at k·H + j.
            let (hh, w1, w2) = (3 * h * h, lay.w_hh.len(), lay.w_hh_t.len());
            k.chunk(
                rec,
                lp.w_hh.buffer(),
                0,
                h,
                1,
                hh,
                win.w_hh.buffer(),
                &lay.w_hh,
                w1,
                nd,
            )?;
            k.chunk(
                rec,
                lp.w_hh.buffer(),
                0,
                1,
                h,
                hh,
                win.w_hh_t.buffer(),
                &lay.w_hh_t,
                w2,
                nd,
            )?;
        }
        Ok(())
    }

    /// The parameter tensors on the device, in the order of the gradients of
    /// [`GpuLayerGrads::tensors`] layer by layer (`w_ih`, `w_hh`, `b_ih`,
    /// `b_hh`; both directions stacked), with their lengths in floats.
    pub fn param_buffers(&self) -> Vec<(&wgpu::Buffer, usize)> {
        self.layers
            .iter()
            .flat_map(|lp| {
                [
                    Some(&lp.w_ih),
                    Some(&lp.w_hh),
                    lp.b_ih.as_ref(),
                    lp.b_hh.as_ref(),
                ]
            })
            .flatten()
            .map(|b| (b.buffer(), b.len()))
            .collect()
    }

    /// One optimiser step on the parameters from a backward's gradients, then
    /// the derived copies of the weights: one submission, all on the device.
    pub fn update(&self, opt: &mut crate::gpu::GpuOptimizer, grads: &GpuBackward) -> Result<()> {
        let g: Vec<&PooledBuffer> = grads.grads.iter().flat_map(|l| l.tensors()).collect();
        self.update_from(opt, &g)
    }

    /// [`update`](Self::update) from gradient buffers in the order of
    /// [`param_buffers`](Self::param_buffers).
    pub(crate) fn update_from(
        &self,
        opt: &mut crate::gpu::GpuOptimizer,
        grads: &[&PooledBuffer],
    ) -> Result<()> {
        let params = self.param_buffers();
        if grads.len() != params.len() {
            return Err(GruError::InvalidConfig(format!(
                "{} gradients for {} parameter tensors",
                grads.len(),
                params.len()
            )));
        }
        for (i, (g, (_, len))) in grads.iter().zip(&params).enumerate() {
            if g.len() != *len {
                return Err(GruError::LengthMismatch {
                    name: format!("gradient {i}"),
                    expected: *len as u64,
                    actual: g.len() as u64,
                    unit: "floats",
                });
            }
        }
        self.ctx.scoped(|| {
            let mut rec = Recorder::new(&self.ctx, false);
            let p: Vec<&wgpu::Buffer> = params.iter().map(|(b, _)| *b).collect();
            let lens: Vec<usize> = params.iter().map(|(_, l)| *l).collect();
            let g: Vec<&wgpu::Buffer> = grads.iter().map(|b| b.buffer()).collect();
            opt.record(&mut rec, &p, &g, &lens)?;
            self.record_derived(&mut rec)?;
            rec.submit()?;
            Ok(())
        })
    }

    /// `gi = X · W_ihᵀ + b_ih` for all T·B rows of layer `l`: `(T·B, D·3H)`.
    fn input_projection(
        &self,
        rec: &mut Recorder,
        l: usize,
        xin: &PooledBuffer,
        gi: &PooledBuffer,
        tb: usize,
    ) -> Result<()> {
        let cfg = &self.config;
        let k = &self.ctx.inner.kernels;
        let lp = &self.layers[l];
        let (n3, i_l) = (
            cfg.num_directions() * 3 * cfg.hidden_size,
            cfg.layer_input_size(l),
        );
        let bias = lp.b_ih.as_ref().map(|b| b.buffer());
        match &lp.win {
            None => k.gemm(
                rec,
                xin.buffer(),
                lp.w_ih.buffer(),
                bias,
                gi.buffer(),
                &Gemm {
                    m: tb,
                    n: n3,
                    k: i_l,
                    trans_b: true,
                    lda: i_l,
                    ldb: i_l,
                    ldc: n3,
                    ..Default::default()
                },
            ),
            Some(win) => {
                let lx = Chunked::new(tb, i_l, 0);
                let xc = self.ctx.storage("layer input, chunked", lx.len())?;
                k.chunk(rec, xin.buffer(), 0, i_l, 1, 0, xc.buffer(), &lx, 0, 1)?;
                let lw = window_layouts(cfg, l).w_ih;
                k.gemm_windows(
                    rec,
                    xc.buffer(),
                    &lx,
                    win.w_ih.buffer(),
                    &lw,
                    bias.map(|b| (b, 0)),
                    gi.buffer(),
                    0,
                    n3,
                )?;
                rec.keep(xc);
                Ok(())
            }
        }
    }

    /// `dW_ih = dG_iᵀ · X_l` `(D·3H, I_l)` and `dW_hh[d] = dG_h[d]ᵀ · H_prev[d]`
    /// `(3H, H)`, each summed over all T·B rows.
    #[allow(clippy::too_many_arguments)]
    fn weight_grads(
        &self,
        rec: &mut Recorder,
        l: usize,
        lt: &LayerTape,
        dgi: &PooledBuffer,
        dgh: &PooledBuffer,
        dw_ih: &PooledBuffer,
        dw_hh: &PooledBuffer,
        t_len: usize,
        batch: usize,
    ) -> Result<()> {
        let cfg = &self.config;
        let k = &self.ctx.inner.kernels;
        let (nd, h, i_l) = (
            cfg.num_directions(),
            cfg.hidden_size,
            cfg.layer_input_size(l),
        );
        let (tb, h3) = (t_len * batch, 3 * cfg.hidden_size);
        if self.layers[l].win.is_none() {
            k.gemm(
                rec,
                dgi.buffer(),
                lt.xin.buffer(),
                None,
                dw_ih.buffer(),
                &Gemm {
                    m: nd * h3,
                    n: i_l,
                    k: tb,
                    trans_a: true,
                    lda: nd * h3,
                    ldb: i_l,
                    ldc: i_l,
                    ..Default::default()
                },
            )?;
            return k.gemm(
                rec,
                dgh.buffer(),
                lt.hs.buffer(),
                None,
                dw_hh.buffer(),
                &Gemm {
                    m: h3,
                    n: h,
                    k: tb,
                    trans_a: true,
                    lda: h3,
                    ldb: h,
                    ldc: h,
                    batch: nd,
                    a_batch: tb * h3,
                    b_batch: (t_len + 1) * batch * h,
                    c_batch: h3 * h,
                    ..Default::default()
                },
            );
        }
        // The window kernels read both operands with K = T·B contiguous: the
        // transposes, chunked.
        let (lg, lx) = (Chunked::new(nd * h3, tb, 0), Chunked::new(i_l, tb, 0));
        let gt = self.ctx.storage("dG_i transposed, chunked", lg.len())?;
        let xt = self
            .ctx
            .storage("layer input transposed, chunked", lx.len())?;
        k.chunk(rec, dgi.buffer(), 0, 1, nd * h3, 0, gt.buffer(), &lg, 0, 1)?;
        k.chunk(rec, lt.xin.buffer(), 0, 1, i_l, 0, xt.buffer(), &lx, 0, 1)?;
        k.gemm_windows(
            rec,
            gt.buffer(),
            &lg,
            xt.buffer(),
            &lx,
            None,
            dw_ih.buffer(),
            0,
            i_l,
        )?;
        let (lgh, lh) = (Chunked::new(h3, tb, 0), Chunked::new(h, tb, 0));
        let ght = self
            .ctx
            .storage("dG_h transposed, chunked", nd * lgh.len())?;
        let ht = self
            .ctx
            .storage("previous states transposed, chunked", nd * lh.len())?;
        k.chunk(
            rec,
            dgh.buffer(),
            0,
            1,
            h3,
            tb * h3,
            ght.buffer(),
            &lgh,
            lgh.len(),
            nd,
        )?;
        k.chunk(
            rec,
            lt.hs.buffer(),
            0,
            1,
            h,
            (t_len + 1) * batch * h,
            ht.buffer(),
            &lh,
            lh.len(),
            nd,
        )?;
        for d in 0..nd {
            let a = Chunked {
                off: d * lgh.len(),
                ..lgh
            };
            let b = Chunked {
                off: d * lh.len(),
                ..lh
            };
            k.gemm_windows(
                rec,
                ght.buffer(),
                &a,
                ht.buffer(),
                &b,
                None,
                dw_hh.buffer(),
                d * h3 * h,
                h,
            )?;
        }
        for b in [gt, xt, ght, ht] {
            rec.keep(b);
        }
        Ok(())
    }

    /// `dX_l = dG_i · W_ih` `(T·B, I_l)`: both directions summed by the product.
    fn input_grad(
        &self,
        rec: &mut Recorder,
        l: usize,
        dgi: &PooledBuffer,
        dx: &PooledBuffer,
        tb: usize,
    ) -> Result<()> {
        let cfg = &self.config;
        let k = &self.ctx.inner.kernels;
        let lp = &self.layers[l];
        let (n3, i_l) = (
            cfg.num_directions() * 3 * cfg.hidden_size,
            cfg.layer_input_size(l),
        );
        match &lp.win {
            None => k.gemm(
                rec,
                dgi.buffer(),
                lp.w_ih.buffer(),
                None,
                dx.buffer(),
                &Gemm {
                    m: tb,
                    n: i_l,
                    k: n3,
                    lda: n3,
                    ldb: i_l,
                    ldc: i_l,
                    ..Default::default()
                },
            ),
            Some(win) => {
                let lg = Chunked::new(tb, n3, 0);
                let gc = self.ctx.storage("dG_i chunked", lg.len())?;
                k.chunk(rec, dgi.buffer(), 0, n3, 1, 0, gc.buffer(), &lg, 0, 1)?;
                let lw = window_layouts(cfg, l).w_ih_t;
                k.gemm_windows(
                    rec,
                    gc.buffer(),
                    &lg,
                    win.w_ih_t.buffer(),
                    &lw,
                    None,
                    dx.buffer(),
                    0,
                    i_l,
                )?;
                rec.keep(gc);
                Ok(())
            }
        }
    }

    /// Reads the parameters back from the device.
    pub fn params(&self) -> Result<GruParams<f32>> {
        let cfg = &self.config;
        let (nd, h3) = (cfg.num_directions(), 3 * cfg.hidden_size);
        self.ctx.scoped(|| {
            let mut rec = Recorder::new(&self.ctx, false);
            let mut reads = Vec::new();
            for lp in &self.layers {
                for b in [
                    Some(&lp.w_ih),
                    Some(&lp.w_hh),
                    lp.b_ih.as_ref(),
                    lp.b_hh.as_ref(),
                ]
                .into_iter()
                .flatten()
                {
                    let len = b.len();
                    let st = self.ctx.staging((len * 4) as u64);
                    rec.copy(b.buffer(), 0, st.buffer(), 0, (len * 4) as u64);
                    reads.push((st, len));
                }
            }
            rec.submit()?;
            let data = self
                .ctx
                .read_staging(&reads.iter().map(|(b, l)| (b, *l)).collect::<Vec<_>>())?;
            let mut it = data.into_iter();
            let mut p = GruParams::<f32>::zeros(cfg)?;
            for l in 0..cfg.num_layers {
                let w_ih = it.next().expect("read");
                let w_hh = it.next().expect("read");
                let (b_ih, b_hh) = if cfg.bias {
                    (it.next(), it.next())
                } else {
                    (None, None)
                };
                let i_l = cfg.layer_input_size(l);
                for d in 0..nd {
                    let dp = p.dir_mut(l, d)?;
                    dp.weight_ih
                        .as_slice_mut()
                        .expect("standard")
                        .copy_from_slice(&w_ih[d * h3 * i_l..(d + 1) * h3 * i_l]);
                    let hh = h3 * cfg.hidden_size;
                    dp.weight_hh
                        .as_slice_mut()
                        .expect("standard")
                        .copy_from_slice(&w_hh[d * hh..(d + 1) * hh]);
                    if let (Some(b), Some(dst)) = (&b_ih, dp.bias_ih.as_mut()) {
                        dst.as_slice_mut()
                            .expect("standard")
                            .copy_from_slice(&b[d * h3..(d + 1) * h3]);
                    }
                    if let (Some(b), Some(dst)) = (&b_hh, dp.bias_hh.as_mut()) {
                        dst.as_slice_mut()
                            .expect("standard")
                            .copy_from_slice(&b[d * h3..(d + 1) * h3]);
                    }
                }
            }
            Ok(p)
        })
    }

    /// Checks, before any work or allocation, that a forward and backward
    /// of `t_len` steps on a batch of `batch` fit the device: no size is 0,
    /// and no buffer exceeds the device's limits (the error names the buffer,
    /// its size and the limit).
    pub fn check_fits(&self, t_len: usize, batch: usize) -> Result<()> {
        self.check_dims(t_len, batch)
    }

    fn check_dims(&self, t_len: usize, batch: usize) -> Result<()> {
        if t_len == 0 || batch == 0 {
            return Err(GruError::ZeroSize {
                name: "x".into(),
                dim: if t_len == 0 { "T" } else { "B" },
                shape: self.config.input_shape(t_len, batch).to_vec().into(),
            });
        }
        self.check_sizes(t_len, batch)
    }

    /// Refuses, before any work, a call whose largest buffers exceed what the
    /// device allows, naming the buffer, its size and the limit.
    fn check_sizes(&self, t_len: usize, batch: usize) -> Result<()> {
        let cfg = &self.config;
        let (nd, h) = (cfg.num_directions(), cfg.hidden_size);
        let i_max = if cfg.num_layers > 1 {
            cfg.input_size.max(nd * h)
        } else {
            cfg.input_size
        };
        let tb1 = t_len.saturating_add(1);
        let checks: [(&str, [usize; 4]); 5] = [
            ("the layer input (T·B·I)", [t_len, batch, i_max, 1]),
            (
                "the gates on the tape (D·T·B·4H)",
                [nd, t_len, batch, 4 * h],
            ),
            (
                "the hidden states on the tape (D·(T+1)·B·H)",
                [nd, tb1, batch, h],
            ),
            (
                "the input projections and their gradients (T·B·D·3H)",
                [t_len, batch, nd, 3 * h],
            ),
            // The chunked copies of the window kernels pad T·B to a multiple of 8.
            (
                "a chunked copy (D·3H·T·B, padded)",
                [nd * 3 * h, t_len.saturating_add(8), batch, 1],
            ),
        ];
        for (what, dims) in checks {
            let floats = elements(what, &dims)?;
            self.ctx.check_buffer_size(
                what,
                (floats as u64)
                    .saturating_mul(4)
                    .saturating_add(WINDOW_BYTES),
            )?;
        }
        Ok(())
    }

    /// Checks a caller's buffer: large enough for `floats` and usable as a copy source.
    fn check_buffer(name: &str, buf: &wgpu::Buffer, floats: usize) -> Result<()> {
        let need = (floats as u64).saturating_mul(4);
        if buf.size() < need {
            return Err(GruError::LengthMismatch {
                name: name.to_string(),
                expected: need,
                actual: buf.size(),
                unit: "bytes (at least)",
            });
        }
        if !buf.usage().contains(wgpu::BufferUsages::COPY_SRC) {
            return Err(GruError::InvalidConfig(format!(
                "`{name}`: the buffer needs the usage COPY_SRC, it has {:?}",
                buf.usage()
            )));
        }
        Ok(())
    }

    /// Records the forward of the whole stack. `x` is in the caller's layout,
    /// `h0` is `(L·D, B, H)`.
    fn record_forward(
        &self,
        rec: &mut Recorder,
        x: &wgpu::Buffer,
        h0: Option<&wgpu::Buffer>,
        t_len: usize,
        batch: usize,
        dropout: Option<(u32, f32)>,
    ) -> Result<ForwardOut> {
        let cfg = &self.config;
        let k = &self.ctx.inner.kernels;
        let (nd, h) = (cfg.num_directions(), cfg.hidden_size);
        let (tb, h3) = (t_len * batch, 3 * h);
        // Layer 0's input, sequence-first, owned by the tape.
        let mut xin = self.ctx.storage("x", tb * cfg.input_size)?;
        if cfg.batch_first {
            k.permute01(rec, x, 0, xin.buffer(), 0, batch, t_len, cfg.input_size)?;
        } else {
            rec.copy(x, 0, xin.buffer(), 0, (tb * cfg.input_size * 4) as u64);
        }
        let h_n = self.ctx.storage("h_n", cfg.num_layers * nd * batch * h)?;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        let state_bytes = (batch * h * 4) as u64;
        let persistent = self.persistent()?;
        for (l, lp) in self.layers.iter().enumerate() {
            let gi = self.ctx.storage("gi (input projections)", tb * nd * h3)?;
            self.input_projection(rec, l, &xin, &gi, tb)?;
            let hs = self
                .ctx
                .storage("hidden states", nd * (t_len + 1) * batch * h)?;
            let gates = self.ctx.storage("gates", nd * t_len * batch * 4 * h)?;
            let out = self.ctx.storage("layer output", tb * nd * h)?;
            for d in 0..nd {
                let slot0 = (d * (t_len + 1) * batch * h * 4) as u64;
                let src = h0.map(|b| (b, ((l * nd + d) as u64) * state_bytes));
                rec.copy_or_clear(src, hs.buffer(), slot0, state_bytes);
            }
            let shape = StepShape {
                t_len,
                batch,
                hidden: h,
                dirs: nd,
                has_bias: cfg.bias,
            };
            if persistent {
                let private = self.ctx.is_cpu() && seq_private_fits(h);
                k.forward_sequence(
                    rec,
                    &shape,
                    gi.buffer(),
                    lp.w_hh_t.buffer(),
                    lp.b_hh.as_ref().map(|b| b.buffer()),
                    hs.buffer(),
                    out.buffer(),
                    gates.buffer(),
                    private,
                )?;
            } else {
                let win_bufs = match &lp.win {
                    Some(win) => {
                        let state = Chunked::new(batch, h, 0);
                        let gh = self
                            .ctx
                            .storage("gh (recurrent products)", nd * batch * h3)?;
                        let hwin = self.ctx.storage("h, chunked", 2 * nd * state.len())?;
                        // The steps write only the H columns: the padding must be zero.
                        rec.clear(hwin.buffer(), 0, (2 * nd * state.len() * 4) as u64);
                        // Parity 0 holds h0 for the first product.
                        if let Some(h0) = h0 {
                            k.chunk(
                                rec,
                                h0,
                                l * nd * batch * h,
                                h,
                                1,
                                batch * h,
                                hwin.buffer(),
                                &state,
                                state.len(),
                                nd,
                            )?;
                        }
                        Some((gh, hwin, state, win))
                    }
                    None => None,
                };
                let step_win = win_bufs.as_ref().map(|(gh, hwin, state, win)| StepWindows {
                    product: gh.buffer(),
                    state_buf: hwin.buffer(),
                    state: *state,
                    weights_buf: win.w_hh.buffer(),
                    weights: window_layouts(cfg, l).w_hh,
                });
                k.forward_steps(
                    rec,
                    &shape,
                    gi.buffer(),
                    lp.w_hh_t.buffer(),
                    lp.b_hh.as_ref().map(|b| b.buffer()),
                    hs.buffer(),
                    out.buffer(),
                    gates.buffer(),
                    step_win.as_ref(),
                )?;
                if let Some((gh, hwin, _, _)) = win_bufs {
                    rec.keep(gh);
                    rec.keep(hwin);
                }
            }
            rec.keep(gi);
            for d in 0..nd {
                let last = ((d * (t_len + 1) + t_len) * batch * h * 4) as u64;
                rec.copy(
                    hs.buffer(),
                    last,
                    h_n.buffer(),
                    ((l * nd + d) as u64) * state_bytes,
                    state_bytes,
                );
            }
            let next = match dropout {
                Some((seed, p)) if l + 1 < cfg.num_layers => {
                    let dropped = self
                        .ctx
                        .storage("layer output after dropout", tb * nd * h)?;
                    k.dropout(
                        rec,
                        out.buffer(),
                        dropped.buffer(),
                        tb * nd * h,
                        seed,
                        l as u32,
                        p,
                    )?;
                    rec.keep(out);
                    dropped
                }
                _ => out,
            };
            layers.push(LayerTape {
                xin: std::mem::replace(&mut xin, next),
                hs,
                gates,
            });
        }
        // `xin` now holds the last layer's output, sequence-first.
        let output = if cfg.batch_first {
            let o = self.ctx.storage("output", tb * nd * h)?;
            k.permute01(rec, xin.buffer(), 0, o.buffer(), 0, t_len, batch, nd * h)?;
            rec.keep(xin);
            o
        } else {
            xin
        };
        Ok(ForwardOut {
            output,
            h_n,
            tape: GpuTape {
                model_id: self.id,
                t_len,
                batch,
                dropout,
                layers,
            },
        })
    }

    /// Records the backward of the whole stack for `tape`.
    pub(crate) fn record_backward(
        &self,
        rec: &mut Recorder,
        tape: &GpuTape,
        grad_output: &wgpu::Buffer,
        grad_h_n: Option<&wgpu::Buffer>,
    ) -> Result<BackwardOut> {
        let cfg = &self.config;
        let k = &self.ctx.inner.kernels;
        let (nd, h) = (cfg.num_directions(), cfg.hidden_size);
        let (t_len, batch) = (tape.t_len, tape.batch);
        let (tb, h3) = (t_len * batch, 3 * h);
        let state_bytes = (batch * h * 4) as u64;
        // dL/d(output of the top layer), sequence-first.
        let mut d_out = self.ctx.storage("grad_output", tb * nd * h)?;
        if cfg.batch_first {
            k.permute01(rec, grad_output, 0, d_out.buffer(), 0, batch, t_len, nd * h)?;
        } else {
            rec.copy(grad_output, 0, d_out.buffer(), 0, (tb * nd * h * 4) as u64);
        }
        let grad_h0 = self
            .ctx
            .storage("grad_h0", cfg.num_layers * nd * batch * h)?;
        let mut grads: Vec<[Option<PooledBuffer>; 4]> = Vec::with_capacity(cfg.num_layers);
        let persistent = self.persistent()?;
        for l in (0..cfg.num_layers).rev() {
            let lp = &self.layers[l];
            let lt = &tape.layers[l];
            let i_l = cfg.layer_input_size(l);
            let dgi = self.ctx.storage("dG_i", tb * nd * h3)?;
            let dgh = self.ctx.storage("dG_h", nd * tb * h3)?;
            let dh = self.ctx.storage("dh", nd * 2 * batch * h)?;
            for d in 0..nd {
                let slot = ((d * 2 + t_len % 2) * batch * h * 4) as u64;
                let src = grad_h_n.map(|b| (b, ((l * nd + d) as u64) * state_bytes));
                rec.copy_or_clear(src, dh.buffer(), slot, state_bytes);
            }
            let shape = StepShape {
                t_len,
                batch,
                hidden: h,
                dirs: nd,
                has_bias: cfg.bias,
            };
            if persistent {
                let private = self.ctx.is_cpu() && seq_private_fits(h);
                k.backward_sequence(
                    rec,
                    &shape,
                    d_out.buffer(),
                    lt.gates.buffer(),
                    lt.hs.buffer(),
                    lp.w_hh.buffer(),
                    dgh.buffer(),
                    dgi.buffer(),
                    dh.buffer(),
                    private,
                )?;
            } else {
                let win_bufs = match &lp.win {
                    Some(win) => {
                        let state = Chunked::new(batch, h3, 0);
                        let carry = self
                            .ctx
                            .storage("carry (recurrent products)", nd * batch * h)?;
                        let gwin = self.ctx.storage("dG_h, chunked", 2 * nd * state.len())?;
                        // The steps write only the 3H columns: the padding must be zero.
                        rec.clear(gwin.buffer(), 0, (2 * nd * state.len() * 4) as u64);
                        Some((carry, gwin, state, win))
                    }
                    None => None,
                };
                let step_win = win_bufs
                    .as_ref()
                    .map(|(carry, gwin, state, win)| StepWindows {
                        product: carry.buffer(),
                        state_buf: gwin.buffer(),
                        state: *state,
                        weights_buf: win.w_hh_t.buffer(),
                        weights: window_layouts(cfg, l).w_hh_t,
                    });
                k.backward_steps(
                    rec,
                    &shape,
                    d_out.buffer(),
                    lt.gates.buffer(),
                    lt.hs.buffer(),
                    lp.w_hh.buffer(),
                    dgh.buffer(),
                    dgi.buffer(),
                    dh.buffer(),
                    step_win.as_ref(),
                )?;
                if let Some((carry, gwin, _, _)) = win_bufs {
                    rec.keep(carry);
                    rec.keep(gwin);
                }
            }
            for d in 0..nd {
                let slot = ((d * 2 + 1) * batch * h * 4) as u64;
                rec.copy(
                    dh.buffer(),
                    slot,
                    grad_h0.buffer(),
                    ((l * nd + d) as u64) * state_bytes,
                    state_bytes,
                );
            }
            let dw_ih = self.ctx.storage("grad weight_ih", nd * h3 * i_l)?;
            let dw_hh = self.ctx.storage("grad weight_hh", nd * h3 * h)?;
            self.weight_grads(rec, l, lt, &dgi, &dgh, &dw_ih, &dw_hh, t_len, batch)?;
            let (db_ih, db_hh) = if cfg.bias {
                let db_ih = self.ctx.storage("grad bias_ih", nd * h3)?;
                k.sum_rows(
                    rec,
                    dgi.buffer(),
                    db_ih.buffer(),
                    RowSum {
                        cols: nd * h3,
                        rows: tb,
                        ld: nd * h3,
                        in_off: 0,
                        in_batch: 0,
                        out_off: 0,
                        out_batch: 0,
                        batch: 1,
                    },
                )?;
                let db_hh = self.ctx.storage("grad bias_hh", nd * h3)?;
                k.sum_rows(
                    rec,
                    dgh.buffer(),
                    db_hh.buffer(),
                    RowSum {
                        cols: h3,
                        rows: tb,
                        ld: h3,
                        in_off: 0,
                        in_batch: tb * h3,
                        out_off: 0,
                        out_batch: h3,
                        batch: nd,
                    },
                )?;
                (Some(db_ih), Some(db_hh))
            } else {
                (None, None)
            };
            let dx = self.ctx.storage("grad of the layer input", tb * i_l)?;
            self.input_grad(rec, l, &dgi, &dx, tb)?;
            rec.keep(dgi);
            rec.keep(dgh);
            rec.keep(dh);
            let next = match tape.dropout {
                Some((seed, p)) if l > 0 => {
                    let masked = self
                        .ctx
                        .storage("grad of the layer input after dropout", tb * i_l)?;
                    k.dropout(
                        rec,
                        dx.buffer(),
                        masked.buffer(),
                        tb * i_l,
                        seed,
                        (l - 1) as u32,
                        p,
                    )?;
                    rec.keep(dx);
                    masked
                }
                _ => dx,
            };
            rec.keep(std::mem::replace(&mut d_out, next));
            grads.push([Some(dw_ih), Some(dw_hh), db_ih, db_hh]);
        }
        grads.reverse();
        let grad_x = if cfg.batch_first {
            let g = self.ctx.storage("grad_x", tb * cfg.input_size)?;
            k.permute01(
                rec,
                d_out.buffer(),
                0,
                g.buffer(),
                0,
                t_len,
                batch,
                cfg.input_size,
            )?;
            rec.keep(d_out);
            g
        } else {
            d_out
        };
        Ok(BackwardOut {
            grad_x,
            grad_h0,
            grads,
        })
    }

    pub(crate) fn check_tape(&self, tape: &GpuTape) -> Result<()> {
        if tape.model_id != self.id {
            return Err(GruError::Tape(format!(
                "this tape was made by the forward of another model (model {}, not {})",
                tape.model_id, self.id
            )));
        }
        Ok(())
    }

    /// Forward on device buffers: `x` in the configuration's layout
    /// (`(T, B, I)` or `(B, T, I)`), `h0` `(L·D, B, H)` or zeros. The buffers
    /// need the usage `COPY_SRC`; their contents are copied, so the caller may
    /// reuse them at once. Returns new buffers the caller owns, and the tape.
    pub fn forward_buffers(
        &self,
        x: &wgpu::Buffer,
        h0: Option<&wgpu::Buffer>,
        seq_len: usize,
        batch: usize,
    ) -> Result<GpuForward> {
        self.forward_buffers_impl(x, h0, seq_len, batch, None)
    }

    /// [`forward_buffers`](Self::forward_buffers) in training mode: dropout
    /// between layers from `seed`, where the configuration has one.
    pub fn forward_buffers_train(
        &self,
        x: &wgpu::Buffer,
        h0: Option<&wgpu::Buffer>,
        seq_len: usize,
        batch: usize,
        seed: u32,
    ) -> Result<GpuForward> {
        let p = self.config.dropout;
        self.forward_buffers_impl(x, h0, seq_len, batch, (p > 0.0).then_some((seed, p)))
    }

    fn forward_buffers_impl(
        &self,
        x: &wgpu::Buffer,
        h0: Option<&wgpu::Buffer>,
        seq_len: usize,
        batch: usize,
        dropout: Option<(u32, f32)>,
    ) -> Result<GpuForward> {
        self.check_dims(seq_len, batch)?;
        let cfg = &self.config;
        Self::check_buffer("x", x, elements("x", &cfg.input_shape(seq_len, batch))?)?;
        if let Some(h0) = h0 {
            Self::check_buffer("h0", h0, elements("h0", &cfg.state_shape(batch))?)?;
        }
        self.ctx.scoped(|| {
            let mut rec = self.recorder();
            let out = self.record_forward(&mut rec, x, h0, seq_len, batch, dropout)?;
            self.finish(rec)?;
            Ok(GpuForward {
                output: out.output,
                h_n: out.h_n,
                tape: out.tape,
            })
        })
    }

    /// Backward on device buffers: `grad_output` with the output's shape and
    /// layout, `grad_h_n` `(L·D, B, H)` or zeros. Consumes the tape.
    pub fn backward_buffers(
        &self,
        tape: GpuTape,
        grad_output: &wgpu::Buffer,
        grad_h_n: Option<&wgpu::Buffer>,
    ) -> Result<GpuBackward> {
        self.check_tape(&tape)?;
        let cfg = &self.config;
        let (t, b) = tape.dims();
        Self::check_buffer(
            "grad_output",
            grad_output,
            elements("grad_output", &cfg.output_shape(t, b))?,
        )?;
        if let Some(g) = grad_h_n {
            Self::check_buffer("grad_h_n", g, elements("grad_h_n", &cfg.state_shape(b))?)?;
        }
        self.ctx.scoped(|| {
            let mut rec = self.recorder();
            let out = self.record_backward(&mut rec, &tape, grad_output, grad_h_n)?;
            self.finish(rec)?;
            Ok(GpuBackward {
                grad_x: out.grad_x,
                grad_h0: out.grad_h0,
                grads: out
                    .grads
                    .into_iter()
                    .map(|[a, b, c, d]| GpuLayerGrads {
                        w_ih: a.expect("always present"),
                        w_hh: b.expect("always present"),
                        b_ih: c,
                        b_hh: d,
                    })
                    .collect(),
            })
        })
    }

    /// [`forward`](Self::forward) from flat slices in the same layouts: `x`
    /// holds the `T·B·I` floats of `(T, B, I)` (or `(B, T, I)`), `h0` the
    /// `L·D·B·H` of `(L·D, B, H)`. A slice of another length is an error.
    pub fn forward_slice(
        &self,
        x: &[f32],
        seq_len: usize,
        batch: usize,
        h0: Option<&[f32]>,
    ) -> Result<(Array3<f32>, Array3<f32>, GpuTape)> {
        let cfg = &self.config;
        self.check_dims(seq_len, batch)?;
        let x = view3("x", x, cfg.input_shape(seq_len, batch))?;
        let h0 = h0
            .map(|h| view3("h0", h, cfg.state_shape(batch)))
            .transpose()?;
        self.forward(x, h0)
    }

    /// [`backward`](Self::backward) from flat slices: `grad_output` holds the
    /// floats of the output's shape, `grad_h_n` those of `(L·D, B, H)`.
    pub fn backward_slice(
        &self,
        tape: GpuTape,
        grad_output: &[f32],
        grad_h_n: Option<&[f32]>,
    ) -> Result<GruGrads<f32>> {
        let cfg = &self.config;
        let (t, b) = tape.dims();
        let go = view3("grad_output", grad_output, cfg.output_shape(t, b))?;
        let gh = grad_h_n
            .map(|g| view3("grad_h_n", g, cfg.state_shape(b)))
            .transpose()?;
        self.backward(tape, go, gh)
    }

    /// Forward from host arrays: `x` `(T, B, I)` (or `(B, T, I)` where
    /// `batch_first`), `h0` `(L·D, B, H)` or zeros. Returns `output`, `h_n`
    /// and the tape (which stays on the device).
    pub fn forward(
        &self,
        x: ArrayView3<f32>,
        h0: Option<ArrayView3<f32>>,
    ) -> Result<(Array3<f32>, Array3<f32>, GpuTape)> {
        self.forward_host(x, h0, None)
    }

    /// [`forward`](Self::forward) in training mode: dropout between layers
    /// with the mask of [`crate::dropout`] drawn from `seed`.
    pub fn forward_train(
        &self,
        x: ArrayView3<f32>,
        h0: Option<ArrayView3<f32>>,
        seed: u32,
    ) -> Result<(Array3<f32>, Array3<f32>, GpuTape)> {
        let p = self.config.dropout;
        self.forward_host(x, h0, (p > 0.0).then_some((seed, p)))
    }

    fn forward_host(
        &self,
        x: ArrayView3<f32>,
        h0: Option<ArrayView3<f32>>,
        dropout: Option<(u32, f32)>,
    ) -> Result<(Array3<f32>, Array3<f32>, GpuTape)> {
        let cfg = &self.config;
        let (t_len, batch) = cfg.check_input("x", x.shape())?;
        if let Some(h0) = &h0 {
            cfg.check_state("h0", h0.shape(), batch)?;
        }
        self.check_sizes(t_len, batch)?;
        self.ctx.scoped(|| {
            let xs = x.as_standard_layout();
            let xb = self
                .ctx
                .upload("x", xs.as_slice().expect("standard layout"))?;
            let h0b = match &h0 {
                Some(h) => Some(self.ctx.upload(
                    "h0",
                    h.as_standard_layout().as_slice().expect("standard layout"),
                )?),
                None => None,
            };
            let mut rec = self.recorder();
            let out = self.record_forward(
                &mut rec,
                xb.buffer(),
                h0b.as_ref().map(|b| b.buffer()),
                t_len,
                batch,
                dropout,
            )?;
            let o_len = t_len * batch * cfg.num_directions() * cfg.hidden_size;
            let s_len = cfg.state_shape(batch).iter().product();
            let so = self.ctx.staging((o_len * 4) as u64);
            let sh = self.ctx.staging((s_len * 4) as u64);
            rec.copy(out.output.buffer(), 0, so.buffer(), 0, (o_len * 4) as u64);
            rec.copy(out.h_n.buffer(), 0, sh.buffer(), 0, (s_len * 4) as u64);
            rec.keep(xb);
            self.finish(rec)?;
            let mut data = self
                .ctx
                .read_staging(&[(&so, o_len), (&sh, s_len)])?
                .into_iter();
            let output =
                Array3::from_shape_vec(cfg.output_shape(t_len, batch), data.next().expect("read"))
                    .expect("length matches");
            let h_n = Array3::from_shape_vec(cfg.state_shape(batch), data.next().expect("read"))
                .expect("length matches");
            Ok((output, h_n, out.tape))
        })
    }

    /// Backward from host arrays: `grad_output` with the output's shape,
    /// `grad_h_n` `(L·D, B, H)` or zeros. Consumes the tape; returns the
    /// gradients of `x`, `h0` and every parameter.
    ///
    /// A tape serves one backward: using it twice does not compile.
    ///
    /// ```compile_fail
    /// # fn twice(model: &gru_wgpu::gpu::GpuGru, tape: gru_wgpu::gpu::GpuTape, g: ndarray::Array3<f32>) {
    /// let _ = model.backward(tape, g.view(), None);
    /// let _ = model.backward(tape, g.view(), None); // error: use of moved value `tape`
    /// # }
    /// ```
    pub fn backward(
        &self,
        tape: GpuTape,
        grad_output: ArrayView3<f32>,
        grad_h_n: Option<ArrayView3<f32>>,
    ) -> Result<GruGrads<f32>> {
        self.check_tape(&tape)?;
        let cfg = &self.config;
        let (t_len, batch) = tape.dims();
        cfg.check_output_like("grad_output", grad_output.shape(), t_len, batch)?;
        if let Some(g) = &grad_h_n {
            cfg.check_state("grad_h_n", g.shape(), batch)?;
        }
        self.ctx.scoped(|| {
            let go = self.ctx.upload(
                "grad_output",
                grad_output
                    .as_standard_layout()
                    .as_slice()
                    .expect("standard layout"),
            )?;
            let gh = match &grad_h_n {
                Some(g) => Some(self.ctx.upload(
                    "grad_h_n",
                    g.as_standard_layout().as_slice().expect("standard layout"),
                )?),
                None => None,
            };
            let mut rec = self.recorder();
            let out = self.record_backward(
                &mut rec,
                &tape,
                go.buffer(),
                gh.as_ref().map(|b| b.buffer()),
            )?;
            let mut reads: Vec<(PooledBuffer, usize)> = Vec::new();
            let mut read = |rec: &mut Recorder, b: &PooledBuffer| {
                let bytes = (b.len() * 4) as u64;
                let st = self.ctx.staging(bytes);
                rec.copy(b.buffer(), 0, st.buffer(), 0, bytes);
                reads.push((st, b.len()));
            };
            read(&mut rec, &out.grad_x);
            read(&mut rec, &out.grad_h0);
            for g in &out.grads {
                for b in g.iter().flatten() {
                    read(&mut rec, b);
                }
            }
            rec.keep(go);
            self.finish(rec)?;
            let data = self
                .ctx
                .read_staging(&reads.iter().map(|(b, l)| (b, *l)).collect::<Vec<_>>())?;
            let mut it = data.into_iter();
            let x_len = t_len * batch * cfg.input_size;
            let s_len: usize = cfg.state_shape(batch).iter().product();
            let mut gx = it.next().expect("read");
            gx.truncate(x_len);
            let mut g0 = it.next().expect("read");
            g0.truncate(s_len);
            let x =
                Array3::from_shape_vec(cfg.input_shape(t_len, batch), gx).expect("length matches");
            let h0 = Array3::from_shape_vec(cfg.state_shape(batch), g0).expect("length matches");
            let mut params = GruParams::<f32>::zeros(cfg)?;
            let (nd, h) = (cfg.num_directions(), cfg.hidden_size);
            let h3 = 3 * h;
            for l in 0..cfg.num_layers {
                let i_l = cfg.layer_input_size(l);
                let w_ih = it.next().expect("read");
                let w_hh = it.next().expect("read");
                let (b_ih, b_hh) = if cfg.bias {
                    (it.next(), it.next())
                } else {
                    (None, None)
                };
                for d in 0..nd {
                    let dp = params.dir_mut(l, d)?;
                    dp.weight_ih = Array2::from_shape_vec(
                        (h3, i_l),
                        w_ih[d * h3 * i_l..(d + 1) * h3 * i_l].to_vec(),
                    )
                    .expect("length matches");
                    dp.weight_hh = Array2::from_shape_vec(
                        (h3, h),
                        w_hh[d * h3 * h..(d + 1) * h3 * h].to_vec(),
                    )
                    .expect("length matches");
                    if let Some(b) = &b_ih {
                        dp.bias_ih = Some(Array1::from(b[d * h3..(d + 1) * h3].to_vec()));
                    }
                    if let Some(b) = &b_hh {
                        dp.bias_hh = Some(Array1::from(b[d * h3..(d + 1) * h3].to_vec()));
                    }
                }
            }
            Ok(GruGrads { x, h0, params })
        })
    }
}

/// A flat slice as an array of `shape`, or an error naming it.
fn view3<'a>(name: &str, data: &'a [f32], shape: [usize; 3]) -> Result<ArrayView3<'a, f32>> {
    let want = crate::error::elements(name, &shape)?;
    if data.len() != want {
        return Err(GruError::LengthMismatch {
            name: name.to_string(),
            expected: want as u64,
            actual: data.len() as u64,
            unit: "floats",
        });
    }
    Ok(ArrayView3::from_shape(shape, data).expect("length checked"))
}
