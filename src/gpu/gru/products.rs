//! The matrix products of a layer behind one interface, [`ProductPath`]: the
//! input projections, the recurrent products of the per-step time loop, and
//! the gradients. [`StoragePath`] computes them with `gemm.wgsl` and the
//! fused steps; the window path of CPU adapters (`super::windows`) with
//! `windows.wgsl`. A model picks its path once, when its parameters are set.

use crate::config::GruConfig;
use crate::error::Result;
use crate::gpu::gru::types::LayerTape;
use crate::gpu::gru::LayerParams;
use crate::gpu::ops::common::StepShape;
use crate::gpu::ops::gemm::{encode_gemm, Gemm, GemmVariant};
use crate::gpu::ops::gru_backward::{encode_backward_steps, BackwardStepBufs};
use crate::gpu::ops::gru_forward::{encode_forward_steps, ForwardStepBufs};
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

/// The products on storage buffers: `gemm.wgsl`, and the recurrent product
/// inside the fused steps.
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
        _layer: &Layer,
        sh: &StepShape,
        bufs: &ForwardStepBufs,
        _h0: Option<&wgpu::Buffer>,
    ) -> Result<()> {
        encode_forward_steps(rec, sh, bufs)
    }

    fn backward_steps(
        &self,
        rec: &mut Recorder,
        _layer: &Layer,
        sh: &StepShape,
        bufs: &BackwardStepBufs,
    ) -> Result<()> {
        encode_backward_steps(rec, sh, bufs)
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
        let hh = Gemm {
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
        };
        encode_gemm(
            rec,
            self.gemm,
            &hh,
            g.dgh.buffer(),
            lt.hs.buffer(),
            None,
            g.dw_hh.buffer(),
        )
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
