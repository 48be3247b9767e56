//! The matrix products of a layer behind one interface, [`ProductPath`]: the
//! input projections, the recurrent products of the per-step time loop, and
//! the gradients. [`StoragePath`] computes them with `gemm.wgsl` and the
//! fused steps; the window path of CPU adapters (`super::windows`) with
//! `windows.wgsl`. A model picks its path once, when its parameters are set.

use crate::config::GruConfig;
use crate::config::ResetForm;
use crate::error::Result;
use crate::gpu::gru::types::LayerTape;
use crate::gpu::gru::LayerParams;
use crate::gpu::ops::common::StepShape;
use crate::gpu::ops::gemm::{encode_gemm, Gemm, GemmVariant};
use crate::gpu::ops::gru_backward::BackwardStepBufs;
use crate::gpu::ops::gru_forward::ForwardStepBufs;
use crate::gpu::ops::steps::{Body, Gh, Pass, StepKernel};
use crate::gpu::pool::PooledBuffer;
use crate::gpu::recorder::Recorder;

/// One layer as the products see it: the configuration, its index and its
/// parameters on the device.
pub(crate) struct Layer<'a> {
    pub cfg: &'a GruConfig,
    pub l: usize,
    pub p: &'a LayerParams,
}

impl Layer<'_> {
    /// Whether the layer's weights and activations are stored as f16.
    pub(crate) fn f16(&self) -> bool {
        self.cfg.precision == crate::config::Precision::F16
    }

    /// `(D, H, I_l)`
    pub(crate) fn dims(&self) -> (usize, usize, usize) {
        (
            self.cfg.num_directions(),
            self.cfg.hidden_size,
            self.cfg.layer_input_size(self.l),
        )
    }
}

/// The gradient buffers of one layer's backward.
pub(crate) struct GradBufs<'a> {
    /// `(T·B, D·3H)`
    pub dgi: &'a PooledBuffer,
    /// `(D, T, B, 3H)`
    pub dgh: &'a PooledBuffer,
    /// `(D·3H, I_l)`
    pub dw_ih: &'a PooledBuffer,
    /// `(D, 3H, H)`
    pub dw_hh: &'a PooledBuffer,
}

/// How a layer's matrix products are computed.
pub(crate) trait ProductPath: Send + Sync {
    /// Records the copies of layer `layer`'s weights that this path reads
    /// besides the weights themselves (again after the weights change).
    fn derive(&self, rec: &mut Recorder, layer: &Layer) -> Result<()>;

    /// `gi = X · W_ihᵀ + b_ih` for all T·B rows: `(T·B, D·3H)`.
    fn input_projection(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        xin: &PooledBuffer,
        gi: &PooledBuffer,
        tb: usize,
    ) -> Result<()>;

    /// The per-step forward time loop of the layer; `h0` is the caller's
    /// `(L·D, B, H)` (the steps' `hs` already holds this layer's part in slot 0).
    fn forward_steps(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        sh: &StepShape,
        bufs: &ForwardStepBufs,
        h0: Option<&wgpu::Buffer>,
    ) -> Result<()>;

    /// The per-step backward time loop of the layer.
    fn backward_steps(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        sh: &StepShape,
        bufs: &BackwardStepBufs,
    ) -> Result<()>;

    /// `dW_ih = dG_iᵀ · X_l` `(D·3H, I_l)` and `dW_hh[d] = dG_h[d]ᵀ · H_prev[d]`
    /// `(3H, H)`, each summed over all T·B rows.
    fn weight_grads(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        lt: &LayerTape,
        g: &GradBufs,
        t_len: usize,
        batch: usize,
    ) -> Result<()>;

    /// `dX_l = dG_i · W_ih` `(T·B, I_l)`: both directions summed by the product.
    fn input_grad(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        dgi: &PooledBuffer,
        dx: &PooledBuffer,
        tb: usize,
    ) -> Result<()>;
}

/// The products on storage buffers: `gemm.wgsl`, for the recurrent products
/// of the per-step loop too (`Strategy::Products`).
pub(crate) struct StoragePath {
    /// The kernel of `gemm.wgsl` that computes the products.
    pub gemm: GemmVariant,
}

impl ProductPath for StoragePath {
    fn derive(&self, _rec: &mut Recorder, _layer: &Layer) -> Result<()> {
        Ok(())
    }

    fn input_projection(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        xin: &PooledBuffer,
        gi: &PooledBuffer,
        tb: usize,
    ) -> Result<()> {
        let (nd, h, i_l) = layer.dims();
        let n3 = nd * 3 * h;
        let g = Gemm {
            m: tb,
            n: n3,
            k: i_l,
            trans_b: true,
            lda: i_l,
            ldb: i_l,
            ldc: n3,
            a16: layer.f16(),
            b16: layer.f16(),

            ..Default::default()
        };
        let bias = layer.p.b_ih.as_ref().map(|b| b.buffer());
        encode_gemm(
            rec,
            self.gemm,
            &g,
            xin.buffer(),
            layer.p.w_ih.buffer(),
            bias,
            gi.buffer(),
        )
    }

    fn forward_steps(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        sh: &StepShape,
        bufs: &ForwardStepBufs,
        _h0: Option<&wgpu::Buffer>,
    ) -> Result<()> {
        // Per step: gh (D, B, 3H) = h_s · W_hhᵀ (from W_hhᵀ (D, H, 3H))
        // batched over the directions (the step adds b_hh), then the gate step.
        let (t_len, b, h, nd) = (sh.t_len, sh.batch, sh.hidden, sh.dirs);
        let h3 = 3 * h;
        let tape = bufs.gates.is_some();
        let slots = if tape { t_len + 1 } else { 2 };
        let dev = rec.dev;
        let gh = rec.scratch(dev.storage("gh (recurrent products)", nd * b * h3)?);
        // The reset-before form: gh_r, gh_z first, `rb_rz` (r, z, r·h into
        // the scratch), then gh_n = (r·h) W_hnᵀ and the step.
        let rb = layer.cfg.reset_form == ResetForm::Before;
        let scratch = match rb {
            true => Some(rec.scratch(dev.storage("r, z and r·h of a step", nd * b * h3)?)),
            false => None,
        };
        let kernel = |body| {
            StepKernel::new(Pass::Forward, body)
                .gh(Gh::Storage)
                .rb(rb)
                .tape(tape)
                .for_rec(rec)
                .spec()
        };
        let step = kernel(Body::Step);
        let rz = rb.then(|| kernel(Body::RbRz));
        let dev = rec.dev;
        let bias = bufs.b_hh.unwrap_or(&dev.dummy);
        let gates = bufs.gates.unwrap_or(&dev.dummy_rw);
        let mut p = sh.params()?;
        let grid = sh.step_grid()?;
        let bound = [
            bufs.gi,
            gh.buffer(),
            bias,
            bufs.hs,
            bufs.out,
            gates,
            scratch.as_ref().map_or(&dev.dummy_rw, |b| b.buffer()),
        ];
        for s in 0..t_len {
            let slot = if tape { s } else { s % 2 };
            // Rows past `rows_at(s)` are padding at this step: their state
            // passes through without the product.
            let g = Gemm {
                m: sh.rows_at(s),
                n: if rb { 2 * h } else { h3 },
                k: h,
                lda: h,
                ldb: h3,
                ldc: h3,
                a_off: slot * b * h,
                a16: layer.f16(),
                batch: nd,
                a_batch: slots * b * h,
                b_batch: h3 * h,
                c_batch: b * h3,
                b16: layer.f16(),
                ..Default::default()
            };
            encode_gemm(rec, self.gemm, &g, bufs.hs, bufs.w_hh_t, None, gh.buffer())?;
            p.s = s as i32;
            if let Some(scratch) = &scratch {
                rec.run(rz.expect("the reset-before form"), &p, &bound, grid)?;
                // gh_n: g's product over the n columns, with A = r·h from
                // the scratch (D, B, 3H).
                let n = Gemm {
                    n: h,
                    lda: h3,
                    a_off: 2 * h,
                    b_off: 2 * h,
                    c_off: 2 * h,
                    a_batch: b * h3,
                    // (the scratch is f32)
                    a16: false,
                    ..g
                };
                let (a, w) = (scratch.buffer(), bufs.w_hh_t);
                encode_gemm(rec, self.gemm, &n, a, w, None, gh.buffer())?;
            }
            rec.run(step, &p, &bound, grid)?;
        }
        Ok(())
    }

    fn backward_steps(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        sh: &StepShape,
        bufs: &BackwardStepBufs,
    ) -> Result<()> {
        // Per step s < T-1: carry (D, B, H) = dG_h,{s+1} · W_hh batched over
        // the directions, then the gradient step.
        let (t_len, b, h, nd) = (sh.t_len, sh.batch, sh.hidden, sh.dirs);
        let h3 = 3 * h;
        let dev = rec.dev;
        let carry = rec.scratch(dev.storage("carry (recurrent products)", nd * b * h)?);
        // The reset-before form: the carry product takes the r and z rows of
        // W_hh (K = 2H), the step adds c2 from the scratch, and `rb_dr`
        // finishes each step (d(r·h) = da_n W_hn, da_r, c2).
        let rb = layer.cfg.reset_form == ResetForm::Before;
        let scratch = match rb {
            true => {
                let sc = rec.scratch(dev.storage("d(r·h) r of a step", nd * b * h)?);
                rec.clear(sc.buffer(), 0, (nd * b * h * 4) as u64);
                Some(sc)
            }
            false => None,
        };
        let mut p = sh.params()?;
        let grid = sh.step_grid()?;
        for s in (-1..t_len as i32).rev() {
            if s + 1 < t_len as i32 {
                // Rows past `rows_at(s + 1)` were padding at step s + 1: no
                // product reaches them (the step reads it as zero there).
                let g = Gemm {
                    m: sh.rows_at((s + 1) as usize),
                    n: h,
                    k: if rb { 2 * h } else { h3 },
                    lda: h3,
                    ldb: h,
                    ldc: h,
                    a_off: (s + 1) as usize * b * h3,
                    batch: nd,
                    a_batch: t_len * b * h3,
                    b_batch: h3 * h,
                    c_batch: b * h,
                    b16: layer.f16(),

                    ..Default::default()
                };
                encode_gemm(
                    rec,
                    self.gemm,
                    &g,
                    bufs.dgh,
                    bufs.w_hh,
                    None,
                    carry.buffer(),
                )?;
            }
            p.s = s;
            rec.run(
                StepKernel::new(Pass::Backward, Body::Step)
                    .gh(Gh::Storage)
                    .rb(rb)
                    .for_rec(rec)
                    .spec(),
                &p,
                &[
                    bufs.d_out,
                    bufs.gates,
                    bufs.hs,
                    carry.buffer(),
                    bufs.dgh,
                    bufs.dgi,
                    bufs.dh,
                    scratch.as_ref().map_or(&dev.dummy_rw, |b| b.buffer()),
                ],
                grid,
            )?;
            if let (Some(sc), true) = (&scratch, s >= 0) {
                rec.run(
                    StepKernel::new(Pass::Backward, Body::RbDr)
                        .rb(true)
                        .for_rec(rec)
                        .spec(),
                    &p,
                    &[
                        bufs.d_out,
                        bufs.gates,
                        bufs.hs,
                        bufs.w_hh,
                        bufs.dgh,
                        bufs.dgi,
                        bufs.dh,
                        sc.buffer(),
                    ],
                    grid,
                )?;
            }
        }
        Ok(())
    }

    fn weight_grads(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        lt: &LayerTape,
        g: &GradBufs,
        t_len: usize,
        batch: usize,
    ) -> Result<()> {
        let (nd, h, i_l) = layer.dims();
        let (tb, h3) = (t_len * batch, 3 * h);
        let ih = Gemm {
            m: nd * h3,
            n: i_l,
            k: tb,
            trans_a: true,
            lda: nd * h3,
            ldb: i_l,
            ldc: i_l,
            b16: layer.f16(),
            // The rows of W_ih: the split may depend on them.
            fixed_rows: true,
            ..Default::default()
        };
        encode_gemm(
            rec,
            self.gemm,
            &ih,
            g.dgi.buffer(),
            lt.xin.buffer(),
            None,
            g.dw_ih.buffer(),
        )?;
        // dW_hh = dG_hᵀ H_prev; in the reset-before form the n rows are
        // da_nᵀ (r * h), with r * h from the tape's fourth gate.
        let rb = layer.cfg.reset_form == ResetForm::Before;
        let hh = Gemm {
            m: if rb { 2 * h } else { h3 },
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
            b16: layer.f16(),
            fixed_rows: true,
            ..Default::default()
        };
        encode_gemm(
            rec,
            self.gemm,
            &hh,
            g.dgh.buffer(),
            lt.hs.buffer(),
            None,
            g.dw_hh.buffer(),
        )?;
        if rb {
            // hh's product for the n rows, with B = r·h, the tape's fourth
            // gate (D, T·B, 4H).
            let n = Gemm {
                m: h,
                ldb: 4 * h,
                a_off: 2 * h,
                b_off: 3 * h,
                c_off: 2 * h * h,
                b_batch: tb * 4 * h,
                ..hh
            };
            encode_gemm(
                rec,
                self.gemm,
                &n,
                g.dgh.buffer(),
                lt.gates.buffer(),
                None,
                g.dw_hh.buffer(),
            )?;
        }
        Ok(())
    }

    fn input_grad(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        dgi: &PooledBuffer,
        dx: &PooledBuffer,
        tb: usize,
    ) -> Result<()> {
        let (nd, h, i_l) = layer.dims();
        let n3 = nd * 3 * h;
        let g = Gemm {
            m: tb,
            n: i_l,
            k: n3,
            lda: n3,
            ldb: i_l,
            ldc: i_l,
            b16: layer.f16(),

            ..Default::default()
        };
        encode_gemm(
            rec,
            self.gemm,
            &g,
            dgi.buffer(),
            layer.p.w_ih.buffer(),
            None,
            dx.buffer(),
        )
    }
}
