//! A GRU's parameters on the device: uploading them, the copies the kernels
//! read besides them, optimiser updates, and reading them back.

use ndarray::Array1;

use crate::error::{GruError, Result};
use crate::gpu::gru::products::ProductPath;
use crate::gpu::gru::windows::WindowPath;
use crate::gpu::gru::{GpuGru, LayerParams};
use crate::gpu::ops::util::{encode_copy, encode_transpose, Io};
use crate::gpu::plan::Family;
use crate::gpu::pool::PooledBuffer;
use crate::gpu::recorder::Recorder;
use crate::params::{DirParams, GruParams};

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
    /// Replaces the parameters (of the same configuration; their
    /// configuration's storage precision is ignored: the model keeps its own).
    pub fn set_params(&mut self, params: &GruParams<f32>) -> Result<()> {
        if params.config().clone().precision(self.config.precision) != self.config {
            return Err(GruError::InvalidConfig(format!(
                "parameters of {:?} given to a model of {:?}",
                params.config(),
                self.config
            )));
        }
        params.check()?;
        // Every tape made before this is stale, whether or not the upload succeeds.
        self.bump_version();
        let ctx = self.ctx.clone();
        ctx.scoped(|| {
            let cfg = &self.config;
            let (nd, h) = (cfg.num_directions(), cfg.hidden_size);
            let mut layers = Vec::with_capacity(cfg.num_layers);
            let mut rec = ctx.recorder(false);
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
                let w_hh_t = self.act("weight_hh transposed", nd * 3 * h * h)?;
                let lp = match self.f16() {
                    // f16: the uploads are the f32 masters; `record_derived`
                    // makes the f16 tensors from them.
                    true => {
                        let half = |b: &PooledBuffer, what| self.act(what, b.len());
                        LayerParams {
                            w_ih: half(&w_ih, "weight_ih (f16)")?,
                            w_hh: half(&w_hh, "weight_hh (f16)")?,
                            b_ih: b_ih
                                .as_ref()
                                .map(|b| half(b, "bias_ih (f16)"))
                                .transpose()?,
                            b_hh: b_hh
                                .as_ref()
                                .map(|b| half(b, "bias_hh (f16)"))
                                .transpose()?,
                            w_hh_t,
                            master: [Some(w_ih), Some(w_hh), b_ih, b_hh]
                                .into_iter()
                                .flatten()
                                .collect(),
                        }
                    }
                    false => LayerParams {
                        w_ih,
                        b_ih,
                        w_hh,
                        w_hh_t,
                        b_hh,
                        master: Vec::new(),
                    },
                };
                layers.push(lp);
            }
            self.layers = layers;
            // The window family's chunked weights, where plans may use it.
            self.windows = if ctx.families().contains(&Family::Windows) {
                Some(WindowPath::new(ctx.dev(), cfg)?)
            } else {
                None
            };
            self.record_derived(&mut rec)?;
            rec.submit()?;
            Ok(())
        })
    }

    /// Records the copies of the weights that the kernels read besides the
    /// weights themselves: an f16 model's f16 tensors from the f32 masters,
    /// `W_hhᵀ`, and on the window path the chunked layouts. After the weights
    /// change on the device (an optimiser step), these are recorded again.
    pub(crate) fn record_derived(&self, rec: &mut Recorder) -> Result<()> {
        let (nd, h) = (self.config.num_directions(), self.config.hidden_size);
        let f16 = self.f16();
        for (l, lp) in self.layers.iter().enumerate() {
            for (m, t) in lp.master.iter().zip(lp.stored()) {
                let io = Io {
                    inp: false,
                    out: true,
                };
                encode_copy(rec, io, m.len(), (m.buffer(), 0), (t.buffer(), 0))?;
            }
            encode_transpose(
                rec,
                Io::same(f16),
                [nd, 3 * h, h],
                lp.w_hh.buffer(),
                lp.w_hh_t.buffer(),
            )?;
            if let Some(w) = &self.windows {
                w.derive(rec, &self.layer(l))?;
            }
        }
        Ok(())
    }

    test_hook! {
        /// The parameter tensors on the device, in the order of the gradients of
        /// [`GpuLayerGrads::tensors`](crate::gpu::GpuLayerGrads::tensors) layer by layer (`w_ih`, `w_hh`, `b_ih`,
        /// `b_hh`; both directions stacked), with their lengths in floats: f32
        /// (an f16 model's f32 masters).
        ///
        /// Change the parameters through [`update`](Self::update) or
        /// [`set_params`](Self::set_params): a write into these buffers by other
        /// means is not seen by the model (its tapes stay valid, and the copies
        /// of the weights that the kernels read stay as they were).
        pub fn param_buffers(&self) -> Vec<(&wgpu::Buffer, usize)> {
            self.layers
                .iter()
                .flat_map(|lp| lp.f32_tensors())
                .map(|b| (b.buffer(), b.len()))
                .collect()
        }
    }

    /// One update of the parameters by `opt` from gradient buffers in the
    /// order of [`param_buffers`](Self::param_buffers), then the derived
    /// copies of the weights: one submission, all on the device. The public
    /// form is `GpuGru::update` (`gpu::optim`, the layer of the optimisers).
    pub(crate) fn update_from(
        &self,
        opt: &mut dyn RecordUpdate,
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
            self.ctx
                .dev()
                .check_owned(&format!("gradient {i}"), g.buffer())?;
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
            let mut rec = self.ctx.recorder(false);
            let p: Vec<&wgpu::Buffer> = params.iter().map(|(b, _)| *b).collect();
            let lens: Vec<usize> = params.iter().map(|(_, l)| *l).collect();
            let g: Vec<&wgpu::Buffer> = grads.iter().map(|b| b.buffer()).collect();
            opt.record_update(&mut rec, &p, &g, &lens)?;
            self.record_derived(&mut rec)?;
            // The new version and the submission that makes it, together
            // under the submission lock: a call that reads the old version
            // is submitted before this, one that reads the new one after.
            // Every tape made before is stale, whether or not the step
            // succeeds on the device.
            let _held = self.submission_lock();
            self.bump_version();
            rec.submit()?;
            Ok(())
        })
    }

    /// Reads the parameters back from the device.
    pub fn params(&self) -> Result<GruParams<f32>> {
        let cfg = &self.config;
        let (nd, h3) = (cfg.num_directions(), 3 * cfg.hidden_size);
        self.ctx.scoped(|| {
            let mut rec = self.ctx.recorder(false);
            let mut reads = Vec::new();
            for lp in &self.layers {
                for b in lp.f32_tensors() {
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
                let (w_ih, w_hh, b_ih, b_hh) =
                    crate::gpu::gru::types::next_layer(&mut it, cfg.bias);
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
}

/// What updates a model's parameters inside the model's recording: the
/// optimisers of the layer above (`gpu::optim`) implement it, so that this
/// layer does not name them.
pub(crate) trait RecordUpdate {
    /// Records one update of `params[i]` (of `lens[i]` floats) from `grads[i]`.
    fn record_update(
        &mut self,
        rec: &mut Recorder,
        params: &[&wgpu::Buffer],
        grads: &[&wgpu::Buffer],
        lens: &[usize],
    ) -> Result<()>;
}
